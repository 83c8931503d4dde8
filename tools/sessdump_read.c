/*
 * NAME
 *	sessdump_read.c - the read-only commands list and show
 *
 * DESCRIPTION
 *	Each opens the store with SESSDB_RDONLY, so it takes only the shared
 *	lock, never removes a record (not even an expired or corrupt one)
 *	and is safe to run while servers use the file.  Records are copied
 *	out of the foreach callback into struct sd_entry before sorting.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "sessdump.h"

/* Which records list shows. */
enum filter { F_ALL, F_LIVE, F_EXPIRED, F_CORRUPT };

/* keep - whether e passes the filter at time now. */
static int
keep(const struct sd_entry *e, enum filter f, int64_t now)
{
	switch (f) {
	case F_LIVE:	return (e->problem == NULL || sd_entry_unopened(e)) &&
			    e->expires > now;
	case F_EXPIRED:	return (e->problem == NULL || sd_entry_unopened(e)) &&
			    e->expires <= now;
	case F_CORRUPT:	return e->problem != NULL && !sd_entry_unopened(e);
	case F_ALL:
	default:	return 1;
	}
}

/* Which kind of record list shows: server sessions, client sessions. */
enum kind { K_BOTH, K_SERVER, K_CLIENT };

/* is_client - whether e is a client session (namespace 'C'). */
static int
is_client(const struct sd_entry *e)
{
	return e->ns == SESSDB_NS_CLIENT;
}

/* The entries list collects. */
struct collect {
	struct sd_entry		*v;
	size_t			n, cap;
	enum filter		filter;
	enum kind		kind;
	int64_t			now;
	struct sd_progress	prog;
};

/* collect_one - foreach callback: decode, filter and append one record. */
static int
collect_one(void *arg, const struct sessdb_record *rec)
{
	struct collect *c = arg;
	struct sd_entry e;

	sd_progress_tick(&c->prog);
	if (sd_entry_fill(&e, rec) == -1)
		goto oom;
	if (!keep(&e, c->filter, c->now) ||
	    (c->kind == K_SERVER && is_client(&e)) ||
	    (c->kind == K_CLIENT && !is_client(&e))) {
		sd_entry_clear(&e);
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct sd_entry *v = realloc(c->v, cap * sizeof *v);

		if (v == NULL)
			goto oom;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = e;
	return 0;
oom:
	sd_entry_clear(&e);
	return -2;
}

/* collect_free - release every entry. */
static void
collect_free(struct collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		sd_entry_clear(&c->v[i]);
	free(c->v);
}

/* collect_all - traverse db into c; returns 0 or an exit status. */
static int
collect_all(struct sessdb *db, const struct sd_global *g, struct collect *c)
{
	struct sessdb_info info = { 0 };
	int rc;

	c->now = sessdb_now(db);
	(void)sessdb_info(db, &info);
	sd_progress_start(&c->prog, g, "reading", info.entries);
	rc = sessdb_foreach(db, 0, collect_one, c);
	sd_progress_end(&c->prog);
	if (rc == -2) {
		sd_err("out of memory");
		return SD_EXIT_DB;
	}
	if (rc != 0) {
		sd_err("%s: %s", g->db_name, sd_db_error(g, db));
		return SD_EXIT_DB;
	}
	return 0;
}

/* cmp_id - qsort order by ID (the tie breaker of the other orders too). */
static int
cmp_id(const void *a, const void *b)
{
	return strcmp(((const struct sd_entry *)a)->idhex,
	    ((const struct sd_entry *)b)->idhex);
}

/* cmp_i64 - order by a number, then by ID. */
static int
cmp_i64(int64_t x, int64_t y, const void *a, const void *b)
{
	return x < y ? -1 : x > y ? 1 : cmp_id(a, b);
}

/* cmp_created, cmp_expires, cmp_size, cmp_proto, cmp_cipher - the
 * orders of list --sort. */
static int
cmp_created(const void *a, const void *b)
{
	return cmp_i64(((const struct sd_entry *)a)->created,
	    ((const struct sd_entry *)b)->created, a, b);
}

static int
cmp_expires(const void *a, const void *b)
{
	return cmp_i64(((const struct sd_entry *)a)->expires,
	    ((const struct sd_entry *)b)->expires, a, b);
}

static int
cmp_size(const void *a, const void *b)
{
	return cmp_i64((int64_t)((const struct sd_entry *)a)->size,
	    (int64_t)((const struct sd_entry *)b)->size, a, b);
}

static int
cmp_proto(const void *a, const void *b)
{
	int r = strcmp(((const struct sd_entry *)a)->proto,
	    ((const struct sd_entry *)b)->proto);

	return r ? r : cmp_created(a, b);
}

static int
cmp_cipher(const void *a, const void *b)
{
	int r = strcmp(((const struct sd_entry *)a)->cipher,
	    ((const struct sd_entry *)b)->cipher);

	return r ? r : cmp_created(a, b);
}

/* sort_keys - the names list --sort accepts. */
static const struct {
	const char	*name;
	int		(*cmp)(const void *, const void *);
} sort_keys[] = {
	{ "created", cmp_created },
	{ "expires", cmp_expires },
	{ "id", cmp_id },
	{ "size", cmp_size },
	{ "protocol", cmp_proto },
	{ "cipher", cmp_cipher },
};

/* find_sort - the comparator called name, or NULL. */
static int
(*find_sort(const char *name))(const void *, const void *)
{
	for (size_t i = 0; i < sizeof sort_keys / sizeof sort_keys[0]; i++)
		if (strcmp(sort_keys[i].name, name) == 0)
			return sort_keys[i].cmp;
	return NULL;
}

/* reverse - reverse an array of entries in place. */
static void
reverse(struct sd_entry *v, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		struct sd_entry t = v[i];

		v[i] = v[n - 1 - i];
		v[n - 1 - i] = t;
	}
}

