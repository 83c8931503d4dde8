/*
 * NAME
 *	fault_driver - store operations for the fault-injection grid, and the
 *	check that judges what a fault left behind
 *
 * SYNOPSIS
 *	fault_driver prepare DB N
 *	fault_driver op DB OP [ROUND]
 *	fault_driver check DB EXPECTED-FILE [LOG-FILE...]
 *	fault_driver plant DB wrong|lose|aside
 *
 * DESCRIPTION
 *	prepare creates a store with N (30..500) live records (keys 0..N-1,
 *	version 1) and FAULT_NEXP records that are expired by the time an op
 *	runs (keys 500..519), and puts and deletes three more (520..522) so
 *	the file has free space.
 *	It prints one line per record it left ("ACK put KEY VERSION", "EXP
 *	KEY VERSION") and nothing else.
 *
 *	op opens the store and runs a short sequence of one operation: put,
 *	get, take, delete, sweep, compact or rebuild (a lock page that names
 *	a writer which no longer exists, then puts: the next writer rebuilds
 *	the file).  ROUND (1 by default) picks other keys and versions, so a
 *	second run after a fault cleared has work of its own; from round 2
 *	on two puts follow, to show that the store takes writes again.  Before
 *	each call it prints "BEGIN OP KEY [VERSION]", after it one line of
 *	what the call returned: "ACK put KEY VERSION" only once sessdb_put
 *	returned 0, "ACK del KEY", "ACK take KEY VERSION|MISS", "GOT KEY
 *	VERSION", "MISS KEY", "ACK sweep ...", "ACK compact", or "FAIL OP KEY
 *	RC MESSAGE" for a call that returned -1.  The store's log goes to
 *	standard error as "LOG LEVEL MESSAGE".
 *
 *	All output is written with writev(2), which the grid never injects
 *	faults into, so an injected write error cannot eat an acknowledgement.
 *	The part the grid injects into lies between two access(2) calls on
 *	FAULT_MARK_BEGIN and FAULT_MARK_END: the dynamic loader and set-up
 *	before, exit after.  Exit status: 0 all calls succeeded, 1 some call
 *	failed, 3 the store did not open, 2 usage.
 *
 *	check opens the store from a fresh process (it must open), reads
 *	every key the expected file names, walks every record, and compares
 *	with what the expected file (prepare's and the ops' output,
 *	concatenated) says was acknowledged.  It prints "PROBLEM ..." lines,
 *	then one line "RESULT name=value ..." with:
 *	  keys		keys checked
 *	  ok		keys in an acceptable state
 *	  lost		acknowledged records missing, or found at an older
 *			version (the key's operation was not in flight)
 *	  logged	1 if a log line (op's or check's own) says data was
 *			lost and names an existing file beside the store where
 *			it went ("moved aside", or a non-zero count after
 *			"lost"), else 0; lost with logged=0 is a silent loss
 *	  inflight_lost	the key whose operation failed or was in flight is
 *			absent (acceptable; counted for information)
 *	  wrong		a record holding another key's payload or bytes
 *			never written, a get that returned a version that was
 *			not current, or an expired record handed out
 *	  resurrected	a deleted or taken record that is back
 *	  bad		records that fail to decode (never handed out; info)
 *	  aside		"<db>.corrupt-*" files
 *	  aside_intact	of those, files GDBM reads through whose every record
 *			decodes: an intact store moved aside
 *	  strays_before, strays_after  other files beside the store before
 *			and after the check opened it
 *	  openfail	the store did not open
 *	  unusable	it opened but a put/get/delete of a probe key failed
 *	Exit status 0 when none of lost-unlogged, wrong, resurrected,
 *	aside_intact, openfail, unusable is non-zero, else 1.
 *
 *	plant damages a prepared store in one of the ways check must catch
 *	(a wrong record, a silent loss, an intact store moved aside): the
 *	grid's self-test, so a check that sees nothing cannot pass a cell.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "lock.h"
#include "record.h"
#include "sessdb.h"

#define NS		SESSDB_NS_SERVER
#define T0		1700000000	/* prepare's clock */
#define T_OP		(T0 + 1000)	/* every op's and the check's clock */
#define FAULT_NEXP	20		/* expired records made by prepare */
#define EXP_KEY		500		/* their keys: 500..519 */
#define GONE_KEY	520		/* prepare's deleted keys: 520..522 */
#define NKEYS		10000		/* key numbers the driver may use */
#define PROBE_KEY	9999		/* check's own put/get/delete */
#define PAYLOAD_MAX	4200
#define FAULT_MARK_BEGIN "/.sessdb-fault-mark-begin"
#define FAULT_MARK_END	"/.sessdb-fault-mark-end"

