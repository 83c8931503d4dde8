/*
 * NAME
 *	test_corrupt_file - a damaged GDBM file never crashes the store and
 *	never yields a wrong record
 *
 * DESCRIPTION
 *	A store with NKEYS known records is damaged in many ways: emptied,
 *	truncated to various lengths, replaced with garbage, with bytes
 *	overwritten at random places (header, directory, buckets, data), with
 *	whole blocks zeroed.  For each damage, in a child process (so a crash
 *	or a hang is reported as such, not taken for the runner's own):
 *	sessdb_open succeeds; every key reads as a miss or as exactly the
 *	bytes written under it, never anything else; the store then takes
 *	and returns a new record; after a sweep, foreach finds no undecodable
 *	record.  Structural damage (empty, truncated, garbage file) must be
 *	repaired or moved aside with a message to the log callback.
 *
 *	The damage strikes a store in use: the copy is opened intact first,
 *	so its lock file knows it as the store, then damaged in place.  The
 *	same damaged file with no lock file to vouch for it is refused and
 *	left untouched ("damaged file, no lock file").
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define NKEYS		400
#define PAYLOAD_MAX	3000
#define CASE_TIMEOUT_S	60

static char path[300];
static char pristine[320];
static off_t pristine_size;

static size_t
make_id(unsigned char id[SESSDB_ID_MAX], unsigned key)
{
	size_t len = 8 + key % 25;

	id[0] = 'C';
	id[1] = (unsigned char)(key >> 8);
	id[2] = (unsigned char)key;
	for (size_t i = 3; i < len; i++)
		id[i] = (unsigned char)(key * 11 + i * 5);
	return len;
}

/* make_payload - what is stored under key: a description, then PRNG bytes. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned key)
{
	uint64_t s = 0xc0ffee00u ^ key;
	uint64_t r = tc_splitmix(&s);
	size_t len = 4 + ((r & 15) == 0 ? (r >> 8) % 2900 : (r >> 8) % 400);

	buf[0] = 'C';
	buf[1] = (unsigned char)(key >> 8);
	buf[2] = (unsigned char)key;
	buf[3] = 'C';
	tc_random_bytes(buf + 4, len - 4, &s);
	return len;
}

static struct sessdb_options
opts(void)
{
	struct sessdb_options o = { 0 };

	o.log = tc_log;
	return o;
}

/* make_pristine - a store with NKEYS records, kept as a copy. */
static int
make_pristine(void)
{
	struct sessdb_options o = opts();
	struct sessdb *db;
	struct stat st;

	snprintf(path, sizeof(path), "%s/corrupt.db", tc_dir);
	snprintf(pristine, sizeof(pristine), "%s/pristine.db", tc_dir);
	if ((db = tc_open(path, &o)) == NULL)
		return -1;
	for (unsigned k = 0; k < NKEYS; k++) {
		unsigned char id[SESSDB_ID_MAX], buf[PAYLOAD_MAX];
		size_t id_len = make_id(id, k), len = make_payload(buf, k);

		if (sessdb_put(db, NS, id, id_len, buf, len, time(NULL) + 86000) != 0) {
			printf("\n  put: %s\n", sessdb_error(db));
			sessdb_close(db);
			return -1;
		}
	}
	sessdb_close(db);
	if (tc_copy_file(path, pristine) != 0 || stat(pristine, &st) != 0)
		return -1;
	pristine_size = st.st_size;
	return 0;
}

/* What was done to the file. */
enum damage { D_EMPTY, D_TRUNCATE, D_GARBAGE, D_BYTES, D_ZERO_BLOCK };

struct damage_case {
	enum damage	kind;
	off_t		at;		/* truncate length, block offset */
	unsigned	seed;		/* D_BYTES, D_GARBAGE */
	unsigned	nbytes;		/* D_BYTES: how many bytes to overwrite */
	int		structural;	/* must be repaired or moved aside, logged */
};

/* adopt - open and close the intact copy: its lock file now knows it. */
static int
adopt(void)
{
	char err[512] = "";
	struct sessdb *db = sessdb_open(path, NULL, err, sizeof(err));

	if (db == NULL) {
		printf("\n  open intact copy: %s\n", err);
		return -1;
	}
	sessdb_close(db);
	return 0;
}

/* damage_file - a fresh copy of the pristine store, in use, then the
 * damage (in place, unless in_use is 0: then no lock file is left). */
