#!/usr/bin/env bash
# Regenerates the two-cluster example (east, west): the manifests in east/ and west/ and, next to
# them, each cluster's secrets.yaml (mode 0600, git-ignored), from a mesh root you keep offline.
#
#   meridian ca init --out ~/meridian-root          # once per mesh
#   deploy/kubernetes/generate.sh ~/meridian-root   # FORCE=1 to replace existing secrets.yaml
#
# MERIDIAN overrides the command (default: meridian on PATH).
set -euo pipefail
root=${1:?usage: $0 ROOT_DIR (a mesh root made by: meridian ca init --out ROOT_DIR)}
here=$(cd "$(dirname "$0")" && pwd)
read -r -a meridian <<<"${MERIDIAN:-meridian}"
for cluster in east west; do
  if [ "$cluster" = east ]; then peer=west; else peer=east; fi
  rm -f "$here/$cluster"/[0-9][0-9]-*.yaml
  "${meridian[@]}" manifest generate --cluster "$cluster" --mesh-id demo --root-dir "$root" \
    --zones "$cluster-a,$cluster-b,$cluster-c" \
    --peer "$peer=nats://nats-gateway.$peer.meridian.example:7222" \
    --nats-gateway-advertise "nats-gateway.$cluster.meridian.example:7222" \
    --image meridian:0.1.0 -o "$here/$cluster" ${FORCE:+--force}
done
