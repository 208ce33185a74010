# shellcheck shell=bash
# Shared by the pipeline tests (tests/pipeline/test_*.sh): real processes on
# 127.0.0.1 (dp-coordinator, dp-worker, dp-measurer, dp-submit, s3rver), a
# tiny campaign, a reference run to compare with, and cleanup of everything
# a test started.
#
# A test script sets TEST_NAME and TEST_LIMIT (seconds), sources this file
# with DP_BUILD (the build tree) and DP_SRC (the source tree) in the
# environment, and calls the functions below. On exit, whatever the reason
# (success, failure, the watchdog at TEST_LIMIT, SIGINT/SIGTERM), every
# process started here is killed by its pid and the test directory removed;
# on failure the tail of each log is printed first. DP_PIPE_KEEP=1 keeps the
# directory.
set -euo pipefail

: "${DP_BUILD:?DP_BUILD: the build directory}"
: "${DP_SRC:?DP_SRC: the source directory}"
: "${TEST_NAME:=pipeline}"
: "${TEST_LIMIT:=300}"

COORD_BIN=$DP_BUILD/coordinator/dp-coordinator
WORKER_BIN=$DP_BUILD/worker/dp-worker
MEASURER_BIN=$DP_BUILD/measurer/dp-measurer
SUBMIT_BIN=$DP_BUILD/cli/dp-submit
STORE_BIN=$DP_BUILD/cli/dp-store
SAMPLES_PY=$DP_SRC/tests/pipeline/samples.py
S3RVER_SH=$DP_SRC/tests/store/run-s3rver.sh
FMNIST=${DP_FMNIST:-/usr/share/datasets/fashion-mnist}
# The coordinator's timing: a dead worker loses its leases after
# HB_MS x LIVENESS (3 s), generous for a loaded 2-core machine.
HB_MS=${DP_PIPE_HB_MS:-500}
LIVENESS=${DP_PIPE_LIVENESS:-6}
REF_CACHE=${DP_PIPE_REF_CACHE:-$DP_BUILD/tests/pipeline/reference}

for b in "$COORD_BIN" "$WORKER_BIN" "$MEASURER_BIN" "$SUBMIT_BIN" "$STORE_BIN"; do
  [ -x "$b" ] || { echo "$TEST_NAME: $b is not built" >&2; exit 1; }
