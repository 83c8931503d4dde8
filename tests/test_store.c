/*
 * NAME
 *	test_store - the store API on one process: put, get, take, delete,
 *	expiry, traversal, sweep, capacity, compaction, statistics, read-only
 *	mode and error codes, run through every backend of a table; then the
 *	GDBM backend's own cases: file modes and safety, the lock file,
 *	damaged records and files, a full disk
 *
 * DESCRIPTION
 *	The API cases know a store only by the string sessdb_open takes:
 *	each entry of backends[] makes a fresh, empty one for a case (a
 *	path in the test directory for GDBM; a key prefix on a redis-server
 *	the test starts on a unix socket in that directory for Redis) and
 *	CUnit runs the same cases once per entry, as suite "api/<backend>".
 *	An entry's flags say where a backend differs on purpose (Redis does
 *	not enforce caps, reports the server's figures in sessdb_info, has
 *	no lock periods); a backend that cannot run here (no redis-server,
 *	a build without Redis support) is skipped, saying why.  Cases that
 *	look at files (modes, symbolic links, damaged bytes, the lock file,
 *	space) are in suite "gdbm".
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "redis_store.h"
#include "record.h"
#include "sessdb.h"

#define NS SESSDB_NS_SERVER
#define T0 1700000000
/* "Expires soon" for records a case then sees expire by moving the fake
 * clock: Redis expires a record by the real time (its TTL), so soon must
 * outlast the case, also under valgrind; and stay under the default TTL
 * (300 s), which the records put without an expiry get. */
#define SOON 200

/* A storage backend as the tests see it. */
struct backend {
	const char	*name;
	/* start - make the backend reachable: 0, or -1 with why in why */
	int		(*start)(char *why, size_t len);
	void		(*stop)(void);
	/* fresh - put a new, empty store's name for sessdb_open in where */
	int		(*fresh)(char *where, size_t len, const char *name);
	unsigned	flags;
};

#define BK_CAPS		0x01	/* max_entries and max_bytes are enforced */
#define BK_LOCAL	0x02	/* a store of its own: info counts its records
				   exactly, compaction shrinks it, a sweep's
				   batches are exclusive-lock periods */

static int redis_start(char *why, size_t len);
static void redis_stop(void);
static int redis_fresh(char *where, size_t len, const char *name);

static const struct backend backends[] = {
	{ "gdbm", NULL, NULL, tc_fresh, BK_CAPS | BK_LOCAL },
	{ "redis", redis_start, redis_stop, redis_fresh, 0 },
};

/* ---- a Redis server of our own (tests/redis_server.c) ---- */

static struct rs redis;

/* redis_start - a redis-server of our own, usable as a store. */
static int
redis_start(char *why, size_t len)
{
	return rst_start(&redis, why, len);
}

/* redis_stop - the server goes with its data. */
static void
redis_stop(void)
{
	rs_destroy(&redis);
}

/* redis_fresh - a prefix no case used before: an empty store. */
static int
redis_fresh(char *where, size_t len, const char *name)
{
	rst_url(&redis, where, len, "", name);
	tc_log_reset();
	return 0;
}

static const struct backend *cur = &backends[0];
static char path[300];

/* api_init - pick the backend the suite "api/<name>" is about. */
static int
api_init(void)
{
	const char *suite = tc_current_suite();

	for (size_t i = 0; i < TC_NELEM(backends); i++)
		if (strcmp(suite + strlen("api/"), backends[i].name) == 0) {
			cur = &backends[i];
			return 0;
		}
	return -1;
}

/* gdbm_init - the GDBM-only cases use the GDBM backend. */
static int
gdbm_init(void)
{
	cur = &backends[0];
	return 0;
}

/* fresh - a new, empty store of the current backend for each test. */
static void
fresh(const char *name)
{
	CU_ASSERT_EQUAL(cur->fresh(path, sizeof(path), name), 0);
	tc_now = T0;
}

static struct sessdb *
open_with(const struct sessdb_options *o)
{
	return tc_open(path, o);
}

static struct sessdb_options
opts(void)
{
	struct sessdb_options o = { 0 };

	o.clock = tc_clock;
	o.log = tc_log;
	return o;
}

static struct sessdb *
open_default(void)
{
	struct sessdb_options o = opts();

	return open_with(&o);
}

/* get_str - get (ns, id) and compare with want (NULL = expect a miss). */
static void
expect_get(struct sessdb *db, const char *id, const char *want)
{
	void *data = NULL;
	size_t len = 0;
	int rc = sessdb_get(db, NS, id, strlen(id), &data, &len, NULL);

	if (want == NULL) {
		if (rc != SESSDB_MISS)
			printf("\n  get %s: got rc %d, want miss\n", id, rc);
		CU_ASSERT_EQUAL(rc, SESSDB_MISS);
		CU_ASSERT_PTR_NULL(data);
	} else {
		if (rc != SESSDB_OK)
			printf("\n  get %s: got rc %d (%s), want hit\n", id, rc,
			    sessdb_error(db));
		CU_ASSERT_EQUAL_FATAL(rc, SESSDB_OK);
		CU_ASSERT_EQUAL(len, strlen(want));
		CU_ASSERT(memcmp(data, want, len) == 0);
	}
	sessdb_free(data);
}

static int
put_str(struct sessdb *db, const char *id, const char *val, int64_t expires)
{
	return sessdb_put(db, NS, id, strlen(id), val, strlen(val), expires);
}

