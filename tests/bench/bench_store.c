/*
 * NAME
 *	bench_store - store micro-benchmark: sessdb against open-and-close
 *	per operation (the mod_ssl "dbm:" strategy), measured in one run
 *
 * SYNOPSIS
 *	bench_store [--quick] [--runs N] [--secs S] [--sizes N,N,...]
 *	    [--dir DIR]... [--payload BYTES] [--sweep-records N]
 *	    [--size-records N] [--no-matrix] [--no-sweep]
 *	    [--ops OP,...] [--sessdb-only] [--count N] [--no-latency]
 *	    [--latency-records N] [--latency-secs S] [--writer-rate N]
 *	    [--max-entries N] [--key FILE]
 *
 * DESCRIPTION
 *	For every directory (default: /dev/shm, a tmpfs, and /var/tmp, a disk
 *	filesystem) and every database size (default 1k, 10k, 100k, 1M
 *	records) it fills two files with the same records: one used through
 *	the sessdb API (one long-lived handle per process), one used the way
 *	mod_ssl does, the "baseline": flock on a lock file, gdbm_open, one
 *	GDBM call, gdbm_close (which fsyncs a writer), unlock, for every
 *	operation.  The baseline stores exactly the same record bytes
 *	(rec_encode) and decodes them on lookup (rec_decode, with its CRC),
 *	so the two differ only in how the file is opened and locked.
 *
 *	Operations, each run for --secs seconds (baseline and sessdb
 *	interleaved, the order alternating between runs):
 *	  get-hit      random existing key
 *	  get-miss     key that is not there
 *	  put-new      a key that is not there yet (a new session)
 *	  take         get + delete under one exclusive lock (keys of put-new)
 *	  delete       existing keys (inserted untimed just before)
 *	  put-replace  random existing key, new contents
 *	  mixed        50% get-hit, 50% put-replace
 *	  get-reopen   get-hit right after a put through a second handle on
 *	               the same file, so every get finds its GDBM state
 *	               stale and reopens: what a worker pays when others
 *	               write between its lookups (only the get is timed,
 *	               wall clock; the baseline does the same sequence)
 *	and with two processes on one file (each opens its own handle):
 *	  2p-rw        one process get-hit, the other put-replace
 *	  2p-mixed     both mixed 50/50
 *	Payloads are --payload (default 280) pseudo-random bytes, the size of
 *	a DER TLS 1.3 session with an ECDSA P-256 certificate and no client
 *	certificate (bench_handshake prints the real sizes).
 *
 *	Then, per directory: the file size for --size-records (default
 *	100,000) records, and a sweep of --sweep-records (default 1,000,000)
 *	records of which half are expired, while another process does gets
 *	and records its longest wait (also measured for as long before the
 *	sweep, for the noise floor).
 *
 *	Then, per directory, the latency of sessdb_get under load: one
 *	process times every get of a random live key (clock_gettime around
 *	the call, into a preallocated array) and prints p50, p99, p99.9 and
 *	the longest, with nobody else; with another process putting (keys
 *	among the same records) at full speed, or paced to --writer-rate
 *	(default 2,000) puts/s, each for --latency-secs (default 2) seconds,
 *	on --latency-records (default 10,000) records; while another
 *	process sweeps --sweep-records records of which half are expired;
 *	and while it compacts what that sweep left.  The stores are opened
 *	without max_entries, so the index of live records has its default
 *	size (16,384 slots: the writer loads' records fit, the sweep's
 *	do not).
 *
 *	--ops runs only the named operations ("2p" for both two-process
 *	cases, "latency" for the latency loads; take and delete use the
 *	keys put-new made, so name put-new with them), --sessdb-only skips
 *	the baseline: for profiling.  --count N makes every phase of the
 *	matrix exactly N operations instead of --secs seconds, so that
 *	`strace -c -f` counts system calls per operation reproducibly (the
 *	difference between two counts, divided by their difference).
 *	--max-entries N opens the matrix's sessdb stores with that cap,
 *	which also sizes the index (N * 1.25 slots, up to 1M; without it,
 *	16,384 slots: at 100k or 1M records most gets are not in the index).
 *	--key FILE seals the matrix's sessdb records with that key file
 *	(sessdb_options.key_file), to measure what sealing costs.
 *
 *	Every figure is the median over --runs runs (default 5).  Ratios are
 *	sessdb / baseline (higher is better for sessdb).
 *
 *	--quick (or SESSDB_BENCH_QUICK=1): 1 run, short phases, 1,000
 *	records, a 20,000-record sweep, a 10,000-record size check, 0.1 s
 *	latency loads on 1,000 records: a smoke test of a few seconds.  It checks only that results are sane (every
 *	get-hit hit, every get-miss missed, the sweep removed exactly the
 *	expired half, every timed get of a live key hit, no errors), never
 *	a time.
 *
 * EXIT STATUS
 *	0 if every sanity check passed, 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gdbm.h>

#include "record.h"
#include "common.h"
#include "sessdb.h"

#define PROG		"bench_store"
#define MAX_RUNS	32
#define MAX_DIRS	4
#define MAX_SIZES	8
#define MISS_BASE	(UINT64_C(1) << 40)	/* key indexes never stored */
#define FRESH_BASE	(UINT64_C(1) << 32)	/* keys of put-new and delete */
#define TTL		3600

/* ---- options ---- */

static int quick;
static int runs = 5;
static double phase_secs = 0.5;
static double phase2_secs = 1.0;
static size_t sizes[MAX_SIZES] = { 1000, 10000, 100000, 1000000 };
static int nsizes = 4;
static const char *dirs[MAX_DIRS];
static int ndirs;
static size_t payload_len = 280;
static size_t sweep_records = 1000000;
static size_t size_records = 100000;
static int do_matrix = 1, do_sweep = 1;
static const char *only_ops;	/* --ops: comma-separated operation names */
static int sessdb_only;		/* --sessdb-only: skip the baseline (profiling) */
static uint64_t op_count;	/* --count: operations per phase, not a time */
static uint64_t max_entries;	/* --max-entries: the matrix's sessdb cap */
static const char *key_file;	/* --key: the matrix's records are sealed */

/* ---- small helpers ---- */

static double
cpu_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* make_id - the 32-byte session ID of record number i (looks random). */
static void
make_id(uint64_t i, unsigned char id[SESSDB_ID_MAX])
{
	uint64_t s = i * 0x632be59bd9b4e019u + 17;

	for (int k = 0; k < SESSDB_ID_MAX; k += 8) {
		uint64_t v = tc_splitmix(&s);
		memcpy(id + k, &v, 8);
	}
}

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	return tc_splitmix(&rng_state);
}

static const char *
fs_name(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) == -1)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0x01021994: return "tmpfs";
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x794c7630: return "overlay";
	default: return "other";
	}
}

/* ---- the two targets: sessdb and the open-per-operation baseline ---- */

enum kind { SESSDB = 0, BASE = 1 };
static const char *kind_name[] = { "sessdb", "baseline" };

struct target {
	enum kind	kind;
	char		path[PATH_MAX];
	char		lock_path[PATH_MAX + 8];
	struct sessdb	*db;		/* SESSDB */
	struct target	*peer;		/* get-reopen: writes between the gets */
	int		lock_fd;	/* BASE */
};

static unsigned char *payload;	/* payload_len pseudo-random bytes */
static int64_t expires_at;	/* expiry of everything put (now + TTL) */

