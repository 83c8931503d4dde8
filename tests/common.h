/*
 * NAME
 *	common.h - code shared by the C tests and benchmarks of sessdb
 *
 * SYNOPSIS
 *	#include "common.h"
 *
 * DESCRIPTION
 *	One home for what every test program needs: a temporary directory
 *	made at start and removed when all passed, store paths in it, a fake
 *	clock and a log capture to give sessdb_open, a splitmix64 generator,
 *	file copy, monotonic time, child reaping, sanity checks for the
 *	benchmarks, and the CUnit runner: tables of named cases, grouped in
 *	suites, registered and run by tc_run(), which returns non-zero when
 *	any assertion failed.
 *
 *	Nothing here touches the library's internals: only sessdb.h.
 */
#ifndef SESSDB_TESTS_COMMON_H
#define SESSDB_TESTS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sessdb.h"

/* ---- temporary directory ---- */

/* The test directory ("" until tc_tmpdir_make). */
extern char tc_dir[256];

/* tc_tmpdir_make - make $TMPDIR/prog.XXXXXX (default /tmp) as tc_dir;
 * 0 or -1 (reported on stderr). */
int tc_tmpdir_make(const char *prog);

/* tc_tmpdir_remove - remove tc_dir and everything below it. */
void tc_tmpdir_remove(void);

/* tc_fresh - set path to "<tc_dir>/<name>.db", remove that store, its
 * lock file and the files moved aside from it, and reset the log
 * capture.  0 or -1. */
int tc_fresh(char *path, size_t len, const char *name);

/* tc_open - sessdb_open that prints why it failed. */
struct sessdb *tc_open(const char *path, const struct sessdb_options *o);

/* ---- fake clock and log capture ---- */

/* The time tc_clock returns; 0 means the real time. */
extern int64_t tc_now;

/* tc_clock - a sessdb_options.clock: tc_now, or time(NULL) if 0. */
int64_t tc_clock(void *arg);

#define TC_LOG_KEEP	8	/* first messages kept by tc_log */

/* What tc_log saw since tc_log_reset. */
extern int tc_log_calls;
extern char tc_last_log[512];
extern char tc_first_log[TC_LOG_KEEP][512];

/* tc_log - a sessdb_options.log that keeps messages instead of printing. */
void tc_log(void *arg, int level, const char *msg);

/* tc_log_reset - forget the messages seen. */
void tc_log_reset(void);

/* tc_log_seen - 1 if a kept message (first ones or last) contains s. */
int tc_log_seen(const char *s);

/* ---- random numbers, files, time, processes ---- */

/* tc_splitmix - one step of the splitmix64 generator. */
uint64_t tc_splitmix(uint64_t *s);

/* tc_random_bytes - fill buf with len bytes from the generator at s. */
void tc_random_bytes(unsigned char *buf, size_t len, uint64_t *s);

/* tc_payload_fill - a payload that says whose it is: tag, key (16 bits,
 * big-endian), version (32 bits, big-endian), tag, then len - 8 bytes
 * from the generator at s (len >= 8). */
void tc_payload_fill(unsigned char *buf, size_t len, unsigned char tag,
    unsigned key, uint32_t version, uint64_t *s);

/* tc_payload_version - the version data names if data is exactly what
 * make writes for (key, version) (make fills at most max bytes and
 * returns the length), or 0 if it is anything else. */
typedef size_t (*tc_payload_fn)(unsigned char *buf, unsigned key,
    uint32_t version);
uint32_t tc_payload_version(const unsigned char *data, size_t len,
    unsigned char tag, unsigned key, tc_payload_fn make, size_t max);

/* tc_make_id - a session ID that says whose it is: tag, owner, key (16
 * bits, big-endian), then filler bytes derived from them; len bytes
 * (4..SESSDB_ID_MAX).  Returns len. */
size_t tc_make_id(unsigned char *id, size_t len, unsigned tag, unsigned owner,
    unsigned key);

/* tc_id_key - the key of an ID tc_make_id made with tag, or -1. */
long tc_id_key(const unsigned char *id, size_t len, unsigned tag);

/* tc_put_be32, tc_get_be32 - a 32-bit number at p, big-endian (the
 * self-describing payloads of the tests carry their version so). */
void tc_put_be32(unsigned char *p, uint32_t v);
uint32_t tc_get_be32(const unsigned char *p);

/* tc_copy_file - copy from to to (created 0600, truncated); 0 or -1. */
int tc_copy_file(const char *from, const char *to);

/* tc_mono_ns, tc_mono_ms, tc_mono_secs - the monotonic clock. */
uint64_t tc_mono_ns(void);
double tc_mono_ms(void);
double tc_mono_secs(void);

/* tc_sleep_ms - sleep ms milliseconds. */
void tc_sleep_ms(unsigned ms);

/* tc_under_valgrind - 1 when the valgrind test setup runs us. */
int tc_under_valgrind(void);

/* tc_wait_ok - reap pid; 1 if it exited 0, else 0 with the reason printed. */
int tc_wait_ok(pid_t pid, const char *what);

/* tc_hold_lock - fork a child that takes flock(op) on lock_path and
 * sleeps until killed; its pid once the lock is held, or -1. */
pid_t tc_hold_lock(const char *lock_path, int op);

/* tc_release_lock - kill and reap a tc_hold_lock child. */
void tc_release_lock(pid_t pid);

/* Failures a child process saw, kept (in shared memory) for its parent. */
struct tc_notes {
	unsigned	failures;
	char		first[4][300];	/* the first messages */
};

/* tc_note - count a child's failure, keep its message, print the first
 * twenty with the child's pid. */
void tc_note(struct tc_notes *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- benchmarks: sanity checks and fatal errors ---- */

/* Failed tc_check calls; a benchmark exits non-zero if any. */
extern int tc_check_failures;

/* tc_check - count and report a failed sanity check (prefixed by prog). */
void tc_check(const char *prog, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tc_die - print "prog: message" and exit 1. */
void tc_die(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* tc_median - the median of n values (0 if n is 0); v is not changed. */
double tc_median(const double *v, int n);

/* ---- the CUnit runner ---- */

/* One named test case. */
struct tc_case {
	const char	*name;
	void		(*fn)(void);
};

/* A suite: its cases, and what runs before and after them (may be NULL). */
struct tc_suite {
	const char		*name;
	const struct tc_case	*cases;
	size_t			ncases;
	int			(*init)(void);
	int			(*clean)(void);
};

#define TC_NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* TC_SUITE - a struct tc_suite initializer over an array of cases. */
#define TC_SUITE(name, cases, init, clean) \
	{ (name), (cases), TC_NELEM(cases), (init), (clean) }

/* tc_run - register and run the suites (verbose), then remove tc_dir if
 * everything passed (it is kept for a post-mortem otherwise).  Returns
 * the exit status: 0 if every assertion and case passed, 1 if not, 2 if
 * CUnit itself failed. */
int tc_run(const struct tc_suite *suites, size_t nsuites);

/* tc_current_suite - the name of the suite being run (for an init
 * function shared by several suites), or "". */
const char *tc_current_suite(void);

#endif /* SESSDB_TESTS_COMMON_H */
