/*
 * NAME
 *	ssl_shared.h - helpers the server glue and the client glue share
 *
 * DESCRIPTION
 *	Internal to libsessdb: ssl_glue.c (server side) and ssl_client.c,
 *	ssl_peer.c (client side) both need a session's absolute expiry and a digest
 *	of a set of certificates (the server identity; the client
 *	certificate and the trust store in a peer key).  One home for each.
 */
#ifndef SESSDB_SSL_SHARED_H
#define SESSDB_SSL_SHARED_H

#include <stdint.h>

#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define SSL_SHARED_MD_LEN	SHA256_DIGEST_LENGTH
#define SSL_SHARED_CERTS_MAX	16	/* > OpenSSL's key types (9 in 3.0) */

/* ssl_shared_expires - absolute expiry of sess: its start time plus its
 * timeout; 0 (the store's default_ttl) when OpenSSL does not know. */
static inline int64_t
ssl_shared_expires(const SSL_SESSION *sess)
{
	int64_t t = (int64_t)SSL_SESSION_get_time(sess);
	int64_t timeout = (int64_t)SSL_SESSION_get_timeout(sess);

	if (t <= 0 || timeout <= 0)
		return 0;
	return t + timeout;
}

/*
 * ssl_shared_certs_digest - SHA-256 over the number of certificates and
 *	the SHA-256 of each one's DER, in the order given (at most
 *	SSL_SHARED_CERTS_MAX); 0 or -1.
 */
static inline int
ssl_shared_certs_digest(X509 *const *certs, int n, unsigned char *md)
{
	unsigned char buf[1 + SSL_SHARED_CERTS_MAX * SSL_SHARED_MD_LEN];
	unsigned int mdlen;
	int i;

	if (n < 0 || n > SSL_SHARED_CERTS_MAX)
		return -1;
	buf[0] = (unsigned char)n;
	for (i = 0; i < n; i++)
		if (!X509_digest(certs[i], EVP_sha256(),
		    buf + 1 + i * SSL_SHARED_MD_LEN, &mdlen) ||
		    mdlen != SSL_SHARED_MD_LEN)
			return -1;
	SHA256(buf, 1 + (size_t)n * SSL_SHARED_MD_LEN, md);
	return 0;
}

#endif /* SESSDB_SSL_SHARED_H */
