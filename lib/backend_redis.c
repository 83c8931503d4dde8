/*
 * NAME
 *	backend_redis.c - the store on a Redis server (hiredis), shared by
 *	several machines
 *
 * SYNOPSIS
 *	redis://[[user]:password@]host[:port][/db][?param=value&...]
 *	unix:/path/to/socket[?param=value&...]
 *
 *	params: prefix=P (default "sessdb:"; percent-encoded bytes allowed),
 *	timeout_ms=T (1..60000, default 50), password_file=F, and for the
 *	unix: form db=N.
 *
 * DESCRIPTION
 *	Every record is one Redis string: the key is the prefix followed by
 *	the record's key bytes (namespace byte, identifier), the value is
 *	the record exactly as the file stores it (header, expiry, CRC), so
 *	the operations above decode it and catch damaged or foreign values
 *	the same way.
 *
 *	fetch = GET; store = SET key value EX ttl; take = GETDEL (one
 *	command: of many processes on many machines exactly one gets the
 *	value); remove = DEL, or with if_same a compare-and-delete script
 *	(EVAL, atomic in Redis); scan = SCAN MATCH prefix* COUNT n, then
 *	MGET of the keys (never KEYS).  Commands of one call are pipelined.
 *
 *	Expiry.  Redis deletes a record by itself when its TTL runs out.  The
 *	TTL is the record's expiry minus the handle's clock (sessdb_now), not
 *	an absolute EXAT: what the record's header says is the truth for
 *	every backend, the handle's clock decides it (a test's fake clock as
 *	well), and a Redis server whose own clock is off neither shortens
 *	nor lengthens a record's life.  So a sweep finds nothing expired in
 *	practice (claim_sweep never asks for one) and deletes only values
 *	that fail to decode; its counts say what it found.
 *
 *	Caps.  max_entries and max_bytes are not enforced: counting a
 *	prefix's keys in Redis costs a walk of the keyspace, and Redis's own
 *	maxmemory (with maxmemory-policy volatile-ttl) bounds its memory.  A
 *	handle opened with a cap logs that once.  A server out of memory
 *	(noeviction) refuses writes: put fails with SESSDB_E_BACKEND.
 *
 *	Failures.  Every call returns within timeout_ms (give or take a
 *	tenth), however many round trips it makes (connect, AUTH and
 *	SELECT, the command): each wait gets what is left of the call's
 *	budget.  A connection that fails (an I/O error, a timeout: a hung
 *	server's late replies would answer the wrong questions) is dropped.
 *	A connection found broken (the server restarted) is replaced at
 *	once and an idempotent command sent again (a take, which must not
 *	run twice, checks the connection before it is sent instead), unless
 *	a connection attempt of the process failed within the last second.
 *	While the server stays unreachable a process makes at most one
 *	connection attempt a second to it, whatever the number of handles,
 *	and calls fail at once in between; the first handle that connects
 *	again lets the others try at once.  Every failure is
 *	SESSDB_E_BACKEND.  Changes of state (unreachable, reachable again,
 *	password refused, writes refused for want of memory or on a
 *	read-only replica, writes accepted again) are logged once each, not
 *	once per call; reconnections are counted in stats.reopens.
 *
 *	Secrets.  A password comes from the URL, a file (password_file=, not
 *	world-accessible) or the environment (SESSDB_REDIS_PASSWORD), in
 *	that order of precedence; URL and file together are refused.  It is
 *	never printed: the handle's path (sessdb_path, every message) shows
 *	"***" in its place.  AUTH is written by this file with MSG_NOSIGNAL
 *	from a buffer wiped afterwards; the password itself is wiped at
 *	close.  Values (records hold master secrets) are wiped in the
 *	buffers this file owns; hiredis's input buffer is not.
 *
 *	Limits.  Needs Redis 6.2 or later (GETDEL).  A host name is
 *	resolved (getaddrinfo) at each connection, outside the budget: give
 *	an address where that matters.  Redis Cluster redirections (MOVED)
 *	are errors: use a proxy.  A file path that starts with "redis://"
 *	or "unix:" must be written "./unix:...".  SESSDB_NOCREATE means
 *	nothing here (there is nothing to create).
 *
 *	fork.  The child frees its copy of the connection (the descriptor
 *	closes in the child only; the parent's socket stays open and
 *	unused by the child) and connects again on its next call.
 *
 *	Built without hiredis, the same table entries in store.c lead here
 *	and sessdb_open fails with "built without Redis support".
 *
 * DIAGNOSTICS
 *	Functions return -1 with sessdb_error() set and sessdb_errcode()
 *	SESSDB_E_BACKEND (SESSDB_E_ARG for a malformed URL, SESSDB_E_NOMEM).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "handle.h"

#ifdef SESSDB_HAVE_REDIS

#include <hiredis/hiredis.h>

#define DEFAULT_PREFIX		"sessdb:"
#define DEFAULT_PORT		6379
#define DEFAULT_TIMEOUT_MS	50
#define MAX_TIMEOUT_MS		60000
#define RECONNECT_MS		1000	/* one attempt a second while down */
#define PASSWORD_MAX		512
#define PREFIX_MAX		128
#define PASSWORD_ENV		"SESSDB_REDIS_PASSWORD"
#define LIMIT_SLOTS		32	/* endpoints the process rate-limits */

/* compare-and-delete: DEL the key only while it holds ARGV[1]. */
static const char del_same_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) else return 0 end";

enum rstate {
	RS_UP,		/* connected, or not yet tried */
	RS_DOWN,	/* unreachable: attempts rate-limited */
	RS_REFUSED,	/* the server refused our credentials or database */
};

/* The Redis backend's part of a handle. */
struct rds {
	char		*host;		/* NULL for a unix socket */
	int		port;
	char		*sock;		/* unix socket path */
	long		dbnum;
	unsigned char	*prefix;
	size_t		prefix_len;
	char		*match;		/* SCAN pattern: escaped prefix, "*" */
	unsigned	timeout_ms;
	char		*user;		/* ACL user, or NULL */
	char		*pass;		/* wiped at close; NULL: no AUTH */
	size_t		pass_len;
	unsigned	slot;		/* the endpoint's rate-limit slot */

	redisContext	*c;		/* NULL: not connected */
	unsigned	wait_ms;	/* socket timeouts as set now */
	enum rstate	state;
	char		refusing[32];	/* first word of a refused write's
					   error ("OOM"), "" while writes work */
	uint64_t	down_since;	/* mono ms */
	uint64_t	failed;		/* calls failed while down */
	char		why[200];	/* the last connection failure */
	int		told_compact;
};