static const char *log_prefix = "LOG";

/* A check's own log lines, searched for loss reports like the op logs. */
static char **check_log;
static size_t check_log_n;

/* out - printf to fd with one writev (not write: see DESCRIPTION). */
static void __attribute__((format(printf, 2, 3)))
out(int fd, const char *fmt, ...)
{
	char buf[2048];
	struct iovec iov;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	while (iov.iov_len > 0) {
		ssize_t w = writev(fd, &iov, 1);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		iov.iov_base = (char *)iov.iov_base + w;
		iov.iov_len -= (size_t)w;
	}
}

/* log_line - the store's log callback: one line on stderr (newlines folded). */
static void
log_line(void *arg, int level, const char *msg)
{
	char buf[1024];
	size_t i;

	(void)arg;
	snprintf(buf, sizeof(buf), "%s", msg);
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	out(2, "%s %d %s\n", log_prefix, level, buf);
	if (arg != NULL) {	/* the check keeps its own lines */
		char **n = realloc(check_log, (check_log_n + 1) * sizeof(*n));
		if (n != NULL && (n[check_log_n] = strdup(buf)) != NULL) {
			check_log = n;
			check_log_n++;
		} else if (n != NULL) {
			check_log = n;
		}
	}
}

/* make_id - the session ID of key: 'F', 0, the key big-endian, filler;
 * 4..15 bytes. */
static size_t
make_id(unsigned char id[SESSDB_ID_MAX], unsigned key)
{
	return tc_make_id(id, 4 + key % 12, 'F', 0, key);
}

/* id_key - the key number an ID encodes, or -1 if it is no ID of ours. */
static long
id_key(const unsigned char *id, size_t len)
{
	unsigned char want[SESSDB_ID_MAX];
	long key = tc_id_key(id, len, 'F');

	if (key < 0 || key >= NKEYS || make_id(want, (unsigned)key) != len ||
	    memcmp(want, id, len) != 0)
		return -1;
	return key;
}

/* make_payload - the bytes of key at version: 'P', key, version, 'P',
 * then generated bytes; mostly under 600 bytes, one in eight up to 4 KiB. */
static size_t
make_payload(unsigned char buf[PAYLOAD_MAX], unsigned key, unsigned version)
{
	uint64_t s = (uint64_t)key << 32 ^ version ^ 0x5eed;
	uint64_t r = tc_splitmix(&s);
	size_t len = 6 + ((r & 7) == 0 ? (r >> 8) % 4000 : (r >> 8) % 600);

	buf[0] = 'P';
	buf[1] = (unsigned char)(key >> 8);
	buf[2] = (unsigned char)key;
	buf[3] = (unsigned char)(version >> 8);
	buf[4] = (unsigned char)version;
	buf[5] = 'P';
	tc_random_bytes(buf + 6, len - 6, &s);
	return len;
}

/* payload_version - the version whose exact bytes data holds for key, or 0. */
static unsigned
payload_version(const unsigned char *data, size_t len, unsigned key)
{
	unsigned char want[PAYLOAD_MAX];
	unsigned version;

	if (len < 6 || data[0] != 'P' || data[5] != 'P' ||
	    ((unsigned)data[1] << 8 | data[2]) != key)
		return 0;
	version = (unsigned)data[3] << 8 | data[4];
	if (version == 0 || make_payload(want, key, version) != len ||
	    memcmp(want, data, len) != 0)
		return 0;
	return version;
}

static struct sessdb *
open_store(const char *path, unsigned sweep_batch, void *log_arg, char *err,
    size_t errlen)
{
	struct sessdb_options o;

	memset(&o, 0, sizeof(o));
	o.log = log_line;
	o.log_arg = log_arg;
	o.clock = tc_clock;
	o.sweep_batch = sweep_batch;
	o.max_ttl = 200000;
	return sessdb_open(path, &o, err, errlen);
}

static int
put_key(struct sessdb *db, unsigned key, unsigned version, int64_t expires)
{
	unsigned char id[SESSDB_ID_MAX], data[PAYLOAD_MAX];
	size_t id_len = make_id(id, key);
	size_t len = make_payload(data, key, version);

	return sessdb_put(db, NS, id, id_len, data, len, expires);
}

/* ---- prepare ---- */

