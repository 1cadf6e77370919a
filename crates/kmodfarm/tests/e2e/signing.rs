//! Module signing: bookworm's real kernels, `examples/hello` signed with a throwaway key through the
//! kernel tree's `sign-file`, the signature checked, the signed module loaded into the real kernel under
//! QEMU, and the signer read back with `modinfo`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

const BOOKWORM_61: &str = r"^6\.1\.0-[0-9]+-(amd64|arm64)$";
const MAGIC: &[u8] = b"~Module signature appended~\n";

fn signed_build(
    command: &str,
    crawl: &Path,
    work: &Path,
    tag: &str,
    key: &Path,
    cert: &Path,
    extra: &[&str],
) -> (std::process::Output, PathBuf, PathBuf) {
    let (store, report) = (work.join("store"), work.join(format!("report-{tag}")));
    let mut args = vec!["--arch", "x86_64,aarch64", "--kernel-release", BOOKWORM_61];
    args.extend_from_slice(extra);
    let mut c = kmodfarm();
    c.arg(command)
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(crawl)
        .arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(&report)
        .arg("--cache")
        .arg(cache_dir())
        .args(["--distro", "debian", "--latest", "1"])
        .args(&args)
        .arg("--sign-key")
        .arg(key)
        .arg("--sign-cert")
        .arg(cert)
        .arg("--json");
    (run(&mut c), store, report)
}

#[test]
fn signed_modules_verify_boot_and_name_their_signer() {
    let Some(crawl) = debian_crawl() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (key, cert) = keypair(&w.join("keys"), "kmodfarm fleet signing key");

    // Build, sign, boot-test in QEMU (both architectures), publish.
    let (out, store, _) = signed_build("build", &crawl, w, "first", &key, &cert, &["--boot-test"]);
    assert_eq!(out.status.code(), Some(0));
    let metas: Vec<String> = files(&store)
        .into_iter()
        .filter(|f| f.ends_with("metadata.json"))
        .collect();
    assert_eq!(metas.len(), 2, "{metas:?}");
    for meta in &metas {
        let m = read_json(&store.join(meta));
        let prefix = store.join(meta.trim_end_matches("metadata.json"));
        assert_eq!(m["signature"]["signer"], "kmodfarm fleet signing key");
        assert_eq!(
            m["signature"]["hash"], "sha256",
            "Debian's CONFIG_MODULE_SIG_HASH"
        );
        // Published only after the boot test loaded the signed module into the real kernel.
        assert_eq!(
            m["boot"]["load_order"],
            serde_json::json!(["hello"]),
            "{:#}",
            m["boot"]
        );
        let ko = published_file(&prefix, "hello.ko");
        let bytes = std::fs::read(&ko).unwrap();
        assert!(bytes.ends_with(MAGIC), "{} is not signed", ko.display());
        assert_eq!(modinfo(&ko, "signer"), "kmodfarm fleet signing key");
        assert_eq!(modinfo(&ko, "sig_hashalgo"), "sha256");
        assert_eq!(modinfo(&ko, "sig_id"), "PKCS#7");
        // The published digest is the signed module's.
        let sha = Command::new("sha256sum").arg(&ko).output().unwrap();
        let sha = String::from_utf8_lossy(&sha.stdout);
        assert_eq!(
            m["modules"][0]["sha256"].as_str().unwrap(),
            sha.split_whitespace().next().unwrap()
        );
        let log = std::fs::read_to_string(
            w.join("report-first/logs")
                .join(meta.trim_end_matches("/metadata.json"))
                .join("build.log"),
        )
        .unwrap();
        assert!(log.contains("signatures verified"), "{log}");
        assert!(!log.contains("PRIVATE KEY"));
    }

    // Same key: up to date. Another key: signed again (the certificate is part of the build key).
    let (out, _, report) = signed_build("build", &crawl, w, "again", &key, &cert, &[]);
    assert_eq!(out.status.code(), Some(0));
    let results = read_json(&report.join("results.json"));
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"] == "up_to_date"),
        "{results:#}"
    );
    // The nightly job with a rotated key, which also publishes the matrix hosts install from.
    let (key2, cert2) = keypair(&w.join("keys2"), "kmodfarm rotated key");
    let (out, store, report) = signed_build("sync", &crawl, w, "rotated", &key2, &cert2, &[]);
    assert_eq!(out.status.code(), Some(0));
    let results = read_json(&report.join("results.json"));
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"] == "success"),
        "{results:#}"
    );
    for meta in &metas {
        let ko = published_file(
            &store.join(meta.trim_end_matches("metadata.json")),
            "hello.ko",
        );
        assert_eq!(modinfo(&ko, "signer"), "kmodfarm rotated key");
    }

    // A host that trusts the rotated certificate installs; one that trusts only the old one refuses
    // before writing anything.
    let amd64 = metas.iter().find(|m| m.contains("/x86_64/")).unwrap();
    let m = read_json(&store.join(amd64));
    let release = m["kernel_release"].as_str().unwrap();
    let uname_v = format!(
        "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
        m["variant"]["packageversion"].as_str().unwrap()
    );
    let host = debian_host_root(w);
    let install = |cert: &Path, dest: &Path| {
        let mut c = kmodfarm();
        c.arg("install")
            .arg("--store")
            .arg(&store)
            .arg("--root")
            .arg(&host)
            .arg("--dest")
            .arg(dest)
            .args(["--kernel-release", release, "--kernel-version", &uname_v])
            .args(["--arch", "x86_64", "--verify-cert"])
            .arg(cert);
        run(&mut c)
    };
    let out = install(&cert2, &w.join("trusted"));
    assert_eq!(out.status.code(), Some(0));
    assert!(w.join("trusted/hello.ko").is_file());
    let out = install(&cert, &w.join("untrusted"));
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("module signature"), "{err}");
    assert!(!w.join("untrusted/hello.ko").exists());

    // A key that does not belong to the certificate stops the run before anything is built.
    let (out, _, _) = signed_build("build", &crawl, w, "mismatch", &key, &cert2, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not belong to the certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
