/*
 * NAME
 *	redis_faults - the Redis backend when Redis fails: stopped, hung,
 *	restarted, refusing the password, out of memory; the take race
 *	across processes; a handle opened before fork
 *
 * DESCRIPTION
 *	Each case starts a redis-server of its own (tests/redis_server.c: a
 *	free loopback port, persistence off, a temporary directory) and
 *	kills it at the end.  What is checked, as behaviour and not as a
 *	benchmark:
 *	- every call returns within a generous bound (10 x timeout_ms) and
 *	  a failed one says SESSDB_E_BACKEND;
 *	- while Redis is away the process makes at most about one connection
 *	  attempt a second: connect(2) is interposed here and counts the
 *	  attempts to the server's port;
 *	- each change of state is logged once, not once per call;
 *	- when Redis is back, put and get work on the same handle.
 *
 *	Exits 77 (skipped) with the reason when redis-server is not
 *	installed or the library is built without Redis support.
 */
#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <dlfcn.h>
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
#include <unistd.h>

#include "common.h"
#include "redis_server.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define TIMEOUT_MS	50
#define BOUND_MS	(10 * TIMEOUT_MS)	/* "returns in time", generously */
#define BACK_MS		2500	/* back within the second's attempt, generously */
#define RACERS		8
#define RACE_KEYS	200

static struct rs srv;

/* ---- connect(2), counted ---- */

static int counted_port;		/* attempts to this port are counted */
static volatile unsigned connects;

/*
 * connect - count the attempts to the server's port, then connect.  The
 * test program's definition comes before libc's for every library that
 * calls connect (hiredis included).
 */
int
connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	static int (*real)(int, __CONST_SOCKADDR_ARG, socklen_t);
	const struct sockaddr *a = (const struct sockaddr *)addr.__sockaddr__;

	if (real == NULL)
		real = (int (*)(int, __CONST_SOCKADDR_ARG, socklen_t))
		    dlsym(RTLD_NEXT, "connect");
	if (a != NULL && a->sa_family == AF_INET && counted_port != 0 &&
	    ntohs(((const struct sockaddr_in *)a)->sin_port) == counted_port)
		connects++;
	return real(fd, addr, len);
}

/* ---- log capture: every message ---- */

#define LOG_MAX	256

static char logs[LOG_MAX][400];
static int nlogs;

static void
log_all(void *arg, int level, const char *msg)
{
	if (nlogs < LOG_MAX)
		snprintf(logs[nlogs], sizeof(logs[nlogs]), "%s", msg);
	nlogs++;
}

/* log_count - messages that contain s. */
static int
log_count(const char *s)
{
	int n = 0;

	for (int i = 0; i < nlogs && i < LOG_MAX; i++)
		if (strstr(logs[i], s) != NULL)
			n++;
	return n;
}

static void
log_dump(void)
{
	for (int i = 0; i < nlogs && i < LOG_MAX; i++)
		printf("\n    log: %s", logs[i]);
}

/* ---- helpers ---- */

/* start - a fresh server with extra arguments; counting its port. */
static int
start(const char *const *extra)
{
	nlogs = 0;
	if (rs_start(&srv, extra) == -1)
		return -1;
	counted_port = srv.port;
	connects = 0;
	return 0;
}

static void
finish(void)
{
	counted_port = 0;
	rs_destroy(&srv);
}

/* open_url - a handle on the test server (query appended to the URL). */
static struct sessdb *
open_timeout(const char *auth, const char *query, int timeout_ms)
{
	struct sessdb_options o = { 0 };
	char url[600], err[512];
	struct sessdb *db;

	o.log = log_all;
	snprintf(url, sizeof(url), "redis://%s127.0.0.1:%d/0?prefix=faults:&"
	    "timeout_ms=%d%s", auth != NULL ? auth : "", srv.port, timeout_ms,
	    query != NULL ? query : "");
	db = sessdb_open(url, &o, err, sizeof(err));
	if (db == NULL)
		printf("\n  open: %s (code %d)\n", err, sessdb_open_errcode());
	return db;
}

/* open_url - a handle with the test's timeout. */
static struct sessdb *
open_url(const char *auth, const char *query)
{
	return open_timeout(auth, query, TIMEOUT_MS);
}

static int
put_str(struct sessdb *db, const char *id, const char *val)
{
	return sessdb_put(db, NS, id, strlen(id), val, strlen(val), 0);
}

