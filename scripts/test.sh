#!/usr/bin/env bash
# Set up, start the services the tests use (PostgreSQL), and run the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-test-services
export SWEEP_TEST_POSTGRES=${SWEEP_TEST_POSTGRES:-$(bash scripts/start-postgres.sh | tail -n 1)}
if [[ -z "${SWEEP_DATA_DIR:-}" && -d ../shared/data ]]; then
  SWEEP_DATA_DIR=$(cd ../shared/data && pwd)
  export SWEEP_DATA_DIR
fi
export SWEEP_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
exec .venv/bin/pytest -q "$@"
