/*
 * NAME
 *	test_identity - the lock file and the database stay the ones every
 *	process uses: removing or replacing either while handles are open
 *
 * DESCRIPTION
 *	lock file removed, one process: a handle is open, "<db>.lock" is
 *	removed, a second handle opened afterwards (which creates a new lock
 *	file) and the first one take turns putting.  Both must end up
 *	serialised on one lock: every record is there and GDBM's own check
 *	of the file passes.
 *
 *	lock file removed, many processes: NWRITERS forked processes put
 *	and get their own keys (two keep their handle, two reopen it every
 *	REOPEN_EVERY operations, as restarted workers and cron jobs do), and
 *	NREADERS processes only get (as a worker serving resumptions does):
 *	a hit must be bytes some writer put there, and no get may fail;
 *	the parent removes the lock file UNLINKS times during the run and
 *	once puts a fresh empty file in its place, each time while all are
 *	parked between two operations (see remove_lock).  Afterwards every
 *	acknowledged record has its latest acknowledged payload, foreach
 *	sees nothing undecodable, GDBM's check passes, every put succeeded
 *	and no "*.corrupt-*" file was made.
 *
 *	database replaced, one process: a handle that was the last writer
 *	puts after another store was renamed over its path: the record must
 *	be in the new file (read by a fresh handle), the new file's records
 *	stay, and the old, unlinked file must not change by a byte.
 *
 *	database replaced, many processes, in lock step: NSTEP children with
 *	open handles each put once; the parent renames another store over
 *	the path, then tells each child in turn (the last writer first) to
 *	put one more key and waits for its answer.  Every such put is in the
 *	new file, and the old file is unchanged, also after the children
 *	closed their handles.
 *
 *	database replaced, many processes, concurrently: NWRITERS children
 *	put and get without pause while the parent renames another store over
 *	the path REPLACES times, keeping a descriptor on each replaced file.
 *	Every acknowledged put is noted with the number of replacements done
 *	when it began.  A put begun after the r-th replacement must not be in
 *	any of the files replaced by the first r renames (found by its exact
 *	payload, so it cannot be an older write), and a key last put after
 *	the final replacement has that payload in the file at the path.
 *
 *	The puts before and while the files change must all succeed: a
 *	removed or replaced file is the library's to notice, not the
 *	caller's to retry.
 *
 *	Loops are capped (OPS_CAP operations per child, bounded sleeps), so
 *	a run takes a few seconds whatever the library does.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "record.h"
#include "common.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define NWRITERS	4	/* processes in the concurrent tests */
#define NREADERS	1	/* processes that only read (lock test) */
#define NPROC		(NWRITERS + NREADERS)
#define KEYS		64	/* private keys per process */
#define OPS_CAP		20000	/* operations per process, whatever happens */
#define REOPEN_EVERY	25	/* short-lived handles: operations per open */
#define UNLINKS		4	/* lock file removals in the concurrent test */
#define PAUSE_MS	40	/* between two removals (replacements: half) */
#define NSTEP		3	/* children in the lock-step replacement test */
#define B_KEYS		8	/* records of the replacing store */
#define REPLACES	20	/* replacements in the concurrent test */
#define OWNER_B		0xbb	/* owner byte of the replacing store's records */
#define PAYLOAD_MAX	1600

static char path[300];		/* the store under test */
static char path_b[300];	/* the store that replaces it */
static char lock_path[320];
static int print_budget;	/* lines expect_version may still print */
static unsigned pause_ms = PAUSE_MS;	/* longer under valgrind */

/* ---- keys and payloads that describe themselves ---- */

/* make_id - the identifier of key `key` of `owner`: 8..32 bytes. */
static size_t
make_id(unsigned char id[SESSDB_ID_MAX], unsigned owner, unsigned key)
{
	return tc_make_id(id, 8 + (key * 5 + owner) % 25, 'I', owner, key);
}

/* make_payload - the bytes of (owner, key) at version: a 9-byte
 * description, then generator bytes; 16..~1500 bytes, so that the file
 * grows and buckets split during a run. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned owner, unsigned key,
    uint32_t version)
{
	uint64_t s = (uint64_t)owner << 48 ^ (uint64_t)key << 32 ^ version;
	uint64_t r = tc_splitmix(&s);
	size_t len = 16 + ((r & 7) == 0 ? (r >> 8) % 1400 : (r >> 8) % 300);

	buf[0] = 'P';
	buf[1] = (unsigned char)owner;
	buf[2] = (unsigned char)(key >> 8);
	buf[3] = (unsigned char)key;
	tc_put_be32(buf + 4, version);
	buf[8] = 'P';
	tc_random_bytes(buf + 9, len - 9, &s);
	return len;
}

/* put_version - put (owner, key) at version; sessdb_put's result. */
static int
put_version(struct sessdb *db, unsigned owner, unsigned key, uint32_t version)
{
	unsigned char id[SESSDB_ID_MAX], buf[PAYLOAD_MAX];
	size_t id_len = make_id(id, owner, key);
	size_t len = make_payload(buf, owner, key, version);

	return sessdb_put(db, NS, id, id_len, buf, len, time(NULL) + 3600);
}

