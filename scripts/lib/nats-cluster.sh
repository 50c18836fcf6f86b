# shellcheck shell=bash
# Three nats-servers in one NATS cluster on loopback, for the cluster
# demos (scripts/demo-relay-cluster.sh, scripts/demo-cluster.sh). Sourced.
#
#   nats_cluster_start DIR PORT   clients on PORT..PORT+2, routes on
#                                 PORT+100..PORT+102; configs and logs in
#                                 DIR; appends the pids to the array named
#                                 by NATS_PIDS_VAR (default: pids)
#   nats_cluster_wait PORT        until the three accept connections (10 s)

nats_cluster_start() {
  local dir=$1 port=$2 i j routes nats
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  [ -x "$nats" ] || bash scripts/install-deps.sh broker
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$i" = "$j" ] || routes="$routes nats-route://127.0.0.1:$((port + 100 + j))"; done
    cat >"$dir/nats$i.conf" <<CONF
listen: "127.0.0.1:$((port + i))"
no_sys_acc: true
cluster { name: bmdemo, listen: "127.0.0.1:$((port + 100 + i))", routes: [$(echo $routes | sed 's/ /, /g')] }
CONF
    "$nats" -c "$dir/nats$i.conf" >"$dir/nats$i.log" 2>&1 &
    eval "${NATS_PIDS_VAR:-pids}+=(\$!)"
  done
}

nats_cluster_wait() {
  local port=$1 i _
  for i in 0 1 2; do
    for _ in $(seq 200); do
      (exec 3<>"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null && break
      sleep 0.05
    done
  done
}