static int
damage_file_as(const struct damage_case *c, int in_use)
{
	char lock_path[340];
	uint64_t s = c->seed;
	int fd;

	snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
	unlink(lock_path);
	if (tc_copy_file(pristine, path) != 0)
		return -1;
	if (in_use && adopt() == -1)
		return -1;
	if (!in_use)
		unlink(lock_path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd == -1)
		return -1;
	switch (c->kind) {
	case D_EMPTY:
		if (ftruncate(fd, 0) != 0)
			goto fail;
		break;
	case D_TRUNCATE:
		if (ftruncate(fd, c->at) != 0)
			goto fail;
		break;
	case D_GARBAGE:
		for (off_t off = 0; off < pristine_size; off += 8) {
			uint64_t r = tc_splitmix(&s);

			if (pwrite(fd, &r, 8, off) != 8)
				goto fail;
		}
		break;
	case D_BYTES:
		for (unsigned i = 0; i < c->nbytes; i++) {
			uint64_t r = tc_splitmix(&s);
			unsigned char b = (unsigned char)(r >> 56);
			/* Half of the damage lands in the first 8 KiB (header,
			 * directory, first bucket), the rest anywhere. */
			off_t off = (off_t)((r & 0xffffffffu) %
			    (uint64_t)((i & 1) ? pristine_size : 8192));

			if (pwrite(fd, &b, 1, off) != 1)
				goto fail;
		}
		break;
	case D_ZERO_BLOCK: {
		static const unsigned char zero[4096];

		if (pwrite(fd, zero, sizeof(zero), c->at) != (ssize_t)sizeof(zero))
			goto fail;
		break;
	}
	default:
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

static int
damage_file(const struct damage_case *c)
{
	return damage_file_as(c, 1);
}

struct census {
	unsigned	good;
	unsigned	bad;
	unsigned	foreign;
};

/* census_fn - foreach: a well-formed record must hold what we wrote. */
static int
census_fn(void *arg, const struct sessdb_record *rec)
{
	struct census *cs = arg;
	unsigned char want[PAYLOAD_MAX];
	unsigned key;

	if (rec->problem != NULL) {
		cs->bad++;
		return 0;
	}
	key = rec->id_len >= 3 ? (unsigned)(rec->id[1] << 8 | rec->id[2]) : 0;
	if (rec->id_len < 3 || rec->id[0] != 'C' || key >= NKEYS) {
		/* The probe record, or a key that is not ours. */
		if (!(rec->id_len == 5 && memcmp(rec->id, "probe", 5) == 0))
			cs->foreign++;
		return 0;
	}
	if (make_payload(want, key) != rec->len || memcmp(want, rec->data, rec->len) != 0)
		cs->foreign++;
	else
		cs->good++;
	return 0;
}

/*
 * run_case - in this (child) process: open the damaged store and check
 * it.  Returns the number of failures (printed).
 */
static int
run_case(const char *name)
{
	struct sessdb_options o = opts();
	struct sessdb_stats st;
	struct census cs;
	char err[512] = "";
	struct sessdb *db;
	unsigned hits = 0, misses = 0, errors = 0;
	int failures = 0;

	db = sessdb_open(path, &o, err, sizeof(err));
	if (db == NULL) {
		printf("\n  %s: open: got NULL (%s), want a usable store\n", name, err);
		return 1;
	}
	for (unsigned k = 0; k < NKEYS; k++) {
		unsigned char id[SESSDB_ID_MAX], want[PAYLOAD_MAX];
		size_t id_len = make_id(id, k), want_len = make_payload(want, k), len;
		void *data;
		int rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);

		if (rc == SESSDB_OK) {
			if (len != want_len || memcmp(data, want, len) != 0) {
				printf("\n  %s: key %u: got %zu bytes that differ from the "
				    "%zu written, want them or a miss\n", name, k, len,
				    want_len);
				failures++;
			}
			hits++;
			sessdb_free(data);
		} else if (rc == SESSDB_MISS) {
			misses++;
		} else {
			errors++;
		}
	}
	/* A get may fail (-1) once while it repairs what it found; after
	 * that the store must answer. */
	{
		static const unsigned char probe[] = "probe record";
		void *data;
		size_t len;
		int rc = sessdb_put(db, NS, "probe", 5, probe, sizeof(probe), 0);

		if (rc != 0) {
			rc = sessdb_put(db, NS, "probe", 5, probe, sizeof(probe), 0);
			if (rc != 0) {
				printf("\n  %s: put after the damage: got %d (%s), want 0\n",
				    name, rc, sessdb_error(db));
				failures++;
			}
		}
		rc = sessdb_get(db, NS, "probe", 5, &data, &len, NULL);
		if (rc != SESSDB_OK || len != sizeof(probe) ||
		    memcmp(data, probe, len) != 0) {
			printf("\n  %s: get after the damage: got %d (%s), want the "
			    "probe record\n", name, rc, rc == -1 ? sessdb_error(db) : "");
			failures++;
		}
		if (rc == SESSDB_OK)
			sessdb_free(data);
	}
	/* A sweep removes whatever does not decode; nothing foreign stays. */
	if (sessdb_sweep(db, 0, NULL, NULL, NULL) != 0)
		(void)sessdb_sweep(db, 0, NULL, NULL, NULL);
	memset(&cs, 0, sizeof(cs));
	if (sessdb_foreach(db, 0, census_fn, &cs) != 0) {
		memset(&cs, 0, sizeof(cs));
		if (sessdb_foreach(db, 0, census_fn, &cs) != 0) {
			printf("\n  %s: foreach: %s\n", name, sessdb_error(db));
			failures++;
		}
	}
	if (cs.bad != 0 || cs.foreign != 0) {
		printf("\n  %s: after a sweep: got %u undecodable and %u foreign "
		    "records, want none\n", name, cs.bad, cs.foreign);
		failures++;
	}
	if (cs.good > hits + errors) {
		/* foreach found records that get said were not there. */
		printf("\n  %s: foreach found %u good records, get only %u\n", name,
		    cs.good, hits);
		failures++;
	}
	sessdb_stats(db, &st);
	printf("  %-28s open ok, %3u hits %3u misses %u errors, %llu recoveries, "
	    "%llu corrupt records, %d log messages\n", name, hits, misses, errors,
	    (unsigned long long)st.recoveries, (unsigned long long)st.corrupt,
	    tc_log_calls);
	sessdb_close(db);
	return failures;
}

/* corrupt_files - 1 if "<db>.corrupt-*" files exist (then removed), else 0. */
static int
corrupt_files(void)
{
	char cmd[700];
	int rc;

	snprintf(cmd, sizeof(cmd), "ls '%s'.corrupt-* >/dev/null 2>&1", path);
	rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "rm -f '%s'.corrupt-*", path);
	if (system(cmd) != 0)
		return -1;
	return rc == 0;
}

