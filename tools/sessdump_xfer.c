/*
 * NAME
 *	sessdump_xfer.c - moving sessions between stores: export and import
 *
 * DESCRIPTION
 *	export writes sessions as PEM "SSL SESSION PARAMETERS" blocks
 *	(PEM_write_bio_SSL_SESSION) or as concatenated DER, the formats that
 *	`openssl sess_id` reads and writes.  The output holds master secrets:
 *	a file named with -o is created mode 0600.  Other consumers' opaque
 *	records go out as "SESSDB OPAQUE RECORD" blocks (PEM only), which
 *	import stores back unchanged and `openssl sess_id` skips.
 *
 *	import reads such files (or stdin), parses every session (with
 *	sd_parse_sessions, sessdump_parse.c, which is fuzzed) before it
 *	stores any, refuses the whole run if an input is malformed, and
 *	refuses single sessions that are expired or cannot be resumed.  A
 *	session is stored under its own ID with the expiry it carries
 *	(time + timeout), capped by the store's max_ttl.  Sessions are
 *	encoded, decoded and stored by libsessdb's sessdb_ssl_encode,
 *	sessdb_ssl_decode (through sd_decode) and sessdb_ssl_put, the
 *	functions the OpenSSL glue uses, so an exported session is the
 *	glue's record payload, server identity mark included.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sessdump.h"

#define INPUT_MAX (64u << 20)	/* largest import input accepted */

struct export {
	BIO			*out;
	int			der, live_only;
	int64_t			now;
	uint64_t		written, skipped, clients;
	uint64_t		sealed;		/* skipped: sealed, no key for them */
	int			failed;
	struct sd_progress	prog;
};

/* write_pem - der as one PEM "SSL SESSION PARAMETERS" block, encoded in
 * buffers of ours that are wiped after use (the block is what
 * PEM_write_bio_SSL_SESSION writes: 64 base64 characters a line). */
static int
write_pem(BIO *out, const unsigned char *der, size_t len)
{
	static const char begin[] = SD_PEM_LABEL "\n";
	static const char end[] = "-----END SSL SESSION PARAMETERS-----\n";
	size_t b64len = 4 * ((len + 2) / 3);
	size_t cap = sizeof begin + b64len + b64len / 64 + 1 + sizeof end;
	unsigned char *b64 = malloc(b64len + 1);
	char *text = malloc(cap);
	size_t n = 0;
	int ok = 0;

	if (b64 == NULL || text == NULL || len > INT_MAX / 2)
		goto out;
	EVP_EncodeBlock(b64, der, (int)len);
	memcpy(text, begin, sizeof begin - 1);
	n = sizeof begin - 1;
	for (size_t i = 0; i < b64len; i += 64) {
		size_t line = b64len - i < 64 ? b64len - i : 64;

		memcpy(text + n, b64 + i, line);
		n += line;
		text[n++] = '\n';
	}
	memcpy(text + n, end, sizeof end - 1);
	n += sizeof end - 1;
	ok = BIO_write(out, text, (int)n) == (int)n;
out:
	tool_wipe_free(b64, b64len + 1);
	tool_wipe_free(text, cap);
	return ok;
}

/* write_session - one session to the output; returns 0 or -1.  The DER
 * is made by sessdb_ssl_encode, as the glue makes it, and wiped after. */
static int
write_session(struct export *ex, SSL_SESSION *s)
{
	unsigned char *der;
	size_t len;
	int ok;

	if (sessdb_ssl_encode(s, &der, &len) == -1) {
		ex->failed = 1;
		return -1;
	}
	ok = ex->der ? BIO_write(ex->out, der, (int)len) == (int)len :
	    write_pem(ex->out, der, len);
	sessdb_ssl_der_free(der, len);
	if (!ok) {
		ex->failed = 1;
		return -1;
	}
	ex->written++;
	return 0;
}

/* write_opaque - an opaque record (another consumer's) as a PEM block
 * SD_OPAQUE_LABEL holding: expires (8 bytes, big-endian), the identifier's
 * length (2 bytes), the identifier (consumer name, 0x00, key), the payload.
 * DER output has no room for it: counted as skipped.  Returns 0 or -1. */
