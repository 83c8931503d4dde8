/*
 * NAME
 *	sessdb.h - a TLS session store shared by many processes: a GDBM file, or Redis
 *
 * SYNOPSIS
 *	#include <sessdb.h>
 *
 * DESCRIPTION
 *	A store maps keys (a namespace byte and an identifier: 1..32 bytes
 *	for sessions, up to 1280 for other consumers' opaque payloads) to
 *	records (opaque payload bytes with a creation and an expiry time) in one
 *	GDBM file.  Any number of processes may open the same file: readers
 *	take a shared flock on "<db>.lock", writers an exclusive one, and each
 *	handle notices other processes' writes through a change counter kept
 *	in that lock file, so it never reads through stale GDBM state.
 *
 *	The store knows nothing of OpenSSL; see <sessdb_ssl.h> for the glue.
 *
 * RETURN VALUES
 *	Unless a function says otherwise it returns 0 on success and -1 on
 *	error; sessdb_error() then describes the last error of that handle,
 *	and sessdb_errcode() says what kind of error it was (SESSDB_E_*),
 *	for a caller that must act on it (retry later, alert, give up).
 *	Lookups distinguish three outcomes: SESSDB_OK (hit), SESSDB_MISS (no
 *	live record: absent, expired or corrupt) and -1 (error).  A miss is
 *	not an error.
 *
 * CAVEATS
 *	- A handle is not thread-safe: use one handle per thread, or serialise.
 *	- A handle may be opened before fork(); each process notices the fork
 *	  and reopens its own lock descriptor and GDBM handle on its next call
 *	  (flock locks belong to the open file description, which fork shares).
 *	- Two handles on one file in one process are safe (each has its own
 *	  descriptors and locks, and no call returns holding a lock), but
 *	  cost twice the memory; prefer one handle per process and thread.
 *	- Open the store as the user that will use it: files owned by another
 *	  user are refused, and a handle reopens the file after other
 *	  processes write, so a server that opens it as root and then drops
 *	  privileges will be refused on its next reopen.
 *	- Locks are flock(2): do not put the store on a network filesystem.
 *	- Durability: records are written to the file (page cache) at once but
 *	  not fsync'ed; an operating system crash may lose recent records.  A
 *	  killed process loses nothing it committed.
 */
#ifndef SESSDB_H
#define SESSDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include <sessdb_version.h>	/* SESSDB_VERSION_MAJOR/MINOR/PATCH/STRING */

/* Return values besides 0 (SESSDB_OK) and -1 (error). */
#define SESSDB_OK	0
#define SESSDB_MISS	1	/* get/take: no live record under that key */
#define SESSDB_FULL	2	/* put: declined, the store is at its cap */
#define SESSDB_EXISTS	3	/* add: a live record is already there */

/*
 * Error codes: sessdb_errcode() of a handle, sessdb_open_errcode() after a
 * failed open.  Values from 1000 up, so that sessdb_strerror() also names
 * errno values (below 1000).  The message (sessdb_error) says more.
 */
#define SESSDB_E_ARG		1000	/* bad argument: key, size, flags */
#define SESSDB_E_TOO_LARGE	1001	/* payload over SESSDB_PAYLOAD_MAX */
#define SESSDB_E_READONLY	1002	/* a write on a read-only handle */
#define SESSDB_E_LOCK_TIMEOUT	1003	/* lock not granted in lock_timeout_ms */
#define SESSDB_E_DAMAGED	1004	/* damaged store (repaired, moved aside,
					   or awaiting a writer's repair) */
#define SESSDB_E_NO_SPACE	1005	/* no space (ENOSPC, EDQUOT): nothing written */
#define SESSDB_E_IO		1006	/* I/O error (EIO) */
#define SESSDB_E_PERMISSION	1007	/* refused: owner, mode, symlink, EACCES */
#define SESSDB_E_NOT_STORE	1008	/* the path is not a sessdb store: untouched */
#define SESSDB_E_NOT_FOUND	1009	/* open: no store there (RDONLY, NOCREATE) */
#define SESSDB_E_BACKEND	1010	/* the backend is unavailable */
#define SESSDB_E_NOMEM		1011	/* out of memory */
#define SESSDB_E_SYSTEM		1012	/* another system error */
#define SESSDB_E_KEY		1013	/* key file refused: missing, mode,
					   owner, size (the message says) */

