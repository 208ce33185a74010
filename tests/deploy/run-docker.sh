#!/usr/bin/env bash
# The container image built and run for real (ctest label docker; slow, so
# scripts/test.sh leaves it out unless DP_TEST_DOCKER=1):
#  1. starts its own dockerd (Debian's docker.io) on a private socket, data
#     root and exec root under a fresh directory, with no default bridge;
#  2. makes the base image debian:bookworm-slim from Debian's mirror
#     (deploy/make-base-image.sh: mmdebstrap, docker import), since no image
#     registry is reachable;
#  3. builds deploy/Dockerfile and the S3 server image deploy/s3/Dockerfile
#     (s3rver installed on the host by npm ci, as the store's tests do);
#  4. brings up deploy/compose.yaml (coordinator, two trainers, a measurer,
#     s3rver) and waits until every health check passes;
#  5. runs the quickstart campaign, its store on the S3 server
#     (examples/quickstart.txtpb with store_uri s3://deepperform/quickstart, made in
#     the image), through `dp-submit --wait` in the compose network: it must
#     exit 0 with every task done; the report's summary.json must be in the
#     store; the coordinator's /metrics must count the same tasks done;
#  6. checks that every container's processes run as uid 10001, not root;
#  7. tears everything down: the cluster, the daemon and its directory.
# Needs root (dockerd), network access to Debian's mirror and the npm
# registry (the images' package installs). Prints the time of each step.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
for tool in dockerd docker docker-compose mmdebstrap; do
  command -v "$tool" >/dev/null || {
    echo "run-docker: $tool missing (bash scripts/install-deps.sh installs it)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "run-docker: needs root (it starts dockerd)" >&2; exit 1; }
# Debian's client: the same API version as its daemon
docker=/usr/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)

work=$(mktemp -d /tmp/dp-docker.XXXXXX)
export DOCKER_HOST=unix://$work/docker.sock
project=dptest$$
compose=(docker-compose -f "$root/deploy/compose.yaml" -p "$project")
export DP_IMAGE=deepperform:test DP_S3_IMAGE=deepperform-s3:test
dockerd_pid=
t0=$(date +%s)
step() { echo "== [$(($(date +%s) - t0)) s] $*"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    if [ $rc -ne 0 ]; then
      echo "-- compose logs (last 40 lines per service)" >&2
      "${compose[@]}" logs --no-color --tail 40 >&2 2>/dev/null
    fi
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1
    kill "$dockerd_pid"
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$dockerd_pid" 2>/dev/null
  fi
  # overlay mounts left by a daemon that did not stop cleanly
  grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
  step "torn down (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "dockerd on $DOCKER_HOST"
dockerd --host "$DOCKER_HOST" --data-root "$work/data" --exec-root "$work/exec" \
  --pidfile "$work/docker.pid" --bridge none >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 150); do
  "$docker" info >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { cat "$work/dockerd.log" >&2; exit 1; }
  sleep 0.2
done
"$docker" info >/dev/null || { echo "run-docker: dockerd did not answer" >&2; tail -20 "$work/dockerd.log" >&2; exit 1; }

step "base image debian:bookworm-slim (mmdebstrap)"
DOCKER=$docker bash deploy/make-base-image.sh debian:bookworm-slim

step "image deepperform:test (deploy/Dockerfile)"
"$docker" build -q --network host -f deploy/Dockerfile -t "$DP_IMAGE" . >/dev/null
step "image deepperform-s3:test (deploy/s3/Dockerfile)"
if [ ! -x tests/store/node_modules/.bin/s3rver ]; then
  npm ci --prefix tests/store --no-audit --no-fund --loglevel=error
fi
"$docker" build -q --network host -f deploy/s3/Dockerfile -t "$DP_S3_IMAGE" tests/store >/dev/null
"$docker" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sed 's/^/   /'
# every program of the tree is in the image and finds its libraries
want=$(sed -n 's/^add_executable(\(dp-[a-z0-9-]*\) .*/\1/p' cli/CMakeLists.txt \
         coordinator/CMakeLists.txt worker/CMakeLists.txt measurer/CMakeLists.txt | sort -u | xargs)