static int
write_opaque(struct export *ex, const struct sessdb_record *rec)
{
	size_t len = 10 + rec->id_len + rec->len;
	unsigned char *buf;
	int ok;

	if (ex->der) {
		ex->skipped++;
		return 0;
	}
	if ((buf = malloc(len)) == NULL) {
		ex->failed = 1;
		return -1;
	}
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)rec->meta.expires >> (56 - 8 * i));
	buf[8] = (unsigned char)(rec->id_len >> 8);
	buf[9] = (unsigned char)rec->id_len;
	memcpy(buf + 10, rec->id, rec->id_len);
	memcpy(buf + 10 + rec->id_len, rec->data, rec->len);
	ok = PEM_write_bio(ex->out, SD_OPAQUE_LABEL, "", buf, (long)len) > 0;
	tool_wipe_free(buf, len);
	if (!ok) {
		ex->failed = 1;
		return -1;
	}
	ex->written++;
	return 0;
}

/* export_one - foreach callback for --all and --live. */
static int
export_one(void *arg, const struct sessdb_record *rec)
{
	struct export *ex = arg;
	const char *problem;
	SSL_SESSION *s;
	int rc;

	sd_progress_tick(&ex->prog);
	if (ex->live_only && (rec->problem == NULL ||
	    rec->seal == SESSDB_SEAL_NOKEY) && rec->meta.expires <= ex->now)
		return 0;
	if (rec->seal == SESSDB_SEAL_NOKEY) {
		ex->sealed++;
		return 0;
	}
	/* A client session without its peer header would be imported as a
	   server session: client sessions stay out of the export. */
	if (rec->ns == SESSDB_NS_CLIENT) {
		ex->clients++;
		return 0;
	}
	if (sd_decode(rec, &s, &problem) == -1) {
		ex->skipped++;
		return 0;
	}
	if (s == NULL)		/* opaque: another consumer's record */
		return write_opaque(ex, rec) == -1 ? -2 : 0;
	rc = write_session(ex, s);
	SSL_SESSION_free(s);
	return rc == -1 ? -2 : 0;
}

/* export_id - one session named on the command line. */
static int
export_id(struct sessdb *db, struct export *ex, const char *arg)
{
	struct sessdb_record rec = { .ns = SESSDB_NS_SERVER };
	unsigned char id[SESSDB_ID_MAX];
	const char *problem;
	SSL_SESSION *s;
	void *data;
	int rc;

	if (sd_parse_hex_id(arg, id, &rec.id_len) == -1)
		return SD_EXIT_USAGE;
	rc = sessdb_get(db, SESSDB_NS_SERVER, id, rec.id_len, &data, &rec.len,
	    &rec.meta);
	if (rc == -1) {
		sd_err("export: %s", sessdb_error(db));
		return SD_EXIT_DB;
	}
	if (rc == SESSDB_MISS) {
		sd_err("export: no live session %s", arg);
		return SD_EXIT_NOTFOUND;
	}
	rec.id = id;
	rec.data = data;
	rc = sd_decode(&rec, &s, &problem);
	OPENSSL_cleanse(data, rec.len);
	sessdb_free(data);
	if (rc == -1) {
		sd_err("export: session %s is unreadable: %s", arg, problem);
		return SD_EXIT_NOTFOUND;
	}
	rc = write_session(ex, s);
	SSL_SESSION_free(s);
	return rc == -1 ? SD_EXIT_IO : 0;
}

/* stdout_safe - whether standard output may receive master secrets: a
 * terminal, a pipe, a socket or a device, or a regular file that only
 * its owner can read (a shell's "> file" makes one mode 0644). */
static int
stdout_safe(void)
{
	struct stat st;

	if (fstat(STDOUT_FILENO, &st) == -1) {
		sd_err("export: standard output: %s", strerror(errno));
		return 0;
	}
	if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
		sd_err("export: standard output is a file that others can read "
		    "(mode %04o) and sessions hold master secrets: use -o FILE, "
		    "which creates the file mode 0600",
		    (unsigned)(st.st_mode & 07777));
		return 0;
	}
	return 1;
}

/* open_existing - --force: reuse path if it is a regular file of ours,
 * made 0600 and emptied before a secret goes in; -1 with a message. */
