/*
 * NAME
 *	sessdb_ssl.h - attach a sessdb store to an OpenSSL server SSL_CTX
 *
 * SYNOPSIS
 *	#include <sessdb_ssl.h>
 *
 *	struct sessdb *db = sessdb_open("/var/cache/srv/sessions.db", NULL, err, sizeof err);
 *	sessdb_ssl_attach(ctx, db, 0);
 *
 * DESCRIPTION
 *	sessdb_ssl_attach() makes every SSL created from ctx store new
 *	sessions in db and look sessions up there, so that any process
 *	sharing the file resumes them: TLS 1.2 session IDs and TLS 1.3
 *	stateful tickets (SSL_OP_NO_TICKET).  What it changes on ctx is
 *	documented in docs/ARCHITECTURE.md and at its definition.
 *
 *	The store must stay open while ctx (or any SSL made from it) is in
 *	use, or until sessdb_ssl_detach().  Freeing ctx never deletes
 *	records from the file.
 */
#ifndef SESSDB_SSL_H
#define SESSDB_SSL_H

#include <openssl/ssl.h>
#include <sessdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for sessdb_ssl_attach. */
#define SESSDB_SSL_KEEP_INTERNAL 0x01	/* also keep OpenSSL's in-process cache */

/*
 * sessdb_ssl_attach - wire db into ctx's external session cache callbacks.
 *	Returns 0, or -1 (ctx unchanged) if ctx is not a server context, or
 *	on allocation failure.
 */
int sessdb_ssl_attach(SSL_CTX *ctx, struct sessdb *db, unsigned flags);

/* sessdb_ssl_detach - undo attach: remove the callbacks; db is not closed. */
int sessdb_ssl_detach(SSL_CTX *ctx);

#ifdef __cplusplus
}
#endif

#endif /* SESSDB_SSL_H */
