//! DKMS packages as their authors ship them: `examples/dkms-*` have a `dkms.conf` and no `kmodfarm.toml`,
//! and build, boot and publish on Debian's bookworm and trixie kernels, both architectures.

use std::path::Path;

use crate::util::*;

/// Debian's 6.1 (bookworm) and 6.12 (trixie) kernels, both architectures.
const BOOKWORM_AND_TRIXIE: &str = r"^(6\.1\.0-[0-9]+|6\.12\.[0-9]+\+deb13)-(amd64|arm64)$";

fn is_bookworm(r: &serde_json::Value) -> bool {
    r["entry"]["kversion"]
        .as_str()
        .unwrap()
        .starts_with("6.1.0-")
}

/// `sync` of `projects` for Debian's newest kernel of each line among `release` (a regular expression).
struct Sync<'a> {
    crawl: &'a Path,
    store: &'a Path,
    report: &'a Path,
}

impl Sync<'_> {
    fn run(&self, projects: &[&Path], arch: &str, release: &str, extra: &[&str]) -> i32 {
        let mut c = kmodfarm();
        c.arg("sync")
            .args(projects)
            .arg("--kernels")
            .arg(self.crawl);
        c.arg("--store").arg(self.store);
        c.arg("--report-dir").arg(self.report);
        c.arg("--cache").arg(cache_dir());
        c.args(["--distro", "debian", "--latest", "1", "--arch", arch]);
        c.args(["--kernel-release", release]);
        c.args(extra);
        run(&mut c).status.code().unwrap_or(-1)
    }
}

#[test]
fn dkms_packages_build_boot_and_exclude_from_their_dkms_conf() {
    let Some(crawl) = debian_crawl() else { return };
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let (subdir, pair, config) = (
        ws.join("examples/dkms-subdir"),
        ws.join("examples/dkms-pair"),
        ws.join("examples/dkms-config"),
    );
    for p in [&subdir, &pair, &config] {
        assert!(!p.join("kmodfarm.toml").exists(), "{}", p.display());
    }
    let projects = [subdir.as_path(), pair.as_path(), config.as_path()];
    let sync = Sync {
        crawl: &crawl,
        store: &store,
        report: &report,
    };
    let code = sync.run(
        &projects,
        "x86_64,aarch64",
        BOOKWORM_AND_TRIXIE,
        &["--boot-test"],
    );
    let results = read_json(&report.join("results.json"));
    assert_eq!(code, 0, "excluded variants are no failure: {results:#}");

    // Names and versions come from dkms.conf.
    let subdir_results = by_driver(&results, "kmf-subdir");
    assert_eq!(subdir_results.len(), 4, "{results:#}");
    for r in &subdir_results {
        assert_eq!(r["driver_version"], "1.4.0");
        assert_eq!(r["result"], "success", "{r:#}");
        assert!(r["durations"]["boot_secs"].as_f64().unwrap() > 0.0, "{r:#}");
        let m = &r["modules"][0];
        assert_eq!(m["file_name"], "kmf_subdir.ko");
        assert_eq!(m["relative_path"], "src/kmf_subdir.ko");
        assert_eq!(m["destination"], "updates/dkms/kmf_subdir.ko");
        // The patch applies to the 6.1 series only.
        let fields = m["modinfo"]["fields"].to_string();
        assert_eq!(
            fields.contains("kmf_series"),
            is_bookworm(r),
            "{}: {fields}",
            r["label"]
        );
        let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
        assert!(log.contains("evaluating dkms.conf"), "{log}");
        assert!(log.contains("PRE_BUILD: gen-header.sh"), "{log}");
        assert!(
            log.contains("check-built.sh: src/kmf_subdir.ko is there"),
            "{log}"
        );
        // The Makefile found the headers at /lib/modules/<release>/build, as on a DKMS host.
        let release = r["kernel_release"].as_str().unwrap();
        assert!(log.contains(&format!("-C src KVER={release}")), "{log}");
        assert_eq!(
            log.contains("applying patches/series-6.1.patch"),
            is_bookworm(r)
        );
        let boot = std::fs::read_to_string(r["boot_log"].as_str().unwrap()).unwrap();
        let release = r["kernel_release"].as_str().unwrap();
        assert!(
            boot.contains(&format!("kmf_subdir: loaded, built for {release}")),
            "PRE_BUILD's header names the kernel: {boot}"
        );
    }

    let pair_results = by_driver(&results, "kmf-pair");
    assert_eq!(pair_results.len(), 4);
    for r in &pair_results {
        assert_eq!(r["result"], "success", "{r:#}");
        let dests: Vec<&str> = r["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            ["updates/dkms/kmf_core.ko", "extra/kmf/kmf_client.ko"],
            "{r:#}"
        );
        let boot = std::fs::read_to_string(r["boot_log"].as_str().unwrap()).unwrap();
        assert!(boot.contains("kmf_client: core answered 7"), "{boot}");
    }

    // kmf-damon needs DAMON: Debian's 6.1 kernels lack it and are excluded, its 6.12 kernels build.
    let damon = by_driver(&results, "kmf-damon");
    assert_eq!(damon.len(), 4);
    for r in &damon {
        if is_bookworm(r) {
            assert_eq!(r["result"], "excluded", "{r:#}");
            let reason = r["reason"].as_str().unwrap();
            assert!(reason.contains("BUILD_EXCLUSIVE_KERNEL"), "{reason}");
        } else {
            assert_eq!(r["result"], "success", "{r:#}");
            assert_eq!(r["modules"][0]["destination"], "extra/kmf_damon.ko");
        }
    }
    let matrix = read_json(&store.join("kmf-damon/0.3.0/matrix.json"));
    let outputs: Vec<&str> = matrix
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["output"].as_str().unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "only trixie's kernels: {outputs:?}");
    assert!(outputs.iter().all(|o| o.contains("+deb13-")), "{outputs:?}");

    // Reported as excluded everywhere: JUnit skips them, the HTML report greys them.
    let junit = std::fs::read_to_string(report.join("junit.xml")).unwrap();
    assert_eq!(
        junit
            .matches("<skipped message=\"excluded: dkms.conf:")
            .count(),
        2,
        "{junit}"
    );
    assert!(junit.contains("failures=\"0\""), "{junit}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("class=\"v excluded\""), "{html}");
    assert!(html.contains("2 excluded"), "{html}");

    // The next night nothing is rebuilt, and the exclusions are known from the store without building.
    let code = sync.run(
        &projects,
        "x86_64,aarch64",
        BOOKWORM_AND_TRIXIE,
        &["--boot-test"],
    );
    assert_eq!(code, 0);
    let results = read_json(&report.join("results.json"));
    for r in results.as_array().unwrap() {
        let want = if r["driver"] == "kmf-damon" && is_bookworm(r) {
            "excluded"
        } else {
            "up_to_date"
        };
        assert_eq!(r["result"], want, "{r:#}");
        assert!(r["log"].is_null(), "nothing ran for {}", r["label"]);
    }
}