/* Per call: when it must be over. */
struct call {
	uint64_t	deadline;	/* mono ms */
	int		retried;
};

/*
 * Per endpoint (slot), for every handle of this process: when the last
 * connection attempt failed, and when a handle that knows the server is
 * down last claimed an attempt (mono ms, 0: never).  Attempts are
 * rate-limited per process, not per handle, so a server with many
 * handles makes no reconnect storm.  Endpoints share a slot when their
 * hashes collide: then they share the budget too, which only slows
 * attempts down.
 */
static struct {
	uint64_t	failed_at;
	uint64_t	claimed_at;
} limit[LIMIT_SLOTS];

/* wipe_free - wipe and free a NUL-terminated secret. */
static void
wipe_free(char *s)
{
	if (s != NULL)
		store_free_value(s, strlen(s));
}

/* reply_free - free a reply, wiping the strings in it (values). */
static void
reply_free(redisReply *r)
{
	if (r == NULL)
		return;
	if (r->str != NULL)
		explicit_bzero(r->str, r->len);
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		if (r->element[i] != NULL && r->element[i]->str != NULL)
			explicit_bzero(r->element[i]->str, r->element[i]->len);
	freeReplyObject(r);
}

/* ---- the URL ---- */

/* hexval - the value of a hex digit, or -1. */
static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* pct_decode - decode n bytes of s (%XX escapes) into a malloc'ed,
 * NUL-terminated buffer; *out_len its length.  NULL on a bad escape or
 * no memory (*nomem says which). */
static char *
pct_decode(const char *s, size_t n, size_t *out_len, int *nomem)
{
	char *d = malloc(n + 1);
	size_t j = 0;

	*nomem = d == NULL;
	if (d == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		if (i + 2 >= n || hexval(s[i + 1]) < 0 ||
		    hexval(s[i + 2]) < 0) {
			store_free_value(d, n + 1);
			return NULL;
		}
		d[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
		i += 2;
	}
	d[j] = '\0';
	if (out_len != NULL)
		*out_len = j;
	return d;
}

/* parse_num - a decimal number of n bytes in [lo, hi]; 0 or -1. */
static int
parse_num(const char *s, size_t n, long lo, long hi, long *v)
{
	long x = 0;

	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	if (x < lo || x > hi)
		return -1;
	*v = x;
	return 0;
}

/* bad_url - a malformed URL: the message names the part, never the
 * URL itself (it may hold a password). */
#define bad_url(db, ...) \
	diag_error((db), SESSDB_E_ARG, "redis store: " __VA_ARGS__)

/* read_password_file - the first line of path as the password. */
static int
read_password_file(struct sessdb *db, struct rds *r, const char *path)
{
	char buf[PASSWORD_MAX + 2];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd == -1)
		return diag_error(db, diag_code(errno), "redis store: password "
		    "file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return diag_error(db, SESSDB_E_BACKEND, "redis store: password "
		    "file %s: not a regular file", path);
	}
	if ((st.st_mode & 0007) != 0) {
		close(fd);
		return diag_error(db, SESSDB_E_PERMISSION, "redis store: password "
		    "file %s: accessible to all users (mode %03o); refused",
		    path, (unsigned)(st.st_mode & 0777));
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return diag_error(db, SESSDB_E_BACKEND, "redis store: password "
		    "file %s: %s", path, strerror(errno));
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	r->pass_len = strlen(buf);
	if (r->pass_len == 0 || r->pass_len > PASSWORD_MAX) {
		explicit_bzero(buf, sizeof(buf));
		return diag_error(db, SESSDB_E_ARG, "redis store: password file "
		    "%s: %s", path, r->pass_len == 0 ? "empty first line" :
		    "password too long");
	}
	r->pass = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	if (r->pass == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	return 0;
}

/* set_prefix - the key prefix, and the SCAN pattern that matches it. */
static int
set_prefix(struct sessdb *db, struct rds *r, const char *v, size_t n)
{
	size_t len, j = 0;
	int nomem;
	char *p = pct_decode(v, n, &len, &nomem);

	if (p == NULL)
		return nomem ? diag_error(db, SESSDB_E_NOMEM, "out of memory") :
		    bad_url(db, "prefix: bad %%-escape");
	if (len == 0 || len > PREFIX_MAX) {
		free(p);
		return bad_url(db, "prefix: must hold 1..%d bytes (a sweep removes "
		    "every value under it that is not a record)", PREFIX_MAX);
	}
	free(r->prefix);
	free(r->match);
	r->prefix = (unsigned char *)p;
	r->prefix_len = len;
	r->match = malloc(2 * len + 2);
	if (r->match == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	for (size_t i = 0; i < len; i++) {
		if (strchr("*?[]\\", p[i]) != NULL)
			r->match[j++] = '\\';	/* a glob character, literally */
		r->match[j++] = p[i];
	}
	r->match[j++] = '*';
	r->match[j] = '\0';
	return 0;
}

/*
 * parse_query - prefix=, timeout_ms=, password_file=, db= (unix form):
 *	each at most once, nothing else.
 */
static int
parse_query(struct sessdb *db, struct rds *r, const char *q, int unix_form,
    char **pw_file, int *db_seen)
{
	int seen_prefix = 0, seen_timeout = 0;
	long v;

	while (*q != '\0') {
		size_t n = strcspn(q, "&"), kl = strcspn(q, "=");
		const char *val = q + kl + 1;
		size_t vl = n > kl ? n - kl - 1 : 0;
		int nomem;

		if (kl >= n)
			return bad_url(db, "parameter without '=' in the query");
		if (kl == 6 && strncmp(q, "prefix", 6) == 0 && !seen_prefix) {
			seen_prefix = 1;
			if (set_prefix(db, r, val, vl) == -1)
				return -1;
		} else if (kl == 10 && strncmp(q, "timeout_ms", 10) == 0 &&
		    !seen_timeout) {
			seen_timeout = 1;
			if (parse_num(val, vl, 1, MAX_TIMEOUT_MS, &v) == -1)
				return bad_url(db, "timeout_ms: want 1..%d "
				    "milliseconds", MAX_TIMEOUT_MS);
			r->timeout_ms = (unsigned)v;
		} else if (kl == 13 && strncmp(q, "password_file", 13) == 0 &&
		    *pw_file == NULL) {
			*pw_file = pct_decode(val, vl, NULL, &nomem);
			if (*pw_file == NULL)
				return nomem ? diag_error(db, SESSDB_E_NOMEM, "out of "
				    "memory") : bad_url(db, "password_file: bad %%-escape");
			if (**pw_file == '\0')
				return bad_url(db, "password_file: empty path");
		} else if (kl == 2 && strncmp(q, "db", 2) == 0 && unix_form &&
		    !*db_seen) {
			*db_seen = 1;
			if (parse_num(val, vl, 0, INT_MAX, &r->dbnum) == -1)
				return bad_url(db, "db: want a database number");
		} else {
			return bad_url(db, "unknown or repeated parameter \"%.*s\" "
			    "(known: prefix, timeout_ms, password_file%s)", (int)kl,
			    q, unix_form ? ", db" : "");
		}
		q += n;
		if (*q == '&' && *++q == '\0')
			return bad_url(db, "empty parameter at the end of the query");
	}
	return 0;
}

/*
 * parse_authority - [[user]:password@]host[:port] of length n.  Sets
 *	*pw_from, *pw_to to the password's place in the URL (for redaction).
 */
static int
parse_authority(struct sessdb *db, struct rds *r, const char *a, size_t n,
    const char **pw_from, const char **pw_to)
{
	const char *at = NULL, *h, *colon, *end = a + n;
	int nomem;
	long v;

	for (const char *p = a; p < end; p++)
		if (*p == '@')
			at = p;
	h = a;
	if (at != NULL) {
		colon = memchr(a, ':', (size_t)(at - a));
		if (colon == NULL)
			return bad_url(db, "user information without ':' (want "
			    "[user]:password@)");
		if (colon > a) {
			r->user = pct_decode(a, (size_t)(colon - a), NULL, &nomem);
			if (r->user == NULL)
				return nomem ? diag_error(db, SESSDB_E_NOMEM,
				    "out of memory") : bad_url(db, "user: bad %%-escape");
		}
		*pw_from = colon + 1;
		*pw_to = at;
		r->pass = pct_decode(colon + 1, (size_t)(at - colon - 1),
		    &r->pass_len, &nomem);
		if (r->pass == NULL)
			return nomem ? diag_error(db, SESSDB_E_NOMEM, "out of memory") :
			    bad_url(db, "password: bad %%-escape");
		if (r->pass_len == 0 || r->pass_len > PASSWORD_MAX)
			return bad_url(db, "password: want 1..%d bytes", PASSWORD_MAX);
		h = at + 1;
	}
	if (h < end && *h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));

		if (close == NULL || close == h + 1)
			return bad_url(db, "host: unterminated [IPv6 address]");
		r->host = strndup(h + 1, (size_t)(close - h - 1));
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon != NULL && *colon != ':')
			return bad_url(db, "host: junk after [IPv6 address]");
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		r->host = strndup(h, (size_t)((colon ? colon : end) - h));
	}
	if (r->host == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	if (*r->host == '\0')
		return bad_url(db, "no host");
	for (const char *p = r->host; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr(".-_:", *p) == NULL)
			return bad_url(db, "host: character '%c' not allowed", *p);
	r->port = DEFAULT_PORT;
	if (colon != NULL) {
		if (parse_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, &v) == -1)
			return bad_url(db, "port: want 1..65535");
		r->port = (int)v;
	}
	return 0;
}

