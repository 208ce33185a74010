#!/usr/bin/env bash
# The report of a small real campaign in headless Chromium.
#
# 1. dp-submit --local runs a tiny campaign (one model, Linf 0.09,
#    DeepPerform, random and ILFO on 16 Fashion-MNIST test images, latency
#    on this machine; a few seconds); its REPORT task writes report.json and
#    report.html, and dp-submit prints the page's path.
# 2. page_check.py loads that page in Chromium (--headless --no-sandbox
#    --disable-gpu, a fresh profile): no console errors, no network
#    request, every chart has marks and a size, every image decodes; the
#    screenshot stays in build/tests/report/artifacts/.
# 3. dp-report rebuilds the report from the store directory, against the
#    first report as its baseline with one figure made worse: the page
#    passes the same checks and shows the regression; dp-report diff exits
#    0 for a report against itself and 3 for the worsened one.
set -euo pipefail
BUILD=${DP_BUILD:?} SRC=${DP_SRC:?}
ART=$BUILD/tests/report/artifacts
T=$(mktemp -d "${TMPDIR:-/tmp}/dp-report-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$ART"
fail() { echo "report_browser: FAIL: $*" >&2; exit 1; }
F=/usr/share/datasets/fashion-mnist
[ -r "$F/t10k-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST is not installed in $F"; exit 1; }
command -v chromium >/dev/null || fail "chromium is not installed (scripts/install-deps.sh)"

cat >"$T/tiny.txtpb" <<TXT
name: "tiny"
store_uri: "file://./store"
models { name: "sdn_resnet" family: MODEL_FAMILY_SDN_RESNET
  spec_uri: "file://$SRC/models/sdn_resnet.pb"
  weights_uri: "file://$SRC/models/sdn_resnet.safetensors" }
datasets { name: "fmnist" format: DATASET_FORMAT_IDX
  train_images_uri: "file://$F/train-images-idx3-ubyte.gz"
  train_labels_uri: "file://$F/train-labels-idx1-ubyte.gz"
  test_images_uri: "file://$F/t10k-images-idx3-ubyte.gz"
  test_labels_uri: "file://$F/t10k-labels-idx1-ubyte.gz"
  train_range { begin: 0 end: 71 }
  test_range { begin: 0 end: 16 }
  shard_size: 8 }
budgets { norm: NORM_LINF eps: [0.09] }
generator { width { value: 8 } epochs { value: 1 } batch_size { value: 32 } seed: 1 }
baselines { method: BASELINE_METHOD_RANDOM }
baselines { method: BASELINE_METHOD_ILFO iterations { value: 2 } }
device_classes { name: "local" probe: ENERGY_PROBE_NONE }
measure { warmup { value: 1 } repetitions { value: 2 } }
TXT

"$BUILD/cli/dp-submit" --local "$T/tiny.txtpb" --dir "$T/run" --threads 1 >"$T/submit.out" 2>"$T/submit.err" ||
  fail "dp-submit --local exited $?: $(cat "$T/submit.err")"
page=$T/run/store/tiny-1/report/report.html
grep -qx "report: $page" "$T/submit.out" || fail "dp-submit did not print the report's path: $(cat "$T/submit.out")"
[ -s "$T/run/store/tiny-1/report/report.json" ] || fail "no report.json beside the page"

# 1 model x 1 budget: 1 executed-fraction chart, 1 latency CDF, 1 scatter,
# the cost chart; 4 worst inputs, one strip each (seed, 3 methods x (x' + delta))
python3 "$SRC/tests/report/page_check.py" "$page" --check --min-charts 4 --min-images 4 \
  --screenshot "$ART/report-tiny.png" >"$T/check1.json" || fail "the task's page: $(cat "$T/check1.json")"
echo "report_browser: the REPORT task's page: $(cat "$T/check1.json")"
[ -s "$ART/report-tiny.png" ] || fail "no screenshot"

# a baseline whose DeepPerform latency was 20% lower: now it is worse
python3 - "$T/run/store/tiny-1/report/report.json" "$T/base.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for g in r["groups"]:
    if g["method"] == "deepperform":
        for l in g["latency"]:
            l["latency_ms_p90"] = l["latency_ms_p90"] / 1.2
json.dump(r, open(sys.argv[2], "w"))
PY
"$BUILD/cli/dp-report" "$T/run/store" tiny-1 --dataset "$F" --baseline "$T/base.json" --out "$T/re" \
  >"$T/report.out" || fail "dp-report exited $?"
grep -qx "report: $T/re/report.html" "$T/report.out" || fail "dp-report printed: $(cat "$T/report.out")"
python3 "$SRC/tests/report/page_check.py" "$T/re/report.html" --check --min-charts 4 --min-images 4 \
  --screenshot "$ART/report-rebuilt.png" >"$T/check2.json" || fail "dp-report's page: $(cat "$T/check2.json")"
grep -q 'id="regression"' "$T/re/report.html" || fail "no regression section"
grep -q 'deepperform/local/latency_ms_p90' "$T/re/report.html" || fail "the worse figure is not on the page"

rc=0
"$BUILD/cli/dp-report" diff "$T/re/report.json" "$T/re/report.json" >"$T/same.txt" || rc=$?
[ "$rc" = 0 ] || fail "diff of a report with itself exited $rc"
grep -qx "0 figures changed, 0 worse by more than 5%" "$T/same.txt" || fail "$(cat "$T/same.txt")"
rc=0
"$BUILD/cli/dp-report" diff "$T/base.json" "$T/re/report.json" >"$T/worse.txt" || rc=$?
[ "$rc" = 3 ] || fail "diff against the better baseline exited $rc, expected 3"
grep -q "^! sdn_resnet/linf-0.09/deepperform/local/latency_ms_p90: .* worse$" "$T/worse.txt" ||
  fail "diff: $(cat "$T/worse.txt")"
echo "report_browser: passed; screenshots in $ART"
