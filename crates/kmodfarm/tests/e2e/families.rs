//! Other distributions' header formats, from fixtures made by their real tools: bookworm's real 6.1 amd64
//! headers (flavour, `-common` and `linux-kbuild`, so the host tools are real x86_64 programs) repackaged
//! as kernel-devel RPMs laid out as `/usr/src/kernels/<release>` (rpmbuild; gzip, xz and zstd payloads)
//! and as an Ubuntu header pair (dpkg-deb; `linux-headers-<abi>` plus `linux-headers-<abi>-generic`
//! linking into it), served from a loopback HTTP server and named by a kernel-crawler list.
//! `examples/hello` must build for each through its own package format and layout.

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
    assert!(
        out.status.success(),
        "{script}\nfailed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// The extracted trees of bookworm's newest 6.1 amd64 headers: (flavour dir, common dir, kbuild dir,
/// release), found through a real build of `examples/hello` (which also creates the gcc-12 builder).
fn debian_trees(crawl: &Path, work: &Path) -> (PathBuf, PathBuf, PathBuf, String) {
    let store = work.join("debian-store");
    let out = run(kmodfarm()
        .arg("build")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(crawl)
        .args(["--distro", "debian", "--arch", "x86_64", "--latest", "1"])
        .args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$"])
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(work.join("debian-report"))
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
            let dir = std::fs::read_dir(root.join("usr/lib"))
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with("linux-kbuild-"))
                .unwrap()
                .path();
            kbuild = Some(dir);
        }
    }
    (flavour.unwrap(), common.unwrap(), kbuild.unwrap(), release)
}

/// One self-contained kernel build tree at `$T`, as RPM distributions ship it: the common part, the
/// flavour's config and generated files, kbuild's scripts and tools (real x86_64 host programs), the
/// release renamed and the compiler text set as the distribution's compiler prints it.
const MERGE: &str = r#"
mkdir -p "$T"
cp -a "$COMMON/." "$T/"
rm -f "$T/scripts" "$T/tools"
cp -a "$KBUILD/scripts" "$KBUILD/tools" "$T/"
if [ -d "$KBUILD/certs" ]; then cp -a "$KBUILD/certs" "$T/"; fi
cp -a "$FLAVOUR/.config" "$FLAVOUR/Module.symvers" "$T/"
cp -a "$FLAVOUR/arch/." "$T/arch/"
cp -a "$FLAVOUR/include/." "$T/include/"
cd "$T"
edit() { cp -a "$1" "$1.orig"; sed -i "$2" "$1"; touch -r "$1.orig" "$1"; rm "$1.orig"; }
for f in include/generated/utsrelease.h include/config/kernel.release; do
  if [ -f "$f" ]; then edit "$f" "s/$OLD_RELEASE/$NEW_RELEASE/"; fi
done
edit .config "s|^CONFIG_CC_VERSION_TEXT=.*|CONFIG_CC_VERSION_TEXT=\"$CC_TEXT\"|"
# auto.conf holds strings unquoted since Linux 5.17.
edit include/config/auto.conf "s|^CONFIG_CC_VERSION_TEXT=.*|CONFIG_CC_VERSION_TEXT=$CC_TEXT|"
edit include/generated/autoconf.h "s|^#define CONFIG_CC_VERSION_TEXT .*|#define CONFIG_CC_VERSION_TEXT \"$CC_TEXT\"|"
grep -q "\"$NEW_RELEASE\"" include/generated/utsrelease.h
"#;

