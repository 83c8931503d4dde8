/*
 * NAME
 *	sessdemo - a pre-fork TLS demo server whose workers share one sessdb cache
 *
 * SYNOPSIS
 *	sessdemo [--port P] [--workers N] [--cache PATH|URL | --no-cache]
 *	    [--cache-key FILE] [--cert FILE --key FILE] [--tls 1.2|1.3] [--early-data]
 *	    [--access-log FILE] [--bind ADDR] [--ready-file FILE]
 *	    [--timeout SECS] [--tickets N] [--session-timeout SECS]
 *	    [--verify-client CAFILE] [--session-id-context STR] [--verbose]
 *	sessdemo --list [--cache PATH]
 *
 * DESCRIPTION
 *	The parent opens one listening socket, checks that the certificate
 *	and the store can be opened, then forks N workers.  Each worker opens
 *	its own store handle after fork(), attaches it to its copy of the
 *	SSL_CTX with sessdb_ssl_attach(), and serves connections one at a
 *	time: TLS handshake, one HTTP request, a tiny text response naming
 *	the worker pid and whether the session was resumed, close.
 *
 *	The parent restarts workers that die, and on SIGTERM, SIGINT or
 *	SIGHUP stops them (SIGTERM, then SIGKILL after a grace period) and
 *	prints the counters each worker reported through a pipe.
 *
 *	Signals: the parent blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD and
 *	waits for them with sigtimedwait(), so it has no handlers.  A worker
 *	ignores SIGINT (the parent relays a terminal's ^C as SIGTERM) and
 *	keeps SIGTERM blocked except while it waits in accept() for the next
 *	connection, so a connection in progress is always finished.
 *
 *	The cache is a file, or a Redis store named by a URL
 *	(redis://HOST[:PORT][/DB][?prefix=P], unix:/SOCKET) that servers on
 *	several machines share; the URL is printed without its password.
 *	--cache-key FILE seals the cache's records (sessdb_options.key_file;
 *	--key is the TLS private key).
 *
 *	Session-ID context: a SHA-256 digest of the server certificate and
 *	of the client-certificate policy, so that servers with other
 *	certificates or policies sharing a cache file never resume each
 *	other's sessions (the glue binds the certificates as well; this is
 *	the application's half, see docs/GLUE.md).
 *
 *	Accepting: workers block in accept() on the shared socket, which
 *	wakes one worker per connection, the one that has waited longest
 *	(poll() would wake all of them to race for it).  So consecutive
 *	connections of one client tend to land on different workers, and
 *	without a shared cache resume less often than 1 in N.
 *
 * DIAGNOSTICS
 *	Exit status 0 after a clean stop, 1 on a setup error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sessdb.h>
#include <sessdb_ssl.h>

#include "tooling.h"

#ifndef SESSDEMO_SRC_DATADIR
#define SESSDEMO_SRC_DATADIR "data"
#endif
#ifndef SESSDEMO_INST_DATADIR
#define SESSDEMO_INST_DATADIR "/usr/local/share/sessdb"
#endif

#define DEFAULT_PORT	8443
#define DEFAULT_WORKERS	4
#define MAX_WORKERS	256
#define DEFAULT_CACHE	"sessions.db"
#define CERT_NAME	"server-chain.pem"
#define KEY_NAME	"server.key"
#define EARLY_MAX	16384		/* max early data, and the request buffer */
#define REQ_MAX		(EARLY_MAX + 1)
#define LINE_MAX_LOG	200		/* request-line bytes kept for the log */
#define STOP_GRACE_S	10		/* SIGTERM to SIGKILL */
#define EXIT_SETUP	3		/* worker could not start: do not restart */

struct config {
	const char	*bind_addr;
	int		port;
	int		workers;
	const char	*cache;		/* NULL with --no-cache */
	const char	*cache_key;	/* --cache-key: seals the records */
	char		cache_name[512]; /* cache as printed: a URL's password
					   replaced by "***" */
	const char	*cert;
	const char	*key;
	int		tls_min;
	int		tls_max;
	int		early_data;
	const char	*access_log;
	const char	*ready_file;
	const char	*client_ca;	/* --verify-client: require a client cert */
	const char	*sid_ctx;	/* --session-id-context, NULL: derived */
	int		timeout_s;
	int		tickets;	/* TLS 1.3 tickets per handshake, -1 = default */
	int		session_timeout; /* seconds, 0 = OpenSSL's default */
	int		verbose;
	int		list;
};

struct counters {
	uint64_t	conns;		/* accepted connections */
	uint64_t	resumed;	/* handshakes that resumed a session */
	uint64_t	full;		/* full handshakes */
	uint64_t	failed;		/* handshakes that failed (bad client, timeout) */
	uint64_t	early_accepted;	/* connections whose early data was accepted */
	uint64_t	early_rejected;	/* early data offered and rejected */
};

