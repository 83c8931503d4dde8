/*
 * NAME
 *	test_multiproc - many processes on one store: mixed operations,
 *	cross-process visibility, the take race, a handle shared by fork
 *
 * DESCRIPTION
 *	mixed operations: NCHILD forked processes each run OPS operations
 *	(put, get, take, delete) on one file: on private keys (only the
 *	owner writes them, so the owner knows exactly what each call must
 *	return), on shared keys (any process writes; a value read must be
 *	one some process really wrote under that key), and reads of a
 *	neighbour's private keys, checked with a seqlock against what the
 *	neighbour has acknowledged (a stale GDBM handle would show up
 *	there).  Every payload is derived from (writer, key, version), so a
 *	value is checked byte for byte.  Afterwards a fresh handle finds
 *	every acknowledged, undeleted private record, nothing undecodable,
 *	and counters that add up.
 *
 *	take race: TAKERS processes, released at once through one pipe each,
 *	take the same keys: exactly one wins each key, round after round;
 *	once with handles opened in the children, once with one handle
 *	opened before fork().
 *
 *	token passing: a handle opened before fork() is used by the parent
 *	and TAKERS children to pass one token (take it, put it back with its
 *	counter + 1): every counter value is won exactly once, which fails if
 *	two processes ever shared an exclusive lock.
 *
 *	Under valgrind (SESSDB_UNDER_VALGRIND set) the operation and round
 *	counts are reduced; everything else is the same.
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define NCHILD		4	/* processes doing mixed operations */
#define OPS_MAX		20000	/* operations per process */
#define OPS_VALGRIND	5000
#define PRIV_KEYS	160	/* private keys per process */
#define SHARED_KEYS	48
#define TAKERS		8	/* processes in the take race and token test */
#define TAKE_KEYS	4	/* keys per take-race round */
#define TAKE_ROUNDS	250
#define TAKE_ROUNDS_VG	80
#define TOKEN_WINS	40	/* token passes per process */
#define TOKEN_WINS_VG	8
#define PAYLOAD_MAX	4200
#define SPACE_PRIV	'p'
#define SPACE_SHARED	's'
#define SPACE_TAKE	't'
#define SPACE_TOKEN	'k'
#define OWNER_SHARED	0xff

static char path[300];

/* ---- deterministic keys and payloads ---- */

/* make_id - the identifier of key number `key` of `owner` in `space`:
 * 4..32 bytes, the length varying with the key. */
static size_t
make_id(unsigned char id[SESSDB_ID_MAX], unsigned space, unsigned owner,
    unsigned key)
{
	return tc_make_id(id, 4 + (key * 7 + owner) % 29, space, owner, key);
}

/* make_payload - the bytes `writer` stores under (space, key) at
 * `version`: a 10-byte self-description, then PRNG bytes; 10..~4100
 * bytes long.  Returns the length. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned writer, unsigned space,
    unsigned key, uint32_t version)
{
	uint64_t s = (uint64_t)writer << 56 ^ (uint64_t)space << 48 ^
	    (uint64_t)key << 32 ^ version;
	uint64_t r = tc_splitmix(&s);
	size_t len = 10 + ((r & 15) == 0 ? (r >> 8) % 4000 : (r >> 8) % 500);

	buf[0] = 'M';
	buf[1] = (unsigned char)writer;
	buf[2] = (unsigned char)space;
	buf[3] = (unsigned char)(key >> 8);
	buf[4] = (unsigned char)key;
	tc_put_be32(buf + 5, version);
	buf[9] = 'M';
	tc_random_bytes(buf + 10, len - 10, &s);
	return len;
}

/*
 * check_payload - is data exactly a payload some writer made for
 * (space, key)?  Fills writer and version.  Returns 1 if so; else 0 with
 * a description in why.
 */
static int
check_payload(const unsigned char *data, size_t len, unsigned space,
    unsigned key, unsigned *writer, uint32_t *version, char *why, size_t whylen)
{
	unsigned char want[PAYLOAD_MAX];
	size_t want_len;

	if (len < 10 || data[0] != 'M' || data[9] != 'M') {
		snprintf(why, whylen, "payload of %zu bytes is not ours", len);
		return 0;
	}
	if (data[2] != space || (unsigned)(data[3] << 8 | data[4]) != key) {
		snprintf(why, whylen, "payload is for space %c key %u, want %c key %u",
		    data[2], (unsigned)(data[3] << 8 | data[4]), space, key);
		return 0;
	}
	*writer = data[1];
	*version = tc_get_be32(data + 5);
	want_len = make_payload(want, *writer, space, key, *version);
	if (want_len != len || memcmp(want, data, len) != 0) {
		snprintf(why, whylen, "payload (writer %u version %u) has %zu bytes "
		    "that differ from what was written (%zu bytes)", *writer,
		    (unsigned)*version, len, want_len);
		return 0;
	}
	return 1;
}

