/*
 * NAME
 *	driver.c - the built-in fuzzing driver of the targets without libFuzzer
 *
 * SYNOPSIS
 *	fuzz_TARGET [-n ITERATIONS] [-s SEED] [DIR | FILE ...]
 *
 * DESCRIPTION
 *	Linked into each target of tests/fuzz/ (fuzz_dbfile, fuzz_import,
 *	fuzz_redis) when it is not built for libFuzzer, so the same entry
 *	point, LLVMFuzzerTestOneInput, runs as a normal meson test under
 *	ASan/UBSan and valgrind.
 *
 *	With directories (default: $SESSDB_TOP_SRCDIR/tests/fuzz/corpus/T,
 *	T being the program name without "fuzz_"), every file in them is
 *	run once as it is, then ITERATIONS mutants of them (default 2000, a
 *	tenth under valgrind) are made with a fixed generator seed: bit
 *	flips, bytes set to edge values, ranges deleted, duplicated or
 *	filled with random bytes, truncation, splices of two seeds.  The run
 *	is repeatable: the same seed gives the same inputs.
 *
 *	With files, each is run once: the way to replay a crash file that
 *	libFuzzer saved (crash-<sha1>) without libFuzzer.
 *
 *	A target may define LLVMFuzzerInitialize (called first, as libFuzzer
 *	does).  A target reports a failure by crashing (abort), as under
 *	libFuzzer; the sanitizers report leaks and memory errors.
 *
 * EXIT STATUS
 *	0 if every input ran, 1 on a usage or file error, 77 if the corpus
 *	directory is missing (the source tree is not there).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define INPUT_MAX	(256u << 10)	/* largest mutant */
#define SEEDS_MAX	256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

struct seed {
	unsigned char	*buf;
	size_t		len;
};

static struct seed seeds[SEEDS_MAX];
static size_t nseeds;

/* read_file - all of path into a malloc'ed buffer; NULL on error. */
static unsigned char *
read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 &&
	    (size_t)n <= INPUT_MAX && fseek(fp, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(fp);
	return buf;
}

/* by_name - qsort order of file names, so the run does not depend on
 * the order readdir returns. */
static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* load_dir - every regular file of dir as a seed; -1 if dir is missing. */
static int
load_dir(const char *dir)
{
	char *names[SEEDS_MAX], path[1024];
	size_t n = 0;
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < SEEDS_MAX)
		if (de->d_name[0] != '.')
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		free(names[i]);
		if (stat(path, &st) == -1 || !S_ISREG(st.st_mode) ||
		    nseeds == SEEDS_MAX)
			continue;
		seeds[nseeds].buf = read_file(path, &seeds[nseeds].len);
		if (seeds[nseeds].buf != NULL)
			nseeds++;
	}
	return 0;
}

/* edge - a byte value parsers tend to treat specially. */
static unsigned char
edge(uint64_t *rs)
{
	static const unsigned char v[] = { 0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe,
	    '\r', '\n', '-', '$', '*', ':', '+', '0', '9', '=' };

	return v[tc_splitmix(rs) % sizeof(v)];
}

/* mutate - one change to buf (len bytes, room for INPUT_MAX); the new
 * length. */
