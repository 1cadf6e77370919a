//! `kmodfarm sync`, the nightly job, against real Debian kernels: only new or changed variants are built, the
//! published matrix lists only what the store has, shrunken or vanished groups are held, and removal needs
//! `--prune`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::*;

/// The two newest bookworm 6.1 amd64 kernels of the crawl, oldest first, as kernel-crawler entries.
fn two_kernels(crawl: &Path) -> (Value, Value) {
    let list = read_json(crawl);
    // `6.1.0-<abi>-amd64`: the plain flavour only (not cloud-amd64 or rt-amd64).
    let abi = |e: &Value| -> Option<u32> {
        let r = e["kernelrelease"].as_str()?;
        r.strip_prefix("6.1.0-")?
            .strip_suffix("-amd64")?
            .parse()
            .ok()
    };
    let mut entries: Vec<Value> = list["Debian"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["arch"] == "x86_64" && abi(e).is_some())
        .cloned()
        .collect();
    entries.sort_by_key(abi);
    assert!(
        entries.len() >= 2,
        "the crawl has at least two bookworm 6.1 amd64 kernels"
    );
    let newest = entries.pop().unwrap();
    let older = entries.pop().unwrap();
    (older, newest)
}

fn write_list(dir: &Path, name: &str, entries: &[&Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json!({ "Debian": entries }).to_string()).unwrap();
    path
}

struct Farm {
    dir: tempfile::TempDir,
    sandbox: &'static str,
}

impl Farm {
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn report(&self) -> PathBuf {
        self.dir.path().join("report")
    }

    fn sync(&self, project: &Path, list: &Path, extra: &[&str]) -> (Option<i32>, Value, Value) {
        let out = run(kmodfarm()
            .arg("sync")
            .arg(project)
            .arg("--kernels")
            .arg(list)
            .args(["--distro", "debian", "--arch", "x86_64"])
            .arg("--store")
            .arg(self.store())
            .arg("--report-dir")
            .arg(self.report())
            .arg("--cache")
            .arg(cache_dir())
            .args(["--sandbox", self.sandbox])
            .args(extra));
        let summary = read_json(&self.report().join("sync.json"));
        let results = read_json(&self.report().join("results.json"));
        (out.status.code(), summary[0].clone(), results)
    }

    fn published(&self, driver: &str) -> Vec<String> {
        let m = read_json(&self.store().join(driver).join("0.1.0/matrix.json"));
        m.as_array()
            .unwrap()
            .iter()
            .map(|e| e["kversion"].as_str().unwrap().to_string())
            .collect()
    }
}

