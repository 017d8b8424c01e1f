#!/usr/bin/env bash
# A local 3-replica Meridian cluster by hand: a 3-member etcd and 3 meridiand replicas on loopback.
#   deploy/local/replicas.sh start   # starts everything in the background (logs and data in $DIR)
#   deploy/local/replicas.sh stop    # SIGTERM to the replicas (graceful), then etcd
# Run from the repository root. Ports: etcd 2379/2479/2579 (peers 2380/2480/2580), replica i
# (0..2): xDS+registration gRPC 15010+100*i, monitoring HTTP (health, metrics) 15014+100*i, admin
# HTTP (authenticated) 15080+100*i. `start` also makes the cluster's first admin credential and
# saves it as context "$CLUSTER" of $MERIDIAN_CREDENTIALS (default ~/.meridian/credentials.yaml).
set -euo pipefail
DIR=${DIR:-/tmp/meridian-local}
MESH=${MESH:-mesh1}
CLUSTER=${CLUSTER:-cluster1}
ETCD="http://127.0.0.1:2379,http://127.0.0.1:2479,http://127.0.0.1:2579"
INITIAL="m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2480,m2=http://127.0.0.1:2580"

start() {
  mkdir -p "$DIR"
  for i in 0 1 2; do
    c=$((2379 + 100 * i)); p=$((2380 + 100 * i))
    etcd --name "m$i" --data-dir "$DIR/etcd-m$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$INITIAL" --initial-cluster-state new --initial-cluster-token meridian-local \
      --heartbeat-interval 50 --election-timeout 500 \
      >"$DIR/etcd-m$i.log" 2>&1 &
    echo $! >"$DIR/etcd-m$i.pid"
  done
  sleep 2
  for i in 0 1 2; do
    xds=$((15010 + 100 * i)); monitoring=$((15014 + 100 * i)); admin=$((15080 + 100 * i))
    node --max-semi-space-size=64 --conditions=@meridian/source --import tsx packages/server/src/main.ts \
      --mesh-id "$MESH" --cluster-id "$CLUSTER" --locality "region1/zone$i" \
      --etcd-endpoints "$ETCD" \
      --xds-address "127.0.0.1:$xds" --admin-address "127.0.0.1:$admin" \
      --monitoring-address "127.0.0.1:$monitoring" \
      --replica-id "replica-$i" \
      >"$DIR/replica-$i.log" 2>&1 &
    echo $! >"$DIR/replica-$i.pid"
  done
  for i in 0 1 2; do
    xds=$((15010 + 100 * i)); monitoring=$((15014 + 100 * i)); admin=$((15080 + 100 * i)); tries=0
    until curl -sf "http://127.0.0.1:$monitoring/readyz" >/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -gt 120 ] || ! kill -0 "$(cat "$DIR/replica-$i.pid")" 2>/dev/null; then
        echo "replica-$i did not become ready; last lines of $DIR/replica-$i.log:" >&2
        tail -n 5 "$DIR/replica-$i.log" >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "replica-$i ready: xDS 127.0.0.1:$xds, admin http://127.0.0.1:$admin, monitoring http://127.0.0.1:$monitoring"
  done
  # The operator's first credential, written straight to etcd (whoever reaches etcd controls the
  # cluster); meridian reads it from the credentials file.
  node --conditions=@meridian/source --import tsx packages/cli/src/main.ts auth bootstrap \
    --etcd "$ETCD" --mesh "$MESH" --cluster "$CLUSTER" --user "${USER:-admin}" \
    --server "http://127.0.0.1:15080"
}

# SIGTERM, then SIGKILL for whatever has not exited within $2 seconds (an etcd leader whose peers
# are already gone can spend a long time trying to hand over leadership).
terminate() {
  local pidfile=$1 grace=$2 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
  for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop() {
  for i in 0 1 2; do terminate "$DIR/replica-$i.pid" 10 & done
  wait
  for i in 0 1 2; do terminate "$DIR/etcd-m$i.pid" 5 & done
  wait
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
