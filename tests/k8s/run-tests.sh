#!/usr/bin/env bash
# The Kubernetes manifests and the deployment files, checked offline.
#   run-tests.sh BUILD_DIR validate   render every kustomization (k8s/overlays/dev,
#       k8s/overlays/farm, k8s/jobs) with `kubectl kustomize`, Secrets made by
#       k8s/make-secrets.sh; yamllint the sources and the output; validate each
#       object strictly (validate.mjs); check what the manifests promise
#       (expect.py); and show that a wrong value and a misspelled field fail.
#   run-tests.sh BUILD_DIR args       run every command line of the rendered
#       manifests, deploy/compose.yaml and deploy/systemd/*.service through the real
#       programs with --check-args (tests/deploy/check_args.py).
# Installs kubernetes-models into tests/k8s/node_modules (npm ci) if needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR validate|args" >&2; exit 2; }
build=$(cd "$1" && pwd)
mode=$2
# Debian's interpreter (python3-yaml), not whichever python3 is first on PATH
py=${DP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
for tool in kubectl yamllint node "$py"; do
  command -v "$tool" >/dev/null || {
    echo "run-tests: $tool missing (bash scripts/install-deps.sh installs it)" >&2; exit 1; }
done
if [ ! -d "$here/node_modules/kubernetes-models" ]; then
  echo "run-tests: installing kubernetes-models (npm ci --prefix $here)" >&2
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-k8s-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$root/k8s" "$work/k8s"
for o in dev farm; do
  DP_COORDINATOR=$build/coordinator/dp-coordinator bash "$work/k8s/make-secrets.sh" \
    "$work/k8s/overlays/$o" >/dev/null
done
rendered=()
for t in overlays/dev overlays/farm jobs; do
  out=$work/${t//\//-}.yaml
  if ! kubectl kustomize "$work/k8s/$t" >"$out" 2>"$out.err"; then
    echo "FAIL kubectl kustomize k8s/$t:" >&2; cat "$out.err" >&2; exit 1
  fi
  echo "rendered k8s/$t: $(grep -c '^kind:' "$out") objects"
  rendered+=("$out")
done

case $mode in
validate)
  yamllint -s -c "$here/yamllint.yaml" "$root/k8s" "$root/deploy/compose.yaml" "${rendered[@]}"
  echo "yamllint: sources and rendered output clean"
  node "$here/validate.mjs" "${rendered[@]}"
  "$py" "$here/expect.py" "$work/overlays-dev.yaml" "$work/overlays-farm.yaml" "$work/jobs.yaml"
  # the validator must refuse a wrong value and a misspelled field
  bad=$work/bad.yaml
  fails() { # fails NAME EXPECTED-TEXT: validate.mjs must exit 1 on $bad and print the text
    local out rc=0
    out=$(node "$here/validate.mjs" "$bad") || rc=$?
    if [ "$rc" -ne 1 ] || ! grep -qF -- "$2" <<<"$out"; then
      echo "FAIL $1: validate.mjs exit $rc, expected 1 and '$2'; it said:" >&2
      echo "$out" >&2; exit 1
    fi
    echo "refused as it must, $1: $(grep -F -- "$2" <<<"$out" | head -n1)"
  }
  sed 's/^  replicas: 1$/  replicas: one/' "$work/overlays-dev.yaml" >"$bad"
  fails "wrong value (replicas: one)" '/spec/replicas: type {"type":"integer"}'
  sed '0,/livenessProbe:/s//livenesProbe:/' "$work/overlays-dev.yaml" >"$bad"
  fails "misspelled field (livenesProbe)" "livenesProbe: unknown field"
  sed '0,/readOnly: true/s//readonly: true/' "$work/overlays-farm.yaml" >"$bad"
  fails "misspelled nested field (readonly)" "/readonly: unknown field"
  sed '0,/concurrencyPolicy: Forbid/s//concurrencyPolicy: Never/' "$work/overlays-farm.yaml" >"$bad"
  fails "value outside an enum (concurrencyPolicy: Never)" "/spec/concurrencyPolicy: enum"
  echo "k8s manifests: 4 passed, 0 failed"
  ;;
args)
  units=()
  for u in "$root"/deploy/systemd/*.service; do units+=(--unit "$u"); done
  k8s=()
  for r in "${rendered[@]}"; do k8s+=(--k8s "$r"); done
  # compose: coordinator, 2 trainers, measurer, submit; the trainer unit;
  # dev 4, farm 5 and the Job's 2 containers
  "$py" "$root/tests/deploy/check_args.py" "$build" --compose "$root/deploy/compose.yaml" \
    "${units[@]}" "${k8s[@]}" --expect $((5 + ${#units[@]} / 2 + 4 + 5 + 2))
  # and the check can fail: a misspelled flag and a value out of bounds are refused
  for bad in "--treads 2" "--threads 5000" "--http"; do
    # shellcheck disable=SC2086 # the flags are split on purpose
    if "$build/worker/dp-worker" $bad --check-args >/dev/null 2>&1; then
      echo "FAIL dp-worker $bad --check-args was accepted" >&2; exit 1
    fi
  done
  echo "refused as it must: dp-worker --treads 2, --threads 5000, --http without a value"
  ;;
*) echo "usage: $0 BUILD_DIR validate|args" >&2; exit 2 ;;
esac
