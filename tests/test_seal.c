/*
 * NAME
 *	test_seal - sealed records: key files, AEAD seal and open, tampering,
 *	rotation, rekey, sealed records without a key
 *
 * DESCRIPTION
 *	Suite "keyfile": the key-file parser and loader, one table of
 *	files (size, mode, owner, kind) with the code and message each
 *	must get.  Suites "api/<backend>": the same cases through the store
 *	API on every backend (GDBM, and Redis on a redis-server of our own,
 *	tests/redis_server.c): round trip, a wrong key, a table of tampered
 *	records (each changed as an attacker with write access would: the
 *	CRC computed again, so only the seal can tell), rotation, rekey,
 *	and sealed records met without a key (reported, never removed).
 *
 *	Raw values are read and written through the backend seam (handle.h),
 *	as they are in the file or in Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "common.h"
#include "handle.h"
#include "redis_store.h"
#include "seal.h"

#define NS	SESSDB_NS_SERVER
#define T0	1700000000
#define LIFE	200		/* seconds a record lives (outlasts a case) */

/* ---- backends (as tests/test_store.c runs them) ---- */

struct test_backend {
	const char	*name;
	int		(*start)(char *why, size_t len);
	void		(*stop)(void);
	int		(*fresh)(char *where, size_t len, const char *name);
};

static struct rs redis;

/* redis_start - a redis-server of our own, usable as a store. */
static int
redis_start(char *why, size_t len)
{
	return rst_start(&redis, why, len);
}

static void
redis_stop(void)
{
	rs_destroy(&redis);
}

/* redis_fresh - a prefix no case used before: an empty store. */
static int
redis_fresh(char *where, size_t len, const char *name)
{
	rst_url(&redis, where, len, "seal", name);
	tc_log_reset();
	return 0;
}

static const struct test_backend backends[] = {
	{ "gdbm", NULL, NULL, tc_fresh },
	{ "redis", redis_start, redis_stop, redis_fresh },
};

static const struct test_backend *cur = &backends[0];
static char path[400];

/* api_init - pick the backend the suite "api/<name>" is about. */
static int
api_init(void)
{
	const char *suite = tc_current_suite();

	for (size_t i = 0; i < TC_NELEM(backends); i++)
		if (strcmp(suite + strlen("api/"), backends[i].name) == 0)
			cur = &backends[i];
	return 0;
}

/* ---- key files ---- */

/* key_bytes - the deterministic key number n (never weak). */
static void
key_bytes(unsigned n, unsigned char out[SEAL_KEY_LEN])
{
	uint64_t s = 0x5eed0000u + n;

	tc_random_bytes(out, SEAL_KEY_LEN, &s);
}

/* write_file - name in the test directory with len bytes of buf, mode;
 * returns its path (static buffer, one of four). */
static const char *
write_file(const char *name, const void *buf, size_t len, mode_t mode)
{
	static char paths[4][300];
	static int next;
	char *p = paths[next++ % 4];
	int fd;

	snprintf(p, 300, "%s/%s", tc_dir, name);
	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, buf, len) == (ssize_t)len);
	CU_ASSERT_FATAL(fchmod(fd, mode) == 0);
	close(fd);
	return p;
}

/* keyfile - a key file of the keys numbered in keys[0..n) (oldest first). */
static const char *
keyfile(const char *name, const unsigned *keys, size_t n)
{
	unsigned char buf[SEAL_KEY_LEN * SEAL_KEYS_MAX];

	for (size_t i = 0; i < n; i++)
		key_bytes(keys[i], buf + i * SEAL_KEY_LEN);
	return write_file(name, buf, n * SEAL_KEY_LEN, 0600);
}

/* id_of - the identifier of key number n. */
static unsigned
id_of(unsigned n)
{
	unsigned char k[SEAL_KEY_LEN];

	key_bytes(n, k);
	return seal_key_id(k);
}

/* One key file the loader must take or refuse. */
struct kf_case {
	const char	*name;
	size_t		nkeys;		/* keys 1..nkeys, unless bytes */
	int		bytes;		/* >= 0: that many bytes of key 1 */
	mode_t		mode;
	int		special;	/* 0 file, 1 zero key, 2 same key twice,
					   3 symlink, 4 directory, 5 missing,
					   6 FIFO (must not hang) */
	int		want_code;	/* 0: opens */
	const char	*want_msg;
};

