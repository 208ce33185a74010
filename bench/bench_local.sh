#!/usr/bin/env bash
# What local mode costs: the quickstart campaign's work run by
# `dp-submit --local` (coordinator, trainer and measurer threads over
# inproc://, the journal fsync'ed, artifacts copied into a file:// store,
# every task loading its model and dataset again) against the same work as
# direct `dp-perform` calls, one after the other, on the same machine in the
# same run. Target: local <= 1.05 x direct.
#
# The work (examples/quickstart.txtpb): for each of the two models and each
# of Linf 0.03 and 0.09, one generator trained (width 16, 2 epochs, batch 32,
# lr 0.001, seed 1, trained on training images 0..989, 990..1099 held out),
# DeepPerform generation on test seeds 0..63 in shards of 32, random noise
# and ILFO (300 iterations, lr 0.01) on the same shards: 28 runs. MEASURE is
# left out of both sides (there is no direct command for it; the campaign is
# run without device classes); the local side also runs its REPORT task.
#
# usage: bench/bench_local.sh
#   env: BUILD (build), THREADS (both sides' threads; default every core),
#        REPS (1: rounds of direct then local; more alternate the order),
#        LOCAL_ARGS (more dp-submit flags, e.g. "--split-cache-mb 0" to
#        decode the dataset in every task as the direct calls do),
#        KEEP=1 keeps the work directory
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
dp=$build/cli/dp-perform
submit=$build/cli/dp-submit
for b in "$dp" "$submit"; do
  [ -x "$b" ] || { echo "bench_local: build $b first (bash scripts/build.sh)" >&2; exit 1; }
done
threads=${THREADS:-0}
reps=${REPS:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-bench-local.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

# the quickstart campaign without device classes, its model URIs absolute
sed -e '/^device_classes/d' -e "s|file://\.\./models/|file://$root/models/|" \
  "$root/examples/quickstart.txtpb" > "$work/campaign.txtpb"
grep -q 'device_classes' "$work/campaign.txtpb" && { echo "bench_local: device classes left" >&2; exit 1; }

direct() { # $1: output directory
  local out=$1 m eps off
  mkdir -p "$out"
  for m in skipnet sdn_resnet; do
    for eps in 0.03 0.09; do
      local d=$out/$m-$eps
      mkdir -p "$d"
      "$dp" train --model "$root/models/$m" --norm linf --eps "$eps" --out "$d/gen.safetensors" \
        --train-n 990 --val-n 110 --width 16 --epochs 2 --batch 32 --lr 0.001 --seed 1 \
        --threads "$threads" --quiet
      for off in 0 32; do
        "$dp" generate --model "$root/models/$m" --gen "$d/gen.safetensors" \
          --out "$d/deepperform-s$off.safetensors" --seeds 32 --seed-offset "$off" --batch 32 \
          --threads "$threads" --quiet
        "$dp" baseline --model "$root/models/$m" --method random --norm linf --eps "$eps" \
          --out "$d/random-s$off.safetensors" --seeds 32 --seed-offset "$off" --batch 32 \
          --seed 1 --threads "$threads" --quiet
        "$dp" baseline --model "$root/models/$m" --method ilfo --norm linf --eps "$eps" \
          --out "$d/ilfo-s$off.safetensors" --seeds 32 --seed-offset "$off" --batch 32 \
          --iters 300 --seed 1 --threads "$threads" --quiet
      done
    done
  done
}

local_mode() { # $1: run directory
  # shellcheck disable=SC2086
  "$submit" --local "$work/campaign.txtpb" --dir "$1" --threads "$threads" --poll 0.25 -v \
    ${LOCAL_ARGS:-} > "$1.out" 2> "$1.err" ||
    { cat "$1.out" "$1.err" >&2; echo "bench_local: dp-submit failed" >&2; exit 1; }
  grep -q ': done$' "$1.out" || { cat "$1.out" >&2; exit 1; }
  grep -E 'task runs here|dataset splits' "$1.err" | sed 's/^dp-submit: /bench_local:   local: /' 
}

echo "bench_local: $(nproc) cores, threads ${threads/#0/all}, load $(cut -d' ' -f1-3 /proc/loadavg)"
# each side timed by bash's `time`: wall, and user + system CPU of it and its children
TIMEFORMAT='%R %U %S'
: > "$work/times"
for ((i = 1; i <= reps; i++)); do
  order=(direct local)
  [ $((i % 2)) = 0 ] && order=(local direct)
  for side in "${order[@]}"; do
    if [ "$side" = direct ]; then
      { time direct "$work/direct-$i"; } 2> "$work/t"
    else
      { time local_mode "$work/local-$i"; } 2> "$work/t"
    fi
    read -r wall user sys < <(tail -1 "$work/t")
    echo "$side $wall $user $sys" >> "$work/times"
    echo "bench_local: round $i $side: ${wall} s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }') s CPU, load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
# the same work on both sides: every tensor of each sample set (x', seed
# indices, FLOPs, norms, PSNR) equal bit for bit, the metadata aside
python3 - "$work/direct-1" "$work/local-1/store" <<'EOF'
import glob, json, os, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in h.items() if k != "__metadata__"}
same = differ = missing = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*", "*-s*.safetensors"))):
    md, name = os.path.basename(os.path.dirname(f)), os.path.basename(f)[:-len(".safetensors")]
    model, eps = md.rsplit("-", 1)
    method, off = name.rsplit("-s", 1)
    k = glob.glob(os.path.join(sys.argv[2], "*", model, "linf-" + eps, method,
                               "s%d" % (int(off) // 32), "samples.safetensors"))
    if not k:
        missing += 1
        continue
    if tensors(f) == tensors(k[0]):
        same += 1
    else:
        differ += 1
        print("bench_local: differs:", f, k[0])
print("bench_local: sample sets bit-identical on both sides: %d, differing: %d, missing: %d"
      % (same, differ, missing))
EOF
awk '{ w[$1] += $2; c[$1] += $3 + $4; n[$1]++
       if (!($1 in m) || $2 < m[$1]) m[$1] = $2 }
     END { d = w["direct"] / n["direct"]; l = w["local"] / n["local"]
           printf "bench_local: wall: direct dp-perform %.1f s, dp-submit --local %.1f s (mean of %d); local/direct %.3f (min over rounds: %.3f; target <= 1.05)\n", d, l, n["local"], l / d, m["local"] / m["direct"]
           printf "bench_local: CPU (user + system): direct %.1f s, local %.1f s; local/direct %.3f\n", c["direct"] / n["direct"], c["local"] / n["local"], c["local"] / c["direct"] }' "$work/times"
echo "bench_local: load after $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${KEEP:-0}" = 1 ] && echo "bench_local: kept $work"
exit 0
