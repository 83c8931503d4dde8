/*
 * NAME
 *	fuzz_store.h - checks shared by the fuzz targets that drive a whole
 *	store (fuzz_dbfile: a fuzzed GDBM file; fuzz_redis: fuzzed Redis
 *	replies)
 *
 * DESCRIPTION
 *	fz_want() aborts (a finding for libFuzzer) when a call returned
 *	something its documentation does not allow; fz_count() is a foreach
 *	callback that reads every byte it is handed, so a sanitizer sees a
 *	record that points outside its buffer.
 */
#ifndef SESSDB_FUZZ_STORE_H
#define SESSDB_FUZZ_STORE_H

#include <stdio.h>
#include <stdlib.h>

#include "sessdb.h"

/* fz_want - rc must be ok1, ok2 or -1. */
static inline void
fz_want(const char *prog, int rc, int ok1, int ok2, const char *what)
{
	if (rc != ok1 && rc != ok2 && rc != -1) {
		fprintf(stderr, "%s: %s returned %d\n", prog, what, rc);
		abort();
	}
}

/* fz_count - a foreach callback that reads every byte it is given. */
static inline int
fz_count(void *arg, const struct sessdb_record *rec)
{
	unsigned sum = 0;

	for (size_t i = 0; i < rec->len; i++)
		sum += ((const unsigned char *)rec->data)[i];
	for (size_t i = 0; i < rec->id_len; i++)
		sum += rec->id[i];
	*(unsigned *)arg += sum | 1;
	return 0;
}

#endif /* SESSDB_FUZZ_STORE_H */
