#!/usr/bin/env bash
# dp-coordinator killed with SIGKILL mid-campaign and restarted on the same
# port and journal 3 s later (file:// store, 3 trainers, 2 measurers).
# Asserts: the campaign completes; every task the status showed done before
# the kill (its TaskDone durable, hence acknowledged) is done in the end
# with the same attempt count and was not started again by any worker after
# the kill; every task done exactly once; the sample sets are bit-identical
# to the fault-free run's.
TEST_NAME=coordinator-kill TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

C_MODELS="sdn_resnet skipnet"
mkdir -p "$T/store"
start_coordinator
for i in 1 2 3; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" ckill "file://$T/store"
cid=$(submit "$T/campaign.txtpb")

# mid-campaign: at least 10 tasks done, not all
end=$(( $(date +%s) + 120 ))
while :; do
  [ "$(date +%s)" -lt "$end" ] || fail "the campaign never reached 10 done tasks"
  if status "$cid" "$T/before.json"; then
    d=$(pyq "$T/before.json" 'c["counts"]["done"]')
    [ "$(pyq "$T/before.json" 'c["state"]')" = CAMPAIGN_STATE_RUNNING ] ||
      fail "the campaign ended before the kill: make it longer"
    [ "$d" -ge 10 ] && break
  fi
  sleep 0.2
done
kill9 coordinator
pyq "$T/before.json" '["%s %s" % (t["task_id"], t["attempt"]) for t in c["tasks"] if t["state"] == "TASK_STATE_DONE"]' \
  >"$T/acked.txt"
total=$(pyq "$T/before.json" 'len(c["tasks"])')
log "killed the coordinator with $(wc -l <"$T/acked.txt") of $total tasks done"
for f in "$T"/logs/trainer-*.log "$T"/logs/measurer-*.log; do wc -l <"$f" >"$f.mark"; done
sleep 3
start_coordinator
grep -q "records replayed" "$T/logs/coordinator.log" || fail "the restarted coordinator did not replay"

wait_done "$cid" 180
check_each_done_once
while read -r task attempts; do
  got=$(awk -v t="$task" '$1 == t {print $2 " " $3}' "$T/summary.tasks")
  [ "$got" = "done $attempts" ] || fail "$task: done with $attempts attempt(s) before the kill, '$got' after"
  for f in "$T"/logs/trainer-*.log "$T"/logs/measurer-*.log; do
    if tail -n "+$(( $(cat "$f.mark") + 1 ))" "$f" | grep -q "task=$task [a-z]* attempt [0-9]*: started"; then
      fail "$task was done before the kill and started again after it (${f##*/})"
    fi
  done
done <"$T/acked.txt"
log "$(wc -l <"$T/acked.txt") tasks acknowledged before the kill kept, none redone"
grep "records replayed" "$T/logs/coordinator.log" | tail -1 | sed 's/.*coordinator: /restart: /' >&2

check_results "$T/store/$cid" "coordinator killed and restarted"
passed
