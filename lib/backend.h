/*
 * NAME
 *	backend.h - the storage seam: where records are kept
 *
 * DESCRIPTION
 *	The operations (store.c, sweep.c) decide what a record means: its
 *	encoding, expiry, the caps, the counters, fork handling, batching.
 *	A backend only keeps bytes under keys, and makes each call below
 *	atomic with respect to every other process using the store: a call
 *	takes whatever lock or round trip it needs and releases it before it
 *	returns.  Keys and values are the record codec's bytes (record.h);
 *	the store's own keys (namespace REC_NS_META) are never shown by scan.
 *
 *	A backend is one file (backend_gdbm.c) and one line in the table of
 *	store.c's backend_for(), which picks it from the path given to
 *	sessdb_open.  Every call returns -1 with diag_error() set on error.
 *	Values handed out are malloc'ed and hold secrets: the caller wipes
 *	them (store_free_value).
 */
#ifndef SESSDB_BACKEND_H
#define SESSDB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sessdb.h"

struct sessdb;

#define BSTORE_NEW	0x01	/* store: only where no live record is */

/* One key and its value. */
struct bitem {
	unsigned char	*key;
	size_t		key_len;
	unsigned char	*val;		/* NULL: the key vanished before its
					   value was read */
	size_t		val_len;
};

/* A traversal in batches; zero it to start, bscan_free when done. */
struct bscan {
	struct bitem	*items;		/* the current batch */
	size_t		n;
	size_t		cap;
	int		started;
	int		done;		/* no batch after this one */
	unsigned	restarts;	/* times the position was lost */
	uint64_t	cursor;		/* the backend's position, if numeric */
};

struct backend {
	const char *name;
	/* open - set up db->be for db->path; the store must exist or be
	 * creatable as db->opt says.  Nothing is created beside a path that
	 * is not a store. */
	int  (*open)(struct sessdb *db);
	void (*close)(struct sessdb *db);
	/* after_fork - the process is a fork's child: drop what it shares
	 * with its parent (descriptors, locks) and take its own. */
	int  (*after_fork)(struct sessdb *db);
	/* fetch - the value under key: 1 (out->val set), 0 absent, -1. */
	int  (*fetch)(struct sessdb *db, const unsigned char *key, size_t key_len,
	    struct bitem *out);
	/* store - insert or replace, unless the record is new and
	 * store_cap_exceeded() says the caps forbid it; with BSTORE_NEW,
	 * only if no live record is there (an expired or unreadable one is
	 * replaced), decided in the same atomic step: 1 stored, 0
	 * declined, 2 a live record is there (BSTORE_NEW), -1. */
	int  (*store)(struct sessdb *db, const unsigned char *key, size_t key_len,
	    const unsigned char *val, size_t val_len, int64_t expires,
	    unsigned flags);
	/* take - fetch and delete as one step: of many processes taking one
	 * key, one gets 1 (out->val set); 0 absent, -1. */
	int  (*take)(struct sessdb *db, const unsigned char *key, size_t key_len,
	    struct bitem *out);
	/* remove - delete n keys in one exclusive step; with if_same, a key
	 * only while it still holds exactly items[i].val (a record replaced
	 * meanwhile survives).  gone[i] says whether it was deleted.  0, -1. */
	int  (*remove)(struct sessdb *db, const struct bitem *items, size_t n,
	    int if_same, char *gone);
	/* scan - replace s->items with the next batch of at most max records
	 * (keys and values); s->done after the last.  0, -1. */
	int  (*scan)(struct sessdb *db, struct bscan *s, size_t max);
	/* scan_lag - how many keys behind the scan a delete must stay so
	 * the scan skips nothing (0: deletes never disturb it).  0, -1. */
	int  (*scan_lag)(struct sessdb *db, uint64_t *lag);
	/* claim_sweep - may this process sweep for the caps now (at most
	 * once an interval of seconds across all processes)?  1 or 0. */
	int  (*claim_sweep)(struct sessdb *db, int64_t now, int interval);
	int  (*info)(struct sessdb *db, struct sessdb_info *info);
	/* compact - give the free space back; other processes follow. */
	int  (*compact)(struct sessdb *db);
};

extern const struct backend backend_gdbm;
extern const struct backend backend_redis;	/* or a stub without hiredis */

/* bscan_free - release a traversal's items (values wiped). */
void bscan_free(struct bscan *s);

/* bscan_clear - release the items of the current batch, keep the array. */
void bscan_clear(struct bscan *s);

#endif /* SESSDB_BACKEND_H */