static int
cmd_prepare(const char *path, unsigned n)
{
	char err[512] = "";
	struct sessdb *db;
	unsigned char id[SESSDB_ID_MAX];
	unsigned k;

	tc_now = T0;
	db = open_store(path, 0, NULL, err, sizeof(err));
	if (db == NULL) {
		out(2, "prepare: open %s: %s\n", path, err);
		return 1;
	}
	for (k = 0; k < n; k++)
		if (put_key(db, k, 1, T0 + 150000) != 0)
			goto fail;
	for (k = EXP_KEY; k < EXP_KEY + FAULT_NEXP; k++)
		if (put_key(db, k, 1, T0 + 500) != 0)
			goto fail;
	/* Records deleted again leave free space behind. */
	for (k = GONE_KEY; k < GONE_KEY + 3; k++)
		if (put_key(db, k, 1, T0 + 150000) != 0 ||
		    sessdb_delete(db, NS, id, make_id(id, k)) != 0)
			goto fail;
	sessdb_close(db);
	for (k = 0; k < n; k++)
		out(1, "ACK put %u 1\n", k);
	for (k = EXP_KEY; k < EXP_KEY + FAULT_NEXP; k++)
		out(1, "EXP %u 1\n", k);
	for (k = GONE_KEY; k < GONE_KEY + 3; k++)
		out(1, "ACK del %u\n", k);
	return 0;
fail:
	out(2, "prepare: key %u: %s\n", k, sessdb_error(db));
	sessdb_close(db);
	return 1;
}

/* ---- op ---- */

struct opctx {
	struct sessdb	*db;
	int		failed;
};

static void
report_fail(struct opctx *c, const char *op, long key, int rc)
{
	out(1, "FAIL %s %ld %d %s\n", op, key, rc, sessdb_error(c->db));
	c->failed = 1;
}

static void
op_put(struct opctx *c, unsigned key, unsigned version)
{
	int rc;

	out(1, "BEGIN put %u %u\n", key, version);
	rc = put_key(c->db, key, version, T_OP + 100000);
	if (rc == 0)
		out(1, "ACK put %u %u\n", key, version);
	else
		report_fail(c, "put", key, rc);
}

static void
op_get(struct opctx *c, unsigned key)
{
	unsigned char id[SESSDB_ID_MAX];
	void *data;
	size_t len;
	int rc;

	out(1, "BEGIN get %u\n", key);
	rc = sessdb_get(c->db, NS, id, make_id(id, key), &data, &len, NULL);
	if (rc == SESSDB_OK) {
		unsigned v = payload_version(data, len, key);
		if (v == 0)
			out(1, "WRONG get %u %zu bytes of someone else\n", key, len);
		else
			out(1, "GOT %u %u\n", key, v);
		sessdb_free(data);
	} else if (rc == SESSDB_MISS) {
		out(1, "MISS %u\n", key);
	} else {
		report_fail(c, "get", key, rc);
	}
}

static void
op_take(struct opctx *c, unsigned key)
{
	unsigned char id[SESSDB_ID_MAX];
	void *data;
	size_t len;
	int rc;

	out(1, "BEGIN take %u\n", key);
	rc = sessdb_take(c->db, NS, id, make_id(id, key), &data, &len, NULL);
	if (rc == SESSDB_OK) {
		unsigned v = payload_version(data, len, key);
		if (v == 0)
			out(1, "WRONG take %u %zu bytes of someone else\n", key, len);
		else
			out(1, "ACK take %u %u\n", key, v);
		sessdb_free(data);
	} else if (rc == SESSDB_MISS) {
		out(1, "ACK take %u MISS\n", key);
	} else {
		report_fail(c, "take", key, rc);
	}
}

static void
op_delete(struct opctx *c, unsigned key)
{
	unsigned char id[SESSDB_ID_MAX];
	int rc;

	out(1, "BEGIN delete %u\n", key);
	rc = sessdb_delete(c->db, NS, id, make_id(id, key));
	if (rc == 0)
		out(1, "ACK del %u\n", key);
	else
		report_fail(c, "delete", key, rc);
}

/* kill_writer - mark the lock page as if a writer had died mid-update:
 * the pid of a process that does not exist. */
static int
kill_writer(const char *path)
{
	char lp[4096];
	struct lock_page *p;
	int fd;
	int32_t pid;

	snprintf(lp, sizeof(lp), "%s.lock", path);
	fd = open(lp, O_RDWR | O_CLOEXEC);
	if (fd == -1) {
		out(2, "op: %s: %s\n", lp, strerror(errno));
		return -1;
	}
	p = mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		out(2, "op: mmap %s: %s\n", lp, strerror(errno));
		return -1;
	}
	for (pid = 4000000; pid > 2; pid--)
		if (kill(pid, 0) == -1 && errno == ESRCH)
			break;
	p->writer = pid;
	munmap(p, sizeof(*p));
	return 0;
}

