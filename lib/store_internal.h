/*
 * NAME
 *	store_internal.h - the handle, shared by store.c and sweep.c
 */
#ifndef SESSDB_STORE_INTERNAL_H
#define SESSDB_STORE_INTERNAL_H

#include <gdbm.h>
#include <sys/types.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "record.h"
#include "sessdb.h"

/* errno for "this path is not a sessdb store": such a file is refused and
 * never written, repaired or moved. */
#define ENOTSTORE EMEDIUMTYPE

struct sessdb {
	char			*path;
	char			*lock_path;
	struct sessdb_options	opt;
	int			rdonly;
	struct lockfile		lock;
	GDBM_FILE		dbf;		/* NULL until the first operation */
	int			null_fd;	/* /dev/null, see gdbm_close_nosync */
	uint64_t		seen_gen;	/* change counter dbf is current with */
	unsigned long		fork_epoch;	/* process the descriptors belong to */
	int32_t			pid;		/* getpid() of that process */
	uint64_t		db_dev;		/* identity of the database file */
	uint64_t		db_ino;		/* recognised as a sessdb store */
	int			need_marker;	/* recognised without a marker: a
						   writer adds it */
	uint64_t		checked_ms;	/* last check that the paths still
						   name our files (readers) */
	int			fault;		/* errno of the write failure last
						   logged (0: writes work) */
	off_t			reserved_to;	/* disk allocated up to here */
	off_t			size_seen;	/* file size seen under this lock,
						   or -1 */
	struct sessdb_stats	st;
	char			err[512];
};

/* store_begin - take the lock (LOCK_SH or LOCK_EX) and make dbf current.
 * May upgrade to LOCK_EX to initialise or recover the file.  -1 on error,
 * with the message set and no lock held. */
int store_begin(struct sessdb *db, int op);

/* store_end - release the lock; if wrote, bump the change counter first. */
void store_end(struct sessdb *db, int wrote);

/* store_gdbm_fail - report a failed GDBM call (lock held), release the
 * lock, and repair the file if GDBM says it is damaged.  Returns -1. */
int store_gdbm_fail(struct sessdb *db, const char *what);

/* store_error - set the handle's message (printf-like) and return -1. */
int store_error(struct sessdb *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* store_log - pass a message to the application's log callback. */
void store_log(struct sessdb *db, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* store_delete_same_locked - store_delete_if_same with LOCK_EX already
 * held; on error (-1) the lock has been released. */
int store_delete_same_locked(struct sessdb *db, datum key,
    const unsigned char *value, size_t value_len);

/* store_delete_if_same - delete key if it still holds exactly value
 * (so a record replaced meanwhile survives).  Takes LOCK_EX itself.
 * Returns 1 if deleted, 0 if not, -1 on error. */
int store_delete_if_same(struct sessdb *db, const unsigned char *key,
    size_t key_len, const unsigned char *value, size_t value_len);

/* store_reserve - allocate disk room for an update of bytes before GDBM
 * writes (LOCK_EX held); -1 with errno ENOSPC/EDQUOT if there is none. */
int store_reserve(struct sessdb *db, size_t bytes);

/* store_recount - count records and bytes (LOCK_EX held) into the lock page. */
void store_recount(struct sessdb *db);

/* store_free_value - wipe and free a value GDBM handed us: record
 * payloads hold master secrets.  NULL is a no-op. */
static inline void
store_free_value(void *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

#endif /* SESSDB_STORE_INTERNAL_H */
