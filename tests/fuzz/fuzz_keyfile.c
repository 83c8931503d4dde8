/*
 * NAME
 *	fuzz_keyfile - fuzz the key-file parser (seal_keys_parse) and the
 *	seals made from what it accepts
 *
 * SYNOPSIS
 *	libFuzzer:  clang -fsanitize=fuzzer,address -DSESSDB_LIBFUZZER ...
 *	otherwise:  fuzz_keyfile [ITERATIONS [SEED]]
 *
 * DESCRIPTION
 *	The input is the bytes of a key file.  The parser must never read
 *	out of bounds; when it refuses, nothing is left in its output (key
 *	bytes wiped); when it accepts, the keys are exactly the input's
 *	32-byte pieces with their identifiers, all different, and a seal made
 *	from them seals under the last key and opens what it sealed, while a
 *	flipped byte fails authentication.
 *
 *	Without libFuzzer the built-in driver mutates valid key files (1 to
 *	17 keys; bit flips, truncation, extension, a key repeated, a key of
 *	zeros) with a fixed seed, so the run is repeatable in CI under
 *	ASan/UBSan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* check_seal - a seal over k seals under its newest key and opens it. */
static void
check_seal(const struct seal_keys *k, const uint8_t *data, size_t size)
{
	static const unsigned char pt[24] = "fuzz_keyfile plaintext.";
	unsigned char sealed[sizeof(pt) + SEAL_OVERHEAD], out[sizeof(pt)];
	struct seal *s = seal_new(k);
	unsigned id;

	if (s == NULL)
		abort();
	id = seal_newest_id(s);
	if (id != k->k[k->n - 1].id || seal_nkeys(s) != k->n)
		abort();
	for (size_t i = 0; i < k->n; i++)
		if (!seal_has_key(s, k->k[i].id) || seal_key_id_at(s, i) != k->k[i].id)
			abort();
	if (seal_seal(s, data, size < 8 ? size : 8, NULL, 0, pt, sizeof(pt),
	    sealed) != 0)
		abort();
	if (seal_open(s, id, data, size < 8 ? size : 8, NULL, 0, sealed,
	    sizeof(sealed), out) != SEAL_OPENED || memcmp(out, pt, sizeof(pt)) != 0)
		abort();
	sealed[size % sizeof(sealed)] ^= 0x20;
	if (seal_open(s, id, data, size < 8 ? size : 8, NULL, 0, sealed,
	    sizeof(sealed), out) != SEAL_FAILED)
		abort();
	seal_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct seal_keys zero;
	struct seal_keys k;
	enum seal_parse_status st = seal_keys_parse(data, size, &k);

	if (st != SEAL_PARSE_OK) {
		if (memcmp(&k, &zero, sizeof(k)) != 0)
			abort();	/* a refused file leaves no key behind */
		if (seal_parse_strerror(st) == NULL)
			abort();
		return 0;
	}
	if (size == 0 || size % SEAL_KEY_LEN != 0 || k.n != size / SEAL_KEY_LEN ||
	    k.n > SEAL_KEYS_MAX)
		abort();
	for (size_t i = 0; i < k.n; i++) {
		if (memcmp(k.k[i].bytes, data + i * SEAL_KEY_LEN, SEAL_KEY_LEN) != 0 ||
		    k.k[i].id != seal_key_id(data + i * SEAL_KEY_LEN) ||
		    k.k[i].id > 0xffff)
			abort();
		for (size_t j = 0; j < i; j++)
			if (k.k[j].id == k.k[i].id)
				abort();
	}
	check_seal(&k, data, size);
	return 0;
}

#ifndef SESSDB_LIBFUZZER
/* xorshift - a small deterministic PRNG. */
static uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int
main(int argc, char **argv)
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x6b657966696c65ull;
	unsigned char buf[SEAL_KEY_LEN * (SEAL_KEYS_MAX + 2)];
	unsigned long accepted = 0;
	struct seal_keys k;

	for (unsigned long it = 0; it < iterations; it++) {
		size_t n = 1 + xorshift(&seed) % (SEAL_KEYS_MAX + 1);
		size_t size = n * SEAL_KEY_LEN;

		for (size_t i = 0; i < size; i++)
			buf[i] = (unsigned char)xorshift(&seed);
		switch (xorshift(&seed) % 7) {
		case 0:		/* untouched */
		case 1:
			break;
		case 2:		/* flip one bit: still a key file */
			buf[xorshift(&seed) % size] ^=
			    (unsigned char)(1u << (xorshift(&seed) % 8));
			break;
		case 3:		/* truncate */
			size = xorshift(&seed) % size;
			break;
		case 4:		/* extend */
			size += 1 + xorshift(&seed) % (sizeof(buf) - size);
			break;
		case 5:		/* a key twice */
			if (n > 1)
				memcpy(buf + SEAL_KEY_LEN * (n - 1), buf, SEAL_KEY_LEN);
			break;
		default:	/* a key of one repeated byte */
			memset(buf + SEAL_KEY_LEN * (xorshift(&seed) % n),
			    (int)(xorshift(&seed) & 0xff), SEAL_KEY_LEN);
			break;
		}
		LLVMFuzzerTestOneInput(buf, size);
		if (seal_keys_parse(buf, size, &k) == SEAL_PARSE_OK)
			accepted++;
	}
	printf("fuzz_keyfile: %lu inputs, %lu accepted\n", iterations, accepted);
	/* Two sevenths untouched and a seventh flipped, less the 1 in 17 of
	 * 17 keys: about 40% must pass; the other mutations rarely do. */
	if (accepted < iterations / 4 || accepted > iterations * 6 / 10) {
		fprintf(stderr, "fuzz_keyfile: accepted %lu of %lu, want between "
		    "1/4 and 6/10\n", accepted, iterations);
		return 1;
	}
	return 0;
}
#endif
