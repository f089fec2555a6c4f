#!/bin/bash
# First start of the compose stack's PostgreSQL (the official image runs /docker-entrypoint-initdb.d/*.sh once, as
# the postgres superuser, on an empty data folder): the roles of docs/security.md, each with the least privilege that
# works, and the database. Passwords come from the environment (.env) and travel on psql's stdin, never a command line.
#   eventlog        owns the schema; `migrate` and `apikey` run as it (no SUPERUSER, CREATEROLE or CREATEDB)
#   eventlog_relay_login   the relays: a member of eventlog_relay only
#   eventlog_api_login     `serve`: a member of eventlog_producer only
set -euo pipefail
: "${EVENTLOG_DB_PASSWORD:?set EVENTLOG_DB_PASSWORD in .env}"
: "${EVENTLOG_RELAY_DB_PASSWORD:?set EVENTLOG_RELAY_DB_PASSWORD in .env}"
: "${EVENTLOG_API_DB_PASSWORD:?set EVENTLOG_API_DB_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
    -v owner_pw="$EVENTLOG_DB_PASSWORD" -v relay_pw="$EVENTLOG_RELAY_DB_PASSWORD" \
    -v api_pw="$EVENTLOG_API_DB_PASSWORD" <<'SQL'
CREATE ROLE eventlog LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'owner_pw';
CREATE ROLE eventlog_producer NOLOGIN;
CREATE ROLE eventlog_relay NOLOGIN;
CREATE ROLE eventlog_admin NOLOGIN;
CREATE ROLE eventlog_relay_login LOGIN PASSWORD :'relay_pw' IN ROLE eventlog_relay;
CREATE ROLE eventlog_api_login LOGIN PASSWORD :'api_pw' IN ROLE eventlog_producer;
CREATE DATABASE eventlog OWNER eventlog;
REVOKE ALL ON DATABASE eventlog FROM PUBLIC;
GRANT CONNECT ON DATABASE eventlog TO eventlog_relay_login, eventlog_api_login;
SQL
