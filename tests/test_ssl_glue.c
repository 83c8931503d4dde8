/*
 * NAME
 *	test_ssl_glue - CUnit tests of the OpenSSL glue (lib/ssl_glue.c)
 *
 * DESCRIPTION
 *	Real handshakes inside one process over BIO pairs.  "Another
 *	process" is a second SSL_CTX attached to a second store handle on the
 *	same file (and, in one test, a forked child): nothing is shared with
 *	the first except the file.  Certificates come from
 *	$SESSDB_TOP_SRCDIR/data (see data/gen-certs.sh): server.pem (ECDSA)
 *	is the default server identity, server-rsa.pem (RSA, same names,
 *	same CA) another one, and the two together a third.
 *
 *	Under valgrind (SESSDB_UNDER_VALGRIND set) the leak loop runs fewer
 *	rounds; valgrind or ASan then reports any leaked reference.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common.h"
#include "sessdb.h"
#include "sessdb_ssl.h"

#define MAX_TICKETS 8

static char datadir[4096];
static int db_seq;

/* A finished handshake as seen by both ends. */
struct hs {
	int		ok;		/* handshake and data exchange completed */
	int		reused;		/* server says the session was resumed */
	int		early;		/* server's SSL_get_early_data_status */
	int		peer_ok;	/* server has a verified client cert */
	char		early_got[64];	/* early data the server read */
	char		appdata[16];	/* ticket appdata of the server's session */
	SSL_SESSION	*sess[MAX_TICKETS]; /* sessions the client received */
	int		nsess;
};

/* How to run one handshake. */
struct hs_opts {
	SSL_SESSION	*offer;		/* client offers this session */
	const char	*early;		/* client sends this as early data */
	int		no_shutdown;	/* server frees without SSL_shutdown */
};

/* Server certificates (srv_cfg.certs). */
#define CERT_EC		0x01	/* server.pem, ECDSA P-256 (the default) */
#define CERT_RSA	0x02	/* server-rsa.pem, RSA 2048 */

/* Server context settings. */
struct srv_cfg {
	const char	*sid_ctx;	/* NULL: none */
	unsigned	certs;		/* CERT_* bits; 0: CERT_EC */
	int		certs_late;	/* load certificates after attach */
	int		cert_cb;	/* none on the ctx: each SSL gets them
					   from a certificate callback */
	const char	*appdata;	/* TLS 1.3: the application's own
					   ticket appdata on every ticket */
	int		tls;		/* 12 or 13: pin that version; 0: both */
	int		no_ticket;	/* SSL_OP_NO_TICKET */
	int		verify_client;	/* require a client certificate */
	uint32_t	early;		/* max early data */
	long		timeout;	/* 0: OpenSSL's default */
	unsigned	flags;		/* sessdb_ssl_attach flags */
};

static struct hs *cur_hs;


/* data_file - path of a file in the test data directory (static buffer). */
static const char *
data_file(const char *name)
{
	static char path[8192];

	snprintf(path, sizeof(path), "%s/%s", datadir, name);
	return path;
}

/* new_db_path - a fresh database path in the test directory. */
static void
new_db_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/sess%d.db", tc_dir, ++db_seq);
}

/* open_db - open path with the fake clock and a short lock timeout. */
static struct sessdb *
open_db(const char *path, uint32_t max_ttl)
{
	struct sessdb_options o;
	char err[256];
	struct sessdb *db;

	memset(&o, 0, sizeof(o));
	o.clock = tc_clock;
	o.lock_timeout_ms = 100;
	o.max_ttl = max_ttl;
	o.log = tc_log;
	db = sessdb_open(path, &o, err, sizeof(err));
	if (db == NULL)
		fprintf(stderr, "sessdb_open %s: %s\n", path, err);
	return db;
}

/* count_cb - sessdb_foreach callback counting records. */
static int
count_cb(void *arg, const struct sessdb_record *rec)
{
	(*(int *)arg)++;
	return 0;
}

/* count_records - number of records in db, or -1. */
static int
count_records(struct sessdb *db)
{
	int n = 0;

	if (sessdb_foreach(db, 0, count_cb, &n) != 0)
		return -1;
	return n;
}

/* server_key - the store key (ID) of a client's session: for TLS 1.3
   the stateful ticket, which is the server's session ID. */
static const unsigned char *
server_key(const SSL_SESSION *sess, unsigned int *len)
{
	const unsigned char *tick;
	size_t tick_len;

	if (SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION)
		return SSL_SESSION_get_id(sess, len);
	SSL_SESSION_get0_ticket(sess, &tick, &tick_len);
	*len = (unsigned int)tick_len;
	return tick;
}

/* set_version - pin ctx to TLS 1.2 or 1.3 (tls 12/13), or leave both. */
static void
set_version(SSL_CTX *ctx, int tls)
{
	if (tls == 12) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	} else if (tls == 13) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	}
}

/* load_certs - the server certificates of mask (CERT_*) into ctx; 0 or -1. */
static int
load_certs(SSL_CTX *ctx, unsigned mask)
{
	if ((mask & CERT_EC) && (SSL_CTX_use_certificate_chain_file(ctx,
	    data_file("server.pem")) != 1 || SSL_CTX_use_PrivateKey_file(ctx,
	    data_file("server.key"), SSL_FILETYPE_PEM) != 1))
		return -1;
	if ((mask & CERT_RSA) && (SSL_CTX_use_certificate_chain_file(ctx,
	    data_file("server-rsa.pem")) != 1 || SSL_CTX_use_PrivateKey_file(ctx,
	    data_file("server-rsa.key"), SSL_FILETYPE_PEM) != 1))
		return -1;
	return 0;
}

/* ssl_cert_cb - certificate callback: give the connection server.pem. */
static int
ssl_cert_cb(SSL *ssl, void *arg)
{
	return SSL_use_certificate_chain_file(ssl, data_file("server.pem")) == 1 &&
	    SSL_use_PrivateKey_file(ssl, data_file("server.key"),
	    SSL_FILETYPE_PEM) == 1;
}

/* gen_ticket_cb - an application that keeps its own data in its tickets
   (set on new sessions only: a resumed one shows what came back). */
static int
gen_ticket_cb(SSL *ssl, void *arg)
{
	if (SSL_session_reused(ssl))
		return 1;
	return SSL_SESSION_set1_ticket_appdata(SSL_get_session(ssl), arg,
	    strlen(arg));
}

/* dec_ticket_cb - take the ticket as OpenSSL decrypted it. */
static SSL_TICKET_RETURN
dec_ticket_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	return status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW ?
	    SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_IGNORE_RENEW;
}

/* server_ctx - a server context configured by cfg and attached to db. */
static SSL_CTX *
server_ctx(const struct srv_cfg *cfg, struct sessdb *db)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned certs = cfg->certs != 0 ? cfg->certs : CERT_EC;

	if (ctx == NULL)
		return NULL;
	set_version(ctx, cfg->tls);
	if (cfg->cert_cb)
		SSL_CTX_set_cert_cb(ctx, ssl_cert_cb, NULL);
	else if (!cfg->certs_late && load_certs(ctx, certs) < 0)
		goto fail;
	if (cfg->sid_ctx != NULL && !SSL_CTX_set_session_id_context(ctx,
	    (const unsigned char *)cfg->sid_ctx, (unsigned)strlen(cfg->sid_ctx)))
		goto fail;
	if (cfg->no_ticket)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (cfg->appdata != NULL && !SSL_CTX_set_session_ticket_cb(ctx,
	    gen_ticket_cb, dec_ticket_cb, (void *)cfg->appdata))
		goto fail;
	if (cfg->verify_client) {
		if (SSL_CTX_load_verify_locations(ctx, data_file("ca.pem"),
		    NULL) != 1)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	if (cfg->early > 0)
		SSL_CTX_set_max_early_data(ctx, cfg->early);
	if (cfg->timeout > 0)
		SSL_CTX_set_timeout(ctx, cfg->timeout);
	if (db != NULL && sessdb_ssl_attach(ctx, db, cfg->flags) != 0)
		goto fail;
	if (cfg->certs_late && !cfg->cert_cb && load_certs(ctx, certs) < 0)
		goto fail;
	return ctx;
fail:
	ERR_print_errors_fp(stderr);
	SSL_CTX_free(ctx);
	return NULL;
}

