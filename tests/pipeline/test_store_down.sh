#!/usr/bin/env bash
# The store down for 30 s mid-campaign: s3rver killed with SIGKILL while
# GENERATE and BASELINE tasks run, restarted 30 s later on the same port and
# data directory, the store's own retries cut to 5 s. Asserts: no task
# failed during the outage; the tasks that met it were run again by their workers (dp-worker --network-retry-s,
# default 300 s); the campaign completes with every task done exactly once,
# and the sample sets are bit-identical to the fault-free run's (nothing
# lost, nothing half-written).
TEST_NAME=store-down TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

DOWN_S=${DOWN_S:-30}
# each store request gives up after 5 s (the default 60 s would ride out the
# outage inside one request), so the workers' own reruns are what is tested
export DP_STORE_RETRY_FOR_S=5
start_s3rver
start_coordinator
for i in 1 2 3; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" sdown "s3://$S3_BUCKET/sdown"
cid=$(submit "$T/campaign.txtpb")
# mid-campaign: a BASELINE done, GENERATE and BASELINE tasks still to run
end=$(( $(date +%s) + 120 ))
while :; do
  [ "$(date +%s)" -lt "$end" ] || fail "no BASELINE task done"
  if status "$cid" "$T/s.json"; then
    nb=$(pyq "$T/s.json" 'len([t for t in c["tasks"] if t["kind"] == "TASK_KIND_BASELINE" and t["state"] == "TASK_STATE_DONE"])')
    [ "$nb" -ge 1 ] && break
  fi
  sleep 0.1
done
left=$(pyq "$T/s.json" 'len([t for t in c["tasks"] if t["kind"] in ("TASK_KIND_GENERATE", "TASK_KIND_BASELINE") and t["state"] != "TASK_STATE_DONE"])')
[ "$left" -gt 0 ] || fail "GENERATE and BASELINE were over before the outage: make the campaign longer"
kill_s3rver
log "s3rver killed with $left GENERATE/BASELINE tasks to go; down for $DOWN_S s"
run_fg outage sleep "$DOWN_S"
status "$cid" "$T/during.json" || fail "no status during the outage"
log "after $DOWN_S s down: $(pyq "$T/during.json" 'c["counts"]'), $(pyq "$T/during.json" 'c["state"]')"
start_s3rver "$S3_PORT"
log "s3rver back on port $S3_PORT"

wait_done "$cid" 150
check_each_done_once
[ "$(pyq "$T/during.json" 'c["counts"]["failed"]')" = 0 ] || fail "tasks failed for good during the outage"
reruns=$(cat "$T"/logs/trainer-*.log "$T"/logs/measurer-*.log | grep -c "the store cannot be reached: run" || true)
[ "$reruns" -ge 1 ] || fail "no task met the outage (no rerun in the worker logs)"
retried=$(awk '$3 > 1' "$T/summary.tasks" | wc -l)
log "$reruns reruns of tasks that met the outage on their workers; $retried tasks took more than one attempt"
fetch_samples "s3://$S3_BUCKET/sdown/$cid" "$T/got"
check_results "$T/got" "store down for $DOWN_S s"
passed
