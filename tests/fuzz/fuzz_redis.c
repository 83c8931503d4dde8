/*
 * NAME
 *	fuzz_redis - fuzz the Redis backend's reply handling: the input is
 *	what a server answers
 *
 * SYNOPSIS
 *	libFuzzer:  meson setup -Dfuzzing=true (tests/fuzz/README.md)
 *	otherwise:  fuzz_redis [-n ITERATIONS] [-s SEED] [DIR | FILE ...]
 *	seeds:      FUZZ_MAKE_SEEDS=DIR fuzz_redis
 *
 * DESCRIPTION
 *	A server thread of this program listens on a unix socket in a
 *	directory of its own and plays the Redis server: to each connection
 *	it sends, whatever the client asks, the next part of the input, then
 *	closes its side (so the client reads the bytes, then end of file,
 *	and never waits for a timeout).  The real lib/backend_redis.c and
 *	hiredis run unchanged on the client side: sessdb_open of
 *	"unix:SOCKET", then get, put, take, delete, foreach, sweep, info and
 *	compact, each on what the "server" says.  Nothing may crash, leak or
 *	hang, and every call returns one of its documented results.
 *
 *	Input layout: byte 0 holds flags; the rest is split at each "#NEXT\n"
 *	into the parts for successive connections (a call that fails drops
 *	the connection; the next call connects again and gets the next
 *	part; past the last part a connection gets nothing).  A connection
 *	starts with SELECT, answered "+OK\r\n" by the program except for the
 *	first connection when flag bit 0 is set: then the input answers it
 *	too.  Bit 1: the handle has a password (SESSDB_REDIS_PASSWORD), so
 *	a connection starts with AUTH and SELECT, both answered "+OK\r\n"
 *	by the program, or by the input on the first connection with bit 0.
 *	(A failed connection attempt holds the process's reconnections
 *	back for a second: kept to the first connection, which
 *	sessdb_open always attempts, it costs no coverage.)
 *
 *	One step depends on timing: before a take the backend checks
 *	whether the server closed the connection, and whether this
 *	program's end of the part has arrived by then is a race between the
 *	two threads.  So a crash file of an input that ran several calls on
 *	one connection may not replay; written again with each call's
 *	replies in a part of their own (a call that fails ends its
 *	connection), it does: corpus/redis/crash-* are in that form.
 *
 *	Seeds (FUZZ_MAKE_SEEDS): the replies of a sound server to that
 *	sequence, with real records (rec_encode), keys of the store's prefix
 *	and an INFO text; and variants with error replies and RESP3 types.
 *	tests/fuzz/redis.dict lists RESP tokens for libFuzzer (-dict=).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "fuzz_store.h"
#include "record.h"
#include "sessdb.h"

#define FUZZ_NOW	1900000000
#define SEP		"#NEXT\n"
#define MAX_CONN	64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char sock_path[300], url[400];
static int listen_fd = -1;

/* What the server thread serves during one input. */
struct serve {
	const uint8_t	*data;		/* the parts, SEP between them */
	size_t		len;
	int		raw_first;	/* first connection: no "+OK" first */
	int		auth;		/* AUTH and SELECT: two "+OK" */
	int		stop[2];	/* a pipe: readable = input done */
	int		conns[MAX_CONN];
	size_t		nconns;
};

/* next_part - the next part of s (NULL past the last). */
static const uint8_t *
next_part(struct serve *s, size_t *len)
{
	const uint8_t *p = s->data, *sep;

	if (p == NULL)
		return NULL;
	sep = memmem(p, s->len, SEP, strlen(SEP));
	if (sep == NULL) {
		*len = s->len;
		s->data = NULL;
	} else {
		*len = (size_t)(sep - p);
		s->len -= *len + strlen(SEP);
		s->data = sep + strlen(SEP);
	}
	return p;
}

/* put_all - as much of buf as the socket takes now (the client reads it
 * all, or drops the connection: either way the thread may not block). */
static void
put_all(int fd, const void *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n <= 0)
			return;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
}

/* server - accept connections and answer each with its part, until the
 * stop pipe is readable; then close them all. */
