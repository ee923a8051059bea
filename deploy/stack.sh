#!/usr/bin/env bash
# `make stack`: the production-shaped stack on this machine, in one terminal; Ctrl-C stops everything.
#   PostgreSQL and Redis are started when they are not running (as .ci/run does), the database is migrated,
#   then honcho runs deploy/Procfile: gunicorn (web), one scheduler, Celery workers for the `photos` and
#   `messages` queues, and moto's S3 server on loopback (unless S3_ENDPOINT_URL names another store).
# Every setting is an environment variable with a default below (README, "Running it in production").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # workers import the repo's packages

export PORT="${PORT:-5000}" WEB_PORT="${PORT:-5000}" WEB_WORKERS="${WEB_WORKERS:-2}" WEB_THREADS="${WEB_THREADS:-4}" PHOTO_WORKERS="${PHOTO_WORKERS:-1}"
export PHOTO_WORKER_NICE="${PHOTO_WORKER_NICE:-10}"  # analyses yield the CPU to web requests
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/scarwatch_stack}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
export RATELIMIT_STORAGE_URI="${RATELIMIT_STORAGE_URI:-$CELERY_BROKER_URL}"
export JOB_BACKEND=celery SCHEDULER_ENABLED=0
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$WEB_PORT}"
export STORAGE_BACKEND="${STORAGE_BACKEND:-s3}" S3_BUCKET="${S3_BUCKET:-scarwatch}" S3_PORT="${S3_PORT:-5005}"
processes=(web scheduler photos messages)
if [ -z "${S3_ENDPOINT_URL:-}" ] && [ "$STORAGE_BACKEND" = s3 ]; then
  export S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"  # moto on loopback, in memory
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
  processes+=(s3)
fi

pg_host_port() { python - "$DATABASE_URL" <<'PY'
import sys
from sqlalchemy.engine import make_url
url = make_url(sys.argv[1])
print(url.host or "127.0.0.1", url.port or 5432, url.username or "postgres", url.database)
PY
}
read -r PG_HOST PG_PORT PG_USER PG_DB < <(pg_host_port)
if ! pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; then
  echo "stack: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -h "$PG_HOST" -p "$PG_PORT" -q && break; sleep 1; done
fi
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 \
  || psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "CREATE DATABASE \"$PG_DB\""

REDIS_HOST_PORT=$(python -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 6379)' "$CELERY_BROKER_URL")
read -r REDIS_HOST REDIS_PORT <<<"$REDIS_HOST_PORT"
if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "stack: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/stack.log
  for _ in $(seq 1 30); do redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

flask --app app db upgrade
echo "stack: http://127.0.0.1:$WEB_PORT  database $PG_DB  broker $CELERY_BROKER_URL  storage $STORAGE_BACKEND ${S3_ENDPOINT_URL:-}"
exec honcho start --procfile deploy/Procfile --app-root . "${processes[@]}"