/* client_new_cb - collect the sessions (tickets) the client receives. */
static int
client_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	if (cur_hs == NULL || cur_hs->nsess >= MAX_TICKETS)
		return 0;
	cur_hs->sess[cur_hs->nsess++] = sess;
	return 1;	/* we keep the reference */
}

/* client_ctx - a client context for TLS version tls, with a cert if asked. */
static SSL_CTX *
client_ctx(int tls, int with_cert)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	set_version(ctx, tls);
	if (SSL_CTX_load_verify_locations(ctx, data_file("ca.pem"), NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (with_cert && (SSL_CTX_use_certificate_file(ctx,
	    data_file("client.pem"), SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, data_file("client.key"),
	    SSL_FILETYPE_PEM) != 1))
		goto fail;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_cb);
	return ctx;
fail:
	ERR_print_errors_fp(stderr);
	SSL_CTX_free(ctx);
	return NULL;
}

/* hs_clear - free the sessions collected in r. */
static void
hs_clear(struct hs *r)
{
	int i;

	for (i = 0; i < r->nsess; i++)
		SSL_SESSION_free(r->sess[i]);
	memset(r, 0, sizeof(*r));
}

/* want_more - whether rc from SSL call on ssl only means "call again". */
static int
want_more(SSL *ssl, int rc)
{
	int e = SSL_get_error(ssl, rc);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* step_client - one step of the client; 0 or -1. */
static int
step_client(SSL *c, const struct hs_opts *o, int *early_sent)
{
	size_t n;
	int rc;

	if (o->early != NULL && !*early_sent) {
		rc = SSL_write_early_data(c, o->early, strlen(o->early), &n);
		if (rc == 1)
			*early_sent = 1;
		return rc == 1 || want_more(c, rc) ? 0 : -1;
	}
	if (SSL_is_init_finished(c))
		return 0;
	rc = SSL_do_handshake(c);
	return rc == 1 || want_more(c, rc) ? 0 : -1;
}

/* step_server - one step of the server; 0 or -1. */
static int
step_server(SSL *s, const struct hs_opts *o, struct hs *r, int *early_done)
{
	size_t off, n;
	int rc;

	if (o->early != NULL && !*early_done) {
		off = strlen(r->early_got);
		rc = SSL_read_early_data(s, r->early_got + off,
		    sizeof(r->early_got) - 1 - off, &n);
		if (rc == SSL_READ_EARLY_DATA_SUCCESS)
			r->early_got[off + n] = '\0';
		else if (rc == SSL_READ_EARLY_DATA_FINISH)
			*early_done = 1;
		else if (!want_more(s, 0))
			return -1;
		return 0;
	}
	if (SSL_is_init_finished(s))
		return 0;
	rc = SSL_do_handshake(s);
	return rc == 1 || want_more(s, rc) ? 0 : -1;
}

/* exchange - server says "ping", client answers "pong" (reads tickets). */
static int
exchange(SSL *s, SSL *c)
{
	char buf[16];

	if (SSL_write(s, "ping", 4) != 4 || SSL_read(c, buf, sizeof(buf)) != 4)
		return -1;
	if (SSL_write(c, "pong", 4) != 4 || SSL_read(s, buf, sizeof(buf)) != 4)
		return -1;
	return 0;
}

/* session_appdata - the ticket appdata of ssl's session, as a string. */
static void
session_appdata(SSL *ssl, char *buf, size_t len)
{
	void *ad = NULL;
	size_t ad_len = 0;

	buf[0] = '\0';
	SSL_SESSION_get0_ticket_appdata(SSL_get_session(ssl), &ad, &ad_len);
	if (ad != NULL && ad_len < len) {
		memcpy(buf, ad, ad_len);
		buf[ad_len] = '\0';
	}
}

/* handshake - connect a client of cctx to a server of sctx; fills r. */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, const struct hs_opts *o, struct hs *r)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	BIO *bs = NULL, *bc = NULL;
	int i, early_sent = 0, early_done = 0, ret = -1;

	memset(r, 0, sizeof(*r));
	cur_hs = r;
	if (s == NULL || c == NULL || !BIO_new_bio_pair(&bs, 0, &bc, 0))
		goto done;
	SSL_set_bio(s, bs, bs);
	SSL_set_bio(c, bc, bc);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (!SSL_set1_host(c, "localhost") ||
	    (o->offer != NULL && !SSL_set_session(c, o->offer)))
		goto done;
	for (i = 0; i < 100; i++) {
		if (step_client(c, o, &early_sent) < 0 ||
		    step_server(s, o, r, &early_done) < 0)
			goto done;
		if (SSL_is_init_finished(c) && SSL_is_init_finished(s) &&
		    (o->early == NULL || early_done))
			break;
	}
	if (i == 100 || exchange(s, c) < 0)
		goto done;
	r->reused = SSL_session_reused(s);
	r->early = SSL_get_early_data_status(s);
	session_appdata(s, r->appdata, sizeof(r->appdata));
	r->peer_ok = SSL_get0_peer_certificate(s) != NULL &&
	    SSL_get_verify_result(s) == X509_V_OK;
	r->ok = 1;
	ret = 0;
done:
	if (ret < 0)
		ERR_print_errors_fp(stderr);
	ERR_clear_error();
	if (c != NULL)
		SSL_shutdown(c);
	if (s != NULL && !o->no_shutdown)
		SSL_shutdown(s);
	SSL_free(c);
	SSL_free(s);
	cur_hs = NULL;
	return ret;
}

/* Two "processes": two contexts on two handles of one file. */
struct pair {
	char		path[300];
	struct sessdb	*db[2];
	SSL_CTX		*srv[2];
	SSL_CTX		*cli;
};

/* pair_open - both servers with cfg a and b, a client for tls/cert. */
static int
pair_open(struct pair *p, const struct srv_cfg *a, const struct srv_cfg *b,
    int tls, int with_cert)
{
	memset(p, 0, sizeof(*p));
	new_db_path(p->path, sizeof(p->path));
	if ((p->db[0] = open_db(p->path, 0)) == NULL ||
	    (p->db[1] = open_db(p->path, 0)) == NULL)
		return -1;
	p->srv[0] = server_ctx(a, p->db[0]);
	p->srv[1] = server_ctx(b != NULL ? b : a, p->db[1]);
	p->cli = client_ctx(tls, with_cert);
	return p->srv[0] && p->srv[1] && p->cli ? 0 : -1;
}

/* pair_close - free everything; contexts before the stores they use. */
static void
pair_close(struct pair *p)
{
	SSL_CTX_free(p->srv[0]);
	SSL_CTX_free(p->srv[1]);
	SSL_CTX_free(p->cli);
	sessdb_close(p->db[0]);
	sessdb_close(p->db[1]);
}

/* stats_of - the glue counters of ctx (zeros if not attached). */
static struct sessdb_ssl_stats
stats_of(SSL_CTX *ctx)
{
	struct sessdb_ssl_stats st;

	memset(&st, 0, sizeof(st));
	(void)sessdb_ssl_stats(ctx, &st);
	return st;
}

/* ---------------------------------------------------------------------- */

/* TLS 1.2 session IDs: stored by one context, resumed by the other. */
static void
test_tls12_resume_across_ctx(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	struct hs h1, h2, h3;
	struct pair p;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT(!h1.reused);
	CU_ASSERT_FATAL(h1.nsess == 1);
	CU_ASSERT(count_records(p.db[0]) == 1);
	CU_ASSERT(stats_of(p.srv[0]).stores == 1);

	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).hits == 1);
	CU_ASSERT(stats_of(p.srv[1]).stores == 0);
	/* A TLS 1.2 session ID is reused: the record stays, resumes again. */
	CU_ASSERT(count_records(p.db[1]) == 1);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.reused);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	pair_close(&p);
}

/* TLS 1.2 with tickets: OpenSSL gives the session no ID, nothing is stored. */
static void
test_tls12_tickets_not_stored(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12 };
	struct pair p;
	struct hs h;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h) == 0);
	CU_ASSERT(h.ok && !h.reused);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).stores == 0);
	hs_clear(&h);
	pair_close(&p);
}

