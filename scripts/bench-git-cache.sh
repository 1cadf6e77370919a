#!/usr/bin/env bash
# Git cache benchmark (docs/benchmarks.md, section (i)), against S3 on loopback (s3s-fs) and `git daemon`:
#
#   1. a generated repository of --size MiB (default 600) with a long history (--commits, default 3000): each
#      commit adds or rewrites files of random, incompressible content, so that packs are as large as the
#      history; `git-cache update` puts it into the cache; then one commit more upstream, and side by side:
#      a fresh `git clone --mirror` from the daemon against `git-cache restore` (tarball from the store,
#      unpacked, then the new commit fetched);
#   2. a no-op `git-cache update` over 20 small repositories (all unchanged) against 20 bare `git ls-remote`
#      calls, one after the other;
#   3. the peak RSS (GNU time's maximum resident set of the command or its largest child) of `restore` and of
#      an `update` that restores, fetches and uploads the large repository again.
#
# Usage: scripts/bench-git-cache.sh [--quick] [--size MIB] [--commits N] [--runs N] [--work DIR] [--no-build]
#   --quick   a 60 MiB repository with 300 commits, one run: a smoke run
# Needs git (with git-daemon), python3, GNU time (/usr/bin/time) and s3s-fs (scripts/setup.sh --tests).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

size=600
commits=3000
runs=3
work=$root/target/bench-git-cache
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick)
      size=60
      commits=300
      runs=1
      ;;
    --size)
      size=${2:?}
      shift
      ;;
    --commits)
      commits=${2:?}
      shift
      ;;
    --runs)
      runs=${2:?}
      shift
      ;;
    --work)
      work=${2:?}
      shift
      ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--quick] [--size MIB] [--commits N] [--runs N] [--work DIR] [--no-build]" >&2
      exit 2
      ;;
  esac
  shift
done

s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
for tool in git python3 /usr/bin/time "$s3s"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench-git-cache: $tool is missing (scripts/setup.sh --tests; Debian package time)" >&2
    exit 2
  }
