#!/usr/bin/env bash
# The measurer's acceptance on this machine (docs/MEASURE.md, "The zoo on
# this machine"): for each shipped zoo model, train a DeepPerform generator
# (short: see TRAIN_N/EPOCHS), generate test inputs from SEEDS seeds, then
# measure the seeds and their test inputs twice, back to back, with
# `dp-measurer --once` (interleaved, per-input medians), and print per model:
#   - Pearson(FLOPs, latency) over every measurement of the first run
#     (target >= 0.9);
#   - repeatability: the share of measurements (seeds and test inputs) whose
#     median latency agrees within 5% between the two runs (target >= 90%);
#   - I-Latency of the DeepPerform inputs against their I-FLOPs (mean, max,
#     and their correlation across inputs).
# Generators and sample sets are kept in OUT and reused when present.
#
#   bench/bench_measure_zoo.sh                     # all models, 1000 seeds
#   SEEDS=200 MODELS="ranet sdn_resnet" bench/bench_measure_zoo.sh
#
# Settings (environment): BUILD (build), OUT (bench-out/measure-zoo), SEEDS
# (1000), MODELS (every models/*.pb), TRAIN_N (1000), VAL_N (100), EPOCHS (2),
# WIDTH (16), NORM (linf), EPS (0.09), WARMUP (2), REPS (15), MIN_TIME (0.045),
# ROUNDS (3: each input's repetitions and time spread over 3 passes over all inputs),
# THREADS (1), PIN (a CPU to pin to; empty: none), CLASS (x86-vm).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-bench-out/measure-zoo}
SEEDS=${SEEDS:-1000}
TRAIN_N=${TRAIN_N:-1000}
VAL_N=${VAL_N:-100}
EPOCHS=${EPOCHS:-2}
WIDTH=${WIDTH:-16}
NORM=${NORM:-linf}
EPS=${EPS:-0.09}
WARMUP=${WARMUP:-2}
REPS=${REPS:-15}
MIN_TIME=${MIN_TIME:-0.045}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1}
PIN=${PIN:-}
CLASS=${CLASS:-x86-vm}
if [ -z "${MODELS:-}" ]; then
    MODELS=$(for f in models/*.pb; do basename "$f" .pb; done | tr '\n' ' ')
fi
perform=$BUILD/cli/dp-perform
measurer=$BUILD/measurer/dp-measurer
for b in "$perform" "$measurer"; do
    [ -x "$b" ] || { echo "bench_measure_zoo: $b is missing: bash scripts/build.sh" >&2; exit 2; }
done
read -ra models <<<"$MODELS"
mkdir -p "$OUT"
pin_args=()
[ -n "$PIN" ] && pin_args=(--pin-cpu "$PIN")

echo "bench_measure_zoo: models $MODELS; $SEEDS seeds; generators $NORM $EPS, width $WIDTH," \
    "$TRAIN_N training images, $EPOCHS epochs; warm-up $WARMUP, >= $REPS repetitions and" \
    ">= $MIN_TIME s per input over $ROUNDS rounds, $THREADS thread(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "${models[@]}"; do
    d=$OUT/$m
    mkdir -p "$d"
    if [ ! -f "$d/generator.safetensors" ]; then
        t0=$(date +%s)
        "$perform" train --model "models/$m" --norm "$NORM" --eps "$EPS" --width "$WIDTH" \
            --train-n "$TRAIN_N" --val-n "$VAL_N" --epochs "$EPOCHS" --threads "$THREADS" \
            --out "$d/generator.safetensors" --quiet
        echo "$m: generator trained in $(($(date +%s) - t0)) s"
    fi
    if [ ! -f "$d/samples.safetensors" ]; then
        "$perform" generate --model "models/$m" --gen "$d/generator.safetensors" \
            --seeds "$SEEDS" --threads "$THREADS" --out "$d/samples.safetensors" --json \
            >"$d/generate.json"
    fi
    for run in 1 2; do
        t0=$(date +%s)
        "$measurer" --once --model "models/$m" --samples "$d/samples.safetensors" \
            --device-class "$CLASS" --warmup "$WARMUP" --repetitions "$REPS" \
            --min-time-s "$MIN_TIME" --rounds "$ROUNDS" --threads "$THREADS" "${pin_args[@]}" \
            --out "$d/run$run.json" >"$d/run$run.log" 2>&1 ||
            { cat "$d/run$run.log" >&2; exit 1; }
        echo "$m: run $run in $(($(date +%s) - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    done
done

python3 - "$OUT" "${models[@]}" <<'EOF'
import json, math, sys

out, models = sys.argv[1], sys.argv[2:]

def pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")

head = "%-14s %6s %8s %7s %7s %7s %8s %8s %8s %8s %8s %7s %9s"
print()
print(head % ("model", "inputs", "r(F,lat)", "rep 5%", "rep 5%", "rep 10%", "IFLOPs",
              "IFLOPs", "ILat", "ILat", "ILat", "r(I,I)", "load"))
print(head % ("", "", "run 1", "all", "inputs", "all", "mean %", "max %", "mean %", "median %",
              "max %", "", "1-min"))
for m in models:
    r1 = json.load(open("%s/%s/run1.json" % (out, m)))
    r2 = json.load(open("%s/%s/run2.json" % (out, m)))
    a, b = r1["inputs"], r2["inputs"]
    assert [x["index"] for x in a] == [x["index"] for x in b]
    agree = agree10 = total = agree_in = 0
    for x, y in zip(a, b):
        for p, q, is_input in ((x, y, 1), (x["seed"], y["seed"], 0)):
            d = abs(q["latency_median_ms"] / p["latency_median_ms"] - 1)
            agree += d <= 0.05
            agree10 += d <= 0.10
            total += 1
            agree_in += d <= 0.05 and is_input
    ifl = [x["iflops_percent"] for x in a]
    ilat = [x["ilatency_percent"] for x in a]
    loads = [r["device"][k] for r in (r1, r2) for k in ("loadavg1_start", "loadavg1_max")]
    med = sorted(ilat)[(len(ilat) + 1) // 2 - 1]
    print("%-14s %6d %8.3f %6.1f%% %6.1f%% %6.1f%% %8.1f %8.1f %8.1f %8.1f %8.1f %7.3f %4.1f-%-4.1f"
          % (m, len(a), r1["pearson_flops_latency"], 100 * agree / total,
             100 * agree_in / len(a), 100 * agree10 / total, sum(ifl) / len(ifl), max(ifl),
             sum(ilat) / len(ilat), med, max(ilat), pearson(ifl, ilat), min(loads), max(loads)))
print()
print("r(F,lat): Pearson(FLOPs, median latency) over seeds and DeepPerform inputs (target >= 0.9)")
print("rep 5%: measurements whose median latency agrees within 5% between the two runs, seeds")
print("and inputs ('all') or the DeepPerform inputs alone (target >= 90%); rep 10%: within 10%")
print("IFLOPs, ILat: I-FLOPs and I-Latency of the DeepPerform inputs over their seeds (run 1);")
print("r(I,I): Pearson(I-FLOPs, I-Latency) across inputs; load: 1-minute load average seen")
EOF
