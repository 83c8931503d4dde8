/*
 * NAME
 *	sessdump_maint.c - the maintenance commands: verify, sweep and rekey
 *
 * DESCRIPTION
 *	verify decodes every record (header, DER, ID against key) and, with
 *	--repair, deletes the bad ones afterwards (never during the
 *	traversal), then checks again: the exit status tells whether the
 *	file is clean.
 *
 *	sweep removes expired records through sessdb_sweep, which works in
 *	batches of --batch keys under one exclusive lock each, so servers
 *	wait at most one batch.  Afterwards, if much of the file is free, it
 *	compacts it with sessdb_compact (other processes notice and reopen).
 *
 *	A sealed record we hold no key for is counted, never "bad": verify
 *	cannot check it and --repair never removes it.  One that fails
 *	authentication is reported bad but left for its key's holders.
 *
 *	rekey seals every live record again under the newest key of --key
 *	(sessdb_rekey), in batches, while servers run.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "sessdump.h"

/* A key to delete after the traversal. */
struct badkey {
	unsigned	ns;
	unsigned char	id[SESSDB_ID_MAX];
	size_t		id_len;
};

struct verify {
	int			quiet;
	uint64_t		total, bad, unopened;
	struct badkey		*del;		/* DER-level bad records */
	size_t			ndel, cap;
	struct sd_progress	prog;
};

/* remember - queue a decodable-header record for deletion. */
static int
remember(struct verify *v, const struct sessdb_record *rec)
{
	if (v->ndel == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 16;
		struct badkey *d = realloc(v->del, cap * sizeof *d);

		if (d == NULL)
			return -1;
		v->del = d;
		v->cap = cap;
	}
	v->del[v->ndel].ns = rec->ns;
	memcpy(v->del[v->ndel].id, rec->id, rec->id_len);
	v->del[v->ndel++].id_len = rec->id_len;
	return 0;
}

/* verify_one - foreach callback: decode one record, report it if bad. */
static int
verify_one(void *arg, const struct sessdb_record *rec)
{
	struct verify *v = arg;
	const char *problem;
	char *hex;

	sd_progress_tick(&v->prog);
	v->total++;
	if (rec->seal == SESSDB_SEAL_NOKEY) {
		v->unopened++;		/* not ours to judge */
		return 0;
	}
	if (sd_decode(rec, NULL, &problem) == 0)
		return 0;
	v->bad++;
	/* A bad header is removed by the traversal itself (--repair's
	   SESSDB_ITER_REMOVE_BAD); a bad payload is queued for it here. */
	if (rec->problem == NULL && remember(v, rec) == -1)
		return -2;
	if (!v->quiet && (hex = tool_hex(rec->key, rec->key_len)) != NULL) {
		sd_progress_clear(&v->prog);
		printf("bad record %s: %s\n", hex, problem);
		free(hex);
	}
	return 0;
}

/* verify_pass - one traversal; returns 0 or an exit status. */
static int
verify_pass(struct sessdb *db, const struct sd_global *g, struct verify *v,
    unsigned flags)
{
	struct sessdb_info info = { 0 };
	int rc;

	(void)sessdb_info(db, &info);
	sd_progress_start(&v->prog, g, "verify", info.entries);
	rc = sessdb_foreach(db, flags, verify_one, v);
	sd_progress_end(&v->prog);
	if (rc == 0)
		return 0;
	sd_err("%s: %s", g->db_name, rc == -2 ? "out of memory" : sd_db_error(g, db));
	return SD_EXIT_DB;
}

/* repair - delete the queued records; returns how many failed. */
static uint64_t
repair(struct sessdb *db, const struct verify *v)
{
	uint64_t failed = 0;

	for (size_t i = 0; i < v->ndel; i++) {
		const struct badkey *k = &v->del[i];

		if (sessdb_delete(db, k->ns, k->id, k->id_len) == -1) {
			sd_err("verify: cannot remove a bad record: %s",
			    sessdb_error(db));
			failed++;
		}
	}
	return failed;
}