fn merged_tree(
    debian: &(PathBuf, PathBuf, PathBuf, String),
    dest: &Path,
    new_release: &str,
    cc_text: &str,
) {
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
fn kernel_devel_rpm(stage: &Path, top: &Path, release: &str, payload: &str) -> PathBuf {
    // 6.1.0-56.fc38.x86_64 → version 6.1.0, release 56.fc38.
    let base = release.trim_end_matches(".x86_64");
    let (version, rel) = base.split_once('-').unwrap();
    std::fs::create_dir_all(top).unwrap();
    let spec = top.join("kernel-devel.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: kernel-devel\nVersion: {version}\nRelease: {rel}\nSummary: Development package for \
             building kernel modules to match the kernel\nLicense: GPLv2\nBuildArch: x86_64\n\
             AutoReqProv: no\n%description\nkernel headers and makefiles\n\
             %install\ncp -a {stage}/. %{{buildroot}}/\n\
             %files\n/usr/src/kernels/{release}\n",
            stage = stage.display()
        ),
    )
    .unwrap();
    let out = Command::new("rpmbuild")
        .arg("-bb")
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
        "RPMS/x86_64/kernel-devel-{version}-{rel}.x86_64.rpm"
    ));
    assert!(rpm.is_file(), "{} missing", rpm.display());
    rpm
}

/// Ubuntu's header pair: `linux-headers-<abi>` (Architecture: all) holds the tree without the flavour's
/// files; `linux-headers-<abi>-generic` holds `.config`, `Module.symvers`, the generated headers and the
/// host tools, and links everything else into the shared package, as Ubuntu's packaging does.
const UBUNTU: &str = r#"
S="$OUT/shared/usr/src/linux-headers-$ABI"
F="$OUT/flavour/usr/src/linux-headers-$ABI-generic"
mkdir -p "$(dirname "$S")" "$F/include" "$F/arch/x86/include" "$OUT/flavour/lib/modules/$ABI-generic"
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
cat > "$OUT/shared/DEBIAN/control" <<EOF
Package: linux-headers-$ABI
Version: $ABI.60
Architecture: all
Maintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>
Description: Header files related to Linux kernel version $ABI
EOF
cat > "$OUT/flavour/DEBIAN/control" <<EOF
Package: linux-headers-$ABI-generic
Version: $ABI.60
Architecture: amd64
Maintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>
Depends: linux-headers-$ABI
Description: Linux kernel headers for version $ABI
EOF
dpkg-deb --root-owner-group -Zxz -z1 --build "$OUT/shared" "$SERVE/linux-headers-${ABI}_$ABI.60_all.deb" >/dev/null
dpkg-deb --root-owner-group -Zxz -z1 --build "$OUT/flavour" "$SERVE/linux-headers-$ABI-generic_$ABI.60_amd64.deb" >/dev/null
"#;

