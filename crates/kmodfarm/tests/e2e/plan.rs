//! `kmodfarm plan`: shards over the real kernel-crawler lists, content-addressed plan ids, GitHub matrices
//! within GitHub's limit, and variants the store already has left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::*;

fn shared_lists() -> Option<[PathBuf; 2]> {
    let shared = shared()?;
    Some([
        shared.join("kernel-crawler/x86_64-list-2022-10-03.json"),
        shared.join("kernel-crawler/aarch64-list-2022-10-03.json"),
    ])
}

fn plan_cmd(lists: &[PathBuf], store: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = kmodfarm();
    c.arg("plan").arg(workspace().join("examples/hello"));
    for l in lists {
        c.arg("--kernels").arg(l);
    }
    c.arg("--store").arg(store).arg("--cache").arg(cache_dir());
    c.args(extra);
    run(&mut c)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the plan file's invariants and returns variant id → its shards.
fn check_plan(plan: &serde_json::Value, redundancy: usize) -> BTreeMap<String, Vec<u64>> {
    let shards = plan["shards"].as_array().unwrap();
    let variants = plan["variants"].as_array().unwrap();
    let mut placed: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in shards {
        let index = s["index"].as_u64().unwrap();
        let members = s["variants"].as_array().unwrap();
        assert!(!members.is_empty() && members.len() <= 16, "{s}");
        for v in members {
            placed
                .entry(v.as_str().unwrap().to_string())
                .or_default()
                .push(index);
        }
    }
    assert_eq!(placed.len(), variants.len());
    for v in variants {
        let id = v["id"].as_str().unwrap();
        let mine = &placed[id];
        assert_eq!(mine.len(), redundancy, "{id} is in shards {mine:?}");
        assert_eq!(
            mine.iter().collect::<BTreeSet<_>>().len(),
            redundancy,
            "{id} twice in one shard"
        );
        for &i in mine {
            // Homogeneous: one architecture and one toolchain group per shard.
            let s = &shards[i as usize];
            assert_eq!(s["arch"], v["entry"]["architecture"], "{id} in {s}");
            assert_eq!(s["group"], v["group"], "{id} in {s}");
            let runner = s["runner"].as_str().unwrap();
            let cross = v["entry"]["distribution"] == "debian";
            match v["entry"]["architecture"].as_str().unwrap() {
                "x86_64" => assert_eq!(runner, "x86_64"),
                _ if cross => assert_eq!(runner, "x86_64", "Debian cross-builds aarch64"),
                _ => assert_eq!(runner, "aarch64", "{id} needs an aarch64 worker"),
            }
        }
        let mut recorded: Vec<u64> = v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        recorded.sort();
        let mut found = mine.clone();
        found.sort();
        assert_eq!(recorded, found, "{id}");
    }
    placed
}

#[test]
fn plans_the_real_kernel_crawler_lists_into_shards() {
    let Some(lists) = shared_lists() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));

    let out = plan_cmd(
        &lists,
        &store,
        &["--no-prefetch", "--json", "--out", one.to_str().unwrap()],
    );
    let summary = json(&out);
    let plan = read_json(&one.join("plan.json"));
    assert_eq!(summary["id"], plan["id"]);
    assert_eq!(summary["variants"], 6434);
    assert_eq!(plan["variants"].as_array().unwrap().len(), 6434);
    check_plan(&plan, 1);
    // The summary's shards name their variants.
    let first = &summary["shards"][0];
    for key in ["index", "arch", "runner", "variants"] {
        assert!(!first[key].is_null(), "{key} missing: {first}");
    }

    // Same inputs, same plan.
    let again = json(&plan_cmd(
        &lists,
        &store,
        &["--no-prefetch", "--json", "--out", two.to_str().unwrap()],
    ));
    assert_eq!(again["id"], summary["id"]);
    assert_eq!(
        std::fs::read(one.join("plan.json")).unwrap(),
        std::fs::read(two.join("plan.json")).unwrap()
    );

    // Redundancy: two different shards per variant.
    let red = dir.path().join("red");
    let out = plan_cmd(
        &lists,
        &store,
        &[
            "--no-prefetch",
            "--redundancy",
            "2",
            "--json",
            "--out",
            red.to_str().unwrap(),
        ],
    );
    let red_summary = json(&out);
    assert_ne!(red_summary["id"], summary["id"]);
    check_plan(&read_json(&red.join("plan.json")), 2);

    // GitHub matrices: every shard once, no chunk above 256.
    let matrices = json(&plan_cmd(
        &lists,
        &store,
        &["--no-prefetch", "--github-matrix"],
    ));
    let mut seen = BTreeSet::new();
    for m in matrices.as_array().unwrap() {
        let include = m["matrix"]["include"].as_array().unwrap();
        assert!(include.len() <= 256, "{} entries", include.len());
        for e in include {
            assert_eq!(e["runner"], m["runner"]);
            assert!(seen.insert(e["shard"].as_u64().unwrap()));
        }
    }
    assert_eq!(seen.len(), plan["shards"].as_array().unwrap().len());
    assert!(
        matrices.as_array().unwrap().len() > 2,
        "the x86_64 shards need several chunks"
    );

    // Planning with prefetch writes the inputs into the plan directory: without --out it says so.
    let out = plan_cmd(&lists, &store, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--out DIR") && stderr.contains("--no-prefetch"),
        "{stderr}"
    );
}

#[test]
fn variants_the_store_has_are_left_out_of_the_plan() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let filters = [
        "--arch",
        "x86_64",
        "--kernel-release",
        r"^6\.1\.0-[0-9]+-amd64$",
    ];
    let plan_json = |extra: &[&str]| {
        let mut args = vec![
            "--no-prefetch",
            "--json",
            "--distro",
            "debian",
            "--latest",
            "1",
        ];
        args.extend_from_slice(&filters);
        args.extend_from_slice(extra);
        json(&plan_cmd(std::slice::from_ref(&crawl), &store, &args))
    };
    let before = plan_json(&[]);
    assert_eq!(before["variants"], 1);
    assert_eq!(before["up_to_date"], 0);
    let out = build(
        &[&workspace().join("examples/hello")],
        &crawl,
        &store,
        &report,
        &filters,
    );
    assert!(out.status.success());
    let after = plan_json(&[]);
    assert_eq!(after["variants"], 0, "{after:#}");
    assert_eq!(after["up_to_date"], 1);
    assert!(after["shards"].as_array().unwrap().is_empty());
    assert_ne!(after["id"], before["id"]);
}
