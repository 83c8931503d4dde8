/*
 * NAME
 *	sessdump_fill - populate a store for the sessdump tests, and hammer it
 *
 * SYNOPSIS
 *	sessdump_fill populate DB MANIFEST LIVE EXPIRED BADHDR BADDER MISMATCH
 *	sessdump_fill worker DB MANIFEST SECONDS TAG OUTFILE
 *	sessdump_fill peer DB MANIFEST CERTDIR
 *	sessdump_fill opaque DB MANIFEST COUNT
 *
 * DESCRIPTION
 *	populate stores real DER SSL_SESSIONs (made with SSL_SESSION_new and
 *	its setters) through the store API: LIVE that expire in an hour,
 *	EXPIRED that expired an hour ago (written with a clock set in the
 *	past), BADDER records whose payload is not DER, and MISMATCH records
 *	whose session ID differs from their key.  BADHDR records with a bad
 *	header are written with GDBM directly, since the store refuses to.
 *	MANIFEST gets one line per record: "KIND IDHEX MASTERKEYHEX EXPIRES".
 *
 *	worker runs for SECONDS: it stores new live sessions (IDs starting
 *	with the byte TAG) and reads back live ones from MANIFEST and its own;
 *	any error or missing live session makes it exit 1.  It writes the IDs
 *	it stored to OUTFILE.
 *
 *	peer runs one in-memory TLS 1.2 handshake with a client certificate
 *	(server.pem, client.pem and ca.pem from CERTDIR) and stores the
 *	server's session, which carries the peer certificate and the SNI;
 *	it appends a "peer" line to MANIFEST.
 *
 *	opaque stores COUNT records of namespace 'O' (another consumer's, as
 *	Apache's socache users write them) for the consumer "test-consumer":
 *	keys of 1 to 1200 bytes, zero bytes included, and payloads that are
 *	not DER; MANIFEST gets "opaque NAME/KEYHEX PAYLOADHEX" per record.
 */
#include <gdbm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"

#define MAX_LIVE 4096

static const SSL_CIPHER *cipher13, *cipher12;

/* find_ciphers - one TLS 1.3 and one TLS 1.2 cipher object. */
static int
find_ciphers(void)
{
	static const unsigned char c13[] = { 0x13, 0x01 };
	static const unsigned char c12[] = { 0xc0, 0x2f };
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;

	if (ssl == NULL)
		return -1;
	cipher13 = SSL_CIPHER_find(ssl, c13);
	cipher12 = SSL_CIPHER_find(ssl, c12);
	SSL_free(ssl);
	SSL_CTX_free(ctx);	/* ciphers are static tables: still valid */
	return cipher13 && cipher12 ? 0 : -1;
}

/* hex - print len bytes as hex. */
static void
hex(FILE *fp, const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		fprintf(fp, "%02x", p[i]);
}

