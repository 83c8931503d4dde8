/*
 * NAME
 *	freescan - LD_PRELOAD shim: count freed heap blocks that still hold a
 *	secret, by the library that freed them
 *
 * SYNOPSIS
 *	FREESCAN=HEX[,HEX...] LD_PRELOAD=.../libfreescan.so PROGRAM ...
 *
 * DESCRIPTION
 *	Wraps free() and realloc().  Before a block goes back to the
 *	allocator (free, or a realloc that moves it), its whole usable size
 *	is searched for each byte string of $FREESCAN (hex; the test passes
 *	the first 16 bytes of every master key in the store).  A hit is
 *	counted against the object that called free: the program itself,
 *	libcrypto, libssl, libsessdb, libgdbm or "other".  At exit one line
 *	goes to stderr:
 *
 *	    freescan: N freed blocks held a secret: OBJ=N ...
 *
 *	With $FREESCAN_BT set, each hit also prints a backtrace.  Used by
 *	tests/sessdump_test.py (case wipe) to show that sessdump wipes what
 *	it frees, and which freed blocks others leave behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NEEDLES	256
#define NEEDLE_LEN	16
#define MAX_OBJS	8

static void	(*real_free)(void *);
static void	*(*real_realloc)(void *, size_t);
static unsigned char needles[MAX_NEEDLES][NEEDLE_LEN];
static size_t	nlen[MAX_NEEDLES], nneedles;
static int	ready, inside;
static unsigned long hits;
static struct {
	char		name[64];
	unsigned long	n;
} objs[MAX_OBJS];

/* hexval - one hex digit's value. */
static int
hexval(int c)
{
	return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* init - find the real functions and parse $FREESCAN. */
static void
init(void)
{
	const char *s = getenv("FREESCAN");

	real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	while (s != NULL && *s != '\0' && nneedles < MAX_NEEDLES) {
		size_t n = 0;

		while (s[0] && s[1] && s[0] != ',' && n < NEEDLE_LEN) {
			needles[nneedles][n++] =
			    (unsigned char)(hexval(s[0]) << 4 | hexval(s[1]));
			s += 2;
		}
		while (*s != '\0' && *s != ',')
			s++;
		if (*s == ',')
			s++;
		if (n > 0)
			nlen[nneedles++] = n;
	}
	ready = 1;
}

/* holds - whether block p contains one of the needles. */
static int
holds(void *p)
{
	size_t size = malloc_usable_size(p);

	for (size_t i = 0; i < nneedles; i++)
		if (memmem(p, size, needles[i], nlen[i]) != NULL)
			return 1;
	return 0;
}

/* object_name - a short name for the object that holds address a. */
static const char *
object_name(void *a)
{
	static const char *known[] = { "libcrypto", "libssl", "libsessdb",
	    "libgdbm", "libc." };
	Dl_info info;
	const char *base;

	if (dladdr(a, &info) == 0 || info.dli_fname == NULL)
		return "other";
	base = strrchr(info.dli_fname, '/');
	base = base != NULL ? base + 1 : info.dli_fname;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strncmp(base, known[i], strlen(known[i])) == 0)
			return known[i];
	if (strstr(base, ".so") == NULL)
		return "program";
	return "other";
}

/* count - one hit for the object that called free at caller. */
static void
count(void *caller)
{
	const char *name = object_name(caller);
	size_t i;

	hits++;
	for (i = 0; i < MAX_OBJS && objs[i].name[0] != '\0'; i++)
		if (strcmp(objs[i].name, name) == 0)
			break;
	if (i == MAX_OBJS)
		i = MAX_OBJS - 1;
	snprintf(objs[i].name, sizeof objs[i].name, "%s", name);
	objs[i].n++;
	if (getenv("FREESCAN_BT") != NULL) {
		void *bt[16];
		int n = backtrace(bt, 16);

		fputs("freescan: a block holding a secret freed at:\n", stderr);
		backtrace_symbols_fd(bt, n, STDERR_FILENO);
	}
}

/* free - scan, then free. */
void
free(void *p)
{
	if (!ready)
		init();
	if (p != NULL && !inside) {
		inside = 1;
		if (holds(p))
			count(__builtin_return_address(0));
		inside = 0;
	}
	real_free(p);
}

/* realloc - a moved block is freed: scan it first. */
void *
realloc(void *p, size_t n)
{
	void *caller = __builtin_return_address(0);
	int held = 0;
	void *q;

	if (!ready)
		init();
	if (p != NULL && !inside) {
		inside = 1;
		held = holds(p);
		inside = 0;
	}
	q = real_realloc(p, n);
	if (held && q != p) {
		inside = 1;
		count(caller);
		inside = 0;
	}
	return q;
}

/* report - the summary line at exit. */
__attribute__((destructor)) static void
report(void)
{
	char buf[512];
	int len = snprintf(buf, sizeof buf,
	    "freescan: %lu freed blocks held a secret:", hits);

	for (size_t i = 0; i < MAX_OBJS && objs[i].name[0] != '\0'; i++)
		len += snprintf(buf + len, sizeof buf - (size_t)len, " %s=%lu",
		    objs[i].name, objs[i].n);
	len += snprintf(buf + len, sizeof buf - (size_t)len, "\n");
	if (write(STDERR_FILENO, buf, (size_t)len) < 0)
		return;
}
