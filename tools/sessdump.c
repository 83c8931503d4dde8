/*
 * NAME
 *	sessdump - inspect, verify, migrate and sweep a sessdb session store
 *
 * SYNOPSIS
 *	sessdump [--db PATH] [--key FILE] [--lock-timeout MS] [--no-progress]
 *	    COMMAND [OPTIONS] [ARGS]
 *
 * DESCRIPTION
 *	This file parses the global options, finds the command in a table and
 *	runs it; it also holds the helpers every command shares: usage text,
 *	error messages, option parsing (sd_getopt: a command's options mixed
 *	with the global ones, which may follow the command name) and opening
 *	the store.  The commands themselves live
 *	in sessdump_read.c, sessdump_stats.c, sessdump_maint.c and
 *	sessdump_xfer.c.  See sessdump.1.
 *
 * DIAGNOSTICS
 *	Errors are one line on stderr, prefixed "sessdump: ".  Exit statuses
 *	are the enum sd_exit values in sessdump.h.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sessdump.h"

/* cmds - every command, in the order --help lists them. */
static const struct sd_cmd cmds[] = {
	{ "list", sd_cmd_list, "list [--live|--expired|--corrupt] [--server|--client] [--sort KEY] [--reverse] [--json]",
	  "  --live          only records that have not expired\n"
	  "  --server        only server sessions\n"
	  "  --client        only client sessions (a table with their servers)\n"
	  "  --expired       only expired records\n"
	  "  --corrupt       only records that fail to decode\n"
	  "  --sort KEY      created (default), expires, id, size, protocol, cipher\n"
	  "  --reverse       reverse the order\n"
	  "  --json          one JSON document instead of a table\n" },
	{ "show", sd_cmd_show, "show [--secrets] [--json] ID",
	  "  ID              session ID in hex (colons allowed)\n"
	  "  --secrets       also print the master key / resumption secret\n"
	  "  --json          one JSON object instead of text\n" },
	{ "stats", sd_cmd_stats, "stats [--json]",
	  "  --json          one JSON document instead of text\n" },
	{ "verify", sd_cmd_verify, "verify [--repair] [--quiet]",
	  "  --repair        remove the records that fail to decode\n"
	  "  --quiet         print only the summary line\n"
	  "  Exit status 0 if the file is clean (or was repaired), 1 if not.\n" },
	{ "export", sd_cmd_export,
	  "export [--der] [-o FILE [--force]] (--all | --live | ID...)",
	  "  ID...           sessions to export (hex)\n"
	  "  --all           every decodable session, expired ones included\n"
	  "  --live          every session that has not expired\n"
	  "  --der           DER instead of PEM \"SSL SESSION PARAMETERS\"\n"
	  "  -o, --output F  write to F, a new file created mode 0600, not to\n"
	  "                  stdout (refused when it is a file others can read)\n"
	  "  --force         with -o: reuse an existing regular file of ours\n" },
	{ "import", sd_cmd_import, "import [--der|--pem] [--dry-run] [FILE...]",
	  "  FILE...         PEM or DER session files; none or \"-\": stdin\n"
	  "  --der, --pem    force the input format (default: detect)\n"
	  "  --dry-run       check the input, store nothing\n" },
	{ "sweep", sd_cmd_sweep, "sweep [--dry-run] [--quiet] [--batch N] [--compact|--no-compact]",
	  "  --dry-run       report what would be removed, remove nothing\n"
	  "  --quiet         print only the summary line\n"
	  "  --batch N       records deleted per exclusive lock (default 256)\n"
	  "  --compact       always compact the file afterwards\n"
	  "  --no-compact    never compact\n"
	  "  --compact-free P  compact when at least P% of the file is free\n"
	  "                  and it is at least 1 MiB (default 50)\n" },
	{ "rekey", sd_cmd_rekey, "rekey [--batch N]",
	  "  seal every live record again under the newest key of --key FILE\n"
	  "  (plain records too), online, a batch at a time\n"
	  "  --batch N       records replaced per exclusive lock (default 256)\n" },
};

#define NCMDS (sizeof cmds / sizeof cmds[0])

/* sd_find_cmd - the command called name, or NULL. */
const struct sd_cmd *
sd_find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

/* main_usage - the top-level usage text. */
static void
main_usage(FILE *fp)
{
	fputs("usage: sessdump [--db PATH] [--key FILE] [--lock-timeout MS] "
	    "[--no-progress] COMMAND [OPTIONS] [ARGS]\n\n"
	    "The database is --db PATH, or $SESSDB_PATH: a file, or a Redis\n"
	    "store, redis://HOST[:PORT][/DB][?prefix=P] or unix:/SOCKET, its\n"
	    "password in $SESSDB_REDIS_PASSWORD or ?password_file=FILE.\n"
	    "--key FILE (or $SESSDB_KEY_FILE): the keys of a sealed store, 32\n"
	    "random bytes each, mode 0600; the last one seals.  The global\n"
	    "options may also follow the command.\n\ncommands:\n", fp);
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(fp, "  %s\n", cmds[i].synopsis);
	fputs("\n'sessdump COMMAND --help' describes a command's options.\n", fp);
}

