/*
 * NAME
 *	mod_socache_sessdb.c - an Apache httpd small-object cache provider
 *	("socache") on a sessdb store
 *
 * SYNOPSIS
 *	LoadModule socache_sessdb_module modules/mod_socache_sessdb.so
 *	SSLSessionCache sessdb:/var/cache/apache2/sessdb/sessions.db
 *	SSLStaplingCache sessdb:/var/cache/apache2/sessdb/sessions.db
 *	SessdbMaxBytes 256M		(the default cap of each store; 0: none)
 *	SessdbMaxEntries 0		(the default: no cap on the count)
 *	SessdbKeyFile /etc/apache2/sessdb.key	(seal records: AES-256-GCM)
 *
 * DESCRIPTION
 *	Registers the socache provider "sessdb".  Its argument is what
 *	sessdb_open(3) takes: a file path (relative paths are taken from
 *	DefaultRuntimeDir, as dbm: does) or a redis:// or unix: URL.
 *
 *	Every consumer that shares a store keeps its own namespace: mod_ssl's
 *	sessions ("mod_ssl-sess") go to the server-session namespace
 *	under their raw ID, the DER of an SSL_SESSION, exactly as the
 *	OpenSSL glue stores them, so sessdump reads them as sessions; every
 *	other consumer (OCSP stapling, mod_authn_socache, mod_cache_socache)
 *	gets the opaque namespace with its consumer name in front of its
 *	key (docs/FORMAT.md, format 2.1).
 *
 *	Process model: init runs in the parent, as root when Apache starts
 *	as root.  It opens the store once, which creates the files and
 *	checks them, makes them the User's (children run as User, and the
 *	library refuses files of another owner to anyone but root), and
 *	closes it again: children open their own handles on first use.
 *	A handle is not thread-safe, so each process keeps a small pool of
 *	handles: a thread takes one (or opens one) for a call and gives it
 *	back; no call holds a store lock between calls, so the provider
 *	needs no AP_SOCACHE_FLAG_NOTMPSAFE serialisation.
 *
 *	Expiry arrives as apr_time_t microseconds and is rounded up to the
 *	next second (the record format keeps seconds), so a record with
 *	under a second left is stored for that second rather than refused;
 *	an expiry already past stores nothing.
 *
 * DIAGNOSTICS
 *	Store errors go to the error log with the library's message; a
 *	failed store or lookup is a cache miss for the consumer, never a
 *	failed request.  A store that cannot be opened at startup stops
 *	Apache with the reason.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "mod_status.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"
#include "unixd.h"

#include "sessdb.h"

/* mod_ssl's session cache names itself "mod_ssl-sess" (2.4.71), and
 * "mod_ssl-session" in some earlier 2.4 releases: both are sessions. */
#define CONSUMER_SESSIONS "mod_ssl-sess"
#define MAX_TTL		(30 * 86400)	/* caps absurd expiries, not HTTP's */
#define DEFAULT_MAX_BYTES (256ull << 20) /* a flood must not fill the disk */

/* The caps of every store this server opens (SessdbMaxEntries,
 * SessdbMaxBytes): read from the configuration before init opens them,
 * back to the defaults before each reading (pre_config). */
static uint64_t cap_entries, cap_bytes = DEFAULT_MAX_BYTES;
static const char *key_file;	/* SessdbKeyFile: seal every record */

module AP_MODULE_DECLARE_DATA socache_sessdb_module;