static void
target_open(struct target *t)
{
	struct sessdb_options o;
	char err[512];

	if (t->kind == SESSDB) {
		/* a cap also sizes the index of live records */
		memset(&o, 0, sizeof(o));
		o.max_entries = max_entries;
		o.key_file = key_file;
		t->db = sessdb_open(t->path, &o, err, sizeof(err));
		if (t->db == NULL)
			tc_die(PROG, "%s", err);
		return;
	}
	t->lock_fd = open(t->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (t->lock_fd == -1)
		tc_die(PROG, "%s: %s", t->lock_path, strerror(errno));
}

static void
target_close(struct target *t)
{
	if (t->kind == SESSDB) {
		sessdb_close(t->db);
		t->db = NULL;
	} else if (t->lock_fd >= 0) {
		close(t->lock_fd);
		t->lock_fd = -1;
	}
}

/* encode - the record bytes for key index i (into buf, REC_HEADER_LEN +
 * payload_len); also returns the GDBM key. */
static size_t
encode(uint64_t i, unsigned char *buf, unsigned char key[REC_KEY_MAX],
    size_t *key_len, int64_t expires)
{
	unsigned char id[SESSDB_ID_MAX];
	struct rec r;

	make_id(i, id);
	*key_len = rec_key_make(key, SESSDB_NS_SERVER, id, sizeof(id));
	r.flags = 0;
	r.created = expires - TTL;
	r.expires = expires;
	r.payload = payload;
	r.payload_len = payload_len;
	rec_encode(buf, key, *key_len, &r);
	return REC_HEADER_LEN + payload_len;
}

/* base_open_flags - open for the baseline under the flock. */
static GDBM_FILE
base_open_flags(struct target *t, int write, int extra)
{
	GDBM_FILE dbf;

	if (flock(t->lock_fd, write ? LOCK_EX : LOCK_SH) == -1)
		return NULL;
	dbf = gdbm_open(t->path, 0, (write ? GDBM_WRCREAT : GDBM_READER) |
	    GDBM_NOLOCK | extra, 0600, NULL);
	if (dbf == NULL)
		flock(t->lock_fd, LOCK_UN);
	return dbf;
}

/* base_open - the baseline's per-operation open (GDBM's defaults, as
 * mod_ssl: memory-mapped). */
static GDBM_FILE
base_open(struct target *t, int write)
{
	return base_open_flags(t, write, 0);
}

static void
base_close(struct target *t, GDBM_FILE dbf)
{
	gdbm_close(dbf);	/* a writer's close fsyncs: that is the point */
	flock(t->lock_fd, LOCK_UN);
}

/* base_live - decode a fetched baseline value as sessdb would. */
static int
base_live(datum v, const unsigned char *key, size_t key_len)
{
	struct rec r;
	int live;

	live = rec_decode((unsigned char *)v.dptr, (size_t)v.dsize, key, key_len,
	    &r) == REC_OK && r.expires > (int64_t)time(NULL);
	free(v.dptr);
	return live;
}

/* Operations: 1 = hit (or done), 0 = miss, -1 = error. */
static int
op_get(struct target *t, uint64_t i)
{
	unsigned char id[SESSDB_ID_MAX], key[REC_KEY_MAX];
	size_t key_len, len;
	void *data;
	int rc;

	make_id(i, id);
	if (t->kind == SESSDB) {
		rc = sessdb_get(t->db, SESSDB_NS_SERVER, id, sizeof(id), &data, &len,
		    NULL);
		sessdb_free(data);
		return rc == SESSDB_OK ? 1 : rc == SESSDB_MISS ? 0 : -1;
	}
	key_len = rec_key_make(key, SESSDB_NS_SERVER, id, sizeof(id));
	GDBM_FILE dbf = base_open(t, 0);
	if (dbf == NULL)
		return -1;
	datum v = gdbm_fetch(dbf, (datum){ (char *)key, (int)key_len });
	base_close(t, dbf);
	if (v.dptr == NULL)
		return 0;
	return base_live(v, key, key_len);
}

static int
op_put(struct target *t, uint64_t i)
{
	unsigned char id[SESSDB_ID_MAX], key[REC_KEY_MAX];
	unsigned char buf[REC_HEADER_LEN + 4096];
	size_t key_len, len;
	int rc;

	if (t->kind == SESSDB) {
		make_id(i, id);
		rc = sessdb_put(t->db, SESSDB_NS_SERVER, id, sizeof(id), payload,
		    payload_len, expires_at);
		return rc == 0 ? 1 : -1;
	}
	len = encode(i, buf, key, &key_len, expires_at);
	GDBM_FILE dbf = base_open(t, 1);
	if (dbf == NULL)
		return -1;
	rc = gdbm_store(dbf, (datum){ (char *)key, (int)key_len },
	    (datum){ (char *)buf, (int)len }, GDBM_REPLACE);
	base_close(t, dbf);
	return rc == 0 ? 1 : -1;
}

static int
op_take(struct target *t, uint64_t i)
{
	unsigned char id[SESSDB_ID_MAX], key[REC_KEY_MAX];
	size_t key_len, len;
	void *data;
	int rc;

	make_id(i, id);
	if (t->kind == SESSDB) {
		rc = sessdb_take(t->db, SESSDB_NS_SERVER, id, sizeof(id), &data, &len,
		    NULL);
		sessdb_free(data);
		return rc == SESSDB_OK ? 1 : rc == SESSDB_MISS ? 0 : -1;
	}
	key_len = rec_key_make(key, SESSDB_NS_SERVER, id, sizeof(id));
	GDBM_FILE dbf = base_open(t, 1);
	if (dbf == NULL)
		return -1;
	datum k = { (char *)key, (int)key_len };
	datum v = gdbm_fetch(dbf, k);
	if (v.dptr != NULL && gdbm_delete(dbf, k) != 0) {
		free(v.dptr);
		base_close(t, dbf);
		return -1;
	}
	base_close(t, dbf);
	if (v.dptr == NULL)
		return 0;
	return base_live(v, key, key_len);
}

static int
op_delete(struct target *t, uint64_t i)
{
	unsigned char id[SESSDB_ID_MAX], key[REC_KEY_MAX];
	size_t key_len;
	int rc;

	make_id(i, id);
	if (t->kind == SESSDB)
		return sessdb_delete(t->db, SESSDB_NS_SERVER, id, sizeof(id)) == 0 ?
		    1 : -1;
	key_len = rec_key_make(key, SESSDB_NS_SERVER, id, sizeof(id));
	GDBM_FILE dbf = base_open(t, 1);
	if (dbf == NULL)
		return -1;
	rc = gdbm_delete(dbf, (datum){ (char *)key, (int)key_len });
	base_close(t, dbf);
	return rc == 0 || gdbm_errno == GDBM_ITEM_NOT_FOUND ? 1 : -1;
}

/*
 * bulk - untimed fill or clean-up of key indexes [lo, hi): through the
 * sessdb handle, or through one long-lived GDBM handle for the baseline.
 */
static void
bulk(struct target *t, uint64_t lo, uint64_t hi, int insert)
{
	unsigned char key[REC_KEY_MAX], buf[REC_HEADER_LEN + 4096];
	size_t key_len, len;

	if (t->kind == SESSDB) {
		for (uint64_t i = lo; i < hi; i++)
			if ((insert ? op_put(t, i) : op_delete(t, i)) != 1)
				tc_die(PROG, "bulk %s: %s", insert ? "put" : "delete",
				    sessdb_error(t->db));
		return;
	}
	/* Without mmap: GDBM remaps a growing mapped file on every extension,
	 * which makes a large fill take minutes.  The file is the same. */
	GDBM_FILE dbf = base_open_flags(t, 1, GDBM_NOMMAP);
	if (dbf == NULL)
		tc_die(PROG, "%s: %s", t->path, gdbm_strerror(gdbm_errno));
	for (uint64_t i = lo; i < hi; i++) {
		len = encode(i, buf, key, &key_len, expires_at);
		datum k = { (char *)key, (int)key_len };
		if (insert) {
			if (gdbm_store(dbf, k, (datum){ (char *)buf, (int)len },
			    GDBM_REPLACE) != 0)
				tc_die(PROG, "%s: store: %s", t->path, gdbm_strerror(gdbm_errno));
		} else {
			gdbm_delete(dbf, k);
		}
	}
	base_close(t, dbf);
}

/* ---- timed phases ---- */

enum op { OP_GET_HIT, OP_GET_MISS, OP_PUT_NEW, OP_TAKE, OP_DELETE,
	OP_PUT_REPLACE, OP_MIXED, OP_GET_REOPEN, OP_COUNT };
static const char *op_name[] = { "get-hit", "get-miss", "put-new", "take",
	"delete", "put-replace", "mixed", "get-reopen" };

struct tally {
	uint64_t	gets, puts, other;	/* operations done, by kind */
	uint64_t	hits, misses, errors;
	uint64_t	reopens;		/* sessdb handle reopens meanwhile */
	double		secs;			/* wall clock */
	double		cpu;			/* CPU time of this process */
};

/*
 * phase - run op on t for secs seconds (or limit operations, if not 0).
 * n is the number of live records (keys 0..n-1); lo the first key index
 * of sequential operations (put-new, take, delete).
 */
static void
phase(struct target *t, enum op op, size_t n, uint64_t lo, uint64_t limit,
    double secs, struct tally *ty)
{
	struct sessdb_stats st0, st1;
	uint64_t t0, deadline, k = 0, excluded = 0;
	int rc = 0, is_get = 0;
	double c0;

	memset(ty, 0, sizeof(*ty));
	if (op_count != 0 && limit == 0) {
		limit = op_count;	/* a fixed count, for strace -c */
		secs = 1e9;
	}
	if (t->kind == SESSDB)
		sessdb_stats(t->db, &st0);
	c0 = cpu_secs();
	t0 = tc_mono_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	for (;; k++) {
		if (limit != 0 && k >= limit)
			break;
		if ((k & 15) == 0 && tc_mono_ns() >= deadline)
			break;
		switch (op) {
		case OP_GET_HIT:
			rc = op_get(t, rnd() % n);
			is_get = 1;
			break;
		case OP_GET_MISS:
			rc = op_get(t, MISS_BASE + rnd() % MISS_BASE);
			is_get = 1;
			break;
		case OP_PUT_NEW:
			rc = op_put(t, lo + k);
			is_get = 0;
			break;
		case OP_TAKE:
			rc = op_take(t, lo + k);
			is_get = 2;
			break;
		case OP_DELETE:
			rc = op_delete(t, lo + k);
			is_get = 2;
			break;
		case OP_PUT_REPLACE:
			rc = op_put(t, rnd() % n);
			is_get = 0;
			break;
		case OP_GET_REOPEN: {
			/* another handle writes first, so this get finds its GDBM
			 * state stale; only the get is timed (wall clock) */
			uint64_t a = tc_mono_ns();
			if (op_put(t->peer != NULL ? t->peer : t, rnd() % n) != 1)
				ty->errors++;
			excluded += tc_mono_ns() - a;
			rc = op_get(t, rnd() % n);
			is_get = 1;
			break;
		}
		case OP_MIXED:
		default:
			if (rnd() & 1) {
				rc = op_get(t, rnd() % n);
				is_get = 1;
			} else {
				rc = op_put(t, rnd() % n);
				is_get = 0;
			}
			break;
		}
		if (is_get == 1)
			ty->gets++;
		else if (is_get == 0)
			ty->puts++;
		else
			ty->other++;
		if (rc == 1)
			ty->hits++;
		else if (rc == 0)
			ty->misses++;
		else
			ty->errors++;
	}
	ty->secs = (double)(tc_mono_ns() - t0 - excluded) / 1e9;
	ty->cpu = cpu_secs() - c0;
	if (op == OP_GET_REOPEN)
		ty->cpu = ty->secs;	/* the writes cannot be taken out of it */
	if (ty->cpu <= 0)
		ty->cpu = 1e-9;
	if (t->kind == SESSDB) {
		sessdb_stats(t->db, &st1);
		ty->reopens = st1.reopens - st0.reopens;
	}
}

/* ---- results table ---- */

struct row {
	char	fs[16];
	size_t	n;
	char	metric[40];
	double	v[2][MAX_RUNS];		/* ops/s by kind, per run */
	double	c[2][MAX_RUNS];		/* ops per CPU second */
	int	cnt[2];
	double	reopen[MAX_RUNS];	/* sessdb reopens per operation */
	int	nreopen;
};

static struct row *rows;
static size_t nrows;

static struct row *
row_get(const char *fs, size_t n, const char *metric)
{
	for (size_t i = 0; i < nrows; i++)
		if (strcmp(rows[i].fs, fs) == 0 && rows[i].n == n &&
		    strcmp(rows[i].metric, metric) == 0)
			return &rows[i];
	rows = realloc(rows, (nrows + 1) * sizeof(*rows));
	if (rows == NULL)
		tc_die(PROG, "out of memory");
	memset(&rows[nrows], 0, sizeof(*rows));
	snprintf(rows[nrows].fs, sizeof(rows[nrows].fs), "%s", fs);
	rows[nrows].n = n;
	snprintf(rows[nrows].metric, sizeof(rows[nrows].metric), "%s", metric);
	return &rows[nrows++];
}

static void
record(const char *fs, size_t n, const char *metric, enum kind kind,
    double ops_per_s, double ops_per_cpu, uint64_t reopens, uint64_t ops)
{
	struct row *r = row_get(fs, n, metric);

	if (r->cnt[kind] < MAX_RUNS) {
		r->c[kind][r->cnt[kind]] = ops_per_cpu;
		r->v[kind][r->cnt[kind]++] = ops_per_s;
	}
	if (kind == SESSDB && r->nreopen < MAX_RUNS)
		r->reopen[r->nreopen++] = ops ? (double)reopens / (double)ops : 0;
}

static double
row_median(const char *fs, size_t n, const char *metric, enum kind kind, int cpu)
{
	for (size_t i = 0; i < nrows; i++)
		if (strcmp(rows[i].fs, fs) == 0 && rows[i].n == n &&
		    strcmp(rows[i].metric, metric) == 0)
			return tc_median(cpu ? rows[i].c[kind] : rows[i].v[kind],
			    rows[i].cnt[kind]);
	return 0;
}

/* ---- single-process matrix ---- */

static void
sanity_phase(const struct target *t, enum op op, const struct tally *ty,
    const char *fs, size_t n)
{
	const char *who = kind_name[t->kind];
	uint64_t ops = ty->gets + ty->puts + ty->other;

	tc_check(PROG, ty->errors == 0, "%s %s n=%zu %s: %llu errors%s%s", fs, who, n,
	    op_name[op], (unsigned long long)ty->errors,
	    t->kind == SESSDB ? ": " : "", t->kind == SESSDB ? sessdb_error(t->db) : "");
	tc_check(PROG, ops > 0, "%s %s n=%zu %s: no operation completed", fs, who, n,
	    op_name[op]);
	switch (op) {
	case OP_GET_HIT:
	case OP_GET_REOPEN:
	case OP_TAKE:
	case OP_MIXED:
	case OP_PUT_NEW:
	case OP_PUT_REPLACE:
	case OP_DELETE:
		tc_check(PROG, ty->hits == ops, "%s %s n=%zu %s: %llu of %llu hit/done", fs,
		    who, n, op_name[op], (unsigned long long)ty->hits,
		    (unsigned long long)ops);
		break;
	case OP_GET_MISS:
	default:
		tc_check(PROG, ty->misses == ops, "%s %s n=%zu %s: %llu of %llu missed", fs,
		    who, n, op_name[op], (unsigned long long)ty->misses,
		    (unsigned long long)ops);
		break;
	}
}

/* Per-target state across the phases of one run. */
struct tstate {
	struct target	t;
	uint64_t	fresh;		/* next unused key index for put-new */
	uint64_t	put_done;	/* keys [put_lo, put_lo + put_done) exist */
	uint64_t	put_lo;
};

static void
one_phase(struct tstate *s, enum op op, size_t n, const char *fs)
{
	struct tally ty;
	uint64_t ops;

	switch (op) {
	case OP_PUT_NEW:
		s->put_lo = s->fresh;
		phase(&s->t, op, n, s->put_lo, 0, phase_secs, &ty);
		s->put_done = ty.puts;
		s->fresh += ty.puts;
		break;
	case OP_TAKE:
		phase(&s->t, op, n, s->put_lo, s->put_done, phase_secs, &ty);
		/* remove what take did not reach */
		bulk(&s->t, s->put_lo + ty.other, s->put_lo + s->put_done, 0);
		break;
	case OP_DELETE: {
		uint64_t cnt = s->put_done > 0 ? s->put_done : 1;
		uint64_t lo = s->fresh;

		bulk(&s->t, lo, lo + cnt, 1);
		s->fresh += cnt;
		phase(&s->t, op, n, lo, cnt, phase_secs, &ty);
		bulk(&s->t, lo + ty.other, lo + cnt, 0);
		break;
	}
	default:
		phase(&s->t, op, n, 0, 0, phase_secs, &ty);
		break;
	}
	sanity_phase(&s->t, op, &ty, fs, n);
	ops = ty.gets + ty.puts + ty.other;
	record(fs, n, op_name[op], s->t.kind, (double)ops / ty.secs,
	    (double)ops / ty.cpu, ty.reopens, ops);
}

/* ---- two processes on one file ---- */

struct twop_result {
	struct tally	ty;
	int		ok;
};

/*
 * two_proc - the parent runs op_a, a child (own handle, opened after the
 * fork) runs op_b, on the same file, started together.
 */
static void
two_proc(struct target *t, enum op op_a, enum op op_b, size_t n,
    struct tally *a, struct tally *b)
{
	int go[2], res[2];
	pid_t pid;
	char c;
	struct twop_result r;

	if (pipe(go) == -1 || pipe(res) == -1)
		tc_die(PROG, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid == -1)
		tc_die(PROG, "fork: %s", strerror(errno));
	if (pid == 0) {
		struct target ct = *t;

		close(go[1]);
		close(res[0]);
		rng_state ^= (uint64_t)getpid() << 17;
		ct.db = NULL;
		ct.peer = NULL;
		ct.lock_fd = -1;
		target_open(&ct);
		memset(&r, 0, sizeof(r));
		if (write(res[1], "R", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		phase(&ct, op_b, n, 0, 0, phase2_secs, &r.ty);
		r.ok = 1;
		if (write(res[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
		target_close(&ct);
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	if (read(res[0], &c, 1) != 1)
		tc_die(PROG, "two_proc: child did not start");
	if (write(go[1], "G", 1) != 1)
		tc_die(PROG, "two_proc: write: %s", strerror(errno));
	phase(t, op_a, n, 0, 0, phase2_secs, a);
	memset(&r, 0, sizeof(r));
	if (read(res[0], &r, sizeof(r)) != (ssize_t)sizeof(r) || !r.ok)
		tc_die(PROG, "two_proc: child failed");
	*b = r.ty;
	waitpid(pid, NULL, 0);
	close(go[1]);
	close(res[0]);
}

static void
record_2p(const char *fs, size_t n, const char *metric, enum kind kind,
    const struct tally *ty)
{
	char m[64];

	if (ty->gets > 0) {
		snprintf(m, sizeof(m), "%s get", metric);
		record(fs, n, m, kind, (double)ty->gets / ty->secs,
		    (double)ty->gets / ty->cpu, ty->reopens, ty->gets + ty->puts);
	}
	if (ty->puts > 0) {
		snprintf(m, sizeof(m), "%s put", metric);
		record(fs, n, m, kind, (double)ty->puts / ty->secs,
		    (double)ty->puts / ty->cpu, ty->reopens, ty->gets + ty->puts);
	}
}

static void
two_proc_all(struct target *t, size_t n, const char *fs)
{
	struct tally a, b;

	two_proc(t, OP_GET_HIT, OP_PUT_REPLACE, n, &a, &b);
	tc_check(PROG, a.errors == 0 && b.errors == 0 && a.hits == a.gets && a.gets > 0 &&
	    b.puts > 0, "%s %s n=%zu 2p-rw: gets %llu hits %llu puts %llu errors "
	    "%llu+%llu", fs, kind_name[t->kind], n, (unsigned long long)a.gets,
	    (unsigned long long)a.hits, (unsigned long long)b.puts,
	    (unsigned long long)a.errors, (unsigned long long)b.errors);
	record_2p(fs, n, "2p-rw reader", t->kind, &a);
	record_2p(fs, n, "2p-rw writer", t->kind, &b);

	two_proc(t, OP_MIXED, OP_MIXED, n, &a, &b);
	tc_check(PROG, a.errors == 0 && b.errors == 0 && a.hits == a.gets + a.puts &&
	    b.hits == b.gets + b.puts, "%s %s n=%zu 2p-mixed: errors %llu+%llu, "
	    "not every get hit", fs, kind_name[t->kind], n,
	    (unsigned long long)a.errors, (unsigned long long)b.errors);
	record_2p(fs, n, "2p-mixed A", t->kind, &a);
	record_2p(fs, n, "2p-mixed B", t->kind, &b);
}

static void
fill(struct target *t, size_t n)
{
	uint64_t t0 = tc_mono_ns();

	bulk(t, 0, n, 1);
	printf("  filled %s with %zu records in %.2f s\n", kind_name[t->kind], n,
	    (double)(tc_mono_ns() - t0) / 1e9);
	fflush(stdout);
}

static void
remove_files(const char *path)
{
	char lp[PATH_MAX + 8];

	snprintf(lp, sizeof(lp), "%s.lock", path);
	unlink(path);
	unlink(lp);
}

/* wanted - is operation name selected by --ops (all when not given)? */
static int
wanted(const char *name)
{
	size_t len = strlen(name);

	if (only_ops == NULL)
		return 1;
	for (const char *p = only_ops; *p != '\0';) {
		size_t l = strcspn(p, ",");
		if (l == len && strncmp(p, name, len) == 0)
			return 1;
		p += l;
		if (*p == ',')
			p++;
	}
	return 0;
}

static void
matrix(const char *dir, size_t n)
{
	const char *fs = fs_name(dir);
	struct tstate s[2];

	printf("== %s (%s), %zu records\n", dir, fs, n);
	for (int k = 0; k < 2; k++) {
		memset(&s[k], 0, sizeof(s[k]));
		s[k].t.kind = (enum kind)k;
		s[k].t.lock_fd = -1;
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s-%zu.db", dir,
		    k == SESSDB ? "sessdb" : "base", n);
		snprintf(s[k].t.path, sizeof(s[k].t.path), "%s", path);
		snprintf(s[k].t.lock_path, sizeof(s[k].t.lock_path), "%s.lock", path);
		remove_files(s[k].t.path);
		if (k == BASE) {
			/* create the GDBM file before the first reader opens it */
			GDBM_FILE dbf = gdbm_open(s[k].t.path, 0, GDBM_WRCREAT |
			    GDBM_NOLOCK, 0600, NULL);
			if (dbf == NULL)
				tc_die(PROG, "%s: %s", s[k].t.path, gdbm_strerror(gdbm_errno));
			gdbm_close(dbf);
		}
		target_open(&s[k].t);
		if (k == SESSDB) {
			s[k].t.peer = calloc(1, sizeof(*s[k].t.peer));
			if (s[k].t.peer == NULL)
				tc_die(PROG, "out of memory");
			*s[k].t.peer = s[k].t;
			s[k].t.peer->peer = NULL;
			target_open(s[k].t.peer);
		}
		s[k].fresh = FRESH_BASE;
		if (!(sessdb_only && k == BASE))
			fill(&s[k].t, n);
	}
	for (int run = 0; run < runs; run++) {
		for (int op = 0; op < OP_COUNT; op++)
			for (int j = 0; j < 2; j++) {
				/* alternate which one goes first */
				int k = (run + j) % 2;
				if (wanted(op_name[op]) && !(sessdb_only && k == BASE))
					one_phase(&s[k], (enum op)op, n, fs);
			}
		for (int j = 0; j < 2 && wanted("2p"); j++) {
			int k = (run + j) % 2;
			if (sessdb_only && k == BASE)
				continue;
			two_proc_all(&s[k].t, n, fs);
		}
		printf("  run %d/%d done\n", run + 1, runs);
		fflush(stdout);
	}
	for (int k = 0; k < 2; k++) {
		if (s[k].t.peer != NULL) {
			target_close(s[k].t.peer);
			free(s[k].t.peer);
		}
		target_close(&s[k].t);
		remove_files(s[k].t.path);
	}
}

/* ---- file size ---- */

static void
file_size(const char *dir)
{
	struct target t = { .kind = SESSDB, .lock_fd = -1 };
	struct sessdb_info info;

	snprintf(t.path, sizeof(t.path), "%s/size.db", dir);
	remove_files(t.path);
	target_open(&t);
	bulk(&t, 0, size_records, 1);
	if (sessdb_info(t.db, &info) == -1)
		tc_die(PROG, "info: %s", sessdb_error(t.db));
	printf("== %s (%s): file size for %zu records of %zu-byte payload: "
	    "%.1f MB (%llu bytes, %.0f bytes/record; key+value %llu bytes)\n",
	    dir, fs_name(dir), size_records, payload_len,
	    (double)info.file_size / 1048576.0, (unsigned long long)info.file_size,
	    (double)info.file_size / (double)size_records,
	    (unsigned long long)info.bytes);
	tc_check(PROG, info.entries == size_records, "size: %llu entries, want %zu",
	    (unsigned long long)info.entries, size_records);
	target_close(&t);
	remove_files(t.path);
}

/* ---- sweep under a concurrent reader ---- */

static int64_t fixed_now;

static int64_t
fixed_clock(void *arg)
{
	return *(const int64_t *)arg;
}

struct reader_shared {
	volatile int	phase;		/* 0 start, 1 quiet, 2 sweep, 3 stop */
	volatile int	ready;
	uint64_t	gets[3], hits[3], errors[3], max_ns[3], over1ms[3],
			over10ms[3], reopens[3];
};

/* reader - get live (odd) keys until told to stop, recording the longest
 * call per phase. */
static void
reader(const char *path, size_t n, struct reader_shared *sh)
{
	struct sessdb *db;
	struct sessdb_stats st0, st1;
	char err[512];
	unsigned char id[SESSDB_ID_MAX];
	void *data;
	size_t len;

	db = sessdb_open(path, NULL, err, sizeof(err));
	if (db == NULL)
		_exit(1);
	sh->ready = 1;
	while (sh->phase == 0)
		;
	for (int ph; (ph = sh->phase) != 3;) {
		sessdb_stats(db, &st0);
		uint64_t t0 = tc_mono_ns();
		make_id((rnd() % (n / 2)) * 2 + 1, id);
		int rc = sessdb_get(db, SESSDB_NS_SERVER, id, sizeof(id), &data, &len,
		    NULL);
		uint64_t dt = tc_mono_ns() - t0;
		sessdb_stats(db, &st1);
		sessdb_free(data);
		if (ph < 1 || ph > 2)
			continue;
		sh->gets[ph]++;
		sh->hits[ph] += rc == SESSDB_OK;
		sh->errors[ph] += rc == -1;
		sh->reopens[ph] += st1.reopens - st0.reopens;
		if (dt > sh->max_ns[ph])
			sh->max_ns[ph] = dt;
		sh->over1ms[ph] += dt > 1000000;
		sh->over10ms[ph] += dt > 10000000;
	}
	sessdb_close(db);
	_exit(0);
}

static void
sweep_bench(const char *dir)
{
	struct sessdb_options o;
	struct sessdb *db;
	struct sessdb_sweep_result res;
	struct reader_shared *sh;
	char path[PATH_MAX], err[512];
	unsigned char id[SESSDB_ID_MAX];
	int64_t now = (int64_t)time(NULL);
	uint64_t t0, sweep_ns, quiet_ns;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/sweep.db", dir);
	remove_files(path);
	/* Fill with a clock in the past, so records can expire "now". */
	memset(&o, 0, sizeof(o));
	fixed_now = now - 2000;
	o.clock = fixed_clock;
	o.clock_arg = &fixed_now;
	db = sessdb_open(path, &o, err, sizeof(err));
	if (db == NULL)
		tc_die(PROG, "%s", err);
	t0 = tc_mono_ns();
	for (size_t i = 0; i < sweep_records; i++) {
		make_id(i, id);
		if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
		    payload_len, i % 2 ? now + TTL : now - 1000) != 0)
			tc_die(PROG, "sweep fill: %s", sessdb_error(db));
	}
	sessdb_close(db);
	printf("== %s (%s): sweep of %zu records, half expired (filled in %.2f s)\n",
	    dir, fs_name(dir), sweep_records, (double)(tc_mono_ns() - t0) / 1e9);
	fflush(stdout);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		tc_die(PROG, "mmap: %s", strerror(errno));
	memset(sh, 0, sizeof(*sh));
	db = sessdb_open(path, NULL, err, sizeof(err));
	if (db == NULL)
		tc_die(PROG, "%s", err);
	fflush(NULL);
	pid = fork();
	if (pid == -1)
		tc_die(PROG, "fork: %s", strerror(errno));
	if (pid == 0) {
		rng_state ^= (uint64_t)getpid() << 17;
		reader(path, sweep_records, sh);
	}
	while (!sh->ready)
		usleep(1000);
	/* Quiet period first: the reader's longest call with nobody writing. */
	__atomic_store_n(&sh->phase, 1, __ATOMIC_SEQ_CST);
	t0 = tc_mono_ns();
	usleep(quick ? 200000 : 2000000);
	quiet_ns = tc_mono_ns() - t0;
	__atomic_store_n(&sh->phase, 2, __ATOMIC_SEQ_CST);
	t0 = tc_mono_ns();
	int rc = sessdb_sweep(db, 0, NULL, NULL, &res);
	sweep_ns = tc_mono_ns() - t0;
	__atomic_store_n(&sh->phase, 3, __ATOMIC_SEQ_CST);
	int status;
	waitpid(pid, &status, 0);
	tc_check(PROG, rc == 0, "sweep: %s", sessdb_error(db));
	tc_check(PROG, WIFEXITED(status) && WEXITSTATUS(status) == 0, "sweep reader failed");
	tc_check(PROG, res.expired == sweep_records / 2 && res.live == sweep_records / 2,
	    "sweep removed %llu expired, kept %llu live, want %zu each",
	    (unsigned long long)res.expired, (unsigned long long)res.live,
	    sweep_records / 2);
	tc_check(PROG, sh->gets[2] > 0 && sh->hits[2] == sh->gets[2] && sh->errors[2] == 0 &&
	    sh->hits[1] == sh->gets[1],
	    "sweep reader: %llu gets, %llu hits, %llu errors during the sweep",
	    (unsigned long long)sh->gets[2], (unsigned long long)sh->hits[2],
	    (unsigned long long)sh->errors[2]);
	printf("  sweep: %.2f s (%llu examined, %llu expired removed, %llu live, "
	    "%llu exclusive batches)\n", (double)sweep_ns / 1e9,
	    (unsigned long long)res.examined, (unsigned long long)res.expired,
	    (unsigned long long)res.live, (unsigned long long)res.batches);
	static const char *pn[] = { "", "before (quiet)", "during sweep" };
	for (int ph = 1; ph <= 2; ph++) {
		double secs = (double)(ph == 1 ? quiet_ns : sweep_ns) / 1e9;
		printf("  reader %-15s: %llu gets (%.0f/s), longest %.3f ms, "
		    ">1ms: %llu, >10ms: %llu, reopens %llu\n", pn[ph],
		    (unsigned long long)sh->gets[ph], (double)sh->gets[ph] / secs,
		    (double)sh->max_ns[ph] / 1e6, (unsigned long long)sh->over1ms[ph],
		    (unsigned long long)sh->over10ms[ph],
		    (unsigned long long)sh->reopens[ph]);
	}
	fflush(stdout);
	sessdb_close(db);
	munmap(sh, sizeof(*sh));
	remove_files(path);
}

/* ---- get latency under load ---- */

/*
 * The loads under which one process times every get (clock_gettime
 * around each call, into a preallocated array): nobody else; another
 * process putting at full speed, or at --writer-rate puts/s; a sweep of
 * --sweep-records records (half expired) running in another process;
 * then a compact of what the sweep left.
 */
enum load { LOAD_NONE, LOAD_WRITER, LOAD_RATE, LOAD_SWEEP, LOAD_COMPACT,
	LOAD_COUNT };
static const char *load_name[] = { "no writer", "writer full speed",
	"writer at rate", "sweep running", "compact running" };

#define LAT_MAX_SAMPLES	(16u << 20)	/* 64 MiB of uint32_t nanoseconds */

static uint32_t *lat_ns;		/* the samples of one measurement */
static size_t lat_records = 10000;	/* records of the writer loads */
static double lat_secs = 2.0;		/* length of the writer loads */
static unsigned writer_rate = 2000;	/* puts/s of LOAD_RATE */
static int do_latency = 1;

/* Shared with the load process. */
struct load_shared {
	volatile int	ready, stop, done;
	uint64_t	puts, errors;
	double		secs;		/* how long the sweep or compact took */
	int		rc;
};

struct lat_row {
	char	fs[16];
	double	p50[MAX_RUNS], p99[MAX_RUNS], p999[MAX_RUNS], max[MAX_RUNS];
	double	gets[MAX_RUNS], loadops[MAX_RUNS], reopen[MAX_RUNS];
	uint64_t errors;
	int	cnt;
};

static struct lat_row lat_rows[MAX_DIRS][LOAD_COUNT];

/* load_child - the other process: put (at full speed, or paced to
 * writer_rate), sweep or compact, until told to stop or done. */
static void
load_child(const char *path, enum load load, size_t n, struct load_shared *sh)
{
	struct sessdb_sweep_result res;
	struct sessdb *db;
	char err[512];
	uint64_t t0, next, period = 1000000000u / (writer_rate ? writer_rate : 1);
	unsigned char id[SESSDB_ID_MAX];

	db = sessdb_open(path, NULL, err, sizeof(err));
	if (db == NULL)
		_exit(1);
	sh->ready = 1;
	while (!sh->stop && sh->ready != 2)
		;
	t0 = next = tc_mono_ns();
	switch (load) {
	case LOAD_SWEEP:
		sh->rc = sessdb_sweep(db, 0, NULL, NULL, &res);
		break;
	case LOAD_COMPACT:
		sh->rc = sessdb_compact(db);
		break;
	default:
		while (!sh->stop) {
			if (load == LOAD_RATE) {
				uint64_t now = tc_mono_ns();
				if (now < next) {
					struct timespec ts = { (time_t)(next / 1000000000u),
					    (long)(next % 1000000000u) };
					clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
					    NULL);
				}
				next += period;
			}
			make_id(rnd() % n, id);
			if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
			    payload_len, expires_at) != 0)
				sh->errors++;
			sh->puts++;
		}
		break;
	}
	sh->secs = (double)(tc_mono_ns() - t0) / 1e9;
	__atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
	sessdb_close(db);
	_exit(0);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * lat_measure - time gets of live keys (all of 0..n-1, or the odd ones if
 * odd_only) on db while load runs in another process; record one row.
 */
static void
lat_measure(const char *path, struct sessdb *db, enum load load, size_t n,
    int odd_only, int d, const char *fs)
{
	struct load_shared *sh = NULL;
	struct sessdb_stats st0, st1;
	struct lat_row *r = &lat_rows[d][load];
	unsigned char id[SESSDB_ID_MAX];
	uint64_t gets = 0, hits = 0, misses = 0, errors = 0, maxns = 0;
	uint64_t t0, deadline;
	size_t ns = 0;
	pid_t pid = -1;
	void *data;
	size_t len;

	if (load != LOAD_NONE) {
		sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED |
		    MAP_ANONYMOUS, -1, 0);
		if (sh == MAP_FAILED)
			tc_die(PROG, "mmap: %s", strerror(errno));
		memset(sh, 0, sizeof(*sh));
		fflush(NULL);
		pid = fork();
		if (pid == -1)
			tc_die(PROG, "fork: %s", strerror(errno));
		if (pid == 0) {
			rng_state ^= (uint64_t)getpid() << 17;
			load_child(path, load, n, sh);
		}
		while (!sh->ready)
			usleep(1000);
		__atomic_store_n(&sh->ready, 2, __ATOMIC_SEQ_CST);
	}
	sessdb_stats(db, &st0);
	t0 = tc_mono_ns();
	deadline = t0 + (uint64_t)(lat_secs * 1e9);
	for (;;) {
		if (load == LOAD_SWEEP || load == LOAD_COMPACT) {
			if (sh->done)
				break;
		} else if ((gets & 15) == 0 && tc_mono_ns() >= deadline)
			break;
		uint64_t k = rnd() % n;
		make_id(odd_only ? (k | 1) % n : k, id);
		uint64_t a = tc_mono_ns();
		int rc = sessdb_get(db, SESSDB_NS_SERVER, id, sizeof(id), &data, &len,
		    NULL);
		uint64_t dt = tc_mono_ns() - a;
		sessdb_free(data);
		gets++;
		hits += rc == SESSDB_OK;
		misses += rc == SESSDB_MISS;
		errors += rc == -1;
		if (dt > maxns)
			maxns = dt;
		if (ns < LAT_MAX_SAMPLES)
			lat_ns[ns++] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
	}
	double secs = (double)(tc_mono_ns() - t0) / 1e9;
	sessdb_stats(db, &st1);
	uint64_t loadops = 0;
	if (sh != NULL) {
		int status;

		__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
		waitpid(pid, &status, 0);
		tc_check(PROG, WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		    sh->rc == 0 && sh->errors == 0, "%s latency %s: the load process "
		    "failed (%llu put errors)", fs, load_name[load],
		    (unsigned long long)sh->errors);
		loadops = sh->puts;
		if (load == LOAD_SWEEP || load == LOAD_COMPACT)
			secs = sh->secs;
		munmap(sh, sizeof(*sh));
	}
	/* A live key must never miss; a lock timeout is reported (it can
	 * happen behind a long compact), and fails only the quick mode. */
	tc_check(PROG, gets > 0 && misses == 0 && (errors == 0 ||
	    (load == LOAD_COMPACT && !quick)), "%s latency %s: %llu gets, %llu hits, "
	    "%llu misses, %llu errors: %s", fs, load_name[load],
	    (unsigned long long)gets, (unsigned long long)hits,
	    (unsigned long long)misses, (unsigned long long)errors, sessdb_error(db));
	qsort(lat_ns, ns, sizeof(*lat_ns), cmp_u32);
	snprintf(r->fs, sizeof(r->fs), "%s", fs);
	if (r->cnt < MAX_RUNS && ns > 0) {
		int c = r->cnt++;
		r->p50[c] = lat_ns[ns / 2] / 1e3;
		r->p99[c] = lat_ns[(size_t)((double)ns * 0.99)] / 1e3;
		r->p999[c] = lat_ns[(size_t)((double)ns * 0.999)] / 1e3;
		r->max[c] = (double)maxns / 1e3;
		r->gets[c] = (double)gets / secs;
		r->loadops[c] = load == LOAD_SWEEP || load == LOAD_COMPACT ? secs :
		    (double)loadops / secs;
		r->reopen[c] = (double)(st1.reopens - st0.reopens) / (double)gets;
	}
	r->errors += errors;
}

/* lat_fill - a new store at path with n records; half of them expired
 * if half_expired (filled with a clock in the past, as the sweep wants). */
static void
lat_fill(const char *path, size_t n, int half_expired)
{
	struct sessdb_options o;
	struct sessdb *db;
	char err[512];
	unsigned char id[SESSDB_ID_MAX];
	int64_t now = (int64_t)time(NULL);

	remove_files(path);
	memset(&o, 0, sizeof(o));
	fixed_now = now - 2000;
	o.clock = fixed_clock;
	o.clock_arg = &fixed_now;
	db = sessdb_open(path, &o, err, sizeof(err));
	if (db == NULL)
		tc_die(PROG, "%s", err);
	for (size_t i = 0; i < n; i++) {
		make_id(i, id);
		if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
		    payload_len, half_expired && i % 2 == 0 ? now - 1000 :
		    expires_at) != 0)
			tc_die(PROG, "latency fill: %s", sessdb_error(db));
	}
	sessdb_close(db);
}

