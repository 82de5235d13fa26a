#!/usr/bin/env bash
# A multi-node Ray cluster on this machine, for trying `ray job submit` and multi-node Tune runs
# before paying for real machines. One head and N worker nodes, each a separate `ray start`
# (a real raylet with its own resources), with token authentication on and the dashboard/job server
# bound to 127.0.0.1. Every node advertises the machine's IP, not 127.0.0.1, and no flag changes
# that on Linux: Ray 2.60's `ray start` replaces a loopback `--node-ip-address` with the machine's
# address (ray._private.services.resolve_ip_for_localhost; measured with `--node-ip-address
# 127.0.0.1`: the nodes still advertised the machine's IP). The GCS, raylets and agents listen on
# all interfaces (cluster/README.md lists them); the token is what keeps others out, and a
# firewall must keep these ports off the internet.
#
#   cluster/local.sh up [--workers N] [--cpus-per-node C] [--port GCS_PORT]
#                       [--dashboard-port P] [--client-port P] [--object-store-mb M]
#   cluster/local.sh status [--port GCS_PORT]
#   cluster/local.sh down   [--port GCS_PORT]
#
# Everything a cluster owns lives in one state directory,
# ${TUNE_MNIST_CLUSTER_DIR:-/tmp/tune_mnist_cluster-<GCS port>}: one Ray --temp-dir per node (logs,
# sockets), the auth token, an env file for clients, and the session ids of the processes it started.
# Two clusters with different ports therefore never share files or processes, and `down` stops
# exactly this cluster's processes (unlike `ray stop`, which kills every Ray process on the machine).
set -euo pipefail

usage() {
    grep -E '^#   (cluster/local.sh|  )' "$0" | sed 's/^#   //' >&2
    exit 2
}

die() {
    echo "error: $*" >&2
    exit 2
}

# Defaults: Ray's usual ports, so the printed commands look like the Ray docs.
workers=2
cpus_per_node=1
gcs_port=6379
dashboard_port=8265
client_port=10001
object_store_mb=256

[ $# -ge 1 ] || usage
command=$1
shift
while [ $# -gt 0 ]; do
    case $1 in
        --workers) workers=${2:?--workers needs a value}; shift 2 ;;
        --cpus-per-node) cpus_per_node=${2:?--cpus-per-node needs a value}; shift 2 ;;
        --port) gcs_port=${2:?--port needs a value}; shift 2 ;;
        --dashboard-port) dashboard_port=${2:?--dashboard-port needs a value}; shift 2 ;;
        --client-port) client_port=${2:?--client-port needs a value}; shift 2 ;;
        --object-store-mb) object_store_mb=${2:?--object-store-mb needs a value}; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown option '$1' (see '$0 --help')" ;;
    esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$workers" || die "--workers must be a whole number >= 0, got '$workers'"
is_uint "$cpus_per_node" && [ "$cpus_per_node" -ge 1 ] \
    || die "--cpus-per-node must be a whole number >= 1, got '$cpus_per_node'"
for port in "$gcs_port" "$dashboard_port" "$client_port"; do
    is_uint "$port" && [ "$port" -ge 1024 ] && [ "$port" -le 65535 ] \
        || die "ports must be numbers in 1024..65535, got '$port'"
done
# Ray hands ports 10002..19999 to worker processes and refuses a client port inside that range.
if [ "$client_port" -ge 10002 ] && [ "$client_port" -le 19999 ]; then
    die "--client-port $client_port is inside Ray's worker port range 10002..19999; pick one outside it"
fi
is_uint "$object_store_mb" && [ "$object_store_mb" -ge 80 ] \
    || die "--object-store-mb must be a whole number >= 80 (Ray's minimum is 75 MiB), got '$object_store_mb'"

RAY_BIN=${RAY_BIN:-ray}
PYTHON_BIN=${PYTHON_BIN:-python3}
# Prefer the ray/python next to each other (e.g. a venv's bin) so both see the same Ray install.
if ! command -v "$RAY_BIN" >/dev/null 2>&1; then
    echo "error: '$RAY_BIN' not found on PATH; activate the environment where ray is installed or set RAY_BIN" >&2
    exit 2
