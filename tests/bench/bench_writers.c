/*
 * NAME
 *	bench_writers - how the exclusive lock is shared: N processes that
 *	only write, each against what one process does alone
 *
 * SYNOPSIS
 *	bench_writers [--quick] [--dir DIR] [--procs N,N,...] [--secs S]
 *	    [--runs N] [--payload BYTES]
 *
 * DESCRIPTION
 *	For every count of --procs (default 1,2,4,8), that many processes,
 *	each with its own handle on one store in DIR (default /dev/shm),
 *	start together and put new keys for --secs seconds (default 2; each
 *	process cycles through 5,000 keys of its own, --payload bytes,
 *	default 280).  Per process it reports puts per second, the longest
 *	and the 99th-percentile time a put took (that is, waited for the
 *	lock, plus its own work), and the puts that failed (a lock timeout
 *	after lock_timeout_ms, 1 s, is the starvation this looks for).
 *	Per count: the smallest and largest process's share, min/max, and
 *	the total against one process alone.  Medians over --runs runs
 *	(default 3).  The writers are as many as the CPUs allow: with more
 *	processes than CPUs the kernel's scheduler shares the time too.
 *
 *	--quick (or SESSDB_BENCH_QUICK=1): one 0.3 s run of 1 and 2
 *	processes; it checks that every process stored something and no put
 *	failed, never a speed.
 *
 * EXIT STATUS
 *	0 if every check passed, 1 otherwise, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define PROG		"bench_writers"
#define MAX_PROCS	64
#define MAX_RUNS	15
#define KEYS		5000	/* keys per process, reused in turn */
#define PAYLOAD_MAX	4096
#define NBUCKETS	64	/* put times: log2 buckets of microseconds */

struct proc_result {
	uint64_t	puts;
	uint64_t	errors;
	double		max_ms;
	uint64_t	hist[NBUCKETS];
};

struct cfg {
	int		quick;
	const char	*dir;
	unsigned	procs[16];
	size_t		nprocs;
	double		secs;
	int		runs;
	size_t		payload;
};

/* bucket - log2 bucket of a time in microseconds. */
static int
bucket(double us)
{
	int b = 0;

	while (us >= 2 && b < NBUCKETS - 1) {
		us /= 2;
		b++;
	}
	return b;
}

/* p99_ms - an upper bound of the 99th percentile of one process's puts. */
static double
p99_ms(const struct proc_result *r)
{
	uint64_t n = 0, seen = 0;

	for (int b = 0; b < NBUCKETS; b++)
		n += r->hist[b];
	for (int b = 0; b < NBUCKETS; b++) {
		seen += r->hist[b];
		if (seen * 100 >= n * 99)
			return (double)(1ull << (b + 1)) / 1000.0;
	}
	return 0;
}

/* writer - one process: wait for the start, put until the end. */
static void
writer(const struct cfg *c, const char *path, unsigned me, double start,
    struct proc_result *r)
{
	struct sessdb_options o = { 0 };
	unsigned char id[SESSDB_ID_MAX], payload[PAYLOAD_MAX];
	struct sessdb *db = tc_open(path, &o);
	double end = start + c->secs;
	unsigned k = 0;

	if (db == NULL) {
		r->errors++;
		return;
	}
	memset(payload, 'a' + (int)(me % 26), c->payload);
	while (tc_mono_secs() < start)
		;
	for (double t0 = tc_mono_secs(); t0 < end; k = (k + 1) % KEYS) {
		size_t n = tc_make_id(id, sizeof(id), 'W', me, k);
		double t1, us;

		if (sessdb_put(db, SESSDB_NS_SERVER, id, n, payload, c->payload,
		    0) == 0)
			r->puts++;
		else
			r->errors++;
		t1 = tc_mono_secs();
		us = (t1 - t0) * 1e6;
		r->hist[bucket(us)]++;
		if (us / 1000 > r->max_ms)
			r->max_ms = us / 1000;
		t0 = t1;
	}
	sessdb_close(db);
}