static void
latency(const char *dir, int d)
{
	const char *fs = fs_name(dir);
	char path[PATH_MAX], err[512];
	struct sessdb *db;
	uint64_t t0;

	snprintf(path, sizeof(path), "%s/latency.db", dir);
	for (int run = 0; run < runs; run++) {
		t0 = tc_mono_ns();
		lat_fill(path, lat_records, 0);
		db = sessdb_open(path, NULL, err, sizeof(err));
		if (db == NULL)
			tc_die(PROG, "%s", err);
		for (int load = LOAD_NONE; load <= LOAD_RATE; load++)
			lat_measure(path, db, (enum load)load, lat_records, 0, d, fs);
		sessdb_close(db);
		/* The sweep and the compact: the file the sweep leaves (half
		 * free space) is the one compacted. */
		lat_fill(path, sweep_records, 1);
		db = sessdb_open(path, NULL, err, sizeof(err));
		if (db == NULL)
			tc_die(PROG, "%s", err);
		lat_measure(path, db, LOAD_SWEEP, sweep_records, 1, d, fs);
		lat_measure(path, db, LOAD_COMPACT, sweep_records, 1, d, fs);
		sessdb_close(db);
		remove_files(path);
		printf("  latency %s run %d/%d done (%.1f s)\n", fs, run + 1, runs,
		    (double)(tc_mono_ns() - t0) / 1e9);
		fflush(stdout);
	}
}

