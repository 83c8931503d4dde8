/*
 * NAME
 *	lock.c - lock file, bounded flock waits, shared change counter
 *
 * DESCRIPTION
 *	flock(2) has no timeout, and a library may not play with signals, so a
 *	wait is a loop of LOCK_NB attempts: a short spin of sched_yield (locks
 *	are held for microseconds), then sleeps doubling from 20 us to 1 ms,
 *	until the deadline.  A holder that hangs therefore costs others at
 *	most timeout_ms per call, never the server.
 *
 *	The counters in the shared page are read and written with atomic
 *	builtins; writes happen under LOCK_EX, reads under either lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lock.h"

#define LOCK_FILE_SIZE	4096

int
safe_open(const char *path, int writable, int creat, int *created,
    char *err, size_t errlen)
{
	struct stat st;
	int flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK;
	int fd;

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
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
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
	/* O_NONBLOCK only guarded the open against FIFOs. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1) {
		snprintf(err, errlen, "%s: fcntl: %s", path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	errno = EINVAL;
	return -1;
}

/* page_init - give a new or foreign lock page its magic and zero counters. */
static int
page_init(struct lockfile *lf)
{
	struct lock_page *p = lf->page;

	if (memcmp(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic)) == 0)
		return 0;
	if (lock_acquire(lf, LOCK_EX, 5000) == -1)
		return -1;
	if (memcmp(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic)) != 0) {
		/* Start the counter at a value no old handle can have seen. */
		__atomic_store_n(&p->generation, (uint64_t)time(NULL) << 20,
		    __ATOMIC_RELAXED);
		p->entries = 0;
		p->bytes = 0;
		p->swept_at = 0;
		p->writer = 0;
		memcpy(p->magic, LOCK_PAGE_MAGIC, sizeof(p->magic));
	}
	lock_release(lf);
	return 0;
}

int
lock_open(struct lockfile *lf, const char *path, int writable,
    char *err, size_t errlen)
{
	struct stat st;
	int created;
	void *map;

	memset(lf, 0, sizeof(*lf));
	lf->fd = -1;
	lf->fd = safe_open(path, 1, 1, &created, err, errlen);
	if (lf->fd == -1 && !writable && errno == EACCES)
		lf->fd = safe_open(path, 0, 0, &created, err, errlen);
	if (lf->fd == -1)
		return -1;
	lf->writable = (fcntl(lf->fd, F_GETFL) & O_ACCMODE) == O_RDWR;
	if (fstat(lf->fd, &st) == -1)
		goto fail_errno;
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
	if (lf->writable && page_init(lf) == -1)
		goto fail_errno;
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

/* mono_ms - a monotonic clock in milliseconds, for lock deadlines. */
static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
lock_acquire(struct lockfile *lf, int op, unsigned timeout_ms)
{
	uint64_t deadline = 0;
	long sleep_ns = 20000;

	for (int attempt = 0;; attempt++) {
		if (flock(lf->fd, op | LOCK_NB) == 0) {
			lf->held = op;
			return 0;
		}
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (attempt == 0)
			deadline = mono_ms() + timeout_ms;
		else if (mono_ms() >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (attempt < 64) {
			sched_yield();
		} else {
			struct timespec ts = { 0, sleep_ns };

			nanosleep(&ts, NULL);
			if (sleep_ns < 1000000)
				sleep_ns *= 2;
		}
	}
}

void
lock_release(struct lockfile *lf)
{
	if (lf->held) {
		flock(lf->fd, LOCK_UN);
		lf->held = 0;
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
