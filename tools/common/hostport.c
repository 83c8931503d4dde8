/*
 * NAME
 *	hostport.c - "host:port" arguments
 *
 * DESCRIPTION
 *	The port is what follows the last colon; an IPv6 literal is written
 *	in brackets ("[::1]:8443"), which are removed.  Neither part may be
 *	empty or longer than its buffer.
 */
#include <string.h>

#include "tooling.h"

/* tool_parse_hostport - split s into host and port; 0, or -1. */
int
tool_parse_hostport(const char *s, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *colon = strrchr(s, ':');
	size_t hlen;

	if (colon == NULL || colon == s || colon[1] == '\0' ||
	    strlen(colon + 1) >= portlen)
		return -1;
	hlen = (size_t)(colon - s);
	if (s[0] == '[' && colon[-1] == ']') {
		s++;
		hlen = hlen >= 2 ? hlen - 2 : 0;
	}
	if (hlen == 0 || hlen >= hostlen)
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	return 0;
}
