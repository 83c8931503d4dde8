/*
 * NAME
 *	soak_store - many processes of mixed operations on one store for
 *	minutes, with sweeps and stats from the operator tool meanwhile
 *
 * SYNOPSIS
 *	soak_store --sessdump PATH [--minutes M] [--procs N] [--db PATH]
 *
 * DESCRIPTION
 *	A manual long run (not in CI; scripts/soak.sh runs it).  N processes
 *	(default 16) run put, get, take and delete at random on one store
 *	for M minutes (default 10), each on keys of its own (its number in
 *	the ID), remembering what it was told: a put acknowledged (0) must
 *	be read back byte for byte until it expires, is taken or deleted; a
 *	key taken or deleted must stay a miss.  A tenth of the puts expire
 *	within two seconds, so the sweeps have work.  Meanwhile the parent
 *	runs `sessdump --db DB stats` every second and `sessdump --db DB
 *	sweep` every five, on the same store.  At the end each process reads
 *	every key it holds once more.
 *
 *	Reported per run: operations, acknowledged puts, errors (a call
 *	that returned -1), lock timeouts (sessdb_stats), lost acknowledged
 *	records, wrong records (other bytes, or a key that should be gone),
 *	stats and sweep runs and their failures.  Every one but the first two
 *	counts must be 0.
 *
 * EXIT STATUS
 *	0 if every check held, 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define KEYS		512	/* keys per process */
#define VAL_MAX		600
#define SHORT_TTL	2	/* seconds, for the records sweeps remove */

/* What one process saw; in shared memory for the parent. */
struct tally {
	uint64_t	ops, acked, errors, lock_timeouts, lost, wrong;
};

/* What a process knows of one of its keys. */
struct mine {
	int		present;	/* an acknowledged put, not since removed */
	uint32_t	version;
	int64_t		expires;
};

static struct tc_notes *notes;
static struct tally *tallies;
static const char *db_path;

/* value_of - the bytes of (owner, key, version): length and content
 * derived from them, so a wrong record cannot pass by chance. */
static size_t
value_of(unsigned char *buf, unsigned owner, unsigned key, uint32_t version)
{
	uint64_t s = (uint64_t)owner << 40 | (uint64_t)key << 20 | version;
	size_t len = 16 + (size_t)(tc_splitmix(&s) % (VAL_MAX - 16));

	tc_put_be32(buf, owner);
	tc_put_be32(buf + 4, key);
	tc_put_be32(buf + 8, version);
	tc_put_be32(buf + 12, (uint32_t)len);
	tc_random_bytes(buf + 16, len - 16, &s);
	return len;
}

/* check_read - a get or take result against what the process knows. */
static void
check_read(struct tally *t, unsigned w, unsigned k, const struct mine *m,
    int rc, const void *data, size_t len, int64_t now, const char *op)
{
	unsigned char want[VAL_MAX];
	size_t want_len;

	if (rc == -1)
		return;		/* counted by the caller */
	if (!m->present) {
		if (rc == SESSDB_OK) {
			t->wrong++;
			tc_note(notes, "worker %u key %u: %s found a record "
			    "that should be gone", w, k, op);
		}
		return;
	}
	/* now is read after the call: a second of slack either way */
	if (rc == SESSDB_MISS) {
		if (now < m->expires - 1) {
			t->lost++;
			tc_note(notes, "worker %u key %u: %s missed version "
			    "%u (acknowledged, expires in %lld s)", w, k, op,
			    m->version, (long long)(m->expires - now));
		}
		return;
	}
	if (now > m->expires + 1) {
		t->wrong++;
		tc_note(notes, "worker %u key %u: %s returned a record "
		    "expired %lld s ago", w, k, op, (long long)(now - m->expires));
	}
	want_len = value_of(want, w, k, m->version);
	if (len != want_len || memcmp(data, want, len) != 0) {
		t->wrong++;
		tc_note(notes, "worker %u key %u: %s returned other bytes "
		    "than version %u", w, k, op, m->version);
	}
}