/*
 * get_version - look up (owner, key): SESSDB_MISS, -1 (error or foreign
 * bytes, described in why), or SESSDB_OK with the version read.
 */
static int
get_version(struct sessdb *db, unsigned owner, unsigned key, uint32_t *version,
    char *why, size_t whylen)
{
	unsigned char id[SESSDB_ID_MAX], want[PAYLOAD_MAX];
	size_t id_len = make_id(id, owner, key), len, want_len;
	void *data;
	const unsigned char *p;
	int rc;

	*version = 0;
	rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
	if (rc == SESSDB_MISS)
		return rc;
	if (rc != SESSDB_OK) {
		snprintf(why, whylen, "get %u/%u: got %d (%s)", owner, key, rc,
		    sessdb_error(db));
		return -1;
	}
	p = data;
	if (len < 9 || p[0] != 'P' || p[8] != 'P' || p[1] != owner ||
	    (unsigned)(p[2] << 8 | p[3]) != key) {
		snprintf(why, whylen, "get %u/%u: %zu bytes that are not this key's",
		    owner, key, len);
		sessdb_free(data);
		return -1;
	}
	*version = tc_get_be32(p + 4);
	want_len = make_payload(want, owner, key, *version);
	rc = want_len == len && memcmp(want, p, len) == 0 ? SESSDB_OK : -1;
	if (rc == -1)
		snprintf(why, whylen, "get %u/%u: version %u has bytes that differ "
		    "from what was written", owner, key, (unsigned)*version);
	sessdb_free(data);
	return rc;
}

/* expect_version - a final lookup must give exactly want (0: a miss). */
static int
expect_version(struct sessdb *db, unsigned owner, unsigned key, uint32_t want,
    const char *what)
{
	char why[300] = "";
	uint32_t got;
	int rc = get_version(db, owner, key, &got, why, sizeof(why));

	if (rc == -1)
		;
	else if (want != 0 && rc == SESSDB_MISS)
		snprintf(why, sizeof(why), "%u/%u: got a miss, want version %u",
		    owner, key, (unsigned)want);
	else if (want == 0 && rc == SESSDB_OK)
		snprintf(why, sizeof(why), "%u/%u: got version %u, want a miss",
		    owner, key, (unsigned)got);
	else if (want != 0 && got != want)
		snprintf(why, sizeof(why), "%u/%u: got version %u, want %u", owner,
		    key, (unsigned)got, (unsigned)want);
	else
		return 1;
	if (print_budget-- > 0)
		printf("\n  %s: %s", what, why);
	return 0;
}

/* ---- the file around the store ---- */

/* fresh - name the stores of test `name` and remove what a run left. */
static void
fresh(const char *name)
{
	char name_b[64];

	print_budget = 10;
	snprintf(name_b, sizeof(name_b), "%s-new", name);
	CU_ASSERT_EQUAL(tc_fresh(path_b, sizeof(path_b), name_b), 0);
	CU_ASSERT_EQUAL(tc_fresh(path, sizeof(path), name), 0);
	snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
}

static struct sessdb *
open_store(const char *p)
{
	return tc_open(p, NULL);
}

/* corrupt_files - how many "<store>.corrupt-*" files the store under test
 * has beside it. */
static int
corrupt_files(void)
{
	const char *base = strrchr(path, '/') + 1;
	size_t base_len = strlen(base);
	DIR *d = opendir(tc_dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, base_len) != 0 ||
		    strncmp(e->d_name + base_len, ".corrupt-", 9) != 0)
			continue;
		if (n++ < 3)
			printf("\n  found %s/%s: a store was moved aside", tc_dir, e->d_name);
	}
	closedir(d);
	if (n > 3)
		printf("\n  ... %d files moved aside in all", n);
	return n;
}

/* fd_hash - FNV-1a of the whole file behind fd (its size mixed in). */
static uint64_t
fd_hash(int fd)
{
	unsigned char buf[65536];
	uint64_t h = 0xcbf29ce484222325ull;
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3ull;
		off += n;
	}
	return h ^ (uint64_t)off;
}

/*
 * gdbm_sound - GDBM's own check of the file at p, on a copy (GDBM's
 * recovery rebuilds in place): every key can be fetched, the avail lists
 * verify, and gdbm_recover without GDBM_RCVR_FORCE (which rebuilds only
 * if its check pass finds damage) leaves the copy alone.  Returns 1 if
 * sound; else 0, with the reason printed.
 */
