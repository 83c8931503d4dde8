/*
 * NAME
 *	sessload - TLS resumption load client for sessdemo
 *
 * SYNOPSIS
 *	sessload --connect HOST:PORT [--connect HOST:PORT ...]
 *	    [--connections K] [--parallel C]
 *	    [--tls 1.2|1.3] [--new] [--early-data] [--ca FILE] [--path PATH]
 *	    [--cache PATH [--cache-key FILE]] [--sni NAME] [--cert FILE --key FILE]
 *	    [--share-client-cert] [--timeout SECS] [--json]
 *
 * DESCRIPTION
 *	Opens K connections, C at a time.  Each of the C lanes is a process
 *	that makes its share of the connections one after the other, each
 *	offering the session saved from the lane's previous connection (none
 *	with --new).  A connection is: TCP connect, handshake, one HTTP GET,
 *	the whole response read (so TLS 1.3 tickets, sent before it, are in),
 *	then the session saved and close_notify sent.  The response of
 *	sessdemo names the worker pid, which the lane compares with the pid
 *	of its previous connection: a resumption on another pid proves the
 *	session crossed processes.
 *
 *	With several --connect targets (servers on several machines that
 *	share one store), connections go round-robin: lane i's connection j
 *	goes to target (i + j) mod T, so each connection offers a session
 *	that another target issued, and a resumption proves the session
 *	crossed hosts.  The report gives each target's own counts.
 *
 *	With --cache PATH (a store file, or a redis:// URL), the lanes do not
 *	keep sessions themselves: every connection names its peer to the
 *	client glue (sessdb_ssl_client_peer), which offers a session from
 *	the shared store and stores the ones the server sends, so the lanes
 *	of this and of other sessload processes resume each other's
 *	sessions.  The report then counts the lanes whose first connection
 *	resumed (first_resumed): without a shared cache that is always 0.
 *
 *	Lanes write their results and each connection's latency into a
 *	shared anonymous mapping; the parent times the whole run, merges the
 *	results, sorts the latencies for percentiles and prints them.
 *
 * DIAGNOSTICS
 *	Exit status 0 if every connection succeeded, 1 if any failed, 2 on
 *	bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "tooling.h"

#define MAX_PARALLEL	1024
#define MAX_PIDS	256		/* distinct server pids remembered per lane */
#define RESP_MAX	4096
#define MAX_TARGETS	16

/* One --connect target. */
struct target {
	char		host[256];
	char		port[16];
	const char	*spec;		/* as given */
	struct addrinfo	*ai;
};

struct options {
	struct target	targets[MAX_TARGETS];
	int		ntargets;
	long		connections;
	int		parallel;
	int		tls_min;
	int		tls_max;
	int		fresh;		/* --new */
	int		early;
	int		json;
	int		timeout_s;
	const char	*ca;
	const char	*path;
	const char	*cache;		/* --cache: the shared client store */
	const char	*cache_key;	/* --cache-key: its records are sealed */
	char		*sni;		/* --sni: instead of the host name */
	const char	*cert;		/* --cert, --key: a client certificate */
	const char	*key;
	int		share_cert;	/* --share-client-cert */
};

/* One target's share of a lane's results. */
struct tcount {
	uint64_t	ok;
	uint64_t	failed;
	uint64_t	offered;
	uint64_t	resumed;
};

/* One lane's results, in the shared mapping. */
struct lane {
	uint64_t	ok;
	uint64_t	failed;
	uint64_t	offered;	/* connections that offered a session */
	uint64_t	resumed;	/* SSL_session_reused on the client */
	uint64_t	cross;		/* resumed on a pid other than the previous one */
	uint64_t	cross_target;	/* resumed on another target than the
					   previous connection */
	struct tcount	per[MAX_TARGETS];
	uint64_t	server_resumed;	/* the server's response said resumed=1 */
	uint64_t	tls12;
	uint64_t	tls13;
	uint64_t	early_sent;
	uint64_t	early_accepted;
	uint64_t	first_offered;	/* lanes whose first connection offered */
	uint64_t	first_resumed;	/* ... and resumed */
	uint64_t	lanes;		/* lanes that made a first connection */
	struct sessdb_ssl_client_stats cst; /* --cache: the client glue's counters */
	int		done;		/* the lane finished and wrote its results */
	uint64_t	lat_sum_us;	/* sum of connection latencies */
	int		npids;
	int		pid_overflow;
	int		pids[MAX_PIDS];
	char		error[160];	/* first failure */
};