/* one_op - a random operation on a random key of worker w. */
static void
one_op(struct sessdb *db, unsigned w, struct mine *keys, struct tally *t,
    uint64_t *rs)
{
	unsigned k = (unsigned)(tc_splitmix(rs) % KEYS);
	struct mine *m = &keys[k];
	unsigned char id[SESSDB_ID_MAX], val[VAL_MAX];
	size_t id_len = tc_make_id(id, 16, 0x50, w, k), len;
	int64_t now = time(NULL);
	void *data = NULL;
	unsigned op = (unsigned)(tc_splitmix(rs) % 10);
	int rc;

	t->ops++;
	if (op < 4) {			/* put: 40% */
		uint32_t v = m->version + 1;
		int64_t exp = now + (tc_splitmix(rs) % 10 == 0 ? SHORT_TTL : 3600);

		len = value_of(val, w, k, v);
		rc = sessdb_put(db, SESSDB_NS_SERVER, id, id_len, val, len, exp);
		m->version = v;		/* a failed put may or may not land */
		if (rc == SESSDB_OK) {
			t->acked++;
			m->present = 1;
			m->expires = exp;
			return;
		}
		m->present = 0;
		m->expires = 0;
		if (rc == SESSDB_FULL)
			tc_note(notes, "worker %u: put declined (no cap set)", w);
	} else if (op < 8) {		/* get: 40% */
		rc = sessdb_get(db, SESSDB_NS_SERVER, id, id_len, &data, &len,
		    NULL);
		check_read(t, w, k, m, rc, data, len, time(NULL), "get");
		sessdb_free(data);
	} else if (op < 9) {		/* take: 10% */
		rc = sessdb_take(db, SESSDB_NS_SERVER, id, id_len, &data, &len,
		    NULL);
		check_read(t, w, k, m, rc, data, len, time(NULL), "take");
		sessdb_free(data);
		if (rc != -1)
			m->present = 0;
	} else {			/* delete: 10% */
		rc = sessdb_delete(db, SESSDB_NS_SERVER, id, id_len);
		if (rc == 0)
			m->present = 0;
	}
	if (rc == -1) {
		t->errors++;
		tc_note(notes, "worker %u op %u: %s", w, op, sessdb_error(db));
	}
}

/* final_pass - every key once more, read without changing it. */
static void
final_pass(struct sessdb *db, unsigned w, struct mine *keys, struct tally *t)
{
	for (unsigned k = 0; k < KEYS; k++) {
		unsigned char id[SESSDB_ID_MAX];
		size_t id_len = tc_make_id(id, 16, 0x50, w, k), len;
		void *data = NULL;
		int rc;

		rc = sessdb_get(db, SESSDB_NS_SERVER, id, id_len, &data, &len,
		    NULL);
		if (rc == -1) {
			t->errors++;
			tc_note(notes, "worker %u final get: %s", w,
			    sessdb_error(db));
		}
		check_read(t, w, k, &keys[k], rc, data, len, time(NULL),
		    "final get");
		sessdb_free(data);
	}
}

/* worker - operations until the deadline; exits. */
static void
worker(unsigned w, double deadline)
{
	struct sessdb_options o = { .lock_timeout_ms = 1000 };
	struct mine *keys = calloc(KEYS, sizeof(*keys));
	struct tally *t = &tallies[w];
	struct sessdb_stats st;
	uint64_t rs = 0x50a4 + w;
	struct sessdb *db;

	if (keys == NULL || (db = tc_open(db_path, &o)) == NULL) {
		tc_note(notes, "worker %u: cannot open the store", w);
		_exit(1);
	}
	while (tc_mono_secs() < deadline)
		for (int i = 0; i < 100; i++)
			one_op(db, w, keys, t, &rs);
	final_pass(db, w, keys, t);
	sessdb_stats(db, &st);
	t->lock_timeouts = st.lock_timeouts;
	if (st.lock_timeouts)
		tc_note(notes, "worker %u: %" PRIu64 " lock timeouts", w,
		    st.lock_timeouts);
	sessdb_close(db);
	free(keys);
	_exit(0);
}