static const struct kf_case kf_cases[] = {
	{ "one key 0600",	1,  -1, 0600, 0, 0, NULL },
	{ "one key 0400",	1,  -1, 0400, 0, 0, NULL },
	{ "three keys",		3,  -1, 0600, 0, 0, NULL },
	{ "sixteen keys",	16, -1, 0600, 0, 0, NULL },
	{ "group readable",	1,  -1, 0640, 0, SESSDB_E_KEY, "mode 0640" },
	{ "world readable",	1,  -1, 0604, 0, SESSDB_E_KEY, "mode 0604" },
	{ "group writable",	1,  -1, 0620, 0, SESSDB_E_KEY, "lets others" },
	{ "empty",		0,  0,  0600, 0, SESSDB_E_KEY, "empty" },
	{ "31 bytes",		0,  31, 0600, 0, SESSDB_E_KEY, "whole number" },
	{ "33 bytes",		0,  33, 0600, 0, SESSDB_E_KEY, "whole number" },
	{ "hex text",		0,  65, 0600, 0, SESSDB_E_KEY, "whole number" },
	{ "seventeen keys",	17, -1, 0600, 0, SESSDB_E_KEY, "more than 16" },
	{ "zero key",		1,  -1, 0600, 1, SESSDB_E_KEY, "repeated" },
	{ "same key twice",	2,  -1, 0600, 2, SESSDB_E_KEY, "share an identifier" },
	{ "symlink",		1,  -1, 0600, 3, SESSDB_E_PERMISSION, "symbolic link" },
	{ "directory",		0,  0,  0700, 4, SESSDB_E_KEY, "not a regular file" },
	{ "missing",		0,  0,  0600, 5, SESSDB_E_KEY, "No such file" },
	{ "FIFO",		0,  0,  0600, 6, SESSDB_E_KEY, "not a regular file" },
};

/* make_kf - the file of case c; its path. */
static const char *
make_kf(const struct kf_case *c)
{
	static char p[300];
	unsigned char buf[SEAL_KEY_LEN * 17 + 64] = { 0 };
	size_t len = c->bytes >= 0 ? (size_t)c->bytes : c->nkeys * SEAL_KEY_LEN;
	const char *f;

	for (size_t i = 0; i < c->nkeys; i++)
		key_bytes((unsigned)i + 1, buf + i * SEAL_KEY_LEN);
	if (c->bytes > 0)
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)(0x41 + i % 7);
	if (c->special == 1)
		memset(buf, 0, SEAL_KEY_LEN);
	if (c->special == 2)
		memcpy(buf + SEAL_KEY_LEN, buf, SEAL_KEY_LEN);
	snprintf(p, sizeof(p), "%s/kf-case", tc_dir);
	unlink(p);
	rmdir(p);
	switch (c->special) {
	case 3:
		f = write_file("kf-target", buf, len, c->mode);
		CU_ASSERT(symlink(f, p) == 0);
		return p;
	case 4:
		CU_ASSERT(mkdir(p, c->mode) == 0);
		return p;
	case 5:
		return p;
	case 6:
		CU_ASSERT(mkfifo(p, c->mode) == 0);
		return p;
	default:
		return write_file("kf-case", buf, len, c->mode);
	}
}

/* test_keyfile_table - every key file of the table: opens, or is
 * refused with its code and message, and no store is created then. */