fi
ray_dir=$(dirname "$(command -v "$RAY_BIN")")
if [ -x "$ray_dir/python" ]; then PYTHON_BIN="$ray_dir/python"; fi

state_dir=${TUNE_MNIST_CLUSTER_DIR:-/tmp/tune_mnist_cluster-$gcs_port}
token_file=$state_dir/auth_token
env_file=$state_dir/env
sids_file=$state_dir/sids
# Every process of this cluster inherits this variable, so `down` can find processes that left
# the session we started them in (e.g. workers the raylet spawns).
marker="TUNE_MNIST_CLUSTER_DIR_MARKER=$state_dir"

# PIDs of this cluster: members of the sessions we created, plus anything carrying our marker.
# Both are needed: the dashboard's module processes rename themselves (setproctitle overwrites
# /proc/PID/environ, so the marker is gone) but stay in our session, while anything that calls
# setsid itself leaves the session but keeps the marker.
cluster_pids() {
    local pid sid stat state _ppid _pgrp _
    local -A sids=()
    if [ -f "$sids_file" ]; then
        while read -r sid; do [ -n "$sid" ] && sids[$sid]=1; done <"$sids_file"
    fi
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$pid" = "$$" ] && continue
        # Field 6 of /proc/PID/stat is the session id; the command name before it may contain
        # spaces, so split after its closing parenthesis.
        read -r stat 2>/dev/null <"$proc/stat" || continue
        read -r state _ppid _pgrp sid _ <<<"${stat##*) }"
        # Zombies are already dead; they linger only until their (re)parent reaps them.
        [ "$state" = Z ] && continue
        if [ -n "${sids[$sid]:-}" ] || grep -qzxF "$marker" "$proc/environ" 2>/dev/null; then
            echo "$pid"
        fi
    done
}