/* ---- shared memory between the parent and its children ---- */

/* A seqlock over one private key's acknowledged state: seq is odd while
 * the owner has a call in flight; version 0 means absent. */
struct slot {
	uint32_t	seq;
	uint32_t	version;
};

struct child_report {
	struct tc_notes	notes;
	uint64_t	ops;
	uint64_t	gets, takes, hits, misses;
	uint64_t	puts_ok, deletes_removed, deletes_maybe;
	uint64_t	cross_checked, cross_skipped;
	struct sessdb_stats st;
	double		secs;
};

struct shared {
	struct slot		priv[NCHILD][PRIV_KEYS];
	/* shared_put[w][v] = key + 1 if writer w put version v to shared key */
	uint16_t		shared_put[NCHILD][OPS_MAX + 1];
	struct child_report	rep[NCHILD];
	/* token test: the counter values each process won */
	uint32_t		won[TAKERS + 1][TOKEN_WINS];
	unsigned		nwon[TAKERS + 1];
};

static struct shared *shm;

static void
fresh(const char *name)
{
	CU_ASSERT_EQUAL(tc_fresh(path, sizeof(path), name), 0);
}

static struct sessdb *
open_store(void)
{
	return tc_open(path, NULL);
}

/* put_payload - put writer's payload for (space, owner, key, version). */
static int
put_payload(struct sessdb *db, unsigned writer, unsigned space, unsigned owner,
    unsigned key, uint32_t version)
{
	unsigned char id[SESSDB_ID_MAX], buf[PAYLOAD_MAX];
	size_t id_len = make_id(id, space, owner, key);
	size_t len = make_payload(buf, writer, space, key, version);

	return sessdb_put(db, NS, id, id_len, buf, len, time(NULL) + 3600);
}

/* ---- mixed operations ---- */

/* lookup - get or take (space, owner, key) and classify the answer.
 * Returns SESSDB_OK with writer and version filled, SESSDB_MISS, or -1
 * (an error or a payload that is not what was written: reported). */
static int
lookup(struct sessdb *db, struct child_report *r, int take, unsigned space,
    unsigned owner, unsigned key, unsigned *writer, uint32_t *version)
{
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, space, owner, key), len;
	void *data;
	char why[200];
	int rc;

	if (take) {
		rc = sessdb_take(db, NS, id, id_len, &data, &len, NULL);
		r->takes++;
	} else {
		rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
		r->gets++;
	}
	if (rc == SESSDB_MISS) {
		r->misses++;
		return rc;
	}
	if (rc != SESSDB_OK) {
		tc_note(&r->notes, "%s %c/%u/%u: got %d (%s), want a hit or a miss",
		    take ? "take" : "get", space, owner, key, rc, sessdb_error(db));
		return -1;
	}
	r->hits++;
	rc = check_payload(data, len, space, key, writer, version, why, sizeof(why));
	sessdb_free(data);
	if (!rc) {
		tc_note(&r->notes, "%s %c/%u/%u: %s", take ? "take" : "get", space, owner,
		    key, why);
		return -1;
	}
	return SESSDB_OK;
}

/* expect_state - a lookup of a private key whose state is known exactly. */
static void
expect_state(struct child_report *r, int rc, const char *what, unsigned owner,
    unsigned key, uint32_t want, unsigned writer, uint32_t got)
{
	if (rc == -1)
		return;		/* already reported */
	if (want == 0 && rc != SESSDB_MISS)
		tc_note(&r->notes, "%s p/%u/%u: got version %u (writer %u), want a miss",
		    what, owner, key, (unsigned)got, writer);
	else if (want != 0 && rc != SESSDB_OK)
		tc_note(&r->notes, "%s p/%u/%u: got a miss, want version %u",
		    what, owner, key, (unsigned)want);
	else if (want != 0 && (got != want || writer != owner))
		tc_note(&r->notes, "%s p/%u/%u: got version %u (writer %u), want version "
		    "%u (writer %u)", what, owner, key, (unsigned)got, writer,
		    (unsigned)want, owner);
}

/* seq_begin, seq_end - the owner's side of a private key's seqlock. */
static void
seq_begin(struct slot *s)
{
	__atomic_add_fetch(&s->seq, 1, __ATOMIC_SEQ_CST);	/* odd: in flight */
}