/* Key namespaces (first byte of every key). */
#define SESSDB_NS_SERVER 0x53	/* 'S': server-side session ID / ticket ID */
#define SESSDB_NS_CLIENT 0x43	/* 'C': client sessions (peer key, slot: sessdb_ssl.h) */
/* 'O': opaque payloads of other consumers (Apache's socache users: OCSP
 * stapling, authn, the HTTP cache).  The identifier is the consumer's name
 * (1..SESSDB_CONSUMER_MAX bytes, no 0x00), a 0x00 byte, then the
 * consumer's own key (1 or more bytes, any bytes), SESSDB_OPAQUE_ID_MAX in
 * all.  The store never looks inside the payload; sessdump lists, counts
 * and exports it as it is. */
#define SESSDB_NS_OPAQUE 0x4f
#define SESSDB_CONSUMER_MAX 64
#define SESSDB_OPAQUE_ID_MAX 1280	/* a key of 1 KiB with a long name */

#define SESSDB_ID_MAX	32	/* longest identifier in the session namespaces
				   ('S', 'C'), as SSL_MAX_SSL_SESSION_ID_LENGTH */
#define SESSDB_PAYLOAD_MAX (1u << 20) /* longest payload accepted by put */
#define SESSDB_RECORD_OVERHEAD 32	/* bytes a stored value holds beyond its
					   payload (the record header) */
#define SESSDB_SEAL_OVERHEAD 28		/* and a sealed one beyond that (nonce
					   and tag) */

/* Open flags (struct sessdb_options.flags). */
#define SESSDB_RDONLY	0x01	/* never write; the file must exist */
#define SESSDB_NOCREATE	0x02	/* fail if the database does not exist */

/* Log levels passed to the log callback. */
#define SESSDB_LOG_ERR		3
#define SESSDB_LOG_WARNING	4
#define SESSDB_LOG_INFO		6

struct sessdb;

/*
 * sessdb_options - how to open a store.  Zero every field you do not set
 * (memset or a designated initialiser): zero always means "the default".
 */
struct sessdb_options {
	unsigned	flags;		/* SESSDB_RDONLY, SESSDB_NOCREATE */
	uint32_t	default_ttl;	/* seconds, for put(expires == 0); default 300 */
	uint32_t	max_ttl;	/* seconds, expiry is capped at now + max_ttl;
					   default 86400 */
	uint64_t	max_entries;	/* cap on the number of records; 0 = none */
	uint64_t	max_bytes;	/* cap on the key + value bytes of all
					   records (GDBM adds its overhead to
					   the file); 0 = none */
	unsigned	lock_timeout_ms; /* longest wait for a lock; default 1000 */
	unsigned	sweep_batch;	/* keys deleted per exclusive lock; default 256 */
	/* Called for recoveries, damaged records and files, I/O failures
	   and other events an operator should see (not for every error a
	   call returns: read those with sessdb_error); may be NULL.  msg is
	   valid only during the call. */
	void		(*log)(void *arg, int level, const char *msg);
	void		*log_arg;
	/* Clock in unix seconds; NULL = time(NULL).  Tests inject a fake one. */
	int64_t		(*clock)(void *arg);
	void		*clock_arg;
	/* Sealing (docs/OPERATIONS.md, "Sealing"): a file of one or more
	   32-byte random keys (head -c 32 /dev/urandom), mode 0600 or 0400,
	   owned by us (root may read any owner's).  The last key seals new
	   records with AES-256-GCM; every key opens the records it sealed.
	   With keys, plain records are misses to get/take (anyone who can
	   write the store could plant one; sessdb_rekey seals them).
	   NULL: records are stored plain, sealed ones are misses.  Read
	   during sessdb_open only; the keys are kept (wiped at close). */
	const char	*key_file;
};