/* get_is - get id: want NULL for a miss, or the value. */
static int
get_is(struct sessdb *db, const char *id, const char *want)
{
	void *d = NULL;
	size_t l = 0;
	int rc = sessdb_get(db, NS, id, strlen(id), &d, &l, NULL), ok;

	ok = want == NULL ? rc == SESSDB_MISS : rc == SESSDB_OK &&
	    l == strlen(want) && memcmp(d, want, l) == 0;
	if (!ok)
		printf("\n  get %s: rc %d (%s), want %s\n", id, rc,
		    rc == -1 ? sessdb_error(db) : "", want ? want : "a miss");
	sessdb_free(d);
	return ok;
}

/* What a run of calls against a failing server saw. */
struct runstat {
	int	calls;
	int	failed;
	int	wrong_code;	/* failures not SESSDB_E_BACKEND */
	double	worst_ms;
	char	last_err[512];
};

/*
 * hammer - make calls (put, get, take, delete in turn) for secs seconds,
 *	pausing pause_ms between them; time each one.
 */
static void
hammer(struct sessdb *db, double secs, unsigned pause_ms, struct runstat *rs)
{
	double end = tc_mono_secs() + secs;
	void *d;
	size_t l;

	memset(rs, 0, sizeof(*rs));
	while (tc_mono_secs() < end) {
		double t0 = tc_mono_ms(), dt;
		int rc;

		switch (rs->calls % 4) {
		case 0:
			rc = put_str(db, "h", "hammered");
			break;
		case 1:
			rc = sessdb_get(db, NS, "h", 1, &d, &l, NULL);
			if (rc == SESSDB_OK)
				sessdb_free(d);
			break;
		case 2:
			rc = sessdb_take(db, NS, "h", 1, &d, &l, NULL);
			if (rc == SESSDB_OK)
				sessdb_free(d);
			break;
		default:
			rc = sessdb_delete(db, NS, "h", 1);
			break;
		}
		dt = tc_mono_ms() - t0;
		if (dt > rs->worst_ms)
			rs->worst_ms = dt;
		rs->calls++;
		if (rc == -1) {
			rs->failed++;
			if (sessdb_errcode(db) != SESSDB_E_BACKEND)
				rs->wrong_code++;
			snprintf(rs->last_err, sizeof(rs->last_err), "%s",
			    sessdb_error(db));
		}
		if (pause_ms > 0)
			tc_sleep_ms(pause_ms);
	}
}

/* check_down - while Redis was away for secs: all failed in time with
 * SESSDB_E_BACKEND, and few connection attempts were made. */
static void
check_down(const char *what, const struct runstat *rs, unsigned attempts,
    double secs)
{
	unsigned max_attempts = (unsigned)secs + 2;

	printf("\n  %s: %d calls, %d failed, worst %.1f ms, %u connection "
	    "attempts in %.1f s; last error: %s", what, rs->calls, rs->failed,
	    rs->worst_ms, attempts, secs, rs->last_err);
	CU_ASSERT(rs->calls > 20);
	CU_ASSERT_EQUAL(rs->failed, rs->calls);
	CU_ASSERT_EQUAL(rs->wrong_code, 0);
	CU_ASSERT(rs->worst_ms < BOUND_MS);
	CU_ASSERT(attempts <= max_attempts);
	CU_ASSERT(attempts >= 1);	/* it does try again */
}

/* wait_back - calls until a put succeeds (at most secs); the ms it took. */
static double
wait_back(struct sessdb *db, double secs)
{
	double t0 = tc_mono_ms();

	while (tc_mono_ms() - t0 < secs * 1000) {
		if (put_str(db, "back", "again") == 0)
			return tc_mono_ms() - t0;
		tc_sleep_ms(20);
	}
	return -1;
}

/* ---- the cases ---- */

/* Redis killed: calls fail at once, one attempt a second, logged once;
 * started again: the same handle works within about a second. */