static int
gdbm_sound(const char *p)
{
	char copy[400], cmd[1400];
	GDBM_FILE dbf;
	gdbm_recovery rcvr;
	datum k, next, v;
	size_t keys = 0, unreadable = 0;
	int ok = 1;

	snprintf(copy, sizeof(copy), "%s.check", p);
	snprintf(cmd, sizeof(cmd), "rm -f '%s'* && cp '%s' '%s'", copy, p, copy);
	if (system(cmd) != 0) {
		printf("\n  gdbm check: cannot copy %s", p);
		return 0;
	}
	dbf = gdbm_open(copy, 0, GDBM_WRITER | GDBM_NOLOCK | GDBM_NOMMAP, 0600, NULL);
	if (dbf == NULL) {
		printf("\n  gdbm check: gdbm_open: %s", gdbm_strerror(gdbm_errno));
		ok = 0;
		goto out;
	}
	for (k = gdbm_firstkey(dbf); k.dptr != NULL && keys < 1000000; k = next) {
		keys++;
		v = gdbm_fetch(dbf, k);
		if (v.dptr == NULL)
			unreadable++;
		free(v.dptr);
		next = gdbm_nextkey(dbf, k);
		free(k.dptr);
	}
	if (gdbm_last_errno(dbf) != GDBM_NO_ERROR &&
	    gdbm_last_errno(dbf) != GDBM_ITEM_NOT_FOUND) {
		printf("\n  gdbm check: traversal stopped after %zu keys: %s", keys,
		    gdbm_strerror(gdbm_last_errno(dbf)));
		ok = 0;
	}
	if (unreadable != 0) {
		printf("\n  gdbm check: %zu of %zu keys cannot be fetched", unreadable,
		    keys);
		ok = 0;
	}
	gdbm_clear_error(dbf);
	if (gdbm_avail_verify(dbf) != 0) {
		printf("\n  gdbm check: avail lists: %s",
		    gdbm_strerror(gdbm_last_errno(dbf)));
		ok = 0;
	}
	gdbm_clear_error(dbf);
	memset(&rcvr, 0, sizeof(rcvr));
	if (gdbm_recover(dbf, &rcvr, GDBM_RCVR_BACKUP) != 0) {
		printf("\n  gdbm check: gdbm_recover failed: %s",
		    gdbm_strerror(gdbm_last_errno(dbf)));
		ok = 0;
	} else if (rcvr.backup_name != NULL) {
		printf("\n  gdbm check: the check pass found damage (rebuilt with "
		    "%zu keys, %zu failed keys, %zu failed buckets)",
		    rcvr.recovered_keys, rcvr.failed_keys, rcvr.failed_buckets);
		ok = 0;
	}
	free(rcvr.backup_name);
	gdbm_close(dbf);
out:
	snprintf(cmd, sizeof(cmd), "rm -f '%s'*", copy);
	if (system(cmd) != 0)
		printf("\n  could not remove %s", copy);
	return ok;
}

/* census_fn - foreach callback: count records, report undecodable ones. */
static int
census_fn(void *arg, const struct sessdb_record *rec)
{
	size_t *bad = arg;

	if (rec->problem != NULL) {
		if (bad[0] < 5)
			printf("\n  foreach: record with problem \"%s\"", rec->problem);
		bad[0]++;
	}
	bad[1]++;
	return 0;
}

/* file_checks - a fresh handle's foreach, GDBM's check, no file moved
 * aside; each printed and asserted.  Returns the record count. */
static size_t
file_checks(const char *p, const char *what)
{
	struct sessdb *db = open_store(p);
	size_t counts[2] = { 0, 0 };	/* undecodable, all */
	int sound;

	CU_ASSERT_PTR_NOT_NULL(db);
	if (db != NULL) {
		CU_ASSERT_EQUAL(sessdb_foreach(db, 0, census_fn, counts), 0);
		sessdb_close(db);
	}
	if (counts[0] != 0)
		printf("\n  %s: %zu of %zu records undecodable, want 0", what,
		    counts[0], counts[1]);
	CU_ASSERT_EQUAL(counts[0], 0);
	sound = gdbm_sound(p);
	if (!sound)
		printf("\n  %s: GDBM's check of %s fails", what, p);
	CU_ASSERT(sound);
	CU_ASSERT_EQUAL(corrupt_files(), 0);
	return counts[1];
}

/* old_open - a read-only GDBM handle on the file behind fd (an unlinked
 * store), through a duplicate of fd; NULL if it cannot be read. */
static GDBM_FILE
old_open(int fd)
{
	int dfd = dup(fd);
	GDBM_FILE dbf;

	/* The duplicate shares the offset, and GDBM reads its header with
	 * read(2) from wherever that is. */
	if (dfd == -1 || lseek(dfd, 0, SEEK_SET) == -1) {
		if (dfd != -1)
			close(dfd);
		return NULL;
	}
	dbf = gdbm_fd_open(dfd, "(old store)", 0, GDBM_READER | GDBM_NOLOCK |
	    GDBM_NOMMAP | GDBM_CLOERROR, NULL);
	if (dbf == NULL)
		printf("\n  cannot read the old file: %s", gdbm_strerror(gdbm_errno));
	return dbf;
}

/* old_has_in - does dbf hold (owner, key) with exactly this version's
 * payload?  The payload ends the value whatever the header holds. */
static int
old_has_in(GDBM_FILE dbf, unsigned owner, unsigned key, uint32_t version)
{
	unsigned char id[SESSDB_ID_MAX], k[REC_KEY_MAX], want[PAYLOAD_MAX];
	size_t id_len = make_id(id, owner, key);
	size_t k_len = rec_key_make(k, NS, id, id_len);
	size_t want_len = make_payload(want, owner, key, version);
	datum dk = { (char *)k, (int)k_len }, v;
	int found;

	v = gdbm_fetch(dbf, dk);
	found = v.dptr != NULL && (size_t)v.dsize >= want_len &&
	    memcmp(v.dptr + v.dsize - want_len, want, want_len) == 0;
	free(v.dptr);
	return found;
}