/* list_text_row - one table row. */
static void
list_text_row(const struct sd_entry *e, int64_t now)
{
	char created[32], expires[32], left[32], seal[8] = "-";

	if (e->problem != NULL && !sd_entry_unopened(e)) {
		printf("%-64s  CORRUPT: %s (%llu bytes)\n", e->idhex, e->problem,
		    (unsigned long long)e->size);
		return;
	}
	sd_fmt_time(e->created, created, sizeof created);
	sd_fmt_time(e->expires, expires, sizeof expires);
	sd_fmt_left(e->expires - now, left, sizeof left);
	if (e->sealed)
		snprintf(seal, sizeof seal, "%04x", e->key_id);
	if (sd_entry_unopened(e)) {	/* no key: nothing but the header */
		printf("%-64s  %-7s  %-29s  %s  %s  %-8s  %5llu  %-4s  (%s)\n",
		    e->idhex, "SEALED", "-", created, expires, left,
		    (unsigned long long)e->size, seal, e->problem);
		return;
	}
	printf("%-64s  %-7s  %-29s  %s  %s  %-8s  %5llu  %-4s  ", e->idhex,
	    e->proto, e->cipher, created, expires, left,
	    (unsigned long long)e->size, seal);
	sd_print_safe(stdout, e->sni ? e->sni : "-");
	fputs("  ", stdout);
	sd_print_safe(stdout, e->subject ? e->subject : "-");
	fputc('\n', stdout);
}

/* list_client_row - one row of the client sessions' table. */
static void
list_client_row(const struct sd_entry *e, int64_t now)
{
	char created[32], expires[32], left[32];

	if (e->problem != NULL) {
		list_text_row(e, now);
		return;
	}
	sd_fmt_time(e->created, created, sizeof created);
	sd_fmt_time(e->expires, expires, sizeof expires);
	sd_fmt_left(e->expires - now, left, sizeof left);
	printf("%-64s  %-7s  %-29s  %s  %s  %-8s  %5llu  %-6s  ", e->idhex,
	    e->proto, e->cipher, created, expires, left,
	    (unsigned long long)e->size, e->ticket ? "ticket" : "reuse");
	sd_print_safe(stdout, e->peer ? e->peer : "-");
	fputs("  ", stdout);
	sd_print_safe(stdout, e->sni ? e->sni : "-");
	fputc('\n', stdout);
}