static void *
server(void *arg)
{
	struct serve *s = arg;
	struct pollfd pf[2] = {
		{ .fd = listen_fd, .events = POLLIN },
		{ .fd = s->stop[0], .events = POLLIN },
	};

	for (;;) {
		const uint8_t *part;
		size_t len = 0;
		int fd;

		if (poll(pf, 2, -1) == -1 && errno != EINTR)
			abort();
		if (pf[1].revents != 0)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		if ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) == -1)
			continue;
		if (s->nconns == MAX_CONN) {
			close(fd);
			continue;
		}
		s->conns[s->nconns++] = fd;
		if (!(s->raw_first && s->nconns == 1))
			put_all(fd, "+OK\r\n+OK\r\n", s->auth ? 10 : 5);
		if ((part = next_part(s, &len)) != NULL)
			put_all(fd, part, len);
		(void)shutdown(fd, SHUT_WR);
	}
	for (size_t i = 0; i < s->nconns; i++)
		close(s->conns[i]);
	return NULL;
}

/* want - a call's result must be one it documents. */
static void
want(int rc, int ok1, int ok2, const char *what)
{
	fz_want("fuzz_redis", rc, ok1, ok2, what);
}

/* fz_clock - the fixed time of every run. */
static int64_t
fz_clock(void *arg)
{
	return FUZZ_NOW;
}

/* fz_log - swallow the backend's log: failures are the normal case. */
static void
fz_log(void *arg, int level, const char *msg)
{
}

static const unsigned char id_a[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const unsigned char id_b[] = { 0xaa, 0xbb, 0xcc, 0xdd };

/* operate - every call a server and an operator make. */
static void
operate(struct sessdb *db)
{
	struct sessdb_sweep_result res;
	struct sessdb_info info;
	void *data = NULL;
	unsigned seen = 0;
	size_t len;

	want(sessdb_get(db, SESSDB_NS_SERVER, id_a, sizeof(id_a), &data, &len,
	    NULL), SESSDB_OK, SESSDB_MISS, "get");
	sessdb_free(data);
	data = NULL;
	want(sessdb_put(db, SESSDB_NS_SERVER, id_b, sizeof(id_b), "value", 5,
	    FUZZ_NOW + 60), SESSDB_OK, SESSDB_FULL, "put");
	want(sessdb_take(db, SESSDB_NS_SERVER, id_b, sizeof(id_b), &data, &len,
	    NULL), SESSDB_OK, SESSDB_MISS, "take");
	sessdb_free(data);
	want(sessdb_delete(db, SESSDB_NS_SERVER, id_a, sizeof(id_a)), 0, 0,
	    "delete");
	want(sessdb_foreach(db, SESSDB_ITER_REMOVE_BAD, fz_count, &seen), 0, 0,
	    "foreach");
	want(sessdb_sweep(db, 0, NULL, NULL, &res), 0, 0, "sweep");
	want(sessdb_info(db, &info), 0, 0, "info");
	want(sessdb_compact(db), 0, 0, "compact");
}

/* LLVMFuzzerTestOneInput - one input: serve it, open, operate. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sessdb_options o = { .clock = fz_clock, .log = fz_log };
	struct serve s = { .data = NULL };
	struct sessdb *db;
	pthread_t t;
	char err[256];

	if (size < 1)
		return 0;
	s.data = data + 1;
	s.len = size - 1;
	s.raw_first = data[0] & 1;
	s.auth = (data[0] & 2) != 0;
	if (s.auth)		/* AUTH then SELECT on every connection */
		setenv("SESSDB_REDIS_PASSWORD", "fuzz-password", 1);
	if (pipe2(s.stop, O_CLOEXEC) == -1 ||
	    pthread_create(&t, NULL, server, &s) != 0)
		abort();
	db = sessdb_open(url, &o, err, sizeof(err));
	unsetenv("SESSDB_REDIS_PASSWORD");
	if (db != NULL) {
		operate(db);
		sessdb_close(db);
	}
	if (write(s.stop[1], "x", 1) != 1 || pthread_join(t, NULL) != 0)
		abort();
	close(s.stop[0]);
	close(s.stop[1]);
	return 0;
}

/* bulk - append a RESP bulk string to out at *n. */
static void
bulk(char *out, size_t *n, const void *p, size_t len)
{
	*n += (size_t)sprintf(out + *n, "$%zu\r\n", len);
	memcpy(out + *n, p, len);
	*n += len;
	memcpy(out + *n, "\r\n", 2);
	*n += 2;
}

/* text - append a NUL-terminated string to out at *n. */
static void
text(char *out, size_t *n, const char *s)
{
	memcpy(out + *n, s, strlen(s));
	*n += strlen(s);
}