struct ap_socache_instance_t {
	const char		*path;		/* as sessdb_open takes it */
	int			is_file;	/* a file store (not Redis) */
	server_rec		*s;		/* for the log callback */
	unsigned		ns;		/* SESSDB_NS_SERVER or _OPAQUE */
	unsigned char		prefix[SESSDB_CONSUMER_MAX + 1];
	size_t			prefix_len;	/* consumer name and 0x00; 0 for
						   sessions */
	const char		*consumer;
#if APR_HAS_THREADS
	apr_thread_mutex_t	*mu;		/* guards idle, nidle, pid, closed */
#endif
	struct sessdb		**idle;		/* handles no thread is using */
	int			nidle, cap;
	pid_t			pid;		/* process the idle handles are of */
	struct sessdb_stats	closed;		/* counters of closed handles */
	uint64_t		max_entries;	/* caps, 0 = none */
	uint64_t		max_bytes;
	const char		*key_file;	/* sealing keys, NULL = none */
};

/* log_cb - the library's operator messages into the error log. */
static void
log_cb(void *arg, int level, const char *msg)
{
	server_rec *s = arg;
	int lvl = level <= SESSDB_LOG_ERR ? APLOG_ERR :
	    level <= SESSDB_LOG_WARNING ? APLOG_WARNING : APLOG_INFO;

	ap_log_error(APLOG_MARK, lvl, 0, s, "sessdb: %s", msg);
}

/* open_store - a new handle on the instance's store, or NULL (logged). */
static struct sessdb *
open_store(ap_socache_instance_t *ctx)
{
	struct sessdb_options o;
	struct sessdb *db;
	char err[512];

	memset(&o, 0, sizeof o);
	o.max_ttl = MAX_TTL;
	o.max_entries = ctx->max_entries;
	o.max_bytes = ctx->max_bytes;
	o.key_file = ctx->key_file;
	o.log = log_cb;
	o.log_arg = ctx->s;
	if ((db = sessdb_open(ctx->path, &o, err, sizeof err)) == NULL)
		ap_log_error(APLOG_MARK, APLOG_ERR, 0, ctx->s,
		    "sessdb: cannot open %s: %s", ctx->path, err);
	return db;
}

/* stats_add - add the counters of b to a. */
static void
stats_add(struct sessdb_stats *a, const struct sessdb_stats *b)
{
	a->hits += b->hits;
	a->misses += b->misses;
	a->stores += b->stores;
	a->declined += b->declined;
	a->deletes += b->deletes;
	a->expired += b->expired;
	a->corrupt += b->corrupt;
	a->errors += b->errors;
	a->lock_timeouts += b->lock_timeouts;
	a->reopens += b->reopens;
	a->recoveries += b->recoveries;
}

/* pool_lock, pool_unlock - the handle pool's mutex (none without threads). */
static void
pool_lock(ap_socache_instance_t *ctx)
{
#if APR_HAS_THREADS
	if (ctx->mu != NULL)
		apr_thread_mutex_lock(ctx->mu);
#endif
}

static void
pool_unlock(ap_socache_instance_t *ctx)
{
#if APR_HAS_THREADS
	if (ctx->mu != NULL)
		apr_thread_mutex_unlock(ctx->mu);
#endif
}

/* drop_idle - close every idle handle (the pool lock held). */
static void
drop_idle(ap_socache_instance_t *ctx)
{
	struct sessdb_stats st;

	while (ctx->nidle > 0) {
		struct sessdb *db = ctx->idle[--ctx->nidle];

		sessdb_stats(db, &st);
		stats_add(&ctx->closed, &st);
		sessdb_close(db);
	}
}

/* acquire - a handle for this thread's call: an idle one or a new one.
 * Handles inherited through fork are closed (the library would reopen
 * them, but each process keeps its own). */
static struct sessdb *
acquire(ap_socache_instance_t *ctx)
{
	struct sessdb *db = NULL;

	pool_lock(ctx);
	if (ctx->pid != getpid()) {
		drop_idle(ctx);
		memset(&ctx->closed, 0, sizeof ctx->closed);
		ctx->pid = getpid();
	}
	if (ctx->nidle > 0)
		db = ctx->idle[--ctx->nidle];
	pool_unlock(ctx);
	return db != NULL ? db : open_store(ctx);
}