static void
check_case(const char *name, const struct damage_case *c)
{
	int status, log_pipe[2];
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(damage_file(c), 0);
	CU_ASSERT_FATAL(pipe2(log_pipe, O_CLOEXEC) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid != -1);
	if (pid == 0) {
		int f;

		close(log_pipe[0]);
		alarm(CASE_TIMEOUT_S);	/* a hang is a failure, not a stuck suite */
		tc_log_reset();
		f = run_case(name);
		if (write(log_pipe[1], &tc_log_calls, sizeof(tc_log_calls)) < 0)
			f++;
		_exit(f == 0 ? 0 : 1);
	}
	close(log_pipe[1]);
	{
		int child_logs = 0;

		if (read(log_pipe[0], &child_logs, sizeof(child_logs)) !=
		    (ssize_t)sizeof(child_logs))
			child_logs = -1;
		close(log_pipe[0]);
		CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			printf("\n  %s: the store process died of signal %d (%s)\n", name,
			    WTERMSIG(status), WTERMSIG(status) == SIGALRM ? "hung" :
			    strsignal(WTERMSIG(status)));
		CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CU_ASSERT(corrupt_files() >= 0);
		if (c->structural) {
			/* Structural damage is repaired or moved aside, and said. */
			if (child_logs <= 0)
				printf("\n  %s: got no log message, want one about the "
				    "repair\n", name);
			CU_ASSERT(child_logs > 0);
		}
	}
}

/* file_bytes_equal - does path hold exactly the bytes of want_path? */
static int
same_bytes(const char *a, const char *b)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

/*
 * test_unvouched - damage to a file that no lock file knows as a store
 *	(copied from elsewhere, or not ours at all) is refused: open fails
 *	with a clear message, the file keeps its bytes, nothing is moved
 *	aside and no lock file is created beside it.
 */