static int
cmd_op(const char *path, const char *op, unsigned round)
{
	char err[512] = "";
	struct opctx c = { NULL, 0 };
	unsigned base = 20 * (round - 1), half = 10 * (round - 1);
	unsigned nexp_base = EXP_KEY + half;
	int rc;

	tc_now = T_OP;
	if (strcmp(op, "rebuild") == 0 && kill_writer(path) == -1)
		return 2;
	/* From here on the system calls are the operation's. */
	(void)access(FAULT_MARK_BEGIN, F_OK);
	c.db = open_store(path, strcmp(op, "sweep") == 0 ? 8 : 0, NULL, err,
	    sizeof(err));
	if (c.db == NULL) {
		out(1, "OPENFAIL %s\n", err);
		(void)access(FAULT_MARK_END, F_OK);
		return 3;
	}
	if (strcmp(op, "put") == 0) {
		/* New keys and replacements, interleaved. */
		for (unsigned i = 0; i < 10; i++) {
			op_put(&c, 1000 + base + i, 1);
			op_put(&c, base + i, round + 1);
		}
	} else if (strcmp(op, "get") == 0) {
		for (unsigned i = 0; i < 10; i++) {
			op_get(&c, base + i);
			if (i < 5)	/* expired: the miss removes it */
				op_get(&c, nexp_base + i);
			else
				op_get(&c, 5000 + base + i);	/* absent */
		}
	} else if (strcmp(op, "take") == 0 || strcmp(op, "delete") == 0) {
		void (*fn)(struct opctx *, unsigned) = op[0] == 't' ? op_take : op_delete;
		for (unsigned i = 0; i < 10; i++) {
			fn(&c, base + i);
			if (i < 3)
				fn(&c, nexp_base + i);	/* expired */
			else if (i < 5)
				fn(&c, 5000 + base + i);	/* absent */
		}
	} else if (strcmp(op, "sweep") == 0) {
		struct sessdb_sweep_result res;
		out(1, "BEGIN sweep -\n");
		rc = sessdb_sweep(c.db, 0, NULL, NULL, &res);
		if (rc == 0)
			out(1, "ACK sweep examined=%llu expired=%llu corrupt=%llu "
			    "live=%llu batches=%llu\n",
			    (unsigned long long)res.examined,
			    (unsigned long long)res.expired,
			    (unsigned long long)res.corrupt,
			    (unsigned long long)res.live,
			    (unsigned long long)res.batches);
		else
			report_fail(&c, "sweep", -1, rc);
	} else if (strcmp(op, "compact") == 0) {
		out(1, "BEGIN compact -\n");
		rc = sessdb_compact(c.db);
		if (rc == 0)
			out(1, "ACK compact\n");
		else
			report_fail(&c, "compact", -1, rc);
	} else if (strcmp(op, "rebuild") == 0) {
		/* The open already met the dead writer's mark; the first
		 * write is the next chance to act on it. */
		for (unsigned i = 0; i < 3; i++) {
			op_put(&c, 2000 + base + i, 1);
			op_put(&c, base + i, round + 1);
		}
	} else {
		out(2, "unknown op %s\n", op);
		sessdb_close(c.db);
		return 2;
	}
	if (round > 1) {
		op_put(&c, 9000 + round * 2, 1);
		op_put(&c, 9001 + round * 2, 1);
	}
	sessdb_close(c.db);
	(void)access(FAULT_MARK_END, F_OK);
	out(1, "END %d\n", c.failed);
	return c.failed;
}

/* ---- check ---- */

enum { ST_NONE = 0, ST_KNOWN, ST_EXPIRED };

/* What may be found under one key: absent and/or some versions. */
struct want {
	int		state;		/* ST_* */
	int		absent_ok;
	unsigned	versions[8];	/* acceptable versions */
	unsigned	nversions;
	unsigned	latest;		/* latest acknowledged version, 0 = none */
	int		uncertain;	/* its operation failed or was in flight */
	int		deleted;	/* last acknowledged operation removed it */
};

static struct want model[NKEYS];

struct tally {
	unsigned keys, ok, lost, inflight_lost, wrong, resurrected, bad;
	unsigned aside, aside_intact, strays_before, strays_after;
	unsigned openfail, unusable, logged;
};

static void
set_present(struct want *w, unsigned v)
{
	w->state = ST_KNOWN;
	w->absent_ok = 0;
	w->versions[0] = v;
	w->nversions = 1;
	w->latest = v;
	w->uncertain = 0;
	w->deleted = 0;
}