static void
test_stopped(void)
{
	struct runstat rs;
	struct sessdb_stats st;
	struct sessdb *db;
	double back;

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "k", "v"), 0);
	rs_stop(&srv);
	connects = 0;
	hammer(db, 3.0, 2, &rs);
	check_down("stopped", &rs, connects, 3.0);
	CU_ASSERT_EQUAL(log_count("unreachable"), 1);
	CU_ASSERT_EQUAL_FATAL(rs_restart(&srv), 0);
	back = wait_back(db, 3.0);
	printf("\n  restarted: the handle works again after %.0f ms", back);
	CU_ASSERT(back >= 0 && back < BACK_MS);
	CU_ASSERT(get_is(db, "back", "again"));
	CU_ASSERT(get_is(db, "k", NULL));	/* persistence off: gone */
	CU_ASSERT_EQUAL(log_count("reachable again"), 1);
	CU_ASSERT_EQUAL(log_count("unreachable"), 1);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.reopens, 1);
	if (log_count("unreachable") != 1 || log_count("reachable again") != 1)
		log_dump();
	sessdb_close(db);
	finish();
}

/* Four handles in one process: while Redis is away they share one
 * connection attempt a second (no storm from many handles); when it is
 * back, all of them work again at once. */
static void
test_handles(void)
{
	struct sessdb *db[4];
	struct runstat rs, one;
	double end, t0;
	int back = 0;

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	for (int i = 0; i < 4; i++) {
		db[i] = open_url(NULL, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(db[i]);
	}
	rs_stop(&srv);
	connects = 0;
	memset(&rs, 0, sizeof(rs));
	end = tc_mono_secs() + 3.0;
	while (tc_mono_secs() < end)
		for (int i = 0; i < 4; i++) {
			hammer(db[i], 0.05, 1, &one);
			rs.calls += one.calls;
			rs.failed += one.failed;
			rs.wrong_code += one.wrong_code;
			if (one.worst_ms > rs.worst_ms)
				rs.worst_ms = one.worst_ms;
			if (one.last_err[0] != '\0')
				memcpy(rs.last_err, one.last_err, sizeof(rs.last_err));
		}
	check_down("4 handles, stopped", &rs, connects, 3.0);
	CU_ASSERT_EQUAL(log_count("unreachable"), 4);	/* once per handle */
	CU_ASSERT_EQUAL_FATAL(rs_restart(&srv), 0);
	t0 = tc_mono_ms();
	while (back < 4 && tc_mono_ms() - t0 < 3000) {
		back = 0;
		for (int i = 0; i < 4; i++)
			back += put_str(db[i], "back", "again") == 0;
		tc_sleep_ms(20);
	}
	printf("\n  all 4 handles work again after %.0f ms", tc_mono_ms() - t0);
	CU_ASSERT_EQUAL(back, 4);
	CU_ASSERT(tc_mono_ms() - t0 < BACK_MS);
	CU_ASSERT_EQUAL(log_count("reachable again"), 4);
	for (int i = 0; i < 4; i++)
		sessdb_close(db[i]);
	finish();
}

/* Redis hung (SIGSTOP): each call waits at most the timeout, most fail at
 * once; continued: the handle works again. */
static void
test_hung(void)
{
	struct runstat rs;
	struct sessdb *db;
	double back;

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "k", "kept"), 0);
	rs_pause(&srv);
	connects = 0;
	hammer(db, 3.0, 2, &rs);
	check_down("hung", &rs, connects, 3.0);
	CU_ASSERT(strstr(rs.last_err, "unreachable") != NULL);
	CU_ASSERT_EQUAL(log_count("unreachable"), 1);
	rs_resume(&srv);
	back = wait_back(db, 3.0);
	printf("\n  continued: the handle works again after %.0f ms", back);
	CU_ASSERT(back >= 0 && back < BACK_MS);
	CU_ASSERT(get_is(db, "k", "kept"));	/* the data survived the pause */
	CU_ASSERT_EQUAL(log_count("reachable again"), 1);
	CU_ASSERT_EQUAL(log_count("unreachable"), 1);
	sessdb_close(db);
	finish();
}

/* A quick restart between two calls: the stale connection is replaced
 * within the next call, which succeeds (a get is sent again, a take
 * notices the closed connection before it is sent); nothing is logged
 * as down. */
static void
test_restarted(void)
{
	struct sessdb_stats st;
	struct sessdb *db;
	double t0;
	void *d;
	size_t l;

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "k", "v"), 0);
	CU_ASSERT_EQUAL_FATAL(rs_restart(&srv), 0);
	t0 = tc_mono_ms();
	CU_ASSERT(get_is(db, "k", NULL));
	CU_ASSERT(tc_mono_ms() - t0 < BOUND_MS);
	CU_ASSERT_EQUAL(put_str(db, "k", "again"), 0);
	CU_ASSERT(get_is(db, "k", "again"));
	CU_ASSERT_EQUAL_FATAL(rs_restart(&srv), 0);
	t0 = tc_mono_ms();
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "k", 1, &d, &l, NULL), SESSDB_MISS);
	CU_ASSERT(tc_mono_ms() - t0 < BOUND_MS);
	CU_ASSERT_EQUAL(put_str(db, "t", "ticket"), 0);
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "t", 1, &d, &l, NULL), SESSDB_OK);
	sessdb_free(d);
	CU_ASSERT_EQUAL(log_count("unreachable"), 0);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.errors, 0);
	sessdb_close(db);
	finish();
}

