use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn shared() -> Option<PathBuf> {
    let p = workspace().join("../shared");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared is absent");
        None
    }
}

pub fn kmodfarm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kmodfarm"));
    c.env_remove("KMODFARM_STORE").env("NO_COLOR", "1");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running kmodfarm");
    eprintln!(
        "$ {:?}\nstatus: {}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Downloads, extracted packages and builders are shared by every test run on the machine, as they would be
/// by every run of a real farm: the cache is content-addressed, so sharing is safe.
pub fn cache_dir() -> PathBuf {
    let dir = workspace().join("target/e2e-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A crawl of the Debian mirror (bookworm, bookworm-security, trixie, trixie-security; both architectures),
/// made once per test run. `None` (skip) when the mirror is unreachable outside CI.
pub fn debian_crawl() -> Option<PathBuf> {
    static CRAWL: OnceLock<Option<PathBuf>> = OnceLock::new();
    CRAWL
        .get_or_init(|| {
            let out_dir = workspace().join("target/e2e");
            std::fs::create_dir_all(&out_dir).unwrap();
            let file = out_dir.join(format!("crawl-{}.json", std::process::id()));
            let out = run(kmodfarm().args(["kernels", "crawl", "--out"]).arg(&file));
            if out.status.success() {
                Some(file)
            } else if in_ci() {
                panic!("the Debian mirror must be reachable under CI=true");
            } else {
                eprintln!("skipping: the Debian mirror is unreachable");
                None
            }
        })
        .clone()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file under `dir`, relative, sorted.
/// Where a published variant's `file` (a module, SHA256SUMS, a log) is: in the artifacts directory its
/// `metadata.json` names.
pub fn published_file(prefix: &Path, file: &str) -> PathBuf {
    let m = read_json(&prefix.join("metadata.json"));
    match m["artifacts"].as_str() {
        Some(dir) => prefix.join(dir).join(file),
        None => prefix.join(file),
    }
}

pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `kmodfarm build PROJECTS --kernels CRAWL` for Debian's newest kernel of each line, into `store` and `report`,
/// with the shared cache; `extra` adds flags (architectures, release filter, sandbox).
pub fn build(
    projects: &[&Path],
    crawl: &Path,
    store: &Path,
    report: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut c = kmodfarm();
    c.arg("build").args(projects).arg("--kernels").arg(crawl);
    c.arg("--store").arg(store).arg("--report-dir").arg(report);
    c.arg("--cache")
        .arg(cache_dir())
        .args(["--distro", "debian", "--latest", "1"]);
    c.args(extra);
    run(&mut c)
}

/// A `.modinfo` field as `modinfo -F` prints it.
pub fn modinfo(ko: &Path, field: &str) -> String {
    let out = std::process::Command::new("modinfo")
        .args(["-F", field])
        .arg(ko)
        .output()
        .expect("modinfo (kmod) is installed by scripts/setup.sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A self-signed module signing certificate with `cn`, as the kernel's `certs/Makefile` makes one.
pub fn keypair(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("x509.genkey");
    std::fs::write(
        &config,
        format!(
            "[ req ]\ndefault_bits = 3072\ndistinguished_name = dn\nprompt = no\nstring_mask = utf8only\n\
             x509_extensions = ext\n[ dn ]\nO = kmodfarm tests\nCN = {cn}\n[ ext ]\n\
             basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n"
        ),
    )
    .unwrap();
    let (key, cert) = (dir.join("signing_key.pem"), dir.join("signing_cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "3650", "-batch", "-x509",
        ])
        .arg("-config")
        .arg(&config)
        .args(["-outform", "PEM", "-out"])
        .arg(&cert)
        .arg("-keyout")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, cert)
}

/// `c` with the loopback S3 server's credentials as the only ones in its environment.
pub fn with_aws(mut c: Command) -> Command {
    for (k, v) in kmf_store::loopback::S3Server::credentials_env() {
        c.env(k, v);
    }
    c.env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

/// The results of `driver` in a `results.json` or `boot-test --json` array.
pub fn by_driver<'a>(results: &'a serde_json::Value, driver: &str) -> Vec<&'a serde_json::Value> {
    results
        .as_array()
        .expect("an array of results")
        .iter()
        .filter(|r| r["driver"] == driver)
        .collect()
}

/// `<dir>/host`: a host root whose `/etc/os-release` says Debian 12 (bookworm), for `kmodfarm install`.
pub fn debian_host_root(dir: &Path) -> PathBuf {
    let root = dir.join("host");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    root
}
