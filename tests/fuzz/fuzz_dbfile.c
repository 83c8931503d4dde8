/*
 * NAME
 *	fuzz_dbfile - fuzz the whole-database open: a byte string as the
 *	GDBM file (and the lock file), then every operation on it
 *
 * SYNOPSIS
 *	libFuzzer:  meson setup -Dfuzzing=true (tests/fuzz/README.md)
 *	otherwise:  fuzz_dbfile [-n ITERATIONS] [-s SEED] [DIR | FILE ...]
 *	seeds:      FUZZ_MAKE_SEEDS=DIR fuzz_dbfile
 *
 * DESCRIPTION
 *	Input layout: byte 0 holds flags.  Bit 0: a lock file is given too;
 *	then bytes 1-2 are the GDBM file's length (big-endian, cut to what
 *	is there), the GDBM file follows and the rest is the lock file.
 *	Without bit 0 everything after byte 0 is the GDBM file.  Bit 1: the
 *	store is opened read-only.  Bit 2: it is compacted too (a rewrite of
 *	the whole file: left to some inputs, it is the slowest step).
 *
 *	The files are written (mode 0600) as "fz.db" and "fz.db.lock" in a
 *	directory of their own; then sessdb_open, get and take of the seeds'
 *	keys, put, delete, foreach (removing bad records), sweep, info,
 *	compact, a second foreach and close, on a fake clock, with a cap of
 *	64 entries (so a small index).  Whatever the
 *	bytes, nothing may crash, leak or hang (the sanitizers and
 *	libFuzzer's timeout say so), an operation returns one of its
 *	documented results, a record put is read back the same, and the
 *	store touches no file but its own: after each input the directory
 *	above holds nothing new, and the store's directory only the
 *	database, its lock file and the files moved aside from it.
 *
 *	FUZZ_MAKE_SEEDS=DIR writes the committed seeds (tests/fuzz/corpus/
 *	dbfile) into DIR and exits: a store of a few records (one expired)
 *	without and with its lock file's first page.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "fuzz_store.h"
#include "sessdb.h"

#define FUZZ_NOW	1900000000	/* the fake clock: seeds are live then */
#define LOCK_SEED_MAX	4096		/* lock file bytes kept in a seed */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char store_dir[300], db_path[400], lock_path[420];

/* The IDs the seeds hold (and the operations ask for). */
static const unsigned char ids[][8] = {
	{ 1, 2, 3, 4, 5, 6, 7, 8 },
	{ 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 1 },
	{ 9, 9, 9, 9, 9, 9, 9, 9 },
};

/* fz_clock - the fixed time of every run (*arg while seeds are made). */
static int64_t
fz_clock(void *arg)
{
	return arg != NULL ? *(const int64_t *)arg : FUZZ_NOW;
}

/* fz_log - swallow the store's log: damaged files are the normal case. */
static void
fz_log(void *arg, int level, const char *msg)
{
}

/* write_file - len bytes as path, mode 0600; 0 or -1. */
static int
write_file(const char *path, const unsigned char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ok;

	if (fd == -1)
		return -1;
	ok = write(fd, buf, len) == (ssize_t)len;
	return close(fd) == 0 && ok ? 0 : -1;
}

/* clean - remove what the last input left in the store's directory, and
 * check that the store made nothing beside it or under other names. */
static void
clean(void)
{
	struct dirent *de;
	char p[700];
	DIR *d;

	if ((d = opendir(tc_dir)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strcmp(de->d_name, "s") != 0) {
			fprintf(stderr, "fuzz_dbfile: %s/%s appeared\n", tc_dir,
			    de->d_name);
			abort();
		}
	closedir(d);
	if ((d = opendir(store_dir)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, "fz.db", 5) != 0) {
			fprintf(stderr, "fuzz_dbfile: %s/%s appeared\n", store_dir,
			    de->d_name);
			abort();
		}
		snprintf(p, sizeof(p), "%s/%s", store_dir, de->d_name);
		if (unlink(p) == -1)
			abort();
	}
	closedir(d);
}

/* want - an operation's result must be one it documents. */
static void
want(int rc, int ok1, int ok2, const char *what)
{
	fz_want("fuzz_dbfile", rc, ok1, ok2, what);
}

/* lookups - get and take of the seeds' keys. */
static void
lookups(struct sessdb *db)
{
	for (size_t i = 0; i < TC_NELEM(ids); i++) {
		void *data = NULL;
		size_t len;
		int rc;

		rc = sessdb_get(db, SESSDB_NS_SERVER, ids[i], sizeof(ids[i]),
		    &data, &len, NULL);
		want(rc, SESSDB_OK, SESSDB_MISS, "get");
		sessdb_free(data);
		data = NULL;
		if (i == 1) {
			rc = sessdb_take(db, SESSDB_NS_SERVER, ids[i],
			    sizeof(ids[i]), &data, &len, NULL);
			want(rc, SESSDB_OK, SESSDB_MISS, "take");
			sessdb_free(data);
		}
	}
}

/* put_back - a record put must read back the same, unless the put or
 * the get fails outright (a file too damaged to write is an error). */
