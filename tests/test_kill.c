/*
 * NAME
 *	test_kill - a writer SIGKILLed at random moments, and a lock holder
 *	that hangs
 *
 * DESCRIPTION
 *	kill rounds: each round forks a child that opens the store and writes
 *	in a loop (puts, deletes, takes, some gets), announcing each call on
 *	a pipe before making it (BEGIN) and again after it returned (DONE),
 *	so the parent knows which operations were acknowledged and which one,
 *	at most, was in flight.  The parent kills the child with SIGKILL
 *	after a random delay (0 to a few ms: during sessdb_open, between
 *	calls, inside GDBM calls), then opens the store with a fresh handle
 *	and checks every key: an acknowledged record that was not deleted
 *	must be there with exactly its bytes, a deleted one must be absent,
 *	the key in flight may be in either state (a put in flight may also
 *	lose both versions: GDBM may reuse the replaced record's space for the
 *	new one; counted and printed) - unless GDBM could not recover
 *	everything and the damaged file was moved aside ("<db>.corrupt-*"), in
 *	which case records may be missing (and undecodable leftovers of the
 *	rebuild must go with a sweep) but the store must work.  No record may
 *	ever decode wrong or hold other bytes than were written under its key,
 *	and foreach finds nothing undecodable.  A failing round keeps the file
 *	as the writer left it ("<db>.as-killed-round-N") for a post-mortem.
 *	A long-lived handle of the parent, kept open across all rounds, reads
 *	and writes too: it must never read through state a killed writer
 *	left stale.
 *
 *	hung lock holder: a child holds flock LOCK_EX (then LOCK_SH) on
 *	"<db>.lock" and sleeps; calls that need the lock fail after
 *	lock_timeout_ms with an error naming the lock, and are counted.
 *
 *	Rounds are reduced under valgrind (SESSDB_UNDER_VALGRIND set).  A
 *	manual long run: SESSDB_KILL_ROUNDS=1000 build/tests/test_kill (the
 *	summary line gives rounds, records lost with a moved-aside file, and
 *	wrong records).
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define NKEYS		1200		/* keys the killed writers use */
#define PARENT_KEY	NKEYS		/* written by the parent's long-lived handle */
#define ROUNDS		300
#define ROUNDS_VG	50
#define MAX_DELAY_US	4000
#define PAYLOAD_MAX	6200

enum { M_BEGIN = 1, M_DONE, M_FAIL, M_READY };
enum { OP_PUT = 1, OP_DELETE, OP_TAKE, OP_GET };

/* One pipe message from the writer: at most PIPE_BUF, so never torn. */
struct msg {
	uint8_t		type;
	uint8_t		op;
	uint16_t	key;
	uint32_t	version;
	int32_t		rc;
	uint32_t	got;	/* M_FAIL: the version the writer saw */
};

static char path[300];
static uint32_t model[NKEYS + 1];	/* acknowledged version per key; 0 = absent */

/* make_id - 4..32 bytes: 'K', 0, key (big-endian), then filler. */
static size_t
make_id(unsigned char id[SESSDB_ID_MAX], unsigned key)
{
	return tc_make_id(id, 4 + (key * 13) % 29, 'K', 0, key);
}

/* make_payload - the bytes written under key at version: an 8-byte
 * self-description, then PRNG bytes; 8..6100 bytes. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned key, uint32_t version)
{
	uint64_t s = (uint64_t)key << 32 ^ version;
	uint64_t r = tc_splitmix(&s);
	size_t len = 8 + ((r & 7) == 0 ? (r >> 8) % 6000 : (r >> 8) % 900);

	tc_payload_fill(buf, len, 'K', key, version, &s);
	return len;
}

/* payload_version - the version of a payload that is exactly what was
 * written under key at that version, or 0 if the bytes are anything else. */
static uint32_t
payload_version(const unsigned char *data, size_t len, unsigned key)
{
	return tc_payload_version(data, len, 'K', key, make_payload, PAYLOAD_MAX);
}

static struct sessdb_options
opts(void)
{
	struct sessdb_options o = { 0 };

	o.log = tc_log;
	return o;
}

static struct sessdb *
open_store(const struct sessdb_options *o)
{
	return tc_open(path, o);
}

