#!/usr/bin/env bash
# /healthz and /metrics of dp-coordinator --http: before a campaign the
# workers are counted by role and class; after it, every task gauge per kind
# and state equals the status (parsed by the Prometheus client's own text
# parser, tests/pipeline/metrics.py); unknown paths give 404, other methods
# 405; a journal that is gone makes /healthz answer 503 naming it. A
# trainer's own /metrics counts its tasks as the status does, and its
# /healthz turns 503 when the coordinator is gone.
TEST_NAME=metrics TEST_LIMIT=${TEST_LIMIT:-200}
. "$(dirname "$0")/lib.sh"

C_SEEDS=16 C_SHARD=16 C_CLASSES=cls-a
PY=${DP_PYTHON:-/usr/bin/python3} # Debian's, with python3-prometheus-client
HTTP_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
mkdir -p "$T/store"
start_coordinator --http "127.0.0.1:$HTTP_PORT"
grep -q "serving /healthz and /metrics on 127.0.0.1:$HTTP_PORT" "$T/logs/coordinator.log" ||
  fail "the coordinator does not say where it serves /metrics"
W_PORT=$(free_port)
WURL=http://127.0.0.1:$W_PORT
mkdir -p "$T/scratch/trainer-1"
start trainer-1 "$WORKER_BIN" --coordinator "$EP" --threads 1 --id trainer-1 \
  --scratch "$T/scratch/trainer-1" --http "127.0.0.1:$W_PORT"
start_measurer measurer-a cls-a

code=$(curl -s -o "$T/health" -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] && [ "$(cat "$T/health")" = ok ] || fail "/healthz: $code $(cat "$T/health")"
for i in $(seq 50); do # both workers registered
  curl -sf "$URL/metrics" >"$T/m0" || fail "/metrics failed"
  "$PY" "$DP_SRC/tests/pipeline/metrics.py" "$T/m0" /dev/null idle >"$T/m0.out" 2>&1 && break
  sleep 0.2
done
"$PY" "$DP_SRC/tests/pipeline/metrics.py" "$T/m0" /dev/null idle || fail "/metrics before the campaign"

write_campaign "$T/campaign.txtpb" metrics "file://$T/store"
cid=$(submit "$T/campaign.txtpb")
wait_done "$cid" 150
curl -sf "$URL/metrics" >"$T/m1" || fail "/metrics failed"
"$PY" "$DP_SRC/tests/pipeline/metrics.py" "$T/m1" "$T/final.json" done >/dev/null || fail "/metrics after the campaign"
log "$("$PY" "$DP_SRC/tests/pipeline/metrics.py" "$T/m1" "$T/final.json" done)"

[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")" = 404 ] || fail "/nope is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/metrics")" = 405 ] || fail "POST is not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/healthz")" = 200 ] || fail "HEAD /healthz is not 200"

# the trainer's own page: healthy while the coordinator is heard from; its
# task counter equals the trainer tasks of the status (it was the only one)
code=$(curl -s -o "$T/whealth" -w '%{http_code}' "$WURL/healthz")
[ "$code" = 200 ] || fail "trainer /healthz: $code $(cat "$T/whealth")"
curl -sf "$WURL/metrics" >"$T/wm" || fail "trainer /metrics failed"
want=$(pyq "$T/final.json" 'len([t for t in c["tasks"] if t["kind"] != "TASK_KIND_MEASURE"])')
got=$("$PY" -c 'import sys
from prometheus_client.parser import text_string_to_metric_families as p
for f in p(open(sys.argv[1]).read()):
    for s in f.samples:
        if s.name == "dp_worker_tasks_total" and s.labels["outcome"] == "done": print(int(s.value))
' "$T/wm") || fail "the trainer's /metrics does not parse"
[ "$got" = "$want" ] || fail "the trainer's /metrics says $got tasks done, the status $want"
log "trainer /metrics: $got tasks done, as the status says"

mv "$JOURNAL" "$JOURNAL.moved"
code=$(curl -s -o "$T/health" -w '%{http_code}' "$URL/healthz")
[ "$code" = 503 ] && grep -q "journal $JOURNAL is not writable" "$T/health" ||
  fail "/healthz with the journal gone: $code $(cat "$T/health")"
mv "$JOURNAL.moved" "$JOURNAL"

# the coordinator gone: the trainer's /healthz turns 503 within its liveness
# period (heartbeats of HB_MS, LIVENESS of them), naming the endpoint
stop coordinator
for i in $(seq 100); do
  code=$(curl -s -o "$T/whealth" -w '%{http_code}' "$WURL/healthz")
  [ "$code" = 503 ] && break
  sleep 0.2
done
[ "$code" = 503 ] && grep -q "$EP" "$T/whealth" ||
  fail "trainer /healthz with no coordinator: $code $(cat "$T/whealth")"
log "trainer /healthz without its coordinator: $(cat "$T/whealth")"
passed