/* list_text - the tables for list: server sessions, then (apart, with
 * their peers) client sessions. */
static void
list_text(const struct collect *c)
{
	size_t i, nclient = 0;

	for (i = 0; i < c->n; i++)
		nclient += is_client(&c->v[i]);
	if (c->kind != K_CLIENT) {
		printf("%-64s  %-7s  %-29s  %-20s  %-20s  %-8s  %5s  %-4s  %s  %s\n",
		    "ID", "PROTO", "CIPHER", "CREATED", "EXPIRES", "LEFT",
		    "SIZE", "SEAL", "SNI", "PEER");
		for (i = 0; i < c->n; i++)
			if (!is_client(&c->v[i]))
				list_text_row(&c->v[i], c->now);
	}
	if (nclient == 0 && c->kind != K_CLIENT)
		return;
	if (c->kind != K_CLIENT)
		printf("\nclient sessions (%zu):\n", nclient);
	printf("%-64s  %-7s  %-29s  %-20s  %-20s  %-8s  %5s  %-6s  %s  %s\n",
	    "CLIENT KEY", "PROTO", "CIPHER", "CREATED", "EXPIRES", "LEFT",
	    "SIZE", "KIND", "SERVER", "SNI");
	for (i = 0; i < c->n; i++)
		if (is_client(&c->v[i]))
			list_client_row(&c->v[i], c->now);
}

/* json_entry - one record as a JSON object (no trailing newline). */
static void
json_entry(const struct sd_entry *e, int64_t now)
{
	char created[32], expires[32], kid[8];
	int unopened = sd_entry_unopened(e);
	int bad = e->problem != NULL && !unopened;

	sd_fmt_time(e->created, created, sizeof created);
	sd_fmt_time(e->expires, expires, sizeof expires);
	snprintf(kid, sizeof kid, "%04x", e->key_id);
	fputs("{", stdout);
	sd_json_kstr(stdout, bad ? "key" : "id", e->idhex, 0);
	sd_json_kstr(stdout, "status", bad ? "corrupt" : unopened ? "sealed" :
	    e->expires > now ? "live" : "expired", 1);
	sd_json_kstr(stdout, "problem", e->problem, 1);
	sd_json_kint(stdout, "size", (int64_t)e->size, 1);
	fputs(e->sealed ? ", \"sealed\": true" : ", \"sealed\": false", stdout);
	sd_json_kstr(stdout, "key_id", e->sealed ? kid : NULL, 1);
	if (unopened) {
		sd_json_kint(stdout, "namespace", e->ns, 1);
		sd_json_kint(stdout, "created", e->created, 1);
		sd_json_kint(stdout, "expires", e->expires, 1);
		sd_json_kint(stdout, "seconds_left",
		    e->expires > now ? e->expires - now : 0, 1);
	}
	if (!bad && !unopened) {
		sd_json_kint(stdout, "namespace", e->ns, 1);
		sd_json_kstr(stdout, "protocol", e->proto, 1);
		sd_json_kstr(stdout, "cipher", e->cipher, 1);
		sd_json_kint(stdout, "created", e->created, 1);
		sd_json_kstr(stdout, "created_utc", created, 1);
		sd_json_kint(stdout, "expires", e->expires, 1);
		sd_json_kstr(stdout, "expires_utc", expires, 1);
		sd_json_kint(stdout, "seconds_left",
		    e->expires > now ? e->expires - now : 0, 1);
		sd_json_kstr(stdout, "kind", is_client(e) ? "client" :
		    e->ns == SESSDB_NS_OPAQUE ? "opaque" : "server", 1);
		sd_json_kstr(stdout, "sni", e->sni, 1);
		sd_json_kstr(stdout, "peer_subject", e->subject, 1);
		if (is_client(e)) {
			sd_json_kstr(stdout, "server", e->peer, 1);
			sd_json_kstr(stdout, "client_kind", e->ticket ?
			    "ticket" : "reuse", 1);
		}
	}
	fputs("}", stdout);
}

