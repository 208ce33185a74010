#!/usr/bin/env bash
# --config settings files of dp-coordinator, dp-worker and dp-measurer: a
# file's settings replace the defaults, the environment replaces the file,
# a flag replaces both (each says where it came from in the logged config);
# a bad file is refused with exit 2 naming PATH:LINE and what is wrong; and
# a coordinator started from a file alone listens and journals where the
# file says. Usage: config_test.sh BUILD
set -euo pipefail
BUILD=$1
COORD=$BUILD/coordinator/dp-coordinator WORKER=$BUILD/worker/dp-worker
MEASURER=$BUILD/measurer/dp-measurer
T=$(mktemp -d /tmp/dp-config.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "config_test: FAIL: $*" >&2; exit 1; }
unset DP_COORD_CONFIG DP_COORD_HEARTBEAT_MS DP_COORD_RETRY_MS DP_WORKER_CONFIG DP_WORKER_THREADS \
  DP_MEASURER_CONFIG DP_MEASURER_DEVICE_CLASS DP_LOG_LEVEL

# setting OUTPUT NAME: NAME=VALUE(WHERE) from a logged "config:" line
setting() { grep -o "config: .*" <<<"$1" | tr ' ' '\n' | grep "^$2=" || true; }

# expect_setting WHAT OUTPUT NAME WANT
expect_setting() {
  local got
  got=$(setting "$2" "$3")
  [ "$got" = "$4" ] || fail "$1: $3 is '$got', want '$4'"
}

# refused WANT_TEXT CMD...: exit 2 and WANT_TEXT on stderr
refused() {
  local want=$1 rc=0
  shift
  "$@" --check-args >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = 2 ] || fail "$* --check-args exited $rc, want 2: $(cat "$T/err")"
  grep -qF -- "$want" "$T/err" || fail "$*: stderr does not say '$want': $(cat "$T/err")"
}

# ---- dp-coordinator
cat >"$T/coord.conf" <<'EOC'
# a coordinator's settings
heartbeat-ms = 500
retry-ms = 250

log-level = info
id = "coord one"
EOC
out=$("$COORD" --config "$T/coord.conf" --check-args 2>&1)
expect_setting "file" "$out" heartbeat-ms "heartbeat-ms=500(file)"
expect_setting "file" "$out" retry-ms "retry-ms=250(file)"
expect_setting "default" "$out" liveness "liveness=3"
grep -q "id=coord one(file)" <<<"$out" || fail "a quoted value with a blank: $out"
out=$(DP_COORD_RETRY_MS=7 "$COORD" --config "$T/coord.conf" --heartbeat-ms 800 --check-args 2>&1)
expect_setting "env over file" "$out" retry-ms "retry-ms=7(env)"
expect_setting "flag over file" "$out" heartbeat-ms "heartbeat-ms=800(flag)"
out=$(DP_COORD_CONFIG=$T/coord.conf "$COORD" --check-args 2>&1)
expect_setting "--config from the environment" "$out" heartbeat-ms "heartbeat-ms=500(file)"

printf 'liveness = 3\nheartbeat-ms = 5\n' >"$T/bad.conf"
refused "heartbeat-ms ($T/bad.conf:2) expects an integer in [10, 3600000], got '5'" \
  "$COORD" --config "$T/bad.conf"
printf 'heartbeat = 500\n' >"$T/bad.conf"
refused "$T/bad.conf:1: no setting 'heartbeat'" "$COORD" --config "$T/bad.conf"
printf 'config = other.conf\n' >"$T/bad.conf"
refused "$T/bad.conf:1: no setting 'config'" "$COORD" --config "$T/bad.conf"
printf 'bind tcp://127.0.0.1:1\n' >"$T/bad.conf"
refused "$T/bad.conf:1: expected 'name = value'" "$COORD" --config "$T/bad.conf"
printf 'id = 1\nid = 2\n' >"$T/bad.conf"
refused "$T/bad.conf:2: 'id' is set again (first at $T/bad.conf:1)" "$COORD" --config "$T/bad.conf"
refused "cannot open $T/none.conf" "$COORD" --config "$T/none.conf"
echo "dp-coordinator: file < environment < flags; bad files refused naming PATH:LINE"

# a coordinator that runs from its file: it binds and journals where the file says
port=$(python3 "$(dirname "$0")/../lib/free-port.py")
printf 'bind = tcp://127.0.0.1:%s\njournal = %s\nheartbeat-ms = 100\n' "$port" "$T/coord.journal" \
  >"$T/run.conf"
"$COORD" --config "$T/run.conf" 2>"$T/coord.log" &
pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$T/coord.log" && break
  kill -0 "$pid" 2>/dev/null || fail "dp-coordinator exited: $(cat "$T/coord.log")"
  sleep 0.1
done
grep -q "listening on tcp://127.0.0.1:$port" "$T/coord.log" || fail "not on the file's port: $(cat "$T/coord.log")"
[ -f "$T/coord.journal" ] || fail "no journal where the file says"
kill "$pid"
wait "$pid" || true
pid=
echo "dp-coordinator --config alone: listening on 127.0.0.1:$port, journal written"

# ---- dp-worker and dp-measurer
printf 'threads = 3\nnetwork-retry-s = 12\n' >"$T/worker.conf"
out=$("$WORKER" --config "$T/worker.conf" --check-args 2>&1)
expect_setting "worker file" "$out" threads "threads=3(file)"
expect_setting "worker file" "$out" network-retry-s "network-retry-s=12(file)"
out=$(DP_WORKER_THREADS=2 "$WORKER" --config "$T/worker.conf" --check-args 2>&1)
expect_setting "worker env over file" "$out" threads "threads=2(env)"
printf 'device-class = jetson\n' >"$T/measurer.conf"
refused "$T/measurer.conf:1: no setting 'device-class'" "$WORKER" --config "$T/measurer.conf"
out=$(DP_MEASURER_CONFIG=$T/measurer.conf "$MEASURER" --check-args 2>&1)
expect_setting "measurer file" "$out" device-class "device-class=jetson(file)"
out=$("$MEASURER" --config "$T/measurer.conf" --device-class x86 --check-args 2>&1)
expect_setting "measurer flag over file" "$out" device-class "device-class=x86(flag)"
printf 'threads = many\n' >"$T/bad.conf"
refused "($T/bad.conf:1) expects an integer" "$WORKER" --config "$T/bad.conf"
echo "dp-worker, dp-measurer: file < environment < flags; a trainer refuses a measurer's setting"
echo "config_test: ok"
