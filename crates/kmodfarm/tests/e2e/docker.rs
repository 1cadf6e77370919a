//! `--sandbox docker` against the machine's container engine: the builds of `debian.rs` in containers (the
//! builder root filesystems imported as local images, nothing pulled), hostile sources, the same modules as
//! bubblewrap byte for byte, and no container left behind after Ctrl-C. Skipped with a message where no
//! engine is reachable, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;

pub(crate) fn docker_usable() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("a container engine must be reachable under CI=true");
        }
        eprintln!("skipping: no reachable container engine");
    }
    ok
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Containers a kmodfarm process with this pid started (running or stopped).
fn containers_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name=kmodfarm-{pid}-"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every `.ko` under `store` with its metadata: (path relative to the store, metadata).
fn modules(store: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for meta in files(store)
        .into_iter()
        .filter(|f| f.ends_with("metadata.json"))
    {
        let m = read_json(&store.join(&meta));
        let prefix = Path::new(&meta).parent().unwrap();
        let prefix = prefix.join(m["artifacts"].as_str().unwrap());
        for module in m["modules"].as_array().unwrap() {
            out.push((
                prefix.join(module["file_name"].as_str().unwrap()),
                m.clone(),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn docker_builds_examples_for_current_bookworm_and_trixie_kernels() {
    if !docker_usable() {
        return;
    }
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    // dkms-subdir: dkms.conf evaluated and its build (patch, PRE_BUILD, make in a subdirectory) run in the
    // container, with /lib/modules/<release>/build leading to the headers there too.
    let projects = [
        ws.join("examples/hello"),
        ws.join("examples/pair"),
        ws.join("examples/dkms-subdir"),
    ];
    let projects: Vec<&Path> = projects.iter().map(|p| p.as_path()).collect();
    let bookworm = build(
        &projects,
        &crawl,
        &store,
        &report,
        &[
            "--sandbox",
            "docker",
            "--arch",
            "x86_64,aarch64",
            "--kernel-release",
            r"^6\.1\.0-[0-9]+-(amd64|arm64)$",
        ],
    );
    assert_eq!(bookworm.status.code(), Some(0));
    let trixie = build(
        &projects,
        &crawl,
        &store,
        &report,
        &[
            "--sandbox",
            "docker",
            "--arch",
            "x86_64",
            "--kernel-release",
            r"^6\.12\.[0-9]+\+deb13-amd64$",
        ],
    );
    assert_eq!(trixie.status.code(), Some(0));

    let mods = modules(&store);
    // hello (1), pair (2) and kmf-subdir (1) × (bookworm amd64, bookworm arm64, trixie amd64)
    assert_eq!(mods.len(), 12, "{:#?}", files(&store));
    for (ko, m) in &mods {
        assert_eq!(m["toolchain"]["sandbox"], "docker");
        let release = m["kernel_release"].as_str().unwrap();
        let arch = m["variant"]["architecture"].as_str().unwrap();
        let path = store.join(ko);
        let vermagic = modinfo(&path, "vermagic");
        assert!(
            vermagic.starts_with(&format!("{release} ")),
            "{vermagic} vs {release}"
        );
        let bytes = std::fs::read(&path).unwrap();
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        assert_eq!(machine, if arch == "x86_64" { 62 } else { 183 });
        if ko.ends_with("pair_consumer.ko") {
            assert_eq!(modinfo(&path, "depends"), "pair_producer");
        }
        if ko.ends_with("kmf_subdir.ko") {
            // PATCH_MATCH: the 6.1 series only.
            let series = modinfo(&path, "kmf_series");
            assert_eq!(series == "6.1", release.starts_with("6.1.0-"), "{release}");
        }
        let log = store.join(ko.parent().unwrap()).join("build.log");
        let log = std::fs::read_to_string(log).unwrap();
        assert!(log.contains("# kmodfarm sandbox=docker: "), "{log}");
        assert!(log.contains("--network none"), "{log}");
    }
    // The builders became local images; no container is left.
    let images = std::process::Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    let images = String::from_utf8_lossy(&images.stdout);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("kmodfarm-builder:debian-bookworm-gcc12-")),
        "{images}"
    );
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("kmodfarm-builder:debian-trixie-gcc14-")),
        "{images}"
    );
}

#[test]
fn docker_broken_and_hostile_sources_fail_cleanly() {
    if !docker_usable() {
        return;
    }
    crate::debian::broken_and_hostile_sources_fail_cleanly_in("docker");
}

/// The same inputs give the same modules under both sandboxes: byte-identical `.ko` files (the toolchain is
/// the same builder root filesystem, build paths are fixed, and SOURCE_DATE_EPOCH and KBUILD_BUILD_* too).
#[test]
fn docker_and_bubblewrap_build_byte_identical_modules() {
    if !docker_usable() {
        return;
    }
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let projects = [ws.join("examples/hello"), ws.join("examples/pair")];
    let projects: Vec<&Path> = projects.iter().map(|p| p.as_path()).collect();
    let mut stores = Vec::new();
    for sandbox in ["bubblewrap", "docker"] {
        let (store, report) = (
            dir.path().join(format!("store-{sandbox}")),
            dir.path().join(format!("report-{sandbox}")),
        );
        let out = build(
            &projects,
            &crawl,
            &store,
            &report,
            &[
                "--sandbox",
                sandbox,
                "--rebuild",
                "--arch",
                "x86_64,aarch64",
                "--kernel-release",
                r"^6\.1\.0-[0-9]+-(amd64|arm64)$",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{sandbox}");
        stores.push(store);
    }
    let (bw, dk) = (modules(&stores[0]), modules(&stores[1]));
    assert_eq!(bw.len(), 6, "hello + 2 pair modules × 2 architectures");
    assert_eq!(
        bw.iter().map(|m| &m.0).collect::<Vec<_>>(),
        dk.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    for ((ko, bm), (_, dm)) in bw.iter().zip(&dk) {
        assert_eq!(bm["toolchain"]["sandbox"], "bubblewrap");
        assert_eq!(dm["toolchain"]["sandbox"], "docker");
        assert_eq!(
            bm["toolchain"]["builder_identity"],
            dm["toolchain"]["builder_identity"]
        );
        let (a, b) = (stores[0].join(ko), stores[1].join(ko));
        assert_eq!(modinfo(&a, "vermagic"), modinfo(&b, "vermagic"));
        assert_eq!(modinfo(&a, "srcversion"), modinfo(&b, "srcversion"));
        assert_eq!(
            std::fs::metadata(&a).unwrap().len(),
            std::fs::metadata(&b).unwrap().len(),
            "{}",
            ko.display()
        );
        assert_eq!(sha256(&a), sha256(&b), "{} differs", ko.display());
        // The store's record agrees.
        let name = ko.file_name().unwrap().to_str().unwrap();
        let rec = |m: &serde_json::Value| {
            m["modules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["file_name"] == name)
                .unwrap()["sha256"]
                .clone()
        };
        assert_eq!(rec(bm), rec(dm));
    }
}

/// Ctrl-C while a build runs in a container: kmodfarm removes the container before it exits.
#[test]
fn docker_ctrl_c_leaves_no_container() {
    if !docker_usable() {
        return;
    }
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow");
    crate::debian::write_project(
        &slow,
        "$(shell sleep 600)\nobj-m := bad.o\n",
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    );
    let mut c = kmodfarm();
    c.arg("build")
        .arg(&slow)
        .arg("--kernels")
        .arg(&crawl)
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .arg("--cache")
        .arg(cache_dir())
        .args([
            "--distro",
            "debian",
            "--latest",
            "1",
            "--sandbox",
            "docker",
            "--arch",
            "x86_64",
            "--kernel-release",
            r"^6\.1\.0-[0-9]+-amd64$",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    while containers_of(pid).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "kmodfarm ended before its container started"
        );
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    // What the terminal sends on Ctrl-C.
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "kmodfarm ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        containers_of(pid).is_empty(),
        "containers left: {:?}",
        containers_of(pid)
    );

    // The killed run's build directory (a tmpfs) is left behind with its lock released; the next run that
    // makes a build directory in the same cache removes it. (Other tests' live directories keep their lock.)
    let stale: Vec<String> = work_mounts()
        .into_iter()
        .filter(|m| {
            std::process::Command::new("flock")
                .args(["-n", &format!("{m}.lock"), "true"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    assert!(!stale.is_empty(), "the killed run left no build directory?");
    let broken = dir.path().join("broken");
    crate::debian::write_project(
        &broken,
        "obj-m := bad.o
",
        "this is not C;
",
    );
    let out = build(
        &[&broken],
        &crawl,
        &dir.path().join("store2"),
        &dir.path().join("report2"),
        &[
            "--arch",
            "x86_64",
            "--kernel-release",
            r"^6\.1\.0-[0-9]+-amd64$",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let left = work_mounts();
    for m in &stale {
        assert!(!left.contains(m), "{m} is still mounted");
        assert!(!std::path::Path::new(m).exists(), "{m} is still there");
    }
}

/// The tmpfs build directories mounted under the tests' cache.
fn work_mounts() -> Vec<String> {
    let work = cache_dir().join("work").display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&work))
        .map(str::to_string)
        .collect()
}
