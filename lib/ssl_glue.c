/*
 * NAME
 *	ssl_glue.c - OpenSSL server session cache callbacks over a sessdb store
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	int sessdb_ssl_attach(SSL_CTX *ctx, struct sessdb *db, unsigned flags);
 *	int sessdb_ssl_detach(SSL_CTX *ctx);
 *	int sessdb_ssl_stats(const SSL_CTX *ctx, struct sessdb_ssl_stats *st);
 *
 * DESCRIPTION
 *	With ssl_der.c, the only part of libsessdb that knows OpenSSL
 *	objects.  Sessions become DER and back through ssl_der.c
 *	(sessdb_ssl_put, sessdb_ssl_decode: the same code sessdump uses),
 *	outside any store lock, keyed by SESSDB_NS_SERVER and the session
 *	ID; what is added here is the server identity.  See sessdb_ssl.h for what attach changes on ctx and
 *	docs/ARCHITECTURE.md for why.
 *
 *	Server identity: every stored session carries, in its ticket appdata
 *	(a field i2d_SSL_SESSION serialises), a digest of the certificates of
 *	the attached SSL_CTX and of the session's session-ID context; a
 *	lookup whose record carries another digest is refused before OpenSSL
 *	sees the session (docs/GLUE.md, "Server identity").  The digest of
 *	the certificates is taken from each new SSL (the ex_data new
 *	callback), whose certificate set is a private copy of the ctx's.
 *
 *	Ownership of session references (OpenSSL's rules):
 *	- new callback: OpenSSL takes a reference for us before the call; we
 *	  return 0, so OpenSSL drops it again.  We keep nothing.
 *	- get callback: we return a fresh session from d2i (one reference)
 *	  and set *copy = 0, so OpenSSL takes over that reference instead of
 *	  adding another one.
 *	- remove callback: the session is borrowed for the call.
 *
 * DIAGNOSTICS
 *	Store failures (lock timeouts, errors, a full store) are logged by
 *	the store through its log callback; here they only become a cache
 *	miss or a skipped store, counted in struct sessdb_ssl_stats.  The
 *	handshake always continues.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "ssl_shared.h"	/* expiry, certificate digests */
#include "diag.h"	/* diag_log: glue events go to the
				   application's store log callback */

/*
 * The identity mark in a stored session's ticket appdata: GLUE_ID_MAGIC,
 * then the SHA-256 identity digest, then the application's own appdata
 * (if any), unchanged.  The mark is removed again before OpenSSL gets a
 * session, so the application never sees it.
 */
#define GLUE_ID_MAGIC		"sessdb\0\1"	/* tag, version 1 */
#define GLUE_ID_MAGIC_LEN	8
#define GLUE_ID_LEN		SHA256_DIGEST_LENGTH
#define GLUE_ID_MARK_LEN	(GLUE_ID_MAGIC_LEN + GLUE_ID_LEN)
#define GLUE_ID_TAG		"sessdb server identity v1"
#define GLUE_CERTS_MAX		SSL_SHARED_CERTS_MAX

/* Per-ctx state, kept in the SSL_CTX's ex_data. */
struct glue {
	struct sessdb		*db;
	unsigned		flags;
	long			old_mode;	/* cache mode before attach */
	pthread_mutex_t		mu;		/* serialises use of db, guards st
						   and the warned_ flags */
	int			warned_sid_ctx;	/* logged the missing sid_ctx */
	int			warned_no_cert;	/* logged the missing certificate */
	int			warned_foreign;	/* logged a foreign session */
	struct sessdb_ssl_stats	st;

	/* The certificates the identity covers (held references: a pointer
	   can then not be reused by another certificate while cached), and
	   the digest over them.  Guarded by idmu, not mu: SSL_new must not
	   wait for a store operation. */
	pthread_mutex_t		idmu;
	X509			*id_certs[GLUE_CERTS_MAX];
	int			id_ncerts;	/* -1: not known yet; 0: none */
	unsigned char		id_certs_md[GLUE_ID_LEN];
	uint64_t		id_gen;		/* bumped when the certificates
						   change */
	/* The last identity computed, for one session-ID context: a ctx
	   nearly always has just one, and fetching SHA-256 costs OpenSSL 3
	   several times the hashing itself. */
	int			id_cached;
	unsigned char		id_sid_ctx[SSL_MAX_SID_CTX_LENGTH];
	unsigned int		id_sid_ctx_len;
	unsigned char		id_md[GLUE_ID_LEN];
};

