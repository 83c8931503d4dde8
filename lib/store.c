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

/* is_damage - does this GDBM error mean the file's structure is broken? */
static int
is_damage(gdbm_error e)
{
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

/* open_gdbm - a GDBM handle on the file path names now, creating the file
 * if creat (LOCK_EX held).  An empty file is initialised: LOCK_EX only.
 * Always by path: a file replaced by a repair or a compaction is found. */
static GDBM_FILE
open_gdbm(struct sessdb *db, int creat, gdbm_error *gerr, int *sys_errno)
{
	struct stat st;
	int created, fd, flags;
	GDBM_FILE dbf;

	*gerr = GDBM_FILE_OPEN_ERROR;
	*sys_errno = 0;
	fd = safe_open(db->path, !db->rdonly, creat && !db->rdonly &&
	    db->lock.held == LOCK_EX, &created, &st, db->err, sizeof(db->err));
	if (fd == -1) {
		*sys_errno = errno;
		return NULL;
	}
	if (st.st_size == 0 && !db->rdonly && db->lock.held != LOCK_EX) {
		close(fd);
		*sys_errno = EAGAIN;	/* initialising needs LOCK_EX */
		return NULL;
	}
	if (st.st_size == 0 && !created && !db->rdonly)
		store_log(db, SESSDB_LOG_WARNING, "%s: empty file (a creator died, "
		    "or it was emptied); starting a new store in it", db->path);
	flags = (db->rdonly ? GDBM_READER : GDBM_WRCREAT) | GDBM_NOLOCK |
	    GDBM_NOMMAP | GDBM_CLOERROR;
	dbf = gdbm_fd_open(fd, db->path, 0, flags, NULL);
	if (dbf == NULL) {
		*gerr = gdbm_errno;
		*sys_errno = errno;
		snprintf(db->err, sizeof(db->err), "%s: %s", db->path,
		    gdbm_strerror(*gerr));
	} else {
		*gerr = GDBM_NO_ERROR;
	}
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

/* move_aside - rename a damaged file out of the way; LOCK_EX held. */
static int
move_aside(struct sessdb *db, const char *why)
{
	char dst[4096];

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
		v = gdbm_fetch(db->dbf, k);
		int ok = v.dptr != NULL && rec_decode((unsigned char *)v.dptr,
		    (size_t)v.dsize, (unsigned char *)k.dptr, (size_t)k.dsize,
		    &r) == REC_OK;
		if (ok) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
		}
		free(v.dptr);
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
 * rebuild - gdbm_recover the open file (flags: GDBM_RCVR_FORCE to rebuild
 * whatever, or 0 to rebuild only if its check finds damage); LOCK_EX held.
 * GDBM keeps a backup of the original.  The rebuilt file is scrubbed of
 * records whose bytes were destroyed.  If anything was lost, the backup is
 * kept as "<db>.corrupt-<time>" (the damaged file, moved aside) and the
 * rebuilt file carries on with everything that could be read; if nothing
 * was lost the backup goes.  Returns 1 if the file was rebuilt, 0 if it
 * was sound, -1 if GDBM could not recover it (db->dbf closed).
 */
static int
rebuild(struct sessdb *db, int flags, const char *why)
{
	gdbm_recovery rcvr;
	gdbm_error gerr;
	int sys_errno, kept = 0;
	size_t lost;
	char aside[4096];

	memset(&rcvr, 0, sizeof(rcvr));
	if (gdbm_recover(db->dbf, &rcvr, flags | GDBM_RCVR_BACKUP) != 0) {
		free(rcvr.backup_name);
		gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		return -1;
	}
	if (rcvr.backup_name == NULL)
		return 0;	/* the check found nothing to rebuild */
	db->st.recoveries++;
	/* gdbm_recover renamed a new file over ours. */
	gdbm_close_nosync(db, db->dbf);
	db->dbf = open_gdbm(db, 0, &gerr, &sys_errno);
	lost = rcvr.failed_keys + (db->dbf != NULL ? scrub(db) : 0);
	if ((lost > 0 || rcvr.failed_buckets > 0) &&
	    aside_name(db, aside, sizeof(aside)) == 0 &&
	    rename(rcvr.backup_name, aside) == 0)
		kept = 1;
	else
		unlink(rcvr.backup_name);
	store_log(db, lost > 0 ? SESSDB_LOG_ERR : SESSDB_LOG_INFO,
	    "%s: damaged (%s); rebuilt with %zu records, lost %zu records and "
	    "%zu buckets%s%s", db->path, why, rcvr.recovered_keys - (lost -
	    rcvr.failed_keys), lost, rcvr.failed_buckets,
	    kept ? "; the damaged file is kept as " : "", kept ? aside : "");
	free(rcvr.backup_name);
	if (db->dbf == NULL)
		return -1;
	return 1;	/* scrub recounted */
}

/* recover - repair a damaged file in place or replace it; LOCK_EX held.
 * On return db->dbf is a usable handle or NULL (with the error set). */
static int
recover(struct sessdb *db, const char *why)
{
	gdbm_error gerr;
	int sys_errno;

	if (db->dbf == NULL || rebuild(db, GDBM_RCVR_FORCE, why) != 1) {
		if (db->dbf != NULL)
			gdbm_close_nosync(db, db->dbf);
		db->dbf = NULL;
		db->st.recoveries++;
		if (move_aside(db, why) == -1)
			return -1;
		/* Even with SESSDB_NOCREATE: the file was there, we moved it. */
		db->dbf = open_gdbm(db, 1, &gerr, &sys_errno);
		if (db->dbf == NULL)
			return store_error(db, "%s: cannot create a fresh store: %s",
			    db->path, gdbm_strerror(gerr));
		lock_set_counts(&db->lock, 0, 0);
	}
	lock_set_writer(&db->lock, 0);	/* the file is whole again */
	db->seen_gen = lock_bump(&db->lock);
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
	db->dbf = open_gdbm(db, creat, &gerr, &sys_errno);
	if (db->dbf == NULL) {
		if (db->lock.held != LOCK_EX && (sys_errno == EAGAIN ||
		    (sys_errno == ENOENT && creat))) {
			errno = EAGAIN;	/* creating or initialising needs LOCK_EX */
			return -1;
		}
		if (!is_damage(gerr) || db->rdonly) {
			db->st.errors++;
			if (db->rdonly && is_damage(gerr))
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
	}
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
	if (lock_open(&db->lock, db->lock_path, !db->rdonly, err, sizeof(err)) == -1)
		return store_error(db, "%s", err);
	db->fork_epoch = fork_epoch;
	db->pid = (int32_t)getpid();
	return 0;
}

/*
 * after_dead_writer - LOCK_EX held and the writer mark is set: its owner
 * was killed inside an update, and GDBM may have half of it on disk.
 * Reopen from the file and let GDBM check it (gdbm_recover rebuilds it
 * only if it finds damage); recount, since the counters may be off by
 * the interrupted operation; every process reopens after that.  Records
 * whose bytes were torn fail their CRC later and are dropped.
 */
static int
after_dead_writer(struct sessdb *db)
{
	char why[64];
	int rc;

	snprintf(why, sizeof(why), "process %d died while writing",
	    (int)lock_writer(&db->lock));
	store_log(db, SESSDB_LOG_WARNING, "%s: %s; checking the file", db->path,
	    why);
	db->seen_gen = 0;
	if (reopen(db) == -1)
		return -1;	/* reopen already repaired what it could */
	/* A forced rebuild: GDBM's check does not notice a header left
	 * behind the buckets (next_block too low), and the next writes
	 * would reuse space that records still occupy. */
	rc = rebuild(db, GDBM_RCVR_FORCE, why);
	if (rc == -1)
		return recover(db, why);
	if (rc == 0)
		store_recount(db);
	lock_set_writer(&db->lock, 0);
	db->seen_gen = lock_bump(&db->lock);
	return 0;
}

int
store_begin(struct sessdb *db, int op)
{
	if (db->fork_epoch != fork_epoch && after_fork(db) == -1)
		return -1;
	for (;;) {
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
		if (lock_writer(&db->lock) != 0) {
			/* A writer died between changing the file and
			 * finishing: GDBM may have half of an update on disk. */
			if (op != LOCK_EX || db->rdonly) {
				lock_release(&db->lock);
				if (db->rdonly)
					return store_error(db, "%s: a writer died "
					    "mid-update; a writer must check the file",
					    db->path);
				op = LOCK_EX;
				continue;
			}
			if (after_dead_writer(db) == -1) {
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
		if (op == LOCK_EX)
			lock_set_writer(&db->lock, db->pid);
		return 0;
	}
}

void
store_end(struct sessdb *db, int wrote)
{
	if (wrote)
		db->seen_gen = lock_bump(&db->lock);
	if (db->lock.held == LOCK_EX)
		lock_set_writer(&db->lock, 0);
	lock_release(&db->lock);
}

int
store_gdbm_fail(struct sessdb *db, const char *what)
{
	gdbm_error e = gdbm_last_errno(db->dbf);
	int damaged = is_damage(e) || gdbm_needs_recovery(db->dbf);
	int sys = gdbm_check_syserr(e) ? gdbm_last_syserr(db->dbf) : 0;
	char why[256];

	if (sys != 0)
		store_error(db, "%s: %s: %s: %s", db->path, what, gdbm_strerror(e),
		    strerror(sys));
	else
		store_error(db, "%s: %s: %s", db->path, what, gdbm_strerror(e));
	store_log(db, SESSDB_LOG_ERR, "%s", db->err);
	if (sys == ENOSPC || sys == EDQUOT || sys == EIO || !damaged || db->rdonly) {
		/* Not (known) damage, or not ours to fix: drop the handle so
		 * the next call starts from the file as it is. */
		if (gdbm_needs_recovery(db->dbf)) {
			/* Leave the writer mark set when the failed call may
			 * have written part of an update: the next writer
			 * checks the file. */
			gdbm_close_nosync(db, db->dbf);
			db->dbf = NULL;
		} else if (db->lock.held == LOCK_EX) {
			lock_set_writer(&db->lock, 0);
		}
		lock_release(&db->lock);
		return -1;
	}
	if (db->lock.held != LOCK_EX) {
		lock_release(&db->lock);
		if (lock_acquire(&db->lock, LOCK_EX, db->opt.lock_timeout_ms) == -1)
			return -1;
		if (lock_generation(&db->lock) != db->seen_gen) {
			/* Someone else wrote (or repaired) meanwhile: look again. */
			lock_release(&db->lock);
			return -1;
		}
		lock_set_writer(&db->lock, db->pid);
	}
	snprintf(why, sizeof(why), "%s", gdbm_strerror(e));
	recover(db, why);
	lock_release(&db->lock);
	return -1;
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
	if (db->rdonly && access(path, F_OK) != 0) {
		snprintf(errbuf, errbuf_len, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (lock_open(&db->lock, db->lock_path, !db->rdonly, err, sizeof(err)) == -1) {
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
	free(cur.dptr);
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
	free(val.dptr);
	return SESSDB_MISS;
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
	if (gdbm_delete(db->dbf, k) != 0) {
		free(val->dptr);
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
		free(val.dptr);		/* NULL when absent */
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
		free(val.dptr);
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
	rc = gdbm_store(db->dbf, k, v, GDBM_INSERT);
	if (rc == 0) {
		lock_count(&db->lock, 1, k.dsize + v.dsize);
	} else if (rc == 1) {
		old = gdbm_fetch(db->dbf, k);
		free(old.dptr);
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
		if (v.dptr != NULL) {
			entries++;
			bytes += (uint64_t)k.dsize + (uint64_t)v.dsize;
			free(v.dptr);
		}
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
	struct stat st;

	if (db->rdonly)
		return store_error(db, "%s: opened read-only", db->path);
	if (store_begin(db, LOCK_EX) == -1)
		return -1;
	if (fstat(gdbm_fdesc(db->dbf), &st) == -1) {
		store_end(db, 0);
		return store_error(db, "%s: fstat: %s", db->path, strerror(errno));
	}
	if (gdbm_reorganize(db->dbf) != 0)
		return store_gdbm_fail(db, "reorganize");
	/* gdbm_reorganize writes a new file and renames it over ours; keep
	 * the owner and mode the servers rely on. */
	if (fchown(gdbm_fdesc(db->dbf), st.st_uid, st.st_gid) == -1 ||
	    fchmod(gdbm_fdesc(db->dbf), st.st_mode & 0600) == -1)
		store_log(db, SESSDB_LOG_WARNING, "%s: restoring owner/mode after "
		    "compaction: %s", db->path, strerror(errno));
	store_end(db, 1);	/* everyone else must reopen the new file */
	return 0;
}
