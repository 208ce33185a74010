#!/usr/bin/env bash
# How fragile each shipped model's decisions are: runs `dp-zoo eval --trace`
# on all 10,000 Fashion-MNIST test images twice, once as the machine comes
# and once with another GEMM path and OpenBLAS kernel (DP_GEMM=portable,
# OPENBLAS_CORETYPE=Sandybridge: another order of every sum), then prints per
# model the decisions (gates, policy, exits) within 1e-4, 1e-3 and 0.05 of
# their threshold, how many images changed prediction, exit or mask between
# the two runs, and the largest difference of a decision's value.
#
#   scripts/decision-stability.sh                  # every models/*.pb
#   MODELS="ranet sdn_mobilenet" scripts/decision-stability.sh
#
# Environment: BUILD (build), OUT ($BUILD/decision-stability), MODELS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/decision-stability}
zoo=$BUILD/cli/dp-zoo
[ -x "$zoo" ] || { echo "decision-stability: $zoo is missing: bash scripts/build.sh" >&2; exit 2; }
if [ -z "${MODELS:-}" ]; then
    MODELS=$(for f in models/*.pb; do basename "$f" .pb; done | tr '\n' ' ')
fi
mkdir -p "$OUT"
read -ra models <<<"$MODELS"
for m in "${models[@]}"; do
    "$zoo" eval --quiet --threads 1 --trace "$OUT/$m.native.jsonl" "models/$m" >/dev/null
    DP_GEMM=portable OPENBLAS_CORETYPE=Sandybridge \
        "$zoo" eval --quiet --threads 1 --trace "$OUT/$m.other.jsonl" "models/$m" >/dev/null
done
python3 - "$OUT" "${models[@]}" <<'PY'
import json, sys
out, models = sys.argv[1], sys.argv[2:]
print(f"{'model':14s} {'decisions':>9s} {'<1e-4':>6s} {'<1e-3':>6s} {'<0.05':>7s} {'changed':>8s} {'max diff':>9s}")
for m in models:
    a = [json.loads(l) for l in open(f"{out}/{m}.native.jsonl")]
    b = [json.loads(l) for l in open(f"{out}/{m}.other.jsonl")]
    if len(a) != len(b):
        sys.exit(f"{m}: {len(a)} and {len(b)} images")
    key = lambda r: (r["pred"], r["exit"], r["mask"])
    changed = sum(key(x) != key(y) for x, y in zip(a, b))
    diff = max((abs(u - v) for x, y in zip(a, b) if len(x["decisions"]) == len(y["decisions"])
                for u, v in zip(x["decisions"], y["decisions"])), default=0.0)
    d = [abs(v - r["threshold"]) for r in a for v in r["decisions"]]
    n = max(len(d), 1)
    print(f"{m:14s} {len(d):9d} {sum(x < 1e-4 for x in d):6d} {sum(x < 1e-3 for x in d):6d} "
          f"{100 * sum(x < 0.05 for x in d) / n:6.1f}% {changed:8d} {diff:9.2e}")
PY
