/*
 * NAME
 *	seal.c - key files and AEAD sealing of record payloads
 *
 * SYNOPSIS
 *	#include "seal.h"
 *
 * DESCRIPTION
 *	AES-256-GCM through OpenSSL's EVP interface.  Each key keeps its own
 *	cipher contexts, set up with the key once, so that sealing or
 *	opening a record only sets a nonce: the key schedule is not redone
 *	per record.  The nonce is 12 fresh random bytes per record: with
 *	random nonces a key should seal well under 2^32 records (NIST SP
 *	800-38D), which docs/OPERATIONS.md turns into a rotation rule.
 *
 *	RAND_bytes costs about 1.7 us a call here (OpenSSL 3.0), more than
 *	the sealing itself, so nonces are drawn NONCE_BATCH at a time into a
 *	buffer and each used once.  A forked child must never use nonces its
 *	parent also holds (the same nonce twice under one key gives GCM's
 *	authentication key away): a fork generation bumped by pthread_atfork
 *	in the child makes it throw the buffer away and draw its own.
 *
 *	The key file is checked like the store's own files (a regular file,
 *	not a link, owned by us, nobody else may read it), read whole, and
 *	parsed by seal_keys_parse, which does no I/O so it can be fuzzed.
 *	This file needs nothing of the store but sessdb.h's error codes, so
 *	the fuzzer builds from it alone (tests/fuzz/README.md).
 *
 * DIAGNOSTICS
 *	seal_load says what is wrong with a key file in err; seal_seal and
 *	seal_open return statuses, never print.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "seal.h"
#include "sessdb.h"

/* Largest key file read: a few bytes more than SEAL_KEYS_MAX keys, so
 * that one key too many is reported as such and not as a short read. */
#define KEYFILE_MAX	(SEAL_KEY_LEN * (SEAL_KEYS_MAX + 1))

#define NONCE_BATCH	64	/* nonces drawn per RAND_bytes call */

struct seal {
	struct seal_keys keys;
	unsigned char	nonces[NONCE_BATCH * SEAL_NONCE_LEN];
	size_t		nonces_left;		/* unused, at the end of nonces */
	unsigned long	nonces_gen;		/* fork generation they belong to */
	EVP_CIPHER_CTX	*enc;			/* newest key, sealing */
	EVP_CIPHER_CTX	*dec[SEAL_KEYS_MAX];	/* each key, opening; lazily */
};

static const char id_label[] = "sessdb key id";

/* The fork generation: bumped in every child, so that a seal sees that
 * its buffered nonces are its parent's too. */
static volatile unsigned long fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
	fork_gen++;
}

static void
fork_register(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

/* next_nonce - a nonce used nowhere else: the next of the buffer, drawn
 * again when empty or inherited through fork.  0, or -1. */
static int
next_nonce(struct seal *s, unsigned char *nonce)
{
	if (s->nonces_left == 0 || s->nonces_gen != fork_gen) {
		s->nonces_gen = fork_gen;
		s->nonces_left = 0;
		if (RAND_bytes(s->nonces, sizeof(s->nonces)) != 1)
			return -1;
		s->nonces_left = NONCE_BATCH;
	}
	s->nonces_left--;
	memcpy(nonce, s->nonces + s->nonces_left * SEAL_NONCE_LEN, SEAL_NONCE_LEN);
	/* a used nonce is not kept: nothing in the buffer is used twice */
	OPENSSL_cleanse(s->nonces + s->nonces_left * SEAL_NONCE_LEN,
	    SEAL_NONCE_LEN);
	return 0;
}

unsigned
seal_key_id(const unsigned char key[SEAL_KEY_LEN])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned id = 0;

	if (c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, id_label, sizeof(id_label) - 1) == 1 &&
	    EVP_DigestUpdate(c, key, SEAL_KEY_LEN) == 1 &&
	    EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen >= 2)
		id = (unsigned)md[0] << 8 | md[1];
	EVP_MD_CTX_free(c);
	return id;
}

/* weak - a key of one repeated byte: /dev/zero, a file of spaces. */
static int
weak(const unsigned char *k)
{
	for (size_t i = 1; i < SEAL_KEY_LEN; i++)
		if (k[i] != k[0])
			return 0;
	return 1;
}

enum seal_parse_status
seal_keys_parse(const unsigned char *buf, size_t len, struct seal_keys *out)
{
	enum seal_parse_status st = SEAL_PARSE_OK;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len == 0)
		return SEAL_PARSE_EMPTY;
	if (len % SEAL_KEY_LEN != 0)
		return SEAL_PARSE_SIZE;
	if (len / SEAL_KEY_LEN > SEAL_KEYS_MAX)
		return SEAL_PARSE_TOO_MANY;
	for (size_t i = 0; i < len / SEAL_KEY_LEN && st == SEAL_PARSE_OK; i++) {
		const unsigned char *k = buf + i * SEAL_KEY_LEN;
		unsigned id;

		if (weak(k)) {
			st = SEAL_PARSE_WEAK;
			break;
		}
		id = seal_key_id(k);
		for (size_t j = 0; j < out->n; j++)
			if (out->k[j].id == id)
				st = SEAL_PARSE_DUP_ID;
		out->k[out->n].id = id;
		memcpy(out->k[out->n].bytes, k, SEAL_KEY_LEN);
		out->n++;
	}
	if (st != SEAL_PARSE_OK)
		OPENSSL_cleanse(out, sizeof(*out));
	return st;
}

