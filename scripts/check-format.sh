#!/usr/bin/env bash
# Fails if any C source or header in the tree differs from clang-format's output.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r f; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "needs clang-format: $f"; bad=1
  fi
done < <(git ls-files '*.c' '*.h')
[ $bad -eq 0 ] && echo "clang-format: clean"
exit $bad
