#!/usr/bin/env bash
# Benchmark (a): `kmodfarm matrix generate` over the real kernel-crawler lists in ../shared (both
# architectures, about 6,400 entries) and `kmodfarm matrix diff` of that matrix against perturbed copies; then
# the same on a synthetic list ten times as large, to show how the cost grows. Release build; wall time and
# peak RSS from GNU time (/usr/bin/time -v). Prints a Markdown table (docs/benchmarks.md, section (a)).
#
# Usage: scripts/bench-matrix.sh [--quick]
#   --quick   one run per step and the real lists only (for CI). Default: 3 runs per step (median wall time,
#             highest peak RSS) on the real lists and on the 10x list.
# Needs: jq, GNU time (Debian packages jq and time), ../shared/kernel-crawler (skips without it).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  "") ;;
  --quick) quick=1 ;;
  -h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--quick]" >&2
    exit 2
    ;;
esac

for tool in /usr/bin/time jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-matrix: $tool is missing (Debian packages: time, jq)" >&2
    exit 2
  fi
done
lists=../shared/kernel-crawler
if [ ! -d "$lists" ]; then
  echo "bench-matrix: skipping: $lists is absent"
  exit 0
fi

cargo build --release --quiet
bin=$PWD/target/release/kmodfarm
runs=3
[ "$quick" = 1 ] && runs=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure LABEL ENTRIES CMD...: runs CMD $runs times under GNU time and prints a table row with the median
# wall time and the highest peak RSS. Wall time is taken in nanoseconds around the run (GNU time's own is in
# hundredths of a second). Fails with the command's stderr when the command fails.
measure() {
  local label=$1 entries=$2
  shift 2
  local walls=() rss=0 start end kb
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    if ! /usr/bin/time -v -o "$work/time" "$@" >"$work/stdout" 2>"$work/stderr"; then
      cat "$work/stderr" >&2
      exit 1
    fi
    end=$(date +%s%N)
    walls+=("$(((end - start) / 1000000))")
    kb=$(awk -F': ' '/Maximum resident set size/ {print $NF}' "$work/time")
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  local median
  median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  printf '| %s | %s | %s ms | %s MiB |\n' "$label" "$entries" "$median" "$(((rss + 512) / 1024))"
}

# expect FILE JQ-FILTER: the scenario really is what the row says.
expect() {
  if ! jq -e "$2" "$1" >/dev/null; then
    echo "bench-matrix: unexpected diff in $1: $(jq -c .summary "$1")" >&2
    exit 1
  fi
}

# scale NAME X86_LIST AARCH64_LIST: generate, then diff against a copy with every header list reversed and
# moved to another host (nothing to build), and against a driver patch release (everything to build).
scale() {
  local name=$1 x86=$2 arm=$3 old=$work/$1-old.json
  measure "$name: \`matrix generate\`" "$(jq 'map(length) | add' "$x86" "$arm" | jq -s add) list entries" \
    "$bin" -q matrix generate --kernels "$x86" --kernels "$arm" --driver-version 0.1.1 --out "$old"
  local n
  n=$(jq length "$old")
  jq 'map(.kernelurls |= (reverse | map(sub("^[a-z]+://[^/]+/"; "http://mirror.invalid/moved/"))))' "$old" >"$work/$name-moved.json"
  jq 'map(.driverversion = "0.1.2")' "$work/$name-moved.json" >"$work/$name-patch.json"

  measure "$name: \`matrix diff\`, header lists reversed and moved (0 to build)" "$n vs $n" \
    "$bin" -q matrix diff "$old" "$work/$name-moved.json"
  "$bin" -q matrix diff --json "$old" "$work/$name-moved.json" >"$work/check.json"
  expect "$work/check.json" ".summary.build == 0 and .summary.unchanged == $n"

  measure "$name: \`matrix diff --json --build-matrix\`, driver patch release ($n to build)" "$n vs $n" \
    "$bin" -q matrix diff --json --build-matrix "$work/todo.json" "$old" "$work/$name-patch.json"
  cp "$work/stdout" "$work/check.json"
  expect "$work/check.json" ".summary.modified == $n and (.build | length) == $n"
}

echo "date: $(date -u +%F); $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(. /etc/os-release && echo "$PRETTY_NAME"); runs per step: $runs"
echo
echo "| step | entries | wall (median) | peak RSS |"
echo "|---|---|---|---|"
scale "real lists" "$lists/x86_64-list-2022-10-03.json" "$lists/aarch64-list-2022-10-03.json"

if [ "$quick" = 0 ]; then
  # Ten copies of every kernel under distinct releases (`<release>.s0` ... `<release>.s9`); the file names keep
  # the architecture, which kernel-crawler's lists do not carry per entry.
  for arch in x86_64 aarch64; do
    jq 'map_values([.[] as $e | range(10) as $i | $e | .kernelrelease += ".s\($i)"])' \
      "$lists/$arch-list-2022-10-03.json" >"$work/$arch-list-10x.json"
  done
  scale "10x list" "$work/x86_64-list-10x.json" "$work/aarch64-list-10x.json"
fi
