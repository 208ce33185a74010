#!/usr/bin/env bash
# scripts/perform-table.sh end to end at tiny settings: two models side by
# side (JOBS=2), one JSON row per (model, norm, eps, method) with every key,
# DeepSloth skipped on BlockDrop only; scripts/perform-summary.py's counts
# agree with the rows, also when the rows come in two files (--rows prints
# them); a second run reuses every file (no
# training, the same rows); a model whose files are garbage fails the run
# with exit 1 and a message naming it, and the good model's files stay.
# Usage: perform_table_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
  { echo "perform_table_test: Fashion-MNIST not installed"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-table-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "perform_table_test: $*" >&2; exit 1; }
export BUILD=$build SEEDS=8 ILFO_SEEDS=4 SLOTH_SEEDS=4 EPOCHS=1 TRAIN_N=64 VAL_N=32 WIDTH=8
export ILFO_ITERS=2 LINF=0.09 L2=1.0 JOBS=2
table() { (cd "$src" && bash scripts/perform-table.sh); }

OUT=$work/out MODELS="$src/models/sdn_resnet $src/models/blockdrop" table >"$work/a.json" 2>"$work/a.log" ||
  { cat "$work/a.log" >&2; fail "first run failed"; }
python3 - "$work/a.json" <<'PY' || fail "rows wrong: $(cat "$work/a.json")"
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows if isinstance(rows, list) else rows["rows"]
keys = {"model", "norm", "eps", "method", "iflops_mean", "iflops_max", "exec_fraction_mean",
        "psnr_mean", "seconds_per_input", "idpb_rate"}
got = [(r["model"], r["norm"], r["eps"], r["method"]) for r in rows]
want = [(m, n, e, t) for m in ("sdn_resnet", "blockdrop") for n, e in (("linf", 0.09), ("l2", 1.0))
        for t in ("deepperform", "random", "ilfo", "deepsloth") if not (m == "blockdrop" and t == "deepsloth")]
assert got == want, (got, want)
for r in rows:
    assert keys <= set(r), sorted(keys - set(r))
    assert r["seconds_per_input"] > 0 and 0 <= r["idpb_rate"] <= 1, r
PY
grep -q "skip deepsloth on blockdrop" "$work/a.log" || fail "no skip line for DeepSloth on BlockDrop"
# the acceptance summary of those rows: 4 pairs, the counts as the rows give them
python3 "$src/scripts/perform-summary.py" "$work/a.json" >"$work/a.sum" || fail "perform-summary failed"
want=$(python3 - "$work/a.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
by = {}
for r in rows: by.setdefault((r["model"], r["norm"], r["eps"]), {})[r["method"]] = r["iflops_mean"]
print("DeepPerform >= ILFO: %d of %d" % (sum(v["deepperform"] >= v["ilfo"] for v in by.values()), len(by)))
PY
)
grep -qx "pairs made: 4 of 4" "$work/a.sum" || fail "summary: $(cat "$work/a.sum")"
grep -qx "$want" "$work/a.sum" || fail "summary says $(grep ILFO "$work/a.sum"), the rows: $want"
[ "$(grep -c '^| \(sdn_resnet\|blockdrop\) |' "$work/a.sum")" = 2 ] || fail "summary rows: $(cat "$work/a.sum")"
# --rows: one Markdown row per JSON row first; a table given in two parts (the
# rows split, one row repeated with another value) reads as one, the later
# file's row replacing the earlier
python3 - "$work/a.json" "$work/p1.json" "$work/p2.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows if isinstance(rows, list) else rows["rows"]
json.dump(rows[:5] + [dict(rows[5], iflops_mean=-777.25)], open(sys.argv[2], "w"))
json.dump(rows[5:], open(sys.argv[3], "w"))
PY
python3 "$src/scripts/perform-summary.py" --rows "$work/p1.json" "$work/p2.json" >"$work/p.sum" ||
  fail "perform-summary --rows failed"
nrows=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r if isinstance(r, list) else r["rows"]))' "$work/a.json")
[ "$(grep -c '^| \(sdn_resnet\|blockdrop\) | \(linf\|l2\) |' "$work/p.sum")" = "$nrows" ] ||
  fail "--rows: not $nrows rows: $(cat "$work/p.sum")"
grep -q -- '-777.2' "$work/p.sum" && fail "--rows: the first part's row was not replaced: $(cat "$work/p.sum")"
diff <(sed -n '/^| model | Linf/,$p' "$work/p.sum") "$work/a.sum" >/dev/null ||
  fail "the table in two parts summarises otherwise: $(cat "$work/p.sum")"
rc=0
python3 "$src/scripts/perform-summary.py" --rows >/dev/null 2>"$work/e.log" || rc=$?
[ $rc = 2 ] || fail "no file: exit $rc, expected 2"
echo '{"rows": [1]}' >"$work/bad.json"
rc=0
python3 "$src/scripts/perform-summary.py" "$work/bad.json" >/dev/null 2>"$work/e.log" || rc=$?
[ $rc = 1 ] && grep -q "bad.json: a row that is not an object" "$work/e.log" ||
  fail "bad row: exit $rc: $(cat "$work/e.log")"
[ "$(grep -c '^perform-table: train ' "$work/a.log")" = 4 ] || fail "expected 4 trainings"
# Linf generators take the scaled map by default (LINF_SCALED=1), L2 ones cannot
head -c 4096 "$work/out/sdn_resnet-linf-0.09-generator.safetensors" | grep -q '"linf_scaled":"1"' ||
  fail "the Linf generator is not --linf-scaled"
head -c 4096 "$work/out/sdn_resnet-l2-1.0-generator.safetensors" | grep -q '"linf_scaled":"0"' ||
  fail "the L2 generator has linf_scaled set"

# again: everything is reused, the rows are the same
OUT=$work/out MODELS="$src/models/sdn_resnet $src/models/blockdrop" table >"$work/b.json" 2>"$work/b.log" ||
  { cat "$work/b.log" >&2; fail "second run failed"; }
if grep -Eq '^perform-table: (train|generate|random|ilfo|deepsloth) ' "$work/b.log"; then
  fail "second run redid work: $(cat "$work/b.log")"
fi
grep -q "skip deepsloth on blockdrop (not supported, as before)" "$work/b.log" ||
  fail "second run: no cached skip line"
cmp -s "$work/a.json" "$work/b.json" || fail "second run's rows differ"

# a broken model: exit 1, named; the good one's sample sets are kept
mkdir -p "$work/models"
head -c 100 /dev/urandom >"$work/models/broken.pb"
head -c 100 /dev/urandom >"$work/models/broken.safetensors"
rc=0
OUT=$work/out MODELS="$work/models/broken $src/models/sdn_resnet" table >"$work/c.json" 2>"$work/c.log" || rc=$?
[ $rc = 1 ] || fail "broken model: exit $rc, expected 1: $(cat "$work/c.log")"
grep -q "broken" "$work/c.log" || fail "broken model not named: $(cat "$work/c.log")"
[ -f "$work/out/sdn_resnet-linf-0.09-ilfo.safetensors" ] || fail "good model's files lost"
bad=0
JOBS=0 OUT=$work/out MODELS="$src/models/sdn_resnet" table >/dev/null 2>"$work/d.log" || bad=$?
[ $bad = 2 ] || fail "JOBS=0: exit $bad, expected 2"
grep -q "JOBS must be a positive integer" "$work/d.log" || fail "JOBS=0: $(cat "$work/d.log")"
echo "perform_table_test: ok"
