#!/usr/bin/env bash
# A torn journal tail: dp-coordinator killed with SIGKILL mid-campaign, its
# journal cut inside its last record while it is down (the remains of a
# write a crash interrupted), then restarted. Asserts: the restart logs the
# dropped tail (bytes and offset, the file truncated to the last good
# frame) and replays the rest; the campaign completes with every task done
# exactly once; the sample sets are bit-identical to the fault-free run's.
TEST_NAME=torn-tail TEST_LIMIT=${TEST_LIMIT:-240}
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/store"
start_coordinator
for i in 1 2; do start_trainer "trainer-$i"; done
start_measurer measurer-a cls-a
start_measurer measurer-b cls-b

write_campaign "$T/campaign.txtpb" torn "file://$T/store"
cid=$(submit "$T/campaign.txtpb")
end=$(( $(date +%s) + 120 ))
while :; do
  [ "$(date +%s)" -lt "$end" ] || fail "the campaign never reached 5 done tasks"
  if status "$cid" "$T/before.json"; then
    [ "$(pyq "$T/before.json" 'c["state"]')" = CAMPAIGN_STATE_RUNNING ] ||
      fail "the campaign ended before the kill: make it longer"
    [ "$(pyq "$T/before.json" 'c["counts"]["done"]')" -ge 5 ] && break
  fi
  sleep 0.2
done
kill9 coordinator

# the journal's frames: a 16-byte header, then u32 length | u32 CRC | payload
read -r size last cut < <(python3 - "$JOURNAL" <<'EOF'
import os, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
assert b[:8] == b"DPJOURNL", "not a journal"
off, last = 16, None
while off + 8 <= len(b):
    (n,) = struct.unpack_from("<I", b, off)
    if n == 0 or off + 8 + n > len(b):
        break
    last, off = off, off + 8 + n
assert last is not None and off == len(b), "the journal does not end on a frame"
(n,) = struct.unpack_from("<I", b, last)
cut = last + 8 + n // 2  # inside the last record's payload
os.truncate(p, cut)
print(len(b), last, cut)
EOF
)
[ -n "$cut" ] || fail "could not cut the journal"
log "journal of $size bytes cut to $cut, inside its last record (at $last)"
start_coordinator
want="dropped a torn tail of $((cut - last)) bytes at offset $last"
grep -q "$want" "$T/logs/coordinator.log" || fail "the restart did not log '$want'"
[ "$(grep -c "records replayed" "$T/logs/coordinator.log")" = 2 ] || fail "no replay line"
grep "torn tail" "$T/logs/coordinator.log" | sed 's/.*journal: /restart: /' >&2

wait_done "$cid" 180
check_each_done_once
check_results "$T/store/$cid" "torn journal tail"
passed