/// A hostile `dkms.conf` runs in the sandbox like a hostile Makefile: no network, nothing of the host
/// outside the sandbox's view, no way out of its time, and values that try to lead kmodfarm's own paths
/// out of the project are refused.
#[test]
fn hostile_dkms_conf_is_contained() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let secret = dir.path().join("host-secret.txt");
    std::fs::write(&secret, "KMF-HOST-SECRET\n").unwrap();
    let outside = dir.path().join("written-from-dkms-conf");
    let project = |name: &str, conf: &str| {
        let p = dir.path().join("projects").join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("dkms.conf"),
            format!("PACKAGE_NAME=\"{name}\"\nPACKAGE_VERSION=\"1.0\"\n{conf}\n"),
        )
        .unwrap();
        std::fs::write(
            p.join("Kbuild"),
            format!("obj-m := {}.o\n", name.replace('-', "_")),
        )
        .unwrap();
        std::fs::write(
            p.join(format!("{}.c", name.replace('-', "_"))),
            "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
        )
        .unwrap();
        p
    };
    let cases = [
        (
            "net-probe",
            "exec 3<>/dev/tcp/127.0.0.1/53 && echo KMF-NET-OPEN\nBUILT_MODULE_NAME[0]=net_probe\n"
                .to_string(),
            None,
        ),
        (
            "reads-host",
            format!(
                "cat {} && echo KMF-READ-OK\nBUILT_MODULE_NAME[0]=reads_host\n",
                secret.display()
            ),
            None,
        ),
        (
            "writes-host",
            format!(
                "echo x > {} && echo KMF-WRITE-OK\nBUILT_MODULE_NAME[0]=writes_host\n",
                outside.display()
            ),
            None,
        ),
        (
            "loops",
            "while :; do :; done\n".to_string(),
            Some("timeout"),
        ),
        (
            "escapes-location",
            "BUILT_MODULE_NAME[0]=escapes_location\nBUILT_MODULE_LOCATION[0]=../../../etc\n"
                .to_string(),
            Some("config_error"),
        ),
        (
            "escapes-dest",
            "BUILT_MODULE_NAME[0]=escapes_dest\nDEST_MODULE_LOCATION[0]=/../../../etc/cron.d\n"
                .to_string(),
            Some("config_error"),
        ),
        (
            "escapes-patch",
            "BUILT_MODULE_NAME[0]=escapes_patch\nPATCH[0]=../../../../etc/shadow\n".to_string(),
            Some("config_error"),
        ),
        ("exits-early", "exit 0\n".to_string(), Some("config_error")),
    ];
    let dirs: Vec<_> = cases.iter().map(|(n, c, _)| project(n, c)).collect();
    let mut c = kmodfarm();
    c.arg("build").args(&dirs).arg("--kernels").arg(&crawl);
    c.arg("--store")
        .arg(&store)
        .arg("--report-dir")
        .arg(&report);
    c.arg("--cache").arg(cache_dir());
    c.args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"]);
    c.args([
        "--kernel-release",
        r"^6\.1\.0-[0-9]+-amd64$",
        "--timeout",
        "30",
    ]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "some fail");
    let results = read_json(&report.join("results.json"));
    for (name, _, want) in &cases {
        let r = by_driver(&results, name);
        assert_eq!(r.len(), 1, "{name}: {results:#}");
        let r = r[0];
        let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap_or_default();
        for leak in [
            "KMF-NET-OPEN",
            "KMF-READ-OK",
            "KMF-HOST-SECRET",
            "KMF-WRITE-OK",
        ] {
            assert!(!log.contains(leak), "{name}: {leak} in\n{log}");
        }
        match want {
            // Contained, then built: the sandbox refused what it tried.
            None => assert_eq!(r["result"], "success", "{name}: {r:#}"),
            Some(class) => {
                assert_eq!(r["result"], "failed", "{name}: {r:#}");
                assert_eq!(r["class"], *class, "{name}: {r:#}");
            }
        }
    }
    assert!(!outside.exists(), "dkms.conf wrote outside its sandbox");
    assert!(
        files(&store).iter().all(|f| !f.contains("escapes")),
        "nothing of a refused variant is published"
    );
}

