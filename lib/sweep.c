/*
 * NAME
 *	sweep.c - traversal in batches: sessdb_foreach and sessdb_sweep
 *
 * DESCRIPTION
 *	A traversal never holds a lock for long: the backend hands it one
 *	batch of keys and values at a time (backend.h, scan), and only then
 *	does it decode, report and (for a sweep) delete, in batches of
 *	opts.sweep_batch under one exclusive step each, deleting a record
 *	only if it is still the one it saw.
 *
 *	Deleting may disturb the traversal itself: GDBM stores a bucket's
 *	keys with linear probing and a delete moves later keys back, so a
 *	delete in the bucket being walked makes the walk skip keys.  The
 *	backend says how far behind the walk a delete must stay (scan_lag),
 *	and the sweep deletes each doomed key only once the walk is that far
 *	past it ("delete behind"): the traversal never notices its own
 *	deletes.  Deletes by other processes can still make a traversal miss
 *	a record or see one twice: a sweep picks up a missed record next time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "handle.h"

void
bscan_clear(struct bscan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->items[i].key);
		store_free_value(s->items[i].val, s->items[i].val_len);
	}
	s->n = 0;
}

void
bscan_free(struct bscan *s)
{
	bscan_clear(s);
	free(s->items);
	memset(s, 0, sizeof(*s));
}

/*
 * describe - fill rec from a raw key and value; returns 1 if the header
 *	decodes.  With open, a sealed record is opened into *pt (wipe it
 *	after the callback) or, when it cannot be, reported with a problem
 *	and its seal status but still counted as decodable: a record we
 *	merely cannot open is never removed as garbage.
 */
static int
describe(struct sessdb *db, const struct bitem *it, struct sessdb_record *rec,
    int open, unsigned char **pt)
{
	struct rec r;
	enum rec_status rs;

	*pt = NULL;
	memset(rec, 0, sizeof(*rec));
	rec->key = it->key;
	rec->key_len = it->key_len;
	rs = rec_decode(it->val, it->val_len, rec->key, rec->key_len, &r);
	if (rs != REC_OK) {
		rec->problem = rec_strerror(rs);
		rec->data = it->val;
		rec->len = it->val_len;
		return 0;
	}
	rec_key_parse(rec->key, rec->key_len, &rec->ns, &rec->id, &rec->id_len);
	rec->meta.created = r.created;
	rec->meta.expires = r.expires;
	rec->meta.flags = r.flags;
	rec->meta.key_id = r.key_id;
	rec->data = r.payload;
	rec->len = r.payload_len;
	if (!open || (r.flags & REC_F_SEALED) == 0)
		return 1;
	switch (store_unseal(db, it->key, it->key_len, it->val, &r, pt)) {
	case SEAL_OPENED:
		rec->seal = SESSDB_SEAL_OPENED;
		rec->data = *pt;
		rec->len = r.payload_len - SEAL_OVERHEAD;
		return 1;
	case SEAL_FAILED:
		rec->seal = SESSDB_SEAL_TAMPERED;
		rec->problem = "sealed, fails authentication (tampered)";
		break;
	default:
		rec->seal = SESSDB_SEAL_NOKEY;
		rec->problem = db->seal == NULL ? "sealed, no key" :
		    "sealed under a key not in the key file";
		break;
	}
	rec->data = it->val;
	rec->len = it->val_len;
	return 1;
}

/*
 * The delete-behind queue: copies of doomed records in walk order, with
 * why (undecodable or expired) and where in the walk each was seen,
 * deleted once the walk is more than `lag` keys past them.
 */
struct reaper {
	struct bitem	*items;
	char		*bad;
	uint64_t	*seq;
	char		*gone;
	size_t		n;
	size_t		cap;
	uint64_t	lag;
};