free_port() {
    "$PYTHON_BIN" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts one `ray start` in a new session (so its daemons share a session id we record) with the
# token-auth environment; the daemons outlive it.
# Each node gets its own temp dir: nodes sharing one would share the runtime-env cache
# (runtime_resources/), and one node's agent deletes a job's working_dir while the job still
# runs from it on another node.
start_node() {
    local name=$1
    shift
    local log=$state_dir/$name.log
    env "$marker" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file" \
        setsid "$RAY_BIN" start "$@" \
        --temp-dir "$state_dir/$name" \
        --num-gpus 0 \
        --object-store-memory $((object_store_mb * 1024 * 1024)) \
        --dashboard-agent-listen-port "$(free_port)" \
        --disable-usage-stats \
        >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >>"$sids_file"
    if ! wait "$pid"; then
        echo "error: 'ray start $*' failed; its output ($log):" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

cmd_up() {
    if [ -f "$sids_file" ] && [ -n "$(cluster_pids)" ]; then
        die "a cluster is already running from $state_dir; run '$0 down --port $gcs_port' first"
    fi
    mkdir -p "$state_dir"
    chmod 700 "$state_dir"
    : >"$sids_file"
    # A fresh token per cluster, readable only by its owner: anyone holding it can run code on
    # every node.
    (umask 077 && "$PYTHON_BIN" -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' >"$token_file")

    local dashboard_url=http://127.0.0.1:$dashboard_port
    echo "starting head on 127.0.0.1:$gcs_port ($cpus_per_node CPUs)..."
    start_node head --head \
        --port "$gcs_port" \
        --num-cpus "$cpus_per_node" \
        --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" \
        --ray-client-server-port "$client_port" \
        || { cmd_down; exit 1; }
    # Workers only need the GCS, not each other: start them side by side.
    local i failed=0
    local -a starters=()
    for ((i = 1; i <= workers; i++)); do
        echo "starting worker $i/$workers ($cpus_per_node CPUs)..."
        start_node "worker-$i" --address "127.0.0.1:$gcs_port" --num-cpus "$cpus_per_node" &
        starters+=($!)
    done
    for i in "${starters[@]}"; do
        wait "$i" || failed=1
    done
    [ "$failed" -eq 0 ] || { cmd_down; exit 1; }

    cat >"$env_file" <<EOF
# Source this file to talk to the cluster in $state_dir.
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$token_file
export RAY_API_SERVER_ADDRESS=$dashboard_url
EOF
    wait_for_nodes $((workers + 1))

    cat <<EOF

Ray cluster is up: 1 head + $workers workers, $cpus_per_node CPUs each, token authentication on.
  GCS address:      127.0.0.1:$gcs_port
  Dashboard / jobs: $dashboard_url
  Ray client:       ray://127.0.0.1:$client_port
  Auth token:       $token_file
  Client env:       source $env_file
  Logs:             $state_dir/{head,worker-N}/session_latest/logs

Submit a job (from the project root):
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file \\
    ray job submit --address $dashboard_url --working-dir . -- \\
    python -m tune_mnist.run --address auto --dataset mnist_sample --storage-path /tmp/tune_mnist_runs

Stop it:
  $0 down --port $gcs_port
EOF
}

# Blocks until the cluster reports `expected` alive nodes, so callers can submit right away.
wait_for_nodes() {
    local expected=$1 alive=0 tries
    for ((tries = 0; tries < 60; tries++)); do
        alive=$(RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file" "$PYTHON_BIN" - "$gcs_port" <<'PY' 2>/dev/null || echo 0
import sys
from ray.util.state import list_nodes
nodes = list_nodes(address=f"127.0.0.1:{sys.argv[1]}", filters=[("state", "=", "ALIVE")])
print(len(nodes))
PY
        )
        [ "${alive:-0}" -ge "$expected" ] && return 0
        sleep 1
    done
    echo "warning: only $alive of $expected nodes alive after 60 s; see logs in $state_dir" >&2
}

cmd_status() {
    [ -f "$token_file" ] || die "no cluster state in $state_dir; start one with '$0 up --port $gcs_port'"
    local pids
    pids=$(cluster_pids | tr '\n' ' ')
    if [ -z "$pids" ]; then
        echo "cluster in $state_dir is not running"
        return 1
    fi
    echo "processes of this cluster: $(wc -w <<<"$pids")"
    # The GCS's node table is current; `ray status` (the autoscaler's view) can lag by seconds.
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file" "$PYTHON_BIN" - "$gcs_port" <<'PY'
import sys
from ray.util.state import list_nodes
for node in list_nodes(address=f"127.0.0.1:{sys.argv[1]}"):
    role = "head" if node.is_head_node else "worker"
    cpus = node.resources_total.get("CPU", 0)
    print(f"{node.state:5} {role:6} {node.node_id}  {node.node_ip}  CPU={cpus:g}")
PY
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file" \
        "$RAY_BIN" status --address "127.0.0.1:$gcs_port"
}

cmd_down() {
    local pids remaining tries
    pids=$(cluster_pids | tr '\n' ' ')
    if [ -n "$pids" ]; then
        # SIGTERM first so raylets can clean up sockets and shared memory; some Ray daemons (the
        # GCS, the agents) ignore it, so force after a short grace period, as `ray stop` does.
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for ((tries = 0; tries < 10; tries++)); do
            remaining=$(cluster_pids | tr '\n' ' ')
            [ -z "$remaining" ] && break
            sleep 0.2
        done
        remaining=$(cluster_pids | tr '\n' ' ')
        if [ -n "$remaining" ]; then
            # shellcheck disable=SC2086
            kill -KILL $remaining 2>/dev/null || true
            # A killed process may take a while to go on a loaded machine (freeing its memory).
            for ((tries = 0; tries < 50; tries++)); do
                [ -z "$(cluster_pids)" ] && break
                sleep 0.2
            done
        fi
    fi
    remaining=$(cluster_pids | tr '\n' ' ')
    if [ -n "$remaining" ]; then
        die "processes still running after SIGKILL: $remaining"
    fi
    rm -f "$sids_file" "$env_file"
    echo "cluster in $state_dir is down (logs kept in $state_dir)"
}

case $command in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) usage ;;
esac
