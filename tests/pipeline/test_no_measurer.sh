#!/usr/bin/env bash
# A device class with no live measurer: the campaign names cls-a and cls-b,
# only cls-a has a measurer. Asserts: everything but cls-b's MEASURE tasks
# (and the REPORT after them) completes; meanwhile the status shows cls-b
# with 0 live measurers and its waiting tasks (also in dp-submit's plain
# status), the campaign running; a measurer of cls-b started then finishes
# the campaign, every task done once, sample sets bit-identical to the
# fault-free run's.
TEST_NAME=no-measurer TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/store"
start_coordinator
for i in 1 2; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a

write_campaign "$T/campaign.txtpb" nomeas "file://$T/store"
cid=$(submit "$T/campaign.txtpb")
end=$(( $(date +%s) + 150 ))
while :; do
  [ "$(date +%s)" -lt "$end" ] || fail "the tasks of cls-a and the trainers did not complete"
  if status "$cid" "$T/s.json"; then
    left=$(pyq "$T/s.json" 'len([t for t in c["tasks"] if t["state"] != "TASK_STATE_DONE" and "/measure/cls-b/" not in t["task_id"] and t["kind"] != "TASK_KIND_REPORT"])')
    [ "$left" = 0 ] && break
  fi
  sleep 0.3
done
sleep 1 # one more heartbeat: nothing else moves
status "$cid" "$T/s.json" || fail "no status"
[ "$(pyq "$T/s.json" 'c["state"]')" = CAMPAIGN_STATE_RUNNING ] || fail "the campaign is not running"
nb=$(pyq "$T/s.json" 'len([t for t in c["tasks"] if "/measure/cls-b/" in t["task_id"]])')
[ "$nb" -gt 0 ] || fail "no MEASURE task of cls-b"
notq=$(pyq "$T/s.json" '[t["task_id"] + " " + t["state"] for t in c["tasks"] if "/measure/cls-b/" in t["task_id"] and t["state"] != "TASK_STATE_QUEUED"]')
[ -z "$notq" ] || fail "cls-b tasks not waiting in the queue: $notq"
rep=$(pyq "$T/s.json" '[t["state"] for t in c["tasks"] if t["kind"] == "TASK_KIND_REPORT"][0]')
[ "$rep" = TASK_STATE_BLOCKED ] || fail "REPORT is $rep, expected blocked"
cls=$(pyq "$T/s.json" '["%s %d %d" % (x["name"], x["live_measurers"], x["waiting_tasks"]) for x in d["device_classes"]]')
echo "$cls" | grep -qx "cls-b 0 $nb" || fail "status does not show cls-b with 0 live measurers and $nb waiting: $cls"
echo "$cls" | grep -q "^cls-a 1 " || fail "status does not show cls-a's measurer: $cls"
timeout 30 "$SUBMIT_BIN" --coordinator "$EP" --status "$cid" >"$T/plain.txt" 2>&1 || fail "dp-submit --status"
grep -q "cls-b" "$T/plain.txt" || fail "dp-submit --status does not name cls-b: $(cat "$T/plain.txt")"
log "with no measurer of cls-b: $(echo "$cls" | tr '\n' ';'), $nb tasks wait, the rest done"

start_measurer measurer-b cls-b
wait_done "$cid" 120
check_each_done_once
grep -q "task=$cid/measure/cls-b/" "$T/logs/measurer-b.log" || fail "measurer-b measured nothing"
! grep -q "task=$cid/measure/cls-b/" "$T/logs/measurer-a.log" || fail "cls-b task on measurer-a"
check_results "$T/store/$cid" "a class without measurers, then one"
passed
