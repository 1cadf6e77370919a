//! DKMS packages in the shapes drivers ship them in, each an example driver written here: a Debian-style
//! version with `~`, an install script's `#VERSION#` placeholder (given with `--driver-version`, derived
//! from a git tag, or neither), a version computed while dkms.conf is sourced, and a dkms.conf kept in a
//! packaging folder that `kmodfarm init` finds. Each builds (and boots) on Debian bookworm's newest 6.1
//! kernel, x86_64 only, to keep the run short.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

const BOOKWORM_AMD64: &str = r"^6\.1\.0-[0-9]+-amd64$";

/// A one-module driver `name` in `dir/name`: `<module>.c` and its Kbuild in `subdir` (`""`: the top), and
/// `dkms.conf` at `conf` (relative to the project) with `conf_text`, plus `BUILT_MODULE_NAME[0]` (the
/// module) and `DEST_MODULE_LOCATION[0]` (`/updates/dkms`) where it sets none.
fn driver(dir: &Path, name: &str, subdir: &str, conf: &str, conf_text: &str) -> PathBuf {
    let p = dir.join(name);
    let module = name.replace('-', "_");
    let src = p.join(subdir);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("Kbuild"), format!("obj-m := {module}.o\n")).unwrap();
    std::fs::write(
        src.join(format!("{module}.c")),
        format!(
            "// SPDX-License-Identifier: GPL-2.0\n#include <linux/module.h>\n\
             static int __init shape_init(void) {{ pr_info(\"{module}: up\\n\"); return 0; }}\n\
             static void __exit shape_exit(void) {{ }}\n\
             module_init(shape_init);\nmodule_exit(shape_exit);\nMODULE_LICENSE(\"GPL\");\n"
        ),
    )
    .unwrap();
    let mut conf_text = conf_text.to_string();
    for (var, value) in [
        ("BUILT_MODULE_NAME[0]", module.as_str()),
        ("DEST_MODULE_LOCATION[0]", "/updates/dkms"),
    ] {
        if !conf_text.contains(var) {
            conf_text.push_str(&format!("{var}=\"{value}\"\n"));
        }
    }
    let conf = p.join(conf);
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, conf_text).unwrap();
    p
}

/// `kmodfarm build PROJECTS` on bookworm's newest amd64 kernel, with `extra` flags.
fn build(projects: &[&Path], crawl: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = kmodfarm();
    c.arg("build").args(projects).arg("--kernels").arg(crawl);
    c.arg("--store").arg(dir.join("store"));
    c.arg("--report-dir").arg(dir.join("report"));
    c.arg("--cache").arg(cache_dir());
    c.args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"]);
    c.args(["--kernel-release", BOOKWORM_AMD64]);
    // The temporary directory is no git work tree, wherever it is.
    c.env("GIT_CEILING_DIRECTORIES", dir);
    c.args(extra);
    run(&mut c)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=kmodfarm",
            "-c",
            "user.email=kmodfarm@example.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn one<'a>(results: &'a serde_json::Value, driver: &str) -> &'a serde_json::Value {
    let r = by_driver(results, driver);
    assert_eq!(r.len(), 1, "{driver}: {results:#}");
    r[0]
}

/// The store's prefix of the one variant of `r`: `<driver>/<output>`.
fn published(store: &Path, r: &serde_json::Value) -> PathBuf {
    let prefix = store
        .join(r["driver"].as_str().unwrap())
        .join(r["entry"]["output"].as_str().unwrap());
    assert!(
        prefix.join("metadata.json").is_file(),
        "{}",
        prefix.display()
    );
    prefix
}

