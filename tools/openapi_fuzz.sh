#!/usr/bin/env bash
# Schemathesis against a real `gigasynth serve` on loopback: every documented operation,
# generated positive and negative requests, all checks (status codes, bodies, headers,
# content types against /openapi.json; auth; stateful links between operations).
#
#   tools/openapi_fuzz.sh [MAX_EXAMPLES] [extra schemathesis args...]
#
# Jobs stay tiny so the fuzzer cannot grind the machine: the deployment allows at most
# 256 px a side, 0.07 megapixels and 10 steps, the token 2 jobs at a time, one Dask worker.
# Needs `pip install schemathesis` (not a test dependency). Prints schemathesis's summary;
# its exit status is this script's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAX_EXAMPLES="${1:-20}"
shift || true
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GIGASYNTH_DATA_DIR="$WORK/data" GIGASYNTH_MAX_SIDE=256 GIGASYNTH_MAX_MEGAPIXELS=0.07 \
    GIGASYNTH_MAX_STEPS=10 GIGASYNTH_DASK_WORKERS=1 GIGASYNTH_BUILTIN_MODELS=tiny-pathology
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="$(python3 -m gigasynth token create --name fuzz --max-megapixels 0.07 \
    --max-concurrent 2 2>/dev/null)"

nice -n 19 python3 -m gigasynth serve --port "$PORT" --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.5
done

# All checks but use_after_free: DELETE /v1/jobs/{id} of a queued or running job cancels
# it (202) and keeps it, with its saved state, for a retry; only a finished job is deleted
# (204, then 404). schemathesis takes every successful DELETE for a deletion (ST301).
# The 204-then-404 case is tested in tests/test_service_openapi.py.
status=0
schemathesis --config-file "$ROOT/tools/openapi_fuzz.toml" \
    run "http://127.0.0.1:$PORT/openapi.json" \
    -H "Authorization: Bearer $TOKEN" --checks all --exclude-checks use_after_free \
    --max-examples "$MAX_EXAMPLES" \
    --seed 1 --workers 1 --request-timeout 30 "$@" || status=$?
if grep -q Traceback "$WORK/server.log"; then
    echo "--- server log has tracebacks:"; grep -B2 -A20 Traceback "$WORK/server.log" | head -60
fi
exit "$status"