static void
set_absent(struct want *w)
{
	w->state = ST_KNOWN;
	w->absent_ok = 1;
	w->nversions = 0;
	w->latest = 0;
	w->uncertain = 0;
	w->deleted = 1;
}

static int
version_ok(const struct want *w, unsigned v)
{
	for (unsigned i = 0; i < w->nversions; i++)
		if (w->versions[i] == v)
			return 1;
	return 0;
}

/* in_flight - the call on key (a put of version v, or a removal) did not
 * say it succeeded: either outcome, or none, may be in the file. */
static void
in_flight(struct want *w, int is_put, unsigned v)
{
	if (w->state == ST_NONE) {
		w->state = ST_KNOWN;
		w->absent_ok = 1;
		w->nversions = 0;
	}
	w->uncertain = 1;
	w->absent_ok = 1;
	if (is_put && !version_ok(w, v) && w->nversions < 8)
		w->versions[w->nversions++] = v;
}

static int
valid_key(long k)
{
	return k >= 0 && k < NKEYS;
}

/* load_expected - replay the acknowledgements; complains about GOT lines
 * that did not match what was current. */
static int
load_expected(const char *file, struct tally *t)
{
	FILE *f = fopen(file, "r");
	char line[2048], op[32] = "", ver[32];
	long key = -1, pkey = -1;
	unsigned pver = 0;
	int pput = 0, pget = 0;

	if (f == NULL) {
		printf("check: %s: %s\n", file, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "BEGIN ", 6) == 0) {
			/* A call that never returned: its process was killed,
			 * and the lines that follow are another run's. */
			if (valid_key(pkey) && !pget)
				in_flight(&model[pkey], pput, pver);
			key = -1;
			pver = 0;
			if (sscanf(line, "BEGIN %31s %ld %u", op, &key, &pver) < 1)
				op[0] = '\0';
			pkey = key;
			pput = strcmp(op, "put") == 0;
			pget = strcmp(op, "get") == 0;
			continue;
		}
		if (sscanf(line, "ACK put %ld %u", &key, &pver) == 2 && valid_key(key)) {
			set_present(&model[key], pver);
			pkey = -1;
		} else if (sscanf(line, "EXP %ld %u", &key, &pver) == 2 && valid_key(key)) {
			set_present(&model[key], pver);
			model[key].state = ST_EXPIRED;
			model[key].absent_ok = 1;
		} else if (sscanf(line, "ACK del %ld", &key) == 1 && valid_key(key)) {
			set_absent(&model[key]);
			pkey = -1;
		} else if (sscanf(line, "ACK take %ld %31s", &key, ver) == 2 &&
		    valid_key(key)) {
			struct want *w = &model[key];
			if (strcmp(ver, "MISS") != 0 && w->state == ST_KNOWN &&
			    !version_ok(w, (unsigned)atoi(ver))) {
				printf("PROBLEM take %ld returned version %s, not current\n",
				    key, ver);
				t->wrong++;
			}
			if (strcmp(ver, "MISS") != 0 && w->state == ST_EXPIRED) {
				printf("PROBLEM take %ld handed out an expired record\n", key);
				t->wrong++;
			}
			set_absent(w);
			pkey = -1;
		} else if (sscanf(line, "GOT %ld %31s", &key, ver) == 2 && valid_key(key)) {
			struct want *w = &model[key];
			if (w->state == ST_EXPIRED) {
				printf("PROBLEM get %ld handed out an expired record\n", key);
				t->wrong++;
			} else if (!version_ok(w, (unsigned)atoi(ver))) {
				printf("PROBLEM get %ld returned version %s, not current\n",
				    key, ver);
				t->wrong++;
			}
			pkey = -1;
		} else if (sscanf(line, "MISS %ld", &key) == 1) {
			pkey = -1;
		} else if (strncmp(line, "WRONG", 5) == 0) {
			printf("PROBLEM op: %s", line);
			t->wrong++;
			pkey = -1;
		} else if (strncmp(line, "FAIL ", 5) == 0) {
			if (valid_key(pkey) && !pget)
				in_flight(&model[pkey], pput, pver);
			pkey = -1;
		} else if (strncmp(line, "ACK sweep", 9) == 0 ||
		    strncmp(line, "ACK compact", 11) == 0) {
			pkey = -1;
		} else if (strncmp(line, "END", 3) == 0) {
			pkey = -1;
		}
	}
	/* A call that never returned (the process was killed in it). */
	if (valid_key(pkey) && !pget)
		in_flight(&model[pkey], pput, pver);
	fclose(f);
	return 0;
}

