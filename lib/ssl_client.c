/*
 * NAME
 *	ssl_client.c - OpenSSL client sessions shared through a sessdb store
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	int sessdb_ssl_attach_client(SSL_CTX *ctx, struct sessdb *db,
 *	    unsigned flags);
 *	int sessdb_ssl_detach_client(SSL_CTX *ctx);
 *	int sessdb_ssl_client_peer(SSL *ssl,
 *	    const struct sessdb_ssl_peer *peer);
 *	int sessdb_ssl_peer_key(SSL *ssl, const struct sessdb_ssl_peer *peer,
 *	    unsigned char key[SESSDB_SSL_PEER_KEY_LEN]);
 *	int sessdb_ssl_client_stats(const SSL_CTX *ctx,
 *	    struct sessdb_ssl_client_stats *st);
 *	SSL_SESSION *sessdb_ssl_client_decode(const void *payload,
 *	    size_t len, struct sessdb_ssl_client_info *info,
 *	    const char **why);
 *
 * DESCRIPTION
 *	The client side of the glue: the processes of a TLS client (mail
 *	relays, crawlers, proxies to their upstreams) resume each other's
 *	sessions.  A server's session is stored under SESSDB_NS_CLIENT and
 *	an identifier made of the peer key (a digest of everything that
 *	must match for a resumption to be safe: sessdb_ssl_peer_key) and a
 *	slot byte.  Slot 0 holds the one reusable session of a peer (TLS
 *	1.2: offered by every connection until it expires); slots 1..7
 *	hold TLS 1.3 tickets, each taken (read and deleted under one lock)
 *	by the one connection that uses it, as RFC 8446 and OpenSSL advise.
 *	A server sends several tickets per handshake (OpenSSL 2 by
 *	default), so several processes can each take one.  GDBM has no
 *	prefix scan: a fixed, small number of slots keeps a lookup to at
 *	most eight exact-key operations.
 *
 *	The payload starts with a peer header (docs/FORMAT.md, namespace
 *	'C') naming host, port and SNI, so that an operator (sessdump) sees
 *	whom a record is for, and the glue checks it against the peer it
 *	looks up for: a digest collision or a planted record is refused.
 *
 *	An offered session that the server does not resume, or a fatal
 *	alert on the connection, removes the session from the store (a
 *	TLS 1.2 session only if the slot still holds the bytes that were
 *	offered; a ticket is gone already).  This is seen through an info
 *	callback set on each named SSL, which calls the application's
 *	(the SSL's own, else its SSL_CTX's) after its own work.
 *
 * DIAGNOSTICS
 *	Store failures become misses or skipped stores, counted in struct
 *	sessdb_ssl_client_stats (and logged by the store); the handshake
 *	always goes on.
 */
#include <dirent.h>
#include <errno.h>
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
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "ssl_shared.h"		/* expiry, certificate digests */

#define CLI_TAG		"sessdb client peer v1"
#define CLI_MD_LEN	SHA256_DIGEST_LENGTH
#define CLI_ID_LEN	(SESSDB_SSL_PEER_KEY_LEN + 1)
#define CLI_TICKET_SLOTS (SESSDB_SSL_PEER_SLOTS - 1)
#define CLI_HOST_MAX	255

/* The peer header of a client record's payload (docs/FORMAT.md). */
#define CLI_HDR_VERSION	1
#define CLI_KIND_REUSE	1	/* TLS 1.2 and below: reused until expiry */
#define CLI_KIND_ONCE	2	/* TLS 1.3 ticket: taken once */
#define CLI_HDR_FIXED	6	/* version, kind, port (2), host len, SNI len */

/* The fingerprint of a CA file or directory, kept while it looks unchanged. */
struct cli_fp {
	char		*path;
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec	mtime;
	unsigned char	md[CLI_MD_LEN];
};

/* Per-ctx state, in the SSL_CTX's ex_data. */
struct cli_glue {
	struct sessdb	*db;
	unsigned	flags;
	long		old_mode;
	pthread_mutex_t	mu;		/* serialises db, guards st and the caches */
	struct sessdb_ssl_client_stats st;
	struct cli_fp	file_fp;	/* last CA file */
	struct cli_fp	dir_fp;		/* last CA directory */
	unsigned	next;		/* rotates the first ticket slot tried */
};