/* write_file - a file holding s, with mode. */
static void
write_file(const char *path, const char *s, mode_t mode)
{
	FILE *f;

	unlink(path);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(s, f);
	fclose(f);
	chmod(path, mode);
}

/* A password: refused at open when wrong (never printed), taken from
 * the URL, a file or the environment; refused later (the server's
 * password changed): calls fail in time, logged once, one attempt a
 * second. */
static void
test_password(void)
{
	static const char *const extra[] = { "--requirepass", "s3cret-pw", NULL };
	const char *setpw[4] = { "CONFIG", "SET", "requirepass", "other-pw" };
	const char *kill_all[3] = { "CLIENT", "KILL", "TYPE" };
	const char *kill_args[4] = { "CLIENT", "KILL", "TYPE", "normal" };
	char err[512], q[400], pwfile[300], out[256];
	struct sessdb_options o = { 0 };
	struct runstat rs;
	struct sessdb *db;

	(void)kill_all;
	CU_ASSERT_EQUAL_FATAL(start(extra), 0);
	o.log = log_all;
	/* wrong: the open fails, says so, and shows no password */
	snprintf(q, sizeof(q), "redis://:wrong-pw@127.0.0.1:%d/0?timeout_ms=%d",
	    srv.port, TIMEOUT_MS);
	db = sessdb_open(q, &o, err, sizeof(err));
	CU_ASSERT_PTR_NULL(db);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_BACKEND);
	CU_ASSERT(strstr(err, "refused the password") != NULL);
	CU_ASSERT(strstr(err, "wrong-pw") == NULL);
	CU_ASSERT(strstr(err, "***") != NULL);
	for (int i = 0; i < nlogs && i < LOG_MAX; i++)
		CU_ASSERT(strstr(logs[i], "wrong-pw") == NULL);
	printf("\n  wrong password: %s", err);
	sessdb_close(db);

	/* none: Redis says NOAUTH at SELECT */
	unsetenv("SESSDB_REDIS_PASSWORD");
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NULL(db);
	sessdb_close(db);

	/* in the URL, in a file, in the environment */
	db = open_url(":s3cret-pw@", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT(strstr(sessdb_path(db), "s3cret") == NULL);
	CU_ASSERT_EQUAL(put_str(db, "k", "url"), 0);
	sessdb_close(db);
	snprintf(pwfile, sizeof(pwfile), "%s/pw", tc_dir);
	write_file(pwfile, "s3cret-pw\n", 0600);
	snprintf(q, sizeof(q), "&password_file=%s", pwfile);
	db = open_url(NULL, q);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT(get_is(db, "k", "url"));
	sessdb_close(db);
	chmod(pwfile, 0604);	/* readable by all: refused */
	db = open_url(NULL, q);
	CU_ASSERT_PTR_NULL(db);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_PERMISSION);
	sessdb_close(db);
	db = open_url(":s3cret-pw@", q);	/* both: refused */
	CU_ASSERT_PTR_NULL(db);
	CU_ASSERT_EQUAL(sessdb_open_errcode(), SESSDB_E_ARG);
	sessdb_close(db);
	setenv("SESSDB_REDIS_PASSWORD", "s3cret-pw", 1);
	db = open_url(NULL, NULL);
	unsetenv("SESSDB_REDIS_PASSWORD");
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT(get_is(db, "k", "url"));

	/* the password changes under a running handle */
	nlogs = 0;
	CU_ASSERT_EQUAL(rs_cmd(&srv, "s3cret-pw", out, sizeof(out), 4, setpw), '+');
	CU_ASSERT_EQUAL(rs_cmd(&srv, "other-pw", out, sizeof(out), 4, kill_args), ':');
	connects = 0;
	hammer(db, 3.0, 2, &rs);
	check_down("password refused", &rs, connects, 3.0);
	CU_ASSERT(strstr(rs.last_err, "refuse") != NULL);
	CU_ASSERT_EQUAL(log_count("refused the password"), 1);
	for (int i = 0; i < nlogs && i < LOG_MAX; i++)
		CU_ASSERT(strstr(logs[i], "s3cret") == NULL);
	/* and back */
	setpw[3] = "s3cret-pw";
	CU_ASSERT_EQUAL(rs_cmd(&srv, "other-pw", out, sizeof(out), 4, setpw), '+');
	CU_ASSERT(wait_back(db, 3.0) >= 0);
	CU_ASSERT_EQUAL(log_count("accepts our credentials again"), 1);
	sessdb_close(db);
	finish();
}

