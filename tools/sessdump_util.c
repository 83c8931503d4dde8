/*
 * NAME
 *	sessdump_util.c - decode records into printable entries; times,
 *	JSON strings and terminal progress for sessdump
 *
 * DESCRIPTION
 *	A record is "bad" when the store could not decode its header (the
 *	foreach callback's problem), when its payload is not the DER of an
 *	SSL_SESSION, or when a server session's ID differs from its key.
 *	Records of the opaque namespace (other consumers': OCSP responses,
 *	cached pages, credentials) are never parsed: a header that decodes
 *	makes them good, and they are listed by consumer name and key.
 *	Strings that come from the network (SNI, certificate names) are
 *	escaped before they reach a terminal or a JSON document.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "sessdump.h"

/* sd_decode - parse rec's payload (sessdb_ssl_decode, as the glue does);
 * *out (if out) gets the session, to free with SSL_SESSION_free.  A
 * server session must carry the ID of its key.  Returns 0, or -1 with
 * *problem set. */
int
sd_decode(const struct sessdb_record *rec, SSL_SESSION **out,
    const char **problem)
{
	SSL_SESSION *s;

	if (out != NULL)
		*out = NULL;
	if (rec->problem != NULL) {
		*problem = rec->problem;
		return -1;
	}
	if (rec->ns == SESSDB_NS_OPAQUE)
		return 0;	/* not a session: the payload is the consumer's */
	if (rec->ns == SESSDB_NS_CLIENT)	/* a peer header, then the DER */
		s = sessdb_ssl_client_decode(rec->data, rec->len, NULL, problem);
	else
		s = sessdb_ssl_decode(rec->data, rec->len,
		    rec->ns == SESSDB_NS_SERVER ? rec->id : NULL, rec->id_len,
		    problem);
	if (s == NULL)
		return -1;
	if (out != NULL)
		*out = s;
	else
		SSL_SESSION_free(s);
	return 0;
}

/* sd_opaque_name - "consumer/hexkey" for an opaque record's ID (the
 * consumer name with anything unprintable as '?'), malloc'ed; NULL when out
 * of memory. */
char *
sd_opaque_name(const struct sessdb_record *rec)
{
	const unsigned char *nul = memchr(rec->id, 0, rec->id_len);
	size_t name_len = nul != NULL ? (size_t)(nul - rec->id) : 0;
	char *hex, *out;

	if (nul == NULL)	/* the store checked it: cannot happen */
		return tool_hex(rec->id, rec->id_len);
	if ((hex = tool_hex(nul + 1, rec->id_len - name_len - 1)) == NULL)
		return NULL;
	if ((out = malloc(name_len + 1 + strlen(hex) + 1)) != NULL) {
		for (size_t i = 0; i < name_len; i++)
			out[i] = rec->id[i] > 0x20 && rec->id[i] < 0x7f &&
			    rec->id[i] != '/' ? (char)rec->id[i] : '?';
		out[name_len] = '/';
		strcpy(out + name_len + 1, hex);
	}
	free(hex);
	return out;
}

/* sd_record_size - bytes the record takes in the file (key and value). */
uint64_t
sd_record_size(const struct sessdb_record *rec)
{
	if (rec->problem != NULL)
		return rec->key_len + rec->len;	/* the raw value */
	return rec->key_len + SESSDB_RECORD_OVERHEAD + rec->len +
	    (rec->seal == SESSDB_SEAL_OPENED ? SESSDB_SEAL_OVERHEAD : 0);
}

/* sd_parse_hex_id - a hex session ID (colons allowed) into out
 * (SESSDB_ID_MAX bytes).  Returns 0, or -1 if it is not 1..32 bytes of hex. */
int
sd_parse_hex_id(const char *s, unsigned char *out, size_t *len)
{
	return tool_parse_hex(s, out, SESSDB_ID_MAX, len);
}

