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
 *	GDBM stores a bucket's keys with linear probing, and a delete moves
 *	later keys of that bucket back to fill the hole: deleting a key in the
 *	bucket being traversed makes the traversal skip keys.  Keys of one
 *	bucket are visited one after another, and a bucket holds at most
 *	GDBM_GETBUCKETSIZE keys, so a key visited more than that many keys ago
 *	lies in a bucket the traversal has left.  The sweep therefore deletes
 *	each doomed key only once the walk is that far past it ("delete
 *	behind"), and the traversal never notices its own deletes.
 *
 *	Between batches the walk resumes after the last key of the previous
 *	batch.  If other processes deleted it meanwhile, it resumes from the
 *	latest key of the batch that still exists, which yields no duplicate;
 *	only if the whole batch vanished does it start over.  Deletes and
 *	splits by other processes can still make a traversal miss a record or
 *	see one twice: a sweep picks up a missed record next time.
 */
#include <errno.h>
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
		store_free_value(w->vals[i].dptr, (size_t)w->vals[i].dsize);
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
		if (rec_key_is_meta(k.dptr, (size_t)k.dsize)) {
			/* the store's own key: not a record */
			next = gdbm_nextkey(db->dbf, k);
			free(k.dptr);
			k = next;
			continue;
		}
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

/* A record chosen for removal: raw key and value as seen, and why. */
struct doomed {
	datum		key;
	datum		val;
	int		bad;	/* undecodable rather than expired */
	uint64_t	seq;	/* position in the walk when it was seen */
};

/*
 * The delete-behind queue: doomed records in walk order, deleted once the
 * walk is more than `lag` keys past them.
 */
struct reaper {
	struct doomed	*d;
	size_t		n;
	size_t		cap;
	uint64_t	lag;
	char		*gone;
};

static void
reaper_free(struct reaper *q)
{
	for (size_t i = 0; i < q->n; i++) {
		free(q->d[i].key.dptr);
		store_free_value(q->d[i].val.dptr, (size_t)q->d[i].val.dsize);
	}
	free(q->d);
	free(q->gone);
}

/* dup_datum - a malloc'ed copy (NULL dptr on failure). */
static datum
dup_datum(const datum *d)
{
	datum c = { malloc(d->dsize > 0 ? (size_t)d->dsize : 1), d->dsize };

	if (c.dptr != NULL && d->dsize > 0)
		memcpy(c.dptr, d->dptr, (size_t)d->dsize);
	return c;
}

/* reaper_add - queue copies of a doomed record. */
static int
reaper_add(struct sessdb *db, struct reaper *q, const datum *k, const datum *v,
    int bad, uint64_t seq)
{
	struct doomed x = { dup_datum(k), dup_datum(v), bad, seq };

	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 64;
		struct doomed *nd = realloc(q->d, cap * sizeof(*nd));
		char *ng = realloc(q->gone, cap);

		if (nd != NULL)
			q->d = nd;
		if (ng != NULL)
			q->gone = ng;
		if (nd == NULL || ng == NULL)
			goto nomem;
		q->cap = cap;
	}
	if (x.key.dptr == NULL || x.val.dptr == NULL)
		goto nomem;
	q->d[q->n++] = x;
	return 0;
nomem:
	free(x.key.dptr);
	store_free_value(x.val.dptr, (size_t)x.val.dsize);
	return store_error(db, "sweep: out of memory");
}

/* delete_chunk - delete records if unchanged, under one LOCK_EX. */
static int
delete_chunk(struct sessdb *db, struct doomed *d, char *gone, size_t n)
{
	int wrote = 0;

	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	if (store_reserve(db, n * 32) == -1) {	/* freed space lists grow */
		int e = errno;

		store_end(db, 0);
		errno = e;
		return store_error(db, "%s: sweep: no room on disk to delete: %s",
		    db->path, strerror(e));
	}
	for (size_t i = 0; i < n; i++) {
		int rc = store_delete_same_locked(db, d[i].key,
		    (const unsigned char *)d[i].val.dptr, (size_t)d[i].val.dsize);

		if (rc == -1)
			return -1;
		gone[i] = (char)rc;
		wrote |= rc;
	}
	store_end(db, wrote);
	return 0;
}

/* What to do with each record a reaper flush removed. */
struct reap_report {
	int			dry;
	sessdb_foreach_fn	on_removed;
	void			*arg;
	struct sessdb_sweep_result *res;
};

static void
report_one(struct sessdb *db, const struct doomed *d, int gone,
    const struct reap_report *rp)
{
	struct sessdb_record rec;

	if (!gone) {
		if (rp->res != NULL)
			rp->res->live++;	/* replaced meanwhile: kept */
		return;
	}
	if (d->bad) {
		if (rp->res != NULL)
			rp->res->corrupt++;
		if (!rp->dry)
			db->st.corrupt++;
	} else {
		if (rp->res != NULL)
			rp->res->expired++;
		if (!rp->dry)
			db->st.expired++;
	}
	/* A report's return value cannot stop a sweep midway. */
	if (rp->on_removed != NULL) {
		describe(&d->key, &d->val, &rec);
		(void)rp->on_removed(rp->arg, &rec);
	}
}

/* reaper_flush - delete (or, dry, just report) the queued records seen at
 * or before upto, one LOCK_EX per sweep_batch of them. */