static pthread_once_t glue_once = PTHREAD_ONCE_INIT;
static int glue_index = -1;		/* SSL_CTX ex_data: struct glue */
static int glue_taken_index = -1;	/* SSL_SESSION ex_data: itself, when
					   its record was taken */
static int glue_ssl_index = -1;		/* SSL ex_data: the SSL_CTX whose
					   session cache it uses */

/* glue_ex_free - ex_data free callback: runs when the SSL_CTX is freed. */
static void
glue_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct glue *g = ptr;
	int i;

	if (g == NULL)
		return;
	for (i = 0; i < g->id_ncerts; i++)
		X509_free(g->id_certs[i]);
	pthread_mutex_destroy(&g->idmu);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

static void glue_identity_update(struct glue *, SSL *);

/*
 * glue_ssl_new - ex_data new callback, run by SSL_new() for every SSL:
 *	remember the SSL_CTX it was made from.  That is the "session ctx"
 *	whose cache callbacks OpenSSL calls for this SSL even after a
 *	servername callback moved it to another SSL_CTX (SSL_set_SSL_CTX),
 *	and OpenSSL offers no getter for it.  No reference is taken: the
 *	SSL holds one on that ctx for its whole life.
 */
static void
glue_ssl_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(parent);
	struct glue *g;

	(void)CRYPTO_set_ex_data(ad, idx, ctx);
	/* An SSL of an attached ctx: its certificates are a fresh copy of
	   the ctx's, which this thread alone may walk. */
	if (ctx != NULL && glue_index >= 0 &&
	    (g = SSL_CTX_get_ex_data(ctx, glue_index)) != NULL)
		glue_identity_update(g, parent);
}

/* glue_index_init - allocate our ex_data indexes once per process. */
static void
glue_index_init(void)
{
	glue_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, glue_ex_free);
	glue_taken_index = SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL,
	    NULL);
	glue_ssl_index = SSL_get_ex_new_index(0, NULL, glue_ssl_new, NULL,
	    NULL);
	if (glue_taken_index < 0 || glue_ssl_index < 0)
		glue_index = -1;
}

/*
 * glue_session_ctx - the SSL_CTX whose session cache ssl uses: the one it
 *	was made from (SSLs made before the first attach in the process do
 *	not know it: their current SSL_CTX then).
 */
static SSL_CTX *
glue_session_ctx(SSL *ssl)
{
	SSL_CTX *ctx = NULL;

	if (glue_ssl_index >= 0)
		ctx = SSL_get_ex_data(ssl, glue_ssl_index);
	return ctx != NULL ? ctx : SSL_get_SSL_CTX(ssl);
}

/* glue_get - the state attached to ctx, or NULL. */
static struct glue *
glue_get(const SSL_CTX *ctx)
{
	if (pthread_once(&glue_once, glue_index_init) != 0 || glue_index < 0)
		return NULL;
	return SSL_CTX_get_ex_data(ctx, glue_index);
}

/*
 * glue_stateless - whether OpenSSL will resume sess from a stateless
 *	ticket, so that a store record would never be read.  This mirrors
 *	OpenSSL's choice in tls_construct_new_session_ticket(): TLS 1.3
 *	tickets are stateful (the ticket is the session ID) only with
 *	SSL_OP_NO_TICKET, or with early data under anti-replay protection.
 *	Below TLS 1.3 the callback only sees sessions with an ID (when
 *	OpenSSL issues a TLS 1.2 ticket the session gets an empty ID and is
 *	never offered to the cache), and those resume by session ID.
 */
static int
glue_stateless(SSL *ssl, SSL_SESSION *sess)
{
	uint64_t opts = SSL_get_options(ssl);

	if (SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION)
		return 0;
	if (opts & SSL_OP_NO_TICKET)
		return 0;
	if (SSL_get_max_early_data(ssl) > 0 && !(opts & SSL_OP_NO_ANTI_REPLAY))
		return 0;
	return 1;
}

