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