/* tool - run sessdump --db DB CMD, output discarded; 1 if it exited 0. */
static int
tool(const char *sessdump, const char *cmd)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execl(sessdump, sessdump, "--db", db_path, cmd, (char *)NULL);
		_exit(127);
	}
	if (pid == -1 || waitpid(pid, &st, 0) != pid)
		return 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		tc_note(notes, "sessdump %s: %s %d", cmd, WIFEXITED(st) ?
		    "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) :
		    WTERMSIG(st));
		return 0;
	}
	return 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: soak_store --sessdump PATH [--minutes M] "
	    "[--procs N] [--db PATH]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sessdump", required_argument, NULL, 's' },
		{ "minutes", required_argument, NULL, 'm' },
		{ "procs", required_argument, NULL, 'p' },
		{ "db", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sessdump = NULL;
	double minutes = 10, start, deadline, next_sweep;
	unsigned procs = 16, stats_runs = 0, stats_bad = 0, sweeps = 0,
	    sweeps_bad = 0, failed = 0;
	char path[512];
	struct tally sum = { 0 };
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's': sessdump = optarg; break;
		case 'm': minutes = strtod(optarg, NULL); break;
		case 'p': procs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': db_path = optarg; break;
		default: usage();
		}
	}
	if (sessdump == NULL || minutes <= 0 || procs == 0 || procs > 256)
		usage();
	if (db_path == NULL) {
		if (tc_tmpdir_make("soak_store") == -1 ||
		    tc_fresh(path, sizeof(path), "soak") == -1)
			return 1;
		db_path = path;
	}
	notes = mmap(NULL, sizeof(*notes), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tallies = mmap(NULL, procs * sizeof(*tallies), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (notes == MAP_FAILED || tallies == MAP_FAILED)
		return 1;
	start = tc_mono_secs();
	deadline = start + minutes * 60;
	printf("soak_store: %u processes, %.1f minutes on %s\n", procs, minutes,
	    db_path);
	fflush(stdout);
	for (unsigned w = 0; w < procs; w++) {
		pid_t pid = fork();

		if (pid == 0)
			worker(w, deadline);
		if (pid == -1)
			return 1;
	}
	next_sweep = start + 5;
	while (tc_mono_secs() < deadline) {
		double t0 = tc_mono_secs();

		stats_runs++;
		stats_bad += !tool(sessdump, "stats");
		if (tc_mono_secs() >= next_sweep) {
			sweeps++;
			sweeps_bad += !tool(sessdump, "sweep");
			next_sweep += 5;
		}
		if (tc_mono_secs() - t0 < 1)
			tc_sleep_ms((unsigned)((1 - (tc_mono_secs() - t0)) * 1000));
	}
	for (unsigned w = 0; w < procs; w++) {
		int st;

		if (wait(&st) == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed++;
	}
	for (unsigned w = 0; w < procs; w++) {
		sum.ops += tallies[w].ops;
		sum.acked += tallies[w].acked;
		sum.errors += tallies[w].errors;
		sum.lock_timeouts += tallies[w].lock_timeouts;
		sum.lost += tallies[w].lost;
		sum.wrong += tallies[w].wrong;
	}
	printf("soak_store: %.1f s, %" PRIu64 " operations (%.0f/s), %" PRIu64
	    " acknowledged puts\n", tc_mono_secs() - start, sum.ops,
	    (double)sum.ops / (tc_mono_secs() - start), sum.acked);
	printf("soak_store: errors %" PRIu64 ", lock timeouts %" PRIu64
	    ", lost acknowledged %" PRIu64 ", wrong %" PRIu64
	    ", workers failed %u\n", sum.errors, sum.lock_timeouts, sum.lost,
	    sum.wrong, failed);
	printf("soak_store: sessdump stats %u runs (%u failed), sweep %u runs "
	    "(%u failed)\n", stats_runs, stats_bad, sweeps, sweeps_bad);
	if (notes->failures > 0 || failed > 0 || sum.errors || sum.lost ||
	    sum.wrong || sum.lock_timeouts || stats_bad || sweeps_bad) {
		printf("soak_store: FAILED (%u notes; first: %s)\n",
		    notes->failures, notes->first[0]);
		return 1;
	}
	printf("soak_store: passed\n");
	if (tc_dir[0] != '\0')
		tc_tmpdir_remove();
	return 0;
}
