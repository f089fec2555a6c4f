#!/usr/bin/env bash
# `make apikey [NAME=admin]`: creates an API key for the HTTP API named NAME with `eventlog apikey create` on the
# configured database (the environment, then .env) and prints its token once, as the last line. (Until the admin
# console, `make superuser` did this; it now creates a console administrator: `eventlog createsuperuser`.) SECRET_KEY comes from the environment or .env, else from .local/secret_key, which
# `make run` generates (the same key `make run`'s server checks tokens with).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-admin}
# shellcheck source=scripts/lib/secret_key.sh
. scripts/lib/secret_key.sh
ensure_secret_key "${EVENTLOG_ENV_FILE:-.env}"
exec build/eventlog apikey create --name "$name"
