/*
 * NAME
 *	record.c - encode and decode store keys and records
 *
 * DESCRIPTION
 *	Pure functions over byte buffers: no I/O, no allocation, no global
 *	state beyond a constant table, so they can be fuzzed on their own
 *	(tests/fuzz/fuzz_record.c).  Every multi-byte field is big-endian so
 *	that a database can be copied between machines.
 *
 *	The CRC-32C covers the key as well as the value, so a value that ends
 *	up under the wrong key (a damaged bucket, a bad recovery) is refused
 *	instead of being handed to OpenSSL as someone else's session.
 */
#include <string.h>

#include "record.h"

/* put_be64, get_be64 and friends - fixed-width big-endian fields. */
static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void
put_be64(unsigned char *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t
get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t
get_be64(const unsigned char *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* crc32c_table - the reflected Castagnoli table, built once, lazily. */
static uint32_t crc32c_table[256];

static void
crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc32c_table[i] = c;
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
/* crc32c_hw - the SSE4.2 instruction: ~20x the table on session-sized data. */
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; len > 0; p++, len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p);
	return (uint32_t)c;
}
#endif

uint32_t
rec_crc32c(uint32_t crc, const void *buf, size_t len)
{
	static int have_hw = -1;
	const unsigned char *p = buf;

	if (have_hw < 0) {
#if defined(__x86_64__) && defined(__GNUC__)
		__builtin_cpu_init();
		have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
		have_hw = 0;
#endif
		if (!have_hw)
			crc32c_init();
	}
	crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
	if (have_hw)
		return ~crc32c_hw(crc, p, len);
#endif
	while (len-- > 0)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

const char *
rec_strerror(enum rec_status status)
{
	switch (status) {
	case REC_OK:		return "ok";
	case REC_EMPTY:		return "empty record";
	case REC_SHORT:		return "record shorter than its header";
	case REC_BAD_MAGIC:	return "bad record magic";
	case REC_BAD_VERSION:	return "unknown record format version";
	case REC_BAD_FLAGS:	return "unknown record flags";
	case REC_BAD_RESERVED:	return "reserved header bytes not zero";
	case REC_BAD_LENGTH:	return "payload length does not match record size";
	case REC_BAD_TIMES:	return "record expires before it was created";
	case REC_BAD_CHECKSUM:	return "record checksum mismatch";
	case REC_BAD_KEY:	return "malformed key";
	default:		return "unknown record status";
	}
}

/* id_valid - is id a well-formed identifier of namespace ns? */
static int
id_valid(unsigned ns, const unsigned char *id, size_t id_len)
{
	const unsigned char *nul;

	switch (ns) {
	case SESSDB_NS_SERVER:
	case SESSDB_NS_CLIENT:
		return id_len >= 1 && id_len <= SESSDB_ID_MAX;
	case SESSDB_NS_OPAQUE:
		/* consumer name, 0x00, the consumer's key: both non-empty */
		if (id_len < 3 || id_len > SESSDB_OPAQUE_ID_MAX)
			return 0;
		nul = memchr(id, 0, id_len < SESSDB_CONSUMER_MAX + 1 ?
		    id_len : SESSDB_CONSUMER_MAX + 1);
		return nul != NULL && nul != id && nul != id + id_len - 1;
	default:
		return 0;
	}
}

size_t
rec_key_make(unsigned char out[REC_KEY_MAX], unsigned ns, const void *id, size_t id_len)
{
	if (id == NULL || !id_valid(ns, id, id_len))
		return 0;
	out[0] = (unsigned char)ns;
	memcpy(out + 1, id, id_len);
	return 1 + id_len;
}

enum rec_status
rec_key_parse(const unsigned char *key, size_t key_len, unsigned *ns,
    const unsigned char **id, size_t *id_len)
{
	if (key == NULL || key_len < 2 || key_len > REC_KEY_MAX)
		return REC_BAD_KEY;
	if (!id_valid(key[0], key + 1, key_len - 1))
		return REC_BAD_KEY;
	*ns = key[0];
	*id = key + 1;
	*id_len = key_len - 1;
	return REC_OK;
}

/* record_crc - checksum over key, header without its CRC field, payload. */
static uint32_t
record_crc(const unsigned char *key, size_t key_len, const unsigned char *header,
    const unsigned char *payload, size_t payload_len)
{
	uint32_t crc = rec_crc32c(0, key, key_len);

	crc = rec_crc32c(crc, header, REC_HEADER_LEN - 4);
	return rec_crc32c(crc, payload, payload_len);
}

void
rec_encode_header(unsigned char *out, const struct rec *r)
{
	int sealed = (r->flags & REC_F_SEALED) != 0;

	memcpy(out, REC_MAGIC, 4);
	/* A plain record stays version 1, which every older reader takes. */
	out[4] = r->flags != 0 ? REC_VERSION_SEALED : REC_VERSION;
	out[5] = (unsigned char)r->flags;
	out[6] = sealed ? (unsigned char)(r->key_id >> 8) : 0;
	out[7] = sealed ? (unsigned char)r->key_id : 0;
	put_be64(out + 8, (uint64_t)r->created);
	put_be64(out + 16, (uint64_t)r->expires);
	put_be32(out + 24, (uint32_t)r->payload_len);
}

void
rec_encode_finish(unsigned char *out, const unsigned char *key, size_t key_len)
{
	put_be32(out + 28, record_crc(key, key_len, out, out + REC_HEADER_LEN,
	    get_be32(out + 24)));
}

void
rec_encode(unsigned char *out, const unsigned char *key, size_t key_len,
    const struct rec *r)
{
	rec_encode_header(out, r);
	if (r->payload_len > 0)
		memcpy(out + REC_HEADER_LEN, r->payload, r->payload_len);
	rec_encode_finish(out, key, key_len);
}

enum rec_status
rec_decode(const unsigned char *value, size_t value_len,
    const unsigned char *key, size_t key_len, struct rec *r)
{
	unsigned ns;
	const unsigned char *id;
	size_t id_len;
	uint32_t payload_len;

	memset(r, 0, sizeof(*r));
	if (rec_key_parse(key, key_len, &ns, &id, &id_len) != REC_OK)
		return REC_BAD_KEY;
	if (value == NULL || value_len == 0)
		return REC_EMPTY;
	if (value_len < REC_HEADER_LEN)
		return REC_SHORT;
	if (memcmp(value, REC_MAGIC, 4) != 0)
		return REC_BAD_MAGIC;
	if (value[4] != REC_VERSION && value[4] != REC_VERSION_SEALED)
		return REC_BAD_VERSION;
	/* Version 1 has no flags; version 2 is written only with one. */
	if ((value[5] & ~(value[4] == REC_VERSION ? 0 : REC_FLAGS_KNOWN)) != 0 ||
	    (value[4] == REC_VERSION_SEALED && value[5] == 0))
		return REC_BAD_FLAGS;
	if ((value[5] & REC_F_SEALED) == 0 && (value[6] != 0 || value[7] != 0))
		return REC_BAD_RESERVED;
	payload_len = get_be32(value + 24);
	if (payload_len != value_len - REC_HEADER_LEN)
		return REC_BAD_LENGTH;
	r->created = (int64_t)get_be64(value + 8);
	r->expires = (int64_t)get_be64(value + 16);
	if (r->expires <= r->created) {
		memset(r, 0, sizeof(*r));
		return REC_BAD_TIMES;
	}
	if (get_be32(value + 28) != record_crc(key, key_len, value,
	    value + REC_HEADER_LEN, payload_len)) {
		memset(r, 0, sizeof(*r));
		return REC_BAD_CHECKSUM;
	}
	r->flags = value[5];
	if (r->flags & REC_F_SEALED)
		r->key_id = (unsigned)value[6] << 8 | value[7];
	r->payload = value + REC_HEADER_LEN;
	r->payload_len = payload_len;
	return REC_OK;
}
