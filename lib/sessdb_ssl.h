/*
 * NAME
 *	sessdb_ssl.h - attach a sessdb store to an OpenSSL SSL_CTX, server or client
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	struct sessdb *db = sessdb_open("/var/cache/srv/sessions.db", NULL, err, sizeof err);
 *	sessdb_ssl_attach(ctx, db, 0);
 *
 * DESCRIPTION
 *	sessdb_ssl_attach() makes every SSL created from ctx store new
 *	sessions in db and look sessions up there, so that any process
 *	sharing the file resumes them: TLS 1.2 session IDs and TLS 1.3
 *	stateful tickets (SSL_OP_NO_TICKET).  What it changes on ctx is
 *	documented at sessdb_ssl_attach() below.
 *
 *	The store must stay open while ctx (or any SSL made from it) is in
 *	use, or until sessdb_ssl_detach().  Freeing ctx never deletes
 *	records from the file.
 *
 *	Server identity: every session the glue stores is bound to the
 *	server that made it, and a session of another server sharing the
 *	file is refused before OpenSSL can resume it, whatever session-ID
 *	contexts the applications set (see sessdb_ssl_attach() below and
 *	docs/GLUE.md).
 *
 * CAVEATS
 *	- Call SSL_shutdown() before SSL_free() on every connection that
 *	  completed its handshake, even when the peer has gone: OpenSSL
 *	  removes the session of a connection freed without it (and of one
 *	  ended by a fatal alert), and the glue then deletes the record for
 *	  every process.  A server that must read from a peer that may hang
 *	  up without close_notify wants SSL_OP_IGNORE_UNEXPECTED_EOF, or
 *	  OpenSSL 3 treats the EOF as a fatal error.
 *	- TLS 1.2 full handshakes: OpenSSL sends its Finished message before
 *	  it calls the new-session callback, so a client that reconnects to
 *	  another process before the store write is done can still miss the
 *	  session.  TLS 1.3 tickets are stored before they are sent.
 *	- After fork(), the child may use an attached ctx (the store reopens
 *	  its descriptors itself) provided no other thread was inside the
 *	  glue at the fork.
 */
#ifndef SESSDB_SSL_H
#define SESSDB_SSL_H

#include <openssl/ssl.h>
#include <sessdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for sessdb_ssl_attach. */
#define SESSDB_SSL_KEEP_INTERNAL 0x01	/* also keep OpenSSL's in-process cache */