/* old_has - old_has_in on the file behind fd: 1, 0, or -1 if unreadable. */
static int
old_has(int fd, unsigned owner, unsigned key, uint32_t version)
{
	GDBM_FILE dbf = old_open(fd);
	int found;

	if (dbf == NULL)
		return -1;
	found = old_has_in(dbf, owner, key, version);
	gdbm_close(dbf);
	return found;
}

/* build_b - the replacing store at path_b: B_KEYS records (keys from
 * first), closed. */
static int
build_b(unsigned first)
{
	struct sessdb *b = open_store(path_b);
	int ok = b != NULL;

	for (unsigned k = first; ok && k < first + B_KEYS; k++)
		ok = put_version(b, OWNER_B, k, 1) == 0;
	sessdb_close(b);
	return ok;
}

/* check_b - the replacing store's records are all in the file at path. */
static void
check_b(struct sessdb *db, unsigned first)
{
	unsigned missing = 0;

	for (unsigned k = first; k < first + B_KEYS; k++)
		missing += !expect_version(db, OWNER_B, k, 1, "replacing store's record");
	CU_ASSERT_EQUAL(missing, 0);
}

/* ---- shared memory between the parent and its children ---- */

struct child_report {
	struct tc_notes	notes;
	uint64_t	ops, puts_ok, put_errors, gets, opens;
	struct sessdb_stats st;		/* summed over the child's handles */
};

/* One acknowledged put. */
struct put_note {
	uint16_t	key;
	uint8_t		gen;		/* shm->gen when the put began */
	uint32_t	version;
};

struct shared {
	uint32_t		ack[NWRITERS][KEYS];	/* latest acknowledged version */
	uint8_t			ack_gen[NWRITERS][KEYS]; /* gen when that put began */
	struct put_note		hist[NWRITERS][OPS_CAP];
	unsigned		nhist[NWRITERS];
	int			stop;
	int			hold;		/* writers: park between operations */
	int			parked;		/* writers parked */
	int			running;	/* writers not finished */
	/* Database replacements: 2r once the r-th rename is done, 2r-1
	 * while it is under way. */
	int			gen;
	int			nproc;		/* children started */
	struct child_report	rep[NPROC];
};

static struct shared *shm;

/* add_stats - sum a handle's counters into the child's report. */
static void
add_stats(struct child_report *r, const struct sessdb *db)
{
	struct sessdb_stats st;

	sessdb_stats(db, &st);
	r->st.errors += st.errors;
	r->st.recoveries += st.recoveries;
	r->st.reopens += st.reopens;
	r->st.corrupt += st.corrupt;
	r->st.lock_timeouts += st.lock_timeouts;
}

/* park - wait, between two operations, while the parent holds us. */
static void
park(void)
{
	__atomic_add_fetch(&shm->parked, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&shm->hold, __ATOMIC_SEQ_CST) &&
	    !__atomic_load_n(&shm->stop, __ATOMIC_SEQ_CST))
		tc_sleep_ms(1);
	__atomic_sub_fetch(&shm->parked, 1, __ATOMIC_SEQ_CST);
}

/*
 * writer_child - put (75%) and get (25%) own keys until told to stop,
 * at most OPS_CAP operations.  A get must return the latest acknowledged
 * version.  A short-lived child reopens its handle every REOPEN_EVERY
 * operations.  Each acknowledged put is noted with the replacement
 * generation it began in.
 */
static void
writer_child(unsigned c, int short_lived)
{
	struct child_report *r = &shm->rep[c];
	struct sessdb *db = NULL;
	uint64_t rng = 0x1d3e0000u + c;
	char why[300];

	for (unsigned i = 0; i < OPS_CAP &&
	    !__atomic_load_n(&shm->stop, __ATOMIC_SEQ_CST); i++) {
		unsigned key = (unsigned)(tc_splitmix(&rng) % KEYS);
		uint32_t cur = shm->ack[c][key], got;
		int rc;

		if (__atomic_load_n(&shm->hold, __ATOMIC_SEQ_CST))
			park();

		if (db == NULL || (short_lived && i % REOPEN_EVERY == 0)) {
			if (db != NULL) {
				add_stats(r, db);
				sessdb_close(db);
			}
			db = open_store(path);
			r->opens++;
			if (db == NULL) {
				tc_note(&r->notes, "child %u: open failed", c);
				return;
			}
		}
		r->ops++;
		if ((i & 3) == 0)
			sched_yield();	/* interleave the processes finely */
		if (tc_splitmix(&rng) % 4 != 0) {
			uint8_t gen = (uint8_t)__atomic_load_n(&shm->gen,
			    __ATOMIC_SEQ_CST);

			rc = put_version(db, c, key, i + 1);
			if (rc == 0) {
				struct put_note *pn = &shm->hist[c][shm->nhist[c]++];

				r->puts_ok++;
				shm->ack[c][key] = i + 1;
				shm->ack_gen[c][key] = gen;
				pn->key = (uint16_t)key;
				pn->gen = gen;
				pn->version = i + 1;
			} else {
				r->put_errors++;
				tc_note(&r->notes, "put %u/%u: got %d (%s), want 0", c, key,
				    rc, sessdb_error(db));
			}
		} else {
			int gen;

			r->gets++;
			rc = get_version(db, c, key, &got, why, sizeof(why));
			/* Exact only if the key's last put began with the
			 * file of now in place, and no replacement began
			 * since; else it may be in an old file, and any
			 * answer but foreign bytes will do. */
			gen = __atomic_load_n(&shm->gen, __ATOMIC_SEQ_CST);
			if (gen != shm->ack_gen[c][key] || gen % 2 != 0)
				cur = 0;
			if (rc == -1)
				tc_note(&r->notes, "%s", why);
			else if (cur != 0 && rc == SESSDB_MISS)
				tc_note(&r->notes, "get %u/%u: got a miss, want version %u "
				    "(acknowledged)", c, key, (unsigned)cur);
			else if (cur != 0 && got != cur)
				tc_note(&r->notes, "get %u/%u: got version %u, want %u", c, key,
				    (unsigned)got, (unsigned)cur);
		}
	}
	if (db != NULL) {
		add_stats(r, db);
		sessdb_close(db);
	}
}