/* make_session - a session with the given ID and master key, created at t. */
static SSL_SESSION *
make_session(const unsigned char *id, const unsigned char *mk, int64_t t,
    long timeout, int n)
{
	SSL_SESSION *s = SSL_SESSION_new();
	int v13 = n % 2 == 0;

	if (s == NULL || !SSL_SESSION_set1_id(s, id, 32) ||
	    !SSL_SESSION_set1_master_key(s, mk, 48) ||
	    !SSL_SESSION_set_protocol_version(s, v13 ? TLS1_3_VERSION :
	    TLS1_2_VERSION) ||
	    !SSL_SESSION_set_cipher(s, v13 ? cipher13 : cipher12) ||
	    !SSL_SESSION_set1_id_context(s, (const unsigned char *)"sessdb", 6) ||
	    !SSL_SESSION_set1_hostname(s, n % 3 == 0 ? "www.example.com" :
	    n % 3 == 1 ? "we\"ird\\name\t\x01.example" : NULL) ||
	    !SSL_SESSION_set_time(s, (long)t) ||
	    !SSL_SESSION_set_timeout(s, timeout)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

/* The clock populate gives the store: real time plus an offset. */
static int64_t clock_offset;

static int64_t
fake_clock(void *arg)
{
	(void)arg;
	return (int64_t)time(NULL) + clock_offset;
}

/* open_db - a read-write handle whose clock runs offset seconds off. */
static struct sessdb *
open_db(const char *path, int64_t offset)
{
	struct sessdb_options o;
	char err[256];
	struct sessdb *db;

	memset(&o, 0, sizeof o);
	o.clock = fake_clock;
	o.max_ttl = 7 * 86400;
	o.lock_timeout_ms = 5000;
	clock_offset = offset;
	if ((db = sessdb_open(path, &o, err, sizeof err)) == NULL)
		fprintf(stderr, "sessdump_fill: %s: %s\n", path, err);
	return db;
}

/* put_session - store s under key id (which may differ from its own ID),
 * encoded as the glue encodes it (sessdb_ssl_put would take its own ID). */
static int
put_session(struct sessdb *db, const unsigned char *id, SSL_SESSION *s,
    int64_t expires)
{
	unsigned char *der;
	size_t len;
	int rc;

	if (sessdb_ssl_encode(s, &der, &len) == -1)
		return -1;
	rc = sessdb_put(db, SESSDB_NS_SERVER, id, 32, der, len, expires);
	sessdb_ssl_der_free(der, len);
	if (rc != 0)
		fprintf(stderr, "sessdump_fill: put: %d %s\n", rc, sessdb_error(db));
	return rc;
}

/* add_good - n live or expired sessions, listed in the manifest. */
static int
add_good(struct sessdb *db, FILE *mf, const char *kind, int count)
{
	int64_t now = sessdb_now(db);
	unsigned char id[32], mk[48];

	for (int i = 0; i < count; i++) {
		SSL_SESSION *s;

		RAND_bytes(id, sizeof id);
		RAND_bytes(mk, sizeof mk);
		if ((s = make_session(id, mk, now, 600 + i % 7 * 600, i)) == NULL)
			return -1;
		if (put_session(db, id, s, now + 600 + i % 7 * 600) != 0) {
			SSL_SESSION_free(s);
			return -1;
		}
		SSL_SESSION_free(s);
		fprintf(mf, "%s ", kind);
		hex(mf, id, sizeof id);
		fputc(' ', mf);
		hex(mf, mk, sizeof mk);
		fprintf(mf, " %lld\n", (long long)(now + 600 + i % 7 * 600));
	}
	return 0;
}

/* add_bad_payload - records with a good header: garbage, or a mismatched ID. */
static int
add_bad_payload(struct sessdb *db, FILE *mf, int garbage, int mismatch)
{
	unsigned char id[32], other[32], mk[48], junk[100];

	for (int i = 0; i < garbage + mismatch; i++) {
		int rc;

		RAND_bytes(id, sizeof id);
		if (i < garbage) {
			RAND_bytes(junk, sizeof junk);
			junk[0] = 0x01;	/* never a SEQUENCE */
			rc = sessdb_put(db, SESSDB_NS_SERVER, id, 32, junk,
			    sizeof junk, 0);
		} else {
			SSL_SESSION *s;

			RAND_bytes(other, sizeof other);
			RAND_bytes(mk, sizeof mk);
			s = make_session(other, mk, sessdb_now(db), 3600, i);
			rc = s ? put_session(db, id, s, 0) : -1;
			SSL_SESSION_free(s);
		}
		if (rc != 0)
			return -1;
		fprintf(mf, "%s ", i < garbage ? "badder" : "mismatch");
		hex(mf, id, sizeof id);
		fputs(" - 0\n", mf);
	}
	return 0;
}

/* add_bad_header - records the store cannot decode, written with GDBM. */
static int
add_bad_header(const char *path, FILE *mf, int count)
{
	GDBM_FILE f = gdbm_open(path, 0, GDBM_WRITER | GDBM_NOLOCK, 0600, NULL);
	unsigned char key[33] = { SESSDB_NS_SERVER };
	char val[] = "this is not a sessdb record header at all......";

	if (f == NULL) {
		fprintf(stderr, "sessdump_fill: gdbm_open: %s\n",
		    gdbm_strerror(gdbm_errno));
		return -1;
	}
	for (int i = 0; i < count; i++) {
		datum k = { (char *)key, sizeof key };
		datum v = { val, (int)sizeof val };

		RAND_bytes(key + 1, 32);
		if (gdbm_store(f, k, v, GDBM_REPLACE) != 0)
			return -1;
		fputs("badhdr ", mf);
		hex(mf, key, sizeof key);
		fputs(" - 0\n", mf);
	}
	gdbm_close(f);
	return 0;
}

/* populate - see the synopsis. */
static int
populate(char **argv)
{
	FILE *mf = fopen(argv[1], "w");
	struct sessdb *db;
	int rc = 1;

	if (mf == NULL)
		return 1;
	if ((db = open_db(argv[0], -7200)) == NULL)
		goto out;
	if (add_good(db, mf, "expired", atoi(argv[3])) != 0)
		goto out;
	sessdb_close(db);
	if ((db = open_db(argv[0], 0)) == NULL)
		goto out;
	if (add_good(db, mf, "live", atoi(argv[2])) != 0 ||
	    add_bad_payload(db, mf, atoi(argv[5]), atoi(argv[6])) != 0)
		goto out;
	sessdb_close(db);
	db = NULL;
	rc = add_bad_header(argv[0], mf, atoi(argv[4])) != 0;
out:
	sessdb_close(db);
	if (fclose(mf) != 0)
		rc = 1;
	return rc;
}

/* load_pair - certificate and key from dir into ctx. */
static int
load_pair(SSL_CTX *ctx, const char *dir, const char *name)
{
	char cert[512], key[512];

	snprintf(cert, sizeof cert, "%s/%s.pem", dir, name);
	snprintf(key, sizeof key, "%s/%s.key", dir, name);
	return SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 &&
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 ? 0 : -1;
}

/* make_ctxs - a TLS 1.2 server that wants a client certificate, and a
 * client that has one. */
static int
make_ctxs(const char *dir, SSL_CTX **sctx, SSL_CTX **cctx)
{
	char ca[512];

	snprintf(ca, sizeof ca, "%s/ca.pem", dir);
	*sctx = SSL_CTX_new(TLS_server_method());
	*cctx = SSL_CTX_new(TLS_client_method());
	if (*sctx == NULL || *cctx == NULL || load_pair(*sctx, dir, "server") ||
	    load_pair(*cctx, dir, "client") ||
	    !SSL_CTX_load_verify_locations(*sctx, ca, NULL) ||
	    !SSL_CTX_set_max_proto_version(*sctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_session_id_context(*sctx, (const unsigned char *)"sessdb", 6))
		return -1;
	SSL_CTX_set_verify(*sctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_options(*sctx, SSL_OP_NO_TICKET);	/* a session ID */
	return 0;
}

/* handshake - run client and server over a BIO pair; the server's session. */
static SSL_SESSION *
handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	SSL_SESSION *sess = NULL;
	BIO *bs, *bc;

	if (srv == NULL || cli == NULL || !BIO_new_bio_pair(&bs, 0, &bc, 0))
		goto out;
	SSL_set_bio(srv, bs, bs);
	SSL_set_bio(cli, bc, bc);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	SSL_set_tlsext_host_name(cli, "localhost");
	for (int i = 0; i < 100; i++) {
		int c = SSL_do_handshake(cli), s = SSL_do_handshake(srv);

		if (c == 1 && s == 1) {
			sess = SSL_get1_session(srv);
			break;
		}
	}
out:
	SSL_free(srv);
	SSL_free(cli);
	return sess;
}

/* peer - store one real server session that carries a client certificate. */
static int
peer(char **argv)
{
	SSL_CTX *sctx = NULL, *cctx = NULL;
	SSL_SESSION *s = NULL;
	struct sessdb *db = NULL;
	const unsigned char *id;
	unsigned char mk[48];
	unsigned int id_len;
	int64_t exp;
	FILE *mf;
	int rc = 1;

	if (make_ctxs(argv[2], &sctx, &cctx) != 0 ||
	    (s = handshake(sctx, cctx)) == NULL ||
	    (db = open_db(argv[0], 0)) == NULL) {
		fprintf(stderr, "sessdump_fill: peer: handshake failed\n");
		goto out;
	}
	id = SSL_SESSION_get_id(s, &id_len);
	exp = (int64_t)SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s);
	if (id_len != 32 || put_session(db, id, s, exp) != 0 ||
	    (mf = fopen(argv[1], "a")) == NULL)
		goto out;
	fputs("peer ", mf);
	hex(mf, id, id_len);
	fputc(' ', mf);
	hex(mf, mk, SSL_SESSION_get_master_key(s, mk, sizeof mk));
	fprintf(mf, " %lld\n", (long long)exp);
	rc = fclose(mf) != 0;
out:
	sessdb_close(db);
	SSL_SESSION_free(s);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return rc;
}

/* read_live - the live IDs of a manifest. */
static size_t
read_live(const char *path, unsigned char (*ids)[32])
{
	FILE *fp = fopen(path, "r");
	char kind[16], idhex[80];
	size_t n = 0;

	while (fp && n < MAX_LIVE &&
	    fscanf(fp, "%15s %79s %*s %*s", kind, idhex) == 2) {
		if (strcmp(kind, "live") != 0 || strlen(idhex) != 64)
			continue;
		for (int i = 0; i < 32; i++)
			sscanf(idhex + 2 * i, "%2hhx", &ids[n][i]);
		n++;
	}
	if (fp)
		fclose(fp);
	return n;
}

/* expect_hit - get id; anything but a hit is a failure. */
static int
expect_hit(struct sessdb *db, const unsigned char *id, const char *what)
{
	void *data;
	size_t len;
	int rc = sessdb_get(db, SESSDB_NS_SERVER, id, 32, &data, &len, NULL);

	if (rc == SESSDB_OK) {
		sessdb_free(data);
		return 0;
	}
	fprintf(stderr, "sessdump_fill: worker: get %s: %s\n", what,
	    rc == SESSDB_MISS ? "miss" : sessdb_error(db));
	return -1;
}

/* worker - see the synopsis. */
static int
worker(char **argv)
{
	static unsigned char live[MAX_LIVE][32], mine[MAX_LIVE][32];
	size_t nlive = read_live(argv[1], live), nmine = 0;
	time_t end = time(NULL) + atoi(argv[2]);
	struct sessdb *db = open_db(argv[0], 0);
	unsigned char mk[48];
	FILE *out;
	int errors = 0;

	if (db == NULL || nlive == 0)
		return 1;
	while (time(NULL) < end && nmine < MAX_LIVE && errors == 0) {
		SSL_SESSION *s;

		RAND_bytes(mine[nmine], 32);
		mine[nmine][0] = (unsigned char)atoi(argv[3]);
		RAND_bytes(mk, sizeof mk);
		s = make_session(mine[nmine], mk, sessdb_now(db), 3600, (int)nmine);
		if (s == NULL || put_session(db, mine[nmine], s,
		    sessdb_now(db) + 3600) != 0)
			errors++;
		SSL_SESSION_free(s);
		nmine++;
		errors -= expect_hit(db, live[(size_t)rand() % nlive], "live");
		errors -= expect_hit(db, mine[(size_t)rand() % nmine], "own");
		usleep(2000);
	}
	sessdb_close(db);
	if ((out = fopen(argv[4], "w")) == NULL)
		return 1;
	for (size_t i = 0; i < nmine; i++) {
		hex(out, mine[i], 32);
		fputc('\n', out);
	}
	return (fclose(out) != 0 || errors) ? 1 : 0;
}

/* hexline - len bytes of p in hex to f. */
static void
hexline(FILE *f, const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x", p[i]);
}

/* opaque - COUNT opaque records of "test-consumer", listed in MANIFEST. */
static int
opaque(char **argv)
{
	static const char name[] = "test-consumer";
	static unsigned char id[SESSDB_OPAQUE_ID_MAX];
	unsigned char payload[300];
	struct sessdb *db;
	FILE *mf;
	char err[256];
	int n = atoi(argv[2]);

	if ((db = sessdb_open(argv[0], NULL, err, sizeof err)) == NULL ||
	    (mf = fopen(argv[1], "w")) == NULL) {
		fprintf(stderr, "sessdump_fill: %s\n", db ? argv[1] : err);
		return 1;
	}
	memcpy(id, name, sizeof name);	/* the name and its 0x00 */
	for (int i = 0; i < n; i++) {
		/* lengths 1, 401, 801, 1201: short keys and ones over 1 KiB */
		size_t key_len = 1 + (size_t)(i % 4) * 400;
		size_t len = 10 + (size_t)i % 200;

		for (size_t k = 0; k < key_len; k++)
			id[sizeof name + k] = (unsigned char)(k % 7 == 0 ? 0 : i + k);
		id[sizeof name] = (unsigned char)i;	/* keys differ */
		for (size_t k = 0; k < len; k++)
			payload[k] = (unsigned char)(0xff - i - k);
		if (sessdb_put(db, SESSDB_NS_OPAQUE, id, sizeof name + key_len,
		    payload, len, time(NULL) + 3600) != 0) {
			fprintf(stderr, "sessdump_fill: %s\n", sessdb_error(db));
			return 1;
		}
		fprintf(mf, "opaque %s/", name);
		hexline(mf, id + sizeof name, key_len);
		fputc(' ', mf);
		hexline(mf, payload, len);
		fputc('\n', mf);
	}
	fclose(mf);
	sessdb_close(db);
	return 0;
}

int
main(int argc, char **argv)
{
	if (find_ciphers() != 0)
		return 1;
	if (argc == 9 && strcmp(argv[1], "populate") == 0)
		return populate(argv + 2);
	if (argc == 7 && strcmp(argv[1], "worker") == 0)
		return worker(argv + 2);
	if (argc == 5 && strcmp(argv[1], "peer") == 0)
		return peer(argv + 2);
	if (argc == 5 && strcmp(argv[1], "opaque") == 0)
		return opaque(argv + 2);
	fprintf(stderr, "usage: sessdump_fill populate DB MANIFEST LIVE EXPIRED "
	    "BADHDR BADDER MISMATCH\n"
	    "       sessdump_fill worker DB MANIFEST SECONDS TAG OUTFILE\n"
	    "       sessdump_fill peer DB MANIFEST CERTDIR\n"
	    "       sessdump_fill opaque DB MANIFEST COUNT\n");
	return 2;
}
