/*
 * NAME
 *	ssl_peer.c - the peer of a client session: its key, and the header
 *	naming it in a record
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	int sessdb_ssl_peer_key(SSL *ssl, const struct sessdb_ssl_peer *peer,
 *	    unsigned char key[SESSDB_SSL_PEER_KEY_LEN]);
 *	SSL_SESSION *sessdb_ssl_client_decode(const void *payload,
 *	    size_t len, struct sessdb_ssl_client_info *info,
 *	    const char **why);
 *
 *	#include "ssl_peer.h"	(internal: peer_key, peer_payload, ...)
 *
 * DESCRIPTION
 *	The peer key is SHA-256 over tagged, length-prefixed fields, so that
 *	no two different settings feed the digest the same bytes: host, port,
 *	SNI, ALPN, protocol range, ciphers, verification (mode, depth, flags,
 *	the names checked, security level), the trust settings (the bytes of
 *	the CA file, the names and bytes of the CA directory's files, or
 *	else the verify store's certificates and CRLs, sorted), the client
 *	certificate, OpenSSL's major version.  Fingerprinting a CA bundle
 *	costs a read of the file, so each SSL_CTX keeps the last file's and
 *	directory's digests while their inode, size and mtime stay the same.
 *
 *	A client record's payload is the peer header (docs/FORMAT.md,
 *	"Client records": version, kind, port, host, SNI), then the DER of
 *	the session (ssl_der.c).  The decoder checks every length and that
 *	the kind agrees with the session's protocol.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "ssl_peer.h"
#include "ssl_shared.h"		/* certificate digests */

#define PEER_TAG	"sessdb client peer v1"

/* The peer header of a client record's payload (docs/FORMAT.md). */
#define PEER_HDR_VERSION 1
#define PEER_HDR_FIXED	6	/* version, kind, port (2), host len, SNI len */

/* peer_fp_clear - forget a cached fingerprint. */
static void
peer_fp_clear(struct peer_fp *fp)
{
	free(fp->path);
	memset(fp, 0, sizeof(*fp));
}

/* peer_field - feed one tagged, length-prefixed field to the digest, so
 * that no two different settings can produce the same input. */
static int
peer_field(EVP_MD_CTX *md, unsigned tag, const void *p, size_t len)
{
	unsigned char hdr[6];

	hdr[0] = (unsigned char)(tag >> 8);
	hdr[1] = (unsigned char)tag;
	hdr[2] = (unsigned char)(len >> 24);
	hdr[3] = (unsigned char)(len >> 16);
	hdr[4] = (unsigned char)(len >> 8);
	hdr[5] = (unsigned char)len;
	if (!EVP_DigestUpdate(md, hdr, sizeof(hdr)))
		return -1;
	return len == 0 || EVP_DigestUpdate(md, p, len) ? 0 : -1;
}

/* peer_field_u32 - one field holding a 32-bit number, big-endian. */
static int
peer_field_u32(EVP_MD_CTX *md, unsigned tag, uint64_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
	    (unsigned char)(v >> 8), (unsigned char)v };

	return peer_field(md, tag, b, sizeof(b));
}

/* peer_file_md - SHA-256 of the file at path (symbolic links followed:
 * CA bundles often are links); 0 or -1. */