/* Per-connection state, in the SSL's ex_data. */
struct cli_conn {
	unsigned char	id[CLI_ID_LEN];	/* peer key, then the slot byte */
	char		host[CLI_HOST_MAX + 1];
	unsigned	port;
	char		sni[CLI_HOST_MAX + 1];
	int		offered;	/* a stored session was set */
	int		offered_slot;
	unsigned char	offered_md[CLI_MD_LEN];	/* digest of its payload */
	int		settled;	/* offered session judged (kept or removed) */
	void		(*prev_info)(const SSL *, int, int);
};

static pthread_once_t cli_once = PTHREAD_ONCE_INIT;
static int cli_ctx_index = -1;		/* SSL_CTX ex_data: struct cli_glue */
static int cli_ssl_index = -1;		/* SSL ex_data: struct cli_conn */

/* cli_fp_clear - forget a cached fingerprint. */
static void
cli_fp_clear(struct cli_fp *fp)
{
	free(fp->path);
	memset(fp, 0, sizeof(*fp));
}

/* cli_ctx_free - ex_data free callback: the SSL_CTX is freed. */
static void
cli_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct cli_glue *g = ptr;

	if (g == NULL)
		return;
	cli_fp_clear(&g->file_fp);
	cli_fp_clear(&g->dir_fp);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* cli_ssl_free - ex_data free callback: the SSL is freed. */
static void
cli_ssl_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct cli_conn *c = ptr;

	if (c != NULL) {
		OPENSSL_cleanse(c, sizeof(*c));
		free(c);
	}
}

/* cli_ssl_dup - ex_data dup callback (SSL_dup): a copy names no peer yet. */
static int
cli_ssl_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d,
    int idx, long argl, void *argp)
{
	*from_d = NULL;
	return 1;
}

/* cli_index_init - our ex_data indexes, once per process. */
static void
cli_index_init(void)
{
	cli_ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
	    cli_ctx_free);
	cli_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, cli_ssl_dup,
	    cli_ssl_free);
	if (cli_ssl_index < 0)
		cli_ctx_index = -1;
}

/* cli_get - the client state attached to ctx, or NULL. */
static struct cli_glue *
cli_get(const SSL_CTX *ctx)
{
	if (ctx == NULL || pthread_once(&cli_once, cli_index_init) != 0 ||
	    cli_ctx_index < 0)
		return NULL;
	return SSL_CTX_get_ex_data(ctx, cli_ctx_index);
}

/* cli_conn_of - the connection state of ssl, or NULL. */
static struct cli_conn *
cli_conn_of(const SSL *ssl)
{
	if (cli_ssl_index < 0)
		return NULL;
	return SSL_get_ex_data(ssl, cli_ssl_index);
}

/* cli_count - add one to counter c of g under g's mutex. */
static void
cli_count(struct cli_glue *g, uint64_t *c)
{
	if (pthread_mutex_lock(&g->mu) != 0)
		return;
	(*c)++;
	pthread_mutex_unlock(&g->mu);
}

/* cli_field - feed one tagged, length-prefixed field to the digest, so
 * that no two different settings can produce the same input. */
static int
cli_field(EVP_MD_CTX *md, unsigned tag, const void *p, size_t len)
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

/* cli_field_u32 - one field holding a 32-bit number, big-endian. */
static int
cli_field_u32(EVP_MD_CTX *md, unsigned tag, uint64_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
	    (unsigned char)(v >> 8), (unsigned char)v };

	return cli_field(md, tag, b, sizeof(b));
}

/* cli_file_md - SHA-256 of the file at path (symbolic links followed:
 * CA bundles often are links); 0 or -1. */
static int
cli_file_md(const char *path, unsigned char *md)
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

/* cli_name_cmp - qsort comparator for directory entry names. */
static int
cli_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * cli_dir_md - SHA-256 over the names and contents of the regular files in
 *	dir, sorted by name (hidden files skipped); 0 or -1.
 */
