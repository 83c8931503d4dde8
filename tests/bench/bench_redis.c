/*
 * NAME
 *	bench_redis - store operations per second per process: a Redis store
 *	against a GDBM file, measured in one run
 *
 * SYNOPSIS
 *	bench_redis [--quick] [--url URL] [--dir DIR] [--procs N,N,...]
 *	    [--secs S] [--runs N] [--records N] [--payload BYTES]
 *
 * DESCRIPTION
 *	Two stores, used through the same public API: a GDBM file in DIR
 *	(default /dev/shm, a tmpfs, so that the file's figures are the best
 *	it can do) and a Redis store at URL.  Without --url it starts a
 *	redis-server of its own on a free loopback port (persistence off)
 *	and stops it at the end; a URL may carry ?prefix= (the default
 *	prefix here is "bench<pid>:"), and its password comes from
 *	SESSDB_REDIS_PASSWORD as for any other program.
 *
 *	Each store is filled with --records records (default 10,000) of
 *	--payload bytes (default 280, a TLS 1.3 session's DER), then for
 *	every process count of --procs (default 1,4), each process with its
 *	own handle runs each operation for --secs seconds (default 2):
 *	  get-hit      random existing key
 *	  get-miss     a key that is not there
 *	  put-new      a key that is not there yet (a new session)
 *	  take         the keys put-new made, one by one (GETDEL on Redis)
 *	  put-replace  random existing key, new contents
 *	  mixed        50% get-hit, 50% put-replace
 *	The stores alternate within a run, the order swapping between runs.
 *	Figures are operations per second per process (the mean of the
 *	processes), medians over --runs runs (default 3), and the ratio
 *	redis / gdbm.  Redis is one process on the same CPUs as the clients:
 *	with more client processes than CPUs the figures are for the whole
 *	machine.
 *
 *	--quick (or SESSDB_BENCH_QUICK=1): 1 run of 0.2 s phases on 1,000
 *	records with 1 and 2 processes; it checks only that results are
 *	sane (every get-hit and take hit, every get-miss missed, no errors),
 *	never a speed.
 *
 * EXIT STATUS
 *	0 if every sanity check passed, 1 otherwise, 2 on bad usage, 77
 *	(skipped) when no redis-server can be started or the library has no
 *	Redis backend (the reason is printed).
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define PROG		"bench_redis"
#define MAX_PROCS	64
#define MAX_RUNS	50
#define SKIP		77

enum op { GET_HIT, GET_MISS, PUT_NEW, TAKE, PUT_REPLACE, MIXED, NOPS };

static const char *op_names[NOPS] = {
	"get-hit", "get-miss", "put-new", "take", "put-replace", "mixed",
};

enum { S_FILE, S_REDIS, NSTORES };

static const char *store_names[NSTORES] = { "gdbm", "redis" };

/* What one process did in one phase (in a shared mapping). */
struct tally {
	uint64_t	ops;
	uint64_t	hits;
	uint64_t	misses;
	uint64_t	errors;
	uint64_t	put_new;	/* keys put-new made (take uses them) */
	double		secs;
	char		error[160];
};

static struct {
	int		quick;
	const char	*url;
	const char	*dir;
	int		procs[8];
	int		nprocs;
	double		secs;
	int		runs;
	uint64_t	records;
	size_t		payload;
} cfg = { .secs = 2, .runs = 3, .records = 10000, .payload = 280 };

static char stores[NSTORES][1100];	/* path, URL */
static pid_t redis_pid = -1;
static int failed;

/* results[store][procs index][op][run]: ops per second per process */
static double results[NSTORES][8][NOPS][MAX_RUNS];

/* make_id - the 32-byte identifier of record i (i < 2^56) in space s */
static void
make_id(uint64_t space, uint64_t i, unsigned char id[SESSDB_ID_MAX])
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL + space;

	memset(id, 0, SESSDB_ID_MAX);
	for (int k = 0; k < 8; k++) {
		id[k] = (unsigned char)(space >> (56 - 8 * k));
		id[8 + k] = (unsigned char)(i >> (56 - 8 * k));
		id[16 + k] = (unsigned char)(x >> (56 - 8 * k));
	}
	id[31] = 0x5a;
}

/* Key spaces: the filled records, misses, and each process's new keys. */
#define SPACE_FILL	1
#define SPACE_MISS	2
#define SPACE_NEW(run, p) (0x100 + (uint64_t)(run) * MAX_PROCS + (uint64_t)(p))

