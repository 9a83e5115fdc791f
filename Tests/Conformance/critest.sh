#!/usr/bin/env bash
# `make conformance`: the Kubernetes CRI validation suite (critest, cri-tools v1.36.0)
# against crisp started exactly as `make run` starts it (deploy/crisp-run), with a root,
# run root, socket, CNI bridge, subnet and registry of its own. Every image critest pulls
# is built from Debian packages by ../shared/testimages/build-and-push.sh (umoci, skopeo)
# and served by a registry on 127.0.0.1; registries.conf sends the registries critest
# names (registry.k8s.io, k8s.gcr.io, gcr.io) there, so nothing leaves the machine.
# Everything it started or made is stopped and removed at the end, also on failure.
#
#   usage: critest.sh BIN_DIR CRI_TOOLS_DIR SHARED_DIR [extra critest arguments...]
set -euo pipefail
bin=$(cd "${1:?usage: critest.sh BIN_DIR CRI_TOOLS_DIR SHARED_DIR}" && pwd)
tools=$(cd "${2:?}" && pwd)
shared=$(cd "${3:?}" && pwd)
shift 3
checkout=$(cd "$(dirname "$0")/../.." && pwd)

# Short: each shim's socket, <run_root>/shims/<64-hex id>.ipc, must fit in 107 bytes.
work=$(mktemp -d /tmp/crispct.XXXXXX)
chmod 0700 "$work"
run_root=$work/run
root=$work/root
bridge=crispct$(printf '%x' $((RANDOM % 4096)))
subnet=10.$((200 + RANDOM % 40)).$((1 + RANDOM % 250)).0/24
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
registry=127.0.0.1:$port
socket=$run_root/crisp.sock
crictl() { "$tools/crictl" --runtime-endpoint "unix://$socket" --image-endpoint "unix://$socket" "$@"; }

registry_pid=
runner_pid=
cleanup() {
  status=$?
  set +e
  trap - EXIT INT TERM
  echo "== conformance: cleaning up"
  if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
    # Pods critest left (a failed spec): removing them runs CNI DEL and unmounts.
    crictl rmp --force --all >/dev/null 2>&1
    kill -TERM "$runner_pid"
    for _ in $(seq 1 150); do kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$runner_pid" 2>/dev/null
  fi
  [ -n "$registry_pid" ] && kill -TERM "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  # Whatever still names this run's directory (daemons, shims, containers) is killed.
  for pid in $(pgrep -f -- "$work"); do kill -KILL "$pid" 2>/dev/null; done
  for dir in "$run_root"/runc "$run_root"/runtimes/*; do
    [ -d "$dir" ] || continue
    for id in $(runc --root "$dir" list -q 2>/dev/null); do runc --root "$dir" delete --force "$id" >/dev/null 2>&1; done
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r mount; do umount -l "$mount"; done
  ip link del "$bridge" 2>/dev/null
  iptables-save -t nat | grep -q "$subnet" && echo "conformance: note: NAT rules for $subnet are left to CNI's DEL" >&2
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

echo "== conformance: registry on $registry"
mkdir -p "$work/registry"
python3 "$checkout/Tests/Fixtures/imagefixture.py" registry-config --dir "$work/registry" --port "$port" >/dev/null
docker-registry serve "$work/registry/config.yml" >"$work/registry/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do curl -fs "http://$registry/v2/" >/dev/null && break; sleep 0.1; done
curl -fs "http://$registry/v2/" >/dev/null || { cat "$work/registry/registry.log"; exit 1; }

echo "== conformance: building and pushing critest's images (umoci, skopeo)"
mkdir -p "$work/images"
WORK=$work/images DEB_DIR=${CRISP_DEB_CACHE:-$work/images/debs} REG=$registry \
  bash "$shared/testimages/build-and-push.sh" >"$work/images.log" 2>&1 || { tail -n 40 "$work/images.log"; exit 1; }
cat >"$work/images.yaml" <<EOF
defaultTestContainerImage: $registry/e2e-test-images/busybox:1.29-2
webServerTestImage: $registry/e2e-test-images/nginx:1.14-2
EOF

mkdir -p "$work/cni" "$work/etc"
cat >"$work/etc/registries.conf" <<EOF
# critest checks image names against the registries it hard-codes: each is served by
# the local registry (location, not a mirror: nothing is asked of the real ones).
unqualified-search-registries = []
[[registry]]
prefix = "$registry"
location = "$registry"
insecure = true
EOF
for upstream in registry.k8s.io k8s.gcr.io gcr.io; do
  printf '[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$upstream" "$registry" >>"$work/etc/registries.conf"
done
cat >"$work/cni/10-conformance.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "crisp-conformance", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
cat >"$work/crisp.toml" <<EOF
root = "$root"
run_root = "$run_root"
[frontd]
seccomp_profile = "$checkout/deploy/seccomp/default.json"
# critest expects a container that names no seccomp profile to run unconfined
# (containerd's behaviour); crisp's default is CRI-O's, RuntimeDefault.
seccomp_use_default_when_empty = false
default_log_dir = "$work/logs"
[imaged]
registries_conf = "$work/etc/registries.conf"
auth_file = "$work/etc/auth.json"
certs_dir = "$work/etc/certs.d"
pinned_images = []
[netd]
cni_config_dir = "$work/cni"
EOF

echo "== conformance: starting crisp through deploy/crisp-run ($bridge, $subnet)"
(cd "$checkout" && exec deploy/crisp-run "$bin" "$work/crisp.toml") >"$work/crisp.log" 2>&1 &
runner_pid=$!
for _ in $(seq 1 300); do [ -S "$socket" ] && crictl version >/dev/null 2>&1 && break; sleep 0.1; done
crictl version || { cat "$work/crisp.log"; exit 1; }

echo "== conformance: critest"
# "public image with digest" pins an upstream digest (sha256:9700f9a2...) that no local
# build can reproduce: it is the one spec skipped by name.
set +e
(cd "$work" && "$tools/critest" \
  --runtime-endpoint "unix://$socket" --image-endpoint "unix://$socket" \
  --test-images-file "$work/images.yaml" \
  --ginkgo.skip "public image with digest" \
  --ginkgo.no-color --ginkgo.json-report "$work/critest.json" "$@")
result=$?
set -e
# The specs critest skipped, by name and with its reason (AppArmor without AppArmor on
# the host, features crisp does not announce...), so that a skip never goes unseen.
python3 - "$work/critest.json" <<'PY' || true
import json, sys
skipped = []
for suite in json.load(open(sys.argv[1])):
    for spec in suite.get("SpecReports") or []:
        if spec.get("State") == "skipped" and spec.get("LeafNodeType") == "It":
            name = " ".join(spec.get("ContainerHierarchyTexts") or []) + " " + spec.get("LeafNodeText", "")
            reason = ((spec.get("Failure") or {}).get("Message") or "skipped by --ginkgo.skip").splitlines()[0]
            skipped.append(f"  - {name.strip()}: {reason}")
print(f"== conformance: {len(skipped)} specs skipped")
print("\n".join(sorted(skipped)))
PY
if [ $result -ne 0 ]; then
  echo "== conformance: critest failed ($result); crisp's log:"
  tail -n 200 "$work/crisp.log"
fi
exit $result