static int
open_existing(const char *path)
{
	struct stat st;
	int fd;

	fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		sd_err("export: %s: %s", path, errno == ELOOP ?
		    "is a symbolic link; not following it" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid()) {
		sd_err("export: %s: %s", path, !S_ISREG(st.st_mode) ?
		    "not a regular file" : "owned by another user");
		close(fd);
		return -1;
	}
	if (fchmod(fd, 0600) == -1 || ftruncate(fd, 0) == -1) {
		sd_err("export: %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* open_output - the -o file or stdout, as a BIO.  A file is created
 * mode 0600 and must not exist yet, unless force; *created says whether
 * we made it (to remove it if nothing is written). */
static BIO *
open_output(const char *path, int force, int *created)
{
	int fd;
	BIO *b;

	*created = 0;
	if (path == NULL || strcmp(path, "-") == 0)
		return stdout_safe() ? BIO_new_fd(STDOUT_FILENO, BIO_NOCLOSE) :
		    NULL;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd >= 0) {
		*created = 1;
	} else if (errno == EEXIST && force) {
		fd = open_existing(path);
	} else if (errno == EEXIST) {
		sd_err("export: %s exists; give --force to overwrite it", path);
	} else {
		sd_err("export: %s: %s", path, strerror(errno));
	}
	if (fd == -1)
		return NULL;
	if ((b = BIO_new_fd(fd, BIO_CLOSE)) == NULL)
		close(fd);
	return b;
}

/* export_run - write the selected sessions; returns an exit status. */
static int
export_run(struct sessdb *db, const struct sd_global *g, struct export *ex,
    int all, int argc, char **argv)
{
	struct sessdb_info info = { 0 };
	int rc = 0, r;

	ex->now = sessdb_now(db);
	if (all || ex->live_only) {
		(void)sessdb_info(db, &info);
		sd_progress_start(&ex->prog, g, "export", info.entries);
		r = sessdb_foreach(db, 0, export_one, ex);
		sd_progress_end(&ex->prog);
		if (r == -1)
			sd_err("%s: %s", g->db_name, sd_db_error(g, db));
		rc = r == -1 ? SD_EXIT_DB : r ? SD_EXIT_IO : 0;
	}
	for (int i = 0; i < argc; i++)
		if ((r = export_id(db, ex, argv[i])) != 0 && rc == 0)
			rc = r;
	if (ex->skipped)
		sd_err("export: skipped %llu undecodable records (see verify)",
		    (unsigned long long)ex->skipped);
	if (ex->sealed)
		sd_err("export: skipped %llu sealed records: no key for them "
		    "(give --key FILE)", (unsigned long long)ex->sealed);
	if (ex->clients)
		sd_err("export: left out %llu client sessions (they are not "
		    "exported)", (unsigned long long)ex->clients);
	return rc;
}

static const struct option export_opts[] = {
	{ "all", no_argument, NULL, 'a' },
	{ "live", no_argument, NULL, 'l' },
	{ "der", no_argument, NULL, 'D' },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ NULL, 0, NULL, 0 },
};

/* check_ids - every argument must be a hex session ID. */
static int
check_ids(const struct sd_cmd *me, int argc, char **argv)
{
	unsigned char id[SESSDB_ID_MAX];
	size_t len;

	for (int i = 0; i < argc; i++)
		if (sd_parse_hex_id(argv[i], id, &len) == -1)
			return sd_bad_usage(me, "%s: '%s' is not a session ID "
			    "(1 to 32 bytes in hex)", me->name, argv[i]);
	return 0;
}

/* sd_cmd_export - sessions as PEM or DER, for openssl sess_id or import. */
int
sd_cmd_export(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("export");
	struct export ex = { .der = 0 };
	const char *out = NULL;
	struct sessdb *db;
	int all = 0, force = 0, created, ch, rc;

	while ((ch = sd_getopt(g, argc, argv, "o:", export_opts)) != -1) {
		switch (ch) {
		case 'a': all = 1; break;
		case 'l': ex.live_only = 1; break;
		case 'D': ex.der = 1; break;
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		default: return sd_bad_usage(me, NULL);
		}
	}
	argc -= optind;
	argv += optind;
	if (all + ex.live_only + (argc > 0) != 1)
		return sd_bad_usage(me, "export: give session IDs, --all or --live");
	if ((rc = check_ids(me, argc, argv)) != 0)
		return rc;
	if ((ex.out = open_output(out, force, &created)) == NULL)
		return SD_EXIT_IO;
	if ((db = sd_open(g, SESSDB_RDONLY, NULL)) == NULL) {
		rc = SD_EXIT_DB;
	} else {
		rc = export_run(db, g, &ex, all, argc, argv);
		sd_close(db);
	}
	if (BIO_flush(ex.out) != 1 || ex.failed) {
		sd_err("export: write error on %s", out ? out : "standard output");
		rc = SD_EXIT_IO;
	}
	BIO_free(ex.out);
	if (created && (ex.failed || ex.written == 0))
		(void)unlink(out);	/* leave no empty or partial file */
	if (out != NULL && rc == 0)
		fprintf(stderr, "sessdump: exported %llu sessions to %s\n",
		    (unsigned long long)ex.written, out);
	return rc;
}

/* ---- import ---- */

struct import {
	struct sd_sessions in;		/* parsed: sessdump_parse.c */
	int		fmt;		/* 0 detect, 'p' PEM, 'd' DER */
	int		dry;
	uint64_t	stored, refused;
};

/* grow - double buf (cap bytes, n used) into a new buffer, wiping the old
 * one (realloc would free it with the sessions still in it). */
static unsigned char *
grow(unsigned char *buf, size_t n, size_t *cap)
{
	unsigned char *nb = malloc(2 * *cap);

	if (nb != NULL)
		memcpy(nb, buf, n);
	tool_wipe_free(buf, *cap);
	*cap *= 2;
	return nb;
}

/* read_input - all of fd into a malloc'ed buffer of *cap bytes (at most
 * INPUT_MAX); release it with tool_wipe_free(buf, *cap). */
static unsigned char *
read_input(int fd, size_t *len, size_t *cap, const char *name)
{
	unsigned char *buf;
	size_t n = 0;
	ssize_t r;

	*cap = 65536;
	buf = malloc(*cap);
	while (buf != NULL) {
		if (n == *cap) {
			if (*cap >= INPUT_MAX) {
				sd_err("import: %s: larger than %u bytes", name,
				    INPUT_MAX);
				break;
			}
			if ((buf = grow(buf, n, cap)) == NULL)
				return NULL;
		}
		if ((r = read(fd, buf + n, *cap - n)) == 0) {
			*len = n;
			return buf;
		}
		if (r > 0)
			n += (size_t)r;
		else if (errno != EINTR) {
			sd_err("import: %s: %s", name, strerror(errno));
			break;
		}
	}
	tool_wipe_free(buf, *cap);
	return NULL;
}

/* parse_input - one input: PEM if it carries the PEM label or --pem.
 * Returns 0, -1 if it is malformed, -2 if it cannot be read. */
static int
parse_input(struct import *im, const char *name)
{
	int stdin_ = strcmp(name, "-") == 0;
	int fd = stdin_ ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
	unsigned char *buf;
	size_t len, cap;
	int rc;

	if (fd == -1) {
		sd_err("import: %s: %s", name, strerror(errno));
		return -2;
	}
	buf = read_input(fd, &len, &cap, stdin_ ? "standard input" : name);
	if (!stdin_)
		close(fd);
	if (buf == NULL)
		return -2;
	rc = sd_parse_sessions(&im->in, buf, len, im->fmt,
	    stdin_ ? "standard input" : name);
	tool_wipe_free(buf, cap);
	return rc;
}

/* refusal - why session s cannot be imported at time now, or NULL. */
static const char *
refusal(SSL_SESSION *s, int64_t now)
{
	unsigned int id_len;

	(void)SSL_SESSION_get_id(s, &id_len);
	if (id_len == 0)
		return "it has no session ID";
	if (id_len > SESSDB_ID_MAX)
		return "its session ID is too long";
	if (SSL_SESSION_get_master_key(s, NULL, 0) == 0)
		return "it has no master key";
	if (SSL_SESSION_get0_cipher(s) == NULL)
		return "it names no cipher";
	if (SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) <= now)
		return "it has expired";
	return NULL;
}

