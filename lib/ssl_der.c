/*
 * NAME
 *	ssl_der.c - SSL_SESSION to stored DER and back, and the put between
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	int sessdb_ssl_encode(SSL_SESSION *sess, unsigned char **der,
 *	    size_t *len);
 *	void sessdb_ssl_der_free(void *der, size_t len);
 *	SSL_SESSION *sessdb_ssl_decode(const void *der, size_t len,
 *	    const unsigned char *id, size_t id_len, const char **why);
 *	int sessdb_ssl_put(struct sessdb *db, SSL_SESSION *sess,
 *	    int64_t expires);
 *
 * DESCRIPTION
 *	The one place where a server session becomes the payload of a
 *	record and a payload becomes a session again, for the glue
 *	(ssl_glue.c) and for sessdump's show, export and import.  These
 *	functions know nothing of the glue's server identity: the glue
 *	marks a copy of the session before it calls sessdb_ssl_put(), and
 *	checks and removes the mark after sessdb_ssl_decode(), so sessdump
 *	moves marked sessions between stores unchanged.
 *
 *	Every buffer here that held DER is wiped before it is freed: it
 *	holds the master secret.  Encoding and decoding take no store lock.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"

/* sessdb_ssl_encode - DER of sess in a buffer of our own; 0 or -1. */
int
sessdb_ssl_encode(SSL_SESSION *sess, unsigned char **der, size_t *len)
{
	unsigned char *buf = NULL, *p;
	int n;

	if (sess == NULL || der == NULL || len == NULL)
		return -1;
	n = i2d_SSL_SESSION(sess, NULL);
	if (n <= 0 || (size_t)n > SESSDB_PAYLOAD_MAX)
		return -1;
	if ((buf = malloc((size_t)n)) == NULL)
		return -1;
	p = buf;
	if (i2d_SSL_SESSION(sess, &p) != n) {
		sessdb_ssl_der_free(buf, (size_t)n);
		return -1;
	}
	*der = buf;
	*len = (size_t)n;
	return 0;
}

/* sessdb_ssl_der_free - wipe and free what sessdb_ssl_encode made. */
void
sessdb_ssl_der_free(void *der, size_t len)
{
	if (der == NULL)
		return;
	OPENSSL_cleanse(der, len);
	free(der);
}

/* sessdb_ssl_decode - the session whose DER is all of der, stored under
 * id (when id is not NULL); NULL with *why (if why) set. */
SSL_SESSION *
sessdb_ssl_decode(const void *der, size_t len, const unsigned char *id,
    size_t id_len, const char **why)
{
	const unsigned char *p = der;
	const unsigned char *got;
	SSL_SESSION *sess;
	unsigned int got_len;
	const char *problem;

	if (der == NULL || len == 0 || len > SESSDB_PAYLOAD_MAX ||
	    (sess = d2i_SSL_SESSION(NULL, &p, (long)len)) == NULL) {
		problem = "payload is not a DER SSL session";
		goto fail;
	}
	if (p != (const unsigned char *)der + len) {
		SSL_SESSION_free(sess);
		problem = "trailing bytes after the DER session";
		goto fail;
	}
	got = SSL_SESSION_get_id(sess, &got_len);
	if (id != NULL && (got_len != id_len || memcmp(got, id, id_len) != 0)) {
		SSL_SESSION_free(sess);
		problem = "session ID does not match the key";
		goto fail;
	}
	return sess;
fail:
	if (why != NULL)
		*why = problem;
	return NULL;
}

/* sessdb_ssl_put - store sess as it is under its session ID. */
int
sessdb_ssl_put(struct sessdb *db, SSL_SESSION *sess, int64_t expires)
{
	const unsigned char *id;
	unsigned int id_len;
	unsigned char *der;
	size_t len;
	int rc;

	if (db == NULL || sess == NULL)
		return SESSDB_SSL_UNENCODABLE;
	id = SSL_SESSION_get_id(sess, &id_len);
	if (id_len == 0 || id_len > SESSDB_ID_MAX ||
	    sessdb_ssl_encode(sess, &der, &len) == -1)
		return SESSDB_SSL_UNENCODABLE;
	rc = sessdb_put(db, SESSDB_NS_SERVER, id, id_len, der, len, expires);
	sessdb_ssl_der_free(der, len);
	return rc;
}