/* verify_repair - remove bad records, then count what is still bad. */
static int
verify_repair(struct sessdb *db, const struct sd_global *g, struct verify *v)
{
	struct verify again = { .quiet = 1 };
	int rc;

	(void)repair(db, v);
	if ((rc = verify_pass(db, g, &again, 0)) != 0)
		return rc;
	printf("verify: %llu records, %llu bad, %llu removed\n",
	    (unsigned long long)v->total, (unsigned long long)v->bad,
	    (unsigned long long)(v->bad - again.bad));
	if (v->unopened)
		printf("verify: %llu sealed records not checked (no key for "
		    "them; kept)\n", (unsigned long long)v->unopened);
	free(again.del);
	if (again.bad != 0) {
		sd_err("verify: %llu bad records remain",
		    (unsigned long long)again.bad);
		return SD_EXIT_DIRTY;
	}
	return SD_EXIT_OK;
}

static const struct option verify_opts[] = {
	{ "repair", no_argument, NULL, 'r' },
	{ "quiet", no_argument, NULL, 'q' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_verify - decode every record; --repair removes the bad ones. */
int
sd_cmd_verify(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("verify");
	struct verify v = { .quiet = 0 };
	struct sessdb *db;
	int fix = 0, ch, rc;

	while ((ch = sd_getopt(g, argc, argv, "q", verify_opts)) != -1) {
		switch (ch) {
		case 'r': fix = 1; break;
		case 'q': v.quiet = 1; break;
		default: return sd_bad_usage(me, NULL);
		}
	}
	if (optind != argc)
		return sd_bad_usage(me, "verify: unexpected argument '%s'",
		    argv[optind]);
	db = sd_open(g, fix ? SESSDB_NOCREATE : SESSDB_RDONLY, NULL);
	if (db == NULL)
		return SD_EXIT_DB;
	rc = verify_pass(db, g, &v, fix ? SESSDB_ITER_REMOVE_BAD : 0);
	if (rc == 0 && fix) {
		rc = verify_repair(db, g, &v);
	} else if (rc == 0) {
		printf("verify: %llu records, %llu bad\n",
		    (unsigned long long)v.total, (unsigned long long)v.bad);
		if (v.unopened)
			printf("verify: %llu sealed records not checked (no key "
			    "for them)\n", (unsigned long long)v.unopened);
		rc = v.bad ? SD_EXIT_DIRTY : SD_EXIT_OK;
	}
	free(v.del);
	sd_close(db);
	return rc;
}

/* ---- sweep ---- */

#define COMPACT_MIN_SIZE (1u << 20)	/* never compact smaller files */

struct sweep {
	int			quiet, dry;
	int			compact;	/* -1 never, 0 if worth it, 1 always */
	unsigned		min_free_pct;
	struct sd_progress	prog;
};

/* sweep_removed - on_removed callback: say what went. */
static int
sweep_removed(void *arg, const struct sessdb_record *rec)
{
	struct sweep *sw = arg;
	const char *verb = sw->dry ? "would remove" : "removed";
	char t[32], *hex;

	sd_progress_tick(&sw->prog);
	if (sw->quiet)
		return 0;
	sd_progress_clear(&sw->prog);
	if (rec->problem != NULL) {
		if ((hex = tool_hex(rec->key, rec->key_len)) != NULL)
			printf("%s %s corrupt: %s\n", verb, hex, rec->problem);
	} else if ((hex = tool_hex(rec->id, rec->id_len)) != NULL) {
		sd_fmt_time(rec->meta.expires, t, sizeof t);
		printf("%s %s expired %s\n", verb, hex, t);
	}
	free(hex);
	return 0;
}

/* add_size - foreach callback: sum the bytes records take. */
static int
add_size(void *arg, const struct sessdb_record *rec)
{
	*(uint64_t *)arg += sd_record_size(rec);
	return 0;
}

/* fmt_size - bytes as "26.6 MB" or "20.5 kB", for messages. */
static const char *
fmt_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes >= 1000000)
		snprintf(buf, len, "%.1f MB", (double)bytes / 1e6);
	else
		snprintf(buf, len, "%.1f kB", (double)bytes / 1e3);
	return buf;
}

