/*
 * NAME
 *	redis_server.h - a real redis-server for a test: start, stop, hang,
 *	restart, and talk to it
 *
 * SYNOPSIS
 *	#include "redis_server.h"
 *
 * DESCRIPTION
 *	rs_start() runs redis-server (from PATH) on a free loopback port
 *	and a unix socket in its own temporary directory, persistence off
 *	(--save '' --appendonly no), and waits until it answers PING.
 *	rs_stop() kills it; rs_restart() starts it again on the same port
 *	with the same arguments; rs_pause()/rs_resume() stop and continue
 *	it (SIGSTOP, SIGCONT: a hung server whose kernel still accepts
 *	connections).  rs_cmd() sends one command over a plain socket (no
 *	hiredis: the tests must not share the library's client code).
 *
 *	Nothing here uses the library.  A test that cannot find
 *	redis-server says so (rs_missing) and skips.
 */
#ifndef SESSDB_TESTS_REDIS_SERVER_H
#define SESSDB_TESTS_REDIS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

#define RS_MAX_ARGS	16

struct rs {
	pid_t		pid;		/* 0: not running */
	int		port;
	char		dir[256];	/* its temporary directory */
	char		sock[300];	/* its unix socket */
	const char	*extra[RS_MAX_ARGS];	/* more arguments, NULL-ended */
};

/* rs_missing - NULL if redis-server can run here, else why not. */
const char *rs_missing(void);

/* rs_start - start a server with extra arguments (NULL-ended list, may
 * be NULL); 0 or -1 (printed). */
int rs_start(struct rs *s, const char *const *extra);

/* rs_stop - kill it (SIGKILL) and reap it; the directory stays. */
void rs_stop(struct rs *s);

/* rs_restart - start it again on the same port; 0 or -1. */
int rs_restart(struct rs *s);

/* rs_pause, rs_resume - SIGSTOP and SIGCONT. */
void rs_pause(struct rs *s);
void rs_resume(struct rs *s);

/* rs_destroy - stop it and remove its directory. */
void rs_destroy(struct rs *s);

/*
 * rs_cmd - send one command (argc strings) and read its reply into out
 *	(NUL-terminated; arrays as their elements, one a line; nil as
 *	"(nil)").  Returns the reply's type byte ('+', '-', ':', '$', '*'),
 *	or -1 on an I/O error or timeout (2 s).  password may be NULL.
 */
int rs_cmd(const struct rs *s, const char *password, char *out, size_t len,
    int argc, const char **argv);

/* rs_info_num - the number after "field:" in INFO section's reply, or -1. */
long long rs_info_num(const struct rs *s, const char *password,
    const char *section, const char *field);

#endif /* SESSDB_TESTS_REDIS_SERVER_H */