static int
peer_file_md(const char *path, unsigned char *md)
{
	unsigned char buf[8192];
	EVP_MD_CTX *h;
	ssize_t n;
	int fd, rc = -1;
	unsigned int mdlen;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if ((h = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
		goto done;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (!EVP_DigestUpdate(h, buf, (size_t)n))
			goto done;
	if (n < 0 || !EVP_DigestFinal_ex(h, md, &mdlen))
		goto done;
	rc = 0;
done:
	EVP_MD_CTX_free(h);
	close(fd);
	return rc;
}

/* peer_name_cmp - qsort comparator for directory entry names. */
static int
peer_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * peer_dir_md - SHA-256 over the names and contents of the regular files in
 *	dir, sorted by name (hidden files skipped); 0 or -1.
 */
static int
peer_dir_md(const char *dir, unsigned char *md)
{
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	struct stat st;
	unsigned char fmd[PEER_MD_LEN];
	unsigned int mdlen;
	EVP_MD_CTX *h = NULL;
	DIR *d;
	int rc = -1;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char **more;

		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((more = realloc(names, cap * sizeof(*names))) == NULL)
				goto done;
			names = more;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto done;
		n++;
	}
	qsort(names, n, sizeof(*names), peer_name_cmp);
	if ((h = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
		goto done;
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    names[i]) >= sizeof(path))
			goto done;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (peer_file_md(path, fmd) < 0 ||
		    peer_field(h, 1, names[i], strlen(names[i])) < 0 ||
		    peer_field(h, 2, fmd, sizeof(fmd)) < 0)
			goto done;
	}
	if (!EVP_DigestFinal_ex(h, md, &mdlen))
		goto done;
	rc = 0;
done:
	EVP_MD_CTX_free(h);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

/*
 * peer_fingerprint - the digest of a CA file (dir == 0) or directory,
 *	from pc while its inode, size and mtime are unchanged (a directory's
 *	mtime changes when files are added, removed or renamed, as c_rehash
 *	does), else computed again.  pc may be NULL (no cache).
 */
static int
peer_fingerprint(struct peer_cache *pc, const char *path, int dir,
    unsigned char *md)
{
	struct peer_fp *fp = NULL;
	struct stat st;
	int rc;

	if (stat(path, &st) < 0 || (dir ? !S_ISDIR(st.st_mode) :
	    !S_ISREG(st.st_mode)))
		return -1;
	if (pc != NULL && pthread_mutex_lock(&pc->mu) == 0) {
		fp = dir ? &pc->dir : &pc->file;
		if (fp->path != NULL && strcmp(fp->path, path) == 0 &&
		    fp->dev == st.st_dev && fp->ino == st.st_ino &&
		    fp->size == st.st_size &&
		    fp->mtime.tv_sec == st.st_mtim.tv_sec &&
		    fp->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			memcpy(md, fp->md, PEER_MD_LEN);
			pthread_mutex_unlock(&pc->mu);
			return 0;
		}
		pthread_mutex_unlock(&pc->mu);
	}
	rc = dir ? peer_dir_md(path, md) : peer_file_md(path, md);
	if (rc < 0 || fp == NULL || pthread_mutex_lock(&pc->mu) != 0)
		return rc;
	peer_fp_clear(fp);
	if ((fp->path = strdup(path)) != NULL) {
		fp->dev = st.st_dev;
		fp->ino = st.st_ino;
		fp->size = st.st_size;
		fp->mtime = st.st_mtim;
		memcpy(fp->md, md, PEER_MD_LEN);
	}
	pthread_mutex_unlock(&pc->mu);
	return 0;
}

/* peer_md_cmp - qsort comparator for digests. */
static int
peer_md_cmp(const void *a, const void *b)
{
	return memcmp(a, b, PEER_MD_LEN);
}

/*
 * peer_store_md - SHA-256 over the sorted digests of the certificates and
 *	CRLs in store (order of loading does not matter); 0 or -1.
 */
static int
peer_store_md(X509_STORE *store, unsigned char *md)
{
	STACK_OF(X509_OBJECT) *objs;
	unsigned char *mds = NULL;
	unsigned int mdlen;
	int i, n, k = 0, rc = -1;

	if (store == NULL) {
		SHA256((const unsigned char *)"", 0, md);
		return 0;
	}
	if (!X509_STORE_lock(store))
		return -1;
	objs = X509_STORE_get0_objects(store);
	n = objs != NULL ? sk_X509_OBJECT_num(objs) : 0;
	if (n > 0 && (mds = malloc((size_t)n * PEER_MD_LEN)) == NULL)
		goto done;
	for (i = 0; i < n; i++) {
		X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
		X509 *x = X509_OBJECT_get0_X509(o);
		X509_CRL *crl = X509_OBJECT_get0_X509_CRL(o);

		if (x != NULL) {
			if (!X509_digest(x, EVP_sha256(), mds + k * PEER_MD_LEN,
			    &mdlen))
				goto done;
		} else if (crl != NULL) {
			if (!X509_CRL_digest(crl, EVP_sha256(),
			    mds + k * PEER_MD_LEN, &mdlen))
				goto done;
		} else
			continue;
		k++;
	}
	rc = 0;
done:
	X509_STORE_unlock(store);
	if (rc == 0) {
		if (k > 0)
			qsort(mds, (size_t)k, PEER_MD_LEN, peer_md_cmp);
		SHA256(mds != NULL ? mds : (const unsigned char *)"",
		    (size_t)k * PEER_MD_LEN, md);
	}
	free(mds);
	return rc;
}

/* peer_ok - whether peer names a peer we can key and store. */
int
peer_ok(const struct sessdb_ssl_peer *peer)
{
	size_t hl, sl;

	if (peer == NULL || peer->host == NULL || peer->port == 0 ||
	    peer->port > 65535)
		return 0;
	hl = strlen(peer->host);
	sl = peer->sni != NULL ? strlen(peer->sni) : 0;
	if (hl == 0 || hl > PEER_HOST_MAX || sl > PEER_HOST_MAX ||
	    (peer->sni != NULL && sl == 0))
		return 0;
	return peer->alpn == NULL || (peer->alpn_len > 0 &&
	    peer->alpn_len <= 65535);
}

/* Tags of the peer key's fields (never reuse a number). */
enum { K_HOST = 1, K_PORT, K_SNI, K_ALPN, K_TRUST, K_MINPROTO, K_MAXPROTO,
    K_CIPHERS, K_VMODE, K_VDEPTH, K_VFLAGS, K_CAFILE, K_CADIR, K_STORE,
    K_CERT, K_CERTCB, K_LIBVER, K_VNAME, K_VEMAIL, K_VIP, K_VHFLAGS,
    K_SECLEVEL };

/*
 * peer_key_names - the names the server's certificate is checked against
 *	(SSL_set1_host and friends): a session verified for one name must
 *	not be resumed by a connection that wants another, since resumption
 *	does not verify again.
 */
static int
peer_key_names(EVP_MD_CTX *h, SSL *ssl)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	const char *name;
	char *ip;
	int i, rc;

	if (vp == NULL)
		return 0;
	for (i = 0; (name = X509_VERIFY_PARAM_get0_host(vp, i)) != NULL; i++)
		if (peer_field(h, K_VNAME, name, strlen(name)) < 0)
			return -1;
	if ((name = X509_VERIFY_PARAM_get0_email(vp)) != NULL &&
	    peer_field(h, K_VEMAIL, name, strlen(name)) < 0)
		return -1;
	if ((ip = X509_VERIFY_PARAM_get1_ip_asc(vp)) != NULL) {
		rc = peer_field(h, K_VIP, ip, strlen(ip));
		OPENSSL_free(ip);
		if (rc < 0)
			return -1;
	}
	return peer_field_u32(h, K_VHFLAGS, X509_VERIFY_PARAM_get_hostflags(vp));
}