/* What a worker writes to the report pipe when it stops (< PIPE_BUF). */
struct report {
	pid_t			pid;
	int			slot;
	int			have_stats;
	struct counters		c;
	struct sessdb_stats	st;	/* the worker's store handle */
	struct sessdb_ssl_stats	gs;	/* the glue's view */
};

/* One connection being served. */
struct conn {
	SSL		*ssl;
	char		buf[REQ_MAX + 1];
	size_t		len;
	int		early;		/* SSL_EARLY_DATA_* */
	int		status;		/* HTTP status sent, 0 = none */
	char		line[LINE_MAX_LOG * 4 + 1];	/* escaped request line */
};

struct worker {
	const struct config	*cfg;
	SSL_CTX			*ctx;
	struct sessdb		*db;
	int			lfd;
	int			logfd;
	int			report_fd;
	int			slot;
	struct counters		c;
	struct conn		conn;	/* reused for every connection */
};

struct slot {
	pid_t	pid;		/* 0 = not running */
	time_t	started;
};

static volatile sig_atomic_t worker_stop;

static const char usage_text[] =
"usage: sessdemo [--port P] [--workers N] [--cache PATH|URL | --no-cache]\n"
"                [--cache-key FILE] [--cert FILE --key FILE] [--tls 1.2|1.3] [--early-data]\n"
"                [--access-log FILE] [--bind ADDR] [--ready-file FILE]\n"
"                [--timeout SECS] [--tickets N] [--session-timeout SECS]\n"
"                [--verify-client CAFILE] [--session-id-context STR]\n"
"                [--verbose]\n"
"       sessdemo --list [--cache PATH]\n";

/* logmsg - print "sessdemo[pid]: message" on stderr */
static void __attribute__((format(printf, 1, 2)))
logmsg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof buf, "sessdemo[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(buf, "\n");
	fputs(buf, stderr);
}