static void
fresh(const char *name)
{
	CU_ASSERT_EQUAL(tc_fresh(path, sizeof(path), name), 0);
}

/* count_corrupt - how many "<db>.corrupt-*" files exist. */
static unsigned
count_corrupt(void)
{
	const char *base = strrchr(path, '/') + 1;
	char prefix[300];
	unsigned n = 0;
	struct dirent *de;
	DIR *d = opendir(tc_dir);

	snprintf(prefix, sizeof(prefix), "%s.corrupt-", base);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static int
put_key(struct sessdb *db, unsigned key, uint32_t version)
{
	unsigned char id[SESSDB_ID_MAX], buf[PAYLOAD_MAX];
	size_t id_len = make_id(id, key), len = make_payload(buf, key, version);

	return sessdb_put(db, NS, id, id_len, buf, len, time(NULL) + 3600);
}

/* ---- the writer that gets killed ---- */

static void
send_msg(int fd, uint8_t type, uint8_t op, unsigned key, uint32_t version,
    int rc, uint32_t got)
{
	struct msg m = { type, op, (uint16_t)key, version, rc, got };

	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(4);
}

/* writer_child - write until killed; the model it inherited is exact. */
static void
writer_child(int fd, uint32_t base, uint64_t seed)
{
	struct sessdb_options o = opts();
	struct sessdb *db;

	o.log = NULL;
	db = sessdb_open(path, &o, NULL, 0);
	if (db == NULL) {
		send_msg(fd, M_FAIL, 0, 0, 0, -2, 0);
		_exit(3);
	}
	send_msg(fd, M_READY, 0, 0, 0, 0, 0);
	for (uint32_t i = 0; i < 0xffff; i++) {
		uint32_t version = base + i, got = 0;
		unsigned pick = (unsigned)(tc_splitmix(&seed) % 100);
		unsigned key = (unsigned)(tc_splitmix(&seed) % NKEYS);
		unsigned char id[SESSDB_ID_MAX];
		size_t id_len = make_id(id, key), len;
		uint8_t op = pick < 70 ? OP_PUT : pick < 82 ? OP_DELETE :
		    pick < 90 ? OP_TAKE : OP_GET;
		void *data = NULL;
		int rc;

		send_msg(fd, M_BEGIN, op, key, version, 0, 0);
		switch (op) {
		case OP_PUT:
			rc = put_key(db, key, version);
			if (rc == 0)
				model[key] = version;
			break;
		case OP_DELETE:
			rc = sessdb_delete(db, NS, id, id_len);
			if (rc == 0)
				model[key] = 0;
			break;
		default:
			if (op == OP_TAKE)
				rc = sessdb_take(db, NS, id, id_len, &data, &len, NULL);
			else
				rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
			if (rc == SESSDB_OK)
				got = payload_version(data, len, key);
			if ((rc == SESSDB_OK && got != model[key]) ||
			    (rc == SESSDB_MISS && model[key] != 0))
				send_msg(fd, M_FAIL, op, key, model[key], rc, got);
			if (rc == SESSDB_OK && op == OP_TAKE)
				model[key] = 0;
			sessdb_free(data);
			break;
		}
		send_msg(fd, M_DONE, op, key, version, rc, got);
	}
	pause();
}

/* ---- the parent's checks ---- */

/* The operation that may have been in flight at the kill. */
struct inflight {
	int		active;
	uint8_t		op;
	unsigned	key;
	uint32_t	alt;	/* the key's state if the operation took effect */
};

struct tally {
	unsigned	missing;	/* acknowledged record not found */
	unsigned	inflight_lost;	/* the record a put in flight replaced:
					   neither version found */
	unsigned	wrong;		/* bytes not as written, or a wrong version */
	unsigned	errors;		/* get returned -1 */
};

/* check_keys - read every key; the model must hold except that the key in
 * flight may show either state.  seen[] gets what was found. */
static void
check_keys(struct sessdb *db, const char *who, const struct inflight *fl,
    uint32_t seen[NKEYS + 1], struct tally *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned k = 0; k <= NKEYS; k++) {
		unsigned char id[SESSDB_ID_MAX];
		size_t id_len = make_id(id, k), len;
		void *data;
		uint32_t got = 0, want = model[k];
		int maybe = fl != NULL && fl->active && fl->key == k;
		int rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);

		if (rc == -1) {
			if (t->errors++ < 3)
				printf("\n  %s: get key %u: %s\n", who, k, sessdb_error(db));
			seen[k] = want;
			continue;
		}
		if (rc == SESSDB_OK) {
			got = payload_version(data, len, k);
			sessdb_free(data);
			if (got == 0) {
				seen[k] = want;
				if (t->wrong++ < 3)
					printf("\n  %s: key %u: got %zu bytes that were never "
					    "written under it\n", who, k, len);
				continue;
			}
		}
		seen[k] = got;
		if (got == want || (maybe && got == fl->alt))
			continue;
		if (got == 0 && maybe && fl->op == OP_PUT) {
			/* GDBM may reuse the replaced record's space for the new
			 * one: a kill in between leaves neither.  Reported. */
			t->inflight_lost++;
			printf("\n  %s: key %u: the put in flight lost both its old "
			    "version %u and its new one\n", who, k, (unsigned)want);
		} else if (got == 0) {
			if (t->missing++ < 3)
				printf("\n  %s: key %u: got a miss, want version %u\n",
				    who, k, (unsigned)want);
		} else if (t->wrong++ < 3) {
			printf("\n  %s: key %u: got version %u, want %u%s\n", who, k,
			    (unsigned)got, (unsigned)want, maybe ? " (or the one in "
			    "flight)" : "");
		}
	}
}

