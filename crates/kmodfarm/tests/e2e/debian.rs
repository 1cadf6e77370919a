//! Real builds against Debian's mirror: bookworm x86_64 and aarch64 (cross), trixie x86_64.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::*;

#[test]
fn builds_examples_for_current_bookworm_and_trixie_kernels() {
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let projects = [ws.join("examples/hello"), ws.join("examples/pair")];
    let projects: Vec<&Path> = projects.iter().map(|p| p.as_path()).collect();
    // bookworm's default 6.1 kernel line on both architectures, trixie's on x86_64; plain flavours.
    let bookworm = build(
        &projects,
        &crawl,
        &store,
        &report,
        &[
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
            "--arch",
            "x86_64",
            "--kernel-release",
            r"^6\.12\.[0-9]+\+deb13-amd64$",
            "--json",
        ],
    );
    assert_eq!(trixie.status.code(), Some(0));
    let results: serde_json::Value = serde_json::from_slice(&trixie.stdout).unwrap();
    assert_eq!(
        results.as_array().unwrap().len(),
        2,
        "hello and pair for one trixie kernel"
    );

    let files = files(&store);
    let metas: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with("metadata.json"))
        .collect();
    // hello and pair × (bookworm amd64, bookworm arm64, trixie amd64)
    assert_eq!(metas.len(), 6, "{files:#?}");
    for meta in metas {
        let m = read_json(&store.join(meta));
        let prefix = Path::new(meta).parent().unwrap();
        let release = m["kernel_release"].as_str().unwrap();
        let arch = m["variant"]["architecture"].as_str().unwrap();
        assert!(prefix.starts_with(format!(
            "{}/0.1.0/debian/{arch}",
            m["driver"].as_str().unwrap()
        )));
        let expected: &[&str] = if m["driver"] == "hello" {
            &["hello.ko"]
        } else {
            &["pair_producer.ko", "pair_consumer.ko"]
        };
        let modules = m["modules"].as_array().unwrap();
        assert_eq!(modules.len(), expected.len());
        for name in expected {
            let ko = published_file(&store.join(prefix), name);
            assert!(ko.is_file(), "{} missing", ko.display());
            let vermagic = modinfo(&ko, "vermagic");
            assert!(
                vermagic.starts_with(&format!("{release} ")),
                "{vermagic} vs {release}"
            );
            let bytes = std::fs::read(&ko).unwrap();
            let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
            assert_eq!(
                machine,
                if arch == "x86_64" { 62 } else { 183 },
                "{name} ELF machine"
            );
        }
        if m["driver"] == "pair" {
            let consumer = published_file(&store.join(prefix), "pair_consumer.ko");
            assert_eq!(modinfo(&consumer, "depends"), "pair_producer");
        }
        for p in m["inputs"]["packages"].as_array().unwrap() {
            assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
            // Proven by its suite's Release, signed by a key of the installed Debian archive keyring.
            let proof = &p["proof"];
            assert_eq!(proof["by"], "signed_index", "{p:#}");
            assert!(
                proof["url"].as_str().unwrap().ends_with("/InRelease"),
                "{proof:#}"
            );
            assert_eq!(proof["signed_by"].as_str().unwrap().len(), 40, "{proof:#}");
            assert!(
                proof["signer"].as_str().unwrap().contains("Debian"),
                "{proof:#}"
            );
            assert!(proof.get("expired_since").is_none(), "{proof:#}");
        }
        // The provenance carries the same proofs.
        let statement = read_json(&published_file(
            &store.join(prefix),
            "provenance.intoto.json",
        ));
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert!(deps
            .iter()
            .filter(|d| d["annotations"]["kind"] == "header-package")
            .all(|d| d["annotations"]["proof"]["by"] == "signed_index"));
        assert_eq!(m["inputs"]["source_sha256"].as_str().unwrap().len(), 64);
        assert!(m["toolchain"]["cc_version_text"]
            .as_str()
            .unwrap()
            .contains("gcc"));
    }
}

