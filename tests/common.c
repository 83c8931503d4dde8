/*
 * NAME
 *	common.c - code shared by the C tests and benchmarks of sessdb
 *
 * DESCRIPTION
 *	See common.h.  Nothing here needs CUnit: the runner is in
 *	common_cunit.c, so that the programs that are no CUnit tests (the
 *	fault driver, sessdump_fill, the benchmarks) do not load it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

char tc_dir[256];
int64_t tc_now;
int tc_log_calls;
char tc_last_log[512];
char tc_first_log[TC_LOG_KEEP][512];
int tc_check_failures;

/* tc_tmpdir_make - make the test directory under $TMPDIR. */
int
tc_tmpdir_make(const char *prog)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tc_dir, sizeof(tc_dir), "%s/%s.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp", prog);
	if (mkdtemp(tc_dir) == NULL) {
		fprintf(stderr, "%s: mkdtemp %s: %s\n", prog, tc_dir,
		    strerror(errno));
		tc_dir[0] = '\0';
		return -1;
	}
	return 0;
}

/* remove_tree - remove path and, if it is a directory, what is below it. */
static void
remove_tree(const char *path)
{
	char sub[1024];
	struct dirent *de;
	DIR *d;

	if (unlink(path) == 0 || errno == ENOENT)
		return;
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		remove_tree(sub);
	}
	closedir(d);
	if (rmdir(path) != 0)
		fprintf(stderr, "could not remove %s: %s\n", path, strerror(errno));
}

/* tc_tmpdir_remove - remove the test directory. */
void
tc_tmpdir_remove(void)
{
	if (tc_dir[0] == '\0')
		return;
	remove_tree(tc_dir);
	tc_dir[0] = '\0';
}

/* tc_fresh - an empty store path in the test directory. */
int
tc_fresh(char *path, size_t len, const char *name)
{
	char base[256], aside[1024];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(path, len, "%s/%s.db", tc_dir, name);
	snprintf(aside, sizeof(aside), "%s.lock", path);
	if ((unlink(path) != 0 && errno != ENOENT) ||
	    (unlink(aside) != 0 && errno != ENOENT))
		rc = -1;
	/* "<name>.db.corrupt-*" and the like: what the store moved aside */
	snprintf(base, sizeof(base), "%s.db.", name);
	if ((d = opendir(tc_dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, base, strlen(base)) != 0)
			continue;
		snprintf(aside, sizeof(aside), "%s/%s", tc_dir, de->d_name);
		remove_tree(aside);
	}
	closedir(d);
	tc_log_reset();
	return rc;
}

/* tc_open - open a store, saying why not. */
struct sessdb *
tc_open(const char *path, const struct sessdb_options *o)
{
	char err[512] = "";
	struct sessdb *db = sessdb_open(path, o, err, sizeof(err));

	if (db == NULL)
		printf("\n  open %s: %s\n", path, err);
	return db;
}

/* tc_clock - the fake clock. */
int64_t
tc_clock(void *arg)
{
	(void)arg;
	return tc_now != 0 ? tc_now : (int64_t)time(NULL);
}

/* tc_log - capture a log message. */
void
tc_log(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	if (tc_log_calls < TC_LOG_KEEP)
		snprintf(tc_first_log[tc_log_calls], sizeof(tc_first_log[0]),
		    "%s", msg);
	tc_log_calls++;
	snprintf(tc_last_log, sizeof(tc_last_log), "%s", msg);
}

/* tc_log_reset - forget the captured messages. */
void
tc_log_reset(void)
{
	tc_log_calls = 0;
	tc_last_log[0] = '\0';
	for (int i = 0; i < TC_LOG_KEEP; i++)
		tc_first_log[i][0] = '\0';
}

/* tc_log_seen - look for s in the captured messages. */
int
tc_log_seen(const char *s)
{
	for (int i = 0; i < TC_LOG_KEEP && i < tc_log_calls; i++)
		if (strstr(tc_first_log[i], s) != NULL)
			return 1;
	return strstr(tc_last_log, s) != NULL;
}

/* tc_splitmix - splitmix64: small, fast, and good enough for test data. */
uint64_t
tc_splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* tc_random_bytes - generator output, eight bytes a step, low byte first. */
void
tc_random_bytes(unsigned char *buf, size_t len, uint64_t *s)
{
	uint64_t r = 0;

	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			r = tc_splitmix(s);
		buf[i] = (unsigned char)(r >> (8 * (i % 8)));
	}
}

void
tc_payload_fill(unsigned char *buf, size_t len, unsigned char tag,
    unsigned key, uint32_t version, uint64_t *s)
{
	buf[0] = tag;
	buf[1] = (unsigned char)(key >> 8);
	buf[2] = (unsigned char)key;
	tc_put_be32(buf + 3, version);
	buf[7] = tag;
	tc_random_bytes(buf + 8, len - 8, s);
}