static void
test_keyfile_table(void)
{
	for (size_t i = 0; i < TC_NELEM(kf_cases); i++) {
		const struct kf_case *c = &kf_cases[i];
		struct sessdb_options o = { 0 };
		struct sessdb *db;
		char err[512] = "";
		struct stat st;

		CU_ASSERT_EQUAL_FATAL(tc_fresh(path, sizeof(path), "kf"), 0);
		o.key_file = make_kf(c);
		db = sessdb_open(path, &o, err, sizeof(err));
		if ((db != NULL) != (c->want_code == 0) ||
		    (db == NULL && sessdb_open_errcode() != c->want_code) ||
		    (c->want_msg != NULL && strstr(err, c->want_msg) == NULL)) {
			printf("\n  %s: got %s (code %d, \"%s\"), want %s (code %d, "
			    "\"%s\")\n", c->name, db ? "open" : "refused",
			    sessdb_open_errcode(), err, c->want_code ? "refused" :
			    "open", c->want_code, c->want_msg ? c->want_msg : "");
			CU_FAIL("key file case");
		}
		if (db == NULL)	/* nothing created beside a refused key */
			CU_ASSERT(stat(path, &st) == -1 && errno == ENOENT);
		sessdb_close(db);
	}
}

/* A key-file parse the parser must give. */
struct parse_case {
	const char		*name;
	size_t			len;
	int			fill;	/* -1: random keys; else that byte */
	enum seal_parse_status	want;
	size_t			want_n;
};

static const struct parse_case parse_cases[] = {
	{ "NULL/empty",		0,	-1,	SEAL_PARSE_EMPTY,	0 },
	{ "one key",		32,	-1,	SEAL_PARSE_OK,		1 },
	{ "two keys",		64,	-1,	SEAL_PARSE_OK,		2 },
	{ "half key",		16,	-1,	SEAL_PARSE_SIZE,	0 },
	{ "key and a byte",	33,	-1,	SEAL_PARSE_SIZE,	0 },
	{ "17 keys",		544,	-1,	SEAL_PARSE_TOO_MANY,	0 },
	{ "all 0xff",		32,	0xff,	SEAL_PARSE_WEAK,	0 },
};

/* test_parse_table - the pure parser: statuses, counts, ids, and a
 * refused input leaves nothing in out. */
