//! Boot tests: modules built for bookworm's kernels, loaded into those kernels under QEMU.

use std::path::{Path, PathBuf};

use crate::util::*;

const BOOKWORM_61: &str = r"^6\.1\.0-[0-9]+-(amd64|arm64)$";
const BOOKWORM_61_AMD64: &str = r"^6\.1\.0-[0-9]+-amd64$";

fn build(projects: &[&Path], crawl: &Path, store: &Path, report: &Path, arch: &str, release: &str) {
    let mut c = kmodfarm();
    c.arg("build").args(projects).arg("--kernels").arg(crawl);
    c.arg("--store").arg(store).arg("--report-dir").arg(report);
    c.arg("--cache").arg(cache_dir());
    c.args(["--distro", "debian", "--latest", "1", "--arch", arch]);
    c.args(["--kernel-release", release]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "the build must succeed");
}

fn boot_test(store: &Path, report: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut c = kmodfarm();
    c.arg("boot-test").arg("--store").arg(store);
    c.arg("--report-dir")
        .arg(report)
        .arg("--cache")
        .arg(cache_dir());
    c.args(extra).arg("--json");
    let out = run(&mut c);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json)
}

/// A driver project in `dir/<name>`: one module `<name>.ko` from `source`, plus extra kmodfarm.toml text.
fn project(dir: &Path, name: &str, source: &str, toml_extra: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("Kbuild"), format!("obj-m += {name}.o\n")).unwrap();
    std::fs::write(p.join(format!("{name}.c")), source).unwrap();
    std::fs::write(
        p.join("kmodfarm.toml"),
        format!(
            "[driver]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[build]\nmodules = [\"{name}.ko\"]\n{toml_extra}"
        ),
    )
    .unwrap();
    p
}

fn module_source(name: &str, init_body: &str) -> String {
    format!(
        "// SPDX-License-Identifier: GPL-2.0\n#include <linux/delay.h>\n#include <linux/init.h>\n\
         #include <linux/module.h>\n\nstatic int __init {name}_init(void)\n{{\n{init_body}\n}}\n\n\
         static void __exit {name}_exit(void)\n{{\n}}\n\nmodule_init({name}_init);\nmodule_exit({name}_exit);\n\
         MODULE_LICENSE(\"GPL\");\n"
    )
}

/// QEMU processes started for boot tests of this cache that are still running.
fn leftover_qemus() -> Vec<String> {
    let marker = cache_dir().join("boot/work").display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with("qemu-system") && cmdline.contains(&marker) {
                out.push(cmdline);
            }
        }
    }
    out
}

#[test]
fn examples_pass_on_bookworm_x86_64_and_aarch64() {
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let (hello, pair) = (ws.join("examples/hello"), ws.join("examples/pair"));
    build(
        &[&hello, &pair],
        &crawl,
        &store,
        &report,
        "x86_64,aarch64",
        BOOKWORM_61,
    );

    // A copy of hello with a check script that looks for the module in sysfs: it runs in the guest.
    let checked = dir.path().join("checked/hello");
    std::fs::create_dir_all(checked.join("t")).unwrap();
    std::fs::write(
        checked.join("kmodfarm.toml"),
        "[driver]\nname = \"hello\"\n\n[boot]\ncheck = \"t/check.sh\"\n",
    )
    .unwrap();
    std::fs::write(
        checked.join("t/check.sh"),
        "test -d /sys/module/hello || exit 3\necho hello-check-ran\n",
    )
    .unwrap();

    let started = std::time::Instant::now();
    let (code, results) = boot_test(
        &store,
        &report,
        &[checked.to_str().unwrap(), "--timeout", "120"],
    );
    eprintln!("boot tests took {:?}", started.elapsed());
    assert_eq!(code, Some(0), "{results:#}");
    let all = results.as_array().unwrap();
    assert_eq!(
        all.len(),
        4,
        "hello and pair on x86_64 and aarch64: {results:#}"
    );
    for r in all {
        assert_eq!(r["result"], "passed", "{r:#}");
        assert_eq!(r["taint"], 12288, "O and E only: {r:#}");
        let log = std::fs::read_to_string(report.join(r["log"].as_str().unwrap())).unwrap();
        assert!(log.contains("KMF:DONE"), "{log}");
    }
    for r in by_driver(&results, "pair") {
        assert_eq!(
            r["modules_loaded"],
            serde_json::json!(["pair_producer", "pair_consumer"]),
            "{r:#}"
        );
        let log = std::fs::read_to_string(report.join(r["log"].as_str().unwrap())).unwrap();
        let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} missing:\n{log}"));
        assert!(at("KMF:LOAD:OK:pair_producer") < at("KMF:LOAD:OK:pair_consumer"));
        assert!(at("KMF:UNLOAD:OK:pair_consumer") < at("KMF:UNLOAD:OK:pair_producer"));
        assert!(log.contains("pair_consumer: producer answered 42"), "{log}");
    }
    for r in by_driver(&results, "hello") {
        let log = std::fs::read_to_string(report.join(r["log"].as_str().unwrap())).unwrap();
        assert!(log.contains("hello-check-ran"), "{log}");
        assert!(log.contains("KMF:CHECK:0"), "{log}");
    }
    let arches: Vec<_> = all
        .iter()
        .map(|r| r["architecture"].as_str().unwrap())
        .collect();
    assert!(arches.contains(&"x86_64") && arches.contains(&"aarch64"));
    assert!(report.join("boot-test.json").is_file());
}