/*
 * reader_child - get random keys of the writers until told to stop, at
 * most OPS_CAP times, through one handle: a hit must be bytes some writer
 * put under that key (any version), and no get may fail.  This is the
 * resumption lookup of a server worker, which may go on reading for a
 * while without writing.
 */
static void
reader_child(unsigned c)
{
	struct child_report *r = &shm->rep[c];
	struct sessdb *db = open_store(path);
	uint64_t rng = 0x4ead0000u + c;
	char why[300];
	uint32_t got;

	r->opens++;
	if (db == NULL) {
		tc_note(&r->notes, "reader %u: open failed", c);
		return;
	}
	for (unsigned i = 0; i < OPS_CAP &&
	    !__atomic_load_n(&shm->stop, __ATOMIC_SEQ_CST); i++) {
		unsigned owner = (unsigned)(tc_splitmix(&rng) % NWRITERS);
		unsigned key = (unsigned)(tc_splitmix(&rng) % KEYS);

		if (__atomic_load_n(&shm->hold, __ATOMIC_SEQ_CST))
			park();
		r->ops++;
		r->gets++;
		if ((i & 3) == 0)
			sched_yield();
		if (get_version(db, owner, key, &got, why, sizeof(why)) == -1)
			tc_note(&r->notes, "reader: %s", why);
	}
	add_stats(r, db);
	sessdb_close(db);
}

/* start_writers - fork NWRITERS writer children (the first `short_lived`
 * of them reopen their handle often), then `readers` reader children. */
static int
start_writers(pid_t pids[NPROC], unsigned short_lived, unsigned readers)
{
	memset(shm, 0, sizeof(*shm));
	shm->nproc = NWRITERS + (int)readers;
	shm->running = shm->nproc;
	for (unsigned c = 0; c < (unsigned)shm->nproc; c++) {
		pids[c] = fork();
		if (pids[c] == -1)
			return -1;
		if (pids[c] == 0) {
			if (c < NWRITERS)
				writer_child(c, c < short_lived);
			else
				reader_child(c);
			__atomic_sub_fetch(&shm->running, 1, __ATOMIC_SEQ_CST);
			_exit(shm->rep[c].notes.failures == 0 ? 0 : 1);
		}
	}
	return 0;
}

/* reap_writers - stop and reap the writers, print and assert their reports. */
static void
reap_writers(pid_t pids[NPROC], const char *what)
{
	__atomic_store_n(&shm->stop, 1, __ATOMIC_SEQ_CST);
	for (unsigned c = 0; c < (unsigned)shm->nproc; c++)
		CU_ASSERT(tc_wait_ok(pids[c], c < NWRITERS ? what : "reader"));
	for (unsigned c = 0; c < (unsigned)shm->nproc; c++) {
		struct child_report *r = &shm->rep[c];

		printf("\n  %s %u: %llu ops, %llu puts acknowledged, %llu put "
		    "errors, %llu opens, %llu reopens, %llu recoveries, %llu "
		    "undecodable records seen, %u failures%s%s",
		    c < NWRITERS ? "writer" : "reader", c,
		    (unsigned long long)r->ops, (unsigned long long)r->puts_ok,
		    (unsigned long long)r->put_errors, (unsigned long long)r->opens,
		    (unsigned long long)r->st.reopens,
		    (unsigned long long)r->st.recoveries,
		    (unsigned long long)r->st.corrupt, r->notes.failures,
		    r->notes.failures ? "; first: " : "", r->notes.failures ? r->notes.first[0] : "");
		CU_ASSERT_EQUAL(r->notes.failures, 0);
		CU_ASSERT_EQUAL(r->put_errors, 0);
		CU_ASSERT_EQUAL(r->st.recoveries, 0);
		CU_ASSERT_EQUAL(r->st.corrupt, 0);
		CU_ASSERT(c >= NWRITERS || r->puts_ok > 0);
	}
}

/* ---- lock file removed ---- */

