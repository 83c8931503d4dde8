/*
 * NAME
 *	sweep.c - traversal in batches: sessdb_foreach and sessdb_sweep
 *
 * DESCRIPTION
 *	A traversal never holds a lock for long: it walks one batch of keys
 *	under the shared lock, copying keys and values, releases it, and only
 *	then decodes, reports and (for a sweep) deletes under the exclusive
 *	lock, re-checking that each record is still the one it saw.
 *
 *	The cursor is the last key of the previous batch.  A sweep never
 *	deletes that key in the same batch (it deletes it after walking past
 *	it, "delete-behind"), because GDBM cannot continue from a deleted key.
 *	If other processes deleted it meanwhile, the walk resumes from the
 *	latest key of the batch that still exists, which yields no duplicate;
 *	only if the whole batch vanished does it start over.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "store_internal.h"

#define MAX_RESTARTS 8

struct walk {
	datum	*keys;
	datum	*vals;
	size_t	n;
	size_t	cap;
	int	started;
	int	done;
	int	restarts;
};

static void
walk_clear(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->keys[i].dptr);
		free(w->vals[i].dptr);
	}
	w->n = 0;
}

static void
walk_free(struct walk *w)
{
	walk_clear(w);
	free(w->keys);
	free(w->vals);
}

/* walk_resume - the first key of the next batch (lock held). */
static datum
walk_resume(struct sessdb *db, struct walk *w)
{
	datum none = { NULL, 0 };

	if (!w->started) {
		w->started = 1;
		return gdbm_firstkey(db->dbf);
	}
	for (size_t i = w->n; i-- > 0;)
		if (w->keys[i].dptr != NULL && gdbm_exists(db->dbf, w->keys[i]))
			return gdbm_nextkey(db->dbf, w->keys[i]);
	if (w->n == 0 || ++w->restarts > MAX_RESTARTS) {
		w->done = 1;
		return none;
	}
	store_log(db, SESSDB_LOG_INFO, "%s: traversal cursor deleted by another "
	    "process; restarting", db->path);
	return gdbm_firstkey(db->dbf);
}

/* walk_batch - copy up to max keys and values under the shared lock. */
static int
walk_batch(struct sessdb *db, struct walk *w, size_t max)
{
	datum k, next;

	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	if (w->cap < max) {
		datum *nk = realloc(w->keys, max * sizeof(*nk));
		if (nk != NULL)
			w->keys = nk;
		datum *nv = realloc(w->vals, max * sizeof(*nv));
		if (nv != NULL)
			w->vals = nv;
		if (nk == NULL || nv == NULL) {
			store_end(db, 0);
			return store_error(db, "traversal: out of memory");
		}
		w->cap = max;
	}
	k = walk_resume(db, w);
	walk_clear(w);
	while (k.dptr != NULL && w->n < max) {
		datum v = gdbm_fetch(db->dbf, k);

		if (v.dptr == NULL && gdbm_last_errno(db->dbf) != GDBM_ITEM_NOT_FOUND) {
			free(k.dptr);
			return store_gdbm_fail(db, "fetch");
		}
		w->keys[w->n] = k;
		w->vals[w->n] = v;	/* dptr NULL: vanished, shown as empty */
		w->n++;
		next = gdbm_nextkey(db->dbf, k);
		k = next;
	}
	if (k.dptr != NULL)
		free(k.dptr);	/* one past the batch: found again next time */
	else if (gdbm_last_errno(db->dbf) == GDBM_ITEM_NOT_FOUND)
		w->done = 1;
	else if (!w->done)
		return store_gdbm_fail(db, "traverse");
	store_end(db, 0);
	return 0;
}

/* describe - fill rec from a raw key and value; returns 1 if decodable. */
static int
describe(const datum *k, const datum *v, struct sessdb_record *rec)
{
	struct rec r;
	enum rec_status rs;

	memset(rec, 0, sizeof(*rec));
	rec->key = (const unsigned char *)k->dptr;
	rec->key_len = (size_t)k->dsize;
	rs = rec_decode((const unsigned char *)v->dptr, (size_t)v->dsize,
	    rec->key, rec->key_len, &r);
	if (rs != REC_OK) {
		rec->problem = rec_strerror(rs);
		rec->data = (const unsigned char *)v->dptr;
		rec->len = (size_t)v->dsize;
		return 0;
	}
	rec_key_parse(rec->key, rec->key_len, &rec->ns, &rec->id, &rec->id_len);
	rec->meta.created = r.created;
	rec->meta.expires = r.expires;
	rec->meta.flags = r.flags;
	rec->data = r.payload;
	rec->len = r.payload_len;
	return 1;
}