/* TLS 1.3 stateful tickets: both tickets stored, each resumes elsewhere. */
static void
test_tls13_stateful_resume_across_ctx(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 13, .no_ticket = 1 };
	struct hs h1, h2, h3;
	struct pair p;
	uint64_t stores;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 13, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT(!h1.reused);
	CU_ASSERT_FATAL(h1.nsess == 2);
	CU_ASSERT(count_records(p.db[0]) == 2);
	CU_ASSERT(stats_of(p.srv[0]).stores == 2);

	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[1] }, &h3) == 0);
	CU_ASSERT(h3.ok && h3.reused);
	CU_ASSERT(stats_of(p.srv[1]).hits == 2);
	/* Every ticket the resumptions issued is a record too. */
	stores = stats_of(p.srv[1]).stores;
	CU_ASSERT(stores == (uint64_t)(h2.nsess + h3.nsess));
	CU_ASSERT(count_records(p.db[0]) == 2 + (int)stores);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	pair_close(&p);
}

/* TLS 1.3 stateless tickets: resumable without the store, so not written. */
static void
test_tls13_stateless_not_stored(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 13 };
	struct pair p;
	struct hs h1, h2;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 13, 0) == 0);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT(h1.ok && h1.nsess == 2);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).stores == 0);
	CU_ASSERT(stats_of(p.srv[0]).skipped_stateless == 2);
	/* Same context: resumes from the ticket alone. */
	if (h1.nsess > 0) {
		CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
		CU_ASSERT(h2.reused);
		CU_ASSERT(count_records(p.db[0]) == 0);
		hs_clear(&h2);
	}
	hs_clear(&h1);
	pair_close(&p);
}

/* A session never resumes under another session-ID context. */
static void
check_sid_ctx(int tls, int with_cert)
{
	struct srv_cfg a = { .sid_ctx = "svc-a", .tls = tls, .no_ticket = 1,
	    .verify_client = with_cert };
	struct srv_cfg b = a;
	struct hs h1, h2, h3;
	struct pair p;

	b.sid_ctx = "svc-b";
	CU_ASSERT_FATAL(pair_open(&p, &a, &b, tls, with_cert) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	CU_ASSERT(count_records(p.db[0]) == h1.nsess);

	/* The record is found, OpenSSL refuses it: a full handshake. */
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok);
	CU_ASSERT(!h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).hits == 1);

	/* The refusal did not destroy it: the right context still resumes,
	   with the client certificate from the stored session. */
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.ok && h3.reused);
	CU_ASSERT(h3.peer_ok == with_cert);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	pair_close(&p);
}

static void test_sid_ctx_tls12(void) { check_sid_ctx(12, 0); }
static void test_sid_ctx_tls12_cert(void) { check_sid_ctx(12, 1); }
static void test_sid_ctx_tls13(void) { check_sid_ctx(13, 0); }
static void test_sid_ctx_tls13_cert(void) { check_sid_ctx(13, 1); }

/* Without a session-ID context nothing is stored. */
static void
test_no_sid_ctx_not_stored(void)
{
	struct srv_cfg cfg = { .tls = 12, .no_ticket = 1 };
	struct pair p;
	struct hs h;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h) == 0);
	CU_ASSERT(h.ok);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).skipped_unsafe == 1);
	CU_ASSERT(strstr(tc_last_log, "no session-ID context") != NULL);
	hs_clear(&h);
	/* Logged once per context, not per handshake. */
	tc_log_calls = 0;
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h) == 0);
	CU_ASSERT(stats_of(p.srv[0]).skipped_unsafe == 2);
	CU_ASSERT(tc_log_calls == 0);
	hs_clear(&h);
	pair_close(&p);
}

/* Expiry: the session timeout, capped by the store's max_ttl. */
static void
check_expired(int tls)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = tls, .no_ticket = 1,
	    .timeout = 100000 };
	const unsigned char *id;
	struct sessdb_meta meta;
	struct pair p;
	struct hs h1, h2;
	unsigned int id_len;
	void *data = NULL;
	size_t len;
	int64_t t0;

	memset(&p, 0, sizeof(p));
	new_db_path(p.path, sizeof(p.path));
	p.db[0] = open_db(p.path, 60);
	p.db[1] = open_db(p.path, 60);
	CU_ASSERT_FATAL(p.db[0] != NULL && p.db[1] != NULL);
	p.srv[0] = server_ctx(&cfg, p.db[0]);
	p.srv[1] = server_ctx(&cfg, p.db[1]);
	p.cli = client_ctx(tls, 0);
	CU_ASSERT_FATAL(p.srv[0] && p.srv[1] && p.cli);

	t0 = time(NULL);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	id = server_key(h1.sess[0], &id_len);
	CU_ASSERT(sessdb_get(p.db[1], SESSDB_NS_SERVER, id, id_len, &data,
	    &len, &meta) == SESSDB_OK);
	sessdb_free(data);
	CU_ASSERT(meta.expires <= time(NULL) + 60);	/* capped by max_ttl */
	CU_ASSERT(meta.expires >= t0 + 59);

	tc_now = t0 + 61;
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	tc_now = 0;
	CU_ASSERT(h2.ok);
	CU_ASSERT(!h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).misses == 1);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

static void test_expired_tls12(void) { check_expired(12); }
static void test_expired_tls13(void) { check_expired(13); }

/* The session's own timeout sets the expiry when it is the shorter. */
static void
test_expiry_follows_timeout(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1,
	    .timeout = 30 };
	const unsigned char *id;
	struct sessdb_meta meta;
	struct pair p;
	struct hs h;
	unsigned int id_len;
	void *data = NULL;
	size_t len;
	int64_t t0, t1;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	t0 = time(NULL);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h) == 0);
	t1 = time(NULL);
	CU_ASSERT_FATAL(h.nsess == 1);
	id = SSL_SESSION_get_id(h.sess[0], &id_len);
	CU_ASSERT(sessdb_get(p.db[0], SESSDB_NS_SERVER, id, id_len, &data,
	    &len, &meta) == SESSDB_OK);
	sessdb_free(data);
	/* The server's session time is within the handshake. */
	CU_ASSERT(meta.expires >= t0 + 30 && meta.expires <= t1 + 30);
	hs_clear(&h);
	pair_close(&p);
}

/*
 * Corrupt payloads under a session's key: a full handshake, record gone.
 * tls 13 with early data exercises the take path.
 */
static void
check_corrupt(const unsigned char *bad, size_t bad_len, int from_other,
    int tls, uint32_t early)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = tls, .no_ticket = 1,
	    .early = early };
	unsigned char *der = NULL;
	const unsigned char *id;
	struct pair p;
	struct hs h1, h2, h3;
	unsigned int id_len;
	void *data = NULL;
	size_t len;
	int n;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, tls, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	id = server_key(h1.sess[0], &id_len);
	if (from_other) {
		/* A well-formed session, but another one's: its DER. */
		CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h3) == 0);
		CU_ASSERT_FATAL(h3.nsess >= 1);
		n = i2d_SSL_SESSION(h3.sess[0], &der);
		CU_ASSERT_FATAL(n > 0);
		bad = der;
		bad_len = (size_t)n;
	}
	CU_ASSERT(sessdb_put(p.db[0], SESSDB_NS_SERVER, id, id_len, bad,
	    bad_len, 0) == SESSDB_OK);

	tc_last_log[0] = '\0';
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0], .early = early ? "x" : NULL }, &h2) == 0);
	CU_ASSERT(h2.ok);
	CU_ASSERT(!h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).rejected == 1);
	CU_ASSERT(strstr(tc_last_log, "dropping a record") != NULL);
	CU_ASSERT(sessdb_get(p.db[0], SESSDB_NS_SERVER, id, id_len, &data,
	    &len, NULL) == SESSDB_MISS);
	sessdb_free(data);
	OPENSSL_free(der);
	if (from_other)
		hs_clear(&h3);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

static void
test_corrupt_garbage(void)
{
	static const unsigned char junk[] = "this is not DER at all";

	check_corrupt(junk, sizeof(junk), 0, 12, 0);
	check_corrupt(junk, sizeof(junk), 0, 13, 0);
	check_corrupt(junk, sizeof(junk), 0, 13, 1024);
}

static void
test_corrupt_truncated(void)
{
	static const unsigned char der[] = { 0x30, 0x82, 0x01, 0x00, 0x02, 0x01 };

	check_corrupt(der, sizeof(der), 0, 12, 0);
	check_corrupt(der, sizeof(der), 0, 13, 1024);
}

static void
test_corrupt_other_id(void)
{
	check_corrupt(NULL, 0, 1, 12, 0);
	check_corrupt(NULL, 0, 1, 13, 0);
	check_corrupt(NULL, 0, 1, 13, 1024);
}