static void
seq_end(struct slot *s, uint32_t version)
{
	__atomic_store_n(&s->version, version, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->seq, 1, __ATOMIC_SEQ_CST);	/* even: settled */
}

/* op_private - put, get, take or delete (by pick) own private key `key`:
 * the owner knows exactly what each call must return. */
static void
op_private(struct sessdb *db, struct child_report *r, unsigned c, unsigned key,
    unsigned pick, uint32_t version)
{
	struct slot *s = &shm->priv[c][key];
	uint32_t cur = s->version, got = 0;
	unsigned writer = 0;
	int rc;

	if (pick < 28) {		/* put */
		seq_begin(s);
		rc = put_payload(db, c, SPACE_PRIV, c, key, version);
		if (rc == 0)
			r->puts_ok++;
		else
			tc_note(&r->notes, "put p/%u/%u: got %d (%s), want 0", c,
			    key, rc, sessdb_error(db));
		seq_end(s, rc == 0 ? version : cur);
	} else if (pick < 48) {		/* get */
		rc = lookup(db, r, 0, SPACE_PRIV, c, key, &writer, &got);
		expect_state(r, rc, "get", c, key, cur, writer, got);
	} else if (pick < 54) {		/* take */
		seq_begin(s);
		rc = lookup(db, r, 1, SPACE_PRIV, c, key, &writer, &got);
		expect_state(r, rc, "take", c, key, cur, writer, got);
		if (rc == SESSDB_OK)
			r->deletes_removed++;
		seq_end(s, rc == SESSDB_OK ? 0 : cur);
	} else {			/* delete */
		unsigned char id[SESSDB_ID_MAX];
		size_t id_len = make_id(id, SPACE_PRIV, c, key);

		seq_begin(s);
		rc = sessdb_delete(db, NS, id, id_len);
		if (rc != 0)
			tc_note(&r->notes, "delete p/%u/%u: got %d (%s), want 0",
			    c, key, rc, sessdb_error(db));
		else if (cur != 0)
			r->deletes_removed++;
		seq_end(s, rc == 0 ? 0 : cur);
	}
}

/* op_shared - put, get, take or delete (by pick) shared key `key`: a
 * value read must be one some process really put there. */
static void
op_shared(struct sessdb *db, struct child_report *r, unsigned c, unsigned key,
    unsigned pick, uint32_t version)
{
	unsigned writer = 0;
	uint32_t got = 0;
	int rc;

	if (pick < 74) {		/* put */
		shm->shared_put[c][version] = (uint16_t)(key + 1);
		rc = put_payload(db, c, SPACE_SHARED, OWNER_SHARED, key, version);
		if (rc == 0)
			r->puts_ok++;
		else
			tc_note(&r->notes, "put s/%u: got %d (%s), want 0", key,
			    rc, sessdb_error(db));
	} else if (pick < 88) {		/* get or take */
		int take = pick >= 84;

		rc = lookup(db, r, take, SPACE_SHARED, OWNER_SHARED, key,
		    &writer, &got);
		if (rc == SESSDB_OK && (writer >= NCHILD || got == 0 ||
		    got > OPS_MAX || shm->shared_put[writer][got] != key + 1))
			tc_note(&r->notes, "%s s/%u: got version %u of writer %u, "
			    "which that writer never put there",
			    take ? "take" : "get", key, (unsigned)got, writer);
		if (rc == SESSDB_OK && take)
			r->deletes_removed++;
	} else {			/* delete */
		unsigned char id[SESSDB_ID_MAX];
		size_t id_len = make_id(id, SPACE_SHARED, OWNER_SHARED, key);

		rc = sessdb_delete(db, NS, id, id_len);
		if (rc != 0)
			tc_note(&r->notes, "delete s/%u: got %d (%s), want 0",
			    key, rc, sessdb_error(db));
		r->deletes_maybe++;
	}
}

/* op_neighbour - read neighbour nb's private key: if its owner settled
 * nothing during our call, we must see exactly that. */
static void
op_neighbour(struct sessdb *db, struct child_report *r, unsigned nb,
    unsigned key)
{
	struct slot *s = &shm->priv[nb][key];
	uint32_t s1 = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST);
	uint32_t want = __atomic_load_n(&s->version, __ATOMIC_SEQ_CST);
	uint32_t s2, got = 0;
	unsigned writer = 0;
	int rc;

	rc = lookup(db, r, 0, SPACE_PRIV, nb, key, &writer, &got);
	s2 = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST);
	if (s1 == s2 && (s1 & 1) == 0) {
		r->cross_checked++;
		expect_state(r, rc, "get (neighbour)", nb, key, want, writer, got);
	} else {
		r->cross_skipped++;
		if (rc == SESSDB_OK && writer != nb)
			tc_note(&r->notes, "get p/%u/%u: got writer %u, want %u",
			    nb, key, writer, nb);
	}
}

