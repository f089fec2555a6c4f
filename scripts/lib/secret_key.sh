# Sourced by scripts/run.sh and scripts/apikey.sh: makes sure `eventlog serve` and `eventlog apikey create` see a
# SECRET_KEY. When neither the environment nor the env file sets one, a key is generated once into
# .local/secret_key (mode 600, in the ignored dev folder) and exported from there; it is never printed.
# Usage: ensure_secret_key ENV_FILE
ensure_secret_key() {
    local env_file=$1 key_file=.local/secret_key
    [ -n "${SECRET_KEY:-}" ] && return 0
    if [ -f "$env_file" ] && grep -qE '^SECRET_KEY=[^[:space:]#]' "$env_file"; then
        return 0  # eventlog reads it from the env file itself
    fi
    if [ ! -s "$key_file" ]; then
        mkdir -p .local
        (
            umask 077
            openssl rand -hex 32 >"$key_file.tmp"
            mv "$key_file.tmp" "$key_file"
        )
        echo "generated a SECRET_KEY for the HTTP API into $key_file (kept there; not printed)"
    fi
    SECRET_KEY=$(cat "$key_file")
    export SECRET_KEY
}
