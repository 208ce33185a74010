#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/packages.txt (and in any
# tests/*/PACKAGES file), idempotently: packages already present are skipped,
# so a second run does not touch the network.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t pkgs < <(cat scripts/packages.txt tests/*/PACKAGES 2>/dev/null |
                    sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from elsewhere on developer machines: skip when present
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
# kubectl may come from elsewhere too (and Debian's kubernetes-client would
# clash with another package's /usr/bin/kubectl): skip it when one is present
if command -v kubectl >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == kubernetes-client ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
