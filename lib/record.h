/*
 * NAME
 *	record.h - the on-disk key and record codec (pure: no I/O, no allocation)
 *
 * DESCRIPTION
 *	Key:    one namespace byte, then the identifier: 1..SESSDB_ID_MAX bytes
 *	        for sessions ('S', 'C'); for opaque payloads ('O', format 2.1)
 *	        a consumer name (1..SESSDB_CONSUMER_MAX bytes, no 0x00), 0x00,
 *	        and the consumer's key (1 or more bytes), SESSDB_OPAQUE_ID_MAX
 *	        bytes in all.
 *	Value:  a 32-byte big-endian header, then the payload:
 *
 *	  off len field
 *	    0   4 magic "SDBR"
 *	    4   1 format version: REC_VERSION (1) for a plain record,
 *	          REC_VERSION_SEALED (2) for a sealed one
 *	    5   1 flags (version 1: none; version 2: REC_F_SEALED; unknown
 *	          bits make the record unreadable)
 *	    6   2 key id of a sealed record (seal.h); zero otherwise
 *	    8   8 created, unix seconds, signed
 *	   16   8 expires, unix seconds, signed
 *	   24   4 payload length
 *	   28   4 CRC-32C of key, header bytes 0..27, and payload
 *	   32   - payload
 *
 *	docs/FORMAT.md is the normative description; keep the two in step.
 */
#ifndef SESSDB_RECORD_H
#define SESSDB_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "sessdb.h"

#define REC_MAGIC	"SDBR"
#define REC_VERSION	1	/* plain records: what older versions read */
#define REC_VERSION_SEALED 2	/* records with flags (sealed) */
#define REC_HEADER_LEN	SESSDB_RECORD_OVERHEAD
#define REC_KEY_MAX	(1 + SESSDB_OPAQUE_ID_MAX)	/* longest key of any namespace */
#define REC_SESSION_KEY_MAX (1 + SESSDB_ID_MAX)	/* longest session key ('S', 'C') */
#define REC_NS_META	0x00	/* the store's own keys (the marker), never records */
#define REC_F_SEALED	0x01	/* payload: nonce, ciphertext, tag (seal.h) */
#define REC_FLAGS_KNOWN	REC_F_SEALED
#define REC_AAD_LEN	(REC_HEADER_LEN - 4) /* header bytes a seal binds:
					   all but the checksum */

enum rec_status {
	REC_OK = 0,
	REC_EMPTY,		/* zero-length value */
	REC_SHORT,		/* shorter than the header */
	REC_BAD_MAGIC,
	REC_BAD_VERSION,
	REC_BAD_FLAGS,		/* unknown flag bits */
	REC_BAD_RESERVED,	/* reserved bytes (key id) not zero in a plain record */
	REC_BAD_LENGTH,		/* payload length disagrees with the value size */
	REC_BAD_TIMES,		/* expires not after created */
	REC_BAD_CHECKSUM,	/* torn write, bit rot, or value under the wrong key */
	REC_BAD_KEY,		/* key: empty, unknown namespace, id too short or long,
				   opaque id without its consumer name */
};

struct rec {
	unsigned		flags;
	int64_t			created;
	int64_t			expires;
	const unsigned char	*payload;	/* points into the decoded value */
	size_t			payload_len;
	unsigned		key_id;		/* sealed: the key that sealed it */
};

/* rec_strerror - a short description of status. */
const char *rec_strerror(enum rec_status status);

/* rec_key_make - write the key for (ns, id) into out; returns its length or 0 if invalid. */
size_t rec_key_make(unsigned char out[REC_KEY_MAX], unsigned ns, const void *id, size_t id_len);

/* rec_key_parse - split a key into namespace and id (pointing into key). */
enum rec_status rec_key_parse(const unsigned char *key, size_t key_len,
    unsigned *ns, const unsigned char **id, size_t *id_len);

/* rec_encode - write header and payload for key into out, which holds
 * REC_HEADER_LEN + r->payload_len bytes.  r->payload may alias nothing in out. */
void rec_encode(unsigned char *out, const unsigned char *key, size_t key_len,
    const struct rec *r);

/* rec_encode_header - write header bytes 0..27 (all but the checksum)
 * for r, whose payload_len is the length the payload will have: a seal
 * binds these bytes before the payload exists. */
void rec_encode_header(unsigned char *out, const struct rec *r);

/* rec_encode_finish - write the checksum of a record whose header and
 * payload (payload_len bytes) are in place in out. */
void rec_encode_finish(unsigned char *out, const unsigned char *key,
    size_t key_len);

/* rec_decode - check and parse value (stored under key) into r; r->payload
 * points into value.  Returns REC_OK or why the record is unreadable. */
enum rec_status rec_decode(const unsigned char *value, size_t value_len,
    const unsigned char *key, size_t key_len, struct rec *r);

/* rec_key_is_meta - is key one of the store's own (not a record)? */
static inline int
rec_key_is_meta(const void *key, size_t key_len)
{
	return key_len > 0 && ((const unsigned char *)key)[0] == REC_NS_META;
}

/* rec_crc32c - CRC-32C (Castagnoli), continuing from crc (start with 0). */
uint32_t rec_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* SESSDB_RECORD_H */
