#!/bin/sh
# NAME
#	bench_peers.sh - end-to-end benchmark: sessdemo's shared cache against
#	nginx and Apache session caches, under the same sessload load
#
# SYNOPSIS
#	tests/bench/bench_peers.sh [--quick] [BUILDDIR]
#
# DESCRIPTION
#	Installs nginx-light and apache2 with apt-get when they are missing,
#	then starts, on 127.0.0.1 and free ports, five servers with 4 worker
#	processes each, the same certificate (data/server-chain.pem and
#	data/server.key: ECDSA P-256), TLS 1.2 and 1.3, session tickets off
#	(stateful sessions only; a TLS 1.3 "ticket" is then a cache entry) and
#	the same session timeout:
#	  nginx		nginx -c CONF -p DIR, worker_processes 4,
#			ssl_session_cache shared:SSL:10m
#	  apache-shmcb	apache2 -f CONF -k start, prefork with 4 children,
#			SSLSessionCache shmcb: (10 MB)
#	  apache-dbm	the same with SSLSessionCache dbm:
#	  apache-sessdb	the same with SSLSessionCache sessdb: (this build's
#			mod_socache_sessdb.so; left out when it was not built)
#	  sessdb-ext4	sessdemo --workers 4 --cache on DISK_DIR (/var/tmp)
#	  sessdb-tmpfs	sessdemo --workers 4 --cache on TMPFS_DIR (/dev/shm)
#	Their configurations, pid files, logs and caches live in a private
#	temporary directory; nothing under /etc is read for them or changed.
#	For every run, TLS version and server (in an order that rotates
#	between runs) it runs the same sessload command (CONNECTIONS
#	connections, PARALLEL lanes) and prints, as medians over RUNS runs:
#	resumed connections per second, the resumed fraction of resumable
#	connections (the first connection of each lane is a full handshake,
#	so resumable = connections - lanes), and the ratios of the resumed
#	rate to nginx, to Apache shmcb and to Apache dbm.  Every cache must resume 100% of
#	the resumable connections in every run, and every connection must
#	succeed; otherwise it says FAIL and exits 1.  The client shares the
#	machine's CPUs with the servers: figures are for the pair.
#	Every server it started is stopped on exit, whatever happens.
#
#	--quick (or SESSDB_BENCH_QUICK=1): one run of CONNECTIONS=200, TLS 1.3
#	only: a smoke test of the checks above, never of a speed.
#
# ENVIRONMENT
#	SESSDEMO, SESSLOAD	the programs (default BUILDDIR/tools/...)
#	MOD_SOCACHE_SESSDB	the module (default BUILDDIR/apache/...)
#	RUNS (3), CONNECTIONS (3000), PARALLEL (4), TLS ("1.2 1.3"),
#	SESSION_TIMEOUT (300 s), TMPFS_DIR (/dev/shm), DISK_DIR (/var/tmp),
#	KEEP=1 keeps the temporary directory (configurations, logs)
#
# EXIT STATUS
#	0 every check passed; 1 a check failed or a server did not start;
#	77 nginx or apache2 is missing and cannot be installed (skipped).
set -eu

me=bench_peers
quick=0
case "${SESSDB_BENCH_QUICK:-0}" in 0|'') ;; *) quick=1 ;; esac
if [ "${1:-}" = "--quick" ]; then
	quick=1
	shift
fi
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/build}
demo=${SESSDEMO:-$build/tools/sessdemo}
load=${SESSLOAD:-$build/tools/sessload}
modsessdb=${MOD_SOCACHE_SESSDB:-$build/apache/mod_socache_sessdb.so}
cert=$top/data/server-chain.pem
key=$top/data/server.key
if [ $quick = 1 ]; then
	runs=${RUNS:-1}
	conns=${CONNECTIONS:-200}
	tlsvers=${TLS:-1.3}
else
	runs=${RUNS:-3}
	conns=${CONNECTIONS:-3000}
	tlsvers=${TLS:-1.2 1.3}
fi
par=${PARALLEL:-4}
workers=4
stimeout=${SESSION_TIMEOUT:-300}
tmpfs_dir=${TMPFS_DIR:-/dev/shm}
disk_dir=${DISK_DIR:-/var/tmp}
lanes=$par
[ "$conns" -lt "$lanes" ] && lanes=$conns
resumable=$((conns - lanes))

for prog in "$demo" "$load"; do
	[ -x "$prog" ] || { echo "$me: $prog is not built" >&2; exit 1; }
done
for f in "$cert" "$key"; do
	[ -r "$f" ] || { echo "$me: cannot read $f" >&2; exit 1; }
done

# skip REASON - the benchmark cannot run here: say why, exit 77
skip() {
	echo "$me: skipped: $1"
	exit 77
}

