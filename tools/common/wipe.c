/*
 * NAME
 *	wipe.c - frees that wipe first, for buffers that held secrets
 *
 * DESCRIPTION
 *	tool_wipe_free() is for the tools' own buffers that held a session,
 *	its DER or its PEM.
 *
 *	tool_wipe_openssl_frees() does the same for OpenSSL's allocations.
 *	Decoding a session (d2i_SSL_SESSION) copies the master key into a
 *	temporary ASN.1 string that OpenSSL frees without wiping, and PEM
 *	reading and writing leave base64 fragments in freed buffers.  The
 *	allocator installed here wipes the whole block (its size from
 *	malloc_usable_size) in free and realloc, so none of that stays in
 *	freed memory.  sessdump installs it; sessdemo does not, so that the
 *	realpeer wipe test can show what the library alone leaves.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tooling.h"

/* tool_wipe_free - wipe len bytes of p, then free it; NULL is a no-op. */
void
tool_wipe_free(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

/* wipe_malloc, wipe_realloc, wipe_free - the allocator given to OpenSSL. */
static void *
wipe_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void
wipe_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

static void *
wipe_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (p == NULL)
		return malloc(n);
	if (n == 0) {
		wipe_free(p, file, line);
		return NULL;
	}
	old = malloc_usable_size(p);
	if ((q = malloc(n)) == NULL)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	wipe_free(p, file, line);
	return q;
}

/* tool_wipe_openssl_frees - install the wiping allocator; it must run
 * before OpenSSL allocates anything.  0, or -1 if it came too late. */
int
tool_wipe_openssl_frees(void)
{
	return CRYPTO_set_mem_functions(wipe_malloc, wipe_realloc, wipe_free) ?
	    0 : -1;
}
