#!/usr/bin/env bash
# Farm benchmarks (docs/benchmarks.md, sections (b), (c), (d)) on real Debian kernels from the mirror apt uses:
#
#   b  no-change `kmodfarm sync` against an up-to-date store: wall time, and proof that nothing was downloaded,
#      extracted or built (downloads/ files, packages/ and builders/ dirs identical before and after; sync.json
#      built=0; every result up_to_date with fetch_secs 0).
#   c  warm-cache `kmodfarm build --rebuild --jobs <cores>` against bare `make`: every variant's exact bwrap +
#      make command lines, taken from its build.log, rerun directly on a fresh copy of the source, <cores> at a
#      time (xargs -P). The difference is kmodfarm's own overhead (key checks, resolve, source copy, cgroups,
#      verification, publishing).
#   d  cold `kmodfarm build` (fresh cache; only the builders hard-linked from the warm cache) against the naive
#      per-variant flow of a fresh build container: curl every header package again, check its SHA256,
#      dpkg-deb -x into a fresh root, then the same bwrap + make command lines with the trees pointing into that
#      root. Naive runs one variant after another, and also <cores> at a time. Then a fully cold farm run
#      (builders created with mmdebstrap too), unless --no-full-cold.
#
# Usage: scripts/bench-farm.sh [--quick] [--runs N] [--work DIR] [--no-full-cold] [--no-build] [b] [c] [d]
#   (no letter: all three, in the order b c d)
#   --quick          hello for bookworm 6.1 amd64 + arm64 (2 variants), one run each: a smoke run of a few minutes
#   --runs N         repetitions of the measured runs of (b) and (c), median and minimum reported (default 5;
#                    --quick: 1); (c) alternates which of farm and bare runs first
#   --work DIR       work dir (default target/bench); the warm cache (DIR/warm-cache) is kept between runs
#   --no-full-cold   skip (d)'s fully cold farm run
#   --no-build       benchmark target/release/kmodfarm as it is (default: `cargo build --release` first)
# Default selection: examples/hello and examples/pair for the newest kernel of each series of bookworm,
# bookworm-security, trixie and trixie-security, flavours amd64, cloud-amd64 and arm64 (9 kernels, 18 variants).
# (sid's kernel is built with GCC 16, which kmodfarm's toolchain table does not know yet.)
# Environment: BENCH_MAX_LOAD (default 1.5) and BENCH_LOAD_WAIT (seconds, default 90): before each measured
# run, wait up to BENCH_LOAD_WAIT for the 1-minute load average to drop below BENCH_MAX_LOAD; the load at the
# start of every run is printed next to its number either way, and so is "others' CPU": the CPU time other
# processes used during the run, in cores (machine-wide busy time from /proc/stat minus the run's own CPU time
# from a cpuacct cgroup; needs root and cgroup v1's cpuacct, else n/a). "CPU" is the run's own CPU seconds.
# Needs: bwrap, mmdebstrap (scripts/setup.sh), curl, dpkg-deb, jq, the Debian mirror of apt's
# sources, and root or working unprivileged user namespaces (as kmodfarm itself). Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
runs=
work=$root/target/bench
full_cold=1
build=1
benches=()
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
    --no-full-cold) full_cold=0 ;;
    --no-build) build=0 ;;
    b | c | d) benches+=("$1") ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--quick] [--runs N] [--work DIR] [--no-full-cold] [--no-build] [b] [c] [d]" >&2
      exit 2
      ;;
  esac
  shift
