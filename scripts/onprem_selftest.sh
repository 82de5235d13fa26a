#!/usr/bin/env bash
# End-to-end check of cluster/onprem.yaml with Ray's cluster launcher, on this machine alone:
# an sshd on 127.0.0.1 plays the on-prem head, then `ray up`, `ray submit` (a tiny real search),
# `ray down`. Prints PASS or FAIL on the last line; exit status 0 only on PASS.
#
#   sudo scripts/onprem_selftest.sh          # root: it starts sshd and uses namespaces
#
# The "remote" side runs in its own PID and mount namespaces, with a private home bind-mounted over
# /root: the `ray stop` that `ray up`/`ray down` run there sees only the self-test's processes (on a
# shared machine a bare `ray stop` would kill everyone's Ray), and nothing in the real /root changes.
# Needs: Linux, root, openssh-server, rsync (installed with apt-get if missing), ray on PATH.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
SSH_IP=127.0.0.1
SSH_PORT=22  # Ray's launcher has no SSH-port setting: the self-test needs port 22 on 127.0.0.1.

fail() {
    echo "onprem selftest: FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it starts sshd and uses unshare/mount)"
command -v ray >/dev/null || fail "ray not on PATH; activate the project's environment first"
command -v unshare >/dev/null || fail "unshare (util-linux) is needed"
[ -x /usr/sbin/sshd ] || fail "no /usr/sbin/sshd; apt-get install -y openssh-server"
if ! command -v rsync >/dev/null; then
    # Ray's launcher copies file_mounts with rsync.
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync; } >/dev/null \
        || fail "rsync is missing and could not be installed (apt-get install -y rsync)"
fi
if ss -ltn "sport = :$SSH_PORT" | grep -q LISTEN; then
    fail "port $SSH_PORT is already in use; stop the sshd listening there first"
fi

bin_dir=$(dirname "$(command -v ray)")
work=$(mktemp -d /tmp/onprem-st.XXXXXX)
home=$work/home  # becomes /root inside the namespace
mkdir -p "$home/.ssh" "$home/.ray" /run/sshd
chmod 700 "$work" "$home" "$home/.ssh"
ns_pid=""
cleanup() {
    if [ -n "$ns_pid" ]; then
        # unshare --kill-child takes the namespace's init with it, and the kernel then kills every
        # process in the namespace: sshd and the self-test's Ray.
        kill -KILL "$ns_pid" 2>/dev/null || true
        wait "$ns_pid" 2>/dev/null || true
    fi
    rm -f "/tmp/ray/cluster-$cluster_name.state" "/tmp/ray/cluster-$cluster_name.lock"
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
cluster_name=tune-mnist-selftest-$$
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$work/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
cp "$work/id_ed25519.pub" "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' >"$work/auth_token"
chmod 600 "$work/auth_token"

# Login shells on the "remote" side (Ray runs `bash --login -c -i`) get the project's Python, the
# synced project on PYTHONPATH and token auth.
cat >"$home/.bashrc" <<EOF
export PATH=$bin_dir:\$PATH
export PYTHONPATH=\$HOME/project
export RAY_AUTH_MODE=token
EOF
echo '. ~/.bashrc' >"$home/.bash_profile"

cat >"$work/sshd_config" <<EOF
ListenAddress $SSH_IP
Port $SSH_PORT
HostKey $work/host_key
PidFile $work/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys
EOF

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
gcs_port=$(free_port)
dashboard_port=$(free_port)

# The temp copy of onprem.yaml: same structure, pointed at 127.0.0.1 and at this machine's paths.
"$bin_dir/python" - "$repo/cluster/onprem.yaml" "$work/onprem.yaml" <<PY
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["cluster_name"] = "$cluster_name"
config["provider"].update(head_ip="$SSH_IP", worker_ips=[])
config.update(min_workers=0, max_workers=0)
config["auth"] = {"ssh_user": "root", "ssh_private_key": "$work/id_ed25519"}
config["file_mounts"] = {"~/project": "$repo", "~/.ray/auth_token": "$work/auth_token"}
# This machine already has the project's environment; don't pip-install into it or apt-get here.
config["setup_commands"] = []
# Own ports and temp dir: other Ray clusters on this machine keep theirs.
config["head_start_ray_commands"] = [
    "ray stop",
    "RAY_AUTH_MODE=token ray start --head --port=$gcs_port --dashboard-host=127.0.0.1"
    " --dashboard-port=$dashboard_port --ray-client-server-port=$(free_port)"
    " --temp-dir=$work/ray --num-cpus=2 --object-store-memory=300000000"
    " --autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats",
]
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PY

# If the Python behind ray lives under the real /root (pyenv), keep it visible in the private home.
python_home=$("$bin_dir/python" -c 'import sys; print(sys.base_prefix)')
keep_mounts=""
if [[ $python_home == /root/* ]]; then
    top=${python_home#/root/}
    top=${top%%/*}
    mkdir -p "$home/$top"
    keep_mounts="mount --bind '/root/$top' '$home/$top' && "
fi
unshare --pid --fork --kill-child --mount-proc --propagation private \
    bash -c "$keep_mounts mount --rbind '$home' /root && exec /usr/sbin/sshd -D -f '$work/sshd_config' -E '$work/sshd.log'" \
    >"$work/namespace.log" 2>&1 &
ns_pid=$!
for _ in $(seq 50); do
    ssh -q -i "$work/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o BatchMode=yes "root@$SSH_IP" true 2>/dev/null && break
    sleep 0.2
done || true
ssh -q -i "$work/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes "root@$SSH_IP" true || fail "cannot ssh to root@$SSH_IP; see $work/sshd.log"
echo "sshd up on $SSH_IP:$SSH_PORT (namespace init pid $ns_pid)"

step() {
    local name=$1
    shift
    echo "--- $name: $*"
    local start=$SECONDS
    if ! "$@" >"$work/$name.log" 2>&1; then
        tail -n 40 "$work/$name.log" >&2
        KEEP_WORK=1
        fail "$name failed after $((SECONDS - start)) s (full log: $work/$name.log, kept)"
    fi
    echo "    ok in $((SECONDS - start)) s"
}

step ray_up ray up -y --no-config-cache "$work/onprem.yaml"
# The documented command (cluster/README.md), made small: no --space, so run.py, copied alone to
# the remote home, must find the default space in the installed package.
step ray_submit ray submit "$work/onprem.yaml" "$repo/tune_mnist/run.py" \
    --address auto --dataset mnist_sample --train-subset 300 --max-epochs 1 \
    --storage-path "$work/runs" --name selftest
step ray_down ray down -y "$work/onprem.yaml"

trials=$work/runs/selftest/trials.parquet
rows=$("$bin_dir/python" -c "import pandas as pd; t = pd.read_parquet('$trials'); print(int((t['status'] == 'TERMINATED').sum()))") \
    || fail "no readable $trials"
# One row per arm: two per pair of the default space.
expected=$(PYTHONPATH=$repo "$bin_dir/python" -c "from tune_mnist.space import DEFAULT_SPACE, load_space; print(2 * load_space(DEFAULT_SPACE).num_trials(1))") \
    || fail "cannot read the default space"
[ "$rows" -eq "$expected" ] || fail "expected $expected finished trials (arms) in $trials, found $rows"
echo "onprem selftest: PASS (ray up, ray submit: $rows trials finished, ray down)"