/* ssl_errmsg - log msg with the first OpenSSL error, and clear the queue */
static void
ssl_errmsg(const char *msg)
{
	char err[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(err, sizeof err, "(no OpenSSL error)");
	else
		ERR_error_string_n(e, err, sizeof err);
	ERR_clear_error();
	logmsg("%s: %s", msg, err);
}

/* store_log - sessdb log callback: warnings and errors, info if verbose */
static void
store_log(void *arg, int level, const char *msg)
{
	const struct config *cfg = arg;

	if (level <= SESSDB_LOG_WARNING || cfg->verbose)
		logmsg("store: %s", msg);
}

/* find_data_file - the default certificate or key: source tree, then installed */
static const char *
find_data_file(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", SESSDEMO_SRC_DATADIR, name);
	if (access(buf, R_OK) == 0)
		return buf;
	snprintf(buf, len, "%s/%s", SESSDEMO_INST_DATADIR, name);
	return buf;
}

/* parse_tls - "1.2" or "1.3" into min = max version */
static int
parse_tls(const char *s, struct config *cfg)
{
	if (strcmp(s, "1.2") == 0)
		cfg->tls_min = cfg->tls_max = TLS1_2_VERSION;
	else if (strcmp(s, "1.3") == 0)
		cfg->tls_min = cfg->tls_max = TLS1_3_VERSION;
	else
		return -1;
	return 0;
}

/* parse_args - fill cfg from argv; -1 on bad usage (message printed) */
static int
parse_args(int argc, char **argv, struct config *cfg)
{
	static char certbuf[PATH_MAX], keybuf[PATH_MAX];
	static const struct option longopts[] = {
		{ "port",	required_argument, NULL, 'p' },
		{ "workers",	required_argument, NULL, 'w' },
		{ "cache",	required_argument, NULL, 'c' },
		{ "no-cache",	no_argument,	   NULL, 'n' },
		{ "cache-key",	required_argument, NULL, 'k' },
		{ "cert",	required_argument, NULL, 'C' },
		{ "key",	required_argument, NULL, 'K' },
		{ "tls",	required_argument, NULL, 't' },
		{ "early-data",	no_argument,	   NULL, 'e' },
		{ "access-log",	required_argument, NULL, 'a' },
		{ "bind",	required_argument, NULL, 'b' },
		{ "ready-file",	required_argument, NULL, 'r' },
		{ "timeout",	required_argument, NULL, 'T' },
		{ "tickets",	required_argument, NULL, 'N' },
		{ "session-timeout", required_argument, NULL, 'S' },
		{ "verify-client", required_argument, NULL, 'V' },
		{ "session-id-context", required_argument, NULL, 'I' },
		{ "verbose",	no_argument,	   NULL, 'v' },
		{ "list",	no_argument,	   NULL, 'l' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int ch, no_cache = 0, have_cache = 0, bad = 0;

	*cfg = (struct config){ .bind_addr = "127.0.0.1", .port = DEFAULT_PORT,
	    .workers = DEFAULT_WORKERS, .cache = DEFAULT_CACHE,
	    .tls_min = TLS1_2_VERSION, .tls_max = TLS1_3_VERSION, .timeout_s = 10,
	    .tickets = -1 };
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p': bad |= tool_parse_int(optarg, 0, 65535, &cfg->port); break;
		case 'w': bad |= tool_parse_int(optarg, 1, MAX_WORKERS, &cfg->workers); break;
		case 'c': cfg->cache = optarg; have_cache = 1; break;
		case 'n': no_cache = 1; break;
		case 'k': cfg->cache_key = optarg; break;
		case 'C': cfg->cert = optarg; break;
		case 'K': cfg->key = optarg; break;
		case 't': bad |= parse_tls(optarg, cfg); break;
		case 'e': cfg->early_data = 1; break;
		case 'a': cfg->access_log = optarg; break;
		case 'b': cfg->bind_addr = optarg; break;
		case 'r': cfg->ready_file = optarg; break;
		case 'T': bad |= tool_parse_int(optarg, 1, 3600, &cfg->timeout_s); break;
		case 'N': bad |= tool_parse_int(optarg, 0, 16, &cfg->tickets); break;
		case 'S': bad |= tool_parse_int(optarg, 1, 604800, &cfg->session_timeout); break;
		case 'V': cfg->client_ca = optarg; break;
		case 'I':
			cfg->sid_ctx = optarg;
			if (*optarg == '\0' || strlen(optarg) > SSL_MAX_SID_CTX_LENGTH)
				bad = -1;
			break;
		case 'v': cfg->verbose = 1; break;
		case 'l': cfg->list = 1; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		default: bad = -1; break;
		}
	}
	if (optind != argc || (cfg->cert == NULL) != (cfg->key == NULL))
		bad = -1;
	if (no_cache && (cfg->list || have_cache || cfg->cache_key != NULL))
		bad = -1;
	if (bad) {
		fputs(usage_text, stderr);
		return -1;
	}
	if (no_cache)
		cfg->cache = NULL;
	else
		tool_store_display(cfg->cache, cfg->cache_name,
		    sizeof cfg->cache_name);
	if (cfg->cert == NULL) {
		cfg->cert = find_data_file(CERT_NAME, certbuf, sizeof certbuf);
		cfg->key = find_data_file(KEY_NAME, keybuf, sizeof keybuf);
	}
	return 0;
}

/* digest_cert - feed the SHA-256 of x's DER to md; 0 or -1 */
static int
digest_cert(EVP_MD_CTX *md, X509 *x)
{
	unsigned char buf[EVP_MAX_MD_SIZE];
	unsigned int len;

	if (!X509_digest(x, EVP_sha256(), buf, &len))
		return -1;
	return EVP_DigestUpdate(md, buf, len) ? 0 : -1;
}

/*
 * set_session_context - the session-ID context: --session-id-context, or
 *	SHA-256 over a tag, the server certificate and the client-certificate
 *	policy (required or not, and the trusted CAs).  Two servers with
 *	another certificate or policy then never resume each other's
 *	sessions, even on one cache file; two workers, or two servers
 *	configured alike, do.  0 or -1.
 */
static int
set_session_context(SSL_CTX *ctx, const struct config *cfg)
{
	unsigned char sid[EVP_MAX_MD_SIZE];
	STACK_OF(X509_OBJECT) *objs;
	EVP_MD_CTX *md = NULL;
	X509 *cert = SSL_CTX_get0_certificate(ctx), *ca;
	unsigned int len = 0;
	int i, rc = -1;

	if (cfg->sid_ctx != NULL)
		return SSL_CTX_set_session_id_context(ctx,
		    (const unsigned char *)cfg->sid_ctx,
		    (unsigned int)strlen(cfg->sid_ctx)) ? 0 : -1;
	if (cert == NULL || (md = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(md, "sessdemo v1", 11) || digest_cert(md, cert) < 0 ||
	    !EVP_DigestUpdate(md, cfg->client_ca != NULL ? "V" : "-", 1))
		goto done;
	objs = cfg->client_ca != NULL ?
	    X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx)) : NULL;
	for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		if (ca != NULL && digest_cert(md, ca) < 0)
			goto done;
	}
	if (EVP_DigestFinal_ex(md, sid, &len) && len <= SSL_MAX_SID_CTX_LENGTH &&
	    SSL_CTX_set_session_id_context(ctx, sid, len))
		rc = 0;
done:
	EVP_MD_CTX_free(md);
	return rc;
}