/* What one connection found out. */
struct result {
	int	offered;	/* a session was offered */
	int	pid;		/* server worker pid from the response, 0 unknown */
	int	server_resumed;
	int	resumed;
	int	early_accepted;
};

static const char usage_text[] =
"usage: sessload --connect HOST:PORT [--connect HOST:PORT ...]\n"
"                [--connections K] [--parallel C] [--tls 1.2|1.3] [--new]\n"
"                [--early-data] [--ca FILE] [--path PATH] [--cache PATH]\n"
"                [--cache-key FILE] [--sni NAME] [--cert FILE --key FILE] [--share-client-cert]\n"
"                [--timeout SECS] [--json]\n";

/* want_long - parse option name's value arg into *out, in [lo, hi];
 * -1 after saying what was wanted */
static int
want_long(const char *name, const char *arg, long lo, long hi, long *out)
{
	if (tool_parse_long(arg, lo, hi, out) == 0)
		return 0;
	fprintf(stderr, "sessload: --%s: want a number from %ld to %ld, got '%s'\n",
	    name, lo, hi, arg);
	return -1;
}

/* bad_arg - say why an option's value is refused; returns -1 */
static int
bad_arg(const char *name, const char *arg, const char *want)
{
	fprintf(stderr, "sessload: --%s: want %s, got '%s'\n", name, want, arg);
	return -1;
}

/* check_path - the request path: "/...", at most 256 bytes, no spaces */
static int
check_path(const char *path)
{
	if (path[0] != '/' || strpbrk(path, " \r\n") != NULL ||
	    strlen(path) > 256)
		return bad_arg("path", path, "a path starting with '/', at most "
		    "256 bytes, without spaces");
	return 0;
}

/* parse_args - fill o from argv; -1 on bad usage (the problem and the
 * usage printed) */