/* store_one - put one session into db under its ID, as it is (with the
 * server identity mark it carries, if any); 0 or an exit status.  A dry
 * run only encodes it. */
static int
store_one(struct sessdb *db, struct import *im, SSL_SESSION *s)
{
	unsigned char *der;
	size_t len;
	int rc;

	if (im->dry) {
		rc = sessdb_ssl_encode(s, &der, &len) == 0 ? SESSDB_OK :
		    SESSDB_SSL_UNENCODABLE;
		if (rc == SESSDB_OK)
			sessdb_ssl_der_free(der, len);
	} else {
		rc = sessdb_ssl_put(db, s, (int64_t)SSL_SESSION_get_time(s) +
		    SSL_SESSION_get_timeout(s));
	}
	if (rc == SESSDB_SSL_UNENCODABLE) {
		sd_err("import: cannot encode a session");
		return SD_EXIT_INPUT;
	}
	if (rc == SESSDB_FULL) {
		sd_err("import: the store is full; session declined");
		return SD_EXIT_DB;
	}
	if (rc == -1) {
		sd_err("import: %s", sessdb_error(db));
		return SD_EXIT_DB;
	}
	im->stored++;
	return 0;
}

/* store_opaque - put one opaque record block back under its identifier
 * with its expiry; 0 or an exit status.  An expired one is refused. */
