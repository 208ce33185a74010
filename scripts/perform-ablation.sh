#!/usr/bin/env bash
# An ablation of DeepPerform's generator on one (model, norm, eps): each
# variant trains a generator with its own dp-perform train flags, generates
# test inputs from the same Fashion-MNIST test seeds, and is evaluated; ILFO
# (and random noise) on the same seeds are the references. Prints one row per
# variant: I-FLOPs mean and max, IDPB rate, the training time and the best
# epoch, and the ratio of its I-FLOPs mean to ILFO's. Finished files are
# reused, so a killed run picks up where it stopped.
#
#   scripts/perform-ablation.sh                       # sdn_resnet, linf 0.03
#   MODEL=models/skipnet EPS=0.06 scripts/perform-ablation.sh
#
# Environment: BUILD (build), OUT ($BUILD/ablation-out), MODEL
# (models/sdn_resnet), NORM (linf), EPS (0.03), SEEDS (1000), ILFO_SEEDS
# ($SEEDS), THREADS (1), DATA_DIR (/usr/share/datasets/fashion-mnist),
# VARIANTS: one variant a line, "NAME FLAGS..." (default below: the
# defaults, then one change each).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/ablation-out}
MODEL=${MODEL:-models/sdn_resnet}
NORM=${NORM:-linf}
EPS=${EPS:-0.03}
SEEDS=${SEEDS:-1000}
ILFO_SEEDS=${ILFO_SEEDS:-$SEEDS}
THREADS=${THREADS:-1}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
VARIANTS=${VARIANTS:-"defaults
width-32 --width 32
train-10k --train-n 10000
lr-3e-3 --lr 0.003"}
DP=$BUILD/cli/dp-perform
[ -x "$DP" ] || { echo "perform-ablation: $DP is missing: bash scripts/build.sh" >&2; exit 2; }
[ -f "$MODEL.pb" ] || { echo "perform-ablation: no model $MODEL.pb" >&2; exit 2; }
name=$(basename "$MODEL")
dir=$OUT/$name-$NORM-$EPS
mkdir -p "$dir"
log() { echo "perform-ablation: $*" >&2; }
common=(--model "$MODEL" --norm "$NORM" --eps "$EPS" --threads "$THREADS" --data-dir "$DATA_DIR")
[ "$NORM" = l2 ] && common+=(--l2-exact)

for ref in ilfo random; do
  f=$dir/$ref.safetensors
  n=$SEEDS
  [ "$ref" = ilfo ] && n=$ILFO_SEEDS
  if [ ! -f "$f" ]; then
    log "$ref on $n seeds"
    "$DP" baseline --method "$ref" "${common[@]}" --seeds "$n" --out "$f" --quiet
  fi
done
while read -r vname flags; do
  [ -n "$vname" ] || continue
  gen=$dir/$vname-generator.safetensors
  samples=$dir/$vname.safetensors
  if [ ! -f "$gen" ]; then
    log "train $vname: ${flags:-(defaults)}"
    # appended: a resumed training's log follows the first part's
    # shellcheck disable=SC2086  # flags are words on purpose
    "$DP" train "${common[@]}" $flags --out "$gen" >>"$dir/$vname-train.log" 2>&1 ||
      { cat "$dir/$vname-train.log" >&2; exit 1; }
  fi
  if [ ! -f "$samples" ]; then
    "$DP" generate --model "$MODEL" --gen "$gen" --seeds "$SEEDS" --threads "$THREADS" \
      --data-dir "$DATA_DIR" --out "$samples" --quiet
  fi
done <<<"$VARIANTS"

python3 - "$dir" "$DP" "$VARIANTS" <<'EOF'
import json, re, subprocess, sys

d, dp, variants = sys.argv[1], sys.argv[2], sys.argv[3]

def evaluate(path):
    return json.loads(subprocess.check_output([dp, "evaluate", "--json", path]))[0]

def train_seconds(log):
    # the sum of the epochs' times ("epoch E/N ... 66.9s"), the last line of
    # each epoch counted once, so a resumed training counts every epoch
    per = {}
    for line in open(log, errors="replace"):
        m = re.match(r"epoch (\d+)/\d+ .* ([0-9.]+)s$", line.strip())
        if m:
            per[int(m.group(1))] = float(m.group(2))
    return sum(per.values())

def best_epoch(log):
    # dp-perform train's last line: "... best held-out executed fraction X at epoch N; ..."
    best = None
    for line in open(log, errors="replace"):
        m = re.search(r"best held-out executed fraction \S+ at epoch (\d+)", line)
        if m:
            best = int(m.group(1))
    return best

ilfo = evaluate("%s/ilfo.safetensors" % d)
rand = evaluate("%s/random.safetensors" % d)
print("%-12s %5s %9s %9s %6s %7s %5s %9s  %s" % ("variant", "n", "IFLOPs", "IFLOPs", "IDPB",
                                               "train", "best", "vs ILFO", "flags"))
print("%-12s %5s %9s %9s %6s %7s %5s %9s" % ("", "", "mean %", "max %", "rate", "s", "epoch", ""))
for ref, r in (("ilfo", ilfo), ("random", rand)):
    print("%-12s %5d %9.1f %9.1f %6.3f %7s %5s %9.2f" % (ref, r["n"], r["iflops_mean"],
          r["iflops_max"], r["idpb_rate"], "-", "-", r["iflops_mean"] / ilfo["iflops_mean"]))
for line in variants.splitlines():
    parts = line.split(None, 1)
    if not parts:
        continue
    name, flags = parts[0], parts[1] if len(parts) > 1 else ""
    r = evaluate("%s/%s.safetensors" % (d, name))
    secs = "%.0f" % train_seconds("%s/%s-train.log" % (d, name))
    be = best_epoch("%s/%s-train.log" % (d, name))
    assert r["within_budget"], name + ": outside the budget"
    print("%-12s %5d %9.1f %9.1f %6.3f %7s %5s %9.2f  %s" % (name, r["n"], r["iflops_mean"],
          r["iflops_max"], r["idpb_rate"], secs, be if be is not None else "?",
          r["iflops_mean"] / ilfo["iflops_mean"], flags or "(defaults)"))
EOF