static void
test_create_modes(void)
{
	struct stat st;
	char lock[320];
	struct sessdb *db;

	fresh("modes");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	CU_ASSERT_EQUAL(stat(lock, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	CU_ASSERT_STRING_EQUAL(sessdb_path(db), path);
	sessdb_close(db);
	sessdb_close(NULL);	/* no-op */
}

static void
test_put_get(void)
{
	struct sessdb *db;
	struct sessdb_meta meta;
	struct sessdb_stats st;
	void *data;
	size_t len;
	unsigned char id32[32], big[4000];

	fresh("putget");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "alpha", "first", tc_now + 100), 0);
	CU_ASSERT_EQUAL(put_str(db, "beta", "second", 0), 0);
	expect_get(db, "alpha", "first");
	expect_get(db, "beta", "second");
	expect_get(db, "gamma", NULL);
	/* replace */
	CU_ASSERT_EQUAL(put_str(db, "alpha", "replaced value", tc_now + 50), 0);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, "alpha", 5, &data, &len, &meta), SESSDB_OK);
	CU_ASSERT_EQUAL(len, 14);
	CU_ASSERT_EQUAL(meta.created, tc_now);
	CU_ASSERT_EQUAL(meta.expires, tc_now + 50);
	sessdb_free(data);
	/* default TTL applies when expires is 0 */
	CU_ASSERT_EQUAL(sessdb_get(db, NS, "beta", 4, &data, &len, &meta), SESSDB_OK);
	CU_ASSERT_EQUAL(meta.expires, tc_now + 300);
	sessdb_free(data);
	/* 32-byte ids and binary payloads; empty payload */
	memset(id32, 0x00, sizeof(id32));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id32, 32, big, sizeof(big), 0), 0);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, id32, 32, &data, &len, NULL), SESSDB_OK);
	CU_ASSERT_EQUAL(len, sizeof(big));
	CU_ASSERT(memcmp(data, big, sizeof(big)) == 0);
	sessdb_free(data);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, "e", 1, NULL, 0, 0), 0);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, "e", 1, &data, &len, NULL), SESSDB_OK);
	CU_ASSERT_EQUAL(len, 0);
	sessdb_free(data);
	/* namespaces are separate */
	CU_ASSERT_EQUAL(sessdb_get(db, SESSDB_NS_CLIENT, "alpha", 5, &data, &len, NULL),
	    SESSDB_MISS);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.stores, 5);
	CU_ASSERT_EQUAL(st.hits, 6);
	CU_ASSERT_EQUAL(st.misses, 2);
	CU_ASSERT_EQUAL(st.errors, 0);
	sessdb_stats_reset(db);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.hits, 0);
	sessdb_close(db);
}

static void
test_bad_keys(void)
{
	struct sessdb *db;
	unsigned char id[40] = { 1 };
	void *data;
	size_t len;
	struct sessdb_stats st;

	fresh("badkeys");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 0, "x", 1, 0), -1);
	CU_ASSERT(strstr(sessdb_error(db), "invalid key") != NULL);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 33, "x", 1, 0), -1);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, id, 33, &data, &len, NULL), -1);
	CU_ASSERT_PTR_NULL(data);
	CU_ASSERT_EQUAL(sessdb_take(db, NS, id, 0, &data, &len, NULL), -1);
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, id, 33), -1);
	CU_ASSERT_EQUAL(sessdb_put(db, 0x41, id, 4, "x", 1, 0), -1);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 4, NULL, 5, 0), -1);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 4, id, SESSDB_PAYLOAD_MAX + 1, 0), -1);
	CU_ASSERT(strstr(sessdb_error(db), "exceeds") != NULL);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.errors, 8);
	CU_ASSERT_EQUAL(st.stores, 0);
	sessdb_close(db);
}

/* Expiry at the boundaries: live while now < expires. */
static void
test_expiry_boundaries(void)
{
	struct sessdb *db;
	struct sessdb_stats st;
	int64_t t0 = tc_now;
	static const struct { int64_t expires_delta; int want_rc; } puts_[] = {
		{ -1, -1 }, { 0, -1 }, { 1, 0 },
	};

	fresh("expiry");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (size_t i = 0; i < 3; i++) {
		char id[8];
		snprintf(id, sizeof(id), "p%zu", i);
		int rc = put_str(db, id, "v", t0 + puts_[i].expires_delta);
		if (rc != puts_[i].want_rc)
			printf("\n  put expires now%+lld: got %d, want %d\n",
			    (long long)puts_[i].expires_delta, rc, puts_[i].want_rc);
		CU_ASSERT_EQUAL(rc, puts_[i].want_rc);
	}
	CU_ASSERT(strstr(sessdb_error(db), "expired") != NULL);
	CU_ASSERT_EQUAL(put_str(db, "k", "value", t0 + 10), 0);
	tc_now = t0 + 9;
	expect_get(db, "k", "value");
	tc_now = t0 + 10;
	expect_get(db, "k", NULL);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.expired, 1);
	tc_now = t0 + 11;
	expect_get(db, "k", NULL);	/* removed by the previous miss */
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.expired, 1);
	/* max_ttl caps expiry */
	tc_now = t0;
	CU_ASSERT_EQUAL(put_str(db, "far", "v", t0 + 10 * 86400), 0);
	tc_now = t0 + 86400;
	expect_get(db, "far", NULL);
	tc_now = t0;
	sessdb_close(db);
}

static void
test_take_delete(void)
{
	struct sessdb *db;
	struct sessdb_stats st;
	void *data;
	size_t len;

	fresh("take");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "t", "ticket", 0), 0);
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "t", 1, &data, &len, NULL), SESSDB_OK);
	CU_ASSERT_EQUAL(len, 6);
	CU_ASSERT(memcmp(data, "ticket", 6) == 0);
	sessdb_free(data);
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "t", 1, &data, &len, NULL), SESSDB_MISS);
	expect_get(db, "t", NULL);
	/* take of an expired record is a miss, and removes it */
	CU_ASSERT_EQUAL(put_str(db, "old", "x", tc_now + 5), 0);
	tc_now += 5;
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "old", 3, &data, &len, NULL), SESSDB_MISS);
	tc_now -= 5;
	expect_get(db, "old", NULL);
	/* delete: present, then absent (a no-op success) */
	CU_ASSERT_EQUAL(put_str(db, "d", "x", 0), 0);
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, "d", 1), 0);
	expect_get(db, "d", NULL);
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, "d", 1), 0);
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, "never", 5), 0);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.deletes, 2);
	CU_ASSERT_EQUAL(st.errors, 0);
	sessdb_close(db);
}

/* add_racer - one of ADDERS processes released at once through fd: add
 * under one key; exits 0 if it stored, 1 if a live record was there, 2
 * on anything else. */