fn statuses(results: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["entry"]["kversion"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn release(e: &Value) -> String {
    e["kernelrelease"].as_str().unwrap().to_string()
}

#[test]
fn sync_builds_exactly_what_changed() {
    sync_builds_exactly_what_changed_in("bubblewrap");
}

/// The same nightly sequence with every build in a Docker container.
#[test]
fn sync_builds_exactly_what_changed_with_docker() {
    sync_builds_exactly_what_changed_in("docker");
}

fn sync_builds_exactly_what_changed_in(sandbox: &'static str) {
    let Some(crawl) = debian_crawl() else { return };
    let farm = Farm {
        dir: tempfile::tempdir().unwrap(),
        sandbox,
    };
    let dir = farm.dir.path();
    let (older, newest) = two_kernels(&crawl);
    let (old_r, new_r) = (release(&older), release(&newest));
    let yesterday = write_list(dir, "x86_64-yesterday.json", &[&older]);
    let today = write_list(dir, "x86_64-today.json", &[&older, &newest]);
    let hello = dir.join("hello");
    copy_dir(&workspace().join("examples/hello"), &hello);

    // First night: one kernel, one build.
    let (code, s, results) = farm.sync(&hello, &yesterday, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (s["previous"].as_u64(), s["built"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(statuses(&results), [(old_r.clone(), "success".into())]);
    assert_eq!(farm.published("hello"), std::slice::from_ref(&old_r));
    // The total is the stages' sum, the build included (it once left the build out).
    let built = &results[0]["durations"];
    assert_adds_up(built);
    assert!(built["build_secs"].as_f64().unwrap() > 0.0, "{built}");
    let prefix = results[0]["store_prefix"].as_str().unwrap();
    let published = read_json(&farm.store().join(prefix).join("metadata.json"));
    assert_adds_up(&published["durations"]);
    assert!(published["durations"]["build_secs"].as_f64().unwrap() > 0.0);

    // A new kernel landed: exactly it is built; the other is found up to date without a download.
    let (code, s, results) = farm.sync(&hello, &today, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(s["diff"]["added"], 1, "{s:#}");
    assert_eq!(s["diff"]["unchanged"], 1, "{s:#}");
    assert_eq!(
        statuses(&results),
        [
            (old_r.clone(), "up_to_date".into()),
            (new_r.clone(), "success".into())
        ]
    );
    let up_to_date = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["result"] == "up_to_date")
        .unwrap();
    assert_eq!(up_to_date["durations"]["fetch_secs"], 0.0);
    assert_eq!(up_to_date["durations"]["build_secs"], 0.0);
    let mut both = vec![old_r.clone(), new_r.clone()];
    both.sort();
    assert_eq!(farm.published("hello"), both);
    let matrix = read_json(&farm.store().join("hello/0.1.0/matrix.json"));
    for e in matrix.as_array().unwrap() {
        assert_eq!(e["buildkey"].as_str().unwrap().len(), 64, "{e:#}");
        assert!(e["builder"]
            .as_str()
            .unwrap()
            .starts_with("debian-bookworm-gcc12-"));
    }

    // Nothing changed but the order of the header lists: nothing is built.
    let mut shuffled = [older.clone(), newest.clone()];
    for e in &mut shuffled {
        e["headers"].as_array_mut().unwrap().reverse();
    }
    let reordered = write_list(dir, "x86_64-reordered.json", &[&shuffled[1], &shuffled[0]]);
    let (code, s, results) = farm.sync(&hello, &reordered, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (s["built"].as_u64(), s["up_to_date"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(s["diff"]["build"], 0, "{s:#}");
    assert!(statuses(&results).iter().all(|(_, r)| r == "up_to_date"));

    // A source change under the same version rebuilds both.
    let c = hello.join("hello.c");
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(&c, text + "\n/* changed */\n").unwrap();
    let (code, s, _) = farm.sync(&hello, &today, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(s["built"], 2, "{s:#}");

    // The newest kernel leaves the list: reported as removed, kept without --prune, deleted with it.
    let new_prefix = farm.store().join("hello/0.1.0/debian/x86_64").join(&new_r);
    let (code, s, _) = farm.sync(&hello, &yesterday, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(s["diff"]["removed"], 1, "{s:#}");
    assert!(published_file(&new_prefix, "hello.ko").is_file());
    assert_eq!(farm.published("hello"), both);
    let (code, s, _) = farm.sync(&hello, &yesterday, &["--prune"]);
    assert_eq!(code, Some(0));
    assert_eq!(s["removed_prefixes"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(files(&new_prefix), Vec::<String>::new());
    assert_eq!(farm.published("hello"), std::slice::from_ref(&old_r));

    // A crawl that lost the whole group (mirror outage) holds it, even with --prune.
    let empty = write_list(dir, "x86_64-outage.json", &[]);
    let (code, s, _) = farm.sync(&hello, &empty, &["--prune"]);
    assert_eq!(code, Some(0));
    assert_eq!(s["held"][0]["reason"], "missing", "{s:#}");
    assert_eq!(s["diff"]["removed"], 0);
    assert_eq!(farm.published("hello"), std::slice::from_ref(&old_r));
    let old_prefix = farm.store().join("hello/0.1.0/debian/x86_64").join(&old_r);
    assert!(published_file(&old_prefix, "hello.ko").is_file());
}

#[test]
fn failed_variants_stay_out_of_the_published_matrix() {
    let Some(crawl) = debian_crawl() else { return };
    let farm = Farm {
        dir: tempfile::tempdir().unwrap(),
        sandbox: "bubblewrap",
    };
    let dir = farm.dir.path();
    let (older, _) = two_kernels(&crawl);
    let list = write_list(dir, "x86_64-list.json", &[&older]);
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("Kbuild"), "obj-m := broken.o\n").unwrap();
    std::fs::write(broken.join("broken.c"), "this is not C;\n").unwrap();
    std::fs::write(
        broken.join("kmodfarm.toml"),
        "[driver]\nname='broken'\nversion='0.1.0'\n",
    )
    .unwrap();
    let (code, s, results) = farm.sync(&broken, &list, &[]);
    assert_eq!(code, Some(1), "a failed variant makes the exit status 1");
    assert_eq!(s["failed"], 1);
    assert_eq!(results[0]["class"], "compile_error");
    // A failure keeps the times of the stages it went through.
    let failed = &results[0]["durations"];
    assert_adds_up(failed);
    assert!(failed["build_secs"].as_f64().unwrap() > 0.0, "{failed}");
    assert!(
        failed["extract_secs"].as_f64().unwrap() > 0.0
            || failed["toolchain_secs"].as_f64().unwrap() > 0.0,
        "{failed}"
    );
    assert!(farm.published("broken").is_empty(), "retried next time");
    // Why, in the compiler's words (not "make exited with status 2"), everywhere the failure is shown.
    let first = results[0]["first_error"].as_str().unwrap_or_default();
    assert!(
        first.starts_with("broken.c:1:") && first.contains("error:"),
        "{results:#}"
    );
    let junit = std::fs::read_to_string(farm.report().join("junit.xml")).unwrap();
    assert!(
        junit.contains("<failure message=\"compile error: broken.c:1:"),
        "{junit}"
    );
    let page = std::fs::read_to_string(farm.report().join("index.html")).unwrap();
    assert!(page.contains("class=\"first-error\""), "{page}");
    assert!(page.contains("broken.c:1:"));
}

/// Every stage is in the total, and the total is no more than the stages.
fn assert_adds_up(d: &serde_json::Value) {
    let stage = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {d}"));
    let sum: f64 = [
        "resolve_secs",
        "fetch_secs",
        "extract_secs",
        "toolchain_secs",
        "build_secs",
        "boot_secs",
        "publish_secs",
    ]
    .iter()
    .map(|k| stage(k))
    .sum();
    assert!(
        (sum - stage("total_secs")).abs() < 1e-6,
        "stages {sum} vs total: {d}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
