#!/usr/bin/env bash
# make fuzz-api: Schemathesis against the whole platform through the gateway.
#
#  1. installs Schemathesis into target/fuzz-venv (deploy/requirements-fuzz.txt);
#  2. starts the devstack binary (gateway + four services in one process, SQLite,
#     in-process cache and event stream) in a scratch directory, on ports
#     FUZZ_PORT..FUZZ_PORT+4,
#     with the gateway's rate limits off (the fuzzer sends thousands of requests
#     with one token);
#  3. signs a user in by one-time code (read from the mail outbox) for a token;
#  4. runs `schemathesis run` on the gateway's merged /openapi.json with that
#     token, every phase, FUZZ_EXAMPLES cases per operation, checking that no
#     answer is a 5xx and that every documented answer matches its schema.
#     One worker: with two, CPython 3.11's ast module (Hypothesis describes its
#     strategies with it) can fail across threads with "AST constructor
#     recursion depth mismatch" (CPython gh-106905), a runtime error of the
#     fuzzer's, not a finding.
#     Two operations are left out: removing or deactivating a member. Once the
#     fuzzer has invited a second owner it may remove or deactivate itself,
#     which (rightly) revokes its token and turns the rest of the run into
#     401s; the API tests cover both operations.
#
# Environment: FUZZ_EXAMPLES (default 20), FUZZ_SEED (default 1, so CI runs are
# repeatable), FUZZ_PORT (default 18080), DEVSTACK (default target/debug/devstack,
# built when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/target/fuzz-venv"
EXAMPLES="${FUZZ_EXAMPLES:-20}"
SEED="${FUZZ_SEED:-1}"
PORT="${FUZZ_PORT:-18080}"
DEVSTACK="${DEVSTACK:-$ROOT/target/debug/devstack}"
PYTHON="${PYTHON:-python3}"

stamp="$VENV/.requirements"
if [ ! -x "$VENV/bin/schemathesis" ] || ! cmp -s "$ROOT/deploy/requirements-fuzz.txt" "$stamp"; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/deploy/requirements-fuzz.txt"
    cp "$ROOT/deploy/requirements-fuzz.txt" "$stamp"
fi
if [ ! -x "$DEVSTACK" ]; then
    (cd "$ROOT" && cargo build -p devstack)
fi

work=$(mktemp -d)
pid=""
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

gateway="http://127.0.0.1:$PORT"
(
    cd "$work"
    GATEWAY__HTTP__ADDR="127.0.0.1:$PORT" \
    AUTH__HTTP__ADDR="127.0.0.1:$((PORT + 1))" \
    BOOKING__HTTP__ADDR="127.0.0.1:$((PORT + 2))" \
    SPACES__HTTP__ADDR="127.0.0.1:$((PORT + 3))" \
    EVENTS__HTTP__ADDR="127.0.0.1:$((PORT + 4))" \
    GATEWAY__UPSTREAMS__AUTH="http://127.0.0.1:$((PORT + 1))" \
    GATEWAY__UPSTREAMS__BOOKING="http://127.0.0.1:$((PORT + 2))" \
    GATEWAY__UPSTREAMS__SPACES="http://127.0.0.1:$((PORT + 3))" \
    GATEWAY__UPSTREAMS__EVENTS="http://127.0.0.1:$((PORT + 4))" \
    GATEWAY__RATE_LIMITS__ENABLED=false \
    AUTH__MAIL__URL="file://$work/outbox" \
    EVENTS__MAIL__URL=log \
    GATEWAY__LOG__LEVEL=warn AUTH__LOG__LEVEL=warn BOOKING__LOG__LEVEL=warn SPACES__LOG__LEVEL=warn \
    EVENTS__LOG__LEVEL=warn \
    exec "$DEVSTACK"
) > "$work/devstack.log" 2>&1 &
pid=$!

# Every part ready (the gateway listens before the services behind it do).
for port in "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3)) $((PORT + 4)); do
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then cat "$work/devstack.log"; echo "devstack exited" >&2; exit 1; fi
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null
done

email="fuzz@example.com"
curl -fsS -X POST "$gateway/api/v1/auth/otp/request" \
    -H 'content-type: application/json' -d "{\"email\": \"$email\"}" > /dev/null
code=$("$PYTHON" - "$work/outbox" <<'PY'
import pathlib, re, sys
mail = next(pathlib.Path(sys.argv[1]).glob("*.eml")).read_text()
print(re.search(r"sign-in code: (\d{6})", mail).group(1))
PY
)
token=$(curl -fsS -X POST "$gateway/api/v1/auth/otp/verify" \
    -H 'content-type: application/json' -d "{\"email\": \"$email\", \"otp\": \"$code\"}" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["data"]["access_token"])')

status=0
"$VENV/bin/schemathesis" run "$gateway/openapi.json" \
    --url "$gateway" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --generation-with-security-parameters false \
    --exclude-operation-id remove_member \
    --exclude-operation-id update_member \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --generation-deterministic \
    --workers 1 \
    --request-timeout 10 \
    --no-color || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- devstack log (last 40 lines) ---"
    tail -n 40 "$work/devstack.log"
fi
exit "$status"