/* check_child_stats - the counters of this handle match what the calls
 * returned. */
static void
check_child_stats(struct child_report *r)
{
	if (r->st.hits != r->hits || r->st.misses != r->misses)
		tc_note(&r->notes, "stats: got hits %llu misses %llu, want %llu %llu",
		    (unsigned long long)r->st.hits, (unsigned long long)r->st.misses,
		    (unsigned long long)r->hits, (unsigned long long)r->misses);
	if (r->st.hits + r->st.misses != r->gets + r->takes)
		tc_note(&r->notes, "stats: got hits+misses %llu, want gets+takes %llu",
		    (unsigned long long)(r->st.hits + r->st.misses),
		    (unsigned long long)(r->gets + r->takes));
	if (r->st.stores != r->puts_ok)
		tc_note(&r->notes, "stats: got stores %llu, want %llu acknowledged puts",
		    (unsigned long long)r->st.stores, (unsigned long long)r->puts_ok);
	if (r->st.deletes < r->deletes_removed ||
	    r->st.deletes > r->deletes_removed + r->deletes_maybe)
		tc_note(&r->notes, "stats: got deletes %llu, want %llu..%llu",
		    (unsigned long long)r->st.deletes,
		    (unsigned long long)r->deletes_removed,
		    (unsigned long long)(r->deletes_removed + r->deletes_maybe));
	if (r->st.errors != 0 || r->st.lock_timeouts != 0 || r->st.corrupt != 0 ||
	    r->st.expired != 0 || r->st.declined != 0 || r->st.recoveries != 0)
		tc_note(&r->notes, "stats: got errors %llu lock_timeouts %llu corrupt %llu "
		    "expired %llu declined %llu recoveries %llu, want all 0",
		    (unsigned long long)r->st.errors,
		    (unsigned long long)r->st.lock_timeouts,
		    (unsigned long long)r->st.corrupt, (unsigned long long)r->st.expired,
		    (unsigned long long)r->st.declined,
		    (unsigned long long)r->st.recoveries);
}

/* mixed_child - ops operations: 60% on own private keys, 31% on shared
 * keys, 9% reads of the neighbour's private keys. */
static void
mixed_child(struct sessdb *db, unsigned c, unsigned ops)
{
	struct child_report *r = &shm->rep[c];
	unsigned nb = (c + 1) % NCHILD;
	uint64_t rng = 0x5e55db00u + c;
	double t0 = tc_mono_secs();

	for (unsigned i = 0; i < ops; i++) {
		uint32_t version = i + 1;
		unsigned pick = (unsigned)(tc_splitmix(&rng) % 100);

		r->ops++;
		/* Hand the CPU over now and then, so that the processes
		 * interleave finely (every switch makes the others reopen). */
		if ((i & 3) == 0)
			sched_yield();
		if (pick < 60)
			op_private(db, r, c, (unsigned)(tc_splitmix(&rng) % PRIV_KEYS),
			    pick, version);
		else if (pick < 91)
			op_shared(db, r, c, (unsigned)(tc_splitmix(&rng) % SHARED_KEYS),
			    pick, version);
		else
			op_neighbour(db, r, nb,
			    (unsigned)(tc_splitmix(&rng) % PRIV_KEYS));
	}
	r->secs = tc_mono_secs() - t0;
	sessdb_stats(db, &r->st);
	check_child_stats(r);
}

struct census {
	uint64_t	records, bytes, priv, shared, bad;
};

