/*
 * NAME
 *	sessdump_stats.c - the stats command: counts, sizes, ages, breakdowns
 *
 * DESCRIPTION
 *	One read-only traversal (shared lock, never removes anything) that
 *	counts live, expired and corrupt records, sums the bytes they take,
 *	finds the oldest and newest, buckets the time left of live records
 *	and tallies protocols and ciphers.  The file size and the writers'
 *	counters come from sessdb_info().
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "sessdump.h"


/* A name and how often it was seen. */
struct tally {
	char		name[64];
	uint64_t	n;
};

struct tallies {
	struct tally	*v;
	size_t		n, cap;
};

/* tally_add - count name once more. */
static void
tally_add(struct tallies *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].name, name) == 0) {
			t->v[i].n++;
			return;
		}
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 8;
		struct tally *v = realloc(t->v, cap * sizeof *v);

		if (v == NULL)
			return;
		t->v = v;
		t->cap = cap;
	}
	snprintf(t->v[t->n].name, sizeof t->v[t->n].name, "%s", name);
	t->v[t->n++].n = 1;
}

/* TTL histogram buckets: time left of live records, upper bounds. */
static const struct {
	int64_t		below;
	const char	*label;
} ttl_buckets[] = {
	{ 60, "< 1m" },
	{ 300, "1m - 5m" },
	{ 900, "5m - 15m" },
	{ 3600, "15m - 1h" },
	{ 21600, "1h - 6h" },
	{ 86400, "6h - 24h" },
	{ INT64_MAX, ">= 24h" },
};

#define NBUCKETS (sizeof ttl_buckets / sizeof ttl_buckets[0])

/* What stats accumulates. */
struct stats {
	int64_t			now;
	uint64_t		total, live, expired, corrupt, bytes;
	int64_t			oldest, newest;
	char			*oldest_id, *newest_id;
	uint64_t		ttl[NBUCKETS];
	struct tallies		protos, ciphers;
	uint64_t		sealed, unopened;	/* unopened: no key */
	struct tallies		keys;		/* sealed records per key id */
	/* client sessions (namespace 'C'), counted apart as well */
	uint64_t		client, client_live, client_tickets;
	uint64_t		opaque;	/* other consumers' records ('O') */
	struct tallies		peers;		/* "host:port sni" of live ones */
	struct sd_progress	prog;
};

/* stats_times - track the oldest and newest record. */
static void
stats_times(struct stats *st, const struct sd_entry *e)
{
	if (st->oldest_id == NULL || e->created < st->oldest) {
		free(st->oldest_id);
		st->oldest_id = strdup(e->idhex);
		st->oldest = e->created;
	}
	if (st->newest_id == NULL || e->created > st->newest) {
		free(st->newest_id);
		st->newest_id = strdup(e->idhex);
		st->newest = e->created;
	}
}

/* stats_client - count a client session and its server. */
static void
stats_client(struct stats *st, const struct sd_entry *e)
{
	char name[64];

	st->client++;
	if (e->problem != NULL || e->expires <= st->now)
		return;
	st->client_live++;
	st->client_tickets += (uint64_t)e->ticket;
	snprintf(name, sizeof name, "%s%s%s", e->peer ? e->peer : "?",
	    e->sni ? " " : "", e->sni ? e->sni : "");
	tally_add(&st->peers, name);
}

/* stats_one - foreach callback: count one record. */
static int
stats_one(void *arg, const struct sessdb_record *rec)
{
	struct stats *st = arg;
	struct sd_entry e;

	sd_progress_tick(&st->prog);
	if (sd_entry_fill(&e, rec) == -1) {
		sd_entry_clear(&e);
		return -2;
	}
	st->total++;
	st->bytes += e.size;
	if (e.sealed) {
		char kid[8];

		snprintf(kid, sizeof kid, "%04x", e.key_id);
		st->sealed++;
		tally_add(&st->keys, kid);
	}
	if (sd_entry_unopened(&e))
		st->unopened++;		/* live or expired by its header */
	if (e.problem != NULL && !sd_entry_unopened(&e)) {
		st->corrupt++;
	} else if (e.expires <= st->now) {
		st->expired++;
	} else {
		size_t b = 0;

		st->live++;
		while (e.expires - st->now >= ttl_buckets[b].below)
			b++;
		st->ttl[b]++;
	}
	if (e.ns == SESSDB_NS_CLIENT)
		stats_client(st, &e);
	st->opaque += e.ns == SESSDB_NS_OPAQUE && e.problem == NULL;
	if (e.problem == NULL) {
		stats_times(st, &e);
		tally_add(&st->protos, e.proto);
		tally_add(&st->ciphers, e.cipher);
	}
	sd_entry_clear(&e);
	return 0;
}