const char *
seal_parse_strerror(enum seal_parse_status status)
{
	switch (status) {
	case SEAL_PARSE_OK:
		return "ok";
	case SEAL_PARSE_EMPTY:
		return "the key file is empty";
	case SEAL_PARSE_SIZE:
		return "the key file is not a whole number of 32-byte keys "
		    "(make one with: head -c 32 /dev/urandom)";
	case SEAL_PARSE_TOO_MANY:
		return "the key file holds more than 16 keys";
	case SEAL_PARSE_WEAK:
		return "a key is one byte repeated (not random)";
	case SEAL_PARSE_DUP_ID:
		return "two keys share an identifier (a key twice, or a 1 in "
		    "65536 clash: make another key)";
	default:
		return "unknown key file status";
	}
}

/* check_file - the key file's descriptor is fit to hold keys: 0, or -1
 * with err and *code. */
static int
check_file(int fd, const char *path, struct stat *st, char *err,
    size_t err_len, int *code)
{
	if (fstat(fd, st) == -1) {
		snprintf(err, err_len, "key file %s: %s", path, strerror(errno));
		*code = SESSDB_E_SYSTEM;
		return -1;
	}
	*code = SESSDB_E_KEY;
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, err_len, "key file %s: not a regular file", path);
		return -1;
	}
	if (st->st_uid != geteuid() && geteuid() != 0) {
		snprintf(err, err_len, "key file %s: owned by uid %u, not by us "
		    "(uid %u)", path, (unsigned)st->st_uid, (unsigned)geteuid());
		return -1;
	}
	if ((st->st_mode & 077) != 0) {
		snprintf(err, err_len, "key file %s: mode %04o lets others read "
		    "it; want 0600 or 0400 (chmod 600 %s)", path,
		    (unsigned)(st->st_mode & 07777), path);
		return -1;
	}
	if (st->st_size > KEYFILE_MAX) {
		snprintf(err, err_len, "key file %s: %lld bytes, more than %d "
		    "keys of %d bytes", path, (long long)st->st_size,
		    SEAL_KEYS_MAX, SEAL_KEY_LEN);
		return -1;
	}
	return 0;
}

struct seal *
seal_load(const char *path, char *err, size_t err_len, int *code)
{
	unsigned char buf[KEYFILE_MAX + 1];
	struct seal_keys keys;
	struct seal *s = NULL;
	enum seal_parse_status ps;
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd;

	/* O_NONBLOCK: a FIFO put in the key's place must not hang us; it is
	 * refused as not a regular file. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(err, err_len, "key file %s: %s%s", path, strerror(errno),
		    errno == ELOOP ? " (a symbolic link: refused)" : "");
		*code = errno == EACCES || errno == EPERM || errno == ELOOP ?
		    SESSDB_E_PERMISSION : errno == ENOENT ? SESSDB_E_KEY :
		    SESSDB_E_SYSTEM;
		return NULL;
	}
	if (check_file(fd, path, &st, err, err_len, code) == -1)
		goto out;
	/* Read to the end: the size may have changed since fstat. */
	while (got < sizeof(buf) && (n = read(fd, buf + got,
	    sizeof(buf) - got)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, err_len, "key file %s: %s", path,
			    strerror(errno));
			*code = SESSDB_E_IO;
			goto out;
		}
		got += (size_t)n;
	}
	ps = seal_keys_parse(buf, got, &keys);
	if (ps != SEAL_PARSE_OK) {
		snprintf(err, err_len, "key file %s: %s", path,
		    seal_parse_strerror(ps));
		*code = SESSDB_E_KEY;
		goto out;
	}
	s = seal_new(&keys);
	OPENSSL_cleanse(&keys, sizeof(keys));
	if (s == NULL) {
		snprintf(err, err_len, "key file %s: out of memory", path);
		*code = SESSDB_E_NOMEM;
	}
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return s;
}

struct seal *
seal_new(const struct seal_keys *keys)
{
	struct seal *s;

	if (keys->n == 0 || keys->n > SEAL_KEYS_MAX)
		return NULL;
	pthread_once(&fork_once, fork_register);
	if ((s = OPENSSL_secure_zalloc(sizeof(*s))) == NULL)
		return NULL;
	s->keys = *keys;
	s->enc = EVP_CIPHER_CTX_new();
	if (s->enc == NULL || EVP_EncryptInit_ex(s->enc, EVP_aes_256_gcm(), NULL,
	    s->keys.k[s->keys.n - 1].bytes, NULL) != 1) {
		seal_free(s);
		return NULL;
	}
	return s;
}

