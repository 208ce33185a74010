#!/usr/bin/env bash
# Starts OpenStack Swift (Debian's swift packages) on 127.0.0.1 in the
# background as an S3 server (the s3api middleware, tempauth) and waits until
# it answers; one replica, rings built with swift-ring-builder, storage in a
# directory (mount_check off). Prints one line: "PORT PID DIR".
# Usage: run-swift.sh [-p PORT] [-d DIR] [-b BUCKET]
#   -p  the S3 port (default: a free one)
#   -d  directory of the configuration, rings and data (default: a new
#       mktemp -d); one that already holds them is started again as it was
#       (same ports, same objects and unfinished uploads), as after a restart
#   -b  bucket created at start (default: dp-test)
# The S3 credentials are SWIFT_ACCESS_KEY/SWIFT_SECRET_KEY below (tempauth's
# user test:tester). PID is the proxy's; DIR.pids lists the PIDs of every
# process started (memcached, the proxy, account, container and object
# servers), each the leader of its own process group; if DP_TEST_S3_PIDDIR is
# set, that list is also written to $DP_TEST_S3_PIDDIR/PID.pid.
# The servers' log goes to DIR.log. SWIFT_WORKERS (default 0: the proxy serves
# in one process) sets the proxy's worker processes, SWIFT_OBJECT_WORKERS
# (default 0) the object server's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SWIFT_ACCESS_KEY=test:tester
SWIFT_SECRET_KEY=testing
port=0 dir= bucket=dp-test
while getopts p:d:b: o; do
  case $o in
    p) port=$OPTARG ;;
    d) dir=$OPTARG ;;
    b) bucket=$OPTARG ;;
    *) echo "usage: $0 [-p PORT] [-d DIR] [-b BUCKET]" >&2; exit 2 ;;
  esac
done
for b in swift-proxy-server swift-account-server swift-container-server swift-object-server \
  swift-ring-builder; do
  command -v $b >/dev/null ||
    { echo "run-swift: $b missing; install tests/store/PACKAGES (scripts/install-deps.sh)" >&2
      exit 1; }
done
# the servers read the hash path salts and storage policies from here
[ -r /etc/swift/swift.conf ] || { echo "run-swift: /etc/swift/swift.conf missing" >&2; exit 1; }
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/dp-swift.XXXXXX")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
etc=$dir/etc

if [ ! -e "$etc/proxy-server.conf" ]; then
  mkdir -p "$etc" "$dir/node/d1"
  # five distinct ports below the ephemeral range: every server is started
  # again on its port after a kill, and a port in that range may meanwhile
  # be held by an outgoing connection (tests/lib/free-port.py)
  mapfile -t ports < <("$here/../lib/free-port.py" 5)
  [ "${#ports[@]}" = 5 ] || { echo "run-swift: no free ports on 127.0.0.1" >&2; exit 1; }
  [ "$port" = 0 ] && port=${ports[0]}
  aport=${ports[1]} cport=${ports[2]} oport=${ports[3]} mport=${ports[4]}
  common="[DEFAULT]