static void
test_unvouched(void)
{
	static const struct damage_case cases[] = {
		{ D_EMPTY, 0, 0, 0, 1 },
		{ D_TRUNCATE, 100, 0, 0, 1 },
		{ D_TRUNCATE, 4096, 0, 0, 1 },
		{ D_GARBAGE, 0, 7, 0, 1 },
	};
	char lock_path[340], before[340], err[512];

	snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
	snprintf(before, sizeof(before), "%s/before.db", tc_dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sessdb_options o = opts();
		struct sessdb *db;

		CU_ASSERT_EQUAL_FATAL(damage_file_as(&cases[i], 0), 0);
		CU_ASSERT_EQUAL_FATAL(tc_copy_file(path, before), 0);
		err[0] = '\0';
		db = sessdb_open(path, &o, err, sizeof(err));
		if (db != NULL || strstr(err, "not a sessdb store") == NULL)
			printf("\n  unvouched case %zu: got %s (%s), want refusal "
			    "saying \"not a sessdb store\"\n", i,
			    db ? "a handle" : "NULL", err);
		CU_ASSERT_PTR_NULL(db);
		CU_ASSERT(strstr(err, "not a sessdb store") != NULL);
		sessdb_close(db);
		CU_ASSERT(same_bytes(path, before));
		CU_ASSERT(access(lock_path, F_OK) != 0);
		CU_ASSERT_EQUAL(corrupt_files(), 0);
	}
	unlink(before);
}

static void
test_empty_and_truncated(void)
{
	static const off_t lengths[] = { 1, 16, 64, 100, 511, 512, 1000, 4095,
	    4096, 4097, 8191, 8192, 12288 };
	struct damage_case c = { D_EMPTY, 0, 0, 0, 0 };
	char name[64];

	/* A zero-length file is what a process killed between creating and
	 * initialising the store leaves: it may simply be initialised. */
	check_case("zero-length file", &c);
	c.structural = 1;
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		c.kind = D_TRUNCATE;
		c.at = lengths[i];
		snprintf(name, sizeof(name), "truncated to %lld", (long long)c.at);
		check_case(name, &c);
	}
	for (int i = 1; i <= 7; i++) {
		c.kind = D_TRUNCATE;
		c.at = pristine_size * i / 8;
		c.structural = 0;	/* GDBM may not notice a short tail at once */
		snprintf(name, sizeof(name), "truncated to %d/8", i);
		check_case(name, &c);
	}
	c.at = pristine_size - 1;
	snprintf(name, sizeof(name), "one byte short");
	check_case(name, &c);
}

static void
test_garbage(void)
{
	char name[64];

	for (unsigned seed = 1; seed <= 3; seed++) {
		struct damage_case c = { D_GARBAGE, 0, seed, 0, 1 };

		snprintf(name, sizeof(name), "garbage file #%u", seed);
		check_case(name, &c);
	}
}

static void
test_random_bytes(void)
{
	static const unsigned counts[] = { 1, 2, 4, 8, 16, 64, 256 };
	char name[64];

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		for (unsigned seed = 1; seed <= 8; seed++) {
			struct damage_case c = { D_BYTES, 0, seed * 7919 + (unsigned)i,
			    counts[i], 0 };

			snprintf(name, sizeof(name), "%u random bytes #%u", counts[i], seed);
			check_case(name, &c);
		}
	}
}

static void
test_zeroed_blocks(void)
{
	char name[64];

	for (off_t at = 0; at + 4096 <= pristine_size; at += 4096) {
		struct damage_case c = { D_ZERO_BLOCK, at, 0, 0, at == 0 };

		snprintf(name, sizeof(name), "zeroed block at %lld", (long long)at);
		check_case(name, &c);
	}
}

static const struct tc_case cases[] = {
	{ "empty and truncated files", test_empty_and_truncated },
	{ "garbage files", test_garbage },
	{ "random bytes overwritten", test_random_bytes },
	{ "zeroed blocks", test_zeroed_blocks },
	{ "damaged file, no lock file", test_unvouched },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("corrupt file", cases, NULL, NULL),
	};

	if (tc_tmpdir_make("test_corrupt_file") != 0)
		return 2;
	if (make_pristine() != 0) {
		fprintf(stderr, "cannot build the store to damage\n");
		return 2;
	}
	return tc_run(suites, TC_NELEM(suites));
}
