use crate::util::*;

#[test]
fn help_explains_every_command() {
    let out = run(kmodfarm().arg("--help"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["kernels", "matrix", "build", "Exit status"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    for sub in [
        &["build", "--help"][..],
        &["matrix", "generate", "--help"],
        &["matrix", "diff", "--help"],
        &["kernels", "crawl", "--help"],
    ] {
        let out = run(kmodfarm().args(sub));
        assert!(out.status.success(), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).len() > 400,
            "{sub:?} --help is too thin"
        );
    }
}

#[test]
fn generates_the_seed_matrix_from_real_kernel_crawler_lists() {
    let Some(shared) = shared() else { return };
    let lists = [
        shared.join("kernel-crawler/x86_64-list-2022-10-03.json"),
        shared.join("kernel-crawler/aarch64-list-2022-10-03.json"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &str, extra: &[&str]| {
        let mut c = kmodfarm();
        c.args(["matrix", "generate", "--driver-version", "0.1.1", "--out"])
            .arg(dir.path().join(out));
        for l in &lists {
            c.arg("--kernels").arg(l);
        }
        c.args(extra);
        let o = run(&mut c);
        assert!(o.status.success());
        std::fs::read(dir.path().join(out)).unwrap()
    };
    let all = gen("all.json", &[]);
    assert_eq!(all, gen("again.json", &[]), "same input, same bytes");
    let v: Vec<serde_json::Value> = serde_json::from_slice(&all).unwrap();
    assert!(v.len() > 6000, "{} entries", v.len());
    let mut outputs = std::collections::HashSet::new();
    for e in &v {
        for f in [
            "kversion",
            "distribution",
            "architecture",
            "kernelurls",
            "output",
            "driverversion",
        ] {
            assert!(e.get(f).is_some(), "missing {f} in {e}");
        }
        assert!(e["output"].as_str().unwrap().starts_with("0.1.0/"));
        assert!(
            outputs.insert(e["output"].as_str().unwrap().to_string()),
            "duplicate output {}",
            e["output"]
        );
    }

    let al2023 = gen(
        "al.json",
        &[
            "--distro",
            "AmazonLinux2022,ubuntu",
            "--arch",
            "aarch64",
            "--kernel-release",
            r".*5\.1[05]\..*",
        ],
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&al2023).unwrap();
    assert!(!v.is_empty());
    for e in &v {
        assert_eq!(e["architecture"], "aarch64");
        let d = e["distribution"].as_str().unwrap();
        assert!(d == "amazonlinux2022" || d == "ubuntu", "{d}");
        assert!(e["kversion"].as_str().unwrap().contains("5.1"));
    }
}

/// A matrix entry as `matrix generate` writes it for a Debian kernel-crawler entry.
fn entry(release: &str, host: &str) -> serde_json::Value {
    serde_json::json!({
        "kversion": release,
        "distribution": "debian",
        "architecture": "x86_64",
        "kernelurls": [
            format!("http://{host}/pool/main/l/linux/linux-headers-{release}_6.1.1-1_amd64.deb"),
            format!("http://{host}/pool/main/l/linux/linux-headers-6.1.0-1-common_6.1.1-1_all.deb"),
        ],
        "output": format!("0.1.0/debian/x86_64/{release}"),
        "driverversion": "0.1.1",
        "kernelversion": "1",
        "target": "debian"
    })
}

fn write_json(path: &std::path::Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn matrix_diff_json_and_build_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, todo) = (
        dir.path().join("old.json"),
        dir.path().join("new.json"),
        dir.path().join("todo.json"),
    );
    let releases = [
        "6.1.0-1-amd64",
        "6.1.0-2-amd64",
        "6.1.0-3-amd64",
        "6.1.0-4-amd64",
    ];
    let old_entries: Vec<_> = releases.iter().map(|r| entry(r, "a.example")).collect();
    write_json(&old, &serde_json::json!(old_entries));
    // Another mirror, header lists reversed; 6.1.0-2 gets a new driver version, 6.1.0-4 is gone, 6.1.0-5 is new.
    let mut new_entries: Vec<_> = releases[..3]
        .iter()
        .chain(&["6.1.0-5-amd64"])
        .map(|r| {
            let mut e = entry(r, "b.example");
            e["kernelurls"].as_array_mut().unwrap().reverse();
            e
        })
        .collect();
    new_entries[1]["driverversion"] = "0.1.2".into();
    new_entries.reverse();
    write_json(&new, &serde_json::json!(new_entries));

    let diff = |extra: &[&str]| {
        let out = run(kmodfarm()
            .args(["matrix", "diff"])
            .arg(&old)
            .arg(&new)
            .args(extra));
        assert!(out.status.success());
        out
    };
    let out = diff(&["--json", "--build-matrix", todo.to_str().unwrap()]);
    assert_eq!(
        out.stdout,
        diff(&["--json"]).stdout,
        "same input, same bytes"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["summary"];
    assert_eq!(
        (
            s["build"].as_u64(),
            s["added"].as_u64(),
            s["modified"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(
        (s["removed"].as_u64(), s["unchanged"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(v["added"][0]["kversion"], "6.1.0-5-amd64");
    assert_eq!(v["removed"][0]["kversion"], "6.1.0-4-amd64");
    assert_eq!(v["modified"][0]["new"]["kversion"], "6.1.0-2-amd64");
    assert_eq!(v["modified"][0]["reasons"][0]["reason"], "driver_version");
    assert_eq!(v["held"], serde_json::json!([]));

    // The build matrix is the `build` array: NEW's entries, sorted by output, readable as a matrix.
    let todo_v = read_json(&todo);
    assert_eq!(todo_v, v["build"]);
    let outputs: Vec<_> = todo_v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["output"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        outputs,
        [
            "0.1.0/debian/x86_64/6.1.0-2-amd64",
            "0.1.0/debian/x86_64/6.1.0-5-amd64"
        ]
    );
    assert_eq!(todo_v[0]["driverversion"], "0.1.2");
    assert!(todo_v[0]["kernelurls"][0]
        .as_str()
        .unwrap()
        .contains("b.example"));

    // The human summary names the counts and the changes.
    let text = String::from_utf8(diff(&[]).stdout).unwrap();
    for want in [
        "to build:  2 (1 added, 1 modified)",
        "removed:   1",
        "+ 0.1.0/debian/x86_64/6.1.0-5-amd64",
        "~ 0.1.0/debian/x86_64/6.1.0-2-amd64: driver version 0.1.1 -> 0.1.2",
        "- 0.1.0/debian/x86_64/6.1.0-4-amd64",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }

    // NEW without any x86_64 Debian kernel: the group is held, nothing removed, a warning on stderr.
    write_json(&new, &serde_json::json!([]));
    let out = diff(&["--json", "--build-matrix", todo.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["removed"], 0);
    assert_eq!(v["summary"]["kept"], 4);
    assert_eq!(v["held"][0]["reason"], "missing");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("group debian/x86_64 is missing from NEW")
    );
    assert_eq!(read_json(&todo), serde_json::json!([]));
}

#[test]
fn matrix_diff_refuses_malformed_matrices() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    write_json(
        &good,
        &serde_json::json!([entry("6.1.0-1-amd64", "a.example")]),
    );
    let todo = dir.path().join("todo.json");
    let cases = [
        (
            "truncated.json",
            "[{\"kversion\": ".to_string(),
            "truncated.json is not a kmodfarm matrix",
        ),
        (
            "list.json",
            r#"{"Debian": []}"#.to_string(),
            "list.json is not a kmodfarm matrix",
        ),
        (
            "twice.json",
            serde_json::json!([entry("6.1.0-1-amd64", "a"), entry("6.1.0-1-amd64", "b")])
                .to_string(),
            "listed twice",
        ),
    ];
    for (name, text, want) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, text).unwrap();
        for (old, new) in [(&good, &bad), (&bad, &good)] {
            let out = run(kmodfarm()
                .args(["matrix", "diff", "--build-matrix"])
                .arg(&todo)
                .arg(old)
                .arg(new));
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(want), "{want:?} not in {err}");
            assert!(!todo.exists());
        }
    }
    let out = run(kmodfarm()
        .args(["matrix", "diff", "--shrink-threshold", "1.5"])
        .arg(&good)
        .arg(&good));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shrink-threshold"));
    let out = run(kmodfarm()
        .args(["matrix", "diff"])
        .arg(&good)
        .arg(dir.path().join("absent.json")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.json"));
}

#[test]
fn matrix_diff_of_matrices_generated_from_real_lists() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &str, version: &str| {
        let path = dir.path().join(out);
        let mut c = kmodfarm();
        c.args(["matrix", "generate", "--driver-version", version, "--out"])
            .arg(&path);
        for arch in ["x86_64", "aarch64"] {
            c.arg("--kernels")
                .arg(shared.join(format!("kernel-crawler/{arch}-list-2022-10-03.json")));
        }
        assert!(run(&mut c).status.success());
        path
    };
    let (old, patch) = (gen("old.json", "0.1.1"), gen("patch.json", "0.1.2"));
    let summary = |new: &std::path::Path| {
        let out = run(kmodfarm()
            .args(["matrix", "diff", "--json"])
            .arg(&old)
            .arg(new));
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["summary"].clone()
    };
    let same = summary(&old);
    assert_eq!(same["build"], 0);
    assert!(same["unchanged"].as_u64().unwrap() > 6000, "{same}");
    let s = summary(&patch);
    assert_eq!(s["modified"], same["unchanged"], "{s}");
    assert_eq!(
        (s["added"].as_u64(), s["removed"].as_u64()),
        (Some(0), Some(0))
    );
}
