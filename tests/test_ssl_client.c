/*
 * NAME
 *	test_ssl_client.c - the client glue's peer key and record payload
 *
 * DESCRIPTION
 *	The peer key decides which connections may resume each other's
 *	sessions, so it is tested as a table: one base setting, and rows
 *	that each change one thing a resumption depends on (host, port,
 *	SNI, ALPN, protocol range, ciphers, verification, trust store,
 *	client certificate).  Every row must give a key of its own, and the
 *	base must give the same key on another SSL_CTX (and with its CAs
 *	loaded in another order).  Then the payload codec (a table of good
 *	and malformed peer headers), the calls' refusals, and handshakes in
 *	memory (BIO pairs) between two client ctxs on one store and a
 *	server ctx: resumption, tickets taken, refused sessions removed,
 *	client certificates (these run under valgrind with the unit suite).
 *	Handshakes against real servers, in separate processes, are in
 *	tests/client.py.
 *
 *	Certificates come from $SESSDB_TOP_SRCDIR/data (data/gen-certs.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "common.h"

static char datadir[512];

/* data - the path of data/name, written to buf. */
static const char *
data(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", datadir, name);
	return buf;
}

/* One row of the peer-key table: a change from the base setting. */
struct row {
	const char	*name;
	void		(*change)(SSL_CTX *ctx, SSL *ssl, struct sessdb_ssl_peer *p);
};

static char cadir[1024];	/* a CA directory made by suite_init */

