//! A loopback apt mirror signed by a key made in the test with gpg: properly signed it is crawled, and each
//! way a Release can fail to prove itself (unsigned, another key, changed after signing, expired, another
//! suite's Release) is refused before any index or package is downloaded, with nothing built or published.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::util::{files, in_ci, kmodfarm, read_json, run, workspace};

/// Serves the files under `root` over HTTP/1.1 on loopback, one request per connection, recording every
/// requested path.
fn serve(root: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let file = root.join(path.trim_start_matches('/'));
            let mut out = stream;
            let _ = match std::fs::read(&file).ok().filter(|_| !path.contains("..")) {
                Some(body) => out
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| out.write_all(&body)),
                None => out.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                ),
            };
        }
    });
    (format!("http://127.0.0.1:{port}/debian"), seen)
}

/// gpg in a home of its own.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Option<Gpg> {
        if Command::new("gpg").arg("--version").output().is_err() {
            assert!(!in_ci(), "gpg is required under CI=true");
            eprintln!("skipping: gpg is not installed");
            return None;
        }
        Some(Gpg {
            home: tempfile::tempdir().unwrap(),
        })
    }

    fn gpg(&self, args: &[&str]) {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn key(&self, uid: &str, keyring: &Path) {
        self.gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"]);
        self.gpg(&["--output", path(keyring), "--export", uid]);
    }

    fn clearsign(&self, uid: &str, input: &Path, output: &Path) {
        self.gpg(&[
            "--local-user",
            uid,
            "--output",
            path(output),
            "--clearsign",
            path(input),
        ]);
    }

    fn detach_sign(&self, uid: &str, input: &Path, output: &Path) {
        self.gpg(&[
            "--local-user",
            uid,
            "--output",
            path(output),
            "--armor",
            "--detach-sign",
            path(input),
        ]);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PACKAGES: &str = "\
Package: linux-headers-6.1.0-99-amd64
Version: 6.1.999-1
Architecture: amd64
Depends: linux-headers-6.1.0-99-common (= 6.1.999-1), linux-kbuild-6.1 (>= 6.1.999-1)
Filename: pool/main/l/linux/linux-headers-6.1.0-99-amd64_6.1.999-1_amd64.deb
Size: 3
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: linux-headers-6.1.0-99-common
Version: 6.1.999-1
Architecture: all
Filename: pool/main/l/linux/linux-headers-6.1.0-99-common_6.1.999-1_all.deb
Size: 3
SHA256: 0000000000000000000000000000000000000000000000000000000000000002

Package: linux-kbuild-6.1
Version: 6.1.999-1
Architecture: amd64
Filename: pool/main/l/linux-kbuild/linux-kbuild-6.1_6.1.999-1_amd64.deb
Size: 3
SHA256: 0000000000000000000000000000000000000000000000000000000000000003
";

/// `dists/bookworm/` of a mirror: the Packages index and a Release naming it (`codename`, `valid_until`).
fn write_suite(root: &Path, codename: &str, valid_until: Option<&str>) -> PathBuf {
    let dists = root.join("debian/dists/bookworm");
    let bin = dists.join("main/binary-amd64");
    std::fs::create_dir_all(&bin).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(PACKAGES.as_bytes()).unwrap();
    let packages = xz.finish().unwrap();
    std::fs::write(bin.join("Packages.xz"), &packages).unwrap();
    let mut release = format!(
        "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: {codename}\nDate: {}\n",
        release_date(0)
    );
    if let Some(v) = valid_until {
        release.push_str(&format!("Valid-Until: {v}\n"));
    }
    release.push_str(&format!(
        "Architectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.xz\n",
        hex::encode(Sha256::digest(&packages)),
        packages.len()
    ));
    let path = dists.join("Release");
    std::fs::write(&path, release).unwrap();
    path
}

/// `dists/<suite>/` of a mirror with an empty index and a Release (`valid_until`).
fn write_empty_suite(root: &Path, suite: &str, valid_until: &str) -> PathBuf {
    let dists = root.join("debian/dists").join(suite);
    std::fs::create_dir_all(&dists).unwrap();
    let path = dists.join("Release");
    std::fs::write(
        &path,
        format!(
            "Origin: Debian\nSuite: unstable\nCodename: {suite}\nDate: {}\nValid-Until: {valid_until}\nSHA256:\n",
            release_date(-9)
        ),
    )
    .unwrap();
    path
}

/// A Release date `days` from now (negative: in the past).
fn release_date(days: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-R", "-d", &format!("{days} days")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .replace("+0000", "UTC")
}

#[test]
fn releases_that_do_not_prove_themselves_are_refused_before_anything_is_fetched() {
    let Some(gpg) = Gpg::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (archive_key, other_key) = (dir.path().join("archive.gpg"), dir.path().join("other.gpg"));
    gpg.key("kmodfarm test archive <archive@invalid>", &archive_key);
    gpg.key("someone else <other@invalid>", &other_key);
    let archive = "kmodfarm test archive <archive@invalid>";

    // name, how the mirror's dists/bookworm is made, what the refusal says.
    type Shape = fn(&Gpg, &Path, &str);
    let shapes: Vec<(&str, Shape, &str)> = vec![
        (
            "unsigned",
            |_, root, _| {
                write_suite(root, "bookworm", None);
            },
            "not signed: the mirror has neither InRelease nor Release.gpg",
        ),
        (
            "another key",
            |gpg, root, _| {
                let r = write_suite(root, "bookworm", None);
                gpg.clearsign(
                    "someone else <other@invalid>",
                    &r,
                    &r.with_file_name("InRelease"),
                );
            },
            "which is not in the keyring",
        ),
        (
            "changed after signing",
            |gpg, root, uid| {
                let r = write_suite(root, "bookworm", None);
                let signed = r.with_file_name("InRelease");
                gpg.clearsign(uid, &r, &signed);
                let text = std::fs::read_to_string(&signed)
                    .unwrap()
                    .replace("Label: Debian", "Label: Debiam");
                std::fs::write(&signed, text).unwrap();
            },
            "BAD signature",
        ),
        (
            "detached signature over another text",
            |gpg, root, uid| {
                let r = write_suite(root, "bookworm", None);
                gpg.detach_sign(uid, &r, &r.with_file_name("Release.gpg"));
                let text = std::fs::read_to_string(&r)
                    .unwrap()
                    .replace("amd64", "arm64");
                std::fs::write(&r, text).unwrap();
            },
            "BAD signature",
        ),
        (
            "expired",
            |gpg, root, uid| {
                let r = write_suite(root, "bookworm", Some(&release_date(-2)));
                gpg.clearsign(uid, &r, &r.with_file_name("InRelease"));
            },
            "--allow-expired-release bookworm accepts it",
        ),
        (
            "another suite's Release",
            |gpg, root, uid| {
                let r = write_suite(root, "trixie", None);
                gpg.clearsign(uid, &r, &r.with_file_name("InRelease"));
            },
            "not of bookworm",
        ),
    ];

    for (name, make, refusal) in shapes {
        let mirror_root = dir
            .path()
            .join(format!("mirror-{}", name.replace(' ', "-")));
        make(&gpg, &mirror_root, archive);
        let (mirror, requests) = serve(mirror_root);
        let work = dir.path().join(format!("run-{}", name.replace(' ', "-")));
        let (store, report) = (work.join("store"), work.join("report"));
        let out = run(kmodfarm()
            .arg("build")
            .arg(workspace().join("examples/hello"))
            .args(["--crawl", "--suite", "bookworm", "--arch", "x86_64"])
            .args(["--mirror", &mirror, "--security-mirror", &mirror])
            .arg("--keyring")
            .arg(&archive_key)
            .arg("--store")
            .arg(&store)
            .arg("--report-dir")
            .arg(&report)
            .arg("--cache")
            .arg(work.join("cache")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("Release of bookworm") && stderr.contains(refusal),
            "{name}: expected {refusal:?} in:\n{stderr}"
        );
        let fetched = requests.lock().unwrap().clone();
        assert!(
            fetched
                .iter()
                .all(|p| ["InRelease", "Release", "Release.gpg"]
                    .iter()
                    .any(|f| p == &format!("/debian/dists/bookworm/{f}"))),
            "{name}: only the Release may be read: {fetched:?}"
        );
        assert!(files(&store).is_empty(), "{name}: {:?}", files(&store));
    }

    // Properly signed: crawled, and each package names the Release and key that proved it. Expired but
    // accepted for this suite: crawled, and marked as expired.
    for (name, valid_until, allow) in [
        ("signed", Some(release_date(5)), false),
        ("expired-allowed", Some(release_date(-2)), true),
    ] {
        let mirror_root = dir.path().join(format!("mirror-{name}"));
        let r = write_suite(&mirror_root, "bookworm", valid_until.as_deref());
        gpg.clearsign(archive, &r, &r.with_file_name("InRelease"));
        let (mirror, requests) = serve(mirror_root);
        let list = dir.path().join(format!("{name}.json"));
        let mut cmd = kmodfarm();
        cmd.args([
            "kernels", "crawl", "--suite", "bookworm", "--arch", "x86_64",
        ])
        .args(["--mirror", &mirror, "--security-mirror", &mirror])
        .arg("--keyring")
        .arg(&archive_key)
        .arg("--out")
        .arg(&list)
        .env("KMODFARM_CACHE", dir.path().join(format!("cache-{name}")));
        if allow {
            cmd.args(["--allow-expired-release", "bookworm"]);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{name}");
        let list = read_json(&list);
        let entry = &list["Debian"][0];
        assert_eq!(entry["kernelrelease"], "6.1.0-99-amd64");
        let proof = &entry["headerpackages"][0]["proof"];
        assert_eq!(proof["by"], "signed_index", "{proof:#}");
        assert_eq!(proof["suite"], "bookworm");
        assert!(proof["signer"]
            .as_str()
            .unwrap()
            .contains("kmodfarm test archive"));
        assert_eq!(
            proof["expired_since"].as_str(),
            if allow { valid_until.as_deref() } else { None },
            "{proof:#}"
        );
        let fetched = requests.lock().unwrap().clone();
        assert!(
            fetched.contains(&"/debian/dists/bookworm/main/binary-amd64/Packages.xz".to_string()),
            "{fetched:?}"
        );
    }
}

/// A kernel-crawler list (no suite, no digests) whose header URLs point at a host other than the mirror:
/// the packages are still proven where a current suite's signed index lists them by name and digest; with
/// no index to prove them they are built, published and reported as `unverified`; and `--require-verified`
/// refuses them without building.
#[test]
fn recorded_urls_are_proven_by_the_signed_indices_or_marked_unverified() {
    let Some(crawl) = crate::util::debian_crawl() else {
        return;
    };
    let list = read_json(&crawl);
    let entry = list["Debian"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| {
            e["arch"] == "x86_64"
                && e["flavour"] == "amd64"
                && e["kernelrelease"].as_str().unwrap().starts_with("6.1.0-")
        })
        .expect("a bookworm 6.1 amd64 kernel")
        .clone();
    let dir = tempfile::tempdir().unwrap();
    // The header packages, as another host serves them.
    let elsewhere = dir.path().join("elsewhere");
    let pool = elsewhere.join("debian/pool");
    std::fs::create_dir_all(&pool).unwrap();
    let (base, _requests) = serve(elsewhere.clone());
    let mut headers = Vec::new();
    for url in entry["headers"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        let name = url.rsplit('/').next().unwrap();
        let status = Command::new("curl")
            .args(["-sSf", "-o"])
            .arg(pool.join(name))
            .arg(url)
            .status()
            .unwrap();
        assert!(status.success(), "{url}");
        headers.push(format!("{base}/pool/{name}"));
    }
    let kernel_list = dir.path().join("x86_64-list.json");
    std::fs::write(
        &kernel_list,
        serde_json::json!({"Debian": [{
            "kernelversion": 1,
            "kernelrelease": entry["kernelrelease"],
            "target": "debian",
            "headers": headers,
        }]})
        .to_string(),
    )
    .unwrap();
    // A mirror that has no suites at all: nothing can be proven through it.
    let (no_mirror, _) = serve(dir.path().join("empty"));
    let run_build = |name: &str, extra: &[&str]| {
        let work = dir.path().join(name);
        let out = run(kmodfarm()
            .arg("build")
            .arg(workspace().join("examples/hello"))
            .arg("--kernels")
            .arg(&kernel_list)
            .arg("--store")
            .arg(work.join("store"))
            .arg("--report-dir")
            .arg(work.join("report"))
            .arg("--cache")
            .arg(crate::util::cache_dir())
            .args(extra));
        (out, work)
    };

    // 1. The configured Debian mirror's current suites list these files: proven by their signed index.
    let (out, work) = run_build("proven", &[]);
    assert_eq!(out.status.code(), Some(0));
    let meta = metadata_of(&work.join("store"));
    for p in meta["inputs"]["packages"].as_array().unwrap() {
        assert_eq!(p["proof"]["by"], "signed_index", "{p:#}");
        assert!(p["proof"]["suite"]
            .as_str()
            .unwrap()
            .starts_with("bookworm"));
    }

    // 2. No index to prove them: built, published and reported unverified.
    let mirror_flags = ["--mirror", &no_mirror, "--security-mirror", &no_mirror];
    let (out, work) = run_build("unverified", &mirror_flags);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("built from inputs not fully proven"),
        "{stderr}"
    );
    let meta = metadata_of(&work.join("store"));
    for p in meta["inputs"]["packages"].as_array().unwrap() {
        assert_eq!(p["proof"]["by"], "unverified", "{p:#}");
        assert!(p["proof"]["reason"]
            .as_str()
            .unwrap()
            .contains("no signed index lists it"));
    }
    let results = read_json(&work.join("report/results.json"));
    assert_eq!(
        results[0]["input_warnings"].as_array().unwrap().len(),
        3,
        "{results:#}"
    );
    let html = std::fs::read_to_string(work.join("report/index.html")).unwrap();
    assert!(html.contains("unproven inputs"));

    // 3. --require-verified: refused before anything is built, nothing published.
    let mut flags = mirror_flags.to_vec();
    flags.push("--require-verified");
    let (out, work) = run_build("required", &flags);
    assert_eq!(out.status.code(), Some(1));
    let results = read_json(&work.join("report/results.json"));
    assert_eq!(results[0]["class"], "input_unproven", "{results:#}");
    assert!(results[0]["message"]
        .as_str()
        .unwrap()
        .contains("--require-verified refuses it"));
    assert!(files(&work.join("store")).is_empty());
}

/// The one `metadata.json` under a store.
fn metadata_of(store: &Path) -> serde_json::Value {
    let metas: Vec<String> = files(store)
        .into_iter()
        .filter(|f| f.ends_with("metadata.json"))
        .collect();
    assert_eq!(metas.len(), 1, "{metas:?}");
    read_json(&store.join(&metas[0]))
}

/// A builder is made from its suite only after the suite's Release passed the crawl's checks: an expired
/// sid fails with the expiry and the option that accepts it, before mmdebstrap runs.
#[test]
fn a_builder_of_an_expired_suite_fails_with_the_expiry() {
    let Some(gpg) = Gpg::new() else { return };
    if Command::new("docker")
        .arg("info")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(!in_ci(), "docker is required under CI=true");
        eprintln!("skipping: no container engine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("archive.gpg");
    let uid = "kmodfarm test archive <archive@invalid>";
    gpg.key(uid, &key);
    let expired = release_date(-3);
    let r = write_empty_suite(&dir.path().join("mirror"), "sid", &expired);
    gpg.clearsign(uid, &r, &r.with_file_name("InRelease"));
    let (mirror, requests) = serve(dir.path().join("mirror"));
    let out = run(kmodfarm()
        .args(["builder", "create", "--suite", "sid", "--mirror", &mirror])
        .arg("--keyring")
        .arg(&key)
        .arg("--cache")
        .arg(dir.path().join("cache")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("Release of sid expired on {expired}"))
            && stderr.contains("--allow-expired-release sid accepts it"),
        "{stderr}"
    );
    assert!(!stderr.contains("mmdebstrap"), "{stderr}");
    assert_eq!(
        requests.lock().unwrap().clone(),
        vec!["/debian/dists/sid/InRelease".to_string()]
    );
}