static void
test_parse_table(void)
{
	for (size_t i = 0; i < TC_NELEM(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		unsigned char buf[600];
		struct seal_keys k;
		uint64_t s = 7 + i;
		enum seal_parse_status got;

		if (c->fill < 0)
			tc_random_bytes(buf, sizeof(buf), &s);
		else
			memset(buf, c->fill, sizeof(buf));
		got = seal_keys_parse(c->len ? buf : NULL, c->len, &k);
		if (got != c->want || k.n != c->want_n) {
			printf("\n  %s: got %s (%zu keys), want %s (%zu keys)\n",
			    c->name, seal_parse_strerror(got), k.n,
			    seal_parse_strerror(c->want), c->want_n);
			CU_FAIL("parse case");
		}
		for (size_t j = 0; j < k.n; j++) {
			CU_ASSERT_EQUAL(k.k[j].id, seal_key_id(buf + j * SEAL_KEY_LEN));
			CU_ASSERT(memcmp(k.k[j].bytes, buf + j * SEAL_KEY_LEN,
			    SEAL_KEY_LEN) == 0);
		}
		if (got != SEAL_PARSE_OK) {
			static const struct seal_keys zero;
			CU_ASSERT(memcmp(&k, &zero, sizeof(k)) == 0);
		}
	}
}

/* test_keyfile_owner - a key file owned by another user is refused: a
 * child that is not root opens root's key file (mode 0600). */
static void
test_keyfile_owner(void)
{
	unsigned one = 1;
	const char *kf;
	pid_t pid;

	if (geteuid() != 0) {
		printf("skipped: needs root to make a file of another owner ");
		return;
	}
	kf = keyfile("kf-root", &one, 1);
	CU_ASSERT_EQUAL_FATAL(chmod(tc_dir, 0755), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct sessdb_options o = { 0 };
		char p[300], err[512] = "";

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		o.key_file = kf;
		snprintf(p, sizeof(p), "%s/owner.db", tc_dir);
		if (sessdb_open(p, &o, err, sizeof(err)) != NULL)
			_exit(1);
		_exit(strstr(err, kf) != NULL &&
		    sessdb_open_errcode() == SESSDB_E_PERMISSION ? 0 : 2);
	}
	CU_ASSERT(tc_wait_ok(pid, "open another user's key file"));
	CU_ASSERT_EQUAL(chmod(tc_dir, 0700), 0);
}

/* ---- the store API, per backend ---- */

static struct sessdb *
open_keys(const char *kf, unsigned flags)
{
	struct sessdb_options o = { 0 };

	o.flags = flags;
	o.clock = tc_clock;
	o.log = tc_log;
	o.key_file = kf;
	return tc_open(path, &o);
}

static void
fresh(const char *name)
{
	CU_ASSERT_EQUAL_FATAL(cur->fresh(path, sizeof(path), name), 0);
	tc_now = T0;
}

/* put_s - put the string val under id, living LIFE seconds. */
static void
put_s(struct sessdb *db, const char *id, const char *val)
{
	int rc = sessdb_put(db, NS, id, strlen(id), val, strlen(val), T0 + LIFE);

	if (rc != 0)
		printf("\n  put %s: %s\n", id, sessdb_error(db));
	CU_ASSERT_EQUAL(rc, 0);
}

/* expect - get id: want (a hit with those bytes) or NULL (a miss). */
static void
expect(struct sessdb *db, const char *id, const char *want, unsigned want_key)
{
	struct sessdb_meta m = { 0 };
	void *data = NULL;
	size_t len = 0;
	int rc = sessdb_get(db, NS, id, strlen(id), &data, &len, &m);

	if (want == NULL) {
		if (rc != SESSDB_MISS)
			printf("\n  get %s: got %d, want a miss\n", id, rc);
		CU_ASSERT_EQUAL(rc, SESSDB_MISS);
		return;
	}
	if (rc != SESSDB_OK)
		printf("\n  get %s: got %d (%s), want a hit\n", id, rc,
		    sessdb_error(db));
	CU_ASSERT_EQUAL_FATAL(rc, SESSDB_OK);
	CU_ASSERT_EQUAL(len, strlen(want));
	CU_ASSERT(len == strlen(want) && memcmp(data, want, len) == 0);
	CU_ASSERT_EQUAL(m.flags, SESSDB_REC_SEALED);
	if (m.key_id != want_key)
		printf("\n  get %s: key id %04x, want %04x\n", id, m.key_id,
		    want_key);
	CU_ASSERT_EQUAL(m.key_id, want_key);
	sessdb_free(data);
}

/* raw_get - the stored value of id, as the backend keeps it (malloc'ed). */
static unsigned char *
raw_get(struct sessdb *db, const char *id, size_t *len)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len = rec_key_make(key, NS, id, strlen(id));
	struct bitem v;

	CU_ASSERT_FATAL(store_ready(db) == 0);
	CU_ASSERT_EQUAL_FATAL(db->be->fetch(db, key, key_len, &v), 1);
	*len = v.val_len;
	return v.val;
}

/* raw_put - store val under id as it is, after computing its CRC for
 * that key again: an attacker who can write can do as much. */
static void
raw_put(struct sessdb *db, const char *id, unsigned char *val, size_t len)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len = rec_key_make(key, NS, id, strlen(id));
	struct rec r;

	rec_encode_finish(val, key, key_len);
	CU_ASSERT_EQUAL(rec_decode(val, len, key, key_len, &r), REC_OK);
	CU_ASSERT_EQUAL(db->be->store(db, key, key_len, val, len, T0 + LIFE, 0), 1);
}

static const char secret[] = "master secret: 0123456789abcdef0123456789abcdef";

/* test_round_trip - sealed, opened, the plaintext nowhere in the store,
 * and each record under its own fresh nonce. */
