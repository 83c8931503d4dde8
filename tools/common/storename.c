/*
 * NAME
 *	storename.c - store names as the tools show them
 *
 * DESCRIPTION
 *	sessdb_open takes a file path or a network store's URL
 *	("redis://[:password@]host[:port][/db][?...]" or "unix:/socket[?...]").
 *	The tools must not stat a URL as if it were a file, and must never
 *	print the password a URL may carry: every message, report and JSON
 *	document names the store by tool_store_display(), which writes
 *	"***" in its place, as sessdb_path() does.  (A password belongs in
 *	SESSDB_REDIS_PASSWORD or a file named by ?password_file=, not on a
 *	command line, where ps shows it to every user; the tools accept it
 *	there only because the library does.)
 */
#include <stdio.h>
#include <string.h>

#include "tooling.h"

/* tool_store_is_url - whether name is a network store, not a file. */
int
tool_store_is_url(const char *name)
{
	return strncmp(name, "redis://", 8) == 0 ||
	    strncmp(name, "unix:", 5) == 0;
}

/* tool_store_display - name with any password replaced by "***", in buf
 * (len bytes, truncated if need be); returns buf. */
const char *
tool_store_display(const char *name, char *buf, size_t len)
{
	const char *auth, *at, *colon, *end;

	if (len == 0)
		return "";
	if (strncmp(name, "redis://", 8) != 0) {
		snprintf(buf, len, "%s", name);
		return buf;
	}
	/* User information is what precedes the last '@' before the query,
	 * the password what follows its first ':'.  (Not the authority's
	 * end at '/': a password with a raw '/' in it must not escape.) */
	auth = name + 8;
	end = auth + strcspn(auth, "?#");
	at = NULL;
	for (const char *p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon == NULL) {
		snprintf(buf, len, "%s", name);
		return buf;
	}
	snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - name), name, at);
	return buf;
}
