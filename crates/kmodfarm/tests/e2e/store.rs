//! Stores and delivery: `sync` publishing to a real S3 server on loopback (`s3s-fs`), `install` fetching and
//! verifying from it and from a read-only http server, a publish killed half-way that leaves a consistent
//! store the next run completes, and `store gc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kmf_store::loopback::{static_http, S3Server};
use serde_json::Value;

use crate::util::*;

const BOOKWORM_61_AMD64: &str = r"^6\.1\.0-[0-9]+-amd64$";
const BUCKET: &str = "kmods";
const PREFIX: &str = "nightly";

fn with_aws(mut c: Command) -> Command {
    for (k, v) in S3Server::credentials_env() {
        c.env(k, v);
    }
    // Nothing of the machine's own AWS configuration.
    c.env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

fn sync_cmd(crawl: &Path, store: &str, report: &Path) -> Command {
    let mut c = with_aws(kmodfarm());
    c.arg("sync").arg(workspace().join("examples/hello"));
    c.arg("--kernels").arg(crawl);
    c.args(["--store", store]).arg("--report-dir").arg(report);
    c.arg("--cache").arg(cache_dir());
    c.args(["--distro", "debian", "--arch", "x86_64", "--latest", "1"]);
    c.args(["--kernel-release", BOOKWORM_61_AMD64]);
    c
}

/// The bucket's prefix directory on the s3s-fs side: objects are plain files there.
fn bucket_dir(server: &S3Server) -> PathBuf {
    server.root.join(BUCKET).join(PREFIX)
}

/// The published matrix must name only complete variants: metadata.json present, every module it lists
/// present with its SHA256. And no metadata.json may exist without its modules.
fn assert_consistent(dir: &Path) {
    for f in files(dir) {
        if f.ends_with("/matrix.json") {
            for e in read_json(&dir.join(&f)).as_array().unwrap() {
                let driver = f.split('/').next().unwrap();
                let prefix = dir.join(driver).join(e["output"].as_str().unwrap());
                assert!(
                    prefix.join("metadata.json").is_file(),
                    "{f} names {} without metadata.json",
                    prefix.display()
                );
            }
        }
        if f.ends_with("/metadata.json") {
            let meta = read_json(&dir.join(&f));
            let variant = dir.join(&f).parent().unwrap().to_path_buf();
            let prefix = variant.join(meta["artifacts"].as_str().unwrap());
            for m in meta["modules"].as_array().unwrap() {
                let ko = prefix.join(m["file_name"].as_str().unwrap());
                let bytes = std::fs::read(&ko)
                    .unwrap_or_else(|_| panic!("{f} lists {} which is missing", ko.display()));
                assert_eq!(sha256_hex(&bytes), m["sha256"].as_str().unwrap());
            }
            assert!(
                prefix.join("SHA256SUMS").is_file(),
                "{f} without SHA256SUMS"
            );
            assert!(prefix.join("provenance.intoto.json").is_file());
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The one published entry of hello's matrix.
fn published_entry(dir: &Path) -> Value {
    let m = read_json(&dir.join("hello/0.1.0/matrix.json"));
    let entries = m.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{m:#}");
    entries[0].clone()
}

fn install(
    store: &str,
    root: &Path,
    release: &str,
    version: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut c = with_aws(kmodfarm());
    c.args(["install", "--store", store])
        .arg("--root")
        .arg(root);
    c.args(["--kernel-release", release, "--kernel-version", version]);
    c.args(["--arch", "x86_64", "--json"]).args(extra);
    run(&mut c)
}

fn uname_v(entry: &Value) -> String {
    format!(
        "#1 SMP PREEMPT_DYNAMIC Debian {} (2025-01-01)",
        entry["packageversion"].as_str().unwrap()
    )
}

#[test]
fn sync_to_s3_then_install_from_s3_and_http() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = S3Server::start(&dir.path().join("s3"), BUCKET) else {
        return;
    };
    let store = server.url(BUCKET, PREFIX);
    let report = dir.path().join("report");

    let t = Instant::now();
    let out = run(&mut sync_cmd(&crawl, &store, &report));
    assert_eq!(out.status.code(), Some(0));
    eprintln!("sync to s3 took {:?}", t.elapsed());
    let objects = bucket_dir(&server);
    assert_consistent(&objects);
    let entry = published_entry(&objects);
    let release = entry["kversion"].as_str().unwrap().to_string();
    let prefix = objects
        .join("hello")
        .join(entry["output"].as_str().unwrap());
    let meta = read_json(&prefix.join("metadata.json"));
    let ko_sha = meta["modules"][0]["sha256"].as_str().unwrap().to_string();
    let sums = std::fs::read_to_string(published_file(&prefix, "SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{ko_sha}  hello.ko\n"));
    let prov = read_json(&published_file(&prefix, "provenance.intoto.json"));
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(prov["subject"][0]["digest"]["sha256"], ko_sha.as_str());
    assert_eq!(
        prov["predicate"]["runDetails"]["metadata"]["invocationId"],
        meta["build_key"]
    );
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(
        deps.len(),
        meta["inputs"]["packages"].as_array().unwrap().len() + 2
    );
    let index = read_json(&objects.join("hello/index.json"));
    assert_eq!(
        index["versions"]["0.1.0"]["matrix"],
        "hello/0.1.0/matrix.json"
    );

    // Install from S3 into a host root whose os-release says Debian.
    let root = debian_host_root(dir.path());
    let out = install(&store, &root, &release, &uname_v(&entry), &[]);
    assert_eq!(out.status.code(), Some(0));
    let installed = root.join(format!("lib/modules/{release}/extra/hello/hello.ko"));
    assert_eq!(sha256_hex(&std::fs::read(&installed).unwrap()), ko_sha);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["host"]["distro"], "debian");
    assert_eq!(r["depmod"], "ran", "{r:#}");
    let dep =
        std::fs::read_to_string(root.join(format!("lib/modules/{release}/modules.dep"))).unwrap();
    assert!(dep.contains("extra/hello/hello.ko:"), "{dep}");

    // The same through a read-only http server over the bucket's files, into --dest.
    let http = static_http(&objects);
    let http_url = format!("http://127.0.0.1:{}/", http.port);
    let dest = dir.path().join("dest");
    let out = install(
        &http_url,
        &root,
        &release,
        &uname_v(&entry),
        &["--driver", "hello", "--dest", dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        sha256_hex(&std::fs::read(dest.join("hello.ko")).unwrap()),
        ko_sha
    );

    // A module whose bytes no longer match metadata.json is refused, and nothing is installed.
    let tampered_root = dir.path().join("tampered");
    std::fs::write(
        published_file(&prefix, "hello.ko"),
        b"\x7fELF not the module",
    )
    .unwrap();
    let out = install(
        &http_url,
        &tampered_root,
        &release,
        &uname_v(&entry),
        &["--driver", "hello", "--distro", "debian"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    assert!(!tampered_root.join("lib").exists());
    std::fs::write(
        published_file(&prefix, "hello.ko"),
        std::fs::read(&installed).unwrap(),
    )
    .unwrap();

    // No build for this kernel: exit 2, naming the nearest kernels the store has.
    let out = install(&store, &root, "6.1.0-999-amd64", "#1 SMP", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no hello module for debian x86_64 kernel 6.1.0-999-amd64"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("nearest available: {release}")),
        "{stderr}"
    );

    // Writing through http is refused.
    let mut c = kmodfarm();
    c.args(["store", "gc", "--delete", "--store", &http_url]);
    assert_eq!(run(&mut c).status.code(), Some(2));

    // gc: a stray variant is listed by a dry run, and removed only with --delete.
    let stray = objects.join("hello/0.1.0/debian/x86_64/6.1.0-1-amd64");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("hello.ko"), b"old").unwrap();
    std::fs::write(stray.join("metadata.json"), b"{}").unwrap();
    let gc = |extra: &[&str]| {
        let mut c = with_aws(kmodfarm());
        c.args(["store", "gc", "--json", "--store", &store])
            .args(extra);
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // Just written: it could be a sync's publish in progress, so the default grace period keeps it.
    let fresh = gc(&["--delete"]);
    assert_eq!(fresh["garbage"], serde_json::json!([]), "{fresh:#}");
    assert_eq!(fresh["recent"].as_array().unwrap().len(), 2, "{fresh:#}");
    assert!(stray.join("hello.ko").is_file());
    let dry = gc(&["--min-age", "0"]);
    assert_eq!(
        dry["garbage"],
        serde_json::json!([
            "hello/0.1.0/debian/x86_64/6.1.0-1-amd64/hello.ko",
            "hello/0.1.0/debian/x86_64/6.1.0-1-amd64/metadata.json"
        ]),
        "{dry:#}"
    );
    assert!(stray.join("hello.ko").is_file());
    let done = gc(&["--delete", "--min-age", "0"]);
    assert_eq!(done["deleted"], true);
    assert!(!stray.join("hello.ko").exists());
    assert!(gc(&["--min-age", "0"])["garbage"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_consistent(&objects);
}

#[test]
fn a_killed_publish_leaves_a_consistent_store_the_next_sync_completes() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = S3Server::start(&dir.path().join("s3"), BUCKET) else {
        return;
    };
    let store = server.url(BUCKET, PREFIX);
    let report = dir.path().join("report");
    let objects = bucket_dir(&server);

    // Publishing pauses before each object; kill the process once the module is up, before metadata.json.
    let mut c = sync_cmd(&crawl, &store, &report);
    c.env("KMODFARM_TEST_PUBLISH_DELAY_MS", "4000");
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    let ko = loop {
        if let Some(ko) = files(&objects)
            .into_iter()
            .find(|f| f.ends_with("/hello.ko"))
        {
            break ko;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sync ended before publishing a module: {status}");
        }
        assert!(Instant::now() < deadline, "no module was published in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = files(&objects);
    eprintln!("left after the kill: {left:#?}");
    assert!(left.contains(&ko));
    assert!(
        !left
            .iter()
            .any(|f| f.ends_with("metadata.json") || f.ends_with("matrix.json")),
        "killed before metadata.json: {left:#?}"
    );
    assert_consistent(&objects);

    // The next run finds the variant incomplete, builds and publishes it, then the matrix.
    let out = run(&mut sync_cmd(&crawl, &store, &report));
    assert_eq!(out.status.code(), Some(0));
    let summary = read_json(&report.join("sync.json"));
    assert_eq!(summary[0]["built"], 1, "{summary:#}");
    assert_consistent(&objects);
    let entry = published_entry(&objects);
    let root = dir.path().join("host");
    let out = install(
        &store,
        &root,
        entry["kversion"].as_str().unwrap(),
        &uname_v(&entry),
        &["--distro", "debian"],
    );
    assert_eq!(out.status.code(), Some(0));

    // Publishing again is idempotent: nothing to build, the same objects.
    let before = files(&objects);
    let out = run(&mut sync_cmd(&crawl, &store, &report));
    assert_eq!(out.status.code(), Some(0));
    let summary = read_json(&report.join("sync.json"));
    assert_eq!(summary[0]["up_to_date"], 1, "{summary:#}");
    assert_eq!(files(&objects), before);

    // Republishing (signing changes the build key) writes a new artifacts directory and only then the
    // record. Killed once the new module is up, the store still serves the old build, intact.
    let prefix = objects
        .join("hello")
        .join(entry["output"].as_str().unwrap());
    let old_record = read_json(&prefix.join("metadata.json"));
    let old_dir = old_record["artifacts"].as_str().unwrap().to_string();
    let old_sha = old_record["modules"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let (key, cert) = keypair(&dir.path().join("keys"), "kmodfarm republish key");
    let signed = |c: &mut Command| {
        c.arg("--sign-key").arg(&key).arg("--sign-cert").arg(&cert);
    };
    let mut c = sync_cmd(&crawl, &store, &report);
    signed(&mut c);
    c.env("KMODFARM_TEST_PUBLISH_DELAY_MS", "4000");
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let new_module = files(&prefix)
            .into_iter()
            .any(|f| f.ends_with("/hello.ko") && !f.starts_with(&old_dir));
        if new_module {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sync ended before republishing the module: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no module was republished in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(read_json(&prefix.join("metadata.json")), old_record);
    assert_consistent(&objects);
    let host2 = dir.path().join("host2");
    let out = install(
        &store,
        &host2,
        entry["kversion"].as_str().unwrap(),
        &uname_v(&entry),
        &["--distro", "debian"],
    );
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["modules"][0]["sha256"], old_sha.as_str());

    // The next run completes the republish; gc then drops the superseded build.
    let mut c = sync_cmd(&crawl, &store, &report);
    signed(&mut c);
    assert_eq!(run(&mut c).status.code(), Some(0));
    let new_record = read_json(&prefix.join("metadata.json"));
    assert_ne!(new_record["artifacts"], old_record["artifacts"]);
    assert!(new_record["signature"]["signer"] == "kmodfarm republish key");
    assert_consistent(&objects);
    let mut c = with_aws(kmodfarm());
    c.args([
        "store",
        "gc",
        "--delete",
        "--min-age",
        "0",
        "--json",
        "--store",
        &store,
    ]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0));
    assert!(files(&prefix).iter().all(|f| !f.starts_with(&old_dir)));
    assert!(published_file(&prefix, "hello.ko").is_file());
    assert_consistent(&objects);
}
