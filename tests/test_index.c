/*
 * NAME
 *	test_index - the index of live records under torn slots, planted
 *	bytes, random SIGKILLs, and a file changed behind it
 *
 * DESCRIPTION
 *	The index (lib/index.c) is a cache of the GDBM file kept in the lock
 *	file after its page, read with no lock.  These tests damage it on
 *	purpose, by mapping the lock file themselves, and kill its writers at
 *	random instants; the store must never hand out a record it was not
 *	given under that key, never lose one it acknowledged, and never make
 *	a call wait longer than lock_timeout_ms.
 *
 *	torn slot: a slot left odd with garbage (a writer killed inside it)
 *	is not read; the key is served from the file; the next put into the
 *	set repairs the slot.
 *
 *	planted bytes: another key's record under this key (its CRC must
 *	catch it), a stale but valid record of this key in the index of
 *	another file (index_ino changed): neither is handed out.
 *
 *	gone everywhere: a key deleted or taken by one process is a miss for
 *	another process's long-lived handle at once.
 *
 *	random kills: writer processes (put, replace, delete, take, get on a
 *	small key space chosen to fall in four sets of the index, so sets
 *	overflow and evict) are SIGKILLed at random instants, while reader
 *	processes hammer gets: every value read must be exactly one written
 *	under that key, no older than what was acknowledged before the get
 *	began (a delete or take acknowledged before it began is never undone
 *	for that reader); after each round a fresh handle finds every
 *	acknowledged record, and every key the index holds it holds with the
 *	bytes the GDBM file has (read with GDBM itself).  Every call is timed
 *	and must end within lock_timeout_ms + 500 ms.  As in test_kill, a
 *	round whose kill left a file GDBM could not rebuild (moved aside as
 *	"<db>.corrupt-*") may lose records; how many is printed.
 *
 *	file changed: after another store renamed over the database the
 *	index never answers with a record of the old file; after a rebuild
 *	(a dead writer planted in the lock page) a record the file lost is
 *	put back from the index and one deleted through the store is not;
 *	after a compaction (every record copied) the index is kept and
 *	names the new file.  During a compaction readers go on.
 *
 *	The slot layout is private to lib/index.c; this file mirrors its
 *	header offsets (SLOT_*) and checks them against a real slot first.
 *	Rounds are fewer and time bounds wider under valgrind.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "lock.h"
#include "record.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define TIMEOUT_MS	1000		/* lock_timeout_ms of every handle */
#define PAYLOAD_MAX	1600
#define PATH_CHECK_WAIT	1300		/* ms: past backend_gdbm.c's PATH_CHECK_MS */

/* The slot of lib/index.c (struct slot): mirrored, checked by slot_layout_ok. */
#define SLOT_SIZE	1024
#define SLOT_WAYS	8
#define SLOT_SEQ	0		/* uint32_t, odd while written */
#define SLOT_KEY_LEN	4		/* uint16_t, 0: empty */
#define SLOT_VAL_LEN	8		/* uint32_t */
#define SLOT_KEY	24		/* REC_KEY_MAX bytes */
#define SLOT_VAL	64		/* the stored bytes */

/* Random kills. */
#define NKEYS		48		/* in 4 sets of 8 ways: they evict */
#define NSETS_USED	4
#define NWRITERS	2
#define NREADERS	2
#define ROUNDS		200
#define ROUNDS_VG	40
#define MAX_DELAY_US	6000

enum { OP_PUT = 1, OP_DELETE, OP_TAKE, OP_GET };

static char path[300];

/* ---- payloads and keys ---- */

/* make_payload - 8 bytes saying whose (key, version), then PRNG bytes;
 * one in sixteen too large for a slot. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned key, uint32_t version)
{
	uint64_t s = (uint64_t)key << 32 ^ version ^ 0x1d3e5;
	uint64_t r = tc_splitmix(&s);
	size_t len = 8 + ((r & 15) == 0 ? 1000 + (r >> 8) % 500 : (r >> 8) % 700);

	tc_payload_fill(buf, len, 'I', key, version, &s);
	return len;
}

/* payload_version - the version whose payload under key data is exactly,
 * or 0 if it is anything else. */
static uint32_t
payload_version(const unsigned char *data, size_t len, unsigned key)
{
	return tc_payload_version(data, len, 'I', key, make_payload, PAYLOAD_MAX);
}

/* A test key: its number (in the payload) and its session ID. */
struct tkey {
	unsigned	n;
	unsigned char	id[SESSDB_ID_MAX];
	size_t		id_len;
};

static void
tkey_make(struct tkey *k, unsigned n)
{
	k->n = n;
	k->id_len = tc_make_id(k->id, 6 + n % 24, 'I', 0, n);
}

static struct sessdb_options
opts(void)
{
	struct sessdb_options o = { 0 };

	o.lock_timeout_ms = TIMEOUT_MS;
	o.log = tc_log;
	return o;
}

static struct sessdb *
open_store(void)
{
	struct sessdb_options o = opts();

	return tc_open(path, &o);
}

static int
put_v(struct sessdb *db, const struct tkey *k, uint32_t version)
{
	unsigned char buf[PAYLOAD_MAX];
	size_t len = make_payload(buf, k->n, version);

	return sessdb_put(db, NS, k->id, k->id_len, buf, len, time(NULL) + 3600);
}

/* get_v - SESSDB_MISS as 0, a hit as its version (UINT32_MAX: bytes not
 * as written under k), an error as -1. */
static int64_t
get_v(struct sessdb *db, const struct tkey *k)
{
	void *data = NULL;
	size_t len = 0;
	int rc = sessdb_get(db, NS, k->id, k->id_len, &data, &len, NULL);
	uint32_t v;

	if (rc == SESSDB_MISS)
		return 0;
	if (rc != SESSDB_OK)
		return -1;
	v = payload_version(data, len, k->n);
	sessdb_free(data);
	return v != 0 ? v : UINT32_MAX;
}

/* expect_v - get k from db: want (0: a miss). */
static void
expect_v(struct sessdb *db, const struct tkey *k, uint32_t want, const char *what)
{
	int64_t got = get_v(db, k);

	if (got != want)
		printf("\n  %s: key %u: got %lld (0 miss, -1 error, %u wrong "
		    "bytes), want %u\n", what, k->n, (long long)got, UINT32_MAX,
		    want);
	CU_ASSERT_EQUAL(got, want);
}