pub(crate) fn write_project(dir: &Path, kbuild: &str, c_source: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Kbuild"), kbuild).unwrap();
    std::fs::write(dir.join("bad.c"), c_source).unwrap();
    std::fs::write(
        dir.join("kmodfarm.toml"),
        "[driver]\nname='bad'\nversion='1.0.0'\n",
    )
    .unwrap();
}

#[test]
fn broken_and_hostile_sources_fail_cleanly() {
    broken_and_hostile_sources_fail_cleanly_in("bubblewrap");
}

/// A source that does not compile and a Makefile that tries to reach the host: both fail as compile errors
/// with their log kept, nothing is published, and no connection arrives.
pub(crate) fn broken_and_hostile_sources_fail_cleanly_in(sandbox: &str) {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    // On every host address, so that a container engine's bridge (172.17.0.1) would reach it too.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s.read(&mut [0u8; 16]);
        }
    });

    let broken = dir.path().join("broken");
    write_project(
        &broken,
        "obj-m := bad.o\n",
        "#include <linux/module.h>\nthis is not C;\n",
    );
    let netprobe = dir.path().join("netprobe");
    write_project(
        &netprobe,
        &format!(
            "NET := $(shell bash -c 'for h in 127.0.0.1 172.17.0.1; do (exec 3<>/dev/tcp/$$h/{port}) && echo reachable && exit; done; echo unreachable' 2>/dev/null)\n\
             ifneq ($(NET),reachable)\n$(error cannot fetch a build dependency: network $(NET))\nendif\nobj-m := bad.o\n"
        ),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    );
    for (project, needle) in [
        (&broken, "this is not C"),
        (&netprobe, "network unreachable"),
    ] {
        let (store, report) = (dir.path().join("store"), dir.path().join("report"));
        let out = build(
            &[project.as_path()],
            &crawl,
            &store,
            &report,
            &[
                "--sandbox",
                sandbox,
                "--arch",
                "x86_64",
                "--kernel-release",
                r"^6\.1\.0-[0-9]+-amd64$",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "a failed variant exits 1");
        let results = read_json(&report.join("results.json"));
        let r = &results[0];
        assert_eq!(r["result"], "failed");
        assert_eq!(r["class"], "compile_error");
        let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
        assert!(log.contains(needle), "log lacks {needle}:\n{log}");
        assert!(
            files(&store).is_empty(),
            "nothing published for a failed build: {:?}",
            files(&store)
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the sandbox reached the host network"
    );
}

#[test]
fn missing_header_packages_are_classified() {
    // A loopback "mirror" that has nothing: every header URL answers 404.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().flatten() {
            let _ = s.read(&mut [0u8; 4096]);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let list = format!(
        r#"{{"Debian":[{{"kernelversion":1,"kernelrelease":"6.1.0-99-amd64","target":"debian","headers":[
        "http://127.0.0.1:{port}/debian/pool/main/l/linux/linux-headers-6.1.0-99-amd64_6.1.999-1_amd64.deb",
        "http://127.0.0.1:{port}/debian/pool/main/l/linux/linux-headers-6.1.0-99-common_6.1.999-1_all.deb"]}}]}}"#
    );
    let list_path = dir.path().join("x86_64-list.json");
    std::fs::write(&list_path, list).unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let mirror = format!("http://127.0.0.1:{port}/debian");
    let out = run(kmodfarm()
        .args(["build"])
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&list_path)
        .args(["--mirror", &mirror, "--security-mirror", &mirror])
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(&report)
        .arg("--cache")
        .arg(dir.path().join("cache")));
    assert_eq!(out.status.code(), Some(1));
    let results = read_json(&report.join("results.json"));
    assert_eq!(results[0]["class"], "headers_unavailable", "{results:#}");
    assert!(files(&store).is_empty());
}
