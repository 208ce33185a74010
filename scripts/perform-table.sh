#!/usr/bin/env bash
# The DeepPerform table: for every model in models/ (or $MODELS), every budget
# and every method, generate test inputs on the same Fashion-MNIST test seeds
# and print one JSON row per (model, norm, eps, method) with dp-perform
# evaluate --json. Generators and sample sets are kept under $OUT, and a
# killed run picks up where it stopped (finished files are reused, training
# resumes from its checkpoint).
#
# Defaults are the acceptance setting; every knob is an environment variable:
#   BUILD=build  OUT=$BUILD/perform-out  MODELS="models/a models/b"
#   SEEDS=1000  ILFO_SEEDS=$SEEDS  SLOTH_SEEDS=$SEEDS  LINF="0.03 0.06 0.09"  L2="0.5 1.0 1.5"
#   (LINF= or L2= empty: no budget of that norm)  TIME_LIMIT=0 (seconds per training)
#   DATA_DIR=/usr/share/datasets/fashion-mnist
#   WIDTH EPOCHS PATIENCE TRAIN_N VAL_N (unset: dp-perform train's defaults, see its --help)
#   BATCH=32
#   ALPHA=0  BETA=0  ILFO_ITERS=300  THREADS=1  METHODS="deepperform random ilfo deepsloth"
#   L2_AT_MOST=0 (1: "at most eps" projection for the generator)
#   LINF_SCALED=1 (Linf generators trained with --linf-scaled, delta = eps * g, which
#   leads the published clip at every budget measured: docs/PERFORM.md; 0: the clip)
#   ADV_MARGIN=0 (> 0: generators trained with --adv-margin, L_adv on p_k below it only)
#   ADV_HINGE=0 (1, with ADV_MARGIN: --adv-hinge, ILFO's terms margin - p_k)
#   JOBS=1 (models worked on side by side; with THREADS=1 each, JOBS=cores is
#   the fastest setting on the shipped models: docs/PERFORM.md, Threads)
# Reduced example (minutes, not hours):
#   SEEDS=200 ILFO_SEEDS=50 WIDTH=16 EPOCHS=3 TRAIN_N=2000 VAL_N=200 scripts/perform-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/perform-out}
SEEDS=${SEEDS:-1000}
ILFO_SEEDS=${ILFO_SEEDS:-$SEEDS}
SLOTH_SEEDS=${SLOTH_SEEDS:-$SEEDS}
TIME_LIMIT=${TIME_LIMIT:-0}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
LINF=${LINF-"0.03 0.06 0.09"}
L2=${L2-"0.5 1.0 1.5"}
# generator settings: passed on only where set, else dp-perform's defaults
gen_args=()
[ -n "${WIDTH:-}" ] && gen_args+=(--width "$WIDTH")
[ -n "${EPOCHS:-}" ] && gen_args+=(--epochs "$EPOCHS")
[ -n "${PATIENCE:-}" ] && gen_args+=(--patience "$PATIENCE")
[ -n "${TRAIN_N:-}" ] && gen_args+=(--train-n "$TRAIN_N")
[ -n "${VAL_N:-}" ] && gen_args+=(--val-n "$VAL_N")
[ -n "${ADV_MARGIN:-}" ] && gen_args+=(--adv-margin "$ADV_MARGIN")
[ "${ADV_HINGE:-0}" = 1 ] && gen_args+=(--adv-hinge)
BATCH=${BATCH:-32}
ALPHA=${ALPHA:-0}
BETA=${BETA:-0}
ILFO_ITERS=${ILFO_ITERS:-300}
THREADS=${THREADS:-1}
L2_AT_MOST=${L2_AT_MOST:-0}
LINF_SCALED=${LINF_SCALED:-1}
METHODS=${METHODS:-"deepperform random ilfo deepsloth"}
if [ -z "${MODELS:-}" ]; then
  MODELS=$(ls models/*.pb 2>/dev/null | sed 's/\.pb$//' | tr '\n' ' ')
fi
DP="$BUILD/cli/dp-perform"
[ -x "$DP" ] || { echo "perform-table: build $DP first (cmake --build $BUILD --target dp-perform)" >&2; exit 2; }
mkdir -p "$OUT"
log() { echo "perform-table: $*" >&2; }
JOBS=${JOBS:-1}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "perform-table: JOBS must be a positive integer, got '$JOBS'" >&2; exit 2; }
common=(--threads "$THREADS" --quiet --data-dir "$DATA_DIR")
# every sample set of one model, made where missing (in a subshell: exit 1 on failure)
run_model() (
  model=$1
  name=$(basename "$model")
  for norm in linf l2; do
    if [ "$norm" = linf ]; then epss=$LINF; else epss=$L2; fi
    atm=()
    if [ "$norm" = l2 ]; then
      if [ "$L2_AT_MOST" = 1 ]; then atm=(--l2-at-most); else atm=(--l2-exact); fi
    elif [ "$LINF_SCALED" = 1 ]; then
      atm=(--linf-scaled)
    fi
    for eps in $epss; do
      tag="$name-$norm-$eps"
      for method in $METHODS; do
        f="$OUT/$tag-$method.safetensors"
        if [ ! -f "$f" ]; then
          case $method in
          deepperform)
            gen="$OUT/$tag-generator.safetensors"
            if [ ! -f "$gen" ]; then
              log "train $tag ${gen_args[*]}"
              "$DP" train --model "$model" --norm "$norm" --eps "$eps" "${atm[@]}" --out "$gen" \
                "${gen_args[@]}" --batch "$BATCH" --alpha "$ALPHA" --beta "$BETA" \
                --time-limit "$TIME_LIMIT" --threads "$THREADS" --data-dir "$DATA_DIR" \
                >"$OUT/$tag-train.log"
            fi
            log "generate $tag"
            "$DP" generate --model "$model" --gen "$gen" --seeds "$SEEDS" --batch "$BATCH" \
              --out "$f" "${common[@]}"
            ;;
          *)
            if grep -qs "not supported" "$OUT/$tag-$method.err"; then
              log "skip $method on $name (not supported, as before)"
              continue
            fi
            n=$SEEDS
            [ "$method" = ilfo ] && n=$ILFO_SEEDS
            [ "$method" = deepsloth ] && n=$SLOTH_SEEDS
            log "$method $tag ($n seeds)"
            if ! "$DP" baseline --method "$method" --model "$model" --norm "$norm" --eps "$eps" \
              --seeds "$n" --iters "$ILFO_ITERS" --batch "$BATCH" --out "$f" "${common[@]}" \
              2>"$OUT/$tag-$method.err"; then
              if grep -q "not supported" "$OUT/$tag-$method.err"; then
                log "skip $method on $name: $(cat "$OUT/$tag-$method.err")"
                continue
              fi
              cat "$OUT/$tag-$method.err" >&2
              exit 1
            fi
            ;;
          esac
        fi
      done
    done
  done
)
models=()
for model in $MODELS; do
  if [ -f "$model.safetensors" ]; then models+=("$model"); else log "skip $model (no weights)"; fi
done
failed=0
running=0
# each model in the background (where `set -e` holds; in a `||` list it would not)
for model in "${models[@]}"; do
  if [ $running -ge "$JOBS" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  [ $failed = 0 ] || break
  run_model "$model" &
  running=$((running + 1))
done
while [ $running -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ $failed = 0 ] || { log "a model's sample sets failed (messages above)"; exit 1; }
# the rows: every sample set made above, in model, norm, eps, method order
files=()
for model in "${models[@]}"; do
  name=$(basename "$model")
  for norm in linf l2; do
    if [ "$norm" = linf ]; then epss=$LINF; else epss=$L2; fi
    for eps in $epss; do
      for method in $METHODS; do
        f="$OUT/$name-$norm-$eps-$method.safetensors"
        [ -f "$f" ] && files+=("$f")
      done
    done
  done
done
[ ${#files[@]} -gt 0 ] || { log "no sample sets"; exit 1; }
"$DP" evaluate --json "${files[@]}" | tee "$OUT/table.json"