/* Per-handle counters since open (or the last sessdb_stats_reset). */
struct sessdb_stats {
	uint64_t hits;		/* get/take returned a live record */
	uint64_t misses;	/* get/take found nothing live (incl. expired, corrupt) */
	uint64_t stores;	/* put stored a record */
	uint64_t declined;	/* put declined: store full */
	uint64_t deletes;	/* delete/take removed a record */
	uint64_t expired;	/* expired records removed (lookup or sweep) */
	uint64_t corrupt;	/* records that failed to decode (and were removed
				   unless the handle is read-only) */
	uint64_t errors;	/* calls that returned -1 */
	uint64_t lock_timeouts;	/* lock waits that reached lock_timeout_ms */
	uint64_t reopens;	/* GDBM handle reopened after another process
				   wrote; Redis: reconnections */
	uint64_t recoveries;	/* damaged files recovered or moved aside */
	uint64_t tampered;	/* sealed records that failed authentication
				   (misses, removed like corrupt ones) */
	uint64_t sealed_nokey;	/* sealed records under a key this handle does
				   not hold (misses, never removed) */
	uint64_t unsealed;	/* plain records met by a handle with keys
				   (misses, kept for sessdb_rekey) */
};

/* Metadata of a record, filled by get/take when asked. */
struct sessdb_meta {
	int64_t		created;	/* unix seconds */
	int64_t		expires;	/* unix seconds; live while now < expires */
	unsigned	flags;		/* record flags: SESSDB_REC_SEALED */
	unsigned	key_id;		/* sealed: the id of the key that sealed it */
};

#define SESSDB_REC_SEALED	0x01	/* meta.flags: the record is sealed */

/* struct sessdb_record.seal: what became of a sealed record. */
#define SESSDB_SEAL_NONE	0	/* not sealed (or undecodable) */
#define SESSDB_SEAL_OPENED	1	/* sealed and opened: data is the payload */
#define SESSDB_SEAL_NOKEY	2	/* sealed under a key not given: problem
					   says so, data is the stored value */
#define SESSDB_SEAL_TAMPERED	3	/* sealed, fails authentication under its
					   key: problem says so, data as NOKEY */

/*
 * One record as seen by sessdb_foreach().  All pointers are valid only
 * during the callback.  When problem is non-NULL the record failed to
 * decode: problem says why, key/key_len hold the raw key, and the other
 * fields are zero except data/len, which hold the raw value.  A sealed
 * record that could not be opened (seal is SESSDB_SEAL_NOKEY or
 * SESSDB_SEAL_TAMPERED) also has a problem, but its ns, id and meta are
 * filled: its header is sound, and it is never removed as undecodable.
 */
struct sessdb_record {
	unsigned		ns;
	const unsigned char	*id;
	size_t			id_len;
	const unsigned char	*key;	/* raw GDBM key (ns byte + id) */
	size_t			key_len;
	struct sessdb_meta	meta;
	const unsigned char	*data;	/* payload */
	size_t			len;
	const char		*problem; /* NULL when the record is well formed */
	unsigned		seal;	/* SESSDB_SEAL_* */
};

/* Return 0 to continue, non-zero to stop (sessdb_foreach returns that value). */
typedef int (*sessdb_foreach_fn)(void *arg, const struct sessdb_record *rec);

/*
 * sessdb_open - open (and by default create, mode 0600) the store at path.
 *	opts may be NULL for all defaults; it is copied.  The lock file is
 *	"<path>.lock".  Both are refused if they are symlinks, not regular
 *	files, group/world writable, or owned by another user (root may open
 *	files of any owner); a file that is not a sessdb store is refused and
 *	left untouched.  A damaged database is recovered or moved aside to
 *	"<path>.corrupt-<unixtime>".
 *	A path "redis://[[user]:password@]host[:port][/db][?prefix=P&
 *	timeout_ms=T&password_file=F]" or "unix:/socket[?...]" opens a store
 *	on a Redis server instead (when the library was built with hiredis):
 *	the same API and record bytes; Redis expires records itself, the caps
 *	are not enforced (use maxmemory), sessdb_info reports what Redis
 *	counts, compaction is a no-op, the stats' reopens count reconnections.
 *	A file whose name starts with "unix:" or "redis://" must be given as
 *	"./unix:...".  docs/OPERATIONS.md, "Redis", has the details.
 *	With opts->key_file, records are sealed (encrypted and
 *	authenticated); a key file that is not fit is refused
 *	(SESSDB_E_KEY, or SESSDB_E_PERMISSION when it cannot be read).
 *	Returns a handle, or NULL with a message in errbuf (if errbuf_len > 0)
 *	and the code in sessdb_open_errcode().
 */
