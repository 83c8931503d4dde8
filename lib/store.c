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
 *	Sealing (seal.h) happens here too, so every backend stores the same
 *	sealed bytes: put seals under the newest key, a lookup opens with
 *	the key the record names.  A record that fails to open is never
 *	handed out; one sealed under a key we lack is kept for whoever has
 *	it.  A handle with keys hands out sealed records only: a plain one
 *	is a miss (and kept), since anyone who can write could plant it.
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
	/* The key first: a store is not created beside a refused key. */
	if (db->opt.key_file != NULL) {
		int code = SESSDB_E_KEY;

		db->seal = seal_load(db->opt.key_file, db->err, sizeof(db->err),
		    &code);
		if (db->seal == NULL) {
			snprintf(errbuf, errbuf_len, "%s", db->err);
			diag_open_failed(code);
			sessdb_close(db);
			return NULL;
		}
	}
	db->opt.key_file = NULL;	/* the caller's string; read once */
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
	seal_free(db->seal);
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

/* What a lookup found. */
enum found {
	FOUND_LIVE,		/* hand it out */
	FOUND_DROP,		/* a miss to remove: expired, corrupt, tampered */
	FOUND_KEEP,		/* a miss to keep: sealed under a key we lack */
	FOUND_ERROR,		/* the error is set */
};

unsigned char *
store_encode(struct sessdb *db, const unsigned char *key, size_t key_len,
    const void *data, size_t len, int64_t created, int64_t expires,
    size_t *val_len)
{
	size_t plen = len + (db->seal != NULL ? SEAL_OVERHEAD : 0);
	unsigned char *buf = malloc(REC_HEADER_LEN + plen);
	struct rec r = { 0 };

	if (buf == NULL) {
		diag_error(db, SESSDB_E_NOMEM, "put: out of memory");
		return NULL;
	}
	r.created = created;
	r.expires = expires;
	r.payload = data;
	r.payload_len = plen;
	*val_len = REC_HEADER_LEN + plen;
	if (db->seal == NULL) {
		rec_encode(buf, key, key_len, &r);
		return buf;
	}
	r.flags = REC_F_SEALED;
	r.key_id = seal_newest_id(db->seal);
	rec_encode_header(buf, &r);
	if (seal_seal(db->seal, key, key_len, buf, REC_AAD_LEN, data, len,
	    buf + REC_HEADER_LEN) == -1) {
		store_free_value(buf, *val_len);
		diag_error(db, SESSDB_E_SYSTEM, "put: sealing failed (OpenSSL)");
		return NULL;
	}
	rec_encode_finish(buf, key, key_len);
	return buf;
}

enum seal_open_status
store_unseal(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, const struct rec *r, unsigned char **pt)
{
	enum seal_open_status st;
	size_t len;

	*pt = NULL;
	if (db->seal == NULL || !seal_has_key(db->seal, r->key_id))
		return SEAL_NO_KEY;
	if (r->payload_len < SEAL_OVERHEAD)
		return SEAL_FAILED;
	len = r->payload_len - SEAL_OVERHEAD;
	if ((*pt = malloc(len > 0 ? len : 1)) == NULL)
		return SEAL_ERROR;
	st = seal_open(db->seal, r->key_id, key, key_len, val, REC_AAD_LEN,
	    r->payload, r->payload_len, *pt);
	if (st != SEAL_OPENED) {
		free(*pt);	/* seal_open wiped it */
		*pt = NULL;
	}
	return st;
}

/*
 * check_value - decode a fetched value, open it if sealed; count and
 * classify.  *pt gets the opened payload of a sealed record.
 */
static enum found
check_value(struct sessdb *db, const unsigned char *key, size_t key_len,
    const struct bitem *v, struct rec *r, int64_t now, unsigned char **pt)
{
	enum rec_status rs = rec_decode(v->val, v->val_len, key, key_len, r);

	*pt = NULL;
	if (rs != REC_OK) {
		db->st.corrupt++;
		diag_log(db, SESSDB_LOG_WARNING, "%s: dropping unreadable record "
		    "(%s)", db->path, rec_strerror(rs));
		return FOUND_DROP;
	}
	if (r->expires <= now) {
		db->st.expired++;
		return FOUND_DROP;
	}
	if ((r->flags & REC_F_SEALED) == 0 && db->seal == NULL)
		return FOUND_LIVE;
	if ((r->flags & REC_F_SEALED) == 0) {
		/* With keys, only what a key sealed is trusted: whoever can
		 * write the store could plant a plain session.  Kept for
		 * rekey (or a keyless process) to deal with. */
		db->st.unsealed++;
		if (!db->told_unsealed)
			diag_log(db, SESSDB_LOG_WARNING, "%s: plain (unsealed) "
			    "records found; with a key file they are misses "
			    "(seal them: sessdump --key FILE rekey)", db->path);
		db->told_unsealed = 1;
		return FOUND_KEEP;
	}
	switch (store_unseal(db, key, key_len, v->val, r, pt)) {
	case SEAL_OPENED:
		return FOUND_LIVE;
	case SEAL_NO_KEY:
		db->st.sealed_nokey++;
		if (!db->told_nokey)	/* once: every lookup would say it */
			diag_log(db, SESSDB_LOG_WARNING, "%s: sealed records "
			    "found (key id %04x) but %s", db->path, r->key_id,
			    db->seal ? "that key is not in the key file" :
			    "no key file was given; they are misses");
		db->told_nokey = 1;
		return FOUND_KEEP;
	case SEAL_FAILED:
		db->st.tampered++;
		diag_log(db, SESSDB_LOG_WARNING, "%s: dropping a sealed record "
		    "that fails authentication under key id %04x (tampered, "
		    "moved or damaged)", db->path, r->key_id);
		return FOUND_DROP;
	default:
		diag_error(db, SESSDB_E_NOMEM, "opening a sealed record failed "
		    "(OpenSSL: out of memory)");
		return FOUND_ERROR;
	}
}