static void ch_none(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { }
static void ch_host(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->host = "127.0.0.1"; }
static void ch_port(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->port = 444; }
static void ch_sni(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->sni = "www.example"; }
static void ch_no_sni(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->sni = NULL; }
static void ch_trust(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->trust = "pinned"; }

static void
ch_alpn(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	p->alpn = (const unsigned char *)"\x02h2";
	p->alpn_len = 3;
}

static void
ch_alpn2(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	p->alpn = (const unsigned char *)"\x08http/1.1";
	p->alpn_len = 9;
}

static void ch_min(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_min_proto_version(s, TLS1_3_VERSION); }
static void ch_max(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_max_proto_version(s, TLS1_2_VERSION); }
static void ch_ciphers12(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_cipher_list(s, "ECDHE-ECDSA-AES128-GCM-SHA256"); }
static void ch_ciphers13(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_ciphersuites(s, "TLS_AES_128_GCM_SHA256"); }
static void ch_verify_none(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_verify(s, SSL_VERIFY_NONE, NULL); }
static void ch_depth(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_verify_depth(s, 2); }
static void ch_crl_flag(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { X509_VERIFY_PARAM_set_flags(SSL_get0_param(s), X509_V_FLAG_PARTIAL_CHAIN); }
static void ch_vname(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set1_host(s, "localhost"); }
static void ch_vname2(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set1_host(s, "www.example"); }
static void ch_vip(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), "127.0.0.1"); }
static void ch_seclevel(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { SSL_set_security_level(s, 3); }

static char buf_cafile2[1024];
static void ch_cafile(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->ca_file = buf_cafile2; }
static void ch_cadir(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p) { p->ca_dir = cadir; }

/* ch_store - no CA file named: the verify store's contents count. */
static void
ch_store(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	p->ca_file = NULL;
}

/* ch_store_more - no CA file named, and one more CA in the store. */
static void
ch_store_more(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	char buf[1024];

	p->ca_file = NULL;
	CU_ASSERT(SSL_CTX_load_verify_locations(c, data("server-rsa.pem", buf,
	    sizeof buf), NULL) == 1);
}

static int
cert_cb(SSL *ssl, X509 **x, EVP_PKEY **k)
{
	return 0;
}

/* ch_cert - a client certificate (loaded on the SSL). */
static void
ch_cert(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	char a[1024], b[1024];

	CU_ASSERT(SSL_use_certificate_file(s, data("client.pem", a, sizeof a),
	    SSL_FILETYPE_PEM) == 1);
	CU_ASSERT(SSL_use_PrivateKey_file(s, data("client.key", b, sizeof b),
	    SSL_FILETYPE_PEM) == 1);
}

/* ch_cert_cb - a client certificate callback on the ctx. */
static void
ch_cert_cb(SSL_CTX *c, SSL *s, struct sessdb_ssl_peer *p)
{
	SSL_CTX_set_client_cert_cb(c, cert_cb);
}

static const struct row rows[] = {
	{ "base", ch_none },
	{ "another host", ch_host },
	{ "another port", ch_port },
	{ "another SNI", ch_sni },
	{ "no SNI", ch_no_sni },
	{ "ALPN h2", ch_alpn },
	{ "ALPN http/1.1", ch_alpn2 },
	{ "trust policy named", ch_trust },
	{ "minimum TLS 1.3", ch_min },
	{ "maximum TLS 1.2", ch_max },
	{ "TLS 1.2 cipher list", ch_ciphers12 },
	{ "TLS 1.3 cipher suites", ch_ciphers13 },
	{ "no verification", ch_verify_none },
	{ "verify depth", ch_depth },
	{ "verify flags", ch_crl_flag },
	{ "verified name localhost", ch_vname },
	{ "verified name www.example", ch_vname2 },
	{ "verified IP address", ch_vip },
	{ "security level", ch_seclevel },
	{ "another CA file", ch_cafile },
	{ "a CA directory too", ch_cadir },
	{ "verify store contents", ch_store },
	{ "verify store with one more CA", ch_store_more },
	{ "client certificate", ch_cert },
	{ "client certificate callback", ch_cert_cb },
};

/* base_ctx - the base client ctx: TLS 1.2..1.3, verification, two
 * certificates in its verify store: ca.pem, then client.pem (the other
 * way round when reversed). */
static SSL_CTX *
base_ctx(int reversed)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char a[1024];

	CU_ASSERT_FATAL(ctx != NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (reversed)
		CU_ASSERT(SSL_CTX_load_verify_locations(ctx, data("client.pem",
		    a, sizeof a), NULL) == 1);
	CU_ASSERT(SSL_CTX_load_verify_locations(ctx, data("ca.pem", a,
	    sizeof a), NULL) == 1);
	if (!reversed)
		CU_ASSERT(SSL_CTX_load_verify_locations(ctx, data("client.pem",
		    a, sizeof a), NULL) == 1);
	return ctx;
}

/* key_of - the key for row r (on a fresh ctx and SSL); 0 or -1. */
static int
key_of(const struct row *r, int reversed, unsigned char *key)
{
	static char cafile[1024];
	SSL_CTX *ctx = base_ctx(reversed);
	SSL *ssl;
	struct sessdb_ssl_peer p = { .host = "localhost", .port = 443,
	    .sni = "localhost", .ca_file = data("ca.pem", cafile,
	    sizeof cafile) };
	int rc;

	ssl = SSL_new(ctx);
	CU_ASSERT_FATAL(ssl != NULL);
	r->change(ctx, ssl, &p);
	rc = sessdb_ssl_peer_key(ssl, &p, key);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return rc;
}

/* test_peer_key_table - every row its own key; the base is stable. */
static void
test_peer_key_table(void)
{
	unsigned char keys[TC_NELEM(rows)][SESSDB_SSL_PEER_KEY_LEN];
	unsigned char again[SESSDB_SSL_PEER_KEY_LEN];
	size_t i, j;

	for (i = 0; i < TC_NELEM(rows); i++)
		tc_check("peer key", key_of(&rows[i], 0, keys[i]) == 0,
		    "%s: no key", rows[i].name);
	for (i = 0; i < TC_NELEM(rows); i++)
		for (j = i + 1; j < TC_NELEM(rows); j++)
			tc_check("peer key", memcmp(keys[i], keys[j],
			    SESSDB_SSL_PEER_KEY_LEN) != 0,
			    "'%s' and '%s' got the same key", rows[i].name,
			    rows[j].name);
	/* The same settings on another ctx and SSL: the same key. */
	CU_ASSERT(key_of(&rows[0], 0, again) == 0);
	CU_ASSERT(memcmp(again, keys[0], sizeof again) == 0);
}

/* test_peer_key_store_order - the verify store's CAs in another order:
 * the same key (the digests are sorted). */
static void
test_peer_key_store_order(void)
{
	static const struct row store = { "store", ch_store };
	unsigned char a[SESSDB_SSL_PEER_KEY_LEN], b[SESSDB_SSL_PEER_KEY_LEN];

	CU_ASSERT(key_of(&store, 0, a) == 0);
	CU_ASSERT(key_of(&store, 1, b) == 0);
	CU_ASSERT(memcmp(a, b, sizeof a) == 0);
}

/* test_peer_key_cadir_change - a file added to the CA directory: the key
 * changes (the glue's cache notices the directory's mtime). */
static void
test_peer_key_cadir_change(void)
{
	SSL_CTX *ctx = base_ctx(0);
	struct sessdb *db;
	struct sessdb_ssl_peer p = { .host = "h", .port = 1, .ca_dir = cadir };
	unsigned char a[SESSDB_SSL_PEER_KEY_LEN], b[SESSDB_SSL_PEER_KEY_LEN];
	char path[1200], dbpath[1024], src[1024];
	SSL *s1, *s2;

	CU_ASSERT_FATAL(tc_fresh(dbpath, sizeof dbpath, "cadir.db") == 0);
	CU_ASSERT_FATAL((db = tc_open(dbpath, NULL)) != NULL);
	CU_ASSERT_FATAL(sessdb_ssl_attach_client(ctx, db, 0) == 0);
	s1 = SSL_new(ctx);
	CU_ASSERT(sessdb_ssl_client_peer(s1, &p) == 0);	/* fills the cache */
	CU_ASSERT(sessdb_ssl_peer_key(s1, &p, a) == 0);
	snprintf(path, sizeof path, "%s/extra.pem", cadir);
	CU_ASSERT(tc_copy_file(data("client.pem", src, sizeof src), path) == 0);
	s2 = SSL_new(ctx);
	CU_ASSERT(sessdb_ssl_peer_key(s2, &p, b) == 0);
	CU_ASSERT(memcmp(a, b, sizeof a) != 0);
	CU_ASSERT(unlink(path) == 0);
	SSL_free(s1);
	SSL_free(s2);
	SSL_CTX_free(ctx);
	sessdb_close(db);
}

/* test_peer_bad - peers that cannot be keyed are refused. */
static void
test_peer_bad(void)
{
	static char longhost[300];
	const struct sessdb_ssl_peer bad[] = {
		{ .host = NULL, .port = 1 },
		{ .host = "", .port = 1 },
		{ .host = "h", .port = 0 },
		{ .host = "h", .port = 65536 },
		{ .host = "h", .port = 1, .sni = "" },
		{ .host = longhost, .port = 1 },
		{ .host = "h", .port = 1, .alpn = (const unsigned char *)"", .alpn_len = 0 },
		{ .host = "h", .port = 1, .ca_file = "/nonexistent/ca.pem" },
		{ .host = "h", .port = 1, .ca_dir = "/nonexistent" },
	};
	SSL_CTX *ctx = base_ctx(0);
	SSL *ssl = SSL_new(ctx);
	unsigned char key[SESSDB_SSL_PEER_KEY_LEN];
	size_t i;

	memset(longhost, 'a', 256);
	for (i = 0; i < TC_NELEM(bad); i++)
		tc_check("peer_bad", sessdb_ssl_peer_key(ssl, &bad[i], key) == -1,
		    "bad peer %zu got a key", i);
	CU_ASSERT(sessdb_ssl_peer_key(ssl, NULL, key) == -1);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

/* make_session - a session of protocol version v with a cipher of that
 * version, a master key and an ID. */
static SSL_SESSION *
make_session(int v)
{
	static const unsigned char mk[48] = { 1, 2, 3 };
	static const unsigned char id[32] = { 9, 9, 9 };
	SSL_SESSION *s = SSL_SESSION_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
	const SSL_CIPHER *c;

	CU_ASSERT_FATAL(s != NULL && ssl != NULL);
	c = SSL_CIPHER_find(ssl, (const unsigned char *)(v == TLS1_3_VERSION ?
	    "\x13\x01" : "\xc0\x2b"));
	CU_ASSERT(c != NULL && SSL_SESSION_set_cipher(s, c) == 1);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	CU_ASSERT(SSL_SESSION_set_protocol_version(s, v) == 1);
	CU_ASSERT(SSL_SESSION_set1_master_key(s, mk, sizeof mk) == 1);
	CU_ASSERT(SSL_SESSION_set1_id(s, id, sizeof id) == 1);
	return s;
}

/* payload - header (version, kind, port, host, sni) + DER of s into buf;
 * its length. */
static size_t
payload(unsigned char *buf, int version, int kind, unsigned port,
    const char *host, const char *sni, SSL_SESSION *s)
{
	unsigned char *der;
	size_t hl = strlen(host), sl = strlen(sni), dl, n = 0;

	CU_ASSERT_FATAL(sessdb_ssl_encode(s, &der, &dl) == 0);
	buf[n++] = (unsigned char)version;
	buf[n++] = (unsigned char)kind;
	buf[n++] = (unsigned char)(port >> 8);
	buf[n++] = (unsigned char)port;
	buf[n++] = (unsigned char)hl;
	buf[n++] = (unsigned char)sl;
	memcpy(buf + n, host, hl);
	n += hl;
	memcpy(buf + n, sni, sl);
	n += sl;
	memcpy(buf + n, der, dl);
	n += dl;
	sessdb_ssl_der_free(der, dl);
	return n;
}

/* test_client_decode - a table of good and malformed client payloads. */
static void
test_client_decode(void)
{
	SSL_SESSION *s12 = make_session(TLS1_2_VERSION);
	SSL_SESSION *s13 = make_session(TLS1_3_VERSION);
	struct {
		const char	*name;
		int		version, kind;
		unsigned	port;
		const char	*host, *sni;
		SSL_SESSION	*s;
		size_t		cut;	/* bytes cut off the end */
		int		want;	/* 1: decodes */
	} t[] = {
		{ "TLS 1.2 reusable", 1, 1, 443, "mx.example", "mx.example", s12, 0, 1 },
		{ "TLS 1.3 ticket", 1, 2, 25, "10.0.0.1", "", s13, 0, 1 },
		{ "unknown version", 2, 1, 443, "h", "", s12, 0, 0 },
		{ "unknown kind", 1, 3, 443, "h", "", s12, 0, 0 },
		{ "ticket kind on TLS 1.2", 1, 2, 443, "h", "", s12, 0, 0 },
		{ "reusable kind on TLS 1.3", 1, 1, 443, "h", "", s13, 0, 0 },
		{ "empty host", 1, 1, 443, "", "", s12, 0, 0 },
		{ "port 0", 1, 1, 0, "h", "", s12, 0, 0 },
		{ "truncated DER", 1, 1, 443, "h", "s", s12, 5, 0 },
	};
	unsigned char buf[4096];
	struct sessdb_ssl_client_info info;
	const char *why;
	SSL_SESSION *got;
	size_t i, n;

	for (i = 0; i < TC_NELEM(t); i++) {
		n = payload(buf, t[i].version, t[i].kind, t[i].port, t[i].host,
		    t[i].sni, t[i].s) - t[i].cut;
		why = NULL;
		got = sessdb_ssl_client_decode(buf, n, &info, &why);
		tc_check("client_decode", (got != NULL) == t[i].want,
		    "%s: got %s, want %s (%s)", t[i].name, got ? "a session" :
		    "NULL", t[i].want ? "a session" : "NULL", why ? why : "-");
		if (got != NULL) {
			CU_ASSERT(strcmp(info.host, t[i].host) == 0);
			CU_ASSERT(strcmp(info.sni, t[i].sni) == 0);
			CU_ASSERT(info.port == t[i].port);
			CU_ASSERT(info.single_use == (t[i].kind == 2));
		} else
			CU_ASSERT(why != NULL);
		SSL_SESSION_free(got);
	}
	/* a header that claims more host bytes than there are, a NUL */
	n = payload(buf, 1, 1, 443, "host", "", s12);
	buf[4] = 250;
	CU_ASSERT(sessdb_ssl_client_decode(buf, 20, NULL, NULL) == NULL);
	buf[4] = 4;
	buf[7] = '\0';
	CU_ASSERT(sessdb_ssl_client_decode(buf, n, NULL, NULL) == NULL);
	CU_ASSERT(sessdb_ssl_client_decode(buf, 3, NULL, NULL) == NULL);
	CU_ASSERT(sessdb_ssl_client_decode(NULL, 0, NULL, NULL) == NULL);
	SSL_SESSION_free(s12);
	SSL_SESSION_free(s13);
}

/* test_attach_refusals - server ctx, bad flags, unattached ctx, twice. */
static void
test_attach_refusals(void)
{
	SSL_CTX *srv = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cli = SSL_CTX_new(TLS_client_method());
	struct sessdb_ssl_client_stats st;
	struct sessdb_ssl_peer p = { .host = "h", .port = 1 };
	char path[1024];
	struct sessdb *db;
	SSL *ssl;

	CU_ASSERT_FATAL(tc_fresh(path, sizeof path, "refuse.db") == 0);
	CU_ASSERT_FATAL((db = tc_open(path, NULL)) != NULL);
	CU_ASSERT(sessdb_ssl_attach_client(srv, db, 0) == -1);
	CU_ASSERT(sessdb_ssl_attach_client(cli, db, 0x80) == -1);
	CU_ASSERT(sessdb_ssl_attach_client(cli, NULL, 0) == -1);
	CU_ASSERT(sessdb_ssl_client_stats(cli, &st) == -1);
	ssl = SSL_new(cli);
	CU_ASSERT(sessdb_ssl_client_peer(ssl, &p) == -1);	/* not attached */
	SSL_free(ssl);
	CU_ASSERT(sessdb_ssl_attach_client(cli, db, 0) == 0);
	ssl = SSL_new(cli);
	CU_ASSERT(sessdb_ssl_client_peer(ssl, &p) == 0);	/* empty store */
	CU_ASSERT(sessdb_ssl_client_peer(ssl, &p) == -1);	/* named twice */
	CU_ASSERT(sessdb_ssl_client_stats(cli, &st) == 0);
	CU_ASSERT(st.lookups == 1 && st.misses == 1 && st.hits == 0);
	SSL_free(ssl);
	CU_ASSERT(sessdb_ssl_detach_client(cli) == 0);
	CU_ASSERT(sessdb_ssl_detach_client(cli) == -1);
	CU_ASSERT(SSL_CTX_get_session_cache_mode(cli) == SSL_SESS_CACHE_SERVER);
	SSL_CTX_free(srv);
	SSL_CTX_free(cli);
	sessdb_close(db);
}


/* ---- handshakes in memory (BIO pairs): store, take, refuse ---- */

/* srv_ctx - a server ctx with the test certificate, protocol tls. */
static SSL_CTX *
srv_ctx(int tls)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char a[1024], b[1024];

	CU_ASSERT_FATAL(ctx != NULL);
	SSL_CTX_set_min_proto_version(ctx, tls);
	SSL_CTX_set_max_proto_version(ctx, tls);
	CU_ASSERT(SSL_CTX_use_certificate_chain_file(ctx, data("server-chain.pem",
	    a, sizeof a)) == 1);
	CU_ASSERT(SSL_CTX_use_PrivateKey_file(ctx, data("server.key", b,
	    sizeof b), SSL_FILETYPE_PEM) == 1);
	return ctx;
}

static int info_done;	/* HANDSHAKE_DONE seen by the application's callback */

/* app_info_cb - the application's own info callback (set on the ctx). */
static void
app_info_cb(const SSL *ssl, int where, int ret)
{
	if (where & SSL_CB_HANDSHAKE_DONE)
		info_done++;
}

/* cli_ctx - a client ctx verifying against ca.pem, attached to db. */
static SSL_CTX *
cli_ctx(struct sessdb *db, unsigned flags)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char a[1024];

	CU_ASSERT_FATAL(ctx != NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	CU_ASSERT(SSL_CTX_load_verify_locations(ctx, data("ca.pem", a,
	    sizeof a), NULL) == 1);
	SSL_CTX_set_info_callback(ctx, app_info_cb);
	CU_ASSERT_FATAL(sessdb_ssl_attach_client(ctx, db, flags) == 0);
	return ctx;
}

/*
 * connect_mem - one connection of a client SSL of cctx to a server SSL of
 *	sctx over a BIO pair, naming the peer localhost:443; the client
 *	reads one byte the server writes, so TLS 1.3 tickets are in.
 *	Returns SSL_session_reused, or -1 if the handshake failed; *offered
 *	gets sessdb_ssl_client_peer's result.
 */
static int
connect_mem(SSL_CTX *sctx, SSL_CTX *cctx, int *offered, int with_cert)
{
	struct sessdb_ssl_peer p = { .host = "localhost", .port = 443,
	    .sni = "localhost" };
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *cb = NULL, *sb = NULL;
	char a[1024], b[1024], byte;
	int i, rc = -1, cdone = 0, sdone = 0;

	CU_ASSERT_FATAL(c != NULL && s != NULL);
	if (with_cert) {
		CU_ASSERT(SSL_use_certificate_file(c, data("client.pem", a,
		    sizeof a), SSL_FILETYPE_PEM) == 1);
		CU_ASSERT(SSL_use_PrivateKey_file(c, data("client.key", b,
		    sizeof b), SSL_FILETYPE_PEM) == 1);
	}
	CU_ASSERT_FATAL(BIO_new_bio_pair(&cb, 0, &sb, 0) == 1);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set1_host(c, "localhost");
	*offered = sessdb_ssl_client_peer(c, &p);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (i = 0; i < 100 && !(cdone && sdone); i++) {
		if (!cdone)
			cdone = SSL_do_handshake(c) == 1;
		if (!sdone)
			sdone = SSL_do_handshake(s) == 1;
	}
	if (cdone && sdone && SSL_write(s, "x", 1) == 1 &&
	    SSL_read(c, &byte, 1) == 1)
		rc = SSL_session_reused(c);
	SSL_free(c);
	SSL_free(s);
	return rc;
}

/* count_ns - live records of namespace ns in db. */
static int
count_ns_cb(void *arg, const struct sessdb_record *rec)
{
	int *n = arg;

	if (rec->problem == NULL && rec->ns == SESSDB_NS_CLIENT)
		(*n)++;
	return 0;
}

static int
client_records(struct sessdb *db)
{
	int n = 0;

	CU_ASSERT(sessdb_foreach(db, SESSDB_ITER_LIVE, count_ns_cb, &n) == 0);
	return n;
}

/* check_mem_resume - two client ctxs on one store (two processes): the
 * second resumes what the first stored; a TLS 1.3 ticket is taken. */
static void
check_mem_resume(int tls)
{
	SSL_CTX *sctx = srv_ctx(tls);
	struct sessdb_ssl_client_stats st;
	struct sessdb *db;
	SSL_CTX *c1, *c2;
	char path[1024];
	int offered, n1;

	CU_ASSERT_FATAL(tc_fresh(path, sizeof path, "mem") == 0);
	CU_ASSERT_FATAL((db = tc_open(path, NULL)) != NULL);
	c1 = cli_ctx(db, 0);
	c2 = cli_ctx(db, 0);
	info_done = 0;
	CU_ASSERT(connect_mem(sctx, c1, &offered, 0) == 0);
	CU_ASSERT(offered == 0);
	n1 = client_records(db);
	tc_check("mem resume", n1 == (tls == TLS1_3_VERSION ? 2 : 1),
	    "TLS %x: %d client records after a full handshake", tls, n1);
	CU_ASSERT(connect_mem(sctx, c2, &offered, 0) == 1);
	CU_ASSERT(offered == 1);
	CU_ASSERT(sessdb_ssl_client_stats(c2, &st) == 0);
	CU_ASSERT(st.hits == 1 && st.refused == 0);
	CU_ASSERT(st.taken == (tls == TLS1_3_VERSION ? 1u : 0u));
	/* the application's info callback still runs (2 handshakes) */
	CU_ASSERT(info_done == 2);
	SSL_CTX_free(c1);
	SSL_CTX_free(c2);
	SSL_CTX_free(sctx);
	sessdb_close(db);
}

static void test_mem_resume_tls12(void) { check_mem_resume(TLS1_2_VERSION); }
static void test_mem_resume_tls13(void) { check_mem_resume(TLS1_3_VERSION); }

/* check_mem_refused - another server (other ticket keys) does not resume
 * the stored session: it is removed (a ticket was taken; a TLS 1.2
 * session is replaced), and never offered again. */
static void
check_mem_refused(int tls)
{
	SSL_CTX *s1 = srv_ctx(tls), *s2 = srv_ctx(tls);
	struct sessdb_ssl_client_stats st;
	struct sessdb *db;
	SSL_CTX *c;
	char path[1024];
	int offered, i, n;

	SSL_CTX_set_num_tickets(s2, 0);
	SSL_CTX_set_options(s2, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(s2, SSL_SESS_CACHE_OFF);
	CU_ASSERT_FATAL(tc_fresh(path, sizeof path, "refused") == 0);
	CU_ASSERT_FATAL((db = tc_open(path, NULL)) != NULL);
	c = cli_ctx(db, 0);
	CU_ASSERT(connect_mem(s1, c, &offered, 0) == 0);
	n = client_records(db);
	for (i = 0; i < n; i++) {
		CU_ASSERT(connect_mem(s2, c, &offered, 0) == 0);
		tc_check("refused", offered == 1, "TLS %x: connection %d of %d "
		    "offered nothing", tls, i + 1, n);
	}
	CU_ASSERT(client_records(db) == 0);
	CU_ASSERT(connect_mem(s2, c, &offered, 0) == 0);
	CU_ASSERT(offered == 0);
	CU_ASSERT(sessdb_ssl_client_stats(c, &st) == 0);
	CU_ASSERT(st.refused == (uint64_t)n);
	SSL_CTX_free(c);
	SSL_CTX_free(s1);
	SSL_CTX_free(s2);
	sessdb_close(db);
}

static void test_mem_refused_tls12(void) { check_mem_refused(TLS1_2_VERSION); }
static void test_mem_refused_tls13(void) { check_mem_refused(TLS1_3_VERSION); }

/* test_mem_client_cert - a client certificate's sessions are stored only
 * with SESSDB_SSL_SHARE_CLIENT_CERT, and resumed only with that
 * certificate. */
static void
test_mem_client_cert(void)
{
	SSL_CTX *sctx = srv_ctx(TLS1_3_VERSION);
	struct sessdb_ssl_client_stats st;
	struct sessdb *db;
	SSL_CTX *c;
	char path[1024];
	int offered;

	CU_ASSERT_FATAL(tc_fresh(path, sizeof path, "cert") == 0);
	CU_ASSERT_FATAL((db = tc_open(path, NULL)) != NULL);
	c = cli_ctx(db, 0);
	CU_ASSERT(connect_mem(sctx, c, &offered, 1) == 0);
	CU_ASSERT(client_records(db) == 0);
	CU_ASSERT(sessdb_ssl_client_stats(c, &st) == 0);
	CU_ASSERT(st.skipped == 2 && st.stores == 0);
	CU_ASSERT(sessdb_ssl_attach_client(c, db, SESSDB_SSL_SHARE_CLIENT_CERT) == 0);
	CU_ASSERT(connect_mem(sctx, c, &offered, 1) == 0);
	CU_ASSERT(client_records(db) == 2);
	CU_ASSERT(connect_mem(sctx, c, &offered, 0) == 0);	/* no cert */
	CU_ASSERT(offered == 0);
	CU_ASSERT(connect_mem(sctx, c, &offered, 1) == 1);	/* same cert */
	CU_ASSERT(offered == 1);
	SSL_CTX_free(c);
	SSL_CTX_free(sctx);
	sessdb_close(db);
}

/* suite_init - the data directory and a CA directory with ca.pem. */
static int
suite_init(void)
{
	const char *top = getenv("SESSDB_TOP_SRCDIR");
	char path[1200], src[1024];

	snprintf(datadir, sizeof(datadir), "%s/data", top != NULL ? top : "..");
	snprintf(buf_cafile2, sizeof buf_cafile2, "%s/server-chain.pem", datadir);
	if (tc_fresh(cadir, sizeof cadir, "cadir") != 0 || mkdir(cadir, 0700) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/ca.pem", cadir);
	return tc_copy_file(data("ca.pem", src, sizeof src), path);
}

static const struct tc_case tests[] = {
	{ "peer key: a table of settings, each its own key", test_peer_key_table },
	{ "peer key: verify store order does not matter", test_peer_key_store_order },
	{ "peer key: a CA directory that changes", test_peer_key_cadir_change },
	{ "peer key: bad peers refused", test_peer_bad },
	{ "client payload: good and malformed headers", test_client_decode },
	{ "attach_client and client_peer refusals", test_attach_refusals },
	{ "in memory: another ctx resumes, TLS 1.2", test_mem_resume_tls12 },
	{ "in memory: another ctx resumes, a ticket taken, TLS 1.3", test_mem_resume_tls13 },
	{ "in memory: a refused session is removed, TLS 1.2", test_mem_refused_tls12 },
	{ "in memory: refused tickets are gone, TLS 1.3", test_mem_refused_tls13 },
	{ "in memory: client certificate sessions only with the flag", test_mem_client_cert },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("ssl_client", tests, suite_init, NULL),
	};

	if (tc_tmpdir_make("sessdb-client") != 0)
		return 2;
	return tc_run(suites, TC_NELEM(suites));
}
