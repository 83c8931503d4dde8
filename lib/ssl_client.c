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
 *	int sessdb_ssl_client_stats(const SSL_CTX *ctx,
 *	    struct sessdb_ssl_client_stats *st);
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
 *	The peer key and the payload are ssl_peer.c's.
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "ssl_peer.h"		/* peer key, record payload */
#include "ssl_shared.h"		/* expiry */

#define CLI_MD_LEN	PEER_MD_LEN
#define CLI_ID_LEN	(SESSDB_SSL_PEER_KEY_LEN + 1)
#define CLI_TICKET_SLOTS (SESSDB_SSL_PEER_SLOTS - 1)
#define CLI_HOST_MAX	PEER_HOST_MAX

/* Per-ctx state, in the SSL_CTX's ex_data. */
struct cli_glue {
	struct sessdb	*db;
	unsigned	flags;
	long		old_mode;
	pthread_mutex_t	mu;		/* serialises db, guards st and next */
	struct sessdb_ssl_client_stats st;
	struct peer_cache pc;		/* CA file and directory fingerprints */
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

/* cli_ctx_free - ex_data free callback: the SSL_CTX is freed. */
static void
cli_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct cli_glue *g = ptr;

	if (g == NULL)
		return;
	peer_cache_free(&g->pc);
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

/* cli_has_client_cert - whether ssl may authenticate with a certificate. */
static int
cli_has_client_cert(SSL *ssl)
{
	return SSL_get_certificate(ssl) != NULL ||
	    SSL_CTX_get_client_cert_cb(SSL_get_SSL_CTX(ssl)) != NULL;
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
 * cli_store_ticket - store a ticket of c: in the first free ticket slot
 *	from a rotating start, claimed with sessdb_add (of processes storing
 *	tickets for one peer at once, each gets a slot of its own: none
 *	overwrites another's), else over the one that expires first.
 *	Called with g's mutex held.  Returns what the store call returned.
 */
static int
cli_store_ticket(struct cli_glue *g, struct cli_conn *c,
    const unsigned char *payload, size_t len, int64_t expires)
{
	struct sessdb_meta meta;
	int64_t oldest = INT64_MAX;
	unsigned start = g->next++;
	void *data;
	size_t dlen;
	int i, slot, pick = 1, rc;

	for (i = 0; i < CLI_TICKET_SLOTS; i++) {
		slot = 1 + (int)((start + (unsigned)i) % CLI_TICKET_SLOTS);
		rc = sessdb_add(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, payload, len, expires);
		if (rc != SESSDB_EXISTS)
			return rc;	/* stored, full, or an error */
	}
	for (i = 0; i < CLI_TICKET_SLOTS; i++) {	/* all taken */
		slot = 1 + i;
		data = NULL;
		rc = sessdb_get(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, slot),
		    CLI_ID_LEN, &data, &dlen, &meta);
		if (data != NULL)
			OPENSSL_cleanse(data, dlen);
		sessdb_free(data);
		if (rc != SESSDB_OK) {
			pick = slot;	/* taken meanwhile: free again */
			break;
		}
		if (meta.expires < oldest) {
			oldest = meta.expires;
			pick = slot;
		}
	}
	return sessdb_put(g->db, SESSDB_NS_CLIENT, cli_slot_id(c, pick),
	    CLI_ID_LEN, payload, len, expires);
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
	int once, rc;

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
	if (peer_payload(c->host, c->port, c->sni, once ? PEER_KIND_ONCE :
	    PEER_KIND_REUSE, sess, &payload, &len) < 0) {
		cli_count(g, &g->st.store_failures);
		return 0;
	}
	if (pthread_mutex_lock(&g->mu) == 0) {
		rc = once ? cli_store_ticket(g, c, payload, len,
		    ssl_shared_expires(sess)) : sessdb_put(g->db,
		    SESSDB_NS_CLIENT, cli_slot_id(c, 0), CLI_ID_LEN, payload,
		    len, ssl_shared_expires(sess));
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
	    !peer_ok(peer) || cli_conn_of(ssl) != NULL)
		return -1;
	if ((peer->sni != NULL && !SSL_set_tlsext_host_name(ssl, peer->sni)) ||
	    (peer->alpn != NULL &&
	    SSL_set_alpn_protos(ssl, peer->alpn, (unsigned)peer->alpn_len) != 0))
		return -1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	if (peer_key(&g->pc, ssl, peer, c->id) < 0 ||
	    !SSL_set_ex_data(ssl, cli_ssl_index, c)) {
		free(c);
		return -1;
	}
	strcpy(c->host, peer->host);	/* lengths checked by peer_ok */
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
		if (peer_cache_init(&g->pc) < 0) {
			pthread_mutex_destroy(&g->mu);
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
