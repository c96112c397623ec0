#!/usr/bin/env bash
# Fault injection on the compose testnet.
#   testnet/chaos.sh kill NODE          SIGKILL the container
#   testnet/chaos.sh start NODE         start it again
#   testnet/chaos.sh pause NODE / unpause NODE
#   testnet/chaos.sh disconnect NODE    cut it off the network (a partition of one)
#   testnet/chaos.sh connect NODE       reconnect it (same address)
. "$(dirname "$0")/lib.sh"
action=${1:?usage: chaos.sh kill|start|pause|unpause|disconnect|connect NODE}
node=${2:?node name, e.g. node2}
c="upswarm-$node"
net=upswarm-testnet_upswarm
case $action in
  kill) docker kill -s KILL "$c" >/dev/null ;;
  start) docker start "$c" >/dev/null ;;
  pause) docker pause "$c" >/dev/null ;;
  unpause) docker unpause "$c" >/dev/null ;;
  disconnect) docker network disconnect "$net" "$c" ;;
  connect)
    case $node in node*) ip="172.31.77.$((10 + ${node#node}))" ;; *) ip=172.31.77.10 ;; esac
    docker network connect --ip "$ip" "$net" "$c" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
echo "$action $node"