struct sessdb *sessdb_open(const char *path, const struct sessdb_options *opts,
    char *errbuf, size_t errbuf_len);

/* sessdb_close - release everything; NULL is a no-op.  Never deletes records. */
void sessdb_close(struct sessdb *db);

/* sessdb_error - the last error message of db; valid until the next call on db. */
const char *sessdb_error(const struct sessdb *db);

/* sessdb_errcode - the code (SESSDB_E_*) of db's last error; 0 if none. */
int sessdb_errcode(const struct sessdb *db);

/* sessdb_open_errcode - the code of this thread's last failed sessdb_open
 * (0 after a successful one). */
int sessdb_open_errcode(void);

/* sessdb_strerror - a short name for a SESSDB_E_* code or an errno value;
 * a static string. */
const char *sessdb_strerror(int code);

/* sessdb_path - the database path db was opened with. */
const char *sessdb_path(const struct sessdb *db);

/*
 * sessdb_put - store data under (ns, id), replacing any record there.
 *	expires is absolute unix seconds; 0 means now + default_ttl; it is
 *	capped at now + max_ttl.  A record that would already be expired is
 *	refused (-1).  Returns 0, SESSDB_FULL (declined, counted) or -1.
 */
int sessdb_put(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires);

/*
 * sessdb_add - sessdb_put only where no live record is under (ns, id):
 *	the test and the store are one atomic step across processes (and,
 *	on Redis, across machines: SET NX), so of several processes adding
 *	under one key at once, exactly one stores.  An expired or unreadable
 *	record there is replaced.  Returns 0 (stored), SESSDB_EXISTS (a live
 *	record is there; nothing changed), SESSDB_FULL or -1.
 */
int sessdb_add(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    const void *data, size_t len, int64_t expires);

/*
 * sessdb_get - look up (ns, id).  On SESSDB_OK *data is a malloc'ed copy of
 *	the payload (release with sessdb_free) of *len bytes; meta, if not
 *	NULL, is filled.  An expired or corrupt record is a miss and is
 *	removed (unless read-only).  A sealed record is opened with the
 *	handle's keys: one that fails authentication is a miss, counted
 *	(tampered), logged and removed; one under a key the handle does not
 *	hold is a miss, counted (sealed_nokey) and kept.  A handle with keys
 *	takes sealed records only: a plain one is a miss, counted (unsealed)
 *	and kept (sessdb_rekey seals it).  sessdb_foreach shows it as is.
 *	Returns SESSDB_OK, SESSDB_MISS or -1.
 */
int sessdb_get(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta);

/*
 * sessdb_take - like sessdb_get, but the record is also deleted under the
 *	same exclusive lock: of many processes taking one key, exactly one
 *	gets SESSDB_OK.  A sealed record this handle holds no key for is
 *	written back (a lookup meanwhile misses it), not consumed.
 */
int sessdb_take(struct sessdb *db, unsigned ns, const void *id, size_t id_len,
    void **data, size_t *len, struct sessdb_meta *meta);

/* sessdb_delete - remove (ns, id); an absent key is success (0). */
int sessdb_delete(struct sessdb *db, unsigned ns, const void *id, size_t id_len);

/* sessdb_free - release a payload returned by get/take; NULL is a no-op. */
void sessdb_free(void *data);