static int
store_opaque(struct sessdb *db, struct import *im, const struct sd_insess *in,
    int64_t now)
{
	const unsigned char *b = in->opaque;
	size_t id_len = (size_t)b[8] << 8 | b[9];
	int64_t expires = 0;
	int rc;

	for (int i = 0; i < 8; i++)
		expires = (int64_t)((uint64_t)expires << 8 | b[i]);
	if (expires <= now) {
		sd_err("import: %s: record %u refused: it has expired", in->name,
		    in->index);
		im->refused++;
		return SD_EXIT_INPUT;
	}
	if (im->dry) {
		im->stored++;
		return 0;
	}
	rc = sessdb_put(db, SESSDB_NS_OPAQUE, b + 10, id_len, b + 10 + id_len,
	    in->opaque_len - 10 - id_len, expires);
	if (rc == SESSDB_FULL) {
		sd_err("import: the store is full; record declined");
		return SD_EXIT_DB;
	}
	if (rc == -1 && sessdb_errcode(db) == SESSDB_E_ARG) {
		sd_err("import: %s: record %u refused: %s", in->name, in->index,
		    sessdb_error(db));
		im->refused++;
		return SD_EXIT_INPUT;
	}
	if (rc == -1) {
		sd_err("import: %s", sessdb_error(db));
		return SD_EXIT_DB;
	}
	im->stored++;
	return 0;
}

/* import_all - check and store every parsed session; an exit status. */
static int
import_all(struct sessdb *db, struct import *im)
{
	int64_t now = sessdb_now(db);
	int rc = 0, r;

	for (size_t i = 0; i < im->in.n; i++) {
		const struct sd_insess *in = &im->in.v[i];
		const char *why;
		unsigned int id_len;
		const unsigned char *id;
		char *hex;

		if (in->s == NULL) {
			if ((r = store_opaque(db, im, in, now)) != 0) {
				rc = r;
				if (r == SD_EXIT_DB)
					break;
			}
			continue;
		}
		why = refusal(in->s, now);
		id = SSL_SESSION_get_id(in->s, &id_len);
		if (why != NULL) {
			hex = tool_hex(id, id_len);
			sd_err("import: %s: session %u (%s) refused: %s", in->name,
			    in->index, hex ? hex : "?", why);
			free(hex);
			im->refused++;
			rc = SD_EXIT_INPUT;
			continue;
		}
		if ((r = store_one(db, im, in->s)) != 0) {
			rc = r;
			if (r == SD_EXIT_DB)
				break;
		}
	}
	return rc;
}

static const struct option import_opts[] = {
	{ "der", no_argument, NULL, 'D' },
	{ "pem", no_argument, NULL, 'p' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_import - sessions from PEM/DER files or stdin into the store. */
int
sd_cmd_import(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("import");
	struct import im = { .fmt = 0 };
	char *stdin_only[] = { "-" };
	struct sessdb *db;
	int ch, rc = 0;

	while ((ch = sd_getopt(g, argc, argv, "", import_opts)) != -1) {
		switch (ch) {
		case 'D': im.fmt = 'd'; break;
		case 'p': im.fmt = 'p'; break;
		case 'n': im.dry = 1; break;
		default: return sd_bad_usage(me, NULL);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		argc = 1;
		argv = stdin_only;
	}
	for (int i = 0; i < argc && rc == 0; i++)
		if ((ch = parse_input(&im, argv[i])) != 0)
			rc = ch == -2 ? SD_EXIT_IO : SD_EXIT_INPUT;
	if (rc != 0) {
		sd_err("import: nothing imported");
		sd_sessions_free(&im.in);
		return rc;
	}
	if ((db = sd_open(g, im.dry ? SESSDB_RDONLY : 0, NULL)) == NULL) {
		sd_sessions_free(&im.in);
		return SD_EXIT_DB;
	}
	rc = import_all(db, &im);
	printf("import: %s %llu sessions, refused %llu\n",
	    im.dry ? "would store" : "stored", (unsigned long long)im.stored,
	    (unsigned long long)im.refused);
	sd_close(db);
	sd_sessions_free(&im.in);
	return rc;
}