static int
cli_dir_md(const char *dir, unsigned char *md)
{
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	struct stat st;
	unsigned char fmd[CLI_MD_LEN];
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
	qsort(names, n, sizeof(*names), cli_name_cmp);
	if ((h = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
		goto done;
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    names[i]) >= sizeof(path))
			goto done;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (cli_file_md(path, fmd) < 0 ||
		    cli_field(h, 1, names[i], strlen(names[i])) < 0 ||
		    cli_field(h, 2, fmd, sizeof(fmd)) < 0)
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
 * cli_fingerprint - the digest of a CA file (dir == 0) or directory,
 *	from g's cache while its inode, size and mtime are unchanged (a
 *	directory's mtime changes when files are added, removed or renamed,
 *	as c_rehash does), else computed again.  g may be NULL (no cache).
 */
static int
cli_fingerprint(struct cli_glue *g, const char *path, int dir,
    unsigned char *md)
{
	struct cli_fp *fp = NULL;
	struct stat st;
	int rc;

	if (stat(path, &st) < 0 || (dir ? !S_ISDIR(st.st_mode) :
	    !S_ISREG(st.st_mode)))
		return -1;
	if (g != NULL && pthread_mutex_lock(&g->mu) == 0) {
		fp = dir ? &g->dir_fp : &g->file_fp;
		if (fp->path != NULL && strcmp(fp->path, path) == 0 &&
		    fp->dev == st.st_dev && fp->ino == st.st_ino &&
		    fp->size == st.st_size &&
		    fp->mtime.tv_sec == st.st_mtim.tv_sec &&
		    fp->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			memcpy(md, fp->md, CLI_MD_LEN);
			pthread_mutex_unlock(&g->mu);
			return 0;
		}
		pthread_mutex_unlock(&g->mu);
	}
	rc = dir ? cli_dir_md(path, md) : cli_file_md(path, md);
	if (rc < 0 || fp == NULL || pthread_mutex_lock(&g->mu) != 0)
		return rc;
	cli_fp_clear(fp);
	if ((fp->path = strdup(path)) != NULL) {
		fp->dev = st.st_dev;
		fp->ino = st.st_ino;
		fp->size = st.st_size;
		fp->mtime = st.st_mtim;
		memcpy(fp->md, md, CLI_MD_LEN);
	}
	pthread_mutex_unlock(&g->mu);
	return 0;
}

/* cli_md_cmp - qsort comparator for digests. */
static int
cli_md_cmp(const void *a, const void *b)
{
	return memcmp(a, b, CLI_MD_LEN);
}

/*
 * cli_store_md - SHA-256 over the sorted digests of the certificates and
 *	CRLs in store (order of loading does not matter); 0 or -1.
 */
static int
cli_store_md(X509_STORE *store, unsigned char *md)
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
	if (n > 0 && (mds = malloc((size_t)n * CLI_MD_LEN)) == NULL)
		goto done;
	for (i = 0; i < n; i++) {
		X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
		X509 *x = X509_OBJECT_get0_X509(o);
		X509_CRL *crl = X509_OBJECT_get0_X509_CRL(o);

		if (x != NULL) {
			if (!X509_digest(x, EVP_sha256(), mds + k * CLI_MD_LEN,
			    &mdlen))
				goto done;
		} else if (crl != NULL) {
			if (!X509_CRL_digest(crl, EVP_sha256(),
			    mds + k * CLI_MD_LEN, &mdlen))
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
			qsort(mds, (size_t)k, CLI_MD_LEN, cli_md_cmp);
		SHA256(mds != NULL ? mds : (const unsigned char *)"",
		    (size_t)k * CLI_MD_LEN, md);
	}
	free(mds);
	return rc;
}

/* cli_has_client_cert - whether ssl may authenticate with a certificate. */
static int
cli_has_client_cert(SSL *ssl)
{
	return SSL_get_certificate(ssl) != NULL ||
	    SSL_CTX_get_client_cert_cb(SSL_get_SSL_CTX(ssl)) != NULL;
}