int
sessdb_foreach(struct sessdb *db, unsigned flags, sessdb_foreach_fn fn, void *arg)
{
	struct walk w = { 0 };
	struct sessdb_record rec;
	int rc = 0;

	if ((flags & SESSDB_ITER_REMOVE_BAD) && db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	while (!w.done && rc == 0) {
		if (walk_batch(db, &w, db->opt.sweep_batch) == -1) {
			rc = -1;
			break;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n && rc == 0; i++) {
			if (w.vals[i].dptr == NULL)
				continue;	/* deleted between nextkey and fetch */
			int ok = describe(&w.keys[i], &w.vals[i], &rec);
			if (ok && (flags & SESSDB_ITER_LIVE) && rec.meta.expires <= now)
				continue;
			if (ok && (flags & SESSDB_ITER_EXPIRED) && rec.meta.expires > now)
				continue;
			rc = fn(arg, &rec);
			if (!ok && (flags & SESSDB_ITER_REMOVE_BAD) &&
			    store_delete_if_same(db, rec.key, rec.key_len,
			    (const unsigned char *)w.vals[i].dptr,
			    (size_t)w.vals[i].dsize) == 1)
				db->st.corrupt++;
		}
	}
	walk_free(&w);
	return rc;
}

/* A record chosen for removal: raw key and value as seen, and why. */
struct doomed {
	datum	key;
	datum	val;
	int	bad;		/* undecodable rather than expired */
};

/* dup_datum - a malloc'ed copy (NULL dptr on failure). */
static datum
dup_datum(const datum *d)
{
	datum c = { malloc(d->dsize > 0 ? (size_t)d->dsize : 1), d->dsize };

	if (c.dptr != NULL && d->dsize > 0)
		memcpy(c.dptr, d->dptr, (size_t)d->dsize);
	return c;
}

/* sweep_delete - delete the doomed records if unchanged, under one LOCK_EX;
 * gone[i] tells which went. */
static int
sweep_delete(struct sessdb *db, struct doomed *d, char *gone, size_t n)
{
	int wrote = 0;

	if (n == 0)
		return 0;
	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		datum cur = gdbm_fetch(db->dbf, d[i].key);

		gone[i] = 0;
		if (cur.dptr == NULL) {
			if (gdbm_last_errno(db->dbf) != GDBM_ITEM_NOT_FOUND)
				return store_gdbm_fail(db, "fetch");
			continue;
		}
		if (cur.dsize == d[i].val.dsize &&
		    memcmp(cur.dptr, d[i].val.dptr, (size_t)cur.dsize) == 0) {
			if (gdbm_delete(db->dbf, d[i].key) != 0) {
				free(cur.dptr);
				return store_gdbm_fail(db, "delete");
			}
			lock_count(&db->lock, -1, -(int64_t)(d[i].key.dsize + cur.dsize));
			gone[i] = 1;
			wrote = 1;
		}
		free(cur.dptr);
	}
	store_end(db, wrote);
	return 0;
}

/* sweep_report - count and report one round's removals, then free them. */
static void
sweep_report(struct sessdb *db, struct doomed *d, const char *gone, size_t n,
    int dry, sessdb_foreach_fn on_removed, void *arg,
    struct sessdb_sweep_result *res)
{
	struct sessdb_record rec;

	for (size_t i = 0; i < n; i++) {
		if (!dry && !gone[i]) {
			res->live++;	/* replaced or deleted meanwhile */
		} else {
			if (d[i].bad)
				res->corrupt++;
			else
				res->expired++;
			if (!dry && d[i].bad)
				db->st.corrupt++;
			else if (!dry)
				db->st.expired++;
			/* A report's return value cannot stop a sweep midway. */
			if (on_removed != NULL) {
				describe(&d[i].key, &d[i].val, &rec);
				(void)on_removed(arg, &rec);
			}
		}
		free(d[i].key.dptr);
		free(d[i].val.dptr);
		d[i].key.dptr = d[i].val.dptr = NULL;
	}
}

int
sessdb_sweep(struct sessdb *db, unsigned flags, sessdb_foreach_fn on_removed,
    void *arg, struct sessdb_sweep_result *res)
{
	struct walk w = { 0 };
	struct sessdb_sweep_result tmp;
	struct sessdb_record rec;
	size_t max = db->opt.sweep_batch, n = 0;
	struct doomed *d;
	char *gone;
	int dry = (flags & SESSDB_SWEEP_DRY_RUN) != 0, rc = -1;

	if (res == NULL)
		res = &tmp;
	memset(res, 0, sizeof(*res));
	if (db->rdonly && !dry)
		return store_error(db, "%s: opened read-only", db->path);
	/* One extra slot: the previous batch's cursor, deleted behind it. */
	d = calloc(max + 1, sizeof(*d));
	gone = calloc(max + 1, 1);
	if (d == NULL || gone == NULL) {
		store_error(db, "sweep: out of memory");
		goto out;
	}
	while (!w.done) {
		struct doomed held = { { NULL, 0 }, { NULL, 0 }, 0 };

		if (walk_batch(db, &w, max) == -1)
			goto out;
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n; i++) {
			if (w.vals[i].dptr == NULL)
				continue;
			res->examined++;
			int ok = describe(&w.keys[i], &w.vals[i], &rec);
			if (ok && rec.meta.expires > now) {
				res->live++;
				continue;
			}
			if (i == w.n - 1 && !w.done && !dry) {
				/* The cursor: the walk resumes from it, so it
				 * goes with the next round. */
				held.key = dup_datum(&w.keys[i]);
				held.val = dup_datum(&w.vals[i]);
				held.bad = !ok;
				if (held.key.dptr == NULL || held.val.dptr == NULL) {
					free(held.key.dptr);
					free(held.val.dptr);
					store_error(db, "sweep: out of memory");
					goto out;
				}
				continue;
			}
			d[n].key = w.keys[i];
			d[n].val = w.vals[i];
			d[n].bad = !ok;
			w.keys[i].dptr = w.vals[i].dptr = NULL;
			n++;
		}
		if (!dry && sweep_delete(db, d, gone, n) == -1) {
			free(held.key.dptr);
			free(held.val.dptr);
			goto out;
		}
		sweep_report(db, d, gone, n, dry, on_removed, arg, res);
		n = 0;
		if (held.key.dptr != NULL)
			d[n++] = held;
		res->batches++;
	}
	rc = 0;
out:
	for (size_t i = 0; d != NULL && i < n; i++) {
		free(d[i].key.dptr);
		free(d[i].val.dptr);
	}
	free(d);
	free(gone);
	walk_free(&w);
	return rc;
}