static int
has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* names_file - does line name an existing file "<db>.<something>" other
 * than the lock file? */
static int
names_file(const char *line, const char *path)
{
	size_t plen = strlen(path);
	const char *p = line;

	while ((p = strstr(p, path)) != NULL) {
		char name[4096];
		size_t n = 0;
		struct stat st;

		while (p[n] != '\0' && p[n] != ' ' && p[n] != ',' && p[n] != ';' &&
		    p[n] != ')' && p[n] != '\'' && p[n] != '"' && p[n] != '\n' &&
		    n < sizeof(name) - 1)
			n++;
		memcpy(name, p, n);
		name[n] = '\0';
		while (n > plen && (name[n - 1] == '.' || name[n - 1] == ':'))
			name[--n] = '\0';
		p += plen;
		if (n <= plen + 1 || name[plen] != '.' ||
		    strcmp(name + plen, ".lock") == 0)
			continue;
		if (stat(name, &st) == 0)
			return 1;
	}
	return 0;
}

/* says_lost - does the line report lost data: a store moved aside, or a
 * "lost N ..." with a non-zero count anywhere after "lost" ("lost 0
 * records and 1 buckets" counts: it says something went)? */
static int
says_lost(const char *line)
{
	const char *p = strstr(line, "lost ");

	if (strstr(line, "moved aside") != NULL)
		return 1;
	for (; p != NULL && *p != '\0' && *p != ';'; p++)
		if (*p >= '1' && *p <= '9' && (p[-1] == ' ' || p[-1] == '\t'))
			return 1;
	return 0;
}

static int
loss_logged(int nlogs, char **logs, const char *path)
{
	char line[4096];

	for (size_t i = 0; i < check_log_n; i++)
		if (says_lost(check_log[i]) && names_file(check_log[i], path))
			return 1;
	for (int i = 0; i < nlogs; i++) {
		FILE *f = fopen(logs[i], "r");
		int found = 0;
		if (f == NULL)
			continue;
		while (!found && fgets(line, sizeof(line), f) != NULL)
			found = says_lost(line) && names_file(line, path);
		fclose(f);
		if (found)
			return 1;
	}
	return 0;
}

/* aside_is_intact - can GDBM read all of file, every record decoding? */
static int
aside_is_intact(const char *file, unsigned *records)
{
	GDBM_FILE dbf = gdbm_open(file, 0, GDBM_READER | GDBM_NOLOCK |
	    GDBM_NOMMAP, 0, NULL);
	datum k, next, v;
	struct rec r;
	int intact = 1;

	*records = 0;
	if (dbf == NULL)
		return 0;
	for (k = gdbm_firstkey(dbf); k.dptr != NULL; k = next) {
		/* Keys of no record namespace are the store's own (its
		 * marker): not records. */
		if (k.dsize < 1 || ((unsigned char)k.dptr[0] != SESSDB_NS_SERVER &&
		    (unsigned char)k.dptr[0] != SESSDB_NS_CLIENT)) {
			next = gdbm_nextkey(dbf, k);
			free(k.dptr);
			continue;
		}
		v = gdbm_fetch(dbf, k);
		if (v.dptr == NULL || rec_decode((unsigned char *)v.dptr,
		    (size_t)v.dsize, (unsigned char *)k.dptr, (size_t)k.dsize,
		    &r) != REC_OK)
			intact = 0;
		else
			(*records)++;
		free(v.dptr);
		next = gdbm_nextkey(dbf, k);
		free(k.dptr);
	}
	if (gdbm_last_errno(dbf) != GDBM_ITEM_NOT_FOUND &&
	    gdbm_last_errno(dbf) != GDBM_NO_ERROR)
		intact = 0;
	gdbm_close(dbf);
	return intact;
}

/* scan_dir - count the files beside the store: moved-aside ones (checked
 * for intactness when check_aside) and strays. */
static void
scan_dir(const char *path, unsigned *strays, struct tally *t, int check_aside)
{
	char dir[4096], file[8192];
	const char *slash = strrchr(path, '/');
	const char *base = slash != NULL ? slash + 1 : path;
	size_t blen = strlen(base);
	DIR *d;
	struct dirent *de;

	if (slash != NULL)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, sizeof(dir), ".");
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, base) == 0)
			continue;
		if (strncmp(n, base, blen) == 0 && strcmp(n + blen, ".lock") == 0)
			continue;
		if (strncmp(n, base, blen) == 0 && has_prefix(n + blen, ".corrupt-")) {
			if (check_aside) {
				unsigned records;
				t->aside++;
				snprintf(file, sizeof(file), "%s/%s", dir, n);
				if (aside_is_intact(file, &records)) {
					printf("PROBLEM intact store moved aside: %s (%u "
					    "records, all readable)\n", n, records);
					t->aside_intact++;
				}
			}
			continue;
		}
		if (check_aside)	/* the second scan reports the names */
			printf("PROBLEM stray file beside the store: %s\n", n);
		(*strays)++;
	}
	closedir(d);
}

