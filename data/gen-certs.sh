#!/bin/sh
# NAME
#	gen-certs.sh - make the test certificates in data/
#
# SYNOPSIS
#	sh data/gen-certs.sh [-k] [OUTDIR]
#
# DESCRIPTION
#	Creates, in OUTDIR (default: the directory of this script):
#	  ca.pem  ca.key          a small test CA (ECDSA P-256, CN "sessdb test CA")
#	  server.pem server.key   ECDSA P-256 server certificate for "localhost",
#	                          SAN DNS:localhost, IP:127.0.0.1, IP:::1,
#	                          extendedKeyUsage serverAuth, signed by the CA
#	  server-chain.pem        server.pem followed by ca.pem
#	  server-rsa.pem server-rsa.key
#	                          RSA 2048 server certificate for the same names,
#	                          signed by the CA: another server identity (the
#	                          identity tests), or the RSA half of a server
#	                          with both key types
#	  server-rsa-chain.pem    server-rsa.pem followed by ca.pem
#	  client.pem client.key   ECDSA P-256 client certificate (CN "sessdb test
#	                          client", extendedKeyUsage clientAuth)
#	All valid for 7300 days (about 20 years) from the day they were made.
#	Keys are unencrypted PKCS#8 and have no value: they are for tests and
#	the demo only.  The generated files are committed, so the tests never
#	run this script; rerun it only to renew them (then commit the result).
#	With -k, an existing CA (ca.pem, ca.key) is kept and only the
#	certificates whose files are missing are made, so that adding one
#	does not invalidate the others.
#	Needs the openssl(1) command line tool, OpenSSL 1.1.1 or later.
set -eu

keep=0
if [ "${1:-}" = "-k" ]; then
	keep=1
	shift
fi
out=${1:-$(dirname "$0")}
days=7300
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

umask 077
key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	    -pkeyopt ec_param_enc:named_curve -out "$1"
}
rsakey() {
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
}

# wanted NAME: whether NAME.pem is to be made (always, unless -k).
wanted() {
	[ "$keep" = 0 ] || [ ! -e "$out/$1.pem" ]
}

# The CA: self-signed, may sign certificates but not intermediate CAs.
if [ "$keep" = 0 ] || [ ! -e "$out/ca.key" ] || [ ! -e "$out/ca.pem" ]; then
	keep=0		# a new CA invalidates every certificate
	key "$out/ca.key"
	openssl req -new -x509 -sha256 -days "$days" -key "$out/ca.key" \
	    -subj "/O=sessdb tests/CN=sessdb test CA" \
	    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash" \
	    -out "$out/ca.pem"
fi

# sign NAME SUBJECT EXTFILE [KEYFN]: a CA-signed certificate for NAME.key,
# a new key made by KEYFN (default: key, ECDSA P-256).
sign() {
	"${4:-key}" "$out/$1.key"
	openssl req -new -sha256 -key "$out/$1.key" -subj "$2" -out "$tmp/$1.csr"
	openssl x509 -req -sha256 -days "$days" -in "$tmp/$1.csr" \
	    -CA "$out/ca.pem" -CAkey "$out/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
	    -extfile "$3" -out "$out/$1.pem"
}

cat > "$tmp/server.ext" <<'EXT'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
if wanted server; then
	sign server "/O=sessdb tests/CN=localhost" "$tmp/server.ext"
	cat "$out/server.pem" "$out/ca.pem" > "$out/server-chain.pem"
fi
# Same names, another key and certificate: another server identity.
if wanted server-rsa; then
	sign server-rsa "/O=sessdb tests/OU=second server/CN=localhost" \
	    "$tmp/server.ext" rsakey
	cat "$out/server-rsa.pem" "$out/ca.pem" > "$out/server-rsa-chain.pem"
fi

cat > "$tmp/client.ext" <<'EXT'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
if wanted client; then
	sign client "/O=sessdb tests/CN=sessdb test client" "$tmp/client.ext"
fi

chmod 0644 "$out"/*.pem
chmod 0600 "$out"/*.key
openssl verify -CAfile "$out/ca.pem" "$out/server.pem" "$out/server-rsa.pem" \
    "$out/client.pem"
