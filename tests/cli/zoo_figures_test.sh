#!/usr/bin/env bash
# The shipped gated models against the figures they were trained for, from
# `dp-zoo eval --json` on all 10,000 Fashion-MNIST test images (docs/ZOO.md,
# "Decisions and their margins"):
# - skipnet, skipnet_ff: at most 2% of gate decisions within 0.05 of the
#   threshold, accuracy >= 0.90, mean executed fraction in [0.30, 0.80], and
#   more than one mask (the gates choose per input);
# - blockdrop: every block dropped for at least 5% of the images, at least 8
#   masks each used by >= 0.5% of them, accuracy >= 0.90, mean executed
#   fraction in [0.30, 0.80].
# Usage: zoo_figures_test.sh SOURCE_DIR BINARY_DIR
set -euo pipefail
src=$1 bin=$2
zoo=$bin/cli/dp-zoo
data=/usr/share/datasets/fashion-mnist
[ -x "$zoo" ] || { echo "zoo_figures_test: $zoo is not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in skipnet skipnet_ff blockdrop; do
  "$zoo" eval --json --threads 1 --data-dir "$data" "$src/models/$m" >"$tmp/$m.json"
done
python3 - "$tmp" <<'EOF'
import json, sys

d = sys.argv[1]
failed = []

def check(model, what, ok, value):
    print("%-11s %-44s %-12s %s" % (model, what, value, "ok" if ok else "FAILED"))
    if not ok:
        failed.append("%s: %s (%s)" % (model, what, value))

for m in ("skipnet", "skipnet_ff", "blockdrop"):
    r = json.load(open("%s/%s.json" % (d, m)))
    assert r["images"] == 10000, "%s: %s test images, not 10,000" % (m, r["images"])
    check(m, "accuracy >= 0.90", r["accuracy"] >= 0.90, "%.4f" % r["accuracy"])
    ef = r["exec_fraction"]["mean"]
    check(m, "mean executed fraction in [0.30, 0.80]", 0.30 <= ef <= 0.80, "%.4f" % ef)
    used = r["masks"]["used_by_0_5pct"]
    if m.startswith("skipnet"):
        share = r["decisions"]["within_0_05_share"]
        check(m, "decisions within 0.05 of the threshold <= 2%", share <= 0.02,
              "%.2f%%" % (100 * share))
        check(m, "masks used by >= 0.5% of the images >= 2", len(used) >= 2, len(used))
    else:
        run = r["block_run_share"]
        low = min(1 - s for s in run)
        check(m, "every block dropped for >= 5% of the images", low >= 0.05,
              "%.1f%%" % (100 * low))
        check(m, "masks used by >= 0.5% of the images >= 8", len(used) >= 8, len(used))
if failed:
    sys.exit("zoo_figures_test: " + "; ".join(failed))
EOF
