#!/usr/bin/env bash
# bench/burst_compare.sh [--rounds N] [--concurrent N] [--menu FIXTURE] TREE [TREE...]
#
# N concurrent POST /translate of one menu (default 16 of menu_ja_12), every stage on its parallel
# variant (the menu's rollout at 100 %), against the pipelined of each source TREE as scripts/run
# starts it: its build/daemon/pipelined on its configs/default.yaml (state moved to a scratch
# directory), its provider-sim at time scale 0.1 on 127.0.0.1:9090, the frontend on 127.0.0.1:8080.
# Rounds alternate between the trees, so each meets the same machine; every round starts a new
# daemon and provider-sim, because the shipped 600 openai calls a minute hold one burst (16 menus
# make about 420 calls) and not two. Before the burst, one request alone (the warm-up, its time
# printed as "alone").
#
# Prints each round's sorted latencies, then per tree p50, p90 and max over all rounds and their
# ratio to the first tree's. Comparing main with an earlier commit in one run:
#   git worktree add /tmp/old COMMIT
#   cmake -S /tmp/old -B /tmp/old/build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
#     -DPIPELINED_BUILD_TESTS=OFF -DPIPELINED_BUILD_BENCH=OFF && cmake --build /tmp/old/build
#   bench/burst_compare.sh --rounds 4 /tmp/old .
set -euo pipefail
rounds=3 concurrent=16 menu=menu_ja_12
trees=()
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --concurrent) concurrent=$2; shift 2 ;;
    --menu) menu=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) trees+=("$(cd "$1" && pwd)"); shift ;;
  esac
done
((${#trees[@]})) || { echo "usage: $0 [--rounds N] [--concurrent N] [--menu FIXTURE] TREE [TREE...]" >&2; exit 2; }
for port in 8080 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$0: port $port is in use" >&2; exit 1; fi
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/burst-compare.XXXXXX")
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$scratch"' EXIT

# One round against one tree: appends "latency" lines to $scratch/<tree index>.lat
round() {
  local index=$1 tree=${trees[$1]} dir="$scratch/round"
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s#^state_directory: var\$#state_directory: $dir#" -e "s#var/#$dir/#g" "$tree/configs/default.yaml" >"$dir/config.yaml"
  "$tree/build/provider-sim/provider-sim" --listen 127.0.0.1 --port 9090 --time-scale 0.1 --fixtures "$tree/tests/fixtures" \
    >"$dir/sim.log" 2>&1 &
  pids+=($!)
  (cd "$tree" && exec build/daemon/pipelined --config "$dir/config.yaml") >"$dir/daemon.log" 2>&1 &
  pids+=($!)
  local ready=0
  for _ in $(seq 1 300); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz)" = 200 ]; then ready=1; break; fi
    sleep 0.2
  done
  ((ready)) || { echo "$tree: the daemon did not get ready; $dir/daemon.log:" >&2; tail -20 "$dir/daemon.log" >&2; exit 1; }
  "$tree/build/admin-cli/pipectl" --socket "$dir/admin.sock" rollout --percent 100 --pipeline menu >/dev/null
  local image="$tree/tests/fixtures/menus/$menu.png"
  local alone
  alone=$(curl -s -o /dev/null -w '%{time_total}' -F "file=@$image" http://127.0.0.1:8080/translate)
  local clients=()
  for i in $(seq 1 "$concurrent"); do
    curl -s -o "$dir/body.$i" -w '%{http_code} %{time_total}\n' -F "file=@$image" http://127.0.0.1:8080/translate >"$dir/time.$i" &
    clients+=($!)
  done
  wait "${clients[@]}"
  local failed
  failed=$(cat "$dir"/time.* | awk '$1 != 200' | wc -l)
  ((failed == 0)) || { echo "$tree: $failed of $concurrent requests failed:" >&2; cat "$dir"/time.* >&2; exit 1; }
  printf "  %s: alone %.2f s; sorted s:" "$tree" "$alone"
  awk '{print $2}' "$dir"/time.* | tee -a "$scratch/$index.lat" | sort -n | awk '{printf " %.2f", $1} END {print ""}'
  stop_all
}

echo "$concurrent concurrent /translate of $menu, all parallel, provider-sim time scale 0.1, $rounds rounds"
for r in $(seq 1 "$rounds"); do
  echo "round $r"
  # Alternating which tree goes first.
  if ((r % 2)); then order=$(seq 0 $((${#trees[@]} - 1))); else order=$(seq $((${#trees[@]} - 1)) -1 0); fi
  for i in $order; do round "$i"; done
done

# Nearest rank over every request of every round (as bench/stats.h).
pct() { sort -n "$1" | awk -v p="$2" '{v[NR] = $1} END {r = p * NR / 100; i = int(r); if (i < r) i++; if (i < 1) i = 1; printf "%.2f", v[i]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "| tree | p50 s | p90 s | max s | requests | p50 / first's | max / first's |"
echo "|---|---|---|---|---|---|---|"
base50=$(pct "$scratch/0.lat" 50) base100=$(pct "$scratch/0.lat" 100)
for i in "${!trees[@]}"; do
  f="$scratch/$i.lat"
  p50=$(pct "$f" 50) p90=$(pct "$f" 90) p100=$(pct "$f" 100)
  printf "| %s (%s) | %s | %s | %s | %s | %s | %s |\n" "${trees[$i]}" "$(git -C "${trees[$i]}" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$p50" "$p90" "$p100" "$(wc -l <"$f")" "$(ratio "$p50" "$base50")" "$(ratio "$p100" "$base100")"
done
echo
echo "command: $0 --rounds $rounds --concurrent $concurrent --menu $menu ${trees[*]}"