/* census_fn - foreach callback: every record is well formed and ours. */
static int
census_fn(void *arg, const struct sessdb_record *rec)
{
	struct census *cs = arg;
	unsigned writer;
	uint32_t version;
	char why[200];

	cs->records++;
	cs->bytes += rec->key_len + 32 + rec->len;
	if (rec->problem != NULL) {
		printf("\n  foreach: record with problem \"%s\", want none\n", rec->problem);
		cs->bad++;
		return 0;
	}
	if (rec->ns != NS || rec->id_len < 4) {
		printf("\n  foreach: got namespace 0x%02x id of %zu bytes\n", rec->ns,
		    rec->id_len);
		cs->bad++;
		return 0;
	}
	unsigned space = rec->id[0], owner = rec->id[1];
	unsigned key = (unsigned)(rec->id[2] << 8 | rec->id[3]);
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, space, owner, key);

	if (id_len != rec->id_len || memcmp(id, rec->id, id_len) != 0 ||
	    !check_payload(rec->data, rec->len, space, key, &writer, &version, why,
	    sizeof(why))) {
		printf("\n  foreach: record %c/%u/%u is not one we wrote\n", space,
		    owner, key);
		cs->bad++;
		return 0;
	}
	if (space == SPACE_PRIV)
		cs->priv++;
	else if (space == SPACE_SHARED)
		cs->shared++;
	return 0;
}

/* What the parent learns from a mixed run. */
struct mixed_sum {
	uint64_t	ops, cross, reopens;	/* summed over the children */
	uint64_t	present, shared_hits;	/* records a fresh handle finds */
	double		wall;
};

/* run_mixed - act: NCHILD children, each on its own handle, ops each. */
static void
run_mixed(unsigned ops, struct mixed_sum *sum)
{
	pid_t pids[NCHILD];
	double t0 = tc_mono_secs();

	for (unsigned c = 0; c < NCHILD; c++) {
		pids[c] = fork();
		CU_ASSERT_FATAL(pids[c] != -1);
		if (pids[c] == 0) {
			struct sessdb *cdb = open_store();

			if (cdb == NULL) {
				tc_note(&shm->rep[c].notes, "child %u: open failed", c);
				_exit(1);
			}
			mixed_child(cdb, c, ops);
			sessdb_close(cdb);
			_exit(shm->rep[c].notes.failures == 0 ? 0 : 1);
		}
	}
	for (unsigned c = 0; c < NCHILD; c++)
		CU_ASSERT(tc_wait_ok(pids[c], "mixed child"));
	sum->wall = tc_mono_secs() - t0;
}

/* check_reports - every child saw what it must and counted it right. */
static void
check_reports(unsigned ops, struct mixed_sum *sum)
{
	for (unsigned c = 0; c < NCHILD; c++) {
		struct child_report *r = &shm->rep[c];

		if (r->notes.failures != 0)
			printf("\n  child %u: %u failures, first: %s\n", c,
			    r->notes.failures, r->notes.first[0]);
		CU_ASSERT_EQUAL(r->notes.failures, 0);
		CU_ASSERT_EQUAL(r->ops, ops);
		CU_ASSERT_EQUAL(r->st.hits + r->st.misses, r->gets + r->takes);
		CU_ASSERT_EQUAL(r->st.stores, r->puts_ok);
		CU_ASSERT_EQUAL(r->st.errors, 0);
		CU_ASSERT_EQUAL(r->st.lock_timeouts, 0);
		CU_ASSERT_EQUAL(r->st.corrupt, 0);
		printf("\n  child %u: %.2f s, %llu reopens, %llu exact neighbour reads",
		    c, r->secs, (unsigned long long)r->st.reopens,
		    (unsigned long long)r->cross_checked);
		sum->ops += r->ops;
		sum->cross += r->cross_checked;
		sum->reopens += r->st.reopens;
	}
	/* Enough neighbour reads were checked exactly to mean something. */
	CU_ASSERT(sum->cross > sum->ops / 20);
}

/* check_final_keys - a fresh handle finds every private key as its owner
 * last acknowledged it, and only values some process put in shared keys. */
static void
check_final_keys(struct sessdb *db, struct mixed_sum *sum)
{
	struct child_report check;

	memset(&check, 0, sizeof(check));
	for (unsigned c = 0; c < NCHILD; c++) {
		for (unsigned k = 0; k < PRIV_KEYS; k++) {
			uint32_t want = shm->priv[c][k].version, got = 0;
			unsigned writer = 0;
			int rc = lookup(db, &check, 0, SPACE_PRIV, c, k, &writer, &got);

			expect_state(&check, rc, "final get", c, k, want, writer, got);
			sum->present += want != 0;
		}
	}
	for (unsigned k = 0; k < SHARED_KEYS; k++) {
		uint32_t got = 0;
		unsigned writer = 0;
		int rc = lookup(db, &check, 0, SPACE_SHARED, OWNER_SHARED, k,
		    &writer, &got);

		if (rc == SESSDB_OK && (writer >= NCHILD || got == 0 ||
		    got > OPS_MAX || shm->shared_put[writer][got] != k + 1))
			tc_note(&check.notes, "final get s/%u: got version %u of writer "
			    "%u, which that writer never put there", k,
			    (unsigned)got, writer);
		sum->shared_hits += rc == SESSDB_OK;
	}
	CU_ASSERT_EQUAL(check.notes.failures, 0);
}

