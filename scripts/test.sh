#!/usr/bin/env bash
# The project's tests, against real PostgreSQL, RabbitMQ and Redis (started or installed when
# they do not answer; reused when they do; stopped again at the end only if this script started
# them).
# Usage: ./scripts/test.sh [extra arguments for the test binaries]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
trap stop_started_services EXIT
ensure_test_tools

export TEST_POSTGRES_ADMIN_URL="${TEST_POSTGRES_ADMIN_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export TEST_RABBITMQ_URL="${TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export TEST_MONGODB_URL="${TEST_MONGODB_URL:-mongodb://127.0.0.1:27017}"
# The tests' own throwaway servers: a document store to stop and restart, an OTLP collector.
export TEST_SECANTUSD="${TEST_SECANTUSD:-$TOOLS_VENV/bin/secantusd-py}"
export TEST_ROTEL_AGENT="${TEST_ROTEL_AGENT:-$(rotel_agent)}"
export TEST_ROTEL_LIBDIR="${TEST_ROTEL_LIBDIR:-$(python_libdir)}"

# The Helm chart: lint, render, RBAC against the operator's calls (fetches helm if needed).
./scripts/check-chart.sh

# The process tests run the real binary; build it first.
cargo build --locked -p bulk-recorder --bin bulk-recorder
# Tests share one broker and one server: a bounded number of them at once (each has its own
# database and queues).
log=$(mktemp)
set +e
cargo test --locked --workspace -- --test-threads="${TEST_THREADS:-4}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, whatever order the test binaries ran in.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$status"