struct walk_ctx {
	struct tally *t;
};

static int
walk_record(void *arg, const struct sessdb_record *rec)
{
	struct walk_ctx *w = arg;
	long key;

	if (rec->problem != NULL) {
		w->t->bad++;
		return 0;
	}
	key = rec->ns == NS ? id_key(rec->id, rec->id_len) : -1;
	if (key < 0) {
		printf("PROBLEM a record under a key never written (%zu bytes)\n",
		    rec->id_len);
		w->t->wrong++;
	} else if (payload_version(rec->data, rec->len, (unsigned)key) == 0) {
		printf("PROBLEM record of key %ld holds bytes never written under "
		    "it (%zu bytes)\n", key, rec->len);
		w->t->wrong++;
	}
	return 0;
}

/* probe - can the store take a put, give it back and delete it? */
static int
probe(struct sessdb *db)
{
	unsigned char id[SESSDB_ID_MAX];
	size_t id_len = make_id(id, PROBE_KEY);
	void *data;
	size_t len;
	int rc;

	if (put_key(db, PROBE_KEY, 1, T_OP + 1000) != 0)
		return -1;
	rc = sessdb_get(db, NS, id, id_len, &data, &len, NULL);
	if (rc != SESSDB_OK)
		return -1;
	rc = payload_version(data, len, PROBE_KEY) == 1 ? 0 : -1;
	sessdb_free(data);
	if (sessdb_delete(db, NS, id, id_len) != 0)
		return -1;
	return rc;
}

/* judge_key - what a get of key k gives against what was acknowledged:
 * counted in t (lost ones in *lost), a PROBLEM or LOSS line if wrong. */
static void
judge_key(struct sessdb *db, unsigned k, struct tally *t, unsigned *lost)
{
	struct want *w = &model[k];
	unsigned char id[SESSDB_ID_MAX];
	void *data;
	size_t len;
	unsigned v = 0;
	int rc;

	t->keys++;
	rc = sessdb_get(db, NS, id, make_id(id, k), &data, &len, NULL);
	if (rc == -1) {
		printf("PROBLEM get %u: %s\n", k, sessdb_error(db));
		t->unusable = 1;
		return;
	}
	if (rc == SESSDB_OK) {
		v = payload_version(data, len, k);
		sessdb_free(data);
		if (v == 0) {
			printf("PROBLEM get %u handed out %zu bytes never "
			    "written under it\n", k, len);
			t->wrong++;
			return;
		}
	}
	if (w->state == ST_EXPIRED) {
		if (v != 0) {
			printf("PROBLEM get %u handed out an expired record\n", k);
			t->wrong++;
		} else {
			t->ok++;
		}
	} else if (v == 0 ? w->absent_ok : version_ok(w, v)) {
		t->ok++;
		if (v == 0 && w->uncertain && !w->deleted)
			t->inflight_lost++;
	} else if (v == 0) {
		printf("LOSS key %u: version %u acknowledged, absent\n",
		    k, w->latest);
		(*lost)++;
	} else if (w->deleted) {
		printf("PROBLEM key %u: removed, back at version %u\n", k, v);
		t->resurrected++;
	} else if (v < w->latest) {
		printf("LOSS key %u: version %u acknowledged, %u found\n",
		    k, w->latest, v);
		(*lost)++;
	} else {
		printf("PROBLEM key %u: version %u never acknowledged "
		    "(latest %u)\n", k, v, w->latest);
		t->wrong++;
	}
}

/* judge_store - every key, a walk over the records, and a probe that the
 * store still takes writes. */
static void
judge_store(struct sessdb *db, struct tally *t)
{
	struct walk_ctx wc;
	unsigned lost_here = 0;

	for (unsigned k = 0; k < NKEYS; k++)
		if (model[k].state != ST_NONE)
			judge_key(db, k, t, &lost_here);
	t->lost = lost_here;
	wc.t = t;
	if (sessdb_foreach(db, 0, walk_record, &wc) == -1) {
		printf("PROBLEM foreach: %s\n", sessdb_error(db));
		t->unusable = 1;
	}
	if (probe(db) == -1) {
		printf("PROBLEM probe put/get/delete: %s\n", sessdb_error(db));
		t->unusable = 1;
	}
}

