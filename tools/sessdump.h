/*
 * NAME
 *	sessdump.h - shared pieces of the sessdump operator tool
 *
 * DESCRIPTION
 *	sessdump.c parses the global options and dispatches to a command;
 *	sessdump_read.c holds list and show, sessdump_stats.c stats
 *	(the commands that only read), sessdump_maint.c verify and sweep, sessdump_xfer.c export
 *	and import, sessdump_parse.c import's input parser; sessdump_util.c decodes records into
 *	printable entries and writes JSON, times and progress.  Helpers
 *	shared with sessdemo and sessload (hex, numbers, clock, X509 names,
 *	wiping frees) are in tools/common/tooling.h; sessions are encoded
 *	and decoded by libsessdb's sessdb_ssl_* functions, as the glue does.
 */
#ifndef SESSDUMP_H
#define SESSDUMP_H

#include <stdint.h>
#include <getopt.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "sessdb.h"
#include "sessdb_ssl.h"
#include "tooling.h"

/* Exit statuses: documented in sessdump.1 and docs/OPERATIONS.md. */
enum sd_exit {
	SD_EXIT_OK = 0,		/* success; verify: the file is clean */
	SD_EXIT_DIRTY = 1,	/* verify: undecodable records remain */
	SD_EXIT_USAGE = 2,	/* bad command line */
	SD_EXIT_NOTFOUND = 3,	/* show/export: no such session */
	SD_EXIT_DB = 4,		/* database missing, locked, corrupt, unreadable,
				   or a store operation failed */
	SD_EXIT_INPUT = 5,	/* import: input refused (malformed, expired) */
	SD_EXIT_IO = 6,		/* an input or output file could not be used */
};

/* Global options: before the command name or among its options. */
struct sd_global {
	const char	*db_path;		/* a file, or a redis:// or unix: URL */
	char		db_name[512];		/* db_path as printed: no password */
	int		remote;			/* db_path is a URL (Redis) */
	unsigned	lock_timeout_ms;	/* 0 = library default */
	int		progress;		/* show progress on stderr */
	const char	*key_file;		/* --key or $SESSDB_KEY_FILE */
};

/* One command: its name, entry point and usage text. */
struct sd_cmd {
	const char	*name;
	int		(*run)(struct sd_global *g, int argc, char **argv);
	const char	*synopsis;	/* after "sessdump [--db PATH] " */
	const char	*help;		/* option lines for --help */
};

/* A decoded record, copied out of a sessdb_foreach callback. */
struct sd_entry {
	char		*idhex;		/* session ID, the raw key if corrupt,
					   "consumer/hexkey" if opaque */
	unsigned	ns;
	int64_t		created;	/* record header times */
	int64_t		expires;
	uint64_t	size;		/* key + header + payload bytes */
	char		proto[16];
	char		cipher[64];
	char		*sni;		/* NULL if none */
	char		*subject;	/* peer certificate subject, NULL if none */
	char		*peer;		/* client records: "host:port", else NULL */
	int		ticket;		/* client records: a single-use TLS 1.3 ticket */
	char		*problem;	/* NULL if the record decodes */
	int		sealed;		/* the record is sealed ... */
	unsigned	key_id;		/* ... under this key */
	unsigned	seal;		/* SESSDB_SEAL_*: opened, or why not */
};

/* sd_entry_unopened - a sealed record we hold no key for: its header
 * (times, ID) is sound, its payload unread.  Never "corrupt". */
#define sd_entry_unopened(e) ((e)->seal == SESSDB_SEAL_NOKEY)

/* sessdump.c */
void sd_usage(FILE *fp, const struct sd_cmd *cmd);
int sd_bad_usage(const struct sd_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sd_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int sd_getopt(struct sd_global *g, int argc, char **argv,
    const char *shortopts, const struct option *longopts);
struct sessdb *sd_open(const struct sd_global *g, unsigned flags,
    const struct sessdb_options *extra);
void sd_close(struct sessdb *db);
const char *sd_db_error(const struct sd_global *g, const struct sessdb *db);

/* sessdump_util.c */

int sd_decode(const struct sessdb_record *rec, SSL_SESSION **out,
    const char **problem);
int sd_entry_fill(struct sd_entry *e, const struct sessdb_record *rec);
void sd_entry_clear(struct sd_entry *e);
uint64_t sd_record_size(const struct sessdb_record *rec);
char *sd_opaque_name(const struct sessdb_record *rec);
int sd_parse_hex_id(const char *s, unsigned char *out, size_t *len);
const char *sd_proto_name(int version, char *buf, size_t len);
void sd_fmt_time(int64_t t, char *buf, size_t len);
void sd_fmt_left(int64_t secs, char *buf, size_t len);
void sd_print_safe(FILE *fp, const char *s);
void sd_json_str(FILE *fp, const char *s);
void sd_json_kstr(FILE *fp, const char *key, const char *val, int comma);
void sd_json_kint(FILE *fp, const char *key, int64_t val, int comma);

/* Progress on a terminal: a self-erasing line on stderr, rate limited. */
struct sd_progress {
	int		on;
	const char	*what;
	uint64_t	total;		/* 0 if unknown */
	uint64_t	done;
	int64_t		last_ms;
	int		drawn;		/* a line is on the screen */
};

void sd_progress_start(struct sd_progress *p, const struct sd_global *g,
    const char *what, uint64_t total);
void sd_progress_tick(struct sd_progress *p);
void sd_progress_clear(struct sd_progress *p);
void sd_progress_end(struct sd_progress *p);

/* sessdump_parse.c: the sessions of an import input, PEM or DER */
#define SD_PEM_LABEL	"-----BEGIN SSL SESSION PARAMETERS-----"
#define SD_OPAQUE_LABEL	"SESSDB OPAQUE RECORD"	/* PEM name; format 2.1 */

/* One parsed session, or opaque record, and where it came from. */
struct sd_insess {
	SSL_SESSION	*s;		/* NULL for an opaque record */
	unsigned char	*opaque;	/* the SD_OPAQUE_LABEL block's bytes */
	size_t		opaque_len;
	const char	*name;		/* input name */
	unsigned	index;		/* 1-based position in that input */
};

/* The sessions parsed so far (zero it before the first parse). */
struct sd_sessions {
	struct sd_insess *v;
	size_t		n, cap;
};

int sd_parse_sessions(struct sd_sessions *out, const unsigned char *buf,
    size_t len, int fmt, const char *name);
void sd_sessions_free(struct sd_sessions *out);

/* The commands. */
int sd_cmd_list(struct sd_global *g, int argc, char **argv);
int sd_cmd_show(struct sd_global *g, int argc, char **argv);
int sd_cmd_stats(struct sd_global *g, int argc, char **argv);
int sd_cmd_verify(struct sd_global *g, int argc, char **argv);
int sd_cmd_export(struct sd_global *g, int argc, char **argv);
int sd_cmd_import(struct sd_global *g, int argc, char **argv);
int sd_cmd_sweep(struct sd_global *g, int argc, char **argv);
int sd_cmd_rekey(struct sd_global *g, int argc, char **argv);

const struct sd_cmd *sd_find_cmd(const char *name);

#endif /* SESSDUMP_H */