/* list_json - the document for list --json. */
static void
list_json(const struct collect *c, const char *path)
{
	fputs("{", stdout);
	sd_json_kstr(stdout, "database", path, 0);
	sd_json_kint(stdout, "now", c->now, 1);
	sd_json_kint(stdout, "count", (int64_t)c->n, 1);
	fputs(", \"records\": [", stdout);
	for (size_t i = 0; i < c->n; i++) {
		fputs(i ? ",\n  " : "\n  ", stdout);
		json_entry(&c->v[i], c->now);
	}
	fputs(c->n ? "\n]}\n" : "]}\n", stdout);
}

static const struct option list_opts[] = {
	{ "live", no_argument, NULL, 'l' },
	{ "expired", no_argument, NULL, 'e' },
	{ "corrupt", no_argument, NULL, 'c' },
	{ "sort", required_argument, NULL, 's' },
	{ "reverse", no_argument, NULL, 'r' },
	{ "json", no_argument, NULL, 'j' },
	{ "server", no_argument, NULL, 'S' },
	{ "client", no_argument, NULL, 'C' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_list - one line (or JSON object) per record. */
int
sd_cmd_list(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("list");
	int (*cmp)(const void *, const void *) = cmp_created;
	struct collect c = { .filter = F_ALL };
	int json = 0, rev = 0, ch, rc, nfilt = 0, nkind = 0;
	struct sessdb *db;

	while ((ch = sd_getopt(g, argc, argv, "", list_opts)) != -1) {
		switch (ch) {
		case 'l': c.filter = F_LIVE; nfilt++; break;
		case 'e': c.filter = F_EXPIRED; nfilt++; break;
		case 'c': c.filter = F_CORRUPT; nfilt++; break;
		case 'r': rev = 1; break;
		case 'j': json = 1; break;
		case 'S': c.kind = K_SERVER; nkind++; break;
		case 'C': c.kind = K_CLIENT; nkind++; break;
		case 's':
			if ((cmp = find_sort(optarg)) == NULL)
				return sd_bad_usage(me, "list: unknown sort key '%s'",
				    optarg);
			break;
		default:
			return sd_bad_usage(me, NULL);
		}
	}
	if (optind != argc)
		return sd_bad_usage(me, "list: unexpected argument '%s'", argv[optind]);
	if (nfilt > 1)
		return sd_bad_usage(me, "list: --live, --expired and --corrupt "
		    "exclude each other");
	if (nkind > 1)
		return sd_bad_usage(me, "list: --server and --client exclude "
		    "each other");
	if ((db = sd_open(g, SESSDB_RDONLY, NULL)) == NULL)
		return SD_EXIT_DB;
	if ((rc = collect_all(db, g, &c)) == 0) {
		qsort(c.v, c.n, sizeof *c.v, cmp);
		if (rev)
			reverse(c.v, c.n);
		if (json)
			list_json(&c, g->db_name);
		else
			list_text(&c);
	}
	collect_free(&c);
	sd_close(db);
	return rc;
}

/* ---- show ---- */

/* A labelled value for show: printed as text or as JSON. */
struct field {
	const char	*label;		/* text label */
	const char	*key;		/* JSON key */
	int		is_str;		/* str (NULL: absent) or num */
	char		*str;		/* malloc'ed */
	int64_t		num;
};

#define MAX_FIELDS 32

struct fields {
	struct field	f[MAX_FIELDS];
	size_t		n;
};

/* add_str - append a string field (copied; NULL values are skipped in
 * text and null in JSON). */
static void
add_str(struct fields *fs, const char *label, const char *key, const char *v)
{
	if (fs->n == MAX_FIELDS)
		return;
	fs->f[fs->n++] = (struct field){ label, key, 1,
	    v != NULL ? strdup(v) : NULL, 0 };
}

/* add_num - append a number field. */
static void
add_num(struct fields *fs, const char *label, const char *key, int64_t v)
{
	if (fs->n == MAX_FIELDS)
		return;
	fs->f[fs->n++] = (struct field){ label, key, 0, NULL, v };
}

/* add_own - append a string field that fs takes ownership of (the
 * original is wiped: it may be the hex of a master key). */
static void
add_own(struct fields *fs, const char *label, const char *key, char *v)
{
	add_str(fs, label, key, v);
	if (v != NULL)
		tool_wipe_free(v, strlen(v));
}

/* add_time - append a time as a number (JSON) and a UTC string. */
static void
add_time(struct fields *fs, const char *label, const char *key, int64_t t)
{
	char buf[32];

	sd_fmt_time(t, buf, sizeof buf);
	add_str(fs, label, key, buf);
}

/* fields_print - text ("label: value") or a JSON object. */
static void
fields_print(const struct fields *fs, int json)
{
	for (size_t i = 0; i < fs->n; i++) {
		const struct field *f = &fs->f[i];

		if (json) {
			fputs(i ? ",\n  " : "{\n  ", stdout);
			if (f->is_str)
				sd_json_kstr(stdout, f->key, f->str, 0);
			else
				sd_json_kint(stdout, f->key, f->num, 0);
			continue;
		}
		if (f->is_str && f->str == NULL)
			continue;
		printf("%-22s ", f->label);
		if (f->is_str)
			sd_print_safe(stdout, f->str);
		else
			printf("%lld", (long long)f->num);
		fputc('\n', stdout);
	}
	if (json)
		fputs(fs->n ? "\n}\n" : "{}\n", stdout);
}

/* fields_free - release the strings, wiped (one may be a secret). */
static void
fields_free(struct fields *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		if (fs->f[i].str != NULL)
			tool_wipe_free(fs->f[i].str, strlen(fs->f[i].str));
	fs->n = 0;
}

/* add_peer - the peer certificate's subject, issuer and validity. */
static void
add_peer(struct fields *fs, SSL_SESSION *s)
{
	X509 *peer = SSL_SESSION_get0_peer(s);
	struct tm tm;

	if (peer == NULL) {
		add_str(fs, "peer subject:", "peer_subject", NULL);
		return;
	}
	add_own(fs, "peer subject:", "peer_subject",
	    tool_x509_name(X509_get_subject_name(peer)));
	add_own(fs, "peer issuer:", "peer_issuer",
	    tool_x509_name(X509_get_issuer_name(peer)));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm))
		add_time(fs, "peer not after:", "peer_not_after_utc",
		    (int64_t)timegm(&tm));
}

