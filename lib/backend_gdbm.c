/*
 * NAME
 *	backend_gdbm.c - the store on a GDBM file, locked with flock
 *
 * DESCRIPTION
 *	One long-lived GDBM handle per process, opened with GDBM_NOLOCK (our
 *	flock on "<db>.lock" replaces GDBM's single-writer lock) and
 *	GDBM_NOMMAP (a file truncated behind a mapping would SIGBUS the
 *	server; with pread a damaged file is only an error).
 *
 *	GDBM caches the header, the bucket directory and buckets in memory,
 *	so a handle must not be used after another process wrote.  Every
 *	writer bumps a change counter in the lock file's shared page while it
 *	holds LOCK_EX; every call compares it with the value its handle is
 *	current with and reopens the handle when they differ.  A process that
 *	only reads, or that is the only writer, never reopens.
 *
 *	Only a file known (the lock page records its identity) or recognised
 *	(GDBM magic and the marker key) is ever written, repaired or moved.
 *	Damage (GDBM reports a structural error) is repaired under LOCK_EX:
 *	a rebuild, or if GDBM cannot even open the file it is renamed to
 *	"<db>.corrupt-<unixtime>" and a fresh one created.  A fault (no
 *	space, an I/O error) is an error, never a repair.  Every repair bumps
 *	the change counter so other processes reopen.  docs/ARCHITECTURE.md
 *	tells the whole story.
 *
 * DIAGNOSTICS
 *	Functions return -1 with sessdb_error() set; repairs and other
 *	notable events also go to the log callback.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <paths.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "handle.h"
#include "index.h"
#include "lock.h"

#define REPAIR_RETRY_MS		1000	/* a check that could not run (no space,
					   I/O error) is tried again after this */
#define PATH_CHECK_MS		1000	/* readers check the paths this often */
#define GDBM_MAGIC_FIRST	0x13579acdu	/* GDBM's file magics (1.8 .. 1.23) */
#define GDBM_MAGIC_LAST		0x13579ad1u
#define REBUILD_KEEP		".rebuild-orig"	/* the old file during a rebuild */
#define RESERVE_SLACK		(64 * 1024)	/* allocated ahead beyond one update */
#define MAX_RESTARTS		8	/* a scan that lost its place starts over */

/* The marker: a key of the store's own namespace that says "sessdb". */
static const unsigned char marker_key[] = { REC_NS_META, 's', 'e', 's', 's', 'd', 'b' };
static const char marker_val[] = "sessdb store 1";

/* The lock bracket every call runs in, and its failure path. */
static int store_begin(struct sessdb *db, int op);
static void store_end(struct sessdb *db, int wrote);
static int store_gdbm_fail(struct sessdb *db, const char *what);
static void store_recount(struct sessdb *db);
static int store_reserve(struct sessdb *db, size_t bytes);
static void index_restamp(struct sessdb *db, int keep);

/* The GDBM backend's part of a handle. */
struct gdb {
	char			*lock_path;
	struct lockfile		lock;
	GDBM_FILE		dbf;		/* NULL until the first operation */
	int			null_fd;	/* /dev/null, see gdbm_close_nosync */
	uint64_t		seen_gen;	/* change counter dbf is current with */
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
	struct index		ix;		/* the index after the lock page */
	int			index_tried;	/* made (or failed to make) one */
	int			index_agrees;	/* a repair checked the index
						   against the new file */
	uint64_t		boot;		/* index_boot() of this process */
};

/*
 * gdbm_close_nosync - close a handle without the fsync gdbm_close does for
 * writers.  GDBM has already written every update when gdbm_store and
 * gdbm_delete returned (it syncs to disk only with GDBM_SYNC), so the
 * fsync buys durability a cache does not need, at the price of a disk
 * flush whenever a handle is reopened.  Pointing the descriptor at
 * /dev/null makes that fsync a harmless EINVAL; GDBM then closes it.
 */
static void
gdbm_close_nosync(struct sessdb *db, GDBM_FILE dbf)
{
	struct gdb *g = db->be_state;
	int fd = gdbm_fdesc(dbf);

	if (g->null_fd < 0)
		g->null_fd = open(_PATH_DEVNULL, O_RDWR | O_CLOEXEC);
	if (g->null_fd >= 0 && fd >= 0)
		dup3(g->null_fd, fd, O_CLOEXEC);
	gdbm_close(dbf);
}

/*
 * is_fault - is this system error a fault of the device or the system
 *	(it may clear), rather than a symptom of a damaged file (an lseek to
 *	a bad offset gives EINVAL)?
 */
static int
is_fault(int sys)
{
	switch (sys) {
	case EIO:
	case ENOSPC:
	case EDQUOT:
	case EROFS:
	case ENOMEM:
	case EMFILE:
	case ENFILE:
	case EACCES:
	case EPERM:
	case EINTR:
	case EAGAIN:
	case ENXIO:
	case ENODEV:
	case ESTALE:
		return 1;
	default:
		return 0;
	}
}

/*
 * is_damage - does this GDBM error mean the file's structure is broken?
 *	An error that comes with a fault (EIO, ENOSPC, ...) is a fault of
 *	the device or the system, not of the file: it is reported and
 *	counted, never "repaired" (a repair would move an intact store aside).
 */
static int
is_damage(gdbm_error e, int sys)
{
	if (is_fault(sys))
		return 0;
	switch (e) {
	case GDBM_BAD_MAGIC_NUMBER:
	case GDBM_BLOCK_SIZE_ERROR:
	case GDBM_FILE_EOF:
	case GDBM_BAD_FILE_OFFSET:
	case GDBM_BAD_HEADER:
	case GDBM_BAD_BUCKET:
	case GDBM_BAD_HASH_TABLE:
	case GDBM_BAD_DIR_ENTRY:
	case GDBM_BAD_AVAIL:
	case GDBM_NEED_RECOVERY:
	case GDBM_FILE_READ_ERROR:
	case GDBM_EMPTY_DATABASE:
	case GDBM_BUCKET_CACHE_CORRUPTED:
	case GDBM_BAD_HASH_ENTRY:
		return 1;
	default:
		return 0;
	}
}

/* to_datum - a GDBM datum for bytes (no copy). */
static datum
to_datum(const unsigned char *p, size_t len)
{
	datum d = { (char *)p, (int)len };
	return d;
}

/* gdbm_sys - the system error behind the last GDBM error of dbf, or 0. */
static int
gdbm_sys(GDBM_FILE dbf)
{
	gdbm_error e = gdbm_last_errno(dbf);

	return gdbm_check_syserr(e) ? gdbm_last_syserr(dbf) : 0;
}

/*
 * wrote_all - did a GDBM update that returned rc really reach the file?
 *	GDBM 1.23 writes changed buckets after the update proper and ignores
 *	a failure there: gdbm_store and gdbm_delete return 0 and only mark
 *	the handle as needing recovery.  Such an update is a failure.
 */
static int
wrote_all(GDBM_FILE dbf, int rc)
{
	return rc == 0 && !gdbm_needs_recovery(dbf);
}

/* file_kind - 1 if fd starts with a GDBM magic, 0 if it is empty, -1 if it
 * holds something else, -2 if it cannot be read (*e set). */
static int
file_kind(int fd, int *e)
{
	unsigned char b[4];
	uint32_t magic;
	ssize_t n = pread(fd, b, sizeof(b), 0);

	if (n == -1) {
		*e = errno;
		return -2;
	}
	if (n == 0)
		return 0;
	if (n < (ssize_t)sizeof(b))
		return -1;
	memcpy(&magic, b, sizeof(magic));	/* GDBM writes it in host order */
	return magic >= GDBM_MAGIC_FIRST && magic <= GDBM_MAGIC_LAST ? 1 : -1;
}

/* known_file - is st the file this handle, or the lock page, already
 * recognised as the store? */
static int
known_file(const struct sessdb *db, const struct stat *st)
{
	const struct gdb *g = db->be_state;
	const struct lock_page *p = g->lock.page;
	uint64_t dev = (uint64_t)st->st_dev, ino = (uint64_t)st->st_ino;

	if (g->db_ino != 0 && g->db_dev == dev && g->db_ino == ino)
		return 1;
	return p != NULL && __atomic_load_n(&p->db_ino, __ATOMIC_ACQUIRE) == ino &&
	    __atomic_load_n(&p->db_dev, __ATOMIC_RELAXED) == dev;
}

/* remember_file - st is the store's database file: note it in the handle
 * and in the lock page, for every process. */
static void
remember_file(struct sessdb *db, const struct stat *st)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;

	g->db_dev = (uint64_t)st->st_dev;
	g->db_ino = (uint64_t)st->st_ino;
	if (p == NULL || !g->lock.writable)
		return;
	__atomic_store_n(&p->db_dev, g->db_dev, __ATOMIC_RELAXED);
	__atomic_store_n(&p->db_ino, g->db_ino, __ATOMIC_RELEASE);
}