static void
add_racer(int fd, unsigned me)
{
	struct sessdb *db = open_default();
	char go, val[16];
	int rc;

	snprintf(val, sizeof(val), "adder %u", me);
	if (db == NULL || read(fd, &go, 1) != 1)
		_exit(2);
	rc = sessdb_add(db, NS, "race", 4, val, strlen(val), 0);
	sessdb_close(db);
	_exit(rc == 0 ? 0 : rc == SESSDB_EXISTS ? 1 : 2);
}

#define ADDERS	6

/* test_add - put only where no live record is: the second add of a key
 * changes nothing, an expired record is replaced (local stores: Redis
 * expires by its own clock, not the test's), and of ADDERS processes
 * adding one key at once exactly one stores. */
static void
test_add(void)
{
	struct sessdb *db;
	struct sessdb_stats st;
	int fds[2], stored = 0, existed = 0, status;
	pid_t pid[ADDERS];
	void *data;
	size_t len;

	fresh("add");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_add(db, NS, "a", 1, "first", 5, 0), 0);
	CU_ASSERT_EQUAL(sessdb_add(db, NS, "a", 1, "second", 6, 0), SESSDB_EXISTS);
	expect_get(db, "a", "first");
	CU_ASSERT_EQUAL(put_str(db, "a", "replaced", 0), 0);	/* put still replaces */
	expect_get(db, "a", "replaced");
	if (cur->flags & BK_LOCAL) {
		CU_ASSERT_EQUAL(put_str(db, "old", "gone soon", tc_now + 5), 0);
		tc_now += 5;
		CU_ASSERT_EQUAL(sessdb_add(db, NS, "old", 3, "new", 3, 0), 0);
		expect_get(db, "old", "new");
		tc_now -= 5;
	}
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.errors, 0);
	sessdb_close(db);	/* the children inherit no handle of ours */

	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	fflush(stdout);
	for (unsigned i = 0; i < ADDERS; i++) {
		if ((pid[i] = fork()) == 0) {
			close(fds[1]);
			add_racer(fds[0], i);
		}
		CU_ASSERT_FATAL(pid[i] > 0);
	}
	close(fds[0]);
	tc_sleep_ms(100);		/* all of them open, waiting */
	for (unsigned i = 0; i < ADDERS; i++)
		CU_ASSERT_EQUAL(write(fds[1], "g", 1), 1);
	close(fds[1]);
	for (unsigned i = 0; i < ADDERS; i++) {
		CU_ASSERT_EQUAL(waitpid(pid[i], &status, 0), pid[i]);
		CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) < 2);
		stored += WIFEXITED(status) && WEXITSTATUS(status) == 0;
		existed += WIFEXITED(status) && WEXITSTATUS(status) == 1;
	}
	if (stored != 1)
		printf("\n  %d processes adding one key at once: %d stored, "
		    "want 1\n", ADDERS, stored);
	CU_ASSERT_EQUAL(stored, 1);
	CU_ASSERT_EQUAL(existed, ADDERS - 1);
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, "race", 4, &data, &len, NULL), SESSDB_OK);
	CU_ASSERT(len > 6 && memcmp(data, "adder ", 6) == 0);
	sessdb_free(data);
	sessdb_close(db);
}

struct tally {
	int live, expired, bad, calls, stop_at;
};

static int
count_rec(void *arg, const struct sessdb_record *rec)
{
	struct tally *t = arg;

	t->calls++;
	if (rec->problem != NULL)
		t->bad++;
	else if (rec->meta.expires <= tc_now)
		t->expired++;
	else
		t->live++;
	if (rec->problem == NULL) {
		/* payload is "v<id>" */
		CU_ASSERT_EQUAL(rec->ns, NS);
		CU_ASSERT_EQUAL(rec->len, rec->id_len + 1);
		CU_ASSERT(rec->data[0] == 'v' &&
		    memcmp(rec->data + 1, rec->id, rec->id_len) == 0);
		CU_ASSERT_EQUAL(rec->key_len, rec->id_len + 1);
	}
	return t->stop_at != 0 && t->calls == t->stop_at ? 42 : 0;
}

/* populate - n live and m expired-soon records "v<id>". */
static void
populate(struct sessdb *db, int n, int m, int64_t expire_at)
{
	char id[16], val[20];

	for (int i = 0; i < n + m; i++) {
		snprintf(id, sizeof(id), "%c%06d", i < n ? 'L' : 'E', i);
		snprintf(val, sizeof(val), "v%s", id);
		CU_ASSERT_EQUAL(put_str(db, id, val, i < n ? 0 : expire_at), 0);
	}
}

static void
test_foreach(void)
{
	struct sessdb_options o = opts();
	struct sessdb *db;
	struct tally t;

	fresh("foreach");
	o.sweep_batch = 7;	/* many batches */
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	populate(db, 100, 50, tc_now + SOON);
	tc_now += SOON;
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.live, 100);
	CU_ASSERT_EQUAL(t.expired, 50);
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, SESSDB_ITER_LIVE, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.live, 100);
	CU_ASSERT_EQUAL(t.expired, 0);
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, SESSDB_ITER_EXPIRED, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.live, 0);
	CU_ASSERT_EQUAL(t.expired, 50);
	memset(&t, 0, sizeof(t));
	t.stop_at = 20;
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, count_rec, &t), 42);
	CU_ASSERT_EQUAL(t.calls, 20);
	tc_now -= SOON;
	sessdb_close(db);
}

/*
 * Deleting records from inside foreach is allowed: no error, no crash, no
 * record seen twice in a pass; GDBM may move not-yet-visited keys of the
 * current bucket, so a pass can miss some, and a later pass finds them.
 */
struct deleter {
	struct sessdb	*db;
	int		deleted;
	char		seen[200];
};

static int
delete_current(void *arg, const struct sessdb_record *rec)
{
	struct deleter *d = arg;
	char num[16] = "";
	int n;

	memcpy(num, rec->id + 1, rec->id_len - 1 < 15 ? rec->id_len - 1 : 15);
	n = atoi(num);

	CU_ASSERT(n >= 0 && n < 200);
	CU_ASSERT_EQUAL(d->seen[n], 0);
	d->seen[n] = 1;
	CU_ASSERT_EQUAL(sessdb_delete(d->db, rec->ns, rec->id, rec->id_len), 0);
	d->deleted++;
	return 0;
}

