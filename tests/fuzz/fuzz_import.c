/*
 * NAME
 *	fuzz_import - fuzz the `sessdump import` input parser (PEM and DER)
 *
 * SYNOPSIS
 *	libFuzzer:  meson setup -Dfuzzing=true (tests/fuzz/README.md)
 *	otherwise:  fuzz_import [-n ITERATIONS] [-s SEED] [DIR | FILE ...]
 *
 * DESCRIPTION
 *	The input is an import file as it is: sd_parse_sessions
 *	(tools/sessdump_parse.c) reads it, PEM if it carries the PEM label,
 *	DER otherwise, exactly as `sessdump import FILE` would; a crash
 *	file replays with that command too.  An opaque record block it
 *	accepts must hold the header (expiry, identifier length) and the
 *	identifier that import's store_opaque reads.  Every session it
 *	accepts goes through what import does with it before storing: the
 *	refusal checks' getters, sessdb_ssl_encode (the record payload),
 *	and the payload is decoded back with sessdb_ssl_decode under the
 *	session's own ID, which must succeed: a session import accepts must
 *	be one the glue can read back.
 *
 *	Seeds (tests/fuzz/corpus/import): what `sessdump export --all` and
 *	`--der` wrote of a store filled by tests/sessdump_fill (populate
 *	and peer: real sessions, one with a client certificate), a
 *	truncated DER file, and an export holding an opaque record too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#include "sessdump.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* sd_err - the parser's messages: dropped (malformed input is expected). */
void
sd_err(const char *fmt, ...)
{
}

/* check - what import does with a parsed session before storing it. */
static void
check(SSL_SESSION *s)
{
	unsigned char mk[64], *der;
	unsigned int id_len;
	const unsigned char *id = SSL_SESSION_get_id(s, &id_len);
	SSL_SESSION *back;
	const char *why;
	size_t len;

	(void)SSL_SESSION_get_master_key(s, mk, sizeof(mk));
	(void)SSL_SESSION_get0_cipher(s);
	(void)SSL_SESSION_get_time(s);
	(void)SSL_SESSION_get_timeout(s);
	if (sessdb_ssl_encode(s, &der, &len) == -1)
		return;
	back = sessdb_ssl_decode(der, len, id_len > 0 && id_len <=
	    SESSDB_ID_MAX ? id : NULL, id_len, &why);
	if (back == NULL) {
		fprintf(stderr, "fuzz_import: an imported session does not "
		    "decode back: %s\n", why);
		abort();
	}
	SSL_SESSION_free(back);
	sessdb_ssl_der_free(der, len);
}

/* LLVMFuzzerTestOneInput - one input: parse it, check each session. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sd_sessions in = { 0 };

	(void)sd_parse_sessions(&in, data, size, 0, "fuzz");
	for (size_t i = 0; i < in.n; i++) {
		const struct sd_insess *e = &in.v[i];

		if (e->s != NULL) {
			check(e->s);
		} else if (e->opaque == NULL || e->opaque_len < 10 ||
		    e->opaque_len < 10u + ((size_t)e->opaque[8] << 8 |
		    e->opaque[9])) {
			/* what store_opaque reads must be there */
			fprintf(stderr, "fuzz_import: an opaque record block "
			    "shorter than its header says was accepted\n");
			abort();
		}
	}
	sd_sessions_free(&in);
	ERR_clear_error();
	return 0;
}