done
[ -r "$FMNIST/t10k-images-idx3-ubyte.gz" ] || { echo "$TEST_NAME: no Fashion-MNIST in $FMNIST" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/dp-pipe-$TEST_NAME.XXXXXX")
mkdir -p "$T/pids" "$T/logs" "$T/s3pids"
T0=$(date +%s)
_ok=0

log() { echo "[$TEST_NAME $(( $(date +%s) - T0 ))s] $*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

# --------------------------------------------------------------- processes

# start NAME CMD ARGS...: runs CMD in the background, output to logs/NAME.log
# (appended: a restarted process keeps one log), pid in pids/NAME.
start() {
  local name=$1
  shift
  echo "=== start $(date +%T.%N)" >>"$T/logs/$name.log"
  "$@" </dev/null >>"$T/logs/$name.log" 2>&1 &
  echo $! >"$T/pids/$name"
}

pid_of() { cat "$T/pids/$1" 2>/dev/null || true; }

alive() {
  local p
  p=$(pid_of "$1")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

# kill9 NAME: SIGKILL, reaped.
kill9() {
  local p
  p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  rm -f "$T/pids/$1"
  echo "=== killed -9 $(date +%T.%N)" >>"$T/logs/$1.log"
}

# run_fg NAME CMD ARGS...: runs CMD as a foreground step (the caller's
# redirections apply) but in the background, its pid in pids/NAME, and waits
# for it: the watchdog's SIGTERM interrupts the wait at once, and cleanup
# kills CMD by its pid. Returns CMD's exit status.
run_fg() {
  local name=$1 p rc=0
  shift
  "$@" &
  p=$!
  echo "$p" >"$T/pids/$name"
  wait "$p" || rc=$?
  rm -f "$T/pids/$name"
  return "$rc"
}

# stop NAME: SIGTERM, then SIGKILL after 5 s.
stop() {
  local p i
  p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  rm -f "$T/pids/$1"
}

cleanup() {
  local rc=$? f p
  trap - EXIT INT TERM
  if [ -n "${_watchdog:-}" ]; then
    kill "$_watchdog" 2>/dev/null || true
    wait "$_watchdog" 2>/dev/null || true
  fi
  for f in "$T"/pids/*; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for f in "$T"/s3pids/*.pid; do
    [ -e "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  if [ "$_ok" != 1 ]; then
    [ "$rc" = 0 ] && rc=1
    for f in "$T"/logs/*.log; do
      [ -e "$f" ] || continue
      echo "----- tail of ${f#"$T"/}" >&2
      tail -n 25 "$f" >&2
    done
  fi
  if [ "${DP_PIPE_KEEP:-0}" = 1 ]; then
    echo "$TEST_NAME: kept $T" >&2
  else
    rm -rf "$T"
  fi
  log "$([ "$_ok" = 1 ] && echo passed || echo "failed (exit $rc)") in $(( $(date +%s) - T0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time limit ${TEST_LIMIT}s?)"; exit 124' TERM
# The watchdog: the whole test ends at TEST_LIMIT, before ctest's own timeout
# (which would leave the children running).
# Short sleeps, so that killing the watchdog leaves no sleep behind for long.
(
  end=$(( $(date +%s) + TEST_LIMIT ))
  while [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
  kill -TERM $$ 2>/dev/null
) </dev/null >/dev/null 2>&1 &
_watchdog=$!

passed() { _ok=1; }

# a port below the ephemeral range, so a restarted server finds it free
free_port() {
  "$DP_SRC/tests/lib/free-port.py"
}

# --------------------------------------------------------------- the pipeline

COORD_PORT=$(free_port)
EP=tcp://127.0.0.1:$COORD_PORT
JOURNAL=$T/coordinator.journal

start_coordinator() {
  local n0=0 i
  [ -e "$T/logs/coordinator.log" ] && n0=$(wc -l <"$T/logs/coordinator.log")
  start coordinator "$COORD_BIN" --bind "$EP" --journal "$JOURNAL" --heartbeat-ms "$HB_MS" \
    --liveness "$LIVENESS" --id "coord-$TEST_NAME" "$@"
  for i in $(seq 300); do
    tail -n "+$((n0 + 1))" "$T/logs/coordinator.log" | grep -q "coordinator: listening on" && return 0
    alive coordinator || fail "dp-coordinator exited at start"
    sleep 0.1
  done
  fail "dp-coordinator not listening after 30 s"
}

# start_trainer NAME: a dp-worker with id NAME and its own scratch directory.
start_trainer() {
  mkdir -p "$T/scratch/$1"
  start "$1" "$WORKER_BIN" --coordinator "$EP" --threads 1 --id "$1" --scratch "$T/scratch/$1"
}

# start_measurer NAME CLASS
start_measurer() {
  mkdir -p "$T/scratch/$1"
  start "$1" "$MEASURER_BIN" --coordinator "$EP" --threads 1 --id "$1" --device-class "$2" \
    --scratch "$T/scratch/$1"
}

# submit FILE [TOKEN]: prints the campaign id.
submit() {
  local out
  out=$(timeout 60 "$SUBMIT_BIN" --coordinator "$EP" --timeout 30 --json "$1" \
    ${2:+--token "$2"}) || fail "dp-submit $1 failed"
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["campaign_id"])' "$out"
}

# status CID FILE: the StatusReply (with tasks) as JSON in FILE; nonzero when
# the coordinator does not answer.
status() {
  timeout 40 "$SUBMIT_BIN" --coordinator "$EP" --timeout "${STATUS_TIMEOUT:-10}" --status "$1" \
    --json >"$2.tmp" 2>>"$T/logs/submit.log" && mv "$2.tmp" "$2"
}

# jq-like reads of a status file with python3: pyq FILE EXPR (d is the JSON,
# c the first campaign).
pyq() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
c = (d.get("campaigns") or [{}])[0]
r = eval(sys.argv[2])
if isinstance(r, (list, tuple)):
    print("\n".join(str(x) for x in r))
elif r is not None:
    print(r)
EOF
}

# campaign_state CID: CAMPAIGN_STATE_... or "" when the coordinator is away.
campaign_state() {
  STATUS_TIMEOUT=3 status "$1" "$T/state.json" 2>/dev/null || { echo ""; return 0; }
  pyq "$T/state.json" 'c.get("state", "")'
}

# wait_state CID SECONDS STATE...: until the campaign is in one of STATEs.
wait_state() {
  local cid=$1 limit=$2 s end
  shift 2
  end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do
    s=$(campaign_state "$cid")
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.5
  done
  fail "campaign $cid not in $* after $limit s (last: ${s:-no answer})"
}

# wait_done CID SECONDS: until DONE; then the final status in $T/final.json.
wait_done() {
  wait_state "$1" "$2" CAMPAIGN_STATE_DONE CAMPAIGN_STATE_FAILED CAMPAIGN_STATE_CANCELLED
  status "$1" "$T/final.json" || fail "no final status"
  local s
  s=$(pyq "$T/final.json" 'c["state"]')
  [ "$s" = CAMPAIGN_STATE_DONE ] || fail "campaign $1 ended $s: $(pyq "$T/final.json" 'c.get("reason")')"
}

# The summary's per-task results of the final status: "TASK STATE ATTEMPTS".
summary_tasks() {
  pyq "$T/final.json" '["%s %s %s" % (r["task"], r["state"], r["attempts"]) for r in json.loads(c["summary_json"])["results"]]'
}

# Every task of the summary done, and listed exactly once.
check_each_done_once() {
  local n dup notdone
  summary_tasks >"$T/summary.tasks"
  n=$(wc -l <"$T/summary.tasks")
  [ "$n" -gt 0 ] || fail "no task in the summary"
  dup=$(awk '{print $1}' "$T/summary.tasks" | sort | uniq -d)
  [ -z "$dup" ] || fail "tasks listed more than once in the summary: $dup"
  notdone=$(awk '$2 != "done"' "$T/summary.tasks")
  [ -z "$notdone" ] || fail "tasks not done: $notdone"
  local total
  total=$(pyq "$T/final.json" 'c["counts"]["done"]')
  [ "$total" = "$n" ] || fail "the summary lists $n tasks, status counts $total done"
}

# --------------------------------------------------------------- the campaign

# Settings of the tiny campaign (override before write_campaign):
C_MODELS=${C_MODELS:-sdn_resnet}
C_SEEDS=${C_SEEDS:-32}
C_SHARD=${C_SHARD:-8}
C_EPOCHS=${C_EPOCHS:-2}
C_TRAIN_END=${C_TRAIN_END:-144}
C_ILFO_ITERS=${C_ILFO_ITERS:-20}
C_CLASSES=${C_CLASSES:-cls-a cls-b}
C_MISSING_WEIGHTS=${C_MISSING_WEIGHTS:-}   # a model name whose weights_uri names no object

family_of() {
  case $1 in
    skipnet) echo MODEL_FAMILY_SKIPNET ;;
    sdn_resnet) echo MODEL_FAMILY_SDN_RESNET ;;
    sdn_mobilenet) echo MODEL_FAMILY_SDN_MOBILENET ;;
    blockdrop) echo MODEL_FAMILY_BLOCKDROP ;;
    ranet) echo MODEL_FAMILY_RANET ;;
    *) fail "no family for $1" ;;
  esac
}

# campaign_body: the campaign without its name and store (what a reference
# run must share with the run it is compared to).
campaign_body() {
  local m w c
  for m in $C_MODELS; do
    w=file://$DP_SRC/models/$m.safetensors
    [ "$m" = "$C_MISSING_WEIGHTS" ] && w=file://$T/missing/$m.safetensors
    cat <<EOF
models {
  name: "$m"
  family: $(family_of "$m")
  spec_uri: "file://$DP_SRC/models/$m.pb"
  weights_uri: "$w"
}
EOF
  done
  cat <<EOF
datasets {
  name: "fmnist"
  format: DATASET_FORMAT_IDX
  train_images_uri: "file://$FMNIST/train-images-idx3-ubyte.gz"
  train_labels_uri: "file://$FMNIST/train-labels-idx1-ubyte.gz"
  test_images_uri: "file://$FMNIST/t10k-images-idx3-ubyte.gz"
  test_labels_uri: "file://$FMNIST/t10k-labels-idx1-ubyte.gz"
  train_range { begin: 0 end: $C_TRAIN_END }
  test_range { begin: 0 end: $C_SEEDS }
  shard_size: $C_SHARD
}
budgets { norm: NORM_LINF eps: [0.09] }
generator { width { value: 8 } epochs { value: $C_EPOCHS } batch_size { value: 16 } seed: 7 }
baselines { method: BASELINE_METHOD_RANDOM }
baselines { method: BASELINE_METHOD_ILFO iterations { value: $C_ILFO_ITERS } lr { value: 0.01 } }
measure { warmup { value: 1 } repetitions { value: 3 } min_time_s { value: 0 } }
EOF
  for c in $C_CLASSES; do
    echo "device_classes { name: \"$c\" probe: ENERGY_PROBE_NONE }"
  done
}

# write_campaign FILE NAME STORE_URI
write_campaign() {
  { echo "name: \"$2\""; echo "store_uri: \"$3\""; campaign_body; } >"$1"
}

# --------------------------------------------------------------- stores

S3_PORT='' S3_DIR='' S3_BUCKET=dp-test

start_s3rver() {
  [ -x "$DP_SRC/tests/store/node_modules/.bin/s3rver" ] || {
    log "installing s3rver (npm ci --prefix tests/store)"
    timeout 300 npm ci --prefix "$DP_SRC/tests/store" --no-audit --no-fund --loglevel=error >&2 ||
      fail "npm ci failed"
  }
  local port=${1:-0} line
  S3_DIR=${S3_DIR:-$T/s3}
  line=$(DP_TEST_S3_PIDDIR=$T/s3pids bash "$S3RVER_SH" -p "$port" -d "$S3_DIR" -b "$S3_BUCKET") ||
    fail "s3rver did not start"
  read -r S3_PORT S3_PID _ <<<"$line"
  export DP_STORE_ENDPOINT=http://127.0.0.1:$S3_PORT
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
  log "s3rver pid $S3_PID on 127.0.0.1:$S3_PORT"
}

kill_s3rver() {
  kill -9 "$S3_PID" 2>/dev/null || true
  local i
  for _ in $(seq 50); do kill -0 "$S3_PID" 2>/dev/null || break; sleep 0.1; done
  rm -f "$T/s3pids/$S3_PID.pid"
}

# fetch_samples URI_PREFIX DEST: the sample sets and generators under a
# store prefix (s3:// or file://), copied under DEST with their keys.
fetch_samples() {
  local prefix=$1 dest=$2 uri
  mkdir -p "$dest"
  case $prefix in
    file://*)
      (cd "${prefix#file://}" && find . -name samples.safetensors -o -name generator.safetensors |
        while read -r f; do mkdir -p "$dest/$(dirname "$f")"; cp "$f" "$dest/$f"; done)
      ;;
    *)
      timeout 120 "$STORE_BIN" ls "$prefix" >"$T/ls.txt" || fail "dp-store ls $prefix"
      awk '{print $NF}' "$T/ls.txt" | grep -E '/(samples|generator)\.safetensors$' |
        while read -r uri; do
          mkdir -p "$dest/$(dirname "${uri#"$prefix"/}")"
          timeout 60 "$STORE_BIN" get "$uri" "$dest/${uri#"$prefix"/}" || fail "dp-store get $uri"
        done
      ;;
  esac
}

# digest DIR [samples.py options]: the digest lines of DIR's sample sets.
digest() {
  python3 "$SAMPLES_PY" "$@" || fail "samples.py $* failed"
}

# --------------------------------------------------------------- the reference

# reference_digest: prints the path of the digest (--generators --shards) of
# the current campaign settings run fault-free in local mode (dp-submit
# --local: the coordinator, one trainer and a measurer per class as threads,
# a file:// store), cached under REF_CACHE by the campaign's settings and the
# binaries. A dp-submit without --local: one dp-worker and a dp-measurer per
# class over tcp instead (the same shape).
reference_digest() {
  local key dir cid f c
  key=$( { campaign_body; cat "$SUBMIT_BIN" "$WORKER_BIN" "$MEASURER_BIN" "$COORD_BIN"; } |
    sha256sum | cut -c1-16)
  f=$REF_CACHE/$key.digest
  if [ ! -s "$f" ]; then
    mkdir -p "$REF_CACHE"
    dir=$T/reference
    mkdir -p "$dir/store"
    write_campaign "$dir/campaign.txtpb" ref "file://$dir/store"
    if "$SUBMIT_BIN" --help 2>&1 | grep -q -- "--local"; then
      log "reference run in local mode (cache $f)"
      run_fg ref-local "$SUBMIT_BIN" --local "$dir/campaign.txtpb" --dir "$dir/local" --threads 1 \
        >"$T/logs/ref-submit.log" 2>&1 || fail "the reference campaign did not complete"
      cid=$(awk '/^campaign /{print $2; exit}' "$T/logs/ref-submit.log")
      digest "$dir/local/store/$cid" --generators --shards >"$f.tmp.$$"
    else
      log "reference run by one trainer over tcp (cache $f)"
      local port ep
      port=$(free_port)
      ep=tcp://127.0.0.1:$port
      start ref-coordinator "$COORD_BIN" --bind "$ep" --journal "$dir/journal" \
        --heartbeat-ms "$HB_MS" --liveness "$LIVENESS" --id ref
      mkdir -p "$dir/scratch/t"
      start ref-trainer "$WORKER_BIN" --coordinator "$ep" --threads 1 --id ref-trainer \
        --scratch "$dir/scratch/t"
      for c in $C_CLASSES; do
        mkdir -p "$dir/scratch/$c"
        start "ref-measurer-$c" "$MEASURER_BIN" --coordinator "$ep" --threads 1 \
          --id "ref-measurer-$c" --device-class "$c" --scratch "$dir/scratch/$c"
      done
      run_fg ref-submit "$SUBMIT_BIN" --coordinator "$ep" --timeout 30 "$dir/campaign.txtpb" --wait \
        >"$T/logs/ref-submit.log" 2>&1 || fail "the reference campaign did not complete"
      cid=$(awk '/^campaign /{print $2; exit}' "$T/logs/ref-submit.log")
      stop ref-trainer
      for c in $C_CLASSES; do stop "ref-measurer-$c"; done
      stop ref-coordinator
      digest "$dir/store/$cid" --generators --shards >"$f.tmp.$$"
    fi
    mv "$f.tmp.$$" "$f"
    rm -rf "$dir"
  fi
  echo "$f"
}

# compare_digest GOT WANT WHAT: two digests are the same lines.
compare_digest() {
  local got=$1 want=$2 what=$3
  if ! diff -q "$want" "$got" >/dev/null; then
    diff "$want" "$got" | head -20 >&2
    fail "$what: the sample sets differ from the fault-free run's ($(diff "$want" "$got" | grep -c '^[<>]') lines)"
  fi
  log "$what: $(grep -c ' seed=' "$got") seeds x methods and $(grep -vc ' seed=' "$got" || true) generator tensors bit-identical to the fault-free run"
}

# check_results DIR: the sample sets fetched into DIR equal the reference's
# (same settings, same shards).
check_results() {
  local ref
  ref=$(reference_digest)
  digest "$1" --generators --shards >"$T/got.digest"
  compare_digest "$T/got.digest" "$ref" "${2:-results}"
}
