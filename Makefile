# eventlog: the two commands a newcomer needs are `make run` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

BUILD_DIR ?= build
# The local stack `make run` starts when neither .env nor DATABASE_URL / CLICKHOUSE_URI configure servers.
export LOCAL_DIR ?= .local/dev
export PG_PORT ?= 54329
export CH_PORT ?= 18123
# Every other target reads its configuration as each eventlog command does: the environment, then .env.

.PHONY: help deps build run test test-sanitize test-tsan test-deploy test-cluster chaos bench install migrations migrate superuser apikey shell ch-shell lint format \
        reset-test-db stack-start stack-stop clean verify-fresh

help:
	@echo "make run            install what is missing, build, start local PostgreSQL + ClickHouse, migrate, run serve + the relay"
	@echo "make test           the whole suite (unit, integration, end-to-end) against throwaway servers"
	@echo "make test-sanitize  unit and integration tests built with AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-tsan      every test (unit, integration, end-to-end) built with ThreadSanitizer (~20 min: its own build, then ~8 min of tests; not in CI)"
	@echo "make test-deploy    (root) build the images and run docker-compose.yml end to end, then remove it all (docs/deploy.md)"
	@echo "make test-cluster   the relay into a 2x2 ClickHouse cluster through kill -9, a frozen shard, a restart (~3 min; docs/cluster.md)"
	@echo "make chaos          the long crash test (ROUNDS=20 by default)"
	@echo "make bench          benchmarks on throwaway servers (~25 min; BENCH_ARGS=\"--quick\" ~3 min; docs/benchmarks.md)"
	@echo "make build          Release build: build/eventlog"
	@echo "make install        migrate"
	@echo "make superuser [NAME=admin] [EMAIL=e] [PASSWORD_STDIN=1]   create an administrator of the web console (/admin/); asks for the password twice"
	@echo "make apikey [NAME=admin]   create an API key for the HTTP API; prints its token as the last line"
	@echo "make migrations NAME=add_x [ENGINE=postgres|clickhouse]   scaffold a numbered migration file"
	@echo "make migrate        apply migrations to the configured databases"
	@echo "make shell          psql on the configured PostgreSQL;  make ch-shell: clickhouse-client on ClickHouse"
	@echo "make lint           clang-format check, clang-tidy, cppcheck"
	@echo "make reset-test-db  remove leftover throwaway test servers and their data"
	@echo "make stack-start / stack-stop   start or stop the local servers under $(LOCAL_DIR)"
	@echo "make verify-fresh   (root, by hand, not CI) make test on a fresh debootstrapped Debian 12 (scripts/verify-fresh.sh)"

deps:
	@scripts/install-deps.sh

build: deps
	@scripts/build.sh $(BUILD_DIR)

run: build
	@scripts/run.sh

test:
	@scripts/test.sh

test-sanitize:
	@EVENTLOG_SANITIZE=1 scripts/test.sh

test-tsan:
	@EVENTLOG_SANITIZE=thread scripts/test.sh

test-deploy:
	@scripts/test-deploy.sh

test-cluster:
	@scripts/test-cluster.sh

verify-fresh:
	@scripts/verify-fresh.sh

ROUNDS ?= 20
chaos:
	@scripts/chaos.sh $(ROUNDS)

bench: build
	@scripts/bench.sh $(BENCH_ARGS)

stack-start: deps
	@scripts/stack.sh start $(LOCAL_DIR) $(PG_PORT) $(CH_PORT)

stack-stop:
	@scripts/stack.sh stop $(LOCAL_DIR)

install migrate: build
	@$(BUILD_DIR)/eventlog migrate

# The seed's createsuperuser: an administrator of the console at /admin/ (docs/admin-console.md). The password is asked
# twice on the terminal, or read as one line from standard input with PASSWORD_STDIN=1.
superuser: build
	@$(BUILD_DIR)/eventlog createsuperuser --username "$(or $(NAME),admin)" $(if $(EMAIL),--email "$(EMAIL)") \
		$(if $(PASSWORD_STDIN),--password-stdin)

apikey: build
	@scripts/apikey.sh "$(or $(NAME),admin)"

migrations:
	@scripts/new-migration.sh "$(ENGINE)" "$(NAME)"

shell: build
	@$(BUILD_DIR)/eventlog dbshell

ch-shell: build
	@$(BUILD_DIR)/eventlog dbshell --clickhouse

lint:
	@scripts/lint.sh $(BUILD_DIR)

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

reset-test-db:
	@for d in .local/test-* .local/chaos-*; do [ -d "$$d" ] && scripts/stack.sh remove "$$d"; done; true
	@echo "removed throwaway test servers"

clean:
	rm -rf $(BUILD_DIR)
