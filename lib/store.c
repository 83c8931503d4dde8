/*
 * NAME
 *	store.c - open, close, put, get, take and delete on the GDBM file
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
 *	holds LOCK_EX; every operation compares it with the value its handle
 *	is current with and reopens the handle when they differ.  A process
 *	that only reads, or that is the only writer, never reopens.
 *
 *	Record encoding and decoding (and the CRC) run outside the lock
 *	except in take, which must decide under the lock.
 *
 *	Damage (GDBM reports a structural error, or cannot open the file) is
 *	repaired under LOCK_EX: gdbm_recover, or if that fails the file is
 *	renamed to "<db>.corrupt-<unixtime>" and a fresh one is created.
 *	Every repair bumps the change counter so other processes reopen.
 *
 * DIAGNOSTICS
 *	Functions return -1 with sessdb_error() set; repairs and other
 *	notable events also go to the log callback.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <paths.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define DEFAULT_TTL		300
#define DEFAULT_MAX_TTL		86400
#define DEFAULT_LOCK_TIMEOUT_MS	1000
#define DEFAULT_SWEEP_BATCH	256
#define CAP_SWEEP_INTERVAL	1	/* seconds between sweeps forced by the cap */
#define REPAIR_RETRY_MS		1000	/* a check that could not run (no space,
					   I/O error) is tried again after this */
#define PATH_CHECK_MS		1000	/* readers check the paths this often */
#define GDBM_MAGIC_FIRST	0x13579acdu	/* GDBM's file magics (1.8 .. 1.23) */
#define GDBM_MAGIC_LAST		0x13579ad1u
#define REBUILD_KEEP		".rebuild-orig"	/* the old file during a rebuild */
#define RESERVE_SLACK		(64 * 1024)	/* allocated ahead beyond one update */

/* The marker: a key of the store's own namespace that says "sessdb". */
static const unsigned char marker_key[] = { REC_NS_META, 's', 'e', 's', 's', 'd', 'b' };
static const char marker_val[] = "sessdb store 1";

/*
 * Fork detection: flock locks belong to the open file description, which
 * fork() shares, so a child must not use its parent's lock descriptor.  A
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

int
store_error(struct sessdb *db, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
	db->st.errors++;
	return -1;
}

void
store_log(struct sessdb *db, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (db->opt.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	db->opt.log(db->opt.log_arg, level, msg);
}

int64_t
sessdb_now(const struct sessdb *db)
{
	if (db->opt.clock != NULL)
		return db->opt.clock(db->opt.clock_arg);
	return (int64_t)time(NULL);
}

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
	int fd = gdbm_fdesc(dbf);

	if (db->null_fd < 0)
		db->null_fd = open(_PATH_DEVNULL, O_RDWR | O_CLOEXEC);
	if (db->null_fd >= 0 && fd >= 0)
		dup3(db->null_fd, fd, O_CLOEXEC);
	gdbm_close(dbf);
}

/* mono_ms - a coarse monotonic clock in milliseconds (no system call: the
 * vDSO reads it), shared by every process of the host. */
static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

/* gdbm_sys - the system error behind the last GDBM error of dbf, or 0. */
static int
gdbm_sys(GDBM_FILE dbf)
{
	gdbm_error e = gdbm_last_errno(dbf);

	return gdbm_check_syserr(e) ? gdbm_last_syserr(dbf) : 0;
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
	const struct lock_page *p = db->lock.page;
	uint64_t dev = (uint64_t)st->st_dev, ino = (uint64_t)st->st_ino;

	if (db->db_ino != 0 && db->db_dev == dev && db->db_ino == ino)
		return 1;
	return p != NULL && __atomic_load_n(&p->db_ino, __ATOMIC_ACQUIRE) == ino &&
	    __atomic_load_n(&p->db_dev, __ATOMIC_RELAXED) == dev;
}

/* remember_file - st is the store's database file: note it in the handle
 * and in the lock page, for every process. */
static void
remember_file(struct sessdb *db, const struct stat *st)
{
	struct lock_page *p = db->lock.page;

	db->db_dev = (uint64_t)st->st_dev;
	db->db_ino = (uint64_t)st->st_ino;
	if (p == NULL || !db->lock.writable)
		return;
	__atomic_store_n(&p->db_dev, db->db_dev, __ATOMIC_RELAXED);
	__atomic_store_n(&p->db_ino, db->db_ino, __ATOMIC_RELEASE);
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
		db->need_marker = 1;
	return ours;
}

/* write_marker - give a recognised store its marker key (LOCK_EX held).
 * A failure only means another try by the next writer. */
static void
write_marker(struct sessdb *db)
{
	datum k = { (char *)marker_key, (int)sizeof(marker_key) };
	datum v = { (char *)marker_val, (int)sizeof(marker_val) - 1 };

	if (gdbm_store(db->dbf, k, v, GDBM_REPLACE) == 0)
		db->need_marker = 0;
}

