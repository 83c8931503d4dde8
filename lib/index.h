/*
 * NAME
 *	index.h - the index of live records: lookups without a system call
 *
 * DESCRIPTION
 *	A hash table of fixed slots in the lock file, after the lock page,
 *	mapped shared by every process: each slot holds one record's key and
 *	its stored bytes (header and payload) as the database has them.  It
 *	is a cache of the database, written through by the LOCK_EX holder
 *	(one writer at a time) and read by anyone with no lock: a slot's
 *	sequence number is odd while it is written, and a reader that sees
 *	it change retries or falls back to the database.  A writer killed
 *	inside a slot leaves it odd: no reader trusts it, the next writer
 *	reuses it.  The record's own CRC (over key, header and payload)
 *	catches anything else.  The index describes one database file (its
 *	device and inode, and the boot it was written in, in the lock page)
 *	and is emptied whenever the file is replaced: it is never trusted
 *	beyond the file it was filled from.  A compaction, which copies every
 *	record unchanged, keeps it; a rebuild checks it against the new file
 *	(putting back what the file lost, index_walk) and then keeps it.
 */
#ifndef SESSDB_INDEX_H
#define SESSDB_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "lock.h"

#define INDEX_SLOT_SIZE	1024	/* one record up to 960 bytes: a DER session
				   (130-180 bytes; with an ECDSA client
				   certificate about 700); larger ones are
				   looked up in the file */
#define INDEX_WAYS	8	/* slots a key may occupy (one set) */

struct index {
	unsigned char	*base;		/* the slots; NULL: no index */
	size_t		nslots;
	size_t		map_len;
	int		writable;
};

/* index_geometry - slots for a store capped at max_entries (0: default). */
uint32_t index_geometry(uint64_t max_entries);

/* index_open - map the index of lf (sizing the lock file for it if lf is
 * writable and its page has a geometry).  0, or -1 with errno; a page
 * without an index leaves ix->base NULL and returns 0. */
int index_open(struct index *ix, struct lockfile *lf);

void index_close(struct index *ix);

/* index_get - a copy of the stored bytes under key (malloc'ed, the
 * caller wipes it): 1, or 0 when the index cannot say (absent, being
 * written, too large): then ask the database. */
int index_get(const struct index *ix, const unsigned char *key, size_t key_len,
    unsigned char **val, size_t *val_len);

/* index_put - key now holds val until expires (LOCK_EX held); a value too
 * large for a slot just clears the key.  now chooses what to evict. */
void index_put(struct index *ix, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires, int64_t now);

/* index_clear - key is about to change or go (LOCK_EX held). */
void index_clear(struct index *ix, const unsigned char *key, size_t key_len);

/* index_walk - call fn for each record a slot holds whole (LOCK_EX held);
 * key and val point into the index, valid during the call.  fn returns
 * INDEX_KEEP, INDEX_DROP (the slot is emptied) or INDEX_STOP.  A slot left
 * odd by a killed writer is emptied.  Returns 0, or -1 if fn stopped. */
enum { INDEX_KEEP = 0, INDEX_DROP = 1, INDEX_STOP = -1 };
typedef int (*index_walk_fn)(void *arg, const unsigned char *key,
    size_t key_len, const unsigned char *val, size_t val_len);
int index_walk(struct index *ix, index_walk_fn fn, void *arg);

/* index_reset - empty every slot (LOCK_EX held). */
void index_reset(struct index *ix);

/* index_boot - an identifier of the running boot (0 if unknown). */
uint64_t index_boot(void);

#endif /* SESSDB_INDEX_H */
