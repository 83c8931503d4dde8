/*
 * NAME
 *	bench_seal - what sealing costs per record: the AEAD alone, and a
 *	store's get and put with and without a key
 *
 * SYNOPSIS
 *	bench_seal [--quick] [--count N] [--runs N] [--dir DIR]
 *
 * DESCRIPTION
 *	First the seal itself (seal.c: AES-256-GCM, a nonce from the
 *	buffer, the record key and header as associated data) for payloads
 *	of 200, 280, 1000 and 2000 bytes: seal and open, CPU time per
 *	record.  Then a GDBM store in DIR (default /dev/shm) of 10,000
 *	records of 280 bytes, opened plain and with a key file: sessdb_get
 *	of a live key and sessdb_put replacing one, CPU time per operation,
 *	and the difference.  Every figure is the median of --runs (5) runs
 *	of --count (200,000) operations.  CPU time (CLOCK_PROCESS_CPUTIME_ID)
 *	so that other load on the machine counts less than in wall time.
 *
 *	--quick (or SESSDB_BENCH_QUICK=1): 1 run of 2,000: a smoke test that
 *	checks every sealed record opens, never a time.
 *
 * DIAGNOSTICS
 *	Exit 0, or 1 if a check failed (a record that did not open).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common.h"
#include "record.h"
#include "seal.h"

#define PROG	"bench_seal"
#define RECORDS	10000
#define PAYLOAD	280

static unsigned long count = 200000;
static int runs = 5;
static const char *dir = "/dev/shm";

/* cpu_ns - CPU time of the process. */
static uint64_t
cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* aead - seal and open ns per record for one payload size. */
static void
aead(struct seal *s, size_t len)
{
	unsigned char key[REC_KEY_MAX] = { SESSDB_NS_SERVER }, hdr[REC_AAD_LEN] = { 0 };
	unsigned char *pt = malloc(len), *ct = malloc(len + SEAL_OVERHEAD),
	    *out = malloc(len);
	double sv[16], ov[16];

	if (pt == NULL || ct == NULL || out == NULL)
		tc_die(PROG, "out of memory");
	RAND_bytes(pt, (int)len);
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = cpu_ns();
		for (unsigned long i = 0; i < count; i++)
			tc_check(PROG, seal_seal(s, key, sizeof(key), hdr, sizeof(hdr),
			    pt, len, ct) == 0, "seal failed");
		uint64_t t1 = cpu_ns();
		for (unsigned long i = 0; i < count; i++)
			if (seal_open(s, seal_newest_id(s), key, sizeof(key), hdr,
			    sizeof(hdr), ct, len + SEAL_OVERHEAD, out) != SEAL_OPENED)
				tc_check(PROG, 0, "a sealed record did not open");
		uint64_t t2 = cpu_ns();
		sv[r] = (double)(t1 - t0) / (double)count;
		ov[r] = (double)(t2 - t1) / (double)count;
	}
	tc_check(PROG, memcmp(out, pt, len) == 0, "opened bytes differ");
	printf("aead    %5zu bytes   seal %6.0f ns   open %6.0f ns\n", len,
	    tc_median(sv, runs), tc_median(ov, runs));
	free(pt);
	free(ct);
	free(out);
}

