//! Other distributions, end to end from fixtures made by their real tools: Debian's real kernel trees
//! (bookworm's 6.1, built with GCC 12, and bullseye's 5.10, built with GCC 10, each with its
//! `linux-kbuild`, so the host tools are real programs) repackaged as kernel-devel RPMs laid out as
//! `/usr/src/kernels/<release>` (rpmbuild; gzip, xz and zstd payloads) and as an Ubuntu header pair
//! (dpkg-deb; `linux-headers-<abi>` plus `linux-headers-<abi>-generic` linking into it). The packages
//! sit in repositories made by the distributions' own tools (createrepo_c for yum/dnf, with Amazon Linux
//! 2's blobstore layout and mirror list; apt-ftparchive for Ubuntu) on a loopback HTTP server.
//! `kmodfarm kernels crawl` reads them, `matrix generate` turns the crawl into the seed's matrix, and
//! `examples/hello` must build from it for each family through its own package format and layout.
//!
//! Everything is signed as the distributions sign it, by keys made here with gpg: the RPMs by `rpmsign`
//! (checked against `--rpm-keyring DISTRO=FILE` before they are unpacked), the Ubuntu suites' `InRelease`
//! by `gpg --clearsign` (checked against `--keyring`). Unsigned, foreign-signed and changed RPMs are
//! refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        if in_ci() {
            panic!("{tool} is needed under CI=true");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

fn bash(script: &str, env: &[(&str, &Path)]) {
    let mut c = Command::new("bash");
    c.arg("-euo").arg("pipefail").arg("-c").arg(script);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    // Short, and the error first: a long message is cut in its middle by CI logs.
    let tail = |b: &[u8], n: usize| -> String {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    assert!(
        out.status.success(),
        "fixture script failed ({}):\nstderr: {}\nstdout: {}\nscript starts: {}",
        out.status,
        tail(&out.stderr, 30),
        tail(&out.stdout, 10),
        script.trim_start().lines().next().unwrap_or("")
    );
}

/// gpg with a home of its own (a temporary GNUPGHOME) holding the test's signing keys; its agent is
/// stopped when the test ends.
struct TestGpg {
    home: tempfile::TempDir,
}

impl TestGpg {
    fn new() -> TestGpg {
        let home = tempfile::Builder::new()
            .prefix("kmf-gpg")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        TestGpg { home }
    }

    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet", "--yes", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new signing key (`algo`: rsa2048, ed25519) for `uid`; returns its fingerprint.
    fn key(&self, uid: &str, algo: &str) -> String {
        self.gpg(&["--quick-gen-key", uid, algo, "sign", "never"]);
        let listing = String::from_utf8(self.gpg(&["--with-colons", "--list-keys", uid])).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }

    /// `uid`'s public key, binary or armored (`RPM-GPG-KEY-*` files are armored).
    fn export(&self, uid: &str, armor: bool, to: &Path) -> PathBuf {
        let mut args = vec!["--export"];
        if armor {
            args.insert(0, "--armor");
        }
        args.push(uid);
        std::fs::write(to, self.gpg(&args)).unwrap();
        to.to_path_buf()
    }

    /// Signs `rpm` in place with `rpmsign --addsign`, by `uid`'s key.
    fn rpmsign(&self, uid: &str, rpm: &Path) {
        let out = Command::new("rpmsign")
            .env("GNUPGHOME", self.home.path())
            .arg("--addsign")
            .args(["--define", &format!("_gpg_name {uid}")])
            .args(["--define", "__gpg /usr/bin/gpg"])
            .arg(rpm)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rpmsign {}: {}",
            rpm.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestGpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// Serves the files of `dir` over HTTP on a loopback port.
fn serve(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || answer(s, &dir));
        }
    });
    port
}

