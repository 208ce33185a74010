#!/usr/bin/env bash
# A trainer killed with SIGKILL during TRAIN, after its first checkpoint is in
# the store (s3rver). Asserts: the TRAIN task is leased again (attempt 2, on
# the other trainer), resumes from the uploaded checkpoint (its log says so
# and its result has resumed_from >= 1), the campaign completes with every
# task done exactly once (TRAIN with 2 attempts, no other task redone), and
# the generator and sample sets are bit-identical to a fault-free run's.
TEST_NAME=trainer-kill TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

# a TRAIN of 4 epochs of ~2 s each on a busy machine: time to kill it mid-way
C_EPOCHS=4 C_TRAIN_END=500
start_s3rver
start_coordinator
start_trainer trainer-1
start_trainer trainer-2
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" tkill "s3://$S3_BUCKET/tkill"
cid=$(submit "$T/campaign.txtpb")
train=$cid/train/sdn_resnet/linf-0.09
ckpt=s3://$S3_BUCKET/tkill/$cid/sdn_resnet/linf-0.09/deepperform/generator.ckpt

# who runs the TRAIN, and when its first checkpoint is in the store
holder=
end=$(( $(date +%s) + 60 ))
while [ -z "$holder" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "no trainer started $train"
  for n in trainer-1 trainer-2; do
    grep -q "task=$train train attempt 1: started" "$T/logs/$n.log" && holder=$n
  done
  sleep 0.1
done
other=trainer-1
[ "$holder" = trainer-1 ] && other=trainer-2
until timeout 10 "$STORE_BIN" stat "$ckpt" >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$end" ] || fail "no checkpoint at $ckpt"
  sleep 0.1
done
grep -q "task=$train.*done in" "$T/logs/$holder.log" && fail "TRAIN ended before the kill: make it longer"
kill9 "$holder"
log "killed $holder during $train after its first checkpoint"
status "$cid" "$T/s.json" || fail "no status"
st=$(pyq "$T/s.json" '[t["state"] for t in c["tasks"] if t["task_id"] == "'"$train"'"][0]')
[ "$st" != TASK_STATE_DONE ] || fail "TRAIN was done before the kill"

wait_done "$cid" 180
check_each_done_once
grep -q "task=$train train attempt 2: started" "$T/logs/$other.log" ||
  fail "attempt 2 of TRAIN did not run on $other"
grep -q "task=$train resuming from $cid/sdn_resnet/linf-0.09/deepperform/generator.ckpt" \
  "$T/logs/$other.log" || fail "attempt 2 did not say it resumes from the checkpoint"
a=$(awk -v t="$train" '$1 == t {print $3}' "$T/summary.tasks")
[ "$a" = 2 ] || fail "TRAIN took $a attempts, expected 2"
more=$(awk -v t="$train" '$1 != t && $3 != 1' "$T/summary.tasks")
[ -z "$more" ] || fail "tasks with more than one attempt besides TRAIN: $more"
resumed=$(pyq "$T/final.json" '[r["summary"]["resumed_from"] for r in json.loads(c["summary_json"])["results"] if r["task"] == "'"$train"'"][0]')
[ "$resumed" -ge 1 ] || fail "TRAIN's result says resumed_from $resumed"
"$STORE_BIN" get "s3://$S3_BUCKET/tkill/$cid/sdn_resnet/linf-0.09/deepperform/generator/result.json" \
  "$T/train.json" || fail "no TRAIN result.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["resumed_from"] >= 1 and r["epochs_run"] == 4 else 1)' \
  "$T/train.json" || fail "the stored TRAIN result: $(cat "$T/train.json")"
n=$(grep -c "task=$cid/.* started" "$T"/logs/trainer-*.log "$T"/logs/measurer-*.log | awk -F: '{s += $2} END {print s}')
log "TRAIN resumed from epoch $resumed on $other; $n task starts for $(wc -l <"$T/summary.tasks") tasks"

fetch_samples "s3://$S3_BUCKET/tkill/$cid" "$T/got"
check_results "$T/got" "trainer killed during TRAIN"
passed
