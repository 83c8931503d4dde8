/*
 * NAME
 *	bench_handshake - server CPU per resumed TLS handshake: the sessdb
 *	cache against OpenSSL's internal in-process cache
 *
 * SYNOPSIS
 *	bench_handshake [--quick] [--runs N] [--handshakes M] [--dir DIR]
 *	    [--writer off|on|both] [--writer-rate PUTS_PER_S]
 *
 * DESCRIPTION
 *	Client and server run in this process over a BIO pair, with the
 *	ECDSA P-256 test certificate from $SESSDB_TOP_SRCDIR/data (default
 *	"data").  The server has stateful resumption only (SSL_OP_NO_TICKET:
 *	TLS 1.2 session IDs, TLS 1.3 stateful tickets), a session-ID context,
 *	and either OpenSSL's internal cache ("internal") or a sessdb store on
 *	DIR (default /dev/shm) attached with sessdb_ssl_attach ("sessdb").
 *
 *	Server CPU is the thread CPU time (CLOCK_THREAD_CPUTIME_ID) spent in
 *	the server's SSL_new, SSL_do_handshake, SSL_shutdown and SSL_free;
 *	the client's work is not counted.  For TLS 1.2 the client offers the
 *	session of its first handshake every time; for TLS 1.3 the newest
 *	ticket it received (each resumption issues a new one: one get and
 *	one put in the store per handshake).
 *
 *	With --writer on, a forked process writes to the same store file
 *	throughout (put of random keys among 10,000, as fast as it can or
 *	--writer-rate puts/s), so the server's handle must notice other
 *	writes and reopen; it runs in the internal-cache runs too, so that
 *	both compete with it for the CPU alike.  Default: both (off, then on).
 *
 *	Every run does M resumed handshakes (and M/4 full ones); internal
 *	and sessdb runs alternate, and each figure is the median of the
 *	per-run means over --runs runs.  The overhead is sessdb / internal - 1.
 *	It also prints the size of the DER sessions actually stored.
 *
 *	--quick (or SESSDB_BENCH_QUICK=1): 1 run of 40 handshakes, checking
 *	only that every offered session resumed and that the sessdb runs went
 *	through the store (glue hits), never a time.
 *
 * EXIT STATUS
 *	0 if every sanity check passed, 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "common.h"
#include "sessdb.h"
#include "sessdb_ssl.h"

#define PROG		"bench_handshake"
#define MAX_RUNS 32

/* die - OpenSSL's error queue, then the message; exits 1. */
#define die(...)	(ERR_print_errors_fp(stderr), tc_die(PROG, __VA_ARGS__))

static int quick;
static int runs = 7;
static int handshakes = 400;
static const char *dir = "/dev/shm";
static int writer_modes = 3;	/* bit 0: off, bit 1: on */
static double writer_rate;	/* 0 = as fast as possible */
static char datadir[PATH_MAX];

static uint64_t
thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *
data_file(const char *name)
{
	static char buf[PATH_MAX + 64];

	snprintf(buf, sizeof(buf), "%s/%s", datadir, name);
	return buf;
}

/* ---- contexts ---- */

enum cache { INTERNAL = 0, SESSDB = 1 };
static const char *cache_name[] = { "internal", "sessdb" };

static SSL_SESSION *latest;	/* the client's newest session */

static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION_free(latest);
	latest = sess;		/* we keep OpenSSL's reference */
	return 1;
}

static SSL_CTX *
server_ctx(int tls, enum cache cache, struct sessdb *db)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int v = tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;

	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, v) ||
	    !SSL_CTX_set_max_proto_version(ctx, v) ||
	    SSL_CTX_use_certificate_chain_file(ctx, data_file("server-chain.pem")) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, data_file("server.key"),
	    SSL_FILETYPE_PEM) != 1 ||
	    !SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"bench", 5))
		die("server context");
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (cache == SESSDB && sessdb_ssl_attach(ctx, db, 0) != 0)
		die("sessdb_ssl_attach failed");
	return ctx;
}

static SSL_CTX *
client_ctx(int tls)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int v = tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;

	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, v) ||
	    !SSL_CTX_set_max_proto_version(ctx, v))
		die("client context");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_session);
	return ctx;
}