/* release - give a handle back to the pool (closed if the pool is full). */
static void
release(ap_socache_instance_t *ctx, struct sessdb *db)
{
	struct sessdb_stats st;

	pool_lock(ctx);
	if (ctx->nidle < ctx->cap) {
		ctx->idle[ctx->nidle++] = db;
		db = NULL;
	} else {
		sessdb_stats(db, &st);
		stats_add(&ctx->closed, &st);
	}
	pool_unlock(ctx);
	sessdb_close(db);
}

/* make_id - the store identifier for a consumer's key: the key itself for
 * sessions, else consumer name, 0x00, key.  Returns its length, or 0 if the
 * key cannot be stored (empty, too long). */
static size_t
make_id(const ap_socache_instance_t *ctx, unsigned char *out,
    const unsigned char *id, unsigned int idlen)
{
	size_t max = ctx->ns == SESSDB_NS_SERVER ? SESSDB_ID_MAX :
	    SESSDB_OPAQUE_ID_MAX;

	if (idlen == 0 || idlen > max - ctx->prefix_len)
		return 0;
	memcpy(out, ctx->prefix, ctx->prefix_len);
	memcpy(out + ctx->prefix_len, id, idlen);
	return ctx->prefix_len + idlen;
}

/* sessdb_create - parse the argument; the store is opened by init. */
static const char *
sessdb_create(ap_socache_instance_t **instance, const char *arg,
    apr_pool_t *tmp, apr_pool_t *p)
{
	ap_socache_instance_t *ctx = apr_pcalloc(p, sizeof *ctx);

	*instance = ctx;
	if (arg == NULL || *arg == '\0') {
		ctx->path = ap_runtime_dir_relative(p, "socache-sessdb.db");
		ctx->is_file = 1;
	} else if (strncmp(arg, "redis://", 8) == 0 ||
	    strncmp(arg, "unix:", 5) == 0) {
		ctx->path = apr_pstrdup(p, arg);
	} else {
		ctx->path = ap_runtime_dir_relative(p, arg);
		ctx->is_file = 1;
	}
	if (ctx->path == NULL)
		return apr_psprintf(tmp, "Invalid sessdb path %s", arg);
	return NULL;
}

/* own_file - make path (created by root) the User's, as the children run
 * as User and the library refuses files of other owners. */
static apr_status_t
own_file(const ap_socache_instance_t *ctx, const char *path)
{
	if (chown(path, ap_unixd_config.user_id, ap_unixd_config.group_id) == -1) {
		apr_status_t rv = APR_FROM_OS_ERROR(errno);

		ap_log_error(APLOG_MARK, APLOG_ERR, rv, ctx->s,
		    "sessdb: cannot give %s to User %s", path,
		    ap_unixd_config.user_name);
		return rv;
	}
	return APR_SUCCESS;
}

/* check_key_file - is the key file User's (the children open it as User)? */
static apr_status_t
check_key_file(const ap_socache_instance_t *ctx)
{
	struct stat st;

	if (stat(ctx->key_file, &st) == -1) {
		apr_status_t rv = APR_FROM_OS_ERROR(errno);

		ap_log_error(APLOG_MARK, APLOG_CRIT, rv, ctx->s,
		    "sessdb: SessdbKeyFile %s", ctx->key_file);
		return rv;
	}
	if (st.st_uid != ap_unixd_config.user_id) {
		ap_log_error(APLOG_MARK, APLOG_CRIT, 0, ctx->s, "sessdb: "
		    "SessdbKeyFile %s must belong to User %s (mode 0600 or "
		    "0400): the children read it", ctx->key_file,
		    ap_unixd_config.user_name);
		return APR_EACCES;
	}
	return APR_SUCCESS;
}

/* sessdb_init - choose the consumer's namespace; in the parent, create or
 * check the store and give its files to User. */