/* cli_peer_ok - whether peer names a peer we can key and store. */
static int
cli_peer_ok(const struct sessdb_ssl_peer *peer)
{
	size_t hl, sl;

	if (peer == NULL || peer->host == NULL || peer->port == 0 ||
	    peer->port > 65535)
		return 0;
	hl = strlen(peer->host);
	sl = peer->sni != NULL ? strlen(peer->sni) : 0;
	if (hl == 0 || hl > CLI_HOST_MAX || sl > CLI_HOST_MAX ||
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
 * cli_key_names - the names the server's certificate is checked against
 *	(SSL_set1_host and friends): a session verified for one name must
 *	not be resumed by a connection that wants another, since resumption
 *	does not verify again.
 */
static int
cli_key_names(EVP_MD_CTX *h, SSL *ssl)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	const char *name;
	char *ip;
	int i, rc;

	if (vp == NULL)
		return 0;
	for (i = 0; (name = X509_VERIFY_PARAM_get0_host(vp, i)) != NULL; i++)
		if (cli_field(h, K_VNAME, name, strlen(name)) < 0)
			return -1;
	if ((name = X509_VERIFY_PARAM_get0_email(vp)) != NULL &&
	    cli_field(h, K_VEMAIL, name, strlen(name)) < 0)
		return -1;
	if ((ip = X509_VERIFY_PARAM_get1_ip_asc(vp)) != NULL) {
		rc = cli_field(h, K_VIP, ip, strlen(ip));
		OPENSSL_free(ip);
		if (rc < 0)
			return -1;
	}
	return cli_field_u32(h, K_VHFLAGS, X509_VERIFY_PARAM_get_hostflags(vp));
}

/* cli_key_trust - the trust settings' fields of the peer key. */
static int
cli_key_trust(struct cli_glue *g, EVP_MD_CTX *h, SSL *ssl,
    const struct sessdb_ssl_peer *peer)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	X509_STORE *store = NULL;
	unsigned char md[CLI_MD_LEN];

	if (cli_field_u32(h, K_VMODE, (uint32_t)SSL_get_verify_mode(ssl)) < 0 ||
	    cli_field_u32(h, K_VDEPTH, (uint32_t)SSL_get_verify_depth(ssl)) < 0 ||
	    cli_field_u32(h, K_VFLAGS, vp != NULL ?
	    (uint32_t)X509_VERIFY_PARAM_get_flags(vp) : 0) < 0)
		return -1;
	if (peer->trust != NULL &&
	    cli_field(h, K_TRUST, peer->trust, strlen(peer->trust)) < 0)
		return -1;
	if (peer->ca_file != NULL &&
	    (cli_fingerprint(g, peer->ca_file, 0, md) < 0 ||
	    cli_field(h, K_CAFILE, md, sizeof(md)) < 0))
		return -1;
	if (peer->ca_dir != NULL &&
	    (cli_fingerprint(g, peer->ca_dir, 1, md) < 0 ||
	    cli_field(h, K_CADIR, md, sizeof(md)) < 0))
		return -1;
	if (peer->ca_file != NULL || peer->ca_dir != NULL)
		return 0;
	/* Nothing named: what the verify store holds now. */
	if (!SSL_get0_verify_cert_store(ssl, &store) || store == NULL)
		store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
	if (cli_store_md(store, md) < 0)
		return -1;
	return cli_field(h, K_STORE, md, sizeof(md));
}

/* cli_key_ciphers - the cipher list (TLS 1.3 suites included) by ID. */
static int
cli_key_ciphers(EVP_MD_CTX *h, SSL *ssl)
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
	rc = cli_field(h, K_CIPHERS, ids, (size_t)n * 4);
	free(ids);
	return rc;
}

/* cli_key_cert - the client certificate (or none) and its callback. */
static int
cli_key_cert(EVP_MD_CTX *h, SSL *ssl)
{
	X509 *cert = SSL_get_certificate(ssl);
	unsigned char md[CLI_MD_LEN];

	if (cert != NULL) {
		if (ssl_shared_certs_digest(&cert, 1, md) < 0 ||
		    cli_field(h, K_CERT, md, sizeof(md)) < 0)
			return -1;
	} else if (cli_field(h, K_CERT, NULL, 0) < 0)
		return -1;
	return cli_field_u32(h, K_CERTCB,
	    SSL_CTX_get_client_cert_cb(SSL_get_SSL_CTX(ssl)) != NULL);
}