static size_t
mutate(unsigned char *buf, size_t len, uint64_t *rs)
{
	size_t at = len > 0 ? tc_splitmix(rs) % len : 0;
	size_t n = 1 + tc_splitmix(rs) % 32;
	const struct seed *o;

	switch (tc_splitmix(rs) % 8) {
	case 0:		/* flip a bit */
		if (len > 0)
			buf[at] ^= (unsigned char)(1u << (tc_splitmix(rs) % 8));
		break;
	case 1:		/* an edge value */
		if (len > 0)
			buf[at] = edge(rs);
		break;
	case 2:		/* random bytes over a range */
		for (size_t i = at; i < len && i < at + n; i++)
			buf[i] = (unsigned char)tc_splitmix(rs);
		break;
	case 3:		/* delete a range */
		if (n > len - at)
			n = len - at;
		memmove(buf + at, buf + at + n, len - at - n);
		len -= n;
		break;
	case 4:		/* duplicate a range */
		if (n > len - at)
			n = len - at;
		if (len + n <= INPUT_MAX) {
			memmove(buf + at + n, buf + at, len - at);
			len += n;
		}
		break;
	case 5:		/* truncate */
		len = at;
		break;
	case 6:		/* insert random bytes */
		if (len + n <= INPUT_MAX) {
			memmove(buf + at + n, buf + at, len - at);
			tc_random_bytes(buf + at, n, rs);
			len += n;
		}
		break;
	default:	/* splice: the tail of another seed */
		o = &seeds[tc_splitmix(rs) % nseeds];
		if (o->len > 0) {
			size_t from = tc_splitmix(rs) % o->len;

			n = o->len - from;
			if (at + n > INPUT_MAX)
				n = INPUT_MAX - at;
			memcpy(buf + at, o->buf + from, n);
			len = at + n;
		}
		break;
	}
	return len;
}

/* default_dir - the committed corpus of the program named argv0. */
static int
default_dir(const char *argv0, char *dir, size_t len)
{
	const char *top = getenv("SESSDB_TOP_SRCDIR");
	const char *base = strrchr(argv0, '/');

	base = base != NULL ? base + 1 : argv0;
	if (strncmp(base, "fuzz_", 5) == 0)
		base += 5;
	snprintf(dir, len, "%s/tests/fuzz/corpus/%s",
	    top != NULL ? top : ".", base);
	return 0;
}

/* main - load the seeds, run them, then the mutants. */
int
main(int argc, char **argv)
{
	unsigned long iterations = 2000;
	uint64_t rs = 0x5e55db12;
	unsigned char *buf;
	char dir[1024];
	int ch, files = 0;

	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	while ((ch = getopt(argc, argv, "n:s:")) != -1) {
		switch (ch) {
		case 'n': iterations = strtoul(optarg, NULL, 10); break;
		case 's': rs = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: %s [-n ITERATIONS] [-s SEED] "
			    "[DIR | FILE ...]\n", argv[0]);
			return 1;
		}
	}
	if (tc_under_valgrind())
		iterations /= 10;
	if (optind == argc) {
		default_dir(argv[0], dir, sizeof(dir));
		if (load_dir(dir) == -1) {
			printf("%s: skipped: no corpus %s (%s)\n", argv[0], dir,
			    strerror(errno));
			return 77;
		}
	}
	for (int i = optind; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			(void)load_dir(argv[i]);
		} else if (nseeds < SEEDS_MAX && (seeds[nseeds].buf =
		    read_file(argv[i], &seeds[nseeds].len)) != NULL) {
			nseeds++;
			files = 1;
		} else {
			fprintf(stderr, "%s: %s: cannot read\n", argv[0], argv[i]);
			return 1;
		}
	}
	if (nseeds == 0) {
		fprintf(stderr, "%s: no inputs\n", argv[0]);
		return 1;
	}
	/* Every input as it is: the seeds, or the files to replay. */
	for (size_t i = 0; i < nseeds; i++)
		LLVMFuzzerTestOneInput(seeds[i].buf, seeds[i].len);
	if (files)
		iterations = 0;
	if ((buf = malloc(INPUT_MAX)) == NULL)
		return 1;
	for (unsigned long it = 0; it < iterations; it++) {
		const struct seed *s = &seeds[tc_splitmix(&rs) % nseeds];
		size_t len = s->len, k = 1 + tc_splitmix(&rs) % 4;

		memcpy(buf, s->buf, len);
		while (k-- > 0)
			len = mutate(buf, len, &rs);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("%s: %zu seeds, %lu mutants: no crash\n", argv[0], nseeds,
	    iterations);
	free(buf);
	for (size_t i = 0; i < nseeds; i++)
		free(seeds[i].buf);
	return 0;
}
