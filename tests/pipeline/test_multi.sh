#!/usr/bin/env bash
# The campaign across processes on tcp://127.0.0.1: dp-coordinator, three
# dp-workers, two dp-measurers in two device classes, s3rver as the store.
# Asserts: the campaign completes with every task done once; each MEASURE
# task ran on a measurer of its class; the sample sets and generators are
# bit-identical to local mode's (dp-submit --local, same shards), and also
# to a run with one shard of 32 seeds (whatever the number of workers and
# shards).
TEST_NAME=multi TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

C_MODELS="sdn_resnet skipnet"
start_s3rver
start_coordinator
for i in 1 2 3; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" multi "s3://$S3_BUCKET/multi"
cid=$(submit "$T/campaign.txtpb")
log "submitted $cid"
wait_done "$cid" 180
check_each_done_once
log "$(wc -l <"$T/summary.tasks") tasks done once each"

# MEASURE tasks on their class's measurer, the rest on trainers
for f in "$T"/logs/trainer-*.log; do
  ! grep -q "task=$cid/measure/" "$f" || fail "a MEASURE task ran on a trainer (${f##*/})"
done
! grep -q "task=$cid/measure/cls-b/" "$T/logs/measurer-a.log" || fail "cls-b task on measurer-a"
! grep -q "task=$cid/measure/cls-a/" "$T/logs/measurer-b.log" || fail "cls-a task on measurer-b"
grep -q "task=$cid/measure/cls-a/" "$T/logs/measurer-a.log" || fail "measurer-a measured nothing"
grep -q "task=$cid/measure/cls-b/" "$T/logs/measurer-b.log" || fail "measurer-b measured nothing"
n=0
for i in 1 2 3; do grep -q "task=$cid/.*started" "$T/logs/trainer-$i.log" && n=$((n + 1)); done
log "$n of 3 trainers ran tasks"

fetch_samples "s3://$S3_BUCKET/multi/$cid" "$T/got"
check_results "$T/got" "3 trainers, shards of 8, s3 store vs local mode"

# whatever the shards: every method's x' (DeepPerform, random, ILFO, whose
# batches of 16 straddle the shards of 8) and the generators against one shard
ref1=$(C_SHARD=$C_SEEDS reference_digest)
sed 's/ shard=s[0-9]*//' "$ref1" >"$T/ref1.digest"
digest "$T/got" --generators >"$T/got1.digest"
compare_digest "$T/got1.digest" "$T/ref1.digest" "every method, shards of 8 vs one shard of $C_SEEDS"
passed
