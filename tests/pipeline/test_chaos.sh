#!/usr/bin/env bash
# Chaos: while a campaign runs (3 trainers, a measurer for each of cls-a and
# cls-b, s3rver as the store), a random process (a trainer, a measurer or
# the coordinator) is killed with SIGKILL every 1 to 2.5 s, 20 times, and
# restarted after up to 1 s (the coordinator on its journal and port, a
# worker with the same id). The campaign has a third class, cls-c, whose
# measurer joins only after the last kill, so the campaign runs through all
# 20 kills whatever the machine's speed. Asserts: 20 kills during the
# campaign; it completes with every task done exactly once; the generators
# and sample sets are bit-identical to local mode's.
# --max-attempts 20: the kills are random, and three that hit the same task
# must not fail its cell (bounded attempts are pipeline_failing_task's).
# CHAOS_SEED replays a run's choices (its first log line gives it).
TEST_NAME=chaos TEST_LIMIT=${TEST_LIMIT:-390}
. "$(dirname "$0")/lib.sh"

KILLS=${CHAOS_KILLS:-20}
SEED=${CHAOS_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
log "seed $SEED"
C_MODELS="sdn_resnet skipnet" C_SEEDS=48 C_EPOCHS=3 C_TRAIN_END=400 C_CLASSES="cls-a cls-b cls-c"
start_s3rver
start_coordinator --max-attempts 20
for i in 1 2 3; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

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
targets=(coordinator trainer-1 trainer-2 trainer-3 measurer-a measurer-b)
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
done
alive waiter || fail "the campaign ended before the last kill's restart"
start_measurer measurer-c cls-c
summary=
for v in "${!killed[@]}"; do summary+="$v x${killed[$v]} "; done
log "$KILLS kills during the campaign: $summary"

wait_done "$cid" 200
check_each_done_once
log "$(wc -l <"$T/summary.tasks") tasks done once each; $(awk '$3 > 1' "$T/summary.tasks" | wc -l) took more than one attempt"
fetch_samples "s3://$S3_BUCKET/chaos/$cid" "$T/got"
check_results "$T/got" "$KILLS random kills"
passed
