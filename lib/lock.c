/*
 * NAME
 *	lock.c - lock file, bounded flock waits, shared change counter
 *
 * DESCRIPTION
 *	flock(2) has no timeout, and a library may not play with signals, so a
 *	wait is a loop of LOCK_NB attempts: a short spin of sched_yield (locks
 *	are held for microseconds), then sleeps on the unlock futex in the
 *	shared page until an unlock or the deadline.  A holder that hangs
 *	therefore costs others at most timeout_ms per call, never the server.
 *	Without a writable page (a read-only lock file) the sleeps are plain
 *	nanosleeps doubling from 20 us to 1 ms.
 *
 *	The counters in the shared page are read and written with atomic
 *	builtins; writes happen under LOCK_EX, reads under either lock.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "diag.h"
#include "lock.h"

#define LOCK_FILE_SIZE	LOCK_PAGE_SIZE

int
safe_open(const char *path, int writable, int creat, int *created,
    struct stat *stp, char *err, size_t errlen)
{
	struct stat st;
	int flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK;
	int fd, why = EIO;

	*created = 0;
	fd = open(path, flags);
	if (fd == -1 && errno == ENOENT && creat) {
		fd = open(path, flags | O_CREAT | O_EXCL, 0600);
		if (fd != -1)
			*created = 1;
		else if (errno == EEXIST)	/* another process won the race */
			fd = open(path, flags);
	}
	if (fd == -1) {
		int e = errno;
		struct stat lst;

		if (e == ELOOP || (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)))
			snprintf(err, errlen, "%s: refusing a symbolic link", path);
		else if (e == EISDIR)
			snprintf(err, errlen, "%s: is a directory, not a database file", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		why = errno;
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	why = ENOTSTORE;	/* not a file a store can be */
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: is a directory, not a database file", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	why = EACCES;		/* a file others could have written */
	if (st.st_uid != geteuid() && geteuid() != 0) {
		snprintf(err, errlen, "%s: owned by uid %u, not by us (uid %u)",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: group or world writable (mode %03o)",
		    path, (unsigned)(st.st_mode & 0777));
		goto fail;
	}
	/* O_NONBLOCK guarded the open against FIFOs; on the regular file it
	 * is now it changes nothing (reads, writes and flock ignore it). */
	if (stp != NULL)
		*stp = st;
	return fd;
fail:
	close(fd);
	errno = why;
	return -1;
}

/* page_init - give a new or foreign lock page its magic and zero counters.
 * The store the page stands beside may already hold records (the lock
 * file was removed), so the counters are marked for a recount. */
static int
page_init(struct lockfile *lf, unsigned timeout_ms)
{
	struct lock_page *p = lf->page;

	if (memcmp(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic)) == 0)
		return 0;
	if (lock_acquire(lf, LOCK_EX, timeout_ms) == -1)
		return -1;
	if (memcmp(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic)) != 0) {
		/* Every field to "none", whatever the page held (the futex
		 * word aside: nobody sleeps on a page without a magic, but it
		 * need not go back either).  The counter starts at a value
		 * no old handle can have seen; the counts of a store that
		 * may already hold records are recounted. */
		uint32_t seq = p->unlock_seq;

		memset(p, 0, sizeof(*p));
		p->unlock_seq = seq;
		__atomic_store_n(&p->generation, (uint64_t)time(NULL) << 20,
		    __ATOMIC_RELAXED);
		p->counts_unknown = 1;
		memcpy(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic));
	}
	lock_release(lf);
	return 0;
}

int
lock_open(struct lockfile *lf, const char *path, int writable,
    unsigned timeout_ms, char *err, size_t errlen)
{
	struct stat st;
	int created;
	void *map;

	memset(lf, 0, sizeof(*lf));
	lf->fd = -1;
	lf->fd = safe_open(path, 1, 1, &created, NULL, err, errlen);
	if (lf->fd == -1 && !writable && errno == EACCES)
		lf->fd = safe_open(path, 0, 0, &created, NULL, err, errlen);
	if (lf->fd == -1)
		return -1;
	lf->writable = (fcntl(lf->fd, F_GETFL) & O_ACCMODE) == O_RDWR;
	if (fstat(lf->fd, &st) == -1)
		goto fail_errno;
	lf->dev = (uint64_t)st.st_dev;
	lf->ino = (uint64_t)st.st_ino;
	if (st.st_size < LOCK_FILE_SIZE) {
		if (!lf->writable) {
			snprintf(err, errlen, "%s: lock file too short and not writable", path);
			goto fail;
		}
		if (ftruncate(lf->fd, LOCK_FILE_SIZE) == -1)
			goto fail_errno;
	}
	map = mmap(NULL, LOCK_FILE_SIZE, lf->writable ? PROT_READ | PROT_WRITE :
	    PROT_READ, MAP_SHARED, lf->fd, 0);
	if (map == MAP_FAILED)
		goto fail_errno;
	lf->page = map;
	if (lf->writable && page_init(lf, timeout_ms) == -1)
		goto fail_errno;
	/* The file the path names is, by definition, not retired. */
	if (lf->writable && lf->page->retired)
		__atomic_store_n(&lf->page->retired, 0, __ATOMIC_RELEASE);
	if (memcmp(lf->page->magic, LOCK_PAGE_MAGIC, sizeof(lf->page->magic)) != 0) {
		snprintf(err, errlen, "%s: not a sessdb lock file", path);
		goto fail;
	}
	return 0;
fail_errno:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
fail:
	lock_close(lf);
	return -1;
}