/*
 * sessdb_ssl_attach - wire db into ctx's external session cache callbacks.
 *	What it changes on ctx:
 *	- session cache mode: SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL,
 *	  so db is the only cache: every lookup sees what the other
 *	  processes stored or removed, a stateful TLS 1.3 ticket can be
 *	  accepted for early data at most once across processes, and
 *	  SSL_CTX_free() has nothing to flush (it never deletes records).
 *	  With SESSDB_SSL_KEEP_INTERNAL: SSL_SESS_CACHE_SERVER only.  OpenSSL
 *	  then looks in its own cache first (saving a file read when a
 *	  client returns to the same process) but may resume a session that
 *	  another process already removed, and the early-data guarantee
 *	  would hold only within one process, so attach refuses this flag
 *	  on a ctx with early data enabled (do not enable it afterwards).
 *	  Since OpenSSL reports evictions and the flush at SSL_CTX_free()
 *	  through the same remove callback, in this mode removals never
 *	  delete records (they expire instead).
 *	- new, get and remove session callbacks, and an ex_data slot.
 *	- without KEEP_INTERNAL, sessions already in OpenSSL's in-process
 *	  cache are dropped from it (the remove callback is not called).
 *	- an SSL ex_data slot on every SSL of the process, whose new
 *	  callback records the ctx an SSL was made from and, for an attached
 *	  ctx, notes its certificates (the server identity, below); attach
 *	  makes and frees one SSL of ctx itself to note them at once.
 *	Nothing else: the session timeout (SSL_CTX_set_timeout, OpenSSL's
 *	default 7200 s for TLS) sets each record's expiry, capped by the
 *	store's max_ttl; the session-ID context is yours to set.
 *
 *	Server identity.  Each stored session carries (in its ticket
 *	appdata, a field that i2d_SSL_SESSION serialises, so it travels with
 *	the DER through sessdump export and import) a SHA-256 digest of:
 *	- every certificate ctx presents (one per key type: RSA and ECDSA
 *	  both count; chain certificates do not), and
 *	- the session's session-ID context.
 *	A lookup recomputes the digest for the looking-up ctx and refuses a
 *	record that carries another one (or none: records written before
 *	this check existed) before OpenSSL sees the session: a full
 *	handshake, counted in foreign, logged once per ctx; the record stays
 *	for its own server (a record taken for early data is put back).
 *	OpenSSL then compares the session-ID context itself, as always.  So
 *	two servers with different certificates never resume each other's
 *	sessions even if both set the same context; servers with the same
 *	certificates and context (the workers of one server, a server and
 *	its restarted self, a server and the one its sessions were migrated
 *	to) do.  A new certificate (renewal) is a new identity: sessions of
 *	the old one get one full handshake each.  The mark is removed before
 *	OpenSSL or the application see a session; an application's own
 *	ticket appdata is kept behind it.
 *	The certificates are those of ctx as each SSL_new() copies them:
 *	they may be loaded before or after attach, and replaced later (the
 *	next SSL_new sees the change).  Certificates an SSL gets afterwards
 *	(SSL_use_certificate, a certificate callback) and those of a ctx a
 *	servername callback switches to are not part of it: the identity of
 *	a virtual host reached that way is that of the attached ctx, whose
 *	cache OpenSSL uses, so give each such service its own session-ID
 *	context.  A ctx with no certificate of its own has no identity:
 *	its sessions are not stored (counted in skipped_unsafe, logged
 *	once) and nothing is looked up.
 *	The digest tells honest servers apart; it is not a secret and does
 *	not protect against a process that can write the store.
 *
 *	Requirements:
 *	- Set a session-ID context (SSL_CTX_set_session_id_context) naming
 *	  the service before handshakes start, different for every service
 *	  (virtual host, client-certificate policy) that shares db.
 *	  OpenSSL refuses to resume a session under another context; sessions
 *	  without a context are not stored (counted in skipped_unsafe).
 *	  The certificates are bound by the glue in any case (above); the
 *	  context is what tells apart services with the same certificates.
 *	- Load the server certificates on ctx itself (before or after
 *	  attach, before the SSLs are made).
 *	- db must stay open while ctx or any SSL made from it is in use, or
 *	  until sessdb_ssl_detach().
 *	- The glue serialises its own calls into db per ctx.  In a threaded
 *	  server give each attached ctx its own handle and do not use it
 *	  from other threads meanwhile (a handle is not thread-safe).
 *
 *	What is stored: TLS 1.2 sessions (by session ID) and TLS 1.3
 *	sessions behind stateful tickets (SSL_OP_NO_TICKET, or early data
 *	with anti-replay, where OpenSSL makes tickets stateful itself); each
 *	of the TLS 1.3 tickets of a handshake is one record.  Sessions that
 *	resume from stateless tickets are not written.  With early data
 *	enabled (SSL_get_max_early_data() > 0), TLS 1.3 lookups use
 *	sessdb_take(): a stateful ticket is then good for one resumption.
 *
 *	Servername (SNI) callbacks may move connections to other SSL_CTXs
 *	(SSL_set_SSL_CTX): OpenSSL keeps using the cache of the ctx an SSL
 *	was made from, and so does the glue, with that ctx's identity; those
 *	other ctxs need not be attached.
 *
 *	Attaching an attached ctx replaces its store and flags.
 *	Returns 0, or -1 (ctx unchanged) if ctx was made with a client-only
 *	method, flags has unknown bits, KEEP_INTERNAL is asked for on a ctx
 *	with early data, or on allocation failure.
 */
int sessdb_ssl_attach(SSL_CTX *ctx, struct sessdb *db, unsigned flags);