/* peer_key_trust - the trust settings' fields of the peer key. */
static int
peer_key_trust(struct peer_cache *pc, EVP_MD_CTX *h, SSL *ssl,
    const struct sessdb_ssl_peer *peer)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	X509_STORE *store = NULL;
	unsigned char md[PEER_MD_LEN];

	if (peer_field_u32(h, K_VMODE, (uint32_t)SSL_get_verify_mode(ssl)) < 0 ||
	    peer_field_u32(h, K_VDEPTH, (uint32_t)SSL_get_verify_depth(ssl)) < 0 ||
	    peer_field_u32(h, K_VFLAGS, vp != NULL ?
	    (uint32_t)X509_VERIFY_PARAM_get_flags(vp) : 0) < 0)
		return -1;
	if (peer->trust != NULL &&
	    peer_field(h, K_TRUST, peer->trust, strlen(peer->trust)) < 0)
		return -1;
	if (peer->ca_file != NULL &&
	    (peer_fingerprint(pc, peer->ca_file, 0, md) < 0 ||
	    peer_field(h, K_CAFILE, md, sizeof(md)) < 0))
		return -1;
	if (peer->ca_dir != NULL &&
	    (peer_fingerprint(pc, peer->ca_dir, 1, md) < 0 ||
	    peer_field(h, K_CADIR, md, sizeof(md)) < 0))
		return -1;
	if (peer->ca_file != NULL || peer->ca_dir != NULL)
		return 0;
	/* Nothing named: what the verify store holds now. */
	if (!SSL_get0_verify_cert_store(ssl, &store) || store == NULL)
		store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
	if (peer_store_md(store, md) < 0)
		return -1;
	return peer_field(h, K_STORE, md, sizeof(md));
}