/* store_ops - get and put ns per operation on a store, plain or sealed. */
static void
store_ops(const char *key_file, double *get_ns, double *put_ns)
{
	struct sessdb_options o = { 0 };
	unsigned char id[32], payload[PAYLOAD];
	char path[512], err[512];
	struct sessdb *db;
	double gv[16], pv[16];
	uint64_t seed = 1;

	snprintf(path, sizeof(path), "%s/bench_seal.%d.db", dir, (int)getpid());
	unlink(path);
	o.key_file = key_file;
	if ((db = sessdb_open(path, &o, err, sizeof(err))) == NULL)
		tc_die(PROG, "%s", err);
	RAND_bytes(payload, sizeof(payload));
	for (unsigned i = 0; i < RECORDS; i++) {
		tc_make_id(id, sizeof(id), 1, 0, i);
		if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
		    sizeof(payload), 0) != 0)
			tc_die(PROG, "fill: %s", sessdb_error(db));
	}
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = cpu_ns();
		for (unsigned long i = 0; i < count; i++) {
			void *data;
			size_t len;

			tc_make_id(id, sizeof(id), 1, 0,
			    (unsigned)(tc_splitmix(&seed) % RECORDS));
			if (sessdb_get(db, SESSDB_NS_SERVER, id, sizeof(id), &data,
			    &len, NULL) != SESSDB_OK || len != sizeof(payload))
				tc_check(PROG, 0, "get: no hit (%s)", sessdb_error(db));
			sessdb_free(data);
		}
		uint64_t t1 = cpu_ns();
		for (unsigned long i = 0; i < count / 10; i++) {
			tc_make_id(id, sizeof(id), 1, 0,
			    (unsigned)(tc_splitmix(&seed) % RECORDS));
			if (sessdb_put(db, SESSDB_NS_SERVER, id, sizeof(id), payload,
			    sizeof(payload), 0) != 0)
				tc_check(PROG, 0, "put: %s", sessdb_error(db));
		}
		uint64_t t2 = cpu_ns();
		gv[r] = (double)(t1 - t0) / (double)count;
		pv[r] = (double)(t2 - t1) / (double)(count / 10);
	}
	*get_ns = tc_median(gv, runs);
	*put_ns = tc_median(pv, runs);
	sessdb_close(db);
	unlink(path);
	snprintf(path, sizeof(path), "%s/bench_seal.%d.db.lock", dir, (int)getpid());
	unlink(path);
}

/* write_key - a key file of one random key in dir; its path. */
static const char *
write_key(void)
{
	static char path[512];
	unsigned char k[SEAL_KEY_LEN];
	int fd;

	snprintf(path, sizeof(path), "%s/bench_seal.%d.key", dir, (int)getpid());
	unlink(path);
	RAND_bytes(k, sizeof(k));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, k, sizeof(k)) != (ssize_t)sizeof(k))
		tc_die(PROG, "%s: cannot write the key file", path);
	close(fd);
	return path;
}

int
main(int argc, char **argv)
{
	static const size_t sizes[] = { 200, 280, 1000, 2000 };
	unsigned char kb[SEAL_KEY_LEN];
	struct seal_keys keys;
	struct seal *s;
	double g0, p0, g1, p1;
	const char *kf;
	int quick = getenv("SESSDB_BENCH_QUICK") != NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else {
			fprintf(stderr, "usage: bench_seal [--quick] [--count N] "
			    "[--runs N] [--dir DIR]\n");
			return 2;
		}
	}
	if (quick) {
		count = 2000;
		runs = 1;
	}
	if (count < 10 || runs < 1 || runs > 16) {
		fprintf(stderr, "bench_seal: --count >= 10, --runs 1..16\n");
		return 2;
	}
	RAND_bytes(kb, sizeof(kb));
	if (seal_keys_parse(kb, sizeof(kb), &keys) != SEAL_PARSE_OK ||
	    (s = seal_new(&keys)) == NULL)
		tc_die(PROG, "no seal");
	printf("medians of %d runs of %lu operations; CPU ns per operation\n",
	    runs, count);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		aead(s, sizes[i]);
	seal_free(s);
	kf = write_key();
	store_ops(NULL, &g0, &p0);
	store_ops(kf, &g1, &p1);
	unlink(kf);
	printf("store   %d records of %d bytes in %s\n", RECORDS, PAYLOAD, dir);
	printf("  get   plain %6.0f ns   sealed %6.0f ns   cost %+6.0f ns\n",
	    g0, g1, g1 - g0);
	printf("  put   plain %6.0f ns   sealed %6.0f ns   cost %+6.0f ns\n",
	    p0, p1, p1 - p0);
	if (tc_check_failures)
		return 1;
	printf("%s: all sanity checks passed\n", PROG);
	return 0;
}