/* A full store declines: the handshake goes on, the store is skipped. */
static void
test_store_full(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	struct sessdb_options o;
	char path[300], err[256];
	struct sessdb *db;
	SSL_CTX *sctx, *cctx;
	struct hs h1, h2, h3;

	memset(&o, 0, sizeof(o));
	o.max_entries = 1;
	o.log = tc_log;
	new_db_path(path, sizeof(path));
	db = sessdb_open(path, &o, err, sizeof(err));
	CU_ASSERT_FATAL(db != NULL);
	sctx = server_ctx(&cfg, db);
	cctx = client_ctx(12, 0);
	CU_ASSERT_FATAL(sctx != NULL && cctx != NULL);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ 0 }, &h2) == 0);
	CU_ASSERT(h2.ok);
	CU_ASSERT(stats_of(sctx).stores == 1);
	CU_ASSERT(stats_of(sctx).store_failures == 1);
	CU_ASSERT(count_records(db) == 1);
	/* The stored one still resumes, the declined one does not. */
	CU_ASSERT_FATAL(h1.nsess == 1 && h2.nsess == 1);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ .offer = h1.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.reused);
	hs_clear(&h3);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ .offer = h2.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	sessdb_close(db);
}

/* A valid DER session followed by trailing bytes is refused too. */
static void
test_corrupt_trailing(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	unsigned char *der = NULL, *buf;
	const unsigned char *id;
	struct pair p;
	struct hs h1, h2;
	unsigned int id_len;
	int n;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 1);
	id = SSL_SESSION_get_id(h1.sess[0], &id_len);
	n = i2d_SSL_SESSION(h1.sess[0], &der);
	CU_ASSERT_FATAL(n > 0);
	buf = malloc((size_t)n + 3);
	CU_ASSERT_FATAL(buf != NULL);
	memcpy(buf, der, (size_t)n);
	memcpy(buf + n, "xyz", 3);
	CU_ASSERT(sessdb_put(p.db[0], SESSDB_NS_SERVER, id, id_len, buf,
	    (size_t)n + 3, 0) == SESSDB_OK);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && !h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).rejected == 1);
	free(buf);
	OPENSSL_free(der);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

/*
 * 0-RTT: a stateful ticket's early data is accepted once, by whichever
 * context sees it first; a replay to either context is not.
 */
static void
test_early_data_once(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 13, .early = 1024 };
	SSL_SESSION *replay[2];
	struct hs h1, h2, h3, h4;
	struct pair p;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 13, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 2);
	/* Early data under anti-replay makes OpenSSL's tickets stateful. */
	CU_ASSERT(count_records(p.db[0]) == 2);
	CU_ASSERT_FATAL(SSL_SESSION_get_max_early_data(h1.sess[0]) == 1024);
	/* An OpenSSL client uses a TLS 1.3 session once; an attacker
	   replaying its ClientHello does not care: keep copies. */
	replay[0] = SSL_SESSION_dup(h1.sess[0]);
	replay[1] = SSL_SESSION_dup(h1.sess[0]);
	CU_ASSERT_FATAL(replay[0] != NULL && replay[1] != NULL);

	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0], .early = "GET /0rtt" }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT(h2.early == SSL_EARLY_DATA_ACCEPTED);
	CU_ASSERT_STRING_EQUAL(h2.early_got, "GET /0rtt");
	/* Taken: one record left (ticket 2), plus the new tickets of h2. */
	CU_ASSERT(count_records(p.db[0]) == 1 + h2.nsess);

	/* Replay to the other context, and to the same one: refused. */
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = replay[0], .early = "GET /0rtt" }, &h3) == 0);
	CU_ASSERT(h3.ok);
	CU_ASSERT(h3.early == SSL_EARLY_DATA_REJECTED);
	CU_ASSERT(h3.early_got[0] == '\0');
	CU_ASSERT(!h3.reused);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = replay[1], .early = "GET /0rtt" }, &h4) == 0);
	CU_ASSERT(h4.ok);
	CU_ASSERT(h4.early == SSL_EARLY_DATA_REJECTED);
	CU_ASSERT(h4.early_got[0] == '\0');
	CU_ASSERT(!h4.reused);
	CU_ASSERT(stats_of(p.srv[0]).misses == 1);
	CU_ASSERT(stats_of(p.srv[1]).misses == 1);
	hs_clear(&h3);
	hs_clear(&h4);

	/* The second ticket is still good, once. */
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h1.sess[1], .early = "again" }, &h3) == 0);
	CU_ASSERT(h3.reused && h3.early == SSL_EARLY_DATA_ACCEPTED);
	CU_ASSERT_STRING_EQUAL(h3.early_got, "again");
	/* A ticket from a 0-RTT resumption is good too. */
	CU_ASSERT_FATAL(h2.nsess >= 1);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h2.sess[0], .early = "more" }, &h4) == 0);
	CU_ASSERT(h4.reused && h4.early == SSL_EARLY_DATA_ACCEPTED);
	SSL_SESSION_free(replay[0]);
	SSL_SESSION_free(replay[1]);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	hs_clear(&h4);
	pair_close(&p);
}

/*
 * Two "processes" race for one ticket's early data: forked children each
 * resume a copy of the same session on their own context and handle.
 * Exactly one may accept the early data.
 */
static void
test_early_data_race(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 13, .early = 1024 };
	enum { NCHILD = 4 };
	pid_t pid[NCHILD];
	struct pair p;
	struct hs h1;
	int i, status, accepted = 0;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 13, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 2);
	for (i = 0; i < NCHILD; i++) {
		pid[i] = fork();
		CU_ASSERT_FATAL(pid[i] >= 0);
		if (pid[i] == 0) {
			struct sessdb *db = open_db(p.path, 0);
			SSL_CTX *ctx = db ? server_ctx(&cfg, db) : NULL;
			struct hs h;
			int rc = 2;

			if (ctx != NULL && handshake(ctx, p.cli, &(struct hs_opts){ .offer = h1.sess[0], .early = "x" }, &h) == 0)
				rc = h.early == SSL_EARLY_DATA_ACCEPTED;
			hs_clear(&h);
			SSL_CTX_free(ctx);
			sessdb_close(db);
			hs_clear(&h1);
			pair_close(&p);
			_exit(rc);
		}
	}
	for (i = 0; i < NCHILD; i++) {
		CU_ASSERT(waitpid(pid[i], &status, 0) == pid[i]);
		CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 1)
			accepted++;
	}
	CU_ASSERT(accepted == 1);
	hs_clear(&h1);
	pair_close(&p);
}

/*
 * With early data enabled, TLS 1.2 session IDs are still read, not taken:
 * every resumption keeps the same ID.
 */
static void
test_early_data_tls12_not_taken(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .no_ticket = 1, .early = 1024 };
	struct hs h1, h2, h3;
	struct pair p;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 1);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.reused);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.reused);
	CU_ASSERT(count_records(p.db[0]) == 1);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	pair_close(&p);
}

/* A worker freeing its context must leave the shared records alone. */
static void
check_ctx_free_keeps(unsigned flags, uint32_t early)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .no_ticket = 1,
	    .flags = flags, .early = early };
	struct hs h[4];
	struct pair p;
	int i, n;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 0, 0) == 0);
	for (i = 0; i < 3; i++)
		CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h[i]) == 0);
	/* Resume one on the same context: with KEEP_INTERNAL from memory. */
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h[0].sess[1] }, &h[3]) == 0);
	CU_ASSERT(h[3].reused);
	CU_ASSERT(stats_of(p.srv[0]).hits ==
	    (flags & SESSDB_SSL_KEEP_INTERNAL ? 0u : 1u));
	n = count_records(p.db[1]);
	CU_ASSERT(n >= 6);
	SSL_CTX_free(p.srv[0]);
	p.srv[0] = NULL;
	CU_ASSERT(count_records(p.db[1]) == n);
	/* And the other context still resumes them. */
	hs_clear(&h[2]);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h[1].sess[0] }, &h[2]) == 0);
	CU_ASSERT(h[2].reused);
	for (i = 0; i < 4; i++)
		hs_clear(&h[i]);
	pair_close(&p);
}

static void test_ctx_free_keeps(void) { check_ctx_free_keeps(0, 0); }
static void test_ctx_free_keeps_early(void) { check_ctx_free_keeps(0, 1024); }
static void test_ctx_free_keeps_internal(void)
{
	check_ctx_free_keeps(SESSDB_SSL_KEEP_INTERNAL, 0);
}

