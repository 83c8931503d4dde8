/*
 * NAME
 *	fuzz_client_payload - fuzz the client record payload decoder
 *	(sessdb_ssl_client_decode: peer header, then DER)
 *
 * SYNOPSIS
 *	libFuzzer:  clang -fsanitize=fuzzer,address -DSESSDB_LIBFUZZER ...
 *	otherwise:  fuzz_client_payload [ITERATIONS [SEED]]
 *
 * DESCRIPTION
 *	The input is a payload as the client glue stores it after the
 *	record header.  The decoder must never read out of bounds, and what
 *	it accepts must be consistent: host and SNI are NUL-terminated
 *	strings of the lengths the header gives, the port is not 0, and the
 *	kind agrees with the session's protocol.
 *
 *	Without libFuzzer the driver mutates valid payloads (a TLS 1.2 and
 *	a TLS 1.3 session, with and without SNI: bit flips, header bytes,
 *	truncation, junk appended) with a fixed seed, so the run is
 *	repeatable in CI under ASan/UBSan and valgrind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sessdb_ssl_client_info info;
	const char *why = NULL;
	SSL_SESSION *s;

	s = sessdb_ssl_client_decode(data, size, &info, &why);
	if (s == NULL) {
		if (why == NULL)
			abort();	/* a refusal always says why */
		return 0;
	}
	if (size < 6 || strlen(info.host) != data[4] ||
	    strlen(info.sni) != data[5] || info.port == 0 ||
	    info.single_use != (SSL_SESSION_get_protocol_version(s) ==
	    TLS1_3_VERSION))
		abort();
	SSL_SESSION_free(s);
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

/* seed_payload - a valid payload: header (host, sni, kind) + DER of a
 * session of version v; its length, 0 on failure. */
static size_t
seed_payload(unsigned char *buf, size_t cap, int v, const char *sni)
{
	static const unsigned char mk[48] = { 7 };
	static const unsigned char id[32] = { 3 };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
	SSL_SESSION *s = SSL_SESSION_new();
	const char *host = "mx.example.org";
	unsigned char *der = NULL;
	size_t dl = 0, n = 0, hl = strlen(host), sl = strlen(sni);

	if (ssl == NULL || s == NULL ||
	    !SSL_SESSION_set_protocol_version(s, v) ||
	    !SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, (const unsigned char *)
	    (v == TLS1_3_VERSION ? "\x13\x01" : "\xc0\x2b"))) ||
	    !SSL_SESSION_set1_master_key(s, mk, sizeof mk) ||
	    !SSL_SESSION_set1_id(s, id, sizeof id) ||
	    sessdb_ssl_encode(s, &der, &dl) < 0 || 6 + hl + sl + dl > cap)
		goto done;
	buf[n++] = 1;
	buf[n++] = v == TLS1_3_VERSION ? 2 : 1;
	buf[n++] = 0;
	buf[n++] = 25;
	buf[n++] = (unsigned char)hl;
	buf[n++] = (unsigned char)sl;
	memcpy(buf + n, host, hl);
	n += hl;
	memcpy(buf + n, sni, sl);
	n += sl;
	memcpy(buf + n, der, dl);
	n += dl;
done:
	sessdb_ssl_der_free(der, dl);
	SSL_SESSION_free(s);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n;
}

int
main(int argc, char **argv)
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 0xc11e47;
	unsigned char seeds[4][1024], buf[1024 + 64];
	size_t lens[4], size;
	unsigned long accepted = 0;
	struct sessdb_ssl_client_info info;
	SSL_SESSION *s;
	int i;

	if (getenv("SESSDB_UNDER_VALGRIND") != NULL && argc <= 1)
		iterations = 5000;
	lens[0] = seed_payload(seeds[0], sizeof seeds[0], TLS1_2_VERSION, "");
	lens[1] = seed_payload(seeds[1], sizeof seeds[1], TLS1_2_VERSION, "mx");
	lens[2] = seed_payload(seeds[2], sizeof seeds[2], TLS1_3_VERSION, "");
	lens[3] = seed_payload(seeds[3], sizeof seeds[3], TLS1_3_VERSION, "mx");
	for (i = 0; i < 4; i++) {
		/* the seeds themselves must decode */
		if (lens[i] == 0 || (s = sessdb_ssl_client_decode(seeds[i],
		    lens[i], &info, NULL)) == NULL) {
			fprintf(stderr, "fuzz_client_payload: seed %d does not "
			    "decode\n", i);
			return 1;
		}
		SSL_SESSION_free(s);
	}
	for (unsigned long it = 0; it < iterations; it++) {
		i = (int)(xorshift(&seed) % 4);
		size = lens[i];
		memcpy(buf, seeds[i], size);
		switch (xorshift(&seed) % 5) {
		case 0:		/* flip one bit anywhere */
			buf[xorshift(&seed) % size] ^=
			    (unsigned char)(1u << (xorshift(&seed) % 8));
			break;
		case 1:		/* overwrite a header byte */
			buf[xorshift(&seed) % 6] = (unsigned char)xorshift(&seed);
			break;
		case 2:		/* truncate */
			size = xorshift(&seed) % size;
			break;
		case 3:		/* extend with junk */
			for (size_t n = 1 + xorshift(&seed) % 64; n > 0; n--)
				buf[size++] = (unsigned char)xorshift(&seed);
			break;
		default:	/* a byte of the host, SNI or DER */
			buf[6 + xorshift(&seed) % (size - 6)] =
			    (unsigned char)xorshift(&seed);
			break;
		}
		LLVMFuzzerTestOneInput(buf, size);
		if ((s = sessdb_ssl_client_decode(buf, size, NULL, NULL)) != NULL) {
			accepted++;
			SSL_SESSION_free(s);
		}
	}
	printf("fuzz_client_payload: %lu inputs, %lu accepted\n", iterations,
	    accepted);
	return 0;
}
#endif