/* expect_fresh - the same through a handle opened just now. */
static void
expect_fresh(const struct tkey *k, uint32_t want, const char *what)
{
	struct sessdb *db = open_store();

	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	expect_v(db, k, want, what);
	sessdb_close(db);
}

/* ---- the lock file, mapped by the test ---- */

struct ixmap {
	int			fd;
	unsigned char		*base;
	size_t			len;
	struct lock_page	*page;
	uint32_t		nslots;
};

/* ixmap_open - map "<db>.lock" whole, read-write; 0 or -1. */
static int
ixmap_open(struct ixmap *m)
{
	char lp[320];
	struct stat st;

	memset(m, 0, sizeof(*m));
	snprintf(lp, sizeof(lp), "%s.lock", path);
	if ((m->fd = open(lp, O_RDWR | O_CLOEXEC)) == -1 || fstat(m->fd, &st) == -1)
		return -1;
	m->len = (size_t)st.st_size;
	if (m->len < LOCK_PAGE_SIZE)
		return -1;
	m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->base == MAP_FAILED)
		return -1;
	m->page = (struct lock_page *)m->base;
	m->nslots = m->page->index_slots;
	if (m->nslots == 0 || m->page->index_slot_size != SLOT_SIZE ||
	    m->len < LOCK_PAGE_SIZE + (size_t)m->nslots * SLOT_SIZE) {
		printf("\n  lock file has no index of the expected layout "
		    "(slots %u, slot size %u, file %zu bytes)\n", m->nslots,
		    m->page->index_slot_size, m->len);
		return -1;
	}
	return 0;
}

static void
ixmap_close(struct ixmap *m)
{
	if (m->base != NULL && m->base != MAP_FAILED)
		munmap(m->base, m->len);
	if (m->fd >= 0)
		close(m->fd);
	memset(m, 0, sizeof(*m));
}

static unsigned char *
slot_at(const struct ixmap *m, size_t i)
{
	return m->base + LOCK_PAGE_SIZE + i * SLOT_SIZE;
}

static uint32_t
slot_seq(const unsigned char *s)
{
	return __atomic_load_n((const uint32_t *)(s + SLOT_SEQ), __ATOMIC_ACQUIRE);
}

static void
slot_set_seq(unsigned char *s, uint32_t seq)
{
	__atomic_store_n((uint32_t *)(s + SLOT_SEQ), seq, __ATOMIC_RELEASE);
}

static uint16_t
slot_key_len(const unsigned char *s)
{
	uint16_t v;

	memcpy(&v, s + SLOT_KEY_LEN, sizeof(v));
	return v;
}

static uint32_t
slot_val_len(const unsigned char *s)
{
	uint32_t v;

	memcpy(&v, s + SLOT_VAL_LEN, sizeof(v));
	return v;
}

static void
slot_set_val(unsigned char *s, const unsigned char *val, uint32_t len)
{
	memcpy(s + SLOT_VAL, val, len);
	memcpy(s + SLOT_VAL_LEN, &len, sizeof(len));
}

/* key_set - the first slot of the set a key lives in (index.c's set_of). */
static size_t
key_set(const struct ixmap *m, const struct tkey *k)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len = rec_key_make(key, NS, k->id, k->id_len);

	return (size_t)(rec_crc32c(0, key, key_len) % (m->nslots / SLOT_WAYS)) *
	    SLOT_WAYS;
}

/* find_slot - the slot holding k (even sequence), or NULL. */
static unsigned char *
find_slot(const struct ixmap *m, const struct tkey *k)
{
	unsigned char key[REC_KEY_MAX];
	size_t key_len = rec_key_make(key, NS, k->id, k->id_len);
	size_t first = key_set(m, k);

	for (size_t w = 0; w < SLOT_WAYS; w++) {
		unsigned char *s = slot_at(m, first + w);

		if (!(slot_seq(s) & 1) && slot_key_len(s) == key_len &&
		    memcmp(s + SLOT_KEY, key, key_len) == 0)
			return s;
	}
	return NULL;
}

/* slot_layout_ok - does s hold k at version as the mirrored layout says:
 * the key at SLOT_KEY, the stored value (header, then payload) at SLOT_VAL? */
static int
slot_layout_ok(const unsigned char *s, const struct tkey *k, uint32_t version)
{
	unsigned char buf[PAYLOAD_MAX];
	size_t len = make_payload(buf, k->n, version);

	return s != NULL && slot_val_len(s) == REC_HEADER_LEN + len &&
	    memcmp(s + SLOT_VAL + REC_HEADER_LEN, buf, len) == 0;
}

/* slot_write - write a slot as a writer does (odd, write, even). */
static void
slot_write(unsigned char *s, const unsigned char *val, uint32_t len)
{
	uint32_t seq = slot_seq(s);

	slot_set_seq(s, seq + 1);
	slot_set_val(s, val, len);
	slot_set_seq(s, seq + 2);
}

/* small_key - a key whose payload at version 1 fits in a slot, from n on. */
static unsigned
small_key(struct tkey *k, unsigned n)
{
	unsigned char buf[PAYLOAD_MAX];

	for (;; n++)
		if (make_payload(buf, n, 1) + REC_HEADER_LEN <= SLOT_SIZE - SLOT_VAL)
			break;
	tkey_make(k, n);
	return n;
}

/* fill - a store "name" with keys 0..n-1 at version 1, and its index mapped. */
static struct sessdb *
fill(const char *name, unsigned n, struct ixmap *m)
{
	struct sessdb *db;
	struct tkey k;

	CU_ASSERT_EQUAL_FATAL(tc_fresh(path, sizeof(path), name), 0);
	db = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (unsigned i = 0; i < n; i++) {
		tkey_make(&k, i);
		CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	}
	CU_ASSERT_EQUAL_FATAL(ixmap_open(m), 0);
	return db;
}

/* ---- another process with a long-lived handle ---- */

struct peer {
	pid_t	pid;
	int	to, from;
};

struct peer_cmd {
	int		op;
	unsigned	key;
};