static void
latency_report(void)
{
	printf("\n== get latency, us (medians over %d run(s); max: the largest of "
	    "all runs); %zu records (the writers put among them), %zu for the "
	    "sweep (half expired) and the compact; writer rate %u puts/s\n",
	    runs, lat_records, sweep_records, writer_rate);
	printf("%-6s %-18s %8s %8s %8s %9s %11s %16s %9s %6s\n", "fs", "load", "p50",
	    "p99", "p99.9", "max", "gets/s", "load puts/s|s", "reopen/get",
	    "errors");
	for (int d = 0; d < ndirs; d++)
		for (int l = 0; l < LOAD_COUNT; l++) {
			struct lat_row *r = &lat_rows[d][l];
			double mx = 0;

			if (r->cnt == 0)
				continue;
			for (int c = 0; c < r->cnt; c++)
				if (r->max[c] > mx)
					mx = r->max[c];
			printf("%-6s %-18s %8.2f %8.2f %8.2f %9.1f %11.0f %16.*f %9.3f %6llu\n",
			    r->fs, load_name[l], tc_median(r->p50, r->cnt),
			    tc_median(r->p99, r->cnt), tc_median(r->p999, r->cnt), mx,
			    tc_median(r->gets, r->cnt), l >= LOAD_SWEEP ? 2 : 0,
			    tc_median(r->loadops, r->cnt), tc_median(r->reopen, r->cnt),
			    (unsigned long long)r->errors);
		}
	printf("latency targets (issue 10): p99.9 <= 50 us, max <= 5 ms under every load\n");
}