/* refuse - the file at path is not ours: say so; nothing was written. */
static GDBM_FILE
refuse(struct sessdb *db, int fd, int *sys_errno, const char *what)
{
	if (fd >= 0)
		close(fd);
	snprintf(db->err, sizeof(db->err), "%s: %s; not a sessdb store, left "
	    "untouched", db->path, what);
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
	struct stat st;
	int created, fd, flags, known, kind, e = 0;
	GDBM_FILE dbf;

	*gerr = GDBM_FILE_OPEN_ERROR;
	*sys_errno = 0;
	fd = safe_open(db->path, !db->rdonly, creat && !db->rdonly &&
	    db->lock.held == LOCK_EX, &created, &st, db->err, sizeof(db->err));
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
	if (kind == 0 && !db->rdonly && db->lock.held != LOCK_EX) {
		close(fd);
		*sys_errno = EAGAIN;	/* initialising needs LOCK_EX */
		return NULL;
	}
	if (kind == 0 && !created && !db->rdonly)
		store_log(db, SESSDB_LOG_WARNING, "%s: empty file (a creator died, "
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
		db->need_marker = 1;	/* a new store */
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
	return store_error(db, "%s: cannot find a name to move the damaged file to",
	    db->path);
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
		return store_error(db, "%s: damaged (%s), but no longer the file "
		    "this store used; left untouched", db->path, why);
	if (aside_name(db, dst, sizeof(dst)) == -1)
		return -1;
	if (rename(db->path, dst) == -1)
		return store_error(db, "%s: cannot move damaged file aside: %s",
		    db->path, strerror(errno));
	store_log(db, SESSDB_LOG_ERR, "%s: damaged (%s), not recoverable; "
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
	datum k, next, v, *bad = NULL;
	size_t n = 0, cap = 0;
	uint64_t entries = 0, bytes = 0;
	struct rec r;

	for (k = gdbm_firstkey(db->dbf); k.dptr != NULL; k = next) {
		int meta = rec_key_is_meta(k.dptr, (size_t)k.dsize);

		v = gdbm_fetch(db->dbf, k);
		int ok = meta || (v.dptr != NULL && rec_decode((unsigned char *)
		    v.dptr, (size_t)v.dsize, (unsigned char *)k.dptr,
		    (size_t)k.dsize, &r) == REC_OK);
		if (ok && !meta) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
		}
		store_free_value(v.dptr, (size_t)v.dsize);
		next = gdbm_nextkey(db->dbf, k);
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
		gdbm_delete(db->dbf, bad[i]);
		free(bad[i].dptr);
	}
	free(bad);
	db->st.corrupt += n;
	lock_set_counts(&db->lock, entries, bytes);
	return n;
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
			store_log(db, SESSDB_LOG_INFO, "%s: removed %s, left by "
			    "an unfinished rebuild", db->path, n);
	}
	closedir(d);
}

/* rebuild_leftovers - a rebuild was interrupted (LOCK_EX held): clear its
 * temporary file and keep the old file if the new one replaced it. */