/*
 * handshake - one connection offering offer (NULL: full handshake).
 * Adds the server's CPU time to *server_ns; returns 1 if the server
 * resumed, 0 if it made a full handshake; dies on failure.
 */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *offer, uint64_t *server_ns)
{
	SSL *s, *c;
	BIO *sb, *cb;
	uint64_t t0;
	int sdone = 0, cdone = 0, reused, rounds = 0;
	unsigned char byte;

	c = SSL_new(cctx);
	if (c == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0))
		die("client SSL_new");
	if (offer != NULL && !SSL_set_session(c, offer))
		die("SSL_set_session");
	SSL_set_bio(c, cb, cb);
	SSL_set_connect_state(c);

	t0 = thread_cpu_ns();
	s = SSL_new(sctx);
	if (s == NULL)
		die("server SSL_new");
	SSL_set_bio(s, sb, sb);
	SSL_set_accept_state(s);
	*server_ns += thread_cpu_ns() - t0;

	while (!sdone || !cdone) {
		if (++rounds > 50)
			die("handshake does not finish");
		if (!cdone) {
			int r = SSL_do_handshake(c);
			if (r == 1)
				cdone = 1;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
				die("client handshake");
		}
		if (!sdone) {
			t0 = thread_cpu_ns();
			int r = SSL_do_handshake(s);
			*server_ns += thread_cpu_ns() - t0;
			if (r == 1)
				sdone = 1;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
				die("server handshake");
		}
	}
	/* Let the client read what follows the handshake (TLS 1.3 tickets). */
	if (SSL_read(c, &byte, 1) > 0)
		die("unexpected application data");
	reused = SSL_session_reused(s);

	t0 = thread_cpu_ns();
	SSL_shutdown(s);
	SSL_free(s);
	*server_ns += thread_cpu_ns() - t0;
	SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c);
	return reused;
}

/* ---- the writer process ---- */

static pid_t
start_writer(const char *path)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == -1)
		die("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	char err[512];
	struct sessdb *db = sessdb_open(path, NULL, err, sizeof(err));
	unsigned char id[32], payload[280];
	uint64_t s = (uint64_t)getpid() * 0x9e3779b97f4a7c15u, t0 = tc_mono_ns(), n = 0;

	if (db == NULL)
		_exit(1);
	memset(payload, 0x5a, sizeof(payload));
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		s = s * 6364136223846793005u + 1442695040888963407u;
		memset(id, 0, sizeof(id));
		memcpy(id, &(uint64_t){ (s >> 33) % 10000 }, 8);
		sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
		    sizeof(payload), 0);
		n++;
		if (writer_rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)n * 1e9 / writer_rate);
			uint64_t now = tc_mono_ns();
			if (due > now) {
				struct timespec ts = { (time_t)((due - now) / 1000000000u),
				    (long)((due - now) % 1000000000u) };
				nanosleep(&ts, NULL);
			}
		}
	}
}