/*
 * glue_ssl_certs - the certificates ssl can present (one per key type, a
 *	certificate with its private key), at most max; their number.  OpenSSL
 *	has no getter for them but its "current certificate" cursor, which
 *	this moves and puts back; called only on an SSL nobody else uses yet.
 */
static int
glue_ssl_certs(SSL *ssl, X509 **certs, int max)
{
	X509 *cur = SSL_get_certificate(ssl);
	int n = 0;

	if (cur == NULL)
		return 0;	/* nothing loaded (or a key without its cert) */
	ERR_set_mark();
	if (SSL_set_current_cert(ssl, SSL_CERT_SET_FIRST) == 1) {
		do
			certs[n++] = SSL_get_certificate(ssl);
		while (n < max &&
		    SSL_set_current_cert(ssl, SSL_CERT_SET_NEXT) == 1);
	}
	(void)SSL_select_current_cert(ssl, cur);
	ERR_pop_to_mark();
	return n;
}

/*
 * glue_identity_update - note the certificates of ssl, a new SSL of the
 *	attached ctx, as the ctx's identity.  Certificates loaded after
 *	attach, or replaced later, are seen by the next SSL_new; the digest
 *	is computed again only when the set changed.
 */
static void
glue_identity_update(struct glue *g, SSL *ssl)
{
	X509 *certs[GLUE_CERTS_MAX];
	unsigned char md[GLUE_ID_LEN];
	int i, n, same;

	n = glue_ssl_certs(ssl, certs, GLUE_CERTS_MAX);
	if (pthread_mutex_lock(&g->idmu) != 0)
		return;
	same = n == g->id_ncerts;
	for (i = 0; same && i < n; i++)
		same = certs[i] == g->id_certs[i];
	pthread_mutex_unlock(&g->idmu);
	if (same)
		return;
	ERR_set_mark();
	if (ssl_shared_certs_digest(certs, n, md) < 0)
		n = 0;		/* cannot name it: treated as no certificate */
	ERR_pop_to_mark();
	if (pthread_mutex_lock(&g->idmu) != 0)
		return;
	for (i = 0; i < g->id_ncerts; i++)
		X509_free(g->id_certs[i]);
	for (i = 0; i < n; i++) {
		X509_up_ref(certs[i]);
		g->id_certs[i] = certs[i];
	}
	g->id_ncerts = n;
	memcpy(g->id_certs_md, md, sizeof(md));
	g->id_gen++;
	g->id_cached = 0;
	pthread_mutex_unlock(&g->idmu);
}

/*
 * glue_identity - the identity digest of a session with session-ID
 *	context sid_ctx served by g's ctx: SHA-256 over a tag, the digest of
 *	the ctx's certificates and sid_ctx.  -1 when the ctx has no
 *	certificate (then no identity can be told apart from another).
 */
static int
glue_identity(struct glue *g, const unsigned char *sid_ctx,
    unsigned int sid_ctx_len, unsigned char *md)
{
	unsigned char buf[sizeof(GLUE_ID_TAG) + GLUE_ID_LEN + 1 +
	    SSL_MAX_SID_CTX_LENGTH];
	uint64_t gen;
	size_t n = 0;

	if (sid_ctx_len > SSL_MAX_SID_CTX_LENGTH ||
	    pthread_mutex_lock(&g->idmu) != 0)
		return -1;
	if (g->id_ncerts <= 0) {
		pthread_mutex_unlock(&g->idmu);
		return -1;
	}
	if (g->id_cached && g->id_sid_ctx_len == sid_ctx_len &&
	    memcmp(g->id_sid_ctx, sid_ctx, sid_ctx_len) == 0) {
		memcpy(md, g->id_md, GLUE_ID_LEN);
		pthread_mutex_unlock(&g->idmu);
		return 0;
	}
	memcpy(buf, GLUE_ID_TAG, sizeof(GLUE_ID_TAG));	/* with its NUL */
	n += sizeof(GLUE_ID_TAG);
	memcpy(buf + n, g->id_certs_md, GLUE_ID_LEN);
	n += GLUE_ID_LEN;
	gen = g->id_gen;
	pthread_mutex_unlock(&g->idmu);
	buf[n++] = (unsigned char)sid_ctx_len;
	memcpy(buf + n, sid_ctx, sid_ctx_len);
	n += sid_ctx_len;
	SHA256(buf, n, md);
	if (pthread_mutex_lock(&g->idmu) != 0)
		return 0;
	if (g->id_gen == gen) {		/* not for certificates since replaced */
		memcpy(g->id_sid_ctx, sid_ctx, sid_ctx_len);
		g->id_sid_ctx_len = sid_ctx_len;
		memcpy(g->id_md, md, GLUE_ID_LEN);
		g->id_cached = 1;
	}
	pthread_mutex_unlock(&g->idmu);
	return 0;
}