/* reaper_drop - release the first n queued records and move the rest up. */
static void
reaper_drop(struct reaper *q, size_t n)
{
	if (q->items == NULL)
		return;		/* nothing was ever queued */
	for (size_t i = 0; i < n; i++) {
		free(q->items[i].key);
		store_free_value(q->items[i].val, q->items[i].val_len);
	}
	memmove(q->items, q->items + n, (q->n - n) * sizeof(*q->items));
	memmove(q->bad, q->bad + n, q->n - n);
	memmove(q->seq, q->seq + n, (q->n - n) * sizeof(*q->seq));
	q->n -= n;
}

static void
reaper_free(struct reaper *q)
{
	reaper_drop(q, q->n);
	free(q->items);
	free(q->bad);
	free(q->seq);
	free(q->gone);
	memset(q, 0, sizeof(*q));
}

/* dup_bytes - a malloc'ed copy (NULL on failure). */
static unsigned char *
dup_bytes(const unsigned char *p, size_t len)
{
	unsigned char *c = malloc(len > 0 ? len : 1);

	if (c != NULL && len > 0)
		memcpy(c, p, len);
	return c;
}

/* grow - make room for one more element in a reaper array. */
static int
grow(void **arr, size_t size, size_t cap)
{
	void *n = realloc(*arr, cap * size);

	if (n == NULL)
		return -1;
	*arr = n;
	return 0;
}

/* reaper_add - queue a copy of a doomed record. */
static int
reaper_add(struct sessdb *db, struct reaper *q, const struct bitem *it,
    int bad, uint64_t seq)
{
	struct bitem x = { dup_bytes(it->key, it->key_len), it->key_len,
	    dup_bytes(it->val, it->val_len), it->val_len };

	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 64;

		if (grow((void **)&q->items, sizeof(*q->items), cap) == -1 ||
		    grow((void **)&q->bad, 1, cap) == -1 ||
		    grow((void **)&q->seq, sizeof(*q->seq), cap) == -1 ||
		    grow((void **)&q->gone, 1, cap) == -1)
			goto nomem;
		q->cap = cap;
	}
	if (x.key == NULL || x.val == NULL)
		goto nomem;
	q->items[q->n] = x;
	q->bad[q->n] = (char)bad;
	q->seq[q->n] = seq;
	q->n++;
	return 0;
nomem:
	free(x.key);
	store_free_value(x.val, x.val_len);
	return diag_error(db, SESSDB_E_NOMEM, "sweep: out of memory");
}

/* What to do with each record a reaper flush removed. */
struct reap_report {
	int			dry;
	sessdb_foreach_fn	on_removed;
	void			*arg;
	struct sessdb_sweep_result *res;
};

static void
report_one(struct sessdb *db, const struct reaper *q, size_t i,
    const struct reap_report *rp)
{
	struct sessdb_record rec;
	unsigned char *pt;

	if (!q->gone[i]) {
		if (rp->res != NULL)
			rp->res->live++;	/* replaced meanwhile: kept */
		return;
	}
	if (q->bad[i]) {
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
		describe(db, &q->items[i], &rec, 1, &pt);
		(void)rp->on_removed(rp->arg, &rec);
		if (pt != NULL)
			store_free_value(pt, rec.len);
	}
}

/* reaper_flush - delete (or, dry, just report) the queued records seen at
 * or before upto, one exclusive step per sweep_batch of them. */
static int
reaper_flush(struct sessdb *db, struct reaper *q, uint64_t upto,
    const struct reap_report *rp)
{
	size_t batch = db->opt.sweep_batch;

	while (q->n > 0 && q->seq[0] <= upto) {
		size_t n = 0;

		while (n < q->n && n < batch && q->seq[n] <= upto)
			n++;
		if (rp->dry)
			memset(q->gone, 1, n);
		else if (db->be->remove(db, q->items, n, 1, q->gone) == -1)
			return -1;
		if (rp->res != NULL && !rp->dry)
			rp->res->batches++;
		for (size_t i = 0; i < n; i++)
			report_one(db, q, i, rp);
		reaper_drop(q, n);
	}
	return 0;
}

