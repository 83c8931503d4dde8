/*
 * NAME
 *	sessdump_parse.c - the import input parser: PEM or DER sessions
 *
 * SYNOPSIS
 *	#include "sessdump.h"
 *
 *	int sd_parse_sessions(struct sd_sessions *out, const unsigned char *buf,
 *	    size_t len, int fmt, const char *name);
 *	void sd_sessions_free(struct sd_sessions *out);
 *
 * DESCRIPTION
 *	sd_parse_sessions appends to out every session of buf, an input of
 *	`sessdump import`: PEM "SSL SESSION PARAMETERS" blocks, and opaque
 *	records in SD_OPAQUE_LABEL blocks (other blocks are skipped), if fmt
 *	is 'p', or if fmt is 0 and buf carries one of the two labels;
 *	concatenated DER sessions filling all of buf otherwise.  name is the input's name
 *	for the messages (and is kept in each entry: it must outlive out).
 *
 *	It is on its own, apart from the command (sessdump_xfer.c), so that
 *	tests/fuzz/fuzz_import.c can feed it any bytes; it touches neither
 *	a store nor a file.
 *
 * DIAGNOSTICS
 *	0, or -1 if the input is empty or malformed (said through sd_err);
 *	the sessions parsed before the error stay in out.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "sessdump.h"

/* add_session - append one parsed session (taking the reference). */
static int
add_session(struct sd_sessions *out, SSL_SESSION *s, const char *name,
    unsigned idx)
{
	if (out->n == out->cap) {
		size_t cap = out->cap ? 2 * out->cap : 16;
		struct sd_insess *v = realloc(out->v, cap * sizeof *v);

		if (v == NULL) {
			SSL_SESSION_free(s);
			return -1;
		}
		out->v = v;
		out->cap = cap;
	}
	out->v[out->n++] = (struct sd_insess){ s, NULL, 0, name, idx };
	return 0;
}

/* add_opaque - append one opaque record block (taking data, of len bytes,
 * malloc'ed by OpenSSL); -1 if it is malformed or memory ran out. */
static int
add_opaque(struct sd_sessions *out, unsigned char *data, long len,
    const char *name, unsigned idx)
{
	if (len < 10 || (size_t)len < 10u + ((size_t)data[8] << 8 | data[9]) ||
	    add_session(out, NULL, name, idx) == -1) {
		OPENSSL_clear_free(data, len > 0 ? (size_t)len : 0);
		return -1;
	}
	out->v[out->n - 1].opaque = data;
	out->v[out->n - 1].opaque_len = (size_t)len;
	return 0;
}

/* parse_pem - every SSL SESSION PARAMETERS and SD_OPAQUE_LABEL block of
 * buf (blocks of other names are skipped). */
static int
parse_pem(struct sd_sessions *out, const unsigned char *buf, size_t len,
    const char *name)
{
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	char *pname = NULL, *header = NULL;
	unsigned char *data = NULL;
	unsigned idx = 0;
	long dlen;
	unsigned long e;
	int rc = -1;

	if (b == NULL)
		return -1;
	ERR_clear_error();
	while (PEM_read_bio(b, &pname, &header, &data, &dlen) == 1) {
		const unsigned char *p = data;
		SSL_SESSION *s;

		OPENSSL_free(header);
		if (strcmp(pname, "SSL SESSION PARAMETERS") == 0) {
			++idx;
			s = d2i_SSL_SESSION(NULL, &p, dlen);
			OPENSSL_clear_free(data, (size_t)dlen);
			if (s == NULL || add_session(out, s, name, idx) == -1) {
				OPENSSL_free(pname);
				goto bad;
			}
		} else if (strcmp(pname, SD_OPAQUE_LABEL) == 0) {
			if (add_opaque(out, data, dlen, name, ++idx) == -1) {
				OPENSSL_free(pname);
				goto bad;
			}
		} else {
			OPENSSL_clear_free(data, (size_t)dlen);
		}
		OPENSSL_free(pname);
	}
	e = ERR_peek_last_error();
	if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && idx > 0) {
		rc = 0;
		goto out;
	}
bad:
	e = ERR_peek_last_error();
	if (idx == 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		sd_err("import: %s: no SSL SESSION PARAMETERS block", name);
	else
		sd_err("import: %s: session %u is malformed (%s)", name,
		    idx > 0 ? idx : 1, ERR_reason_error_string(e) ?
		    ERR_reason_error_string(e) : "bad PEM or DER");
out:
	ERR_clear_error();
	BIO_free(b);
	return rc;
}

/* parse_der - concatenated DER sessions filling all of buf. */
static int
parse_der(struct sd_sessions *out, const unsigned char *buf, size_t len,
    const char *name)
{
	const unsigned char *p = buf, *end = buf + len;
	SSL_SESSION *s;
	unsigned idx = 0;

	while (p < end) {
		const unsigned char *start = p;

		s = d2i_SSL_SESSION(NULL, &p, end - p);
		if (s == NULL) {
			sd_err("import: %s: malformed DER session at byte %zu "
			    "(not an SSL session)", name, (size_t)(start - buf));
			ERR_clear_error();
			return -1;
		}
		if (add_session(out, s, name, ++idx) == -1)
			return -1;
	}
	return 0;
}

/* sd_parse_sessions - the sessions of one input, PEM or DER. */
int
sd_parse_sessions(struct sd_sessions *out, const unsigned char *buf,
    size_t len, int fmt, const char *name)
{
	static const char opaque_begin[] = "-----BEGIN " SD_OPAQUE_LABEL "-----";
	int pem = fmt ? fmt == 'p' :
	    memmem(buf, len, SD_PEM_LABEL, strlen(SD_PEM_LABEL)) != NULL ||
	    memmem(buf, len, opaque_begin, strlen(opaque_begin)) != NULL;

	if (len == 0) {
		sd_err("import: %s: empty input", name);
		return -1;
	}
	return pem ? parse_pem(out, buf, len, name) :
	    parse_der(out, buf, len, name);
}

/* sd_sessions_free - release the parsed sessions. */
void
sd_sessions_free(struct sd_sessions *out)
{
	for (size_t i = 0; i < out->n; i++) {
		SSL_SESSION_free(out->v[i].s);
		OPENSSL_clear_free(out->v[i].opaque, out->v[i].opaque_len);
	}
	free(out->v);
	memset(out, 0, sizeof(*out));
}