/* add_secret - the master key, only when asked for. */
static void
add_secret(struct fields *fs, SSL_SESSION *s, int secrets)
{
	unsigned char mk[SSL_MAX_MASTER_KEY_LENGTH];
	size_t n;

	if (!secrets) {
		add_str(fs, "master key:", "master_key_hidden",
		    "(hidden; use --secrets)");
		return;
	}
	n = SSL_SESSION_get_master_key(s, mk, sizeof mk);
	add_own(fs, "master key:", "master_key", tool_hex(mk, n));
	OPENSSL_cleanse(mk, sizeof mk);
}

/* add_session - every non-secret field of a decoded session. */
static void
add_session(struct fields *fs, SSL_SESSION *s, int secrets)
{
	const SSL_CIPHER *c = SSL_SESSION_get0_cipher(s);
	const unsigned char *p;
	unsigned int plen;
	size_t alen;
	char buf[16];

	add_str(fs, "protocol:", "protocol", sd_proto_name(
	    SSL_SESSION_get_protocol_version(s), buf, sizeof buf));
	add_str(fs, "cipher:", "cipher", c ? SSL_CIPHER_get_name(c) : NULL);
	add_str(fs, "cipher (RFC name):", "cipher_rfc",
	    c ? SSL_CIPHER_standard_name(c) : NULL);
	add_time(fs, "session time:", "session_time_utc", SSL_SESSION_get_time(s));
	add_num(fs, "session timeout (s):", "session_timeout",
	    SSL_SESSION_get_timeout(s));
	add_str(fs, "SNI host name:", "sni", SSL_SESSION_get0_hostname(s));
	SSL_SESSION_get0_alpn_selected(s, &p, &alen);
	add_own(fs, "ALPN:", "alpn", alen ? strndup((const char *)p, alen) : NULL);
	p = SSL_SESSION_get0_id_context(s, &plen);
	add_own(fs, "ID context:", "id_context", plen ? tool_hex(p, plen) : NULL);
	add_peer(fs, s);
	add_num(fs, "ticket lifetime hint:", "ticket_lifetime_hint",
	    (int64_t)SSL_SESSION_get_ticket_lifetime_hint(s));
	add_num(fs, "max early data:", "max_early_data",
	    SSL_SESSION_get_max_early_data(s));
	add_str(fs, "resumable:", "resumable",
	    SSL_SESSION_is_resumable(s) ? "yes" : "no");
	add_secret(fs, s, secrets);
}

