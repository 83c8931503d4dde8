#!/bin/sh
# NAME
#	deps.sh - install what sessdb needs to build, test and run its demo
#
# SYNOPSIS
#	scripts/deps.sh
#
# DESCRIPTION
#	On Debian 12, installs with apt-get only the packages that are
#	missing (so a second run does no network work).  Needs root, or sudo.
set -eu

packages="gcc libc6-dev pkg-config meson ninja-build libssl-dev openssl
libgdbm-dev libcunit1-dev gnutls-bin python3 valgrind procps util-linux
man-db strace libhiredis-dev redis-server iproute2 nginx-light apache2 apache2-dev
clang libclang-rt-14-dev"

missing=
for p in $packages; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	sudo=
elif command -v sudo >/dev/null 2>&1; then
	sudo=sudo
else
	echo "deps: missing packages:$missing; run as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
