/*
 * NAME
 *	redis_store.c - a redis-server of a test's own that the library can
 *	use as a store (redis_store.h)
 */
#include <stdio.h>

#include "redis_store.h"
#include "sessdb.h"

int
rst_start(struct rs *s, char *why, size_t len)
{
	const char *missing = rs_missing();
	struct sessdb *db;
	char err[512], url[400];

	if (missing != NULL) {
		snprintf(why, len, "%s", missing);
		return -1;
	}
	if (rs_start(s, NULL) != 0) {
		snprintf(why, len, "redis-server did not start");
		return -1;
	}
	snprintf(url, sizeof(url), "unix:%s?prefix=probe:&timeout_ms=2000",
	    s->sock);
	if ((db = sessdb_open(url, NULL, err, sizeof(err))) == NULL) {
		snprintf(why, len, "%s", err);
		rs_destroy(s);
		return -1;
	}
	sessdb_close(db);
	return 0;
}

void
rst_url(const struct rs *s, char *url, size_t len, const char *tag,
    const char *name)
{
	static unsigned seq;

	snprintf(url, len, "unix:%s?prefix=%s%u-%s:&timeout_ms=2000", s->sock,
	    tag, ++seq, name);
}