/// `[install]` beside a `dkms.conf`: the destinations dkms.conf gives, the modprobe configuration, the
/// firmware and the load order go into `metadata.json`, and `kmodfarm install` puts everything where it
/// says, verified.
#[test]
fn delivery_metadata_is_published_and_installed() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let project = dir.path().join("kmf-pair");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(workspace().join("examples/dkms-pair"))
        .arg(&project)
        .status()
        .unwrap();
    assert!(copy.success());
    // `kmodfarm init` fills a kmodfarm.toml in from dkms.conf, and refuses to replace it.
    let out = run(kmodfarm().arg("init").arg(&project).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["name"], "kmf-pair");
    assert_eq!(init["from_dkms_conf"], true);
    let written = std::fs::read_to_string(project.join("kmodfarm.toml")).unwrap();
    assert!(written.contains("# version = \"2.0.1\""), "{written}");
    assert!(
        written.contains("kmf_core (/updates/dkms), kmf_client (/extra/kmf)"),
        "{written}"
    );
    assert_eq!(
        run(kmodfarm().arg("init").arg(&project)).status.code(),
        Some(2)
    );
    std::fs::create_dir_all(project.join("fw")).unwrap();
    std::fs::write(project.join("fw/kmf-pair.bin"), b"KMF FIRMWARE\x00\x01\x02").unwrap();
    std::fs::write(project.join("kmf-pair.conf"), "blacklist kmf_legacy\n").unwrap();
    std::fs::write(
        project.join("kmodfarm.toml"),
        "[install]\nload_order = [\"kmf_core\", \"kmf_client\"]\nunload_first = [\"kmf_legacy\"]\n\
         firmware = [\"fw/kmf-pair.bin\"]\nmodprobe_conf = \"kmf-pair.conf\"\n\
         [install.params]\nkmf_client = \"verbose=1\"\n",
    )
    .unwrap();
    let sync = Sync {
        crawl: &crawl,
        store: &store,
        report: &report,
    };
    let code = sync.run(
        &[project.as_path()],
        "x86_64",
        r"^6\.1\.0-[0-9]+-amd64$",
        &[],
    );
    assert_eq!(code, 0);
    let matrix = read_json(&store.join("kmf-pair/2.0.0/matrix.json"));
    let entry = matrix[0].clone();
    let prefix = store
        .join("kmf-pair")
        .join(entry["output"].as_str().unwrap());
    let meta = read_json(&prefix.join("metadata.json"));
    let delivery = &meta["delivery"];
    assert_eq!(
        delivery["load_order"],
        serde_json::json!(["kmf_core", "kmf_client"])
    );
    assert_eq!(delivery["unload_first"], serde_json::json!(["kmf_legacy"]));
    assert_eq!(
        delivery["modprobe_conf"],
        "options kmf_client verbose=1\nblacklist kmf_legacy\n"
    );
    assert_eq!(delivery["firmware"][0]["name"], "kmf-pair.bin");
    let sums = std::fs::read_to_string(published_file(&prefix, "SHA256SUMS")).unwrap();
    assert!(sums.contains("firmware-kmf-pair.bin"), "{sums}");

    let root = debian_host_root(dir.path());
    let release = entry["kversion"].as_str().unwrap();
    let version = format!(
        "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
        entry["packageversion"].as_str().unwrap()
    );
    let mut c = kmodfarm();
    c.args(["install", "--store"])
        .arg(&store)
        .arg("--root")
        .arg(&root);
    c.args(["--driver", "kmf-pair", "--kernel-release", release]);
    c.args(["--kernel-version", &version, "--arch", "x86_64", "--json"]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0));
    let modules = root.join("lib/modules").join(release);
    assert!(modules.join("updates/dkms/kmf_core.ko").is_file());
    assert!(modules.join("extra/kmf/kmf_client.ko").is_file());
    assert_eq!(
        std::fs::read(root.join("lib/firmware/kmf-pair.bin")).unwrap(),
        b"KMF FIRMWARE\x00\x01\x02"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/modprobe.d/kmodfarm-kmf-pair.conf")).unwrap(),
        "options kmf_client verbose=1\nblacklist kmf_legacy\n"
    );
}

