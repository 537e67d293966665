#!/usr/bin/env bash
# Start a local PostgreSQL server for the storage tests and print its URL on the last line.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -qtc \"SELECT 1 FROM pg_roles WHERE rolname='sweep'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE sweep LOGIN SUPERUSER PASSWORD 'sweep'\""
su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='sweep_test'\"" | grep -q 1 ||
  su postgres -c "createdb -O sweep sweep_test"
echo "postgresql://sweep:sweep@127.0.0.1:5432/sweep_test"
