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
 *	`sessdump import`: PEM "SSL SESSION PARAMETERS" blocks if fmt is
 *	'p', or if fmt is 0 and buf carries the PEM label; concatenated DER
 *	sessions filling all of buf otherwise.  name is the input's name
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
	out->v[out->n++] = (struct sd_insess){ s, name, idx };
	return 0;
}

/* parse_pem - every SSL SESSION PARAMETERS block of buf. */
static int
parse_pem(struct sd_sessions *out, const unsigned char *buf, size_t len,
    const char *name)
{
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	SSL_SESSION *s;
	unsigned idx = 0;
	unsigned long e;

	if (b == NULL)
		return -1;
	ERR_clear_error();
	while ((s = PEM_read_bio_SSL_SESSION(b, NULL, NULL, NULL)) != NULL)
		if (add_session(out, s, name, ++idx) == -1)
			break;
	e = ERR_peek_last_error();
	BIO_free(b);
	if (s == NULL && ERR_GET_REASON(e) == PEM_R_NO_START_LINE && idx > 0) {
		ERR_clear_error();
		return 0;
	}
	if (idx == 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		sd_err("import: %s: no SSL SESSION PARAMETERS block", name);
	else
		sd_err("import: %s: session %u is malformed (%s)", name, idx + 1,
		    ERR_reason_error_string(e) ? ERR_reason_error_string(e) :
		    "bad PEM or DER");
	ERR_clear_error();
	return -1;
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
	int pem = fmt ? fmt == 'p' :
	    memmem(buf, len, SD_PEM_LABEL, strlen(SD_PEM_LABEL)) != NULL;

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
	for (size_t i = 0; i < out->n; i++)
		SSL_SESSION_free(out->v[i].s);
	free(out->v);
	memset(out, 0, sizeof(*out));
}