/* sd_usage - the usage text of one command. */
void
sd_usage(FILE *fp, const struct sd_cmd *cmd)
{
	fprintf(fp, "usage: sessdump [--db PATH] [--key FILE] %s\n%s", cmd->synopsis,
	    cmd->help);
}

/* sd_err - print "sessdump: message" on stderr. */
void
sd_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("sessdump: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* sd_bad_usage - report a usage error (if fmt), print usage, return 2. */
int
sd_bad_usage(const struct sd_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fputs("sessdump: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	if (cmd != NULL)
		sd_usage(stderr, cmd);
	else
		main_usage(stderr);
	return SD_EXIT_USAGE;
}

/* precheck - explain a missing or odd database path before the store does. */
static int
precheck(const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1) {
		sd_err("%s: cannot open database: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		sd_err("%s: cannot open database: is a directory", path);
		return -1;
	}
	return 0;
}

/* strip_path - msg without a leading "path: " (the library's messages
 * name the file, and ours already does). */
static const char *
strip_path(const char *msg, const char *path)
{
	size_t n = strlen(path);

	if (strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
		return msg + n + 2;
	return msg;
}

/* sd_db_error - db's last error without the store's name in front (the
 * library's messages name it, and ours already do). */
const char *
sd_db_error(const struct sd_global *g, const struct sessdb *db)
{
	return strip_path(strip_path(sessdb_error(db), g->db_path), g->db_name);
}

/*
 * sd_open - open the store named by the global options with flags
 *	(SESSDB_RDONLY, SESSDB_NOCREATE); extra, if not NULL, supplies other
 *	options (sweep_batch).  Prints one line and returns NULL on failure.
 */
struct sessdb *
sd_open(const struct sd_global *g, unsigned flags,
    const struct sessdb_options *extra)
{
	struct sessdb_options o;
	struct sessdb *db;
	char err[512] = "";

	if (extra != NULL)
		o = *extra;
	else
		memset(&o, 0, sizeof o);
	o.flags |= flags;
	o.lock_timeout_ms = g->lock_timeout_ms;
	o.key_file = g->key_file;
	if ((o.flags & (SESSDB_RDONLY | SESSDB_NOCREATE)) && !g->remote &&
	    precheck(g->db_path))
		return NULL;
	db = sessdb_open(g->db_path, &o, err, sizeof err);
	if (db == NULL)
		sd_err("%s: cannot open database: %s", g->db_name,
		    err[0] ? strip_path(strip_path(err, g->db_path), g->db_name) :
		    "unknown error");
	return db;
}

/*
 * sd_close - close db, first saying so if the library had to recover a
 *	damaged file (it repairs it in place or moves it aside to
 *	"<db>.corrupt-<time>" and starts an empty one).
 */
void
sd_close(struct sessdb *db)
{
	struct sessdb_stats st;
	char name[512];

	if (db == NULL)
		return;
	sessdb_stats(db, &st);
	tool_store_display(sessdb_path(db), name, sizeof name);
	if (st.recoveries > 0)
		sd_err("warning: %s was damaged and has been recovered (look for "
		    "%s.corrupt-* if it was moved aside)", name, name);
	sessdb_close(db);
}

/* Global options' getopt values: above every command's own values. */
enum { OPT_DB = 0x1000, OPT_LOCK_TIMEOUT, OPT_NO_PROGRESS, OPT_KEY,
    OPT_VERSION, OPT_HELP };

/* global_opts - the options every command accepts; the first four may
 * also follow the command name (sd_getopt). */
static const struct option global_opts[] = {
	{ "db", required_argument, NULL, OPT_DB },
	{ "lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT },
	{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

#define NGLOBAL_AFTER 4		/* --db, --lock-timeout, --no-progress, --key */

/* global_opt - apply one global option; 0, or -1 after saying why. */
static int
global_opt(struct sd_global *g, int c, const char *arg)
{
	switch (c) {
	case 'd':
	case OPT_DB:
		g->db_path = arg;
		return 0;
	case OPT_LOCK_TIMEOUT:
		if (tool_parse_uint(arg, 1, 3600000, &g->lock_timeout_ms) == -1) {
			sd_err("--lock-timeout: want milliseconds "
			    "(1..3600000), got '%s'", arg);
			return -1;
		}
		return 0;
	case OPT_NO_PROGRESS:
		g->progress = 0;
		return 0;
	case OPT_KEY:
		g->key_file = arg;
		return 0;
	default:
		return -1;
	}
}

/* bad_option - say which option getopt refused (c '?' unknown, ':' with
 * its argument missing); arg is the word it stopped at. */
static void
bad_option(const char *cmd, int c, const char *arg)
{
	char shortopt[3] = { '-', (char)optopt, '\0' };
	const char *name;
	size_t len;

	/* getopt sets optopt to the character of a short option, to 0 for
	 * an unknown long one and to the value of a long one that lacks its
	 * argument: a long option is the word getopt stopped at. */
	if (c == '?' && optopt != 0 && strncmp(arg, "--", 2) == 0 &&
	    strchr(arg, '=') != NULL) {
		sd_err("%s: option '%.*s' takes no argument", cmd,
		    (int)strcspn(arg, "="), arg);
		return;
	}
	if (c == '?')
		name = optopt != 0 ? shortopt : arg;
	else
		name = strncmp(arg, "--", 2) == 0 ? arg : shortopt;
	len = strcspn(name, "=");

	if (c == ':')
		sd_err("%s: option '%.*s' needs an argument", cmd, (int)len,
		    name);
	else
		sd_err("%s: unknown option '%.*s'", cmd, (int)len, name);
}

/*
 * sd_getopt - getopt_long over a command's options (shortopts, longopts)
 *	and the global ones, so that "sessdump list --db X" works as
 *	"sessdump --db X list".  Global options are applied to g and not
 *	returned.  Arguments are permuted (options may follow operands).
 *	At the end it checks that a database was named (--db or
 *	$SESSDB_PATH).  Returns the command's option character, '?' after
 *	an error (already reported, except getopt's own which name the
 *	option), or -1 at the end.
 */
int
sd_getopt(struct sd_global *g, int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
	static struct option all[64];
	static char shorts[64];
	size_t n = 0;
	int c;

	while (longopts[n].name != NULL && n < 64 - NGLOBAL_AFTER - 1) {
		all[n] = longopts[n];
		n++;
	}
	memcpy(all + n, global_opts, NGLOBAL_AFTER * sizeof all[0]);
	memset(all + n + NGLOBAL_AFTER, 0, sizeof all[0]);
	if (*shortopts == '+')
		shortopts++;
	snprintf(shorts, sizeof shorts, ":d:%s", shortopts);

	opterr = 0;	/* our messages name the command and the option */
	while ((c = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
		if (c == '?' || c == ':') {
			bad_option(argv[0], c, argv[optind - 1]);
			return '?';
		}
		if (c != 'd' && c < OPT_DB)
			return c;
		if (global_opt(g, c, optarg) == -1)
			return '?';
	}
	if (g->db_path == NULL)
		g->db_path = getenv("SESSDB_PATH");
	if (g->key_file == NULL && (g->key_file = getenv("SESSDB_KEY_FILE")) != NULL &&
	    *g->key_file == '\0')
		g->key_file = NULL;
	if (g->db_path == NULL || *g->db_path == '\0') {
		sd_err("no database: give --db PATH (before or after the "
		    "command) or set SESSDB_PATH");
		return '?';
	}
	g->remote = tool_store_is_url(g->db_path);
	tool_store_display(g->db_path, g->db_name, sizeof g->db_name);
	return -1;
}

/* parse_global - the options before the command; returns -1 to continue,
 * or an exit status. */
static int
parse_global(struct sd_global *g, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "+d:h", global_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
		case OPT_HELP:
			main_usage(stdout);
			return SD_EXIT_OK;
		case OPT_VERSION:
#ifdef SESSDB_VERSION_STRING	/* sessdb.h with <sessdb_version.h> */
			printf("sessdump (sessdb) %s\n", SESSDB_VERSION_STRING);
#else
			printf("sessdump (sessdb) %d.%d\n", SESSDB_VERSION_MAJOR,
			    SESSDB_VERSION_MINOR);
#endif
			return SD_EXIT_OK;
		case 'd':
		case OPT_DB:
		case OPT_LOCK_TIMEOUT:
		case OPT_NO_PROGRESS:
		case OPT_KEY:
			if (global_opt(g, c, optarg) == 0)
				break;
			return sd_bad_usage(NULL, NULL);
		default:
			return sd_bad_usage(NULL, NULL);
		}
	}
	return -1;
}

/* wants_help - whether a command's arguments ask for --help (so that help
 * works without a database). */
static int
wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	}
	return 0;
}

/* main - global options, then the command; returns its exit status. */
int
main(int argc, char **argv)
{
	struct sd_global g = { .progress = isatty(STDERR_FILENO) };
	const struct sd_cmd *cmd;
	int rc;

	if (tool_wipe_openssl_frees() == -1)
		sd_err("warning: OpenSSL's freed memory will not be wiped");
	if ((rc = parse_global(&g, argc, argv)) != -1)
		return rc;
	if (optind >= argc)
		return sd_bad_usage(NULL, "no command given");
	if ((cmd = sd_find_cmd(argv[optind])) == NULL)
		return sd_bad_usage(NULL, "unknown command '%s'", argv[optind]);
	argc -= optind;
	argv += optind;
	if (wants_help(argc, argv)) {
		sd_usage(stdout, cmd);
		return SD_EXIT_OK;
	}
	optind = 0;	/* glibc: reinitialise getopt for the command */
	rc = cmd->run(&g, argc, argv);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		sd_err("write error on standard output: %s", strerror(errno));
		return rc ? rc : SD_EXIT_IO;
	}
	return rc;
}