/* maxmemory reached (noeviction): puts fail in time with
 * SESSDB_E_BACKEND, logged once; reads and takes still work; with room
 * again, puts work and that is logged once.  The server is filled to
 * twice its limit before the limit is set, so that it refuses every
 * write (near the limit, Redis's own buffers make it flap). */
static void
test_maxmemory(void)
{
	const char *limit[4] = { "CONFIG", "SET", "maxmemory", "1mb" };
	const char *nolimit[4] = { "CONFIG", "SET", "maxmemory", "0" };
	static const char *const extra[] = { "--maxmemory-policy", "noeviction",
	    NULL };
	static char big[16384];
	struct sessdb *db;
	char id[32], out[64], err[512] = "";
	int refused = 0, wrong = 0;
	double worst = 0;
	void *d;
	size_t l;

	CU_ASSERT_EQUAL_FATAL(start(extra), 0);
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	memset(big, 'm', sizeof(big) - 1);
	for (int i = 0; i < 128; i++) {		/* 2 MiB */
		snprintf(id, sizeof(id), "fill%d", i);
		CU_ASSERT_EQUAL(put_str(db, id, big), 0);
	}
	CU_ASSERT_EQUAL(rs_cmd(&srv, NULL, out, sizeof(out), 4, limit), '+');
	for (int i = 0; i < 200; i++) {
		double t0 = tc_mono_ms();
		int rc;

		snprintf(id, sizeof(id), "big%d", i);
		rc = put_str(db, id, big);
		if (tc_mono_ms() - t0 > worst)
			worst = tc_mono_ms() - t0;
		if (rc == 0)
			continue;
		refused++;
		if (sessdb_errcode(db) != SESSDB_E_BACKEND)
			wrong++;
		snprintf(err, sizeof(err), "%s", sessdb_error(db));
	}
	printf("\n  maxmemory 1mb: %d of 200 puts refused, worst %.1f ms; %s",
	    refused, worst, err);
	CU_ASSERT_EQUAL(refused, 200);
	CU_ASSERT_EQUAL(wrong, 0);
	CU_ASSERT(strstr(err, "OOM") != NULL);
	CU_ASSERT(worst < BOUND_MS);
	CU_ASSERT_EQUAL(log_count("refuses writes"), 1);
	CU_ASSERT_EQUAL(log_count("unreachable"), 0);
	CU_ASSERT(get_is(db, "fill0", big));
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "fill0", 5, &d, &l, NULL), SESSDB_OK);
	sessdb_free(d);
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, "fill1", 5), 0);
	CU_ASSERT_EQUAL(rs_cmd(&srv, NULL, out, sizeof(out), 4, nolimit), '+');
	CU_ASSERT_EQUAL(put_str(db, "after", "room"), 0);
	CU_ASSERT(get_is(db, "after", "room"));
	CU_ASSERT_EQUAL(log_count("accepts writes again"), 1);
	if (log_count("refuses writes") != 1)
		log_dump();
	sessdb_close(db);
	finish();
}

/* wait_go - block until the parent writes to the pipe. */
static void
wait_go(int fd)
{
	char c;

	while (read(fd, &c, 1) == -1 && errno == EINTR)
		;
}

/* Of RACERS processes taking the same keys at once, exactly one gets
 * each key.  The handle is opened before fork: each child connects on
 * its own. */