static void
test_foreach_deleting(void)
{
	struct sessdb_options o = opts();
	struct deleter d = { 0 };
	int passes = 0, total = 0;

	fresh("foreachdel");
	o.sweep_batch = 5;
	d.db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d.db);
	populate(d.db, 200, 0, 0);
	do {
		d.deleted = 0;
		memset(d.seen, 0, sizeof(d.seen));
		CU_ASSERT_EQUAL(sessdb_foreach(d.db, 0, delete_current, &d), 0);
		total += d.deleted;
		passes++;
	} while (d.deleted > 0 && passes < 50);
	if (total != 200)
		printf("\n  deleted %d in %d passes, want 200\n", total, passes);
	CU_ASSERT_EQUAL(total, 200);
	sessdb_close(d.db);
}

static int
count_removed(void *arg, const struct sessdb_record *rec)
{
	int *n = arg;

	CU_ASSERT(rec->problem != NULL || rec->meta.expires <= tc_now);
	(*n)++;
	return 0;
}

static void
test_sweep(void)
{
	static const unsigned batches[] = { 1, 3, 64, 1000 };

	for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
		struct sessdb_options o = opts();
		struct sessdb_sweep_result res;
		struct sessdb_info info;
		struct sessdb *db;
		struct tally t;
		int removed = 0;

		fresh("sweep");
		o.sweep_batch = batches[b];
		db = open_with(&o);
		CU_ASSERT_PTR_NOT_NULL_FATAL(db);
		populate(db, 300, 200, tc_now + SOON);
		tc_now += SOON;
		CU_ASSERT_EQUAL(sessdb_sweep(db, SESSDB_SWEEP_DRY_RUN, count_removed,
		    &removed, &res), 0);
		CU_ASSERT_EQUAL(res.expired, 200);
		CU_ASSERT_EQUAL(removed, 200);
		memset(&t, 0, sizeof(t));
		sessdb_foreach(db, 0, count_rec, &t);
		CU_ASSERT_EQUAL(t.calls, 500);	/* dry run removed nothing */

		removed = 0;
		CU_ASSERT_EQUAL(sessdb_sweep(db, 0, count_removed, &removed, &res), 0);
		if (res.expired != 200 || res.live != 300)
			printf("\n  batch %u: got expired %llu live %llu, want 200 300\n",
			    batches[b], (unsigned long long)res.expired,
			    (unsigned long long)res.live);
		CU_ASSERT_EQUAL(res.expired, 200);
		CU_ASSERT_EQUAL(res.live, 300);
		CU_ASSERT_EQUAL(res.examined, 500);
		CU_ASSERT_EQUAL(removed, 200);
		if (cur->flags & BK_LOCAL)
			CU_ASSERT_EQUAL(res.batches,
			    (200 + batches[b] - 1) / batches[b]);
		memset(&t, 0, sizeof(t));
		sessdb_foreach(db, 0, count_rec, &t);
		CU_ASSERT_EQUAL(t.live, 300);
		CU_ASSERT_EQUAL(t.expired, 0);
		CU_ASSERT_EQUAL(sessdb_info(db, &info), 0);
		if (cur->flags & BK_LOCAL)
			CU_ASSERT_EQUAL(info.entries, 300);
		CU_ASSERT(info.file_size > 0);
		tc_now -= SOON;
		sessdb_close(db);
	}
}

/* test_no_caps - a backend that does not enforce caps says so once, and
 * takes the records. */
static void
test_no_caps(void)
{
	struct sessdb_options o = opts();
	struct sessdb *db;
	char id[16];

	fresh("nocap");
	o.max_entries = 3;
	o.max_bytes = 100;
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT(tc_log_seen("not enforced"));
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "c%d", i);
		CU_ASSERT_EQUAL(put_str(db, id, "a value longer than it needs", 0), 0);
	}
	expect_get(db, "c9", "a value longer than it needs");
	sessdb_close(db);
}

static void
test_capacity(void)
{
	struct sessdb_options o = opts();
	struct sessdb_stats st;
	struct sessdb *db;
	char id[16];

	if (!(cur->flags & BK_CAPS)) {
		test_no_caps();
		return;
	}
	fresh("cap");
	o.max_entries = 10;
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "c%d", i);
		CU_ASSERT_EQUAL(put_str(db, id, "v", i < 4 ? tc_now + 5 : 0), 0);
	}
	CU_ASSERT_EQUAL(put_str(db, "over", "v", 0), SESSDB_FULL);
	CU_ASSERT_EQUAL(put_str(db, "c9", "replacing is fine", 0), 0);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.declined, 1);
	/* four expire: the cap sweeps them and takes the new record */
	tc_now += 5;
	CU_ASSERT_EQUAL(put_str(db, "over", "v", 0), 0);
	expect_get(db, "over", "v");
	expect_get(db, "c9", "replacing is fine");
	expect_get(db, "c0", NULL);
	tc_now -= 5;
	sessdb_close(db);

	/* byte cap */
	fresh("capbytes");
	o = opts();
	o.max_bytes = 4 * (1 + 3 + REC_HEADER_LEN + 100);
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	{
		char val[101];
		memset(val, 'x', 100);
		val[100] = '\0';
		for (int i = 0; i < 4; i++) {
			snprintf(id, sizeof(id), "b%02d", i);
			CU_ASSERT_EQUAL(put_str(db, id, val, 0), 0);
		}
		CU_ASSERT_EQUAL(put_str(db, "b99", val, 0), SESSDB_FULL);
		CU_ASSERT_EQUAL(sessdb_delete(db, NS, "b00", 3), 0);
		CU_ASSERT_EQUAL(put_str(db, "b99", val, 0), 0);
	}
	sessdb_close(db);
}