/* make_ctx - the server SSL_CTX shared (copied by fork) by all workers */
static SSL_CTX *
make_ctx(const struct config *cfg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		ssl_errmsg("SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, cfg->tls_min);
	SSL_CTX_set_max_proto_version(ctx, cfg->tls_max);
	/* TLS 1.2: session IDs instead of stateless tickets (which would
	   resume in every worker through the ticket key copied by fork and so
	   hide what the cache does); TLS 1.3: stateful tickets. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* A client that closes TCP without close_notify after a good
	   handshake (common: browsers, gnutls-cli --resume, Python) is not
	   an attack on the session; without this option OpenSSL 3 treats the
	   EOF as a fatal error and removes the session from every cache,
	   the shared one included. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (cfg->tickets >= 0)
		SSL_CTX_set_num_tickets(ctx, (size_t)cfg->tickets);
	if (cfg->session_timeout > 0)
		SSL_CTX_set_timeout(ctx, cfg->session_timeout);
	if (cfg->early_data) {
		SSL_CTX_set_max_early_data(ctx, EARLY_MAX);
		SSL_CTX_set_recv_max_early_data(ctx, EARLY_MAX);
	}
	if (cfg->client_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) != 1) {
			ssl_errmsg(cfg->client_ca);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
		ssl_errmsg(cfg->cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_errmsg(cfg->key);
		goto fail;
	}
	if (set_session_context(ctx, cfg) < 0) {
		ssl_errmsg("session-ID context");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* open_store - open the cache file with the demo's log callback */
static struct sessdb *
open_store(const struct config *cfg, unsigned flags)
{
	struct sessdb_options o = { .flags = flags, .log = store_log,
	    .log_arg = (void *)cfg, .key_file = cfg->cache_key };
	char err[256] = "";
	struct sessdb *db = sessdb_open(cfg->cache, &o, err, sizeof err);

	if (db == NULL)
		logmsg("cannot open cache %s: %s", cfg->cache_name, err);
	return db;
}

/* listen_on - bind and listen on addr:port; accept() times out each second */
static int
listen_on(const struct config *cfg)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct timeval tv = { .tv_sec = 1 };
	char port[16];
	int fd = -1, one = 1, rc;

	snprintf(port, sizeof port, "%d", cfg->port);
	rc = getaddrinfo(cfg->bind_addr, port, &hints, &ai);
	if (rc != 0) {
		logmsg("bad --bind address %s: %s", cfg->bind_addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		logmsg("socket: %s", strerror(errno));
		goto done;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);	/* accept */
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		logmsg("cannot listen on %s:%d: %s", cfg->bind_addr, cfg->port,
		    strerror(errno));
		close(fd);
		fd = -1;
	}
done:
	freeaddrinfo(ai);
	return fd;
}

/* bound_port - the port the listening socket got (useful with --port 0) */
static int
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* on_worker_term - worker SIGTERM handler: finish and leave the accept loop */
static void
on_worker_term(int sig)
{
	(void)sig;
	worker_stop = 1;
}

/* sock_setup - timeouts so a silent client cannot hold a worker forever */
static void
sock_setup(int fd, int timeout_s)
{
	struct timeval tv = { .tv_sec = timeout_s };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* read_early - collect any 0-RTT data into c->buf; -1 if the handshake failed */
static int
read_early(struct conn *c)
{
	size_t n;
	int r;

	for (;;) {
		n = 0;
		r = SSL_read_early_data(c->ssl, c->buf + c->len, REQ_MAX - c->len, &n);
		c->len += n;
		if (r == SSL_READ_EARLY_DATA_ERROR)
			return -1;
		if (r == SSL_READ_EARLY_DATA_FINISH)
			return 0;
		if (c->len >= REQ_MAX)
			return -1;	/* more than recv_max_early_data: impossible */
	}
}

/* header_done - whether buf holds a complete request head */
static int
header_done(const char *buf, size_t len)
{
	return memmem(buf, len, "\r\n\r\n", 4) != NULL ||
	    memmem(buf, len, "\n\n", 2) != NULL;
}

/* read_request - read until the request head is complete, EOF or full */
static void
read_request(struct conn *c)
{
	int n;

	while (c->len < REQ_MAX && !header_done(c->buf, c->len)) {
		n = SSL_read(c->ssl, c->buf + c->len, (int)(REQ_MAX - c->len));
		if (n <= 0)
			break;
		c->len += (size_t)n;
	}
	c->buf[c->len] = '\0';
}

/* escape_line - copy the first line of src for the log: printable ASCII,
 * other bytes (and '"', '\\') as \xHH, at most LINE_MAX_LOG input bytes */
static void
escape_line(const char *src, size_t len, char *dst)
{
	size_t i;
	char *p = dst;

	for (i = 0; i < len && i < LINE_MAX_LOG; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch == '\r' || ch == '\n')
			break;
		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			p += sprintf(p, "\\x%02x", ch);
		else
			*p++ = (char)ch;
	}
	*p = '\0';
}

/* request_status - HTTP status for the request head in c->buf, and the
 * escaped request line; 0 if the client sent nothing */
static int
request_status(struct conn *c, int *head_only)
{
	const char *sp1, *sp2, *eol;
	size_t linelen;

	*head_only = 0;
	if (c->len == 0)
		return 0;
	eol = memchr(c->buf, '\n', c->len);
	linelen = eol ? (size_t)(eol - c->buf) : c->len;
	escape_line(c->buf, linelen, c->line);
	if (eol == NULL || !header_done(c->buf, c->len))
		return 400;
	if (linelen > 0 && c->buf[linelen - 1] == '\r')
		linelen--;
	sp1 = memchr(c->buf, ' ', linelen);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', linelen - (size_t)(sp1 + 1 - c->buf)) : NULL;
	if (sp1 == NULL || sp2 == NULL || sp1 == c->buf || sp2 == sp1 + 1 ||
	    strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return 400;
	if (sp1 - c->buf == 4 && memcmp(c->buf, "HEAD", 4) == 0) {
		*head_only = 1;
		return 200;
	}
	if (sp1 - c->buf == 3 && memcmp(c->buf, "GET", 3) == 0)
		return 200;
	return 405;
}

/* session_hex - the current session's ID as hex, "-" if none */
static void
session_hex(SSL *ssl, char *out, size_t outlen)
{
	SSL_SESSION *s = SSL_get_session(ssl);
	const unsigned char *id;
	unsigned int idlen = 0, i;

	id = s ? SSL_SESSION_get_id(s, &idlen) : NULL;
	if (idlen == 0 || outlen < 2 * (size_t)idlen + 1) {
		snprintf(out, outlen, "-");
		return;
	}
	for (i = 0; i < idlen; i++)
		sprintf(out + 2 * i, "%02x", id[i]);
}

/* client_name - the client certificate's common name ("-" if none); for a
 * resumed session it comes from the session, i.e. from the store */
static void
client_name(SSL *ssl, char *out, int outlen)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);

	if (peer == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
	    NID_commonName, out, outlen) <= 0)
		snprintf(out, (size_t)outlen, "-");
}