struct census {
	unsigned	records;	/* well formed and as the model says */
	unsigned	bad;		/* anything else */
};

/* census_fn - foreach: every record decodes and matches the model. */
static int
census_fn(void *arg, const struct sessdb_record *rec)
{
	struct census *cs = arg;
	unsigned key;
	long k;

	if (rec->problem != NULL) {
		if (cs->bad++ < 3) {
			printf("\n  foreach: got a record with problem \"%s\", want "
			    "none; key", rec->problem);
			for (size_t i = 0; i < rec->key_len && i < 8; i++)
				printf(" %02x", rec->key[i]);
			printf(" (%zu bytes), value of %zu bytes\n", rec->key_len,
			    rec->len);
		}
		return 0;
	}
	k = tc_id_key(rec->id, rec->id_len, 'K');
	key = k < 0 ? 0 : (unsigned)k;
	if (k < 0 || key > NKEYS ||
	    payload_version(rec->data, rec->len, key) != model[key]) {
		if (cs->bad++ < 3)
			printf("\n  foreach: record for key %u: got version %u, want "
			    "%u\n", key, (unsigned)payload_version(rec->data, rec->len,
			    key), key <= NKEYS ? (unsigned)model[key] : 0);
		return 0;
	}
	cs->records++;
	return 0;
}

static unsigned
model_count(void)
{
	unsigned n = 0;

	for (unsigned k = 0; k <= NKEYS; k++)
		n += model[k] != 0;
	return n;
}

/* What the kill rounds counted. */
struct totals {
	unsigned	acked;		/* operations the writers acknowledged */
	unsigned	inflight_kills;	/* kills with an operation in flight */
	unsigned	early_kills;	/* kills before the writer said a word */
	unsigned	recovered;	/* rounds repaired in place */
	unsigned	moved;		/* rounds that moved a damaged file aside */
	unsigned	moved_lost;	/* acknowledged records lost with them */
	unsigned	debris;		/* undecodable leftovers of those, swept */
	unsigned	inflight_lost;	/* puts in flight that lost both versions */
	/* failures: */
	unsigned	failures;	/* the writer misbehaved or saw wrong data */
	unsigned	child_errors;	/* a writer's call returned -1 */
	unsigned	silent_loss;	/* acknowledged, lost, nothing moved aside */
	unsigned	wrong;		/* bytes never written under the key */
	unsigned	errors;		/* a fresh handle's get returned -1 */
	unsigned	bad_records;	/* undecodable or unexpected in foreach */
	unsigned	lived_bad;	/* the long-lived handle disagreed */
};

/* bad_count - the failures counted so far. */
static unsigned
bad_count(const struct totals *tot)
{
	return tot->failures + tot->child_errors + tot->silent_loss +
	    tot->wrong + tot->errors + tot->bad_records + tot->lived_bad;
}