static void
test_persistence_and_rdonly(void)
{
	struct sessdb_options o = opts();
	struct sessdb *db, *ro;
	void *data;
	size_t len;

	fresh("persist");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "keep", "me", 0), 0);
	sessdb_close(db);
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	expect_get(db, "keep", "me");

	o.flags = SESSDB_RDONLY;
	ro = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ro);
	expect_get(ro, "keep", "me");
	CU_ASSERT_EQUAL(put_str(ro, "no", "x", 0), -1);
	CU_ASSERT(strstr(sessdb_error(ro), "read-only") != NULL);
	CU_ASSERT_EQUAL(sessdb_delete(ro, NS, "keep", 4), -1);
	CU_ASSERT_EQUAL(sessdb_take(ro, NS, "keep", 4, &data, &len, NULL), -1);
	CU_ASSERT_EQUAL(sessdb_sweep(ro, 0, NULL, NULL, NULL), -1);
	CU_ASSERT_EQUAL(sessdb_compact(ro), -1);
	/* the read-only handle sees the writer's later records */
	CU_ASSERT_EQUAL(put_str(db, "later", "seen", 0), 0);
	expect_get(ro, "later", "seen");
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, "later", 5), 0);
	expect_get(ro, "later", NULL);
	sessdb_close(ro);
	sessdb_close(db);
}

/* Read-only or NOCREATE on a missing file: clear error and code, no file. */
static void
test_missing_file(void)
{
	struct sessdb_options o = opts();
	char err[256];

	fresh("missing");
	o.flags = SESSDB_RDONLY;
	CU_ASSERT_PTR_NULL(sessdb_open(path, &o, err, sizeof(err)));
	CU_ASSERT(strstr(err, "No such file") != NULL);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_NOT_FOUND);
	o.flags = SESSDB_NOCREATE;
	CU_ASSERT_PTR_NULL(sessdb_open(path, &o, err, sizeof(err)));
	CU_ASSERT(strstr(err, "No such file") != NULL);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_NOT_FOUND);
	CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
}

/* Compaction keeps the records and other handles notice the new file. */
static void
test_compact(void)
{
	struct sessdb *db, *other;
	struct sessdb_info before, after;
	struct sessdb_sweep_result res;
	struct tally t;

	fresh("compact");
	db = open_default();
	other = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	populate(db, 100, 2000, tc_now + SOON);
	tc_now += SOON;
	CU_ASSERT_EQUAL(sessdb_sweep(db, 0, NULL, NULL, &res), 0);
	CU_ASSERT_EQUAL(res.expired, 2000);
	CU_ASSERT_EQUAL(sessdb_info(db, &before), 0);
	CU_ASSERT_EQUAL(sessdb_compact(db), 0);
	CU_ASSERT_EQUAL(sessdb_info(db, &after), 0);
	if (cur->flags & BK_LOCAL)
		CU_ASSERT(after.file_size < before.file_size);
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(other, 0, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.live, 100);
	CU_ASSERT_EQUAL(put_str(other, "after", "compaction", 0), 0);
	expect_get(db, "after", "compaction");
	tc_now -= SOON;
	sessdb_close(other);
	sessdb_close(db);
}

/* The compacted file has the store's mode, 0600. */
static void
test_compact_mode(void)
{
	struct sessdb *db;
	struct stat st;

	fresh("compactmode");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	populate(db, 10, 0, 0);
	CU_ASSERT_EQUAL(sessdb_compact(db), 0);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	sessdb_close(db);
}

/* expect_open_code - the last failed open's code is want. */
static void
expect_open_code(const char *what, const char *err, int want)
{
	int got = sessdb_open_errcode();

	if (got != want)
		printf("\n  %s: got code %d (%s), want %d (%s); \"%s\"\n", what,
		    got, sessdb_strerror(got), want, sessdb_strerror(want), err);
	CU_ASSERT_EQUAL(got, want);
}

/* expect_refused - open fails, the message contains want, the code is
 * want_code. */
static void
expect_refused(const char *p, const char *want, int want_code)
{
	char err[512] = "";
	struct sessdb_options o = opts();
	struct sessdb *db = sessdb_open(p, &o, err, sizeof(err));

	if (db != NULL || strstr(err, want) == NULL)
		printf("\n  open %s: got \"%s\", want refusal with \"%s\"\n", p, err, want);
	CU_ASSERT_PTR_NULL(db);
	CU_ASSERT(strstr(err, want) != NULL);
	expect_open_code(p, err, want_code);
	sessdb_close(db);
}

static void
test_file_safety(void)
{
	char target[320], link[320], lock[340];
	int fd;

	fresh("safety");
	snprintf(target, sizeof(target), "%s/target.db", tc_dir);
	snprintf(link, sizeof(link), "%s/link.db", tc_dir);
	unlink(target);
	unlink(link);
	CU_ASSERT_EQUAL(symlink(target, link), 0);
	expect_refused(link, "symbolic link", SESSDB_E_PERMISSION);
	CU_ASSERT_NOT_EQUAL(access(target, F_OK), 0);	/* nothing created through it */

	snprintf(link, sizeof(link), "%s/adir.db", tc_dir);
	mkdir(link, 0700);
	expect_refused(link, "directory", SESSDB_E_NOT_STORE);

	snprintf(link, sizeof(link), "%s/no/such/dir/x.db", tc_dir);
	expect_refused(link, "No such file", SESSDB_E_NOT_FOUND);

	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CU_ASSERT(fd >= 0);
	fchmod(fd, 0620);
	close(fd);
	expect_refused(path, "group or world writable", SESSDB_E_PERMISSION);
	chmod(path, 0606);
	expect_refused(path, "group or world writable", SESSDB_E_PERMISSION);
	unlink(path);

	/* a symlinked lock file is refused too */
	snprintf(lock, sizeof(lock), "%s.lock", path);
	unlink(lock);
	CU_ASSERT_EQUAL(symlink(target, lock), 0);
	expect_refused(path, "symbolic link", SESSDB_E_PERMISSION);
	unlink(lock);

	snprintf(link, sizeof(link), "%s/fifo.db", tc_dir);
	unlink(link);
	CU_ASSERT_EQUAL(mkfifo(link, 0600), 0);
	expect_refused(link, "not a regular file", SESSDB_E_NOT_STORE);
	unlink(link);
}