/*
 * maybe_compact - compact when asked or when enough of the file is free.
 *	Compaction is one library call that can take seconds on a large
 *	file: on a terminal, stderr says so before and after; stdout gets
 *	one summary line either way.
 */
static int
maybe_compact(struct sessdb *db, const struct sd_global *g, struct sweep *sw)
{
	struct sessdb_info before, after;
	double t0;
	uint64_t used = 0;
	char size[32];
	double secs;

	if (sw->compact < 0 || sessdb_info(db, &before) == -1)
		return 0;
	if (sw->compact == 0) {
		if (before.file_size < COMPACT_MIN_SIZE ||
		    sessdb_foreach(db, 0, add_size, &used) != 0 ||
		    used >= before.file_size ||
		    (before.file_size - used) * 100 / before.file_size <
		    sw->min_free_pct)
			return 0;
	}
	if (g->progress)
		fprintf(stderr, "sweep: compacting %s (%s) ...", g->db_name,
		    fmt_size(before.file_size, size, sizeof size));
	t0 = tool_now_s();
	if (sessdb_compact(db) == -1 || sessdb_info(db, &after) == -1) {
		if (g->progress)
			fputs(" failed\n", stderr);
		sd_err("%s: compact: %s", g->db_name, sd_db_error(g, db));
		return SD_EXIT_DB;
	}
	secs = tool_now_s() - t0;
	if (g->progress)
		fprintf(stderr, " compacted to %s in %.2f s\n",
		    fmt_size(after.file_size, size, sizeof size), secs);
	printf("compacted: %llu -> %llu bytes in %.2f s\n",
	    (unsigned long long)before.file_size,
	    (unsigned long long)after.file_size, secs);
	return 0;
}

enum { O_DRY = 256, O_BATCH, O_COMPACT, O_NO_COMPACT, O_COMPACT_FREE };

static const struct option sweep_opts[] = {
	{ "dry-run", no_argument, NULL, O_DRY },
	{ "quiet", no_argument, NULL, 'q' },
	{ "batch", required_argument, NULL, O_BATCH },
	{ "compact", no_argument, NULL, O_COMPACT },
	{ "no-compact", no_argument, NULL, O_NO_COMPACT },
	{ "compact-free", required_argument, NULL, O_COMPACT_FREE },
	{ NULL, 0, NULL, 0 },
};

/* sweep_args - parse sweep's options into sw and o. */
static int
sweep_args(struct sd_global *g, struct sweep *sw, struct sessdb_options *o,
    int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("sweep");
	int ch;

	while ((ch = sd_getopt(g, argc, argv, "q", sweep_opts)) != -1) {
		switch (ch) {
		case O_DRY: sw->dry = 1; break;
		case 'q': sw->quiet = 1; break;
		case O_COMPACT: sw->compact = 1; break;
		case O_NO_COMPACT: sw->compact = -1; break;
		case O_BATCH:
			if (tool_parse_uint(optarg, 1, 1000000, &o->sweep_batch) == -1)
				return sd_bad_usage(me, "sweep: --batch wants "
				    "1..1000000, got '%s'", optarg);
			break;
		case O_COMPACT_FREE:
			if (tool_parse_uint(optarg, 1, 100, &sw->min_free_pct) == -1)
				return sd_bad_usage(me, "sweep: --compact-free "
				    "wants a percentage, got '%s'", optarg);
			break;
		default:
			return sd_bad_usage(me, NULL);
		}
	}
	if (optind != argc)
		return sd_bad_usage(me, "sweep: unexpected argument '%s'",
		    argv[optind]);
	return -1;
}

/* sd_cmd_sweep - remove expired records in batches, then maybe compact
 * (a file; on Redis both are no-ops and say so). */