done
[ "$build" = 1 ] && cargo build --release --quiet
mkdir -p "$work"
work=$(cd "$work" && pwd)
bin=$work/kmodfarm
cp "$root/target/release/kmodfarm" "$bin"
out=$work/results.md
: >"$out"
say() { printf '%s\n' "$*" | tee -a "$out"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
export GIT_CONFIG_NOSYSTEM=1 HOME=$work/home
mkdir -p "$HOME"
git config --global user.name bench
git config --global user.email bench@localhost
git config --global init.defaultBranch main

# The store and the daemon.
rm -rf "$work/s3" "$work/cache"
mkdir -p "$work/s3/bench" "$work/srv"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
export AWS_ACCESS_KEY_ID=kmodfarm-bench AWS_SECRET_ACCESS_KEY=kmodfarm-bench-secret
"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3s.log" 2>&1 &
pids=($!)
git_port=$(free_port)
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --base-path="$work/srv" --listen=127.0.0.1 \
  --port="$git_port" "$work/srv" >"$work/daemon.log" 2>&1 &
pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
sleep 1
farm="s3://bench/farm?endpoint=http://127.0.0.1:$s3_port&region=us-east-1&path_style=true"
export KMODFARM_CACHE=$work/cache

# 1. The large repository, generated through fast-import.
big=$work/srv/big.git
if [ ! -f "$work/big-$size-$commits.done" ] || [ ! -d "$big" ]; then
  rm -rf "$big"
  git init -q --bare "$big"
  python3 - "$size" "$commits" <<'EOF' | git -C "$big" fast-import --quiet
import os, sys
size_mib, commits = int(sys.argv[1]), int(sys.argv[2])
per_commit = size_mib * 1024 * 1024 // commits
out = sys.stdout.buffer
for n in range(commits):
    data = os.urandom(per_commit)
    msg = f"commit {n}\n".encode()
    out.write(b"commit refs/heads/main\n")
    out.write(f"committer bench <bench@localhost> {1700000000 + n} +0000\n".encode())
    out.write(b"data %d\n%s" % (len(msg), msg))
    # A quarter of the commits rewrite an existing file, the rest add one.
    path = f"data/{(n // 4) if n % 4 == 0 else n}.bin"
    out.write(f"M 100644 inline {path}\n".encode())
    out.write(b"data %d\n" % len(data))
    out.write(data)
    out.write(b"\n")
EOF
  touch "$work/big-$size-$commits.done"
fi
big_url=git://127.0.0.1:$git_port/big.git
repo_mib=$(du -sm "$big" | cut -f1)
say "## bench-git-cache: $repo_mib MiB repository, $commits commits; $(date -u +%Y-%m-%d); kmodfarm $(git -C "$root" rev-parse --short HEAD)"
say ""
"$bin" -q git-cache update "$big_url" --store "$farm" --json >/dev/null
tar_mib=$(du -sm "$work/s3/bench/farm/git-cache/"*-big.git.tar | cut -f1)

# One commit more upstream.
work_clone=$work/work-clone
rm -rf "$work_clone"
git clone -q "$big" "$work_clone"
date +%s.%N >"$work_clone/NEW"
git -C "$work_clone" add NEW
git -C "$work_clone" commit -qm "one more"
git -C "$work_clone" push -q origin main

clone_times=()
restore_times=()
for r in $(seq "$runs"); do
  rm -rf "$work/clone.git" "$work/restored.git"
  t0=$(now)
  git clone -q --mirror "$big_url" "$work/clone.git"
  t1=$(now)
  "$bin" -q git-cache restore "$big_url" "$work/restored.git" --store "$farm" 2>/dev/null
  t2=$(now)
  [ "$(git -C "$work/restored.git" rev-parse main)" = "$(git -C "$big" rev-parse main)" ] || {
    echo "bench-git-cache: the restored mirror lacks the new commit" >&2
    exit 1
  }
  clone_times+=("$(secs "$t0" "$t1")")
  restore_times+=("$(secs "$t1" "$t2")")
done
clone=$(median "${clone_times[@]}")
restore=$(median "${restore_times[@]}")
say "| $repo_mib MiB repository (tarball $tar_mib MiB), $runs run(s) | median | runs |"
say "|---|---|---|"
say "| \`git clone --mirror\` from git daemon | $clone s | ${clone_times[*]} |"
say "| \`git-cache restore\` (tarball from S3, unpack, fetch the new commit) | $restore s | ${restore_times[*]} |"
say "| ratio clone / restore | $(awk -v a="$clone" -v b="$restore" 'BEGIN {printf "%.1f", a / b}')× | |"
say ""

# 3. Peak memory.
rm -rf "$work/restored.git"
/usr/bin/time -f "%M" -o "$work/restore.rss" "$bin" -q git-cache restore "$big_url" "$work/restored.git" \
  --store "$farm" 2>/dev/null
/usr/bin/time -f "%M %e" -o "$work/update.rss" "$bin" -q git-cache update "$big_url" --store "$farm" --json \
  >"$work/update.json"
grep -q '"updated"' "$work/update.json" || { echo "bench-git-cache: the update did not update" >&2; exit 1; }
say "| peak RSS | KiB |"
say "|---|---|"
say "| \`git-cache restore\` of the $repo_mib MiB repository | $(cat "$work/restore.rss") |"
say "| \`git-cache update\` (restore, fetch one commit, tar and upload $tar_mib MiB) | $(cut -d' ' -f1 "$work/update.rss") ($(cut -d' ' -f2 "$work/update.rss") s) |"
say ""

# 2. No-op update over 20 repositories against 20 ls-remote calls.
urls=()
for i in $(seq -w 1 20); do
  r=$work/srv/small-$i.git
  if [ ! -d "$r" ]; then
    git init -q --bare "$r"
    s=$work/small-src-$i
    rm -rf "$s"
    git init -q "$s"
    echo "$i" >"$s/f"
    git -C "$s" add f
    git -C "$s" commit -qm "$i"
    git -C "$s" push -q "$r" main
  fi
  urls+=("git://127.0.0.1:$git_port/small-$i.git")
done
"$bin" -q git-cache update "${urls[@]}" --store "$farm" >/dev/null 2>&1
noop_times=()
lsr_times=()
for r in $(seq $((runs * 2))); do
  t0=$(now)
  for u in "${urls[@]}"; do git ls-remote "$u" >/dev/null; done
  t1=$(now)
  "$bin" -q git-cache update "${urls[@]}" --store "$farm" --json >"$work/noop.json"
  t2=$(now)
  [ "$(grep -c '"unchanged"' "$work/noop.json")" = 20 ] || { echo "bench-git-cache: a no-op update changed something" >&2; exit 1; }
  lsr_times+=("$(secs "$t0" "$t1")")
  noop_times+=("$(secs "$t1" "$t2")")
done
lsr=$(median "${lsr_times[@]}")
noop=$(median "${noop_times[@]}")
say "| 20 unchanged repositories, $((runs * 2)) run(s) | median | runs |"
say "|---|---|---|"
say "| 20 × \`git ls-remote\` | $lsr s | ${lsr_times[*]} |"
say "| \`git-cache update\` of the 20 (lock, ls-remote and MD5 read per repository, unlock) | $noop s | ${noop_times[*]} |"
say "| ratio | $(awk -v a="$noop" -v b="$lsr" 'BEGIN {printf "%.2f", a / b}') | |"
