/*
 * NAME
 *	index.c - the shared index of live records (see index.h)
 *
 * DESCRIPTION
 *	Slots are grouped in sets of INDEX_WAYS; a key lives in the set its
 *	CRC-32C names, in any slot of it.  Writers (one at a time: they hold
 *	LOCK_EX) follow the sequence-lock protocol: make the slot's number
 *	odd, write, make it even again.  Readers copy a slot between two
 *	reads of the number and keep the copy only if it did not change and
 *	was even.  When a set is full the slot that expires soonest goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index.h"
#include "record.h"

#define DEFAULT_SLOTS	16384		/* 16 MiB of slots */
#define MIN_SLOTS	1024
#define MAX_SLOTS	(1u << 20)	/* 1 GiB: a store capped at ~800k records */
#define INDEX_KEY_MAX	33		/* longest key a slot holds; longer ones are never indexed */

/* One slot: a 64-byte header, then the stored bytes. */
struct slot {
	uint32_t	seq;		/* odd while being written */
	uint16_t	key_len;	/* 0: empty */
	uint16_t	reserved;
	uint32_t	val_len;
	uint32_t	pad;
	int64_t		expires;
	unsigned char	key[INDEX_KEY_MAX];
	unsigned char	pad2[64 - 24 - INDEX_KEY_MAX];
	unsigned char	val[INDEX_SLOT_SIZE - 64];
};

_Static_assert(sizeof(struct slot) == INDEX_SLOT_SIZE, "slot layout");

uint32_t
index_geometry(uint64_t max_entries)
{
	/* A quarter more slots than records: sets fill unevenly. */
	uint64_t n = max_entries != 0 ? max_entries + max_entries / 4 : DEFAULT_SLOTS;
	uint32_t slots = MIN_SLOTS;

	while (slots < n && slots < MAX_SLOTS)
		slots *= 2;
	return slots;
}

int
index_open(struct index *ix, struct lockfile *lf)
{
	const struct lock_page *p = lf->page;
	struct stat st;
	uint32_t slots;
	size_t len;
	void *map;

	memset(ix, 0, sizeof(*ix));
	if (p == NULL)
		return 0;
	/* Read once (the page is shared), and only a geometry that
	 * index_geometry makes sizes the mapping: a damaged page once asked
	 * for a 16 GB lock file (tests/fuzz/corpus/dbfile/oom-index-slots). */
	slots = __atomic_load_n(&p->index_slots, __ATOMIC_ACQUIRE);
	if (slots < MIN_SLOTS || slots > MAX_SLOTS || (slots & (slots - 1)) != 0 ||
	    p->index_slot_size != INDEX_SLOT_SIZE)
		return 0;		/* no index, or one of another layout */
	len = (size_t)slots * INDEX_SLOT_SIZE;
	if (fstat(lf->fd, &st) == -1)
		return -1;
	if ((size_t)st.st_size < LOCK_PAGE_SIZE + len) {
		if (!lf->writable)
			return 0;	/* a writer will size it */
		if (ftruncate(lf->fd, (off_t)(LOCK_PAGE_SIZE + len)) == -1)
			return -1;
	}
	map = mmap(NULL, len, lf->writable ? PROT_READ | PROT_WRITE : PROT_READ,
	    MAP_SHARED, lf->fd, LOCK_PAGE_SIZE);
	if (map == MAP_FAILED)
		return -1;
	ix->base = map;
	ix->nslots = slots;
	ix->map_len = len;
	ix->writable = lf->writable;
	return 0;
}

void
index_close(struct index *ix)
{
	if (ix->base != NULL)
		munmap(ix->base, ix->map_len);
	memset(ix, 0, sizeof(*ix));
}

/* set_of - the first slot of key's set. */
static struct slot *
set_of(const struct index *ix, const unsigned char *key, size_t key_len)
{
	size_t sets = ix->nslots / INDEX_WAYS;
	uint32_t h = rec_crc32c(0, key, key_len);

	return (struct slot *)ix->base + (size_t)(h % sets) * INDEX_WAYS;
}

static int
same_key(const struct slot *s, const unsigned char *key, size_t key_len)
{
	return s->key_len == key_len && memcmp(s->key, key, key_len) == 0;
}