static int
parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "connect",	 required_argument, NULL, 'c' },
		{ "connections", required_argument, NULL, 'k' },
		{ "parallel",	 required_argument, NULL, 'p' },
		{ "tls",	 required_argument, NULL, 't' },
		{ "new",	 no_argument,	    NULL, 'n' },
		{ "early-data",	 no_argument,	    NULL, 'e' },
		{ "ca",		 required_argument, NULL, 'a' },
		{ "path",	 required_argument, NULL, 'P' },
		{ "timeout",	 required_argument, NULL, 'T' },
		{ "json",	 no_argument,	    NULL, 'j' },
		{ "cache",	 required_argument, NULL, 'C' },
		{ "cache-key",	 required_argument, NULL, 'Y' },
		{ "sni",	 required_argument, NULL, 'S' },
		{ "cert",	 required_argument, NULL, 'X' },
		{ "key",	 required_argument, NULL, 'K' },
		{ "share-client-cert", no_argument, NULL, 's' },
		{ "help",	 no_argument,	    NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct target *t;
	int ch, bad = 0;
	long v;

	*o = (struct options){ .connections = 100, .parallel = 1, .path = "/",
	    .tls_min = TLS1_2_VERSION, .tls_max = TLS1_3_VERSION, .timeout_s = 10 };
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (o->ntargets == MAX_TARGETS) {
				bad = bad_arg("connect", optarg, "at most 16 "
				    "targets");
				break;
			}
			t = &o->targets[o->ntargets];
			if (tool_parse_hostport(optarg, t->host, sizeof t->host,
			    t->port, sizeof t->port) == -1)
				bad = bad_arg("connect", optarg, "HOST:PORT");
			t->spec = optarg;
			o->ntargets++;
			break;
		case 'k':
			bad |= want_long("connections", optarg, 1, 10000000,
			    &o->connections);
			break;
		case 'p':
			if (want_long("parallel", optarg, 1, MAX_PARALLEL, &v) == 0)
				o->parallel = (int)v;
			else
				bad = -1;
			break;
		case 't':
			if (strcmp(optarg, "1.2") == 0)
				o->tls_min = o->tls_max = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3") == 0)
				o->tls_min = o->tls_max = TLS1_3_VERSION;
			else
				bad = bad_arg("tls", optarg, "1.2 or 1.3");
			break;
		case 'n': o->fresh = 1; break;
		case 'e': o->early = 1; break;
		case 'a': o->ca = optarg; break;
		case 'P': o->path = optarg; break;
		case 'T':
			if (want_long("timeout", optarg, 1, 3600, &v) == 0)
				o->timeout_s = (int)v;
			else
				bad = -1;
			break;
		case 'j': o->json = 1; break;
		case 'C': o->cache = optarg; break;
		case 'Y': o->cache_key = optarg; break;
		case 'S':
			if (optarg[0] == '\0' || strlen(optarg) > 255)
				bad = bad_arg("sni", optarg, "a name of 1 to "
				    "255 bytes");
			o->sni = optarg;
			break;
		case 'X': o->cert = optarg; break;
		case 'K': o->key = optarg; break;
		case 's': o->share_cert = 1; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		default: bad = -1; break;	/* getopt named the option */
		}
	}
	if (!bad && o->ntargets == 0) {
		fputs("sessload: --connect HOST:PORT is required\n", stderr);
		bad = -1;
	}
	if (!bad && optind != argc) {
		fprintf(stderr, "sessload: unexpected argument '%s'\n",
		    argv[optind]);
		bad = -1;
	}
	if (!bad && (o->cert == NULL) != (o->key == NULL)) {
		fputs("sessload: --cert and --key go together\n", stderr);
		bad = -1;
	}
	if (!bad && o->cache_key != NULL && o->cache == NULL) {
		fputs("sessload: --cache-key goes with --cache\n", stderr);
		bad = -1;
	}
	if (!bad && o->cache != NULL && (o->fresh || o->early)) {
		fputs("sessload: --cache does not go with --new or "
		    "--early-data\n", stderr);
		bad = -1;
	}
	if (bad || check_path(o->path) == -1) {
		fputs(usage_text, stderr);
		return -1;
	}
	if (o->parallel > o->connections)
		o->parallel = (int)o->connections;
	return 0;
}