static apr_status_t
sessdb_init(ap_socache_instance_t *ctx, const char *cname,
    const struct ap_socache_hints *hints, server_rec *s, apr_pool_t *p)
{
	size_t n = strlen(cname);
	struct sessdb *db;
	apr_status_t rv = APR_SUCCESS;

	ctx->s = s;
	ctx->consumer = apr_pstrdup(p, cname);
	ctx->max_entries = cap_entries;
	ctx->max_bytes = cap_bytes;
	ctx->key_file = key_file != NULL ? apr_pstrdup(p, key_file) : NULL;
	if (strcmp(cname, CONSUMER_SESSIONS) == 0 ||
	    strcmp(cname, "mod_ssl-session") == 0) {
		ctx->ns = SESSDB_NS_SERVER;
		ctx->prefix_len = 0;
	} else if (n == 0 || n > SESSDB_CONSUMER_MAX) {
		ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "sessdb: consumer "
		    "name \"%s\" is empty or longer than %d bytes", cname,
		    SESSDB_CONSUMER_MAX);
		return APR_EINVAL;
	} else {
		ctx->ns = SESSDB_NS_OPAQUE;
		memcpy(ctx->prefix, cname, n);
		ctx->prefix[n] = 0;
		ctx->prefix_len = n + 1;
	}
	ctx->cap = 64;		/* idle handles kept; more threads open more */
	ctx->idle = apr_pcalloc(p, ctx->cap * sizeof(*ctx->idle));
	ctx->nidle = 0;
	ctx->pid = getpid();
#if APR_HAS_THREADS
	if ((rv = apr_thread_mutex_create(&ctx->mu, APR_THREAD_MUTEX_DEFAULT,
	    p)) != APR_SUCCESS) {
		ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
		    "sessdb: cannot create a mutex");
		return rv;
	}
#endif
	/* The children read the key file as User: one they could not read
	 * (the library wants it theirs, 0600 or 0400) stops the start here
	 * rather than failing every call later. */
	if (ctx->key_file != NULL && geteuid() == 0 &&
	    (rv = check_key_file(ctx)) != APR_SUCCESS)
		return rv;
	/* Create or check the store now, while the parent may be root, so
	 * a path that cannot work stops the start with its reason. */
	if ((db = open_store(ctx)) == NULL)
		return APR_EGENERAL;
	sessdb_close(db);
	if (ctx->is_file && geteuid() == 0) {
		rv = own_file(ctx, ctx->path);
		if (rv == APR_SUCCESS)
			rv = own_file(ctx, apr_pstrcat(p, ctx->path, ".lock", NULL));
	}
	ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
	    "sessdb: %s uses %s (namespace '%c')", cname, ctx->path, ctx->ns);
	return rv;
}

/* sessdb_destroy - close this process's handles.  Called from a pool
 * cleanup with no other thread in the provider, where the mutex (a
 * cleanup of the same pool) may already be gone: no locking. */
static void
sessdb_destroy(ap_socache_instance_t *ctx, server_rec *s)
{
	drop_idle(ctx);
}

/* sessdb_store - store data under id until expiry (apr_time_t). */
static apr_status_t
sessdb_store(ap_socache_instance_t *ctx, server_rec *s,
    const unsigned char *id, unsigned int idlen, apr_time_t expiry,
    unsigned char *data, unsigned int datalen, apr_pool_t *p)
{
	unsigned char key[SESSDB_OPAQUE_ID_MAX];
	size_t key_len = make_id(ctx, key, id, idlen);
	int64_t expires = (int64_t)((expiry + APR_USEC_PER_SEC - 1) /
	    APR_USEC_PER_SEC);
	struct sessdb *db;
	int rc;

	if (key_len == 0) {
		ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "sessdb: %s: key of "
		    "%u bytes cannot be stored", ctx->consumer, idlen);
		return APR_EINVAL;
	}
	if (datalen > SESSDB_PAYLOAD_MAX)
		return APR_ENOSPC;
	if ((db = acquire(ctx)) == NULL)
		return APR_EGENERAL;
	if (expires <= sessdb_now(db)) {	/* already expired: keep nothing */
		release(ctx, db);
		return APR_SUCCESS;
	}
	rc = sessdb_put(db, ctx->ns, key, key_len, data, datalen, expires);
	if (rc == -1)
		ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "sessdb: %s: "
		    "store: %s", ctx->consumer, sessdb_error(db));
	release(ctx, db);
	return rc == SESSDB_OK ? APR_SUCCESS : rc == SESSDB_FULL ? APR_ENOSPC :
	    APR_EGENERAL;
}