fn answer(mut s: TcpStream, dir: &Path) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let req = String::from_utf8_lossy(&req);
    let mut words = req.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let name = path.trim_start_matches('/');
    let body = (!name.contains("..")).then(|| std::fs::read(dir.join(name)).ok());
    match body.flatten() {
        Some(body) => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if method != "HEAD" {
                let _ = s.write_all(&body);
            }
        }
        None => {
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The extracted trees of one Debian kernel (the newest amd64 one matching `release_re`): (flavour dir,
/// common dir, kbuild dir, release), found through a real build of `examples/hello` (which also creates
/// the builder its compiler needs).
fn debian_trees(
    crawl: &Path,
    work: &Path,
    release_re: &str,
    tag: &str,
) -> (PathBuf, PathBuf, PathBuf, String) {
    let store = work.join(format!("debian-store-{tag}"));
    let out = run(kmodfarm()
        .arg("build")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(crawl)
        .args(["--distro", "debian", "--arch", "x86_64", "--latest", "1"])
        .args(["--kernel-release", release_re])
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(work.join(format!("debian-report-{tag}")))
        .arg("--cache")
        .arg(cache_dir()));
    assert_eq!(out.status.code(), Some(0));
    let meta = files(&store)
        .into_iter()
        .find(|f| f.ends_with("metadata.json"))
        .unwrap();
    let m = read_json(&store.join(meta));
    let release = m["kernel_release"].as_str().unwrap().to_string();
    let abi = release.trim_end_matches("-amd64").to_string();
    let (mut flavour, mut common, mut kbuild) = (None, None, None);
    for p in m["inputs"]["packages"].as_array().unwrap() {
        let root = cache_dir()
            .join("packages")
            .join(p["sha256"].as_str().unwrap());
        let name = p["file_name"].as_str().unwrap();
        if name.starts_with(&format!("linux-headers-{release}_")) {
            flavour = Some(root.join(format!("usr/src/linux-headers-{release}")));
        } else if name.starts_with(&format!("linux-headers-{abi}-common_")) {
            common = Some(root.join(format!("usr/src/linux-headers-{abi}-common")));
        } else if name.starts_with("linux-kbuild-") {
            kbuild = Some(kbuild_dir(&root));
        }
    }
    (flavour.unwrap(), common.unwrap(), kbuild.unwrap(), release)
}

fn kbuild_dir(root: &Path) -> PathBuf {
    std::fs::read_dir(root.join("usr/lib"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("linux-kbuild-"))
        .unwrap()
        .path()
}

/// One self-contained kernel build tree at `$T`, as RPM distributions ship it: the common part, the
/// flavour's config and generated files, kbuild's scripts and tools (real host programs of the
/// package's architecture), the release renamed and the compiler text set as the distribution's
/// compiler prints it.
const MERGE: &str = r#"
mkdir -p "$T"
cp -a "$COMMON/." "$T/"
rm -f "$T/scripts" "$T/tools"
for d in scripts tools certs; do
  if [ -d "$KBUILD/$d" ]; then cp -a "$KBUILD/$d" "$T/"; fi
done
cp -a "$FLAVOUR/.config" "$FLAVOUR/Module.symvers" "$T/"
cp -a "$FLAVOUR/arch/." "$T/arch/"
cp -a "$FLAVOUR/include/." "$T/include/"
cd "$T"
edit() { cp -a "$1" "$1.orig"; sed -i "$2" "$1"; touch -r "$1.orig" "$1"; rm "$1.orig"; }
for f in include/generated/utsrelease.h include/config/kernel.release; do
  if [ -f "$f" ]; then edit "$f" "s/$OLD_RELEASE/$NEW_RELEASE/"; fi
done
# auto.conf quotes strings before Linux 5.17 and not after: keep whichever this tree does.
for f in .config include/config/auto.conf; do
  edit "$f" "s|^CONFIG_CC_VERSION_TEXT=\(\"\?\).*|CONFIG_CC_VERSION_TEXT=\1$CC_TEXT\1|"
done
edit include/generated/autoconf.h "s|^#define CONFIG_CC_VERSION_TEXT .*|#define CONFIG_CC_VERSION_TEXT \"$CC_TEXT\"|"
grep -q "\"$NEW_RELEASE\"" include/generated/utsrelease.h
"#;

type DebianTree = (PathBuf, PathBuf, PathBuf, String);

fn merged_tree(debian: &DebianTree, dest: &Path, new_release: &str, cc_text: &str) {
    let (flavour, common, kbuild, release) = debian;
    bash(
        MERGE,
        &[
            ("T", dest),
            ("COMMON", common),
            ("FLAVOUR", flavour),
            ("KBUILD", kbuild),
            ("OLD_RELEASE", Path::new(release)),
            ("NEW_RELEASE", Path::new(new_release)),
            ("CC_TEXT", Path::new(cc_text)),
        ],
    );
}

/// A kernel-devel RPM of the tree staged under `stage` (`usr/src/kernels/<release>`), with `payload`
/// (rpm's `_binary_payload`). Returns the .rpm, named as the distribution names it.
fn kernel_devel_rpm(stage: &Path, top: &Path, release: &str, arch: &str, payload: &str) -> PathBuf {
    // 6.1.0-56.fc38.x86_64 → version 6.1.0, release 56.fc38.
    let base = release.trim_end_matches(&format!(".{arch}"));
    let (version, rel) = base.split_once('-').unwrap();
    std::fs::create_dir_all(top).unwrap();
    let spec = top.join("kernel-devel.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: kernel-devel\nVersion: {version}\nRelease: {rel}\nSummary: Development package for \
             building kernel modules to match the kernel\nLicense: GPLv2\n\
             AutoReqProv: no\n%description\nkernel headers and makefiles\n\
             %install\ncp -a {stage}/. %{{buildroot}}/\n\
             %files\n/usr/src/kernels/{release}\n",
            stage = stage.display()
        ),
    )
    .unwrap();
    // `--target` rather than BuildArch: rpmbuild refuses a BuildArch the build host cannot run.
    let out = Command::new("rpmbuild")
        .arg("-bb")
        .args(["--target", arch])
        .args(["--define", &format!("_topdir {}", top.display())])
        .args(["--define", &format!("_binary_payload {payload}")])
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "__spec_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .args(["--define", "_binaries_in_noarch_packages_terminate_build 0"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpmbuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpm = top.join(format!(
        "RPMS/{arch}/kernel-devel-{version}-{rel}.{arch}.rpm"
    ));
    assert!(rpm.is_file(), "{} missing", rpm.display());
    rpm
}