/* add_client - whom a client session is for (its payload's peer header). */
static void
add_client(struct fields *fs, const struct sessdb_record *rec)
{
	struct sessdb_ssl_client_info info;
	SSL_SESSION *s;
	char buf[sizeof info.host + 8];

	if ((s = sessdb_ssl_client_decode(rec->data, rec->len, &info,
	    NULL)) == NULL)
		return;
	SSL_SESSION_free(s);
	snprintf(buf, sizeof buf, "%s:%u", info.host, info.port);
	add_str(fs, "client session for:", "server", buf);
	add_str(fs, "SNI sent:", "sni_sent", info.sni[0] ? info.sni : NULL);
	add_str(fs, "kind:", "client_kind", info.single_use ?
	    "ticket (used once)" : "reuse (until it expires)");
}

/* What show is looking for and how to print it. */
struct show {
	unsigned char	key[1 + SESSDB_ID_MAX];
	size_t		key_len;
	int		secrets, json, found;
	int64_t		now;
};

/* show_record - print everything about one record. */
static void
show_record(struct show *sh, const struct sessdb_record *rec)
{
	struct fields fs = { .n = 0 };
	const char *problem;
	SSL_SESSION *s;
	char left[32], kid[8];
	int bad = sd_decode(rec, &s, &problem) == -1;
	int unopened = rec->seal == SESSDB_SEAL_NOKEY;	/* header sound */

	add_own(&fs, bad && !unopened ? "key:" : rec->ns == SESSDB_NS_CLIENT ?
	    "client key:" : "session ID:", bad && !unopened ? "key" : "id",
	    bad && !unopened ? tool_hex(rec->key, rec->key_len) :
	    tool_hex(rec->id, rec->id_len));
	sd_fmt_left(rec->meta.expires - sh->now, left, sizeof left);
	add_str(&fs, "status:", "status", unopened ? "sealed" : bad ? "corrupt" :
	    rec->meta.expires > sh->now ? "live" : "expired");
	add_str(&fs, "problem:", "problem", bad ? problem : NULL);
	add_num(&fs, "record size:", "size", (int64_t)sd_record_size(rec));
	snprintf(kid, sizeof kid, "%04x", rec->meta.key_id);
	add_str(&fs, "sealed under key:", "key_id",
	    rec->meta.flags & SESSDB_REC_SEALED ? kid : NULL);
	if (!bad || unopened) {
		add_time(&fs, "created:", "created_utc", rec->meta.created);
		add_num(&fs, "created (unix):", "created", rec->meta.created);
		add_time(&fs, "expires:", "expires_utc", rec->meta.expires);
		add_num(&fs, "expires (unix):", "expires", rec->meta.expires);
		add_str(&fs, "time left:", "time_left", left);
	}
	if (!bad) {
		if (rec->ns == SESSDB_NS_CLIENT)
			add_client(&fs, rec);
		if (s != NULL) {	/* NULL: an opaque record */
			add_session(&fs, s, sh->secrets);
			SSL_SESSION_free(s);
		}
	}
	fields_print(&fs, sh->json);
	fields_free(&fs);
	sh->found = 1;
}

