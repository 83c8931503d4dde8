/*
 * NAME
 *	fuzz_record - fuzz the record decoder (rec_decode, rec_key_parse)
 *
 * SYNOPSIS
 *	libFuzzer:  clang -fsanitize=fuzzer,address -DSESSDB_LIBFUZZER ...
 *	otherwise:  fuzz_record [ITERATIONS [SEED]]
 *
 * DESCRIPTION
 *	Input layout: first byte = key length (mod 40), then the key, then the
 *	value.  The decoder must never read out of bounds, and whenever it
 *	accepts a record the record must be self-consistent: its payload lies
 *	inside the value, and re-encoding it gives back the same bytes.
 *
 *	Without libFuzzer the built-in driver mutates valid records
 *	(bit flips, byte overwrites, truncation, extension, header splices)
 *	with a fixed seed, so the run is repeatable in CI under ASan/UBSan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char again[REC_HEADER_LEN + 4096];
	const unsigned char *key, *value;
	size_t key_len, value_len;
	struct rec r;

	if (size < 1)
		return 0;
	key_len = data[0] % 40;
	if (key_len > size - 1)
		key_len = size - 1;
	key = data + 1;
	value = key + key_len;
	value_len = size - 1 - key_len;
	if (rec_decode(value, value_len, key, key_len, &r) != REC_OK)
		return 0;
	/* Accepted: it must be exactly what the encoder writes. */
	if (r.payload < value || r.payload + r.payload_len != value + value_len)
		abort();
	if (value_len <= sizeof(again)) {
		rec_encode(again, key, key_len, &r);
		if (memcmp(again, value, value_len) != 0)
			abort();
	}
	return 0;
}

#ifndef SESSDB_LIBFUZZER
/* xorshift - a small deterministic PRNG. */
static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int
main(int argc, char **argv)
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x5e55db;
	unsigned char buf[1 + REC_KEY_MAX + REC_HEADER_LEN + 600];
	unsigned long accepted = 0;

	if (getenv("SESSDB_UNDER_VALGRIND") != NULL && argc <= 1)
		iterations = 20000;
	for (unsigned long it = 0; it < iterations; it++) {
		/* session keys of 1..33 bytes, or (a third) opaque keys of
		 * 4..39: the input format's key length byte is taken mod 40 */
		unsigned ns_pick = (unsigned)(xorshift(&seed) % 3);
		size_t key_len = ns_pick < 2 ? 1 + xorshift(&seed) % REC_SESSION_KEY_MAX :
		    4 + xorshift(&seed) % 36;
		size_t payload_len = xorshift(&seed) % 512;
		unsigned char payload[512];
		struct rec r;
		size_t size;

		for (size_t i = 0; i < payload_len; i++)
			payload[i] = (unsigned char)xorshift(&seed);
		buf[0] = (unsigned char)key_len;
		buf[1] = ns_pick == 0 ? SESSDB_NS_SERVER : ns_pick == 1 ?
		    SESSDB_NS_CLIENT : SESSDB_NS_OPAQUE;
		for (size_t i = 2; i <= key_len; i++)
			buf[i] = (unsigned char)(xorshift(&seed) | 1);
		if (ns_pick == 2)	/* the 0x00 after the consumer name */
			buf[3 + xorshift(&seed) % (key_len - 3)] = 0;
		r.flags = 0;
		r.created = (int64_t)(xorshift(&seed) % 4000000000u);
		r.expires = r.created + 1 + (int64_t)(xorshift(&seed) % 100000);
		r.payload = payload;
		r.payload_len = payload_len;
		rec_encode(buf + 1 + key_len, buf + 1, key_len, &r);
		size = 1 + key_len + REC_HEADER_LEN + payload_len;

		switch (xorshift(&seed) % 6) {
		case 0:		/* untouched: must be accepted */
			break;
		case 1:		/* flip one bit anywhere */
			buf[1 + xorshift(&seed) % (size - 1)] ^=
			    (unsigned char)(1u << (xorshift(&seed) % 8));
			break;
		case 2:		/* overwrite a header byte */
			buf[1 + key_len + xorshift(&seed) % REC_HEADER_LEN] =
			    (unsigned char)xorshift(&seed);
			break;
		case 3:		/* truncate */
			size = 1 + xorshift(&seed) % size;
			break;
		case 4:		/* extend with junk */
			for (size_t n = xorshift(&seed) % 64; n > 0 &&
			    size < sizeof(buf); n--)
				buf[size++] = (unsigned char)xorshift(&seed);
			break;
		default:	/* random key length byte */
			buf[0] = (unsigned char)xorshift(&seed);
			break;
		}
		LLVMFuzzerTestOneInput(buf, size);
		if (buf[0] % 40 == key_len && size >= 1 + key_len) {
			struct rec out;
			if (rec_decode(buf + 1 + key_len, size - 1 - key_len,
			    buf + 1, key_len, &out) == REC_OK)
				accepted++;
		}
	}
	printf("fuzz_record: %lu inputs, %lu accepted\n", iterations, accepted);
	/* About a sixth are untouched and must pass; far fewer mutants may. */
	if (accepted < iterations / 8 || accepted > iterations / 3) {
		fprintf(stderr, "fuzz_record: accepted %lu of %lu, want between "
		    "1/8 and 1/3\n", accepted, iterations);
		return 1;
	}
	return 0;
}
#endif
