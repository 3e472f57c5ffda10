#!/usr/bin/env bash
# Docker smoke test on a real engine, for CI (.ci/run) and by hand: scripts/docker_smoke.sh
#
# Uses ../shared/tools/local-docker (next to the repository; skipped when absent): a Docker
# engine with host networking only. Lints the Dockerfiles (hadolint), builds both images with
# compose, starts the server with docker-compose.yml + docker-compose.host.yml (read-only root
# file system, models mounted read-only from a copy of models/), then from the host: an Iris JSON
# request, a Fashion-MNIST PNG upload, a hot reload of a version published on the host, non-root
# and read-only checks, a short distributed locust run (master + 2 workers), image sizes and
# memory. Everything it started is removed on exit; the engine is stopped if this script started it.
#
# Environment: DOCKER_SMOKE_LOADTEST=0 skips the locust run; DOCKER_SMOKE_KEEP_ENGINE=1 leaves
# the engine running (the next run then starts with a warm build cache).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOCAL_DOCKER="$(dirname "$ROOT")/shared/tools/local-docker"

if [ ! -x "$LOCAL_DOCKER" ]; then
  echo "docker smoke test skipped: ../shared/tools/local-docker not found"
  exit 0
fi

T0=$SECONDS
step_start=$SECONDS
step() {  # step "what": prints the time the previous step took, then names the next one
  echo "docker smoke: [$((SECONDS - step_start)) s] done"
  step_start=$SECONDS
  echo "docker smoke: $*"
}
echo "docker smoke: starting the engine ($LOCAL_DOCKER up)"

# Whether an engine already answers on local-docker's socket: if so, it is not ours to stop.
engine_was_up=0
socket="${LOCAL_DOCKER_DIR:-/var/tmp/local-docker}/docker.sock"
if command -v docker >/dev/null 2>&1 && [ -S "$socket" ] &&
   DOCKER_HOST="unix://$socket" docker info >/dev/null 2>&1; then
  engine_was_up=1
fi
exports=$("$LOCAL_DOCKER" up)
eval "$exports"

PROJECT="keras-serving-smoke-$$"
WORK=$(mktemp -d)
COMPOSE=(docker compose -p "$PROJECT" -f docker-compose.yml -f docker-compose.host.yml --profile loadtest)

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && docker info >/dev/null 2>&1; then
    echo "docker smoke: FAILED (exit $rc); the server's last log lines:" >&2
    "${COMPOSE[@]}" logs --no-color --tail 40 server >&2
  fi
  "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
  rm -rf "$WORK"
  if [ "$engine_was_up" = 0 ] && [ "${DOCKER_SMOKE_KEEP_ENGINE:-0}" != 1 ]; then
    "$LOCAL_DOCKER" down
  fi
  if [ "$rc" -eq 0 ]; then
    echo "docker smoke: [$((SECONDS - step_start)) s] done"
    echo "docker smoke test passed in $((SECONDS - T0)) s"
  else
    echo "docker smoke test failed after $((SECONDS - T0)) s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Free loopback ports: 8501 may be taken on this host (make serve, another run).
HOST_PORT=$(free_port); LOCUST_MASTER_PORT=$(free_port); LOCUST_WEB_PORT=$(free_port)
# The container mounts a copy of models/, so the hot-reload check can publish a version there.
cp -r models "$WORK/models"
chmod -R a+rX "$WORK"
MODELS_DIR="$WORK/models"
export HOST_PORT LOCUST_MASTER_PORT LOCUST_WEB_PORT MODELS_DIR
URL="http://127.0.0.1:$HOST_PORT"

step "hadolint Dockerfile loadtest/Dockerfile"
hadolint Dockerfile loadtest/Dockerfile

step "docker compose build (server and locust images)"
"${COMPOSE[@]}" build >"$WORK/build.log" 2>&1 || { tail -60 "$WORK/build.log" >&2; exit 1; }

step "docker compose up -d --wait server (BIND=127.0.0.1:$HOST_PORT)"
"${COMPOSE[@]}" up -d --wait --wait-timeout 180 server

step "requests from the host to $URL"
python3 scripts/docker_smoke_check.py predict "$URL"

step "checks inside the container: non-root, read-only root file system"
uid=$("${COMPOSE[@]}" exec -T server id -u)
[ "$uid" != 0 ] || { echo "docker smoke test FAILED: the server runs as root" >&2; exit 1; }
container=$("${COMPOSE[@]}" ps -q server)
readonly_fs=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$container")
[ "$readonly_fs" = true ] || { echo "docker smoke test FAILED: root file system is writable" >&2; exit 1; }
if "${COMPOSE[@]}" exec -T server sh -c 'touch /app/probe' 2>/dev/null; then
  echo "docker smoke test FAILED: could write /app/probe" >&2; exit 1
fi
echo "  server runs as uid $uid ($(docker inspect -f '{{.Config.User}}' "$container")), root file system read-only," \
     "health $(docker inspect -f '{{.State.Health.Status}}' "$container")"

step "hot reload: a new iris version published in the mounted models folder"
python3 scripts/docker_smoke_check.py hot-reload "$URL" "$MODELS_DIR"

if [ "${DOCKER_SMOKE_LOADTEST:-1}" != 0 ]; then
  step "distributed locust (profile loadtest): 1 master + 2 workers, 10 users, 15 s"
  LOCUST_WORKERS=2 LOCUST_HEADLESS=true LOCUST_USERS=10 LOCUST_SPAWN_RATE=10 LOCUST_RUN_TIME=15s \
    "${COMPOSE[@]}" up --no-build --abort-on-container-exit --exit-code-from locust-master \
    locust-master locust-worker >"$WORK/locust.log" 2>&1 || {
      tail -40 "$WORK/locust.log" >&2; echo "docker smoke test FAILED: locust run" >&2; exit 1; }
  # The last request-count table locust printed: its header and its Aggregated line.
  awk '/# reqs +# fails/ {h = $0; t = 1; next} t && /Aggregated/ {a = $0; t = 0} END {print h; print a}' \
    "$WORK/locust.log" | sed 's/^locust-master-1 *| /  /'
  workers=$(grep -c 'reported as ready' "$WORK/locust.log" || true)
  echo "  locust exit code 0 (no failed request); $workers workers connected"
fi

step "image sizes and memory"
size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
echo "  image keras-serving:latest: $(size_mb keras-serving:latest)"
echo "  image keras-serving-locust:latest: $(size_mb keras-serving-locust:latest)"
echo "  server container memory: $(docker stats --no-stream --format '{{.MemUsage}}' "$container")"

step "docker compose down"
# (the EXIT trap: down, temporary folder, engine)