# Install the peers when missing (Debian packages; root or sudo).
missing=
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || missing="$missing apache2"
if [ -n "$missing" ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		skip "needs$missing and apt-get is not available to install them"
	fi
	if [ "$(id -u)" -eq 0 ]; then
		sudo=
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		skip "needs$missing; installing them needs root"
	fi
	echo "$me: installing$missing with apt-get"
	# shellcheck disable=SC2086
	if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
	    --no-install-recommends $missing >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >/dev/null 2>&1 || :
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
		    --no-install-recommends $missing >/dev/null 2>&1 ||
		    skip "apt-get could not install$missing"
	fi
fi
PATH=$PATH:/usr/sbin:/sbin
export PATH
nginx_bin=$(command -v nginx)
apache_bin=$(command -v apache2)
apache_mods=/usr/lib/apache2/modules
for m in mpm_prefork ssl socache_shmcb socache_dbm authz_core; do
	[ -f "$apache_mods/mod_$m.so" ] || skip "Apache module mod_$m is not in $apache_mods"
done

v=
for d in tmpfs_dir disk_dir; do
	eval "v=\$$d"
	if [ ! -d "$v" ] || [ ! -w "$v" ]; then
		echo "$me: $v is not a writable directory; using ${TMPDIR:-/tmp}" >&2
		eval "$d=\${TMPDIR:-/tmp}"
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sessdb-peers.XXXXXX")
tmpfs_db=$(mktemp -d "$tmpfs_dir/sessdb-peers.XXXXXX")
disk_db=$(mktemp -d "$disk_dir/sessdb-peers.XXXXXX")
# Apache's children run as www-data when started by root, and must reach
# their document and their dbm cache file.
chmod 0755 "$work"
demo_pids=
load_pid=
nginx_pidfile=
apache_confs=
failed=0

# stop_pidfile FILE - TERM the daemon whose pid is in FILE, wait for it
stop_pidfile() {
	[ -s "$1" ] || return 0
	p=$(cat "$1" 2>/dev/null) || return 0
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null || return 0
	i=0
	while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$p" 2>/dev/null || :
}

cleanup() {
	[ -n "$load_pid" ] && kill -TERM "$load_pid" 2>/dev/null
	for p in $demo_pids; do kill -TERM "$p" 2>/dev/null || :; done
	for p in $demo_pids; do wait "$p" 2>/dev/null || :; done
	[ -n "$nginx_pidfile" ] && stop_pidfile "$nginx_pidfile"
	for c in $apache_confs; do
		# graceful stop first (it removes its shared memory), then the pid
		"$apache_bin" -f "$c" -k stop >/dev/null 2>&1 || :
		stop_pidfile "$(dirname "$c")/apache.pid"
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "$me: kept $work $tmpfs_db $disk_db"
	else
		rm -rf "$work" "$tmpfs_db" "$disk_db"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fstype() {
	t=$(findmnt -n -o FSTYPE --target "$1" 2>/dev/null | head -n 1) || t=
	[ -n "$t" ] || t=$(stat -f -c %T "$1" 2>/dev/null) || t='?'
	echo "$t"
}

# free_port - a loopback TCP port that nobody listens on now (the server
# started on it may still lose a race: the callers retry)
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
	else
		awk -v s="$$$(date +%N)" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }'
	fi
}

# wait_port PORT - wait until something listens on 127.0.0.1:PORT; 1
# after 10 s
wait_port() {
	i=0
	while [ $i -lt 100 ]; do
		if command -v ss >/dev/null 2>&1; then
			ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		elif python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# start_nginx - nginx on a free port; sets port_nginx
start_nginx() {
	d=$work/nginx
	mkdir -p "$d/tmp" "$d/logs"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$d/nginx.conf" <<EOF
# sessdb bench_peers: private nginx, not the system's
daemon on;
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	keepalive_timeout 0;
	server {
		listen 127.0.0.1:$port ssl;
		ssl_certificate $cert;
		ssl_certificate_key $key;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_cache shared:SSL:10m;
		ssl_session_timeout ${stimeout}s;
		ssl_session_tickets off;
		location / {
			default_type text/plain;
			return 200 "ok\n";
		}
	}
}
EOF
		nginx_pidfile=$d/nginx.pid
		if "$nginx_bin" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" \
		    >"$d/logs/start.out" 2>&1 && wait_port "$port"; then
			port_nginx=$port
			return 0
		fi
		stop_pidfile "$nginx_pidfile"
	done
	echo "$me: nginx did not start:" >&2
	cat "$d/logs/start.out" "$d/logs/error.log" >&2 2>/dev/null || :
	exit 1
}