/// A yum/dnf repository at `repo` holding `rpm`, its metadata written by createrepo_c with `compress`
/// (primary.xml.gz/.xz/.zst, plus the sqlite databases) and, with `blobstore`, laid out as Amazon Linux
/// 2 serves it: metadata under `<root>/2/core/2.0/<arch>/<guid>/`, the package under
/// `<root>/blobstore/<sha256>/`, the metadata naming it through `../../../../../blobstore/...`.
fn yum_repo(repo: &Path, rpm: &Path, compress: &str, blobstore: Option<&Path>) {
    let name = rpm.file_name().unwrap().to_str().unwrap().to_string();
    // Debian's createrepo_c is built without zstd: Fedora's zstd primaries are made by recompressing.
    let zstd = compress == "zstd";
    let mut c = Command::new("createrepo_c");
    c.args(["--quiet", "--database", "--general-compress-type"]);
    c.arg(if zstd { "gz" } else { compress });
    match blobstore {
        Some(root) => {
            std::fs::create_dir_all(repo).unwrap();
            std::fs::copy(rpm, repo.join(&name)).unwrap();
            let sha = sha256(rpm);
            let up = "../".repeat(repo.strip_prefix(root).unwrap().components().count());
            c.arg(format!("--location-prefix={up}blobstore/{sha}"));
            let dest = root.join("blobstore").join(&sha);
            std::fs::create_dir_all(&dest).unwrap();
            std::fs::copy(rpm, dest.join(&name)).unwrap();
        }
        None => {
            std::fs::create_dir_all(repo.join("Packages/k")).unwrap();
            std::fs::copy(rpm, repo.join("Packages/k").join(&name)).unwrap();
        }
    }
    let out = c.arg(repo).output().unwrap();
    assert!(
        out.status.success(),
        "createrepo_c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if blobstore.is_some() {
        std::fs::remove_file(repo.join(&name)).unwrap();
    }
    if zstd {
        bash(ZSTD_PRIMARY, &[("REPODATA", &repo.join("repodata"))]);
    }
}