/* One process, two handles: the second opened after the lock file went. */
static void
test_lock_removed_single(void)
{
	struct sessdb *h1, *h2, *h3;
	unsigned bad = 0;

	fresh("lockrm1");
	h1 = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h1);
	CU_ASSERT_EQUAL(put_version(h1, 1, 0, 1), 0);
	CU_ASSERT_EQUAL(unlink(lock_path), 0);
	h2 = open_store(path);		/* makes a new lock file */
	CU_ASSERT_PTR_NOT_NULL(h2);
	if (h2 == NULL) {
		sessdb_close(h1);
		return;
	}
	/* Take turns: each handle's put must see the other's. */
	for (unsigned k = 1; k <= 40; k++) {
		struct sessdb *h = k % 2 ? h2 : h1;
		int rc = put_version(h, 1 + k % 2, k, k);

		if (rc != 0) {
			printf("\n  put %u with handle %d: got %d (%s), want 0", k,
			    k % 2 ? 2 : 1, rc, sessdb_error(h));
			bad++;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	sessdb_close(h1);
	sessdb_close(h2);

	h3 = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h3);
	bad = !expect_version(h3, 1, 0, 1, "after lock file removal");
	for (unsigned k = 1; k <= 40; k++)
		bad += !expect_version(h3, 1 + k % 2, k, k, "after lock file removal");
	if (bad != 0)
		printf("\n  %u of 41 records lost or wrong (two handles locked "
		    "different lock files)", bad);
	CU_ASSERT_EQUAL(bad, 0);
	sessdb_close(h3);
	CU_ASSERT_EQUAL(file_checks(path, "lock file removed, one process"), 41);
}

/*
 * remove_lock - remove the lock file, or (fresh) put a new empty file in
 * its place, while every writer is parked between two operations.  A
 * removal in the middle of another process's update is not tested: no
 * check made after locking can see it, and a process opening the store
 * just then would lock a new file while the old holder still writes;
 * that window belongs to any lock file that can be removed.  (Holding
 * the lock with a plain flock instead would not do: its release does
 * not wake the processes asleep on the library's futex.)  Returns 0 if
 * a file was removed or replaced.
 */
static int
remove_lock(int fresh_file)
{
	double deadline = tc_mono_secs() + 20 * pause_ms / 1000.0;
	char tmp[400];
	int rc, tfd;

	__atomic_store_n(&shm->hold, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&shm->parked, __ATOMIC_SEQ_CST) <
	    __atomic_load_n(&shm->running, __ATOMIC_SEQ_CST)) {
		if (tc_mono_secs() > deadline) {
			printf("\n  not all writers parked: no removal this time");
			__atomic_store_n(&shm->hold, 0, __ATOMIC_SEQ_CST);
			return -1;
		}
		tc_sleep_ms(1);
	}
	if (fresh_file) {
		snprintf(tmp, sizeof(tmp), "%s.fresh", lock_path);
		tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		rc = tfd == -1 ? -1 : rename(tmp, lock_path);
		if (tfd != -1)
			close(tfd);
	} else {
		rc = unlink(lock_path);
	}
	/* ENOENT: removed before, and no process has made a new one yet. */
	if (rc == -1 && errno != ENOENT)
		printf("\n  removing %s: %s", lock_path, strerror(errno));
	__atomic_store_n(&shm->hold, 0, __ATOMIC_SEQ_CST);
	return rc;
}

/* Writers at work while the lock file is removed, and once replaced. */
static void
test_lock_removed_multi(void)
{
	pid_t pids[NPROC];
	struct sessdb *db;
	unsigned removed = 0, bad = 0, present = 0;
	double t0;

	fresh("lockrm");
	db = open_store(path);		/* the file exists before the race */
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	sessdb_close(db);
	CU_ASSERT_FATAL(start_writers(pids, 2, NREADERS) == 0);

	t0 = tc_mono_secs();
	tc_sleep_ms(pause_ms);
	for (unsigned n = 0; n < UNLINKS + 1; n++) {
		if (remove_lock(n == UNLINKS / 2) == 0)
			removed++;
		tc_sleep_ms(pause_ms);
	}
	reap_writers(pids, "writer");
	printf("\n  lock file removed or replaced %u times in %.2f s", removed,
	    tc_mono_secs() - t0);
	CU_ASSERT(removed >= 2);

	db = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (unsigned c = 0; c < NWRITERS; c++) {
		for (unsigned k = 0; k < KEYS; k++) {
			if (shm->ack[c][k] == 0)
				continue;
			present++;
			bad += !expect_version(db, c, k, shm->ack[c][k],
			    "acknowledged record");
		}
	}
	sessdb_close(db);
	if (bad != 0)
		printf("\n  %u of %u acknowledged records lost or stale", bad, present);
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(file_checks(path, "lock file removed, many processes"),
	    present);
}

/* ---- database replaced ---- */

