#!/usr/bin/env bash
# What a container's own network costs: N `docker run --rm IMAGE true`, P at a time, each with a
# network of its own (the default) and each in the network of one running container
# (`--network container:NAME`, what parapipe's pool does with its network holders).
# Prints the wall time and the machine's busy CPU seconds of each, measured side by side.
#
# Usage: benchmarks/network.sh [N] [P] [IMAGE] [REPEAT]   (defaults: 40 4 busybox:latest 2)
# Needs: docker, an IMAGE with `sh` already local (nothing is pulled), bc.
set -euo pipefail
n=${1:-40}
p=${2:-4}
image=${3:-busybox:latest}
repeat=${4:-2}
docker=${DOCKER:-docker}
holder="parapipe-bench-netholder-$$"

cleanup() { "$docker" rm -f "$holder" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
ticks_per_second=$(getconf CLK_TCK)

measure() { # label, then the run flags
  local label=$1; shift
  local t0 b0 t1 b1
  b0=$(busy_ticks); t0=$(date +%s.%N)
  seq "$n" | xargs -P "$p" -I{} "$docker" run --rm --pull=never "$@" "$image" true >/dev/null
  t1=$(date +%s.%N); b1=$(busy_ticks)
  printf '%-22s wall %6.2f s   busy CPU %6.2f s   %5.0f ms CPU per container\n' "$label" \
    "$(bc -l <<<"$t1 - $t0")" "$(bc -l <<<"($b1 - $b0) / $ticks_per_second")" \
    "$(bc -l <<<"($b1 - $b0) / $ticks_per_second / $n * 1000")"
}

"$docker" run -d --pull=never --name "$holder" "$image" sh -c 'while :; do sleep 3600; done' >/dev/null
echo "$n x \`$docker run --rm $image true\`, $p at a time ($(nproc) CPUs)"
for _ in $(seq "$repeat"); do
  measure "own network"
  measure "holder's network" --network "container:$holder"
done
