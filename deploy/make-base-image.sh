#!/usr/bin/env bash
# Makes the debian:bookworm-slim base image locally, for machines that reach
# Debian's mirror but no image registry: mmdebstrap builds a minimal bookworm
# root (variant minbase, documentation and locales left out as in the
# registry's -slim image), `docker import` loads it and tags it.
# Usage: deploy/make-base-image.sh [TAG]   (default debian:bookworm-slim)
# Needs mmdebstrap (Debian package) and a docker daemon (DOCKER_HOST is
# honoured, DOCKER names the client); run as root. MIRROR overrides the mirror.
set -euo pipefail
tag=${1:-debian:bookworm-slim}
mirror=${MIRROR:-http://deb.debian.org/debian}
command -v mmdebstrap >/dev/null || { echo "make-base-image: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }
docker=${DOCKER:-docker}
command -v "$docker" >/dev/null || { echo "make-base-image: $docker missing (apt-get install docker.io)" >&2; exit 1; }
tar=$(mktemp "${TMPDIR:-/tmp}/dp-base.XXXXXX.tar")
trap 'rm -f "$tar"' EXIT
# the -slim image's dpkg filter: no man pages, docs or translations
mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$tar" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb ${MIRROR_SECURITY:-http://deb.debian.org/debian-security} bookworm-security main"
"$docker" import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tar" "$tag" >/dev/null
echo "make-base-image: $tag ($("$docker" image inspect -f '{{.Size}}' "$tag") bytes)"
