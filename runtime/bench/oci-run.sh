#!/bin/sh
# Bundle-for-bundle start latency: `run` of /bin/true with cria-oci, crun and
# runc (Debian), median of N runs each, plus the RSS of a cria monitor that
# holds a sleeping container. Root only. Usage:
#   runtime/bench/oci-run.sh [N]   (after cargo build -p cria-runtime --release --bins)
set -eu
N=${1:-30}
BIN=$(cd "$(dirname "$0")/../../target/release" && pwd)
W=$(mktemp -d /tmp/cria-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bundle/rootfs/bin" "$W/bundle/rootfs/proc" "$W/bundle/rootfs/sys" "$W/bundle/rootfs/dev" "$W/bundle/rootfs/tmp"
cp /bin/busybox "$W/bundle/rootfs/bin/"
for a in sh true sleep; do ln -s busybox "$W/bundle/rootfs/bin/$a"; done
cd "$W/bundle"
runc spec
jq '.process.args=["/bin/true"] | .process.terminal=false' config.json > c && mv c config.json

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms_now() { date +%s%N; }

bench() { # name, command...
  name=$1; shift
  i=0
  while [ $i -lt "$N" ]; do
    t0=$(ms_now); "$@" "b$i" >/dev/null 2>"$W/err" || { echo "$name run failed: $(head -c 200 "$W/err")" >&2; }; t1=$(ms_now)
    echo $(( (t1 - t0) / 1000 ))
    i=$((i + 1))
  done | median | awk -v n="$name" '{printf "%-8s median run /bin/true: %.2f ms\n", n, $1/1000}'
}

bench cria "$BIN/cria-oci" --root "$W/cria" run --bundle "$W/bundle"
# Note: crun 1.x refuses hosts with controllers on both v1 and v2 ("cgroups in
# hybrid mode not supported"), like this dev VM (hugetlb on cgroup2): its
# runs then fail fast and its number is not a start time.
bench crun crun --root "$W/crun" run --bundle "$W/bundle"
bench runc runc --root "$W/runc" run --bundle "$W/bundle"

# Monitor RSS with a running container.
jq '.process.args=["sleep","30"]' config.json > c && mv c config.json
"$BIN/cria-oci" --root "$W/cria" create --bundle "$W/bundle" rss
"$BIN/cria-oci" --root "$W/cria" start rss
sleep 0.3
MP=$(cat "$W/cria/containers/rss/monitor.pid")
printf 'cria-monitor VmRSS with a running container: %s\n' "$(awk '/VmRSS/ {print $2, $3}' /proc/"$MP"/status)"
"$BIN/cria-oci" --root "$W/cria" kill --all rss KILL
"$BIN/cria-oci" --root "$W/cria" delete --force rss