static void
test_take_race(void)
{
	unsigned *wins;
	struct tc_notes *notes;
	struct sessdb *db;
	pid_t pids[RACERS];
	int go[2], ok = 1;
	char id[16];

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	db = open_timeout(NULL, NULL, 2000);	/* 8 processes on 2 cores */
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	wins = mmap(NULL, RACE_KEYS * sizeof(*wins) + sizeof(*notes),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_FATAL(wins != MAP_FAILED);
	notes = (struct tc_notes *)(wins + RACE_KEYS);
	for (int k = 0; k < RACE_KEYS; k++) {
		snprintf(id, sizeof(id), "t%d", k);
		CU_ASSERT_EQUAL(put_str(db, id, "ticket"), 0);
	}
	CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
	for (int i = 0; i < RACERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(go[1]);
			wait_go(go[0]);
			for (int k = 0; k < RACE_KEYS; k++) {
				void *d;
				size_t l;
				int rc;

				snprintf(id, sizeof(id), "t%d", k);
				rc = sessdb_take(db, NS, id, strlen(id), &d, &l, NULL);
				if (rc == SESSDB_OK)
					__atomic_add_fetch(&wins[k], 1, __ATOMIC_RELAXED);
				else if (rc == -1)
					tc_note(notes, "take %s: %s", id, sessdb_error(db));
				sessdb_free(d);
			}
			sessdb_close(db);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);	/* go: every child's read returns */
	for (int i = 0; i < RACERS; i++)
		CU_ASSERT(tc_wait_ok(pids[i], "racer"));
	for (int k = 0; k < RACE_KEYS; k++)
		if (wins[k] != 1) {
			if (ok)
				printf("\n  key t%d taken %u times", k, wins[k]);
			ok = 0;
		}
	CU_ASSERT(ok);
	CU_ASSERT_EQUAL(notes->failures, 0);
	/* the parent's connection is intact: no reply meant for a child */
	CU_ASSERT_EQUAL(put_str(db, "parent", "still fine"), 0);
	CU_ASSERT(get_is(db, "parent", "still fine"));
	munmap(wins, RACE_KEYS * sizeof(*wins) + sizeof(*notes));
	sessdb_close(db);
	finish();
}

/* After fork the child makes its own connection and never uses the
 * parent's: the server sees one new connection, the parent none. */
static void
test_fork(void)
{
	struct sessdb *db;
	long long before, after_child, after_parent;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(start(NULL), 0);
	db = open_url(NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(put_str(db, "p", "parent"), 0);
	/* rs_cmd itself connects once per query: count them out */
	before = rs_info_num(&srv, NULL, "stats", "total_connections_received");
	pid = fork();
	if (pid == 0) {
		int ok = get_is(db, "p", "parent") && put_str(db, "c", "child") == 0 &&
		    get_is(db, "c", "child");

		sessdb_close(db);
		_exit(ok ? 0 : 1);
	}
	CU_ASSERT(tc_wait_ok(pid, "child"));
	after_child = rs_info_num(&srv, NULL, "stats", "total_connections_received");
	CU_ASSERT(get_is(db, "c", "child"));
	CU_ASSERT(get_is(db, "p", "parent"));
	after_parent = rs_info_num(&srv, NULL, "stats", "total_connections_received");
	printf("\n  connections: %lld before, %lld after the child, %lld after "
	    "the parent", before, after_child, after_parent);
	CU_ASSERT_EQUAL(after_child, before + 2);	/* the child's + the query */
	CU_ASSERT_EQUAL(after_parent, after_child + 1);	/* the query only */
	sessdb_close(db);
	finish();
}

/* The URL forms: accepted ones open (nothing listens on port 1: the
 * handle is down, not refused), malformed ones fail with SESSDB_E_ARG
 * and a message that names the part and never the password. */
static void
test_urls(void)
{
	static const struct {
		const char	*url;
		int		want_code;	/* 0: opens */
		const char	*want;		/* in the message, or the path */
	} t[] = {
		{ "redis://127.0.0.1:1", 0, "redis://127.0.0.1:1" },
		{ "redis://127.0.0.1:1/3?prefix=a%2Ab:&timeout_ms=5", 0, "/3?" },
		{ "redis://:pw-x@127.0.0.1:1/0", 0, "redis://:***@127.0.0.1:1/0" },
		{ "redis://alice:pw-x@127.0.0.1:1", 0, "redis://alice:***@" },
		{ "redis://[::1]:1/0", 0, "[::1]" },
		{ "redis://localhost:1", 0, "localhost" },
		{ "unix:/nonexistent/redis.sock?db=2&prefix=p:", 0, "unix:" },
		{ "redis://", SESSDB_E_ARG, "no host" },
		{ "redis://h:0", SESSDB_E_ARG, "port" },
		{ "redis://h:65536", SESSDB_E_ARG, "port" },
		{ "redis://h:12x", SESSDB_E_ARG, "port" },
		{ "redis://h/x", SESSDB_E_ARG, "database" },
		{ "redis://h/", SESSDB_E_ARG, "database" },
		{ "redis://h?db=1", SESSDB_E_ARG, "unknown" },
		{ "redis://h?prefix=", SESSDB_E_ARG, "prefix" },
		{ "redis://h?prefix=%zz", SESSDB_E_ARG, "escape" },
		{ "redis://h?prefix=a&prefix=b", SESSDB_E_ARG, "repeated" },
		{ "redis://h?timeout_ms=0", SESSDB_E_ARG, "timeout_ms" },
		{ "redis://h?timeout_ms=99999", SESSDB_E_ARG, "timeout_ms" },
		{ "redis://h?", SESSDB_E_ARG, "empty query" },
		{ "redis://h?prefix=a&", SESSDB_E_ARG, "empty parameter" },
		{ "redis://h?nokey", SESSDB_E_ARG, "without '='" },
		{ "redis://pw-x@h", SESSDB_E_ARG, "without ':'" },
		{ "redis://:@h", SESSDB_E_ARG, "password" },
		{ "redis://:pw-x/y@h", SESSDB_E_ARG, "escaped" },
		{ "redis://:pw-x%2Fy%40z@127.0.0.1:1", 0, "redis://:***@" },
		{ "redis://:pw-x%4@h", SESSDB_E_ARG, "escape" },
		{ "redis://h$x", SESSDB_E_ARG, "not allowed" },
		{ "redis://[::1", SESSDB_E_ARG, "IPv6" },
		{ "unix:relative.sock", SESSDB_E_ARG, "absolute" },
		{ "unix:", SESSDB_E_ARG, "absolute" },
		{ "redis://h?password_file=/nonexistent/pw", SESSDB_E_NOT_FOUND,
		    "password file" },
	};
	struct sessdb_options o = { 0 };
	char err[512];

	o.log = log_all;
	for (size_t i = 0; i < TC_NELEM(t); i++) {
		struct sessdb *db;
		const char *got;
		int code;

		nlogs = 0;
		err[0] = '\0';
		db = sessdb_open(t[i].url, &o, err, sizeof(err));
		code = db == NULL ? sessdb_open_errcode() : 0;
		got = db != NULL ? sessdb_path(db) : err;
		if (code != t[i].want_code || strstr(got, t[i].want) == NULL ||
		    strstr(got, "pw-x") != NULL)
			printf("\n  %s: got code %d \"%s\", want code %d and \"%s\"",
			    t[i].url, code, got, t[i].want_code, t[i].want);
		CU_ASSERT_EQUAL(code, t[i].want_code);
		CU_ASSERT(strstr(got, t[i].want) != NULL);
		CU_ASSERT(strstr(got, "pw-x") == NULL);
		for (int j = 0; j < nlogs && j < LOG_MAX; j++)
			CU_ASSERT(strstr(logs[j], "pw-x") == NULL);
		sessdb_close(db);
	}
}

static const struct tc_case cases[] = {
	{ "URL forms", test_urls },
	{ "stopped, then started again", test_stopped },
	{ "four handles share the reconnect budget", test_handles },
	{ "hung (SIGSTOP), then continued", test_hung },
	{ "restarted between two calls", test_restarted },
	{ "password: wrong, sources, changed", test_password },
	{ "maxmemory reached (noeviction)", test_maxmemory },
	{ "take race across processes", test_take_race },
	{ "fork: a connection per process", test_fork },
};

int
main(void)
{
	struct tc_suite suites[] = { TC_SUITE("redis faults", cases, NULL, NULL) };
	const char *why = rs_missing();
	char err[256];
	struct sessdb *db;

	if (why != NULL) {
		printf("redis_faults: skipped: %s\n", why);
		return 77;
	}
	db = sessdb_open("redis://127.0.0.1:1/0", NULL, err, sizeof(err));
	if (db == NULL) {
		printf("redis_faults: skipped: %s\n", err);
		return 77;
	}
	sessdb_close(db);
	signal(SIGPIPE, SIG_DFL);	/* the library must never raise it */
	if (tc_tmpdir_make("redis_faults") != 0)
		return 2;
	atexit(finish);		/* a fatal assertion leaves no server behind */
	return tc_run(suites, TC_NELEM(suites));
}
