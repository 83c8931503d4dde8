/*
 * NAME
 *	redis_server.c - a real redis-server for a test (see redis_server.h)
 *
 * DESCRIPTION
 *	The port comes from the kernel (bind to port 0, read it, close) and
 *	is tried by redis-server a moment later; if another process took it
 *	meanwhile the start is tried again on a new one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h"

#define START_WAIT_MS	5000

const char *
rs_missing(void)
{
	const char *path = getenv("PATH");
	char buf[512];

	if (path == NULL)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/redis-server", (int)n, path);
		if (access(buf, X_OK) == 0)
			return NULL;
		path += n;
		if (*path == ':')
			path++;
	}
	return "redis-server is not installed (Debian: apt-get install "
	    "redis-server)";
}

/* free_port - a loopback port nobody listens on now, or -1. */
static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd == -1)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* dial - a TCP connection to the server with 2 s timeouts, or -1. */
static int
dial(const struct rs *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timeval tv = { 2, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((unsigned short)s->port);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* read_line - one CRLF-terminated line (without it) from fd. */
static int
read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;
	char c;

	for (;;) {
		if (read(fd, &c, 1) != 1)
			return -1;
		if (c == '\n')
			break;
		if (n + 1 < len)
			buf[n++] = c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

/* append - add s (n bytes) to out, keeping it terminated. */
static void
append(char *out, size_t len, size_t *used, const char *s, size_t n)
{
	if (*used + 1 >= len)
		return;
	if (n > len - *used - 1)
		n = len - *used - 1;
	memcpy(out + *used, s, n);
	*used += n;
	out[*used] = '\0';
}

/* read_reply - one reply (recursively for arrays) appended to out. */
static int
read_reply(int fd, char *out, size_t len, size_t *used)
{
	char line[512], *buf;
	long long n;

	if (read_line(fd, line, sizeof(line)) == -1)
		return -1;
	switch (line[0]) {
	case '+':
	case '-':
	case ':':
		append(out, len, used, line + 1, strlen(line + 1));
		return line[0];
	case '$':
		n = atoll(line + 1);
		if (n < 0) {
			append(out, len, used, "(nil)", 5);
			return '$';
		}
		buf = malloc((size_t)n + 2);
		if (buf == NULL)
			return -1;
		for (long long got = 0; got < n + 2; ) {
			ssize_t r = read(fd, buf + got, (size_t)(n + 2 - got));

			if (r <= 0) {
				free(buf);
				return -1;
			}
			got += r;
		}
		append(out, len, used, buf, (size_t)n);
		free(buf);
		return '$';
	case '*':
		n = atoll(line + 1);
		for (long long i = 0; i < n; i++) {
			if (i > 0)
				append(out, len, used, "\n", 1);
			if (read_reply(fd, out, len, used) == -1)
				return -1;
		}
		return '*';
	default:
		return -1;
	}
}

/* send_cmd - write one command as a RESP array. */
static int
send_cmd(int fd, int argc, const char **argv)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "*%d\r\n", argc);

	if (write(fd, head, (size_t)n) != n)
		return -1;
	for (int i = 0; i < argc; i++) {
		size_t l = strlen(argv[i]);

		n = snprintf(head, sizeof(head), "$%zu\r\n", l);
		if (write(fd, head, (size_t)n) != n ||
		    write(fd, argv[i], l) != (ssize_t)l || write(fd, "\r\n", 2) != 2)
			return -1;
	}
	return 0;
}

int
rs_cmd(const struct rs *s, const char *password, char *out, size_t len,
    int argc, const char **argv)
{
	char junk[256];
	size_t used = 0;
	int fd = dial(s), rc = -1;

	if (len > 0)
		out[0] = '\0';
	if (fd == -1)
		return -1;
	if (password != NULL) {
		const char *auth[2] = { "AUTH", password };
		size_t u = 0;

		if (send_cmd(fd, 2, auth) == -1 ||
		    read_reply(fd, junk, sizeof(junk), &u) != '+')
			goto out;
	}
	if (send_cmd(fd, argc, argv) == 0)
		rc = read_reply(fd, out, len, &used);
out:
	close(fd);
	return rc;
}

long long
rs_info_num(const struct rs *s, const char *password, const char *section,
    const char *field)
{
	const char *argv[2] = { "INFO", section };
	static char buf[16384];
	size_t n = strlen(field);

	if (rs_cmd(s, password, buf, sizeof(buf), 2, argv) != '$')
		return -1;
	for (char *p = buf; p != NULL && *p != '\0'; ) {
		if (strncmp(p, field, n) == 0 && p[n] == ':')
			return atoll(p + n + 1);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

/* spawn - exec redis-server with s's port and arguments. */
static pid_t
spawn(struct rs *s)
{
	const char *argv[32 + RS_MAX_ARGS];
	char port[16], log[320];
	int n = 0;
	pid_t pid;

	snprintf(port, sizeof(port), "%d", s->port);
	snprintf(log, sizeof(log), "%s/redis.log", s->dir);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--unixsocket";
	argv[n++] = s->sock;
	argv[n++] = "--unixsocketperm";
	argv[n++] = "700";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = s->dir;
	argv[n++] = "--logfile";
	argv[n++] = log;
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	for (int i = 0; i < RS_MAX_ARGS && s->extra[i] != NULL; i++)
		argv[n++] = s->extra[i];
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		setpgid(0, 0);	/* a ^C to the test must not reach it twice */
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* wait_ready - until the server answers PING (5 s), or it died. */
static int
wait_ready(struct rs *s)
{
	const char *ping[1] = { "PING" };
	char out[64];
	int status;

	for (int ms = 0; ms < START_WAIT_MS; ms += 10) {
		int t = rs_cmd(s, NULL, out, sizeof(out), 1, ping);

		/* a password-protected server answers -NOAUTH: it is up */
		if (t == '+' || t == '-')
			return 0;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	return -1;
}

int
rs_start(struct rs *s, const char *const *extra)
{
	const char *tmp = getenv("TMPDIR");
	int i;

	memset(s, 0, sizeof(*s));
	for (i = 0; extra != NULL && extra[i] != NULL && i < RS_MAX_ARGS - 1; i++)
		s->extra[i] = extra[i];
	snprintf(s->dir, sizeof(s->dir), "%s/sessdb-redis.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(s->dir) == NULL) {
		fprintf(stderr, "redis: mkdtemp %s: %s\n", s->dir, strerror(errno));
		return -1;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
	for (int tries = 0; tries < 5; tries++) {
		if ((s->port = free_port()) == -1)
			break;
		if ((s->pid = spawn(s)) == -1)
			break;
		if (wait_ready(s) == 0)
			return 0;
		rs_stop(s);
	}
	fprintf(stderr, "redis: redis-server did not start (see %s/redis.log)\n",
	    s->dir);
	return -1;
}

void
rs_stop(struct rs *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	kill(s->pid, SIGCONT);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

int
rs_restart(struct rs *s)
{
	rs_stop(s);
	for (int tries = 0; tries < 50; tries++) {
		if ((s->pid = spawn(s)) == -1)
			return -1;
		if (wait_ready(s) == 0)
			return 0;
		usleep(100000);	/* the port may still be held a moment */
	}
	fprintf(stderr, "redis: restart on port %d failed\n", s->port);
	return -1;
}

void
rs_pause(struct rs *s)
{
	if (s->pid > 0)
		kill(s->pid, SIGSTOP);
}

void
rs_resume(struct rs *s)
{
	if (s->pid > 0)
		kill(s->pid, SIGCONT);
}

void
rs_destroy(struct rs *s)
{
	char path[320];

	rs_stop(s);
	if (s->dir[0] == '\0')
		return;
	snprintf(path, sizeof(path), "%s/redis.log", s->dir);
	unlink(path);
	unlink(s->sock);
	rmdir(s->dir);
	s->dir[0] = '\0';
}