/* glue_has_identity - whether g's ctx has certificates to bind sessions to. */
static int
glue_has_identity(struct glue *g)
{
	int known;

	if (pthread_mutex_lock(&g->idmu) != 0)
		return 0;
	known = g->id_ncerts > 0;
	pthread_mutex_unlock(&g->idmu);
	return known;
}

/* glue_lock - take the state's mutex; 0 or -1. */
static int
glue_lock(struct glue *g)
{
	return pthread_mutex_lock(&g->mu) == 0 ? 0 : -1;
}

/* glue_unlock - release the state's mutex. */
static void
glue_unlock(struct glue *g)
{
	pthread_mutex_unlock(&g->mu);
}

/* glue_count - add one to the counter c of g, under g's mutex. */
static void
glue_count(struct glue *g, uint64_t *c)
{
	if (glue_lock(g) < 0)
		return;
	(*c)++;
	glue_unlock(g);
}

/*
 * glue_bind - a copy of sess whose ticket appdata starts with the
 *	identity mark (ident), to be stored; NULL on failure.  sess itself
 *	is OpenSSL's and may be in use elsewhere, so it is not changed.
 */
static SSL_SESSION *
glue_bind(SSL_SESSION *sess, const unsigned char *ident)
{
	SSL_SESSION *dup = NULL;
	unsigned char *mark = NULL;
	void *app = NULL;
	size_t app_len = 0, mark_len = 0;

	SSL_SESSION_get0_ticket_appdata(sess, &app, &app_len);
	if (app_len > SESSDB_PAYLOAD_MAX)
		return NULL;
	mark_len = GLUE_ID_MARK_LEN + app_len;
	if ((mark = malloc(mark_len)) == NULL ||
	    (dup = SSL_SESSION_dup(sess)) == NULL)
		goto done;
	memcpy(mark, GLUE_ID_MAGIC, GLUE_ID_MAGIC_LEN);
	memcpy(mark + GLUE_ID_MAGIC_LEN, ident, GLUE_ID_LEN);
	if (app_len > 0)
		memcpy(mark + GLUE_ID_MARK_LEN, app, app_len);
	if (!SSL_SESSION_set1_ticket_appdata(dup, mark, mark_len)) {
		SSL_SESSION_free(dup);	/* OpenSSL wipes its master key */
		dup = NULL;
	}
done:
	if (mark != NULL)
		OPENSSL_cleanse(mark, mark_len);
	free(mark);
	return dup;
}

/* Why a session was not stored (glue_skip_unsafe). */
enum glue_skip { SKIP_BAD_ID, SKIP_NO_SID_CTX, SKIP_NO_CERT };

/* glue_skip_unsafe - count a session not stored; log each reason once. */
static void
glue_skip_unsafe(struct glue *g, enum glue_skip why)
{
	if (glue_lock(g) < 0)
		return;
	g->st.skipped_unsafe++;
	if (why == SKIP_NO_SID_CTX && !g->warned_sid_ctx) {
		g->warned_sid_ctx = 1;
		diag_log(g->db, SESSDB_LOG_WARNING, "%s: TLS sessions are not "
		    "stored: the SSL_CTX has no session-ID context (call "
		    "SSL_CTX_set_session_id_context)", sessdb_path(g->db));
	} else if (why == SKIP_NO_CERT && !g->warned_no_cert) {
		g->warned_no_cert = 1;
		diag_log(g->db, SESSDB_LOG_WARNING, "%s: TLS sessions are not "
		    "stored: the attached SSL_CTX has no certificate to bind "
		    "them to (load its certificates before SSL_new)",
		    sessdb_path(g->db));
	}
	glue_unlock(g);
}