/* peer_loop - serve commands on a handle opened once: reply get_v. */
static void
peer_loop(int in, int out)
{
	struct sessdb *db = open_store();
	struct peer_cmd c;

	if (db == NULL)
		_exit(3);
	while (read(in, &c, sizeof(c)) == (ssize_t)sizeof(c)) {
		struct tkey k;
		int64_t r = -1;
		void *data = NULL;
		size_t len;

		tkey_make(&k, c.key);
		switch (c.op) {
		case OP_GET:
			r = get_v(db, &k);
			break;
		case OP_DELETE:
			r = sessdb_delete(db, NS, k.id, k.id_len);
			break;
		case OP_TAKE:
			r = sessdb_take(db, NS, k.id, k.id_len, &data, &len, NULL);
			r = r == SESSDB_OK ? (int64_t)payload_version(data, len, k.n) :
			    r == SESSDB_MISS ? 0 : -1;
			sessdb_free(data);
			break;
		default:
			r = put_v(db, &k, (uint32_t)c.op - 100);
			break;
		}
		if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
			break;
	}
	sessdb_close(db);
	_exit(0);
}

static void
peer_start(struct peer *p)
{
	int a[2], b[2];

	CU_ASSERT_FATAL(pipe2(a, O_CLOEXEC) == 0 && pipe2(b, O_CLOEXEC) == 0);
	fflush(stdout);
	p->pid = fork();
	CU_ASSERT_FATAL(p->pid != -1);
	if (p->pid == 0) {
		close(a[1]);
		close(b[0]);
		peer_loop(a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	p->to = a[1];
	p->from = b[0];
}

/* peer_do - op (OP_*, or 100 + version for a put) on key in the peer. */
static int64_t
peer_do(struct peer *p, int op, unsigned key)
{
	struct peer_cmd c = { op, key };
	int64_t r = -2;

	if (write(p->to, &c, sizeof(c)) != (ssize_t)sizeof(c) ||
	    read(p->from, &r, sizeof(r)) != (ssize_t)sizeof(r))
		return -2;
	return r;
}

static void
expect_peer(struct peer *p, unsigned key, int64_t want, const char *what)
{
	int64_t got = peer_do(p, OP_GET, key);

	if (got != want)
		printf("\n  %s: other process, key %u: got %lld, want %lld\n",
		    what, key, (long long)got, (long long)want);
	CU_ASSERT_EQUAL(got, want);
}

static void
peer_stop(struct peer *p)
{
	close(p->to);
	CU_ASSERT(tc_wait_ok(p->pid, "peer"));
	close(p->from);
}

/* ---- 1. deterministic damage ---- */

/* A writer killed inside a slot: odd sequence, garbage bytes. */
static void
test_torn_slot(void)
{
	struct ixmap m;
	struct sessdb *db = fill("torn", 64, &m);
	struct peer peer;
	struct tkey k, other;
	unsigned char *s, junk[SLOT_SIZE - SLOT_VAL];
	uint64_t rng = 0x746f726e;
	uint32_t seq;
	size_t set;

	small_key(&k, 3);
	CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	s = find_slot(&m, &k);
	CU_ASSERT_FATAL(slot_layout_ok(s, &k, 1));
	peer_start(&peer);
	expect_peer(&peer, k.n, 1, "before the tear");

	tc_random_bytes(junk, sizeof(junk), &rng);
	seq = slot_seq(s);
	slot_set_seq(s, seq + 1);		/* the writer dies here: */
	slot_set_val(s, junk, 500);		/* half a value written */
	expect_v(db, &k, 1, "odd slot with garbage");
	expect_peer(&peer, k.n, 1, "odd slot with garbage");
	expect_fresh(&k, 1, "odd slot with garbage");

	/* The next put into that set takes the slot back. */
	set = key_set(&m, &k);
	for (unsigned n = 1000;; n++) {
		small_key(&other, n);
		n = other.n;
		if (key_set(&m, &other) == set)
			break;
	}
	CU_ASSERT_EQUAL(put_v(db, &other, 1), 0);
	CU_ASSERT_EQUAL(slot_seq(s) & 1, 0);
	for (int w = 0; w < SLOT_WAYS; w++)
		CU_ASSERT_EQUAL(slot_seq(slot_at(&m, set + w)) & 1, 0);
	CU_ASSERT(slot_layout_ok(find_slot(&m, &other), &other, 1));
	expect_v(db, &k, 1, "after the repair");
	expect_peer(&peer, other.n, 1, "after the repair");
	CU_ASSERT_EQUAL(put_v(db, &k, 2), 0);
	CU_ASSERT(slot_layout_ok(find_slot(&m, &k), &k, 2));
	expect_peer(&peer, k.n, 2, "put after the repair");

	/* Every way of the set odd: the key is still served, from the file. */
	for (int w = 0; w < SLOT_WAYS; w++) {
		unsigned char *t = slot_at(&m, set + w);

		slot_set_seq(t, slot_seq(t) | 1);
	}
	expect_v(db, &k, 2, "whole set odd");
	expect_peer(&peer, other.n, 1, "whole set odd");
	CU_ASSERT_EQUAL(put_v(db, &other, 2), 0);
	for (int w = 0; w < SLOT_WAYS; w++)
		CU_ASSERT_EQUAL(slot_seq(slot_at(&m, set + w)) & 1, 0);
	expect_peer(&peer, other.n, 2, "whole set repaired");
	expect_peer(&peer, k.n, 2, "whole set repaired");

	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* Another key's record under this key, and bytes flipped in a record:
 * their CRC fails; never handed out, and the file, which holds the right
 * record, answers (the design: what cannot be verified is discarded and
 * the file is asked instead). */
static void
test_planted_bytes(void)
{
	struct ixmap m;
	struct sessdb *db = fill("planted", 16, &m);
	struct peer peer;
	struct tkey a, b;
	unsigned char *sa, *sb, val[SLOT_SIZE];
	uint32_t len;

	small_key(&a, 100);
	small_key(&b, a.n + 1);
	CU_ASSERT_EQUAL(put_v(db, &a, 1), 0);
	CU_ASSERT_EQUAL(put_v(db, &b, 7), 0);
	sa = find_slot(&m, &a);
	sb = find_slot(&m, &b);
	CU_ASSERT_FATAL(slot_layout_ok(sa, &a, 1) && slot_layout_ok(sb, &b, 7));
	peer_start(&peer);

	len = slot_val_len(sb);
	memcpy(val, sb + SLOT_VAL, len);
	slot_write(sa, val, len);		/* b's record under a */
	expect_v(db, &a, 1, "another key's record in the slot");
	expect_peer(&peer, a.n, 1, "another key's record in the slot");
	expect_fresh(&a, 1, "another key's record in the slot");
	expect_v(db, &b, 7, "the key whose record was copied");

	len = slot_val_len(sa);
	memcpy(val, sa + SLOT_VAL, len);
	val[len - 3] ^= 0x40;			/* one bit of the payload */
	slot_write(sa, val, len);
	expect_v(db, &a, 1, "a bit flipped in the slot");
	expect_peer(&peer, a.n, 1, "a bit flipped in the slot");

	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* The index of another file (index_ino changed): a stale but valid record
 * of the key planted in it is not handed out. */
static void
test_other_file(void)
{
	struct ixmap m;
	struct sessdb *db = fill("otherfile", 16, &m);
	struct peer peer;
	struct tkey k, w;
	unsigned char *s, old[SLOT_SIZE];
	uint32_t len;
	uint64_t ino;
	int64_t got;

	small_key(&k, 200);
	small_key(&w, k.n + 1);
	CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	s = find_slot(&m, &k);
	CU_ASSERT_FATAL(slot_layout_ok(s, &k, 1));
	len = slot_val_len(s);
	memcpy(old, s + SLOT_VAL, len);
	CU_ASSERT_EQUAL(put_v(db, &k, 2), 0);
	s = find_slot(&m, &k);
	CU_ASSERT_FATAL(slot_layout_ok(s, &k, 2));
	peer_start(&peer);

	/* Precondition: the index answers this handle without the file. */
	slot_write(s, old, len);
	got = get_v(db, &k);
	if (got != 1)
		printf("\n  precondition: a valid planted record was not read "
		    "from the index (got %lld); the check below proves less\n",
		    (long long)got);

	ino = m.page->index_ino;
	__atomic_store_n(&m.page->index_ino, ino ^ 0x5a5a, __ATOMIC_RELEASE);
	expect_v(db, &k, 2, "index of another inode");
	expect_peer(&peer, k.n, 2, "index of another inode");
	expect_fresh(&k, 2, "index of another inode");
	__atomic_store_n(&m.page->index_dev, m.page->index_dev ^ 1, __ATOMIC_RELEASE);
	__atomic_store_n(&m.page->index_ino, ino, __ATOMIC_RELEASE);
	expect_v(db, &k, 2, "index of another device");
	expect_peer(&peer, k.n, 2, "index of another device");

	/* The next writer restamps and empties it. */
	CU_ASSERT_EQUAL(put_v(db, &w, 1), 0);
	CU_ASSERT_EQUAL(m.page->index_ino, ino);
	CU_ASSERT_PTR_NULL(find_slot(&m, &k));
	expect_peer(&peer, k.n, 2, "index restamped");
	expect_v(db, &k, 2, "index restamped");

	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* A key deleted or taken in one process is gone for another at once. */
static void
test_gone_everywhere(void)
{
	struct ixmap m;
	struct sessdb *db = fill("gone", 32, &m);
	struct peer peer;
	struct tkey k;
	void *data = NULL;
	size_t len;

	peer_start(&peer);
	for (unsigned i = 0; i < 20; i++) {
		small_key(&k, 300 + 10 * i);
		CU_ASSERT_EQUAL(put_v(db, &k, 1 + i), 0);
		CU_ASSERT(slot_layout_ok(find_slot(&m, &k), &k, 1 + i));
		expect_peer(&peer, k.n, 1 + i, "before it goes");
		expect_v(db, &k, 1 + i, "before it goes");
		switch (i % 4) {
		case 0:
			CU_ASSERT_EQUAL(sessdb_delete(db, NS, k.id, k.id_len), 0);
			break;
		case 1:
			CU_ASSERT_EQUAL(sessdb_take(db, NS, k.id, k.id_len, &data,
			    &len, NULL), SESSDB_OK);
			CU_ASSERT_EQUAL(payload_version(data, len, k.n), 1 + i);
			sessdb_free(data);
			break;
		case 2:
			CU_ASSERT_EQUAL(peer_do(&peer, OP_DELETE, k.n), 0);
			break;
		default:
			CU_ASSERT_EQUAL(peer_do(&peer, OP_TAKE, k.n), 1 + i);
			break;
		}
		CU_ASSERT_PTR_NULL(find_slot(&m, &k));
		expect_peer(&peer, k.n, 0, "deleted or taken");
		expect_v(db, &k, 0, "deleted or taken");
		CU_ASSERT_EQUAL(peer_do(&peer, OP_TAKE, k.n), 0);
	}
	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* ---- 3. the file changed behind the index ---- */

/* file_delete - remove k from the GDBM file behind the library (as a
 * rebuild that lost it would), under the write lock, and bump the change
 * counter so handles reopen. */
static void
file_delete(const struct ixmap *m, const struct tkey *k)
{
	unsigned char key[REC_KEY_MAX];
	datum d;
	GDBM_FILE f;

	d.dptr = (char *)key;
	d.dsize = (int)rec_key_make(key, NS, k->id, k->id_len);
	CU_ASSERT_EQUAL_FATAL(flock(m->fd, LOCK_EX), 0);
	f = gdbm_open(path, 0, GDBM_WRITER | GDBM_NOLOCK | GDBM_NOMMAP, 0600, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(gdbm_delete(f, d), 0);
	CU_ASSERT_EQUAL(gdbm_sync(f), 0);
	gdbm_close(f);
	__atomic_add_fetch(&m->page->generation, 1, __ATOMIC_RELEASE);
	flock(m->fd, LOCK_UN);
}

/* still_indexed - precondition: the index still answers for k (the file
 * no longer has it, the library was not told). */
static void
still_indexed(struct sessdb *db, const struct tkey *k, const char *what)
{
	int64_t got = get_v(db, k);

	if (got != 1)
		printf("\n  precondition (%s): the index no longer answered for "
		    "key %u before the event (got %lld)\n", what, k->n,
		    (long long)got);
}

/* A dead writer planted in the lock page: the next writer rebuilds the
 * file and checks the index against the new file.  A record the file
 * lost (deleted behind the index, as a crash can lose it) is put back
 * from the index with its bytes, for every process; a record deleted
 * through the store stays deleted; the index is kept and names the new
 * file. */
static void
test_after_rebuild(void)
{
	struct ixmap m;
	struct sessdb *db = fill("rebuild", 16, &m);
	struct peer peer;
	struct tkey k, d, w;
	struct stat st;
	pid_t dead;

	small_key(&k, 400);
	small_key(&d, k.n + 1);
	small_key(&w, k.n + 2);
	CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	CU_ASSERT_EQUAL(put_v(db, &d, 1), 0);
	CU_ASSERT_FATAL(slot_layout_ok(find_slot(&m, &k), &k, 1));
	CU_ASSERT_EQUAL(sessdb_delete(db, NS, d.id, d.id_len), 0);
	peer_start(&peer);
	expect_peer(&peer, k.n, 1, "before");
	file_delete(&m, &k);
	still_indexed(db, &k, "rebuild");

	dead = fork();
	CU_ASSERT_FATAL(dead != -1);
	if (dead == 0) {	/* a pid that is gone; exec: valgrind does not
				   check a copy of this process's heap */
		execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
	CU_ASSERT(tc_wait_ok(dead, "short-lived child"));
	__atomic_store_n(&m.page->writer, (int32_t)dead, __ATOMIC_RELEASE);
	tc_log_reset();
	CU_ASSERT_EQUAL(put_v(db, &w, 1), 0);
	CU_ASSERT_EQUAL(m.page->writer, 0);
	CU_ASSERT(tc_log_seen("1 records put back from the index"));
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(m.page->index_ino, (uint64_t)st.st_ino);
	CU_ASSERT(slot_layout_ok(find_slot(&m, &k), &k, 1));
	expect_v(db, &k, 1, "lost by the file, after a dead writer's check");
	expect_peer(&peer, k.n, 1, "lost by the file, after a dead writer's check");
	expect_fresh(&k, 1, "lost by the file, after a dead writer's check");
	expect_v(db, &d, 0, "deleted, after a dead writer's check");
	expect_peer(&peer, d.n, 0, "deleted, after a dead writer's check");
	expect_fresh(&d, 0, "deleted, after a dead writer's check");
	expect_peer(&peer, w.n, 1, "after a dead writer's check");
	tkey_make(&w, 5);
	expect_peer(&peer, 5, 1, "an older record after the check");

	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* sessdb_compact copies every record into a new file (a new inode): the
 * index is kept and now names the new file, so what it held is still
 * answered, here, in another process and in a fresh handle, and what is
 * deleted after the compaction is gone for every one of them. */
static void
test_after_compact(void)
{
	struct ixmap m;
	struct sessdb *db = fill("compact", 64, &m);
	struct peer peer;
	struct tkey k, w;
	struct stat st;

	small_key(&k, 500);
	CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	CU_ASSERT_FATAL(slot_layout_ok(find_slot(&m, &k), &k, 1));
	peer_start(&peer);
	expect_peer(&peer, k.n, 1, "before");

	CU_ASSERT_EQUAL(sessdb_compact(db), 0);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(m.page->index_ino, (uint64_t)st.st_ino);
	CU_ASSERT(slot_layout_ok(find_slot(&m, &k), &k, 1));
	expect_v(db, &k, 1, "after a compaction");
	expect_peer(&peer, k.n, 1, "after a compaction");
	expect_fresh(&k, 1, "after a compaction");
	tkey_make(&w, 7);
	expect_peer(&peer, 7, 1, "an older record after a compaction");
	expect_v(db, &w, 1, "an older record after a compaction");

	CU_ASSERT_EQUAL(sessdb_delete(db, NS, k.id, k.id_len), 0);
	CU_ASSERT_PTR_NULL(find_slot(&m, &k));
	expect_v(db, &k, 0, "deleted after a compaction");
	expect_peer(&peer, k.n, 0, "deleted after a compaction");
	expect_fresh(&k, 0, "deleted after a compaction");

	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* During a compaction readers go on and writers wait: the copy is made
 * under LOCK_SH.  A child compacts a store larger than the index; while
 * the lock page says a compaction runs, this process can take the shared
 * lock but not the exclusive one, and reads records (indexed or not,
 * hence through the file) with no lock timeout.  Afterwards every record
 * is still there.  A probe counts only if the compaction was still
 * running after it. */
static void
test_during_compact(void)
{
	unsigned n = tc_under_valgrind() ? 3000 : 30000, probed = 0, reads = 0;
	struct ixmap m;
	struct sessdb *db = fill("compacting", n, &m);
	struct tkey k;
	pid_t pid;
	double t0;

	fflush(stdout);
	if ((pid = fork()) == 0) {
		struct sessdb *c = open_store();
		int rc = c != NULL && sessdb_compact(c) == 0 ? 0 : 1;

		sessdb_close(c);
		_exit(rc);
	}
	CU_ASSERT_FATAL(pid > 0);
	t0 = tc_mono_secs();
	while (__atomic_load_n(&m.page->rebuild_started, __ATOMIC_ACQUIRE) == 0 &&
	    tc_mono_secs() - t0 < 30 && waitpid(pid, NULL, WNOHANG) == 0)
		;
	for (unsigned i = 0; __atomic_load_n(&m.page->rebuild_started,
	    __ATOMIC_ACQUIRE) != 0; i = (i + 7919) % n) {
		int sh = flock(m.fd, LOCK_SH | LOCK_NB);
		int ex;
		int64_t got;

		if (sh == 0)
			flock(m.fd, LOCK_UN);
		ex = flock(m.fd, LOCK_EX | LOCK_NB);
		if (ex == 0)
			flock(m.fd, LOCK_UN);
		tkey_make(&k, i);
		got = get_v(db, &k);
		if (__atomic_load_n(&m.page->rebuild_started, __ATOMIC_ACQUIRE) == 0)
			break;		/* it ended meanwhile: not a probe */
		if (got != 1)
			printf("\n  during a compaction: key %u: got %lld, want 1\n",
			    i, (long long)got);
		reads += got == 1;
		CU_ASSERT_EQUAL(sh, 0);
		CU_ASSERT_EQUAL(ex, -1);
		probed++;
	}
	CU_ASSERT(tc_wait_ok(pid, "compacting child"));
	if (probed == 0)
		printf("\n  the compaction ended before a probe could be made "
		    "(%u records); nothing was checked during it\n", n);
	CU_ASSERT(probed > 0);
	CU_ASSERT_EQUAL(reads, probed);
	CU_ASSERT_EQUAL(sessdb_errcode(db), 0);
	for (unsigned i = 0; i < n; i += 97) {
		tkey_make(&k, i);
		expect_v(db, &k, 1, "after a compaction others read during");
	}
	ixmap_close(&m);
	sessdb_close(db);
}

/* Another store renamed over the database (its lock file stays): handles
 * opened since see the new file at once, the others within the path
 * check interval; none reads the old file's index for the new file. */
static void
test_after_rename(void)
{
	struct ixmap m;
	struct sessdb *db = fill("renamed", 16, &m), *other, *fresh;
	struct peer peer;
	struct tkey k, gone, w;
	char other_path[320], keep[300];

	small_key(&k, 600);
	small_key(&gone, k.n + 1);
	small_key(&w, gone.n + 1);
	CU_ASSERT_EQUAL(put_v(db, &k, 1), 0);
	CU_ASSERT_EQUAL(put_v(db, &gone, 1), 0);
	peer_start(&peer);
	expect_peer(&peer, k.n, 1, "before");
	expect_peer(&peer, gone.n, 1, "before");

	/* The other store: k at version 9, gone absent. */
	snprintf(keep, sizeof(keep), "%s", path);
	CU_ASSERT_EQUAL_FATAL(tc_fresh(path, sizeof(path), "renamed-other"), 0);
	snprintf(other_path, sizeof(other_path), "%s", path);
	other = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	CU_ASSERT_EQUAL(put_v(other, &k, 9), 0);
	sessdb_close(other);
	snprintf(path, sizeof(path), "%s", keep);
	CU_ASSERT_EQUAL_FATAL(rename(other_path, path), 0);

	fresh = open_store();
	CU_ASSERT_PTR_NOT_NULL_FATAL(fresh);
	expect_v(fresh, &k, 9, "handle opened after the rename");
	expect_v(fresh, &gone, 0, "handle opened after the rename");
	tc_sleep_ms(PATH_CHECK_WAIT);
	expect_v(db, &k, 9, "old handle, after the path check");
	expect_v(db, &gone, 0, "old handle, after the path check");
	expect_peer(&peer, k.n, 9, "other process, after the path check");
	expect_peer(&peer, gone.n, 0, "other process, after the path check");
	CU_ASSERT_EQUAL(put_v(fresh, &w, 3), 0);
	expect_peer(&peer, w.n, 3, "a put into the new file");
	expect_peer(&peer, gone.n, 0, "after a put into the new file");
	expect_v(db, &gone, 0, "after a put into the new file");
	expect_v(fresh, &k, 9, "after a put into the new file");

	sessdb_close(fresh);
	peer_stop(&peer);
	ixmap_close(&m);
	sessdb_close(db);
}

/* ---- 2. random kills ---- */

/* What every process of a round shares.  acked: version << 1 | present,
 * of the last operation acknowledged on the key (a delete or take
 * acknowledges its own version, absent); inflight: version << 2 | op of
 * the one begun and not acknowledged, or 0. */
struct shared {
	uint64_t	acked[NKEYS];
	uint64_t	inflight[NKEYS];
	struct tkey	keys[NKEYS];
	unsigned	ready;
	int		stop;
	unsigned	failures;	/* counted atomically */
	uint64_t	calls, reads, read_hits, slowest_us;
	struct tc_notes	notes;
};

static struct shared *sh;

static double
call_bound_ms(void)
{
	return tc_under_valgrind() ? 4.0 * TIMEOUT_MS + 3000 : TIMEOUT_MS + 500;
}

/* fail - a failure in any process (messages kept for the parent). */
#define fail(...) do { \
	__atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED); \
	tc_note(&sh->notes, __VA_ARGS__); \
} while (0)

/* timed - the duration of a call ended now, started at t0 (ns). */
static void
timed(uint64_t t0, const char *what, unsigned key)
{
	uint64_t us = (tc_mono_ns() - t0) / 1000;
	uint64_t was = __atomic_load_n(&sh->slowest_us, __ATOMIC_RELAXED);

	__atomic_add_fetch(&sh->calls, 1, __ATOMIC_RELAXED);
	while (us > was && !__atomic_compare_exchange_n(&sh->slowest_us, &was,
	    us, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (us / 1000.0 > call_bound_ms())
		fail("%s key %u took %.1f ms (lock_timeout_ms %u)", what, key,
		    us / 1000.0, TIMEOUT_MS);
}

/* choose_keys - NKEYS keys falling in NSETS_USED sets of the index. */
static void
choose_keys(const struct ixmap *m)
{
	unsigned n = 0;

	for (unsigned i = 0; i < NKEYS; n++) {
		struct tkey k;

		tkey_make(&k, n);
		if (key_set(m, &k) / SLOT_WAYS < NSETS_USED)
			sh->keys[i++] = k;
	}
}

static uint32_t
ack_version(uint64_t a)
{
	return (uint32_t)(a >> 1);
}

/* writer_op - one operation of writer on key slot i; the writer owns i. */
static void
writer_op(struct sessdb *db, unsigned i, uint8_t op, uint32_t version)
{
	const struct tkey *k = &sh->keys[i];
	uint64_t a = __atomic_load_n(&sh->acked[i], __ATOMIC_RELAXED), t0;
	uint32_t want = a & 1 ? ack_version(a) : 0, got = 0;
	void *data = NULL;
	size_t len;
	int rc;

	__atomic_store_n(&sh->inflight[i], (uint64_t)version << 2 | op,
	    __ATOMIC_RELEASE);
	t0 = tc_mono_ns();
	switch (op) {
	case OP_PUT:
		rc = put_v(db, k, version);
		timed(t0, "put", k->n);
		if (rc != 0) {
			fail("put key %u version %u: rc %d (%s)", k->n, version, rc,
			    sessdb_error(db));
			return;			/* stays in flight */
		}
		a = (uint64_t)version << 1 | 1;
		break;
	case OP_DELETE:
		rc = sessdb_delete(db, NS, k->id, k->id_len);
		timed(t0, "delete", k->n);
		if (rc != 0) {
			fail("delete key %u: rc %d (%s)", k->n, rc, sessdb_error(db));
			return;
		}
		a = (uint64_t)version << 1;
		break;
	default:
		rc = op == OP_TAKE ? sessdb_take(db, NS, k->id, k->id_len, &data,
		    &len, NULL) : sessdb_get(db, NS, k->id, k->id_len, &data,
		    &len, NULL);
		timed(t0, op == OP_TAKE ? "take" : "get", k->n);
		if (rc == SESSDB_OK)
			got = payload_version(data, len, k->n);
		sessdb_free(data);
		if (rc == -1) {
			fail("%s key %u: error (%s)", op == OP_TAKE ? "take" : "get",
			    k->n, sessdb_error(db));
			return;
		}
		if ((rc == SESSDB_OK && got != want) ||
		    (rc == SESSDB_MISS && want != 0))
			fail("writer's own %s key %u: got %s version %u, want %u",
			    op == OP_TAKE ? "take" : "get", k->n,
			    rc == SESSDB_OK ? "hit" : "miss", got, want);
		if (op == OP_TAKE && rc == SESSDB_OK)
			a = (uint64_t)version << 1;
		break;
	}
	__atomic_store_n(&sh->acked[i], a, __ATOMIC_RELEASE);
	__atomic_store_n(&sh->inflight[i], 0, __ATOMIC_RELEASE);
}

/* writer_child - write on the keys i % NWRITERS == w until killed. */
static void
writer_child(unsigned w, int round, uint64_t seed)
{
	struct sessdb_options o = opts();
	struct sessdb *db;

	o.log = NULL;
	if ((db = sessdb_open(path, &o, NULL, 0)) == NULL) {
		fail("writer %u could not open the store", w);
		_exit(3);
	}
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_RELEASE);
	for (uint32_t n = 1; n < 0xffff; n++) {
		unsigned pick = (unsigned)(tc_splitmix(&seed) % 100);
		unsigned i = (unsigned)(tc_splitmix(&seed) % (NKEYS / NWRITERS)) *
		    NWRITERS + w;

		writer_op(db, i, pick < 55 ? OP_PUT : pick < 70 ? OP_DELETE :
		    pick < 85 ? OP_TAKE : OP_GET, (uint32_t)(round + 1) << 16 | n);
	}
	sessdb_close(db);
	_exit(0);
}

/* reader_child - get random keys until told to stop: every hit exactly a
 * version written under the key, none older than acknowledged before. */
static void
reader_child(uint64_t seed)
{
	struct sessdb_options o = opts();
	struct sessdb *db;

	o.log = NULL;
	if ((db = sessdb_open(path, &o, NULL, 0)) == NULL) {
		fail("reader could not open the store");
		_exit(3);
	}
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		unsigned i = (unsigned)(tc_splitmix(&seed) % NKEYS);
		const struct tkey *k = &sh->keys[i];
		uint64_t a = __atomic_load_n(&sh->acked[i], __ATOMIC_ACQUIRE);
		uint64_t t0 = tc_mono_ns();
		void *data = NULL;
		size_t len;
		int rc = sessdb_get(db, NS, k->id, k->id_len, &data, &len, NULL);
		uint32_t got;

		timed(t0, "reader get", k->n);
		__atomic_add_fetch(&sh->reads, 1, __ATOMIC_RELAXED);
		if (rc == -1)
			fail("reader get key %u: error (%s)", k->n, sessdb_error(db));
		if (rc != SESSDB_OK)
			continue;
		__atomic_add_fetch(&sh->read_hits, 1, __ATOMIC_RELAXED);
		got = payload_version(data, len, k->n);
		sessdb_free(data);
		if (got == 0)
			fail("reader get key %u: %zu bytes not written under it",
			    k->n, len);
		else if (a & 1 ? got < ack_version(a) : got <= ack_version(a))
			fail("reader get key %u: version %#x, but %#x was %s "
			    "before the get began", k->n, got, ack_version(a),
			    a & 1 ? "put" : "deleted or taken");
	}
	sessdb_close(db);
	_exit(0);
}

/* count_moved - "<db>.corrupt-*" files: a damaged file moved aside. */
static unsigned
count_moved(void)
{
	const char *base = strrchr(path, '/') + 1;
	char prefix[320];
	unsigned n = 0;
	struct dirent *de;
	DIR *d = opendir(tc_dir);

	snprintf(prefix, sizeof(prefix), "%s.corrupt-", base);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

struct kill_totals {
	unsigned	inflight_lost;	/* a put in flight lost both versions */
	unsigned	moved_rounds;	/* rounds that moved a damaged file aside */
	unsigned	inflight;	/* keys with an operation in flight */
	unsigned	moved_lost;	/* acknowledged records missing after a
					   damaged file was moved aside */
	unsigned	slots_checked;	/* index slots compared with the file */
	unsigned	unchecked;	/* rounds left with a writer marked */
};

/* file_version - the version of k in the GDBM file itself (0: absent or
 * unreadable), read with GDBM under the shared lock. */
static uint32_t
file_version(GDBM_FILE f, const struct tkey *k)
{
	unsigned char key[REC_KEY_MAX];
	datum d, v;
	uint32_t version = 0;

	d.dptr = (char *)key;
	d.dsize = (int)rec_key_make(key, NS, k->id, k->id_len);
	v = gdbm_fetch(f, d);
	if (v.dptr == NULL)
		return 0;
	if ((size_t)v.dsize > REC_HEADER_LEN)
		version = payload_version((unsigned char *)v.dptr + REC_HEADER_LEN,
		    (size_t)v.dsize - REC_HEADER_LEN, k->n);
	free(v.dptr);
	return version;
}

/* check_index_file - with no writer running: every key the index holds
 * (even slot) holds exactly what the file holds. */
static void
check_index_file(int round, struct kill_totals *tot)
{
	struct ixmap m;
	GDBM_FILE f;

	CU_ASSERT_EQUAL_FATAL(ixmap_open(&m), 0);
	CU_ASSERT_EQUAL_FATAL(flock(m.fd, LOCK_SH), 0);
	if (m.page->writer != 0 || m.page->index_ino == 0) {
		tot->unchecked++;	/* the next writer checks the file first */
		goto out;
	}
	f = gdbm_open(path, 0, GDBM_READER | GDBM_NOLOCK | GDBM_NOMMAP, 0600, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (unsigned i = 0; i < NKEYS; i++) {
		const struct tkey *k = &sh->keys[i];
		const unsigned char *s = find_slot(&m, k);
		uint32_t in_slot, in_file;

		if (s == NULL)
			continue;
		in_slot = slot_val_len(s) > REC_HEADER_LEN &&
		    slot_val_len(s) <= SLOT_SIZE - SLOT_VAL ?
		    payload_version(s + SLOT_VAL + REC_HEADER_LEN,
		    slot_val_len(s) - REC_HEADER_LEN, k->n) : 0;
		in_file = file_version(f, k);
		tot->slots_checked++;
		if (in_slot != in_file || in_slot == 0)
			fail("round %d: key %u: the index holds version %#x, the "
			    "file %#x", round, k->n, in_slot, in_file);
	}
	gdbm_close(f);
out:
	flock(m.fd, LOCK_UN);
	ixmap_close(&m);
}

/* check_round - a fresh handle: every key as acknowledged, except one in
 * flight; then the model becomes what was found. */
static void
check_round(int round, unsigned moved_before, struct kill_totals *tot)
{
	struct sessdb *db = open_store();
	int moved = count_moved() != moved_before;

	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	tot->moved_rounds += moved;
	for (unsigned i = 0; i < NKEYS; i++) {
		const struct tkey *k = &sh->keys[i];
		uint64_t a = sh->acked[i], f = sh->inflight[i];
		uint32_t want = a & 1 ? ack_version(a) : 0;
		uint32_t alt = (f & 3) == OP_PUT ? (uint32_t)(f >> 2) : 0;
		uint64_t t0 = tc_mono_ns();
		int64_t got = get_v(db, k);
		int ok;

		timed(t0, "check get", k->n);
		tot->inflight += f != 0;
		if (got == -1 || got == UINT32_MAX)
			ok = 0;
		else if (got == want || (f != 0 && (got == alt || got == 0)))
			ok = 1;
		else
			ok = moved && (got == 0 || got >= want);
		if (!ok) {
			fail("round %d: key %u: got %lld, acknowledged %u, in "
			    "flight %s %u", round, k->n, (long long)got, want,
			    f == 0 ? "none" : (f & 3) == OP_PUT ? "put" : "delete/take",
			    (uint32_t)(f >> 2));
		}
		if (f != 0 && (f & 3) == OP_PUT && got == 0 && want != 0)
			tot->inflight_lost++;
		if (moved && got == 0 && want != 0 && f == 0)
			tot->moved_lost++;
		sh->acked[i] = got > 0 && got != UINT32_MAX ?
		    (uint64_t)got << 1 | 1 : (uint64_t)((uint32_t)(round + 1) << 16) << 1;
		sh->inflight[i] = 0;
	}
	sessdb_close(db);
}

/* kill_round - fork the writers, let them run, SIGKILL each at its own
 * random instant (one round in eight, while they open the store). */
static void
kill_round(int round, uint64_t *rng)
{
	unsigned max_delay = tc_under_valgrind() ? 20 * MAX_DELAY_US : MAX_DELAY_US;
	int early = tc_splitmix(rng) % 8 == 0;
	pid_t pid[NWRITERS];
	double t_end;

	sh->ready = 0;
	fflush(stdout);
	for (unsigned w = 0; w < NWRITERS; w++) {
		uint64_t seed = tc_splitmix(rng);

		pid[w] = fork();
		CU_ASSERT_FATAL(pid[w] != -1);
		if (pid[w] == 0)
			writer_child(w, round, seed);
	}
	t_end = tc_mono_ms() + (tc_under_valgrind() ? 60000 : 5000);
	while (!early && __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < NWRITERS &&
	    tc_mono_ms() < t_end)
		tc_sleep_ms(1);
	for (unsigned w = 0; w < NWRITERS; w++) {
		unsigned delay = (unsigned)(tc_splitmix(rng) % (early ?
		    max_delay / 8 : max_delay));
		struct timespec ts = { 0, (long)delay * 1000 };
		int status;

		nanosleep(&ts, NULL);
		kill(pid[w], SIGKILL);
		CU_ASSERT_EQUAL(waitpid(pid[w], &status, 0), pid[w]);
		if (!WIFSIGNALED(status))
			fail("round %d: writer %u exited (status %d) before the kill",
			    round, w, WEXITSTATUS(status));
	}
}

static void
test_random_kills(void)
{
	int rounds = tc_under_valgrind() ? ROUNDS_VG : ROUNDS;
	struct kill_totals tot = { 0 };
	uint64_t rng = 0x696e646578ull;
	pid_t readers[NREADERS];
	struct sessdb *db;
	struct ixmap m;
	double t0 = tc_mono_secs();

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_FATAL(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	db = fill("kills", 1, &m);	/* makes the index: its size picks the keys */
	choose_keys(&m);
	ixmap_close(&m);
	sessdb_close(db);

	fflush(stdout);
	for (unsigned r = 0; r < NREADERS; r++) {
		uint64_t seed = tc_splitmix(&rng);

		readers[r] = fork();
		CU_ASSERT_FATAL(readers[r] != -1);
		if (readers[r] == 0)
			reader_child(seed);
	}
	for (int round = 0; round < rounds; round++) {
		unsigned moved_before = count_moved();

		kill_round(round, &rng);
		check_round(round, moved_before, &tot);
		check_index_file(round, &tot);
		if (sh->failures > 30) {
			printf("\n  too many failures; stopping after round %d\n", round);
			break;
		}
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	for (unsigned r = 0; r < NREADERS; r++)
		CU_ASSERT(tc_wait_ok(readers[r], "reader"));

	printf("\n  %d rounds in %.1f s: %llu timed calls, slowest %.1f ms "
	    "(bound %.0f); readers %llu gets, %llu hits; %u keys in flight at "
	    "a kill, %u puts in flight lost both versions; %u rounds moved a "
	    "damaged file aside (%u acknowledged records lost with it); %u "
	    "index slots matched the file, %u rounds not compared (a writer "
	    "marked); %u failures\n", rounds, tc_mono_secs() - t0,
	    (unsigned long long)sh->calls, sh->slowest_us / 1000.0,
	    call_bound_ms(), (unsigned long long)sh->reads,
	    (unsigned long long)sh->read_hits, tot.inflight, tot.inflight_lost,
	    tot.moved_rounds, tot.moved_lost, tot.slots_checked, tot.unchecked,
	    sh->failures);
	for (unsigned i = 0; i < sh->failures && i < TC_NELEM(sh->notes.first); i++)
		printf("  failure: %s\n", sh->notes.first[i]);
	CU_ASSERT(sh->reads > 0 && sh->read_hits > 0);
	CU_ASSERT_EQUAL(sh->failures, 0);
	munmap(sh, sizeof(*sh));
	sh = NULL;
}

static const struct tc_case cases[] = {
	{ "torn slot: odd with garbage, repaired by the next put", test_torn_slot },
	{ "planted bytes: another key's record, a flipped bit", test_planted_bytes },
	{ "index of another file: not read", test_other_file },
	{ "deleted or taken: gone for every process", test_gone_everywhere },
	{ "writers SIGKILLed at random, readers hammering", test_random_kills },
	{ "after a dead writer's check: lost records put back", test_after_rebuild },
	{ "after sessdb_compact", test_after_compact },
	{ "during sessdb_compact: readers go on, writers wait", test_during_compact },
	{ "after another store renamed over the database", test_after_rename },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("kill", cases, NULL, NULL),
	};

	if (tc_tmpdir_make("test_index") != 0)
		return 2;
	return tc_run(suites, TC_NELEM(suites));
}