/* stats_text_tally - one breakdown section. */
static void
stats_text_tally(const char *title, const struct tallies *t)
{
	printf("%s\n", title);
	if (t->n == 0)
		printf("  (none)\n");
	for (size_t i = 0; i < t->n; i++)
		printf("  %-40s %llu\n", t->v[i].name, (unsigned long long)t->v[i].n);
}

/* stats_text - the readable report. */
static void
stats_text(const struct stats *st, const struct sessdb_info *info,
    const struct sd_global *g)
{
	char t[32];

	printf("database:     %s\n", g->db_name);
	if (g->remote) {
		/* No file: Redis keeps the records, and expires them. */
		printf("backend:      redis\n");
		printf("bytes used:   %llu bytes (the records under the "
		    "prefix)\n", (unsigned long long)st->bytes);
		/* what Redis reports is for the whole database, every
		 * prefix and other users' keys included */
		printf("redis:        %llu keys in the database, %llu bytes "
		    "of memory used\n", (unsigned long long)info->entries,
		    (unsigned long long)info->file_size);
	} else {
		printf("file size:    %llu bytes\n",
		    (unsigned long long)info->file_size);
		printf("bytes used:   %llu bytes (%llu%% of the file)\n",
		    (unsigned long long)st->bytes,
		    (unsigned long long)(info->file_size ?
		    st->bytes * 100 / info->file_size : 0));
	}
	printf("records:      %llu (live %llu, expired %llu, corrupt %llu)\n",
	    (unsigned long long)st->total, (unsigned long long)st->live,
	    (unsigned long long)st->expired, (unsigned long long)st->corrupt);
	printf("namespaces:   server %llu, client %llu (live %llu, of which "
	    "%llu single-use tickets, for %zu servers), opaque %llu\n",
	    (unsigned long long)(st->total - st->client - st->opaque),
	    (unsigned long long)st->client,
	    (unsigned long long)st->client_live,
	    (unsigned long long)st->client_tickets, st->peers.n,
	    (unsigned long long)st->opaque);
	if (st->oldest_id != NULL) {
		sd_fmt_time(st->oldest, t, sizeof t);
		printf("oldest:       %s  %s\n", t, st->oldest_id);
		sd_fmt_time(st->newest, t, sizeof t);
		printf("newest:       %s  %s\n", t, st->newest_id);
	}
	printf("time left of live records:\n");
	for (size_t b = 0; b < NBUCKETS; b++)
		printf("  %-10s %llu\n", ttl_buckets[b].label,
		    (unsigned long long)st->ttl[b]);
	stats_text_tally("protocols:", &st->protos);
	stats_text_tally("ciphers:", &st->ciphers);
	printf("sealed:       %llu (%llu not opened: no key for them)\n",
	    (unsigned long long)st->sealed, (unsigned long long)st->unopened);
	stats_text_tally("sealed records by key id:", &st->keys);
	if (st->client > 0)
		stats_text_tally("client sessions by server (live):",
		    &st->peers);
}

/* stats_json_tally - a breakdown as a JSON object of counts. */
static void
stats_json_tally(const char *key, const struct tallies *t)
{
	printf(",\n \"%s\": {", key);
	for (size_t i = 0; i < t->n; i++) {
		fputs(i ? ", " : "", stdout);
		sd_json_str(stdout, t->v[i].name);
		printf(": %llu", (unsigned long long)t->v[i].n);
	}
	fputs("}", stdout);
}

/* stats_json_end - oldest or newest as a JSON object or null. */
static void
stats_json_end(const char *key, const char *id, int64_t created)
{
	char t[32];

	printf(",\n \"%s\": ", key);
	if (id == NULL) {
		fputs("null", stdout);
		return;
	}
	sd_fmt_time(created, t, sizeof t);
	fputs("{", stdout);
	sd_json_kstr(stdout, "id", id, 0);
	sd_json_kint(stdout, "created", created, 1);
	sd_json_kstr(stdout, "created_utc", t, 1);
	fputs("}", stdout);
}