/* Switching from KEEP_INTERNAL to the default drops the memory copies
   without deleting their records. */
static void
test_reattach_keeps_records(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1,
	    .flags = SESSDB_SSL_KEEP_INTERNAL };
	struct pair p;
	struct hs h[3];
	int i;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	for (i = 0; i < 3; i++)
		CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h[i]) == 0);
	CU_ASSERT(SSL_CTX_sess_number(p.srv[0]) == 3);
	CU_ASSERT(sessdb_ssl_attach(p.srv[0], p.db[0], 0) == 0);
	CU_ASSERT(SSL_CTX_sess_number(p.srv[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).removes == 0);
	SSL_CTX_free(p.srv[0]);
	p.srv[0] = NULL;
	CU_ASSERT(count_records(p.db[1]) == 3);
	for (i = 0; i < 3; i++)
		hs_clear(&h[i]);
	pair_close(&p);
}

/* OpenSSL drops a session freed without SSL_shutdown: its record goes. */
static void
test_bad_session_removed(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	struct pair p;
	struct hs h1, h2;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .no_shutdown = 1 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 1);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).removes == 1);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && !h2.reused);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

/* A store that cannot be locked: a session the index holds still resumes
 * (lookups take no lock), one it does not is a miss, a new session is not
 * stored, and no handshake fails. */
static void
test_lock_timeout_is_miss(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	char lockpath[320];
	struct pair p;
	struct hs h1, h2, h3, h4;
	int fd;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 1);

	/* Another open file description: flock conflicts even in-process. */
	snprintf(lockpath, sizeof(lockpath), "%s.lock", p.path);
	fd = open(lockpath, O_RDWR | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(flock(fd, LOCK_EX) == 0);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);		/* from the index */
	CU_ASSERT(stats_of(p.srv[1]).store_failures == 0);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ 0 }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);		/* full, and not stored */
	CU_ASSERT(stats_of(p.srv[1]).store_failures == 1);
	close(fd);

	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h3.sess[0] }, &h4) == 0);
	CU_ASSERT(!h4.reused);		/* it was never stored: a miss */
	CU_ASSERT(stats_of(p.srv[1]).misses == 1);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	hs_clear(&h4);
	pair_close(&p);
}

/* Attach refuses client contexts and bad flags; detach restores. */
static void
test_attach_detach(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	struct sessdb_ssl_stats st;
	SSL_CTX *cctx, *sctx;
	struct sessdb *db;
	char path[300];
	struct hs h;
	long mode;

	new_db_path(path, sizeof(path));
	db = open_db(path, 0);
	CU_ASSERT_FATAL(db != NULL);
	cctx = client_ctx(12, 0);
	CU_ASSERT_FATAL(cctx != NULL);
	CU_ASSERT(sessdb_ssl_attach(cctx, db, 0) == -1);
	CU_ASSERT(sessdb_ssl_detach(cctx) == -1);
	CU_ASSERT(sessdb_ssl_stats(cctx, &st) == -1);

	sctx = server_ctx(&cfg, NULL);
	CU_ASSERT_FATAL(sctx != NULL);
	mode = SSL_CTX_get_session_cache_mode(sctx);
	CU_ASSERT(sessdb_ssl_attach(sctx, db, 0x80) == -1);
	/* KEEP_INTERNAL would let a same-process hit skip the take. */
	SSL_CTX_set_max_early_data(sctx, 1024);
	CU_ASSERT(sessdb_ssl_attach(sctx, db, SESSDB_SSL_KEEP_INTERNAL) == -1);
	CU_ASSERT(sessdb_ssl_detach(sctx) == -1);
	SSL_CTX_set_max_early_data(sctx, 0);
	CU_ASSERT(sessdb_ssl_attach(sctx, NULL, 0) == -1);
	CU_ASSERT(sessdb_ssl_attach(sctx, db, 0) == 0);
	CU_ASSERT(SSL_CTX_get_session_cache_mode(sctx) ==
	    (SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL));
	CU_ASSERT(sessdb_ssl_attach(sctx, db, SESSDB_SSL_KEEP_INTERNAL) == 0);
	CU_ASSERT(SSL_CTX_get_session_cache_mode(sctx) == SSL_SESS_CACHE_SERVER);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ 0 }, &h) == 0);
	hs_clear(&h);
	CU_ASSERT(count_records(db) == 1);

	CU_ASSERT(sessdb_ssl_detach(sctx) == 0);
	CU_ASSERT(SSL_CTX_get_session_cache_mode(sctx) == mode);
	CU_ASSERT(SSL_CTX_sess_get_new_cb(sctx) == NULL);
	CU_ASSERT(SSL_CTX_sess_get_get_cb(sctx) == NULL);
	CU_ASSERT(SSL_CTX_sess_get_remove_cb(sctx) == NULL);
	CU_ASSERT(sessdb_ssl_detach(sctx) == -1);
	CU_ASSERT(handshake(sctx, cctx, &(struct hs_opts){ 0 }, &h) == 0);
	hs_clear(&h);
	CU_ASSERT(count_records(db) == 1);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	CU_ASSERT(count_records(db) == 1);
	sessdb_close(db);
}

/* A forked child with its own context resumes the parent's session. */
static void
test_fork_child_resumes(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .no_ticket = 1 };
	struct pair p;
	struct hs h1, h2;
	pid_t pid;
	int status, i;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 0, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 2);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		/* The child uses the handle it inherited, after fork. */
		SSL_CTX *ctx = server_ctx(&cfg, p.db[1]);
		int bad = ctx == NULL;

		for (i = 0; i < 2 && !bad; i++) {
			bad |= handshake(ctx, p.cli, &(struct hs_opts){ .offer = h1.sess[i] }, &h2) != 0 || !h2.reused;
			hs_clear(&h2);
		}
		SSL_CTX_free(ctx);
		hs_clear(&h1);
		pair_close(&p);
		_exit(bad);
	}
	CU_ASSERT(waitpid(pid, &status, 0) == pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child's new tickets reached the parent's handle. */
	CU_ASSERT(count_records(p.db[0]) > 2);
	hs_clear(&h1);
	pair_close(&p);
}

/* Many handshakes of every kind: ownership must balance (valgrind/ASan). */
static void
test_many_handshakes(void)
{
	struct srv_cfg c12 = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	struct srv_cfg c13 = { .sid_ctx = "svc", .tls = 13, .no_ticket = 1,
	    .early = 512 };
	struct pair p12, p13;
	struct hs h, r;
	int i, rounds, resumed = 0;

	rounds = getenv("SESSDB_UNDER_VALGRIND") != NULL ? 20 : 300;
	if (getenv("SESSDB_GLUE_ROUNDS") != NULL)	/* long runs by hand */
		rounds = atoi(getenv("SESSDB_GLUE_ROUNDS"));
	CU_ASSERT_FATAL(pair_open(&p12, &c12, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(pair_open(&p13, &c13, NULL, 13, 0) == 0);
	for (i = 0; i < rounds; i++) {
		struct pair *p = i % 2 ? &p13 : &p12;
		const char *early = i % 4 == 1 ? "early" : NULL;

		if (handshake(p->srv[i % 3 == 0], p->cli, &(struct hs_opts){ 0 }, &h) != 0 ||
		    h.nsess < 1) {
			CU_FAIL("full handshake");
			hs_clear(&h);
			continue;
		}
		if (handshake(p->srv[i % 3 != 0], p->cli, &(struct hs_opts){ .offer = h.sess[0], .early = early }, &r) == 0)
			resumed += r.reused;
		hs_clear(&r);
		hs_clear(&h);
	}
	CU_ASSERT(resumed == rounds);
	/* Nothing accumulates in OpenSSL's own cache (taken 0-RTT sessions
	   pass through it for the anti-replay check only). */
	for (i = 0; i < 2; i++) {
		CU_ASSERT(SSL_CTX_sess_number(p12.srv[i]) == 0);
		CU_ASSERT(SSL_CTX_sess_number(p13.srv[i]) == 0);
	}
	pair_close(&p12);
	pair_close(&p13);
}

/* sni_switch - servername callback: move the connection to the vhost ctx. */
static int
sni_switch(SSL *ssl, int *al, void *arg)
{
	SSL_set_SSL_CTX(ssl, arg);
	return SSL_TLSEXT_ERR_OK;
}

/*
 * Virtual hosts: a servername callback switches the connection to
 * another SSL_CTX (not attached).  OpenSSL keeps using the first ctx's
 * session cache, so the sessions must still reach the store.
 */
static void
check_sni(int tls, unsigned vhost_certs)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = tls, .no_ticket = 1 };
	struct srv_cfg vcfg = cfg;
	SSL_CTX *vhost[2];
	struct pair p;
	struct hs h1, h2;
	int i;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, tls, 0) == 0);
	for (i = 0; i < 2; i++) {
		vcfg.certs = vhost_certs;
		vhost[i] = server_ctx(&vcfg, NULL);
		CU_ASSERT_FATAL(vhost[i] != NULL);
		SSL_CTX_set_tlsext_servername_callback(p.srv[i], sni_switch);
		SSL_CTX_set_tlsext_servername_arg(p.srv[i], vhost[i]);
	}
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	CU_ASSERT(count_records(p.db[0]) == h1.nsess);
	CU_ASSERT(stats_of(p.srv[0]).stores == (uint64_t)h1.nsess);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	hs_clear(&h1);
	hs_clear(&h2);
	SSL_CTX_free(vhost[0]);
	SSL_CTX_free(vhost[1]);
	pair_close(&p);
}