/*
 * glue_new_cb - OpenSSL's new-session callback: store sess, bound to the
 *	server identity, unless it is resumed from a stateless ticket, has no
 *	session-ID context, or the ctx has no certificate.
 *	Returns 0: OpenSSL keeps (and frees) its reference.
 */
static int
glue_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct glue *g = glue_get(glue_session_ctx(ssl));
	const unsigned char *sid_ctx;
	unsigned char ident[GLUE_ID_LEN];
	unsigned int id_len, sid_ctx_len;
	SSL_SESSION *bound;
	int rc;

	if (g == NULL)
		return 0;
	if (glue_stateless(ssl, sess)) {
		glue_count(g, &g->st.skipped_stateless);
		return 0;
	}
	(void)SSL_SESSION_get_id(sess, &id_len);
	sid_ctx = SSL_SESSION_get0_id_context(sess, &sid_ctx_len);
	if (id_len == 0 || id_len > SESSDB_ID_MAX || sid_ctx_len == 0) {
		glue_skip_unsafe(g, sid_ctx_len == 0 ? SKIP_NO_SID_CTX :
		    SKIP_BAD_ID);
		return 0;
	}
	if (glue_identity(g, sid_ctx, sid_ctx_len, ident) < 0) {
		glue_skip_unsafe(g, SKIP_NO_CERT);
		return 0;
	}
	if ((bound = glue_bind(sess, ident)) == NULL) {
		glue_count(g, &g->st.store_failures);
		return 0;
	}
	if (glue_lock(g) == 0) {
		/* Encodes (wiping the DER) and stores; the file lock is
		   taken for the store only. */
		rc = sessdb_ssl_put(g->db, bound, ssl_shared_expires(sess));
		if (rc == SESSDB_OK)
			g->st.stores++;
		else
			g->st.store_failures++;
		glue_unlock(g);
	}
	SSL_SESSION_free(bound);	/* OpenSSL wipes its master key */
	return 0;
}

/* glue_fetch - get (or, take == 1, take) the DER stored under id. */
static int
glue_fetch(struct glue *g, int take, const unsigned char *id, size_t id_len,
    void **der, size_t *len, struct sessdb_meta *meta)
{
	int rc;

	if (glue_lock(g) < 0)
		return -1;
	if (take)
		rc = sessdb_take(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
		    meta);
	else
		rc = sessdb_get(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
		    meta);
	glue_unlock(g);
	return rc;
}

/* glue_forget - delete the record under id (if not NULL: a taken record
 * is gone already); errors ignored (logged by the store).  why, if not
 * NULL, is logged as the reason. */
static void
glue_forget(struct glue *g, const unsigned char *id, size_t id_len,
    const char *why)
{
	if (glue_lock(g) < 0)
		return;
	if (why != NULL)
		diag_log(g->db, SESSDB_LOG_WARNING, "%s: dropping a record: %s",
		    sessdb_path(g->db), why);
	if (id != NULL)
		(void)sessdb_delete(g->db, SESSDB_NS_SERVER, id, id_len);
	glue_unlock(g);
}

/*
 * glue_unbind - check that sess, just decoded, carries the identity mark
 *	of g's ctx, and remove the mark (restoring the application's own
 *	ticket appdata).  1: ours; 0: another identity's, or no mark (stored
 *	by an older sessdb, or not by the glue); -1: out of memory.
 */