# start_apache NAME SESSIONCACHE - Apache prefork on a free port with
# that SSLSessionCache; sets port_NAME
start_apache() {
	name=$1
	d=$work/$name
	mkdir -p "$d/htdocs" "$d/run"
	chmod 0755 "$d" "$d/htdocs"
	echo ok >"$d/htdocs/index.html"
	chmod 0644 "$d/htdocs/index.html"
	user=
	if [ "$(id -u)" -eq 0 ]; then
		user="User www-data
Group www-data"
	fi
	cache=$(echo "$2" | sed "s|@DIR@|$d|")
	# sessdb: a store directory of User's (a rebuild writes beside the file)
	mkdir -p "$d/run/sessdb"
	[ -n "$user" ] && chown www-data:www-data "$d/run/sessdb"
	loadsessdb=
	[ -f "$modsessdb" ] && loadsessdb="LoadModule socache_sessdb_module $modsessdb"
	apache_confs="$apache_confs $d/apache2.conf"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$d/apache2.conf" <<EOF
# sessdb bench_peers: private Apache, not the system's
ServerRoot $d
ServerName localhost
DefaultRuntimeDir $d/run
PidFile $d/apache.pid
ErrorLog $d/error.log
LogLevel warn
$user
LoadModule mpm_prefork_module $apache_mods/mod_mpm_prefork.so
LoadModule authz_core_module $apache_mods/mod_authz_core.so
LoadModule socache_shmcb_module $apache_mods/mod_socache_shmcb.so
LoadModule socache_dbm_module $apache_mods/mod_socache_dbm.so
$loadsessdb
LoadModule ssl_module $apache_mods/mod_ssl.so
StartServers $workers
MinSpareServers $workers
MaxSpareServers $workers
ServerLimit $workers
MaxRequestWorkers $workers
MaxConnectionsPerChild 0
KeepAlive Off
Listen 127.0.0.1:$port https
DocumentRoot $d/htdocs
<Directory />
	Require all denied
</Directory>
<Directory $d/htdocs>
	Require all granted
</Directory>
SSLEngine on
SSLCertificateFile $cert
SSLCertificateKeyFile $key
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLSessionCache $cache
SSLSessionCacheTimeout $stimeout
SSLSessionTickets off
EOF
		if "$apache_bin" -f "$d/apache2.conf" -k start >"$d/start.out" 2>&1 &&
		    wait_port "$port"; then
			eval "port_$name=$port"
			return 0
		fi
		"$apache_bin" -f "$d/apache2.conf" -k stop >/dev/null 2>&1 || :
		stop_pidfile "$d/apache.pid"
	done
	echo "$me: Apache ($name) did not start:" >&2
	cat "$d/start.out" "$d/error.log" >&2 2>/dev/null || :
	exit 1
}

# start_demo NAME DBDIR - sessdemo with its cache in DBDIR; sets port_NAME
start_demo() {
	name=$1
	"$demo" --port 0 --workers "$workers" --ready-file "$work/$name.ready" \
	    --cert "$cert" --key "$key" --session-timeout "$stimeout" \
	    --cache "$2/sessions.db" >"$work/$name.out" 2>"$work/$name.err" &
	pid=$!
	demo_pids="$demo_pids $pid"
	i=0
	while [ ! -s "$work/$name.ready" ]; do
		if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
			echo "$me: sessdemo ($name) did not start:" >&2
			cat "$work/$name.err" >&2
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	eval "port_$name=$(cat "$work/$name.ready")"
}

# field JSON NAME - one numeric field of sessload's --json line
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}

servers="nginx apache_shmcb apache_dbm sessdb_ext4 sessdb_tmpfs"
port_nginx='' port_apache_shmcb='' port_apache_dbm='' port_sessdb_ext4='' port_sessdb_tmpfs=''
nserv=5
port_apache_sessdb=''
if [ -f "$modsessdb" ]; then
	servers="$servers apache_sessdb"
	nserv=6
fi
echo "$me: $([ $quick = 1 ] && echo quick || echo full) mode, $runs run(s), TLS $tlsvers," \
    "$conns connections, $par lanes ($resumable resumable), $workers workers per server," \
    "session timeout ${stimeout}s, tickets off"
start_nginx
start_apache apache_shmcb "shmcb:@DIR@/run/ssl_scache(10485760)"
start_apache apache_dbm "dbm:@DIR@/run/ssl_scache"
[ -f "$modsessdb" ] && start_apache apache_sessdb "sessdb:@DIR@/run/sessdb/sessions.db"
start_demo sessdb_ext4 "$disk_db"
start_demo sessdb_tmpfs "$tmpfs_db"
echo "  $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), shared:SSL:10m, 127.0.0.1:$port_nginx"
echo "  $("$apache_bin" -v | sed -n 's/^Server version: //p') prefork, shmcb 10 MB on 127.0.0.1:$port_apache_shmcb, dbm on 127.0.0.1:$port_apache_dbm${port_apache_sessdb:+, sessdb on 127.0.0.1:$port_apache_sessdb}"
echo "  sessdemo: ext4 cache $disk_db ($(fstype "$disk_db")) on 127.0.0.1:$port_sessdb_ext4," \
    "tmpfs cache $tmpfs_db ($(fstype "$tmpfs_db")) on 127.0.0.1:$port_sessdb_tmpfs"
