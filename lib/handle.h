/*
 * NAME
 *	handle.h - the store handle, shared by the operations and the backends
 */
#ifndef SESSDB_HANDLE_H
#define SESSDB_HANDLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "diag.h"
#include "record.h"
#include "seal.h"
#include "sessdb.h"

struct sessdb {
	char			*path;
	struct sessdb_options	opt;
	int			rdonly;
	const struct backend	*be;
	void			*be_state;	/* the backend's own */
	unsigned long		fork_epoch;	/* process be_state belongs to */
	int32_t			pid;		/* getpid() of that process */
	struct sessdb_stats	st;
	struct seal		*seal;		/* keys (opts.key_file), or NULL */
	int			told_nokey;	/* logged "sealed, no key" once */
	int			told_unsealed;	/* logged "plain records" once */
	int			errcode;	/* SESSDB_E_* of err */
	char			err[512];
};

/* store_ready - the handle may be used by this process (after a fork, the
 * backend first takes resources of its own); 0 or -1. */
int store_ready(struct sessdb *db);

/* store_cap_exceeded - would one more record of size bytes break a cap,
 * with entries records of bytes bytes stored?  The backend asks, under
 * whatever keeps its counters still. */
int store_cap_exceeded(const struct sessdb *db, uint64_t entries,
    uint64_t bytes, size_t size);

/* store_encode - the value to store for a record of len bytes of data
 * under key: sealed under the newest key when the handle has keys.
 * Returns a malloc'ed value of *val_len bytes (wipe with
 * store_free_value), or NULL with the error set. */
unsigned char *store_encode(struct sessdb *db, const unsigned char *key,
    size_t key_len, const void *data, size_t len, int64_t created,
    int64_t expires, size_t *val_len);

/* store_unseal - open the sealed record r, decoded from val under key,
 * into *pt (malloc'ed, r->payload_len - SEAL_OVERHEAD bytes, wipe with
 * store_free_value).  Returns a seal_open_status; *pt only if
 * SEAL_OPENED. */
enum seal_open_status store_unseal(struct sessdb *db, const unsigned char *key,
    size_t key_len, const unsigned char *val, const struct rec *r,
    unsigned char **pt);

/* store_free_value - wipe and free a value a backend handed us: record
 * payloads hold master secrets.  NULL is a no-op. */
static inline void
store_free_value(void *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

#endif /* SESSDB_HANDLE_H */