/* Flags for sessdb_foreach. */
#define SESSDB_ITER_LIVE	0x01	/* skip expired records */
#define SESSDB_ITER_EXPIRED	0x02	/* only expired records */
#define SESSDB_ITER_REMOVE_BAD	0x04	/* delete records that fail to decode
					   (after reporting them) */

/*
 * sessdb_foreach - call fn for every record.  The traversal runs in
 *	batches under the shared lock and calls fn with no lock held, so fn
 *	may call back into db and servers are never blocked for long.  It is
 *	not a snapshot: a record written or deleted meanwhile may or may not
 *	be seen.  Returns 0 after the last record, fn's non-zero value if fn
 *	stopped it, or -1 on error.
 */
int sessdb_foreach(struct sessdb *db, unsigned flags, sessdb_foreach_fn fn,
    void *arg);

/* What a sweep did. */
struct sessdb_sweep_result {
	uint64_t examined;	/* records looked at */
	uint64_t expired;	/* expired records removed (or, dry run, found) */
	uint64_t corrupt;	/* undecodable records removed (or found) */
	uint64_t live;		/* records kept */
	uint64_t batches;	/* exclusive-lock periods used */
};

#define SESSDB_SWEEP_DRY_RUN	0x01	/* find, report, remove nothing */

/*
 * sessdb_sweep - remove expired (and undecodable) records in batches of
 *	opts.sweep_batch keys, taking the exclusive lock once per batch.
 *	If on_removed is not NULL it is called for each removed record
 *	(no lock held).  res may be NULL.
 */
int sessdb_sweep(struct sessdb *db, unsigned flags, sessdb_foreach_fn on_removed,
    void *arg, struct sessdb_sweep_result *res);

/* Current size of the store, from the file and the lock file's counters. */
struct sessdb_info {
	uint64_t entries;	/* records, as counted by the writers (recounted
				   by every repair, so exact unless a writer
				   died since) */
	uint64_t bytes;		/* key + value bytes of those records (what
				   max_bytes caps; the file adds GDBM's overhead) */
	uint64_t file_size;	/* bytes of the GDBM file */
	uint64_t generation;	/* change counter: bumped by every write */
};

int sessdb_info(struct sessdb *db, struct sessdb_info *info);

/*
 * sessdb_compact - rewrite the database without its free space (a copy
 *	renamed over it), keeping owner and mode.  The copy is made under
 *	the shared lock: other processes read on, writers wait for it (at
 *	most lock_timeout_ms, then their call fails with
 *	SESSDB_E_LOCK_TIMEOUT).  Other processes notice the new file
 *	through the change counter and reopen.  One compaction at a time.
 */
int sessdb_compact(struct sessdb *db);

/* What a rekey did. */
struct sessdb_rekey_result {
	uint64_t examined;	/* records looked at */
	uint64_t resealed;	/* records sealed again under the newest key */
	uint64_t current;	/* already sealed under the newest key */
	uint64_t unopened;	/* sealed under a key not given, or tampered:
				   left as they are */
	uint64_t skipped;	/* expired, undecodable, or changed meanwhile */
	uint64_t batches;	/* exclusive steps used */
};

/*
 * sessdb_rekey - seal every live record again under the newest key of
 *	opts.key_file (plain records too, trusted as found: run it when
 *	sealing is turned on): in batches of opts.sweep_batch,
 *	each record replaced only if it still holds the bytes read (one
 *	exclusive step per batch removes them, then each is written back
 *	sealed; a lookup in between misses).  Records that cannot be opened
 *	are left alone.  Needs a key file and a writable handle.  res may
 *	be NULL.  Returns 0 or -1.
 */
int sessdb_rekey(struct sessdb *db, struct sessdb_rekey_result *res);

/* sessdb_stats - copy the per-handle counters. */
void sessdb_stats(const struct sessdb *db, struct sessdb_stats *st);

/* sessdb_stats_reset - zero the per-handle counters. */
void sessdb_stats_reset(struct sessdb *db);

/* sessdb_now - the handle's clock (unix seconds). */
int64_t sessdb_now(const struct sessdb *db);

#ifdef __cplusplus
}
#endif

#endif /* SESSDB_H */