/* check_foreach - nothing undecodable, nothing foreign, the right count;
 * info and a sweep agree.  Returns the records found. */
static uint64_t
check_foreach(struct sessdb *db, const struct mixed_sum *sum)
{
	struct census cs;
	struct sessdb_info info;
	struct sessdb_sweep_result sw;

	memset(&cs, 0, sizeof(cs));
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, census_fn, &cs), 0);
	CU_ASSERT_EQUAL(cs.bad, 0);
	if (cs.priv != sum->present || cs.shared != sum->shared_hits)
		printf("\n  foreach: got %llu private %llu shared records, want "
		    "%llu %llu\n", (unsigned long long)cs.priv,
		    (unsigned long long)cs.shared, (unsigned long long)sum->present,
		    (unsigned long long)sum->shared_hits);
	CU_ASSERT_EQUAL(cs.priv, sum->present);
	CU_ASSERT_EQUAL(cs.shared, sum->shared_hits);
	memset(&info, 0, sizeof(info));
	CU_ASSERT_EQUAL(sessdb_info(db, &info), 0);
	if (info.entries != cs.records || info.bytes != cs.bytes)
		printf("\n  info: got %llu entries %llu bytes, want %llu %llu\n",
		    (unsigned long long)info.entries,
		    (unsigned long long)info.bytes,
		    (unsigned long long)cs.records, (unsigned long long)cs.bytes);
	CU_ASSERT_EQUAL(info.entries, cs.records);
	CU_ASSERT_EQUAL(info.bytes, cs.bytes);
	CU_ASSERT_EQUAL(sessdb_sweep(db, 0, NULL, NULL, &sw), 0);
	CU_ASSERT_EQUAL(sw.examined, cs.records);
	CU_ASSERT_EQUAL(sw.expired, 0);
	CU_ASSERT_EQUAL(sw.corrupt, 0);
	return cs.records;
}

/* NCHILD processes, OPS operations each, then a full check. */
static void
test_mixed(void)
{
	unsigned ops = tc_under_valgrind() ? OPS_VALGRIND : OPS_MAX;
	struct mixed_sum sum;
	struct sessdb *db;
	uint64_t records;

	fresh("mixed");
	memset(shm, 0, sizeof(*shm));
	memset(&sum, 0, sizeof(sum));
	db = open_store();	/* create the file before the race */
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	sessdb_close(db);

	run_mixed(ops, &sum);
	check_reports(ops, &sum);
	db = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	check_final_keys(db, &sum);
	records = check_foreach(db, &sum);
	printf("\n  %u processes x %u ops = %llu ops in %.2f s (%.0f ops/s), "
	    "%llu exact cross-process reads, %llu reopens; %llu records left\n",
	    NCHILD, ops, (unsigned long long)sum.ops, sum.wall,
	    (double)sum.ops / sum.wall, (unsigned long long)sum.cross,
	    (unsigned long long)sum.reopens, (unsigned long long)records);
	sessdb_close(db);
}

/* ---- the take race ---- */

struct take_result {
	int32_t	child;
	int32_t	round;
	int32_t	rc[TAKE_KEYS];
	int32_t	bytes_ok[TAKE_KEYS];
};

/* take_child - wait for each round's go byte, take the round's keys (in an
 * order of our own), report.  Exits when the go pipe closes. */
static void
take_child(struct sessdb *db, int c, int go_fd, int res_fd)
{
	char go;
	int32_t round = 0;

	while (read(go_fd, &go, 1) == 1) {
		struct take_result tr;

		memset(&tr, 0, sizeof(tr));
		tr.child = c;
		tr.round = round;
		for (int j = 0; j < TAKE_KEYS; j++) {
			int k = (j + c) % TAKE_KEYS;
			unsigned char id[SESSDB_ID_MAX];
			unsigned key = (unsigned)(round * TAKE_KEYS + k);
			size_t id_len = make_id(id, SPACE_TAKE, 0, key), len;
			void *data;

			tr.rc[k] = sessdb_take(db, NS, id, id_len, &data, &len, NULL);
			if (tr.rc[k] == SESSDB_OK) {
				unsigned writer;
				uint32_t version;
				char why[200];

				tr.bytes_ok[k] = check_payload(data, len, SPACE_TAKE, key,
				    &writer, &version, why, sizeof(why)) &&
				    version == (uint32_t)round;
				if (!tr.bytes_ok[k])
					printf("\n  take race: %s\n", why);
				sessdb_free(data);
			} else if (tr.rc[k] == -1) {
				printf("\n  take race: take: %s\n", sessdb_error(db));
			}
		}
		if (write(res_fd, &tr, sizeof(tr)) != (ssize_t)sizeof(tr))
			break;
		round++;
	}
}