/* show_scan - foreach callback: find the record under sh->key. */
static int
show_scan(void *arg, const struct sessdb_record *rec)
{
	struct show *sh = arg;

	if (rec->key_len != sh->key_len || memcmp(rec->key, sh->key,
	    sh->key_len) != 0)
		return 0;
	show_record(sh, rec);
	return 1;
}

/* show_get - try the fast path: a live record through sessdb_get, under
 * the namespace in sh->key[0]. */
static int
show_get(struct sessdb *db, struct show *sh)
{
	struct sessdb_record rec = { .ns = sh->key[0] };
	void *data;
	size_t len;
	int rc;

	rc = sessdb_get(db, sh->key[0], sh->key + 1, sh->key_len - 1,
	    &data, &len, &rec.meta);
	if (rc != SESSDB_OK)
		return rc;
	rec.id = sh->key + 1;
	rec.id_len = sh->key_len - 1;
	rec.key = sh->key;
	rec.key_len = sh->key_len;
	rec.data = data;
	rec.len = len;
	if (rec.meta.flags & SESSDB_REC_SEALED)
		rec.seal = SESSDB_SEAL_OPENED;
	show_record(sh, &rec);
	OPENSSL_cleanse(data, len);
	sessdb_free(data);
	return SESSDB_OK;
}

static const struct option show_opts[] = {
	{ "secrets", no_argument, NULL, 's' },
	{ "json", no_argument, NULL, 'j' },
	{ NULL, 0, NULL, 0 },
};

/* sd_cmd_show - everything about one session, secrets only on request. */
int
sd_cmd_show(struct sd_global *g, int argc, char **argv)
{
	const struct sd_cmd *me = sd_find_cmd("show");
	struct show sh = { .key = { SESSDB_NS_SERVER } };
	struct sessdb *db;
	size_t id_len;
	int ch, rc;

	while ((ch = sd_getopt(g, argc, argv, "", show_opts)) != -1) {
		switch (ch) {
		case 's': sh.secrets = 1; break;
		case 'j': sh.json = 1; break;
		default: return sd_bad_usage(me, NULL);
		}
	}
	if (argc - optind != 1)
		return sd_bad_usage(me, "show: want exactly one session ID");
	if (sd_parse_hex_id(argv[optind], sh.key + 1, &id_len) == -1)
		return sd_bad_usage(me, "show: '%s' is not a session ID "
		    "(1 to 32 bytes in hex)", argv[optind]);
	sh.key_len = 1 + id_len;
	if ((db = sd_open(g, SESSDB_RDONLY, NULL)) == NULL)
		return SD_EXIT_DB;
	sh.now = sessdb_now(db);
	if ((rc = show_get(db, &sh)) == SESSDB_MISS)
		rc = sessdb_foreach(db, 0, show_scan, &sh) == -1 ? -1 : 0;
	if (rc == 0 && !sh.found && id_len == SESSDB_ID_MAX) {
		/* a client session's key (peer key and slot) */
		sh.key[0] = SESSDB_NS_CLIENT;
		if ((rc = show_get(db, &sh)) == SESSDB_MISS)
			rc = sessdb_foreach(db, 0, show_scan, &sh) == -1 ? -1 : 0;
	}
	if (rc == -1)
		sd_err("%s: %s", g->db_name, sd_db_error(g, db));
	sd_close(db);
	if (rc == -1)
		return SD_EXIT_DB;
	if (!sh.found) {
		sd_err("show: no session %s in %s", argv[optind], g->db_name);
		return SD_EXIT_NOTFOUND;
	}
	return SD_EXIT_OK;
}