/*
 * sessdb_ssl_detach - undo attach: remove the callbacks and the ex_data,
 *	restore the cache mode ctx had before; db is not closed, records are
 *	not deleted.  Freeing an attached ctx does the same implicitly.
 *	Call it only while no handshake on ctx is in progress in another
 *	thread.  Returns 0, or -1 if ctx is not attached.
 */
int sessdb_ssl_detach(SSL_CTX *ctx);

/* Counters of the glue on one ctx since attach. */
struct sessdb_ssl_stats {
	uint64_t stores;		/* sessions written to the store */
	uint64_t store_failures;	/* encode failed, store full or in error */
	uint64_t skipped_stateless;	/* TLS 1.3 stateless-ticket sessions, not written */
	uint64_t skipped_unsafe;	/* no session-ID context, no certificate on
					   the ctx (or bad ID), not written */
	uint64_t hits;			/* lookups that handed a session to OpenSSL */
	uint64_t misses;		/* lookups with no live record, a store error,
					   or a ctx without a certificate */
	uint64_t rejected;		/* records that did not decode or had another ID
					   (deleted; a miss for OpenSSL) */
	uint64_t removes;		/* records deleted at OpenSSL's request */
	uint64_t foreign;		/* records of another server identity (or
					   without one), refused before OpenSSL
					   saw them; kept in the store */
};

/* sessdb_ssl_stats - copy the counters of ctx; 0, or -1 if not attached. */
int sessdb_ssl_stats(const SSL_CTX *ctx, struct sessdb_ssl_stats *st);

/*
 * Sessions as record payloads.  The glue stores what these functions
 * make, and sessdump (show, export, import) reads and writes the same,
 * so a session round-trips between servers, files and `openssl sess_id`
 * unchanged.  The payload is the DER of i2d_SSL_SESSION: it holds the
 * master secret, and every buffer below is wiped before it is freed.
 * None of them take a store lock but sessdb_ssl_put, through sessdb_put.
 */

/* sessdb_ssl_put: sess cannot be stored (no session ID, or one longer
 * than SESSDB_ID_MAX; encoding failed or exceeds SESSDB_PAYLOAD_MAX; out
 * of memory).  The store was not touched: sessdb_error() does not say. */
#define SESSDB_SSL_UNENCODABLE	(-2)

/*
 * sessdb_ssl_encode - the DER of sess (i2d_SSL_SESSION) in a new buffer:
 *	*der gets it, *len its length (1..SESSDB_PAYLOAD_MAX).  Release it
 *	with sessdb_ssl_der_free(*der, *len).  sess is not changed.
 *	Returns 0, or -1 (nothing allocated; a partly written buffer was
 *	wiped) when sess cannot be encoded, is too large, or out of memory.
 */
int sessdb_ssl_encode(SSL_SESSION *sess, unsigned char **der, size_t *len);

/* sessdb_ssl_der_free - wipe len bytes of der and free it (NULL: no-op). */
void sessdb_ssl_der_free(void *der, size_t len);

/*
 * sessdb_ssl_decode - the session whose DER is exactly len bytes of der
 *	(a payload from sessdb_get, sessdb_take or a foreach record), as a
 *	new reference (SSL_SESSION_free it).  With id not NULL the session
 *	must also carry that session ID (the one it was stored under).
 *	der is only read; wiping it is the caller's job.  Returns the
 *	session, or NULL with *why (when why is not NULL) set to a static
 *	string: the payload is not a DER session, has trailing bytes, or
 *	carries another ID.  Nothing else is checked (expiry is the store's,
 *	the server identity the glue's).
 */
SSL_SESSION *sessdb_ssl_decode(const void *der, size_t len,
    const unsigned char *id, size_t id_len, const char **why);

