#!/usr/bin/env bash
# `make migrations NAME=add_column [ENGINE=postgres|clickhouse]`: creates the next numbered, empty migration file.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${1:-postgres}
name=${2:-}
[ -n "$name" ] || { echo "usage: make migrations NAME=short_name [ENGINE=postgres|clickhouse]" >&2; exit 2; }
[[ "$name" =~ ^[a-z0-9_]+$ ]] || { echo "NAME: expected lower-case letters, digits and _, got '$name'" >&2; exit 2; }
[[ "$engine" =~ ^(postgres|clickhouse)$ ]] || { echo "ENGINE: expected postgres or clickhouse, got '$engine'" >&2; exit 2; }
dir="migrations/$engine"
last=$(ls "$dir" | sed -n 's/^\([0-9]\{4\}\)_.*\.sql$/\1/p' | sort | tail -1)
next=$(printf '%04d' $((10#${last:-0} + 1)))
file="$dir/${next}_${name}.sql"
printf -- '-- %s: describe the change. Applied once by `eventlog migrate`, in its own transaction.\n' "$name" >"$file"
[ "$engine" = clickhouse ] && printf -- '-- Placeholders: {database}, {table}, {event_time_type}, {table_settings}.\n' >>"$file"
echo "created $file (rebuild to embed it: make build)"
