/*
 * NAME
 *	x509name.c - certificate names as text
 *
 * DESCRIPTION
 *	Names come from peers and may hold any bytes: RFC 2253 output
 *	without XN_FLAG's UTF-8 option escapes everything that is not
 *	printable ASCII, so the string is safe to print and to put in JSON
 *	(which still escapes quotes and backslashes).
 */
#include <string.h>

#include <openssl/bio.h>

#include "tooling.h"

/* tool_x509_name - name as an RFC 2253 string, or NULL. */
char *
tool_x509_name(const X509_NAME *name)
{
	BIO *bio;
	char *data, *s = NULL;
	long n;

	if (name == NULL || (bio = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(bio, &data)) >= 0)
		s = strndup(data, (size_t)n);
	BIO_free(bio);
	return s;
}
