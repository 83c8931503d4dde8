/*
 * NAME
 *	redis_store.h - a redis-server of a test's own that the library can
 *	use as a store
 *
 * DESCRIPTION
 *	rst_start() starts a redis-server (redis_server.h: persistence off,
 *	a unix socket) and opens and closes a store on it, so that a test
 *	knows before its first case whether the Redis backend works here
 *	(a build without hiredis has none).  rst_url() names a store on it
 *	under a prefix no other case of the run uses: an empty store.
 */
#ifndef SESSDB_TESTS_REDIS_STORE_H
#define SESSDB_TESTS_REDIS_STORE_H

#include <stddef.h>

#include "redis_server.h"

/* rst_start - 0, or -1 with why (the server is gone again). */
int rst_start(struct rs *s, char *why, size_t len);

/* rst_url - "unix:<socket>?prefix=<tag><n>-<name>:&timeout_ms=2000". */
void rst_url(const struct rs *s, char *url, size_t len, const char *tag,
    const char *name);

#endif /* SESSDB_TESTS_REDIS_STORE_H */
