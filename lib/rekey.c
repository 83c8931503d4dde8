/*
 * NAME
 *	rekey.c - seal a store's records again under the newest key
 *
 * SYNOPSIS
 *	int sessdb_rekey(struct sessdb *db, struct sessdb_rekey_result *res);
 *
 * DESCRIPTION
 *	Two steps, so the traversal never sees its own writes: a traversal
 *	(in batches, shared steps) lists the keys of live records not sealed
 *	under the newest key; then, a batch of opts.sweep_batch at a time,
 *	each is read again, opened and sealed anew, the batch is removed in
 *	one exclusive step where a key still holds the bytes read (a record
 *	replaced or taken meanwhile is left alone), and each removed record
 *	is written back sealed.  A lookup between the two misses, as after
 *	a sweep; a taken record is never brought back.
 *
 *	Records that cannot be opened (under a key not in the file, or
 *	failing authentication) are counted and left as they are.
 *
 * DIAGNOSTICS
 *	Returns 0, or -1 with sessdb_error() set.
 */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

/* One record to seal again: its key, the bytes read, the new bytes. */
struct redo {
	unsigned char	*key;		/* malloc'ed: keys run to REC_KEY_MAX
					   (1281) bytes, most are 33 */
	size_t		key_len;
};

struct redo_list {
	struct redo	*v;
	size_t		n, cap;
};

/* wants_reseal - is the record (key, val) live and not yet sealed under
 * the newest key?  Counts what it skips. */
static int
wants_reseal(struct sessdb *db, const struct bitem *it, int64_t now,
    struct sessdb_rekey_result *res)
{
	struct rec r;

	res->examined++;
	if (rec_decode(it->val, it->val_len, it->key, it->key_len, &r) != REC_OK ||
	    r.expires <= now) {
		res->skipped++;
		return 0;
	}
	if ((r.flags & REC_F_SEALED) == 0)
		return 1;
	if (r.key_id == seal_newest_id(db->seal)) {
		res->current++;
		return 0;
	}
	if (!seal_has_key(db->seal, r.key_id)) {
		res->unopened++;
		return 0;
	}
	return 1;	/* an old key: opened (and checked) in the second step */
}

/* list_keys - the first step: every key to seal again. */
static int
list_keys(struct sessdb *db, struct redo_list *l, struct sessdb_rekey_result *res)
{
	struct bscan w = { 0 };
	int rc = 0;

	while (!w.done && rc == 0) {
		if (db->be->scan(db, &w, db->opt.sweep_batch) == -1) {
			rc = -1;
			break;
		}
		int64_t now = sessdb_now(db);
		for (size_t i = 0; i < w.n; i++) {
			const struct bitem *it = &w.items[i];

			if (it->val == NULL || it->key_len > REC_KEY_MAX ||
			    !wants_reseal(db, it, now, res))
				continue;
			if (l->n == l->cap) {
				size_t cap = l->cap ? 2 * l->cap : 256;
				struct redo *v = realloc(l->v, cap * sizeof(*v));

				if (v == NULL) {
					rc = diag_error(db, SESSDB_E_NOMEM,
					    "rekey: out of memory");
					break;
				}
				l->v = v;
				l->cap = cap;
			}
			if ((l->v[l->n].key = malloc(it->key_len)) == NULL) {
				rc = diag_error(db, SESSDB_E_NOMEM,
				    "rekey: out of memory");
				break;
			}
			memcpy(l->v[l->n].key, it->key, it->key_len);
			l->v[l->n++].key_len = it->key_len;
		}
	}
	bscan_free(&w);
	return rc;
}

/* reseal_one - read key again and make its new value; 1 ready (old and
 * new set), 0 skipped (counted), -1 error. */
static int
reseal_one(struct sessdb *db, const struct redo *k, struct bitem *old,
    struct bitem *neu, int64_t *expires, struct sessdb_rekey_result *res)
{
	unsigned char *pt = NULL;
	const unsigned char *data;
	size_t len;
	struct rec r;
	int rc;