int
lock_replaced(struct lockfile *lf, const char *path)
{
	struct stat st;

	if (lock_retired(lf))
		return 1;
	if (stat(path, &st) == 0) {
		if ((uint64_t)st.st_dev == lf->dev && (uint64_t)st.st_ino == lf->ino)
			return 0;
	} else if (errno != ENOENT) {
		return 0;	/* cannot tell (EIO, EACCES): keep this one */
	}
	/* Tell every process still using this file, at the price of a
	 * memory read on each of their calls. */
	if (lf->page != NULL && lf->writable)
		__atomic_store_n(&lf->page->retired, 1, __ATOMIC_RELEASE);
	return 1;
}

int
lock_retired(const struct lockfile *lf)
{
	return lf->page != NULL &&
	    __atomic_load_n(&lf->page->retired, __ATOMIC_ACQUIRE) != 0;
}

void
lock_close(struct lockfile *lf)
{
	if (lf->page != NULL)
		munmap(lf->page, LOCK_FILE_SIZE);
	if (lf->fd >= 0)
		close(lf->fd);	/* drops any flock this description held */
	memset(lf, 0, sizeof(*lf));
	lf->fd = -1;
}

/* futex_wait - sleep while *word == val, at most ms milliseconds. */
static void
futex_wait(uint32_t *word, uint32_t val, uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
}

/* wait_unlock - sleep until some process unlocks, or ms pass. */
static void
wait_unlock(struct lockfile *lf, uint32_t seq, uint64_t ms, long *sleep_ns)
{
	if (lf->page != NULL && lf->writable) {
		__atomic_add_fetch(&lf->page->waiters, 1, __ATOMIC_SEQ_CST);
		futex_wait(&lf->page->unlock_seq, seq, ms);
		__atomic_sub_fetch(&lf->page->waiters, 1, __ATOMIC_SEQ_CST);
		return;
	}
	struct timespec ts = { 0, *sleep_ns };

	nanosleep(&ts, NULL);
	if (*sleep_ns < 1000000)
		*sleep_ns *= 2;
}

int
lock_acquire(struct lockfile *lf, int op, unsigned timeout_ms)
{
	uint64_t deadline = 0, now;
	long sleep_ns = 20000;

	for (int attempt = 0;; attempt++) {
		/* Read the unlock count before trying: an unlock after a
		 * failed try then changes it, and the futex wait returns. */
		uint32_t seq = lf->page != NULL ?
		    __atomic_load_n(&lf->page->unlock_seq, __ATOMIC_SEQ_CST) : 0;

		if (flock(lf->fd, op | LOCK_NB) == 0) {
			lf->held = op;
			return 0;
		}
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		now = mono_ms();
		if (attempt == 0)
			deadline = now + timeout_ms;
		else if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (attempt < 2)
			sched_yield();	/* locks are held for microseconds */
		else
			wait_unlock(lf, seq, deadline - now, &sleep_ns);
	}
}

void
lock_release(struct lockfile *lf)
{
	if (!lf->held)
		return;
	flock(lf->fd, LOCK_UN);
	lf->held = 0;
	if (lf->page == NULL || !lf->writable)
		return;
	__atomic_add_fetch(&lf->page->unlock_seq, 1, __ATOMIC_SEQ_CST);
	/* A waiter killed while asleep leaves the count high: that costs
	 * only needless wake-ups. */
	if (__atomic_load_n(&lf->page->waiters, __ATOMIC_SEQ_CST) != 0) {
		syscall(SYS_futex, &lf->page->unlock_seq, FUTEX_WAKE, INT_MAX,
		    NULL, NULL, 0);
		/* Let a woken waiter take the lock before our next call does:
		 * without this a busy process keeps re-taking it and starves
		 * the others (flock hands over in no order). */
		sched_yield();
	}
}

uint64_t
lock_generation(const struct lockfile *lf)
{
	if (lf->page == NULL)
		return 0;
	return __atomic_load_n(&lf->page->generation, __ATOMIC_ACQUIRE);
}

uint64_t
lock_bump(struct lockfile *lf)
{
	if (lf->page == NULL || !lf->writable)
		return 0;
	return __atomic_add_fetch(&lf->page->generation, 1, __ATOMIC_RELEASE);
}

int32_t
lock_writer(const struct lockfile *lf)
{
	if (lf->page == NULL)
		return 0;
	return __atomic_load_n(&lf->page->writer, __ATOMIC_ACQUIRE);
}

void
lock_set_writer(struct lockfile *lf, int32_t pid)
{
	if (lf->page == NULL || !lf->writable)
		return;
	__atomic_store_n(&lf->page->writer, pid, __ATOMIC_RELEASE);
}

/* add_saturating - counter += delta, never below zero. */
static void
add_saturating(uint64_t *counter, int64_t delta)
{
	uint64_t v = __atomic_load_n(counter, __ATOMIC_RELAXED);

	if (delta < 0 && (uint64_t)-delta > v)
		v = 0;
	else
		v += (uint64_t)delta;
	__atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

void
lock_count(struct lockfile *lf, int64_t entries, int64_t bytes)
{
	if (lf->page == NULL || !lf->writable)
		return;
	add_saturating(&lf->page->entries, entries);
	add_saturating(&lf->page->bytes, bytes);
}

void
lock_set_counts(struct lockfile *lf, uint64_t entries, uint64_t bytes)
{
	if (lf->page == NULL || !lf->writable)
		return;
	__atomic_store_n(&lf->page->entries, entries, __ATOMIC_RELAXED);
	__atomic_store_n(&lf->page->bytes, bytes, __ATOMIC_RELAXED);
}