/* open_store - a handle on store s, or NULL after saying why */
static struct sessdb *
open_store(int s, struct tally *t)
{
	char err[512] = "";
	struct sessdb *db = sessdb_open(stores[s], NULL, err, sizeof err);

	if (db == NULL && t != NULL)
		snprintf(t->error, sizeof t->error, "open: %.150s", err);
	else if (db == NULL)
		fprintf(stderr, PROG ": %s: %s\n", store_names[s], err);
	return db;
}

/* one_op - one operation; counts it in t */
static void
one_op(struct sessdb *db, enum op op, uint64_t *rng, uint64_t space,
    struct tally *t, const unsigned char *payload, int64_t expires)
{
	unsigned char id[SESSDB_ID_MAX];
	void *data = NULL;
	size_t len;
	int rc;

	if (op == MIXED)
		op = tc_splitmix(rng) & 1 ? GET_HIT : PUT_REPLACE;
	switch (op) {
	case GET_HIT:
	case GET_MISS:
		make_id(op == GET_HIT ? SPACE_FILL : SPACE_MISS,
		    tc_splitmix(rng) % cfg.records, id);
		rc = sessdb_get(db, SESSDB_NS_SERVER, id, sizeof id, &data,
		    &len, NULL);
		break;
	case TAKE:
		if (t->ops >= t->put_new)
			return;		/* nothing left to take */
		make_id(space, t->ops, id);
		rc = sessdb_take(db, SESSDB_NS_SERVER, id, sizeof id, &data,
		    &len, NULL);
		break;
	case PUT_NEW:
		make_id(space, t->ops, id);
		rc = sessdb_put(db, SESSDB_NS_SERVER, id, sizeof id, payload,
		    cfg.payload, expires);
		break;
	default:
		make_id(SPACE_FILL, tc_splitmix(rng) % cfg.records, id);
		rc = sessdb_put(db, SESSDB_NS_SERVER, id, sizeof id, payload,
		    cfg.payload, expires);
		break;
	}
	sessdb_free(data);
	t->ops++;
	if (rc == SESSDB_OK)
		t->hits++;
	else if (rc == SESSDB_MISS)
		t->misses++;
	else if (t->errors++ == 0)
		snprintf(t->error, sizeof t->error, "%s: %s", op_names[op],
		    sessdb_error(db));
}

/* child - process p's phase: op on store s for cfg.secs */
static void
child(int s, enum op op, int run, int p, struct tally *t)
{
	unsigned char payload[4096];
	uint64_t rng = (uint64_t)run * 1000003u + (uint64_t)p * 7919u + op;
	struct sessdb *db = open_store(s, t);
	uint64_t space = SPACE_NEW(run, p), budget;
	double t0;

	if (db == NULL) {
		t->errors++;
		_exit(1);
	}
	tc_random_bytes(payload, cfg.payload, &rng);
	budget = op == TAKE ? t->put_new : UINT64_MAX;
	t0 = tc_mono_secs();
	for (;;) {
		one_op(db, op, &rng, space, t, payload,
		    sessdb_now(db) + 600);
		if (t->ops >= budget || ((t->ops & 31) == 0 &&
		    tc_mono_secs() - t0 >= cfg.secs))
			break;
	}
	t->secs = tc_mono_secs() - t0;
	if (op == PUT_NEW)
		t->put_new = t->ops;
	sessdb_close(db);
	_exit(0);
}