/* remember_path - remember the file path names now (after we replaced it). */
static void
remember_path(struct sessdb *db)
{
	struct stat st;

	if (stat(db->path, &st) == 0)
		remember_file(db, &st);
}

/*
 * has_marker - is the open GDBM file a sessdb store?  Yes if it holds the
 *	marker key; a file of format 1.0 (no marker) if it is empty or one of
 *	its first records decodes (a writer then adds the marker).  Returns
 *	1, 0 (a GDBM database of something else), or -1 (a GDBM error).
 */
static int
has_marker(struct sessdb *db, GDBM_FILE dbf)
{
	struct gdb *g = db->be_state;
	datum k = { (char *)marker_key, (int)sizeof(marker_key) }, v, next;
	struct rec r;
	int ours = 0;

	v = gdbm_fetch(dbf, k);
	if (v.dptr != NULL) {
		ours = (size_t)v.dsize == sizeof(marker_val) - 1 &&
		    memcmp(v.dptr, marker_val, sizeof(marker_val) - 1) == 0;
		free(v.dptr);
		return ours;
	}
	if (gdbm_last_errno(dbf) != GDBM_ITEM_NOT_FOUND)
		return -1;
	k = gdbm_firstkey(dbf);
	if (k.dptr == NULL && gdbm_last_errno(dbf) != GDBM_ITEM_NOT_FOUND)
		return -1;
	ours = k.dptr == NULL;		/* empty: nothing of anyone's to lose */
	for (int i = 0; i < 4 && k.dptr != NULL && !ours; i++) {
		v = gdbm_fetch(dbf, k);
		ours = v.dptr != NULL && rec_decode((unsigned char *)v.dptr,
		    (size_t)v.dsize, (unsigned char *)k.dptr, (size_t)k.dsize,
		    &r) == REC_OK;
		store_free_value(v.dptr, (size_t)v.dsize);
		next = gdbm_nextkey(dbf, k);
		free(k.dptr);
		k = next;
	}
	free(k.dptr);
	if (ours)
		g->need_marker = 1;
	return ours;
}

/* write_marker - give a recognised store its marker key (LOCK_EX held).
 * No room means another try by the next writer; -1 (lock released) if
 * the write failed. */
static int
write_marker(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	datum k = { (char *)marker_key, (int)sizeof(marker_key) };
	datum v = { (char *)marker_val, (int)sizeof(marker_val) - 1 };

	if (store_reserve(db, sizeof(marker_key) + sizeof(marker_val)) == -1)
		return 0;	/* no room now: the next writer tries */
	if (!wrote_all(g->dbf, gdbm_store(g->dbf, k, v, GDBM_REPLACE)))
		return store_gdbm_fail(db, "store the marker");
	g->need_marker = 0;
	g->seen_gen = lock_bump(&g->lock);	/* others' caches are stale */
	return 0;
}

/* refuse - the file at path is not ours: say so; nothing was written. */
static GDBM_FILE
refuse(struct sessdb *db, int fd, int *sys_errno, const char *what)
{
	if (fd >= 0)
		close(fd);
	snprintf(db->err, sizeof(db->err), "%s: %s; not a sessdb store, left "
	    "untouched", db->path, what);
	db->errcode = SESSDB_E_NOT_STORE;
	*sys_errno = ENOTSTORE;
	return NULL;
}

/*
 * open_gdbm - a GDBM handle on the file path names now, creating the file
 *	if creat (LOCK_EX held).  A file this handle or the lock page does not
 *	know yet must be recognisably a sessdb store (GDBM magic and the
 *	marker) or it is refused (*sys_errno = ENOTSTORE) and never written.
 *	An empty file is initialised, with LOCK_EX, only when it is known (we
 *	or a creator that died created it).  Always by path: a file replaced
 *	by a repair, a compaction or an operator is found.
 */
static GDBM_FILE
open_gdbm(struct sessdb *db, int creat, gdbm_error *gerr, int *sys_errno)
{
	struct gdb *g = db->be_state;
	struct stat st;
	int created, fd, flags, known, kind, e = 0;
	GDBM_FILE dbf;

	*gerr = GDBM_FILE_OPEN_ERROR;
	*sys_errno = 0;
	fd = safe_open(db->path, !db->rdonly, creat && !db->rdonly &&
	    g->lock.held == LOCK_EX, &created, &st, db->err, sizeof(db->err));
	if (fd == -1) {
		*sys_errno = errno;
		return NULL;
	}
	if (created)
		remember_file(db, &st);	/* ours even if we die before GDBM
					   initialises it */
	known = known_file(db, &st);
	kind = file_kind(fd, &e);
	if (kind == -2) {
		close(fd);
		snprintf(db->err, sizeof(db->err), "%s: read: %s", db->path,
		    strerror(e));
		*sys_errno = e;
		return NULL;
	}
	if (!known && kind == -1)
		return refuse(db, fd, sys_errno, "not a GDBM file");
	if (!known && kind == 0)
		return refuse(db, fd, sys_errno, "an empty file that no sessdb "
		    "process created");
	if (kind == 0 && !db->rdonly && g->lock.held != LOCK_EX) {
		close(fd);
		*sys_errno = EAGAIN;	/* initialising needs LOCK_EX */
		return NULL;
	}
	if (kind == 0 && !created && !db->rdonly)
		diag_log(db, SESSDB_LOG_WARNING, "%s: empty file (a creator died, "
		    "or it was emptied); starting a new store in it", db->path);
	flags = (db->rdonly ? GDBM_READER : GDBM_WRCREAT) | GDBM_NOLOCK |
	    GDBM_NOMMAP | GDBM_CLOERROR;
	dbf = gdbm_fd_open(fd, db->path, 0, flags, NULL);
	if (dbf == NULL) {
		*gerr = gdbm_errno;
		*sys_errno = gdbm_check_syserr(*gerr) ? errno : 0;
		if (!known) {
			snprintf(db->err, sizeof(db->err), "%s: a GDBM file that "
			    "cannot be opened (%s), not known to the lock file; "
			    "treated as not a sessdb store, left untouched",
			    db->path, gdbm_strerror(*gerr));
			*sys_errno = ENOTSTORE;
		} else {
			snprintf(db->err, sizeof(db->err), "%s: %s%s%s", db->path,
			    gdbm_strerror(*gerr), *sys_errno ? ": " : "",
			    *sys_errno ? strerror(*sys_errno) : "");
		}
		return NULL;
	}
	if (kind == 0) {
		g->need_marker = 1;	/* a new store */
	} else if (!known) {
		int ours = has_marker(db, dbf);

		if (ours != 1) {
			gdbm_close_nosync(db, dbf);
			return refuse(db, -1, sys_errno, ours == 0 ?
			    "a GDBM database without the sessdb marker" :
			    "a GDBM file that cannot be read");
		}
	}
	remember_file(db, &st);
	g->reserved_to = 0;	/* nothing allocated ahead in this file yet */
	*gerr = GDBM_NO_ERROR;
	return dbf;
}

/* aside_name - a free name "<db>.corrupt-<unixtime>[.n]" for a damaged file. */
static int
aside_name(struct sessdb *db, char *dst, size_t len)
{
	long now = (long)time(NULL);

	for (int n = 0; n < 100; n++) {
		if (n == 0)
			snprintf(dst, len, "%s.corrupt-%ld", db->path, now);
		else
			snprintf(dst, len, "%s.corrupt-%ld.%d", db->path, now, n);
		if (access(dst, F_OK) != 0)
			return 0;
	}
	return diag_error(db, SESSDB_E_DAMAGED, "%s: cannot find a name to move "
	    "the damaged file to", db->path);
}

/* move_aside - rename the damaged store out of the way; LOCK_EX held.
 * Only a file known as this store is ever moved. */
static int
move_aside(struct sessdb *db, const char *why)
{
	char dst[4096];
	struct stat st;

	if (lstat(db->path, &st) == -1 || !S_ISREG(st.st_mode) ||
	    !known_file(db, &st))
		return diag_error(db, SESSDB_E_DAMAGED, "%s: damaged (%s), but "
		    "no longer the file this store used; left untouched",
		    db->path, why);
	if (aside_name(db, dst, sizeof(dst)) == -1)
		return -1;
	if (rename(db->path, dst) == -1)
		return diag_error(db, diag_code(errno), "%s: cannot move "
		    "damaged file aside: %s", db->path, strerror(errno));
	diag_log(db, SESSDB_LOG_ERR, "%s: damaged (%s), not recoverable; "
	    "moved aside to %s, starting an empty store", db->path, why, dst);
	return 0;
}

/*
 * scrub - delete the records of the open file that fail to decode, after
 * the whole traversal, and set the lock page's counters to what is kept
 * (LOCK_EX held).  GDBM's recovery checks the file's structure, not the
 * bytes of the records: a crash can leave a record whose value was
 * overwritten.  Returns how many went.
 */
