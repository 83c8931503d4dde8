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
 *	The only part of libsessdb that knows OpenSSL objects.  It turns an
 *	SSL_SESSION into DER (i2d_SSL_SESSION) and back (d2i_SSL_SESSION),
 *	outside any store lock, and keys each record by SESSDB_NS_SERVER and
 *	the session ID.  See sessdb_ssl.h for what attach changes on ctx and
 *	docs/ARCHITECTURE.md for why.
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
#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "store_internal.h"	/* store_log only: glue events go to the
				   application's store log callback */

/* Per-ctx state, kept in the SSL_CTX's ex_data. */
struct glue {
	struct sessdb		*db;
	unsigned		flags;
	long			old_mode;	/* cache mode before attach */
	pthread_mutex_t		mu;		/* serialises use of db */
	int			warned_sid_ctx;	/* logged the missing sid_ctx */
	struct sessdb_ssl_stats	st;
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

	if (g == NULL)
		return;
	pthread_mutex_destroy(&g->mu);
	free(g);
}

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
	(void)CRYPTO_set_ex_data(ad, idx, SSL_get_SSL_CTX(parent));
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

/* glue_encode - DER of sess in a malloc'ed buffer; 0 or -1. */
static int
glue_encode(SSL_SESSION *sess, unsigned char **der, size_t *len)
{
	unsigned char *buf = NULL, *p;
	int n;

	n = i2d_SSL_SESSION(sess, NULL);
	if (n <= 0 || (size_t)n > SESSDB_PAYLOAD_MAX)
		goto fail;
	if ((buf = malloc((size_t)n)) == NULL)
		goto fail;
	p = buf;
	if (i2d_SSL_SESSION(sess, &p) != n)
		goto fail;
	*der = buf;
	*len = (size_t)n;
	return 0;
fail:
	if (buf != NULL && n > 0)
		OPENSSL_cleanse(buf, (size_t)n);
	free(buf);
	return -1;
}

/* glue_expires - absolute expiry of sess: its start time plus its timeout. */
static int64_t
glue_expires(const SSL_SESSION *sess)
{
	int64_t t = (int64_t)SSL_SESSION_get_time(sess);
	int64_t timeout = (int64_t)SSL_SESSION_get_timeout(sess);

	if (t <= 0 || timeout <= 0)
		return 0;	/* the store's default_ttl */
	return t + timeout;
}

/* glue_skip_unsafe - count a session not stored; log a missing sid_ctx once. */
static void
glue_skip_unsafe(struct glue *g, int no_sid_ctx)
{
	if (glue_lock(g) < 0)
		return;
	g->st.skipped_unsafe++;
	if (no_sid_ctx && !g->warned_sid_ctx) {
		g->warned_sid_ctx = 1;
		store_log(g->db, SESSDB_LOG_WARNING, "%s: TLS sessions are not "
		    "stored: the SSL_CTX has no session-ID context (call "
		    "SSL_CTX_set_session_id_context)", sessdb_path(g->db));
	}
	glue_unlock(g);
}

/*
 * glue_new_cb - OpenSSL's new-session callback: store sess unless it is
 *	resumed from a stateless ticket, or has no session-ID context.
 *	Returns 0: OpenSSL keeps (and frees) its reference.
 */
static int
glue_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct glue *g = glue_get(glue_session_ctx(ssl));
	const unsigned char *id;
	unsigned char *der = NULL;
	unsigned int id_len, sid_ctx_len;
	size_t len;
	int rc;

	if (g == NULL)
		return 0;
	if (glue_stateless(ssl, sess)) {
		glue_count(g, &g->st.skipped_stateless);
		return 0;
	}
	id = SSL_SESSION_get_id(sess, &id_len);
	(void)SSL_SESSION_get0_id_context(sess, &sid_ctx_len);
	if (id_len == 0 || id_len > SESSDB_ID_MAX || sid_ctx_len == 0) {
		glue_skip_unsafe(g, sid_ctx_len == 0);
		return 0;
	}
	if (glue_encode(sess, &der, &len) < 0) {
		glue_count(g, &g->st.store_failures);
		return 0;
	}
	if (glue_lock(g) < 0)
		goto done;
	rc = sessdb_put(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
	    glue_expires(sess));
	if (rc == SESSDB_OK)
		g->st.stores++;
	else
		g->st.store_failures++;
	glue_unlock(g);
done:
	OPENSSL_cleanse(der, len);	/* holds the master secret */
	free(der);
	return 0;
}

/* glue_fetch - get (or, take == 1, take) the DER stored under id. */
static int
glue_fetch(struct glue *g, int take, const unsigned char *id, size_t id_len,
    void **der, size_t *len)
{
	int rc;

	if (glue_lock(g) < 0)
		return -1;
	if (take)
		rc = sessdb_take(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
		    NULL);
	else
		rc = sessdb_get(g->db, SESSDB_NS_SERVER, id, id_len, der, len,
		    NULL);
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
		store_log(g->db, SESSDB_LOG_WARNING, "%s: dropping a record: %s",
		    sessdb_path(g->db), why);
	if (id != NULL)
		(void)sessdb_delete(g->db, SESSDB_NS_SERVER, id, id_len);
	glue_unlock(g);
}

/*
 * glue_decode - a new session from der, or NULL when it does not parse
 *	completely or carries another ID than the one it was stored under.
 */
static SSL_SESSION *
glue_decode(const void *der, size_t len, const unsigned char *id,
    size_t id_len)
{
	const unsigned char *p = der;
	const unsigned char *got;
	SSL_SESSION *sess;
	unsigned int got_len;

	if (len == 0 || len > SESSDB_PAYLOAD_MAX)
		return NULL;
	sess = d2i_SSL_SESSION(NULL, &p, (long)len);
	if (sess == NULL)
		return NULL;
	got = SSL_SESSION_get_id(sess, &got_len);
	if (p != (const unsigned char *)der + len || got_len != id_len ||
	    memcmp(got, id, id_len) != 0) {
		SSL_SESSION_free(sess);
		return NULL;
	}
	return sess;
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
 *	With TLS 1.3 early data enabled the record is taken (read and deleted
 *	under one exclusive lock), so that of all processes at most one
 *	resumes a stateful ticket and can accept its early data.
 */
static SSL_SESSION *
glue_get_cb(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
	struct glue *g = glue_get(glue_session_ctx(ssl));
	SSL_SESSION *sess = NULL;
	void *der = NULL;
	size_t len = 0;
	int rc, take;

	*copy = 0;
	if (g == NULL || id_len <= 0 || id_len > SESSDB_ID_MAX)
		return NULL;
	take = glue_wants_take(ssl);
	rc = glue_fetch(g, take, id, (size_t)id_len, &der, &len);
	if (rc != SESSDB_OK) {
		glue_count(g, &g->st.misses);
		goto done;
	}
	sess = glue_decode(der, len, id, (size_t)id_len);
	if (sess == NULL) {
		glue_count(g, &g->st.rejected);
		glue_forget(g, take ? NULL : id, (size_t)id_len,
		    "not a TLS session (DER) with the ID of its key");
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
	g->db = db;
	g->flags = flags;
	g->old_mode = old_mode;
	return g;
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