/* early_name - the response's word for an early data status */
static const char *
early_name(int status)
{
	switch (status) {
	case SSL_EARLY_DATA_ACCEPTED: return "accepted";
	case SSL_EARLY_DATA_REJECTED: return "rejected";
	default: return "none";
	}
}

/* send_response - write the status line, headers and the worker's report
 * in one SSL_write (one TLS record) */
static void
send_response(struct worker *w, struct conn *c, int status, int head_only)
{
	const char *reason = status == 200 ? "OK" :
	    status == 405 ? "Method Not Allowed" : "Bad Request";
	char body[512], out[1024], sid[2 * SSL_MAX_SSL_SESSION_ID_LENGTH + 1];
	char client[128];
	int blen, n;

	session_hex(c->ssl, sid, sizeof sid);
	client_name(c->ssl, client, sizeof client);
	blen = snprintf(body, sizeof body,
	    "pid=%d worker=%d resumed=%d protocol=%s cipher=%s early_data=%s"
	    " cache=%s session=%s client=%s\n",
	    (int)getpid(), w->slot, SSL_session_reused(c->ssl),
	    SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
	    early_name(c->early), w->db ? "shared" : "none", sid, client);
	n = snprintf(out, sizeof out,
	    "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	    status, reason, blen, head_only ? "" : body);
	if (n > 0 && n < (int)sizeof out)
		SSL_write(c->ssl, out, n);
	c->status = status;
}

/* access_log - one line per connection, one write() on an O_APPEND file */
static void
access_log(struct worker *w, struct conn *c, int handshake_ok)
{
	char line[LINE_MAX_LOG * 4 + 256], sid[2 * SSL_MAX_SSL_SESSION_ID_LENGTH + 1];
	char status[8] = "-";
	int n;

	if (w->logfd < 0)
		return;
	if (handshake_ok)
		session_hex(c->ssl, sid, sizeof sid);
	else
		strcpy(sid, "-");
	if (c->status != 0)
		snprintf(status, sizeof status, "%d", c->status);
	n = snprintf(line, sizeof line, "%d %s %c %s %s \"%s\"\n", (int)getpid(),
	    handshake_ok ? SSL_get_version(c->ssl) : "-",
	    handshake_ok && SSL_session_reused(c->ssl) ? 'r' : '.',
	    sid, status, c->line);
	if (n > 0 && write(w->logfd, line, (size_t)n) < 0 && w->cfg->verbose)
		logmsg("access log: %s", strerror(errno));
}

/* count_handshake - update the worker's counters after a handshake */
static void
count_handshake(struct worker *w, struct conn *c)
{
	if (SSL_session_reused(c->ssl))
		w->c.resumed++;
	else
		w->c.full++;
	if (c->early == SSL_EARLY_DATA_ACCEPTED)
		w->c.early_accepted++;
	else if (c->early == SSL_EARLY_DATA_REJECTED)
		w->c.early_rejected++;
}

/* serve - one connection: handshake, one request, response, close.
 * Any client misbehaviour ends only this connection. */
static void
serve(struct worker *w, int fd)
{
	struct conn *c = &w->conn;
	int ok = 0, status, head_only;

	w->c.conns++;
	c->len = 0;
	c->early = SSL_EARLY_DATA_NOT_SENT;
	c->status = 0;
	c->line[0] = '\0';
	if ((c->ssl = SSL_new(w->ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1)
		goto done;
	sock_setup(fd, w->cfg->timeout_s);
	if (w->cfg->early_data && read_early(c) < 0)
		goto done;
	if (SSL_accept(c->ssl) != 1)
		goto done;
	ok = 1;
	c->early = SSL_get_early_data_status(c->ssl);
	count_handshake(w, c);
	read_request(c);
	status = request_status(c, &head_only);
	if (status != 0)
		send_response(w, c, status, head_only);
	SSL_shutdown(c->ssl);
done:
	if (!ok) {
		w->c.failed++;
		if (w->cfg->verbose)
			ssl_errmsg("handshake failed");
	}
	ERR_clear_error();
	access_log(w, c, ok);
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(fd);
}

/* accept_loop - take connections until SIGTERM.  accept() on the blocking
 * listening socket wakes one waiting worker at a time (the one waiting
 * longest), unlike poll(), which wakes all of them to race for the
 * connection.  SIGTERM is unblocked only around accept(); a signal that
 * lands between the check and the call is seen within the socket's
 * one-second accept timeout. */
static void
accept_loop(struct worker *w, const sigset_t *waitmask)
{
	sigset_t old;
	int fd;

	while (!worker_stop) {
		sigprocmask(SIG_SETMASK, waitmask, &old);
		fd = worker_stop ? -1 : accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
				logmsg("accept: %s", strerror(errno));
				usleep(100000);
			}
			continue;	/* EINTR, EAGAIN (timeout), ECONNABORTED */
		}
		serve(w, fd);
	}
}

/* send_report - write the counters to the parent in one atomic write */
static void
send_report(struct worker *w)
{
	struct report r = { .pid = getpid(), .slot = w->slot, .c = w->c };

	if (w->db != NULL) {
		sessdb_stats(w->db, &r.st);
		r.have_stats = sessdb_ssl_stats(w->ctx, &r.gs) == 0;
	}
	if (write(w->report_fd, &r, sizeof r) != (ssize_t)sizeof r)
		logmsg("cannot report counters: %s", strerror(errno));
}

/* worker_signals - SIGTERM handled (blocked outside accept), SIGINT ignored */
static void
worker_signals(sigset_t *waitmask)
{
	struct sigaction sa = { .sa_handler = on_worker_term };
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_SETMASK, &block, NULL);
	sigemptyset(waitmask);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* worker_main - the life of one worker after fork(); never returns */
static void __attribute__((noreturn))
worker_main(struct worker *w, pid_t parent)
{
	sigset_t waitmask;

	worker_signals(&waitmask);
	if (getppid() != parent)
		_exit(0);
	if (w->cfg->cache != NULL) {
		w->db = open_store(w->cfg, 0);
		if (w->db == NULL || sessdb_ssl_attach(w->ctx, w->db, 0) != 0) {
			logmsg("cannot attach the cache");
			_exit(EXIT_SETUP);
		}
	}
	accept_loop(w, &waitmask);
	send_report(w);
	if (w->db != NULL) {
		sessdb_ssl_detach(w->ctx);
		sessdb_close(w->db);
	}
	SSL_CTX_free(w->ctx);
	exit(0);
}

/* spawn - fork the worker for slot i; 0 or -1 */
static int
spawn(struct worker *w, struct slot *slots, int i)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		logmsg("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		w->slot = i;
		worker_main(w, parent);
	}
	slots[i].pid = pid;
	slots[i].started = time(NULL);
	return 0;
}