/// `~` in a version, a placeholder derived from a git tag, a computed version (checked after the
/// evaluation), and a dkms.conf in a packaging folder named by the kmodfarm.toml `kmodfarm init` writes:
/// one run, booted.
#[test]
fn versions_and_dkms_conf_places_as_drivers_ship_them() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tilde = driver(
        d,
        "kmf-tilde",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-tilde\"\nPACKAGE_VERSION=\"1.0~rc1\"\nDEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n",
    );
    // The version is the tag of the checkout: `git describe` gives v0.3-1-g<commit>.
    let tagged = driver(
        d,
        "kmf-tagged",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-tagged\"\nPACKAGE_VERSION=\"#VERSION#\"\n",
    );
    git(&tagged, &["init", "--quiet"]);
    git(&tagged, &["add", "."]);
    git(&tagged, &["commit", "--quiet", "-m", "first"]);
    git(&tagged, &["tag", "v0.3"]);
    std::fs::write(tagged.join("NEWS"), "more\n").unwrap();
    git(&tagged, &["add", "NEWS"]);
    git(&tagged, &["commit", "--quiet", "-m", "second"]);
    // Computed while sourced, with no version given: evaluated in the sandbox before any kernel, then
    // again for each kernel, to the same.
    let computed = driver(
        d,
        "kmf-computed",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-computed\"\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
    );
    std::fs::write(computed.join("VERSION"), "2.5.1\n").unwrap();
    // Computed from the kernel: before any kernel it is 1.0, for each kernel 1.0.1; the variant is
    // refused, since it would be stored under a version its dkms.conf does not give.
    let per_kernel = driver(
        d,
        "kmf-perkernel",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-perkernel\"\nPACKAGE_VERSION=\"1.0${kernelver:+.1}\"\n",
    );
    // Computed into something that is no version: refused for the kernel, with the reason.
    let escapes = driver(
        d,
        "kmf-escapes",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-escapes\"\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
    );
    std::fs::write(escapes.join("VERSION"), "../../../etc\n").unwrap();
    std::fs::write(
        escapes.join("kmodfarm.toml"),
        "[driver]\nversion = \"1.0\"\n",
    )
    .unwrap();
    // dkms.conf in the packaging folder, its paths relative to the top (the module in src/).
    let packaged = driver(
        d,
        "kmf-packaged",
        "src",
        "packaging/dkms/dkms.conf",
        "PACKAGE_NAME=\"kmf-packaged\"\nPACKAGE_VERSION=\"3.1.0\"\n\
         MAKE[0]=\"make -C $kernel_source_dir M=$dkms_tree/$PACKAGE_NAME/$PACKAGE_VERSION/build/src\"\n\
         BUILT_MODULE_NAME[0]=\"kmf_packaged\"\nBUILT_MODULE_LOCATION[0]=\"src/\"\n\
         DEST_MODULE_LOCATION[0]=\"/extra\"\n",
    );
    let out = run(kmodfarm().arg("init").arg(&packaged).arg("--json"));
    assert!(out.status.success());
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["dkms_conf"], "packaging/dkms/dkms.conf", "{init:#}");
    assert_eq!(init["from_dkms_conf"], true, "{init:#}");
    assert_eq!(init["name"], "kmf-packaged", "{init:#}");
    let toml = std::fs::read_to_string(packaged.join("kmodfarm.toml")).unwrap();
    assert!(
        toml.contains("[build]\ndkms_conf = \"packaging/dkms/dkms.conf\""),
        "{toml}"
    );
    // On the terminal, init names the dkms.conf it followed.
    let out = run(kmodfarm().arg("init").arg(&packaged).arg("--force"));
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("from packaging/dkms/dkms.conf"), "{said}");
    assert_eq!(
        std::fs::read_to_string(packaged.join("kmodfarm.toml")).unwrap(),
        toml
    );

    let projects =
        [&tilde, &tagged, &computed, &per_kernel, &escapes, &packaged].map(|p| p.as_path());
    let out = build(&projects, &crawl, d, &["--boot-test"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let results = read_json(&d.join("report/results.json"));
    assert_eq!(out.status.code(), Some(1), "kmf-escapes fails: {results:#}");
    let store = d.join("store");

    let r = one(&results, "kmf-tilde");
    assert_eq!(r["result"], "success", "{r:#}");
    assert_eq!(r["driver_version"], "1.0~rc1");
    // The store prefix version ends its MAJOR.MINOR core at `~`, as at `-`.
    assert!(
        r["entry"]["output"]
            .as_str()
            .unwrap()
            .starts_with("1.0.0/debian/x86_64/"),
        "{r:#}"
    );
    let meta = read_json(&published(&store, r).join("metadata.json"));
    assert_eq!(meta["driver_version"], "1.0~rc1", "{meta:#}");

    let r = one(&results, "kmf-tagged");
    assert_eq!(r["result"], "success", "{r:#}");
    let v = r["driver_version"].as_str().unwrap();
    assert!(v.starts_with("v0.3-1-g"), "{r:#}");
    // Not MAJOR.MINOR: the whole version is the store prefix version.
    assert!(
        r["entry"]["output"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{v}/")),
        "{r:#}"
    );
    assert!(
        stderr.contains(&format!(
            "driver version {v} derived from `git describe --tags --always`"
        )),
        "{stderr}"
    );
    published(&store, r);

    let r = one(&results, "kmf-computed");
    assert_eq!(r["result"], "success", "{r:#}");
    assert_eq!(r["driver_version"], "2.5.1");
    assert!(
        r["entry"]["output"].as_str().unwrap().starts_with("2.5.0/"),
        "{r:#}"
    );
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("evaluating dkms.conf"), "{log}");
    assert!(
        !log.contains("dkms.conf evaluates to"),
        "the same version: {log}"
    );
    assert!(
        stderr.contains(
            "driver version 2.5.1 evaluated from dkms.conf's PACKAGE_VERSION=\"$(cat VERSION)\" in the sandbox"
        ),
        "{stderr}"
    );
    published(&store, r);

    let r = one(&results, "kmf-perkernel");
    assert_eq!(r["result"], "failed", "{r:#}");
    assert_eq!(r["class"], "config_error", "{r:#}");
    assert_eq!(r["driver_version"], "1.0");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("evaluates to 1.0.1 for this kernel and to 1.0 before any kernel"),
        "{log}"
    );
    assert!(!store.join("kmf-perkernel").exists());

    let r = one(&results, "kmf-escapes");
    assert_eq!(r["result"], "failed", "{r:#}");
    assert_eq!(r["class"], "config_error", "{r:#}");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("dkms.conf: PACKAGE_VERSION:"), "{log}");
    assert!(
        !store.join("kmf-escapes").exists(),
        "nothing of it is published"
    );

    let r = one(&results, "kmf-packaged");
    assert_eq!(r["result"], "success", "{r:#}");
    assert_eq!(r["driver_version"], "3.1.0");
    let m = &r["modules"][0];
    assert_eq!(m["relative_path"], "src/kmf_packaged.ko", "{r:#}");
    assert_eq!(m["destination"], "extra/kmf_packaged.ko", "{r:#}");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("evaluating packaging/dkms/dkms.conf"), "{log}");
    published(&store, r);
    for name in ["kmf-tilde", "kmf-tagged", "kmf-computed", "kmf-packaged"] {
        let r = one(&results, name);
        let boot = std::fs::read_to_string(r["boot_log"].as_str().unwrap()).unwrap();
        let module = name.replace('-', "_");
        assert!(boot.contains(&format!("{module}: up")), "{name}: {boot}");
    }
}

