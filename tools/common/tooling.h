/*
 * NAME
 *	tooling.h - helpers shared by sessdump, sessdemo and sessload
 *
 * SYNOPSIS
 *	#include "tooling.h"
 *
 * DESCRIPTION
 *	One home for what the three programs would otherwise each write
 *	again: number and host:port parsing (num.c, hostport.c), a
 *	monotonic clock (clock.c), hex (hex.c), X509 name printing
 *	(x509name.c), wiping frees (wipe.c), and store names as they may be
	shown, without a URL's password (storename.c).  Built as a static
 *	library in tools/meson.build; nothing here is part of libsessdb.
 *
 * RETURN VALUES
 *	Parsers return 0, or -1 with their output untouched.  Functions that
 *	return a string return it malloc'ed (free() it), or NULL when out of
 *	memory or when there is nothing to print.
 */
#ifndef TOOLING_H
#define TOOLING_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* num.c: decimal numbers in [lo, hi]; junk, a sign where lo >= 0, or a
 * value out of range is -1. */
int tool_parse_int(const char *s, long lo, long hi, int *out);
int tool_parse_long(const char *s, long lo, long hi, long *out);
int tool_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);

/* hostport.c: "host:port" or "[v6]:port" into host (hostlen bytes) and
 * port (portlen bytes), both NUL-terminated. */
int tool_parse_hostport(const char *s, char *host, size_t hostlen,
    char *port, size_t portlen);

/* clock.c: CLOCK_MONOTONIC, for intervals only. */
int64_t tool_now_ms(void);
double tool_now_s(void);

/* hex.c */
char *tool_hex(const unsigned char *p, size_t len);
int tool_parse_hex(const char *s, unsigned char *out, size_t max,
    size_t *len);

/* x509name.c: an X509 name as an RFC 2253 string (ASCII). */
char *tool_x509_name(const X509_NAME *name);

/* wipe.c */
void tool_wipe_free(void *p, size_t len);
int tool_wipe_openssl_frees(void);

/* storename.c: a file path or a network store's URL (redis://, unix:);
 * the name to print, its password (if any) replaced by "***". */
int tool_store_is_url(const char *name);
const char *tool_store_display(const char *name, char *buf, size_t len);

#endif /* TOOLING_H */