/* phase - run op on store s in n processes; record ops/s per process */
static void
phase(int s, enum op op, int run, int pi, struct tally *ts)
{
	int n = cfg.procs[pi];
	double sum = 0;
	uint64_t hits = 0, misses = 0, ops = 0, errors = 0;

	for (int p = 0; p < n; p++) {
		uint64_t keep = ts[p].put_new;

		memset(&ts[p], 0, sizeof ts[p]);
		ts[p].put_new = keep;
	}
	fflush(stdout);
	for (int p = 0; p < n; p++) {
		pid_t pid = fork();

		if (pid == -1)
			tc_die(PROG, "fork: %s", strerror(errno));
		if (pid == 0)
			child(s, op, run, p, &ts[p]);
	}
	for (int p = 0; p < n; p++) {
		int status;

		if (wait(&status) == -1 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			errors++;
	}
	for (int p = 0; p < n; p++) {
		sum += ts[p].secs > 0 ? (double)ts[p].ops / ts[p].secs : 0;
		ops += ts[p].ops;
		hits += ts[p].hits;
		misses += ts[p].misses;
		errors += ts[p].errors;
		if (ts[p].error[0] != '\0')
			fprintf(stderr, PROG ": %s %s: %s\n", store_names[s],
			    op_names[op], ts[p].error);
	}
	results[s][pi][op][run] = sum / n;
	/* sanity: what each operation must find */
	if (errors > 0 ||
	    (op == GET_HIT && hits != ops) || (op == GET_MISS && misses != ops) ||
	    (op == TAKE && hits != ops) || ops == 0) {
		fprintf(stderr, PROG ": %s %s, %d procs: %llu ops, %llu hits, "
		    "%llu misses, %llu errors: not sane\n", store_names[s],
		    op_names[op], n, (unsigned long long)ops,
		    (unsigned long long)hits, (unsigned long long)misses,
		    (unsigned long long)errors);
		failed = 1;
	}
}

/* fill - put the records every get-hit and put-replace may pick */
static int
fill(int s)
{
	unsigned char id[SESSDB_ID_MAX], payload[4096];
	uint64_t rng = 42;
	struct sessdb *db = open_store(s, NULL);

	if (db == NULL)
		return -1;
	tc_random_bytes(payload, cfg.payload, &rng);
	for (uint64_t i = 0; i < cfg.records; i++) {
		make_id(SPACE_FILL, i, id);
		if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof id, payload,
		    cfg.payload, sessdb_now(db) + 3600) != SESSDB_OK) {
			fprintf(stderr, PROG ": fill %s: %s\n", store_names[s],
			    sessdb_error(db));
			sessdb_close(db);
			return -1;
		}
	}
	sessdb_close(db);
	return 0;
}

/* free_port - a loopback TCP port the kernel just handed out */
static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* stop_redis - stop the redis-server we started */
static void
stop_redis(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGTERM);
		waitpid(redis_pid, NULL, 0);
		redis_pid = -1;
	}
}

/* start_redis - our own redis-server; sets stores[S_REDIS].  0, or -1
 * after saying why (no redis-server: the caller skips). */
static int
start_redis(const char *dir)
{
	char portbuf[16], logf[1100];
	struct sessdb *db;
	int port;

	for (int attempt = 0; attempt < 5; attempt++) {
		if ((port = free_port()) < 0)
			return -1;
		snprintf(portbuf, sizeof portbuf, "%d", port);
		snprintf(logf, sizeof logf, "%s/redis.log", dir);
		if ((redis_pid = fork()) == -1)
			return -1;
		if (redis_pid == 0) {
			execlp("redis-server", "redis-server", "--bind",
			    "127.0.0.1", "--port", portbuf, "--save", "",
			    "--appendonly", "no", "--dir", dir, "--logfile",
			    logf, (char *)NULL);
			_exit(127);
		}
		snprintf(stores[S_REDIS], sizeof stores[S_REDIS],
		    "redis://127.0.0.1:%d/0?prefix=bench%ld:&timeout_ms=1000",
		    port, (long)getpid());
		for (int i = 0; i < 100; i++) {
			int status;
			char err[512] = "";

			if (waitpid(redis_pid, &status, WNOHANG) == redis_pid) {
				redis_pid = -1;
				if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
					printf(PROG ": skipped: redis-server is "
					    "not installed\n");
					return -1;
				}
				break;		/* the port was taken: again */
			}
			db = sessdb_open(stores[S_REDIS], NULL, err, sizeof err);
			if (db != NULL) {
				struct sessdb_info info;
				int up = sessdb_info(db, &info) == 0;

				sessdb_close(db);
				if (up)
					return 0;
			} else if (strstr(err, "without Redis support")) {
				printf(PROG ": skipped: %s\n", err);
				stop_redis();
				return -1;
			}
			tc_sleep_ms(50);
		}
		if (redis_pid > 0) {
			kill(redis_pid, SIGTERM);
			waitpid(redis_pid, NULL, 0);
			redis_pid = -1;
		}
	}
	printf(PROG ": skipped: redis-server did not start (see %s)\n", logf);
	return -1;
}

/* remove_dir - remove our directory and the files in it (no subdirectories) */
static void
remove_dir(const char *dir)
{
	char path[2048];
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) == -1)
			fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
	}
	if (d != NULL)
		closedir(d);
	if (rmdir(dir) == -1)
		fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
}

/* report - medians, per process, and the ratio redis / gdbm */
static void
report(void)
{
	printf("\n== operations per second per process (median of %d run%s)\n",
	    cfg.runs, cfg.runs > 1 ? "s" : "");
	printf("%-12s %5s %12s %12s %8s\n", "op", "procs", "gdbm", "redis",
	    "ratio");
	for (int pi = 0; pi < cfg.nprocs; pi++) {
		for (int op = 0; op < NOPS; op++) {
			double f = tc_median(results[S_FILE][pi][op], cfg.runs);
			double r = tc_median(results[S_REDIS][pi][op], cfg.runs);

			printf("%-12s %5d %12.0f %12.0f %8.2f\n", op_names[op],
			    cfg.procs[pi], f, r, f > 0 ? r / f : 0);
		}
	}
}

