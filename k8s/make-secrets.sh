#!/usr/bin/env bash
# Writes the files of an overlay's Secrets (OVERLAY/secrets/, kept out of
# git): the store's keys (access-key, secret-key: MinIO's root credentials
# and every pod's S3 keys) and the CURVE key pairs of the coordinator, the
# trainers, the measurers and dp-submit (NAME.key secret, NAME.pub public;
# `authorized` lists the public keys the coordinator admits). Existing files
# are kept: run it again after deleting the ones to renew.
# Usage: k8s/make-secrets.sh OVERLAY_DIR
#   S3_ACCESS_KEY, S3_SECRET_KEY   the store's keys (default: random ones, for MinIO)
#   DP_COORDINATOR                 the dp-coordinator binary that makes the keys
#                                  (default: the one on PATH, else build/coordinator/)
set -euo pipefail
[ $# -eq 1 ] && [ -d "$1" ] || { echo "usage: $0 OVERLAY_DIR (an existing directory)" >&2; exit 2; }
dir=$1/secrets
here=$(cd "$(dirname "$0")" && pwd)
coord=${DP_COORDINATOR:-$(command -v dp-coordinator || echo "$here/../build/coordinator/dp-coordinator")}
[ -x "$coord" ] || { echo "make-secrets: no dp-coordinator at $coord (build it, or set DP_COORDINATOR)" >&2; exit 1; }
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077
random() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
[ -s "$dir/access-key" ] || printf '%s' "${S3_ACCESS_KEY:-dp$(random 18)}" >"$dir/access-key"
[ -s "$dir/secret-key" ] || printf '%s' "${S3_SECRET_KEY:-$(random 40)}" >"$dir/secret-key"
for name in coordinator trainer measurer submit; do
  [ -s "$dir/$name.key" ] || "$coord" keygen "$dir" "$name" >/dev/null
done
# the public keys admitted: every client's, one per line (a comment may follow)
for name in trainer measurer submit; do
  printf '%s %s\n' "$(grep -v '^#' "$dir/$name.pub" | head -n1)" "$name"
done >"$dir/authorized"
echo "make-secrets: $dir: access-key secret-key authorized $(cd "$dir" && ls ./*.key ./*.pub | tr '\n' ' ')"
