#!/usr/bin/env bash
# The main job in one command, on a fresh clone (Debian 12, as root; the npm registry and Debian
# packages only):
#   bash scripts/setup.sh [meridian up flags...]
# installs whatever is missing (etcd and nats-server from apt, pnpm 10 from npm, the node packages),
# builds the TypeScript (dist/), puts `meridian`, `meridiand` and `meridian-agent` on PATH (symlinks
# to the built JavaScript in /usr/local/bin, or ~/.local/bin when that is not writable), then runs
# `meridian up` with the flags given (default: deploy/local/two-clusters.yaml, state in
# ~/.meridian/local). Run it again at any time: every step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

step() { printf '== %s\n' "$*"; }

if ! command -v node >/dev/null 2>&1; then
  echo "setup: node is not installed; Meridian needs Node.js 20.6 or later (https://nodejs.org)" >&2
  exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=6)?0:1)'; then
  echo "setup: Node.js $(node --version) is too old; Meridian needs 20.6 or later" >&2
  exit 1
fi

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v pnpm >/dev/null 2>&1; then
  step "npm install -g pnpm@10"
  npm install -g pnpm@10 >/dev/null
fi

step "pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile --reporter=append-only 2>&1 | tail -n 2

step "pnpm build (tsc -b: packages/*/dist)"
pnpm build

bin=/usr/local/bin
if ! [ -w "$bin" ]; then
  bin="$HOME/.local/bin"
  mkdir -p "$bin"
fi
step "linking meridian, meridiand, meridian-agent into $bin"
for link in meridian:cli meridiand:server meridian-agent:agent; do
  name=${link%%:*}
  target="$root/packages/${link#*:}/dist/main.js"
  chmod +x "$target"
  ln -sfn "$target" "$bin/$name"
done
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "note: $bin is not on your PATH; add it (export PATH=\"$bin:\$PATH\")" >&2; export PATH="$bin:$PATH" ;;
esac

step "meridian up $*"
exec "$bin/meridian" up "$@"