/* take_race - TAKERS processes take the same keys at once, many rounds. */
static void
take_race(int inherited)
{
	int rounds = tc_under_valgrind() ? TAKE_ROUNDS_VG : TAKE_ROUNDS;
	int go[TAKERS][2], res[2];
	pid_t pids[TAKERS];
	struct sessdb *db;
	unsigned wins[TAKERS] = { 0 }, bad_rounds = 0, errors = 0;

	fresh(inherited ? "take_inherited" : "take_own");
	db = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_FATAL(pipe2(res, O_CLOEXEC) == 0);
	for (int c = 0; c < TAKERS; c++) {
		CU_ASSERT_FATAL(pipe2(go[c], O_CLOEXEC) == 0);
		pids[c] = fork();
		CU_ASSERT_FATAL(pids[c] != -1);
		if (pids[c] == 0) {
			struct sessdb *cdb = db;

			for (int o = 0; o <= c; o++)
				close(go[o][1]);
			close(res[0]);
			if (!inherited) {
				sessdb_close(db);
				cdb = open_store();
				if (cdb == NULL)
					_exit(1);
			}
			take_child(cdb, c, go[c][0], res[1]);
			sessdb_close(cdb);
			_exit(0);
		}
		close(go[c][0]);
	}
	close(res[1]);

	for (int round = 0; round < rounds; round++) {
		int winners[TAKE_KEYS] = { 0 };

		for (int k = 0; k < TAKE_KEYS; k++)
			CU_ASSERT_EQUAL(put_payload(db, 0, SPACE_TAKE, 0,
			    (unsigned)(round * TAKE_KEYS + k), (uint32_t)round), 0);
		for (int c = 0; c < TAKERS; c++)
			CU_ASSERT_EQUAL(write(go[c][1], "g", 1), 1);
		for (int n = 0; n < TAKERS; n++) {
			struct take_result tr;

			if (read(res[0], &tr, sizeof(tr)) != (ssize_t)sizeof(tr)) {
				CU_FAIL("take race: a child stopped reporting");
				round = rounds;
				break;
			}
			CU_ASSERT_EQUAL(tr.round, round);
			for (int k = 0; k < TAKE_KEYS; k++) {
				if (tr.rc[k] == SESSDB_OK) {
					winners[k]++;
					wins[tr.child]++;
					CU_ASSERT(tr.bytes_ok[k]);
				} else if (tr.rc[k] != SESSDB_MISS) {
					errors++;
				}
			}
		}
		for (int k = 0; k < TAKE_KEYS; k++) {
			unsigned char id[SESSDB_ID_MAX];
			size_t id_len = make_id(id, SPACE_TAKE, 0,
			    (unsigned)(round * TAKE_KEYS + k)), len;
			void *data;

			if (winners[k] != 1) {
				printf("\n  round %d key %d: got %d winners, want exactly 1\n",
				    round, k, winners[k]);
				bad_rounds++;
			}
			if (round < rounds)
				CU_ASSERT_EQUAL(sessdb_get(db, NS, id, id_len, &data, &len,
				    NULL), SESSDB_MISS);
		}
	}
	for (int c = 0; c < TAKERS; c++)
		close(go[c][1]);
	for (int c = 0; c < TAKERS; c++)
		CU_ASSERT(tc_wait_ok(pids[c], "take child"));
	close(res[0]);
	CU_ASSERT_EQUAL(bad_rounds, 0);
	CU_ASSERT_EQUAL(errors, 0);
	{
		unsigned spread = 0;

		for (int c = 0; c < TAKERS; c++)
			spread += wins[c] > 0;
		printf("\n  %d rounds x %d keys, %d takers (%s handles): %u keys with "
		    "!= 1 winner; %u of %d processes won some\n", rounds, TAKE_KEYS,
		    TAKERS, inherited ? "inherited" : "own", bad_rounds, spread, TAKERS);
	}
	sessdb_close(db);
}

static void
test_take_race_own(void)
{
	take_race(0);
}

static void
test_take_race_inherited(void)
{
	take_race(1);
}

/* ---- token passing through a handle opened before fork ---- */