/* sessdb_retrieve - copy the record under id into data (*datalen bytes);
 * APR_NOTFOUND for a miss, APR_ENOSPC if data is too small. */
static apr_status_t
sessdb_retrieve(ap_socache_instance_t *ctx, server_rec *s,
    const unsigned char *id, unsigned int idlen, unsigned char *data,
    unsigned int *datalen, apr_pool_t *p)
{
	unsigned char key[SESSDB_OPAQUE_ID_MAX];
	size_t key_len = make_id(ctx, key, id, idlen), len;
	struct sessdb *db;
	apr_status_t rv;
	void *val;
	int rc;

	if (key_len == 0)
		return APR_NOTFOUND;	/* a key that cannot be stored is not */
	if ((db = acquire(ctx)) == NULL)
		return APR_EGENERAL;
	rc = sessdb_get(db, ctx->ns, key, key_len, &val, &len, NULL);
	if (rc == -1)
		ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "sessdb: %s: "
		    "retrieve: %s", ctx->consumer, sessdb_error(db));
	release(ctx, db);
	if (rc != SESSDB_OK)
		return rc == SESSDB_MISS ? APR_NOTFOUND : APR_EGENERAL;
	if (len > *datalen) {
		ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "sessdb: %s: record "
		    "of %zu bytes, buffer of %u", ctx->consumer, len, *datalen);
		rv = APR_ENOSPC;
	} else {
		memcpy(data, val, len);
		*datalen = (unsigned int)len;
		rv = APR_SUCCESS;
	}
	sessdb_free(val);
	return rv;
}

/* sessdb_remove - delete the record under id (absent is success). */
static apr_status_t
sessdb_remove(ap_socache_instance_t *ctx, server_rec *s,
    const unsigned char *id, unsigned int idlen, apr_pool_t *p)
{
	unsigned char key[SESSDB_OPAQUE_ID_MAX];
	size_t key_len = make_id(ctx, key, id, idlen);
	struct sessdb *db;
	int rc;

	if (key_len == 0)
		return APR_NOTFOUND;
	if ((db = acquire(ctx)) == NULL)
		return APR_EGENERAL;
	if ((rc = sessdb_delete(db, ctx->ns, key, key_len)) == -1)
		ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "sessdb: %s: "
		    "remove: %s", ctx->consumer, sessdb_error(db));
	release(ctx, db);
	return rc == 0 ? APR_SUCCESS : APR_EGENERAL;
}