/* ---- the floor: what the system calls of one operation cost here ---- */

/*
 * syscall_floor - CPU time of the calls a store operation is made of, so
 * the figures above can be read against this machine (a virtual machine
 * can make every system call cost a microsecond or more).
 */
static void
syscall_floor(const char *d)
{
	char path[PATH_MAX];
	unsigned char buf[512];
	int fd, n = quick ? 2000 : 200000;
	double t0, t[5];

	snprintf(path, sizeof(path), "%s/floor", d);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, payload, payload_len) != (ssize_t)payload_len)
		tc_die(PROG, "%s: %s", path, strerror(errno));
	t0 = cpu_secs();
	for (int i = 0; i < n; i++) {
		flock(fd, LOCK_SH | LOCK_NB);
		flock(fd, LOCK_UN);
	}
	t[0] = cpu_secs() - t0;
	t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		if (lseek(fd, 0, SEEK_SET) != 0 || read(fd, buf, payload_len) < 1)
			tc_die(PROG, "read: %s", strerror(errno));
	t[1] = cpu_secs() - t0;
	t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		if (pread(fd, buf, payload_len, 0) < 1)
			tc_die(PROG, "pread: %s", strerror(errno));
	t[2] = cpu_secs() - t0;
	t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		(void)getppid();
	t[3] = cpu_secs() - t0;
	t0 = cpu_secs();
	for (int i = 0; i < n; i++) {
		void *volatile m = malloc(payload_len + REC_HEADER_LEN);
		free(m);
	}
	t[4] = cpu_secs() - t0;
	close(fd);
	unlink(path);
	printf("== system call floor on %s (%s), CPU us per call: flock LOCK_SH|LOCK_NB "
	    "+ LOCK_UN %.2f, lseek + read %.2f, pread %.2f, getppid %.2f, "
	    "malloc+free %.3f\n", d, fs_name(d), t[0] / n * 1e6, t[1] / n * 1e6,
	    t[2] / n * 1e6, t[3] / n * 1e6, t[4] / n * 1e6);
	fflush(stdout);
}