done
[ ${#benches[@]} -eq 0 ] && benches=(b c d)
[ -z "$runs" ] && { [ "$quick" = 1 ] && runs=1 || runs=5; }

for tool in bwrap mmdebstrap curl dpkg-deb jq sha256sum xargs; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-farm: $tool is missing (Debian packages: bubblewrap mmdebstrap curl dpkg jq coreutils findutils)" >&2
    exit 2
  fi
done

[ "$build" = 1 ] && cargo build --release --quiet
# Absolute paths throughout: kmodfarm passes --cache paths to bwrap as given, and bwrap cannot resolve
# relative bind sources.
mkdir -p "$work"
work=$(cd "$work" && pwd)
# A copy, so that a rebuild of target/ during the benchmark does not change the binary under test.
bin=$work/kmodfarm
cp "$root/target/release/kmodfarm" "$bin"
warm=$work/warm-cache
jobs=$(nproc)
export NO_COLOR=1

if [ "$quick" = 1 ]; then
  projects=("$root/examples/hello")
  select=(--crawl --suite bookworm --arch "x86_64,aarch64" --flavour "amd64,arm64" --latest 1)
else
  projects=("$root/examples/hello" "$root/examples/pair")
  select=(--crawl --suite "bookworm,bookworm-security,trixie,trixie-security" --arch "x86_64,aarch64"
    --flavour "amd64,cloud-amd64,arm64" --latest 1)
fi

cpuacct=/sys/fs/cgroup/cpuacct
trap 'rmdir "$cpuacct"/kmodfarm-bench-$$-* 2>/dev/null || true' EXIT
max_load=${BENCH_MAX_LOAD:-1.5}
load_wait=${BENCH_LOAD_WAIT:-90}
out=$work/results.md
: >"$out"

say() { printf '%s\n' "$*" | tee -a "$out"; }
note() { printf 'bench-farm: %s\n' "$*" >&2; }
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
# Received bytes of every interface but lo: machine-wide, so an upper bound for one run's traffic.
rx_bytes() { awk -F"[: ]+" 'NR > 2 && $2 != "lo" {s += $3} END {printf "%.0f", s}' /proc/net/dev; }

# Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz}' /proc/stat; }

# timed NAME CMD...: runs CMD (its stdout and stderr to $work/NAME.out and $work/NAME.log) after waiting for a
# quiet machine; returns its exit status and sets $wall (seconds), $load (1-minute load average at the start),
# $cpu (CPU seconds, user + system, used by CMD and every process it started) and $others (the CPU time every
# other process used during the run, in cores: machine-wide busy time minus $cpu, over the wall time; 0 on an
# otherwise idle machine, at most the core count). The CPU time comes from a cgroup v1 `cpuacct` group of
# its own (a separate hierarchy, so scheduling is unchanged); rusage would miss the builds, which bwrap's
# PID namespace does not report to its parent. Without a writable cpuacct hierarchy both are "n/a".
timed() {
  local name=$1 b0 b1 t0 t1 rc=0 cg=
  shift
  if [ -w "$cpuacct/cgroup.procs" ]; then
    cg=$cpuacct/kmodfarm-bench-$$-${name//\//-}
    mkdir "$cg"
  fi
  wait_load
  load=$(load1)
  b0=$(cpu_busy)
  t0=$(now)
  if [ -n "$cg" ]; then
    bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@" \
      >"$work/$name.out" 2>"$work/$name.log" || rc=$?
  else
    "$@" >"$work/$name.out" 2>"$work/$name.log" || rc=$?
  fi
  t1=$(now)
  b1=$(cpu_busy)
  wall=$(secs "$t0" "$t1")
  start=$t0
  if [ -n "$cg" ]; then
    cpu=$(awk '{printf "%.1f", $1 / 1e9}' "$cg/cpuacct.usage")
    rmdir "$cg" 2>/dev/null || note "$cg still has processes; left in place"
    others=$(awk -v b0="$b0" -v b1="$b1" -v o="$cpu" -v w="$wall" \
      'BEGIN {x = (b1 - b0 - o) / w; if (x < 0) x = 0; printf "%.2f", x}')
  else
    cpu=n/a others=n/a
  fi
  return "$rc"
}

wait_load() {
  local waited=0
  while awk -v l="$(load1)" -v m="$max_load" 'BEGIN {exit !(l >= m)}' && [ "$waited" -lt "$load_wait" ]; do
    sleep 5
    waited=$((waited + 5))
  done
}

# farm NAME ARGS...: `timed` kmodfarm with ARGS; also sets $crawl, the seconds from the start to the log line
# that starts the variants (the crawl of the apt indexes). Exit status 1 (some variants failed) is left to the
# caller's checks; anything else stops the benchmark.
farm() {
  local name=$1 rc=0
  shift
  timed "$name" "$bin" "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    tail -n 30 "$work/$name.log" >&2
    note "kmodfarm $1 failed (exit status $rc); log: $work/$name.log"
    exit 1
  fi
  local ts
  ts=$(grep -m1 -oE '^[0-9T:.-]+Z .*variant\(s\), [0-9]+ at a time' "$work/$name.log" | cut -d' ' -f1 || true)
  if [ -n "$ts" ]; then
    crawl=$(secs "$start" "$(date -d "$ts" +%s.%N)")
  else
    crawl=0
  fi
}

# expect FILE JQ-FILTER WHAT: the run really is what the table says.
expect() {
  if ! jq -e "$2" "$1" >/dev/null; then
    note "unexpected $3 in $1"
    jq -c 'if type == "array" then map({label, result, class, message}) else . end' "$1" >&2 || true
    exit 1
  fi
}

# The driver project directory of a driver name (results.json's `driver`).
project_of() {
  local p
  for p in "${projects[@]}"; do
    if grep -qE "^name *= *\"$1\"" "$p/kmodfarm.toml"; then
      echo "$p"
      return
    fi
  done
  note "no project for driver $1"
  exit 1
}

# bare LOG SCRATCH [PACKAGES NEWROOT]: reruns the sandboxed command lines of a build.log (one per kbuild step,
# in order) with SCRATCH as the writable /build, which must hold the source in SCRATCH/src. With PACKAGES (a
# cache's packages/ dir) and NEWROOT, bind sources PACKAGES/<sha256>/PATH become NEWROOT/PATH: the trees come
# from NEWROOT instead of the cache. Output goes to SCRATCH.log; fails when a step fails.
bare() {
  local log=$1 scratch=$2 pkgs=${3:-} newroot=${4:-} line cmd i n=0 rest sha
  local -a argv
  local prefix='# kmodfarm sandbox=bubblewrap: '
  : >"$scratch.log"
  while IFS= read -r line; do
    cmd=${line#"$prefix"}
    # Plain word splitting is exact for the examples' command lines; refuse anything that needs unquoting.
    case "$cmd" in
      *[\'\"\\\$\`]*)
        echo "bench-farm: quoted command line in $log; not supported" >&2
        return 1
        ;;
    esac
    read -ra argv <<<"$cmd"
    for i in "${!argv[@]}"; do
      if [ "${argv[i]}" = --ro-bind-data ]; then
        # kmodfarm handed bwrap an empty file on that descriptor (the /proc/cmdline it shows); so does this.
        argv[i + 1]=9
      elif [ "${argv[i]}" = --bind ] && [ "${argv[i + 2]:-}" = /build ]; then
        argv[i + 1]=$scratch
      elif [ -n "$pkgs" ] && [[ ${argv[i]} == "$pkgs"/* ]]; then
        rest=${argv[i]#"$pkgs"/}
        sha=${rest%%/*}
        if [[ $sha =~ ^[0-9a-f]{64}$ ]]; then
          argv[i]=$newroot${rest#"$sha"}
        fi
      fi
    done
    n=$((n + 1))
    if ! "${argv[@]}" >>"$scratch.log" 2>&1 9</dev/null; then
      echo "bench-farm: step $n of $log failed when run directly; see $scratch.log" >&2
      return 1
    fi
  done < <(grep -F "$prefix" "$log")
  if [ "$n" -eq 0 ]; then
    echo "bench-farm: no sandbox command line in $log" >&2
    return 1
  fi
}

# bare_timed LOG SCRATCH: bare, writing the variant's wall seconds to SCRATCH.secs.
bare_timed() {
  local t0 t1
  t0=$(date +%s.%N)
  bare "$1" "$2"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' >"$2.secs"
}

# naive DIR LOG PROJECT PACKAGES: what a fresh build container does for one variant: copy the source,
# download every header package (DIR/pkgs: "url sha256 file" lines), check its SHA256, dpkg-deb -x it into a
# fresh root, then run the variant's command lines with the trees in that root. Writes DIR.secs (wall) and
# DIR.bytes (curl's downloaded bytes), then deletes DIR (not timed: a container is thrown away).
naive() {
  local dir=$1 log=$2 project=$3 pkgs=$4 t0 t1 url sha file bytes=0 b
  t0=$(date +%s.%N)
  mkdir -p "$dir/debs" "$dir/root" "$dir/work"
  cp -r "$project" "$dir/work/src"
  while read -r url sha file; do
    b=$(curl -fsS --retry 3 -o "$dir/debs/$file" -w '%{size_download}' "$url")
    bytes=$((bytes + ${b%.*}))
    echo "$sha  $dir/debs/$file" | sha256sum -c --quiet -
    dpkg-deb -x "$dir/debs/$file" "$dir/root"
  done <"$dir.pkgs"
  bare "$log" "$dir/work" "$pkgs" "$dir/root"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' >"$dir.secs"
  echo "$bytes" >"$dir.bytes"
  mv "$dir/work" "$dir.work"
  rm -rf "$dir"
}
export -f bare bare_timed naive

# Every variant of a report that kmodfarm built: "LOG PROJECT STORE_PREFIX" lines.
built_variants() {
  local log driver prefix
  jq -r '.[] | select(.result == "success") | [.driver, .log, .store_prefix] | @tsv' "$1" |
    while IFS=$'\t' read -r driver log prefix; do
      echo "$log $(project_of "$driver") $prefix"
    done
}

# The .ko files a run left in a scratch dir must be the modules the farm published for the variant.
check_modules() {
  local scratch=$1 store=$2 prefix=$3 rel
  for rel in $(jq -r '.modules[].relative_path' "$store/$prefix/metadata.json"); do
    if [ ! -s "$scratch/src/$rel" ]; then
      note "direct run in $scratch did not produce $rel"
      exit 1
    fi
  done
}

# A cache's state as far as (b) is concerned: every file under downloads/ (path, size, inode, mtime), the
# extracted packages and the builders.
snapshot() {
  (
    cd "$1"
    find downloads -type f -printf 'file downloads/%P %s %i %T@\n' | sort
    find packages builders -mindepth 1 -maxdepth 1 -printf 'dir %p\n' 2>/dev/null | sort
  )
}

# shellcheck disable=SC1091
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
say "date: $(date -u +%F); $machine; kmodfarm $("$bin" --version | cut -d' ' -f2), release build of $(date -u -r "$root/target/release/kmodfarm" '+%F %H:%M UTC') (git HEAD now: $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
say "selection: ${projects[*]##*/} × \`${select[*]}\`; --jobs $jobs; work dir $work"
say

bench_b() {
  local store=$work/b/store dl0 dl1 n walls=() loads=() crawls=() others_=() cpus=() rx=() r first first_load
  rm -rf "$work/b"
  mkdir -p "$work/b"
  farm b/sync-first sync "${projects[@]}" "${select[@]}" --cache "$warm" --store "$store" \
    --report-dir "$work/b/report-first" --jobs "$jobs"
  first=$wall first_load=$load
  expect "$work/b/report-first/sync.json" 'all(.failed == 0)' "failures in the first sync"
  n=$(jq length "$work/b/report-first/results.json")
  for r in $(seq "$runs"); do
    wait_load
    snapshot "$warm" >"$work/b/before-$r.txt"
    local rx0
    rx0=$(rx_bytes)
    farm "b/sync-nochange-$r" sync "${projects[@]}" "${select[@]}" --cache "$warm" --store "$store" \
      --report-dir "$work/b/report-nochange-$r" --jobs "$jobs"
    rx+=($(($(rx_bytes) - rx0)))
    walls+=("$wall")
    loads+=("$load")
    crawls+=("$crawl")
    others_+=("$others")
    cpus+=("$cpu")
    snapshot "$warm" >"$work/b/after-$r.txt"
    if ! diff -u "$work/b/before-$r.txt" "$work/b/after-$r.txt" >&2; then
      note "the no-change sync changed the cache (diff above)"
      exit 1
    fi
    local rep=$work/b/report-nochange-$r
    expect "$rep/sync.json" 'all(.built == 0 and .failed == 0 and .up_to_date == .generated and .diff.build == 0)' \
      "sync summary"
    expect "$rep/results.json" "length == $n and all(.result == \"up_to_date\" and .durations.fetch_secs == 0
      and .durations.extract_secs == 0 and .durations.build_secs == 0)" "result"
  done
  dl0=$(grep -c '^file downloads/sha256/' "$work/b/before-1.txt" || true)
  dl1=$(awk '$1 == "file" && $2 ~ /^downloads\/sha256\// {s += $3} END {printf "%.0f", s}' "$work/b/before-1.txt")
  local pk bu
  pk=$(grep -cE '^dir packages/[0-9a-f]{64}$' "$work/b/before-1.txt" || true)
  bu=$(find "$warm/builders" -mindepth 1 -maxdepth 1 -type d | wc -l)
  say "## (b) No-change sync ($n variants)"
  say
  say "| run | wall | of which the crawl | CPU | load (1 min) at start | others' CPU | notes |"
  say "|---|---|---|---|---|---|---|"
  say "| first sync (empty store; fills what the cache lacks) | $first s | | | $first_load | | builds and publishes all $n |"
  for r in $(seq "$runs"); do
    say "| no-change sync $r | ${walls[r - 1]} s | ${crawls[r - 1]} s | ${cpus[r - 1]} s | ${loads[r - 1]} | ${others_[r - 1]} | built 0, up to date $n; machine-wide rx $(mib "${rx[r - 1]}") |"
  done
  say "| **no-change sync, median** | **$(median "${walls[@]}") s** | $(median "${crawls[@]}") s | | | | |"
  say
  say "Cache before = after every no-change run: $dl0 downloaded packages ($dl1 bytes; same paths, sizes, inodes,"
  say "mtimes), $pk extracted packages, $bu builders; sync.json built=0, failed=0, up_to_date=generated; all $n"
  say "results up_to_date with fetch, extract and build seconds 0."
  say
}

# The sandbox command lines of every variant of a report, in order, with the per-run scratch dir of the
# `--bind DIR /build` pair and the descriptor of `--ro-bind-data FD` (the empty /proc/cmdline) blanked out.
sandbox_lines() {
  local label log
  jq -r '.[] | [.label, .log] | @tsv' "$1" | while IFS=$'\t' read -r label log; do
    grep -F '# kmodfarm sandbox=bubblewrap: ' "$log" |
      sed -E "s|--bind [^ ]+ /build |--bind SCRATCH /build |; s|--ro-bind-data [0-9]+ |--ro-bind-data FD |; s|^|$label: |"
  done
}

# One measured farm run of (c), round $1.
c_farm() {
  local r=$1 rep=$work/c/report-farm-$1
  farm "c/farm-$r" build "${projects[@]}" "${select[@]}" --cache "$warm" --store "$store" \
    --report-dir "$rep" --jobs "$jobs" --rebuild
  expect "$rep/results.json" 'all(.result == "success")' "result"
  if ! diff -u "$work/c/lines-populate.txt" <(sandbox_lines "$rep/results.json") >&2; then
    note "farm run $r ran other command lines than the populate run (diff above)"
    exit 1
  fi
  fw[r]=$wall fb[r]=$(secs "$crawl" "$wall") fo[r]=$others fl[r]=$load fc[r]=$cpu
  favg[r]=$(jq '[.[].durations.total_secs] | add / length' "$rep/results.json")
}

# One bare run of (c), round $1: fresh scratch dirs with a copy of the source, as kmodfarm makes them (not
# timed: the copy is part of kmodfarm's overhead), then every variant's command lines, $jobs at a time.
c_bare() {
  local r=$1 bd=$work/c/bare-$1 list=$work/c/bare-$1.list i=0 log project prefix
  rm -rf "$bd"
  mkdir -p "$bd"
  : >"$list"
  while read -r log project prefix; do
    i=$((i + 1))
    mkdir -p "$bd/$i"
    cp -r "$project" "$bd/$i/src"
    printf '%s\0%s\0' "$log" "$bd/$i" >>"$list"
    echo "$prefix" >"$bd/$i.prefix"
  done < <(built_variants "$work/c/report-populate/results.json")
  timed "c/bare-$r" xargs -0 -n 2 -P "$jobs" bash -c 'set -euo pipefail; bare_timed "$@"' _ <"$list"
  bw[r]=$wall bo[r]=$others bl[r]=$load bc[r]=$cpu
  local v
  for v in $(seq "$i"); do
    check_modules "$bd/$v" "$store" "$(cat "$bd/$v.prefix")"
  done
  bavg[r]=$(cat "$bd"/*.secs | awk '{s += $1} END {printf "%.3f", s / NR}')
}

bench_c() {
  local store=$work/c/store r n fw=() fb=() fo=() fl=() fc=() favg=() bw=() bo=() bl=() bc=() bavg=()
  rm -rf "$work/c"
  mkdir -p "$work/c"
  # Populate the warm cache (downloads, extracted packages, builders) and the store. The bare runs use this
  # run's build logs; every measured farm run is checked to run the very same command lines.
  farm c/populate build "${projects[@]}" "${select[@]}" --cache "$warm" --store "$store" \
    --report-dir "$work/c/report-populate" --jobs "$jobs"
  expect "$work/c/report-populate/results.json" 'all(.result == "success")' "failures while populating"
  n=$(jq length "$work/c/report-populate/results.json")
  sandbox_lines "$work/c/report-populate/results.json" >"$work/c/lines-populate.txt"
  # Alternating order, so that neither side always runs right after the other.
  for r in $(seq "$runs"); do
    if [ $((r % 2)) -eq 1 ]; then
      c_farm "$r"
      c_bare "$r"
    else
      c_bare "$r"
      c_farm "$r"
    fi
  done

  local fm fbm bm fmin fbmin bmin
  fm=$(median "${fw[@]}") fbm=$(median "${fb[@]}") bm=$(median "${bw[@]}")
  fmin=$(printf '%s\n' "${fw[@]}" | sort -g | head -n1)
  fbmin=$(printf '%s\n' "${fb[@]}" | sort -g | head -n1)
  bmin=$(printf '%s\n' "${bw[@]}" | sort -g | head -n1)
  say "## (c) Warm farm vs bare make ($n variants, $jobs at a time)"
  say
  say "Ratio = farm wall without the crawl / bare wall (whole command in parentheses). CPU: the run's own CPU"
  say "seconds (user + system, every process). Others' CPU: cores' worth of CPU time that other processes on the"
  say "machine used during the run (2 = both cores busy with other work)."
  say
  say "| round | farm wall (whole) | farm wall without the crawl | bare make wall | ratio | per variant: farm total_secs / bare | CPU farm; bare | others' CPU farm; bare | load at start farm; bare |"
  say "|---|---|---|---|---|---|---|---|---|"
  for r in $(seq "$runs"); do
    say "| $r ($([ $((r % 2)) -eq 1 ] && echo "farm first" || echo "bare first")) | ${fw[r]} s | ${fb[r]} s | ${bw[r]} s | $(ratio "${fb[r]}" "${bw[r]}") ($(ratio "${fw[r]}" "${bw[r]}")) | $(printf '%.2f' "${favg[r]}") s / $(printf '%.2f' "${bavg[r]}") s | ${fc[r]} s; ${bc[r]} s | ${fo[r]}; ${bo[r]} | ${fl[r]}; ${bl[r]} |"
  done
  say "| **median** | **$fm s** | **$fbm s** | **$bm s** | **$(ratio "$fbm" "$bm") ($(ratio "$fm" "$bm"))** | $(printf '%.2f' "$(median "${favg[@]}")") s / $(printf '%.2f' "$(median "${bavg[@]}")") s | $(median "${fc[@]}") s; $(median "${bc[@]}") s | | |"
  say "| **min** | **$fmin s** | **$fbmin s** | **$bmin s** | **$(ratio "$fbmin" "$bmin") ($(ratio "$fmin" "$bmin"))** | | | | |"
  say
  say "Where the farm's time goes (results.json durations, summed over the $n variants, mean of the $runs runs, seconds):"
  say
  say "| resolve | fetch | extract | toolchain | build (copy, sandboxed make, collect) | publish | total |"
  say "|---|---|---|---|---|---|---|"
  say "$(jq -rs 'map([.[].durations] | [map(.resolve_secs), map(.fetch_secs), map(.extract_secs),
    map(.toolchain_secs), map(.build_secs), map(.publish_secs), map(.total_secs)] | map(add)) | transpose |
    map(add / length * 100 | round / 100 | tostring) | "| " + join(" | ") + " |"' "$work"/c/report-farm-*/results.json)"
  say
}

bench_d() {
  local n i
  if [ ! -d "$warm/builders" ]; then
    note "(d) needs the builders of the warm cache: running (c)'s populate step first"
    farm d-populate build "${projects[@]}" "${select[@]}" --cache "$warm" --store "$work/d-populate-store" \
      --report-dir "$work/d-populate-report" --jobs "$jobs"
  fi
  rm -rf "$work/d"
  mkdir -p "$work/d/cache/builders"
  cp -al "$warm/builders/." "$work/d/cache/builders/"
  local rep=$work/d/report store=$work/d/store rx0
  wait_load
  rx0=$(rx_bytes)
  farm d/farm-cold build "${projects[@]}" "${select[@]}" --cache "$work/d/cache" --store "$store" \
    --report-dir "$rep" --jobs "$jobs"
  local frx=$(($(rx_bytes) - rx0)) fwall=$wall fload=$load fcrawl=$crawl fothers=$others fcpu=$cpu
  expect "$rep/results.json" 'all(.result == "success")' "result"
  n=$(jq length "$rep/results.json")
  local fbytes ffiles
  fbytes=$(find "$work/d/cache/downloads" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
  ffiles=$(find "$work/d/cache/downloads/sha256" -type f | wc -l)

  # The naive flow's inputs: the packages the farm used for each variant (metadata.json), at the pool
  # directory of the matrix entry's URL for the same package (the host's linux-kbuild for cross builds sits
  # beside the target's).
  local nd=$work/d/naive list=$work/d/naive.list
  mkdir -p "$nd"
  : >"$list"
  i=0
  while read -r log project prefix; do
    i=$((i + 1))
    jq -r --slurpfile r "$rep/results.json" --arg p "$prefix" '
      ($r[0][] | select(.store_prefix == $p) | .entry.kernelurls) as $urls
      | .inputs.packages[]
      | (.file_name | split("_")[0]) as $pkg
      | ([$urls[] | select((split("/") | last | split("_")[0]) == $pkg)][0]
         // error("no URL for \($pkg)")) as $u
      | "\($u | sub("[^/]*$"; ""))\(.file_name) \(.sha256) \(.file_name)"' \
      "$store/$prefix/metadata.json" >"$nd/$i.pkgs"
    printf '%s\0%s\0%s\0%s\0' "$nd/$i" "$log" "$project" "$work/d/cache/packages" >>"$list"
    echo "$prefix" >"$nd/$i.prefix"
  done < <(built_variants "$rep/results.json")
  local nseq npar nbytes nload nload2 pbytes nothers nothers2 ncpu ncpu2
  timed d/naive-seq xargs -0 -n 4 -P 1 bash -c 'set -euo pipefail; naive "$@"' _ <"$list"
  nload=$load nothers=$others ncpu=$cpu
  nseq=$(cat "$nd"/*.secs | awk '{s += $1} END {printf "%.1f", s}')
  nbytes=$(cat "$nd"/*.bytes | awk '{s += $1} END {printf "%.0f", s}')
  local v
  for v in $(seq "$i"); do
    check_modules "$nd/$v.work" "$store" "$(cat "$nd/$v.prefix")"
  done
  rm -rf "$nd"/*.work
  # The same, $jobs at a time (the farm's parallelism); wall of the whole batch.
  rm -f "$nd"/*.secs "$nd"/*.bytes
  timed d/naive-par xargs -0 -n 4 -P "$jobs" bash -c 'set -euo pipefail; naive "$@"' _ <"$list"
  npar=$wall nload2=$load nothers2=$others ncpu2=$cpu
  pbytes=$(cat "$nd"/*.bytes | awk '{s += $1} END {printf "%.0f", s}')
  rm -rf "$nd"/*.work

  local fbuild
  fbuild=$(secs "$fcrawl" "$fwall")
  say "## (d) Cold farm vs naive per-variant flow ($n variants)"
  say
  say "Ratios are naive / farm: wall against the farm without its crawl (the naive flow gets its URLs from the"
  say "matrix; against the whole command in parentheses), and bytes downloaded."
  say
  say "| run | wall (whole) | wall without the crawl | bytes downloaded | ratio wall; bytes | CPU | others' CPU | load at start | notes |"
  say "|---|---|---|---|---|---|---|---|---|"
  say "| farm, cold cache (builders hard-linked from the warm cache), --jobs $jobs | $fwall s | $fbuild s | $fbytes ($(mib "$fbytes")) | | $fcpu s | $fothers | $fload | $ffiles packages; machine-wide rx $(mib "$frx") |"
  say "| naive, one variant after another | | $nseq s | $nbytes ($(mib "$nbytes")) | $(ratio "$nseq" "$fbuild") ($(ratio "$nseq" "$fwall")); $(ratio "$nbytes" "$fbytes") | $ncpu s | $nothers | $nload | sum of the per-variant walls |"
  say "| naive, $jobs at a time | | $npar s | $pbytes ($(mib "$pbytes")) | $(ratio "$npar" "$fbuild") ($(ratio "$npar" "$fwall")); $(ratio "$pbytes" "$fbytes") | $ncpu2 s | $nothers2 | $nload2 | wall of the batch |"
  if [ "$full_cold" = 1 ]; then
    rm -rf "$work/d/cache-full"
    wait_load
    rx0=$(rx_bytes)
    farm d/farm-full-cold build "${projects[@]}" "${select[@]}" --cache "$work/d/cache-full" \
      --store "$work/d/store-full" --report-dir "$work/d/report-full" --jobs "$jobs"
    frx=$(($(rx_bytes) - rx0))
    expect "$work/d/report-full/results.json" 'all(.result == "success")' "result"
    local b nb
    b=$(find "$work/d/cache-full/downloads" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
    nb=$(find "$work/d/cache-full/builders" -mindepth 1 -maxdepth 1 -type d | wc -l)
    say "| farm, fully cold (empty cache: $nb builders created with mmdebstrap), --jobs $jobs | $wall s | $(secs "$crawl" "$wall") s | $b ($(mib "$b")) | | $cpu s | $others | $load | header packages only (the builders' own downloads not counted); machine-wide rx $(mib "$frx") |"
    rm -rf "$work/d/cache-full"
  fi
  say
}

for bench in "${benches[@]}"; do
  "bench_$bench"
done
note "tables also in $out"
