#!/usr/bin/env bash
# A task that fails every attempt: the campaign's second model (skipnet)
# names a weights_uri with no object behind it, so every task that loads it
# fails with a retryable "not found" (the object may appear) until
# --max-attempts (3). Asserts: dp-submit --wait ends with exit 3 and its
# summary names the failed tasks with the reason; the skipnet TRAIN ran 3
# attempts (three starts in the worker logs, >= 1 s and >= 2 s apart: the
# coordinator's retry waits) and is failed with the reason,
# the tasks after it failed with it; the other model's cell completes, every
# one of its tasks done once, its sample sets bit-identical to a fault-free
# run of that model alone; the campaign report lists the failed TRAIN with
# its attempts and reason.
TEST_NAME=failing-task TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

C_MODELS="sdn_resnet skipnet" C_MISSING_WEIGHTS=skipnet
mkdir -p "$T/store"
start_coordinator --max-attempts 3
for i in 1 2; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" failing "file://$T/store"
rc=0
run_fg submit-wait "$SUBMIT_BIN" --coordinator "$EP" --timeout 30 "$T/campaign.txtpb" --wait \
  >"$T/summary.txt" 2>"$T/logs/submit-wait.log" || rc=$?
[ "$rc" = 3 ] || fail "dp-submit --wait exited $rc, expected 3 (failed cells): $(cat "$T/summary.txt")"
cid=$(awk '/^campaign /{print $2; exit}' "$T/summary.txt")
train=$cid/train/skipnet/linf-0.09
missing="$T/missing/skipnet.safetensors"
grep -q "^campaign $cid (failing): failed" "$T/summary.txt" || fail "summary: $(head -3 "$T/summary.txt")"
grep "$train" "$T/summary.txt" | grep -q "not found" ||
  fail "the summary does not give $train's reason: $(cat "$T/summary.txt")"
grep -q "$missing" "$T/summary.txt" || fail "the summary does not name $missing"

status "$cid" "$T/final.json" || fail "no status"
[ "$(pyq "$T/final.json" 'c["state"]')" = CAMPAIGN_STATE_FAILED ] || fail "not FAILED"
pyq "$T/final.json" '["%s %s %s" % (r["task"], r["state"], r["attempts"]) for r in json.loads(c["summary_json"])["results"]]' >"$T/summary.tasks"
grep -qx "$train failed 3" "$T/summary.tasks" || fail "TRAIN: $(grep "$train" "$T/summary.tasks")"
reason=$(pyq "$T/final.json" '[r.get("reason", "") for r in json.loads(c["summary_json"])["results"] if r["task"] == "'"$train"'"][0]')
case $reason in *"not found"*"$missing"*) ;; *) fail "TRAIN's reason in the summary: '$reason'" ;; esac
starts=$(cat "$T"/logs/trainer-*.log | grep -c "task=$train train attempt [123]: started")
[ "$starts" = 3 ] || fail "TRAIN started $starts times, expected 3"
# each retry waited (--retry-ms, 1 s, doubled per attempt): attempts start >= 1 s, >= 2 s apart
for a in 1 2; do
  grep "task=$train" "$T/logs/coordinator.log" | grep -q "attempt $a failed: .*(retry in $((a * 1000)) ms)" ||
    fail "the coordinator did not log attempt $a's wait: $(grep "task=$train" "$T/logs/coordinator.log")"
done
grep "task=$train" "$T/logs/coordinator.log" | grep -q "attempt 3 failed: .*(final)" ||
  fail "the coordinator did not log attempt 3 as final"
gaps=$(cat "$T"/logs/trainer-*.log | grep "task=$train train attempt [123]: started" | python3 -c '
import sys, datetime
t = sorted(datetime.datetime.fromisoformat(l.split()[0].rstrip("Z")) for l in sys.stdin)
print(" ".join("%.3f" % (b - a).total_seconds() for a, b in zip(t, t[1:])))')
python3 -c 'import sys; g = [float(v) for v in sys.argv[1:]]; sys.exit(not (len(g) == 2 and g[0] >= 1.0 and g[1] >= 2.0))' $gaps ||
  fail "TRAIN's attempts started $gaps s apart, expected >= 1 s and >= 2 s"
log "TRAIN's attempts started $gaps s apart (retry waits 1 s, 2 s)"
bad=$(awk '$1 ~ /\/skipnet\// && $2 != "failed"' "$T/summary.tasks")
[ -z "$bad" ] || fail "skipnet tasks not failed: $bad"
bad=$(awk '$1 ~ /\/sdn_resnet\// && ($2 != "done" || $3 != 1)' "$T/summary.tasks")
[ -z "$bad" ] || fail "sdn_resnet tasks not done once: $bad"
dup=$(awk '{print $1}' "$T/summary.tasks" | sort | uniq -d)
[ -z "$dup" ] || fail "tasks listed twice: $dup"
nf=$(awk '$2 == "failed"' "$T/summary.tasks" | wc -l)
log "exit 3; $nf skipnet tasks failed ('${reason:0:100}...'), sdn_resnet's done"

# the campaign report lists the failed TRAIN with its last attempt and reason
rep=$T/store/$cid/report/report.json
[ -s "$rep" ] && [ -s "$T/store/$cid/report/report.html" ] || fail "no report.json/report.html"
got=$(pyq "$rep" '["%s %s %s" % (f["task"], f["attempts"], f["reason"]) for f in d["failures"]]')
case $got in *"$train 3 "*"not found"*"$missing"*) ;; *) fail "report.json failures: $got" ;; esac
grep -q "$train" "$T/store/$cid/report/report.html" || fail "the page does not list $train"

C_MODELS=sdn_resnet C_MISSING_WEIGHTS=
check_results "$T/store/$cid" "the model that loads"
passed