/* cmd_check - judge what a fault left: see DESCRIPTION. */
static int
cmd_check(const char *path, const char *expected, int nlogs, char **logs)
{
	struct tally t;
	char err[512] = "";
	struct sessdb *db;
	int fail;

	memset(&t, 0, sizeof(t));
	tc_now = T_OP;
	log_prefix = "CHECKLOG";
	if (load_expected(expected, &t) == -1)
		return 2;
	scan_dir(path, &t.strays_before, &t, 0);
	db = open_store(path, 0, &t, err, sizeof(err));
	if (db == NULL) {
		printf("PROBLEM the store does not open: %s\n", err);
		t.openfail = 1;
	} else {
		judge_store(db, &t);
		sessdb_close(db);
	}
	scan_dir(path, &t.strays_after, &t, 1);
	t.logged = t.lost > 0 && loss_logged(nlogs, logs, path);
	if (t.lost > 0 && !t.logged)
		printf("PROBLEM silent loss: %u acknowledged records gone, no log "
		    "line says so naming where the data went\n", t.lost);
	fail = (t.lost > 0 && !t.logged) || t.wrong || t.resurrected ||
	    t.aside_intact || t.openfail || t.unusable;
	printf("RESULT keys=%u ok=%u lost=%u logged=%u inflight_lost=%u wrong=%u "
	    "resurrected=%u bad=%u aside=%u aside_intact=%u strays_before=%u "
	    "strays_after=%u openfail=%u unusable=%u pass=%d\n", t.keys, t.ok,
	    t.lost, t.logged, t.inflight_lost, t.wrong, t.resurrected, t.bad,
	    t.aside, t.aside_intact, t.strays_before, t.strays_after, t.openfail,
	    t.unusable, !fail);
	for (size_t i = 0; i < check_log_n; i++)
		free(check_log[i]);
	free(check_log);
	return fail ? 1 : 0;
}

/* cmd_plant - damage a prepared store the way the check must notice:
 * "wrong" (key 6 holds key 5's payload), "lose" (key 7 deleted behind
 * the expected file's back), "aside" (the intact store renamed to
 * "<db>.corrupt-1" without a word). */
static int
cmd_plant(const char *path, const char *kind)
{
	char err[512] = "", aside[4096];
	unsigned char id[SESSDB_ID_MAX], data[PAYLOAD_MAX];
	struct sessdb *db;
	int rc;

	tc_now = T_OP;
	if (strcmp(kind, "aside") == 0) {
		snprintf(aside, sizeof(aside), "%s.corrupt-1", path);
		return rename(path, aside) == 0 ? 0 : 1;
	}
	db = open_store(path, 0, NULL, err, sizeof(err));
	if (db == NULL) {
		out(2, "plant: %s\n", err);
		return 1;
	}
	if (strcmp(kind, "wrong") == 0)
		rc = sessdb_put(db, NS, id, make_id(id, 6), data,
		    make_payload(data, 5, 1), T_OP + 1000);
	else if (strcmp(kind, "lose") == 0)
		rc = sessdb_delete(db, NS, id, make_id(id, 7));
	else
		rc = -1;
	sessdb_close(db);
	return rc == 0 ? 0 : 1;
}

static void
usage(void)
{
	out(2, "usage: fault_driver prepare DB N\n"
	    "       fault_driver op DB put|get|take|delete|sweep|compact|rebuild [ROUND]\n"
	    "       fault_driver check DB EXPECTED-FILE [LOG-FILE...]\n"
	    "       fault_driver plant DB wrong|lose|aside\n");
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	tc_now = T0;
	if (argc == 4 && strcmp(argv[1], "prepare") == 0) {
		int n = atoi(argv[3]);
		if (n < 30 || n > EXP_KEY) {
			out(2, "prepare: N must be 30..500\n");
			return 2;
		}
		return cmd_prepare(argv[2], (unsigned)n);
	}
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "op") == 0) {
		int round = argc == 5 ? atoi(argv[4]) : 1;
		if (round < 1 || round > 50) {
			usage();
			return 2;
		}
		return cmd_op(argv[2], argv[3], (unsigned)round);
	}
	if (argc == 4 && strcmp(argv[1], "plant") == 0)
		return cmd_plant(argv[2], argv[3]);
	if (argc >= 4 && strcmp(argv[1], "check") == 0)
		return cmd_check(argv[2], argv[3], argc - 4, argv + 4);
	usage();
	return 2;
}