uint32_t
tc_payload_version(const unsigned char *data, size_t len, unsigned char tag,
    unsigned key, tc_payload_fn make, size_t max)
{
	unsigned char *want;
	uint32_t version;
	int same;

	if (len < 8 || data[0] != tag || data[7] != tag ||
	    (unsigned)(data[1] << 8 | data[2]) != key)
		return 0;
	version = tc_get_be32(data + 3);
	if (version == 0 || (want = malloc(max)) == NULL)
		return 0;
	same = make(want, key, version) == len && memcmp(want, data, len) == 0;
	free(want);
	return same ? version : 0;
}

/* tc_make_id - an ID a census can take apart again. */
size_t
tc_make_id(unsigned char *id, size_t len, unsigned tag, unsigned owner,
    unsigned key)
{
	id[0] = (unsigned char)tag;
	id[1] = (unsigned char)owner;
	id[2] = (unsigned char)(key >> 8);
	id[3] = (unsigned char)key;
	for (size_t i = 4; i < len; i++)
		id[i] = (unsigned char)(key * 31 + i * 17 + owner + tag);
	return len;
}

/* tc_id_key - the key bytes of an ID with the right tag. */
long
tc_id_key(const unsigned char *id, size_t len, unsigned tag)
{
	if (len < 4 || id[0] != tag)
		return -1;
	return (long)((unsigned)id[2] << 8 | id[3]);
}

/* tc_put_be32 - store v big-endian. */
void
tc_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* tc_get_be32 - read a big-endian 32-bit number. */
uint32_t
tc_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* tc_copy_file - copy a file byte for byte. */
int
tc_copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in = open(from, O_RDONLY | O_CLOEXEC), out, rc = 0;

	if (in == -1)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out == -1) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			rc = -1;
	if (n < 0)
		rc = -1;
	close(in);
	if (close(out) != 0)
		rc = -1;
	return rc;
}

/* tc_mono_ns - nanoseconds of the monotonic clock. */
uint64_t
tc_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* tc_mono_ms - milliseconds of the monotonic clock. */
double
tc_mono_ms(void)
{
	return (double)tc_mono_ns() / 1e6;
}

/* tc_mono_secs - seconds of the monotonic clock. */
double
tc_mono_secs(void)
{
	return (double)tc_mono_ns() / 1e9;
}

/* tc_sleep_ms - sleep, resuming after signals. */
void
tc_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		continue;
}

/* tc_under_valgrind - the valgrind setup sets SESSDB_UNDER_VALGRIND. */
int
tc_under_valgrind(void)
{
	return getenv("SESSDB_UNDER_VALGRIND") != NULL;
}

/* tc_wait_ok - reap a child and say how it ended if not well. */
int
tc_wait_ok(pid_t pid, const char *what)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		printf("\n  %s: waitpid: %s\n", what, strerror(errno));
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 1;
	if (WIFEXITED(status))
		printf("\n  %s (pid %d): got exit status %d, want 0\n", what,
		    (int)pid, WEXITSTATUS(status));
	else
		printf("\n  %s (pid %d): killed by signal %d\n", what, (int)pid,
		    WTERMSIG(status));
	return 0;
}

/* tc_hold_lock - a lock holder that hangs, in another process. */
pid_t
tc_hold_lock(const char *lock_path, int op)
{
	char c;
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int fd = open(lock_path, O_RDWR | O_CLOEXEC);

		close(p[0]);
		if (fd == -1 || flock(fd, op) != 0)
			_exit(1);
		if (write(p[1], "l", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (pid == -1 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		tc_release_lock(pid);
		return -1;
	}
	close(p[0]);
	return pid;
}

/* tc_release_lock - end the holder; its lock goes with it. */
void
tc_release_lock(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* tc_note - a failure seen in a child. */
void
tc_note(struct tc_notes *n, const char *fmt, ...)
{
	char msg[sizeof(n->first[0])];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n->failures < TC_NELEM(n->first))
		snprintf(n->first[n->failures], sizeof(n->first[0]), "%s", msg);
	if (n->failures < 20)
		printf("\n  [pid %d] %s\n", (int)getpid(), msg);
	n->failures++;
}

/* tc_check - a benchmark's sanity check. */
void
tc_check(const char *prog, int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return;
	tc_check_failures++;
	fprintf(stderr, "%s: SANITY FAILURE: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* tc_die - a benchmark cannot go on. */
void
tc_die(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* cmp_double - qsort order of doubles. */
static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* tc_median - sort a copy and take the middle. */
double
tc_median(const double *v, int n)
{
	double *tmp, m;

	if (n <= 0)
		return 0;
	if ((tmp = malloc((size_t)n * sizeof(*v))) == NULL)
		tc_die("tc_median", "out of memory");
	memcpy(tmp, v, (size_t)n * sizeof(*v));
	qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
	m = n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
	free(tmp);
	return m;
}
