#!/bin/sh
# NAME
#	demo.sh - build sessdb and run the demo: 4 TLS workers share one cache
#
# SYNOPSIS
#	scripts/demo.sh
#
# DESCRIPTION
#	Installs missing packages (scripts/deps.sh), builds into build/, and
#	runs tools/run-demo.sh: a pre-fork TLS server with 4 workers and a
#	fresh sessdb cache, clients resuming across workers (TLS 1.2 and 1.3),
#	the same without the shared cache, and sessdump showing what is stored.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build
exec sh tools/run-demo.sh build
