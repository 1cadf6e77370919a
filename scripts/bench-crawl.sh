#!/usr/bin/env bash
# Benchmark (e): the yum/dnf crawler on a repository the size of Fedora's Everything (70,000 packages, 100
# of them kernel-devel), primary metadata compressed with zstd as Fedora publishes it, served over loopback.
# Cold crawl (download, verify, stream-parse) and warm crawl (repomd.xml only: the primary comes from the
# index cache by digest). Release build; wall time and peak RSS from GNU time. Prints a Markdown table
# (docs/benchmarks.md, section (e)).
#
# Usage: scripts/bench-crawl.sh [--quick]
#   --quick   7,000 packages, one run each (for CI). Default: 70,000 packages, 3 runs (median wall, max RSS).
# Needs: python3, zstd, GNU time (Debian packages python3, zstd, time).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=70000
runs=3
case "${1:-}" in
  "") ;;
  --quick)
    packages=7000
    runs=1
    ;;
  -h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--quick]" >&2
    exit 2
    ;;
esac
for tool in /usr/bin/time python3 zstd; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench-crawl: $tool is missing" >&2
    exit 2
  }
done

cargo build --release --quiet
bin=$PWD/target/release/kmodfarm
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A primary.xml shaped like createrepo_c's: every package with its <format> block (provides, requires,
# files), which is what makes the real file large.
python3 - "$work/repo/x86_64" "$packages" <<'PY'
import hashlib, os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(root, "repodata"), exist_ok=True)
with open(os.path.join(root, "primary.xml"), "w") as f:
    f.write('<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
            f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{n}">\n')
    for i in range(n):
        kernel = i % (n // 100) == 0
        name = "kernel-devel" if kernel else f"package-{i}"
        ver, rel = (f"6.1.{i}", "200.fc41") if kernel else (f"{i % 50}.{i % 7}", "1.fc41")
        sha = hashlib.sha256(f"{name}-{ver}-{rel}".encode()).hexdigest()
        f.write(f'<package type="rpm">\n  <name>{name}</name>\n  <arch>x86_64</arch>\n'
                f'  <version epoch="0" ver="{ver}" rel="{rel}"/>\n'
                f'  <checksum type="sha256" pkgid="YES">{sha}</checksum>\n'
                f'  <summary>Summary of {name}</summary>\n  <description>A package of the benchmark repository, '
                f'number {i}, with a description about as long as a real one.</description>\n'
                f'  <packager>Fedora Project</packager>\n  <url>https://example.invalid/{name}</url>\n'
                f'  <time file="1700000000" build="1700000000"/>\n'
                f'  <size package="{100000 + i}" installed="{300000 + i}" archive="{310000 + i}"/>\n'
                f'  <location href="Packages/{name[0]}/{name}-{ver}-{rel}.x86_64.rpm"/>\n  <format>\n'
                f'    <rpm:license>MIT</rpm:license>\n    <rpm:vendor>Fedora Project</rpm:vendor>\n'
                f'    <rpm:group>Unspecified</rpm:group>\n    <rpm:buildhost>buildvm-x86-{i % 40}</rpm:buildhost>\n'
                f'    <rpm:sourcerpm>{name}-{ver}-{rel}.src.rpm</rpm:sourcerpm>\n'
                f'    <rpm:header-range start="4504" end="{20000 + i}"/>\n    <rpm:provides>\n'
                f'      <rpm:entry name="{name}" flags="EQ" epoch="0" ver="{ver}" rel="{rel}"/>\n'
                f'      <rpm:entry name="{name}(x86-64)" flags="EQ" epoch="0" ver="{ver}" rel="{rel}"/>\n'
                f'    </rpm:provides>\n    <rpm:requires>\n      <rpm:entry name="libc.so.6()(64bit)"/>\n'
                f'      <rpm:entry name="rtld(GNU_HASH)"/>\n    </rpm:requires>\n'
                f'    <file>/usr/bin/{name}</file>\n  </format>\n</package>\n')
    f.write("</metadata>\n")
PY
zstd -q -10 --rm "$work/repo/x86_64/primary.xml" -o "$work/repo/x86_64/primary.xml.zst"
sha=$(sha256sum "$work/repo/x86_64/primary.xml.zst" | cut -d' ' -f1)
size=$(stat -c %s "$work/repo/x86_64/primary.xml.zst")
mv "$work/repo/x86_64/primary.xml.zst" "$work/repo/x86_64/repodata/$sha-primary.xml.zst"
cat >"$work/repo/x86_64/repodata/repomd.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1700000000</revision>
<data type="primary"><checksum type="sha256">$sha</checksum><location href="repodata/$sha-primary.xml.zst"/><size>$size</size></data>
</repomd>
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/repo" "$port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/x86_64/repodata/repomd.xml')" 2>/dev/null && break
  sleep 0.1
done

crawl() {
  KMODFARM_CACHE="$work/cache" /usr/bin/time -v -o "$work/time" "$bin" kernels crawl --distro fedora \
    --arch x86_64 --repo "http://127.0.0.1:$port/\$basearch/" --out "$work/out.json" 2>"$work/stderr" || {
    cat "$work/stderr" >&2
    exit 1
  }
}
row() {
  local label=$1
  shift
  local walls=() rss=0 start end kb
  for _ in $(seq "$runs"); do
    [ "$label" = cold ] && rm -rf "$work/cache"
    start=$(date +%s%N)
    crawl
    end=$(date +%s%N)
    walls+=($(((end - start) / 1000000)))
    kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time")
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  local median
  median=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(((${#walls[@]} + 1) / 2))p")
  local kernels
  kernels=$(python3 -c "import json; print(len(json.load(open('$work/out.json'))['Fedora']))")
  printf '| %s | %s | %s MiB | %s ms | %s MiB | %s |\n' "$label" "$packages" \
    "$(python3 -c "print(round($size/1048576, 1))")" "$median" "$((rss / 1024))" "$kernels"
}
uncompressed=$(zstd -dc "$work/repo/x86_64/repodata/$sha-primary.xml.zst" | wc -c)
echo "primary.xml: $((uncompressed / 1048576)) MiB uncompressed"
echo
echo "| crawl | packages | primary.xml.zst | wall (median of $runs) | peak RSS | kernels listed |"
echo "|---|---|---|---|---|---|"
row cold
row warm