static size_t
scrub(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	datum k, next, v, *bad = NULL;
	size_t n = 0, cap = 0;
	uint64_t entries = 0, bytes = 0;
	struct rec r;

	for (k = gdbm_firstkey(g->dbf); k.dptr != NULL; k = next) {
		int meta = rec_key_is_meta(k.dptr, (size_t)k.dsize);

		v = gdbm_fetch(g->dbf, k);
		int ok = meta || (v.dptr != NULL && rec_decode((unsigned char *)
		    v.dptr, (size_t)v.dsize, (unsigned char *)k.dptr,
		    (size_t)k.dsize, &r) == REC_OK);
		if (ok && !meta) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
		}
		store_free_value(v.dptr, (size_t)v.dsize);
		next = gdbm_nextkey(g->dbf, k);
		if (!ok && n == cap) {
			datum *nb = realloc(bad, (cap ? 2 * cap : 16) * sizeof(*nb));
			if (nb != NULL) {
				bad = nb;
				cap = cap ? 2 * cap : 16;
			}
		}
		if (!ok && n < cap)
			bad[n++] = k;	/* a sweep removes any that did not fit */
		else
			free(k.dptr);
	}
	for (size_t i = 0; i < n; i++) {
		gdbm_delete(g->dbf, bad[i]);
		free(bad[i].dptr);
	}
	free(bad);
	db->st.corrupt += n;
	lock_set_counts(&g->lock, entries, bytes);
	return n;
}

/*
 * The index of live records holds a copy of every record written through
 * it that was neither deleted nor replaced since (deletes and puts clear a
 * key's slot before touching the file, and a slot is filled only after the
 * file took the record).  So after a rebuild, or a file moved aside, the
 * index can give back what the new file lacks: each record checked (its
 * CRC over key, header and payload; live), and only under a key the file
 * does not have.  A key the file has must hold the same bytes, or the
 * slot goes: the file is the store of record.  An index that went through
 * this whole pass agrees with the new file and is kept; any other is
 * emptied.  Only an index that described the damaged file, in this boot,
 * is read.
 */
struct restore {
	struct sessdb	*db;
	int64_t		now;
	size_t		restored;
	int		failed;		/* errno of a write that failed: stop */
};

/* restore_one - put one of the index's records back if the file lacks it;
 * keep its slot only if the file now holds exactly its bytes. */
static int
restore_one(void *arg, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len)
{
	struct restore *rs = arg;
	struct gdb *g = rs->db->be_state;
	datum k = to_datum(key, key_len), v;
	struct rec r;
	int rc, same;

	if (rec_key_is_meta(key, key_len) ||
	    rec_decode(val, val_len, key, key_len, &r) != REC_OK ||
	    r.expires <= rs->now)
		return INDEX_DROP;
	if (store_reserve(rs->db, key_len + val_len) == -1) {
		rs->failed = errno;
		return INDEX_STOP;
	}
	rc = gdbm_store(g->dbf, k, to_datum(val, val_len), GDBM_INSERT);
	if (rc == 1) {		/* the file has the key: the same record? */
		v = gdbm_fetch(g->dbf, k);
		same = v.dptr != NULL && (size_t)v.dsize == val_len &&
		    memcmp(v.dptr, val, val_len) == 0;
		store_free_value(v.dptr, v.dptr != NULL ? (size_t)v.dsize : 0);
		return same ? INDEX_KEEP : INDEX_DROP;
	}
	if (!wrote_all(g->dbf, rc)) {
		rs->failed = gdbm_sys(g->dbf) ? gdbm_sys(g->dbf) : EIO;
		return INDEX_STOP;
	}
	lock_count(&g->lock, 1, (int64_t)(key_len + val_len));
	rs->restored++;
	return INDEX_KEEP;
}

/*
 * restore_from_index - after a rebuild or a move aside of the file (dev,
 *	ino), put back what the index holds and g->dbf lacks, and make the
 *	index agree with g->dbf (LOCK_EX held).  Returns how many records
 *	were put back; g->index_agrees says whether the index may be kept.
 */
static size_t
restore_from_index(struct sessdb *db, uint64_t dev, uint64_t ino)
{
	struct gdb *g = db->be_state;
	const struct lock_page *p = g->lock.page;
	struct restore rs = { db, sessdb_now(db), 0, 0 };

	g->index_agrees = 0;
	if (g->dbf == NULL || g->ix.base == NULL || !g->ix.writable ||
	    ino == 0 || p->index_ino != ino || p->index_dev != dev ||
	    p->index_boot != g->boot)
		return 0;
	g->size_seen = -1;
	if (index_walk(&g->ix, restore_one, &rs) == 0)
		g->index_agrees = 1;
	else
		diag_log(db, SESSDB_LOG_WARNING, "%s: putting back records from "
		    "the index of live records stopped after %zu: %s", db->path,
		    rs.restored, strerror(rs.failed));
	return rs.restored;
}

/*
 * A rebuild copies what GDBM can read into a new file (gdbm_recover) and
 * renames it over the store: one atomic rename, so a kill at any point
 * leaves the old file or the new one in place.  Before it, the old file
 * gets a second name, "<db>.rebuild-orig", so that whatever the rebuild
 * could not copy is still on disk: kept as "<db>.corrupt-<time>" if
 * anything was lost, unlinked if nothing was.  GDBM's own temporary file
 * is "<db>.XXXXXX"; the lock page notes when a rebuild began, so the
 * leftovers of one that was killed are found and cleared.
 */

/* rebuild_watch - abort a rebuild on a system error rather than count the
 * records it could not read as lost (they are intact, the device is not). */
struct rebuild_watch {
	struct lock_page *page;
	GDBM_FILE	dbf;
	gdbm_recovery	*rcvr;
	int		sys;
};

static void
rebuild_errfun(void *data, const char *fmt, ...)
{
	struct rebuild_watch *w = data;
	int sys = errno;	/* of the read or write that failed (cleared
				   before the rebuild) */

	(void)fmt;
	/* Noted in the lock page as it happens: a rebuild killed after its
	 * rename leaves the next writer knowing whether it lost anything. */
	__atomic_add_fetch(&w->page->rebuild_lost, 1, __ATOMIC_RELAXED);
	if (!is_fault(sys))
		sys = gdbm_sys(w->dbf);
	if (is_fault(sys) && w->sys == 0) {
		w->sys = sys;
		/* gdbm_recover stops when the count of failures reaches this. */
		w->rcvr->max_failures = w->rcvr->failed_buckets +
		    w->rcvr->failed_keys + 1;
	}
}

/* rebuild_temps - unlink GDBM's temporary files "<db>.XXXXXX" made since
 * the unix time since (LOCK_EX held: nobody else is rebuilding). */
static void
rebuild_temps(struct sessdb *db, int64_t since)
{
	const char *slash = strrchr(db->path, '/');
	const char *base = slash != NULL ? slash + 1 : db->path;
	size_t blen = strlen(base), dlen = slash != NULL ? (size_t)(slash - db->path) : 0;
	char dir[4096];
	struct dirent *de;
	DIR *d;

	if (dlen >= sizeof(dir))
		return;
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(dlen ? dlen : 1), db->path);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name, *suf = n + blen + 1;
		struct stat st;
		int fd, e, ok = 1;

		if (strncmp(n, base, blen) != 0 || n[blen] != '.' || strlen(suf) != 6)
			continue;
		for (int i = 0; i < 6; i++)
			ok &= isalnum((unsigned char)suf[i]) != 0;
		if (!ok || fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		    (int64_t)st.st_mtime < since - 1)
			continue;
		fd = openat(dirfd(d), n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)
			continue;
		ok = file_kind(fd, &e) >= 0;	/* GDBM's, or empty */
		close(fd);
		if (ok && unlinkat(dirfd(d), n, 0) == 0)
			diag_log(db, SESSDB_LOG_INFO, "%s: removed %s, left by "
			    "an unfinished rebuild", db->path, n);
	}
	closedir(d);
}

/* rebuild_leftovers - a rebuild was interrupted (LOCK_EX held): clear its
 * temporary file and keep the old file if the new one replaced it. */
static void
rebuild_leftovers(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;
	char keep[4096], aside[4096];
	struct stat ks, ds;

	rebuild_temps(db, p->rebuild_started);
	snprintf(keep, sizeof(keep), "%s" REBUILD_KEEP, db->path);
	if (lstat(keep, &ks) == 0 && S_ISREG(ks.st_mode)) {
		if (stat(db->path, &ds) == 0 && ds.st_ino == ks.st_ino &&
		    ds.st_dev == ks.st_dev)
			unlink(keep);	/* never replaced: the store is the old file */
		else if (__atomic_load_n(&p->rebuild_lost, __ATOMIC_RELAXED) == 0)
			unlink(keep);	/* replaced, and GDBM copied every record */
		else if (aside_name(db, aside, sizeof(aside)) == 0 &&
		    rename(keep, aside) == 0)
			diag_log(db, SESSDB_LOG_WARNING, "%s: a rebuild was "
			    "interrupted after it replaced the file; the file "
			    "before it is kept as %s", db->path, aside);
	}
	__atomic_store_n(&p->rebuild_started, 0, __ATOMIC_RELAXED);
}

