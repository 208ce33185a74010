#!/usr/bin/env bash
# The campaign report at fleet size in headless Chromium: bench_report
# builds report.json and report.html of a synthetic campaign (5 models x 6
# budgets x 4 methods x 1,000 inputs, 2 device classes; real Fashion-MNIST
# images, synthetic FLOPs and latencies), then page_check.py opens the page
# ROUNDS times (default 5) in a fresh headless Chromium each, and this
# prints the page's size and the time from navigation start to the second
# frame after the load event (laid out and painted), each round and the
# median. Targets: under 2 s, under 10 MB.
#
#   bash bench/bench_report.sh [ROUNDS]      (DP_BUILD_DIR: default build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
build=${DP_BUILD_DIR:-build}
out=$(mktemp -d "${TMPDIR:-/tmp}/dp-bench-report.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$build/bench/bench_report" "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for i in $(seq "$rounds"); do
  python3 tests/report/page_check.py "$out/report.html" --check --min-charts 51 --min-images 120 \
    >"$out/round-$i.json"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
runs = [json.load(open("%s/round-%d.json" % (d, i + 1))) for i in range(n)]
opened = [r["opened_ms"] for r in runs]
r = runs[0]
print("page %.2f MB, %d charts (%d marks), %d images, console errors %d, network %d"
      % (r["bytes"] / 1e6, r["charts"], r["chart_marks"], r["images"],
         len(r["console_errors"]), len(r["network"])))
print("opened (ms): " + " ".join("%.0f" % x for x in opened) +
      "; median %.0f, best %.0f" % (statistics.median(opened), min(opened)))
ok = statistics.median(opened) < 2000 and r["bytes"] < 10e6
print("targets (median < 2000 ms, < 10 MB): " + ("met" if ok else "MISSED"))
PY