/// The same class for any project: `[build]` requirements in `kmodfarm.toml` are checked against the
/// kernel's release, architecture and `.config` before anything is compiled.
#[test]
fn kmodfarm_toml_requirements_exclude_before_compiling() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let project = dir.path().join("hello");
    std::fs::create_dir_all(&project).unwrap();
    for f in ["Kbuild", "hello.c"] {
        std::fs::copy(workspace().join("examples/hello").join(f), project.join(f)).unwrap();
    }
    std::fs::write(
        project.join("kmodfarm.toml"),
        "[driver]\nname = \"hello\"\nversion = \"0.1.0\"\n\n[build]\n\
         requires_config = [\"CONFIG_DAMON\", \"!CONFIG_PREEMPT_RT\"]\narches = [\"x86_64\"]\n",
    )
    .unwrap();
    let sync = Sync {
        crawl: &crawl,
        store: &store,
        report: &report,
    };
    let code = sync.run(
        &[project.as_path()],
        "x86_64,aarch64",
        BOOKWORM_AND_TRIXIE,
        &[],
    );
    let results = read_json(&report.join("results.json"));
    assert_eq!(code, 0, "{results:#}");
    let all = by_driver(&results, "hello");
    assert_eq!(all.len(), 4, "{results:#}");
    for r in all {
        let arm = r["entry"]["architecture"] == "aarch64";
        let reason = r["reason"].as_str().unwrap_or("");
        if arm {
            assert_eq!(r["result"], "excluded", "{r:#}");
            assert!(reason.contains("x86_64 only"), "{reason}");
        } else if is_bookworm(r) {
            assert_eq!(r["result"], "excluded", "{r:#}");
            assert!(reason.contains("lacks CONFIG_DAMON"), "{reason}");
            // Decided before the source was copied or anything compiled.
            let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
            assert!(!log.contains("# step 1"), "{log}");
        } else {
            assert_eq!(r["result"], "success", "{r:#}");
        }
    }
    let matrix = read_json(&store.join("hello/0.1.0/matrix.json"));
    assert_eq!(matrix.as_array().unwrap().len(), 1, "{matrix:#}");
}