/* read_writer - take the writer's messages: the model follows what it
 * acknowledged, fl what it had begun and not finished. */
static int
read_writer(int fd, int round, struct inflight *fl, struct totals *tot)
{
	struct msg m;
	int msgs = 0;

	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		msgs++;
		switch (m.type) {
		case M_BEGIN:
			fl->active = 1;
			fl->op = m.op;
			fl->key = m.key;
			fl->alt = m.op == OP_PUT ? m.version :
			    m.op == OP_GET ? model[m.key] : 0;
			break;
		case M_DONE:
			if (m.rc == -1) {
				/* Failed: its effect is unknown; keep it "in flight". */
				tot->child_errors++;
				printf("\n  round %d: writer op %u on key %u returned -1\n",
				    round, m.op, m.key);
				break;
			}
			fl->active = 0;
			tot->acked++;
			if (m.op == OP_PUT && m.rc == 0)
				model[m.key] = m.version;
			else if ((m.op == OP_DELETE && m.rc == 0) ||
			    (m.op == OP_TAKE && m.rc == SESSDB_OK))
				model[m.key] = 0;
			break;
		case M_READY:
			break;
		case M_FAIL:
			tot->failures++;
			printf("\n  round %d: writer %s key %u: got rc %d version %u, "
			    "want version %u\n", round, m.op == OP_TAKE ? "take" :
			    m.op == OP_GET ? "get" : "open", m.key, m.rc,
			    (unsigned)m.got, (unsigned)m.version);
			break;
		default:
			tot->failures++;
			break;
		}
	}
	return msgs;
}

/* kill_writer - act: fork a writer, let it run delay_us (one round in
 * eight it dies while it starts and opens the store), SIGKILL it, and
 * learn what it acknowledged. */
static void
kill_writer(int round, uint64_t *rng, unsigned max_delay, struct inflight *fl,
    struct totals *tot)
{
	int early = tc_splitmix(rng) % 8 == 0;
	unsigned delay = (unsigned)(tc_splitmix(rng) %
	    (early ? max_delay / 2 : max_delay));
	int p[2], status;
	struct msg m;
	pid_t pid;

	CU_ASSERT_FATAL(pipe2(p, O_CLOEXEC) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid != -1);
	if (pid == 0) {
		close(p[0]);
		writer_child(p[1], (uint32_t)(round + 1) << 16, tc_splitmix(rng));
		_exit(0);
	}
	close(p[1]);
	if (!early && (read(p[0], &m, sizeof(m)) != (ssize_t)sizeof(m) ||
	    m.type != M_READY)) {
		printf("\n  round %d: writer did not start\n", round);
		tot->failures++;
	}
	if (delay > 0) {
		struct timespec ts = { 0, (long)delay * 1000 };

		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status)) {
		printf("\n  round %d: writer exited with status %d before the "
		    "kill\n", round, WEXITSTATUS(status));
		tot->failures++;
	}
	if (read_writer(p[0], round, fl, tot) == 0 && early)
		tot->early_kills++;
	close(p[0]);
	if (fl->active)
		tot->inflight_kills++;
}

/* check_census - nothing undecodable, nothing unexpected, nothing left
 * out.  A repair may leave undecodable debris (never handed out by get);
 * a sweep must remove it. */
static void
check_census(struct sessdb *db, int round, int moved_now, struct totals *tot)
{
	struct census cs;

	memset(&cs, 0, sizeof(cs));
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, census_fn, &cs), 0);
	if (cs.bad > 0) {
		/* Allowed only from a rebuild that moved the damaged file
		 * aside; swept either way, so that one failure does not
		 * repeat in every later round. */
		if (moved_now)
			tot->debris += cs.bad;
		else
			tot->bad_records += cs.bad;
		CU_ASSERT_EQUAL(sessdb_sweep(db, 0, NULL, NULL, NULL), 0);
		memset(&cs, 0, sizeof(cs));
		CU_ASSERT_EQUAL(sessdb_foreach(db, 0, census_fn, &cs), 0);
	}
	if (cs.records != model_count()) {
		printf("\n  round %d: foreach: got %u records as expected, want "
		    "%u\n", round, cs.records, model_count());
		cs.bad++;
	}
	tot->bad_records += cs.bad;
}