/* cli_peer_key - the peer key, with g's fingerprint caches (g may be NULL). */
static int
cli_peer_key(struct cli_glue *g, SSL *ssl, const struct sessdb_ssl_peer *peer,
    unsigned char *key)
{
	unsigned char md[EVP_MAX_MD_SIZE], port[2];
	unsigned int mdlen;
	EVP_MD_CTX *h;
	int rc = -1;

	if (ssl == NULL || key == NULL || !cli_peer_ok(peer))
		return -1;
	port[0] = (unsigned char)(peer->port >> 8);
	port[1] = (unsigned char)peer->port;
	ERR_set_mark();
	if ((h = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(h, CLI_TAG, sizeof(CLI_TAG)) ||
	    cli_field(h, K_HOST, peer->host, strlen(peer->host)) < 0 ||
	    cli_field(h, K_PORT, port, 2) < 0 ||
	    cli_field(h, K_SNI, peer->sni, peer->sni ? strlen(peer->sni) : 0) < 0 ||
	    cli_field(h, K_ALPN, peer->alpn, peer->alpn ? peer->alpn_len : 0) < 0 ||
	    cli_field_u32(h, K_MINPROTO, (uint32_t)SSL_get_min_proto_version(ssl)) < 0 ||
	    cli_field_u32(h, K_MAXPROTO, (uint32_t)SSL_get_max_proto_version(ssl)) < 0 ||
	    cli_key_ciphers(h, ssl) < 0 ||
	    cli_key_trust(g, h, ssl, peer) < 0 ||
	    cli_key_names(h, ssl) < 0 ||
	    cli_field_u32(h, K_SECLEVEL, (uint32_t)SSL_get_security_level(ssl)) < 0 ||
	    cli_key_cert(h, ssl) < 0 ||
	    cli_field_u32(h, K_LIBVER, OPENSSL_VERSION_MAJOR) < 0 ||
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
	return cli_peer_key(NULL, ssl, peer, key);
}

/*
 * cli_payload - the record payload of sess for connection c: the peer
 *	header, then the DER.  *out is malloc'ed (wipe it: the DER holds
 *	the master secret).  0 or -1.
 */
static int
cli_payload(const struct cli_conn *c, SSL_SESSION *sess, int kind,
    unsigned char **out, size_t *out_len)
{
	size_t hl = strlen(c->host), sl = strlen(c->sni), hdr, len;
	unsigned char *der, *p;
	size_t der_len;

	if (sessdb_ssl_encode(sess, &der, &der_len) < 0)
		return -1;
	hdr = CLI_HDR_FIXED + hl + sl;
	len = hdr + der_len;
	if (len > SESSDB_PAYLOAD_MAX || (p = malloc(len)) == NULL) {
		sessdb_ssl_der_free(der, der_len);
		return -1;
	}
	p[0] = CLI_HDR_VERSION;
	p[1] = (unsigned char)kind;
	p[2] = (unsigned char)(c->port >> 8);
	p[3] = (unsigned char)c->port;
	p[4] = (unsigned char)hl;
	p[5] = (unsigned char)sl;
	memcpy(p + CLI_HDR_FIXED, c->host, hl);
	memcpy(p + CLI_HDR_FIXED + hl, c->sni, sl);
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
	if (p == NULL || len < CLI_HDR_FIXED || p[0] != CLI_HDR_VERSION) {
		if (why != NULL)
			*why = "not a client record (peer header version)";
		return NULL;
	}
	hl = p[4];
	sl = p[5];
	if ((p[1] != CLI_KIND_REUSE && p[1] != CLI_KIND_ONCE) || hl == 0 ||
	    len < CLI_HDR_FIXED + hl + sl ||
	    memchr(p + CLI_HDR_FIXED, '\0', hl + sl) != NULL ||
	    (p[2] == 0 && p[3] == 0)) {
		if (why != NULL)
			*why = "malformed peer header of a client record";
		return NULL;
	}
	memset(info, 0, sizeof(*info));
	info->single_use = p[1] == CLI_KIND_ONCE;
	info->port = (unsigned)p[2] << 8 | p[3];
	memcpy(info->host, p + CLI_HDR_FIXED, hl);
	memcpy(info->sni, p + CLI_HDR_FIXED + hl, sl);
	sess = sessdb_ssl_decode(p + CLI_HDR_FIXED + hl + sl,
	    len - CLI_HDR_FIXED - hl - sl, NULL, 0, why);
	if (sess != NULL && info->single_use !=
	    (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION)) {
		SSL_SESSION_free(sess);
		if (why != NULL)
			*why = "client record kind does not match its protocol";
		return NULL;
	}
	return sess;
}

/* cli_slot_id - c's record identifier for slot. */
static const unsigned char *
cli_slot_id(struct cli_conn *c, int slot)
{
	c->id[SESSDB_SSL_PEER_KEY_LEN] = (unsigned char)slot;
	return c->id;
}

/*
 * cli_accept - decode a fetched payload for c: the session if it names c's
 *	peer, is of the kind its slot holds, and can be resumed; NULL (the
 *	record is unusable) otherwise.
 */
static SSL_SESSION *
cli_accept(struct cli_conn *c, int slot, const void *data, size_t len)
{
	struct sessdb_ssl_client_info info;
	SSL_SESSION *sess;

	sess = sessdb_ssl_client_decode(data, len, &info, NULL);
	if (sess == NULL)
		return NULL;
	if (info.single_use != (slot != 0) || info.port != c->port ||
	    strcmp(info.host, c->host) != 0 || strcmp(info.sni, c->sni) != 0 ||
	    !SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_free(sess);
		return NULL;
	}
	return sess;
}

/* cli_fetch - get (slot 0) or take (a ticket slot) c's record in slot and
 * decode it; the session, or NULL.  Unusable records are removed. */
static SSL_SESSION *
cli_fetch(struct cli_glue *g, struct cli_conn *c, int slot)
{
	SSL_SESSION *sess = NULL;
	void *data = NULL;
	size_t len = 0;
	int rc;

	if (pthread_mutex_lock(&g->mu) != 0)
		return NULL;
	if (slot == 0)
		rc = sessdb_get(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, &data, &len, NULL);
	else
		rc = sessdb_take(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, &data, &len, NULL);
	if (rc == SESSDB_OK) {
		if ((sess = cli_accept(c, slot, data, len)) == NULL) {
			g->st.rejected++;
			if (slot == 0)
				(void)sessdb_delete(g->db, SESSDB_NS_CLIENT,
				    cli_slot_id(c, slot), CLI_ID_LEN);
		} else {
			c->offered_slot = slot;
			SHA256(data, len, c->offered_md);
		}
	}
	pthread_mutex_unlock(&g->mu);
	if (data != NULL)
		OPENSSL_cleanse(data, len);
	sessdb_free(data);
	return sess;
}

/*
 * cli_lookup - a stored session for c: the reusable one (slot 0) if there
 *	is one, else a ticket taken from the first ticket slot that holds
 *	one, starting at a rotating slot so that processes looking up at
 *	the same time tend to take different tickets.
 */
static SSL_SESSION *
cli_lookup(struct cli_glue *g, struct cli_conn *c)
{
	SSL_SESSION *sess;
	unsigned start;
	int i;

	if ((sess = cli_fetch(g, c, 0)) != NULL)
		return sess;
	if (pthread_mutex_lock(&g->mu) != 0)
		return NULL;
	start = g->next++;
	pthread_mutex_unlock(&g->mu);
	for (i = 0; i < CLI_TICKET_SLOTS; i++)
		if ((sess = cli_fetch(g, c, 1 + (int)((start + (unsigned)i) %
		    CLI_TICKET_SLOTS))) != NULL)
			return sess;
	return NULL;
}

/*
 * cli_forget - the server did not resume the session c offered (or an
 *	alert ended the connection): remove it.  A reusable session is
 *	deleted only if its slot still holds the bytes offered (another
 *	process may have stored a fresh one meanwhile); a ticket was taken.
 */
static void
cli_forget(struct cli_glue *g, struct cli_conn *c)
{
	unsigned char md[CLI_MD_LEN];
	void *data = NULL;
	size_t len = 0;

	if (pthread_mutex_lock(&g->mu) != 0)
		return;
	g->st.refused++;
	if (c->offered_slot == 0 &&
	    sessdb_get(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, 0), CLI_ID_LEN,
	    &data, &len, NULL) == SESSDB_OK) {
		SHA256(data, len, md);
		if (CRYPTO_memcmp(md, c->offered_md, sizeof(md)) == 0)
			(void)sessdb_delete(g->db, SESSDB_NS_CLIENT,
			    cli_slot_id(c, 0), CLI_ID_LEN);
	}
	pthread_mutex_unlock(&g->mu);
	if (data != NULL)
		OPENSSL_cleanse(data, len);
	sessdb_free(data);
}

/*
 * cli_info_cb - the info callback set on each named SSL: judge the offered
 *	session at the end of the handshake (not resumed: refused) or at a
 *	fatal alert, then call the application's callback.
 */
static void
cli_info_cb(const SSL *ssl, int where, int ret)
{
	struct cli_conn *c = cli_conn_of(ssl);
	struct cli_glue *g = cli_get(SSL_get_SSL_CTX(ssl));
	void (*cb)(const SSL *, int, int) = NULL;
	int fatal = (where & SSL_CB_ALERT) && (ret >> 8) == SSL3_AL_FATAL;

	if (c == NULL)
		return;
	if (g != NULL && c->offered && !c->settled &&
	    ((where & SSL_CB_HANDSHAKE_DONE) || fatal)) {
		c->settled = 1;
		if (fatal || !SSL_session_reused(ssl))
			cli_forget(g, c);
	}
	cb = c->prev_info;
	if (cb == NULL)
		cb = SSL_CTX_get_info_callback(SSL_get_SSL_CTX(ssl));
	if (cb != NULL && cb != cli_info_cb)
		cb(ssl, where, ret);
}

/*
 * cli_ticket_slot - the ticket slot to store a new ticket of c in: the
 *	first empty one (from a rotating start), else the one that expires
 *	first.  Called with g's mutex held.
 */
static int
cli_ticket_slot(struct cli_glue *g, struct cli_conn *c)
{
	struct sessdb_meta meta;
	int64_t oldest = INT64_MAX;
	unsigned start = g->next++;
	void *data;
	size_t len;
	int i, slot, pick = 1, rc;

	for (i = 0; i < CLI_TICKET_SLOTS; i++) {
		slot = 1 + (int)((start + (unsigned)i) % CLI_TICKET_SLOTS);
		data = NULL;
		rc = sessdb_get(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, &data, &len, &meta);
		if (data != NULL)
			OPENSSL_cleanse(data, len);
		sessdb_free(data);
		if (rc != SESSDB_OK)
			return slot;	/* empty (or unreadable: reuse it) */
		if (meta.expires < oldest) {
			oldest = meta.expires;
			pick = slot;
		}
	}
	return pick;
}

/*
 * cli_new_cb - OpenSSL's new-session callback (client mode): store sess
 *	for the peer its SSL named, a ticket in a ticket slot, a reusable
 *	session in slot 0.  Returns 0: OpenSSL keeps its reference.
 */
static int
cli_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct cli_glue *g = cli_get(SSL_get_SSL_CTX(ssl));
	struct cli_conn *c = cli_conn_of(ssl);
	unsigned char *payload;
	size_t len;
	int once, slot, rc;

	if (g == NULL)
		return 0;
	/* (The session's own host name cannot be checked against c's SNI:
	   a client notes it only when the server acknowledges it.) */
	if (c == NULL || !SSL_SESSION_is_resumable(sess) ||
	    (cli_has_client_cert(ssl) &&
	    !(g->flags & SESSDB_SSL_SHARE_CLIENT_CERT))) {
		cli_count(g, &g->st.skipped);
		return 0;
	}
	once = SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION;
	if (cli_payload(c, sess, once ? CLI_KIND_ONCE : CLI_KIND_REUSE,
	    &payload, &len) < 0) {
		cli_count(g, &g->st.store_failures);
		return 0;
	}
	if (pthread_mutex_lock(&g->mu) == 0) {
		slot = once ? cli_ticket_slot(g, c) : 0;
		rc = sessdb_put(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, payload, len, ssl_shared_expires(sess));
		if (rc == SESSDB_OK)
			g->st.stores++;
		else
			g->st.store_failures++;
		pthread_mutex_unlock(&g->mu);
	}
	OPENSSL_cleanse(payload, len);
	free(payload);
	return 0;
}