static void
put_back(struct sessdb *db)
{
	static const unsigned char id[] = { 0x42, 0x42, 0x42, 0x42 };
	static const char val[] = "fuzz_dbfile record";
	void *data = NULL;
	size_t len;
	int rc;

	rc = sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), val, sizeof(val),
	    FUZZ_NOW + 60);
	want(rc, SESSDB_OK, SESSDB_FULL, "put");
	if (rc != SESSDB_OK)
		return;
	rc = sessdb_get(db, SESSDB_NS_SERVER, id, sizeof(id), &data, &len, NULL);
	want(rc, SESSDB_OK, SESSDB_MISS, "get after put");
	if (rc == SESSDB_OK && (len != sizeof(val) || memcmp(data, val, len) != 0)) {
		fprintf(stderr, "fuzz_dbfile: a record put reads back wrong\n");
		abort();
	}
	sessdb_free(data);
	want(sessdb_delete(db, SESSDB_NS_SERVER, id, sizeof(id)), 0, 0, "delete");
}

/* operate - everything a server and an operator do with a store. */
static void
operate(struct sessdb *db, int rdonly, int compact)
{
	struct sessdb_sweep_result res;
	struct sessdb_info info;
	unsigned seen = 0;

	lookups(db);
	want(sessdb_foreach(db, rdonly ? 0 : SESSDB_ITER_REMOVE_BAD, fz_count,
	    &seen), 0, 0, "foreach");
	if (!rdonly)
		put_back(db);
	want(sessdb_sweep(db, rdonly ? SESSDB_SWEEP_DRY_RUN : 0, NULL, NULL,
	    &res), 0, 0, "sweep");
	want(sessdb_info(db, &info), 0, 0, "info");
	if (compact && !rdonly)
		want(sessdb_compact(db), 0, 0, "compact");
	want(sessdb_foreach(db, SESSDB_ITER_LIVE, fz_count, &seen), 0, 0,
	    "foreach live");
}

/* LLVMFuzzerTestOneInput - one input: write the files, open, operate. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sessdb_options o = {
		.clock = fz_clock, .log = fz_log, .lock_timeout_ms = 2000,
		.max_ttl = 86400, .max_entries = 64,	/* a small index */
	};
	size_t db_len;
	struct sessdb *db;
	char err[256];
	unsigned flags;

	if (size < 1)
		return 0;
	flags = data[0];
	db_len = size - 1;
	if (flags & 1) {
		if (size < 3)
			return 0;
		db_len = (size_t)data[1] << 8 | data[2];
		if (db_len > size - 3)
			db_len = size - 3;
		if (write_file(lock_path, data + 3 + db_len, size - 3 - db_len) == -1)
			abort();
		data += 2;
	}
	if (write_file(db_path, data + 1, db_len) == -1)
		abort();
	if (flags & 2)
		o.flags = SESSDB_RDONLY;
	db = sessdb_open(db_path, &o, err, sizeof(err));
	if (db != NULL) {
		operate(db, (o.flags & SESSDB_RDONLY) != 0, (flags & 4) != 0);
		sessdb_close(db);
	}
	clean();
	return 0;
}

/* make_seeds - the committed seeds, into dir; exits. */
static void
make_seeds(const char *dir)
{
	int64_t now = FUZZ_NOW;
	struct sessdb_options o = { .clock = fz_clock, .clock_arg = &now,
	    .max_ttl = 86400, .max_entries = 64 };
	unsigned char *buf = malloc(1 << 20);
	char path[700];
	struct sessdb *db;
	size_t n, l;
	FILE *fp;

	if (buf == NULL || (db = sessdb_open(db_path, &o, NULL, 0)) == NULL)
		exit(1);
	for (size_t i = 0; i < TC_NELEM(ids); i++) {
		unsigned char val[200];

		/* the last one is written an hour back: expired at FUZZ_NOW */
		memset(val, 0x30 + (int)i, sizeof(val));
		now = i == 2 ? FUZZ_NOW - 3600 : FUZZ_NOW;
		if (sessdb_put(db, SESSDB_NS_SERVER, ids[i], sizeof(ids[i]), val,
		    50 + 50 * i, now + 60) == -1)
			exit(1);
	}
	sessdb_close(db);
	/* seed-store: flags 4 (compact too), then the GDBM file */
	buf[0] = 4;
	if ((fp = fopen(db_path, "rb")) == NULL)
		exit(1);
	n = 1 + fread(buf + 1, 1, (1 << 19), fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/seed-store", dir);
	if (write_file(path, buf, n) == -1)
		exit(1);
	/* seed-store-lock: flags 1, the length, the file, the lock page */
	memmove(buf + 3, buf + 1, n - 1);
	buf[0] = 1;
	buf[1] = (unsigned char)((n - 1) >> 8);
	buf[2] = (unsigned char)(n - 1);
	if ((fp = fopen(lock_path, "rb")) == NULL)
		exit(1);
	l = fread(buf + 2 + n, 1, LOCK_SEED_MAX, fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/seed-store-lock", dir);
	if (write_file(path, buf, 2 + n + l) == -1)
		exit(1);
	/* seed-empty: a zero-length file (the store makes a new one) */
	snprintf(path, sizeof(path), "%s/seed-empty", dir);
	if (write_file(path, (const unsigned char *)"\0", 1) == -1)
		exit(1);
	free(buf);
	clean();
	tc_tmpdir_remove();
	exit(0);
}

/* LLVMFuzzerInitialize - the directories, once per process. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("FUZZ_MAKE_SEEDS");

	if (tc_tmpdir_make("fuzz_dbfile") == -1)
		exit(1);
	snprintf(store_dir, sizeof(store_dir), "%s/s", tc_dir);
	snprintf(db_path, sizeof(db_path), "%s/fz.db", store_dir);
	snprintf(lock_path, sizeof(lock_path), "%s.lock", db_path);
	if (mkdir(store_dir, 0700) == -1)
		exit(1);
	atexit(tc_tmpdir_remove);
	if (seeds != NULL)
		make_seeds(seeds);
	return 0;
}