/* proto_names - protocol versions as OpenSSL spells them. */
static const struct {
	int		version;
	const char	*name;
} proto_names[] = {
	{ TLS1_3_VERSION, "TLSv1.3" },
	{ TLS1_2_VERSION, "TLSv1.2" },
	{ TLS1_1_VERSION, "TLSv1.1" },
	{ TLS1_VERSION, "TLSv1" },
	{ SSL3_VERSION, "SSLv3" },
	{ DTLS1_2_VERSION, "DTLSv1.2" },
	{ DTLS1_VERSION, "DTLSv1" },
};

/* sd_proto_name - the name of a protocol version, or its number in hex. */
const char *
sd_proto_name(int version, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof proto_names / sizeof proto_names[0]; i++)
		if (proto_names[i].version == version)
			return proto_names[i].name;
	snprintf(buf, len, "0x%04x", (unsigned)version & 0xffff);
	return buf;
}

/* copy_str - strdup that tolerates NULL. */
static char *
copy_str(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* fill_session - the fields of e that come from a decoded session. */
static void
fill_session(struct sd_entry *e, SSL_SESSION *s)
{
	const SSL_CIPHER *c = SSL_SESSION_get0_cipher(s);
	X509 *peer = SSL_SESSION_get0_peer(s);
	const char *name = sd_proto_name(SSL_SESSION_get_protocol_version(s),
	    e->proto, sizeof e->proto);

	if (name != e->proto)
		snprintf(e->proto, sizeof e->proto, "%s", name);
	snprintf(e->cipher, sizeof e->cipher, "%s",
	    c != NULL ? SSL_CIPHER_get_name(c) : "(unknown)");
	e->sni = copy_str(SSL_SESSION_get0_hostname(s));
	e->subject = peer != NULL ?
	    tool_x509_name(X509_get_subject_name(peer)) : NULL;
}

/* fill_client - the peer of a client record (its payload's header): the
 * SNI the client sent replaces the session's, which a client notes only
 * when the server acknowledged it.  0, or -1 when out of memory. */
static int
fill_client(struct sd_entry *e, const struct sessdb_record *rec)
{
	struct sessdb_ssl_client_info info;
	SSL_SESSION *s;
	char buf[sizeof info.host + 8];

	if ((s = sessdb_ssl_client_decode(rec->data, rec->len, &info,
	    NULL)) == NULL)
		return 0;		/* sd_decode read it: cannot happen */
	SSL_SESSION_free(s);
	snprintf(buf, sizeof buf, "%s:%u", info.host, info.port);
	free(e->sni);
	e->sni = info.sni[0] ? strdup(info.sni) : NULL;
	e->ticket = info.single_use;
	e->peer = strdup(buf);
	return e->peer != NULL && (info.sni[0] == '\0' || e->sni != NULL) ?
	    0 : -1;
}

/* sd_entry_fill - decode rec into e (zeroed first).  Returns 0, or -1 when
 * out of memory.  A bad record is not an error: e->problem says why. */
int
sd_entry_fill(struct sd_entry *e, const struct sessdb_record *rec)
{
	SSL_SESSION *s;
	const char *problem;

	memset(e, 0, sizeof *e);
	e->ns = rec->ns;
	e->created = rec->meta.created;
	e->expires = rec->meta.expires;
	e->size = sd_record_size(rec);
	e->sealed = (rec->meta.flags & SESSDB_REC_SEALED) != 0;
	e->key_id = rec->meta.key_id;
	e->seal = rec->seal;
	if (sd_decode(rec, &s, &problem) == -1) {
		/* A sealed record we cannot open still has a sound ID. */
		e->idhex = rec->seal == SESSDB_SEAL_NOKEY ?
		    tool_hex(rec->id, rec->id_len) : tool_hex(rec->key, rec->key_len);
		e->problem = strdup(problem);
		return e->idhex && e->problem ? 0 : -1;
	}
	if (s == NULL) {	/* opaque: no session fields */
		e->idhex = sd_opaque_name(rec);
		snprintf(e->proto, sizeof e->proto, "opaque");
		snprintf(e->cipher, sizeof e->cipher, "-");
		return e->idhex ? 0 : -1;
	}
	e->idhex = tool_hex(rec->id, rec->id_len);
	fill_session(e, s);
	SSL_SESSION_free(s);
	if (rec->ns == SESSDB_NS_CLIENT)
		return e->idhex && fill_client(e, rec) == 0 ? 0 : -1;
	return e->idhex ? 0 : -1;
}

/* sd_entry_clear - release what sd_entry_fill allocated. */
void
sd_entry_clear(struct sd_entry *e)
{
	free(e->idhex);
	free(e->sni);
	free(e->subject);
	free(e->peer);
	free(e->problem);
	memset(e, 0, sizeof *e);
}

/* sd_fmt_time - unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC). */
void
sd_fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "@%lld", (long long)t);
}