/*
 * rebuild - gdbm_recover the open file into a new one (LOCK_EX held), then
 *	scrub records whose bytes were destroyed.  Returns 1 if rebuilt, or
 *	-2 if the rebuild could not run (no space, an I/O error: the old file
 *	stays as it was and nothing is lost; errno says why if it can).
 *	GDBM's recovery only fails for such reasons: damage makes it skip
 *	what it cannot read, never fail.  g->dbf is closed unless 1.
 */
static int
rebuild(struct sessdb *db, const char *why)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;
	struct rebuild_watch w = { p, g->dbf, NULL, 0 };
	gdbm_recovery rcvr;
	gdbm_error gerr;
	int sys_errno, kept = 0, rc;
	uint64_t dev = g->db_dev, ino = g->db_ino;
	size_t lost, restored = 0;
	char keep[4096], aside[4096], back[96] = "";

	snprintf(keep, sizeof(keep), "%s" REBUILD_KEEP, db->path);
	if (p->rebuild_started != 0)
		rebuild_leftovers(db);
	unlink(keep);
	if (link(db->path, keep) == -1) {
		int e = errno;

		gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
		errno = e;
		return -2;
	}
	__atomic_store_n(&p->rebuild_lost, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&p->rebuild_started, (int64_t)time(NULL), __ATOMIC_RELAXED);
	memset(&rcvr, 0, sizeof(rcvr));
	w.rcvr = &rcvr;
	rcvr.errfun = rebuild_errfun;
	rcvr.data = &w;
	rcvr.max_failures = SIZE_MAX;
	errno = 0;
	rc = gdbm_recover(g->dbf, &rcvr, GDBM_RCVR_FORCE | GDBM_RCVR_ERRFUN |
	    GDBM_RCVR_MAX_FAILURES);
	if (rc != 0 || w.sys != 0) {
		int e = w.sys != 0 ? w.sys : errno != 0 ? errno : EIO;

		gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
		rebuild_leftovers(db);	/* the store was not replaced */
		errno = e;
		return -2;
	}
	db->st.recoveries++;
	/* gdbm_recover renamed a new file over ours. */
	gdbm_close_nosync(db, g->dbf);
	remember_path(db);
	g->dbf = open_gdbm(db, 0, &gerr, &sys_errno);
	lost = rcvr.failed_keys + (g->dbf != NULL ? scrub(db) : 0);
	restored = restore_from_index(db, dev, ino);
	if (restored > 0)
		snprintf(back, sizeof(back), "; %zu records put back from the "
		    "index of live records", restored);
	if ((lost > 0 || rcvr.failed_buckets > 0) &&
	    aside_name(db, aside, sizeof(aside)) == 0 && rename(keep, aside) == 0)
		kept = 1;
	else
		unlink(keep);
	__atomic_store_n(&p->rebuild_started, 0, __ATOMIC_RELAXED);
	diag_log(db, lost > 0 || rcvr.failed_buckets > 0 ? SESSDB_LOG_ERR :
	    SESSDB_LOG_INFO, "%s: %s; rebuilt with %zu records, lost %zu records "
	    "and %zu buckets%s%s%s", db->path, why, rcvr.recovered_keys -
	    (lost - rcvr.failed_keys), lost, rcvr.failed_buckets, back,
	    kept ? "; the file before the rebuild is kept as " : "",
	    kept ? aside : (lost > 0 || rcvr.failed_buckets > 0 ?
	    "; the file before the rebuild could not be kept" : ""));
	if (g->dbf == NULL)
		return -1;
	return 1;	/* scrub recounted */
}

/* checked - the file is whole again (LOCK_EX held): clear the marks and
 * make every process reopen. */
static void
checked(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;

	if (p != NULL && g->lock.writable) {
		__atomic_store_n(&p->fault_errno, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&p->repair_failed_ms, 0, __ATOMIC_RELAXED);
	}
	lock_set_writer(&g->lock, 0);
	g->seen_gen = lock_bump(&g->lock);
	/* The file was rebuilt or replaced: the index describes it only if
	 * the repair checked the two against each other. */
	index_restamp(db, g->index_agrees);
	g->index_agrees = 0;
}

/* check_failed - a check or repair could not run for a system error e
 * (LOCK_EX held): the file stays as it is, marked, and the next attempt
 * waits REPAIR_RETRY_MS.  Logged once per state change.  Returns -1. */
static int
check_failed(struct sessdb *db, int e, const char *why)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;

	if (p != NULL && g->lock.writable) {
		uint64_t now = mono_ms();

		__atomic_store_n(&p->repair_failed_ms, now ? now : 1, __ATOMIC_RELAXED);
		if (e != 0)
			__atomic_store_n(&p->fault_errno, e, __ATOMIC_RELAXED);
	}
	diag_error(db, diag_code(e ? e : EIO), "%s: the file needs a check "
	    "(%s), which could not run: %s; nothing was moved or lost, reads go on, writes wait for the "
	    "check (retried every %d ms)", db->path, why, strerror(e ? e : EIO),
	    REPAIR_RETRY_MS);
	if (g->fault != (e ? e : EIO)) {
		g->fault = e ? e : EIO;
		diag_log(db, SESSDB_LOG_ERR, "%s", db->err);
	}
	errno = e ? e : EIO;
	return -1;
}

/* recover - repair the store in place or replace it; LOCK_EX held.  On
 * return g->dbf is a usable handle or NULL (with the error set). */
static int
recover(struct sessdb *db, const char *why)
{
	struct gdb *g = db->be_state;
	gdbm_error gerr;
	uint64_t dev = g->db_dev, ino = g->db_ino;
	int sys_errno, rc = g->dbf != NULL ? rebuild(db, why) : -1;
	size_t restored;

	if (rc == -2)
		return check_failed(db, errno, why);
	if (rc != 1) {	/* GDBM cannot even open it */
		if (g->dbf != NULL)
			gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
		db->st.recoveries++;
		if (move_aside(db, why) == -1)
			return -1;
		/* Even with SESSDB_NOCREATE: the file was there, we moved it. */
		g->dbf = open_gdbm(db, 1, &gerr, &sys_errno);
		if (g->dbf == NULL)
			return check_failed(db, sys_errno, "creating a fresh store");
		lock_set_counts(&g->lock, 0, 0);
		if ((restored = restore_from_index(db, dev, ino)) > 0)
			diag_log(db, SESSDB_LOG_WARNING, "%s: %zu records put "
			    "back from the index of live records", db->path,
			    restored);
	}
	checked(db);
	return 0;
}

/* reopen - make g->dbf current with the file; the lock is held. */
static int
reopen(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	int creat = !db->rdonly && !(db->opt.flags & SESSDB_NOCREATE);
	gdbm_error gerr;
	int sys_errno;

	if (g->dbf != NULL) {
		gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
		db->st.reopens++;
	}
	g->size_seen = -1;
	g->dbf = open_gdbm(db, creat, &gerr, &sys_errno);
	if (g->dbf != NULL) {
		g->seen_gen = lock_generation(&g->lock);
		return 0;
	}
	if (g->lock.held != LOCK_EX && (sys_errno == EAGAIN ||
	    (sys_errno == ENOENT && creat))) {
		errno = EAGAIN;	/* creating or initialising needs LOCK_EX */
		return -1;
	}
	if (!is_damage(gerr, sys_errno) || db->rdonly) {
		db->st.errors++;
		if (db->rdonly && is_damage(gerr, sys_errno))
			snprintf(db->err, sizeof(db->err), "%s: damaged database "
			    "(%s); a writer will repair it", db->path,
			    gdbm_strerror(gerr));
		errno = sys_errno ? sys_errno : EIO;
		if (errno == EAGAIN)
			errno = EIO;
		db->errcode = is_damage(gerr, sys_errno) ? SESSDB_E_DAMAGED :
		    diag_code(errno);
		return -1;
	}
	if (g->lock.held != LOCK_EX) {
		errno = EAGAIN;
		return -1;
	}
	if (recover(db, gdbm_strerror(gerr)) == -1)
		return -1;
	g->seen_gen = lock_generation(&g->lock);
	return 0;
}

/* gdbm_be_after_fork - this process inherited the handle: take descriptors
 * of its own (flock locks belong to the open file description, which
 * fork() shares with the parent). */
static int
gdbm_be_after_fork(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	char err[256];

	if (g->dbf != NULL) {
		/* The parent's writes are all in the file already. */
		gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
	}
	index_close(&g->ix);
	if (g->lock.page != NULL || g->lock.fd >= 0)
		lock_close(&g->lock);
	if (lock_open(&g->lock, g->lock_path, !db->rdonly,
	    db->opt.lock_timeout_ms, err, sizeof(err)) == -1)
		return diag_error(db, diag_code(errno), "%s", err);
	(void)index_open(&g->ix, &g->lock);	/* none: the file answers */
	return 0;
}

