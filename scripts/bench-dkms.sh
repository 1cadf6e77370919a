#!/usr/bin/env bash
# DKMS benchmark (docs/benchmarks.md, section (j)): what following a dkms.conf costs against the same driver
# described by a kmodfarm.toml. examples/dkms-pair (two modules from DKMS's default make) is built as it is
# (dkms.conf evaluated in the sandbox for every variant, then the DKMS build) and as a copy with
# `[build] dkms = false` and the same modules (one kbuild run), `kmodfarm build --rebuild --jobs <cores>` on a
# warm cache, alternating which runs first. Reported: wall time per run, and the median of the variants'
# build_secs (sandbox runs only) from results.json.
#
# Usage: scripts/bench-dkms.sh [--quick] [--runs N] [--work DIR] [--no-build]
#   --quick      bookworm 6.1 amd64 only (1 variant), one run each: a smoke run
#   --runs N     rounds (default 5; --quick: 1)
#   --work DIR   work dir (default target/bench-dkms); its cache is kept between runs
#   --no-build   benchmark target/release/kmodfarm as it is (default: `cargo build --release` first)
# Default selection: Debian's newest 6.1 (bookworm) and 6.12 (trixie) kernels, amd64 and arm64 (4 variants).
# Needs: bwrap, mmdebstrap (scripts/setup.sh), jq, the Debian mirror of apt's sources.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
runs=
work=$root/target/bench-dkms
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --runs)
      runs=${2:?--runs needs a number}
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
      echo "unknown argument: $1" >&2
      exit 2
      ;;
  esac
  shift
done
if [ -z "$runs" ]; then
  if [ "$quick" = 1 ]; then runs=1; else runs=5; fi
fi
if [ "$quick" = 1 ]; then
  arch=x86_64
  release='^6\.1\.0-[0-9]+-amd64$'
else
  arch=x86_64,aarch64
  release='^(6\.1\.0-[0-9]+|6\.12\.[0-9]+\+deb13)-(amd64|arm64)$'
fi
if [ "$build" = 1 ]; then
  cargo build --release --quiet
fi
bin=$root/target/release/kmodfarm
jobs=$(nproc)
mkdir -p "$work"
cache=$work/cache

# The same driver without dkms.conf's say: kmodfarm.toml names the modules, one kbuild run builds them.
plain=$work/kmf-pair-toml
rm -rf "$plain"
cp -a examples/dkms-pair "$plain"
printf '[driver]\nname = "kmf-pair"\nversion = "2.0.1"\n\n[build]\ndkms = false\nmodules = ["kmf_core.ko", "kmf_client.ko"]\n' \
  >"$plain/kmodfarm.toml"

crawl=$work/crawl.json
"$bin" kernels crawl --out "$crawl" --quiet

run_one() { # label project → "<wall seconds> <median build_secs>"
  local label=$1 project=$2 out=$work/run-$1
  rm -rf "$out"
  local start end
  start=$(date +%s.%N)
  "$bin" build "$project" --kernels "$crawl" --distro debian --latest 1 --arch "$arch" \
    --kernel-release "$release" --store "$out/store" --report-dir "$out/report" --cache "$cache" \
    --rebuild --jobs "$jobs" --quiet >/dev/null 2>"$out.log" || {
    cat "$out.log" >&2
    echo "the $label build failed" >&2
    exit 1
  }
  end=$(date +%s.%N)
  local median
  median=$(jq '[.[] | .durations.build_secs] | sort | .[length / 2 | floor]' "$out/report/results.json")
  awk -v s="$start" -v e="$end" -v m="$median" 'BEGIN { printf "%.2f %.2f\n", e - s, m }'
}

# Warm the cache (headers, builders, kernel trees) once, unmeasured.
run_one warm-dkms examples/dkms-pair >/dev/null
run_one warm-toml "$plain" >/dev/null

echo "| round | dkms.conf: wall s | dkms.conf: median build_secs | kmodfarm.toml: wall s | kmodfarm.toml: median build_secs |"
echo "|---|---|---|---|---|"
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) = 1 ]; then
    d=$(run_one dkms examples/dkms-pair)
    t=$(run_one toml "$plain")
  else
    t=$(run_one toml "$plain")
    d=$(run_one dkms examples/dkms-pair)
  fi
  read -r dw db <<<"$d"
  read -r tw tb <<<"$t"
  echo "| $i | $dw | $db | $tw | $tb |"
done