static void test_sni_tls12(void) { check_sni(12, CERT_EC); }
static void test_sni_tls13(void) { check_sni(13, CERT_EC); }
/* The vhost presents another certificate: the identity is still that of
   the attached ctx, whose cache OpenSSL uses. */
static void test_sni_other_cert_tls12(void) { check_sni(12, CERT_RSA); }
static void test_sni_other_cert_tls13(void) { check_sni(13, CERT_RSA); }

/* ---------------------------------------------------------------------- */
/* Server identity: a session never resumes on a server whose certificates
   differ, whatever session-ID context the applications set. */

/*
 * check_identity - A (ECDSA) makes a session; B (RSA), same sid_ctx, same
 * file, refuses it twice (one log line); a third ctx with A's certificate
 * on another handle resumes it.  With early data the record is taken by
 * B's lookup and must be put back.
 */
static void
check_identity(int tls, uint32_t early)
{
	struct srv_cfg a = { .sid_ctx = "www", .tls = tls, .no_ticket = 1,
	    .early = early, .certs = CERT_EC };
	struct srv_cfg b = a;
	const char *edata = early ? "GET /0rtt" : NULL;
	SSL_SESSION *offer[3];
	struct hs h1, h2, h3, h4;
	SSL_CTX *same;
	struct pair p;
	int i, n;

	b.certs = CERT_RSA;
	CU_ASSERT_FATAL(pair_open(&p, &a, &b, tls, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	n = count_records(p.db[0]);
	CU_ASSERT(n == h1.nsess);
	for (i = 0; i < 3; i++) {
		offer[i] = SSL_SESSION_dup(h1.sess[0]);
		CU_ASSERT_FATAL(offer[i] != NULL);
	}

	tc_log_calls = 0;
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = offer[0], .early = edata }, &h2) == 0);
	CU_ASSERT(h2.ok);
	CU_ASSERT(!h2.reused);
	CU_ASSERT(h2.early_got[0] == '\0');
	CU_ASSERT(stats_of(p.srv[1]).foreign == 1);
	CU_ASSERT(stats_of(p.srv[1]).hits == 0);
	CU_ASSERT(tc_log_calls == 1);
	CU_ASSERT(strstr(tc_last_log, "another server identity") != NULL);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = offer[1], .early = edata }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);
	CU_ASSERT(stats_of(p.srv[1]).foreign == 2);
	CU_ASSERT(tc_log_calls == 1);	/* logged once, not per handshake */
	/* A's record is still there (B's full handshakes added their own). */
	CU_ASSERT(count_records(p.db[0]) == n + h2.nsess + h3.nsess);

	same = server_ctx(&a, p.db[1]);
	CU_ASSERT_FATAL(same != NULL);
	CU_ASSERT(handshake(same, p.cli, &(struct hs_opts){ .offer = offer[2], .early = edata }, &h4) == 0);
	CU_ASSERT(h4.ok && h4.reused);
	if (early)
		CU_ASSERT_STRING_EQUAL(h4.early_got, "GET /0rtt");
	CU_ASSERT(stats_of(same).foreign == 0);
	CU_ASSERT(stats_of(same).hits == 1);
	for (i = 0; i < 3; i++)
		SSL_SESSION_free(offer[i]);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	hs_clear(&h4);
	SSL_CTX_free(same);
	pair_close(&p);
}

static void test_identity_tls12(void) { check_identity(12, 0); }
static void test_identity_tls13(void) { check_identity(13, 0); }
static void test_identity_tls13_early(void) { check_identity(13, 1024); }

/* No sid_ctx on either server: nothing is stored, nothing crosses. */
static void
check_identity_no_sid_ctx(int tls)
{
	struct srv_cfg a = { .tls = tls, .no_ticket = 1, .certs = CERT_EC };
	struct srv_cfg b = a;
	struct hs h1, h2;
	struct pair p;

	b.certs = CERT_RSA;
	CU_ASSERT_FATAL(pair_open(&p, &a, &b, tls, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && !h2.reused);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

static void test_identity_no_sid_ctx_tls12(void) { check_identity_no_sid_ctx(12); }
static void test_identity_no_sid_ctx_tls13(void) { check_identity_no_sid_ctx(13); }

/*
 * The identity covers every certificate of the ctx: ECDSA + RSA resumes
 * on ECDSA + RSA, not on ECDSA alone (nor the other way).
 */
static void
check_identity_all_certs(int tls)
{
	struct srv_cfg dual = { .sid_ctx = "www", .tls = tls, .no_ticket = 1,
	    .certs = CERT_EC | CERT_RSA };
	struct srv_cfg ec = dual;
	struct hs h1, h2, h3, h4;
	SSL_SESSION *again;
	SSL_CTX *ecctx;
	struct pair p;

	ec.certs = CERT_EC;
	CU_ASSERT_FATAL(pair_open(&p, &dual, &dual, tls, 0) == 0);
	ecctx = server_ctx(&ec, p.db[1]);
	CU_ASSERT_FATAL(ecctx != NULL);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	/* A TLS 1.3 client offers a session once: keep a copy. */
	again = SSL_SESSION_dup(h1.sess[0]);
	CU_ASSERT_FATAL(again != NULL);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT(handshake(ecctx, p.cli, &(struct hs_opts){ .offer = again }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);
	CU_ASSERT(stats_of(ecctx).foreign == 1);
	/* And a session of the ECDSA-only server does not resume on dual. */
	CU_ASSERT_FATAL(h3.nsess >= 1);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ .offer = h3.sess[0] }, &h4) == 0);
	CU_ASSERT(h4.ok && !h4.reused);
	CU_ASSERT(stats_of(p.srv[0]).foreign == 1);
	SSL_SESSION_free(again);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	hs_clear(&h4);
	SSL_CTX_free(ecctx);
	pair_close(&p);
}

static void test_identity_all_certs_tls12(void) { check_identity_all_certs(12); }
static void test_identity_all_certs_tls13(void) { check_identity_all_certs(13); }