int
index_get(const struct index *ix, const unsigned char *key, size_t key_len,
    unsigned char **val, size_t *val_len)
{
	struct slot *set;

	if (ix->base == NULL || key_len == 0 || key_len > INDEX_KEY_MAX)
		return 0;
	set = set_of(ix, key, key_len);
	for (int w = 0; w < INDEX_WAYS; w++) {
		struct slot *s = &set[w];

		for (int tries = 0; tries < 3; tries++) {
			uint32_t s1 = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
			size_t len;
			unsigned char *copy;

			if (s1 & 1)
				return 0;	/* being written: ask the file */
			if (!same_key(s, key, key_len))
				break;
			len = s->val_len;
			if (len == 0 || len > sizeof(s->val))
				return 0;
			if ((copy = malloc(len)) == NULL)
				return 0;
			memcpy(copy, s->val, len);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == s1) {
				*val = copy;
				*val_len = len;
				return 1;
			}
			explicit_bzero(copy, len);
			free(copy);
		}
	}
	return 0;
}

/* slot_begin, slot_end - the writer's side of the sequence lock.  A slot
 * left odd by a killed writer stays odd through begin. */
static void
slot_begin(struct slot *s)
{
	uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);

	if (!(seq & 1))
		__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
slot_end(struct slot *s)
{
	__atomic_store_n(&s->seq, __atomic_load_n(&s->seq, __ATOMIC_RELAXED) + 1,
	    __ATOMIC_RELEASE);
}

/* slot_empty - clear one slot (wiping the secret it held). */
static void
slot_empty(struct slot *s)
{
	slot_begin(s);
	explicit_bzero(s->val, s->val_len <= sizeof(s->val) ? s->val_len :
	    sizeof(s->val));
	s->key_len = 0;
	s->val_len = 0;
	s->expires = 0;
	slot_end(s);
}

void
index_clear(struct index *ix, const unsigned char *key, size_t key_len)
{
	struct slot *set;

	if (ix->base == NULL || !ix->writable || key_len > INDEX_KEY_MAX)
		return;
	set = set_of(ix, key, key_len);
	for (int w = 0; w < INDEX_WAYS; w++)
		if (same_key(&set[w], key, key_len) || (set[w].seq & 1))
			slot_empty(&set[w]);
}

void
index_put(struct index *ix, const unsigned char *key, size_t key_len,
    const unsigned char *val, size_t val_len, int64_t expires, int64_t now)
{
	struct slot *set, *s = NULL;

	if (ix->base == NULL || !ix->writable || key_len > INDEX_KEY_MAX)
		return;
	index_clear(ix, key, key_len);
	if (val_len > sizeof(set->val))
		return;		/* the file keeps it; lookups ask the file */
	set = set_of(ix, key, key_len);
	for (int w = 0; w < INDEX_WAYS && s == NULL; w++)
		if (set[w].key_len == 0 || set[w].expires <= now)
			s = &set[w];
	if (s == NULL) {		/* full: the soonest to expire goes */
		s = &set[0];
		for (int w = 1; w < INDEX_WAYS; w++)
			if (set[w].expires < s->expires)
				s = &set[w];
	}
	slot_begin(s);
	memcpy(s->key, key, key_len);
	s->key_len = (uint16_t)key_len;
	memcpy(s->val, val, val_len);
	if (s->val_len > val_len)
		explicit_bzero(s->val + val_len, s->val_len - val_len);
	s->val_len = (uint32_t)val_len;
	s->expires = expires;
	slot_end(s);
}

int
index_walk(struct index *ix, index_walk_fn fn, void *arg)
{
	struct slot *slots = (struct slot *)ix->base;

	for (size_t i = 0; ix->base != NULL && ix->writable && i < ix->nslots; i++) {
		struct slot *s = &slots[i];
		int rc;

		if (s->key_len == 0 && !(s->seq & 1))
			continue;
		if ((s->seq & 1) || s->key_len > INDEX_KEY_MAX ||
		    s->val_len == 0 || s->val_len > sizeof(s->val))
			rc = INDEX_DROP;
		else
			rc = fn(arg, s->key, s->key_len, s->val, s->val_len);
		if (rc == INDEX_STOP)
			return -1;
		if (rc == INDEX_DROP)
			slot_empty(s);
	}
	return 0;
}

void
index_reset(struct index *ix)
{
	struct slot *slots = (struct slot *)ix->base;

	if (ix->base == NULL || !ix->writable)
		return;
	for (size_t i = 0; i < ix->nslots; i++)
		if (slots[i].key_len != 0 || (slots[i].seq & 1))
			slot_empty(&slots[i]);
}

uint64_t
index_boot(void)
{
	char buf[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	return buf[0] != '\0' ? (uint64_t)rec_crc32c(0, buf, strlen(buf)) << 32 |
	    rec_crc32c(1, buf, strlen(buf)) : 0;
}
