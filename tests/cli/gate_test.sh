#!/usr/bin/env bash
# The regression gate of dp-submit (exit 6) on real tiny campaigns in local
# mode: a first night with a baseline that does not exist yet (exit 0, says
# so), then the same campaign against a report equal in every gated figure
# (exit 0), one whose DeepPerform I-FLOPs were 2% lower (within the 5%
# tolerance: exit 0, the differences printed) and one 20% lower (exit 6,
# naming the figure and by how much). Usage: gate_test.sh SRC BUILD
set -euo pipefail
SRC=$1 BUILD=$2
SUBMIT=$BUILD/cli/dp-submit
FM=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
T=$(mktemp -d /tmp/dp-gate.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "gate_test: FAIL: $*" >&2; exit 1; }

# campaign NAME [BASELINE_URI]: a tiny campaign (no device class: every gated
# figure is exact, nothing timed)
campaign() {
  cat <<EOC
name: "$1"
store_uri: "file://$T/unused"
models { name: "sdn_resnet" family: MODEL_FAMILY_SDN_RESNET
  spec_uri: "file://$SRC/models/sdn_resnet.pb"
  weights_uri: "file://$SRC/models/sdn_resnet.safetensors" }
datasets { name: "fmnist" format: DATASET_FORMAT_IDX
  train_images_uri: "file://$FM/train-images-idx3-ubyte.gz"
  train_labels_uri: "file://$FM/train-labels-idx1-ubyte.gz"
  test_images_uri: "file://$FM/t10k-images-idx3-ubyte.gz"
  test_labels_uri: "file://$FM/t10k-labels-idx1-ubyte.gz"
  train_range { begin: 0 end: 71 } test_range { begin: 0 end: 8 } shard_size: 8 }
budgets { norm: NORM_LINF eps: [0.09] }
generator { width { value: 8 } epochs { value: 1 } batch_size { value: 32 } seed: 1 }
baselines { method: BASELINE_METHOD_RANDOM }
EOC
  [ -z "${2:-}" ] || echo "regression { baseline_report_uri: \"$2\" tolerance_pct { value: 5 } }"
}

# night NAME DIR [BASELINE]: runs it; its exit status in $T/rc, output in $T/out
night() {
  campaign "$1" "${3:-}" >"$T/$1.txtpb"
  set +e
  "$SUBMIT" --local "$T/$1.txtpb" --dir "$T/$2" --threads 1 >"$T/out" 2>"$T/err"
  echo $? >"$T/rc"
  set -e
}
expect() { # expect RC TEXT...
  local rc; rc=$(cat "$T/rc")
  [ "$rc" = "$1" ] || { cat "$T/out" "$T/err" >&2; fail "exit $rc, expected $1"; }
  shift
  for want in "$@"; do
    grep -qF -- "$want" "$T/out" || { cat "$T/out" >&2; fail "no '$want' in the output"; }
  done
}

night first run1 "file://$T/none/report.json"
expect 0 "regression: not compared with file://$T/none/report.json:"
base=$T/run1/store/first-1/report/report.json
[ -s "$base" ] || fail "no report.json from the first night"

night equal run2 "file://$base"
expect 0 "regression: none against file://$base (the gated figures are equal)"

# baseline I-FLOPs of DeepPerform lower by F: the new report is higher
scaled() {
  "$PY" - "$base" "$2" "$1" <<'EOP'
import json, sys
r = json.load(open(sys.argv[1]))
n = 0
for g in r["groups"]:
    if g.get("method") == "deepperform" and isinstance(g.get("iflops_mean"), (int, float)):
        g["iflops_mean"] *= float(sys.argv[3]); n += 1
assert n, "no deepperform group with iflops_mean"
json.dump(r, open(sys.argv[2], "w"))
EOP
}
scaled 0.98 "$T/within.json"
night within run3 "file://$T/within.json"
expect 0 "regression: none beyond 5% against file://$T/within.json; 1 figure changed:" \
  "sdn_resnet/linf-0.09/deepperform/iflops_mean:"

scaled 0.8 "$T/worse.json"
night worse run4 "file://$T/worse.json"
expect 6 "regression: 1 figure worse than the baseline file://$T/worse.json by more than 5%" \
  "sdn_resnet/linf-0.09/deepperform/iflops_mean:" "(+25%)  WORSE"
echo "gate_test: no baseline yet 0, equal 0, within tolerance 0 (printed), 20% worse 6 (named)"