/* sessdb_status - store size and this process's counters for mod_status. */
static void
sessdb_status(ap_socache_instance_t *ctx, request_rec *r, int flags)
{
	struct sessdb_info info = { 0 };
	struct sessdb_stats st, one;
	struct sessdb *db = acquire(ctx);
	int have_info = db != NULL && sessdb_info(db, &info) == 0;

	pool_lock(ctx);
	st = ctx->closed;
	for (int i = 0; i < ctx->nidle; i++) {
		sessdb_stats(ctx->idle[i], &one);
		stats_add(&st, &one);
	}
	pool_unlock(ctx);
	if (db != NULL) {
		sessdb_stats(db, &one);
		stats_add(&st, &one);
		release(ctx, db);
	}
	if (flags & AP_STATUS_SHORT) {
		ap_rprintf(r, "CacheType: sessdb\n");
		if (have_info)
			ap_rprintf(r, "CacheEntries: %llu\nCacheBytes: %llu\n"
			    "CacheFileSize: %llu\n",
			    (unsigned long long)info.entries,
			    (unsigned long long)info.bytes,
			    (unsigned long long)info.file_size);
		ap_rprintf(r, "CacheHits: %llu\nCacheMisses: %llu\n"
		    "CacheStores: %llu\nCacheDeclined: %llu\nCacheRemoves: %llu\n"
		    "CacheExpired: %llu\nCacheCorrupt: %llu\nCacheErrors: %llu\n",
		    (unsigned long long)st.hits, (unsigned long long)st.misses,
		    (unsigned long long)st.stores, (unsigned long long)st.declined,
		    (unsigned long long)st.deletes, (unsigned long long)st.expired,
		    (unsigned long long)st.corrupt, (unsigned long long)st.errors);
		return;
	}
	ap_rprintf(r, "cache type: <b>sessdb</b>, store: <b>%s</b>, consumer "
	    "<b>%s</b><br>", ap_escape_html(r->pool, ctx->path),
	    ap_escape_html(r->pool, ctx->consumer));
	if (have_info)
		ap_rprintf(r, "records: <b>%llu</b>, bytes: <b>%llu</b>, file "
		    "size: <b>%llu</b><br>", (unsigned long long)info.entries,
		    (unsigned long long)info.bytes,
		    (unsigned long long)info.file_size);
	ap_rprintf(r, "this process: hits <b>%llu</b>, misses <b>%llu</b>, "
	    "stores <b>%llu</b>, declined <b>%llu</b>, removes <b>%llu</b>, "
	    "expired <b>%llu</b>, corrupt <b>%llu</b>, errors <b>%llu</b><br>",
	    (unsigned long long)st.hits, (unsigned long long)st.misses,
	    (unsigned long long)st.stores, (unsigned long long)st.declined,
	    (unsigned long long)st.deletes, (unsigned long long)st.expired,
	    (unsigned long long)st.corrupt, (unsigned long long)st.errors);
}

/* What iterate passes through sessdb_foreach. */
struct iter {
	ap_socache_instance_t	*ctx;
	server_rec		*s;
	void			*userctx;
	ap_socache_iterator_t	*fn;
	apr_pool_t		*pool;
	apr_status_t		rv;
};

/* iter_one - foreach callback: hand one of this consumer's live records
 * to the iterator, key and data each followed by a NUL (as the interface
 * promises). */
static int
iter_one(void *arg, const struct sessdb_record *rec)
{
	struct iter *it = arg;
	const ap_socache_instance_t *ctx = it->ctx;
	const unsigned char *id = rec->id;
	size_t id_len = rec->id_len;
	unsigned char *k, *d;

	if (rec->problem != NULL || rec->ns != ctx->ns)
		return 0;
	if (ctx->prefix_len > 0) {
		if (id_len <= ctx->prefix_len ||
		    memcmp(id, ctx->prefix, ctx->prefix_len) != 0)
			return 0;
		id += ctx->prefix_len;
		id_len -= ctx->prefix_len;
	}
	k = apr_palloc(it->pool, id_len + 1);
	d = apr_palloc(it->pool, rec->len + 1);
	memcpy(k, id, id_len);
	k[id_len] = 0;
	memcpy(d, rec->data, rec->len);
	d[rec->len] = 0;
	it->rv = it->fn(it->ctx, it->s, it->userctx, k,
	    (unsigned int)id_len, d, (unsigned int)rec->len, it->pool);
	return it->rv == APR_SUCCESS ? 0 : 1;
}

