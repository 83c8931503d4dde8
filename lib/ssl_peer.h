/*
 * NAME
 *	ssl_peer.h - the peer of a client session: its key, and the header
 *	naming it in a record (internal to libsessdb)
 *
 * DESCRIPTION
 *	ssl_peer.c derives the peer key (sessdb_ssl_peer_key: a digest of
 *	everything a resumption must agree on, with the fingerprints of the
 *	CA file and directory kept in a cache while they look unchanged)
 *	and writes and reads the payload of a client record: the peer
 *	header (docs/FORMAT.md, "Client records"), then the DER.
 *	ssl_client.c, the client glue, uses both.
 */
#ifndef SESSDB_SSL_PEER_H
#define SESSDB_SSL_PEER_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "sessdb_ssl.h"

#define PEER_MD_LEN	SHA256_DIGEST_LENGTH
#define PEER_HOST_MAX	255	/* longest host and SNI */

/* Kinds of client record (the header's kind byte). */
#define PEER_KIND_REUSE	1	/* TLS 1.2 and below: reused until expiry */
#define PEER_KIND_ONCE	2	/* TLS 1.3 ticket: taken once */

/* The fingerprint of a CA file or directory, kept while it looks unchanged. */
struct peer_fp {
	char		*path;
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec	mtime;
	unsigned char	md[PEER_MD_LEN];
};

/* The last CA file's and directory's fingerprints, for one SSL_CTX. */
struct peer_cache {
	pthread_mutex_t	mu;
	struct peer_fp	file;
	struct peer_fp	dir;
};

/* peer_cache_init - an empty cache; 0 or -1. */
int peer_cache_init(struct peer_cache *pc);

/* peer_cache_free - release what the cache holds. */
void peer_cache_free(struct peer_cache *pc);

/* peer_ok - whether peer names a peer that can be keyed and stored. */
int peer_ok(const struct sessdb_ssl_peer *peer);

/* peer_key - sessdb_ssl_peer_key, with the fingerprints from pc (NULL:
 * none kept); 0 or -1. */
int peer_key(struct peer_cache *pc, SSL *ssl,
    const struct sessdb_ssl_peer *peer, unsigned char *key);

/* peer_payload - the payload of a client record: the header (host, port,
 * sni: "" for none, kind), then the DER of sess, in a malloc'ed buffer
 * (wipe it: the DER holds the master secret); 0 or -1. */
int peer_payload(const char *host, unsigned port, const char *sni, int kind,
    SSL_SESSION *sess, unsigned char **out, size_t *out_len);

#endif /* SESSDB_SSL_PEER_H */