/* token_loop - win the token `want` times: take it, put it back + 1. */
static int
token_loop(struct sessdb *db, unsigned me, unsigned want)
{
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, SPACE_TOKEN, 0, 0);
	double deadline = tc_mono_secs() + (tc_under_valgrind() ? 600 : 60);
	int failures = 0;

	while (shm->nwon[me] < want && tc_mono_secs() < deadline) {
		void *data;
		size_t len;
		unsigned writer;
		uint32_t n;
		char why[200];
		int rc = sessdb_take(db, NS, id, id_len, &data, &len, NULL);

		if (rc == SESSDB_MISS) {
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
			continue;
		}
		if (rc != SESSDB_OK) {
			printf("\n  token: take: got %d (%s), want a hit or a miss\n", rc,
			    sessdb_error(db));
			failures++;
			continue;
		}
		if (!check_payload(data, len, SPACE_TOKEN, 0, &writer, &n, why,
		    sizeof(why))) {
			printf("\n  token: %s\n", why);
			sessdb_free(data);
			return failures + 1;
		}
		sessdb_free(data);
		shm->won[me][shm->nwon[me]++] = n;
		rc = put_payload(db, me, SPACE_TOKEN, 0, 0, n + 1);
		if (rc != 0) {
			printf("\n  token: put: got %d (%s), want 0\n", rc, sessdb_error(db));
			return failures + 1;
		}
	}
	if (shm->nwon[me] < want) {
		printf("\n  token: process %u won %u times, want %u\n", me,
		    shm->nwon[me], want);
		failures++;
	}
	return failures;
}

static void
test_token_inherited(void)
{
	unsigned want = tc_under_valgrind() ? TOKEN_WINS_VG : TOKEN_WINS;
	unsigned total = want * (TAKERS + 1);
	unsigned char seen[(TAKERS + 1) * TOKEN_WINS] = { 0 };
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, SPACE_TOKEN, 0, 0), len;
	pid_t pids[TAKERS];
	struct sessdb *db;
	unsigned dup = 0, writer;
	uint32_t final = 0;
	void *data;
	char why[200];

	fresh("token");
	memset(shm->nwon, 0, sizeof(shm->nwon));
	db = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL_FATAL(put_payload(db, TAKERS, SPACE_TOKEN, 0, 0, 0), 0);
	for (unsigned c = 0; c < TAKERS; c++) {
		pids[c] = fork();
		CU_ASSERT_FATAL(pids[c] != -1);
		if (pids[c] == 0) {
			int f = token_loop(db, c, want);

			sessdb_close(db);
			_exit(f == 0 ? 0 : 1);
		}
	}
	CU_ASSERT_EQUAL(token_loop(db, TAKERS, want), 0);
	for (unsigned c = 0; c < TAKERS; c++)
		CU_ASSERT(tc_wait_ok(pids[c], "token child"));

	/* Every counter value 0..total-1 was won exactly once. */
	for (unsigned p = 0; p <= TAKERS; p++) {
		for (unsigned i = 0; i < shm->nwon[p]; i++) {
			uint32_t n = shm->won[p][i];

			if (n >= total || seen[n]++)
				dup++;
		}
	}
	if (dup != 0)
		printf("\n  token: %u counter values won twice or out of range "
		    "(mutual exclusion broken)\n", dup);
	CU_ASSERT_EQUAL(dup, 0);
	if (sessdb_get(db, NS, id, id_len, &data, &len, NULL) == SESSDB_OK) {
		CU_ASSERT(check_payload(data, len, SPACE_TOKEN, 0, &writer, &final,
		    why, sizeof(why)));
		sessdb_free(data);
	} else {
		CU_FAIL("token: the token is gone");
	}
	if (final != total)
		printf("\n  token: got final counter %u, want %u\n", (unsigned)final,
		    total);
	CU_ASSERT_EQUAL(final, total);
	printf("\n  token passed %u times among %d processes sharing one "
	    "pre-fork handle\n", (unsigned)final, TAKERS + 1);
	sessdb_close(db);
}

static const struct tc_case cases[] = {
	{ "mixed operations, 4 processes", test_mixed },
	{ "take race, own handles", test_take_race_own },
	{ "take race, handle opened before fork", test_take_race_inherited },
	{ "token passing, handle opened before fork", test_token_inherited },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("multiproc", cases, NULL, NULL),
	};
	int rc;

	if (tc_tmpdir_make("test_multiproc") != 0)
		return 2;
	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	rc = tc_run(suites, TC_NELEM(suites));
	munmap(shm, sizeof(*shm));
	return rc;
}