/*
 * sessdb_ssl_put - store sess as it is (sessdb_ssl_encode) under
 *	SESSDB_NS_SERVER and its session ID, with expires as for
 *	sessdb_put (absolute unix seconds; 0: the store's default_ttl).
 *	Encoding happens before the store lock is taken.  No server
 *	identity is added: the glue binds a copy of the session before it
 *	calls this, and sessdump import stores what it was given.
 *	Returns SESSDB_OK, SESSDB_FULL (declined by the cap), -1 (a store
 *	error: sessdb_error), or SESSDB_SSL_UNENCODABLE.
 */
int sessdb_ssl_put(struct sessdb *db, SSL_SESSION *sess, int64_t expires);

/*
 * Client side.  A TLS client's processes share the sessions their
 * servers hand out through the same store, under SESSDB_NS_CLIENT and a
 * peer key (docs/GLUE.md, "Client side"):
 *
 *	sessdb_ssl_attach_client(ctx, db, 0);		once per SSL_CTX
 *	ssl = SSL_new(ctx); ... verify, ciphers, client certificate ...
 *	struct sessdb_ssl_peer peer = { .host = "mx.example.org",
 *	    .port = 25, .sni = "mx.example.org" };
 *	sessdb_ssl_client_peer(ssl, &peer);		per connection
 *	SSL_connect(ssl); ...
 */

/* Flags for sessdb_ssl_attach_client. */
#define SESSDB_SSL_SHARE_CLIENT_CERT 0x02	/* also share sessions made by
						   an SSL that has a client
						   certificate (or callback) */

/* The peer of one client connection (sessdb_ssl_client_peer). */
struct sessdb_ssl_peer {
	const char		*host;	/* the server's name or address as the
					   application knows it; 1..255 bytes */
	unsigned		port;	/* 1..65535 */
	const char		*sni;	/* server name to send (the glue sets it
					   on the SSL); NULL: send none */
	const unsigned char	*alpn;	/* ALPN protocol list, wire format (the
					   glue sets it); NULL: none */
	size_t			alpn_len;
	const char		*ca_file; /* the CA file ssl's ctx loaded: its
					   bytes are part of the key; NULL:
					   none, or see below */
	const char		*ca_dir;  /* the CA directory it uses: its files'
					   names and bytes are part of the key */
	const char		*trust;	/* names other trust settings (a verify
					   callback's policy); NULL: none */
};

/* Bytes of a peer key: SHA-256 truncated, so a slot byte fits beside it
 * in a record identifier (SESSDB_ID_MAX). */
#define SESSDB_SSL_PEER_KEY_LEN	31
/* Record slots per peer key: slot 0 holds the reusable session (TLS 1.2
 * and below), slots 1..7 single-use TLS 1.3 tickets. */
#define SESSDB_SSL_PEER_SLOTS	8

/*
 * sessdb_ssl_attach_client - make every SSL of ctx (a client) that names
 *	its peer (sessdb_ssl_client_peer) resume from db and store in db
 *	the sessions its servers send.  What it changes on ctx: the session
 *	cache mode (SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE),
 *	the new-session callback, an ex_data slot.  OpenSSL's own client
 *	cache is off: db is the only one.
 *	Sessions of an SSL that has a client certificate (or a ctx with a
 *	client certificate callback) are neither stored nor looked up
 *	unless flags has SESSDB_SSL_SHARE_CLIENT_CERT: such a session
 *	authenticates as that certificate, and every process sharing db
 *	could then use it.  The certificate is part of the peer key in any
 *	case.  db must stay open while ctx is in use.  The glue serialises
 *	its calls into db per ctx; in a threaded client give each attached
 *	ctx its own handle.  Attaching again replaces db and flags.  Returns 0, or -1 (ctx unchanged) for a
 *	server-only method, unknown flags, or no memory.
 */
int sessdb_ssl_attach_client(SSL_CTX *ctx, struct sessdb *db, unsigned flags);

/* sessdb_ssl_detach_client - undo attach_client (cache mode, callback,
 *	state); records stay.  Returns 0, or -1 if ctx is not attached. */
int sessdb_ssl_detach_client(SSL_CTX *ctx);

