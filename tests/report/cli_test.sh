#!/usr/bin/env bash
# dp-report's bad usage and bad inputs: each exits with its documented
# status (2) and names what was wrong; --json renders beside its input.
set -euo pipefail
BUILD=${DP_BUILD:?} SRC=${DP_SRC:?}
R=$BUILD/cli/dp-report
T=$(mktemp -d "${TMPDIR:-/tmp}/dp-report-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "report_cli: FAIL: $*" >&2; exit 1; }
# expect STATUS TEXT ARGS...: exit status STATUS and TEXT on stderr
expect() {
  local want=$1 text=$2 rc=0
  shift 2
  "$R" "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = "$want" ] || fail "dp-report $*: exit $rc, expected $want ($(cat "$T/err"))"
  grep -qF -- "$text" "$T/err" || fail "dp-report $*: '$text' not in: $(cat "$T/err")"
}
expect 2 "unknown option" --bogus
expect 2 "STORE and CAMPAIGN_ID are needed" "$T"
expect 2 "--worst expects an integer in [0, 16], got '99'" --worst 99 "$T" c-1
expect 2 "--threshold expects a number in (0, 1], got '0'" --threshold 0 "$T" c-1
expect 2 "nothing of campaign c-1 in file://$T" "$T" c-1
echo '{"format":"other"}' >"$T/other.json"
expect 2 "not a campaign report" --json "$T/other.json"
echo '{"format":"dp-report","version":1,"campaign":{"id":"c"},"groups":[{"model":1}]}' >"$T/bad.json"
expect 2 "groups[0].model: a string is needed" --json "$T/bad.json"
expect 2 "cannot read $T/missing.json" diff "$T/missing.json" "$T/bad.json"
expect 2 "the old report" diff "$T/other.json" "$T/bad.json"
expect 2 "diff needs OLD.json and NEW.json" diff "$T/other.json"
mkdir -p "$T/d"
cp "$SRC/fuzz/corpus/report/small.json" "$T/d/report.json"
"$R" --json "$T/d/report.json" >"$T/out" || fail "--json exited $?"
grep -qx "report: $T/d/report.html" "$T/out" || fail "--json printed: $(cat "$T/out")"
grep -q "</html>" "$T/d/report.html" || fail "no page"
echo "report_cli: passed"