/* A file owned by someone else is refused (checked from a non-root child). */
static void
test_foreign_owner(void)
{
	pid_t pid;
	int status;

	if (geteuid() != 0) {
		printf("skipped: making a file of another uid needs root ");
		return;
	}
	fresh("foreign");
	CU_ASSERT_EQUAL(chmod(tc_dir, 0777), 0);
	{
		struct sessdb *db = open_default();	/* owned by root */
		CU_ASSERT_PTR_NOT_NULL_FATAL(db);
		sessdb_close(db);
	}
	pid = fork();
	if (pid == 0) {
		char err[512] = "";
		struct sessdb *db;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		db = sessdb_open(path, NULL, err, sizeof(err));
		_exit(db == NULL && (strstr(err, "owned by uid 0") != NULL ||
		    strstr(err, "Permission denied") != NULL) &&
		    sessdb_open_errcode() == SESSDB_E_PERMISSION ? 0 : 1);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	chmod(tc_dir, 0700);
}

/* gdbm_put_raw - write a raw value under a raw key, bypassing the store. */
static void
gdbm_put_raw(const void *key, size_t key_len, const void *val, size_t val_len)
{
	GDBM_FILE g = gdbm_open(path, 0, GDBM_WRITER | GDBM_NOLOCK, 0600, NULL);
	datum k = { (char *)key, (int)key_len }, v = { (char *)val, (int)val_len };

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_EQUAL(gdbm_store(g, k, v, GDBM_REPLACE), 0);
	gdbm_close(g);
}

static void
test_corrupt_records(void)
{
	struct sessdb *db, *reader;
	struct sessdb_stats st;
	struct sessdb_options o = opts();
	struct tally t;
	unsigned char key[REC_KEY_MAX], val[64];
	size_t key_len;

	fresh("corrupt");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "good", "vgood", 0), 0);
	sessdb_close(db);

	key_len = rec_key_make(key, NS, "bad1", 4);
	gdbm_put_raw(key, key_len, "garbage that is no record at all", 32);
	key_len = rec_key_make(key, NS, "bad2", 4);
	memset(val, 0, sizeof(val));
	gdbm_put_raw(key, key_len, val, sizeof(val));
	gdbm_put_raw("\x01junk", 5, "x", 1);	/* malformed key */

	o.flags = SESSDB_RDONLY;
	reader = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reader);
	expect_get(reader, "bad1", NULL);	/* a miss, never a crash */
	sessdb_stats(reader, &st);
	CU_ASSERT_EQUAL(st.corrupt, 1);
	CU_ASSERT_EQUAL(st.errors, 0);

	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.bad, 3);
	CU_ASSERT_EQUAL(t.live, 1);
	expect_get(db, "bad1", NULL);
	CU_ASSERT(tc_log_calls > 0);
	CU_ASSERT(strstr(tc_last_log, "unreadable record") != NULL);
	memset(&t, 0, sizeof(t));
	sessdb_foreach(db, 0, count_rec, &t);
	CU_ASSERT_EQUAL(t.bad, 2);	/* the writer's miss removed bad1 */
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, SESSDB_ITER_REMOVE_BAD, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.bad, 2);
	memset(&t, 0, sizeof(t));
	sessdb_foreach(db, 0, count_rec, &t);
	CU_ASSERT_EQUAL(t.bad, 0);
	CU_ASSERT_EQUAL(t.live, 1);
	expect_get(db, "good", "vgood");
	sessdb_close(reader);
	sessdb_close(db);
}

/* A garbage or truncated database file is moved aside; the store works. */
static void
test_damaged_file(void)
{
	static const struct { const char *name; long keep; } cases[] = {
		{ "garbage", -1 }, { "truncated", 700 }, { "header only", 64 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sessdb *db;
		char cmd[700];
		int fd;

		fresh("damaged");
		db = open_default();
		CU_ASSERT_PTR_NOT_NULL_FATAL(db);
		populate(db, 50, 0, 0);
		sessdb_close(db);
		if (cases[i].keep < 0) {
			fd = open(path, O_WRONLY | O_TRUNC);
			CU_ASSERT(write(fd, "this is not a gdbm file, not at all....", 40) == 40);
			close(fd);
		} else {
			CU_ASSERT_EQUAL(truncate(path, cases[i].keep), 0);
		}
		db = open_default();
		if (db == NULL)
			printf("\n  %s: open failed\n", cases[i].name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(db);
		CU_ASSERT(tc_log_calls > 0);
		CU_ASSERT_EQUAL(put_str(db, "new", "vnew", 0), 0);
		expect_get(db, "new", "vnew");
		{
			struct sessdb_stats st;
			sessdb_stats(db, &st);
			CU_ASSERT_EQUAL(st.recoveries, 1);
		}
		snprintf(cmd, sizeof(cmd), "ls '%s'.corrupt-* >/dev/null 2>&1", path);
		CU_ASSERT_EQUAL(system(cmd), 0);
		sessdb_close(db);
	}
}

/* Damage inside the file (a bucket overwritten) found by a sweep is
 * repaired and the sweep completes; NOCREATE handles repair too. */
static void
test_damaged_bucket(void)
{
	struct sessdb_options o = opts();
	struct sessdb_sweep_result res;
	struct sessdb *db;
	struct tally t;
	char junk[64];
	int fd;

	fresh("bucket");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	populate(db, 2000, 0, 0);
	sessdb_close(db);
	memset(junk, 0x5a, sizeof(junk));
	fd = open(path, O_RDWR);
	CU_ASSERT_EQUAL(pwrite(fd, junk, sizeof(junk), 50000), (ssize_t)sizeof(junk));
	close(fd);

	o.flags = SESSDB_NOCREATE;
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_sweep(db, 0, NULL, NULL, &res), 0);
	CU_ASSERT(tc_log_calls > 0);
	/* The junk may also have hit record bytes: those are unreadable now
	 * and the sweep removes them; every other record is intact. */
	CU_ASSERT(res.live + res.corrupt >= 1990);
	CU_ASSERT(res.live <= 2000);
	memset(&t, 0, sizeof(t));
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, count_rec, &t), 0);
	CU_ASSERT_EQUAL(t.bad, 0);
	CU_ASSERT_EQUAL((uint64_t)t.live, res.live);
	{
		struct sessdb_stats st;
		sessdb_stats(db, &st);
		CU_ASSERT_EQUAL(st.recoveries, 1);
	}
	sessdb_close(db);
}

