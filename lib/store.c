/*
 * NAME
 *	store.c - the store's operations: open, close, put, get, take, delete
 *
 * DESCRIPTION
 *	What a record means is decided here, once for every backend: keys
 *	and the record codec, expiry against the handle's clock, the caps
 *	(sweep first, then decline), the counters, fork detection.  Where the
 *	bytes live is the backend's business (backend.h); the backend is
 *	picked from the path given to sessdb_open.
 *
 *	Record encoding and decoding (and the CRC) run outside any lock:
 *	each backend call is one atomic step.  A lookup that finds an
 *	expired or unreadable record deletes it afterwards only if the key
 *	still holds exactly the bytes it saw, so a record written meanwhile
 *	survives.
 *
 * DIAGNOSTICS
 *	Functions return -1 with sessdb_error() and sessdb_errcode() set.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "handle.h"

#define DEFAULT_TTL		300
#define DEFAULT_MAX_TTL		86400
#define DEFAULT_LOCK_TIMEOUT_MS	1000
#define DEFAULT_SWEEP_BATCH	256
#define CAP_SWEEP_INTERVAL	1	/* seconds between sweeps forced by the cap */

/*
 * Fork detection: a child must not use its parent's descriptors (flock
 * locks belong to the open file description, which fork() shares).  A
 * counter bumped in the child by pthread_atfork is cheaper than getpid()
 * on every call.
 */
static unsigned long fork_epoch;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
	fork_epoch++;
}