/* One handle, the last writer, puts after another store took its path. */
static void
test_db_replaced_single(void)
{
	struct sessdb *h1, *h2;
	uint64_t h_before;
	int old_fd;

	fresh("dbrep1");
	h1 = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h1);
	CU_ASSERT_EQUAL(put_version(h1, 1, 0, 1), 0);
	CU_ASSERT_FATAL(build_b(0));
	old_fd = open(path, O_RDONLY | O_CLOEXEC);	/* keeps the old file */
	CU_ASSERT_FATAL(old_fd != -1);
	h_before = fd_hash(old_fd);
	CU_ASSERT_EQUAL_FATAL(rename(path_b, path), 0);

	CU_ASSERT_EQUAL(put_version(h1, 1, 1, 1), 0);
	CU_ASSERT_EQUAL(put_version(h1, 1, 2, 1), 0);
	if (fd_hash(old_fd) != h_before)
		printf("\n  the replaced (unlinked) file changed after the rename");
	CU_ASSERT_EQUAL(fd_hash(old_fd), h_before);
	CU_ASSERT_EQUAL(old_has(old_fd, 1, 1, 1), 0);

	h2 = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h2);
	CU_ASSERT(expect_version(h2, 1, 1, 1, "first put after the replacement"));
	CU_ASSERT(expect_version(h2, 1, 2, 1, "second put after the replacement"));
	check_b(h2, 0);
	sessdb_close(h2);
	sessdb_close(h1);
	if (fd_hash(old_fd) != h_before)
		printf("\n  the replaced file changed when the handle closed");
	CU_ASSERT_EQUAL(fd_hash(old_fd), h_before);
	close(old_fd);
	CU_ASSERT_EQUAL(file_checks(path, "database replaced, one process"),
	    B_KEYS + 2);
}

/* step_child - put key `cmd` (read from in) and answer the result; until
 * the pipe closes. */
