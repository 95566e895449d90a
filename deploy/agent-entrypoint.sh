#!/bin/sh
# Start a latfarm agent that enrolls itself on first run (docker-compose, Kubernetes).
#
# First run (no $AGENT_STATE_DIR/state.json): take AGENT_ENROLL_TOKEN when given; otherwise create the device
# AGENT_DEVICE if missing and ask for a token over REST with an owner/admin key (LATFARM_API_KEY). Later runs
# reuse the saved credential, so a restart does not register a new agent.
#
#   LATFARM_SERVER      REST base URL, e.g. http://server:8000 (needed only to fetch a token)
#   LATFARM_API_KEY     owner or admin API key (needed only to fetch a token)
#   AGENT_GRPC          gRPC address of the server, HOST:PORT [server:50051]
#   AGENT_DEVICE        device this agent measures for [docker-cpu]
#   AGENT_STATE_DIR     credential, cache, logs; keep it on a volume [/state]
#   AGENT_ENROLL_TOKEN  enrollment token, skips the REST calls
#   AGENT_NAME          a name for this agent [hostname]
#   AGENT_THREADS       inference threads per model [1]
#   AGENT_ARGS          more `latfarm agent` options, split at spaces, e.g. "--affinity 2-3 --cooldown 30"
set -eu

AGENT_GRPC="${AGENT_GRPC:-server:50051}"
AGENT_DEVICE="${AGENT_DEVICE:-docker-cpu}"
AGENT_STATE_DIR="${AGENT_STATE_DIR:-/state}"
export AGENT_DEVICE

# shellcheck disable=SC2086  # AGENT_ARGS is split at spaces on purpose
set -- latfarm agent --server "$AGENT_GRPC" --state-dir "$AGENT_STATE_DIR" --threads "${AGENT_THREADS:-1}" \
    ${AGENT_ARGS:-}
[ -n "${AGENT_NAME:-}" ] && set -- "$@" --name "$AGENT_NAME"

if [ ! -f "$AGENT_STATE_DIR/state.json" ]; then
    if [ -z "${AGENT_ENROLL_TOKEN:-}" ]; then
        : "${LATFARM_SERVER:?set LATFARM_SERVER (REST URL) and LATFARM_API_KEY, or AGENT_ENROLL_TOKEN}"
        : "${LATFARM_API_KEY:?set LATFARM_API_KEY (owner or admin key), or AGENT_ENROLL_TOKEN}"
        AGENT_ENROLL_TOKEN="$(python - <<'PY'
import json
import os
import sys
import urllib.error
import urllib.request

base = os.environ["LATFARM_SERVER"].rstrip("/")
device = os.environ["AGENT_DEVICE"]
headers = {"Authorization": f"Bearer {os.environ['LATFARM_API_KEY']}", "Content-Type": "application/json"}


def post(path: str, body: dict) -> dict:
    request = urllib.request.Request(base + path, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


try:
    post("/v1/devices", {"name": device, "description": "created by the agent entrypoint"})
except urllib.error.HTTPError as err:
    if err.code != 409:  # 409: the device exists already
        sys.exit(f"creating device {device!r} failed: HTTP {err.code} {err.read().decode(errors='replace')}")
try:
    print(post(f"/v1/devices/{device}/enrollments", {})["token"])
except urllib.error.HTTPError as err:
    sys.exit(f"enrollment for {device!r} failed: HTTP {err.code} {err.read().decode(errors='replace')}")
PY
)"
    fi
    export LATFARM_AGENT_ENROLL="$AGENT_ENROLL_TOKEN"  # `--enroll`, kept out of the process list
fi

exec "$@"
