//! plan → work → publish on real bookworm kernels: the split at the trust boundary. Workers write bundles;
//! the publisher re-verifies them and refuses tampered ones; a shard that never ran is built by the next
//! plan; redundant copies must agree; publishing twice changes nothing; `install` reads the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

/// bookworm's 6.1 line, newest upload, three x86_64 flavours (amd64, cloud-amd64, rt-amd64).
const FILTERS: [&str; 8] = [
    "--distro",
    "debian",
    "--latest",
    "1",
    "--arch",
    "x86_64",
    "--kernel-release",
    r"^6\.1\.0-[0-9]+-(amd64|cloud-amd64|rt-amd64)$",
];

fn projects() -> [PathBuf; 2] {
    let ws = workspace();
    [ws.join("examples/hello"), ws.join("examples/pair")]
}

fn plan(crawl: &Path, store: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut c = kmodfarm();
    c.arg("plan").args(projects()).arg("--kernels").arg(crawl);
    c.args(FILTERS)
        .args(["--no-prefetch", "--shard-size", "2", "--json"]);
    c.arg("--store").arg(store).arg("--cache").arg(cache_dir());
    c.arg("--out").arg(out).args(extra);
    let o = run(&mut c);
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

fn work(plan: &Path, shard: u64, bundles: &Path, report: &Path) {
    let o = run(kmodfarm()
        .args(["work", "--plan"])
        .arg(plan)
        .args(["--shard", &shard.to_string(), "--out"])
        .arg(bundles)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(report)
        // The worker has no business with a store: it gets one it cannot use.
        .args(["--store", "/nonexistent/store"]));
    assert!(o.status.success(), "shard {shard}");
}

fn publish(plan: &Path, bundles: &Path, store: &Path, report: &Path) -> std::process::Output {
    run(kmodfarm()
        .args(["publish", "--plan"])
        .arg(plan)
        .arg("--bundles")
        .arg(bundles)
        .arg("--store")
        .arg(store)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(report))
}

/// variant id (`<driver>/<output>`) → result or failure class, and message.
fn outcomes(report: &Path) -> BTreeMap<String, (String, String)> {
    read_json(&report.join("results.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = format!(
                "{}/{}",
                r["driver"].as_str().unwrap(),
                r["entry"]["output"].as_str().unwrap()
            );
            let class = r["class"]
                .as_str()
                .or(r["result"].as_str())
                .unwrap()
                .to_string();
            (id, (class, r["message"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// Every file of the store with its content, for "nothing changed" checks.
fn snapshot(store: &Path) -> BTreeMap<String, Vec<u8>> {
    files(store)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(store.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn shard_indices(summary: &serde_json::Value) -> Vec<u64> {
    summary["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect()
}

fn matrix_outputs(store: &Path, driver: &str) -> Vec<String> {
    let path = store.join(driver).join("0.1.0/matrix.json");
    if !path.exists() {
        return vec![];
    }
    let mut v: Vec<String> = read_json(&path)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["output"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn plan_work_publish_install_and_a_shard_that_never_ran() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let plan_dir = dir.path().join("plan");
    let bundles = dir.path().join("bundles");
    let summary = plan(&crawl, &store, &plan_dir, &[]);
    assert_eq!(summary["variants"], 6, "{summary:#}");
    let shards = shard_indices(&summary);
    assert_eq!(shards.len(), 3);

    // Shard 0 never runs.
    for &s in &shards[1..] {
        work(&plan_dir, s, &bundles, &dir.path().join(format!("w{s}")));
    }
    let report = dir.path().join("report");
    let out = publish(&plan_dir, &bundles, &store, &report);
    assert_eq!(out.status.code(), Some(1), "missing bundles fail the run");
    let missing: Vec<String> = summary["shards"][0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for (id, (class, message)) in outcomes(&report) {
        if missing.contains(&id) {
            assert_eq!(class, "bundle_missing", "{id}: {message}");
            assert!(message.contains("shard 0"), "{message}");
            assert!(!store.join(&id).exists(), "{id} was published");
        } else {
            assert_eq!(class, "success", "{id}: {message}");
            assert!(store.join(&id).join("metadata.json").is_file());
        }
    }
    for driver in ["hello", "pair"] {
        for output in matrix_outputs(&store, driver) {
            assert!(
                !missing.contains(&format!("{driver}/{output}")),
                "{driver}/{output} in the matrix without artifacts"
            );
        }
    }

    // Publishing the same bundles again changes nothing.
    let before = snapshot(&store);
    let again = publish(&plan_dir, &bundles, &store, &dir.path().join("report2"));
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        before,
        snapshot(&store),
        "a second publish changed the store"
    );

    // The next plan builds exactly what is missing.
    let next_dir = dir.path().join("plan2");
    let next = plan(&crawl, &store, &next_dir, &[]);
    let mut planned: Vec<String> = next["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["variants"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    planned.sort();
    let mut want = missing.clone();
    want.sort();
    assert_eq!(planned, want);
    assert_eq!(next["up_to_date"], 4);
    for s in shard_indices(&next) {
        work(
            &next_dir,
            s,
            &dir.path().join("bundles2"),
            &dir.path().join("w2"),
        );
    }
    let out = publish(
        &next_dir,
        &dir.path().join("bundles2"),
        &store,
        &dir.path().join("report3"),
    );
    assert!(out.status.success());
    for driver in ["hello", "pair"] {
        assert_eq!(matrix_outputs(&store, driver).len(), 3, "{driver}");
    }
    let last = plan(&crawl, &store, &dir.path().join("plan3"), &[]);
    assert_eq!(last["variants"], 0, "nothing left to build: {last:#}");

    // A host installs from what publish wrote.
    let meta = read_json(&store.join(&missing[0]).join("metadata.json"));
    let release = meta["kernel_release"].as_str().unwrap().to_string();
    let uname_v = format!(
        "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
        meta["variant"]["packageversion"].as_str().unwrap()
    );
    let root = debian_host_root(dir.path());
    let driver = missing[0].split('/').next().unwrap().to_string();
    let o = run(kmodfarm()
        .arg("install")
        .arg("--store")
        .arg(&store)
        .args(["--driver", &driver, "--kernel-release", &release])
        .args(["--kernel-version", &uname_v])
        .args(["--arch", "x86_64", "--distro", "debian"])
        .arg("--root")
        .arg(&root));
    assert!(o.status.success());
    let installed = root
        .join("lib/modules")
        .join(&release)
        .join("extra")
        .join(&driver);
    assert!(
        std::fs::read_dir(&installed).unwrap().next().is_some(),
        "nothing installed in {}",
        installed.display()
    );
}

/// The bundle directory of `id` in `shard`.
fn bundle(bundles: &Path, shard: u64, id: &str) -> PathBuf {
    bundles.join(format!("shard-{shard}")).join(id)
}

fn edit_record(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("record.json");
    let mut v = read_json(&path);
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Publishes and checks that each of `refused` (variant id, words of the reason) was refused as a bundle and
/// left nothing in the store; returns every variant's outcome.
fn publish_refusing(
    plan: &Path,
    bundles: &Path,
    store: &Path,
    report: &Path,
    refused: &[(&String, &str)],
) -> BTreeMap<String, (String, String)> {
    let out = publish(plan, bundles, store, report);
    assert_eq!(out.status.code(), Some(1));
    let got = outcomes(report);
    for (id, needle) in refused {
        let (class, message) = &got[id.as_str()];
        assert_eq!(class, "bundle_refused", "{id}: {message}");
        assert!(message.contains(needle), "{id}: {message}");
        assert!(!store.join(id).exists(), "{id}: something was published");
    }
    got
}

#[test]
fn tampered_bundles_are_refused_and_redundant_copies_must_agree() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let plan_dir = dir.path().join("plan");
    let bundles = dir.path().join("bundles");
    let summary = plan(&crawl, &store, &plan_dir, &["--redundancy", "2"]);
    assert_eq!(summary["variants"], 6);
    let shards = shard_indices(&summary);
    assert_eq!(shards.len(), 6, "two copies of three shards");
    for &s in &shards {
        work(&plan_dir, s, &bundles, &dir.path().join(format!("w{s}")));
    }
    let plan_json = read_json(&plan_dir.join("plan.json"));
    // variant id → its shards (copy 0, copy 1).
    let copies: BTreeMap<String, Vec<u64>> = plan_json["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["shards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    let ids: Vec<String> = copies.keys().cloned().collect();
    let hello: Vec<&String> = ids.iter().filter(|i| i.starts_with("hello/")).collect();
    let pair: Vec<&String> = ids.iter().filter(|i| i.starts_with("pair/")).collect();
    let first = |id: &str| bundle(&bundles, copies[id][0], id);

    // 1. A module swapped for another kernel's (with a record that matches the swapped file).
    let (victim, donor) = (hello[0], hello[1]);
    let donor_ko = std::fs::read(first(donor).join("hello.ko")).unwrap();
    std::fs::write(first(victim).join("hello.ko"), &donor_ko).unwrap();
    edit_record(&first(victim), |r| {
        r["modules"][0]["sha256"] = sha256_hex(&donor_ko).into();
        r["modules"][0]["size"] = donor_ko.len().into();
    });
    // 2. A module replaced after the record was written.
    let replaced = hello[2];
    let mut ko = std::fs::read(first(replaced).join("hello.ko")).unwrap();
    ko.push(0);
    std::fs::write(first(replaced).join("hello.ko"), &ko).unwrap();
    // 3. A symlink in place of a module; 4. a FIFO in place of a module.
    let linked = pair[0];
    let m = first(linked).join("pair_producer.ko");
    std::fs::remove_file(&m).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &m).unwrap();
    let fifo = pair[1];
    let m = first(fifo).join("pair_consumer.ko");
    std::fs::remove_file(&m).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&m)
        .status()
        .unwrap()
        .success());
    // 5. An extra file, in the second copy of one variant.
    let extra = pair[2];
    std::fs::write(
        bundle(&bundles, copies[extra][1], extra).join("notes.txt"),
        "x",
    )
    .unwrap();

    let report = dir.path().join("report");
    let got = publish_refusing(
        &plan_dir,
        &bundles,
        &store,
        &report,
        &[
            (victim, "vermagic"),
            (replaced, "the record says"),
            (linked, "symbolic link"),
            (fifo, "FIFO"),
            (extra, "does not name"),
        ],
    );
    // The untouched variant published (both copies agreed).
    let fine: Vec<&String> = ids
        .iter()
        .filter(|i| ![victim, replaced, linked, fifo, extra].contains(i))
        .collect();
    assert_eq!(fine.len(), 1);
    assert_eq!(got[fine[0].as_str()].0, "success");

    // 6. An edited record, 7. a record naming another variant, 8. copies that disagree by one byte: on a
    // fresh set of bundles.
    let bundles = dir.path().join("bundles-b");
    for &s in &shards {
        work(&plan_dir, s, &bundles, &dir.path().join(format!("wb{s}")));
    }
    let first = |id: &str| bundle(&bundles, copies[id][0], id);
    edit_record(&first(hello[0]), |r| r["input_key"] = "0".repeat(64).into());
    let other = std::fs::read(first(hello[2]).join("record.json")).unwrap();
    std::fs::write(first(hello[1]).join("record.json"), other).unwrap();
    let disagree = pair[0];
    let mut ko = std::fs::read(first(disagree).join("pair_producer.ko")).unwrap();
    ko.push(0);
    std::fs::write(first(disagree).join("pair_producer.ko"), &ko).unwrap();
    edit_record(&first(disagree), |r| {
        for m in r["modules"].as_array_mut().unwrap() {
            if m["file_name"] == "pair_producer.ko" {
                m["sha256"] = sha256_hex(&ko).into();
                m["size"] = ko.len().into();
            }
        }
    });
    // 9. One copy claims the kernel is excluded (its modules gone, its record saying so): the other copy
    // built it, so the copies disagree, and no exclusion is recorded.
    let forged = pair[1];
    for m in ["pair_producer.ko", "pair_consumer.ko"] {
        std::fs::remove_file(first(forged).join(m)).unwrap();
    }
    edit_record(&first(forged), |r| {
        r["result"] = "excluded".into();
        r["message"] = "dkms.conf: forged".into();
        r["modules"] = serde_json::json!([]);
    });
    // 10. A destination the project never gave (over an in-tree module's place, or anywhere).
    let placed = pair[2];
    edit_record(&first(placed), |r| {
        r["modules"][0]["destination"] = "updates/ext4.ko".into();
    });
    let store_b = dir.path().join("store-b");
    let report = dir.path().join("report-b");
    let got = publish_refusing(
        &plan_dir,
        &bundles,
        &store_b,
        &report,
        &[
            (hello[0], "input key"),
            (hello[1], "variant"),
            (disagree, "copies disagree"),
            (forged, "excluded (dkms.conf: forged)"),
            (placed, "not the one the project gives"),
        ],
    );
    assert_eq!(got[hello[2].as_str()].0, "success");
}

/// What a worker says about its build is not what the publisher publishes: with a prefetched plan, inputs
/// and builder come from the plan; the worker's sandbox, timings and boot are recorded as its claims; a
/// worker that names other inputs, or a module under another module's name, or a boot log without a boot
/// (or one that is another name of a host file) is refused.
#[test]
fn the_publisher_publishes_the_plans_facts_and_labels_the_workers_claims() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let plan_dir = dir.path().join("plan");
    let bundles = dir.path().join("bundles");
    let mut c = kmodfarm();
    c.arg("plan").args(projects()).arg("--kernels").arg(&crawl);
    c.args(FILTERS).args(["--shard-size", "2", "--json"]);
    c.arg("--store").arg(&store).arg("--cache").arg(cache_dir());
    c.arg("--out").arg(&plan_dir);
    let o = run(&mut c);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for s in shard_indices(&summary) {
        work(&plan_dir, s, &bundles, &dir.path().join(format!("w{s}")));
    }
    let plan_json = read_json(&plan_dir.join("plan.json"));
    let variants = plan_json["variants"].as_array().unwrap();
    let find = |driver: &str| -> Vec<(String, u64, String)> {
        variants
            .iter()
            .filter(|v| v["driver"] == driver)
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["shards"][0].as_u64().unwrap(),
                    v["entry"]["kversion"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (hello, pair) = (find("hello"), find("pair"));
    assert_eq!((hello.len(), pair.len()), (3, 3));
    let at = |v: &(String, u64, String)| bundle(&bundles, v.1, &v.0);

    // 1. Forged provenance in a bundle whose modules are genuine: an attacker's URL for a header package,
    // a sandbox that never was, a KVM boot with taint 0 that never ran (with its log).
    let forged = &hello[0];
    std::fs::write(at(forged).join("boot.log"), "all fine\n").unwrap();
    edit_record(&at(forged), |r| {
        r["packages"][0]["url"] = "http://attacker.invalid/linux-headers.deb".into();
        r["packages"][0]["proof"] = serde_json::json!({"by": "unverified", "reason": "trust me"});
        r["toolchain"]["sandbox"] = "FORGED-none".into();
        r["boot"] = serde_json::json!({"accel": "kvm", "kernel_package": "forged.deb",
            "load_order": ["hello"], "taint": 0, "secs": 1.0, "log": "boot.log"});
        r["built_at"] = "1999-01-01T00:00:00Z".into();
    });
    // 2. A worker that says it built from another header package.
    let other_inputs = &hello[1];
    edit_record(&at(other_inputs), |r| {
        r["packages"][0]["sha256"] = "0".repeat(64).into();
    });
    // 3. A worker that says it used another builder (with the build key that follows from it).
    let other_builder = &hello[2];
    edit_record(&at(other_builder), |r| {
        let identity = "debian-sid-gcc-15@forged";
        r["toolchain"]["builder_identity"] = identity.into();
        let input_key = r["input_key"].as_str().unwrap().to_string();
        r["build_key"] =
            sha256_hex(format!("kmodfarm-build-key\n{input_key}\n{identity}\n").as_bytes()).into();
    });
    // 4. pair_producer.ko (a valid module for the same kernel) published as pair_consumer.ko.
    let renamed = &pair[0];
    let producer = std::fs::read(at(renamed).join("pair_producer.ko")).unwrap();
    std::fs::write(at(renamed).join("pair_consumer.ko"), &producer).unwrap();
    edit_record(&at(renamed), |r| {
        for m in r["modules"].as_array_mut().unwrap() {
            if m["file_name"] == "pair_consumer.ko" {
                m["sha256"] = sha256_hex(&producer).into();
                m["size"] = producer.len().into();
            }
        }
    });
    // 5. A boot log without a boot record.
    let unbooted = &pair[1];
    std::fs::write(at(unbooted).join("boot.log"), "booted, honest\n").unwrap();
    // 6. A boot log that is another name of a file outside the bundle.
    let linked = &pair[2];
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "the host's secret\n").unwrap();
    std::fs::hard_link(&secret, at(linked).join("boot.log")).unwrap();
    edit_record(&at(linked), |r| {
        r["boot"] = serde_json::json!({"accel": "tcg", "kernel_package": null,
            "load_order": [], "taint": 0, "secs": 1.0, "log": "boot.log"});
    });

    let report = dir.path().join("report");
    let got = publish_refusing(
        &plan_dir,
        &bundles,
        &store,
        &report,
        &[
            (&other_inputs.0, "the worker says it built from"),
            (&other_builder.0, "debian-sid-gcc-15@forged"),
            (&renamed.0, "is the module `pair_producer`"),
            (&unbooted.0, "names no boot"),
            (&linked.0, "hard links"),
        ],
    );
    assert!(!std::fs::read_to_string(report.join("results.json"))
        .unwrap()
        .contains("the host's secret"));

    // The forged bundle's modules are genuine: published, with the plan's facts and the claims apart.
    assert_eq!(got[forged.0.as_str()].0, "success");
    let meta = read_json(&store.join(&forged.0).join("metadata.json"));
    let planned = variants
        .iter()
        .find(|v| v["id"] == forged.0.as_str())
        .unwrap();
    let package = &meta["inputs"]["packages"][0];
    assert_eq!(package["url"], planned["packages"][0]["url"], "{meta:#}");
    assert_eq!(package["proof"]["by"], "signed_index", "{meta:#}");
    assert_eq!(meta["toolchain"]["sandbox"], "", "{meta:#}");
    assert_eq!(
        meta["toolchain"]["builder_identity"],
        plan_json["builders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == planned["builder"])
            .unwrap()["identity"]
    );
    assert!(meta["toolchain"]["cc_version_text"]
        .as_str()
        .unwrap()
        .starts_with("gcc-12"));
    assert!(
        meta.get("boot").is_none(),
        "a worker's boot is not a boot: {meta:#}"
    );
    assert_ne!(meta["built_at"], "1999-01-01T00:00:00Z");
    let claims = &meta["worker_claims"];
    assert_eq!(claims["sandbox"], "FORGED-none");
    assert_eq!(claims["boot"]["accel"], "kvm");
    assert_eq!(claims["built_at"], "1999-01-01T00:00:00Z");
    assert_eq!(claims["shard"], forged.1);
    let artifacts = store
        .join(&forged.0)
        .join(meta["artifacts"].as_str().unwrap());
    let provenance = std::fs::read_to_string(artifacts.join("provenance.intoto.json")).unwrap();
    assert!(!provenance.contains("attacker.invalid"));
    let provenance: serde_json::Value = serde_json::from_str(&provenance).unwrap();
    let internal = &provenance["predicate"]["buildDefinition"]["internalParameters"];
    assert!(internal.get("sandbox").is_none(), "{internal}");
    let byproduct = &provenance["predicate"]["runDetails"]["byproducts"][0];
    assert_eq!(byproduct["annotations"]["verified"], false);
    assert_eq!(byproduct["annotations"]["claims"]["sandbox"], "FORGED-none");
}

/// A worker as the secure-compile rules want it: an unprivileged uid, in a network namespace with no
/// interface, with an environment of PATH and HOME only (no credential of any kind), reading a plan
/// directory and writing bundles.
/// A temporary directory workers can enter (they run as another uid: the way to the plan, the binary and
/// their directories must be open), with a copy of the binary in it.
fn worker_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = dir.path().join("kmodfarm");
    std::fs::copy(env!("CARGO_BIN_EXE_kmodfarm"), &bin).unwrap();
    (dir, bin)
}

fn offline_worker(
    bin: &Path,
    plan: &Path,
    shard: u64,
    home: &Path,
    bundles: &Path,
    extra: &[&str],
) -> std::process::Child {
    for d in [home, bundles] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    std::process::Command::new("unshare")
        .arg("-n")
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["env", "-i", "PATH=/usr/bin:/bin"])
        .arg(format!("HOME={}", home.display()))
        .arg(bin)
        .args(["work", "--plan"])
        .arg(plan)
        .args(["--shard", &shard.to_string(), "--out"])
        .arg(bundles)
        .arg("--cache")
        .arg(home.join("cache"))
        .arg("--report-dir")
        .arg(home.join("report"))
        .args(["--store", "/nonexistent"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare and setpriv (util-linux)")
}

#[test]
fn offline_unprivileged_workers_and_a_publisher_on_s3() {
    let Some(crawl) = debian_crawl() else { return };
    let (dir, bin) = worker_dir();
    let Some(server) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let store = server.url("kmods", "nightly");

    // Plan with prefetch: header packages and the builder go into the plan directory.
    let plan_dir = dir.path().join("plan");
    let plan_json = |out: &Path| {
        let mut c = with_aws(kmodfarm());
        c.arg("plan").args(projects()).arg("--kernels").arg(&crawl);
        c.args([
            "--distro",
            "debian",
            "--latest",
            "1",
            "--arch",
            "x86_64,aarch64",
        ]);
        c.args(["--kernel-release", r"^6\.1\.0-[0-9]+-(amd64|arm64)$"]);
        c.args(["--shard-size", "2", "--json", "--store", &store]);
        c.arg("--cache").arg(cache_dir()).arg("--out").arg(out);
        let o = run(&mut c);
        assert!(o.status.success());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let summary = plan_json(&plan_dir);
    assert_eq!(summary["variants"], 4);
    let shards = shard_indices(&summary);
    assert_eq!(shards.len(), 2, "one shard per architecture");
    let plan = read_json(&plan_dir.join("plan.json"));
    assert_eq!(plan["builders"].as_array().unwrap().len(), 1);
    for v in plan["variants"].as_array().unwrap() {
        assert!(!v["packages"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["kernel_release"].is_string());
    }

    // Two workers at once, offline.
    let bundles = dir.path().join("bundles");
    let workers: Vec<_> = shards
        .iter()
        .map(|&s| {
            let home = dir.path().join(format!("worker-{s}"));
            offline_worker(&bin, &plan_dir, s, &home, &bundles, &[])
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "worker failed:\n{stderr}");
        assert!(
            !stderr.contains("downloading"),
            "a worker downloaded:\n{stderr}"
        );
    }

    // The publisher, with the store's credentials, to S3.
    let report = dir.path().join("report");
    let o = run(with_aws(kmodfarm())
        .args(["publish", "--plan"])
        .arg(&plan_dir)
        .arg("--bundles")
        .arg(&bundles)
        .args(["--store", &store])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(&report));
    assert!(o.status.success());
    for (id, (class, message)) in outcomes(&report) {
        assert_eq!(class, "success", "{id}: {message}");
    }

    // A host installs from S3.
    let hello = server.root.join("kmods/nightly/hello");
    let entries = read_json(&hello.join("0.1.0/matrix.json"));
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["architecture"] == "x86_64")
        .unwrap()
        .clone();
    let root = debian_host_root(dir.path());
    let release = entry["kversion"].as_str().unwrap();
    let o = run(with_aws(kmodfarm())
        .args(["install", "--store", &store, "--driver", "hello"])
        .args([
            "--kernel-release",
            release,
            "--arch",
            "x86_64",
            "--distro",
            "debian",
        ])
        .args([
            "--kernel-version",
            &format!(
                "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
                entry["packageversion"].as_str().unwrap()
            ),
        ])
        .arg("--root")
        .arg(&root));
    assert!(o.status.success());
    assert!(root
        .join("lib/modules")
        .join(release)
        .join("extra/hello/hello.ko")
        .is_file());

    // Nothing left to build.
    let again = plan_json(&dir.path().join("plan2"));
    assert_eq!(again["variants"], 0, "{again:#}");
    assert_eq!(again["up_to_date"], 4);
}

/// A DKMS package through the trust boundary: offline, unprivileged workers evaluate dkms.conf and build
/// from the plan alone; the publisher takes the destinations dkms.conf gave; one worker's exclusion is
/// reported but not recorded, so the next plan decides it again.
#[test]
fn offline_workers_build_dkms_packages_and_their_exclusions_are_decided_again() {
    let Some(crawl) = debian_crawl() else { return };
    let (dir, bin) = worker_dir();
    let store = dir.path().join("store");
    let ws = workspace();
    let plan = |out: &Path| {
        let mut c = kmodfarm();
        c.arg("plan")
            .arg(ws.join("examples/dkms-subdir"))
            .arg(ws.join("examples/dkms-config"));
        c.arg("--kernels").arg(&crawl).args(FILTERS);
        c.args(["--json", "--store"]).arg(&store);
        c.arg("--cache").arg(cache_dir()).arg("--out").arg(out);
        let o = run(&mut c);
        assert!(o.status.success());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let plan_dir = dir.path().join("plan");
    let summary = plan(&plan_dir);
    // bookworm 6.1: amd64, cloud-amd64, rt-amd64 for each package.
    assert_eq!(summary["variants"], 6, "{summary:#}");
    let bundles = dir.path().join("bundles");
    for s in shard_indices(&summary) {
        let home = dir.path().join(format!("worker-{s}"));
        let out = offline_worker(&bin, &plan_dir, s, &home, &bundles, &[])
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = dir.path().join("report");
    let out = publish(&plan_dir, &bundles, &store, &report);
    assert_eq!(out.status.code(), Some(0), "excluded is no failure");
    let results = read_json(&report.join("results.json"));
    for r in by_driver(&results, "kmf-subdir") {
        assert_eq!(r["result"], "success", "{r:#}");
        assert_eq!(r["modules"][0]["destination"], "updates/dkms/kmf_subdir.ko");
        let meta = read_json(
            &store
                .join(r["store_prefix"].as_str().unwrap())
                .join("metadata.json"),
        );
        assert_eq!(
            meta["modules"][0]["destination"],
            "updates/dkms/kmf_subdir.ko"
        );
    }
    let damon = by_driver(&results, "kmf-damon");
    assert_eq!(damon.len(), 3);
    for r in &damon {
        assert_eq!(r["result"], "excluded", "{r:#}");
        let prefix = store.join(r["store_prefix"].as_str().unwrap());
        assert!(
            !prefix.join("excluded.json").exists(),
            "one worker's word is not recorded"
        );
    }
    let again = plan(&dir.path().join("plan2"));
    assert_eq!(
        again["variants"], 3,
        "the exclusions are decided again: {again:#}"
    );
    assert_eq!(again["up_to_date"], 3);
}

/// Signing happens at the publisher only: a worker refuses a key; the publisher signs the re-verified modules
/// with the kernel tree's sign-file (from the plan's own header packages) and records the signer.
#[test]
fn the_publisher_signs_and_a_worker_refuses_the_key() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = keypair(&dir.path().join("keys"), "kmodfarm publisher key");
    let store = dir.path().join("store");
    let plan_dir = dir.path().join("plan");
    // The planner knows the certificate, never the key.
    let plan_with = |out: &Path, cert: Option<&Path>| {
        let mut c = kmodfarm();
        c.arg("plan")
            .arg(workspace().join("examples/hello"))
            .arg("--kernels")
            .arg(&crawl)
            .args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"])
            .args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$", "--json"])
            .arg("--store")
            .arg(&store)
            .arg("--cache")
            .arg(cache_dir())
            .arg("--out")
            .arg(out);
        if let Some(cert) = cert {
            c.arg("--signing-cert").arg(cert);
        }
        let o = run(&mut c);
        assert!(o.status.success());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let summary = plan_with(&plan_dir, Some(&cert));
    let shard = shard_indices(&summary)[0];
    let bundles = dir.path().join("bundles");

    let refused = run(kmodfarm()
        .args(["work", "--plan"])
        .arg(&plan_dir)
        .args(["--shard", &shard.to_string(), "--out"])
        .arg(&bundles)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--sign-key")
        .arg(&key)
        .arg("--sign-cert")
        .arg(&cert));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("never holds the signing key"));
    assert!(!bundles.exists(), "the refused worker wrote bundles");

    work(&plan_dir, shard, &bundles, &dir.path().join("w"));
    let report = dir.path().join("report");
    let o = run(kmodfarm()
        .args(["publish", "--plan"])
        .arg(&plan_dir)
        .arg("--bundles")
        .arg(&bundles)
        .arg("--store")
        .arg(&store)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(&report)
        .arg("--sign-key")
        .arg(&key)
        .arg("--sign-cert")
        .arg(&cert));
    assert!(o.status.success());
    let meta_file = files(&store)
        .into_iter()
        .find(|f| f.ends_with("metadata.json"))
        .unwrap();
    let meta = read_json(&store.join(&meta_file));
    assert_eq!(meta["signature"]["signer"], "kmodfarm publisher key");
    let prefix = store.join(&meta_file).parent().unwrap().to_path_buf();
    let ko = published_file(&prefix, "hello.ko");
    assert_eq!(modinfo(&ko, "signer"), "kmodfarm publisher key");
    // Planned with the certificate, the signed store is up to date; without it, it is not.
    assert_eq!(
        plan_with(&dir.path().join("p2"), Some(&cert))["variants"],
        0
    );
    assert_eq!(plan_with(&dir.path().join("p3"), None)["variants"], 1);
    // A plan made for this certificate is not published with another key.
    let (other_key, other_cert) = keypair(&dir.path().join("other"), "somebody else");
    let o = run(kmodfarm()
        .args(["publish", "--plan"])
        .arg(&plan_dir)
        .arg("--bundles")
        .arg(&bundles)
        .arg("--store")
        .arg(dir.path().join("store-other"))
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(dir.path().join("report-other"))
        .arg("--sign-key")
        .arg(&other_key)
        .arg("--sign-cert")
        .arg(&other_cert));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was made for modules signed"));
    // The bundle's module was unsigned: the signature is the publisher's alone.
    let unsigned = files(&bundles)
        .into_iter()
        .find(|f| f.ends_with("hello.ko"))
        .unwrap();
    assert_eq!(modinfo(&bundles.join(unsigned), "signer"), "");
}

/// A store object with what differs from run to run taken out: the logs (timings, scratch paths) are
/// dropped, and of the records only the build's durations and finishing time; every other byte must match.
fn comparable(name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    if name.ends_with("/build.log") || name.ends_with("/boot.log") {
        return None;
    }
    // A publisher states the sandbox only when it built the variant itself; from a worker's bundle it is
    // one of the worker's claims.
    if name.ends_with("/metadata.json") {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let o = v.as_object_mut().unwrap();
        assert!(o.remove("durations").is_some() && o.remove("built_at").is_some());
        if let Some(claims) = o.remove("worker_claims") {
            assert_eq!(claims["sandbox"], "bubblewrap");
            assert_eq!(o["toolchain"]["sandbox"], "");
        }
        o["toolchain"].as_object_mut().unwrap().remove("sandbox");
        return Some(serde_json::to_vec(&v).unwrap());
    }
    if name.ends_with("/provenance.intoto.json") {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["predicate"]["buildDefinition"]["internalParameters"]
            .as_object_mut()
            .unwrap()
            .remove("sandbox");
        let run = v["predicate"]["runDetails"].as_object_mut().unwrap();
        run.remove("byproducts");
        let meta = &mut v["predicate"]["runDetails"]["metadata"];
        assert!(meta.as_object_mut().unwrap().remove("finishedOn").is_some());
        assert!(v.to_string().contains("resolvedDependencies"));
        return Some(serde_json::to_vec(&v).unwrap());
    }
    Some(bytes.to_vec())
}

fn comparable_store(store: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(store)
        .into_iter()
        .filter_map(|(name, bytes)| comparable(&name, &bytes).map(|b| (name, b)))
        .collect()
}

/// `sync` and `build` run plan → work → publish in one process: the store they write is the one a
/// distributed run (a prefetched plan, one worker per shard, the publisher) writes from the same inputs.
#[test]
fn build_and_sync_write_the_store_plan_work_publish_writes() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();

    let synced = dir.path().join("synced");
    let o = run(kmodfarm()
        .arg("sync")
        .args(projects())
        .arg("--kernels")
        .arg(&crawl)
        .args(FILTERS)
        .arg("--store")
        .arg(&synced)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(dir.path().join("sync-report")));
    assert!(o.status.success());

    let built = dir.path().join("built");
    let o = run(kmodfarm()
        .arg("build")
        .args(projects())
        .arg("--kernels")
        .arg(&crawl)
        .args(FILTERS)
        .arg("--store")
        .arg(&built)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(dir.path().join("build-report")));
    assert!(o.status.success());

    let distributed = dir.path().join("distributed");
    let plan_dir = dir.path().join("plan");
    let bundles = dir.path().join("bundles");
    let mut c = kmodfarm();
    c.arg("plan").args(projects()).arg("--kernels").arg(&crawl);
    c.args(FILTERS).args(["--shard-size", "2", "--json"]);
    c.arg("--store")
        .arg(&distributed)
        .arg("--cache")
        .arg(cache_dir());
    c.arg("--out").arg(&plan_dir);
    let o = run(&mut c);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for s in shard_indices(&summary) {
        work(&plan_dir, s, &bundles, &dir.path().join(format!("w{s}")));
    }
    let o = publish(
        &plan_dir,
        &bundles,
        &distributed,
        &dir.path().join("report"),
    );
    assert!(o.status.success());

    let (synced, built, distributed) = (
        comparable_store(&synced),
        comparable_store(&built),
        comparable_store(&distributed),
    );
    let modules = synced.keys().filter(|k| k.ends_with(".ko")).count();
    assert_eq!(
        modules,
        9,
        "hello and pair for 3 kernels: {:?}",
        synced.keys()
    );
    assert_eq!(
        synced.keys().collect::<Vec<_>>(),
        distributed.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &synced {
        assert!(
            distributed[name] == *bytes,
            "{name} differs between sync and plan/work/publish:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&distributed[name])
        );
    }
    // `build` writes the variants, not the matrices: the same objects without them.
    let variant_objects: BTreeMap<&String, &Vec<u8>> = synced
        .iter()
        .filter(|(k, _)| !k.ends_with("/matrix.json") && !k.ends_with("index.json"))
        .collect();
    assert_eq!(variant_objects, built.iter().collect::<BTreeMap<_, _>>());
}

/// `plan --boot-test` carries each variant's kernel image and busybox: an offline worker boot-tests from the
/// plan alone, and its record names the kernel it booted; `publish --boot-test` boots the modules again as
/// they are published.
#[test]
fn offline_workers_boot_test_from_the_plan() {
    let Some(crawl) = debian_crawl() else { return };
    let (dir, bin) = worker_dir();
    let store = dir.path().join("store");
    let plan_dir = dir.path().join("plan");
    let mut c = kmodfarm();
    c.arg("plan")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&crawl);
    c.args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"]);
    c.args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$"]);
    c.args(["--boot-test", "--json"]).arg("--store").arg(&store);
    c.arg("--cache")
        .arg(cache_dir())
        .arg("--out")
        .arg(&plan_dir);
    let o = run(&mut c);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["variants"], 1);
    let plan = read_json(&plan_dir.join("plan.json"));
    let boot = &plan["variants"][0]["boot_packages"];
    let kernel = boot["kernel"]["file_name"].as_str().unwrap().to_string();
    assert!(kernel.starts_with("linux-image-6.1.0-"), "{boot}");
    assert!(boot["busybox"]["file_name"]
        .as_str()
        .unwrap()
        .starts_with("busybox-static_"));
    for p in [&boot["kernel"], &boot["busybox"]] {
        let carried = plan_dir
            .join("cache/sha256")
            .join(p["sha256"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&carried).unwrap().len(),
            p["size"].as_u64().unwrap()
        );
    }

    let bundles = dir.path().join("bundles");
    let home = dir.path().join("worker");
    let worker = offline_worker(&bin, &plan_dir, 0, &home, &bundles, &["--boot-test"]);
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "worker failed:\n{stderr}");
    assert!(
        !stderr.contains("downloading"),
        "a worker downloaded:\n{stderr}"
    );
    let id = plan["variants"][0]["id"].as_str().unwrap();
    let record = read_json(&bundle(&bundles, 0, id).join("record.json"));
    assert_eq!(
        record["boot"]["kernel_package"],
        kernel.as_str(),
        "{record:#}"
    );
    assert!(record["boot"]["load_order"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "hello"));
    assert!(bundle(&bundles, 0, id).join("boot.log").is_file());

    let report = dir.path().join("report");
    let o = run(kmodfarm()
        .args(["publish", "--boot-test", "--plan"])
        .arg(&plan_dir)
        .arg("--bundles")
        .arg(&bundles)
        .arg("--store")
        .arg(&store)
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(&report));
    assert!(o.status.success());
    let meta = read_json(&store.join(id).join("metadata.json"));
    assert_eq!(meta["boot"]["kernel_package"], kernel.as_str());
    let log = std::fs::read_to_string(report.join("logs").join(id).join("boot.log")).unwrap();
    assert!(
        log.contains("KMF:"),
        "the publisher's boot left no console log"
    );
}

/// The plan, its inputs and the bundles in a store: the planner uploads the plan and its inputs into the
/// store's shared cache, each worker reads the plan with read access and fetches only its shard's inputs,
/// uploads its bundles to the staging prefix, and the publisher takes plan and bundles from the store.
#[test]
fn plans_inputs_and_bundles_in_the_store() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let store = server.url("kmods", "nightly");
    let farm = server.url("kmods", "farm");
    let plan_to_store = |shard_size: &str| {
        let mut c = with_aws(kmodfarm());
        c.arg("plan")
            .arg(workspace().join("examples/hello"))
            .arg("--kernels")
            .arg(&crawl);
        c.args([
            "--distro",
            "debian",
            "--latest",
            "1",
            "--arch",
            "x86_64,aarch64",
        ]);
        c.args(["--kernel-release", r"^6\.1\.0-[0-9]+-(amd64|arm64)$"]);
        c.args(["--shard-size", shard_size, "--json", "--store", &store]);
        c.args(["--out", &farm]).arg("--cache").arg(cache_dir());
        let o = run(&mut c);
        assert!(o.status.success());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let summary = plan_to_store("2");
    let id = summary["id"].as_str().unwrap().to_string();
    let plan_url = summary["location"].as_str().unwrap().to_string();
    assert_eq!(plan_url, server.url("kmods", &format!("farm/plans/{id}")));
    let farm_root = server.root.join("kmods/farm");
    let plan = read_json(&farm_root.join("plans").join(&id).join("plan.json"));
    let cached = files(&farm_root.join("cache/sha256"));
    assert!(cached.len() >= 5, "headers, builder and source: {cached:?}");

    let staging = server.url("kmods", &format!("farm/staging/{id}"));
    let shards = shard_indices(&summary);
    assert_eq!(shards.len(), 2, "one shard per architecture");
    for &s in &shards {
        let cache = dir.path().join(format!("worker-{s}"));
        let o = run(with_aws(kmodfarm())
            .args(["work", "--plan", &plan_url, "--shard", &s.to_string()])
            .args(["--out", &staging])
            .arg("--cache")
            .arg(&cache)
            .arg("--report-dir")
            .arg(dir.path().join(format!("w{s}")))
            .args(["--store", "/nonexistent"]));
        assert!(o.status.success(), "shard {s}");
        // The worker fetched its own shard's header packages only.
        let fetched = files(&cache.join("plans").join(&id).join("cache/sha256"));
        let shard = &plan["shards"][s as usize];
        let mine: Vec<String> = plan["variants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| shard["variants"].as_array().unwrap().contains(&v["id"]))
            .flat_map(|v| v["packages"].as_array().unwrap().clone())
            .map(|p| p["sha256"].as_str().unwrap().to_string())
            .collect();
        for p in plan["variants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["packages"].as_array().unwrap())
        {
            let sha = p["sha256"].as_str().unwrap().to_string();
            assert_eq!(
                fetched.contains(&sha),
                mine.contains(&sha),
                "shard {s}: {} fetched: {}",
                p["file_name"],
                fetched.contains(&sha)
            );
        }
    }
    let staged = files(&farm_root.join("staging").join(&id));
    assert!(
        staged
            .iter()
            .filter(|f| f.ends_with("/record.json"))
            .count()
            == 2,
        "{staged:?}"
    );

    let report = dir.path().join("report");
    let o = run(with_aws(kmodfarm())
        .args(["publish", "--plan", &plan_url, "--bundles", &staging])
        .args(["--store", &store])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(&report));
    assert!(o.status.success());
    for (id, (class, message)) in outcomes(&report) {
        assert_eq!(class, "success", "{id}: {message}");
    }
    assert_eq!(
        read_json(&server.root.join("kmods/nightly/hello/0.1.0/matrix.json"))
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Another plan of the same kernels shares the cache: nothing new is uploaded for it. (The store is
    // up to date, so plan with --rebuild-like inputs: another shard size gives another plan of nothing.)
    let again = plan_to_store("1");
    assert_eq!(again["variants"], 0);
    assert_eq!(files(&farm_root.join("cache/sha256")), cached);

    // A plan.json changed in the store is refused by a worker.
    let tampered = farm_root.join("plans").join(&id).join("plan.json");
    let text = std::fs::read_to_string(&tampered).unwrap();
    std::fs::write(
        &tampered,
        text.replacen("\"shard_size\": 2", "\"shard_size\": 3", 1),
    )
    .unwrap();
    let o = run(with_aws(kmodfarm())
        .args(["work", "--plan", &plan_url, "--shard", "0"])
        .args(["--out", &staging])
        .arg("--cache")
        .arg(dir.path().join("worker-x"))
        .args(["--store", "/nonexistent"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was changed after planning"));
}