/* ---- report ---- */

static void
report(void)
{
	static const char *targets =
	    "goals (issue 10, docs/PERFORMANCE.md): get-hit >= 1,000,000/s at any size "
	    "up to 1M, 1M within 1.2x of 1k; 2p-rw reader >= 500k/s, writer >= 50k/s; "
	    "2p-mixed >= 100k gets + 50k puts/s each";

	printf("\n== medians over %d run(s); ratio = sessdb / baseline\n", runs);
	printf("(op/s: wall clock; op/cpu-s: per CPU second of the process, "
	    "less sensitive to other load)\n");
	printf("%-6s %8s %-19s %11s %11s %7s %12s %12s %7s %9s\n", "fs", "records",
	    "operation", "sessdb op/s", "base op/s", "ratio", "sessdb op/cpu",
	    "base op/cpu", "ratio", "reopen/op");
	for (size_t i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		double s = tc_median(r->v[SESSDB], r->cnt[SESSDB]);
		double b = tc_median(r->v[BASE], r->cnt[BASE]);
		double sc = tc_median(r->c[SESSDB], r->cnt[SESSDB]);
		double bc = tc_median(r->c[BASE], r->cnt[BASE]);

		printf("%-6s %8zu %-19s %11.0f %11.0f %7.1f %12.0f %12.0f %7.1f %9.3f\n",
		    r->fs, r->n, r->metric, s, b, b > 0 ? s / b : 0, sc, bc,
		    bc > 0 ? sc / bc : 0, tc_median(r->reopen, r->nreopen));
	}
	/* scaling: get-hit cost at the largest size vs the smallest */
	if (nsizes >= 2) {
		size_t lo = sizes[0], hi = sizes[0];
		for (int i = 1; i < nsizes; i++) {
			if (sizes[i] < lo)
				lo = sizes[i];
			if (sizes[i] > hi)
				hi = sizes[i];
		}
		for (int d = 0; d < ndirs; d++) {
			const char *fs = fs_name(dirs[d]);
			for (int cpu = 0; cpu < 2; cpu++) {
				double a = row_median(fs, lo, "get-hit", SESSDB, cpu);
				double z = row_median(fs, hi, "get-hit", SESSDB, cpu);
				if (a > 0 && z > 0)
					printf("scaling %s (%s): get-hit cost at %zu records / "
					    "at %zu records = %.2f (%.2f us vs %.2f us)\n", fs,
					    cpu ? "CPU time" : "wall clock", hi, lo, a / z,
					    1e6 / z, 1e6 / a);
			}
		}
	}
	printf("%s\n", targets);
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_store [--quick] [--runs N] [--secs S] "
	    "[--sizes N,N,...] [--dir DIR]... [--payload BYTES] "
	    "[--sweep-records N] [--size-records N] [--no-matrix] [--no-sweep] "
	    "[--ops OP,...] [--sessdb-only] [--count N] [--no-latency] "
	    "[--latency-records N] [--latency-secs S] [--writer-rate N] "
	    "[--max-entries N] [--key FILE]\n");
	exit(2);
}

