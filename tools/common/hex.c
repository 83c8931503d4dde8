/*
 * NAME
 *	hex.c - bytes to lower-case hex and back
 *
 * DESCRIPTION
 *	tool_parse_hex() takes what an operator pastes: either case, with
 *	or without colons between the bytes (as `openssl sess_id` prints
 *	IDs), never a half byte.
 */
#include <ctype.h>
#include <stdlib.h>

#include "tooling.h"

/* tool_hex - lower-case hex of p ("" for len 0), NULL when out of memory. */
char *
tool_hex(const unsigned char *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * len + 1);

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 15];
	}
	s[2 * len] = '\0';
	return s;
}

/* hexval - the value of one hex digit, or -1. */
static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* tool_parse_hex - hex (colons allowed between bytes) into out, at most
 * max bytes; 0 with *len set, or -1 if s is not 1..max bytes of hex. */
int
tool_parse_hex(const char *s, unsigned char *out, size_t max, size_t *len)
{
	size_t n = 0;
	int hi = -1;

	for (; *s; s++) {
		int v;

		if (*s == ':' && hi < 0)
			continue;
		if ((v = hexval((unsigned char)*s)) < 0)
			return -1;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == max)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0 || n == 0)
		return -1;
	*len = n;
	return 0;
}