/*
 * sessdb_ssl_client_peer - name ssl's peer, once, after ssl's settings are
 *	final (protocol range, ciphers, verification, trust store, client
 *	certificate) and before SSL_connect: sets SNI and ALPN from peer,
 *	derives the peer key (sessdb_ssl_peer_key), and sets a stored
 *	session for that key, if any (SSL_set_session).  A TLS 1.3 ticket
 *	is taken from the store (used once); a TLS 1.2 session is read and
 *	stays for other connections until it expires.  Afterwards the
 *	sessions the server sends on ssl are stored under the key, and an
 *	offered session the server does not resume (or a fatal alert on
 *	ssl) removes it from the store, seen through an info callback the
 *	glue sets on ssl, which calls the one ssl (else its ctx) had: set
 *	yours before this call, not after.  peer is copied.
 *	Returns 1 (a session was set), 0 (none: a full handshake), or -1
 *	(ssl's ctx is not attached, bad peer, SNI/ALPN could not be set).
 *	A store error is a 0, counted in the stats.
 */
int sessdb_ssl_client_peer(SSL *ssl, const struct sessdb_ssl_peer *peer);

/*
 * sessdb_ssl_peer_key - the peer key of ssl's connection to peer: SHA-256,
 *	truncated to SESSDB_SSL_PEER_KEY_LEN bytes, over host, port, SNI,
 *	ALPN, the protocol range, the cipher list, the verification mode,
 *	depth and flags, the names the certificate is verified against
 *	(SSL_set1_host, an e-mail address, an IP address, host flags), the
 *	security level, the trust settings, the client certificate (and
 *	whether a client certificate callback is set), and the OpenSSL
 *	major version.  Trust settings: the bytes of peer->ca_file, the
 *	names and bytes of the files in peer->ca_dir, and peer->trust;
 *	when neither ca_file nor ca_dir is given, the certificates and
 *	CRLs ssl's verify store holds now instead (a store that loads a
 *	directory lazily grows as it verifies: name the directory in
 *	ca_dir so the key stays the same).  Two connections get the same
 *	key only if all of these agree.  Reads ssl only.  0, or -1 (bad
 *	peer, a CA file or directory that cannot be read).
 */
int sessdb_ssl_peer_key(SSL *ssl, const struct sessdb_ssl_peer *peer,
    unsigned char key[SESSDB_SSL_PEER_KEY_LEN]);

/* Counters of the client glue on one ctx since attach. */
struct sessdb_ssl_client_stats {
	uint64_t lookups;	/* sessdb_ssl_client_peer calls */
	uint64_t hits;		/* sessions set (offered to the server) */
	uint64_t taken;		/* of those, single-use tickets taken */
	uint64_t misses;	/* no usable session for the peer */
	uint64_t stores;	/* sessions written */
	uint64_t store_failures; /* encode failed, store full or in error */
	uint64_t skipped;	/* not written: not resumable, no peer named,
				   a client certificate without the flag */
	uint64_t refused;	/* offered sessions the server did not resume
				   (or a fatal alert): removed */
	uint64_t rejected;	/* records that did not decode or named another
				   peer: removed, a miss */
};

/* sessdb_ssl_client_stats - copy ctx's counters; 0, or -1 if not attached. */
int sessdb_ssl_client_stats(const SSL_CTX *ctx,
    struct sessdb_ssl_client_stats *st);

/* Who a client record is for: its payload's peer header. */
struct sessdb_ssl_client_info {
	char		host[256];
	unsigned	port;
	char		sni[256];	/* "" when no SNI was sent */
	int		single_use;	/* a TLS 1.3 ticket (taken once) */
};

/*
 * sessdb_ssl_client_decode - a client record's payload (docs/FORMAT.md:
 *	peer header, then the DER): the session as a new reference, info
 *	(if not NULL) filled.  NULL with *why (if why) set when the payload
 *	is malformed.  Used by the glue and by sessdump.
 */
SSL_SESSION *sessdb_ssl_client_decode(const void *payload, size_t len,
    struct sessdb_ssl_client_info *info, const char **why);

#ifdef __cplusplus
}
#endif

#endif /* SESSDB_SSL_H */