/* one_run - n writers on a fresh store; results in r[0..n-1]. */
static int
one_run(const struct cfg *c, unsigned n, int run, struct proc_result *r)
{
	char path[512];
	pid_t pid[MAX_PROCS];
	double start;
	int ok = 1;

	snprintf(path, sizeof(path), "%s/%s-%d-%u-%d.db", c->dir, PROG,
	    (int)getpid(), n, run);
	memset(r, 0, n * sizeof(*r));
	start = tc_mono_secs() + 0.2 + 0.02 * n;
	fflush(stdout);
	for (unsigned i = 0; i < n; i++) {
		if ((pid[i] = fork()) == 0) {
			writer(c, path, i, start, &r[i]);
			_exit(0);
		}
		if (pid[i] == -1) {
			perror(PROG ": fork");
			ok = 0;
			n = i;
			break;
		}
	}
	for (unsigned i = 0; i < n; i++)
		ok &= tc_wait_ok(pid[i], "writer");
	unlink(path);
	strncat(path, ".lock", sizeof(path) - strlen(path) - 1);
	unlink(path);
	return ok;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* measure - every process count, --runs times; prints a table, checks. */
static int
measure(const struct cfg *c, struct proc_result *shared)
{
	double alone = 0;
	int ok = 1;

	printf("procs  puts/s total  vs alone  per process min / max  min/max  "
	    "p99 wait ms  max wait ms  failed puts\n");
	for (size_t i = 0; i < c->nprocs; i++) {
		unsigned n = c->procs[i];
		double tot[MAX_RUNS], mn[MAX_RUNS], mx[MAX_RUNS], p99[MAX_RUNS],
		    wmax = 0;
		uint64_t failed = 0;

		for (int run = 0; run < c->runs; run++) {
			ok &= one_run(c, n, run, shared);
			tot[run] = 0;
			mn[run] = 1e18;
			mx[run] = 0;
			p99[run] = 0;
			for (unsigned p = 0; p < n; p++) {
				double rate = (double)shared[p].puts / c->secs;

				tot[run] += rate;
				mn[run] = rate < mn[run] ? rate : mn[run];
				mx[run] = rate > mx[run] ? rate : mx[run];
				if (p99_ms(&shared[p]) > p99[run])
					p99[run] = p99_ms(&shared[p]);
				if (shared[p].max_ms > wmax)
					wmax = shared[p].max_ms;
				failed += shared[p].errors;
				if (shared[p].puts == 0) {
					printf("  %u processes, run %d: process %u "
					    "stored nothing\n", n, run + 1, p);
					ok = 0;
				}
			}
		}
		qsort(tot, (size_t)c->runs, sizeof(double), cmp_double);
		qsort(mn, (size_t)c->runs, sizeof(double), cmp_double);
		qsort(mx, (size_t)c->runs, sizeof(double), cmp_double);
		qsort(p99, (size_t)c->runs, sizeof(double), cmp_double);
		if (n == 1 || alone == 0)
			alone = tot[c->runs / 2];
		printf("%5u  %12.0f  %8.2f  %10.0f / %-10.0f  %7.2f  %11.2f  "
		    "%11.1f  %11llu\n", n, tot[c->runs / 2], tot[c->runs / 2] /
		    alone, mn[c->runs / 2], mx[c->runs / 2], mn[c->runs / 2] /
		    mx[c->runs / 2], p99[c->runs / 2], wmax,
		    (unsigned long long)failed);
		if (failed != 0)
			ok = 0;
		fflush(stdout);
	}
	return ok;
}

/* parse_list - "1,2,4" into v; 0 on success. */
static int
parse_list(const char *s, unsigned *v, size_t cap, size_t *n)
{
	char *end;

	for (*n = 0; *s != '\0' && *n < cap; s = *end == ',' ? end + 1 : end) {
		unsigned long x = strtoul(s, &end, 10);

		if (end == s || x == 0 || x > MAX_PROCS || (*end != ',' && *end))
			return -1;
		v[(*n)++] = (unsigned)x;
	}
	return *n > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	struct cfg c = { 0, "/dev/shm", { 1, 2, 4, 8 }, 4, 2.0, 3, 280 };
	const char *q = getenv("SESSDB_BENCH_QUICK");
	struct proc_result *shared;
	int ok;

	c.quick = q != NULL && *q != '\0' && strcmp(q, "0") != 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0)
			c.quick = 1;
		else if (strcmp(a, "--dir") == 0 && v != NULL)
			c.dir = argv[++i];
		else if (strcmp(a, "--procs") == 0 && v != NULL &&
		    parse_list(argv[++i], c.procs, 16, &c.nprocs) == 0)
			;
		else if (strcmp(a, "--secs") == 0 && v != NULL && atof(v) > 0)
			c.secs = atof(argv[++i]);
		else if (strcmp(a, "--runs") == 0 && v != NULL &&
		    atoi(v) > 0 && atoi(v) <= MAX_RUNS)
			c.runs = atoi(argv[++i]);
		else if (strcmp(a, "--payload") == 0 && v != NULL &&
		    atoi(v) > 0 && atoi(v) <= PAYLOAD_MAX)
			c.payload = (size_t)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: " PROG " [--quick] [--dir DIR] "
			    "[--procs N,N,...] [--secs S] [--runs N] "
			    "[--payload BYTES]\n");
			return 2;
		}
	}
	if (c.quick) {
		c.procs[0] = 1;
		c.procs[1] = 2;
		c.nprocs = 2;
		c.secs = 0.3;
		c.runs = 1;
	}
	shared = mmap(NULL, MAX_PROCS * sizeof(*shared), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror(PROG ": mmap");
		return 1;
	}
	printf("%s: %s, %s, %.1f s per run, %d run(s), %zu-byte payloads\n",
	    PROG, c.quick ? "quick" : "full", c.dir, c.secs, c.runs, c.payload);
	ok = measure(&c, shared);
	printf("%s\n", ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}