/* describe_exit - "exit status N" / "signal N" for a wait status */
static void
describe_exit(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/* reap - collect dead workers; restart them unless stopping.
 * Returns the number of workers still running. */
static int
reap(struct worker *w, struct slot *slots, int stopping, int *restarts)
{
	char why[64];
	int status, i, running = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < w->cfg->workers && slots[i].pid != pid; i++)
			;
		if (i == w->cfg->workers)
			continue;
		slots[i].pid = 0;
		describe_exit(status, why, sizeof why);
		if (stopping) {
			if (status != 0)	/* e.g. a sanitizer's report */
				logmsg("worker %d (pid %d) stopped with %s", i,
				    (int)pid, why);
			continue;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SETUP) {
			logmsg("worker %d (pid %d) could not start; not restarting",
			    i, (int)pid);
			continue;
		}
		if (time(NULL) - slots[i].started < 1)
			sleep(1);	/* a worker crashing at once: do not spin */
		if (spawn(w, slots, i) == 0) {
			(*restarts)++;
			logmsg("worker %d (pid %d) %s; restarted as pid %d", i,
			    (int)pid, why, (int)slots[i].pid);
		}
	}
	for (i = 0; i < w->cfg->workers; i++)
		running += slots[i].pid != 0;
	return running;
}