echo "  client: sessload --connect 127.0.0.1:PORT --connections $conns --parallel $par --tls V --json"

# Raw results: one line per measurement: TLS SERVER RESUMED/S FRACTION OK
raw=$work/raw
: >"$raw"
for r in $(seq 1 "$runs"); do
	# rotate the order of the servers between runs
	# shellcheck disable=SC2086
	set -- $servers
	k=$(( (r - 1) % nserv ))
	while [ $k -gt 0 ]; do
		s=$1
		shift
		set -- "$@" "$s"
		k=$((k - 1))
	done
	order="$*"
	for tls in $tlsvers; do
		for s in $order; do
			eval "port=\$port_$s"
			# in the background, so that a signal stops the run at once
			"$load" --connect "127.0.0.1:$port" --connections "$conns" \
			    --parallel "$par" --tls "$tls" --json >"$work/load.json" &
			load_pid=$!
			st=0
			wait "$load_pid" || st=$?
			load_pid=
			json=$(cat "$work/load.json")
			if [ $st != 0 ]; then
				echo "$me: FAIL: sessload failed ($s, TLS $tls, status $st): $json" >&2
				failed=1
			fi
			res=$(field "$json" resumed)
			secs=$(field "$json" seconds)
			ok=$(field "$json" ok)
			: "${res:=0}" "${secs:=0}" "${ok:=0}"
			v12=$(field "$json" tls12)
			v13=$(field "$json" tls13)
			rps=$(awk -v a="$res" -v b="$secs" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
			frac=$(awk -v a="$res" -v b="$resumable" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 1) }')
			echo "$tls $s $rps $frac $ok" >>"$raw"
			printf '  run %d TLS %s %-13s resumed %5s of %5s  %8s/s  fraction %s\n' \
			    "$r" "$tls" "$s" "$res" "$resumable" "$rps" "$frac"
			if [ "$ok" != "$conns" ]; then
				echo "$me: FAIL: $s TLS $tls: $ok of $conns connections succeeded" >&2
				failed=1
			fi
			if [ "$tls" = 1.2 ]; then vok=${v12:-0}; else vok=${v13:-0}; fi
			if [ "$vok" != "$ok" ]; then
				echo "$me: FAIL: $s: not every connection used TLS $tls ($v12 TLS 1.2, $v13 TLS 1.3)" >&2
				failed=1
			fi
			if [ "$res" != "$resumable" ]; then
				echo "$me: FAIL: $s TLS $tls resumed $res of $resumable resumable connections" >&2
				failed=1
			fi
		done
	done
done

# median COLUMN TLS SERVER - median of one column of the raw results
median() {
	awk -v c="$1" -v t="$2" -v m="$3" '$1 == t && $2 == m { print $c }' "$raw" |
	    sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print 0; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# minimum COLUMN TLS SERVER - lowest value of one column of the raw results
minimum() {
	awk -v c="$1" -v t="$2" -v m="$3" '$1 == t && $2 == m { print $c }' "$raw" |
	    sort -g | head -n 1
}

# ratio A B - A / B as "1.23x", "-" when B is 0
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
}

echo
echo "== medians over $runs run(s) of $conns connections, $par lanes (resumed/s = resumed connections per second)"
printf '| %-13s | %-3s | %9s | %8s | %8s | %15s | %13s |\n' "server/cache" TLS resumed/s resumed "vs nginx" "vs Apache shmcb" "vs Apache dbm"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' --------------- ----- ----------: ---------: ---------: ----------------: --------------:
for tls in $tlsvers; do
	ng=$(median 3 "$tls" nginx)
	sh=$(median 3 "$tls" apache_shmcb)
	dbm=$(median 3 "$tls" apache_dbm)
	for s in $servers; do
		rps=$(median 3 "$tls" "$s")
		frac=$(minimum 4 "$tls" "$s")
		pct=$(awk -v f="$frac" 'BEGIN { printf "%.1f%%", f * 100 }')
		printf '| %-13s | %-3s | %9s | %8s | %8s | %15s | %13s |\n' "$s" "$tls" "$rps" "$pct" \
		    "$(ratio "$rps" "$ng")" "$(ratio "$rps" "$sh")" "$(ratio "$rps" "$dbm")"
	done
done
echo "(resumed: resumed / resumable connections, the lowest over the runs; it must be 100%)"

if [ $failed != 0 ]; then
	echo "$me: FAIL"
	exit 1
fi
echo "$me: all checks passed (every cache resumed 100% of resumable connections)"
