/*
 * NAME
 *	lock.h - the lock file: flock with bounded waits, and a shared page
 *	holding the change counter and the store's size counters
 *
 * DESCRIPTION
 *	"<db>.lock" is a small host-local file, mapped MAP_SHARED by every
 *	process using the store.  Its first page holds a magic, a change
 *	counter that every writer bumps under LOCK_EX (so a handle knows, for
 *	the price of a memory read, whether its GDBM state is stale), and the
 *	record and byte counters used by the capacity cap.  Native byte order:
 *	the lock file is never copied between machines; a page with a wrong
 *	magic is simply reinitialised.
 *
 *	Waiting for a lock: flock(2) has no timeout, and a library may not use
 *	signals to interrupt it.  A waiter instead sleeps on a futex in the
 *	shared page (unlock_seq, with a timeout), and every unlock bumps it and
 *	wakes the sleepers when there are any: the wait is bounded, and the
 *	hand-over is as quick as a blocking flock.
 */
#ifndef SESSDB_LOCK_H
#define SESSDB_LOCK_H

#include <stddef.h>
#include <stdint.h>

#define LOCK_PAGE_MAGIC "SDBLOCK1"

struct lock_page {
	char		magic[8];
	uint64_t	generation;	/* bumped by every committed write */
	uint64_t	entries;	/* records in the database (approximate) */
	uint64_t	bytes;		/* key + value bytes of those records */
	int64_t		swept_at;	/* last capacity sweep, unix seconds */
	int32_t		writer;		/* pid of the LOCK_EX holder while it may
					   be changing the file; non-zero
					   with no holder = it died mid-write */
	uint32_t	unlock_seq;	/* futex word: bumped by every unlock */
	uint32_t	waiters;	/* processes sleeping on unlock_seq */
	/* Appended in format 1.1 (a page of 1.0 has zeros here). */
	uint64_t	db_dev;		/* identity of the database file the */
	uint64_t	db_ino;		/* store uses (0 = not yet known) */
	int32_t		fault_errno;	/* a write failed with this error and the
					   file awaits a check (writer is set) */
	uint32_t	counts_unknown;	/* entries/bytes need a recount (a new
					   lock file beside an existing store) */
	uint64_t	repair_failed_ms; /* CLOCK_MONOTONIC ms of the last check
					   that could not finish (0 = none) */
	int64_t		rebuild_started; /* unix seconds a rebuild began; 0 when
					   none is running or it finished */
	uint32_t	retired;	/* the lock path names another file now:
					   whoever holds this page moves on */
	uint32_t	rebuild_lost;	/* records or buckets the running rebuild
					   could not copy, so far */
	/* The index of live records that follows this page (index.h). */
	uint32_t	index_slots;	/* 0: no index (yet) */
	uint32_t	index_slot_size;
	uint64_t	index_dev;	/* the database file the index describes; */
	uint64_t	index_ino;	/* 0: describes nothing, not to be read */
	uint64_t	index_boot;	/* the boot it was written in: an OS crash
					   loses page-cache writes unevenly */
};

#define LOCK_PAGE_SIZE	4096	/* the lock page; the index follows it */

struct lockfile {
	int			fd;
	uint64_t		dev;	/* identity of the lock file opened */
	uint64_t		ino;
	struct lock_page	*page;	/* NULL if the file could not be mapped */
	int			writable;
	int			held;	/* 0, LOCK_SH or LOCK_EX */
};

/* safe_open - open path refusing symlinks, non-regular files, foreign
 * owners and group/world-writable modes; create (0600) if creat.  Returns
 * an fd, or -1 with a message in err and errno set (ENOTSTORE: not a
 * regular file; EACCES: another owner or a loose mode; ELOOP: a symlink);
 * *created tells whether it was made, and *st (if not NULL) receives the
 * file's status. */
struct stat;
int safe_open(const char *path, int writable, int creat, int *created,
    struct stat *st, char *err, size_t errlen);

/* lock_open - open or create the lock file and map its page; a new page
 * is initialised under LOCK_EX, waiting at most timeout_ms. */
int lock_open(struct lockfile *lf, const char *path, int writable,
    unsigned timeout_ms, char *err, size_t errlen);

/* lock_replaced - does path no longer name the lock file lf has open (it
 * was removed or replaced)?  A page marked retired is; otherwise one
 * stat(2), and a replaced page is marked retired for the others. */
int lock_replaced(struct lockfile *lf, const char *path);

/* lock_retired - has some process found this lock file replaced?  A
 * memory read: readers look at it on every call. */
int lock_retired(const struct lockfile *lf);

void lock_close(struct lockfile *lf);

/* lock_acquire - flock LOCK_SH or LOCK_EX, waiting at most timeout_ms.
 * Returns 0, or -1 with errno (ETIMEDOUT when the wait ran out). */
int lock_acquire(struct lockfile *lf, int op, unsigned timeout_ms);

void lock_release(struct lockfile *lf);

/* lock_generation - the change counter (0 if the page is unavailable). */
uint64_t lock_generation(const struct lockfile *lf);

/* lock_bump - a write was committed: increment the change counter.  Must
 * hold LOCK_EX, or LOCK_SH while nobody can write (a compaction renamed
 * its copy over the file).  Returns the new value. */
uint64_t lock_bump(struct lockfile *lf);

/* lock_writer - the pid marked as writing, or 0. */
int32_t lock_writer(const struct lockfile *lf);

/* lock_set_writer - mark (pid) or clear (0) a write in progress; LOCK_EX held. */
void lock_set_writer(struct lockfile *lf, int32_t pid);

/* lock_count - adjust the record and byte counters (saturating at 0). */
void lock_count(struct lockfile *lf, int64_t entries, int64_t bytes);

/* lock_set_counts - overwrite the counters (after a full recount). */
void lock_set_counts(struct lockfile *lf, uint64_t entries, uint64_t bytes);

#endif /* SESSDB_LOCK_H */