/* parse_args - the options; the quick mode's sizes first, so that options
 * given with --quick still count. */
static void
parse_args(int argc, char **argv)
{
	const char *q = getenv("SESSDB_BENCH_QUICK");

	quick = q != NULL && *q != '\0' && strcmp(q, "0") != 0;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
	if (quick) {
		runs = 1;
		phase_secs = 0.03;
		phase2_secs = 0.1;
		sizes[0] = 1000;
		nsizes = 1;
		sweep_records = 20000;
		size_records = 10000;
		lat_records = 1000;
		lat_secs = 0.1;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0)
			continue;
		if (strcmp(a, "--no-matrix") == 0) {
			do_matrix = 0;
			continue;
		}
		if (strcmp(a, "--no-sweep") == 0) {
			do_sweep = 0;
			continue;
		}
		if (strcmp(a, "--sessdb-only") == 0) {
			sessdb_only = 1;
			continue;
		}
		if (strcmp(a, "--no-latency") == 0) {
			do_latency = 0;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--runs") == 0) {
			runs = atoi(v);
			if (runs < 1 || runs > MAX_RUNS)
				usage();
		} else if (strcmp(a, "--secs") == 0) {
			phase_secs = atof(v);
			phase2_secs = 2 * phase_secs;
			if (phase_secs <= 0)
				usage();
		} else if (strcmp(a, "--sizes") == 0) {
			char *copy = strdup(v), *tok, *save = NULL;
			nsizes = 0;
			for (tok = strtok_r(copy, ",", &save); tok != NULL && nsizes <
			    MAX_SIZES; tok = strtok_r(NULL, ",", &save))
				sizes[nsizes++] = (size_t)strtoull(tok, NULL, 10);
			free(copy);
			for (int k = 0; k < nsizes; k++)
				if (sizes[k] < 2)
					usage();
		} else if (strcmp(a, "--count") == 0) {
			op_count = strtoull(v, NULL, 10);
			if (op_count < 1)
				usage();
		} else if (strcmp(a, "--max-entries") == 0) {
			max_entries = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--key") == 0) {
			key_file = v;
		} else if (strcmp(a, "--latency-records") == 0) {
			lat_records = (size_t)strtoull(v, NULL, 10);
			if (lat_records < 2)
				usage();
		} else if (strcmp(a, "--latency-secs") == 0) {
			lat_secs = atof(v);
			if (lat_secs <= 0)
				usage();
		} else if (strcmp(a, "--writer-rate") == 0) {
			writer_rate = (unsigned)strtoul(v, NULL, 10);
			if (writer_rate < 1 || writer_rate > 1000000)
				usage();
		} else if (strcmp(a, "--ops") == 0) {
			only_ops = v;
		} else if (strcmp(a, "--dir") == 0) {
			if (ndirs == MAX_DIRS)
				usage();
			dirs[ndirs++] = v;
		} else if (strcmp(a, "--payload") == 0) {
			payload_len = (size_t)strtoul(v, NULL, 10);
			if (payload_len < 1 || payload_len > 4096)
				usage();
		} else if (strcmp(a, "--sweep-records") == 0) {
			sweep_records = (size_t)strtoull(v, NULL, 10) & ~(size_t)1;
			if (sweep_records < 2)
				usage();
		} else if (strcmp(a, "--size-records") == 0) {
			size_records = (size_t)strtoull(v, NULL, 10);
			if (size_records < 1)
				usage();
		} else {
			usage();
		}
	}
	if (ndirs == 0) {
		dirs[ndirs++] = "/dev/shm";
		dirs[ndirs++] = "/var/tmp";
	}
}