static void
fork_register(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

/* backend_for - the backend that keeps the store named by path.  A new
 * backend is one line here (a URL scheme) and its own file. */
static const struct backend *
backend_for(const char *path)
{
	static const struct {
		const char		*prefix;
		const struct backend	*be;
	} table[] = {
		{ "redis://", &backend_redis },	/* backend_redis.c says when */
		{ "unix:", &backend_redis },	/* built without hiredis */
		{ "", &backend_gdbm },		/* a file path */
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strncmp(path, table[i].prefix, strlen(table[i].prefix)) == 0)
			return table[i].be;
	return NULL;
}

int
store_ready(struct sessdb *db)
{
	if (db->fork_epoch == fork_epoch)
		return 0;
	if (db->be->after_fork(db) == -1)
		return -1;
	db->fork_epoch = fork_epoch;
	db->pid = (int32_t)getpid();
	return 0;
}

int64_t
sessdb_now(const struct sessdb *db)
{
	if (db->opt.clock != NULL)
		return db->opt.clock(db->opt.clock_arg);
	return (int64_t)time(NULL);
}

struct sessdb *
sessdb_open(const char *path, const struct sessdb_options *opts,
    char *errbuf, size_t errbuf_len)
{
	struct sessdb *db;

	pthread_once(&fork_once, fork_register);
	if (path == NULL || *path == '\0') {
		snprintf(errbuf, errbuf_len, "no database path given");
		diag_open_failed(SESSDB_E_ARG);
		return NULL;
	}
	db = calloc(1, sizeof(*db));
	if (db == NULL || (db->path = strdup(path)) == NULL) {
		free(db);
		snprintf(errbuf, errbuf_len, "out of memory");
		diag_open_failed(SESSDB_E_NOMEM);
		return NULL;
	}
	if (opts != NULL)
		db->opt = *opts;
	if (db->opt.default_ttl == 0)
		db->opt.default_ttl = DEFAULT_TTL;
	if (db->opt.max_ttl == 0)
		db->opt.max_ttl = DEFAULT_MAX_TTL;
	if (db->opt.default_ttl > db->opt.max_ttl)
		db->opt.default_ttl = db->opt.max_ttl;
	if (db->opt.lock_timeout_ms == 0)
		db->opt.lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
	if (db->opt.sweep_batch == 0)
		db->opt.sweep_batch = DEFAULT_SWEEP_BATCH;
	db->rdonly = (db->opt.flags & SESSDB_RDONLY) != 0;
	db->fork_epoch = fork_epoch;
	db->pid = (int32_t)getpid();
	db->be = backend_for(path);
	if (db->be == NULL)
		diag_error(db, SESSDB_E_ARG, "%s: no backend for this kind of path",
		    path);
	if (db->be == NULL || db->be->open(db) == -1) {
		snprintf(errbuf, errbuf_len, "%s", db->err);
		diag_open_failed(db->errcode ? db->errcode : SESSDB_E_SYSTEM);
		sessdb_close(db);
		return NULL;
	}
	db->st.errors = 0;
	db->errcode = 0;
	db->err[0] = '\0';
	diag_open_failed(0);
	return db;
}

void
sessdb_close(struct sessdb *db)
{
	if (db == NULL)
		return;
	if (db->be != NULL)
		db->be->close(db);
	free(db->path);
	free(db);
}

const char *
sessdb_path(const struct sessdb *db)
{
	return db->path;
}

void
sessdb_free(void *data)
{
	free(data);
}

void
sessdb_stats(const struct sessdb *db, struct sessdb_stats *st)
{
	*st = db->st;
}

void
sessdb_stats_reset(struct sessdb *db)
{
	memset(&db->st, 0, sizeof(db->st));
}

/* make_key - the key for (ns, id), or -1 with the error set. */
static int
make_key(struct sessdb *db, unsigned char key[REC_KEY_MAX], size_t *key_len,
    unsigned ns, const void *id, size_t id_len)
{
	*key_len = rec_key_make(key, ns, id, id_len);
	if (*key_len == 0)
		return diag_error(db, SESSDB_E_ARG, "invalid key: namespace 0x%02x, "
		    "id of %zu bytes (want 1..%d, or for namespace 'O' a consumer "
		    "name of 1..%d bytes, 0x00 and a key, %d bytes at most)", ns,
		    id_len, SESSDB_ID_MAX, SESSDB_CONSUMER_MAX, SESSDB_OPAQUE_ID_MAX);
	return 0;
}

/* writable - -1 (with the error) on a read-only handle. */
static int
writable(struct sessdb *db)
{
	if (db->rdonly)
		return diag_error(db, SESSDB_E_READONLY, "%s: opened read-only",
		    db->path);
	return 0;
}

/*
 * check_value - decode a fetched value; count and classify.  Returns
 * SESSDB_OK for a live record (r filled), else SESSDB_MISS.
 */
static int
check_value(struct sessdb *db, const unsigned char *key, size_t key_len,
    const struct bitem *v, struct rec *r, int64_t now)
{
	enum rec_status rs = rec_decode(v->val, v->val_len, key, key_len, r);

	if (rs != REC_OK) {
		db->st.corrupt++;
		diag_log(db, SESSDB_LOG_WARNING, "%s: dropping unreadable record "
		    "(%s)", db->path, rec_strerror(rs));
		return SESSDB_MISS;
	}
	if (r->expires <= now) {
		db->st.expired++;
		return SESSDB_MISS;
	}
	return SESSDB_OK;
}

/* hand_out - turn a fetched value into the caller's payload buffer. */
static void
hand_out(struct bitem *v, const struct rec *r, void **data, size_t *len,
    struct sessdb_meta *meta)
{
	if (meta != NULL) {
		meta->created = r->created;
		meta->expires = r->expires;
		meta->flags = r->flags;
	}
	*len = r->payload_len;
	memmove(v->val, r->payload, r->payload_len);
	explicit_bzero(v->val + r->payload_len, v->val_len - r->payload_len);
	*data = v->val;
	v->val = NULL;
}

int
sessdb_get(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	struct bitem v;
	struct rec r;
	char gone;
	int rc;

	*data = NULL;
	*len = 0;
	if (make_key(db, key, &key_len, ns, id, id_len) == -1 || store_ready(db) == -1)
		return -1;
	rc = db->be->fetch(db, key, key_len, &v);
	if (rc != 1) {
		if (rc == 0)
			db->st.misses++;
		return rc == 0 ? SESSDB_MISS : -1;
	}
	if (check_value(db, key, key_len, &v, &r, sessdb_now(db)) == SESSDB_OK) {
		db->st.hits++;
		hand_out(&v, &r, data, len, meta);
		return SESSDB_OK;
	}
	db->st.misses++;
	if (!db->rdonly) {
		v.key = key;
		v.key_len = key_len;
		if (db->be->remove(db, &v, 1, 1, &gone) == -1)
			diag_log(db, SESSDB_LOG_WARNING, "%s", db->err);
	}
	store_free_value(v.val, v.val_len);
	return SESSDB_MISS;
}

int
sessdb_take(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	struct bitem v;
	struct rec r;
	int rc;

	*data = NULL;
	*len = 0;
	if (writable(db) == -1 || make_key(db, key, &key_len, ns, id, id_len) == -1 ||
	    store_ready(db) == -1)
		return -1;
	rc = db->be->take(db, key, key_len, &v);
	if (rc == -1)
		return -1;
	if (rc == 0 || check_value(db, key, key_len, &v, &r,
	    sessdb_now(db)) != SESSDB_OK) {
		db->st.misses++;
		store_free_value(v.val, v.val_len);	/* NULL when absent */
		return SESSDB_MISS;
	}
	db->st.hits++;
	db->st.deletes++;
	hand_out(&v, &r, data, len, meta);
	return SESSDB_OK;
}

int
sessdb_delete(struct sessdb *db, unsigned ns, const void *id, size_t id_len)
{
	unsigned char key[REC_KEY_MAX];
	struct bitem k = { key, 0, NULL, 0 };
	char gone = 0;

	if (writable(db) == -1 || make_key(db, key, &k.key_len, ns, id, id_len) == -1 ||
	    store_ready(db) == -1)
		return -1;
	if (db->be->remove(db, &k, 1, 0, &gone) == -1)
		return -1;
	if (gone)
		db->st.deletes++;
	return 0;
}

int
store_cap_exceeded(const struct sessdb *db, uint64_t entries, uint64_t bytes,
    size_t size)
{
	if (db->opt.max_entries != 0 && entries >= db->opt.max_entries)
		return 1;
	if (db->opt.max_bytes != 0 && bytes + size > db->opt.max_bytes)
		return 1;
	return 0;
}

/* store_record - put a new or replacing record; when the caps decline a
 * new one, sweep the expired records first (at most once a
 * CAP_SWEEP_INTERVAL across all processes) and try once more.  1 stored,
 * 0 declined, -1. */
static int
store_record(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires)
{
	int rc = db->be->store(db, key, key_len, val, val_len, expires);

	if (rc != 0 || !db->be->claim_sweep(db, sessdb_now(db), CAP_SWEEP_INTERVAL))
		return rc;
	if (sessdb_sweep(db, 0, NULL, NULL, NULL) == -1)
		diag_log(db, SESSDB_LOG_WARNING, "%s", db->err);
	return db->be->store(db, key, key_len, val, val_len, expires);
}

int
sessdb_put(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	unsigned char *buf;
	int64_t now = sessdb_now(db);
	struct rec r;
	int rc;

	if (writable(db) == -1 || make_key(db, key, &key_len, ns, id, id_len) == -1)
		return -1;
	if (data == NULL && len > 0)
		return diag_error(db, SESSDB_E_ARG, "put: no data");
	if (len > SESSDB_PAYLOAD_MAX)
		return diag_error(db, SESSDB_E_TOO_LARGE, "put: payload of %zu bytes "
		    "exceeds %u", len, SESSDB_PAYLOAD_MAX);
	if (expires == 0)
		expires = now + db->opt.default_ttl;
	if (expires > now + (int64_t)db->opt.max_ttl)
		expires = now + db->opt.max_ttl;
	if (expires <= now)
		return diag_error(db, SESSDB_E_ARG, "put: record already expired "
		    "(expires %lld, now %lld)", (long long)expires, (long long)now);
	if (store_ready(db) == -1)
		return -1;
	buf = malloc(REC_HEADER_LEN + len);
	if (buf == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "put: out of memory");
	r.flags = 0;
	r.created = now;
	r.expires = expires;
	r.payload = data;
	r.payload_len = len;
	rec_encode(buf, key, key_len, &r);
	rc = store_record(db, key, key_len, buf, REC_HEADER_LEN + len, expires);
	store_free_value(buf, REC_HEADER_LEN + len);	/* payloads hold secrets */
	if (rc == 0) {
		db->st.declined++;
		return SESSDB_FULL;
	}
	if (rc == 1)
		db->st.stores++;
	return rc == 1 ? 0 : -1;
}

int
sessdb_info(struct sessdb *db, struct sessdb_info *info)
{
	memset(info, 0, sizeof(*info));
	if (store_ready(db) == -1)
		return -1;
	return db->be->info(db, info);
}

int
sessdb_compact(struct sessdb *db)
{
	if (writable(db) == -1 || store_ready(db) == -1)
		return -1;
	return db->be->compact(db);
}
