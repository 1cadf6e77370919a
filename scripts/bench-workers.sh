#!/usr/bin/env bash
# Distributed-run benchmark (docs/benchmarks.md, section (h)): how long a plan of about 540 variants takes from
# `plan` to published with N workers, N = 1, 2, 4, 8 by default, all against one S3 store on loopback (s3s-fs).
#
# Each round: an empty module store; `plan` (prefetch: header packages and builders already in the store's
# shared cache from a warm-up plan, as on any night but the first); N `work --runner x86_64 --index i --of N
# --jobs 1` processes at once, each with its own empty cache (an ephemeral runner: it fetches its shards'
# inputs from the store and unpacks its builders); `publish`. Reported: the wall time of each phase and of the
# whole, the speed-up over N = 1 and the efficiency (speed-up / N).
#
# The variants: D copies of examples/hello (driver names bench-01 …) × the kernels of the selection, D chosen
# so that D × kernels is the nearest to --variants. Each variant's build is the real kbuild of hello in the
# sandbox, a bounded per-variant build time of about 1.6 s of one core; each worker builds one at a time, as a
# one-core worker would.
#
# Usage: scripts/bench-workers.sh [--quick] [--variants N] [--workers "1 2 4 8"] [--work DIR] [--no-build]
#   --quick     24 variants, workers "1 2": a smoke run of a few minutes (CI)
# Needs what `kmodfarm build` needs (scripts/setup.sh), jq, and s3s-fs (scripts/setup.sh --tests).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

variants=540
workers="1 2 4 8"
work=$root/target/bench-workers
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick)
      variants=24
      workers="1 2"
      ;;
    --variants)
      variants=${2:?--variants needs a number}
      shift
      ;;
    --workers)
      workers=${2:?--workers needs a list}
      shift
      ;;
    --work)
      work=${2:?--work needs a directory}
      shift
      ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--quick] [--variants N] [--workers LIST] [--work DIR] [--no-build]" >&2
      exit 2
      ;;
  esac
  shift
done

s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
for tool in jq "$s3s"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench-workers: $tool is missing (scripts/setup.sh --tests)" >&2
    exit 2
  }
done
[ "$build" = 1 ] && cargo build --release --quiet
mkdir -p "$work"
work=$(cd "$work" && pwd)
bin=$work/kmodfarm
cp "$root/target/release/kmodfarm" "$bin"
export NO_COLOR=1
say() { printf '%s\n' "$*" | tee -a "$work/results.md"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
: >"$work/results.md"

# The S3 store.
s3root=$work/s3
rm -rf "$s3root"
mkdir -p "$s3root/bench"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=kmodfarm-bench AWS_SECRET_ACCESS_KEY=kmodfarm-bench-secret
"$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
  "$s3root" >"$work/s3s.log" 2>&1 &
s3s_pid=$!
trap 'kill $s3s_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url() { echo "s3://bench/$1?endpoint=http://127.0.0.1:$port&region=us-east-1&path_style=true"; }
farm=$(url farm)

# The kernels: one crawl, the selection applied by every plan.
cache=$work/cache
crawl=$work/crawl.json
[ -f "$crawl" ] || "$bin" -q kernels crawl --out "$crawl"
select=(--kernels "$crawl" --distro debian --arch x86_64,aarch64 --flavour amd64,cloud-amd64,arm64 --latest 1)

# The drivers.
kernels=$("$bin" -q plan "$root/examples/hello" "${select[@]}" --no-prefetch --cache "$cache" \
  --store "$work/empty-store" --json | jq .variants)
drivers=$(( (variants + kernels / 2) / kernels ))
[ "$drivers" -ge 1 ] || drivers=1
rm -rf "$work/drivers"
projects=()
for d in $(seq -w 1 "$drivers"); do
  dir=$work/drivers/bench-$d
  mkdir -p "$dir"
  cp "$root/examples/hello/Kbuild" "$root/examples/hello/hello.c" "$dir/"
  sed "s/^name = \"hello\"/name = \"bench-$d\"/" "$root/examples/hello/kmodfarm.toml" >"$dir/kmodfarm.toml"
  projects+=("$dir")
done
total=$((drivers * kernels))
say "## bench-workers: $total variants ($drivers drivers × $kernels kernels), workers: $workers"
say ""
say "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(date -u +%Y-%m-%d); \
kmodfarm $(git rev-parse --short HEAD)."
say ""

plan() { # plan STORE → the plan's URL on stdout
  "$bin" -q plan "${projects[@]}" "${select[@]}" --cache "$cache" --store "$1" --out "$farm" --shard-size 16 --json |
    jq -r .location
}
# Warm-up: the store's shared cache gets the header packages and builders, the local cache its builders.
warm=$(plan "$(url warmup)")
echo "bench-workers: warm-up plan $warm" >&2

say "| workers | plan | work (all workers) | publish | plan → published | speed-up | efficiency |"
say "|---|---|---|---|---|---|---|"
base=
for n in $workers; do
  rm -rf "$s3root/bench/farm/staging" "$work"/worker-*
  store=$(url "modules-$n")
  t0=$(now)
  plan_url=$(plan "$store")
  t1=$(now)
  staging=${plan_url/\/plans\//\/staging\/}
  pids=()
  for i in $(seq 0 $((n - 1))); do
    "$bin" -q work --plan "$plan_url" --runner x86_64 --index "$i" --of "$n" --out "$staging" --jobs 1 \
      --cache "$work/worker-$i" --report-dir "$work/worker-$i/report" >"$work/worker-$i.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  t2=$(now)
  [ "$failed" = 0 ] || { echo "bench-workers: a worker failed (see $work/worker-*.log)" >&2; exit 1; }
  "$bin" -q publish --plan "$plan_url" --bundles "$staging" --store "$store" --cache "$cache" \
    --report-dir "$work/publish-report" >"$work/publish-$n.log" 2>&1
  t3=$(now)
  published=$(find "$s3root/bench/modules-$n" -name metadata.json | wc -l)
  [ "$published" = "$total" ] || { echo "bench-workers: $published of $total variants published" >&2; exit 1; }
  whole=$(secs "$t0" "$t3")
  [ -n "$base" ] || base=$whole
  say "| $n | $(secs "$t0" "$t1") s | $(secs "$t1" "$t2") s | $(secs "$t2" "$t3") s | $whole s | \
$(awk -v a="$base" -v b="$whole" 'BEGIN {printf "%.2f", a / b}')× | \
$(awk -v a="$base" -v b="$whole" -v n="$n" 'BEGIN {printf "%.2f", a / b / n}') |"
done