/* stop_workers - SIGTERM every worker, SIGKILL those left after the grace */
static void
stop_workers(struct worker *w, struct slot *slots, const sigset_t *set)
{
	struct timespec ts = { .tv_sec = 1 };
	time_t deadline = time(NULL) + STOP_GRACE_S;
	int i, restarts = 0;

	for (i = 0; i < w->cfg->workers; i++)
		if (slots[i].pid != 0)
			kill(slots[i].pid, SIGTERM);
	while (reap(w, slots, 1, &restarts) > 0) {
		if (time(NULL) >= deadline) {
			for (i = 0; i < w->cfg->workers; i++)
				if (slots[i].pid != 0)
					kill(slots[i].pid, SIGKILL);
			deadline = time(NULL) + STOP_GRACE_S;
		}
		sigtimedwait(set, NULL, &ts);
	}
}

/* print_report - one worker's counters */
static void
print_report(const struct report *r, struct counters *tot)
{
	printf("worker %d pid %d: connections %" PRIu64 " resumed %" PRIu64
	    " full %" PRIu64 " failed %" PRIu64 " early-data accepted %" PRIu64
	    " rejected %" PRIu64, r->slot, (int)r->pid, r->c.conns, r->c.resumed,
	    r->c.full, r->c.failed, r->c.early_accepted, r->c.early_rejected);
	if (r->have_stats)
		printf("; glue stores %" PRIu64 " store-failures %" PRIu64
		    " hits %" PRIu64 " misses %" PRIu64 " rejected %" PRIu64
		    " foreign %" PRIu64 " removes %" PRIu64, r->gs.stores,
		    r->gs.store_failures, r->gs.hits, r->gs.misses,
		    r->gs.rejected, r->gs.foreign, r->gs.removes);
	if (r->have_stats)
		printf("; store hits %" PRIu64 " misses %" PRIu64 " stores %" PRIu64
		    " declined %" PRIu64 " deletes %" PRIu64 " errors %" PRIu64
		    " lock-timeouts %" PRIu64 " reopens %" PRIu64 " recoveries %" PRIu64
		    " tampered %" PRIu64 " sealed-nokey %" PRIu64 " unsealed %" PRIu64,
		    r->st.hits, r->st.misses, r->st.stores, r->st.declined,
		    r->st.deletes, r->st.errors, r->st.lock_timeouts, r->st.reopens,
		    r->st.recoveries, r->st.tampered, r->st.sealed_nokey,
		    r->st.unsealed);
	printf("\n");
	tot->conns += r->c.conns;
	tot->resumed += r->c.resumed;
	tot->full += r->c.full;
	tot->failed += r->c.failed;
	tot->early_accepted += r->c.early_accepted;
	tot->early_rejected += r->c.early_rejected;
}

/* print_reports - read every report from the pipe and print a total */
static void
print_reports(int rfd, int restarts)
{
	struct counters tot = { 0 };
	struct report r;
	int n = 0;

	printf("sessdemo: stopped; counters per worker:\n");
	while (read(rfd, &r, sizeof r) == (ssize_t)sizeof r) {
		print_report(&r, &tot);
		n++;
	}
	printf("total (%d reports, %d restarts): connections %" PRIu64
	    " resumed %" PRIu64 " full %" PRIu64 " failed %" PRIu64
	    " early-data accepted %" PRIu64 "\n", n, restarts, tot.conns,
	    tot.resumed, tot.full, tot.failed, tot.early_accepted);
	fflush(stdout);
}

/* write_ready - announce readiness: a line on stdout and the ready file */
static int
write_ready(const struct config *cfg, int port)
{
	char tmp[PATH_MAX];
	FILE *f;

	printf("sessdemo: ready on %s:%d, %d workers, cache %s, TLS %s, early data %s\n",
	    cfg->bind_addr, port, cfg->workers, cfg->cache ? cfg->cache_name : "none",
	    cfg->tls_min == cfg->tls_max ?
	    (cfg->tls_min == TLS1_2_VERSION ? "1.2" : "1.3") : "1.2-1.3",
	    cfg->early_data ? "on" : "off");
	fflush(stdout);
	if (cfg->ready_file == NULL)
		return 0;
	snprintf(tmp, sizeof tmp, "%s.tmp", cfg->ready_file);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
	    rename(tmp, cfg->ready_file) != 0) {
		logmsg("cannot write %s: %s", cfg->ready_file, strerror(errno));
		return -1;
	}
	return 0;
}

/* supervise - parent loop: restart dead workers until asked to stop.
 * Returns the number of restarts, or -1 if no worker could be kept running. */
