//! `kmodfarm preflight` against sid's real kernels: examples/pair built with the GCC 16 builder and
//! boot-tested on x86_64 and aarch64, into its own report and throwaway store only. sid's Release on the
//! mirror is frozen past its Valid-Until: without `--allow-expired-release sid` the run must fail up front.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// `kmodfarm preflight examples/pair --suite sid` on both architectures, run in `dir` (so that any default
/// path would land there) with KMODFARM_STORE naming a production store that must stay untouched.
fn preflight(dir: &Path, production: &Path, extra: &[&str]) -> Command {
    let mut c = kmodfarm();
    c.current_dir(dir).env("KMODFARM_STORE", production);
    c.arg("preflight")
        .arg(workspace().join("examples/pair"))
        .args(["--suite", "sid", "--arch", "x86_64,aarch64"])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report")
        .arg(dir.join("report"));
    c.args(extra);
    c
}

/// sid's newest kernel per architecture as a crawl lists it, or `None` (skip) when the mirror is
/// unreachable outside CI.
fn sid_kernels(dir: &Path) -> Option<Vec<(String, String)>> {
    let out_file = dir.join("sid.json");
    let out = run(kmodfarm()
        .args([
            "kernels",
            "crawl",
            "--suite",
            "sid",
            "--arch",
            "x86_64,aarch64",
        ])
        .args(["--flavour", "amd64,arm64", "--allow-expired-release", "sid"])
        .arg("--out")
        .arg(&out_file));
    if !out.status.success() {
        assert!(
            !in_ci(),
            "the Debian mirror must be reachable under CI=true"
        );
        eprintln!("skipping: the Debian mirror is unreachable");
        return None;
    }
    let list = read_json(&out_file);
    let mut newest: Vec<(String, String)> = Vec::new();
    for arch in ["x86_64", "aarch64"] {
        // The crawl sorts each architecture's kernels oldest first.
        let last = list["Debian"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|e| e["arch"] == arch)
            .unwrap_or_else(|| panic!("sid has no {arch} kernel: {list:#}"));
        newest.push((arch.into(), last["kernelrelease"].as_str().unwrap().into()));
    }
    Some(newest)
}

#[test]
fn preflight_builds_and_boots_sid_into_its_own_report_only() {
    let dir = tempfile::tempdir().unwrap();
    let Some(expected) = sid_kernels(dir.path()) else {
        return;
    };
    let production = dir.path().join("production-store");
    let report = dir.path().join("report");

    // A production store is refused outright, before anything is read.
    let out = run(&mut preflight(
        dir.path(),
        &production,
        &["--store", production.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("preflight never publishes"));

    // sid's Release is past its Valid-Until: refused up front, naming it and the option accepting it.
    let out = run(&mut preflight(dir.path(), &production, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Release of sid expired on")
            && stderr.contains("--allow-expired-release sid accepts it"),
        "{stderr}"
    );
    assert!(!report.join("preflight.json").exists());

    let started = std::time::Instant::now();
    let out = run(&mut preflight(
        dir.path(),
        &production,
        &["--allow-expired-release", "sid", "--json"],
    ));
    eprintln!("preflight took {:?}", started.elapsed());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pf = read_json(&report.join("preflight.json"));
    assert_eq!(printed, pf, "--json prints preflight.json");
    assert_eq!(pf["schema"], "kmodfarm-preflight/1");
    assert_eq!(pf["suites"], serde_json::json!(["sid"]));
    assert_eq!(pf["boot_test"], true);
    assert_eq!(pf["summary"]["kernels"], 2, "{pf:#}");

    let kernels = pf["kernels"].as_array().unwrap();
    for (k, (arch, release)) in kernels.iter().zip(&expected) {
        assert_eq!(k["driver"], "pair");
        assert_eq!(k["suite"], "sid");
        assert_eq!(k["arch"], arch.as_str());
        assert_eq!(
            k["kernel_release"],
            release.as_str(),
            "sid's newest {arch} kernel"
        );
        assert!(
            k["builder"]
                .as_str()
                .is_some_and(|b| b.starts_with("debian-sid-gcc16-")),
            "{k:#}"
        );
        let build_log = std::fs::read_to_string(k["log"].as_str().unwrap()).unwrap();
        assert!(
            build_log.contains(&format!("vermagic {release}")),
            "{build_log}"
        );
        match k["result"].as_str() {
            Some("passed") => {
                assert!(k.get("first_error").is_none() && k.get("newest_passed").is_none());
                let boot = std::fs::read_to_string(k["boot_log"].as_str().unwrap()).unwrap();
                assert!(boot.contains("KMF:DONE"), "{boot}");
                assert!(
                    boot.contains("pair_consumer: producer answered 42"),
                    "{boot}"
                );
            }
            _ => {
                // A failure names its first error line and, with one sid kernel per architecture, no
                // older kernel that passed.
                assert!(
                    k["first_error"].as_str().is_some_and(|l| !l.is_empty()),
                    "{k:#}"
                );
                assert!(k["newest_passed"].is_null(), "{k:#}");
            }
        }
    }
    for f in ["results.json", "junit.xml", "index.html"] {
        assert!(report.join(f).is_file(), "{f}");
    }

    // Modules that passed went to the throwaway store under the report; no store of the user's exists.
    let store = report.join("throwaway-store");
    let published: Vec<String> = files(&store)
        .into_iter()
        .filter(|f| f.ends_with("metadata.json"))
        .collect();
    assert_eq!(
        published.len() as u64,
        pf["summary"]["passed"].as_u64().unwrap(),
        "{published:?}"
    );
    assert!(!production.exists(), "KMODFARM_STORE was written to");
    assert!(
        !dir.path().join("artifacts").exists(),
        "a default path was written to"
    );

    // Both kernels boot with the modules loaded: `build --boot-test` passes them, and so must preflight.
    for k in kernels {
        assert_eq!(
            k["result"], "passed",
            "{} {}: {}",
            k["arch"], k["kernel_release"], k["first_error"]
        );
    }
    assert_eq!(out.status.code(), Some(0));
}
