#!/usr/bin/env bash
# deploy/prometheus/ checked with Debian's promtool (ctest prometheus.rules, label unit):
#   1. `promtool check config` on the scrape config and `promtool check rules` on the alert rules pass;
#   2. `promtool test rules` passes on the rules' unit tests;
#   3. the unit tests can fail: with any one alert removed from a copy of the rules, with the stall alert made to
#      fire while deliveries go on, or blind to events held by a relay, `promtool test rules` must report a failure.
#   prometheus_rules_test.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: prometheus_rules_test.sh SOURCE_DIR}
dir="$src/deploy/prometheus"
command -v promtool >/dev/null || { echo "FAIL: promtool not found (scripts/install-deps.sh installs prometheus)"; exit 1; }

promtool check config "$dir/prometheus.yml"
promtool check rules "$dir/eventlog.rules.yml"
promtool test rules "$dir/tests/eventlog.rules.test.yml"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tests"
cp "$dir/tests/eventlog.rules.test.yml" "$tmp/tests/"

alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$dir/eventlog.rules.yml")
[ "$(echo "$alerts" | wc -l)" -ge 5 ] || { echo "FAIL: expected at least 5 alerts, found: $alerts"; exit 1; }
failed=0
for alert in $alerts; do
    # The rules file without this alert's block (from its "- alert:" line to the next one or the end).
    awk -v name="$alert" '
        /^ *- alert: / { skip = ($3 == name) }
        !skip { print }' "$dir/eventlog.rules.yml" >"$tmp/eventlog.rules.yml"
    if grep -q "alert: $alert\$" "$tmp/eventlog.rules.yml"; then echo "FAIL: could not remove $alert"; exit 1; fi
    if promtool test rules "$tmp/tests/eventlog.rules.test.yml" >"$tmp/out" 2>&1; then
        echo "FAIL: the unit tests still pass without $alert: its firing case checks nothing"
        failed=1
    else
        echo "ok: without $alert the unit tests fail"
    fi
done

# A stall rule that ignores deliveries (== 0 turned into >= 0) must be caught by the silent cases.
sed 's/\[10m\])) == 0/[10m])) >= 0/' "$dir/eventlog.rules.yml" >"$tmp/eventlog.rules.yml"
if cmp -s "$dir/eventlog.rules.yml" "$tmp/eventlog.rules.yml"; then echo "FAIL: the stall mutation changed nothing"; exit 1; fi
if promtool test rules "$tmp/tests/eventlog.rules.test.yml" >"$tmp/out" 2>&1; then
    echo "FAIL: the unit tests pass with a stall alert that fires while events are delivered"
    failed=1
else
    echo "ok: a stall alert that ignores deliveries fails the unit tests"
fi

# A stall rule that looks at the outbox only misses a burst that a stuck relay claimed whole.
sed 's/ + max(eventlog_outbox_in_flight_events)//' "$dir/eventlog.rules.yml" >"$tmp/eventlog.rules.yml"
if cmp -s "$dir/eventlog.rules.yml" "$tmp/eventlog.rules.yml"; then echo "FAIL: the in-flight mutation changed nothing"; exit 1; fi
if promtool test rules "$tmp/tests/eventlog.rules.test.yml" >"$tmp/out" 2>&1; then
    echo "FAIL: the unit tests pass with a stall alert blind to events held by a relay"
    failed=1
else
    echo "ok: a stall alert blind to in-flight events fails the unit tests"
fi
exit "$failed"