static int
reaper_flush(struct sessdb *db, struct reaper *q, uint64_t upto,
    const struct reap_report *rp)
{
	size_t done = 0, batch = db->opt.sweep_batch;

	while (done < q->n && q->d[done].seq <= upto) {
		size_t n = 0;

		while (done + n < q->n && n < batch && q->d[done + n].seq <= upto)
			n++;
		if (rp->dry)
			memset(q->gone + done, 1, n);
		else if (delete_chunk(db, q->d + done, q->gone + done, n) == -1)
			return -1;
		if (rp->res != NULL && !rp->dry)
			rp->res->batches++;
		for (size_t i = done; i < done + n; i++) {
			report_one(db, &q->d[i], q->gone[i], rp);
			free(q->d[i].key.dptr);
			store_free_value(q->d[i].val.dptr, (size_t)q->d[i].val.dsize);
		}
		done += n;
	}
	if (done > 0) {
		memmove(q->d, q->d + done, (q->n - done) * sizeof(*q->d));
		q->n -= done;
	}
	return 0;
}

/* reaper_lag - keys a bucket can hold: beyond that, deletes are safe. */
static uint64_t
reaper_lag(struct sessdb *db)
{
	size_t elems = 0;

	if (store_begin(db, LOCK_SH) == -1)
		return 0;
	if (gdbm_setopt(db->dbf, GDBM_GETBUCKETSIZE, &elems, sizeof(elems)) != 0)
		elems = 4096;	/* unknown: be generous */
	store_end(db, 0);
	return (uint64_t)elems + 1;
}

int
sessdb_foreach(struct sessdb *db, unsigned flags, sessdb_foreach_fn fn, void *arg)
{
	struct walk w = { 0 };
	struct reaper q = { 0 };
	struct reap_report rp = { 0, NULL, NULL, NULL };
	struct sessdb_record rec;
	uint64_t seen = 0;
	int remove_bad = (flags & SESSDB_ITER_REMOVE_BAD) != 0, rc = 0;

	if (remove_bad && db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	if (remove_bad && (q.lag = reaper_lag(db)) == 0)
		return -1;
	while (!w.done && rc == 0) {
		if (walk_batch(db, &w, db->opt.sweep_batch) == -1) {
			rc = -1;
			break;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n && rc == 0; i++) {
			if (w.vals[i].dptr == NULL)
				continue;	/* deleted between nextkey and fetch */
			seen++;
			int ok = describe(&w.keys[i], &w.vals[i], &rec);
			if (ok && (flags & SESSDB_ITER_LIVE) && rec.meta.expires <= now)
				continue;
			if (ok && (flags & SESSDB_ITER_EXPIRED) && rec.meta.expires > now)
				continue;
			rc = fn(arg, &rec);
			if (!ok && remove_bad &&
			    reaper_add(db, &q, &w.keys[i], &w.vals[i], 1, seen) == -1)
				rc = -1;
		}
		if (rc == 0 && remove_bad && seen > q.lag &&
		    reaper_flush(db, &q, seen - q.lag, &rp) == -1)
			rc = -1;
	}
	if (rc == 0 && remove_bad && reaper_flush(db, &q, UINT64_MAX, &rp) == -1)
		rc = -1;
	reaper_free(&q);
	walk_free(&w);
	return rc;
}

int
sessdb_sweep(struct sessdb *db, unsigned flags, sessdb_foreach_fn on_removed,
    void *arg, struct sessdb_sweep_result *res)
{
	struct walk w = { 0 };
	struct reaper q = { 0 };
	struct sessdb_sweep_result tmp;
	struct sessdb_record rec;
	struct reap_report rp;
	uint64_t seen = 0, recoveries = db->st.recoveries;
	int rc = -1, retried = 0;

	if (res == NULL)
		res = &tmp;
	memset(res, 0, sizeof(*res));
	rp.dry = (flags & SESSDB_SWEEP_DRY_RUN) != 0;
	rp.on_removed = on_removed;
	rp.arg = arg;
	rp.res = res;
	if (db->rdonly && !rp.dry)
		return store_error(db, "%s: opened read-only", db->path);
	if ((q.lag = reaper_lag(db)) == 0)
		return -1;
	while (!w.done) {
		if (walk_batch(db, &w, db->opt.sweep_batch) == -1) {
			/* A damaged file was repaired under us: the walk's
			 * position means nothing in the new file, and
			 * sweeping is idempotent, so start over once. */
			if (db->st.recoveries == recoveries || retried)
				goto out;
			retried = 1;
			res->examined = res->live = 0;	/* counted again */
			reaper_free(&q);
			walk_free(&w);
			memset(&q, 0, sizeof(q));
			memset(&w, 0, sizeof(w));
			if ((q.lag = reaper_lag(db)) == 0)
				goto out;
			store_log(db, SESSDB_LOG_INFO, "%s: sweep restarts on the "
			    "repaired file", db->path);
			continue;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n; i++) {
			if (w.vals[i].dptr == NULL)
				continue;
			seen++;
			res->examined++;
			int ok = describe(&w.keys[i], &w.vals[i], &rec);
			if (ok && rec.meta.expires > now) {
				res->live++;
				continue;
			}
			if (reaper_add(db, &q, &w.keys[i], &w.vals[i], !ok, seen) == -1)
				goto out;
		}
		if (seen > q.lag && reaper_flush(db, &q, seen - q.lag, &rp) == -1)
			goto out;
	}
	if (reaper_flush(db, &q, UINT64_MAX, &rp) == -1)
		goto out;
	rc = 0;
out:
	reaper_free(&q);
	walk_free(&w);
	return rc;
}