have=$("$docker" run --rm "$DP_IMAGE" bash -c 'cd /usr/local/bin && ls dp-* | xargs')
[ "$have" = "$want" ] || { echo "FAIL the image has '$have', the tree builds '$want'" >&2; exit 1; }
if "$docker" run --rm "$DP_IMAGE" bash -c 'ldd /usr/local/bin/dp-* | grep "not found"'; then
  echo "FAIL a program in the image misses a library (above)" >&2; exit 1
fi
echo "   programs: $have (every library found)"
size=$("$docker" image inspect -f '{{.Size}}' "$DP_IMAGE")
[ "$size" -lt $((400 * 1024 * 1024)) ] || {
  echo "FAIL the image is $size bytes: the build stage's toolchain leaked into it?" >&2; exit 1; }

step "compose up (coordinator, trainer-1, trainer-2, measurer, s3)"
"${compose[@]}" up -d >/dev/null
for svc in coordinator trainer-1 trainer-2 measurer; do
  for i in $(seq 1 90); do
    state=$("$docker" inspect -f '{{.State.Health.Status}}' "$("${compose[@]}" ps -q "$svc")")
    [ "$state" = healthy ] && break
    [ "$i" -lt 90 ] || { echo "FAIL $svc is $state after 90 s" >&2; exit 1; }
    sleep 1
  done
  echo "   $svc: healthy"
done

step "dp-submit --wait quickstart-s3.txtpb"
out=$work/submit.out
if ! "${compose[@]}" run --rm -T submit dp-submit --coordinator tcp://coordinator:5555 \
     --timeout 60 --poll 2 --wait /usr/local/share/deepperform/examples/quickstart-s3.txtpb \
     >"$out" 2>"$work/submit.err"; then
  echo "FAIL dp-submit --wait exited non-zero" >&2; cat "$out" "$work/submit.err" >&2; exit 1
fi
sed 's/^/   /' "$out"
read -r total done_ failed < <(sed -n 's/^tasks: \([0-9]*\), \([0-9]*\) done, \([0-9]*\) failed.*/\1 \2 \3/p' "$out")
[ -n "${total:-}" ] && [ "$total" -gt 0 ] && [ "$done_" = "$total" ] && [ "$failed" = 0 ] || {
  echo "FAIL the summary does not say every task done" >&2; exit 1; }
cid=$(sed -n 's/^campaign \([^ ]*\) (quickstart): done$/\1/p' "$out")
[ -n "$cid" ] || { echo "FAIL no 'campaign ID (quickstart): done' line" >&2; exit 1; }

step "the report in the store, the coordinator's /metrics"
for f in summary.json report.json; do
  "${compose[@]}" run --rm -T submit dp-store get "s3://deepperform/quickstart/$cid/report/$f" - \
    >"$work/$f" 2>"$work/store.err" || { cat "$work/store.err" >&2; exit 1; }
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d, "empty"' "$work/$f"
  echo "   s3://deepperform/quickstart/$cid/report/$f: $(wc -c <"$work/$f") bytes of JSON"
done
"${compose[@]}" exec -T coordinator bash -c \
  'exec 3<>/dev/tcp/127.0.0.1/8080; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' \
  >"$work/metrics"
mdone=$(awk '/^dp_tasks\{.*state="done"\}/ {s += $2} END {print s + 0}' "$work/metrics")
[ "$mdone" = "$total" ] || { echo "FAIL /metrics counts $mdone tasks done, dp-submit $total" >&2; exit 1; }
echo "   /metrics: $mdone tasks done"

step "every container runs as non-root"
for svc in coordinator trainer-1 trainer-2 measurer s3; do
  c=$("${compose[@]}" ps -q "$svc")
  user=$("$docker" inspect -f '{{.Config.User}}' "$c")
  uids=$("$docker" top "$c" -eo pid,uid | awk 'NR > 1 {print $2}' | sort -u | tr '\n' ' ')
  [ -n "$uids" ] || { echo "FAIL docker top listed no process of $svc" >&2; exit 1; }
  for u in $uids; do
    [ "$u" != 0 ] || { echo "FAIL $svc has a process of uid 0 (image user '$user')" >&2; exit 1; }
  done
  echo "   $svc: image user $user, process uids $uids"
done
step "docker test: 1 passed, 0 failed"
