/*
 * NAME
 *	seal.h - sealed records: AEAD keys, key files, seal and open
 *
 * SYNOPSIS
 *	#include "seal.h"
 *
 * DESCRIPTION
 *	A key file holds one or more 32-byte keys, back to back, raw bytes
 *	(`head -c 32 /dev/urandom`): the last one is the newest and seals
 *	new records; every one opens records sealed under it.  A key's
 *	identifier is derived from its bytes (the first two bytes of
 *	SHA-256("sessdb key id" || key)), so it stays the same whatever its
 *	place in the file, and a record names the key that sealed it.
 *
 *	A sealed payload is nonce (12 bytes, fresh from RAND_bytes) ||
 *	ciphertext || tag (16 bytes), AES-256-GCM.  The associated data is
 *	the record key (namespace and identifier) and the record header
 *	without its checksum (which holds the key id, created, expires and
 *	the payload length): a record cannot move to another key, be
 *	relabelled to another sealing key or have its times changed
 *	without failing to open.
 *
 *	seal_keys_parse is pure (no I/O, no allocation): it is fuzzed
 *	(tests/fuzz/fuzz_keyfile.c).  Key bytes are wiped when freed.
 */
#ifndef SESSDB_SEAL_H
#define SESSDB_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN	32
#define SEAL_NONCE_LEN	12
#define SEAL_TAG_LEN	16
#define SEAL_OVERHEAD	(SEAL_NONCE_LEN + SEAL_TAG_LEN)	/* SESSDB_SEAL_OVERHEAD */
#define SEAL_KEYS_MAX	16	/* keys one file may hold */

/* The keys of one key file, oldest first; the last seals. */
struct seal_keys {
	size_t		n;
	struct {
		unsigned	id;
		unsigned char	bytes[SEAL_KEY_LEN];
	} k[SEAL_KEYS_MAX];
};

enum seal_parse_status {
	SEAL_PARSE_OK = 0,
	SEAL_PARSE_EMPTY,	/* no key at all */
	SEAL_PARSE_SIZE,	/* not a whole number of 32-byte keys */
	SEAL_PARSE_TOO_MANY,	/* more than SEAL_KEYS_MAX keys */
	SEAL_PARSE_WEAK,	/* a key of one repeated byte (/dev/zero, a typo) */
	SEAL_PARSE_DUP_ID,	/* two keys with one identifier (or one key twice) */
};

/* What opening a sealed payload found. */
enum seal_open_status {
	SEAL_OPENED = 0,
	SEAL_NO_KEY,		/* sealed under a key we do not hold */
	SEAL_FAILED,		/* authentication failed: tampered or damaged */
	SEAL_ERROR,		/* OpenSSL failed (out of memory) */
};

struct seal;

/* seal_keys_parse - split the bytes of a key file into keys (out); pure.
 * On failure out holds nothing (wiped). */
enum seal_parse_status seal_keys_parse(const unsigned char *buf, size_t len,
    struct seal_keys *out);

/* seal_parse_strerror - what is wrong with a key file, for a message. */
const char *seal_parse_strerror(enum seal_parse_status status);

/* seal_key_id - the identifier of a key (16 bits). */
unsigned seal_key_id(const unsigned char key[SEAL_KEY_LEN]);

/*
 * seal_load - read and check the key file at path: a regular file (not a
 *	symbolic link) owned by us (root may read any owner's), with no
 *	permission for group or others, holding whole keys.  Returns a
 *	seal, or NULL with a message in err and *code set (SESSDB_E_*).
 */
struct seal *seal_load(const char *path, char *err, size_t err_len, int *code);

/* seal_new - a seal over keys (copied; the caller wipes its copy). */
struct seal *seal_new(const struct seal_keys *keys);

/* seal_free - wipe the keys and release s; NULL is a no-op. */
void seal_free(struct seal *s);

/* seal_newest_id - the identifier of the key that seals. */
unsigned seal_newest_id(const struct seal *s);

/* seal_has_key - does s hold the key with identifier id? */
int seal_has_key(const struct seal *s, unsigned id);

/* seal_nkeys, seal_key_id_at - the identifiers held, oldest first. */
size_t seal_nkeys(const struct seal *s);
unsigned seal_key_id_at(const struct seal *s, size_t i);

/*
 * seal_seal - seal len bytes of pt under the newest key with associated
 *	data aad1 || aad2 into out (len + SEAL_OVERHEAD bytes: nonce,
 *	ciphertext, tag).  0, or -1 (OpenSSL failed).
 */
int seal_seal(struct seal *s, const unsigned char *aad1, size_t aad1_len,
    const unsigned char *aad2, size_t aad2_len, const unsigned char *pt,
    size_t len, unsigned char *out);

/*
 * seal_open - open in (in_len bytes, as seal_seal wrote them) sealed
 *	under key id, with the same associated data, into out
 *	(in_len - SEAL_OVERHEAD bytes).  out is wiped unless SEAL_OPENED.
 */
enum seal_open_status seal_open(struct seal *s, unsigned id,
    const unsigned char *aad1, size_t aad1_len, const unsigned char *aad2,
    size_t aad2_len, const unsigned char *in, size_t in_len, unsigned char *out);

#endif /* SESSDB_SEAL_H */
