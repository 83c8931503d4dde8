/*
 * NAME
 *	test_record - table-driven tests of the key and record codec
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "record.h"

static const unsigned char KEY[] = { SESSDB_NS_SERVER, 0xde, 0xad, 0xbe, 0xef };

/* encode_sample - a valid record with a 16-byte payload into buf. */
static size_t
encode_sample(unsigned char *buf, const unsigned char *key, size_t key_len)
{
	static const unsigned char payload[16] = "0123456789abcdef";
	struct rec r = { 0, 1000, 2000, payload, sizeof(payload), 0 };

	rec_encode(buf, key, key_len, &r);
	return REC_HEADER_LEN + sizeof(payload);
}

static void
test_roundtrip(void)
{
	unsigned char buf[64];
	size_t len = encode_sample(buf, KEY, sizeof(KEY));
	struct rec r;

	CU_ASSERT_EQUAL(rec_decode(buf, len, KEY, sizeof(KEY), &r), REC_OK);
	CU_ASSERT_EQUAL(r.created, 1000);
	CU_ASSERT_EQUAL(r.expires, 2000);
	CU_ASSERT_EQUAL(r.payload_len, 16);
	CU_ASSERT(r.payload == buf + REC_HEADER_LEN);
	CU_ASSERT(memcmp(r.payload, "0123456789abcdef", 16) == 0);
}

/* The header is fixed, big-endian, host-independent: check the bytes. */
static void
test_layout(void)
{
	static const unsigned char want[28] = {
		'S', 'D', 'B', 'R', 1, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0x03, 0xe8,	/* created 1000 */
		0, 0, 0, 0, 0, 0, 0x07, 0xd0,	/* expires 2000 */
		0, 0, 0, 16,			/* payload length */
	};
	unsigned char buf[64];

	encode_sample(buf, KEY, sizeof(KEY));
	CU_ASSERT(memcmp(buf, want, sizeof(want)) == 0);
}

/* Negative times (before 1970) survive the signed conversion. */
static void
test_negative_times(void)
{
	unsigned char buf[REC_HEADER_LEN];
	struct rec in = { 0, -5, -1, NULL, 0, 0 }, out;

	rec_encode(buf, KEY, sizeof(KEY), &in);
	CU_ASSERT_EQUAL(rec_decode(buf, sizeof(buf), KEY, sizeof(KEY), &out), REC_OK);
	CU_ASSERT_EQUAL(out.created, -5);
	CU_ASSERT_EQUAL(out.expires, -1);
	CU_ASSERT_EQUAL(out.payload_len, 0);
}

/* A sealed record's header (format 2): version 2, the flag, the key id;
 * each rule broken alone (CRC computed again) is refused. */
static void
test_sealed_header(void)
{
	static const unsigned char payload[40] = "nonce, ciphertext and tag stand-in....";
	struct rec in = { REC_F_SEALED, 1000, 2000, payload, sizeof(payload), 0xbeef };
	unsigned char buf[REC_HEADER_LEN + sizeof(payload)];
	static const struct {
		const char	*name;
		int		off, val;
		enum rec_status	want;
	} bad[] = {
		{ "version 1 with the flag",	4, 1,    REC_BAD_FLAGS },
		{ "unknown flag beside it",	5, 0x03, REC_BAD_FLAGS },
		{ "version 2 without it",	5, 0,    REC_BAD_FLAGS },
	};
	struct rec out;

	rec_encode(buf, KEY, sizeof(KEY), &in);
	CU_ASSERT_EQUAL(buf[4], REC_VERSION_SEALED);
	CU_ASSERT_EQUAL(buf[5], REC_F_SEALED);
	CU_ASSERT(buf[6] == 0xbe && buf[7] == 0xef);
	CU_ASSERT_EQUAL(rec_decode(buf, sizeof(buf), KEY, sizeof(KEY), &out), REC_OK);
	CU_ASSERT_EQUAL(out.flags, REC_F_SEALED);
	CU_ASSERT_EQUAL(out.key_id, 0xbeef);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char c[sizeof(buf)];
		enum rec_status got;

		memcpy(c, buf, sizeof(c));
		c[bad[i].off] = (unsigned char)bad[i].val;
		rec_encode_finish(c, KEY, sizeof(KEY));
		got = rec_decode(c, sizeof(c), KEY, sizeof(KEY), &out);
		if (got != bad[i].want)
			printf("\n  %s: got %s, want %s\n", bad[i].name,
			    rec_strerror(got), rec_strerror(bad[i].want));
		CU_ASSERT_EQUAL(got, bad[i].want);
	}
	/* A plain record keeps version 1 and zero key id bytes. */
	in.flags = 0;
	rec_encode(buf, KEY, sizeof(KEY), &in);
	CU_ASSERT(buf[4] == REC_VERSION && buf[6] == 0 && buf[7] == 0);
	buf[6] = 1;
	rec_encode_finish(buf, KEY, sizeof(KEY));
	CU_ASSERT_EQUAL(rec_decode(buf, sizeof(buf), KEY, sizeof(KEY), &out),
	    REC_BAD_RESERVED);
}