static int
supervise(struct worker *w, struct slot *slots, const sigset_t *set)
{
	siginfo_t si;
	int sig, restarts = 0;

	for (;;) {
		sig = sigwaitinfo(set, &si);
		if (sig == SIGCHLD) {
			if (reap(w, slots, 0, &restarts) == 0) {
				logmsg("no worker left; stopping");
				return -1;
			}
		} else if (sig > 0) {
			logmsg("signal %d: stopping %d workers", sig, w->cfg->workers);
			break;
		}
	}
	stop_workers(w, slots, set);
	return restarts;
}

/* open_log - the access log, shared by all workers (O_APPEND) */
static int
open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0)
		logmsg("cannot open access log %s: %s", path, strerror(errno));
	return fd;
}

/* list_record - print one record for --list.  A record that did not
 * decode has no ID (the store zeroes it): its raw key names it. */
static int
list_record(void *arg, const struct sessdb_record *rec)
{
	const unsigned char *name = rec->problem != NULL ? rec->key : rec->id;
	size_t i, len = rec->problem != NULL ? rec->key_len : rec->id_len;

	(void)arg;
	for (i = 0; i < len; i++)
		printf("%02x", name[i]);
	if (rec->problem != NULL) {
		printf("  BAD: %s\n", rec->problem);
		return 0;
	}
	printf("  ns %c  created %" PRId64 "  expires %" PRId64 "  %zu bytes\n",
	    rec->ns >= 0x20 && rec->ns < 0x7f ? (int)rec->ns : '?',
	    rec->meta.created, rec->meta.expires, rec->len);
	return 0;
}

/* list_cache - --list: show what the cache holds, through the store API */
static int
list_cache(const struct config *cfg)
{
	struct sessdb *db = open_store(cfg, SESSDB_RDONLY | SESSDB_NOCREATE);
	struct sessdb_info info;
	int rc = 1;

	if (db == NULL)
		return 1;
	if (sessdb_foreach(db, 0, list_record, NULL) < 0) {
		logmsg("%s: %s", cfg->cache_name, sessdb_error(db));
		goto done;
	}
	if (sessdb_info(db, &info) == 0 && tool_store_is_url(cfg->cache))
		/* what Redis counts: the whole database, every prefix */
		printf("%s: %" PRIu64 " keys in the Redis database, %" PRIu64
		    " bytes of memory used\n", cfg->cache_name, info.entries,
		    info.file_size);
	else if (sessdb_info(db, &info) == 0)
		printf("%s: %" PRIu64 " records, %" PRIu64 " bytes, generation %" PRIu64
		    "\n", cfg->cache_name, info.entries, info.file_size,
		    info.generation);
	rc = 0;
done:
	sessdb_close(db);
	return rc;
}

/* check_store - open the cache once in the parent so errors show at start */
static int
check_store(const struct config *cfg)
{
	struct sessdb *db;

	if (cfg->cache == NULL)
		return 0;
	db = open_store(cfg, 0);
	if (db == NULL)
		return -1;
	sessdb_close(db);
	return 0;
}

/* block_signals - the parent waits for these with sigwaitinfo() */
static void
block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGCHLD);
	sigprocmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* run - set up, fork the workers, supervise, report */
static int
run(const struct config *cfg)
{
	struct worker w = { .cfg = cfg, .lfd = -1, .logfd = -1, .report_fd = -1 };
	struct slot slots[MAX_WORKERS] = { { 0 } };
	int pfd[2] = { -1, -1 }, rc = 1, i, restarts;
	sigset_t set;

	block_signals(&set);
	if (check_store(cfg) < 0 || (w.ctx = make_ctx(cfg)) == NULL)
		goto done;
	if ((w.lfd = listen_on(cfg)) < 0)
		goto done;
	if (cfg->access_log != NULL && (w.logfd = open_log(cfg->access_log)) < 0)
		goto done;
	if (pipe2(pfd, O_CLOEXEC) < 0 || fcntl(pfd[1], F_SETFL, O_NONBLOCK) < 0) {
		logmsg("pipe: %s", strerror(errno));
		goto done;
	}
	w.report_fd = pfd[1];
	for (i = 0; i < cfg->workers; i++)
		if (spawn(&w, slots, i) < 0)
			break;
	if (i == cfg->workers && write_ready(cfg, bound_port(w.lfd)) == 0) {
		restarts = supervise(&w, slots, &set);
		rc = restarts < 0;
	} else {
		restarts = 0;
		stop_workers(&w, slots, &set);
	}
	close(pfd[1]);
	pfd[1] = -1;
	print_reports(pfd[0], restarts < 0 ? 0 : restarts);
done:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (w.logfd >= 0)
		close(w.logfd);
	if (w.lfd >= 0)
		close(w.lfd);
	SSL_CTX_free(w.ctx);
	return rc;
}

int
main(int argc, char **argv)
{
	struct config cfg;

	if (parse_args(argc, argv, &cfg) < 0)
		return 2;
	if (cfg.list)
		return list_cache(&cfg);
	return run(&cfg);
}
