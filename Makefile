# eventlog: the two commands a newcomer needs are `make run` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

BUILD_DIR ?= build
LOCAL_DIR ?= .local/dev
PG_PORT ?= 54329
CH_PORT ?= 18123
export DATABASE_URL ?= postgres://eventlog:eventlog@127.0.0.1:$(PG_PORT)/eventlog
export CLICKHOUSE_URI ?= http://default:@127.0.0.1:$(CH_PORT)/eventlog

.PHONY: help deps build run test chaos bench install migrations migrate superuser shell ch-shell lint format \
        reset-test-db stack-start stack-stop clean

help:
	@echo "make run            install what is missing, build, start local PostgreSQL + ClickHouse, migrate, run the relay"
	@echo "make test           the whole suite (unit, integration, end-to-end) against throwaway servers"
	@echo "make chaos          the long crash test (ROUNDS=20 by default)"
	@echo "make bench          drain throughput for a 300k backlog (BENCH_EVENTS=300000)"
	@echo "make build          Release build: build/eventlog"
	@echo "make install        migrate (the admin user arrives with the HTTP API)"
	@echo "make migrations NAME=add_x [ENGINE=postgres|clickhouse]   scaffold a numbered migration file"
	@echo "make migrate        apply migrations to the configured databases"
	@echo "make shell          psql on the configured PostgreSQL;  make ch-shell: clickhouse-client"
	@echo "make lint           clang-format check, clang-tidy, cppcheck"
	@echo "make reset-test-db  remove leftover throwaway test servers and their data"
	@echo "make stack-start / stack-stop   start or stop the local servers under $(LOCAL_DIR)"

deps:
	@scripts/install-deps.sh

build: deps
	@scripts/build.sh $(BUILD_DIR)

run: build
	@scripts/run.sh

test:
	@scripts/test.sh

ROUNDS ?= 20
chaos:
	@scripts/chaos.sh $(ROUNDS)

bench: build
	@scripts/bench.sh

stack-start: deps
	@scripts/stack.sh start $(LOCAL_DIR) $(PG_PORT) $(CH_PORT)

stack-stop:
	@scripts/stack.sh stop $(LOCAL_DIR)

install migrate: build
	@$(BUILD_DIR)/eventlog migrate

superuser:
	@echo "createsuperuser arrives with the HTTP API issue; nothing to do yet" >&2; exit 1

migrations:
	@scripts/new-migration.sh "$(ENGINE)" "$(NAME)"

shell:
	@psql "$(DATABASE_URL)"

ch-shell:
	@uri="$(CLICKHOUSE_URI)"; rest="$${uri#*://}"; creds="$${rest%%@*}"; hostport="$${rest#*@}"; hostport="$${hostport%%/*}"; \
	db="$${rest#*/}"; [ "$$db" = "$$rest" ] && db=default; user="$${creds%%:*}"; pass="$${creds#*:}"; \
	port=$$(cat $(LOCAL_DIR)/ch/tcp_port 2>/dev/null || echo 9000); \
	exec clickhouse-client --host "$${hostport%%:*}" --port "$$port" --user "$${user:-default}" $${pass:+--password "$$pass"} --database "$$db"

lint:
	@scripts/lint.sh $(BUILD_DIR)

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

reset-test-db:
	@for d in .local/test-* .local/chaos-*; do [ -d "$$d" ] && scripts/stack.sh remove "$$d"; done; true
	@echo "removed throwaway test servers"

clean:
	rm -rf $(BUILD_DIR)