/* make_ctx - the client SSL_CTX, shared by all connections of a lane */
static SSL_CTX *
make_ctx(const struct options *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, o->tls_min);
	SSL_CTX_set_max_proto_version(ctx, o->tls_max);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (o->ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (o->cert != NULL &&
	    (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* lane_error - remember the first failure of the lane */
static void
lane_error(struct lane *l, const char *what)
{
	char ssl[120] = "";
	unsigned long e = ERR_peek_error();

	if (l->error[0] == '\0') {
		if (e != 0)
			ERR_error_string_n(e, ssl, sizeof ssl);
		else if (errno != 0)
			snprintf(ssl, sizeof ssl, "%s", strerror(errno));
		snprintf(l->error, sizeof l->error, "%s%s%s", what,
		    ssl[0] ? ": " : "", ssl);
	}
	ERR_clear_error();
}

/* tcp_connect - a connected TCP socket to ai with the I/O timeouts set */
static int
tcp_connect(const struct addrinfo *ai, int timeout_s)
{
	struct timeval tv = { .tv_sec = timeout_s };
	int fd, one = 1;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* body_complete - whether resp holds the head and Content-Length bytes */
static int
body_complete(const char *resp, size_t len)
{
	const char *end = memmem(resp, len, "\r\n\r\n", 4);
	const char *cl;
	long clen;

	if (end == NULL)
		return 0;
	cl = strcasestr(resp, "\r\nContent-Length:");
	if (cl == NULL || cl > end)
		return 0;
	clen = strtol(cl + 17, NULL, 10);
	return (size_t)(end + 4 - resp) + (size_t)clen <= len;
}

/* read_response - read the HTTP response until complete or EOF */
static int
read_response(SSL *ssl, char *resp, size_t cap)
{
	size_t len = 0;
	int n;

	while (len < cap - 1 && !body_complete(resp, len)) {
		n = SSL_read(ssl, resp + len, (int)(cap - 1 - len));
		if (n <= 0)
			break;
		len += (size_t)n;
		resp[len] = '\0';
	}
	resp[len] = '\0';
	return strncmp(resp, "HTTP/1.", 7) == 0 ? 0 : -1;
}

/* parse_body - the worker pid and resumed flag from sessdemo's response */
static void
parse_body(const char *resp, struct result *r)
{
	const char *p = strstr(resp, "\r\n\r\npid=");
	const char *q = strstr(resp, " resumed=");

	r->pid = p ? atoi(p + 8) : 0;
	r->server_resumed = q ? q[9] == '1' : 0;
}

/* send_request - the GET, as early data if the session allows it */
static int
send_request(SSL *ssl, const char *req, size_t len, int try_early, struct result *r,
    struct lane *l)
{
	size_t written = 0;

	if (try_early) {
		if (SSL_write_early_data(ssl, req, len, &written) != 1)
			return -1;
		l->early_sent++;
	}
	if (SSL_connect(ssl) != 1)
		return -1;
	if (try_early && SSL_get_early_data_status(ssl) == SSL_EARLY_DATA_ACCEPTED) {
		r->early_accepted = 1;
		return 0;
	}
	return SSL_write(ssl, req, (int)len) == (int)len ? 0 : -1;
}

/* is_numeric_host - an IP address literal (sent without SNI) */
static int
is_numeric_host(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* name_peer - name the connection's peer to the client glue (SNI, and the
 * shared cache's session if it has one for the peer); 0 or -1. */
static int
name_peer(const struct options *o, SSL *ssl, const struct target *t,
    struct result *r, struct lane *l)
{
	struct sessdb_ssl_peer peer = { .host = t->host, .ca_file = o->ca };
	int rc;

	peer.port = (unsigned)atoi(t->port);
	if (o->sni != NULL)
		peer.sni = o->sni;
	else if (!is_numeric_host(t->host))
		peer.sni = t->host;
	if ((rc = sessdb_ssl_client_peer(ssl, &peer)) < 0) {
		lane_error(l, "sessdb_ssl_client_peer");
		return -1;
	}
	if (rc == 1) {
		l->offered++;
		r->offered = 1;
	}
	return 0;
}

/* one_conn - one connection offering *sess (or, with db, what the shared
 * cache has for the peer); on success *sess is replaced by the
 * connection's session (unless fresh or db).  0 or -1. */
static int
one_conn(const struct options *o, SSL_CTX *ctx, struct sessdb *db,
    const struct target *t, SSL_SESSION **sess, struct result *r,
    struct lane *l)
{
	char req[512], resp[RESP_MAX];
	SSL *ssl = NULL;
	int fd, rc = -1, try_early;

	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\n\r\n", o->path, t->host);
	if ((fd = tcp_connect(t->ai, o->timeout_s)) < 0) {
		lane_error(l, "connect");
		return -1;
	}
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		lane_error(l, "SSL_new");
		goto done;
	}
	if (o->ca != NULL && !is_numeric_host(t->host))
		SSL_set1_host(ssl, t->host);
	if (db != NULL) {
		if (name_peer(o, ssl, t, r, l) < 0)
			goto done;
	} else if (o->sni != NULL || !is_numeric_host(t->host))
		SSL_set_tlsext_host_name(ssl, (o->sni ? o->sni : t->host));
	if (db == NULL && *sess != NULL && !o->fresh) {
		SSL_set_session(ssl, *sess);
		l->offered++;
		r->offered = 1;
	}
	try_early = db == NULL && o->early && *sess != NULL && !o->fresh &&
	    SSL_SESSION_get_max_early_data(*sess) > 0;
	if (send_request(ssl, req, strlen(req), try_early, r, l) < 0) {
		lane_error(l, "handshake");
		goto done;
	}
	if (read_response(ssl, resp, sizeof resp) < 0) {
		lane_error(l, "response");
		goto done;
	}
	parse_body(resp, r);
	r->resumed = SSL_session_reused(ssl);
	if (SSL_version(ssl) == TLS1_3_VERSION)
		l->tls13++;
	else
		l->tls12++;
	if (!o->fresh && db == NULL) {
		SSL_SESSION_free(*sess);
		*sess = SSL_get1_session(ssl);
	}
	SSL_shutdown(ssl);
	rc = 0;
done:
	ERR_clear_error();
	SSL_free(ssl);
	close(fd);
	return rc;
}

/* note_pid - add pid to the lane's set of distinct worker pids */
static void
note_pid(struct lane *l, int pid)
{
	int i;

	if (pid <= 0)
		return;
	for (i = 0; i < l->npids; i++)
		if (l->pids[i] == pid)
			return;
	if (l->npids == MAX_PIDS) {
		l->pid_overflow = 1;
		return;
	}
	l->pids[l->npids++] = pid;
}

/* cache_log - the client store's log messages, on stderr. */
static void
cache_log(void *arg, int level, const char *msg)
{
	fprintf(stderr, "sessload: --cache: %s\n", msg);
}

/* run_lane - n connections in a row, each offering the previous session,
 * lane number k's connection i to target (k + i) mod T; lat[i] gets
 * connection i's latency in microseconds (0 if it failed) */
static void
run_lane(const struct options *o, int k, long n, struct lane *l, uint32_t *lat)
{
	SSL_CTX *ctx = make_ctx(o);
	SSL_SESSION *sess = NULL;
	struct sessdb *db = NULL;
	struct sessdb_options dbo = { .log = cache_log, .key_file = o->cache_key };
	char err[256];
	int prev_pid = 0, prev_target = -1;
	long i;

	if (ctx == NULL) {
		lane_error(l, "SSL_CTX");
		l->failed = (uint64_t)n;
		goto done;
	}
	if (o->cache != NULL) {
		if ((db = sessdb_open(o->cache, &dbo, err, sizeof err)) == NULL ||
		    sessdb_ssl_attach_client(ctx, db, o->share_cert ?
		    SESSDB_SSL_SHARE_CLIENT_CERT : 0) < 0) {
			snprintf(l->error, sizeof l->error, "--cache %.40s: %.100s",
			    o->cache, db == NULL ? err : "attach failed");
			l->failed = (uint64_t)n;
			goto done;
		}
	}
	for (i = 0; i < n; i++) {
		struct result r = { 0 };
		int ti = (int)((k + i) % o->ntargets);
		struct tcount *tc = &l->per[ti];
		double t0 = tool_now_s();
		int rc = one_conn(o, ctx, db, &o->targets[ti], &sess, &r, l);
		uint64_t us = (uint64_t)((tool_now_s() - t0) * 1e6);

		lat[i] = rc < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : us < 1 ? 1 : (uint32_t)us;
		tc->offered += (uint64_t)r.offered;
		if (rc < 0) {
			l->failed++;
			tc->failed++;
			SSL_SESSION_free(sess);
			sess = NULL;
			prev_pid = 0;
			prev_target = -1;
			continue;
		}
		l->ok++;
		tc->ok++;
		if (i == 0) {
			l->lanes++;
			l->first_offered += (uint64_t)r.offered;
			l->first_resumed += (uint64_t)r.resumed;
		}
		tc->resumed += (uint64_t)r.resumed;
		if (r.resumed && prev_target >= 0 && ti != prev_target)
			l->cross_target++;
		prev_target = ti;
		l->lat_sum_us += lat[i];
		l->resumed += (uint64_t)r.resumed;
		l->server_resumed += (uint64_t)r.server_resumed;
		l->early_accepted += (uint64_t)r.early_accepted;
		if (r.resumed && prev_pid != 0 && r.pid != prev_pid)
			l->cross++;
		note_pid(l, r.pid);
		prev_pid = r.pid;
	}
done:
	SSL_SESSION_free(sess);
	if (db != NULL)
		(void)sessdb_ssl_client_stats(ctx, &l->cst);
	SSL_CTX_free(ctx);
	sessdb_close(db);		/* after the ctx that uses it */
	l->done = 1;
}

/* merge - add lane b into the total a (pids merged as a set) */
static void
merge(struct lane *a, const struct lane *b)
{
	int i;

	a->ok += b->ok;
	a->failed += b->failed;
	a->offered += b->offered;
	a->resumed += b->resumed;
	a->cross += b->cross;
	a->cross_target += b->cross_target;
	for (i = 0; i < MAX_TARGETS; i++) {
		a->per[i].ok += b->per[i].ok;
		a->per[i].failed += b->per[i].failed;
		a->per[i].offered += b->per[i].offered;
		a->per[i].resumed += b->per[i].resumed;
	}
	a->server_resumed += b->server_resumed;
	a->tls12 += b->tls12;
	a->tls13 += b->tls13;
	a->early_sent += b->early_sent;
	a->early_accepted += b->early_accepted;
	a->first_offered += b->first_offered;
	a->first_resumed += b->first_resumed;
	a->lanes += b->lanes;
	a->cst.hits += b->cst.hits;
	a->cst.taken += b->cst.taken;
	a->cst.misses += b->cst.misses;
	a->cst.stores += b->cst.stores;
	a->cst.store_failures += b->cst.store_failures;
	a->cst.skipped += b->cst.skipped;
	a->cst.refused += b->cst.refused;
	a->cst.rejected += b->cst.rejected;
	a->lat_sum_us += b->lat_sum_us;
	a->pid_overflow |= b->pid_overflow;
	for (i = 0; i < b->npids; i++)
		note_pid(a, b->pids[i]);
	if (a->error[0] == '\0')
		memcpy(a->error, b->error, sizeof a->error);
}

/* Connection latency summary, milliseconds. */
struct latency {
	double	avg, p50, p90, p99, max;
};

/* cmp_u32 - qsort comparator for latencies */
static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* latency_summary - sort the successful latencies (in place) and summarise */
static void
latency_summary(uint32_t *lat, long n, const struct lane *t, struct latency *out)
{
	long i, k = 0;

	for (i = 0; i < n; i++)
		if (lat[i] != 0)
			lat[k++] = lat[i];
	*out = (struct latency){ 0 };
	if (k == 0)
		return;
	qsort(lat, (size_t)k, sizeof *lat, cmp_u32);
	out->avg = (double)t->lat_sum_us / (double)k / 1000.0;
	out->p50 = lat[(k - 1) * 50 / 100] / 1000.0;
	out->p90 = lat[(k - 1) * 90 / 100] / 1000.0;
	out->p99 = lat[(k - 1) * 99 / 100] / 1000.0;
	out->max = lat[k - 1] / 1000.0;
}

/* pct - a/b as a percentage, 0 when b is 0 */
static double
pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 0.0;
}

/* report_targets_json - the end of the JSON object: each target's counts
 * and the resumptions that crossed targets */
static void
report_targets_json(const struct options *o, const struct lane *t)
{
	int i;

	printf(",\"cross_target_resumed\":%" PRIu64 ",\"targets\":[",
	    t->cross_target);
	for (i = 0; i < o->ntargets; i++) {
		const struct tcount *c = &t->per[i];

		/* HOST:PORT as parsed: no quote or backslash can reach it
		 * through getaddrinfo, but escape them all the same */
		printf("%s{\"connect\":\"", i ? "," : "");
		for (const char *p = o->targets[i].spec; *p; p++) {
			if (*p == '"' || *p == '\\')
				putchar('\\');
			putchar((unsigned char)*p < 0x20 ? '?' : *p);
		}
		printf("\",\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
		    ",\"offered\":%" PRIu64 ",\"resumed\":%" PRIu64 "}",
		    c->ok, c->failed, c->offered, c->resumed);
	}
	printf("]}\n");
}

/* report - print the merged results, as text or one JSON object */
static void
report(const struct options *o, const struct lane *t, const struct latency *lt,
    double secs, long lost)
{
	double rate = secs > 0 ? (double)t->ok / secs : 0;
	uint64_t conns = t->ok + t->failed;
	int i;

	if (o->json) {
		printf("{\"connections\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"failed\":%"
		    PRIu64 ",\"seconds\":%.3f,\"conn_per_sec\":%.1f,\"offered\":%"
		    PRIu64 ",\"resumed\":%" PRIu64 ",\"resumed_fraction\":%.4f,"
		    "\"server_resumed\":%" PRIu64 ",\"cross_worker_resumed\":%" PRIu64
		    ",\"worker_pids\":%d,\"tls12\":%" PRIu64 ",\"tls13\":%" PRIu64
		    ",\"early_sent\":%" PRIu64 ",\"early_accepted\":%" PRIu64
		    ",\"lost_lanes\":%ld,\"parallel\":%d,\"new\":%s,"
		    "\"latency_ms\":{\"avg\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
		    "\"p99\":%.3f,\"max\":%.3f},\"cache\":%s,\"lanes\":%" PRIu64
		    ",\"first_offered\":%" PRIu64 ",\"first_resumed\":%" PRIu64,
		    conns, t->ok, t->failed, secs, rate, t->offered, t->resumed,
		    conns ? (double)t->resumed / (double)conns : 0.0, t->server_resumed,
		    t->cross, t->npids, t->tls12, t->tls13, t->early_sent,
		    t->early_accepted, lost, o->parallel, o->fresh ? "true" : "false",
		    lt->avg, lt->p50, lt->p90, lt->p99, lt->max,
		    o->cache ? "true" : "false", t->lanes, t->first_offered,
		    t->first_resumed);
		if (o->cache)
			printf(",\"client_cache\":{\"hits\":%" PRIu64 ",\"taken\":%"
			    PRIu64 ",\"misses\":%" PRIu64 ",\"stores\":%" PRIu64
			    ",\"store_failures\":%" PRIu64 ",\"skipped\":%" PRIu64
			    ",\"refused\":%" PRIu64 ",\"rejected\":%" PRIu64 "}",
			    t->cst.hits, t->cst.taken, t->cst.misses, t->cst.stores,
			    t->cst.store_failures, t->cst.skipped, t->cst.refused,
			    t->cst.rejected);
		report_targets_json(o, t);
		return;
	}
	printf("sessload: %" PRIu64 " connections (%d parallel%s): %" PRIu64 " ok, %"
	    PRIu64 " failed in %.3f s = %.1f conn/s\n", conns, o->parallel,
	    o->fresh ? ", --new" : "", t->ok, t->failed, secs, rate);
	printf("sessload: resumed %" PRIu64 "/%" PRIu64 " = %.1f%% (%" PRIu64
	    " offered a session; %" PRIu64 " resumed on another worker than the"
	    " previous connection)\n", t->resumed, conns, pct(t->resumed, conns),
	    t->offered, t->cross);
	printf("sessload: %d distinct worker pids%s; TLSv1.2 %" PRIu64 ", TLSv1.3 %"
	    PRIu64 "\n", t->npids, t->pid_overflow ? " (or more)" : "", t->tls12,
	    t->tls13);
	printf("sessload: latency ms: avg %.2f, p50 %.2f, p90 %.2f, p99 %.2f, max %.2f\n",
	    lt->avg, lt->p50, lt->p90, lt->p99, lt->max);
	printf("sessload: first connections: %" PRIu64 "/%" PRIu64 " lanes "
	    "resumed%s\n", t->first_resumed, t->lanes,
	    o->cache ? " (shared client cache)" : "");
	if (o->cache)
		printf("sessload: client cache: %" PRIu64 " hits (%" PRIu64
		    " tickets taken), %" PRIu64 " misses, %" PRIu64 " stored, %"
		    PRIu64 " store failures, %" PRIu64 " skipped, %" PRIu64
		    " refused, %" PRIu64 " rejected\n", t->cst.hits, t->cst.taken,
		    t->cst.misses, t->cst.stores, t->cst.store_failures,
		    t->cst.skipped, t->cst.refused, t->cst.rejected);
	if (o->early)
		printf("sessload: early data sent %" PRIu64 ", accepted %" PRIu64 "\n",
		    t->early_sent, t->early_accepted);
	for (i = 0; o->ntargets > 1 && i < o->ntargets; i++) {
		const struct tcount *c = &t->per[i];

		printf("sessload: target %s: %" PRIu64 " ok, %" PRIu64 " failed, "
		    "resumed %" PRIu64 "/%" PRIu64 " offered = %.1f%%\n",
		    o->targets[i].spec, c->ok, c->failed, c->resumed, c->offered,
		    pct(c->resumed, c->offered));
	}
	if (o->ntargets > 1)
		printf("sessload: %" PRIu64 " resumed on another target than the "
		    "previous connection\n", t->cross_target);
	if (t->error[0] != '\0')
		printf("sessload: first error: %s\n", t->error);
}

/* resolve - each target's addresses (the first is used); 0, or -1 */
static int
resolve(struct options *o)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct target *t;
	int i, rc;

	for (i = 0; i < o->ntargets; i++) {
		t = &o->targets[i];
		if ((rc = getaddrinfo(t->host, t->port, &hints, &t->ai)) != 0) {
			fprintf(stderr, "sessload: %s:%s: %s\n", t->host,
			    t->port, gai_strerror(rc));
			t->ai = NULL;
			return -1;
		}
	}
	return 0;
}

/* unresolve - free the targets' addresses */
static void
unresolve(struct options *o)
{
	for (int i = 0; i < o->ntargets; i++) {
		if (o->targets[i].ai != NULL)
			freeaddrinfo(o->targets[i].ai);
		o->targets[i].ai = NULL;
	}
}

/* run_lanes - fork the lanes, wait for them; returns lanes that died.
 * Lane i makes connections [start, start + n) and writes their latencies
 * to lat[start...]. */
static long
run_lanes(const struct options *o, struct lane *lanes, uint32_t *lat)
{
	long share = o->connections / o->parallel, extra = o->connections % o->parallel;
	long lost = 0, start = 0, n;
	int i, status;
	pid_t pid;

	fflush(stdout);
	for (i = 0; i < o->parallel; i++, start += n) {
		n = share + (i < extra);
		pid = fork();
		if (pid < 0) {
			fprintf(stderr, "sessload: fork: %s\n", strerror(errno));
			lanes[i].failed = (uint64_t)n;
			continue;
		}
		if (pid == 0) {
			run_lane(o, i, n, &lanes[i], lat + start);
			_exit(0);
		}
	}
	while (wait(&status) > 0 || errno == EINTR)
		;
	for (i = 0; i < o->parallel; i++)
		if (!lanes[i].done && lanes[i].ok + lanes[i].failed == 0)
			lost++;
	return lost;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct lane *lanes, total = { 0 };
	struct latency lt;
	size_t lanes_len, lat_len;
	uint32_t *lat;
	double t0, secs;
	long lost;
	int i;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (resolve(&o) == -1) {
		unresolve(&o);
		return 1;
	}
	/* results and latencies are written by the lane processes */
	lanes_len = sizeof *lanes * (size_t)o.parallel;
	lat_len = sizeof *lat * (size_t)o.connections;
	lanes = mmap(NULL, lanes_len + lat_len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (lanes == MAP_FAILED) {
		fprintf(stderr, "sessload: mmap: %s\n", strerror(errno));
		unresolve(&o);
		return 1;
	}
	lat = (uint32_t *)(void *)((char *)lanes + lanes_len);
	t0 = tool_now_s();
	lost = run_lanes(&o, lanes, lat);
	secs = tool_now_s() - t0;
	for (i = 0; i < o.parallel; i++)
		merge(&total, &lanes[i]);
	latency_summary(lat, o.connections, &total, &lt);
	report(&o, &total, &lt, secs, lost);
	munmap(lanes, lanes_len + lat_len);
	unresolve(&o);
	return total.failed == 0 && lost == 0 && total.ok > 0 ? 0 : 1;
}