/*
 * after_dead_writer - LOCK_EX held and the writer mark is set: its owner
 *	was killed inside an update, or a write of a live process failed
 *	(fault_errno), and the file may hold part of an update.  Rebuild it
 *	(GDBM's own check does not notice a header left behind the buckets,
 *	and the next writes would reuse space records still occupy).  A
 *	rebuild that cannot run (no space, I/O error) changes nothing and is
 *	retried later; only a file GDBM cannot rebuild is moved aside.
 */
static int
after_dead_writer(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	char why[128];
	int32_t pid = lock_writer(&g->lock);
	int fault = __atomic_load_n(&g->lock.page->fault_errno, __ATOMIC_RELAXED);

	if (fault != 0)
		snprintf(why, sizeof(why), "a write by process %d failed: %s",
		    (int)pid, strerror(fault));
	else
		snprintf(why, sizeof(why), "process %d died while writing", (int)pid);
	if (g->lock.page->repair_failed_ms == 0)
		diag_log(db, SESSDB_LOG_WARNING, "%s: %s; checking the file",
		    db->path, why);
	g->seen_gen = 0;
	if (reopen(db) == -1)
		return errno == ENOTSTORE || g->dbf != NULL ? -1 :
		    check_failed(db, errno == EAGAIN ? EIO : errno, why);
	if (rebuild(db, why) == -2)
		return check_failed(db, errno, why);
	checked(db);
	if (g->fault != 0) {
		diag_log(db, SESSDB_LOG_INFO, "%s: the file is checked; writes "
		    "go on", db->path);
		g->fault = 0;
	}
	return 0;
}

/*
 * files_moved - after taking the lock: do the paths still name the lock
 *	file we locked and the database we have open?  Writers check every
 *	time (no write may go to a file the other processes no longer use);
 *	readers look at the lock page's retired mark, which the first process
 *	to find the lock file replaced sets, and stat once every PATH_CHECK_MS
 *	(for the case where only processes started since then write).
 *	Returns 1 if the lock file was replaced (our lock is released and the
 *	file the path names now is open: lock again), 0 if not (a replaced
 *	database is reopened by the caller), -1 on error (no lock held).
 */
static int
files_moved(struct sessdb *db, int op)
{
	struct gdb *g = db->be_state;
	struct stat st;
	char err[256];
	int found;

	if (op != LOCK_EX && !lock_retired(&g->lock)) {
		uint64_t now = mono_ms();

		if (now - g->checked_ms < PATH_CHECK_MS)
			return 0;
		g->checked_ms = now;
	}
	if (lock_replaced(&g->lock, g->lock_path)) {
		diag_log(db, SESSDB_LOG_WARNING, "%s: removed or replaced while "
		    "in use; locking the file the path names now", g->lock_path);
		lock_release(&g->lock);
		index_close(&g->ix);
		lock_close(&g->lock);
		g->seen_gen = 0;
		if (lock_open(&g->lock, g->lock_path, !db->rdonly,
		    db->opt.lock_timeout_ms, err, sizeof(err)) == -1)
			return diag_error(db, diag_code(errno), "%s", err);
		(void)index_open(&g->ix, &g->lock);
		return 1;
	}
	g->checked_ms = mono_ms();
	if (g->dbf == NULL)
		return 0;
	found = stat(db->path, &st) == 0;
	if (found && (uint64_t)st.st_ino == g->db_ino &&
	    (uint64_t)st.st_dev == g->db_dev) {
		g->size_seen = st.st_size;	/* for store_reserve: the lock
						   keeps it true */
	} else {
		if (!found || !known_file(db, &st))
			diag_log(db, SESSDB_LOG_INFO, "%s: the database file was "
			    "replaced or removed; reopening", db->path);
		g->seen_gen = 0;
	}
	return 0;
}

/* repair_waits - did a check fail less than REPAIR_RETRY_MS ago? */
static int
repair_waits(const struct sessdb *db)
{
	const struct gdb *g = db->be_state;
	uint64_t failed = __atomic_load_n(&g->lock.page->repair_failed_ms,
	    __ATOMIC_RELAXED);

	return failed != 0 && mono_ms() - failed < REPAIR_RETRY_MS;
}

/*
 * index_restamp - say which file the index now describes (LOCK_EX held,
 *	or LOCK_SH by a compaction), emptying it first unless keep: after a
 *	replaced file or a new boot it is emptied; it is kept after a
 *	compaction, which copied every record as it was, and after a repair
 *	that checked it against the new file.  Readers trust it only while
 *	it names the file they have open: until they reopen the new file
 *	they read the old one's records from it, which are the same.
 */
static void
index_restamp(struct sessdb *db, int keep)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;

	if (g->ix.base == NULL || !g->ix.writable)
		return;
	__atomic_store_n(&p->index_ino, 0, __ATOMIC_RELEASE);
	if (!keep)
		index_reset(&g->ix);
	__atomic_store_n(&p->index_dev, g->db_dev, __ATOMIC_RELAXED);
	__atomic_store_n(&p->index_boot, g->boot, __ATOMIC_RELAXED);
	__atomic_store_n(&p->index_ino, g->db_ino, __ATOMIC_RELEASE);
}

/*
 * index_upkeep - LOCK_EX held: make an index if the lock file has none
 *	(once per handle: the room is allocated first, so a full disk means
 *	no index, never a fault in a mapping), map it, and empty it if it
 *	describes another file or boot.
 */
static void
index_upkeep(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;
	uint32_t slots;

	if (p == NULL || !g->lock.writable)
		return;
	if (p->index_slots == 0 && !g->index_tried) {
		g->index_tried = 1;
		slots = index_geometry(db->opt.max_entries);
		if (fallocate(g->lock.fd, 0, LOCK_PAGE_SIZE,
		    (off_t)slots * INDEX_SLOT_SIZE) == 0) {
			p->index_slot_size = INDEX_SLOT_SIZE;
			__atomic_store_n(&p->index_slots, slots, __ATOMIC_RELEASE);
		} else {
			diag_log(db, SESSDB_LOG_INFO, "%s: no room for the index "
			    "of live records (%s); lookups read the file",
			    g->lock_path, strerror(errno));
		}
	}
	if (g->ix.base == NULL && p->index_slots != 0)
		(void)index_open(&g->ix, &g->lock);
	if (g->ix.base != NULL && (p->index_ino != g->db_ino ||
	    p->index_dev != g->db_dev || p->index_boot != g->boot))
		index_restamp(db, 0);
}

/* index_usable - may a lookup trust the index now, with no lock?  Only
 * while it describes the file this handle has open, in this boot, the
 * lock file is still the one the path names, and the paths were checked
 * less than PATH_CHECK_MS ago (else the slow path checks them). */
static int
index_usable(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	const struct lock_page *p = g->lock.page;

	return g->ix.base != NULL && g->dbf != NULL && !lock_retired(&g->lock) &&
	    __atomic_load_n(&p->index_ino, __ATOMIC_ACQUIRE) == g->db_ino &&
	    p->index_dev == g->db_dev && p->index_boot == g->boot &&
	    mono_ms() - g->checked_ms < PATH_CHECK_MS;
}

static int
store_begin(struct sessdb *db, int op)
{
	struct gdb *g = db->be_state;

	g->size_seen = -1;
	for (;;) {
		int moved;

		if (lock_acquire(&g->lock, op, db->opt.lock_timeout_ms) == -1) {
			if (errno == ETIMEDOUT) {
				db->st.lock_timeouts++;
				return diag_error(db, SESSDB_E_LOCK_TIMEOUT,
				    "%s: lock not granted within %u ms "
				    "(another process holds it)", g->lock_path,
				    db->opt.lock_timeout_ms);
			}
			return diag_error(db, diag_code(errno), "%s: flock: %s",
			    g->lock_path, strerror(errno));
		}
		if ((moved = files_moved(db, op)) == -1)
			return -1;
		if (moved)
			continue;
		if (op == LOCK_EX && !db->rdonly && g->lock.page != NULL &&
		    g->lock.page->rebuild_started != 0 && lock_writer(&g->lock) == 0)
			rebuild_leftovers(db);
		if (lock_writer(&g->lock) != 0) {
			/* A writer died, or a write failed, between changing
			 * the file and finishing: it may hold half an update.
			 * Records are checked one by one, so reading on is
			 * safe while a check cannot run. */
			int waits = repair_waits(db);

			if ((op != LOCK_EX && !waits) && !db->rdonly) {
				lock_release(&g->lock);
				op = LOCK_EX;
				continue;
			}
			if (op == LOCK_EX && waits) {
				int e = __atomic_load_n(&g->lock.page->fault_errno,
				    __ATOMIC_RELAXED);

				lock_release(&g->lock);
				errno = e ? e : EIO;
				return diag_error(db, diag_code(errno),
				    "%s: writes wait for a check of the file, "
				    "which could not run: %s (retried "
				    "every %d ms)", db->path, strerror(errno),
				    REPAIR_RETRY_MS);
			}
			if (op == LOCK_EX && after_dead_writer(db) == -1) {
				lock_release(&g->lock);
				return -1;
			}
		}
		if (g->dbf == NULL || lock_generation(&g->lock) != g->seen_gen ||
		    g->seen_gen == 0) {
			if (reopen(db) == -1) {
				lock_release(&g->lock);
				if (errno != EAGAIN || op == LOCK_EX)
					return -1;
				op = LOCK_EX;	/* initialise or recover */
				continue;
			}
		}
		if (op == LOCK_EX) {
			if (g->need_marker && write_marker(db) == -1)
				return -1;
			if (g->lock.page != NULL && g->lock.page->counts_unknown) {
				store_recount(db);
				g->lock.page->counts_unknown = 0;
			}
			index_upkeep(db);
			lock_set_writer(&g->lock, db->pid);
		}
		return 0;
	}
}

