/*
 * NAME
 *	diag.h - a handle's errors and log messages, for every part of lib/
 *
 * DESCRIPTION
 *	The one way the library reports: diag_error() sets the handle's
 *	message and code (returns -1, for "return diag_error(...)"), and
 *	diag_log() passes a message to the application's log callback.  The
 *	handle stays opaque here: the OpenSSL glue logs through it without
 *	knowing the store's layout.
 */
#ifndef SESSDB_DIAG_H
#define SESSDB_DIAG_H

struct sessdb;

/* diag_error - set db's error (code SESSDB_E_*, message printf-like);
 * count it; return -1. */
int diag_error(struct sessdb *db, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* diag_log - pass a message to db's log callback at level (SESSDB_LOG_*). */
void diag_log(struct sessdb *db, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* diag_code - the SESSDB_E_* code for an errno value. */
int diag_code(int e);

/* diag_open_failed - remember the code of a failed sessdb_open (this thread). */
void diag_open_failed(int code);

/* ENOTSTORE - errno for "this path is not a sessdb store": such a file is
 * refused and never written, repaired or moved. */
#define ENOTSTORE EMEDIUMTYPE

#endif /* SESSDB_DIAG_H */