#[test]
fn broken_modules_fail_with_their_class() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let src = dir.path().join("src");
    let nullderef = project(
        &src,
        "nullderef",
        &module_source(
            "nullderef",
            "\tint *volatile p = NULL;\n\n\tpr_info(\"nullderef: writing through NULL\\n\");\n\t*p = 42;\n\treturn 0;",
        ),
        "",
    );
    let hang = project(
        &src,
        "hang",
        &module_source(
            "hang",
            "\tpr_info(\"hang: init never returns\\n\");\n\tfor (;;)\n\t\tmsleep(1000);\n\treturn 0;",
        ),
        "\n[boot]\ntimeout_secs = 20\n",
    );
    let checkfail = project(
        &src,
        "checkfail",
        &module_source("checkfail", "\treturn 0;"),
        "\n[boot]\ncheck = \"check.sh\"\n",
    );
    std::fs::write(checkfail.join("check.sh"), "test -e /proc/no-such-entry\n").unwrap();
    build(
        &[&nullderef, &hang, &checkfail],
        &crawl,
        &store,
        &report,
        "x86_64",
        BOOKWORM_61_AMD64,
    );

    let started = std::time::Instant::now();
    let projects = [&nullderef, &hang, &checkfail].map(|p| p.to_str().unwrap().to_string());
    let mut extra: Vec<&str> = projects.iter().map(String::as_str).collect();
    extra.extend(["--timeout", "120"]);
    let (code, results) = boot_test(&store, &report, &extra);
    let elapsed = started.elapsed();
    assert_eq!(code, Some(1), "{results:#}");

    let one = |driver: &str| {
        let r = by_driver(&results, driver);
        assert_eq!(r.len(), 1, "{results:#}");
        r[0].clone()
    };
    let oops = one("nullderef");
    assert_eq!(oops["failure_class"], "kernel_warning", "{oops:#}");
    let msg = oops["message"].as_str().unwrap();
    assert!(msg.contains("while loading nullderef"), "{msg}");
    assert!(msg.contains("NULL pointer dereference"), "{msg}");

    let timeout = one("hang");
    assert_eq!(timeout["failure_class"], "boot_timeout", "{timeout:#}");
    assert!(
        timeout["message"]
            .as_str()
            .unwrap()
            .contains("loading hang did not finish within 20 s"),
        "{timeout:#}"
    );
    let log = std::fs::read_to_string(report.join(timeout["log"].as_str().unwrap())).unwrap();
    assert!(log.contains("hang: init never returns"), "{log}");
    // The hard limit is the project's 20 s, not --timeout's 120 s, and nothing is left running.
    assert!(elapsed.as_secs() < 100, "{elapsed:?}");
    assert!(leftover_qemus().is_empty(), "{:?}", leftover_qemus());

    let check = one("checkfail");
    assert_eq!(check["failure_class"], "check_failed", "{check:#}");
    assert_eq!(check["modules_loaded"], serde_json::json!(["checkfail"]));
}