	rc = db->be->fetch(db, k->key, k->key_len, old);
	if (rc != 1)
		return rc == 0 ? (res->skipped++, 0) : -1;
	if (rec_decode(old->val, old->val_len, k->key, k->key_len, &r) != REC_OK ||
	    r.expires <= sessdb_now(db)) {
		res->skipped++;
		return 0;
	}
	data = r.payload;
	len = r.payload_len;
	if (r.flags & REC_F_SEALED) {
		if (r.key_id == seal_newest_id(db->seal)) {
			res->current++;		/* sealed meanwhile */
			return 0;
		}
		switch (store_unseal(db, k->key, k->key_len, old->val, &r, &pt)) {
		case SEAL_OPENED:
			break;
		case SEAL_ERROR:
			return diag_error(db, SESSDB_E_NOMEM, "rekey: out of memory");
		default:
			res->unopened++;	/* tampered: left to lookups */
			return 0;
		}
		data = pt;
		len = r.payload_len - SEAL_OVERHEAD;
	}
	neu->val = store_encode(db, k->key, k->key_len, data, len, r.created,
	    r.expires, &neu->val_len);
	store_free_value(pt, len);
	if (neu->val == NULL)
		return -1;
	*expires = r.expires;
	return 1;
}

/* reseal_batch - the second step for keys[0..n): one exclusive removal
 * of the records still as read, then each written back sealed. */
static int
reseal_batch(struct sessdb *db, const struct redo *keys, size_t n,
    struct sessdb_rekey_result *res)
{
	struct bitem *old = calloc(n, sizeof(*old)), *neu = calloc(n, sizeof(*neu));
	int64_t *exp = calloc(n, sizeof(*exp));
	char *gone = calloc(n, 1);
	size_t m = 0;
	int rc = -1;

	if (old == NULL || neu == NULL || exp == NULL || gone == NULL) {
		diag_error(db, SESSDB_E_NOMEM, "rekey: out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct bitem o = { 0 }, w = { 0 };
		int r = reseal_one(db, &keys[i], &o, &w, &exp[m], res);

		if (r != 1) {
			store_free_value(o.val, o.val_len);
			if (r == -1)
				goto out;
			continue;
		}
		o.key = (unsigned char *)keys[i].key;
		o.key_len = keys[i].key_len;
		old[m] = o;
		neu[m++] = w;
	}
	if (m == 0) {
		rc = 0;
		goto out;
	}
	if (db->be->remove(db, old, m, 1, gone) == -1)
		goto out;
	res->batches++;
	rc = 0;
	for (size_t i = 0; i < m; i++) {
		if (!gone[i]) {
			res->skipped++;		/* replaced or taken meanwhile */
			continue;
		}
		/* Only where nothing new was put since the removal. */
		int s = db->be->store(db, old[i].key, old[i].key_len, neu[i].val,
		    neu[i].val_len, exp[i], BSTORE_NEW);
		if (s == 1) {
			res->resealed++;
			continue;
		}
		/* Lost: a cache may lose entries, never hand out wrong ones. */
		diag_log(db, SESSDB_LOG_WARNING, "%s: rekey could not write a "
		    "record back (%s)", db->path, s == 0 ? "store full" : db->err);
		if (s == -1) {
			rc = -1;
			break;
		}
	}
out:
	for (size_t i = 0; old != NULL && neu != NULL && i < m; i++) {
		store_free_value(old[i].val, old[i].val_len);
		store_free_value(neu[i].val, neu[i].val_len);
	}
	free(old);
	free(neu);
	free(exp);
	free(gone);
	return rc;
}

int
sessdb_rekey(struct sessdb *db, struct sessdb_rekey_result *res)
{
	struct sessdb_rekey_result tmp;
	struct redo_list l = { NULL, 0, 0 };
	int rc = -1;

	if (res == NULL)
		res = &tmp;
	memset(res, 0, sizeof(*res));
	if (db->seal == NULL)
		return diag_error(db, SESSDB_E_ARG, "%s: rekey needs a key file",
		    db->path);
	if (db->rdonly)
		return diag_error(db, SESSDB_E_READONLY, "%s: opened read-only",
		    db->path);
	if (store_ready(db) == -1 || list_keys(db, &l, res) == -1)
		goto out;
	for (size_t i = 0; i < l.n; i += db->opt.sweep_batch) {
		size_t n = l.n - i < db->opt.sweep_batch ? l.n - i :
		    db->opt.sweep_batch;

		if (reseal_batch(db, l.v + i, n, res) == -1)
			goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].key);
	free(l.v);
	return rc;
}