/* sessdb_ssl_client_peer - name ssl's peer; offer a stored session. */
int
sessdb_ssl_client_peer(SSL *ssl, const struct sessdb_ssl_peer *peer)
{
	struct cli_glue *g;
	struct cli_conn *c;
	SSL_SESSION *sess;
	void (*prev)(const SSL *, int, int);

	if (ssl == NULL || (g = cli_get(SSL_get_SSL_CTX(ssl))) == NULL ||
	    !cli_peer_ok(peer) || cli_conn_of(ssl) != NULL)
		return -1;
	if ((peer->sni != NULL && !SSL_set_tlsext_host_name(ssl, peer->sni)) ||
	    (peer->alpn != NULL &&
	    SSL_set_alpn_protos(ssl, peer->alpn, (unsigned)peer->alpn_len) != 0))
		return -1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	if (cli_peer_key(g, ssl, peer, c->id) < 0 ||
	    !SSL_set_ex_data(ssl, cli_ssl_index, c)) {
		free(c);
		return -1;
	}
	strcpy(c->host, peer->host);	/* lengths checked by cli_peer_ok */
	if (peer->sni != NULL)
		strcpy(c->sni, peer->sni);
	c->port = peer->port;
	prev = SSL_get_info_callback(ssl);
	c->prev_info = prev == cli_info_cb ? NULL : prev;
	SSL_set_info_callback(ssl, cli_info_cb);
	cli_count(g, &g->st.lookups);
	if (cli_has_client_cert(ssl) &&
	    !(g->flags & SESSDB_SSL_SHARE_CLIENT_CERT)) {
		cli_count(g, &g->st.misses);
		return 0;
	}
	if ((sess = cli_lookup(g, c)) == NULL) {
		cli_count(g, &g->st.misses);
		return 0;
	}
	if (!SSL_set_session(ssl, sess)) {
		SSL_SESSION_free(sess);
		cli_count(g, &g->st.misses);
		return 0;
	}
	SSL_SESSION_free(sess);		/* the SSL holds its own reference */
	c->offered = 1;
	cli_count(g, &g->st.hits);
	if (c->offered_slot != 0)
		cli_count(g, &g->st.taken);
	return 1;
}