/* peer_key_ciphers - the cipher list (TLS 1.3 suites included) by ID. */
static int
peer_key_ciphers(EVP_MD_CTX *h, SSL *ssl)
{
	STACK_OF(SSL_CIPHER) *sk = SSL_get_ciphers(ssl);
	unsigned char *ids;
	int i, n = sk != NULL ? sk_SSL_CIPHER_num(sk) : 0, rc;

	if ((ids = malloc((size_t)n * 4 + 1)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		uint32_t id = SSL_CIPHER_get_id(sk_SSL_CIPHER_value(sk, i));

		ids[i * 4] = (unsigned char)(id >> 24);
		ids[i * 4 + 1] = (unsigned char)(id >> 16);
		ids[i * 4 + 2] = (unsigned char)(id >> 8);
		ids[i * 4 + 3] = (unsigned char)id;
	}
	rc = peer_field(h, K_CIPHERS, ids, (size_t)n * 4);
	free(ids);
	return rc;
}

/* peer_key_cert - the client certificate (or none) and its callback. */
static int
peer_key_cert(EVP_MD_CTX *h, SSL *ssl)
{
	X509 *cert = SSL_get_certificate(ssl);
	unsigned char md[PEER_MD_LEN];

	if (cert != NULL) {
		if (ssl_shared_certs_digest(&cert, 1, md) < 0 ||
		    peer_field(h, K_CERT, md, sizeof(md)) < 0)
			return -1;
	} else if (peer_field(h, K_CERT, NULL, 0) < 0)
		return -1;
	return peer_field_u32(h, K_CERTCB,
	    SSL_CTX_get_client_cert_cb(SSL_get_SSL_CTX(ssl)) != NULL);
}

/* peer_key - the peer key, with pc's fingerprints (pc may be NULL). */
int
peer_key(struct peer_cache *pc, SSL *ssl, const struct sessdb_ssl_peer *peer,
    unsigned char *key)
{
	unsigned char md[EVP_MAX_MD_SIZE], port[2];
	unsigned int mdlen;
	EVP_MD_CTX *h;
	int rc = -1;

	if (ssl == NULL || key == NULL || !peer_ok(peer))
		return -1;
	port[0] = (unsigned char)(peer->port >> 8);
	port[1] = (unsigned char)peer->port;
	ERR_set_mark();
	if ((h = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(h, PEER_TAG, sizeof(PEER_TAG)) ||
	    peer_field(h, K_HOST, peer->host, strlen(peer->host)) < 0 ||
	    peer_field(h, K_PORT, port, 2) < 0 ||
	    peer_field(h, K_SNI, peer->sni, peer->sni ? strlen(peer->sni) : 0) < 0 ||
	    peer_field(h, K_ALPN, peer->alpn, peer->alpn ? peer->alpn_len : 0) < 0 ||
	    peer_field_u32(h, K_MINPROTO, (uint32_t)SSL_get_min_proto_version(ssl)) < 0 ||
	    peer_field_u32(h, K_MAXPROTO, (uint32_t)SSL_get_max_proto_version(ssl)) < 0 ||
	    peer_key_ciphers(h, ssl) < 0 ||
	    peer_key_trust(pc, h, ssl, peer) < 0 ||
	    peer_key_names(h, ssl) < 0 ||
	    peer_field_u32(h, K_SECLEVEL, (uint32_t)SSL_get_security_level(ssl)) < 0 ||
	    peer_key_cert(h, ssl) < 0 ||
	    peer_field_u32(h, K_LIBVER, OPENSSL_VERSION_MAJOR) < 0 ||
	    !EVP_DigestFinal_ex(h, md, &mdlen))
		goto done;
	memcpy(key, md, SESSDB_SSL_PEER_KEY_LEN);
	rc = 0;
done:
	EVP_MD_CTX_free(h);
	ERR_pop_to_mark();
	return rc;
}

/* sessdb_ssl_peer_key - the peer key of ssl's connection to peer. */
int
sessdb_ssl_peer_key(SSL *ssl, const struct sessdb_ssl_peer *peer,
    unsigned char key[SESSDB_SSL_PEER_KEY_LEN])
{
	return peer_key(NULL, ssl, peer, key);
}

/* peer_payload - the header naming the peer, then the DER of sess. */
int
peer_payload(const char *host, unsigned port, const char *sni, int kind,
    SSL_SESSION *sess, unsigned char **out, size_t *out_len)
{
	size_t hl = strlen(host), sl = strlen(sni), hdr, len;
	unsigned char *der, *p;
	size_t der_len;

	if (hl == 0 || hl > PEER_HOST_MAX || sl > PEER_HOST_MAX ||
	    sessdb_ssl_encode(sess, &der, &der_len) < 0)
		return -1;
	hdr = PEER_HDR_FIXED + hl + sl;
	len = hdr + der_len;
	if (len > SESSDB_PAYLOAD_MAX || (p = malloc(len)) == NULL) {
		sessdb_ssl_der_free(der, der_len);
		return -1;
	}
	p[0] = PEER_HDR_VERSION;
	p[1] = (unsigned char)kind;
	p[2] = (unsigned char)(port >> 8);
	p[3] = (unsigned char)port;
	p[4] = (unsigned char)hl;
	p[5] = (unsigned char)sl;
	memcpy(p + PEER_HDR_FIXED, host, hl);
	memcpy(p + PEER_HDR_FIXED + hl, sni, sl);
	memcpy(p + hdr, der, der_len);
	sessdb_ssl_der_free(der, der_len);
	*out = p;
	*out_len = len;
	return 0;
}

/* sessdb_ssl_client_decode - peer header and session of a client payload. */
SSL_SESSION *
sessdb_ssl_client_decode(const void *payload, size_t len,
    struct sessdb_ssl_client_info *info, const char **why)
{
	const unsigned char *p = payload;
	struct sessdb_ssl_client_info tmp;
	SSL_SESSION *sess;
	size_t hl, sl;

	if (info == NULL)
		info = &tmp;
	if (p == NULL || len < PEER_HDR_FIXED || p[0] != PEER_HDR_VERSION) {
		if (why != NULL)
			*why = "not a client record (peer header version)";
		return NULL;
	}
	hl = p[4];
	sl = p[5];
	if ((p[1] != PEER_KIND_REUSE && p[1] != PEER_KIND_ONCE) || hl == 0 ||
	    len < PEER_HDR_FIXED + hl + sl ||
	    memchr(p + PEER_HDR_FIXED, '\0', hl + sl) != NULL ||
	    (p[2] == 0 && p[3] == 0)) {
		if (why != NULL)
			*why = "malformed peer header of a client record";
		return NULL;
	}
	memset(info, 0, sizeof(*info));
	info->single_use = p[1] == PEER_KIND_ONCE;
	info->port = (unsigned)p[2] << 8 | p[3];
	memcpy(info->host, p + PEER_HDR_FIXED, hl);
	memcpy(info->sni, p + PEER_HDR_FIXED + hl, sl);
	sess = sessdb_ssl_decode(p + PEER_HDR_FIXED + hl + sl,
	    len - PEER_HDR_FIXED - hl - sl, NULL, 0, why);
	if (sess != NULL && info->single_use !=
	    (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION)) {
		SSL_SESSION_free(sess);
		if (why != NULL)
			*why = "client record kind does not match its protocol";
		return NULL;
	}
	return sess;
}


/* peer_cache_init - an empty cache; 0 or -1. */
int
peer_cache_init(struct peer_cache *pc)
{
	memset(pc, 0, sizeof(*pc));
	return pthread_mutex_init(&pc->mu, NULL) == 0 ? 0 : -1;
}

/* peer_cache_free - release the cached paths. */
void
peer_cache_free(struct peer_cache *pc)
{
	peer_fp_clear(&pc->file);
	peer_fp_clear(&pc->dir);
	pthread_mutex_destroy(&pc->mu);
}