static void
store_end(struct sessdb *db, int wrote)
{
	struct gdb *g = db->be_state;

	g->size_seen = -1;
	if (wrote)
		g->seen_gen = lock_bump(&g->lock);
	if (g->lock.held == LOCK_EX)
		lock_set_writer(&g->lock, 0);
	lock_release(&g->lock);
	if (wrote && g->fault != 0) {
		diag_log(db, SESSDB_LOG_INFO, "%s: writes succeed again", db->path);
		g->fault = 0;
	}
}

/* gdbm_fail_msg - set the handle's message for a failed GDBM call. */
static void
gdbm_fail_msg(struct sessdb *db, const char *what, gdbm_error e, int sys)
{
	int code = is_fault(sys) ? diag_code(sys) : is_damage(e, sys) ?
	    SESSDB_E_DAMAGED : SESSDB_E_SYSTEM;

	if (sys != 0)
		diag_error(db, code, "%s: %s: %s: %s", db->path, what,
		    gdbm_strerror(e), strerror(sys));
	else
		diag_error(db, code, "%s: %s: %s", db->path, what, gdbm_strerror(e));
}

/* repair_now - LOCK_EX for a repair that a failed call asked for; -1 if it
 * is not ours to do now (someone else wrote or repaired, the files were
 * replaced, or a check waits).  On 0 the writer mark is set. */
static int
repair_now(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	struct stat st;

	if (lock_acquire(&g->lock, LOCK_EX, db->opt.lock_timeout_ms) == -1)
		return -1;
	if (lock_generation(&g->lock) != g->seen_gen ||
	    lock_replaced(&g->lock, g->lock_path) ||
	    stat(db->path, &st) == -1 || !known_file(db, &st) ||
	    lock_writer(&g->lock) != 0) {
		/* Look again on the next call: the file may be sound. */
		lock_release(&g->lock);
		return -1;
	}
	lock_set_writer(&g->lock, db->pid);
	return 0;
}

static int
store_gdbm_fail(struct sessdb *db, const char *what)
{
	struct gdb *g = db->be_state;
	gdbm_error e = gdbm_last_errno(g->dbf);
	int sys = gdbm_sys(g->dbf);
	int partial = gdbm_needs_recovery(g->dbf) && g->lock.held == LOCK_EX;
	int damaged = is_damage(e, sys) && !db->rdonly;
	int err = sys != 0 ? sys : EIO;
	char why[256];

	gdbm_fail_msg(db, what, e, sys);
	/* Once per state: a fault until writes succeed again; nothing more
	 * while a check of the file is pending (it was said then). */
	if ((!is_fault(sys) || g->fault != sys) &&
	    (partial || lock_writer(&g->lock) == 0))
		diag_log(db, SESSDB_LOG_ERR, "%s", db->err);
	if (is_fault(sys))
		g->fault = sys;	/* logged once until writes succeed */
	/* The handle's cache may hold the failed update: drop it, so the
	 * next call starts from the file as it is. */
	gdbm_close_nosync(db, g->dbf);
	g->dbf = NULL;
	if (partial) {
		/* The file may hold part of the update: leave the writer
		 * mark set, with the reason, for the check. */
		if (g->lock.page != NULL && g->lock.writable)
			__atomic_store_n(&g->lock.page->fault_errno, err,
			    __ATOMIC_RELAXED);
		lock_release(&g->lock);
		errno = err;
		return -1;
	}
	if (g->lock.held == LOCK_EX)
		lock_set_writer(&g->lock, 0);
	lock_release(&g->lock);
	if (!damaged || repair_now(db) == -1) {
		errno = err;
		return -1;
	}
	snprintf(why, sizeof(why), "%s", gdbm_strerror(e));
	g->seen_gen = 0;
	if (reopen(db) == 0)
		recover(db, why);
	lock_set_writer(&g->lock, 0);
	lock_release(&g->lock);
	errno = err;
	return -1;
}

/*
 * precheck - refuse a path that names something other than a sessdb
 *	store before anything (the lock file) is created beside it.  With no
 *	lock file no process uses the store, so it can be read unlocked; with
 *	one, the check runs under the lock.
 */
static int
precheck(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	char err[512];
	struct stat st;
	int created, fd, kind, e = 0, ours;
	GDBM_FILE dbf;

	if (access(g->lock_path, F_OK) == 0)
		return 0;
	fd = safe_open(db->path, 0, 0, &created, &st, err, sizeof(err));
	if (fd == -1) {
		e = errno;
		if (e == ENOENT && !db->rdonly && !(db->opt.flags & SESSDB_NOCREATE))
			return 0;	/* created under the lock */
		return diag_error(db, diag_code(e), "%s", err);
	}
	kind = file_kind(fd, &e);
	if (kind != 1) {
		close(fd);
		return diag_error(db, kind == -2 ? diag_code(e) : SESSDB_E_NOT_STORE,
		    "%s: %s; not a sessdb store, left untouched", db->path,
		    kind == -2 ? strerror(e) : kind == 0 ? "an empty file that no "
		    "sessdb process created" : "not a GDBM file");
	}
	dbf = gdbm_fd_open(fd, db->path, 0, GDBM_READER | GDBM_NOLOCK |
	    GDBM_NOMMAP | GDBM_CLOERROR, NULL);
	if (dbf == NULL)
		return diag_error(db, SESSDB_E_NOT_STORE, "%s: a GDBM file that "
		    "cannot be opened (%s), and no lock file beside it shows it "
		    "is ours; treated as not a sessdb store, left untouched",
		    db->path, gdbm_strerror(gdbm_errno));
	ours = has_marker(db, dbf);
	gdbm_close(dbf);
	if (ours != 1)
		return diag_error(db, SESSDB_E_NOT_STORE, "%s: %s; not a sessdb "
		    "store, left untouched", db->path, ours == 0 ? "a GDBM "
		    "database without the sessdb marker" : "a GDBM file that "
		    "cannot be read");
	return 0;
}

/* to_item - hand a GDBM key and value over to an item (no copy). */
static void
to_item(struct bitem *it, datum k, datum v)
{
	it->key = (unsigned char *)k.dptr;
	it->key_len = k.dptr != NULL ? (size_t)k.dsize : 0;
	it->val = (unsigned char *)v.dptr;
	it->val_len = v.dptr != NULL ? (size_t)v.dsize : 0;
}

/*
 * store_reserve - make sure the disk holds room for the largest growth one
 *	update of bytes can cause (LOCK_EX held), before GDBM writes anything.
 *	GDBM is not safe against a write that fails half way: run out of
 *	space while it splits a bucket and the file holds a directory that
 *	points past its end.  So the space is allocated first, past the end
 *	of the file (FALLOC_FL_KEEP_SIZE: GDBM's view does not change), and
 *	a store that does not fit is refused whole, with ENOSPC.  Where the
 *	filesystem cannot allocate ahead, GDBM runs as before.
 */
static int
store_reserve(struct sessdb *db, size_t bytes)
{
	struct gdb *g = db->be_state;
	int depth = 0, bsize = 4096, fd = gdbm_fdesc(g->dbf);
	off_t need, extra = RESERVE_SLACK;
	struct stat st;

	(void)gdbm_setopt(g->dbf, GDBM_GETDIRDEPTH, &depth, sizeof(depth));
	(void)gdbm_setopt(g->dbf, GDBM_GETBLOCKSIZE, &bsize, sizeof(bsize));
	/* The record, a doubled directory, split buckets, avail blocks. */
	need = (off_t)bytes + 2 * ((off_t)sizeof(off_t) << depth) + 4 * (off_t)bsize;
	if (g->size_seen >= 0)
		st.st_size = g->size_seen;
	else if (fstat(fd, &st) == -1)
		return 0;
	if (st.st_size + need <= g->reserved_to)
		return 0;
	for (;;) {
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, need + extra) == 0) {
			g->reserved_to = st.st_size + need + extra;
			return 0;
		}
		if (errno != ENOSPC && errno != EDQUOT)
			return 0;	/* cannot allocate ahead here */
		if (extra == 0)
			break;
		extra = 0;	/* room for this update only */
	}
	errno = errno == EDQUOT ? EDQUOT : ENOSPC;
	return -1;
}