/* check_fresh - a fresh handle: the store opens, acknowledged records are
 * there (unless a damaged file was moved aside, which the log must say),
 * and foreach agrees. */
static void
check_fresh(int round, const struct inflight *fl, unsigned corrupt_before,
    uint32_t seen[NKEYS + 1], struct totals *tot)
{
	struct sessdb_options o = opts();
	struct sessdb_stats st;
	struct sessdb *db;
	struct tally t;
	int moved_now;

	tc_log_reset();
	db = open_store(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	check_keys(db, "fresh handle", fl, seen, &t);
	sessdb_stats(db, &st);
	moved_now = count_corrupt() > corrupt_before;
	tot->wrong += t.wrong;		/* never acceptable */
	tot->errors += t.errors;
	tot->inflight_lost += t.inflight_lost;
	if (moved_now) {
		/* GDBM could not recover everything: the damaged file was
		 * moved aside (and the store started empty, or carries on
		 * with what could be rebuilt).  Records may be lost; the
		 * log says so and the store must work. */
		tot->moved++;
		tot->moved_lost += t.missing;
		CU_ASSERT(tc_log_calls > 0);
		CU_ASSERT(st.recoveries > 0);
		printf("\n  round %d: damaged file moved aside (%s)\n", round,
		    tc_last_log);
		memcpy(model, seen, sizeof(model));
		check_keys(db, "after move-aside", NULL, seen, &t);
		tot->wrong += t.wrong + t.missing;
		CU_ASSERT_EQUAL(put_key(db, PARENT_KEY, 0xfffffff0u), 0);
		model[PARENT_KEY] = 0xfffffff0u;
		check_keys(db, "fresh store", NULL, seen, &t);
		tot->wrong += t.wrong + t.missing;
	} else {
		/* Intact, or repaired in place (gdbm_recover) without keeping
		 * a damaged copy: nothing acknowledged may be missing.  A
		 * repair is said through the log callback. */
		if (st.recoveries > 0) {
			tot->recovered++;
			CU_ASSERT(tc_log_calls > 0);
		}
		tot->silent_loss += t.missing;
	}
	memcpy(model, seen, sizeof(model));
	check_census(db, round, moved_now, tot);
	sessdb_close(db);
}

/* check_lived - the long-lived handle agrees, and can write. */
static void
check_lived(struct sessdb *lived, int round, uint32_t seen[NKEYS + 1],
    struct totals *tot)
{
	struct tally t;

	check_keys(lived, "long-lived handle", NULL, seen, &t);
	tot->lived_bad += t.missing + t.wrong + t.errors;
	memcpy(model, seen, sizeof(model));
	if (put_key(lived, PARENT_KEY, (uint32_t)round + 1) == 0) {
		model[PARENT_KEY] = (uint32_t)round + 1;
	} else {
		printf("\n  round %d: long-lived put: %s\n", round,
		    sessdb_error(lived));
		tot->lived_bad++;
	}
}

/* keep_evidence - a round failed: keep the file as the writer left it and
 * say what was in flight and what the store logged. */
static void
keep_evidence(int round, const char *snap, const struct inflight *fl)
{
	char keep[400];

	snprintf(keep, sizeof(keep), "%s.as-killed-round-%d", path, round);
	if (rename(snap, keep) == 0)
		printf("\n  round %d failed: the file as the writer left it is %s\n",
		    round, keep);
	if (fl->active)
		printf("  round %d: in flight at the kill: %s of key %u\n", round,
		    fl->op == OP_PUT ? "put" : fl->op == OP_DELETE ? "delete" :
		    fl->op == OP_TAKE ? "take" : "get", fl->key);
	for (int i = 0; i < tc_log_calls && i < TC_LOG_KEEP; i++)
		printf("  round %d log: %s\n", round, tc_first_log[i]);
}

/* check_totals - after the rounds: no failure of any kind, and a sweep
 * recounts the entry counter (which may drift when a writer dies between
 * its GDBM call and the counter update, as sessdb.h says). */
static void
check_totals(struct sessdb *lived, int rounds, const struct totals *tot)
{
	struct sessdb_info info;
	struct census cs = { 0, 0 };
	long long drift;
	struct stat sb;

	CU_ASSERT_EQUAL(tot->failures, 0);
	CU_ASSERT_EQUAL(tot->child_errors, 0);
	CU_ASSERT_EQUAL(tot->wrong, 0);
	CU_ASSERT_EQUAL(tot->errors, 0);
	CU_ASSERT_EQUAL(tot->bad_records, 0);
	CU_ASSERT_EQUAL(tot->lived_bad, 0);
	/* Only a round that moved a damaged file aside may lose records. */
	if (tot->silent_loss != 0)
		printf("\n  got %u acknowledged records lost with no damaged file "
		    "moved aside, want 0\n", tot->silent_loss);
	CU_ASSERT_EQUAL(tot->silent_loss, 0);

	CU_ASSERT_EQUAL(sessdb_info(lived, &info), 0);
	CU_ASSERT_EQUAL(sessdb_sweep(lived, 0, NULL, NULL, NULL), 0);
	CU_ASSERT_EQUAL(sessdb_foreach(lived, 0, census_fn, &cs), 0);
	drift = (long long)info.entries - (long long)cs.records;
	CU_ASSERT_EQUAL(sessdb_info(lived, &info), 0);
	if (info.entries != cs.records)
		printf("\n  entry counter after a sweep: got %llu, want %u "
		    "records\n", (unsigned long long)info.entries, cs.records);
	CU_ASSERT_EQUAL(info.entries, cs.records);

	if (stat(path, &sb) != 0)
		sb.st_size = 0;
	printf("\n  %d kill rounds: %u operations acknowledged; %u kills with an "
	    "operation in flight, %u while opening; %u repaired in place, %u "
	    "moved a damaged file aside (%u acknowledged records lost with "
	    "them, %u undecodable leftovers swept); %u puts in flight lost both "
	    "versions; %u wrong records; entry counter drift %lld; %u "
	    "records, file %lld bytes\n", rounds, tot->acked,
	    tot->inflight_kills, tot->early_kills, tot->recovered, tot->moved,
	    tot->moved_lost, tot->debris, tot->inflight_lost, tot->wrong, drift,
	    model_count(),
	    (long long)sb.st_size);
}

/* Many rounds: write, kill, check. */
static void
test_kill_rounds(void)
{
	const char *manual = getenv("SESSDB_KILL_ROUNDS");
	int rounds = manual != NULL && atoi(manual) > 0 ? atoi(manual) :
	    tc_under_valgrind() ? ROUNDS_VG : ROUNDS;
	unsigned max_delay = tc_under_valgrind() ? 20 * MAX_DELAY_US : MAX_DELAY_US;
	struct sessdb_options o = opts();
	struct totals tot = { 0 };
	struct sessdb *lived;
	uint64_t rng = 0x6b696c6cu;
	uint32_t seen[NKEYS + 1];
	char snap[400];

	fresh("kill");
	memset(model, 0, sizeof(model));
	lived = open_store(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(lived);
	snprintf(snap, sizeof(snap), "%s.as-killed", path);

	for (int round = 0; round < rounds; round++) {
		struct inflight fl = { 0 };
		unsigned corrupt_before = count_corrupt();
		unsigned bad_before = bad_count(&tot);

		kill_writer(round, &rng, max_delay, &fl, &tot);
		tc_copy_file(path, snap);	/* for a post-mortem */
		check_fresh(round, &fl, corrupt_before, seen, &tot);
		check_lived(lived, round, seen, &tot);
		if (bad_count(&tot) != bad_before)
			keep_evidence(round, snap, &fl);
		if (bad_count(&tot) > 30) {
			printf("\n  too many failures; stopping after round %d\n", round);
			rounds = round + 1;
			break;
		}
	}
	check_totals(lived, rounds, &tot);
	sessdb_close(lived);
}

/* ---- a lock holder that hangs ---- */

/* expect_timeout - the call took about timeout_ms, failed, named the lock. */
static void
expect_timeout(struct sessdb *db, const char *what, int rc, double ms,
    unsigned timeout_ms)
{
	if (rc != -1)
		printf("\n  %s under a hung lock: got %d, want -1\n", what, rc);
	CU_ASSERT_EQUAL(rc, -1);
	if (ms < timeout_ms * 0.9 || ms > timeout_ms * 3.0 + 500)
		printf("\n  %s under a hung lock: took %.0f ms, want about %u\n", what,
		    ms, timeout_ms);
	CU_ASSERT(ms >= timeout_ms * 0.9);
	CU_ASSERT(ms <= timeout_ms * 3.0 + 500);
	if (strstr(sessdb_error(db), "lock") == NULL)
		printf("\n  %s: error \"%s\" does not mention the lock\n", what,
		    sessdb_error(db));
	CU_ASSERT(strstr(sessdb_error(db), "lock") != NULL);
}

static void
test_hung_lock(void)
{
	unsigned timeout = tc_under_valgrind() ? 1000 : 200;
	struct sessdb_options o = opts();
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, 7), len;
	struct sessdb_stats st;
	struct sessdb *db;
	char err[512] = "", lock_path[320];
	double t0;
	void *data;
	pid_t holder;
	int rc;

	fresh("hung");
	o.lock_timeout_ms = timeout;
	db = open_store(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL_FATAL(put_key(db, 7, 1), 0);
	sessdb_stats_reset(db);
	snprintf(lock_path, sizeof(lock_path), "%s.lock", path);

	/* An exclusive holder blocks everyone. */
	holder = tc_hold_lock(lock_path, LOCK_EX);
	CU_ASSERT_FATAL(holder > 0);
	t0 = tc_mono_ms();
	rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
	expect_timeout(db, "get", rc, tc_mono_ms() - t0, timeout);
	t0 = tc_mono_ms();
	rc = put_key(db, 8, 1);
	expect_timeout(db, "put", rc, tc_mono_ms() - t0, timeout);
	t0 = tc_mono_ms();
	rc = sessdb_take(db, NS, id, id_len, &data, &len, NULL);
	expect_timeout(db, "take", rc, tc_mono_ms() - t0, timeout);
	t0 = tc_mono_ms();
	rc = sessdb_delete(db, NS, id, id_len);
	expect_timeout(db, "delete", rc, tc_mono_ms() - t0, timeout);
	sessdb_stats(db, &st);
	if (st.lock_timeouts != 4 || st.errors != 4)
		printf("\n  stats: got lock_timeouts %llu errors %llu, want 4 4\n",
		    (unsigned long long)st.lock_timeouts,
		    (unsigned long long)st.errors);
	CU_ASSERT_EQUAL(st.lock_timeouts, 4);
	CU_ASSERT_EQUAL(st.errors, 4);
	/* Opening another handle does not hang either. */
	t0 = tc_mono_ms();
	{
		struct sessdb *other = sessdb_open(path, &o, err, sizeof(err));
		double ms = tc_mono_ms() - t0;

		CU_ASSERT_PTR_NULL(other);
		sessdb_close(other);
		if (strstr(err, "lock") == NULL)
			printf("\n  open under a hung lock: error \"%s\" does not mention "
			    "the lock\n", err);
		CU_ASSERT(strstr(err, "lock") != NULL);
		CU_ASSERT(ms <= timeout * 3.0 + 500);
	}
	tc_release_lock(holder);

	/* The holder is gone: everything works again, nothing was lost. */
	rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
	CU_ASSERT_EQUAL(rc, SESSDB_OK);
	if (rc == SESSDB_OK) {
		CU_ASSERT_EQUAL(payload_version(data, len, 7), 1);
		sessdb_free(data);
	}

	/* A shared holder blocks writers only. */
	holder = tc_hold_lock(lock_path, LOCK_SH);
	CU_ASSERT_FATAL(holder > 0);
	rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
	CU_ASSERT_EQUAL(rc, SESSDB_OK);
	sessdb_free(rc == SESSDB_OK ? data : NULL);
	t0 = tc_mono_ms();
	rc = put_key(db, 8, 2);
	expect_timeout(db, "put (shared holder)", rc, tc_mono_ms() - t0, timeout);
	tc_release_lock(holder);
	CU_ASSERT_EQUAL(put_key(db, 8, 3), 0);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.lock_timeouts, 5);
	sessdb_close(db);
}

static const struct tc_case cases[] = {
	{ "writer SIGKILLed at random moments", test_kill_rounds },
	{ "hung lock holder", test_hung_lock },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("kill", cases, NULL, NULL),
	};

	if (tc_tmpdir_make("test_kill") != 0)
		return 2;
	return tc_run(suites, TC_NELEM(suites));
}