/* Certificates loaded after sessdb_ssl_attach() are the identity too. */
static void
check_identity_certs_late(int tls)
{
	struct srv_cfg a = { .sid_ctx = "www", .tls = tls, .no_ticket = 1,
	    .certs_late = 1 };
	struct srv_cfg b = a;
	struct hs h1, h2, h3;
	SSL_SESSION *again;
	SSL_CTX *other;
	struct pair p;

	b.certs = CERT_RSA;
	CU_ASSERT_FATAL(pair_open(&p, &a, &a, tls, 0) == 0);
	other = server_ctx(&b, p.db[1]);
	CU_ASSERT_FATAL(other != NULL);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	CU_ASSERT(stats_of(p.srv[0]).stores == (uint64_t)h1.nsess);
	again = SSL_SESSION_dup(h1.sess[0]);
	CU_ASSERT_FATAL(again != NULL);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT(handshake(other, p.cli, &(struct hs_opts){ .offer = again }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);
	CU_ASSERT(stats_of(other).foreign == 1);
	SSL_SESSION_free(again);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	SSL_CTX_free(other);
	pair_close(&p);
}

static void test_identity_certs_late_tls12(void) { check_identity_certs_late(12); }
static void test_identity_certs_late_tls13(void) { check_identity_certs_late(13); }

/*
 * A ctx with no certificate of its own (they come per connection from a
 * certificate callback) has no identity to bind sessions to: nothing is
 * stored, nothing is looked up, and that is logged once.
 */
static void
test_identity_no_cert(void)
{
	struct srv_cfg cfg = { .sid_ctx = "www", .tls = 12, .no_ticket = 1,
	    .cert_cb = 1 };
	struct hs h1, h2, h3;
	struct pair p;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	tc_log_calls = 0;
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT(h1.ok);
	CU_ASSERT(count_records(p.db[0]) == 0);
	CU_ASSERT(stats_of(p.srv[0]).skipped_unsafe == 1);
	CU_ASSERT(tc_log_calls == 1);
	CU_ASSERT(strstr(tc_last_log, "no certificate") != NULL);
	CU_ASSERT(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h2) == 0);
	CU_ASSERT(tc_log_calls == 1);
	CU_ASSERT_FATAL(h1.nsess == 1);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h3) == 0);
	CU_ASSERT(h3.ok && !h3.reused);
	CU_ASSERT(stats_of(p.srv[1]).misses == 1);
	hs_clear(&h1);
	hs_clear(&h2);
	hs_clear(&h3);
	pair_close(&p);
}

/*
 * A record without the identity mark (written by an older sessdb, or not
 * through the glue) is refused as foreign and left in the store.
 */
static void
test_identity_unmarked(void)
{
	struct srv_cfg cfg = { .sid_ctx = "www", .tls = 12, .no_ticket = 1 };
	const unsigned char *id, *p0;
	unsigned char *der = NULL;
	SSL_SESSION *sess;
	struct hs h1, h2;
	struct pair p;
	unsigned int id_len;
	void *data = NULL;
	size_t len;
	int n;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 12, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess == 1);
	id = SSL_SESSION_get_id(h1.sess[0], &id_len);
	CU_ASSERT_FATAL(sessdb_get(p.db[0], SESSDB_NS_SERVER, id, id_len,
	    &data, &len, NULL) == SESSDB_OK);
	p0 = data;
	sess = d2i_SSL_SESSION(NULL, &p0, (long)len);
	sessdb_free(data);
	CU_ASSERT_FATAL(sess != NULL);
	CU_ASSERT(SSL_SESSION_set1_ticket_appdata(sess, NULL, 0) == 1);
	n = i2d_SSL_SESSION(sess, &der);
	CU_ASSERT_FATAL(n > 0);
	CU_ASSERT(sessdb_put(p.db[0], SESSDB_NS_SERVER, id, id_len, der,
	    (size_t)n, 0) == SESSDB_OK);
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && !h2.reused);
	CU_ASSERT(stats_of(p.srv[1]).foreign == 1);
	CU_ASSERT(stats_of(p.srv[1]).rejected == 0);
	CU_ASSERT(count_records(p.db[0]) == 2);	/* kept, plus h2's */
	OPENSSL_free(der);
	SSL_SESSION_free(sess);
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

/*
 * The application's own ticket appdata survives the store: the identity
 * mark is added in front of it in the record and removed on the way out.
 */
static void
test_identity_keeps_app_appdata(void)
{
	struct srv_cfg cfg = { .sid_ctx = "www", .tls = 13, .no_ticket = 1,
	    .appdata = "app-data" };
	const unsigned char *key;
	SSL_SESSION *stored;
	struct hs h1, h2;
	struct pair p;
	unsigned int key_len;
	void *data = NULL, *ad = NULL;
	size_t len, ad_len = 0;

	CU_ASSERT_FATAL(pair_open(&p, &cfg, NULL, 13, 0) == 0);
	CU_ASSERT_FATAL(handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h1) == 0);
	CU_ASSERT_FATAL(h1.nsess >= 1);
	CU_ASSERT_STRING_EQUAL(h1.appdata, "app-data");
	/* In the record: the mark, then the application's bytes. */
	key = server_key(h1.sess[0], &key_len);
	CU_ASSERT_FATAL(sessdb_get(p.db[0], SESSDB_NS_SERVER, key, key_len,
	    &data, &len, NULL) == SESSDB_OK);
	stored = sessdb_ssl_decode(data, len, key, key_len, NULL);
	sessdb_free(data);
	CU_ASSERT_FATAL(stored != NULL);
	SSL_SESSION_get0_ticket_appdata(stored, &ad, &ad_len);
	CU_ASSERT(ad_len == 8 + 32 + 8);
	CU_ASSERT(ad_len == 48 && memcmp(ad, "sessdb\0\1", 8) == 0 &&
	    memcmp((char *)ad + 40, "app-data", 8) == 0);
	SSL_SESSION_free(stored);
	/* Resumed elsewhere: OpenSSL and the application see their own. */
	CU_ASSERT(handshake(p.srv[1], p.cli, &(struct hs_opts){ .offer = h1.sess[0] }, &h2) == 0);
	CU_ASSERT(h2.ok && h2.reused);
	CU_ASSERT_STRING_EQUAL(h2.appdata, "app-data");
	hs_clear(&h1);
	hs_clear(&h2);
	pair_close(&p);
}

/*
 * The payload API (lib/ssl_der.c), which the glue and sessdump share:
 * decode takes exactly one session carrying the ID of its key, and names
 * what is wrong with anything else.
 */
enum der_edit { DER_AS_IS, DER_TRAILING, DER_TRUNCATED, DER_GARBAGE,
    DER_EMPTY };

static const struct {
	const char	*name;
	enum der_edit	edit;
	int		other_id;	/* look it up under another ID */
	int		no_id;		/* no ID to check against */
	const char	*want_why;	/* NULL: decodes */
} decode_cases[] = {
	{ "as encoded", DER_AS_IS, 0, 0, NULL },
	{ "as encoded, no ID check", DER_AS_IS, 0, 1, NULL },
	{ "under another ID", DER_AS_IS, 1, 0,
	  "session ID does not match the key" },
	{ "under another ID, no ID check", DER_AS_IS, 1, 1, NULL },
	{ "trailing bytes", DER_TRAILING, 0, 0,
	  "trailing bytes after the DER session" },
	{ "truncated", DER_TRUNCATED, 0, 0, "payload is not a DER SSL session" },
	{ "garbage", DER_GARBAGE, 0, 0, "payload is not a DER SSL session" },
	{ "empty", DER_EMPTY, 0, 0, "payload is not a DER SSL session" },
};

/* edit_der - der (len bytes) changed as edit says, in a new buffer. */
static unsigned char *
edit_der(const unsigned char *der, size_t len, enum der_edit edit,
    size_t *out_len)
{
	unsigned char *buf = malloc(len + 3);

	if (buf == NULL)
		return NULL;
	memcpy(buf, der, len);
	*out_len = len;
	switch (edit) {
	case DER_TRAILING:
		memcpy(buf + len, "xyz", 3);
		*out_len = len + 3;
		break;
	case DER_TRUNCATED:
		*out_len = len - 1;
		break;
	case DER_GARBAGE:
		memset(buf, 0x5a, len);
		*out_len = len;
		break;
	case DER_EMPTY:
		*out_len = 0;
		break;
	default:
		break;
	}
	return buf;
}

/* one_session - a TLS 1.2 session (the client's copy) from a handshake. */
static SSL_SESSION *
one_session(void)
{
	struct srv_cfg cfg = { .sid_ctx = "svc", .tls = 12, .no_ticket = 1 };
	SSL_SESSION *sess = NULL;
	struct pair p;
	struct hs h;

	if (pair_open(&p, &cfg, NULL, 12, 0) == 0 &&
	    handshake(p.srv[0], p.cli, &(struct hs_opts){ 0 }, &h) == 0) {
		if (h.nsess == 1 && SSL_SESSION_up_ref(h.sess[0]))
			sess = h.sess[0];
		hs_clear(&h);
	}
	pair_close(&p);
	return sess;
}