/* record - the record of (id, payload) as the backend stores it. */
static size_t
record(unsigned char *val, unsigned char *key, size_t *key_len,
    const unsigned char *id, size_t id_len, const char *payload)
{
	struct rec r = { .created = FUZZ_NOW - 10, .expires = FUZZ_NOW + 3600,
	    .payload = (const unsigned char *)payload,
	    .payload_len = strlen(payload) };

	*key_len = rec_key_make(key, SESSDB_NS_SERVER, id, id_len);
	rec_encode(val, key, *key_len, &r);
	return REC_HEADER_LEN + r.payload_len;
}

/* write_seed - out[0..n) as dir/name. */
static void
write_seed(const char *dir, const char *name, const char *out, size_t n)
{
	char path[700];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fp = fopen(path, "wb")) == NULL || fwrite(out, 1, n, fp) != n ||
	    fclose(fp) != 0)
		exit(1);
}

/* make_seeds - a sound server's replies, and variants; exits. */
static void
make_seeds(const char *dir)
{
	static char out[8192];
	unsigned char va[200], vb[200], ka[REC_KEY_MAX], kb[REC_KEY_MAX];
	char full[64];
	size_t la, lb, kla, klb, n = 0;

	la = record(va, ka, &kla, id_a, sizeof(id_a), "payload of a");
	lb = record(vb, kb, &klb, id_b, sizeof(id_b), "payload of b");
	out[n++] = 0;
	bulk(out, &n, va, la);				/* GET a */
	text(out, &n, "+OK\r\n");			/* SET b */
	text(out, &n, SEP "+OK\r\n");			/* take: new conn */
	bulk(out, &n, vb, lb);				/* GETDEL b */
	text(out, &n, ":1\r\n");			/* DEL a */
	text(out, &n, "*2\r\n$1\r\n0\r\n*2\r\n");	/* SCAN: 2 keys */
	memcpy(full, "sessdb:", 7);
	memcpy(full + 7, ka, kla);
	bulk(out, &n, full, 7 + kla);
	memcpy(full + 7, kb, klb);
	bulk(out, &n, full, 7 + klb);
	text(out, &n, "*2\r\n");			/* MGET */
	bulk(out, &n, va, la);
	text(out, &n, "$5\r\nbroke\r\n");
	text(out, &n, ":1\r\n");			/* EVAL: bad one gone */
	text(out, &n, "*2\r\n$1\r\n0\r\n*0\r\n");	/* sweep's SCAN */
	text(out, &n, ":2\r\n");			/* DBSIZE */
	bulk(out, &n, "# Memory\r\nused_memory:1000\r\n"	/* INFO */
	    "used_memory_dataset:300\r\n", 53);
	write_seed(dir, "seed-sound", out, n);

	/* errors and odd types, each call on a connection of its own */
	n = 0;
	out[n++] = 1;
	text(out, &n, "+OK\r\n$-1\r\n" SEP "-OOM command not allowed\r\n"
	    SEP SEP "_\r\n" SEP "%1\r\n+a\r\n:1\r\n" SEP
	    "*2\r\n$2\r\n17\r\n*1\r\n$3\r\nabc\r\n*1\r\n$-1\r\n" SEP
	    "-ERR unknown command\r\n" SEP ":-1\r\n$3\r\nabc\r\n");
	write_seed(dir, "seed-odd", out, n);

	/* the SELECT refused */
	n = 0;
	out[n++] = 1;
	text(out, &n, "-ERR DB index is out of range\r\n");
	write_seed(dir, "seed-refused", out, n);

	/* with a password: AUTH answered, then the connection closes */
	n = 0;
	out[n++] = 3;
	text(out, &n, "+OK\r\n");
	write_seed(dir, "seed-auth-eof", out, n);
	exit(0);
}

/* LLVMFuzzerInitialize - the socket, once per process. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *seeds = getenv("FUZZ_MAKE_SEEDS");

	if (seeds != NULL)
		make_seeds(seeds);
	if (tc_tmpdir_make("fuzz_redis") == -1)
		exit(1);
	atexit(tc_tmpdir_remove);
	snprintf(sock_path, sizeof(sock_path), "%s/r.sock", tc_dir);
	snprintf(url, sizeof(url), "unix:%s?timeout_ms=2000", sock_path);
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		exit(1);
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd == -1 || bind(listen_fd, (struct sockaddr *)&sa,
	    sizeof(sa)) == -1 || listen(listen_fd, MAX_CONN) == -1) {
		perror("fuzz_redis: listen");
		exit(1);
	}
	return 0;
}