/* A handle opened before fork works in the child, and both see each other. */
static void
test_fork(void)
{
	struct sessdb *db;
	pid_t pid;
	int status;

	fresh("fork");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "parent", "vparent", 0), 0);
	pid = fork();
	if (pid == 0) {
		void *d;
		size_t l;
		int ok = sessdb_get(db, NS, "parent", 6, &d, &l, NULL) == SESSDB_OK &&
		    put_str(db, "child", "vchild", 0) == 0;
		sessdb_free(d);
		sessdb_close(db);
		_exit(ok ? 0 : 1);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	expect_get(db, "child", "vchild");
	sessdb_close(db);
}

/* ---- error codes ---- */

/* Codes of the failures any backend reports the same way. */
static void
test_error_codes(void)
{
	static unsigned char big[SESSDB_PAYLOAD_MAX + 1];
	struct sessdb_options o = opts();
	unsigned char id[40] = { 1 };
	struct sessdb *db, *ro;
	void *data;
	size_t len;

	fresh("errcodes");
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_errcode(db), 0);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), 0);
	CU_ASSERT_EQUAL(sessdb_errcode(NULL), SESSDB_E_ARG);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 0, "x", 1, 0), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_ARG);
	CU_ASSERT_EQUAL(sessdb_get(db, NS, id, SESSDB_ID_MAX + 1, &data, &len,
	    NULL), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_ARG);
	CU_ASSERT_EQUAL(sessdb_put(db, NS, id, 4, big, sizeof(big), 0), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_TOO_LARGE);
	CU_ASSERT_EQUAL(put_str(db, "kept", "v", 0), 0);

	o.flags = SESSDB_RDONLY;
	ro = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ro);
	CU_ASSERT_EQUAL(put_str(ro, "no", "x", 0), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(ro), SESSDB_E_READONLY);
	CU_ASSERT_EQUAL(sessdb_delete(ro, NS, "kept", 4), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(ro), SESSDB_E_READONLY);
	CU_ASSERT_EQUAL(sessdb_take(ro, NS, "kept", 4, &data, &len, NULL), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(ro), SESSDB_E_READONLY);
	CU_ASSERT_EQUAL(sessdb_compact(ro), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(ro), SESSDB_E_READONLY);
	expect_get(ro, "kept", "v");
	sessdb_close(ro);
	sessdb_close(db);
}

/* sessdb_strerror names every code, and errno values as strerror does. */
static void
test_strerror(void)
{
	static const int codes[] = {
		SESSDB_E_ARG, SESSDB_E_TOO_LARGE, SESSDB_E_READONLY,
		SESSDB_E_LOCK_TIMEOUT, SESSDB_E_DAMAGED, SESSDB_E_NO_SPACE,
		SESSDB_E_IO, SESSDB_E_PERMISSION, SESSDB_E_NOT_STORE,
		SESSDB_E_NOT_FOUND, SESSDB_E_BACKEND, SESSDB_E_NOMEM,
		SESSDB_E_SYSTEM,
	};
	const char *unknown = sessdb_strerror(999999);

	CU_ASSERT_PTR_NOT_NULL_FATAL(unknown);
	CU_ASSERT_STRING_EQUAL(sessdb_strerror(-1), unknown);
	CU_ASSERT_STRING_EQUAL(sessdb_strerror(0), "no error");
	for (size_t i = 0; i < TC_NELEM(codes); i++) {
		const char *s = sessdb_strerror(codes[i]);

		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		if (strcmp(s, unknown) == 0 || *s == '\0')
			printf("\n  code %d: got \"%s\", want its own name\n",
			    codes[i], s);
		CU_ASSERT(strcmp(s, unknown) != 0 && *s != '\0');
		for (size_t j = 0; j < i; j++)
			CU_ASSERT(strcmp(s, sessdb_strerror(codes[j])) != 0);
	}
	CU_ASSERT_STRING_EQUAL(sessdb_strerror(ENOSPC), strerror(ENOSPC));
	CU_ASSERT_STRING_EQUAL(sessdb_strerror(EACCES), strerror(EACCES));
	CU_ASSERT_STRING_EQUAL(sessdb_strerror(EIO), strerror(EIO));
}

/* A file that is no store (a PEM certificate) is refused and untouched. */
static void
test_errcode_not_store(void)
{
	static const char pem[] =
	    "-----BEGIN CERTIFICATE-----\n"
	    "MIIBszCCAVmgAwIBAgIUZXhhbXBsZSBub3QgYSBzdG9yZTAKBggqhkjOPQQDAjAP\n"
	    "-----END CERTIFICATE-----\n";
	struct sessdb_options o = opts();
	char err[512] = "", back[sizeof(pem)];
	struct stat st;
	int fd;

	fresh("pem");
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(write(fd, pem, sizeof(pem) - 1) == (ssize_t)sizeof(pem) - 1);
	close(fd);
	CU_ASSERT_PTR_NULL(sessdb_open(path, &o, err, sizeof(err)));
	if (sessdb_open_errcode() != SESSDB_E_NOT_STORE)
		printf("\n  open of a PEM file: got code %d (%s), want %d; \"%s\"\n",
		    sessdb_open_errcode(), sessdb_strerror(sessdb_open_errcode()),
		    SESSDB_E_NOT_STORE, err);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_NOT_STORE);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, (off_t)sizeof(pem) - 1);
	fd = open(path, O_RDONLY);
	CU_ASSERT(read(fd, back, sizeof(back)) == (ssize_t)sizeof(pem) - 1);
	CU_ASSERT(memcmp(back, pem, sizeof(pem) - 1) == 0);
	close(fd);
}

/* A lock held by another process past lock_timeout_ms: LOCK_TIMEOUT. */
static void
test_errcode_lock_timeout(void)
{
	struct sessdb_options o = opts();
	char lock[320];
	struct sessdb *db;
	void *data = NULL;
	size_t len;
	pid_t holder;

	fresh("locktimeout");
	o.lock_timeout_ms = 100;
	db = open_with(&o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "k", "v", 0), 0);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	holder = tc_hold_lock(lock, LOCK_EX);
	CU_ASSERT_FATAL(holder > 0);
	/* A lookup the index answers needs no lock; one it cannot answer
	 * (an absent key) asks the file, and waits in vain. */
	expect_get(db, "k", "v");
	CU_ASSERT_EQUAL(sessdb_get(db, NS, "absent", 6, &data, &len, NULL), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_LOCK_TIMEOUT);
	CU_ASSERT_EQUAL(put_str(db, "k2", "v", 0), -1);
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_LOCK_TIMEOUT);
	tc_release_lock(holder);
	expect_get(db, "k", "v");
	sessdb_close(db);
}