static void
rebuild_leftovers(struct sessdb *db)
{
	struct lock_page *p = db->lock.page;
	char keep[4096], aside[4096];
	struct stat ks, ds;

	rebuild_temps(db, p->rebuild_started);
	snprintf(keep, sizeof(keep), "%s" REBUILD_KEEP, db->path);
	if (lstat(keep, &ks) == 0 && S_ISREG(ks.st_mode)) {
		if (stat(db->path, &ds) == 0 && ds.st_ino == ks.st_ino &&
		    ds.st_dev == ks.st_dev)
			unlink(keep);	/* never replaced: the store is the old file */
		else if (aside_name(db, aside, sizeof(aside)) == 0 &&
		    rename(keep, aside) == 0)
			store_log(db, SESSDB_LOG_WARNING, "%s: a rebuild was "
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
 *	what it cannot read, never fail.  db->dbf is closed unless 1.
 */
static int
rebuild(struct sessdb *db, const char *why)
{
	struct lock_page *p = db->lock.page;
	struct rebuild_watch w = { db->dbf, NULL, 0 };
	gdbm_recovery rcvr;
	gdbm_error gerr;
	int sys_errno, kept = 0, rc;
	size_t lost;
	char keep[4096], aside[4096];

	snprintf(keep, sizeof(keep), "%s" REBUILD_KEEP, db->path);
	if (p->rebuild_started != 0)
		rebuild_leftovers(db);
	unlink(keep);
	if (link(db->path, keep) == -1) {
		int e = errno;

		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		errno = e;
		return -2;
	}
	__atomic_store_n(&p->rebuild_started, (int64_t)time(NULL), __ATOMIC_RELAXED);
	memset(&rcvr, 0, sizeof(rcvr));
	w.rcvr = &rcvr;
	rcvr.errfun = rebuild_errfun;
	rcvr.data = &w;
	rcvr.max_failures = SIZE_MAX;
	errno = 0;
	rc = gdbm_recover(db->dbf, &rcvr, GDBM_RCVR_FORCE | GDBM_RCVR_ERRFUN |
	    GDBM_RCVR_MAX_FAILURES);
	if (rc != 0 || w.sys != 0) {
		int e = w.sys != 0 ? w.sys : errno != 0 ? errno : EIO;

		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		rebuild_leftovers(db);	/* the store was not replaced */
		errno = e;
		return -2;
	}
	db->st.recoveries++;
	/* gdbm_recover renamed a new file over ours. */
	gdbm_close_nosync(db, db->dbf);
	remember_path(db);
	db->dbf = open_gdbm(db, 0, &gerr, &sys_errno);
	lost = rcvr.failed_keys + (db->dbf != NULL ? scrub(db) : 0);
	if ((lost > 0 || rcvr.failed_buckets > 0) &&
	    aside_name(db, aside, sizeof(aside)) == 0 && rename(keep, aside) == 0)
		kept = 1;
	else
		unlink(keep);
	__atomic_store_n(&p->rebuild_started, 0, __ATOMIC_RELAXED);
	store_log(db, lost > 0 || rcvr.failed_buckets > 0 ? SESSDB_LOG_ERR :
	    SESSDB_LOG_INFO, "%s: %s; rebuilt with %zu records, lost %zu records "
	    "and %zu buckets%s%s", db->path, why, rcvr.recovered_keys -
	    (lost - rcvr.failed_keys), lost, rcvr.failed_buckets,
	    kept ? "; the file before the rebuild is kept as " : "",
	    kept ? aside : (lost > 0 || rcvr.failed_buckets > 0 ?
	    "; the file before the rebuild could not be kept" : ""));
	if (db->dbf == NULL)
		return -1;
	return 1;	/* scrub recounted */
}

/* checked - the file is whole again (LOCK_EX held): clear the marks and
 * make every process reopen. */
static void
checked(struct sessdb *db)
{
	struct lock_page *p = db->lock.page;

	if (p != NULL && db->lock.writable) {
		__atomic_store_n(&p->fault_errno, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&p->repair_failed_ms, 0, __ATOMIC_RELAXED);
	}
	lock_set_writer(&db->lock, 0);
	db->seen_gen = lock_bump(&db->lock);
}

/* check_failed - a check or repair could not run for a system error e
 * (LOCK_EX held): the file stays as it is, marked, and the next attempt
 * waits REPAIR_RETRY_MS.  Logged once per state change.  Returns -1. */
static int
check_failed(struct sessdb *db, int e, const char *why)
{
	struct lock_page *p = db->lock.page;

	if (p != NULL && db->lock.writable) {
		uint64_t now = mono_ms();

		__atomic_store_n(&p->repair_failed_ms, now ? now : 1, __ATOMIC_RELAXED);
		if (e != 0)
			__atomic_store_n(&p->fault_errno, e, __ATOMIC_RELAXED);
	}
	store_error(db, "%s: the file needs a check (%s), which could not run: "
	    "%s; nothing was moved or lost, reads go on, writes wait for the "
	    "check (retried every %d ms)", db->path, why, strerror(e ? e : EIO),
	    REPAIR_RETRY_MS);
	if (db->fault != (e ? e : EIO)) {
		db->fault = e ? e : EIO;
		store_log(db, SESSDB_LOG_ERR, "%s", db->err);
	}
	errno = e ? e : EIO;
	return -1;
}

/* recover - repair the store in place or replace it; LOCK_EX held.  On
 * return db->dbf is a usable handle or NULL (with the error set). */
static int
recover(struct sessdb *db, const char *why)
{
	gdbm_error gerr;
	int sys_errno, rc = db->dbf != NULL ? rebuild(db, why) : -1;

	if (rc == -2)
		return check_failed(db, errno, why);
	if (rc != 1) {	/* GDBM cannot even open it */
		if (db->dbf != NULL)
			gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		db->st.recoveries++;
		if (move_aside(db, why) == -1)
			return -1;
		/* Even with SESSDB_NOCREATE: the file was there, we moved it. */
		db->dbf = open_gdbm(db, 1, &gerr, &sys_errno);
		if (db->dbf == NULL)
			return check_failed(db, sys_errno, "creating a fresh store");
		lock_set_counts(&db->lock, 0, 0);
	}
	checked(db);
	return 0;
}

/* reopen - make db->dbf current with the file; the lock is held. */
static int
reopen(struct sessdb *db)
{
	int creat = !db->rdonly && !(db->opt.flags & SESSDB_NOCREATE);
	gdbm_error gerr;
	int sys_errno;

	if (db->dbf != NULL) {
		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		db->st.reopens++;
	}
	db->size_seen = -1;
	db->dbf = open_gdbm(db, creat, &gerr, &sys_errno);
	if (db->dbf != NULL) {
		db->seen_gen = lock_generation(&db->lock);
		return 0;
	}
	if (db->lock.held != LOCK_EX && (sys_errno == EAGAIN ||
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
		return -1;
	}
	if (db->lock.held != LOCK_EX) {
		errno = EAGAIN;
		return -1;
	}
	if (recover(db, gdbm_strerror(gerr)) == -1)
		return -1;
	db->seen_gen = lock_generation(&db->lock);
	return 0;
}

/* after_fork - this process inherited the handle: take descriptors of its own. */
static int
after_fork(struct sessdb *db)
{
	char err[256];

	if (db->dbf != NULL) {
		/* The parent's writes are all in the file already. */
		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
	}
	if (db->lock.page != NULL || db->lock.fd >= 0)
		lock_close(&db->lock);
	if (lock_open(&db->lock, db->lock_path, !db->rdonly,
	    db->opt.lock_timeout_ms, err, sizeof(err)) == -1)
		return store_error(db, "%s", err);
	db->fork_epoch = fork_epoch;
	db->pid = (int32_t)getpid();
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
	char why[128];
	int32_t pid = lock_writer(&db->lock);
	int fault = __atomic_load_n(&db->lock.page->fault_errno, __ATOMIC_RELAXED);

	if (fault != 0)
		snprintf(why, sizeof(why), "a write by process %d failed: %s",
		    (int)pid, strerror(fault));
	else
		snprintf(why, sizeof(why), "process %d died while writing", (int)pid);
	if (db->lock.page->repair_failed_ms == 0)
		store_log(db, SESSDB_LOG_WARNING, "%s: %s; checking the file",
		    db->path, why);
	db->seen_gen = 0;
	if (reopen(db) == -1)
		return errno == ENOTSTORE || db->dbf != NULL ? -1 :
		    check_failed(db, errno == EAGAIN ? EIO : errno, why);
	if (rebuild(db, why) == -2)
		return check_failed(db, errno, why);
	checked(db);
	if (db->fault != 0) {
		store_log(db, SESSDB_LOG_INFO, "%s: the file is checked; writes "
		    "go on", db->path);
		db->fault = 0;
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
	struct stat st;
	char err[256];
	int found;

	if (op != LOCK_EX && !lock_retired(&db->lock)) {
		uint64_t now = mono_ms();

		if (now - db->checked_ms < PATH_CHECK_MS)
			return 0;
		db->checked_ms = now;
	}
	if (lock_replaced(&db->lock, db->lock_path)) {
		store_log(db, SESSDB_LOG_WARNING, "%s: removed or replaced while "
		    "in use; locking the file the path names now", db->lock_path);
		lock_release(&db->lock);
		lock_close(&db->lock);
		db->seen_gen = 0;
		if (lock_open(&db->lock, db->lock_path, !db->rdonly,
		    db->opt.lock_timeout_ms, err, sizeof(err)) == -1)
			return store_error(db, "%s", err);
		return 1;
	}
	if (db->dbf == NULL)
		return 0;
	found = stat(db->path, &st) == 0;
	if (found && (uint64_t)st.st_ino == db->db_ino &&
	    (uint64_t)st.st_dev == db->db_dev) {
		db->size_seen = st.st_size;	/* for store_reserve: the lock
						   keeps it true */
	} else {
		if (!found || !known_file(db, &st))
			store_log(db, SESSDB_LOG_INFO, "%s: the database file was "
			    "replaced or removed; reopening", db->path);
		db->seen_gen = 0;
	}
	return 0;
}

/* repair_waits - did a check fail less than REPAIR_RETRY_MS ago? */
static int
repair_waits(const struct sessdb *db)
{
	uint64_t failed = __atomic_load_n(&db->lock.page->repair_failed_ms,
	    __ATOMIC_RELAXED);

	return failed != 0 && mono_ms() - failed < REPAIR_RETRY_MS;
}

int
store_begin(struct sessdb *db, int op)
{
	if (db->fork_epoch != fork_epoch && after_fork(db) == -1)
		return -1;
	db->size_seen = -1;
	for (;;) {
		int moved;

		if (lock_acquire(&db->lock, op, db->opt.lock_timeout_ms) == -1) {
			if (errno == ETIMEDOUT) {
				db->st.lock_timeouts++;
				return store_error(db, "%s: lock not granted within %u ms "
				    "(another process holds it)", db->lock_path,
				    db->opt.lock_timeout_ms);
			}
			return store_error(db, "%s: flock: %s", db->lock_path,
			    strerror(errno));
		}
		if ((moved = files_moved(db, op)) == -1)
			return -1;
		if (moved)
			continue;
		if (op == LOCK_EX && !db->rdonly && db->lock.page != NULL &&
		    db->lock.page->rebuild_started != 0 && lock_writer(&db->lock) == 0)
			rebuild_leftovers(db);
		if (lock_writer(&db->lock) != 0) {
			/* A writer died, or a write failed, between changing
			 * the file and finishing: it may hold half an update.
			 * Records are checked one by one, so reading on is
			 * safe while a check cannot run. */
			int waits = repair_waits(db);

			if ((op != LOCK_EX && !waits) && !db->rdonly) {
				lock_release(&db->lock);
				op = LOCK_EX;
				continue;
			}
			if (op == LOCK_EX && waits) {
				int e = __atomic_load_n(&db->lock.page->fault_errno,
				    __ATOMIC_RELAXED);

				lock_release(&db->lock);
				errno = e ? e : EIO;
				return store_error(db, "%s: writes wait for a check "
				    "of the file, which could not run: %s (retried "
				    "every %d ms)", db->path, strerror(errno),
				    REPAIR_RETRY_MS);
			}
			if (op == LOCK_EX && after_dead_writer(db) == -1) {
				lock_release(&db->lock);
				return -1;
			}
		}
		if (db->dbf == NULL || lock_generation(&db->lock) != db->seen_gen ||
		    db->seen_gen == 0) {
			if (reopen(db) == -1) {
				lock_release(&db->lock);
				if (errno != EAGAIN || op == LOCK_EX)
					return -1;
				op = LOCK_EX;	/* initialise or recover */
				continue;
			}
		}
		if (op == LOCK_EX) {
			if (db->need_marker)
				write_marker(db);
			if (db->lock.page != NULL && db->lock.page->counts_unknown) {
				store_recount(db);
				db->lock.page->counts_unknown = 0;
			}
			lock_set_writer(&db->lock, db->pid);
		}
		return 0;
	}
}

void
store_end(struct sessdb *db, int wrote)
{
	db->size_seen = -1;
	if (wrote)
		db->seen_gen = lock_bump(&db->lock);
	if (db->lock.held == LOCK_EX)
		lock_set_writer(&db->lock, 0);
	lock_release(&db->lock);
	if (wrote && db->fault != 0) {
		store_log(db, SESSDB_LOG_INFO, "%s: writes succeed again", db->path);
		db->fault = 0;
	}
}

/* gdbm_fail_msg - set the handle's message for a failed GDBM call. */
static void
gdbm_fail_msg(struct sessdb *db, const char *what, gdbm_error e, int sys)
{
	if (sys != 0)
		store_error(db, "%s: %s: %s: %s", db->path, what, gdbm_strerror(e),
		    strerror(sys));
	else
		store_error(db, "%s: %s: %s", db->path, what, gdbm_strerror(e));
}

/* repair_now - LOCK_EX for a repair that a failed call asked for; -1 if it
 * is not ours to do now (someone else wrote or repaired, the files were
 * replaced, or a check waits).  On 0 the writer mark is set. */
static int
repair_now(struct sessdb *db)
{
	struct stat st;

	if (lock_acquire(&db->lock, LOCK_EX, db->opt.lock_timeout_ms) == -1)
		return -1;
	if (lock_generation(&db->lock) != db->seen_gen ||
	    lock_replaced(&db->lock, db->lock_path) ||
	    stat(db->path, &st) == -1 || !known_file(db, &st) ||
	    lock_writer(&db->lock) != 0) {
		/* Look again on the next call: the file may be sound. */
		lock_release(&db->lock);
		return -1;
	}
	lock_set_writer(&db->lock, db->pid);
	return 0;
}

int
store_gdbm_fail(struct sessdb *db, const char *what)
{
	gdbm_error e = gdbm_last_errno(db->dbf);
	int sys = gdbm_sys(db->dbf);
	int partial = gdbm_needs_recovery(db->dbf) && db->lock.held == LOCK_EX;
	int damaged = is_damage(e, sys) && !db->rdonly;
	int err = sys != 0 ? sys : EIO;
	char why[256];

	gdbm_fail_msg(db, what, e, sys);
	/* Once per state: a fault until writes succeed again; nothing more
	 * while a check of the file is pending (it was said then). */
	if ((!is_fault(sys) || db->fault != sys) &&
	    (partial || lock_writer(&db->lock) == 0))
		store_log(db, SESSDB_LOG_ERR, "%s", db->err);
	if (is_fault(sys))
		db->fault = sys;	/* logged once until writes succeed */
	/* The handle's cache may hold the failed update: drop it, so the
	 * next call starts from the file as it is. */
	gdbm_close_nosync(db, db->dbf);
	db->dbf = NULL;
	if (partial) {
		/* The file may hold part of the update: leave the writer
		 * mark set, with the reason, for the check. */
		if (db->lock.page != NULL && db->lock.writable)
			__atomic_store_n(&db->lock.page->fault_errno, err,
			    __ATOMIC_RELAXED);
		lock_release(&db->lock);
		errno = err;
		return -1;
	}
	if (db->lock.held == LOCK_EX)
		lock_set_writer(&db->lock, 0);
	lock_release(&db->lock);
	if (!damaged || repair_now(db) == -1) {
		errno = err;
		return -1;
	}
	snprintf(why, sizeof(why), "%s", gdbm_strerror(e));
	db->seen_gen = 0;
	if (reopen(db) == 0)
		recover(db, why);
	lock_set_writer(&db->lock, 0);
	lock_release(&db->lock);
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
precheck(struct sessdb *db, char *errbuf, size_t errbuf_len)
{
	struct stat st;
	int created, fd, kind, e = 0, ours;
	GDBM_FILE dbf;

	if (access(db->lock_path, F_OK) == 0)
		return 0;
	fd = safe_open(db->path, 0, 0, &created, &st, errbuf, errbuf_len);
	if (fd == -1) {
		if (errno == ENOENT && !db->rdonly &&
		    !(db->opt.flags & SESSDB_NOCREATE))
			return 0;	/* created under the lock */
		return -1;
	}
	kind = file_kind(fd, &e);
	if (kind != 1) {
		close(fd);
		snprintf(errbuf, errbuf_len, "%s: %s; not a sessdb store, left "
		    "untouched", db->path, kind == -2 ? strerror(e) : kind == 0 ?
		    "an empty file that no sessdb process created" :
		    "not a GDBM file");
		return -1;
	}
	dbf = gdbm_fd_open(fd, db->path, 0, GDBM_READER | GDBM_NOLOCK |
	    GDBM_NOMMAP | GDBM_CLOERROR, NULL);
	if (dbf == NULL) {
		snprintf(errbuf, errbuf_len, "%s: a GDBM file that cannot be "
		    "opened (%s), and no lock file beside it shows it is ours; "
		    "treated as not a sessdb store, left untouched", db->path,
		    gdbm_strerror(gdbm_errno));
		return -1;
	}
	ours = has_marker(db, dbf);
	gdbm_close(dbf);
	if (ours != 1) {
		snprintf(errbuf, errbuf_len, "%s: %s; not a sessdb store, left "
		    "untouched", db->path, ours == 0 ? "a GDBM database without "
		    "the sessdb marker" : "a GDBM file that cannot be read");
		return -1;
	}
	return 0;
}

struct sessdb *
sessdb_open(const char *path, const struct sessdb_options *opts,
    char *errbuf, size_t errbuf_len)
{
	struct sessdb *db;
	char err[512];

	pthread_once(&fork_once, fork_register);
	if (path == NULL || *path == '\0') {
		snprintf(errbuf, errbuf_len, "no database path given");
		return NULL;
	}
	db = calloc(1, sizeof(*db));
	if (db == NULL)
		goto nomem;
	db->lock.fd = -1;
	db->null_fd = -1;
	db->size_seen = -1;
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
	db->path = strdup(path);
	if (db->path == NULL || asprintf(&db->lock_path, "%s.lock", path) == -1) {
		db->lock_path = NULL;
		goto nomem;
	}
	if (precheck(db, errbuf, errbuf_len) == -1)
		goto fail;
	if (lock_open(&db->lock, db->lock_path, !db->rdonly,
	    db->opt.lock_timeout_ms, err, sizeof(err)) == -1) {
		snprintf(errbuf, errbuf_len, "%s", err);
		goto fail;
	}
	/* Open (create, check, repair) now, so that a bad path fails here. */
	if (store_begin(db, LOCK_SH) == -1) {
		snprintf(errbuf, errbuf_len, "%s", db->err);
		goto fail;
	}
	store_end(db, 0);
	db->st.errors = 0;
	return db;
nomem:
	snprintf(errbuf, errbuf_len, "out of memory");
fail:
	sessdb_close(db);
	return NULL;
}

void
sessdb_close(struct sessdb *db)
{
	if (db == NULL)
		return;
	if (db->dbf != NULL)
		gdbm_close_nosync(db, db->dbf);
	if (db->lock.fd >= 0 || db->lock.page != NULL)
		lock_close(&db->lock);
	if (db->null_fd >= 0)
		close(db->null_fd);
	free(db->path);
	free(db->lock_path);
	free(db);
}

const char *
sessdb_error(const struct sessdb *db)
{
	if (db == NULL)
		return "no store handle";
	return db->err[0] != '\0' ? db->err : "no error";
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

/* make_key - the GDBM key for (ns, id), or -1 with the error set. */
static int
make_key(struct sessdb *db, unsigned char key[REC_KEY_MAX], size_t *key_len,
    unsigned ns, const void *id, size_t id_len)
{
	*key_len = rec_key_make(key, ns, id, id_len);
	if (*key_len == 0)
		return store_error(db, "invalid key: namespace 0x%02x, id of %zu bytes "
		    "(want 1..%d)", ns, id_len, SESSDB_ID_MAX);
	return 0;
}

static datum
to_datum(const unsigned char *p, size_t len)
{
	datum d = { (char *)p, (int)len };
	return d;
}

int
store_delete_same_locked(struct sessdb *db, datum k, const unsigned char *value,
    size_t value_len)
{
	datum cur = gdbm_fetch(db->dbf, k);
	int same;

	if (cur.dptr == NULL) {
		if (gdbm_last_errno(db->dbf) != GDBM_ITEM_NOT_FOUND)
			return store_gdbm_fail(db, "fetch");
		return 0;
	}
	same = (size_t)cur.dsize == value_len &&
	    memcmp(cur.dptr, value, value_len) == 0;
	store_free_value(cur.dptr, (size_t)cur.dsize);
	if (!same)
		return 0;
	if (gdbm_delete(db->dbf, k) != 0)
		return store_gdbm_fail(db, "delete");
	lock_count(&db->lock, -1, -(int64_t)((size_t)k.dsize + value_len));
	return 1;
}

int
store_delete_if_same(struct sessdb *db, const unsigned char *key,
    size_t key_len, const unsigned char *value, size_t value_len)
{
	int rc;

	if (db->rdonly)
		return 0;
	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	rc = store_delete_same_locked(db, to_datum(key, key_len), value, value_len);
	if (rc != -1)
		store_end(db, rc);
	return rc;
}

/*
 * check_value - decode a fetched value; count and classify.  Returns
 * SESSDB_OK for a live record (r filled), else SESSDB_MISS.
 */
static int
check_value(struct sessdb *db, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, struct rec *r, int64_t now)
{
	enum rec_status rs = rec_decode(val, val_len, key, key_len, r);

	if (rs != REC_OK) {
		db->st.corrupt++;
		store_log(db, SESSDB_LOG_WARNING, "%s: dropping unreadable record "
		    "(%s)", db->path, rec_strerror(rs));
		return SESSDB_MISS;
	}
	if (r->expires <= now) {
		db->st.expired++;
		return SESSDB_MISS;
	}
	return SESSDB_OK;
}

/* hand_out - turn a fetched value into the caller's payload buffer. */
static void
hand_out(datum *val, const struct rec *r, void **data, size_t *len,
    struct sessdb_meta *meta)
{
	if (meta != NULL) {
		meta->created = r->created;
		meta->expires = r->expires;
		meta->flags = r->flags;
	}
	*len = r->payload_len;
	memmove(val->dptr, r->payload, r->payload_len);
	*data = val->dptr;
	val->dptr = NULL;
}

int
sessdb_get(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	datum val;
	struct rec r;
	int rc;

	*data = NULL;
	*len = 0;
	if (make_key(db, key, &key_len, ns, id, id_len) == -1)
		return -1;
	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	val = gdbm_fetch(db->dbf, to_datum(key, key_len));
	if (val.dptr == NULL) {
		if (gdbm_last_errno(db->dbf) != GDBM_ITEM_NOT_FOUND)
			return store_gdbm_fail(db, "fetch");
		store_end(db, 0);
		db->st.misses++;
		return SESSDB_MISS;
	}
	store_end(db, 0);

	rc = check_value(db, key, key_len, (unsigned char *)val.dptr,
	    (size_t)val.dsize, &r, sessdb_now(db));
	if (rc == SESSDB_OK) {
		db->st.hits++;
		hand_out(&val, &r, data, len, meta);
		return SESSDB_OK;
	}
	db->st.misses++;
	if (store_delete_if_same(db, key, key_len, (unsigned char *)val.dptr,
	    (size_t)val.dsize) == -1)
		store_log(db, SESSDB_LOG_WARNING, "%s", db->err);
	store_free_value(val.dptr, (size_t)val.dsize);
	return SESSDB_MISS;
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
int
store_reserve(struct sessdb *db, size_t bytes)
{
	size_t elems = 0;
	int depth = 0, bsize = 4096, fd = gdbm_fdesc(db->dbf);
	off_t need, extra = RESERVE_SLACK;
	struct stat st;

	(void)gdbm_setopt(db->dbf, GDBM_GETDIRDEPTH, &depth, sizeof(depth));
	(void)gdbm_setopt(db->dbf, GDBM_GETBLOCKSIZE, &bsize, sizeof(bsize));
	(void)elems;
	/* The record, a doubled directory, split buckets, avail blocks. */
	need = (off_t)bytes + 2 * ((off_t)sizeof(off_t) << depth) + 4 * (off_t)bsize;
	if (db->size_seen >= 0)
		st.st_size = db->size_seen;
	else if (fstat(fd, &st) == -1)
		return 0;
	if (st.st_size + need <= db->reserved_to)
		return 0;
	for (;;) {
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, need + extra) == 0) {
			db->reserved_to = st.st_size + need + extra;
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
	int e = errno;

	store_end(db, 0);
	store_error(db, "%s: no room for the record on disk: %s; nothing was "
	    "written", db->path, strerror(e));
	if (db->fault != e) {
		db->fault = e;
		store_log(db, SESSDB_LOG_ERR, "%s", db->err);
	}
	errno = e;
	return -1;
}

/*
 * remove_key - fetch and delete (ns, id) under one LOCK_EX.  Returns 1 with
 * the removed value in *val (the caller frees val->dptr), 0 if the key was
 * absent, -1 on error.
 */
static int
remove_key(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    unsigned char key[REC_KEY_MAX], size_t *key_len, datum *val)
{
	datum k;

	if (db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	if (make_key(db, key, key_len, ns, id, id_len) == -1)
		return -1;
	k = to_datum(key, *key_len);
	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	/* Fetch rather than test: take needs the value, the byte counter
	 * its size. */
	*val = gdbm_fetch(db->dbf, k);
	if (val->dptr == NULL) {
		if (gdbm_last_errno(db->dbf) != GDBM_ITEM_NOT_FOUND)
			return store_gdbm_fail(db, "fetch");
		store_end(db, 0);
		return 0;
	}
	if (store_reserve(db, 0) == -1) {
		store_free_value(val->dptr, (size_t)val->dsize);
		val->dptr = NULL;
		return reserve_fail(db);
	}
	if (gdbm_delete(db->dbf, k) != 0) {
		store_free_value(val->dptr, (size_t)val->dsize);
		val->dptr = NULL;
		return store_gdbm_fail(db, "delete");
	}
	lock_count(&db->lock, -1, -(int64_t)(*key_len + (size_t)val->dsize));
	store_end(db, 1);
	return 1;
}

int
sessdb_take(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	datum val;
	struct rec r;
	int rc;

	*data = NULL;
	*len = 0;
	rc = remove_key(db, ns, id, id_len, key, &key_len, &val);
	if (rc == 1)
		rc = check_value(db, key, key_len, (unsigned char *)val.dptr,
		    (size_t)val.dsize, &r, sessdb_now(db));
	else if (rc == 0)
		rc = SESSDB_MISS;
	if (rc == -1)
		return -1;
	if (rc != SESSDB_OK) {
		db->st.misses++;
		store_free_value(val.dptr, (size_t)val.dsize);	/* NULL when absent */
		return SESSDB_MISS;
	}
	db->st.hits++;
	db->st.deletes++;
	hand_out(&val, &r, data, len, meta);
	return SESSDB_OK;
}

int
sessdb_delete(struct sessdb *db, unsigned ns, const void *id, size_t id_len)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	datum val;
	int rc = remove_key(db, ns, id, id_len, key, &key_len, &val);

	if (rc == 1) {
		store_free_value(val.dptr, (size_t)val.dsize);
		db->st.deletes++;
	}
	return rc == -1 ? -1 : 0;
}

/* over_cap - would adding a record of size bytes break a cap? (lock held) */
static int
over_cap(struct sessdb *db, size_t size)
{
	const struct lock_page *p = db->lock.page;

	if (p == NULL)
		return 0;
	if (db->opt.max_entries != 0 &&
	    __atomic_load_n(&p->entries, __ATOMIC_RELAXED) >= db->opt.max_entries)
		return 1;
	if (db->opt.max_bytes != 0 &&
	    __atomic_load_n(&p->bytes, __ATOMIC_RELAXED) + size > db->opt.max_bytes)
		return 1;
	return 0;
}

/* cap_sweep_due - claim the right to sweep for the cap (at most once a
 * CAP_SWEEP_INTERVAL across all processes); LOCK_EX held. */
static int
cap_sweep_due(struct sessdb *db, int64_t now)
{
	struct lock_page *p = db->lock.page;

	if (p == NULL || now - p->swept_at < CAP_SWEEP_INTERVAL)
		return 0;
	p->swept_at = now;
	return 1;
}

/* store_value - insert or replace under LOCK_EX; 1 = stored, 0 = full, -1. */
static int
store_value(struct sessdb *db, datum k, datum v, int may_sweep)
{
	datum old;
	int rc;

	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	if (over_cap(db, (size_t)(k.dsize + v.dsize)) && !gdbm_exists(db->dbf, k)) {
		int sweep = may_sweep && cap_sweep_due(db, sessdb_now(db));

		store_end(db, 0);
		if (!sweep)
			return 0;
		if (sessdb_sweep(db, 0, NULL, NULL, NULL) == -1)
			store_log(db, SESSDB_LOG_WARNING, "%s", db->err);
		return store_value(db, k, v, 0);
	}
	if (store_reserve(db, (size_t)(k.dsize + v.dsize)) == -1)
		return reserve_fail(db);
	rc = gdbm_store(db->dbf, k, v, GDBM_INSERT);
	if (rc == 0) {
		lock_count(&db->lock, 1, k.dsize + v.dsize);
	} else if (rc == 1) {
		old = gdbm_fetch(db->dbf, k);
		store_free_value(old.dptr, (size_t)old.dsize);
		if (gdbm_store(db->dbf, k, v, GDBM_REPLACE) != 0)
			return store_gdbm_fail(db, "store");
		lock_count(&db->lock, 0, (int64_t)v.dsize - old.dsize);
	} else {
		return store_gdbm_fail(db, "store");
	}
	store_end(db, 1);
	return 1;
}

int
sessdb_put(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len;
	unsigned char *buf;
	int64_t now = sessdb_now(db);
	struct rec r;
	int rc;

	if (db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	if (make_key(db, key, &key_len, ns, id, id_len) == -1)
		return -1;
	if (data == NULL && len > 0)
		return store_error(db, "put: no data");
	if (len > SESSDB_PAYLOAD_MAX)
		return store_error(db, "put: payload of %zu bytes exceeds %u", len,
		    SESSDB_PAYLOAD_MAX);
	if (expires == 0)
		expires = now + db->opt.default_ttl;
	if (expires > now + (int64_t)db->opt.max_ttl)
		expires = now + db->opt.max_ttl;
	if (expires <= now)
		return store_error(db, "put: record already expired (expires %lld, "
		    "now %lld)", (long long)expires, (long long)now);
	buf = malloc(REC_HEADER_LEN + len);
	if (buf == NULL)
		return store_error(db, "put: out of memory");
	r.flags = 0;
	r.created = now;
	r.expires = expires;
	r.payload = data;
	r.payload_len = len;
	rec_encode(buf, key, key_len, &r);
	rc = store_value(db, to_datum(key, key_len),
	    to_datum(buf, REC_HEADER_LEN + len), 1);
	explicit_bzero(buf, REC_HEADER_LEN + len);	/* payloads hold secrets */
	free(buf);
	if (rc == 0) {
		db->st.declined++;
		return SESSDB_FULL;
	}
	if (rc == 1)
		db->st.stores++;
	return rc == 1 ? 0 : -1;
}

void
store_recount(struct sessdb *db)
{
	uint64_t entries = 0, bytes = 0;
	datum k, next, v;

	for (k = gdbm_firstkey(db->dbf); k.dptr != NULL; k = next) {
		v = gdbm_fetch(db->dbf, k);
		if (v.dptr != NULL && !rec_key_is_meta(k.dptr, (size_t)k.dsize)) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
		}
		store_free_value(v.dptr, (size_t)v.dsize);
		next = gdbm_nextkey(db->dbf, k);
		free(k.dptr);
	}
	lock_set_counts(&db->lock, entries, bytes);
}

int
sessdb_info(struct sessdb *db, struct sessdb_info *info)
{
	struct stat st;

	memset(info, 0, sizeof(*info));
	if (store_begin(db, LOCK_SH) == -1)
		return -1;
	if (fstat(gdbm_fdesc(db->dbf), &st) == 0)
		info->file_size = (uint64_t)st.st_size;
	if (db->lock.page != NULL) {
		info->entries = __atomic_load_n(&db->lock.page->entries, __ATOMIC_RELAXED);
		info->bytes = __atomic_load_n(&db->lock.page->bytes, __ATOMIC_RELAXED);
	}
	info->generation = lock_generation(&db->lock);
	store_end(db, 0);
	return 0;
}

int
sessdb_compact(struct sessdb *db)
{
	struct lock_page *p;
	struct stat st;
	int e;

	if (db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	p = db->lock.page;
	if (fstat(gdbm_fdesc(db->dbf), &st) == -1) {
		e = errno;
		store_end(db, 0);
		errno = e;
		return store_error(db, "%s: fstat: %s", db->path, strerror(e));
	}
	/* gdbm_reorganize writes a new file and renames it over ours: the
	 * old file stays whole until that one rename.  If it fails (no
	 * space), its temporary file must not stay behind. */
	__atomic_store_n(&p->rebuild_started, (int64_t)time(NULL), __ATOMIC_RELAXED);
	if (gdbm_reorganize(db->dbf) != 0) {
		e = gdbm_check_syserr(gdbm_errno) ? errno : 0;
		rebuild_leftovers(db);
		/* Only the new file was written: the store is as it was. */
		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		store_end(db, 0);
		errno = e ? e : EIO;
		return store_error(db, "%s: compaction failed, the store is "
		    "unchanged: %s%s%s", db->path, gdbm_strerror(gdbm_errno),
		    e ? ": " : "", e ? strerror(e) : "");
	}
	__atomic_store_n(&p->rebuild_started, 0, __ATOMIC_RELAXED);
	/* Keep the owner and mode the servers rely on. */
	if (fchown(gdbm_fdesc(db->dbf), st.st_uid, st.st_gid) == -1 ||
	    fchmod(gdbm_fdesc(db->dbf), st.st_mode & 0600) == -1)
		store_log(db, SESSDB_LOG_WARNING, "%s: restoring owner/mode after "
		    "compaction: %s", db->path, strerror(errno));
	remember_path(db);
	store_end(db, 1);	/* everyone else must reopen the new file */
	return 0;
}