static void
step_child(unsigned c, int in, int out)
{
	struct sessdb *db = open_store(path);
	uint32_t cmd;
	int32_t rc;

	if (db == NULL)
		_exit(1);
	while (read(in, &cmd, sizeof(cmd)) == (ssize_t)sizeof(cmd)) {
		rc = put_version(db, c, cmd, 1);
		if (rc != 0)
			printf("\n  [child %u] put %u: %s", c, (unsigned)cmd,
			    sessdb_error(db));
		if (write(out, &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
			break;
	}
	sessdb_close(db);
	_exit(0);
}

/* step_put - tell child c to put key, wait for its answer. */
static int32_t
step_put(int cmd_fd, int res_fd, uint32_t key)
{
	int32_t rc = -99;

	if (write(cmd_fd, &key, sizeof(key)) != (ssize_t)sizeof(key) ||
	    read(res_fd, &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
		return -99;
	return rc;
}

/* Children with open handles, told one at a time to put after the rename. */
static void
test_db_replaced_lockstep(void)
{
	int cmd[NSTEP][2], res[NSTEP][2], old_fd;
	pid_t pids[NSTEP];
	struct sessdb *db;
	uint64_t h_before;
	unsigned lost = 0, in_old = 0;

	fresh("dbrepstep");
	db = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	sessdb_close(db);
	for (unsigned c = 0; c < NSTEP; c++) {
		CU_ASSERT_FATAL(pipe2(cmd[c], O_CLOEXEC) == 0 &&
		    pipe2(res[c], O_CLOEXEC) == 0);
		pids[c] = fork();
		CU_ASSERT_FATAL(pids[c] != -1);
		if (pids[c] == 0) {
			for (unsigned o = 0; o < c; o++) {
				close(cmd[o][1]);
				close(res[o][0]);
			}
			close(cmd[c][1]);
			close(res[c][0]);
			step_child(c, cmd[c][0], res[c][1]);
		}
		close(cmd[c][0]);
		close(res[c][1]);
	}
	/* Each child writes once; the last one is current with the file. */
	for (unsigned c = 0; c < NSTEP; c++)
		CU_ASSERT_EQUAL(step_put(cmd[c][1], res[c][0], 0), 0);

	CU_ASSERT_FATAL(build_b(0));
	old_fd = open(path, O_RDONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(old_fd != -1);
	h_before = fd_hash(old_fd);
	CU_ASSERT_EQUAL_FATAL(rename(path_b, path), 0);
	/* The last writer first: nothing else would make it look again. */
	for (unsigned n = 0; n < NSTEP; n++) {
		unsigned c = NSTEP - 1 - n;

		CU_ASSERT_EQUAL(step_put(cmd[c][1], res[c][0], 1), 0);
		CU_ASSERT_EQUAL(step_put(cmd[c][1], res[c][0], 2), 0);
	}
	if (fd_hash(old_fd) != h_before)
		printf("\n  the replaced (unlinked) file changed after the rename");
	CU_ASSERT_EQUAL(fd_hash(old_fd), h_before);

	db = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (unsigned c = 0; c < NSTEP; c++) {
		for (unsigned k = 1; k <= 2; k++) {
			if (!expect_version(db, c, k, 1, "put after the replacement"))
				lost++;
			in_old += old_has(old_fd, c, k, 1) == 1;
		}
	}
	check_b(db, 0);
	sessdb_close(db);
	if (lost != 0 || in_old != 0)
		printf("\n  of %u puts after the replacement: %u not in the new file, "
		    "%u in the old, unlinked one", 2 * NSTEP, lost, in_old);
	CU_ASSERT_EQUAL(lost, 0);
	CU_ASSERT_EQUAL(in_old, 0);

	for (unsigned c = 0; c < NSTEP; c++) {
		close(cmd[c][1]);
		CU_ASSERT(tc_wait_ok(pids[c], "lock-step child"));
		close(res[c][0]);
	}
	if (fd_hash(old_fd) != h_before)
		printf("\n  the replaced file changed when the children closed");
	CU_ASSERT_EQUAL(fd_hash(old_fd), h_before);
	close(old_fd);
	CU_ASSERT_EQUAL(file_checks(path, "database replaced, lock step"),
	    B_KEYS + 2 * NSTEP);
}

/*
 * in_old_files - acknowledged puts that began after the r-th replacement
 * but are found in a file replaced by the r-th or an earlier rename
 * (old[1..r]): written to an unlinked file.
 */
static unsigned
in_old_files(int old_fd[REPLACES + 1], unsigned *checked)
{
	GDBM_FILE old[REPLACES + 1] = { NULL };
	unsigned found = 0;

	for (unsigned r = 1; r <= REPLACES; r++) {
		old[r] = old_open(old_fd[r]);
		CU_ASSERT_PTR_NOT_NULL(old[r]);
	}
	*checked = 0;
	for (unsigned c = 0; c < NWRITERS; c++) {
		for (unsigned n = 0; n < shm->nhist[c]; n++) {
			const struct put_note *pn = &shm->hist[c][n];

			if (pn->gen == 0 || pn->gen % 2 != 0)
				continue;	/* began before or during a rename */
			(*checked)++;
			for (unsigned r = 1; r <= pn->gen / 2u; r++) {
				if (old[r] == NULL ||
				    !old_has_in(old[r], c, pn->key, pn->version))
					continue;
				if (found++ < 5)
					printf("\n  put %u/%u version %u began after "
					    "replacement %u and is in the file replaced "
					    "by rename %u", c, pn->key,
					    (unsigned)pn->version, pn->gen / 2u, r);
			}
		}
	}
	for (unsigned r = 1; r <= REPLACES; r++)
		if (old[r] != NULL)
			gdbm_close(old[r]);
	return found;
}

/* Writers at work while other stores are renamed over theirs, REPLACES
 * times. */
static void
test_db_replaced_concurrent(void)
{
	pid_t pids[NPROC];
	struct sessdb *db;
	unsigned post = 0, lost = 0, in_old, checked;
	int old_fd[REPLACES + 1];
	double t0;

	fresh("dbrep");
	db = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	sessdb_close(db);
	CU_ASSERT_FATAL(start_writers(pids, 0, 0) == 0);

	t0 = tc_mono_secs();
	for (unsigned r = 1; r <= REPLACES; r++) {
		tc_sleep_ms(pause_ms / 2);
		CU_ASSERT_FATAL(build_b(r * B_KEYS));
		old_fd[r] = open(path, O_RDONLY | O_CLOEXEC);	/* keeps it */
		CU_ASSERT_FATAL(old_fd[r] != -1);
		__atomic_store_n(&shm->gen, 2 * r - 1, __ATOMIC_SEQ_CST);
		CU_ASSERT_EQUAL(rename(path_b, path), 0);
		__atomic_store_n(&shm->gen, 2 * r, __ATOMIC_SEQ_CST);
	}
	tc_sleep_ms(pause_ms);
	reap_writers(pids, "writer");
	printf("\n  database replaced %d times in %.2f s", REPLACES,
	    tc_mono_secs() - t0);

	db = open_store(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(db);
	for (unsigned c = 0; c < NWRITERS; c++) {
		for (unsigned k = 0; k < KEYS; k++) {
			if (shm->ack[c][k] == 0 || shm->ack_gen[c][k] != 2 * REPLACES)
				continue;	/* may be in an old file */
			post++;
			lost += !expect_version(db, c, k, shm->ack[c][k],
			    "put begun after the last replacement");
		}
	}
	check_b(db, REPLACES * B_KEYS);
	sessdb_close(db);
	in_old = in_old_files(old_fd, &checked);
	for (unsigned r = 1; r <= REPLACES; r++)
		close(old_fd[r]);
	printf("\n  %u keys last put after the last replacement: %u not in the "
	    "file; %u puts begun after a replacement: %u in an unlinked file",
	    post, lost, checked, in_old);
	CU_ASSERT(post > 0);
	CU_ASSERT(checked > 0);
	CU_ASSERT_EQUAL(lost, 0);
	CU_ASSERT_EQUAL(in_old, 0);
	file_checks(path, "database replaced, many processes");
}

static const struct tc_case cases[] = {
	{ "lock file removed, one process, two handles", test_lock_removed_single },
	{ "lock file removed and replaced, 4 processes", test_lock_removed_multi },
	{ "database replaced, one process", test_db_replaced_single },
	{ "database replaced, processes told in turn", test_db_replaced_lockstep },
	{ "database replaced, 4 processes at work", test_db_replaced_concurrent },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("identity", cases, NULL, NULL),
	};
	int rc;

	if (tc_under_valgrind())
		pause_ms *= 10;
	if (tc_tmpdir_make("test_identity") != 0)
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