/* sd_fmt_left - a duration as "1d2h", "3h4m", "5m6s" or "7s"; negative or
 * zero durations read "expired". */
void
sd_fmt_left(int64_t secs, char *buf, size_t len)
{
	long long s = secs;

	if (s <= 0)
		snprintf(buf, len, "expired");
	else if (s >= 86400)
		snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
}

/* sd_print_safe - print s with control and non-ASCII bytes as \xNN. */
void
sd_print_safe(FILE *fp, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p >= 0x7f || *p == '\\')
			fprintf(fp, "\\x%02x", *p);
		else
			fputc(*p, fp);
	}
}

/* sd_json_str - s as a JSON string ("null" for NULL).  Bytes >= 0x80 are
 * taken as Latin-1, so the output is valid JSON whatever s holds. */
void
sd_json_str(FILE *fp, const char *s)
{
	if (s == NULL) {
		fputs("null", fp);
		return;
	}
	fputc('"', fp);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':  fputs("\\\"", fp); break;
		case '\\': fputs("\\\\", fp); break;
		case '\n': fputs("\\n", fp); break;
		case '\r': fputs("\\r", fp); break;
		case '\t': fputs("\\t", fp); break;
		default:
			if (*p < 0x20 || *p >= 0x7f)
				fprintf(fp, "\\u%04x", *p);
			else
				fputc(*p, fp);
		}
	}
	fputc('"', fp);
}

/* sd_json_kstr - "key": "val" with an optional leading comma. */
void
sd_json_kstr(FILE *fp, const char *key, const char *val, int comma)
{
	fprintf(fp, "%s\"%s\": ", comma ? ", " : "", key);
	sd_json_str(fp, val);
}

/* sd_json_kint - "key": val with an optional leading comma. */
void
sd_json_kint(FILE *fp, const char *key, int64_t val, int comma)
{
	fprintf(fp, "%s\"%s\": %lld", comma ? ", " : "", key, (long long)val);
}

/* sd_progress_start - begin a progress line if stderr is a terminal. */
void
sd_progress_start(struct sd_progress *p, const struct sd_global *g,
    const char *what, uint64_t total)
{
	memset(p, 0, sizeof *p);
	p->on = g->progress;
	p->what = what;
	p->total = total;
	p->last_ms = tool_now_ms() - 1000;	/* draw at the first chance */
}

/* sd_progress_tick - count one record; redraw at most five times a second. */
void
sd_progress_tick(struct sd_progress *p)
{
	int64_t t;

	p->done++;
	if (!p->on || (p->done & 63) != 0)
		return;
	if ((t = tool_now_ms()) - p->last_ms < 200)
		return;
	p->last_ms = t;
	p->drawn = 1;
	if (p->total >= p->done)
		fprintf(stderr, "\r%s: %llu/%llu records (%llu%%)\033[K", p->what,
		    (unsigned long long)p->done, (unsigned long long)p->total,
		    (unsigned long long)(p->done * 100 / p->total));
	else
		fprintf(stderr, "\r%s: %llu records\033[K", p->what,
		    (unsigned long long)p->done);
}

/* sd_progress_clear - erase the progress line before printing a line of
 * output to the same terminal; the next tick draws it again. */
void
sd_progress_clear(struct sd_progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		p->drawn = 0;
	}
}

/* sd_progress_end - erase the progress line. */
void
sd_progress_end(struct sd_progress *p)
{
	sd_progress_clear(p);
	p->on = 0;
}