/* walk_start - a fresh traversal; with a reaper, learn its lag. */
static int
walk_start(struct sessdb *db, struct bscan *w, struct reaper *q)
{
	bscan_free(w);
	if (q == NULL)
		return 0;
	reaper_free(q);
	return db->be->scan_lag(db, &q->lag);
}

int
sessdb_foreach(struct sessdb *db, unsigned flags, sessdb_foreach_fn fn, void *arg)
{
	struct bscan w = { 0 };
	struct reaper q = { 0 };
	struct reap_report rp = { 0, NULL, NULL, NULL };
	struct sessdb_record rec;
	unsigned char *pt;
	uint64_t seen = 0;
	int remove_bad = (flags & SESSDB_ITER_REMOVE_BAD) != 0, rc = 0;

	if (remove_bad && db->rdonly)
		return diag_error(db, SESSDB_E_READONLY, "%s: opened read-only",
		    db->path);
	if (store_ready(db) == -1 || walk_start(db, &w, remove_bad ? &q : NULL) == -1)
		return -1;
	while (!w.done && rc == 0) {
		if (db->be->scan(db, &w, db->opt.sweep_batch) == -1) {
			rc = -1;
			break;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n && rc == 0; i++) {
			if (w.items[i].val == NULL)
				continue;	/* deleted between listing and fetch */
			seen++;
			int ok = describe(db, &w.items[i], &rec, 1, &pt);
			if ((ok && (flags & SESSDB_ITER_LIVE) && rec.meta.expires <= now) ||
			    (ok && (flags & SESSDB_ITER_EXPIRED) && rec.meta.expires > now)) {
				store_free_value(pt, rec.len);
				continue;
			}
			rc = fn(arg, &rec);
			if (pt != NULL)
				store_free_value(pt, rec.len);
			if (!ok && remove_bad &&
			    reaper_add(db, &q, &w.items[i], 1, seen) == -1)
				rc = -1;
		}
		if (rc == 0 && remove_bad && seen > q.lag &&
		    reaper_flush(db, &q, seen - q.lag, &rp) == -1)
			rc = -1;
	}
	if (rc == 0 && remove_bad && reaper_flush(db, &q, UINT64_MAX, &rp) == -1)
		rc = -1;
	reaper_free(&q);
	bscan_free(&w);
	return rc;
}

int
sessdb_sweep(struct sessdb *db, unsigned flags, sessdb_foreach_fn on_removed,
    void *arg, struct sessdb_sweep_result *res)
{
	struct bscan w = { 0 };
	struct reaper q = { 0 };
	struct sessdb_sweep_result tmp;
	struct sessdb_record rec;
	unsigned char *pt;
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
		return diag_error(db, SESSDB_E_READONLY, "%s: opened read-only",
		    db->path);
	if (store_ready(db) == -1 || walk_start(db, &w, &q) == -1)
		return -1;
	while (!w.done) {
		if (db->be->scan(db, &w, db->opt.sweep_batch) == -1) {
			/* A damaged store was repaired under us: the walk's
			 * position means nothing in the new file, and
			 * sweeping is idempotent, so start over once. */
			if (db->st.recoveries == recoveries || retried)
				goto out;
			retried = 1;
			res->examined = res->live = 0;	/* counted again */
			if (walk_start(db, &w, &q) == -1)
				goto out;
			diag_log(db, SESSDB_LOG_INFO, "%s: sweep restarts on the "
			    "repaired file", db->path);
			continue;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n; i++) {
			if (w.items[i].val == NULL)
				continue;
			seen++;
			res->examined++;
			int ok = describe(db, &w.items[i], &rec, 0, &pt);
			if (ok && rec.meta.expires > now) {
				res->live++;
				continue;
			}
			if (reaper_add(db, &q, &w.items[i], !ok, seen) == -1)
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
	bscan_free(&w);
	return rc;
}