bind_ip = 127.0.0.1
workers = WORKERS
user = $(id -un)
swift_dir = $etc
devices = $dir/node
mount_check = false
log_level = WARNING
"
  for s in account:$aport container:$cport object:$oport; do
    name=${s%%:*} p=${s#*:}
    w=0
    [ $name = object ] && w=${SWIFT_OBJECT_WORKERS:-0}
    printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = %s-server\n\n[app:%s-server]\nuse = egg:swift#%s\n' \
      "${common/WORKERS/$w}" "$p" "$name" "$name" "$name" >"$etc/$name-server.conf"
    (cd "$etc" && swift-ring-builder $name.builder create 10 1 1 >/dev/null &&
      swift-ring-builder $name.builder add r1z1-127.0.0.1:$p/d1 1 >/dev/null &&
      swift-ring-builder $name.builder rebalance >/dev/null)
  done
  cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = ${SWIFT_WORKERS:-0}
user = $(id -un)
swift_dir = $etc
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats cache s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

# tempauth keeps its tokens in memcache and refuses to work without one
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$mport

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
max_upload_part_num = 10000

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $SWIFT_SECRET_KEY .admin

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
  new=1
else
  port=$(sed -n 's/^bind_port = //p' "$etc/proxy-server.conf")
  mport=$(sed -n 's/^memcache_servers = 127.0.0.1://p' "$etc/proxy-server.conf")
  new=0
fi

# memcached refuses to run as root unless told which user to be
mc_user=()
[ "$(id -u)" = 0 ] && mc_user=(-u root)
# Each server in a process group of its own (setsid; the Swift servers would
# otherwise call setsid() themselves), so that `kill -- -PID` of each stops
# a server with any workers it forked. Every PID goes to DIR.pids.
pids=()
setsid memcached -l 127.0.0.1 -p "$mport" -U 0 -m 64 "${mc_user[@]}" </dev/null >>"$dir.log" 2>&1 &
pids+=($!)
for s in account container object proxy; do
  setsid swift-$s-server "$etc/$s-server.conf" </dev/null >>"$dir.log" 2>&1 &
  pids+=($!)
done
pid=$! # the proxy
printf '%s\n' "${pids[@]}" >"$dir.pids"
[ -n "${DP_TEST_S3_PIDDIR:-}" ] && cp "$dir.pids" "$DP_TEST_S3_PIDDIR/$pid.pid"
stop_all() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null; done; }

# curl splits --user at the first colon, and tempauth's S3 access keys are
# account:user: the credentials go through a netrc file instead
netrc=$dir.netrc
printf 'machine 127.0.0.1 login %s password %s\n' "$SWIFT_ACCESS_KEY" "$SWIFT_SECRET_KEY" >"$netrc"
s3curl() {
  curl -s --netrc-file "$netrc" --aws-sigv4 "aws:amz:us-east-1:s3" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
# The account, container and object servers answer before anything goes
# through the proxy: a request the proxy cannot connect on counts against the
# node, and after 10 such errors it answers 503 for a minute (Swift's error
# limiting), with one node per ring for everything. Any HTTP answer will do.
backends=1
k=1 # their PIDs are pids[1..3]
for s in account container object; do
  p=$(sed -n 's/^bind_port = //p' "$etc/$s-server.conf")
  code=000
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/" || true)
    [ "$code" != 000 ] && break
    kill -0 "${pids[$k]}" 2>/dev/null || break
    sleep 0.05
  done
  [ "$code" != 000 ] || { echo "run-swift: the $s server does not answer on 127.0.0.1:$p" >&2; backends=0; break; }
  k=$((k + 1))
done
up=0
for _ in $(seq 1 600); do
  [ $backends = 1 ] || break
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthcheck")" = 200 ]; then
    up=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if [ $up = 1 ]; then
  # retry until the bucket is made (or, started again, is there)
  up=0
  method=PUT
  [ $new = 1 ] || method=HEAD
  for _ in $(seq 1 200); do
    code=$(s3curl -o /dev/null -w '%{http_code}' -X $method "http://127.0.0.1:$port/$bucket")
    if [ "$code" = 200 ]; then
      up=1
      break
    fi
    sleep 0.05
  done
fi
if [ $up = 1 ]; then
  echo "$port $pid $dir"
  exit 0
fi
echo "run-swift: swift did not come up on 127.0.0.1:$port; log:" >&2
cat "$dir.log" >&2 || true
# a server still retrying its bind logs nothing: show who holds the ports
if command -v ss >/dev/null; then
  for p in $port $(sed -n 's/^bind_port = //p' "$etc"/*-server.conf) $mport; do
    ss -Htanp "( sport = :$p )" >&2 || true
  done
fi
stop_all
exit 1