static int
glue_unbind(struct glue *g, SSL_SESSION *sess)
{
	const unsigned char *sid_ctx;
	unsigned char want[GLUE_ID_LEN], *rest = NULL;
	unsigned int sid_ctx_len;
	void *mark = NULL;
	size_t mark_len = 0, rest_len;
	int rc;

	sid_ctx = SSL_SESSION_get0_id_context(sess, &sid_ctx_len);
	SSL_SESSION_get0_ticket_appdata(sess, &mark, &mark_len);
	if (mark_len < GLUE_ID_MARK_LEN ||
	    memcmp(mark, GLUE_ID_MAGIC, GLUE_ID_MAGIC_LEN) != 0 ||
	    glue_identity(g, sid_ctx, sid_ctx_len, want) < 0 ||
	    CRYPTO_memcmp((unsigned char *)mark + GLUE_ID_MAGIC_LEN, want,
	    GLUE_ID_LEN) != 0)
		return 0;
	/* set1 frees the buffer mark points into: copy the rest first. */
	rest_len = mark_len - GLUE_ID_MARK_LEN;
	if (rest_len > 0 && (rest = malloc(rest_len)) == NULL)
		return -1;
	if (rest_len > 0)
		memcpy(rest, (unsigned char *)mark + GLUE_ID_MARK_LEN, rest_len);
	rc = SSL_SESSION_set1_ticket_appdata(sess, rest, rest_len) ? 1 : -1;
	if (rest != NULL)
		OPENSSL_cleanse(rest, rest_len);
	free(rest);
	return rc;
}

/*
 * glue_foreign - count and (once per ctx) log a session of another server
 *	identity.  A record taken for early data is put back with its expiry:
 *	it belongs to the server that made it, and was not resumed here.
 */
static void
glue_foreign(struct glue *g, int take, const unsigned char *id,
    size_t id_len, const void *der, size_t len, int64_t expires)
{
	if (glue_lock(g) < 0)
		return;
	g->st.foreign++;
	if (!g->warned_foreign) {
		g->warned_foreign = 1;
		diag_log(g->db, SESSDB_LOG_WARNING, "%s: refused to resume a "
		    "session made under another server identity (other "
		    "certificates: the store is shared with another server, "
		    "or the record predates identity binding); counted in "
		    "foreign, logged once", sessdb_path(g->db));
	}
	if (take)
		(void)sessdb_put(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
		    expires);
	glue_unlock(g);
}

/*
 * glue_wants_take - whether a lookup on ssl may lead to accepting 0-RTT
 *	data: TLS 1.3 with early data enabled on ssl or its ctx.  Such a
 *	record must be taken, so that only one process ever resumes it.
 *	(TLS 1.2 session IDs are reused by every resumption: never taken.)
 */
static int
glue_wants_take(SSL *ssl)
{
	if (SSL_version(ssl) != TLS1_3_VERSION)
		return 0;
	return SSL_get_max_early_data(ssl) > 0 ||
	    SSL_CTX_get_max_early_data(SSL_get_SSL_CTX(ssl)) > 0 ||
	    SSL_CTX_get_max_early_data(glue_session_ctx(ssl)) > 0;
}

/*
 * glue_replay_check - whether OpenSSL will now run its anti-replay check
 *	on the session we return: SSL_CTX_remove_session(), which refuses to
 *	resume a session that is not in the in-process cache.
 */
static int
glue_replay_check(SSL *ssl)
{
	return SSL_version(ssl) == TLS1_3_VERSION &&
	    SSL_get_max_early_data(ssl) > 0 &&
	    !(SSL_get_options(ssl) & SSL_OP_NO_ANTI_REPLAY);
}

/*
 * glue_register_taken - prepare a taken session for OpenSSL's anti-replay
 *	check.  It is marked as taken (its record is gone: the remove
 *	callback has nothing to delete) and, when OpenSSL's cache is off
 *	(SSL_SESS_CACHE_NO_INTERNAL_STORE), put there for the moment between
 *	this lookup and the check, which takes it out again.  Without that
 *	OpenSSL would never resume a stateful ticket with early data enabled.
 *	With the internal store on, OpenSSL adds it itself.  0 or -1.
 */
static int
glue_register_taken(SSL *ssl, SSL_SESSION *sess)
{
	SSL_CTX *ctx = glue_session_ctx(ssl);

	if (!SSL_SESSION_set_ex_data(sess, glue_taken_index, sess))
		return -1;
	if (!glue_replay_check(ssl))
		return 0;
	if (!(SSL_CTX_get_session_cache_mode(ctx) &
	    SSL_SESS_CACHE_NO_INTERNAL_STORE))
		return 0;
	return SSL_CTX_add_session(ctx, sess) ? 0 : -1;
}