/* make_dirs - a private directory under each base directory that is a
 * writable directory; dirs[] then names those, tmpdirs[] owns them. */
static void
make_dirs(char *tmpdirs[MAX_DIRS])
{
	int nd = 0;

	for (int d = 0; d < ndirs; d++) {
		char tmpl[PATH_MAX];
		struct stat st;

		if (stat(dirs[d], &st) == -1 || !S_ISDIR(st.st_mode) ||
		    access(dirs[d], W_OK) != 0) {
			printf("== %s: not a writable directory, skipped\n", dirs[d]);
			continue;
		}
		snprintf(tmpl, sizeof(tmpl), "%s/sessdb-bench.XXXXXX", dirs[d]);
		if (mkdtemp(tmpl) == NULL)
			tc_die(PROG, "mkdtemp %s: %s", tmpl, strerror(errno));
		tmpdirs[nd] = strdup(tmpl);
		dirs[nd] = tmpdirs[nd];
		nd++;
	}
	ndirs = nd;
	if (ndirs == 0)
		tc_die(PROG, "no usable directory");
}

int
main(int argc, char **argv)
{
	char *tmpdirs[MAX_DIRS];

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	rng_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	payload = malloc(payload_len);
	if (payload == NULL)
		tc_die(PROG, "out of memory");
	{
		uint64_t s = 42;
		for (size_t i = 0; i < payload_len; i++)
			payload[i] = (unsigned char)tc_splitmix(&s);
	}
	expires_at = (int64_t)time(NULL) + TTL;
	make_dirs(tmpdirs);
	printf("bench_store: %s mode, %d run(s), %.2f s per phase (%.2f s with 2 "
	    "processes), payload %zu bytes (pseudo-random, TLS 1.3 DER-sized)\n",
	    quick ? "quick" : "full", runs, phase_secs, phase2_secs, payload_len);
	for (int d = 0; d < ndirs; d++)
		printf("directory %s: %s\n", dirs[d], fs_name(dirs[d]));
	fflush(stdout);

	for (int d = 0; d < ndirs && only_ops == NULL; d++)
		syscall_floor(dirs[d]);
	if (do_matrix)
		for (int i = 0; i < nsizes; i++)
			for (int d = 0; d < ndirs; d++)
				matrix(dirs[d], sizes[i]);
	if (do_sweep)
		for (int d = 0; d < ndirs; d++) {
			file_size(dirs[d]);
			sweep_bench(dirs[d]);
		}
	if (do_latency && wanted("latency")) {
		lat_ns = malloc(LAT_MAX_SAMPLES * sizeof(*lat_ns));
		if (lat_ns == NULL)
			tc_die(PROG, "out of memory");
		for (int d = 0; d < ndirs; d++)
			latency(dirs[d], d);
	}
	if (do_matrix)
		report();
	if (lat_ns != NULL)
		latency_report();
	free(lat_ns);
	for (int d = 0; d < ndirs; d++) {
		rmdir(dirs[d]);
		free(tmpdirs[d]);
	}
	free(payload);
	free(rows);
	if (tc_check_failures) {
		printf("bench_store: %d sanity check(s) FAILED\n", tc_check_failures);
		return 1;
	}
	printf("bench_store: all sanity checks passed\n");
	return 0;
}