#[test]
fn a_module_for_another_kernel_fails_to_load() {
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    build(
        &[&ws.join("examples/hello")],
        &crawl,
        &store,
        &report,
        "x86_64",
        BOOKWORM_61_AMD64,
    );
    // Publish the 6.1 module under bookworm's 6.12 kernel, as if built against the wrong headers.
    let list = read_json(&crawl);
    let other = list["Debian"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["arch"] == "x86_64"
                && e["kernelrelease"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("+deb12-amd64") && r.starts_with("6.12."))
        })
        .expect("bookworm has a 6.12 kernel")
        .clone();
    let release = other["kernelrelease"].as_str().unwrap();
    let arch_dir = store.join("hello/0.1.0/debian/x86_64");
    let built = std::fs::read_dir(&arch_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fake = arch_dir.join(release);
    std::fs::create_dir_all(&fake).unwrap();
    let mut meta = read_json(&built.join("metadata.json"));
    let artifacts = meta["artifacts"].as_str().unwrap();
    std::fs::create_dir_all(fake.join(artifacts)).unwrap();
    std::fs::copy(
        published_file(&built, "hello.ko"),
        fake.join(artifacts).join("hello.ko"),
    )
    .unwrap();
    meta["kernel_release"] = release.into();
    meta["variant"]["kversion"] = release.into();
    meta["variant"]["suite"] = other["suite"].clone();
    meta["variant"]["packageversion"] = other["packageversion"].clone();
    meta["variant"]["output"] = format!("0.1.0/debian/x86_64/{release}").into();
    std::fs::write(fake.join("metadata.json"), meta.to_string()).unwrap();

    let (code, results) = boot_test(
        &store,
        &report,
        &["--kernel-release", &format!("^{}$", regex_escape(release))],
    );
    assert_eq!(code, Some(1), "{results:#}");
    let r = &results[0];
    assert_eq!(r["failure_class"], "load_failed", "{r:#}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("vermagic") || msg.contains("symbol version mismatch"),
        "{msg}"
    );
    assert!(msg.contains("hello has vermagic '6.1.0-"), "{msg}");
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[test]
fn in_tree_dependencies_load_first() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    // A V4L2-style driver: needs videodev, which needs mc; both are modules of the kernel image package.
    let source = "// SPDX-License-Identifier: GPL-2.0\n#include <linux/init.h>\n#include <linux/module.h>\n\
                  #include <media/v4l2-dev.h>\n\nstatic int __init v4ldep_init(void)\n{\n\
                  \tstruct video_device *vdev = video_device_alloc();\n\n\tif (!vdev)\n\t\treturn -ENOMEM;\n\
                  \tvideo_device_release(vdev);\n\tpr_info(\"v4ldep: videodev answered\\n\");\n\treturn 0;\n}\n\n\
                  static void __exit v4ldep_exit(void)\n{\n}\n\nmodule_init(v4ldep_init);\nmodule_exit(v4ldep_exit);\n\
                  MODULE_LICENSE(\"GPL\");\n";
    let v4ldep = project(&dir.path().join("src"), "v4ldep", source, "");
    build(
        &[&v4ldep],
        &crawl,
        &store,
        &report,
        "x86_64,aarch64",
        BOOKWORM_61,
    );
    let (code, results) = boot_test(&store, &report, &[]);
    assert_eq!(code, Some(0), "{results:#}");
    let all = results.as_array().unwrap();
    assert_eq!(all.len(), 2, "{results:#}");
    for r in all {
        assert_eq!(
            r["load_order"],
            serde_json::json!([
                {"name": "mc", "in_tree": true},
                {"name": "videodev", "in_tree": true},
                {"name": "v4ldep", "in_tree": false}
            ]),
            "{r:#}"
        );
        assert_eq!(
            r["modules_loaded"],
            serde_json::json!(["mc", "videodev", "v4ldep"]),
            "{r:#}"
        );
        let log = std::fs::read_to_string(report.join(r["log"].as_str().unwrap())).unwrap();
        assert!(log.contains("KMF:UNLOAD:OK:mc"), "{log}");
    }
}

/// `sync` of `projects` for the newest x86_64 kernels whose release matches `kernel_release`, into `store`
/// with reports in `report`.
fn sync_on(
    kernel_release: &str,
    projects: &[&Path],
    crawl: &Path,
    store: &Path,
    report: &Path,
    options: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let mut c = kmodfarm();
    c.arg("sync").args(projects);
    c.arg("--kernels").arg(crawl);
    c.arg("--store").arg(store).arg("--report-dir").arg(report);
    c.arg("--cache").arg(cache_dir());
    c.args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"]);
    c.args(["--kernel-release", kernel_release]);
    c.args(options).args(extra);
    run(&mut c)
}