/// `PACKAGE_VERSION="#VERSION#"`: built as `--driver-version` says; without one (and outside a git work
/// tree), exit 2 with what to do.
#[test]
fn a_placeholder_version_takes_the_given_one_or_says_how_to_give_it() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = driver(
        d,
        "kmf-placeholder",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-placeholder\"\nPACKAGE_VERSION=#MODULE_VERSION#\n",
    );

    let out = build(&[&p], &crawl, d, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PACKAGE_VERSION=#MODULE_VERSION# is a placeholder")
            && stderr.contains("--driver-version")
            && stderr.contains("[driver] version"),
        "{stderr}"
    );
    assert!(!d.join("store").exists(), "nothing ran");

    let out = build(&[&p], &crawl, d, &["--driver-version", "1.4.2"]);
    assert_eq!(out.status.code(), Some(0));
    let results = read_json(&d.join("report/results.json"));
    let r = one(&results, "kmf-placeholder");
    assert_eq!(r["result"], "success", "{r:#}");
    assert_eq!(r["driver_version"], "1.4.2");
    assert!(
        r["entry"]["output"].as_str().unwrap().starts_with("1.4.0/"),
        "{r:#}"
    );
    let meta = read_json(&published(&d.join("store"), r).join("metadata.json"));
    assert_eq!(meta["driver_version"], "1.4.2", "{meta:#}");

    // A computed version that evaluates to no version: refused before any kernel, saying what to do.
    let bad = driver(
        d,
        "kmf-computed-bad",
        "",
        "dkms.conf",
        "PACKAGE_NAME=\"kmf-computed-bad\"\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
    );
    std::fs::write(bad.join("VERSION"), "../../../etc\n").unwrap();
    let out = build(&[&bad], &crawl, d, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dkms.conf's computed PACKAGE_VERSION `../../../etc`")
            && stderr.contains("--driver-version"),
        "{stderr}"
    );
    let report = std::fs::read_to_string(d.join("report/results.json")).unwrap();
    assert!(!report.contains("kmf-computed-bad"), "nothing was built");
    assert!(!d.join("store/kmf-computed-bad").exists());
}