/* parse_procs - "1,4" into cfg.procs */
static int
parse_procs(const char *s)
{
	char *end;

	cfg.nprocs = 0;
	for (;;) {
		long v = strtol(s, &end, 10);

		if (end == s || v < 1 || v > MAX_PROCS || cfg.nprocs == 8)
			return -1;
		cfg.procs[cfg.nprocs++] = (int)v;
		if (*end == '\0')
			return 0;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

/* parse_args - the command line into cfg; -1 on bad usage */
static int
parse_args(int argc, char **argv)
{
	const char *q = getenv("SESSDB_BENCH_QUICK");

	cfg.quick = q != NULL && *q != '\0' && strcmp(q, "0") != 0;
	cfg.procs[0] = 1;
	cfg.procs[1] = 4;
	cfg.nprocs = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			cfg.quick = 1;
			continue;
		}
		if (v == NULL)
			return -1;
		i++;
		if (strcmp(a, "--url") == 0)
			cfg.url = v;
		else if (strcmp(a, "--dir") == 0)
			cfg.dir = v;
		else if (strcmp(a, "--procs") == 0) {
			if (parse_procs(v) == -1)
				return -1;
		} else if (strcmp(a, "--secs") == 0)
			cfg.secs = atof(v);
		else if (strcmp(a, "--runs") == 0)
			cfg.runs = atoi(v);
		else if (strcmp(a, "--records") == 0)
			cfg.records = strtoull(v, NULL, 10);
		else if (strcmp(a, "--payload") == 0)
			cfg.payload = strtoul(v, NULL, 10);
		else
			return -1;
	}
	if (cfg.quick) {
		cfg.runs = 1;
		cfg.secs = 0.2;
		cfg.records = 1000;
		cfg.procs[0] = 1;
		cfg.procs[1] = 2;
		cfg.nprocs = 2;
	}
	if (cfg.secs <= 0 || cfg.runs < 1 || cfg.runs > MAX_RUNS ||
	    cfg.records < 1 || cfg.payload < 1 || cfg.payload > 4096)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	char dir[1024];
	struct tally *ts;

	if (parse_args(argc, argv) == -1) {
		fprintf(stderr, "usage: " PROG " [--quick] [--url URL] [--dir DIR] "
		    "[--procs N,N,...] [--secs S] [--runs N] [--records N] "
		    "[--payload BYTES]\n");
		return 2;
	}
	if (cfg.dir == NULL)
		cfg.dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof dir, "%s/bench_redis.XXXXXX", cfg.dir);
	if (mkdtemp(dir) == NULL)
		tc_die(PROG, "mkdtemp %s: %s", dir, strerror(errno));
	snprintf(stores[S_FILE], sizeof stores[S_FILE], "%s/bench.db", dir);
	if (cfg.url != NULL)
		snprintf(stores[S_REDIS], sizeof stores[S_REDIS], "%s", cfg.url);
	else if (start_redis(dir) == -1) {
		remove_dir(dir);
		return SKIP;
	}
	ts = mmap(NULL, sizeof *ts * MAX_PROCS, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ts == MAP_FAILED)
		tc_die(PROG, "mmap: %s", strerror(errno));
	printf(PROG ": %s mode, %d run(s) of %.1f s phases, %llu records of "
	    "%zu bytes; gdbm: %s; redis: %s\n", cfg.quick ? "quick" : "full",
	    cfg.runs, cfg.secs, (unsigned long long)cfg.records, cfg.payload,
	    stores[S_FILE], cfg.url ? "as given" : "own redis-server on loopback");
	if (fill(S_FILE) == -1 || fill(S_REDIS) == -1)
		failed = 1;
	for (int run = 0; run < cfg.runs && !failed; run++) {
		for (int pi = 0; pi < cfg.nprocs; pi++) {
			for (int k = 0; k < NSTORES; k++) {
				int s = (run + k) % NSTORES;

				memset(ts, 0, sizeof *ts * MAX_PROCS);
				for (int op = 0; op < NOPS; op++)
					phase(s, (enum op)op, run, pi, ts);
			}
		}
		printf("  run %d done\n", run + 1);
	}
	if (!failed)
		report();
	stop_redis();
	remove_dir(dir);
	printf(PROG ": %s\n", failed ? "FAILED (see above)" : "all sanity "
	    "checks passed");
	return failed ? 1 : 0;
}