/* hand_out - turn a fetched value (or the opened payload pt) into the
 * caller's payload buffer. */
static void
hand_out(struct bitem *v, const struct rec *r, unsigned char *pt, void **data,
    size_t *len, struct sessdb_meta *meta)
{
	if (meta != NULL) {
		meta->created = r->created;
		meta->expires = r->expires;
		meta->flags = r->flags;
		meta->key_id = r->key_id;
	}
	if (pt != NULL) {
		*len = r->payload_len - SEAL_OVERHEAD;
		*data = pt;
		return;		/* the caller wipes v */
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
	unsigned char key[REC_KEY_MAX], *pt;
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
	switch (check_value(db, key, key_len, &v, &r, sessdb_now(db), &pt)) {
	case FOUND_LIVE:
		db->st.hits++;
		hand_out(&v, &r, pt, data, len, meta);
		store_free_value(v.val, v.val_len);
		return SESSDB_OK;
	case FOUND_ERROR:
		store_free_value(v.val, v.val_len);
		return -1;
	case FOUND_KEEP:
		break;
	case FOUND_DROP:
	default:
		if (db->rdonly)
			break;
		v.key = key;
		v.key_len = key_len;
		if (db->be->remove(db, &v, 1, 1, &gone) == -1)
			diag_log(db, SESSDB_LOG_WARNING, "%s", db->err);
		break;
	}
	db->st.misses++;
	store_free_value(v.val, v.val_len);
	return SESSDB_MISS;
}

int
sessdb_take(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta)
{
	unsigned char key[REC_KEY_MAX], *pt = NULL;
	size_t key_len;
	struct bitem v;
	struct rec r = { 0 };
	enum found f = FOUND_DROP;
	int rc;

	*data = NULL;
	*len = 0;
	if (writable(db) == -1 || make_key(db, key, &key_len, ns, id, id_len) == -1 ||
	    store_ready(db) == -1)
		return -1;
	rc = db->be->take(db, key, key_len, &v);
	if (rc == -1)
		return -1;
	if (rc == 1)
		f = check_value(db, key, key_len, &v, &r, sessdb_now(db), &pt);
	if (f == FOUND_KEEP || f == FOUND_ERROR) {
		/* Not ours to consume: whoever holds its key (or, plain, a
		 * rekey) may want it. */
		int put = db->be->store(db, key, key_len, v.val, v.val_len,
		    r.expires, BSTORE_NEW);

		if (put != 1 && put != 2)	/* 2: a newer one is there */
			diag_log(db, SESSDB_LOG_WARNING, "%s: a sealed record "
			    "taken without its key could not be put back", db->path);
	}
	if (f != FOUND_LIVE) {
		if (f != FOUND_ERROR)
			db->st.misses++;
		store_free_value(v.val, v.val_len);	/* NULL when absent */
		return f == FOUND_ERROR ? -1 : SESSDB_MISS;
	}
	db->st.hits++;
	db->st.deletes++;
	hand_out(&v, &r, pt, data, len, meta);
	store_free_value(v.val, v.val_len);
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

/* store_record - put a new or replacing record (flags: BSTORE_NEW);
 * when the caps decline a new one, sweep the expired records first (at
 * most once a CAP_SWEEP_INTERVAL across all processes) and try once
 * more.  1 stored, 0 declined, 2 a live record is there, -1. */
static int
store_record(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires, unsigned flags)
{
	int rc = db->be->store(db, key, key_len, val, val_len, expires, flags);

	if (rc != 0 || !db->be->claim_sweep(db, sessdb_now(db), CAP_SWEEP_INTERVAL))
		return rc;
	if (sessdb_sweep(db, 0, NULL, NULL, NULL) == -1)
		diag_log(db, SESSDB_LOG_WARNING, "%s", db->err);
	return db->be->store(db, key, key_len, val, val_len, expires, flags);
}

/* put_flags - sessdb_put and sessdb_add. */
static int
put_flags(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires, unsigned flags)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	unsigned char *buf;
	size_t val_len;
	int64_t now = sessdb_now(db);
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
	buf = store_encode(db, key, key_len, data, len, now, expires, &val_len);
	if (buf == NULL)
		return -1;
	rc = store_record(db, key, key_len, buf, val_len, expires, flags);
	store_free_value(buf, val_len);	/* payloads hold secrets */
	switch (rc) {
	case 0:
		db->st.declined++;
		return SESSDB_FULL;
	case 1:
		db->st.stores++;
		return 0;
	case 2:
		return SESSDB_EXISTS;
	default:
		return -1;
	}
}

int
sessdb_put(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires)
{
	return put_flags(db, ns, id, id_len, data, len, expires, 0);
}

int
sessdb_add(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires)
{
	return put_flags(db, ns, id, id_len, data, len, expires, BSTORE_NEW);
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
