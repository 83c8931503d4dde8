/*
 * NAME
 *	diag.c - error codes, messages and log calls of a handle
 *
 * DESCRIPTION
 *	Codes live in their own range (SESSDB_E_*, 1000 up) so that
 *	sessdb_strerror() names errno values too, as LMDB's mdb_strerror does.
 *	The message of the last error stays in the handle; the code of a
 *	failed sessdb_open, which has no handle to keep it, in a thread-local.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "diag.h"
#include "handle.h"

static _Thread_local int open_code;

int
diag_error(struct sessdb *db, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
	db->errcode = code;
	db->st.errors++;
	return -1;
}

void
diag_log(struct sessdb *db, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (db->opt.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	db->opt.log(db->opt.log_arg, level, msg);
}

int
diag_code(int e)
{
	switch (e) {
	case 0:
		return 0;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return SESSDB_E_NO_SPACE;
	case EIO:
		return SESSDB_E_IO;
	case EACCES:
	case EPERM:
	case ELOOP:
	case EROFS:
		return SESSDB_E_PERMISSION;
	case ENOTSTORE:
	case EISDIR:
		return SESSDB_E_NOT_STORE;
	case ENOENT:
		return SESSDB_E_NOT_FOUND;
	case ENOMEM:
		return SESSDB_E_NOMEM;
	case ETIMEDOUT:
		return SESSDB_E_LOCK_TIMEOUT;
	default:
		return SESSDB_E_SYSTEM;
	}
}

void
diag_open_failed(int code)
{
	open_code = code;
}

int
sessdb_open_errcode(void)
{
	return open_code;
}

const char *
sessdb_error(const struct sessdb *db)
{
	if (db == NULL)
		return "no store handle";
	return db->err[0] != '\0' ? db->err : "no error";
}

int
sessdb_errcode(const struct sessdb *db)
{
	return db != NULL ? db->errcode : SESSDB_E_ARG;
}

const char *
sessdb_strerror(int code)
{
	switch (code) {
	case 0:
		return "no error";
	case SESSDB_E_ARG:
		return "invalid argument";
	case SESSDB_E_TOO_LARGE:
		return "payload too large";
	case SESSDB_E_READONLY:
		return "store opened read-only";
	case SESSDB_E_LOCK_TIMEOUT:
		return "lock wait timed out";
	case SESSDB_E_DAMAGED:
		return "damaged store";
	case SESSDB_E_NO_SPACE:
		return "no space left for the store";
	case SESSDB_E_IO:
		return "I/O error";
	case SESSDB_E_PERMISSION:
		return "permission or ownership refused";
	case SESSDB_E_NOT_STORE:
		return "not a sessdb store";
	case SESSDB_E_NOT_FOUND:
		return "no store there";
	case SESSDB_E_BACKEND:
		return "storage backend unavailable";
	case SESSDB_E_NOMEM:
		return "out of memory";
	case SESSDB_E_SYSTEM:
		return "system error";
	case SESSDB_E_KEY:
		return "key file refused";
	default:
		return code > 0 && code < 1000 ? strerror(code) : "unknown error code";
	}
}