static void
stop_writer(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- measurement ---- */

struct result {
	double	resumed_us[MAX_RUNS];	/* server CPU per resumed handshake */
	double	full_us[MAX_RUNS];	/* server CPU per full handshake */
	int	n;
};

/* bench_run - one run: M resumed and M/4 full handshakes. */
static void
bench_run(int tls, enum cache cache, struct sessdb *db, struct result *res)
{
	SSL_CTX *sctx = server_ctx(tls, cache, db);
	SSL_CTX *cctx = client_ctx(tls);
	SSL_SESSION *first;
	struct sessdb_ssl_stats gs;
	uint64_t ns = 0, scratch = 0;
	int reused = 0, full_n = handshakes / 4 > 0 ? handshakes / 4 : 1;

	SSL_SESSION_free(latest);
	latest = NULL;
	if (handshake(sctx, cctx, NULL, &scratch) != 0)
		die("first handshake resumed");
	if (latest == NULL)
		die("no session after the first handshake (TLS %d)", tls);
	first = latest;
	SSL_SESSION_up_ref(first);
	/* warm-up */
	for (int i = 0; i < 5; i++)
		handshake(sctx, cctx, tls == 12 ? first : latest, &scratch);
	if (cache == SESSDB)
		sessdb_ssl_stats(sctx, &gs);
	for (int i = 0; i < handshakes; i++)
		reused += handshake(sctx, cctx, tls == 12 ? first : latest, &ns);
	tc_check(PROG, reused == handshakes, "TLS %d %s: %d of %d handshakes resumed", tls,
	    cache_name[cache], reused, handshakes);
	if (cache == SESSDB) {
		struct sessdb_ssl_stats ge;

		sessdb_ssl_stats(sctx, &ge);
		tc_check(PROG, ge.hits - gs.hits == (uint64_t)handshakes,
		    "TLS %d sessdb: %llu glue hits for %d resumptions", tls,
		    (unsigned long long)(ge.hits - gs.hits), handshakes);
		if (tls == 13)
			tc_check(PROG, ge.stores - gs.stores >= (uint64_t)handshakes,
			    "TLS 1.3 sessdb: %llu stores for %d resumptions",
			    (unsigned long long)(ge.stores - gs.stores), handshakes);
	}
	res->resumed_us[res->n] = (double)ns / 1e3 / handshakes;

	ns = 0;
	for (int i = 0; i < full_n; i++)
		if (handshake(sctx, cctx, NULL, &ns) != 0)
			tc_check(PROG, 0, "a full handshake resumed");
	res->full_us[res->n] = (double)ns / 1e3 / full_n;
	res->n++;
	SSL_SESSION_free(first);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* Stored payload sizes, seen through sessdb_foreach. */
struct sizes {
	size_t n, min, max, sum;
};

static int
size_cb(void *arg, const struct sessdb_record *rec)
{
	struct sizes *sz = arg;

	if (rec->problem != NULL)
		return 0;
	if (sz->n == 0 || rec->len < sz->min)
		sz->min = rec->len;
	if (rec->len > sz->max)
		sz->max = rec->len;
	sz->sum += rec->len;
	sz->n++;
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_handshake [--quick] [--runs N] "
	    "[--handshakes M] [--dir DIR] [--writer off|on|both] "
	    "[--writer-rate PUTS_PER_S]\n");
	exit(2);
}

/* parse_args - the options; the quick mode's sizes. */
static void
parse_args(int argc, char **argv)
{
	const char *q = getenv("SESSDB_BENCH_QUICK");

	quick = q != NULL && *q != '\0' && strcmp(q, "0") != 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			quick = 1;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--runs") == 0)
			runs = atoi(v);
		else if (strcmp(a, "--handshakes") == 0)
			handshakes = atoi(v);
		else if (strcmp(a, "--dir") == 0)
			dir = v;
		else if (strcmp(a, "--writer-rate") == 0)
			writer_rate = atof(v);
		else if (strcmp(a, "--writer") == 0)
			writer_modes = strcmp(v, "off") == 0 ? 1 : strcmp(v, "on") == 0 ?
			    2 : strcmp(v, "both") == 0 ? 3 : 0;
		else
			usage();
	}
	if (quick) {
		runs = 1;
		handshakes = 40;
	}
	if (runs < 1 || runs > MAX_RUNS || handshakes < 1 || writer_modes == 0)
		usage();
}

