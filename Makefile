# Spaceport — common tasks. `make help` lists them.

CARGO ?= cargo
NEXTEST_PROFILE ?= default

.PHONY: help run build test lint fmt fmt-check clippy migrate clean

help:
	@echo "make run        gateway + services in one process (SQLite, in-process cache), gateway on :8080"
	@echo "make test       the test suite; PostgreSQL/Redis tests run when TEST_DATABASE_URL/TEST_REDIS_URL are set"
	@echo "make lint       rustfmt check + clippy with warnings as errors"
	@echo "make fmt        format the code"
	@echo "make build      release build of every binary"

run:
	$(CARGO) run --release -p devstack

build:
	$(CARGO) build --release --workspace --bins

# Tests that need PostgreSQL or Redis carry `postgres` / `redis` in their names.
# They fail (never skip) when their server is missing, so when a variable is unset
# they are left out here, and the summary says so.
test:
	@filter=""; missing=""; \
	if [ -z "$$TEST_DATABASE_URL" ]; then missing="$$missing TEST_DATABASE_URL"; filter="test(/(::|_)postgres$$/)"; fi; \
	if [ -z "$$TEST_REDIS_URL" ]; then missing="$$missing TEST_REDIS_URL"; filter="$${filter:+$$filter | }test(/(::|_)redis$$/)"; fi; \
	if [ -n "$$filter" ]; then \
		echo "NOTE:$$missing unset: leaving out the PostgreSQL/Redis tests (shown as skipped below)."; \
		$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE) -E "not ($$filter)"; \
	else \
		$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE); \
	fi

lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf data
