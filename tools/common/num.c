/*
 * NAME
 *	num.c - decimal option values for the tools
 *
 * DESCRIPTION
 *	Every numeric option of sessdump, sessdemo and sessload goes
 *	through parse_range(): the whole string must be a decimal number
 *	(leading blanks and a sign as strtoll takes them), within the
 *	option's bounds.  A minus sign is refused where the bounds are not
 *	negative, so "-1" never wraps into a large unsigned value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tooling.h"

/* parse_range - s as a decimal in [lo, hi]; 0, or -1. */
static int
parse_range(const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	if (lo >= 0 && strchr(s, '-') != NULL)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* tool_parse_int - a decimal in [lo, hi] into an int. */
int
tool_parse_int(const char *s, long lo, long hi, int *out)
{
	long long v;

	if (lo < -2147483647L - 1 || hi > 2147483647L ||
	    parse_range(s, lo, hi, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

/* tool_parse_long - a decimal in [lo, hi] into a long. */
int
tool_parse_long(const char *s, long lo, long hi, long *out)
{
	long long v;

	if (parse_range(s, lo, hi, &v) == -1)
		return -1;
	*out = (long)v;
	return 0;
}

/* tool_parse_uint - a decimal in [lo, hi] into an unsigned. */
int
tool_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	long long v;

	if (parse_range(s, lo, hi, &v) == -1)
		return -1;
	*out = (unsigned)v;
	return 0;
}