/* redact - db->path with the password replaced by "***". */
static int
redact(struct sessdb *db, const char *pw_from, const char *pw_to)
{
	char *red;

	if (pw_from == NULL)
		return 0;
	if (asprintf(&red, "%.*s***%s", (int)(pw_from - db->path), db->path,
	    pw_to) == -1)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	wipe_free(db->path);
	db->path = red;
	return 0;
}

/* parse_url - fill r from db->path; the password is redacted there. */
static int
parse_url(struct sessdb *db, struct rds *r)
{
	const char *u = db->path, *pw_from = NULL, *pw_to = NULL, *q;
	char *pw_file = NULL, *query = NULL;
	int unix_form = strncmp(u, "unix:", 5) == 0, db_seen = 0, rc = -1;
	const char *env;
	long v;

	r->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (set_prefix(db, r, DEFAULT_PREFIX, strlen(DEFAULT_PREFIX)) == -1)
		return -1;
	q = strchr(u, '?');
	if (q != NULL && (query = strdup(q + 1)) == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	if (unix_form) {
		size_t n = (size_t)((q ? q : u + strlen(u)) - (u + 5));

		if (n == 0 || u[5] != '/')
			goto bad_path;
		if ((r->sock = strndup(u + 5, n)) == NULL)
			goto nomem;
	} else {
		const char *a = u + strlen("redis://");
		size_t n = strcspn(a, "/?");

		if (memchr(a + n, '@', strcspn(a + n, "?")) != NULL) {
			bad_url(db, "'/', '?' and '@' in a user or password "
			    "must be %%-escaped (%%2F, %%3F, %%40)");
			goto out;
		}
		if (parse_authority(db, r, a, n, &pw_from, &pw_to) == -1)
			goto out;
		a += n;
		if (*a == '/') {
			size_t dn = strcspn(a + 1, "?");

			if (parse_num(a + 1, dn, 0, INT_MAX, &v) == -1) {
				bad_url(db, "database: want /N, a number");
				goto out;
			}
			r->dbnum = v;
		}
	}
	if (query != NULL) {
		if (*query == '\0') {
			bad_url(db, "empty query after '?'");
			goto out;
		}
		if (parse_query(db, r, query, unix_form, &pw_file, &db_seen) == -1)
			goto out;
	}
	if (pw_file != NULL && r->pass != NULL) {
		bad_url(db, "a password in the URL and password_file: give one");
		goto out;
	}
	if (pw_file != NULL && read_password_file(db, r, pw_file) == -1)
		goto out;
	if (r->pass == NULL && (env = getenv(PASSWORD_ENV)) != NULL &&
	    *env != '\0') {
		r->pass_len = strlen(env);
		if (r->pass_len > PASSWORD_MAX) {
			bad_url(db, "%s: password too long", PASSWORD_ENV);
			goto out;
		}
		if ((r->pass = strdup(env)) == NULL)
			goto nomem;
	}
	rc = redact(db, pw_from, pw_to);
	goto out;
bad_path:
	bad_url(db, "unix: wants an absolute socket path (unix:/path/to/socket)");
	goto out;
nomem:
	diag_error(db, SESSDB_E_NOMEM, "out of memory");
out:
	if (rc == -1 && pw_from != NULL)
		(void)redact(db, pw_from, pw_to);	/* no password in messages */
	free(pw_file);
	free(query);
	return rc;
}

/* endpoint_slot - the rate-limit slot of r's server (FNV-1a). */
static unsigned
endpoint_slot(const struct rds *r)
{
	uint64_t h = 1469598103934665603ull;
	const char *s = r->host != NULL ? r->host : r->sock;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	h = (h ^ (uint64_t)r->port) * 1099511628211ull;
	return (unsigned)(h % LIMIT_SLOTS);
}

/* ---- the connection ---- */

/* drop - forget the connection (its descriptor closes in this process). */
static void
drop(struct rds *r)
{
	if (r->c != NULL)
		redisFree(r->c);
	r->c = NULL;
}

/* remaining - what is left of the call's budget, in ms (0: nothing). */
static unsigned
remaining(const struct call *k)
{
	uint64_t now = mono_ms();

	return now >= k->deadline ? 0 : (unsigned)(k->deadline - now);
}

/* set_wait - socket timeouts of at most ms for the next round trip.  The
 * first round trip of a call gets the whole timeout (a call may overrun
 * by a tenth), so the socket is touched only when a call makes several
 * round trips, not on every call. */
static int
set_wait(struct rds *r, unsigned ms)
{
	struct timeval tv;

	if (ms + r->timeout_ms / 10 + 1 >= r->timeout_ms)
		ms = r->timeout_ms;
	if (ms == r->wait_ms)
		return 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (redisSetTimeout(r->c, tv) != REDIS_OK)
		return -1;
	r->wait_ms = ms;
	return 0;
}

/* went_down - the server is unreachable: say so once, fail the call. */
static int
went_down(struct sessdb *db, const char *why)
{
	struct rds *r = db->be_state;

	drop(r);
	snprintf(r->why, sizeof(r->why), "%s", why);
	if (r->state != RS_DOWN) {
		r->state = RS_DOWN;
		r->down_since = mono_ms();
		r->failed = 0;
		diag_log(db, SESSDB_LOG_ERR, "%s: Redis unreachable (%s); calls "
		    "fail (storage backend unavailable) until it is back, one "
		    "connection attempt a second", db->path, why);
	}
	r->failed++;
	return diag_error(db, SESSDB_E_BACKEND, "%s: Redis unreachable (%s)",
	    db->path, why);
}

/* came_up - connected (again): say so once. */
static void
came_up(struct sessdb *db)
{
	struct rds *r = db->be_state;

	if (r->state == RS_DOWN) {
		db->st.reopens++;
		diag_log(db, SESSDB_LOG_WARNING, "%s: Redis reachable again after "
		    "%.1f s (%llu calls failed meanwhile)", db->path,
		    (double)(mono_ms() - r->down_since) / 1000.0,
		    (unsigned long long)r->failed);
	} else if (r->state == RS_REFUSED) {
		diag_log(db, SESSDB_LOG_WARNING, "%s: Redis accepts our "
		    "credentials again", db->path);
	}
	r->state = RS_UP;
}

/* refused - the server refused AUTH or SELECT: log once, fail. */
static int
refused(struct sessdb *db, const char *what, const char *msg)
{
	struct rds *r = db->be_state;

	drop(r);
	snprintf(r->why, sizeof(r->why), "refused %s: %s", what, msg);
	if (r->state != RS_REFUSED) {
		r->state = RS_REFUSED;
		diag_log(db, SESSDB_LOG_ERR, "%s: Redis refused %s: %s; calls fail "
		    "(storage backend unavailable), one attempt a second", db->path,
		    what, msg);
	}
	return diag_error(db, SESSDB_E_BACKEND, "%s: Redis refused %s: %s",
	    db->path, what, msg);
}

/*
 * may_attempt - may this call try to connect now?  Not within a second
 *	of a failed attempt of any handle of the process; a handle that
 *	knows the server is down must also win the second's one claim.  A
 *	handle that had a connection (it broke, or fork dropped it) tries
 *	at once otherwise.
 */
static int
may_attempt(struct rds *r)
{
	uint64_t now = mono_ms(), failed, claimed;

	failed = __atomic_load_n(&limit[r->slot].failed_at, __ATOMIC_RELAXED);
	if (failed != 0 && now - failed < RECONNECT_MS)
		return 0;
	if (r->state == RS_UP)
		return 1;
	claimed = __atomic_load_n(&limit[r->slot].claimed_at, __ATOMIC_RELAXED);
	if (claimed != 0 && now - claimed < RECONNECT_MS)
		return 0;
	return __atomic_compare_exchange_n(&limit[r->slot].claimed_at, &claimed,
	    now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* attempted - an attempt ended: a failure holds every handle of the
 * process back for a second, a success lets them all try at once. */
static void
attempted(struct rds *r, int ok)
{
	__atomic_store_n(&limit[r->slot].failed_at, ok ? 0 : mono_ms(),
	    __ATOMIC_RELAXED);
	if (ok)
		__atomic_store_n(&limit[r->slot].claimed_at, 0, __ATOMIC_RELAXED);
}

/* send_all - write buf with MSG_NOSIGNAL (a closed connection must not
 * raise SIGPIPE in the application): 0, or -1 with errno. */
static int
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A batch of commands sent in one write, their replies read together. */
struct pipe {
	char	*buf;
	size_t	len;
	size_t	cap;
	size_t	n;		/* commands */
	int	idempotent;	/* may be sent again if the connection broke */
};

/* pipe_add - append one command (argv of argc byte strings). */
static int
pipe_add(struct sessdb *db, struct pipe *p, int argc, const char **argv,
    const size_t *lens)
{
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	if (p->len + (size_t)n > p->cap) {
		size_t cap = p->cap * 2 + (size_t)n + 256;
		char *nb = malloc(cap);

		if (nb == NULL) {
			explicit_bzero(cmd, (size_t)n);
			redisFreeCommand(cmd);
			return diag_error(db, SESSDB_E_NOMEM, "out of memory");
		}
		if (p->buf != NULL) {
			memcpy(nb, p->buf, p->len);
			store_free_value(p->buf, p->cap);
		}
		p->buf = nb;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, cmd, (size_t)n);
	p->len += (size_t)n;
	p->n++;
	explicit_bzero(cmd, (size_t)n);
	redisFreeCommand(cmd);
	return 0;
}

/* pipe_free - wipe (values, AUTH) and free. */
static void
pipe_free(struct pipe *p)
{
	store_free_value(p->buf, p->cap);
	memset(p, 0, sizeof(*p));
}

/* io_why - what a failed exchange means, in words, copied into buf (the
 * connection, where hiredis keeps its words, is about to be dropped). */
static const char *
io_why(struct rds *r, int timed_out, char *buf, size_t len)
{
	if (timed_out)
		snprintf(buf, len, "no answer within %u ms", r->timeout_ms);
	else if (r->c != NULL && r->c->err == REDIS_ERR_EOF)
		snprintf(buf, len, "connection closed by the server");
	else if (r->c != NULL && r->c->errstr[0] != '\0')
		snprintf(buf, len, "%s", r->c->errstr);
	else
		snprintf(buf, len, "%s", strerror(errno));
	return buf;
}

/* exchange - send p, read its p->n replies into rep[]: 0, or -1 with
 * *timed_out set when the budget ran out and *broken when the
 * connection is gone: 2 if the batch could not be sent (Redis runs no
 * command it has not received whole), 1 if it may have run (rep[]
 * freed). */
static int
exchange(struct rds *r, const struct pipe *p, redisReply **rep,
    const struct call *k, int *timed_out, int *broken)
{
	unsigned left = remaining(k);
	size_t i;
	int e;

	*timed_out = *broken = 0;
	if (left == 0 || set_wait(r, left) == -1) {
		*timed_out = left == 0;
		return -1;
	}
	errno = 0;
	if (send_all(r->c->fd, p->buf, p->len) == -1) {
		e = errno;
		*timed_out = e == EAGAIN || e == EWOULDBLOCK;
		*broken = e == EPIPE || e == ECONNRESET ? 2 : 0;
		snprintf(r->c->errstr, sizeof(r->c->errstr), "%s", strerror(e));
		return -1;
	}
	for (i = 0; i < p->n; i++) {
		void *x = NULL;

		errno = 0;
		if (redisGetReply(r->c, &x) != REDIS_OK || x == NULL) {
			e = errno;
			*timed_out = e == EAGAIN || e == EWOULDBLOCK;
			*broken = r->c->err == REDIS_ERR_EOF || e == ECONNRESET;
			while (i-- > 0) {	/* the callers free rep[] too */
				reply_free(rep[i]);
				rep[i] = NULL;
			}
			return -1;
		}
		rep[i] = x;
	}
	return 0;
}

/*
 * connect_now - connect, authenticate and select the database, all
 *	within the call's budget.  The AUTH bytes are formatted and written
 *	here, from a buffer wiped before it is freed.
 */
static int
connect_now(struct sessdb *db, const struct call *k)
{
	struct rds *r = db->be_state;
	struct pipe p = { 0 };
	redisReply *rep[2] = { NULL, NULL };
	char dbs[16], why[160];
	unsigned left = remaining(k);
	struct timeval tv;
	int to, broken, rc = -1, n = 0;

	if (left == 0)
		return went_down(db, "no time left to connect");
	tv.tv_sec = left / 1000;
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	r->c = r->host != NULL ? redisConnectWithTimeout(r->host, r->port, tv) :
	    redisConnectUnixWithTimeout(r->sock, tv);
	if (r->c == NULL || r->c->err != 0) {
		snprintf(why, sizeof(why), "connect: %s", r->c != NULL ?
		    r->c->errstr : "out of memory");
		went_down(db, why);
		goto out;
	}
	(void)fcntl(r->c->fd, F_SETFD, FD_CLOEXEC);
	r->wait_ms = 0;		/* unknown: set before the first exchange */
	if (r->pass != NULL) {
		const char *argv[3] = { "AUTH", r->user, r->pass };
		size_t lens[3] = { 4, r->user ? strlen(r->user) : 0, r->pass_len };

		if (r->user == NULL) {
			argv[1] = r->pass;
			lens[1] = r->pass_len;
		}
		if (pipe_add(db, &p, r->user ? 3 : 2, argv, lens) == -1)
			goto out;
		n++;
	}
	snprintf(dbs, sizeof(dbs), "%ld", r->dbnum);
	{
		const char *argv[2] = { "SELECT", dbs };
		size_t lens[2] = { 6, strlen(dbs) };

		if (pipe_add(db, &p, 2, argv, lens) == -1)
			goto out;
	}
	if (exchange(r, &p, rep, k, &to, &broken) == -1) {
		went_down(db, io_why(r, to, why, sizeof(why)));
		goto out;
	}
	for (int i = 0; i <= n; i++) {
		if (rep[i]->type == REDIS_REPLY_ERROR) {
			refused(db, i < n ? "the password" :
			    strncmp(rep[i]->str, "NOAUTH", 6) == 0 ?
			    "access without a password" : "the database number",
			    rep[i]->str);
			goto out;
		}
	}
	came_up(db);
	rc = 0;
out:
	attempted(r, rc == 0);
	reply_free(rep[0]);
	reply_free(rep[1]);
	pipe_free(&p);
	if (rc == -1)
		drop(r);
	return rc;
}

/* ready - a connection for this call, or -1 (error set). */
static int
ready(struct sessdb *db, const struct call *k)
{
	struct rds *r = db->be_state;

	if (r->c != NULL)
		return 0;
	if (!may_attempt(r)) {
		if (r->state == RS_UP)	/* another handle just failed */
			return went_down(db, "a connection attempt failed just "
			    "now");
		r->failed++;
		return diag_error(db, SESSDB_E_BACKEND, "%s: Redis %s (%s); next "
		    "connection attempt within a second", db->path,
		    r->state == RS_DOWN ? "unreachable" : "refusing us", r->why);
	}
	return connect_now(db, k);
}

/* peer_closed - has the server closed this idle connection (or sent
 * something unasked, which never happens on a sound one)? */
static int
peer_closed(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR);
}

/*
 * run - one call's round trip: connect if need be, send p, read the
 *	replies.  A connection that was open before this call and turns out
 *	broken (the server restarted) is replaced once and the batch sent
 *	again, within the same budget, if it is idempotent or was not sent
 *	(one command: a take).  0 or -1 (error set).
 */
static int
run(struct sessdb *db, struct call *k, const struct pipe *p, redisReply **rep)
{
	struct rds *r = db->be_state;
	char why[160];
	int to, broken, reused;

	/* A command that must not be sent twice (a take) first makes sure
	 * the connection is still there: one recv, no round trip. */
	if (!p->idempotent && r->c != NULL && peer_closed(r->c->fd))
		drop(r);
	for (;;) {
		reused = r->c != NULL;
		if (ready(db, k) == -1)
			return -1;
		if (exchange(r, p, rep, k, &to, &broken) == 0)
			return 0;
		io_why(r, to, why, sizeof(why));
		if (!broken || !reused || k->retried || !(p->idempotent ||
		    (broken == 2 && p->n == 1)))
			return went_down(db, why);
		k->retried = 1;
		drop(r);	/* stale: reconnect at once */
	}
}

/* call_start - the budget of one call. */
static void
call_start(const struct sessdb *db, struct call *k)
{
	const struct rds *r = db->be_state;

	k->deadline = mono_ms() + r->timeout_ms;
	k->retried = 0;
}

/* make_key - prefix + key bytes into buf (room for prefix + REC_KEY_MAX). */
static size_t
make_key(const struct rds *r, char *buf, const unsigned char *key,
    size_t key_len)
{
	memcpy(buf, r->prefix, r->prefix_len);
	memcpy(buf + r->prefix_len, key, key_len);
	return r->prefix_len + key_len;
}

/* one - run one command of argc arguments; *rep its reply. */
static int
one(struct sessdb *db, int idempotent, int argc, const char **argv,
    const size_t *lens, redisReply **rep)
{
	struct pipe p = { 0 };
	struct call k;
	int rc;

	call_start(db, &k);
	p.idempotent = idempotent;
	if (pipe_add(db, &p, argc, argv, lens) == -1)
		return -1;
	rc = run(db, &k, &p, rep);
	pipe_free(&p);
	return rc;
}

/* reply_error - an error reply to a call: the call fails with Redis's
 * words.  A refused write is logged once until writes work again. */
static int
reply_error(struct sessdb *db, const char *what, const redisReply *x,
    int is_write)
{
	struct rds *r = db->be_state;
	char word[sizeof(r->refusing)];

	if (is_write) {
		snprintf(word, sizeof(word), "%.*s", (int)strcspn(x->str, " "),
		    x->str);
		if (strcmp(word, r->refusing) != 0) {
			snprintf(r->refusing, sizeof(r->refusing), "%s", word);
			diag_log(db, SESSDB_LOG_ERR, "%s: Redis refuses writes: %s%s",
			    db->path, x->str, strcmp(word, "OOM") == 0 ? " (maxmemory "
			    "reached: records are not stored)" : "");
		}
	}
	return diag_error(db, SESSDB_E_BACKEND, "%s: %s: Redis: %s", db->path,
	    what, x->str);
}

/* write_ok - a write succeeded: if writes were refused, say they work. */
static void
write_ok(struct sessdb *db)
{
	struct rds *r = db->be_state;

	if (r->refusing[0] == '\0')
		return;
	diag_log(db, SESSDB_LOG_WARNING, "%s: Redis accepts writes again (after "
	    "%s)", db->path, r->refusing);
	r->refusing[0] = '\0';
}

/* unexpected - a reply of a type the command does not give. */
static int
unexpected(struct sessdb *db, const char *what, const redisReply *x)
{
	return diag_error(db, SESSDB_E_BACKEND, "%s: %s: unexpected reply "
	    "(type %d) from Redis", db->path, what, x->type);
}

/* take_value - hand a string reply's bytes over as out->val (a copy). */
static int
take_value(struct sessdb *db, redisReply *x, struct bitem *out)
{
	out->val = malloc(x->len > 0 ? x->len : 1);
	if (out->val == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	memcpy(out->val, x->str, x->len);
	out->val_len = x->len;
	return 1;
}

/* get_like - GET or GETDEL key: 1 (out->val), 0 absent, -1. */
static int
get_like(struct sessdb *db, const char *cmd, int idempotent,
    const unsigned char *key, size_t key_len, struct bitem *out)
{
	struct rds *r = db->be_state;
	char k[PREFIX_MAX + REC_KEY_MAX];
	const char *argv[2] = { cmd, k };
	size_t lens[2] = { strlen(cmd), make_key(r, k, key, key_len) };
	redisReply *x;
	int rc;

	memset(out, 0, sizeof(*out));
	if (one(db, idempotent, 2, argv, lens, &x) == -1)
		return -1;
	if (x->type == REDIS_REPLY_NIL)
		rc = 0;
	else if (x->type == REDIS_REPLY_STRING)
		rc = take_value(db, x, out);
	else if (x->type == REDIS_REPLY_ERROR)
		rc = reply_error(db, cmd, x, 0);
	else
		rc = unexpected(db, cmd, x);
	reply_free(x);
	return rc;
}

static int
redis_fetch(struct sessdb *db, const unsigned char *key, size_t key_len,
    struct bitem *out)
{
	return get_like(db, "GET", 1, key, key_len, out);
}

/* redis_take - GETDEL: one command, so one taker in the whole fleet.  Not
 * sent again on a broken connection: the first may have run. */
static int
redis_take(struct sessdb *db, const unsigned char *key, size_t key_len,
    struct bitem *out)
{
	return get_like(db, "GETDEL", 0, key, key_len, out);
}

/* redis_store - SET ... EX; with BSTORE_NEW, SET ... NX EX, which Redis
 * answers with a nil when a record is there (Redis expires its own): not
 * sent again on a broken connection, the first may have run. */
static int
redis_store(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires, unsigned flags)
{
	struct rds *r = db->be_state;
	char k[PREFIX_MAX + REC_KEY_MAX], ttl[24];
	int64_t secs = expires - sessdb_now(db);
	int only_new = (flags & BSTORE_NEW) != 0;
	const char *argv[6] = { "SET", k, (const char *)val, "EX", ttl, "NX" };
	size_t lens[6] = { 3, make_key(r, k, key, key_len), val_len, 2, 0, 2 };
	redisReply *x;
	int rc;

	/* The operations refuse records already expired; a second may
	 * have passed since. */
	lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%lld",
	    (long long)(secs > 0 ? secs : 1));
	if (one(db, !only_new, only_new ? 6 : 5, argv, lens, &x) == -1)
		return -1;
	if (only_new && x->type == REDIS_REPLY_NIL) {
		write_ok(db);
		rc = 2;
	} else if (x->type == REDIS_REPLY_STATUS) {
		write_ok(db);
		rc = 1;
	} else if (x->type == REDIS_REPLY_ERROR) {
		rc = reply_error(db, "SET", x, 1);
	} else {
		rc = unexpected(db, "SET", x);
	}
	reply_free(x);
	return rc;
}

static int
redis_remove(struct sessdb *db, const struct bitem *items, size_t n,
    int if_same, char *gone)
{
	struct rds *r = db->be_state;
	struct pipe p = { 0 };
	redisReply **rep;
	struct call k;
	char kb[PREFIX_MAX + REC_KEY_MAX];
	int rc = -1;
	size_t i;

	if (n == 0)
		return 0;
	rep = calloc(n, sizeof(*rep));
	if (rep == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	p.idempotent = 1;	/* deleting twice deletes once */
	for (i = 0; i < n; i++) {
		size_t kl = make_key(r, kb, items[i].key, items[i].key_len);

		if (if_same && items[i].val != NULL) {
			const char *argv[5] = { "EVAL", del_same_lua, "1", kb,
			    (const char *)items[i].val };
			size_t lens[5] = { 4, sizeof(del_same_lua) - 1, 1, kl,
			    items[i].val_len };

			if (pipe_add(db, &p, 5, argv, lens) == -1)
				goto out;
		} else {
			const char *argv[2] = { "DEL", kb };
			size_t lens[2] = { 3, kl };

			if (pipe_add(db, &p, 2, argv, lens) == -1)
				goto out;
		}
	}
	call_start(db, &k);
	if (run(db, &k, &p, rep) == -1)
		goto out;
	rc = 0;
	for (i = 0; i < n; i++) {
		if (rep[i]->type == REDIS_REPLY_INTEGER) {
			gone[i] = rep[i]->integer > 0;
		} else if (rc == 0) {
			rc = rep[i]->type == REDIS_REPLY_ERROR ?
			    reply_error(db, "DEL", rep[i], 0) :
			    unexpected(db, "DEL", rep[i]);
		}
		reply_free(rep[i]);
	}
out:
	pipe_free(&p);
	free(rep);
	return rc;
}

/* scan_keys - SCAN from s->cursor until it yields keys or ends; the keys
 * of the store's records (not its own keys) into s->items (values
 * NULL).  Half the budget at most: MGET needs the rest. */
static int
scan_keys(struct sessdb *db, struct bscan *s, size_t max, struct call *k)
{
	struct rds *r = db->be_state;
	char cur[24], cnt[24];
	uint64_t half = k->deadline - r->timeout_ms / 2;

	snprintf(cnt, sizeof(cnt), "%zu", max);
	do {
		const char *argv[6] = { "SCAN", cur, "MATCH", r->match, "COUNT",
		    cnt };
		size_t lens[6] = { 4, 0, 5, strlen(r->match), 5, strlen(cnt) };
		struct pipe p = { 0 };
		redisReply *x, *ks;
		char *end;

		lens[1] = (size_t)snprintf(cur, sizeof(cur), "%llu",
		    (unsigned long long)s->cursor);
		p.idempotent = 1;
		if (pipe_add(db, &p, 6, argv, lens) == -1)
			return -1;
		if (run(db, k, &p, &x) == -1) {
			pipe_free(&p);
			return -1;
		}
		pipe_free(&p);
		if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
		    x->element[0]->type != REDIS_REPLY_STRING ||
		    x->element[1]->type != REDIS_REPLY_ARRAY) {
			int rc = x->type == REDIS_REPLY_ERROR ?
			    reply_error(db, "SCAN", x, 0) : unexpected(db, "SCAN", x);

			reply_free(x);
			return rc;
		}
		errno = 0;
		s->cursor = strtoull(x->element[0]->str, &end, 10);
		if (errno != 0 || *end != '\0') {
			reply_free(x);
			return diag_error(db, SESSDB_E_BACKEND, "%s: SCAN: bad "
			    "cursor from Redis", db->path);
		}
		ks = x->element[1];
		/* SCAN returns whole hash buckets: a batch may hold a few more
		 * than COUNT keys.  They are all kept (none lost). */
		if (s->n + ks->elements > s->cap) {
			size_t cap = s->n + ks->elements;
			struct bitem *ni = realloc(s->items, cap * sizeof(*ni));

			if (ni == NULL) {
				reply_free(x);
				return diag_error(db, SESSDB_E_NOMEM, "out of memory");
			}
			s->items = ni;
			s->cap = cap;
		}
		for (size_t i = 0; i < ks->elements; i++) {
			redisReply *e = ks->element[i];
			struct bitem *it = &s->items[s->n];

			/* Only keys of our prefix that can be record keys: the
			 * reply is the server's, and a longer key would overrun
			 * the key buffers of mget and remove. */
			if (e->type != REDIS_REPLY_STRING || e->len <= r->prefix_len ||
			    e->len - r->prefix_len > REC_KEY_MAX ||
			    memcmp(e->str, r->prefix, r->prefix_len) != 0 ||
			    rec_key_is_meta(e->str + r->prefix_len,
			    e->len - r->prefix_len))
				continue;
			memset(it, 0, sizeof(*it));
			it->key_len = e->len - r->prefix_len;
			it->key = malloc(it->key_len > 0 ? it->key_len : 1);
			if (it->key == NULL) {
				reply_free(x);
				return diag_error(db, SESSDB_E_NOMEM, "out of memory");
			}
			memcpy(it->key, e->str + r->prefix_len, it->key_len);
			s->n++;
		}
		reply_free(x);
		if (s->cursor == 0)
			s->done = 1;
	} while (s->n == 0 && !s->done && mono_ms() < half);
	return 0;
}

/* mget - the values of the batch's keys, in one round trip (NULL for a
 * key gone meanwhile, or one that holds no string). */
static int
mget(struct sessdb *db, struct bscan *s, struct call *k)
{
	struct rds *r = db->be_state;
	const char **argv = calloc(s->n + 1, sizeof(*argv));
	size_t *lens = calloc(s->n + 1, sizeof(*lens));
	char *keys = malloc(s->n * (PREFIX_MAX + REC_KEY_MAX));
	struct pipe p = { 0 };
	redisReply *x = NULL;
	int rc = -1;

	if (argv == NULL || lens == NULL || keys == NULL) {
		diag_error(db, SESSDB_E_NOMEM, "out of memory");
		goto out;
	}
	argv[0] = "MGET";
	lens[0] = 4;
	for (size_t i = 0; i < s->n; i++) {
		char *kb = keys + i * (PREFIX_MAX + REC_KEY_MAX);

		argv[i + 1] = kb;
		lens[i + 1] = make_key(r, kb, s->items[i].key, s->items[i].key_len);
	}
	p.idempotent = 1;
	if (pipe_add(db, &p, (int)s->n + 1, argv, lens) == -1 ||
	    run(db, k, &p, &x) == -1)
		goto out;
	if (x->type != REDIS_REPLY_ARRAY || x->elements != s->n) {
		if (x->type == REDIS_REPLY_ERROR)
			reply_error(db, "MGET", x, 0);
		else
			unexpected(db, "MGET", x);
		goto out;
	}
	for (size_t i = 0; i < s->n; i++)
		if (x->element[i]->type == REDIS_REPLY_STRING &&
		    take_value(db, x->element[i], &s->items[i]) == -1)
			goto out;
	rc = 0;
out:
	reply_free(x);
	pipe_free(&p);
	free(argv);
	free(lens);
	free(keys);
	return rc;
}

/* redis_scan - a batch: SCAN then MGET, one call's budget for both.  The
 * cursor is Redis's, kept in s->cursor. */
static int
redis_scan(struct sessdb *db, struct bscan *s, size_t max)
{
	struct call k;

	bscan_clear(s);
	if (s->done)
		return 0;
	s->started = 1;
	call_start(db, &k);
	if (scan_keys(db, s, max > 0 ? max : 1, &k) == -1 ||
	    (s->n > 0 && mget(db, s, &k) == -1)) {
		bscan_clear(s);
		return -1;
	}
	return 0;
}

/* redis_scan_lag - a delete never disturbs SCAN (it may only return a key
 * twice if Redis resizes its table meanwhile). */
static int
redis_scan_lag(struct sessdb *db, uint64_t *lag)
{
	*lag = 0;
	return 0;
}

/* redis_claim_sweep - never: Redis expires records by itself and the
 * caps are not enforced here. */
static int
redis_claim_sweep(struct sessdb *db, int64_t now, int interval)
{
	return 0;
}

/* info_field - the number after "name:" in an INFO reply, or 0. */
static uint64_t
info_field(const char *info, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = info; p != NULL && *p != '\0'; ) {
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			return strtoull(p + n + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return 0;
}

/*
 * redis_info - what Redis reports, approximately: entries = DBSIZE (every
 *	key of the database, exact when the store has it to itself), bytes =
 *	used_memory_dataset, file_size = used_memory (the whole server's,
 *	with Redis's overhead), generation 0 (Redis keeps no change counter).
 */
static int
redis_info(struct sessdb *db, struct sessdb_info *info)
{
	const char *a1[1] = { "DBSIZE" }, *a2[2] = { "INFO", "memory" };
	size_t l1[1] = { 6 }, l2[2] = { 4, 6 };
	redisReply *rep[2] = { NULL, NULL };
	struct pipe p = { 0 };
	struct call k;
	int rc = -1;

	memset(info, 0, sizeof(*info));
	p.idempotent = 1;
	call_start(db, &k);
	if (pipe_add(db, &p, 1, a1, l1) == -1 || pipe_add(db, &p, 2, a2, l2) == -1 ||
	    run(db, &k, &p, rep) == -1)
		goto out;
	if (rep[0]->type != REDIS_REPLY_INTEGER || rep[1]->type !=
	    REDIS_REPLY_STRING) {
		if (rep[0]->type == REDIS_REPLY_ERROR)
			reply_error(db, "DBSIZE", rep[0], 0);
		else if (rep[1]->type == REDIS_REPLY_ERROR)
			reply_error(db, "INFO", rep[1], 0);
		else
			unexpected(db, "INFO", rep[1]);
		goto out;
	}
	info->entries = (uint64_t)rep[0]->integer;
	info->file_size = info_field(rep[1]->str, "used_memory");
	info->bytes = info_field(rep[1]->str, "used_memory_dataset");
	rc = 0;
out:
	reply_free(rep[0]);
	reply_free(rep[1]);
	pipe_free(&p);
	return rc;
}

/* redis_compact - nothing to give back: Redis frees memory itself. */
static int
redis_compact(struct sessdb *db)
{
	struct rds *r = db->be_state;

	if (!r->told_compact) {
		r->told_compact = 1;
		diag_log(db, SESSDB_LOG_INFO, "%s: Redis has no compaction; "
		    "nothing to do", db->path);
	}
	return 0;
}

/* redis_after_fork - the connection is the parent's: free our copy (the
 * socket stays open in the parent), connect on the next call. */
static int
redis_after_fork(struct sessdb *db)
{
	drop(db->be_state);
	return 0;
}

static void
redis_close(struct sessdb *db)
{
	struct rds *r = db->be_state;

	if (r == NULL)
		return;
	drop(r);
	if (r->pass != NULL)
		store_free_value(r->pass, r->pass_len);
	wipe_free(r->user);
	free(r->host);
	free(r->sock);
	free(r->prefix);
	free(r->match);
	free(r);
	db->be_state = NULL;
}

/*
 * redis_open - parse the URL and connect.  A server that cannot be
 *	reached now does not fail the open (the handle reconnects, and a
 *	server that starts while Redis is away keeps serving); one that
 *	refuses the password or the database number does: that is a
 *	configuration error.
 */
static int
redis_open(struct sessdb *db)
{
	struct rds *r = calloc(1, sizeof(*r));
	struct call k;

	if (r == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	db->be_state = r;
	if (parse_url(db, r) == -1)
		return -1;
	r->slot = endpoint_slot(r);
	if (db->opt.max_entries != 0 || db->opt.max_bytes != 0)
		diag_log(db, SESSDB_LOG_WARNING, "%s: max_entries and max_bytes "
		    "are not enforced on Redis; set its maxmemory", db->path);
	call_start(db, &k);
	if (connect_now(db, &k) == -1 && r->state == RS_REFUSED)
		return -1;
	db->st.errors = 0;
	return 0;
}

#else /* !SESSDB_HAVE_REDIS */

/* redis_open - this build has no hiredis: say so. */
static int
redis_open(struct sessdb *db)
{
	return diag_error(db, SESSDB_E_BACKEND, "%.*s store: built without "
	    "Redis support (it needs libhiredis: meson option redis)",
	    (int)strcspn(db->path, ":"), db->path);
}

static void
redis_close(struct sessdb *db)
{
}

#define redis_after_fork	NULL
#define redis_fetch		NULL
#define redis_store		NULL
#define redis_take		NULL
#define redis_remove		NULL
#define redis_scan		NULL
#define redis_scan_lag		NULL
#define redis_claim_sweep	NULL
#define redis_info		NULL
#define redis_compact		NULL

#endif /* SESSDB_HAVE_REDIS */

const struct backend backend_redis = {
	.name = "redis",
	.open = redis_open,
	.close = redis_close,
	.after_fork = redis_after_fork,
	.fetch = redis_fetch,
	.store = redis_store,
	.take = redis_take,
	.remove = redis_remove,
	.scan = redis_scan,
	.scan_lag = redis_scan_lag,
	.claim_sweep = redis_claim_sweep,
	.info = redis_info,
	.compact = redis_compact,
};