int
sd_cmd_sweep(struct sd_global *g, int argc, char **argv)
{
	struct sweep sw = { .min_free_pct = 50 };
	struct sessdb_sweep_result res = { 0 };
	struct sessdb_options o;
	struct sessdb *db;
	int rc;

	memset(&o, 0, sizeof o);
	if ((rc = sweep_args(g, &sw, &o, argc, argv)) != -1)
		return rc;
	db = sd_open(g, sw.dry ? SESSDB_RDONLY : SESSDB_NOCREATE, &o);
	if (db == NULL)
		return SD_EXIT_DB;
	sd_progress_start(&sw.prog, g, sw.dry ? "sweep, would remove" :
	    "sweep, removed", 0);
	rc = sessdb_sweep(db, sw.dry ? SESSDB_SWEEP_DRY_RUN : 0, sweep_removed,
	    &sw, &res);
	sd_progress_end(&sw.prog);
	if (rc == -1) {
		sd_err("%s: sweep: %s", g->db_name, sd_db_error(g, db));
		sd_close(db);
		return SD_EXIT_DB;
	}
	printf("sweep: examined %llu, %s %llu expired and %llu corrupt, "
	    "kept %llu, %llu batches\n", (unsigned long long)res.examined,
	    sw.dry ? "would remove" : "removed",
	    (unsigned long long)res.expired, (unsigned long long)res.corrupt,
	    (unsigned long long)res.live, (unsigned long long)res.batches);
	if (g->remote) {
		/* Redis drops a record at the expiry its SET carried, and
		 * gives its memory back itself: neither step has work. */
		printf("sweep: Redis expires records itself; only records that "
		    "fail to decode are removed\n");
		if (sw.compact > 0)
			printf("compact: a no-op on Redis (it frees memory "
			    "itself)\n");
		sd_close(db);
		return 0;
	}
	rc = sw.dry ? 0 : maybe_compact(db, g, &sw);
	sd_close(db);
	return rc;
}

/* ---- rekey ---- */

static const struct option rekey_opts[] = {
	{ "batch", required_argument, NULL, 'b' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_rekey - seal every live record again under the newest key. */
int
sd_cmd_rekey(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("rekey");
	struct sessdb_rekey_result res;
	struct sessdb_options o;
	struct sessdb *db;
	int ch, rc;

	memset(&o, 0, sizeof o);
	while ((ch = sd_getopt(g, argc, argv, "", rekey_opts)) != -1) {
		switch (ch) {
		case 'b':
			if (tool_parse_uint(optarg, 1, 1000000, &o.sweep_batch) == -1)
				return sd_bad_usage(me, "rekey: --batch wants "
				    "1..1000000, got '%s'", optarg);
			break;
		default:
			return sd_bad_usage(me, NULL);
		}
	}
	if (optind != argc)
		return sd_bad_usage(me, "rekey: unexpected argument '%s'",
		    argv[optind]);
	if (g->key_file == NULL)
		return sd_bad_usage(me, "rekey: give the key file with --key FILE "
		    "(its last key seals)");
	if ((db = sd_open(g, SESSDB_NOCREATE, &o)) == NULL)
		return SD_EXIT_DB;
	rc = sessdb_rekey(db, &res);
	if (rc == -1) {
		sd_err("%s: rekey: %s", g->db_name, sd_db_error(g, db));
		sd_close(db);
		return SD_EXIT_DB;
	}
	printf("rekey: examined %llu, resealed %llu, already current %llu, "
	    "not opened %llu, skipped %llu, %llu batches\n",
	    (unsigned long long)res.examined, (unsigned long long)res.resealed,
	    (unsigned long long)res.current, (unsigned long long)res.unopened,
	    (unsigned long long)res.skipped, (unsigned long long)res.batches);
	if (res.unopened)
		sd_err("warning: %llu sealed records could not be opened with "
		    "these keys (another key, or tampered): left as they are",
		    (unsigned long long)res.unopened);
	sd_close(db);
	return SD_EXIT_OK;
}