void
seal_free(struct seal *s)
{
	if (s == NULL)
		return;
	/* EVP_CIPHER_CTX_free cleanses the key schedule it holds. */
	EVP_CIPHER_CTX_free(s->enc);
	for (size_t i = 0; i < SEAL_KEYS_MAX; i++)
		EVP_CIPHER_CTX_free(s->dec[i]);
	OPENSSL_cleanse(s, sizeof(*s));
	OPENSSL_secure_free(s);
}

unsigned
seal_newest_id(const struct seal *s)
{
	return s->keys.k[s->keys.n - 1].id;
}

/* find - the index of key id, or -1. */
static int
find(const struct seal *s, unsigned id)
{
	for (size_t i = 0; i < s->keys.n; i++)
		if (s->keys.k[i].id == id)
			return (int)i;
	return -1;
}

int
seal_has_key(const struct seal *s, unsigned id)
{
	return s != NULL && find(s, id) >= 0;
}

size_t
seal_nkeys(const struct seal *s)
{
	return s->keys.n;
}

unsigned
seal_key_id_at(const struct seal *s, size_t i)
{
	return i < s->keys.n ? s->keys.k[i].id : 0;
}

/* aad_update - feed aad1 || aad2 to c: one call when they fit together
 * (every record's do: key and header are 61 bytes at most), since each
 * EVP call costs OpenSSL 3's dispatch. */
static int
aad_update(EVP_CIPHER_CTX *c, const unsigned char *aad1, size_t aad1_len,
    const unsigned char *aad2, size_t aad2_len)
{
	unsigned char buf[128];
	int n;

	if (aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return 0;
	if (aad1_len + aad2_len <= sizeof(buf)) {
		if (aad1_len > 0)
			memcpy(buf, aad1, aad1_len);
		if (aad2_len > 0)
			memcpy(buf + aad1_len, aad2, aad2_len);
		return EVP_CipherUpdate(c, NULL, &n, buf, (int)(aad1_len + aad2_len));
	}
	return EVP_CipherUpdate(c, NULL, &n, aad1, (int)aad1_len) == 1 &&
	    EVP_CipherUpdate(c, NULL, &n, aad2, (int)aad2_len) == 1;
}

int
seal_seal(struct seal *s, const unsigned char *aad1, size_t aad1_len,
    const unsigned char *aad2, size_t aad2_len, const unsigned char *pt,
    size_t len, unsigned char *out)
{
	unsigned char *nonce = out, *ct = out + SEAL_NONCE_LEN;
	int n, fin;

	if (len > INT32_MAX)
		return -1;
	if (next_nonce(s, nonce) == -1)
		return -1;
	if (EVP_EncryptInit_ex(s->enc, NULL, NULL, NULL, nonce) != 1 ||
	    aad_update(s->enc, aad1, aad1_len, aad2, aad2_len) != 1 ||
	    EVP_EncryptUpdate(s->enc, ct, &n, pt, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(s->enc, ct + n, &fin) != 1 ||
	    (size_t)n + (size_t)fin != len ||
	    EVP_CIPHER_CTX_ctrl(s->enc, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
	    ct + len) != 1) {
		OPENSSL_cleanse(ct, len);
		return -1;
	}
	return 0;
}

enum seal_open_status
seal_open(struct seal *s, unsigned id, const unsigned char *aad1,
    size_t aad1_len, const unsigned char *aad2, size_t aad2_len,
    const unsigned char *in, size_t in_len, unsigned char *out)
{
	const unsigned char *nonce = in, *ct = in + SEAL_NONCE_LEN;
	size_t len;
	EVP_CIPHER_CTX *c;
	int i, n, fin;

	if (s == NULL || (i = find(s, id)) < 0)
		return SEAL_NO_KEY;
	if (in_len < SEAL_OVERHEAD || in_len - SEAL_OVERHEAD > INT32_MAX)
		return SEAL_FAILED;
	len = in_len - SEAL_OVERHEAD;
	if (s->dec[i] == NULL) {
		if ((c = EVP_CIPHER_CTX_new()) == NULL)
			return SEAL_ERROR;
		if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL,
		    s->keys.k[i].bytes, NULL) != 1) {
			EVP_CIPHER_CTX_free(c);
			return SEAL_ERROR;
		}
		s->dec[i] = c;
	}
	c = s->dec[i];
	if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
	    aad_update(c, aad1, aad1_len, aad2, aad2_len) != 1 ||
	    EVP_DecryptUpdate(c, out, &n, ct, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
	    (void *)(ct + len)) != 1) {
		OPENSSL_cleanse(out, len);
		return SEAL_ERROR;
	}
	/* The tag is checked here: nothing decrypted counts before it. */
	if (EVP_DecryptFinal_ex(c, out + n, &fin) != 1) {
		OPENSSL_cleanse(out, len);
		return SEAL_FAILED;
	}
	return SEAL_OPENED;
}