/*
 * glue_get_cb - OpenSSL's get-session callback: the session stored under
 *	id, as a new reference handed to OpenSSL (*copy = 0), or NULL (miss).
 *	A session bound to another server identity is refused here, before
 *	OpenSSL could resume it.  With TLS 1.3 early data enabled the record
 *	is taken (read and deleted under one exclusive lock), so that of all
 *	processes at most one resumes a stateful ticket and can accept its
 *	early data.
 */
static SSL_SESSION *
glue_get_cb(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
	struct glue *g = glue_get(glue_session_ctx(ssl));
	struct sessdb_meta meta;
	SSL_SESSION *sess = NULL;
	void *der = NULL;
	size_t len = 0;
	int rc, take;

	*copy = 0;
	if (g == NULL || id_len <= 0 || id_len > SESSDB_ID_MAX)
		return NULL;
	if (!glue_has_identity(g)) {
		/* Nothing can be checked, and nothing was stored. */
		glue_count(g, &g->st.misses);
		return NULL;
	}
	take = glue_wants_take(ssl);
	rc = glue_fetch(g, take, id, (size_t)id_len, &der, &len, &meta);
	if (rc != SESSDB_OK) {
		glue_count(g, &g->st.misses);
		goto done;
	}
	sess = sessdb_ssl_decode(der, len, id, (size_t)id_len, NULL);
	if (sess == NULL) {
		glue_count(g, &g->st.rejected);
		glue_forget(g, take ? NULL : id, (size_t)id_len,
		    "not a TLS session (DER) with the ID of its key");
		goto done;
	}
	if ((rc = glue_unbind(g, sess)) <= 0) {
		SSL_SESSION_free(sess);
		sess = NULL;
		if (rc == 0)
			glue_foreign(g, take, id, (size_t)id_len, der, len,
			    meta.expires);
		else
			glue_count(g, &g->st.misses);
		goto done;
	}
	if (take && glue_register_taken(ssl, sess) < 0) {
		SSL_SESSION_free(sess);
		sess = NULL;
		glue_count(g, &g->st.misses);
		goto done;
	}
	glue_count(g, &g->st.hits);
done:
	if (der != NULL)
		OPENSSL_cleanse(der, len);	/* holds the master secret */
	sessdb_free(der);
	return sess;
}

/*
 * glue_remove_cb - OpenSSL's remove-session callback: OpenSSL no longer
 *	wants sess resumed (a fatal alert, a connection freed without
 *	SSL_shutdown, a timed out session), so delete its record, unless it
 *	was taken (nothing left to delete).  OpenSSL also calls this when it
 *	evicts sessions from, or flushes, its in-process cache (at every
 *	SSL_CTX_free), which must not touch the shared file.  By default
 *	that cache holds nothing but taken sessions (see attach); with
 *	SESSDB_SSL_KEEP_INTERNAL the two cannot be told apart, so in that
 *	mode nothing is deleted here and records simply expire.
 */
static void
glue_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
	struct glue *g = glue_get(ctx);
	const unsigned char *id;
	unsigned int id_len;

	if (g == NULL || (g->flags & SESSDB_SSL_KEEP_INTERNAL))
		return;
	if (SSL_SESSION_get_ex_data(sess, glue_taken_index) == sess)
		return;
	id = SSL_SESSION_get_id(sess, &id_len);
	if (id_len == 0 || id_len > SESSDB_ID_MAX)
		return;
	glue_forget(g, id, id_len, NULL);
	glue_count(g, &g->st.removes);
}

/* glue_is_client_only - whether ctx was made with a client-only method. */
static int
glue_is_client_only(const SSL_CTX *ctx)
{
	const SSL_METHOD *m = SSL_CTX_get_ssl_method(ctx);

	return m == TLS_client_method() || m == DTLS_client_method();
}