static void
test_payload_decode(void)
{
	static const unsigned char other[SESSDB_ID_MAX] = { 1, 2, 3 };
	SSL_SESSION *sess = one_session(), *got;
	unsigned char *der, *der2, *buf;
	const unsigned char *id;
	unsigned int id_len;
	size_t len, len2, blen = 0, i;
	const char *why;

	CU_ASSERT_FATAL(sess != NULL);
	id = SSL_SESSION_get_id(sess, &id_len);
	CU_ASSERT_FATAL(id_len == SESSDB_ID_MAX);
	CU_ASSERT_FATAL(sessdb_ssl_encode(sess, &der, &len) == 0);
	CU_ASSERT(len > 0 && len <= SESSDB_PAYLOAD_MAX);
	for (i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		buf = edit_der(der, len, decode_cases[i].edit, &blen);
		CU_ASSERT_FATAL(buf != NULL);
		why = "(not set)";
		got = sessdb_ssl_decode(buf, blen,
		    decode_cases[i].no_id ? NULL :
		    decode_cases[i].other_id ? other : id, id_len, &why);
		if ((got == NULL) != (decode_cases[i].want_why != NULL) ||
		    (got == NULL && strcmp(why, decode_cases[i].want_why) != 0))
			fprintf(stderr, "decode %s: got %s (%s), want %s\n",
			    decode_cases[i].name, got ? "a session" : "NULL",
			    got ? "-" : why, decode_cases[i].want_why ?
			    decode_cases[i].want_why : "a session");
		if (decode_cases[i].want_why == NULL) {
			CU_ASSERT(got != NULL);
			/* A decoded session encodes to the same bytes. */
			CU_ASSERT(got != NULL &&
			    sessdb_ssl_encode(got, &der2, &len2) == 0 &&
			    len2 == len && memcmp(der2, der, len) == 0);
			if (got != NULL)
				sessdb_ssl_der_free(der2, len2);
		} else {
			CU_ASSERT(got == NULL);
			CU_ASSERT(got == NULL &&
			    strcmp(why, decode_cases[i].want_why) == 0);
		}
		SSL_SESSION_free(got);
		free(buf);
	}
	CU_ASSERT(sessdb_ssl_decode(NULL, 0, NULL, 0, NULL) == NULL);
	CU_ASSERT(sessdb_ssl_encode(NULL, &der2, &len2) == -1);
	sessdb_ssl_der_free(NULL, 0);		/* a no-op */
	sessdb_ssl_der_free(der, len);
	SSL_SESSION_free(sess);
}

/* put stores the session as it is, under its own ID, with the expiry
   given; a session without an ID touches nothing. */
static void
test_payload_put(void)
{
	SSL_SESSION *sess = one_session(), *empty = SSL_SESSION_new();
	struct sessdb_meta meta;
	char path[300];
	struct sessdb *db;
	unsigned char *der;
	const unsigned char *id;
	unsigned int id_len;
	int64_t expires = (int64_t)time(NULL) + 3600;
	void *data = NULL;
	size_t len, dlen = 0;

	CU_ASSERT_FATAL(sess != NULL && empty != NULL);
	new_db_path(path, sizeof(path));
	CU_ASSERT_FATAL((db = open_db(path, 0)) != NULL);
	id = SSL_SESSION_get_id(sess, &id_len);
	CU_ASSERT(sessdb_ssl_put(db, sess, expires) == SESSDB_OK);
	CU_ASSERT_FATAL(sessdb_get(db, SESSDB_NS_SERVER, id, id_len, &data,
	    &dlen, &meta) == SESSDB_OK);
	CU_ASSERT(meta.expires == expires);
	CU_ASSERT_FATAL(sessdb_ssl_encode(sess, &der, &len) == 0);
	CU_ASSERT(dlen == len && memcmp(data, der, len) == 0);
	sessdb_ssl_der_free(der, len);
	sessdb_ssl_der_free(data, dlen);
	CU_ASSERT(sessdb_ssl_put(db, empty, expires) == SESSDB_SSL_UNENCODABLE);
	CU_ASSERT(sessdb_ssl_put(NULL, sess, expires) == SESSDB_SSL_UNENCODABLE);
	CU_ASSERT(count_records(db) == 1);
	sessdb_close(db);
	SSL_SESSION_free(empty);
	SSL_SESSION_free(sess);
}

/* ---------------------------------------------------------------------- */

/* suite_init - the data directory. */
static int
suite_init(void)
{
	const char *top = getenv("SESSDB_TOP_SRCDIR");

	snprintf(datadir, sizeof(datadir), "%s/data", top != NULL ? top : "..");
	return 0;
}

static const struct tc_case tests[] = {
	{ "TLS 1.2 session ID resumes from another ctx", test_tls12_resume_across_ctx },
	{ "TLS 1.2 tickets are not stored", test_tls12_tickets_not_stored },
	{ "TLS 1.3 stateful tickets resume from another ctx", test_tls13_stateful_resume_across_ctx },
	{ "TLS 1.3 stateless tickets are not stored", test_tls13_stateless_not_stored },
	{ "wrong sid_ctx never resumes: TLS 1.2", test_sid_ctx_tls12 },
	{ "wrong sid_ctx never resumes: TLS 1.2 client cert", test_sid_ctx_tls12_cert },
	{ "wrong sid_ctx never resumes: TLS 1.3", test_sid_ctx_tls13 },
	{ "wrong sid_ctx never resumes: TLS 1.3 client cert", test_sid_ctx_tls13_cert },
	{ "SNI switch to another ctx: TLS 1.2", test_sni_tls12 },
	{ "SNI switch to another ctx: TLS 1.3", test_sni_tls13 },
	{ "SNI vhost with another certificate: TLS 1.2", test_sni_other_cert_tls12 },
	{ "SNI vhost with another certificate: TLS 1.3", test_sni_other_cert_tls13 },
	{ "other certificate, same sid_ctx: refused, TLS 1.2", test_identity_tls12 },
	{ "other certificate, same sid_ctx: refused, TLS 1.3", test_identity_tls13 },
	{ "other certificate, same sid_ctx: refused, TLS 1.3 early data", test_identity_tls13_early },
	{ "other certificate, no sid_ctx: nothing crosses, TLS 1.2", test_identity_no_sid_ctx_tls12 },
	{ "other certificate, no sid_ctx: nothing crosses, TLS 1.3", test_identity_no_sid_ctx_tls13 },
	{ "identity covers every certificate: TLS 1.2", test_identity_all_certs_tls12 },
	{ "identity covers every certificate: TLS 1.3", test_identity_all_certs_tls13 },
	{ "certificates loaded after attach: TLS 1.2", test_identity_certs_late_tls12 },
	{ "certificates loaded after attach: TLS 1.3", test_identity_certs_late_tls13 },
	{ "no certificate on the ctx: not stored, logged once", test_identity_no_cert },
	{ "record without identity mark: refused, kept", test_identity_unmarked },
	{ "application ticket appdata survives the store", test_identity_keeps_app_appdata },
	{ "no sid_ctx: not stored", test_no_sid_ctx_not_stored },
	{ "expired never resumes: TLS 1.2", test_expired_tls12 },
	{ "expired never resumes: TLS 1.3", test_expired_tls13 },
	{ "expiry follows the session timeout", test_expiry_follows_timeout },
	{ "corrupt record: garbage", test_corrupt_garbage },
	{ "corrupt record: truncated DER", test_corrupt_truncated },
	{ "corrupt record: another session's DER", test_corrupt_other_id },
	{ "corrupt record: trailing bytes", test_corrupt_trailing },
	{ "store full: skipped, handshake goes on", test_store_full },
	{ "0-RTT accepted at most once across ctxs", test_early_data_once },
	{ "0-RTT race between processes: one winner", test_early_data_race },
	{ "early data on: TLS 1.2 IDs are not taken", test_early_data_tls12_not_taken },
	{ "SSL_CTX_free keeps records", test_ctx_free_keeps },
	{ "SSL_CTX_free keeps records: early data", test_ctx_free_keeps_early },
	{ "SSL_CTX_free keeps records: KEEP_INTERNAL", test_ctx_free_keeps_internal },
	{ "re-attach without KEEP_INTERNAL keeps records", test_reattach_keeps_records },
	{ "bad session is removed", test_bad_session_removed },
	{ "lock timeout is a miss", test_lock_timeout_is_miss },
	{ "attach and detach", test_attach_detach },
	{ "forked child resumes", test_fork_child_resumes },
	{ "many handshakes", test_many_handshakes },
	{ "payload decode: table of good and bad payloads", test_payload_decode },
	{ "payload put: stored as is under its own ID", test_payload_put },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("ssl_glue", tests, suite_init, NULL),
	};

	if (tc_tmpdir_make("sessdb-glue") != 0)
		return 2;
	return tc_run(suites, TC_NELEM(suites));
}
