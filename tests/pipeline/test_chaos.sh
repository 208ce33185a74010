#!/usr/bin/env bash
# Chaos: while a campaign runs (3 trainers, a measurer per class, s3rver as
# the store), a random process (a trainer, a measurer or the coordinator)
# is killed with SIGKILL every 1 to 2.5 s, 20 times, and restarted after up
# to 1 s (the coordinator on its journal and port, a worker with the same
# id). cls-b's measurer joins only after the 18th kill, so the campaign is
# still running at the 20th whatever the machine's speed. Asserts: 20 kills
# during the campaign; it completes with every task done exactly once; the
# generators and sample sets are bit-identical to the fault-free run's.
# --max-attempts 20: the kills are random, and three that hit the same task
# must not fail its cell (bounded attempts are pipeline_failing_task's).
# CHAOS_SEED replays a run's choices (its first log line gives it).
TEST_NAME=chaos TEST_LIMIT=${TEST_LIMIT:-390}
. "$(dirname "$0")/lib.sh"

KILLS=${CHAOS_KILLS:-20}
B_AT=$(( KILLS - 2 )) # cls-b's measurer joins after this kill
SEED=${CHAOS_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
log "seed $SEED"
C_MODELS="sdn_resnet skipnet" C_SEEDS=48 C_EPOCHS=3 C_TRAIN_END=400
start_s3rver
start_coordinator --max-attempts 20
for i in 1 2 3; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a

write_campaign "$T/campaign.txtpb" chaos "s3://$S3_BUCKET/chaos"
cid=$(submit "$T/campaign.txtpb")
log "submitted $cid"
# follows the campaign across the coordinator's restarts; alive: not ended
start waiter "$SUBMIT_BIN" --coordinator "$EP" --status "$cid" --wait --timeout 60 --poll 0.5

restart() {
  case $1 in
    coordinator) start_coordinator --max-attempts 20 ;;
    trainer-*) start_trainer "$1" ;;
    measurer-a) start_measurer measurer-a cls-a ;;
    measurer-b) start_measurer measurer-b cls-b ;;
  esac
}

declare -A killed=()
targets=(coordinator trainer-1 trainer-2 trainer-3 measurer-a)
for k in $(seq "$KILLS"); do
  sleep "$(( 10 + RANDOM % 16 ))e-1"
  alive waiter || fail "the campaign ended after $((k - 1)) kills: $(cat "$T/logs/waiter.log")"
  victim=${targets[RANDOM % ${#targets[@]}]}
  # what the victim's present process last started
  doing=$(awk '/^=== start/ {d = ""} match($0, /task=[^ ]* [a-z]* attempt [0-9]*: started/) {
      d = substr($0, RSTART + 5, RLENGTH - 14)} END {print d}' "$T/logs/$victim.log")
  [ "$victim" = coordinator ] && doing=$(grep -c "hello from" "$T/logs/coordinator.log" || true)" hellos so far"
  kill9 "$victim"
  killed[$victim]=$(( ${killed[$victim]:-0} + 1 ))
  log "kill $k: $victim (${doing:-idle})"
  sleep "$(( RANDOM % 11 ))e-1"
  restart "$victim"
  if [ "$k" = "$B_AT" ]; then
    start_measurer measurer-b cls-b
    targets+=(measurer-b)
  fi
done
alive waiter || fail "the campaign ended before the last kill's restart"
summary=
for v in "${!killed[@]}"; do summary+="$v x${killed[$v]} "; done
log "$KILLS kills during the campaign: $summary"

wait_done "$cid" 200
check_each_done_once
log "$(wc -l <"$T/summary.tasks") tasks done once each; $(awk '$3 > 1' "$T/summary.tasks" | wc -l) took more than one attempt"
fetch_samples "s3://$S3_BUCKET/chaos/$cid" "$T/got"
check_results "$T/got" "$KILLS random kills"
passed