/* glue_new - fresh state for db; NULL on allocation failure. */
static struct glue *
glue_new(struct sessdb *db, unsigned flags, long old_mode)
{
	struct glue *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	if (pthread_mutex_init(&g->mu, NULL) != 0) {
		free(g);
		return NULL;
	}
	if (pthread_mutex_init(&g->idmu, NULL) != 0) {
		pthread_mutex_destroy(&g->mu);
		free(g);
		return NULL;
	}
	g->id_ncerts = -1;
	g->db = db;
	g->flags = flags;
	g->old_mode = old_mode;
	return g;
}

/*
 * glue_identity_probe - note the certificates ctx has now, through a
 *	throw-away SSL (its ex_data new callback does the work), so that the
 *	ctx itself is never walked; later SSL_new calls keep this up to date.
 */
static void
glue_identity_probe(SSL_CTX *ctx)
{
	SSL *probe;

	ERR_set_mark();
	probe = SSL_new(ctx);
	SSL_free(probe);
	ERR_pop_to_mark();
}

/*
 * sessdb_ssl_attach - wire db into ctx: cache mode, callbacks, state.
 *	Attaching again replaces the store and flags of the first attach.
 */
int
sessdb_ssl_attach(SSL_CTX *ctx, struct sessdb *db, unsigned flags)
{
	struct glue *g;
	long mode;

	if (ctx == NULL || db == NULL || (flags & ~SESSDB_SSL_KEEP_INTERNAL) ||
	    glue_is_client_only(ctx))
		return -1;
	/* An in-process hit bypasses the take: 0-RTT could be replayed. */
	if ((flags & SESSDB_SSL_KEEP_INTERNAL) &&
	    SSL_CTX_get_max_early_data(ctx) > 0)
		return -1;
	if (pthread_once(&glue_once, glue_index_init) != 0 || glue_index < 0)
		return -1;
	if ((g = SSL_CTX_get_ex_data(ctx, glue_index)) != NULL) {
		g->db = db;
		g->flags = flags;
	} else {
		g = glue_new(db, flags, SSL_CTX_get_session_cache_mode(ctx));
		if (g == NULL)
			return -1;
		if (!SSL_CTX_set_ex_data(ctx, glue_index, g)) {
			glue_ex_free(NULL, g, NULL, 0, 0, NULL);
			return -1;
		}
	}
	mode = SSL_SESS_CACHE_SERVER;
	if (!(flags & SESSDB_SSL_KEEP_INTERNAL)) {
		mode |= SSL_SESS_CACHE_NO_INTERNAL;
		/* Empty OpenSSL's cache now, quietly: later, flushing what it
		   held would look like removals and delete records. */
		SSL_CTX_sess_set_remove_cb(ctx, NULL);
		SSL_CTX_flush_sessions(ctx, 0);
	}
	SSL_CTX_set_session_cache_mode(ctx, mode);
	SSL_CTX_sess_set_new_cb(ctx, glue_new_cb);
	SSL_CTX_sess_set_get_cb(ctx, glue_get_cb);
	SSL_CTX_sess_set_remove_cb(ctx, glue_remove_cb);
	glue_identity_probe(ctx);
	return 0;
}

/*
 * sessdb_ssl_detach - remove the callbacks and state, restore the cache
 *	mode; records stay in the store.  Returns -1 if ctx is not attached.
 */
int
sessdb_ssl_detach(SSL_CTX *ctx)
{
	struct glue *g;

	if (ctx == NULL || (g = glue_get(ctx)) == NULL)
		return -1;
	SSL_CTX_sess_set_new_cb(ctx, NULL);
	SSL_CTX_sess_set_get_cb(ctx, NULL);
	SSL_CTX_sess_set_remove_cb(ctx, NULL);
	SSL_CTX_set_session_cache_mode(ctx, g->old_mode);
	SSL_CTX_set_ex_data(ctx, glue_index, NULL);
	glue_ex_free(NULL, g, NULL, 0, 0, NULL);
	return 0;
}

/* sessdb_ssl_stats - copy the glue counters of ctx; -1 if not attached. */
int
sessdb_ssl_stats(const SSL_CTX *ctx, struct sessdb_ssl_stats *st)
{
	struct glue *g;

	if (ctx == NULL || st == NULL || (g = glue_get(ctx)) == NULL)
		return -1;
	if (glue_lock(g) < 0)
		return -1;
	*st = g->st;
	glue_unlock(g);
	return 0;
}