static void
test_round_trip(void)
{
	unsigned one = 1;
	struct sessdb *db;
	unsigned char *a, *b;
	size_t alen, blen;

	fresh("roundtrip");
	db = open_keys(keyfile("k1", &one, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	put_s(db, "id-a", secret);
	put_s(db, "id-b", secret);
	expect(db, "id-a", secret, id_of(1));
	a = raw_get(db, "id-a", &alen);
	b = raw_get(db, "id-b", &blen);
	CU_ASSERT_EQUAL(alen, REC_HEADER_LEN + SEAL_OVERHEAD + strlen(secret));
	CU_ASSERT_EQUAL(a[4], REC_VERSION_SEALED);
	CU_ASSERT_EQUAL(a[5], REC_F_SEALED);
	CU_ASSERT_EQUAL((unsigned)(a[6] << 8 | a[7]), id_of(1));
	CU_ASSERT_PTR_NULL(memmem(a, alen, "master secret", 13));
	/* Same plaintext, different nonces and ciphertexts. */
	CU_ASSERT(memcmp(a + REC_HEADER_LEN, b + REC_HEADER_LEN, alen -
	    REC_HEADER_LEN) != 0);
	store_free_value(a, alen);
	store_free_value(b, blen);
	/* take opens too, and consumes. */
	{
		void *d = NULL;
		size_t l = 0;

		CU_ASSERT_EQUAL(sessdb_take(db, NS, "id-b", 4, &d, &l, NULL),
		    SESSDB_OK);
		CU_ASSERT(l == strlen(secret) && memcmp(d, secret, l) == 0);
		sessdb_free(d);
		expect(db, "id-b", NULL, 0);
	}
	sessdb_close(db);
}

/* counters - check a handle's sealing counters. */
static void
counters(struct sessdb *db, uint64_t hits, uint64_t tampered, uint64_t nokey)
{
	struct sessdb_stats st;

	sessdb_stats(db, &st);
	if (st.hits != hits || st.tampered != tampered || st.sealed_nokey != nokey)
		printf("\n  stats: hits %llu tampered %llu sealed_nokey %llu, want "
		    "%llu %llu %llu\n", (unsigned long long)st.hits,
		    (unsigned long long)st.tampered,
		    (unsigned long long)st.sealed_nokey, (unsigned long long)hits,
		    (unsigned long long)tampered, (unsigned long long)nokey);
	CU_ASSERT_EQUAL(st.hits, hits);
	CU_ASSERT_EQUAL(st.tampered, tampered);
	CU_ASSERT_EQUAL(st.sealed_nokey, nokey);
}

/* test_wrong_key - another key file: a miss, counted sealed_nokey,
 * logged once, the record kept for its key; with no key file too. */
static void
test_wrong_key(void)
{
	unsigned one = 1, two = 2;
	struct sessdb *db, *other, *plain;
	const char *k1 = keyfile("k1", &one, 1), *k2 = keyfile("k2", &two, 1);

	fresh("wrongkey");
	db = open_keys(k1, 0);
	other = open_keys(k2, 0);
	plain = open_keys(NULL, 0);
	CU_ASSERT_FATAL(db != NULL && other != NULL && plain != NULL);
	put_s(db, "id-a", secret);
	expect(other, "id-a", NULL, 0);
	expect(other, "id-a", NULL, 0);
	counters(other, 0, 0, 2);
	CU_ASSERT(tc_log_seen("not in the key file"));
	expect(plain, "id-a", NULL, 0);
	counters(plain, 0, 0, 1);
	CU_ASSERT(tc_log_seen("no key file was given"));
	{	/* take without the key puts it back */
		void *d = NULL;
		size_t l = 0;

		CU_ASSERT_EQUAL(sessdb_take(plain, NS, "id-a", 4, &d, &l, NULL),
		    SESSDB_MISS);
	}
	expect(db, "id-a", secret, id_of(1));	/* still there */
	sessdb_close(plain);
	sessdb_close(other);
	sessdb_close(db);
}

/* test_plain_under_key - a handle with keys does not trust a plain record
 * (anyone who can write could plant one): a miss, counted, logged once,
 * kept (a take puts it back) until rekey seals it. */
static void
test_plain_under_key(void)
{
	unsigned one = 1;
	struct sessdb_rekey_result res;
	struct sessdb_stats st;
	struct sessdb *plain, *db;
	void *d = NULL;
	size_t l = 0;

	fresh("plainkey");
	plain = open_keys(NULL, 0);
	db = open_keys(keyfile("k1", &one, 1), 0);
	CU_ASSERT_FATAL(plain != NULL && db != NULL);
	put_s(plain, "planted", "a session nobody sealed");
	expect(db, "planted", NULL, 0);
	CU_ASSERT(tc_log_seen("plain (unsealed) records found"));
	CU_ASSERT_EQUAL(sessdb_take(db, NS, "planted", 7, &d, &l, NULL),
	    SESSDB_MISS);
	sessdb_stats(db, &st);
	CU_ASSERT_EQUAL(st.unsealed, 2);
	CU_ASSERT_EQUAL(st.hits, 0);
	CU_ASSERT_EQUAL(sessdb_get(plain, NS, "planted", 7, &d, &l, NULL),
	    SESSDB_OK);	/* kept, and put back by the take */
	sessdb_free(d);
	CU_ASSERT_EQUAL(sessdb_rekey(db, &res), 0);
	CU_ASSERT_EQUAL(res.resealed, 1);
	expect(db, "planted", "a session nobody sealed", id_of(1));
	sessdb_close(plain);
	sessdb_close(db);
}

/* How a tamper case changes the stored value (v, len) of "id-a". */
enum tamper_how {
	T_FLIP,		/* xor byte at off (negative: from the end) */
	T_EXPIRES,	/* expires moved later by a day */
	T_CREATED,	/* created moved earlier */
	T_KEYID,	/* key id set to the other key's (both loaded) */
	T_SWAP,		/* the value of "id-b" stored under "id-a" */
};

struct tamper_case {
	const char	*name;
	enum tamper_how	how;
	long		off;
};

static const struct tamper_case tamper_cases[] = {
	{ "nonce byte",		T_FLIP,	REC_HEADER_LEN },
	{ "ciphertext byte",	T_FLIP,	REC_HEADER_LEN + SEAL_NONCE_LEN + 3 },
	{ "tag byte",		T_FLIP,	-1 },
	{ "expiry extended",	T_EXPIRES, 0 },
	{ "created changed",	T_CREATED, 0 },
	{ "key id to old key",	T_KEYID, 0 },
	{ "moved to another key", T_SWAP, 0 },
};

/* set_be64 - a big-endian 64-bit field at p. */
static void
set_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* test_tamper_table - each tampered record is a miss, counted tampered,
 * logged, never handed out, and removed. */
static void
test_tamper_table(void)
{
	unsigned keys[2] = { 1, 2 };
	const char *kf = keyfile("k12", keys, 2);

	for (size_t i = 0; i < TC_NELEM(tamper_cases); i++) {
		const struct tamper_case *c = &tamper_cases[i];
		struct sessdb *db;
		unsigned char *v;
		size_t len;

		fresh("tamper");
		db = open_keys(kf, 0);
		CU_ASSERT_PTR_NOT_NULL_FATAL(db);
		put_s(db, "id-a", secret);
		put_s(db, "id-b", "another session's secret, same length ....");
		v = raw_get(db, c->how == T_SWAP ? "id-b" : "id-a", &len);
		switch (c->how) {
		case T_FLIP:
			v[c->off >= 0 ? (size_t)c->off : len - 1] ^= 0x01;
			break;
		case T_EXPIRES:
			set_be64(v + 16, T0 + LIFE + 86400);
			break;
		case T_CREATED:
			set_be64(v + 8, T0 - 1000);
			break;
		case T_KEYID:
			v[6] = (unsigned char)(id_of(1) >> 8);
			v[7] = (unsigned char)id_of(1);
			break;
		case T_SWAP:
			break;
		}
		raw_put(db, "id-a", v, len);
		store_free_value(v, len);
		tc_log_reset();
		expect(db, "id-a", NULL, 0);
		if (sessdb_errcode(db) != 0)
			printf("\n  %s: error %s\n", c->name, sessdb_error(db));
		counters(db, 0, 1, 0);
		if (!tc_log_seen("fails authentication"))
			printf("\n  %s: not logged\n", c->name);
		CU_ASSERT(tc_log_seen("fails authentication"));
		expect(db, "id-a", NULL, 0);
		counters(db, 0, 1, 0);		/* removed: a plain miss now */
		expect(db, "id-b", "another session's secret, same length ....",
		    id_of(2));
		sessdb_close(db);
	}
}

/* test_rotation - keys [1] seal; [1,2]: 1's records open, 2 seals new
 * ones; [2]: 1's records are misses kept, 2's open. */
static void
test_rotation(void)
{
	unsigned k1[1] = { 1 }, k12[2] = { 1, 2 }, k2[1] = { 2 };
	struct sessdb *db;

	fresh("rotation");
	db = open_keys(keyfile("r1", k1, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	put_s(db, "old", "sealed under key 1");
	sessdb_close(db);
	db = open_keys(keyfile("r12", k12, 2), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	expect(db, "old", "sealed under key 1", id_of(1));
	put_s(db, "new", "sealed under key 2");
	expect(db, "new", "sealed under key 2", id_of(2));
	sessdb_close(db);
	db = open_keys(keyfile("r2", k2, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	expect(db, "new", "sealed under key 2", id_of(2));
	expect(db, "old", NULL, 0);
	counters(db, 1, 0, 1);
	sessdb_close(db);
	db = open_keys(keyfile("r1", k1, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	expect(db, "old", "sealed under key 1", id_of(1));
	sessdb_close(db);
}

/* test_rekey - plain records and key 1's are sealed again under key 2
 * in batches; afterwards key 2 alone opens every one. */
static void
test_rekey(void)
{
	unsigned k1[1] = { 1 }, k12[2] = { 1, 2 }, k2[1] = { 2 };
	struct sessdb_rekey_result res;
	struct sessdb_options o = { 0 };
	struct sessdb *db;
	char id[16], val[32];

	fresh("rekey");
	db = open_keys(NULL, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "plain-%d", i);
		put_s(db, id, id);
	}
	CU_ASSERT_EQUAL(sessdb_rekey(db, &res), -1);	/* no key */
	CU_ASSERT_EQUAL(sessdb_errcode(db), SESSDB_E_ARG);
	sessdb_close(db);
	db = open_keys(keyfile("r1", k1, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "one-%d", i);
		put_s(db, id, id);
	}
	sessdb_close(db);
	o.clock = tc_clock;
	o.log = tc_log;
	o.key_file = keyfile("r12", k12, 2);
	o.sweep_batch = 3;
	db = tc_open(path, &o);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	CU_ASSERT_EQUAL(sessdb_rekey(db, &res), 0);
	CU_ASSERT_EQUAL(res.examined, 20);
	CU_ASSERT_EQUAL(res.resealed, 20);
	CU_ASSERT_EQUAL(res.batches, 7);	/* 20 in batches of 3 */
	CU_ASSERT_EQUAL(sessdb_rekey(db, &res), 0);	/* nothing left */
	CU_ASSERT_EQUAL(res.current, 20);
	CU_ASSERT_EQUAL(res.resealed, 0);
	sessdb_close(db);
	db = open_keys(keyfile("r2", k2, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "plain-%d", i);
		snprintf(val, sizeof(val), "%s", id);
		expect(db, id, val, id_of(2));
		snprintf(id, sizeof(id), "one-%d", i);
		expect(db, id, id, id_of(2));
	}
	counters(db, 20, 0, 0);
	sessdb_close(db);
}

/* What a traversal without the key saw. */
struct seen {
	unsigned	records, nokey, problems;
	int64_t		expires;
};

static int
see(void *arg, const struct sessdb_record *rec)
{
	struct seen *s = arg;

	s->records++;
	if (rec->seal == SESSDB_SEAL_NOKEY && rec->problem != NULL &&
	    strstr(rec->problem, "sealed") != NULL && rec->id_len > 0 &&
	    (rec->meta.flags & SESSDB_REC_SEALED))
		s->nokey++;
	else if (rec->problem != NULL)
		s->problems++;
	s->expires = rec->meta.expires;
	return 0;
}

/* test_sealed_without_key - reported as sealed, never removed by a
 * lookup, a repairing traversal or a sweep while live; a sweep still
 * removes it once expired (the expiry is in the clear header). */
static void
test_sealed_without_key(void)
{
	unsigned one = 1;
	struct sessdb_sweep_result sw;
	struct seen s = { 0 };
	struct sessdb *db, *plain;

	fresh("nokey");
	db = open_keys(keyfile("k1", &one, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	put_s(db, "id-a", secret);
	plain = open_keys(NULL, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
	CU_ASSERT_EQUAL(sessdb_foreach(plain, SESSDB_ITER_REMOVE_BAD, see, &s), 0);
	CU_ASSERT_EQUAL(s.records, 1);
	CU_ASSERT_EQUAL(s.nokey, 1);
	CU_ASSERT_EQUAL(s.problems, 0);
	CU_ASSERT_EQUAL(s.expires, T0 + LIFE);
	CU_ASSERT_EQUAL(sessdb_sweep(plain, 0, NULL, NULL, &sw), 0);
	CU_ASSERT_EQUAL(sw.live, 1);
	CU_ASSERT_EQUAL(sw.corrupt, 0);
	expect(plain, "id-a", NULL, 0);
	expect(db, "id-a", secret, id_of(1));
	tc_now = T0 + LIFE + 1;
	CU_ASSERT_EQUAL(sessdb_sweep(plain, 0, NULL, NULL, &sw), 0);
	CU_ASSERT_EQUAL(sw.expired, 1);	/* Redis's TTL is real time: still there */
	CU_ASSERT_EQUAL(sw.corrupt, 0);
	sessdb_close(plain);
	sessdb_close(db);
}

/* test_foreach_opens - a traversal with the key hands out the plaintext. */
static void
test_foreach_opens(void)
{
	unsigned one = 1;
	struct sessdb *db;
	struct seen s = { 0 };

	fresh("foreach");
	db = open_keys(keyfile("k1", &one, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	put_s(db, "id-a", secret);
	CU_ASSERT_EQUAL(sessdb_foreach(db, 0, see, &s), 0);
	CU_ASSERT_EQUAL(s.records, 1);
	CU_ASSERT_EQUAL(s.problems + s.nokey, 0);
	sessdb_close(db);
}

/* test_fork_nonces - a child forked with a handle (and its buffer of
 * nonces) seals with nonces of its own: the parent's next record and the
 * child's first must not share one. */
static void
test_fork_nonces(void)
{
	unsigned one = 1;
	struct sessdb *db;
	unsigned char *a, *b;
	size_t alen, blen;
	pid_t pid;

	fresh("fork");
	db = open_keys(keyfile("k1", &one, 1), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	put_s(db, "first", secret);	/* the buffer is drawn */
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		int rc = sessdb_put(db, NS, "child", 5, secret, strlen(secret),
		    T0 + LIFE);

		sessdb_close(db);	/* the child's own resources (valgrind) */
		_exit(rc == 0 ? 0 : 1);
	}
	CU_ASSERT(tc_wait_ok(pid, "child put"));
	put_s(db, "parent", secret);
	a = raw_get(db, "child", &alen);
	b = raw_get(db, "parent", &blen);
	CU_ASSERT(memcmp(a + REC_HEADER_LEN, b + REC_HEADER_LEN,
	    SEAL_NONCE_LEN) != 0);
	store_free_value(a, alen);
	store_free_value(b, blen);
	expect(db, "child", secret, id_of(1));
	sessdb_close(db);
}

static const struct tc_case keyfile_cases[] = {
	{ "key files: taken or refused", test_keyfile_table },
	{ "parser table", test_parse_table },
	{ "another owner's key file", test_keyfile_owner },
};

static const struct tc_case api_cases[] = {
	{ "round trip", test_round_trip },
	{ "wrong key and no key", test_wrong_key },
	{ "plain records under a key", test_plain_under_key },
	{ "tampered records", test_tamper_table },
	{ "rotation", test_rotation },
	{ "rekey", test_rekey },
	{ "sealed without a key", test_sealed_without_key },
	{ "foreach opens", test_foreach_opens },
	{ "fork: nonces of its own", test_fork_nonces },
};

int
main(void)
{
	struct tc_suite suites[TC_NELEM(backends) + 1];
	char names[TC_NELEM(backends)][64], why[512];
	int started[TC_NELEM(backends)] = { 0 }, rc;
	size_t n = 0;

	if (tc_tmpdir_make("test_seal") != 0)
		return 2;
	suites[n++] = (struct tc_suite)TC_SUITE("keyfile", keyfile_cases, NULL,
	    NULL);
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
	rc = tc_run(suites, n);
	for (size_t i = 0; i < TC_NELEM(backends); i++)
		if (started[i])
			backends[i].stop();
	return rc;
}