/* reserve_fail - a write refused for want of space (LOCK_EX held): nothing
 * was written.  Logged once until writes succeed again.  Returns -1. */
static int
reserve_fail(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	int e = errno;

	store_end(db, 0);
	diag_error(db, diag_code(e), "%s: no room for the record on disk: %s; nothing was "
	    "written", db->path, strerror(e));
	if (g->fault != e) {
		g->fault = e;
		diag_log(db, SESSDB_LOG_ERR, "%s", db->err);
	}
	errno = e;
	return -1;
}


/* delete_same - delete key if it still holds exactly value (LOCK_EX
 * held): 1 deleted, 0 not, -1 (the lock released). */
static int
delete_same(struct sessdb *db, datum k, const unsigned char *value,
    size_t value_len)
{
	struct gdb *g = db->be_state;
	datum cur = gdbm_fetch(g->dbf, k);
	int same;

	if (cur.dptr == NULL) {
		if (gdbm_last_errno(g->dbf) != GDBM_ITEM_NOT_FOUND)
			return store_gdbm_fail(db, "fetch");
		index_clear(&g->ix, (unsigned char *)k.dptr, (size_t)k.dsize);
		return 0;
	}
	same = value == NULL || ((size_t)cur.dsize == value_len &&
	    memcmp(cur.dptr, value, value_len) == 0);
	value_len = (size_t)cur.dsize;
	store_free_value(cur.dptr, (size_t)cur.dsize);
	/* Changed or not, the index must not keep what the caller saw. */
	index_clear(&g->ix, (unsigned char *)k.dptr, (size_t)k.dsize);
	if (!same)
		return 0;
	if (!wrote_all(g->dbf, gdbm_delete(g->dbf, k)))
		return store_gdbm_fail(db, "delete");
	lock_count(&g->lock, -1, -(int64_t)((size_t)k.dsize + value_len));
	return 1;
}

/* fetch_locked - take the lock op and fetch key: 1 with the lock still
 * held and *v set, 0 if absent, -1; the lock is released unless 1. */
static int
fetch_locked(struct sessdb *db, int op, datum k, datum *v)
{
	struct gdb *g = db->be_state;

	if (store_begin(db, op) == -1)
		return -1;
	*v = gdbm_fetch(g->dbf, k);
	if (v->dptr != NULL)
		return 1;
	if (gdbm_last_errno(g->dbf) != GDBM_ITEM_NOT_FOUND)
		return store_gdbm_fail(db, "fetch");
	store_end(db, 0);
	return 0;
}

static int
gdbm_be_fetch(struct sessdb *db, const unsigned char *key, size_t key_len,
    struct bitem *out)
{
	struct gdb *g = db->be_state;
	datum v;
	int rc;

	memset(out, 0, sizeof(*out));
	if (index_usable(db) && index_get(&g->ix, key, key_len, &out->val,
	    &out->val_len) == 1) {
		struct rec r;

		/* A slot that does not decode (a bad copy) is not the file's
		 * answer: ask the file. */
		if (rec_decode(out->val, out->val_len, key, key_len, &r) == REC_OK)
			return 1;	/* no lock, no system call */
		store_free_value(out->val, out->val_len);
		memset(out, 0, sizeof(*out));
	}
	rc = fetch_locked(db, LOCK_SH, to_datum(key, key_len), &v);
	if (rc != 1)
		return rc;
	store_end(db, 0);
	to_item(out, to_datum(NULL, 0), v);
	return 1;
}

static int
gdbm_be_take(struct sessdb *db, const unsigned char *key, size_t key_len,
    struct bitem *out)
{
	struct gdb *g = db->be_state;
	datum k = to_datum(key, key_len), v;
	int rc;

	memset(out, 0, sizeof(*out));
	/* Fetch rather than test: take needs the value, the byte counter
	 * its size. */
	rc = fetch_locked(db, LOCK_EX, k, &v);
	if (rc != 1)
		return rc;
	index_clear(&g->ix, key, key_len);	/* gone for every reader first */
	if (store_reserve(db, 0) == -1) {
		store_free_value(v.dptr, (size_t)v.dsize);
		return reserve_fail(db);
	}
	if (!wrote_all(g->dbf, gdbm_delete(g->dbf, k))) {
		store_free_value(v.dptr, (size_t)v.dsize);
		return store_gdbm_fail(db, "delete");
	}
	lock_count(&g->lock, -1, -(int64_t)(key_len + (size_t)v.dsize));
	store_end(db, 1);
	to_item(out, to_datum(NULL, 0), v);
	return 1;
}

static int
gdbm_be_remove(struct sessdb *db, const struct bitem *items, size_t n,
    int if_same, char *gone)
{
	int wrote = 0;

	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	/* Freed space lists grow: room for their blocks first. */
	if (store_reserve(db, n * 32) == -1)
		return reserve_fail(db);
	for (size_t i = 0; i < n; i++) {
		int rc = delete_same(db, to_datum(items[i].key, items[i].key_len),
		    if_same ? items[i].val : NULL, items[i].val_len);

		if (rc == -1)
			return -1;
		gone[i] = (char)rc;
		wrote |= rc;
	}
	store_end(db, wrote);
	return 0;
}

/* live_value - does old (under key) hold a record that is live now? */
static int
live_value(struct sessdb *db, datum old, const unsigned char *key,
    size_t key_len)
{
	struct rec r;

	return old.dptr != NULL && rec_decode((unsigned char *)old.dptr,
	    (size_t)old.dsize, key, key_len, &r) == REC_OK &&
	    r.expires > sessdb_now(db);
}

static int
gdbm_be_store(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires, unsigned flags)
{
	struct gdb *g = db->be_state;
	datum k = to_datum(key, key_len), v = to_datum(val, val_len), old;
	int rc;

	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	if (g->lock.page != NULL && store_cap_exceeded(db,
	    __atomic_load_n(&g->lock.page->entries, __ATOMIC_RELAXED),
	    __atomic_load_n(&g->lock.page->bytes, __ATOMIC_RELAXED),
	    key_len + val_len) && !gdbm_exists(g->dbf, k)) {
		store_end(db, 0);
		return 0;
	}
	if (flags & BSTORE_NEW) {
		old = gdbm_fetch(g->dbf, k);
		rc = live_value(db, old, key, key_len);
		store_free_value(old.dptr, old.dptr != NULL ? (size_t)old.dsize : 0);
		if (rc) {
			store_end(db, 0);
			return 2;
		}
	}
	if (store_reserve(db, key_len + val_len) == -1)
		return reserve_fail(db);
	index_clear(&g->ix, key, key_len);	/* no reader sees it half done */
	rc = gdbm_store(g->dbf, k, v, GDBM_INSERT);
	if (rc == 1) {		/* there already: replace, keep the count */
		old = gdbm_fetch(g->dbf, k);
		store_free_value(old.dptr, (size_t)old.dsize);
		if (!wrote_all(g->dbf, gdbm_store(g->dbf, k, v, GDBM_REPLACE)))
			return store_gdbm_fail(db, "store");
		lock_count(&g->lock, 0, (int64_t)val_len - old.dsize);
	} else if (!wrote_all(g->dbf, rc)) {
		return store_gdbm_fail(db, "store");
	} else {
		lock_count(&g->lock, 1, (int64_t)(key_len + val_len));
	}
	index_put(&g->ix, key, key_len, val, val_len, expires, sessdb_now(db));
	store_end(db, 1);
	return 1;
}

/* scan_resume - the first key of the next batch (lock held).  GDBM's
 * cursor is a key: the last of the previous batch that still exists. */
static datum
scan_resume(struct sessdb *db, struct bscan *s)
{
	struct gdb *g = db->be_state;
	datum none = { NULL, 0 };

	if (!s->started) {
		s->started = 1;
		return gdbm_firstkey(g->dbf);
	}
	for (size_t i = s->n; i-- > 0;) {
		datum k = to_datum(s->items[i].key, s->items[i].key_len);

		if (k.dptr != NULL && gdbm_exists(g->dbf, k))
			return gdbm_nextkey(g->dbf, k);
	}
	if (s->n == 0 || ++s->restarts > MAX_RESTARTS) {
		s->done = 1;
		return none;
	}
	diag_log(db, SESSDB_LOG_INFO, "%s: traversal cursor deleted by another "
	    "process; restarting", db->path);
	return gdbm_firstkey(g->dbf);
}

