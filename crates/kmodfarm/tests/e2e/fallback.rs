//! `install --build-fallback`: a host runs a kernel the store has no module for yet (bookworm's 6.12
//! backport while the store holds 6.1); install says so, then builds the module on the spot from the
//! mirror's headers and installs it with the usual checks.

use std::path::Path;

use crate::util::*;

fn install(
    store: &Path,
    root: &Path,
    release: &str,
    version: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut c = kmodfarm();
    c.arg("install")
        .arg("--store")
        .arg(store)
        .arg("--root")
        .arg(root)
        .args(["--kernel-release", release, "--kernel-version", version])
        .args(["--arch", "x86_64", "--driver", "hello", "--cache"])
        .arg(cache_dir())
        .args(extra);
    run(&mut c)
}

#[test]
fn a_kernel_missing_from_the_store_is_built_on_the_host() {
    let Some(crawl) = debian_crawl() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let store = w.join("store");
    let mut c = kmodfarm();
    c.arg("sync")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&crawl)
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(w.join("report"))
        .arg("--cache")
        .arg(cache_dir())
        .args(["--distro", "debian", "--arch", "x86_64", "--latest", "1"])
        .args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$"]);
    assert_eq!(run(&mut c).status.code(), Some(0));

    // The host runs bookworm's newest 6.12 backport, which the store does not have.
    let list = read_json(&crawl);
    let host_kernel = list["Debian"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| {
            e["arch"] == "x86_64"
                && e["suite"].as_str().unwrap().starts_with("bookworm")
                && e["kernelrelease"]
                    .as_str()
                    .unwrap()
                    .ends_with("+deb12-amd64")
        })
        .expect("bookworm-security carries a 6.12 backport")
        .clone();
    let release = host_kernel["kernelrelease"].as_str().unwrap();
    let version = format!(
        "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
        host_kernel["packageversion"].as_str().unwrap()
    );
    let root = debian_host_root(w);

    let out = install(&store, &root, release, &version, &[]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nearest available: 6.1.0-"), "{err}");

    let project = workspace().join("examples/hello");
    let out = install(
        &store,
        &root,
        release,
        &version,
        &["--build-fallback", project.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ko = root.join(format!("lib/modules/{release}/extra/hello/hello.ko"));
    assert!(ko.is_file(), "{report:#}");
    assert_eq!(modinfo(&ko, "vermagic").split(' ').next(), Some(release));
    assert_eq!(report["depmod"], "ran", "{report:#}");
    assert!(
        report["variant"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/debian/x86_64/{release}")),
        "{report:#}"
    );
    // The store the farm publishes to is left alone: the fallback is this host's.
    assert!(!files(&store).iter().any(|f| f.contains(release)));

    // A second host with the same kernel finds the module already built in the fallback store.
    let root2 = w.join("host2");
    std::fs::create_dir_all(root2.join("etc")).unwrap();
    std::fs::copy(root.join("etc/os-release"), root2.join("etc/os-release")).unwrap();
    let out = install(
        &store,
        &root2,
        release,
        &version,
        &["--build-fallback", project.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(root2
        .join(format!("lib/modules/{release}/extra/hello/hello.ko"))
        .is_file());
}