/* A group-writable file or a symbolic link is refused: PERMISSION. */
static void
test_errcode_permission(void)
{
	struct sessdb_options o = opts();
	char err[512] = "", link[320];
	int fd;

	fresh("perm");
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(fchmod(fd, 0660), 0);
	close(fd);
	CU_ASSERT_PTR_NULL(sessdb_open(path, &o, err, sizeof(err)));
	expect_open_code("group-writable file", err, SESSDB_E_PERMISSION);
	snprintf(link, sizeof(link), "%s/permlink.db", tc_dir);
	unlink(link);
	CU_ASSERT_EQUAL(symlink(path, link), 0);
	CU_ASSERT_PTR_NULL(sessdb_open(link, &o, err, sizeof(err)));
	expect_open_code("symbolic link", err, SESSDB_E_PERMISSION);
	unlink(link);
}

/* fill_until_full - put 2 KB records until a put fails; how many went in. */
static int
fill_until_full(struct sessdb *db)
{
	unsigned char val[2048];
	char id[16];
	int n;

	memset(val, 0xa5, sizeof(val));
	for (n = 0; n < 10000; n++) {
		snprintf(id, sizeof(id), "full%05d", n);
		if (sessdb_put(db, NS, id, strlen(id), val, sizeof(val), 0) != 0)
			break;
	}
	return n;
}

/* A full file system (a small tmpfs, root only): NO_SPACE, and what was
 * stored before is still there. */
static void
test_errcode_no_space(void)
{
	char mnt[280];
	struct sessdb *db;
	int n;

	if (geteuid() != 0) {
		printf("skipped: mounting a tmpfs needs root ");
		return;
	}
	snprintf(mnt, sizeof(mnt), "%s/tmpfs", tc_dir);
	CU_ASSERT_FATAL(mkdir(mnt, 0700) == 0 || errno == EEXIST);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k,mode=0700") != 0) {
		printf("skipped: mount tmpfs: %s ", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/full.db", mnt);
	db = open_default();
	CU_ASSERT_PTR_NOT_NULL(db);
	if (db != NULL) {
		n = fill_until_full(db);
		if (sessdb_errcode(db) != SESSDB_E_NO_SPACE)
			printf("\n  after %d puts: got code %d (%s), want NO_SPACE; \"%s\"\n",
			    n, sessdb_errcode(db), sessdb_strerror(sessdb_errcode(db)),
			    sessdb_error(db));
		CU_ASSERT(n > 0 && n < 10000);
		CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_NO_SPACE);
		{
			void *data = NULL;
			size_t len = 0;

			CU_ASSERT_EQUAL(sessdb_get(db, NS, "full00000", 9, &data,
			    &len, NULL), SESSDB_OK);
			CU_ASSERT_EQUAL(len, 2048);
			sessdb_free(data);
		}
		sessdb_close(db);
	}
	CU_ASSERT_EQUAL(umount2(mnt, MNT_DETACH), 0);
}

/* ---- the runner ---- */

/* Cases every backend passes the same way. */
static const struct tc_case api_cases[] = {
	{ "put and get", test_put_get },
	{ "bad keys and sizes", test_bad_keys },
	{ "expiry boundaries", test_expiry_boundaries },
	{ "take and delete", test_take_delete },
	{ "add: only where no live record is", test_add },
	{ "foreach", test_foreach },
	{ "foreach deleting", test_foreach_deleting },
	{ "sweep", test_sweep },
	{ "capacity", test_capacity },
	{ "persistence and read-only", test_persistence_and_rdonly },
	{ "compact", test_compact },
	{ "fork", test_fork },
	{ "error codes: argument, size, read-only", test_error_codes },
};

/* Cases about GDBM files and the lock file. */
static const struct tc_case gdbm_cases[] = {
	{ "create with mode 0600", test_create_modes },
	{ "compacted file keeps mode 0600", test_compact_mode },
	{ "missing file: read-only, NOCREATE", test_missing_file },
	{ "file safety", test_file_safety },
	{ "foreign owner", test_foreign_owner },
	{ "corrupt records", test_corrupt_records },
	{ "damaged file", test_damaged_file },
	{ "damaged bucket", test_damaged_bucket },
	{ "error code: not a store (PEM file)", test_errcode_not_store },
	{ "error code: lock timeout", test_errcode_lock_timeout },
	{ "error code: permission", test_errcode_permission },
	{ "error code: no space (tmpfs)", test_errcode_no_space },
};

static const struct tc_case strerror_cases[] = {
	{ "sessdb_strerror of codes and errno values", test_strerror },
};

int
main(void)
{
	struct tc_suite suites[TC_NELEM(backends) + 2];
	char names[TC_NELEM(backends)][64], why[512];
	int started[TC_NELEM(backends)] = { 0 }, rc;
	size_t n = 0;

	if (tc_tmpdir_make("test_store") != 0)
		return 2;
	for (size_t i = 0; i < TC_NELEM(backends); i++) {
		if (backends[i].start != NULL) {
			if (backends[i].start(why, sizeof(why)) != 0) {
				printf("api/%s: skipped: %s\n", backends[i].name, why);
				continue;
			}
			started[i] = 1;
		}
		snprintf(names[i], sizeof(names[i]), "api/%s", backends[i].name);
		suites[n++] = (struct tc_suite)TC_SUITE(names[i], api_cases,
		    api_init, NULL);
	}
	suites[n++] = (struct tc_suite)TC_SUITE("gdbm", gdbm_cases, gdbm_init, NULL);
	suites[n++] = (struct tc_suite)TC_SUITE("strerror", strerror_cases, NULL,
	    NULL);
	rc = tc_run(suites, n);
	for (size_t i = 0; i < TC_NELEM(backends); i++)
		if (started[i])
			backends[i].stop();
	return rc;
}