/// Replaces primary.xml.gz by primary.xml.zst and updates repomd.xml (digest, size, location), as a
/// repository published with zstd metadata has it.
const ZSTD_PRIMARY: &str = r#"
cd "$REPODATA"
old=$(ls ./*-primary.xml.gz); old=${old#./}
gunzip -c "$old" | zstd -q -19 -o primary.xml.zst
sha=$(sha256sum primary.xml.zst | cut -d' ' -f1); size=$(stat -c %s primary.xml.zst)
oldsha=$(sha256sum "$old" | cut -d' ' -f1); oldsize=$(stat -c %s "$old")
mv primary.xml.zst "$sha-primary.xml.zst"; rm "$old"
sed -i "s|$old|$sha-primary.xml.zst|; s|>$oldsha<|>$sha<|; s|<size>$oldsize</size>|<size>$size</size>|" repomd.xml
grep -q "$sha-primary.xml.zst" repomd.xml && grep -q ">$sha<" repomd.xml && grep -q "<size>$size</size>" repomd.xml
"#;

/// Ubuntu's header pair: `linux-headers-<abi>` (Architecture: all) holds the tree without the flavour's
/// files; `linux-headers-<abi>-generic` holds `.config`, `Module.symvers`, the generated headers and the
/// host tools, and links everything else into the shared package, as Ubuntu's packaging does. Both go
/// into `$POOL`.
const UBUNTU: &str = r#"
S="$OUT/shared/usr/src/linux-headers-$ABI"
F="$OUT/flavour/usr/src/linux-headers-$ABI-generic"
mkdir -p "$(dirname "$S")" "$F/include" "$F/arch/x86/include" "$OUT/flavour/lib/modules/$ABI-generic" "$POOL"
cp -a "$T" "$S"
mv "$S/.config" "$S/Module.symvers" "$F/"
mv "$S/include/generated" "$S/include/config" "$F/include/"
mv "$S/arch/x86/include/generated" "$F/arch/x86/include/"
cp -a "$S/scripts" "$S/tools" "$F/"
link_missing() {
  local flav="$1" shared="$2" prefix="$3" e n
  for e in "$shared"/* "$shared"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n="$(basename "$e")"
    if [ -e "$flav/$n" ] || [ -L "$flav/$n" ]; then
      if [ -d "$flav/$n" ] && [ ! -L "$flav/$n" ] && [ -d "$e" ] && [ ! -L "$e" ]; then
        link_missing "$flav/$n" "$e" "../$prefix/$n"
      fi
    else
      ln -s "$prefix/$n" "$flav/$n"
    fi
  done
}
link_missing "$F" "$S" "../linux-headers-$ABI"
test -L "$F/Makefile"
ln -s "/usr/src/linux-headers-$ABI-generic" "$OUT/flavour/lib/modules/$ABI-generic/build"
mkdir -p "$OUT/shared/DEBIAN" "$OUT/flavour/DEBIAN"
printf '%s\n' "Package: linux-headers-$ABI" "Source: linux" "Version: $ABI.60" "Architecture: all" \
  "Maintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>" "Depends: coreutils" \
  "Description: Header files related to Linux kernel version $ABI" > "$OUT/shared/DEBIAN/control"
printf '%s\n' "Package: linux-headers-$ABI-generic" "Source: linux" "Version: $ABI.60" "Architecture: amd64" \
  "Maintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>" \
  "Depends: linux-headers-$ABI, libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0~~alpha1), zlib1g (>= 1:1.2.3.3)" \
  "Description: Linux kernel headers for version $ABI" > "$OUT/flavour/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -z1 --build "$OUT/shared" "$POOL/linux-headers-${ABI}_$ABI.60_all.deb" >/dev/null
dpkg-deb --root-owner-group -Zxz -z1 --build "$OUT/flavour" "$POOL/linux-headers-$ABI-generic_$ABI.60_amd64.deb" >/dev/null
"#;

/// One suite of an apt repository at `$ROOT`, over the packages in `$POOL` (below `$ROOT`), as
/// apt-ftparchive writes it, its `InRelease` clearsigned by `$SIGNER` (in `$GNUPGHOME`).
const APT_REPO: &str = r#"
cd "$ROOT"
D="dists/$SUITE/main/binary-amd64"
mkdir -p "$D"
apt-ftparchive packages "$POOL" > "$D/Packages"
xz -k -1 "$D/Packages"
gzip -k -1 "$D/Packages"
cd "dists/$SUITE"
apt-ftparchive -o APT::FTPArchive::Release::Codename="$SUITE" release . > ../Release.tmp
mv ../Release.tmp Release
grep -q "main/binary-amd64/Packages.xz" Release
gpg --batch --quiet --yes --pinentry-mode loopback --passphrase "" --local-user "$SIGNER" \
  --clearsign --output InRelease Release
"#;

/// Builds `examples/hello` from `matrix` (`extra`: more flags, such as `--rpm-keyring`); returns (exit
/// code, results.json).
fn build_matrix(
    matrix: &Path,
    store: &Path,
    report: &Path,
    extra: &[String],
) -> (Option<i32>, serde_json::Value) {
    let out = run(kmodfarm()
        .arg("build")
        .arg(workspace().join("examples/hello"))
        .arg("--matrix")
        .arg(matrix)
        .args(extra)
        .arg("--store")
        .arg(store)
        .arg("--report-dir")
        .arg(report)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--json"));
    let results = read_json(&report.join("results.json"));
    if out.status.code() != Some(0) {
        for r in results.as_array().unwrap() {
            if let Some(log) = r["log"].as_str() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!(
                    "== {}\n{}",
                    r["label"],
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    (out.status.code(), results)
}

fn generate(crawl: &Path, arch: &str, out: &Path) -> serde_json::Value {
    let o = run(kmodfarm()
        .args(["matrix", "generate", "--kernels"])
        .arg(crawl)
        .args(["--arch", arch, "--driver-version", "0.1.0", "--out"])
        .arg(out));
    assert_eq!(o.status.code(), Some(0));
    read_json(out)
}

/// Downloads the header packages of a crawled Debian entry (verified) and extracts them under `root`.
fn fetch_debian_entry(entry: &serde_json::Value, work: &Path, root: &Path) {
    for p in entry["headerpackages"].as_array().unwrap() {
        let url = p["url"].as_str().unwrap();
        let dest = work.join(url.rsplit('/').next().unwrap());
        let o = Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&dest)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(sha256(&dest), p["sha256"].as_str().unwrap());
        let o = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&dest)
            .arg(root)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
}

#[test]
fn crawls_and_builds_hello_for_every_family_through_its_own_repository() {
    let Some(crawl) = debian_crawl() else { return };
    for tool in [
        "rpmbuild",
        "rpmsign",
        "gpg",
        "dpkg-deb",
        "createrepo_c",
        "apt-ftparchive",
        "curl",
    ] {
        if !have(tool) {
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The RPM vendor's key (RSA, as the distributions' RPM-GPG-KEY-* are) and the Ubuntu archive's.
    let gpg = TestGpg::new();
    let (rpm_uid, archive_uid) = (
        "kmodfarm test RPM signing <rpm@kmodfarm.invalid>",
        "kmodfarm test archive <archive@kmodfarm.invalid>",
    );
    let rpm_fpr = gpg.key(rpm_uid, "rsa2048");
    let archive_fpr = gpg.key(archive_uid, "ed25519");
    let rpm_key = gpg.export(rpm_uid, true, &w.join("RPM-GPG-KEY-kmodfarm-test"));
    let archive_keyring = gpg.export(archive_uid, false, &w.join("ubuntu-archive-test.gpg"));
    let rpm_keyrings: Vec<String> = ["fedora", "almalinux", "amazonlinux2023", "amazonlinux2"]
        .iter()
        .flat_map(|d| {
            [
                "--rpm-keyring".to_string(),
                format!("{d}={}", rpm_key.display()),
            ]
        })
        .collect();
    // bookworm's 6.1 (GCC 12) for most families; bullseye's 5.10 (GCC 10) for Amazon Linux 2, whose 5.10
    // kernels are built with gcc10-gcc.
    let bookworm = debian_trees(&crawl, w, r"^6\.1\.0-[0-9]+-amd64$", "bookworm");
    let bullseye_crawl = w.join("bullseye.json");
    let o = run(kmodfarm()
        .args(["kernels", "crawl", "--suite", "bullseye-security,bullseye"])
        .args(["--arch", "x86_64", "--flavour", "amd64", "--out"])
        .arg(&bullseye_crawl));
    assert_eq!(o.status.code(), Some(0));
    let bullseye = debian_trees(&bullseye_crawl, w, r"^5\.10\.0-[0-9]+-amd64$", "bullseye");
    let serve_dir = w.join("serve");
    std::fs::create_dir_all(&serve_dir).unwrap();
    let port = serve(serve_dir.clone());
    let url = |f: &str| format!("http://127.0.0.1:{port}/{f}");
    let bookworm_abi = bookworm.3.trim_end_matches("-amd64").to_string();
    let rpm_release = |abi: &str, tag: &str, arch: &str| {
        let (upstream, num) = abi.rsplit_once('-').unwrap();
        format!("{upstream}-{num}.{tag}.{arch}")
    };

    // (matrix distribution, dist tag, tree, payload, primary compression, compiler text)
    let families = [
        (
            "fedora",
            "fc38",
            &bookworm,
            "w3.zstdio",
            "zstd",
            "gcc (GCC) 12.3.1 20230508 (Red Hat 12.3.1-1)",
        ),
        (
            "almalinux",
            "el9",
            &bookworm,
            "w2.xzdio",
            "gz",
            "gcc (GCC) 12.2.1 20221121 (Red Hat 12.2.1-7)",
        ),
        (
            "amazonlinux2023",
            "amzn2023",
            &bookworm,
            "w6.gzdio",
            "xz",
            "gcc (GCC) 12.2.1 20221121 (Red Hat 12.2.1-4)",
        ),
        (
            "amazonlinux2",
            "amzn2",
            &bullseye,
            "w2.xzdio",
            "gz",
            "gcc10-gcc (GCC) 10.5.0 20230707 (Red Hat 10.5.0-1)",
        ),
    ];
    let mut sources = String::new();
    let mut expected = Vec::new();
    for (distro, tag, debian, payload, compress, cc) in families {
        let abi = debian.3.trim_end_matches("-amd64");
        let release = rpm_release(abi, tag, "x86_64");
        let stage = w.join(format!("stage-{tag}"));
        let t0 = std::time::Instant::now();
        merged_tree(
            debian,
            &stage.join(format!("usr/src/kernels/{release}")),
            &release,
            cc,
        );
        let rpm = kernel_devel_rpm(
            &stage,
            &w.join(format!("rpm-{tag}")),
            &release,
            "x86_64",
            payload,
        );
        gpg.rpmsign(rpm_uid, &rpm);
        if distro == "amazonlinux2" {
            let root = serve_dir.join("al2");
            let repo = root.join("2/core/2.0/x86_64/0f1e2d3c");
            yum_repo(&repo, &rpm, compress, Some(&root));
            let list = root.join("2/core/latest/x86_64/mirror.list");
            std::fs::create_dir_all(list.parent().unwrap()).unwrap();
            std::fs::write(
                &list,
                format!("{}\n", url("al2/2/core/2.0/$basearch/0f1e2d3c")),
            )
            .unwrap();
            sources.push_str(&format!(
                "[[source]]\ndistro = \"amazonlinux2\"\nlabel = \"core\"\narches = [\"x86_64\"]\n\
                 mirrorlist = \"{}\"\n\n",
                url("al2/2/core/latest/$basearch/mirror.list")
            ));
        } else {
            yum_repo(
                &serve_dir.join(format!("{distro}/x86_64")),
                &rpm,
                compress,
                None,
            );
            // Fedora also has the arm64 repository made below.
            let arches = if distro == "fedora" {
                "\"x86_64\", \"aarch64\""
            } else {
                "\"x86_64\""
            };
            sources.push_str(&format!(
                "[[source]]\ndistro = \"{distro}\"\nlabel = \"updates\"\narches = [{arches}]\n\
                 baseurl = \"{}\"\n\n",
                url(&format!("{distro}/$basearch/"))
            ));
        }
        eprintln!(
            "{distro}: {} ({payload}, primary {compress}) in {:.1}s",
            rpm.display(),
            t0.elapsed().as_secs_f64()
        );
        expected.push((distro.to_string(), release, sha256(&rpm)));
    }

    // Fedora on arm64: the same layout with Debian's arm64 tree and arm64 linux-kbuild, so that the host
    // tools (fixdep, modpost) are arm64 programs, as in Fedora's aarch64 kernel-devel. Cross-building from
    // x86_64 must be refused with a message saying why, before any compiler runs.
    let crawl_json = read_json(&crawl);
    let arm = crawl_json["Debian"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| {
            e["arch"] == "aarch64"
                && e["kernelrelease"].as_str().unwrap() == format!("{bookworm_abi}-arm64")
        })
        .expect("the bookworm crawl lists the arm64 flavour of the same ABI")
        .clone();
    let arm_root = w.join("arm64-debs");
    fetch_debian_entry(&arm, w, &arm_root);
    let arm_tree = (
        arm_root.join(format!("usr/src/linux-headers-{bookworm_abi}-arm64")),
        arm_root.join(format!("usr/src/linux-headers-{bookworm_abi}-common")),
        kbuild_dir(&arm_root),
        format!("{bookworm_abi}-arm64"),
    );
    let arm_release = rpm_release(&bookworm_abi, "fc38", "aarch64");
    let arm_stage = w.join("stage-fc38-aarch64");
    merged_tree(
        &arm_tree,
        &arm_stage.join(format!("usr/src/kernels/{arm_release}")),
        &arm_release,
        "gcc (GCC) 12.3.1 20230508 (Red Hat 12.3.1-1)",
    );
    let arm_rpm = kernel_devel_rpm(
        &arm_stage,
        &w.join("rpm-fc38-aarch64"),
        &arm_release,
        "aarch64",
        "w3.zstdio",
    );
    gpg.rpmsign(rpm_uid, &arm_rpm);
    yum_repo(&serve_dir.join("fedora/aarch64"), &arm_rpm, "zstd", None);

    // Ubuntu: header pairs with Ubuntu's naming in an apt repository with two pockets: a 22.04-style
    // kernel from the bookworm tree (GCC 12, as jammy's HWE kernels) and a 20.04-style one from the
    // bullseye tree with focal's GCC 9, which the gcc-9 builder must build.
    let ubuntu_root = serve_dir.join("ubuntu");
    let bullseye_abi = bullseye.3.trim_end_matches("-amd64").to_string();
    let ubuntu_kernels = [
        (
            &bookworm,
            &bookworm_abi,
            "jammy-updates",
            "x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) 12.3.0",
        ),
        (
            &bullseye,
            &bullseye_abi,
            "focal-updates",
            "gcc (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0",
        ),
    ];
    for (tree, abi, suite, cc) in ubuntu_kernels {
        let release = format!("{abi}-generic");
        let merged = w.join(format!("ubuntu-merged-{suite}"));
        merged_tree(tree, &merged, &release, cc);
        let pool = format!("pool/main/l/linux-{suite}");
        bash(
            UBUNTU,
            &[
                ("T", &merged),
                ("OUT", &w.join(format!("ubuntu-{suite}"))),
                ("POOL", &ubuntu_root.join(&pool)),
                ("ABI", Path::new(abi)),
            ],
        );
        bash(
            APT_REPO,
            &[
                ("ROOT", &ubuntu_root),
                ("POOL", Path::new(&pool)),
                ("SUITE", Path::new(suite)),
                ("GNUPGHOME", gpg.home.path()),
                ("SIGNER", Path::new(archive_uid)),
            ],
        );
        expected.push(("ubuntu".into(), release, String::new()));
    }
    sources.push_str(&format!(
        "[[source]]\ndistro = \"ubuntu\"\nuri = \"{}\"\nsuites = [\"jammy-updates\", \"focal-updates\"]\n\
         arches = [\"x86_64\"]\n",
        url("ubuntu")
    ));
    let ubuntu_release = format!("{bookworm_abi}-generic");

    // Crawl everything in one go, as a nightly job would; the Ubuntu suites are signed by the test's
    // archive key.
    let sources_file = w.join("sources.toml");
    std::fs::write(&sources_file, &sources).unwrap();
    let crawl_out = w.join("crawl.json");
    let o = run(kmodfarm()
        .args(["kernels", "crawl", "--sources"])
        .arg(&sources_file)
        .arg("--keyring")
        .arg(&archive_keyring)
        .args(["--arch", "x86_64,aarch64", "--out"])
        .arg(&crawl_out));
    assert_eq!(o.status.code(), Some(0));
    let crawled = read_json(&crawl_out);
    let keys: Vec<&String> = crawled.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "AlmaLinux",
            "AmazonLinux2",
            "AmazonLinux2023",
            "Fedora",
            "Ubuntu"
        ]
    );
    for (distro, release, sha) in &expected {
        let key = crawled
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.to_lowercase() == *distro)
            .unwrap();
        let entries = crawled[key].as_array().unwrap();
        let e = entries
            .iter()
            .find(|e| e["kernelrelease"] == release.as_str())
            .unwrap_or_else(|| panic!("{distro}: {release} not crawled: {entries:#?}"));
        assert_eq!(e["arch"], "x86_64");
        if !sha.is_empty() {
            assert_eq!(e["headerpackages"][0]["sha256"], sha.as_str());
            assert_eq!(e["target"], distro.as_str());
        }
    }
    let al2 = &crawled["AmazonLinux2"][0];
    assert!(
        al2["headers"][0]
            .as_str()
            .unwrap()
            .starts_with(&url("al2/blobstore/")),
        "Amazon Linux 2's blobstore location: {al2:#}"
    );
    let ubuntu = crawled["Ubuntu"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kernelrelease"] == ubuntu_release.as_str())
        .unwrap();
    assert_eq!(ubuntu["target"], "ubuntu-generic");
    assert_eq!(ubuntu["suite"], "jammy-updates");
    assert_eq!(ubuntu["kernelversion"], "60");
    assert_eq!(ubuntu["headerpackages"].as_array().unwrap().len(), 2);
    // Listed in an index of the suite's InRelease, which the test's archive key signed.
    for p in ubuntu["headerpackages"].as_array().unwrap() {
        assert_eq!(p["proof"]["by"], "signed_index", "{p:#}");
        assert_eq!(p["proof"]["signed_by"], archive_fpr.as_str(), "{p:#}");
        assert!(
            p["proof"]["url"].as_str().unwrap().ends_with("/InRelease"),
            "{p:#}"
        );
    }
    assert_eq!(
        crawled["Fedora"].as_array().unwrap().len(),
        2,
        "x86_64 and aarch64"
    );

    // The seed's matrix from the crawl.
    let matrix_path = w.join("matrix-x86_64.json");
    let matrix = generate(&crawl_out, "x86_64", &matrix_path);
    let rows = matrix.as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (distro, release, _) in &expected {
        let row = rows
            .iter()
            .find(|r| r["distribution"] == distro.as_str() && r["kversion"] == release.as_str())
            .unwrap();
        assert_eq!(row["kversion"], release.as_str());
        assert_eq!(row["architecture"], "x86_64");
        assert_eq!(row["driverversion"], "0.1.0");
        assert_eq!(row["output"], format!("0.1.0/{distro}/x86_64/{release}"));
        assert!(row["kernelurls"][0]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"));
    }

    let (store, report) = (w.join("store"), w.join("report"));
    let t0 = std::time::Instant::now();
    let (code, results) = build_matrix(&matrix_path, &store, &report, &rpm_keyrings);
    eprintln!(
        "{} builds in {:.1}s",
        expected.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(code, Some(0), "{results:#}");
    for (distro, release, _) in &expected {
        let prefix = store.join(format!("hello/0.1.0/{distro}/x86_64/{release}"));
        let m = read_json(&prefix.join("metadata.json"));
        assert_eq!(m["kernel_release"], release.as_str());
        assert_eq!(m["variant"]["distribution"], distro.as_str());
        let bytes = std::fs::read(published_file(&prefix, "hello.ko")).unwrap();
        let vermagic = format!("vermagic={release} ");
        assert!(
            bytes
                .windows(vermagic.len())
                .any(|w| w == vermagic.as_bytes()),
            "{distro}: hello.ko lacks {vermagic}"
        );
        // The builder of the kernel's GCC major: gcc-10 for Amazon Linux 2's 5.10, gcc-9 for the
        // focal-style Ubuntu kernel, gcc-12 for the rest.
        let major = if distro == "amazonlinux2" {
            10
        } else if release.starts_with(&format!("{bullseye_abi}-")) {
            9
        } else {
            12
        };
        let builder = m["toolchain"]["builder"].as_str().unwrap();
        assert!(
            builder.contains(&format!("-gcc{major}-")),
            "{distro} {release}: built by {builder}"
        );
        // Each kernel-devel RPM is proven by its own signature, by the key given for its family.
        if distro != "ubuntu" {
            let packages = m["inputs"]["packages"].as_array().unwrap();
            assert_eq!(packages.len(), 1, "{distro}: {packages:#?}");
            let proof = &packages[0]["proof"];
            assert_eq!(proof["by"], "package_signature", "{distro}: {proof:#}");
            assert_eq!(proof["signed_by"], rpm_fpr.as_str(), "{distro}: {proof:#}");
            assert!(
                proof["keyring"]
                    .as_str()
                    .unwrap()
                    .ends_with("RPM-GPG-KEY-kmodfarm-test"),
                "{proof:#}"
            );
        }
    }
    let ubuntu = read_json(&store.join(format!(
        "hello/0.1.0/ubuntu/x86_64/{ubuntu_release}/metadata.json"
    )));
    assert_eq!(ubuntu["inputs"]["packages"].as_array().unwrap().len(), 2);

    // arm64 Fedora: refused with the reason, nothing published.
    let arm_matrix = w.join("matrix-aarch64.json");
    let rows = generate(&crawl_out, "aarch64", &arm_matrix);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let arm_store = w.join("arm-store");
    let (code, results) = build_matrix(
        &arm_matrix,
        &arm_store,
        &w.join("arm-report"),
        &rpm_keyrings,
    );
    assert_ne!(code, Some(0));
    let text = results[0].to_string();
    assert!(
        text.contains("fixdep") && text.contains("aarch64"),
        "{:#}",
        results[0]
    );
    assert!(!arm_store.join("hello/0.1.0/fedora/aarch64").exists());
}

/// RPMs that do not prove themselves are refused after the download and before anything of them is
/// unpacked: one unsigned, one signed by a key that is not the family's, one changed after rpmsign signed
/// it. A properly signed one of the same repository passes the check (and then fails for its tree, which
/// is no kernel's), so the refusals are the signatures' doing. `--require-verified` refuses RPMs of a
/// family without keys before they are fetched, and lets those of a family with keys through to the
/// signature check.
#[test]
fn unsigned_foreign_and_changed_rpms_are_refused() {
    for tool in ["rpmbuild", "rpmsign", "gpg", "createrepo_c"] {
        if !have(tool) {
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gpg = TestGpg::new();
    let (vendor, intruder) = (
        "kmodfarm test RPM signing <rpm@kmodfarm.invalid>",
        "someone else <other@kmodfarm.invalid>",
    );
    let vendor_fpr = gpg.key(vendor, "rsa2048");
    let intruder_fpr = gpg.key(intruder, "ed25519");
    let key = gpg.export(vendor, true, &w.join("RPM-GPG-KEY-fedora-test"));

    let serve_dir = w.join("serve");
    let repo = serve_dir.join("fedora/x86_64");
    let cases = ["unsigned", "foreign", "changed", "signed"];
    for (n, how) in cases.iter().enumerate() {
        let release = format!("6.1.0-{}.fc41.x86_64", n + 1);
        let stage = w.join(format!("stage-{how}"));
        let tree = stage.join(format!("usr/src/kernels/{release}"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("Makefile"), format!("# {how}\n")).unwrap();
        let rpm = kernel_devel_rpm(
            &stage,
            &w.join(format!("rpm-{how}")),
            &release,
            "x86_64",
            "w6.gzdio",
        );
        match *how {
            "foreign" => gpg.rpmsign(intruder, &rpm),
            "signed" => gpg.rpmsign(vendor, &rpm),
            "changed" => {
                gpg.rpmsign(vendor, &rpm);
                let mut bytes = std::fs::read(&rpm).unwrap();
                let at = bytes.len() - 20;
                bytes[at] ^= 0x55;
                std::fs::write(&rpm, bytes).unwrap();
            }
            _ => {}
        }
        // The mirror's own metadata lists each package as it is (a mirror serving what it was given).
        yum_repo(&repo, &rpm, "gz", None);
    }
    let port = serve(serve_dir);
    let sources = w.join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[source]]\ndistro = \"fedora\"\nlabel = \"updates\"\narches = [\"x86_64\"]\n\
             baseurl = \"http://127.0.0.1:{port}/fedora/$basearch/\"\n"
        ),
    )
    .unwrap();
    let crawl = w.join("crawl.json");
    let o = run(kmodfarm()
        .args(["kernels", "crawl", "--sources"])
        .arg(&sources)
        .args(["--arch", "x86_64", "--out"])
        .arg(&crawl));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(read_json(&crawl)["Fedora"].as_array().unwrap().len(), 4);

    let keyring = format!("fedora={}", key.display());
    let build = |name: &str, extra: &[&str]| {
        let (store, report) = (w.join(name).join("store"), w.join(name).join("report"));
        let out = run(kmodfarm()
            .arg("build")
            .arg(workspace().join("examples/hello"))
            .arg("--kernels")
            .arg(&crawl)
            .args(["--arch", "x86_64", "--json"])
            .arg("--store")
            .arg(&store)
            .arg("--report-dir")
            .arg(&report)
            .arg("--cache")
            .arg(cache_dir())
            .args(extra));
        assert_eq!(out.status.code(), Some(1), "some variants fail");
        // Nothing of any of them is published.
        assert!(files(&store).is_empty(), "{:?}", files(&store));
        let results = read_json(&report.join("results.json"));
        let by_release = |n: usize| {
            results
                .as_array()
                .unwrap()
                .iter()
                .find(|r| {
                    r["label"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("6.1.0-{n}.fc41"))
                })
                .unwrap_or_else(|| panic!("no result for 6.1.0-{n}: {results:#}"))
                .clone()
        };
        (1..=cases.len()).map(by_release).collect::<Vec<_>>()
    };

    // With the family's key: each spoiled package refused for its own reason, before unpacking.
    let results = build("keyed", &["--rpm-keyring", &keyring]);
    let refused = |r: &serde_json::Value, why: &str| {
        assert_eq!(r["class"], "input_unproven", "{r:#}");
        let m = r["message"].as_str().unwrap();
        assert!(m.contains(why), "{why:?} not in {m:?}");
        assert!(!m.contains("--require-verified"), "{m}");
        // The build log says why.
        let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
        assert!(log.contains(why), "{log}");
    };
    refused(&results[0], "not signed");
    refused(&results[1], "not in the keyring");
    let short_id = &intruder_fpr[intruder_fpr.len() - 16..];
    assert!(
        results[1]["message"].as_str().unwrap().contains(short_id)
            || results[1]["message"]
                .as_str()
                .unwrap()
                .contains(&intruder_fpr),
        "{:#}",
        results[1]
    );
    refused(&results[2], "digest BAD");
    // The signed one passed its check; it fails later, for its tree, which is no kernel's.
    assert_ne!(results[3]["class"], "input_unproven", "{:#}", results[3]);
    let log = std::fs::read_to_string(results[3]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains(&format!("package signature by key {vendor_fpr}")),
        "{log}"
    );

    // --require-verified with the key: the same refusals, after the fetch, for the same reasons.
    let results = build(
        "keyed-required",
        &["--rpm-keyring", &keyring, "--require-verified"],
    );
    refused(&results[0], "not signed");
    refused(&results[1], "not in the keyring");
    refused(&results[2], "digest BAD");
    assert_ne!(results[3]["class"], "input_unproven", "{:#}", results[3]);

    // --require-verified without keys for Fedora: nothing can prove these RPMs; refused before the fetch.
    let results = build("unkeyed-required", &["--require-verified"]);
    for r in &results {
        assert_eq!(r["class"], "input_unproven", "{r:#}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("--require-verified refuses it"),
            "{r:#}"
        );
    }

    // A keyring for a distribution that has no RPMs is a usage error.
    let o = run(kmodfarm()
        .arg("build")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&crawl)
        .args(["--rpm-keyring", &format!("ubuntu={}", key.display())])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--store")
        .arg(w.join("usage/store"))
        .arg("--report-dir")
        .arg(w.join("usage/report")));
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an RPM distribution"));
}