/// `sync --boot-test`: a variant is published only after its modules loaded in the real kernel; one that
/// oopses fails with its class and stays out of the store and the published matrix.
#[test]
fn sync_with_boot_test_publishes_only_what_loads() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let src = dir.path().join("src");
    let nullderef = project(
        &src,
        "oopser",
        &module_source(
            "oopser",
            "\tint *volatile p = NULL;\n\n\t*p = 42;\n\treturn 0;",
        ),
        "",
    );
    let pair = workspace().join("examples/pair");
    let sync = |extra: &[&str]| {
        sync_on(
            BOOKWORM_61_AMD64,
            &[&pair, &nullderef],
            &crawl,
            &store,
            &report,
            &["--boot-test"],
            extra,
        )
    };
    let out = sync(&[]);
    assert_eq!(out.status.code(), Some(1), "the oopsing driver fails");
    let results = read_json(&report.join("results.json"));
    let pair = by_driver(&results, "pair");
    assert_eq!(pair[0]["result"], "success", "{results:#}");
    assert!(pair[0]["durations"]["boot_secs"].as_f64().unwrap() > 0.0);
    let oops = by_driver(&results, "oopser");
    assert_eq!(oops[0]["result"], "failed");
    assert_eq!(oops[0]["class"], "kernel_warning", "{results:#}");
    let boot_log = std::fs::read_to_string(oops[0]["boot_log"].as_str().unwrap()).unwrap();
    assert!(boot_log.contains("NULL pointer dereference"), "{boot_log}");

    let published = files(&store);
    assert!(
        published
            .iter()
            .all(|f| !f.starts_with("oopser/0.1.0/debian")),
        "nothing of the failed variant is published: {published:#?}"
    );
    let meta_key = published
        .iter()
        .find(|f| f.starts_with("pair/") && f.ends_with("metadata.json"))
        .unwrap();
    let meta = read_json(&store.join(meta_key));
    assert_eq!(
        meta["boot"]["load_order"],
        serde_json::json!(["pair_producer", "pair_consumer"])
    );
    assert!(published_file(store.join(meta_key).parent().unwrap(), "boot.log").is_file());
    let oops_matrix = read_json(&store.join("oopser/0.1.0/matrix.json"));
    assert_eq!(oops_matrix, serde_json::json!([]), "retried next night");

    // The next night, pair is up to date (it passed its boot test) and only the failed driver is retried.
    let out = sync(&[]);
    assert_eq!(out.status.code(), Some(1));
    let results = read_json(&report.join("results.json"));
    assert_eq!(by_driver(&results, "pair")[0]["result"], "up_to_date");
    assert_eq!(by_driver(&results, "oopser")[0]["result"], "failed");
}

/// `--boot-test` over variants an earlier run published without one: their published modules (checked
/// against the record's digests) are booted, not rebuilt; the boot is added to the record; a second identical
/// run does nothing.
#[test]
fn boot_test_of_published_variants_boots_them_once_without_rebuilding() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let pair = workspace().join("examples/pair");
    // bookworm's 6.1 and trixie's 6.12.
    let releases = r"^(6\.1\.0-[0-9]+|6\.12\.[0-9]+\+deb13)-amd64$";
    let sync = |extra: &[&str]| sync_on(releases, &[&pair], &crawl, &store, &report, &[], extra);
    assert_eq!(sync(&[]).status.code(), Some(0));
    let metas: Vec<String> = files(&store)
        .into_iter()
        .filter(|f| f.starts_with("pair/") && f.ends_with("metadata.json"))
        .collect();
    assert_eq!(metas.len(), 2, "bookworm's and trixie's: {metas:?}");
    let meta_key = metas[0].clone();
    let before = read_json(&store.join(&meta_key));
    assert!(before.get("boot").is_none());
    let module = published_file(store.join(&meta_key).parent().unwrap(), "pair_producer.ko");
    let module_bytes = std::fs::read(&module).unwrap();

    // First run with --boot-test: booted from the store, not rebuilt, the boot recorded.
    let out = sync(&["--boot-test"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("up to date, booted"), "{said}");
    let junit = std::fs::read_to_string(report.join("junit.xml")).unwrap();
    assert!(
        !junit.contains("<skipped"),
        "a boot that ran is a test that ran: {junit}"
    );
    let results = read_json(&report.join("results.json"));
    let pairs = by_driver(&results, "pair");
    assert_eq!(pairs.len(), 2);
    for pair in pairs {
        assert_eq!(pair["result"], "up_to_date", "{results:#}");
        assert!(pair["boot_log"].is_string(), "{pair:#}");
        assert_eq!(pair["durations"]["build_secs"], 0.0, "no rebuild: {pair:#}");
        assert!(pair["durations"]["boot_secs"].as_f64().unwrap() > 0.0);
    }
    for m in &metas {
        assert!(read_json(&store.join(m))["boot"].is_object(), "{m}");
    }
    let after = read_json(&store.join(&meta_key));
    assert_eq!(
        after["boot"]["load_order"],
        serde_json::json!(["pair_producer", "pair_consumer"]),
        "{after:#}"
    );
    assert_eq!(after["build_key"], before["build_key"]);
    assert_eq!(after["modules"], before["modules"]);
    assert_eq!(std::fs::read(&module).unwrap(), module_bytes);
    assert!(published_file(store.join(&meta_key).parent().unwrap(), "boot.log").is_file());

    // Second identical run: nothing to build, nothing to boot.
    let out = sync(&["--boot-test"]);
    assert_eq!(out.status.code(), Some(0));
    let results = read_json(&report.join("results.json"));
    for pair in by_driver(&results, "pair") {
        assert_eq!(pair["result"], "up_to_date", "{results:#}");
        assert!(pair.get("boot_log").is_none(), "booted again: {pair:#}");
        assert_eq!(pair["durations"]["boot_secs"], 0.0);
    }
    assert_eq!(read_json(&store.join(&meta_key)), after);
}