#[test]
fn builds_hello_through_rpm_and_ubuntu_header_packages() {
    let Some(crawl) = debian_crawl() else { return };
    if !have("rpmbuild") || !have("dpkg-deb") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let debian = debian_trees(&crawl, w);
    let abi = debian.3.trim_end_matches("-amd64").to_string();
    let (_, num) = abi.rsplit_once('-').unwrap();
    let upstream = abi.rsplit_once('-').unwrap().0.to_string();
    let serve_dir = w.join("serve");
    std::fs::create_dir_all(&serve_dir).unwrap();

    // (kernel-crawler key, target, matrix distribution, dist tag, payload, compiler text)
    let rpm_families = [
        (
            "Fedora",
            "fedora",
            "fedora",
            "fc38",
            "w3.zstdio",
            "gcc (GCC) 12.3.1 20230508 (Red Hat 12.3.1-1)",
        ),
        (
            "AlmaLinux",
            "almalinux",
            "almalinux",
            "el9",
            "w2.xzdio",
            "gcc (GCC) 12.2.1 20221121 (Red Hat 12.2.1-7)",
        ),
        (
            "AmazonLinux2023",
            "amazonlinux2023",
            "amazonlinux2023",
            "amzn2023",
            "w6.gzdio",
            "gcc (GCC) 12.2.1 20221121 (Red Hat 12.2.1-4)",
        ),
    ];
    let mut list = serde_json::Map::new();
    let port = serve(serve_dir.clone());
    let url = |f: &str| format!("http://127.0.0.1:{port}/{f}");
    let entry = |release: &str, target: &str, version: &str, files: &[PathBuf]| {
        let pkgs: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_str().unwrap();
                serde_json::json!({"url": url(name), "sha256": sha256(f)})
            })
            .collect();
        let headers: Vec<String> = files
            .iter()
            .map(|f| url(f.file_name().unwrap().to_str().unwrap()))
            .collect();
        serde_json::json!([{
            "kernelversion": version, "kernelrelease": release, "target": target,
            "headers": headers, "headerpackages": pkgs,
        }])
    };
    let mut expected = Vec::new();
    for (key, target, distro, tag, payload, cc) in rpm_families {
        let release = format!("{upstream}-{num}.{tag}.x86_64");
        let stage = w.join(format!("stage-{tag}"));
        let t0 = std::time::Instant::now();
        merged_tree(
            &debian,
            &stage.join(format!("usr/src/kernels/{release}")),
            &release,
            cc,
        );
        let rpm = kernel_devel_rpm(&stage, &w.join(format!("rpm-{tag}")), &release, payload);
        let served = serve_dir.join(rpm.file_name().unwrap());
        std::fs::rename(&rpm, &served).unwrap();
        eprintln!(
            "fixture {} ({payload}) in {:.1}s",
            served.display(),
            t0.elapsed().as_secs_f64()
        );
        list.insert(key.into(), entry(&release, target, "1", &[served]));
        expected.push((distro, release));
    }

    // Ubuntu: the pair, from the merged tree with Ubuntu's release naming.
    let release = format!("{abi}-generic");
    let merged = w.join("ubuntu-merged");
    merged_tree(
        &debian,
        &merged,
        &release,
        "x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) 12.3.0",
    );
    bash(
        UBUNTU,
        &[
            ("T", &merged),
            ("OUT", &w.join("ubuntu")),
            ("SERVE", &serve_dir),
            ("ABI", Path::new(&abi)),
        ],
    );
    let pair = [
        serve_dir.join(format!("linux-headers-{abi}-generic_{abi}.60_amd64.deb")),
        serve_dir.join(format!("linux-headers-{abi}_{abi}.60_all.deb")),
    ];
    list.insert(
        "Ubuntu".into(),
        entry(&release, "ubuntu-generic", "60", &pair),
    );
    expected.push(("ubuntu", release));

    let list_path = w.join("x86_64-list.json");
    std::fs::write(
        &list_path,
        serde_json::to_vec_pretty(&serde_json::Value::Object(list)).unwrap(),
    )
    .unwrap();
    let (store, report) = (w.join("store"), w.join("report"));
    let t0 = std::time::Instant::now();
    let out = run(kmodfarm()
        .arg("build")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&list_path)
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(&report)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--json"));
    eprintln!("four builds in {:.1}s", t0.elapsed().as_secs_f64());
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
    assert_eq!(out.status.code(), Some(0), "{results:#}");

    for (distro, release) in &expected {
        let prefix = store.join(format!("hello/0.1.0/{distro}/x86_64/{release}"));
        let m = read_json(&prefix.join("metadata.json"));
        assert_eq!(m["kernel_release"], release.as_str());
        assert_eq!(m["variant"]["distribution"], *distro);
        let ko = prefix.join("hello.ko");
        let bytes = std::fs::read(&ko).unwrap();
        let vermagic = format!("vermagic={release} ");
        assert!(
            bytes
                .windows(vermagic.len())
                .any(|w| w == vermagic.as_bytes()),
            "{} lacks {vermagic}",
            ko.display()
        );
        assert!(m["toolchain"]["cc_version_text"]
            .as_str()
            .unwrap()
            .contains("12."));
    }
    let ubuntu = read_json(&store.join(format!(
        "hello/0.1.0/ubuntu/x86_64/{abi}-generic/metadata.json"
    )));
    assert_eq!(ubuntu["inputs"]["packages"].as_array().unwrap().len(), 2);
}