/* sessdb_iterate - every live record of this consumer. */
static apr_status_t
sessdb_iterate(ap_socache_instance_t *ctx, server_rec *s, void *userctx,
    ap_socache_iterator_t *iterator, apr_pool_t *pool)
{
	struct iter it = { ctx, s, userctx, iterator, pool, APR_SUCCESS };
	struct sessdb *db = acquire(ctx);
	int rc;

	if (db == NULL)
		return APR_EGENERAL;
	rc = sessdb_foreach(db, SESSDB_ITER_LIVE, iter_one, &it);
	if (rc == -1)
		ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "sessdb: %s: "
		    "iterate: %s", ctx->consumer, sessdb_error(db));
	release(ctx, db);
	return rc == -1 ? APR_EGENERAL : it.rv;
}

static const ap_socache_provider_t socache_sessdb = {
	"sessdb",
	0,			/* safe for processes and threads */
	sessdb_create,
	sessdb_init,
	sessdb_destroy,
	sessdb_store,
	sessdb_retrieve,
	sessdb_remove,
	sessdb_status,
	sessdb_iterate,
};

/* set_cap - SessdbMaxEntries N, SessdbMaxBytes N[K|M|G]: 0 is no cap. */
static const char *
set_cap(cmd_parms *cmd, void *dummy, const char *arg)
{
	const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
	unsigned shift = 0;
	apr_off_t v;
	char *end;

	if (err != NULL)
		return err;
	if (apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS || v < 0 || end == arg)
		goto bad;
	if (cmd->info != NULL && *end != '\0' && end[1] == '\0') {
		switch (*end) {
		case 'K': case 'k': shift = 10; end++; break;
		case 'M': case 'm': shift = 20; end++; break;
		case 'G': case 'g': shift = 30; end++; break;
		default: break;
		}
	}
	if (*end != '\0' || (uint64_t)v > (UINT64_MAX >> shift))
		goto bad;
	if (cmd->info != NULL)
		cap_bytes = (uint64_t)v << shift;
	else
		cap_entries = (uint64_t)v;
	return NULL;
bad:
	return apr_pstrcat(cmd->pool, cmd->cmd->name, ": not a ",
	    cmd->info != NULL ? "size (N, NK, NM, NG)" : "number", ": ", arg, NULL);
}

/* set_key_file - SessdbKeyFile PATH (relative: to ServerRoot). */
static const char *
set_key_file(cmd_parms *cmd, void *dummy, const char *arg)
{
	const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

	if (err != NULL)
		return err;
	if ((key_file = ap_server_root_relative(cmd->pool, arg)) == NULL)
		return apr_pstrcat(cmd->pool, "SessdbKeyFile: invalid path ", arg,
		    NULL);
	return NULL;
}

static const command_rec sessdb_cmds[] = {
	AP_INIT_TAKE1("SessdbMaxEntries", set_cap, NULL, RSRC_CONF,
	    "most records in each sessdb: store (0: no cap, the default)"),
	AP_INIT_TAKE1("SessdbMaxBytes", set_cap, (void *)1, RSRC_CONF,
	    "most key and value bytes in each sessdb: store, e.g. 256M "
	    "(the default; 0: no cap)"),
	AP_INIT_TAKE1("SessdbKeyFile", set_key_file, NULL, RSRC_CONF,
	    "seal every record of every sessdb: store with the keys in this "
	    "file (32 random bytes each, owned by User, mode 0600)"),
	{ NULL },
};

/* pre_config - the defaults before each reading of the configuration. */
static int
pre_config(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp)
{
	cap_entries = 0;
	cap_bytes = DEFAULT_MAX_BYTES;
	key_file = NULL;
	return OK;
}

/* register_hooks - register the provider. */
static void
register_hooks(apr_pool_t *p)
{
	ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
	ap_register_provider(p, AP_SOCACHE_PROVIDER_GROUP, "sessdb",
	    AP_SOCACHE_PROVIDER_VERSION, &socache_sessdb);
}

AP_DECLARE_MODULE(socache_sessdb) = {
	STANDARD20_MODULE_STUFF,
	NULL, NULL, NULL, NULL,
	sessdb_cmds,
	register_hooks,
	AP_MODULE_FLAG_NONE,
};