/* stats_json - the document for stats --json. */
static void
stats_json(const struct stats *st, const struct sessdb_info *info,
    const struct sd_global *g)
{
	fputs("{", stdout);
	sd_json_kstr(stdout, "database", g->db_name, 0);
	sd_json_kstr(stdout, "backend", g->remote ? "redis" : "gdbm", 1);
	sd_json_kint(stdout, "now", st->now, 1);
	sd_json_kint(stdout, "file_size", (int64_t)info->file_size, 1);
	sd_json_kint(stdout, "bytes_used", (int64_t)st->bytes, 1);
	sd_json_kint(stdout, "generation", (int64_t)info->generation, 1);
	sd_json_kint(stdout, "entries_counter", (int64_t)info->entries, 1);
	sd_json_kint(stdout, "bytes_counter", (int64_t)info->bytes, 1);
	printf(",\n \"records\": {\"total\": %llu, \"live\": %llu, "
	    "\"expired\": %llu, \"corrupt\": %llu}",
	    (unsigned long long)st->total, (unsigned long long)st->live,
	    (unsigned long long)st->expired, (unsigned long long)st->corrupt);
	stats_json_end("oldest", st->oldest_id, st->oldest);
	stats_json_end("newest", st->newest_id, st->newest);
	fputs(",\n \"ttl_histogram\": [", stdout);
	for (size_t b = 0; b < NBUCKETS; b++) {
		fputs(b ? ", " : "", stdout);
		fputs("{", stdout);
		sd_json_kstr(stdout, "label", ttl_buckets[b].label, 0);
		if (ttl_buckets[b].below != INT64_MAX)
			sd_json_kint(stdout, "below_seconds", ttl_buckets[b].below, 1);
		else
			fputs(", \"below_seconds\": null", stdout);
		sd_json_kint(stdout, "count", (int64_t)st->ttl[b], 1);
		fputs("}", stdout);
	}
	fputs("]", stdout);
	stats_json_tally("protocols", &st->protos);
	stats_json_tally("ciphers", &st->ciphers);
	printf(",\n \"sealed\": {\"total\": %llu, \"unopened\": %llu}",
	    (unsigned long long)st->sealed, (unsigned long long)st->unopened);
	stats_json_tally("sealed_by_key_id", &st->keys);
	printf(",\n \"namespaces\": {\"server\": %llu, \"client\": %llu, "
	    "\"client_live\": %llu, \"client_tickets\": %llu, \"opaque\": %llu}",
	    (unsigned long long)(st->total - st->client - st->opaque),
	    (unsigned long long)st->client,
	    (unsigned long long)st->client_live,
	    (unsigned long long)st->client_tickets,
	    (unsigned long long)st->opaque);
	stats_json_tally("client_servers", &st->peers);
	fputs("\n}\n", stdout);
}

/* stats_free - release what stats collected. */
static void
stats_free(struct stats *st)
{
	free(st->oldest_id);
	free(st->newest_id);
	free(st->protos.v);
	free(st->ciphers.v);
	free(st->keys.v);
	free(st->peers.v);
}

static const struct option stats_opts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_stats - counts, sizes, ages and breakdowns of the store. */
int
sd_cmd_stats(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("stats");
	struct sessdb_info info = { 0 };
	struct stats st;
	struct sessdb *db;
	int json = 0, ch, rc = SD_EXIT_OK;

	while ((ch = sd_getopt(g, argc, argv, "", stats_opts)) != -1) {
		if (ch != 'j')
			return sd_bad_usage(me, NULL);
		json = 1;
	}
	if (optind != argc)
		return sd_bad_usage(me, "stats: unexpected argument '%s'", argv[optind]);
	if ((db = sd_open(g, SESSDB_RDONLY, NULL)) == NULL)
		return SD_EXIT_DB;
	memset(&st, 0, sizeof st);
	st.now = sessdb_now(db);
	if (sessdb_info(db, &info) == -1) {
		sd_err("%s: %s", g->db_name, sd_db_error(g, db));
		rc = SD_EXIT_DB;
		goto out;
	}
	sd_progress_start(&st.prog, g, "stats", info.entries);
	ch = sessdb_foreach(db, 0, stats_one, &st);
	sd_progress_end(&st.prog);
	if (ch != 0) {
		sd_err("%s: %s", g->db_name, ch == -2 ? "out of memory" :
		    sd_db_error(g, db));
		rc = SD_EXIT_DB;
	} else if (json) {
		stats_json(&st, &info, g);
	} else {
		stats_text(&st, &info, g);
	}
out:
	stats_free(&st);
	sd_close(db);
	return rc;
}