static int
gdbm_be_scan(struct sessdb *db, struct bscan *s, size_t max)
{
	struct gdb *g = db->be_state;
	datum k, next;

	if (s->cap < max) {
		struct bitem *ni = realloc(s->items, max * sizeof(*ni));

		if (ni == NULL)
			return diag_error(db, SESSDB_E_NOMEM, "traversal: out of memory");
		s->items = ni;
		s->cap = max;
	}
	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	k = scan_resume(db, s);
	bscan_clear(s);
	while (k.dptr != NULL && s->n < max) {
		if (rec_key_is_meta(k.dptr, (size_t)k.dsize)) {
			/* the store's own key: not a record */
			next = gdbm_nextkey(g->dbf, k);
			free(k.dptr);
			k = next;
			continue;
		}
		datum v = gdbm_fetch(g->dbf, k);

		if (v.dptr == NULL && gdbm_last_errno(g->dbf) != GDBM_ITEM_NOT_FOUND) {
			free(k.dptr);
			return store_gdbm_fail(db, "fetch");
		}
		to_item(&s->items[s->n++], k, v);	/* val NULL: vanished */
		next = gdbm_nextkey(g->dbf, k);
		k = next;
	}
	if (k.dptr != NULL)
		free(k.dptr);	/* one past the batch: found again next time */
	else if (gdbm_last_errno(g->dbf) == GDBM_ITEM_NOT_FOUND)
		s->done = 1;
	else if (!s->done)
		return store_gdbm_fail(db, "traverse");
	store_end(db, 0);
	return 0;
}

/* gdbm_be_scan_lag - keys a bucket can hold.  GDBM stores a bucket's keys
 * with linear probing, and a delete moves later keys of that bucket back
 * to fill the hole: deleting a key in the bucket being traversed makes
 * the traversal skip keys.  A key visited more than a bucket's worth of
 * keys ago lies in a bucket the traversal has left. */
static int
gdbm_be_scan_lag(struct sessdb *db, uint64_t *lag)
{
	struct gdb *g = db->be_state;
	size_t elems = 0;

	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	if (gdbm_setopt(g->dbf, GDBM_GETBUCKETSIZE, &elems, sizeof(elems)) != 0)
		elems = 4096;	/* unknown: be generous */
	store_end(db, 0);
	*lag = (uint64_t)elems + 1;
	return 0;
}

/* gdbm_be_claim_sweep - the lock page says when the last cap sweep ran. */
static int
gdbm_be_claim_sweep(struct sessdb *db, int64_t now, int interval)
{
	struct gdb *g = db->be_state;
	struct lock_page *p = g->lock.page;
	int due = 0;

	if (p == NULL || store_begin(db, LOCK_EX) == -1)
		return 0;
	if (now - p->swept_at >= interval) {
		p->swept_at = now;
		due = 1;
	}
	store_end(db, 0);
	return due;
}

static void
store_recount(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	uint64_t entries = 0, bytes = 0;
	datum k, next, v;

	for (k = gdbm_firstkey(g->dbf); k.dptr != NULL; k = next) {
		v = gdbm_fetch(g->dbf, k);
		if (v.dptr != NULL && !rec_key_is_meta(k.dptr, (size_t)k.dsize)) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
		}
		store_free_value(v.dptr, (size_t)v.dsize);
		next = gdbm_nextkey(g->dbf, k);
		free(k.dptr);
	}
	lock_set_counts(&g->lock, entries, bytes);
}

static int
gdbm_be_info(struct sessdb *db, struct sessdb_info *info)
{
	struct gdb *g = db->be_state;
	struct stat st;

	memset(info, 0, sizeof(*info));
	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	if (fstat(gdbm_fdesc(g->dbf), &st) == 0)
		info->file_size = (uint64_t)st.st_size;
	if (g->lock.page != NULL) {
		info->entries = __atomic_load_n(&g->lock.page->entries, __ATOMIC_RELAXED);
		info->bytes = __atomic_load_n(&g->lock.page->bytes, __ATOMIC_RELAXED);
	}
	info->generation = lock_generation(&g->lock);
	store_end(db, 0);
	return 0;
}

static int
gdbm_be_compact(struct sessdb *db)
{
	struct gdb *g = db->be_state;
	gdbm_recovery rcvr;
	struct lock_page *p;
	struct stat st;
	int64_t none = 0, began = (int64_t)time(NULL);
	int e, op = LOCK_SH;

	/* Under LOCK_SH: nobody can change the file while it is copied, and
	 * readers go on (only writers wait).  One compaction at a time, and
	 * never beside what an interrupted rebuild left or a file awaiting
	 * a writer's check: those a writer clears first, so then under
	 * LOCK_EX, as before. */
	for (;;) {
		if (store_begin(db, op) == -1)
			return -1;
		p = g->lock.page;
		if (g->lock.held == LOCK_EX || (lock_writer(&g->lock) == 0 &&
		    __atomic_compare_exchange_n(&p->rebuild_started, &none,
		    began, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)))
			break;
		store_end(db, 0);
		op = LOCK_EX;
		none = 0;
	}
	if (fstat(gdbm_fdesc(g->dbf), &st) == -1) {
		e = errno;
		store_end(db, 0);
		return diag_error(db, diag_code(e), "%s: fstat: %s", db->path,
		    strerror(e));
	}
	/* A forced gdbm_recover writes a new file and renames it over ours:
	 * the old file stays whole until that one rename.  Unlike
	 * gdbm_reorganize it can be told to give up at the first record it
	 * cannot read (an I/O error), instead of leaving it out; then, as on
	 * any failure (no space), its temporary file must not stay behind. */
	memset(&rcvr, 0, sizeof(rcvr));
	rcvr.max_failures = 1;
	__atomic_store_n(&p->rebuild_started, began, __ATOMIC_RELAXED);
	errno = 0;
	if (gdbm_recover(g->dbf, &rcvr, GDBM_RCVR_FORCE |
	    GDBM_RCVR_MAX_FAILURES) != 0 || rcvr.failed_keys + rcvr.failed_buckets > 0) {
		e = errno;
		rebuild_leftovers(db);
		/* Only the new file was written: the store is as it was. */
		gdbm_close_nosync(db, g->dbf);
		g->dbf = NULL;
		store_end(db, 0);
		return diag_error(db, e ? diag_code(e) : SESSDB_E_IO, "%s: "
		    "compaction failed, the store is unchanged%s%s", db->path,
		    e ? ": " : "", e ? strerror(e) : "");
	}
	__atomic_store_n(&p->rebuild_started, 0, __ATOMIC_RELAXED);
	/* Keep the owner and mode the servers rely on. */
	if (fchown(gdbm_fdesc(g->dbf), st.st_uid, st.st_gid) == -1 ||
	    fchmod(gdbm_fdesc(g->dbf), st.st_mode & 0600) == -1)
		diag_log(db, SESSDB_LOG_WARNING, "%s: restoring owner/mode after "
		    "compaction: %s", db->path, strerror(errno));
	remember_path(db);
	index_restamp(db, 1);	/* the same records in a new file */
	store_end(db, 1);	/* everyone else must reopen the new file */
	return 0;
}

/* gdbm_be_open - refuse what is not a store, open the lock file, then
 * open (create, check, repair) the database, so a bad path fails here. */
static int
gdbm_be_open(struct sessdb *db)
{
	struct gdb *g = calloc(1, sizeof(*g));
	char err[512];

	if (g == NULL)
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	db->be_state = g;
	g->lock.fd = -1;
	g->null_fd = -1;
	g->size_seen = -1;
	if (asprintf(&g->lock_path, "%s.lock", db->path) == -1) {
		g->lock_path = NULL;
		return diag_error(db, SESSDB_E_NOMEM, "out of memory");
	}
	if (precheck(db) == -1)
		return -1;
	if (lock_open(&g->lock, g->lock_path, !db->rdonly,
	    db->opt.lock_timeout_ms, err, sizeof(err)) == -1)
		return diag_error(db, diag_code(errno), "%s", err);
	g->boot = index_boot();
	(void)index_open(&g->ix, &g->lock);
	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	store_end(db, 0);
	return 0;
}

static void
gdbm_be_close(struct sessdb *db)
{
	struct gdb *g = db->be_state;

	if (g == NULL)
		return;
	if (g->dbf != NULL)
		gdbm_close_nosync(db, g->dbf);
	index_close(&g->ix);
	if (g->lock.fd >= 0 || g->lock.page != NULL)
		lock_close(&g->lock);
	if (g->null_fd >= 0)
		close(g->null_fd);
	free(g->lock_path);
	free(g);
	db->be_state = NULL;
}

const struct backend backend_gdbm = {
	.name = "gdbm",
	.open = gdbm_be_open,
	.close = gdbm_be_close,
	.after_fork = gdbm_be_after_fork,
	.fetch = gdbm_be_fetch,
	.store = gdbm_be_store,
	.take = gdbm_be_take,
	.remove = gdbm_be_remove,
	.scan = gdbm_be_scan,
	.scan_lag = gdbm_be_scan_lag,
	.claim_sweep = gdbm_be_claim_sweep,
	.info = gdbm_be_info,
	.compact = gdbm_be_compact,
};