/* CRC-32C check value from RFC 3720 (B.4): 32 bytes of zeros. */
static void
test_crc32c_vectors(void)
{
	unsigned char zeros[32] = { 0 }, ones[32];

	memset(ones, 0xff, sizeof(ones));
	CU_ASSERT_EQUAL(rec_crc32c(0, zeros, sizeof(zeros)), 0x8a9136aau);
	CU_ASSERT_EQUAL(rec_crc32c(0, ones, sizeof(ones)), 0x62a8ab43u);
	CU_ASSERT_EQUAL(rec_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Continuing a CRC equals computing it in one go. */
	CU_ASSERT_EQUAL(rec_crc32c(rec_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

/* Each malformed case: a mutation applied to a valid record, and the verdict. */
struct bad_case {
	const char	*name;
	size_t		len;		/* value length to decode (0 = as encoded) */
	int		offset;		/* byte to overwrite, -1 = none */
	unsigned char	byte;
	enum rec_status	want;
};

static const struct bad_case bad_cases[] = {
	{ "empty",		1,  -1, 0,    REC_EMPTY },	/* len 1 -> see below */
	{ "one byte",		1,  -1, 0,    REC_SHORT },
	{ "header - 1",		31, -1, 0,    REC_SHORT },
	{ "header only",	32, -1, 0,    REC_BAD_LENGTH },
	{ "truncated payload",	47, -1, 0,    REC_BAD_LENGTH },
	{ "trailing byte",	49, -1, 0,    REC_BAD_LENGTH },
	{ "bad magic",		0,  0,  'X',  REC_BAD_MAGIC },
	{ "bad magic 4th",	0,  3,  0,    REC_BAD_MAGIC },
	{ "version 0",		0,  4,  0,    REC_BAD_VERSION },
	{ "version 2, no flag",	0,  4,  2,    REC_BAD_FLAGS },
	{ "version 3",		0,  4,  3,    REC_BAD_VERSION },
	{ "flag sealed in v1",	0,  5,  1,    REC_BAD_FLAGS },
	{ "flag high",		0,  5,  0x80, REC_BAD_FLAGS },
	{ "reserved",		0,  7,  1,    REC_BAD_RESERVED },
	{ "huge length",	0,  24, 0xff, REC_BAD_LENGTH },
	{ "length + 1",		0,  27, 17,   REC_BAD_LENGTH },
	{ "expires < created",	0,  14, 0x7f, REC_BAD_TIMES },
	{ "payload bit flip",	0,  40, 'X',  REC_BAD_CHECKSUM },
	{ "crc flip",		0,  31, 0,    REC_BAD_CHECKSUM },
	{ "created changed",	0,  15, 0xe9, REC_BAD_CHECKSUM },
};

static void
test_malformed(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		unsigned char buf[64] = { 0 };
		size_t len = encode_sample(buf, KEY, sizeof(KEY));
		struct rec r;
		enum rec_status got;

		if (c->offset >= 0)
			buf[c->offset] = c->byte;
		if (c->len > 0)
			len = c->len;
		if (c->want == REC_EMPTY)
			len = 0;
		got = rec_decode(buf, len, KEY, sizeof(KEY), &r);
		if (got != c->want)
			printf("\n  %s: got %s, want %s\n", c->name,
			    rec_strerror(got), rec_strerror(c->want));
		CU_ASSERT_EQUAL(got, c->want);
		CU_ASSERT_PTR_NULL(r.payload);	/* nothing leaks out of a bad record */
	}
	CU_ASSERT_EQUAL(rec_decode(NULL, 0, KEY, sizeof(KEY), &(struct rec){0}), REC_EMPTY);
}

/* A value moved under another key fails its checksum. */
static void
test_wrong_key(void)
{
	static const unsigned char other[] = { SESSDB_NS_SERVER, 0xde, 0xad, 0xbe, 0xee };
	static const unsigned char client[] = { SESSDB_NS_CLIENT, 0xde, 0xad, 0xbe, 0xef };
	unsigned char buf[64];
	size_t len = encode_sample(buf, KEY, sizeof(KEY));
	struct rec r;

	CU_ASSERT_EQUAL(rec_decode(buf, len, other, sizeof(other), &r), REC_BAD_CHECKSUM);
	CU_ASSERT_EQUAL(rec_decode(buf, len, client, sizeof(client), &r), REC_BAD_CHECKSUM);
	CU_ASSERT_EQUAL(rec_decode(buf, len, KEY, 4, &r), REC_BAD_CHECKSUM);
}

struct key_case {
	unsigned	ns;
	size_t		id_len;
	size_t		want;	/* key length, 0 = refused */
};

static void
test_keys(void)
{
	static const struct key_case cases[] = {
		{ SESSDB_NS_SERVER, 0,  0 },
		{ SESSDB_NS_SERVER, 1,  2 },
		{ SESSDB_NS_SERVER, 32, 33 },
		{ SESSDB_NS_SERVER, 33, 0 },
		{ SESSDB_NS_CLIENT, 16, 17 },
		{ 0,                16, 0 },
		{ 0x1ff,            16, 0 },
		{ SESSDB_NS_OPAQUE, 16, 0 },	/* no 0x00 after a consumer name */
	};
	unsigned char id[64], key[REC_KEY_MAX];

	memset(id, 0xab, sizeof(id));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = rec_key_make(key, cases[i].ns, id, cases[i].id_len);

		if (got != cases[i].want)
			printf("\n  key ns=%#x len=%zu: got %zu, want %zu\n",
			    cases[i].ns, cases[i].id_len, got, cases[i].want);
		CU_ASSERT_EQUAL(got, cases[i].want);
		if (got > 0) {
			unsigned ns;
			const unsigned char *pid;
			size_t plen;

			CU_ASSERT_EQUAL(rec_key_parse(key, got, &ns, &pid, &plen), REC_OK);
			CU_ASSERT_EQUAL(ns, cases[i].ns);
			CU_ASSERT_EQUAL(plen, cases[i].id_len);
			CU_ASSERT(memcmp(pid, id, plen) == 0);
		}
	}
	CU_ASSERT_EQUAL(rec_key_make(key, SESSDB_NS_SERVER, NULL, 4), 0);
	{
		unsigned ns;
		const unsigned char *pid;
		size_t plen;
		unsigned char k1[1] = { SESSDB_NS_SERVER }, kx[3] = { 'Z', 1, 2 };

		CU_ASSERT_EQUAL(rec_key_parse(k1, 1, &ns, &pid, &plen), REC_BAD_KEY);
		CU_ASSERT_EQUAL(rec_key_parse(kx, 3, &ns, &pid, &plen), REC_BAD_KEY);
		CU_ASSERT_EQUAL(rec_key_parse(id, 34, &ns, &pid, &plen), REC_BAD_KEY);
	}
	/* A record under a malformed key is refused whatever its value. */
	{
		unsigned char buf[64], bad_key[1] = { SESSDB_NS_SERVER };
		size_t len = encode_sample(buf, bad_key, 1);
		struct rec r;

		CU_ASSERT_EQUAL(rec_decode(buf, len, bad_key, 1, &r), REC_BAD_KEY);
	}
}

struct opaque_case {
	const char	*name;		/* consumer name, then 0x00 */
	size_t		name_len;
	size_t		key_len;	/* bytes of the consumer's key after it */
	int		valid;
};

/* Opaque keys (format 2.1): a consumer name, 0x00, a key of up to 1 KiB and
 * more; a name that is empty, too long or not ended by 0x00 is refused. */
static void
test_opaque_keys(void)
{
	static char long_name[SESSDB_CONSUMER_MAX + 2];
	static const struct opaque_case cases[] = {
		{ "mod_ssl-stapling", 16, 20, 1 },
		{ "authn-socache", 13, 1, 1 },
		{ "mod_cache_socache", 17, 1024, 1 },
		{ "c", 1, SESSDB_OPAQUE_ID_MAX - 2, 1 },
		{ "c", 1, SESSDB_OPAQUE_ID_MAX - 1, 0 },	/* one byte too long */
		{ "mod_ssl-stapling", 16, 0, 0 },		/* no key */
		{ "", 0, 20, 0 },				/* no name */
		{ long_name, SESSDB_CONSUMER_MAX, 20, 1 },
		{ long_name, SESSDB_CONSUMER_MAX + 1, 20, 0 },
	};
	static unsigned char id[SESSDB_OPAQUE_ID_MAX + 8];
	unsigned char key[REC_KEY_MAX];

	memset(long_name, 'n', sizeof(long_name) - 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct opaque_case *c = &cases[i];
		size_t id_len = c->name_len + 1 + c->key_len, got;

		memcpy(id, c->name, c->name_len);
		id[c->name_len] = 0;
		memset(id + c->name_len + 1, 0, c->key_len);	/* keys may hold 0x00 */
		got = rec_key_make(key, SESSDB_NS_OPAQUE, id, id_len);
		if ((got != 0) != c->valid)
			printf("\n  opaque key %zu (name %zu, key %zu): got %zu, "
			    "want %s\n", i, c->name_len, c->key_len, got,
			    c->valid ? "valid" : "refused");
		CU_ASSERT_EQUAL(got != 0, c->valid);
		if (got > 0) {
			unsigned ns;
			const unsigned char *pid;
			size_t plen;
			unsigned char buf[64 + REC_HEADER_LEN];
			size_t len = encode_sample(buf, key, got);
			struct rec r;

			CU_ASSERT_EQUAL(got, 1 + id_len);
			CU_ASSERT_EQUAL(rec_key_parse(key, got, &ns, &pid, &plen), REC_OK);
			CU_ASSERT_EQUAL(ns, SESSDB_NS_OPAQUE);
			CU_ASSERT_EQUAL(plen, id_len);
			CU_ASSERT_EQUAL(rec_decode(buf, len, key, got, &r), REC_OK);
		} else {
			unsigned ns;
			const unsigned char *pid;
			size_t plen;

			key[0] = SESSDB_NS_OPAQUE;
			if (id_len <= REC_KEY_MAX - 1) {
				memcpy(key + 1, id, id_len);
				CU_ASSERT_EQUAL(rec_key_parse(key, 1 + id_len, &ns,
				    &pid, &plen), REC_BAD_KEY);
			}
		}
	}
}

static void
test_strerror(void)
{
	for (int s = REC_OK; s <= REC_BAD_KEY; s++)
		CU_ASSERT(strcmp(rec_strerror((enum rec_status)s), "unknown record status") != 0);
	CU_ASSERT_STRING_EQUAL(rec_strerror((enum rec_status)999), "unknown record status");
}

static const struct tc_case cases[] = {
	{ "roundtrip", test_roundtrip },
	{ "layout", test_layout },
	{ "negative times", test_negative_times },
	{ "sealed header", test_sealed_header },
	{ "crc32c vectors", test_crc32c_vectors },
	{ "malformed records", test_malformed },
	{ "value under wrong key", test_wrong_key },
	{ "opaque keys", test_opaque_keys },
	{ "keys", test_keys },
	{ "strerror", test_strerror },
};

int
main(void)
{
	static const struct tc_suite suites[] = {
		TC_SUITE("record", cases, NULL, NULL),
	};

	return tc_run(suites, TC_NELEM(suites));
}