/* print_row - one line of the table, and the details under it. */
static void
print_row(int tls, int w, struct result res[2], struct sessdb *db)
{
	double mi = tc_median(res[INTERNAL].resumed_us, res[INTERNAL].n);
	double ms = tc_median(res[SESSDB].resumed_us, res[SESSDB].n);
	char wname[32];

	if (!w)
		snprintf(wname, sizeof(wname), "off");
	else if (writer_rate > 0)
		snprintf(wname, sizeof(wname), "%.0f/s", writer_rate);
	else
		snprintf(wname, sizeof(wname), "full speed");
	printf("%-7s %-12s %10.1f %10.1f %8.1f%% %10.1f %10.1f\n",
	    tls == 12 ? "1.2" : "1.3", wname, mi, ms,
	    mi > 0 ? 100 * (ms / mi - 1) : 0,
	    tc_median(res[INTERNAL].full_us, res[INTERNAL].n),
	    tc_median(res[SESSDB].full_us, res[SESSDB].n));
	if (!w) {
		struct sizes sz = { 0 };
		sessdb_foreach(db, SESSDB_ITER_LIVE, size_cb, &sz);
		if (sz.n > 0)
			printf("        stored DER session sizes (TLS %s): %zu "
			    "records, min %zu, mean %zu, max %zu bytes\n",
			    tls == 12 ? "1.2" : "1.3", sz.n, sz.min,
			    sz.sum / sz.n, sz.max);
	}
	if (!quick) {
		printf("        per-run resumed: internal");
		for (int r = 0; r < res[INTERNAL].n; r++)
			printf(" %.1f", res[INTERNAL].resumed_us[r]);
		printf(" | sessdb");
		for (int r = 0; r < res[SESSDB].n; r++)
			printf(" %.1f", res[SESSDB].resumed_us[r]);
		printf("\n");
	}
	fflush(stdout);
}

/* bench_case - TLS version tls, another process writing (w) or not: the
 * two caches in alternate runs on a fresh store. */
static void
bench_case(const char *tmpl, int tls, int w)
{
	char path[PATH_MAX + 32], err[512];
	struct result res[2];
	struct sessdb *db;
	pid_t wpid = 0;

	memset(res, 0, sizeof(res));
	snprintf(path, sizeof(path), "%s/tls%d-w%d.db", tmpl, tls, w);
	db = sessdb_open(path, NULL, err, sizeof(err));
	if (db == NULL)
		die("%s", err);
	if (w)
		wpid = start_writer(path);
	for (int r = 0; r < runs; r++)
		for (int j = 0; j < 2; j++) {
			enum cache c = (enum cache)((r + j) % 2);
			bench_run(tls, c, db, &res[c]);
		}
	stop_writer(wpid);
	print_row(tls, w, res, db);
	sessdb_close(db);
	unlink(path);
	snprintf(path + strlen(path), 8, ".lock");
	unlink(path);
}

int
main(int argc, char **argv)
{
	const char *top = getenv("SESSDB_TOP_SRCDIR");
	char tmpl[PATH_MAX];

	parse_args(argc, argv);
	snprintf(datadir, sizeof(datadir), "%s/data", top != NULL ? top : ".");
	if (access(data_file("server.key"), R_OK) != 0)
		die("%s: %s (set SESSDB_TOP_SRCDIR)", data_file("server.key"),
		    strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpl, sizeof(tmpl), "%s/sessdb-hsbench.XXXXXX", dir);
	if (mkdtemp(tmpl) == NULL)
		die("mkdtemp %s: %s", tmpl, strerror(errno));

	printf("bench_handshake: %s mode, %d run(s) of %d resumed (+%d full) "
	    "handshakes, ECDSA P-256, store in %s, OpenSSL %s\n",
	    quick ? "quick" : "full", runs, handshakes,
	    handshakes / 4 > 0 ? handshakes / 4 : 1, tmpl,
	    OpenSSL_version(OPENSSL_VERSION));
	printf("server CPU per handshake in microseconds (median of per-run means)\n");
	printf("%-7s %-12s %10s %10s %9s %10s %10s\n", "TLS", "writer",
	    "internal", "sessdb", "overhead", "full int.", "full sdb");
	fflush(stdout);
	for (int w = 0; w < 2; w++) {
		if (!(writer_modes & (1 << w)))
			continue;
		for (int tls = 12; tls <= 13; tls++)
			bench_case(tmpl, tls, w);
	}
	SSL_SESSION_free(latest);
	rmdir(tmpl);
	printf("goals (issue 10, docs/PERFORMANCE.md): overhead <= +5%% with no "
	    "writer, <= +10%% with a writer at 2,000 puts/s, <= +25%% at full speed\n");
	if (tc_check_failures) {
		printf("bench_handshake: %d sanity check(s) FAILED\n",
		    tc_check_failures);
		return 1;
	}
	printf("bench_handshake: all sanity checks passed\n");
	return 0;
}