/* cli_is_server_only - whether ctx was made with a server-only method. */
static int
cli_is_server_only(const SSL_CTX *ctx)
{
	const SSL_METHOD *m = SSL_CTX_get_ssl_method(ctx);

	return m == TLS_server_method() || m == DTLS_server_method();
}

/* sessdb_ssl_attach_client - wire db into ctx's client session cache. */
int
sessdb_ssl_attach_client(SSL_CTX *ctx, struct sessdb *db, unsigned flags)
{
	struct cli_glue *g;

	if (ctx == NULL || db == NULL || (flags & ~SESSDB_SSL_SHARE_CLIENT_CERT) ||
	    cli_is_server_only(ctx))
		return -1;
	if (pthread_once(&cli_once, cli_index_init) != 0 || cli_ctx_index < 0)
		return -1;
	if ((g = SSL_CTX_get_ex_data(ctx, cli_ctx_index)) != NULL) {
		g->db = db;
		g->flags = flags;
	} else {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return -1;
		if (pthread_mutex_init(&g->mu, NULL) != 0) {
			free(g);
			return -1;
		}
		g->db = db;
		g->flags = flags;
		g->old_mode = SSL_CTX_get_session_cache_mode(ctx);
		/* Random, not the pid: lanes forked one after the other have
		   consecutive pids, and would store their tickets in
		   neighbouring slots, colliding more often. */
		if (RAND_bytes((unsigned char *)&g->next, sizeof(g->next)) != 1)
			g->next = (unsigned)getpid() * 2654435761u;
		if (!SSL_CTX_set_ex_data(ctx, cli_ctx_index, g)) {
			cli_ctx_free(NULL, g, NULL, 0, 0, NULL);
			return -1;
		}
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, cli_new_cb);
	return 0;
}

/* sessdb_ssl_detach_client - remove the callback and state. */
int
sessdb_ssl_detach_client(SSL_CTX *ctx)
{
	struct cli_glue *g;

	if (ctx == NULL || (g = cli_get(ctx)) == NULL)
		return -1;
	SSL_CTX_sess_set_new_cb(ctx, NULL);
	SSL_CTX_set_session_cache_mode(ctx, g->old_mode);
	SSL_CTX_set_ex_data(ctx, cli_ctx_index, NULL);
	cli_ctx_free(NULL, g, NULL, 0, 0, NULL);
	return 0;
}

/* sessdb_ssl_client_stats - copy ctx's client counters. */
int
sessdb_ssl_client_stats(const SSL_CTX *ctx, struct sessdb_ssl_client_stats *st)
{
	struct cli_glue *g;

	if (st == NULL || (g = cli_get(ctx)) == NULL ||
	    pthread_mutex_lock(&g->mu) != 0)
		return -1;
	*st = g->st;
	pthread_mutex_unlock(&g->mu);
	return 0;
}
