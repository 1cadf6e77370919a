//! The farm's least privilege, against a server that enforces IAM (moto, from PyPI, on loopback): the policy
//! documents `kmodfarm ci iam` writes for examples/farm.toml's roles become the only policies of one IAM user
//! per role; a role × action table is checked object by object, and a whole run (plan → work → publish →
//! install) goes through with each step holding only its own role's key, while each step's command fails
//! with another step's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::*;

/// The test venv `scripts/setup.sh --tests` makes; `None` (skip) when absent outside CI.
fn venv() -> Option<PathBuf> {
    let venv = std::env::var_os("KMODFARM_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kmodfarm/test-venv"));
    if venv.join("bin/moto_server").is_file() {
        return Some(venv);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("moto is required under CI=true: run scripts/setup.sh --tests");
    }
    eprintln!("skipping: no moto in {}", venv.display());
    None
}

struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(venv: &Path) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Moto { child, endpoint };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto_server did not listen on {port}");
    }

    fn url(&self, prefix: &str) -> String {
        format!(
            "s3://kmods/{prefix}?endpoint={}&region=us-east-1&path_style=true",
            self.endpoint
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// examples/farm.toml with the store and farm in the test's bucket and moto's account.
fn farm_toml(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("examples/farm.toml"))
        .unwrap()
        .replace("environment = \"prod\"", "environment = \"test\"")
        .replace("s3://acme-kmods/modules", "s3://kmods/modules")
        .replace("s3://acme-kmods/farm", "s3://kmods/farm")
        .replace("111122223333", "123456789012");
    let path = dir.join("farm.toml");
    std::fs::write(&path, text).unwrap();
    path
}

type Keys = BTreeMap<String, serde_json::Value>;

/// `cmd` with `user`'s key as the only credentials in its environment.
fn as_user(mut cmd: Command, keys: &Keys, user: &str) -> Command {
    let k = &keys[user];
    cmd.env("AWS_ACCESS_KEY_ID", k["key"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", k["secret"].as_str().unwrap())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    cmd
}

#[test]
fn generated_policies_hold_against_iam_enforcement() {
    let Some(venv) = venv() else { return };
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = farm_toml(dir.path());
    let iam = dir.path().join("iam");
    let o = run(kmodfarm()
        .args(["ci", "iam", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&iam));
    assert!(o.status.success());
    assert_eq!(
        files(&iam).len(),
        10,
        "a policy and a trust document per role"
    );

    let moto = Moto::start(&venv);
    let script = workspace().join("crates/kmodfarm/tests/e2e/fixtures/moto_iam.py");
    let python = venv.join("bin/python");
    let o = run(Command::new(&python)
        .arg(&script)
        .args(["setup", &moto.endpoint, "kmods"])
        .arg(&iam));
    assert!(o.status.success());
    let keys: Keys = serde_json::from_slice(&o.stdout).unwrap();
    let user = |role: &str| format!("kmodfarm-test-{role}");
    assert_eq!(keys.len(), 5, "{keys:?}");

    // Role × action, object by object.
    let store = "modules/hello/0.1.0/debian/x86_64/6.1.0-9-amd64/metadata.json";
    let plan = "farm/plans/ab/plan.json";
    let cache = "farm/cache/sha256/ab";
    let staging = "farm/staging/ab/shard-0/hello/x/record.json";
    let git = "farm/git-cache/driver.git.tar";
    let outside = "elsewhere/x";
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, bool)] = &[
        ("planner", "get", store, true), ("planner", "put", store, false),
        ("planner", "put", plan, true), ("planner", "put", cache, true),
        ("planner", "get", git, true), ("planner", "put", git, false),
        ("planner", "put", staging, false), ("planner", "get", staging, false),
        ("worker", "get", plan, true), ("worker", "get", cache, true),
        ("worker", "put", staging, true), ("worker", "get", staging, false),
        ("worker", "put", plan, false), ("worker", "put", cache, false),
        ("worker", "get", store, false), ("worker", "put", store, false),
        // (Listing is limited by `s3:prefix` conditions, which moto does not evaluate: the kmf-ci unit
        // tests check those statically.)
        ("worker", "get", git, false),
        ("publisher", "get", plan, true), ("publisher", "get", cache, true),
        ("publisher", "get", staging, true), ("publisher", "list", "farm/staging/", true),
        ("publisher", "put", store, true), ("publisher", "delete", store, true),
        ("publisher", "put", plan, false), ("publisher", "put", staging, false),
        ("publisher", "put", git, false),
        ("boot-tester", "get", store, true), ("boot-tester", "put", store, false),
        ("boot-tester", "get", plan, false),
        ("git-cache", "put", git, true), ("git-cache", "get", git, true),
        ("git-cache", "delete", git, true), ("git-cache", "get", store, false),
        ("git-cache", "put", plan, false),
    ];
    let mut cases: Vec<serde_json::Value> = table
        .iter()
        .map(|(role, action, key, _)| {
            serde_json::json!({ "user": user(role), "action": action, "key": key })
        })
        .collect();
    for role in ["planner", "worker", "publisher", "boot-tester", "git-cache"] {
        cases.push(serde_json::json!({ "user": user(role), "action": "put", "key": outside }));
    }
    let o = run(Command::new(&python)
        .arg(&script)
        .args(["table", &moto.endpoint, "kmods"])
        .arg(serde_json::to_string(&keys).unwrap())
        .arg(serde_json::to_string(&cases).unwrap()));
    assert!(o.status.success());
    let results: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut wrong = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let want = table.get(i).is_some_and(|t| t.3);
        if r["allowed"].as_bool() != Some(want) {
            wrong.push(format!("{r} (expected allowed={want})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "role × action mismatches:\n{}",
        wrong.join("\n")
    );

    // A whole run, each step with its own role's key only.
    let (store_url, farm_url) = (moto.url("modules"), moto.url("farm"));
    let mut c = as_user(kmodfarm(), &keys, &user("planner"));
    c.arg("plan")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&crawl);
    c.args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"]);
    c.args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$", "--json"]);
    c.args(["--store", &store_url, "--out", &farm_url]);
    c.arg("--cache").arg(cache_dir());
    let o = run(&mut c);
    assert!(o.status.success(), "the planner plans");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = summary["id"].as_str().unwrap();
    let plan_url = summary["location"].as_str().unwrap().to_string();
    let staging_url = moto.url(&format!("farm/staging/{id}"));

    let work = |who: &str| {
        let mut c = as_user(kmodfarm(), &keys, &user(who));
        c.args([
            "work",
            "--plan",
            &plan_url,
            "--shard",
            "0",
            "--out",
            &staging_url,
        ])
        .arg("--cache")
        .arg(dir.path().join(format!("cache-{who}")))
        .arg("--report-dir")
        .arg(dir.path().join(format!("work-{who}")));
        run(&mut c)
    };
    let publish = |who: &str| {
        let mut c = as_user(kmodfarm(), &keys, &user(who));
        c.args(["publish", "--plan", &plan_url, "--bundles", &staging_url])
            .args(["--store", &store_url])
            .arg("--cache")
            .arg(cache_dir())
            .arg("--report-dir")
            .arg(dir.path().join(format!("publish-{who}")));
        run(&mut c)
    };
    // The publisher cannot build into staging; the worker can.
    assert_ne!(work("publisher").status.code(), Some(0));
    assert!(work("worker").status.success(), "the worker builds");
    // Neither the worker nor the planner can publish; the publisher can.
    for who in ["worker", "planner"] {
        let o = publish(who);
        assert_ne!(o.status.code(), Some(0), "{who} published");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Access Denied")
                || String::from_utf8_lossy(&o.stderr).contains("AccessDenied"),
            "{who}: the refusal is the store's"
        );
    }
    assert!(
        publish("publisher").status.success(),
        "the publisher publishes"
    );

    // The published record: the boot tester's (read-only) key reads it, the worker's does not.
    let meta_key = format!(
        "{}/metadata.json",
        summary["shards"][0]["variants"][0].as_str().unwrap()
    );
    let read_record = |who: &str| {
        let o = run(Command::new(&python)
            .arg(&script)
            .args(["table", &moto.endpoint, "kmods"])
            .arg(serde_json::to_string(&keys).unwrap())
            .arg(
                serde_json::json!([{ "user": user(who), "action": "get",
                                     "key": format!("modules/{meta_key}") }])
                .to_string(),
            ));
        let r: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
        (r[0]["allowed"].as_bool().unwrap(), r[0]["error"].clone())
    };
    let (allowed, error) = read_record("boot-tester");
    assert!(
        allowed && error.is_null(),
        "the record exists and the boot tester reads it"
    );
    assert!(!read_record("worker").0);

    // The planner finds everything published.
    let o = run(as_user(kmodfarm(), &keys, &user("planner"))
        .arg("plan")
        .arg(workspace().join("examples/hello"))
        .arg("--kernels")
        .arg(&crawl)
        .args(["--distro", "debian", "--latest", "1", "--arch", "x86_64"])
        .args(["--kernel-release", r"^6\.1\.0-[0-9]+-amd64$", "--json"])
        .args(["--store", &store_url, "--no-prefetch"])
        .arg("--cache")
        .arg(cache_dir()));
    assert!(o.status.success());
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["variants"], 0, "{again:#}");
}

/// `kmodfarm ci github` for a farm whose store is S3 on loopback: the workflow passes actionlint with the
/// configuration it comes with, and runs end to end under act (each runner label served by this host):
/// plan → the build jobs' matrix legs → publish; a second run finds nothing to build.
#[test]
fn the_github_workflow_lints_and_runs_under_act() {
    let Some(venv) = venv() else { return };
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    // The repository the workflow runs in: the driver and the generated files, committed.
    let repo = driver_repo(dir.path());
    let config = dir.path().join("farm.toml");
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"environment = "act"
[store]
url = {store}
farm = {farm}
account_id = "123456789012"
[tags]
team = "kernel"
[architectures.x86_64]
github_runner = "kmodfarm-act-x86-64"
[architectures.aarch64]
github_runner = "kmodfarm-act-aarch64"
[run]
projects = ["examples/hello"]
kernels = [{crawl}]
plan_args = ["--distro", "debian", "--latest", "1", "--kernel-release", '^6\.1\.0-[0-9]+-(amd64|arm64)$']
shard_size = 1
[github]
repository = "acme/drivers"
publish_environment = "kmodfarm-act-publish"
install = "kmodfarm --version"
"#,
            store = quoted(&server.url("kmods", "modules")),
            farm = quoted(&server.url("kmods", "farm")),
            crawl = quoted(&crawl.display().to_string()),
        ),
    )
    .unwrap();
    let o = run(kmodfarm()
        .args(["ci", "github", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&repo));
    assert!(o.status.success());
    let workflow = repo.join(".github/workflows/kmodfarm-act.yml");

    let o = run(Command::new(venv.join("bin/actionlint"))
        .args(["-shellcheck=", "-pyflakes=", "-config-file"])
        .arg(repo.join(".github/actionlint.yaml"))
        .arg(&workflow));
    assert!(o.status.success(), "actionlint");
    // Without the runner labels declared, actionlint refuses them: the configuration is what makes it pass.
    let o = run(Command::new(venv.join("bin/actionlint"))
        .args(["-shellcheck=", "-pyflakes="])
        .arg(&workflow));
    assert!(!o.status.success());

    commit_all(&repo);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kmodfarm")).parent().unwrap();
    let act = |round: &str| {
        let mut c = Command::new(venv.join("bin/act"));
        c.current_dir(&repo)
            .args([
                "workflow_dispatch",
                "-W",
                ".github/workflows/kmodfarm-act.yml",
            ])
            .args(["-P", "kmodfarm-act-x86-64=-self-hosted"])
            .args(["-P", "kmodfarm-act-aarch64=-self-hosted"])
            .args(["--no-cache-server", "--artifact-server-addr", "127.0.0.1"])
            .env("HOME", dir.path().join(format!("home-{round}")))
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("KMODFARM_CACHE", cache_dir())
            .env_remove("KMODFARM_STORE");
        for (k, v) in kmf_store::loopback::S3Server::credentials_env() {
            c.env(k, v);
        }
        run(&mut c)
    };
    let first = act("1");
    let log = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.status.success(), "act");
    // act names a job by its name: `build x86_64 (0) shard N-<leg>` for the legs of build-x86-64-0.
    for job in [
        "plan",
        "build x86_64 (0) shard 0-1",
        "build x86_64 (0) shard 1-2",
        "publish",
    ] {
        assert!(succeeded(&log, job), "{job} did not succeed:\n{log}");
    }
    assert!(!log.contains("Job failed"), "a job failed");
    // Both shards (amd64 and arm64, Debian's aarch64 cross-built on x86_64) ran as legs of one build job.
    let matrix = read_json(&server.root.join("kmods/modules/hello/0.1.0/matrix.json"));
    let mut arches: Vec<&str> = matrix
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["architecture"].as_str().unwrap())
        .collect();
    arches.sort();
    assert_eq!(arches, ["aarch64", "x86_64"]);

    let second = act("2");
    assert!(second.status.success());
    let log = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        !log.contains("[kmodfarm act nightly/build"),
        "the second run built something:\n{log}"
    );
    assert!(succeeded(&log, "publish"), "{log}");
}

/// A repository holding examples/hello, as a driver's repository would.
fn driver_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("examples/hello")).unwrap();
    for f in files(&workspace().join("examples/hello")) {
        let to = repo.join("examples/hello").join(&f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(workspace().join("examples/hello").join(&f), to).unwrap();
    }
    repo
}

/// `git init` (once) and commit everything in `repo`.
fn commit_all(repo: &Path) {
    let mut steps = vec![
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=ci",
            "-c",
            "user.email=ci@localhost",
            "commit",
            "-qm",
            "drivers",
        ],
    ];
    if !repo.join(".git").exists() {
        steps.insert(0, vec!["init", "-q", "-b", "main"]);
    }
    for git in steps {
        assert!(Command::new("git")
            .args(&git)
            .current_dir(repo)
            .status()
            .unwrap()
            .success());
    }
}

/// `kmodfarm ci gitlab` for a farm whose store is S3 on loopback: the pipeline runs end to end under
/// gitlabci-local on this host: plan → each architecture's build job fanned out by `parallel: matrix` (two
/// x86_64 legs sharing three shards, one aarch64 leg with none) → publish; a second run builds nothing.
#[test]
fn the_gitlab_pipeline_runs_under_gitlabci_local() {
    let Some(venv) = venv() else { return };
    let Some(crawl) = debian_crawl() else { return };
    let gcil = venv.join("bin/gcil");
    if !gcil.is_file() {
        assert!(
            !in_ci(),
            "gitlabci-local is required under CI=true: run scripts/setup.sh --tests"
        );
        eprintln!("skipping: no gitlabci-local in {}", venv.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let repo = driver_repo(dir.path());
    let config = dir.path().join("farm.toml");
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"environment = "gl"
[store]
url = {store}
farm = {farm}
account_id = "123456789012"
[tags]
team = "kernel"
[architectures.x86_64]
github_runner = "unused"
gitlab_tags = ["kmodfarm", "x86_64"]
max_runners = 2
[architectures.aarch64]
github_runner = "unused"
gitlab_tags = ["kmodfarm", "aarch64"]
max_runners = 1
[run]
projects = ["examples/hello"]
kernels = [{crawl}]
plan_args = ["--distro", "debian", "--latest", "1", "--kernel-release", '^6\.1\.0-[0-9]+-(amd64|cloud-amd64|arm64)$']
shard_size = 1
[gitlab]
image = "local"
"#,
            store = quoted(&server.url("kmods", "modules")),
            farm = quoted(&server.url("kmods", "farm")),
            crawl = quoted(&crawl.display().to_string()),
        ),
    )
    .unwrap();
    let o = run(kmodfarm()
        .args(["ci", "gitlab", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&repo));
    assert!(o.status.success());
    commit_all(&repo);

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kmodfarm")).parent().unwrap();
    let home = dir.path().join("home");
    let gcil_cmd = |args: &[&str]| {
        let mut c = Command::new(&gcil);
        c.current_dir(&repo)
            .args(args)
            .env("HOME", &home)
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("KMODFARM_CACHE", cache_dir())
            .env_remove("KMODFARM_STORE")
            .stdin(Stdio::null());
        for (k, v) in kmf_store::loopback::S3Server::credentials_env() {
            c.env(k, v);
        }
        run(&mut c)
    };
    // No update check against the package index.
    gcil_cmd(&["--set", "updates", "enabled", "0"]);
    let first = gcil_cmd(&["-H", "-p"]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success(), "gitlabci-local:\n{log}");
    for job in [
        "kmodfarm-gl-plan",
        "kmodfarm-gl-build-x86-64: [0]",
        "kmodfarm-gl-build-x86-64: [1]",
        "kmodfarm-gl-build-aarch64: [0]",
        "kmodfarm-gl-publish",
    ] {
        assert!(log.contains(job), "{job} did not run:\n{log}");
    }
    // The x86_64 legs shared the three shards: leg 0 built shards 0 and 2, leg 1 shard 1; the aarch64 leg
    // had none (Debian's arm64 kernel cross-builds on x86_64).
    assert!(
        log.contains("building shard(s) 0, 2 (2 variant(s))"),
        "{log}"
    );
    assert!(log.contains("building shard(s) 1 (1 variant(s))"), "{log}");
    assert!(log.contains("worker 0 of 1 has none"), "{log}");
    let matrix = read_json(&server.root.join("kmods/modules/hello/0.1.0/matrix.json"));
    let mut flavours: Vec<&str> = matrix
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["flavour"].as_str().unwrap())
        .collect();
    flavours.sort();
    assert_eq!(flavours, ["amd64", "arm64", "cloud-amd64"], "{matrix:#}");

    let second = gcil_cmd(&["-H", "-p"]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(second.status.success(), "{log}");
    assert!(log.contains("0 variant(s) to build"), "{log}");
    assert!(
        !log.contains("building shard(s)"),
        "the second run built something:\n{log}"
    );
}

/// Whether act's log says `job` (its name, which act pads to a common width) succeeded.
fn succeeded(log: &str, job: &str) -> bool {
    let prefix = format!("[kmodfarm act nightly/{job}");
    log.lines().any(|l| {
        l.strip_prefix(&prefix).is_some_and(|rest| {
            let (pad, tail) = rest.split_once(']').unwrap_or(("x", ""));
            pad.trim().is_empty() && tail.contains("Job succeeded")
        })
    })
}

/// `kmodfarm ci kubernetes`: the standing objects and one run's jobs (from a plan in S3 on loopback) pass
/// the Kubernetes OpenAPI schemas strictly (kubernetes-validate, offline), which refuse a misspelled field;
/// the Indexed Job has one completion per shard of its runner, and `work --runner --index`, as its pods run
/// it, builds the index-th shard of that runner.
#[test]
fn kubernetes_manifests_validate_and_index_the_runners_shards() {
    let Some(venv) = venv() else { return };
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let config = dir.path().join("farm.toml");
    let example = std::fs::read_to_string(workspace().join("examples/farm.toml")).unwrap();
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        &config,
        example
            .replace(
                "\"s3://acme-kmods/modules\"",
                &quoted(&server.url("kmods", "modules")),
            )
            .replace(
                "\"s3://acme-kmods/farm\"",
                &quoted(&server.url("kmods", "farm")),
            ),
    )
    .unwrap();
    let validate = |file: &Path| {
        run(Command::new(venv.join("bin/kubernetes-validate"))
            .args(["--strict", "-k", "1.33.0"])
            .arg(file))
    };

    let standing = dir.path().join("farm.yaml");
    let o = run(kmodfarm()
        .args(["ci", "kubernetes", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&standing));
    assert!(o.status.success());
    assert!(validate(&standing).status.success());
    let text = std::fs::read_to_string(&standing).unwrap();
    for kind in ["ServiceAccount", "NetworkPolicy", "CronJob"] {
        assert!(text.contains(&format!("kind: {kind}")), "{kind}");
    }
    // The validator does refuse what Kubernetes would.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replacen(
            "automountServiceAccountToken",
            "automountServiceAcountToken",
            1,
        ),
    )
    .unwrap();
    assert!(!validate(&broken).status.success());

    // The Actions Runner Controller scale sets' runner pods are valid pod templates too.
    let gh = dir.path().join("gh");
    let o = run(kmodfarm()
        .args(["ci", "github", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&gh));
    assert!(o.status.success());
    let arc = files(&gh.join(".github/arc"));
    assert_eq!(arc.len(), 2, "one scale set per architecture: {arc:?}");
    for f in arc {
        let values: serde_json::Value = yaml_serde::from_str(
            &std::fs::read_to_string(gh.join(".github/arc").join(&f)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            values["template"]["spec"]["serviceAccountName"],
            "kmodfarm-prod-worker"
        );
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "runner", "labels": values["template"]["metadata"]["labels"] },
            "spec": values["template"]["spec"],
        });
        let path = dir.path().join(format!("{f}.pod.json"));
        std::fs::write(&path, serde_json::to_vec(&pod).unwrap()).unwrap();
        assert!(validate(&path).status.success(), "{f}");
    }

    // A plan in the store: Debian's amd64 and arm64 kernels, both for the x86_64 runner, one shard each.
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
    c.args(["--no-prefetch", "--shard-size", "1", "--json"]);
    c.args(["--store", &server.url("kmods", "modules")]);
    c.args(["--out", &server.url("kmods", "farm")]);
    c.arg("--cache").arg(cache_dir());
    let o = run(&mut c);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan_url = summary["location"].as_str().unwrap().to_string();
    let id = summary["id"].as_str().unwrap().to_string();

    let run_yaml = dir.path().join("run.yaml");
    let o = run(with_aws(kmodfarm())
        .args(["ci", "kubernetes", "--config"])
        .arg(&config)
        .args(["--plan", &plan_url, "--out"])
        .arg(&run_yaml)
        .arg("--cache")
        .arg(dir.path().join("cache")));
    assert!(o.status.success());
    assert!(validate(&run_yaml).status.success());
    let text = std::fs::read_to_string(&run_yaml).unwrap();
    assert!(text.contains("completionMode: Indexed"));
    assert!(text.contains("completions: 2"), "{text}");
    assert!(
        !text.contains("kmodfarm-prod-worker-aarch64"),
        "no shard needs an aarch64 runner"
    );
    assert!(text.contains("$(JOB_COMPLETION_INDEX)"));

    // The pod of completion index 1 builds the x86_64 runner's second shard.
    let staging = server.url("kmods", &format!("farm/staging/{id}"));
    let o = run(with_aws(kmodfarm())
        .args([
            "work", "--plan", &plan_url, "--runner", "x86_64", "--index", "1",
        ])
        .args(["--out", &staging])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(dir.path().join("work")));
    assert!(o.status.success());
    let second = summary["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["runner"] == "x86_64")
        .nth(1)
        .unwrap()["index"]
        .as_u64()
        .unwrap();
    let staged = files(&server.root.join("kmods/farm/staging").join(&id));
    assert!(
        staged
            .iter()
            .all(|f| f.starts_with(&format!("shard-{second}/"))),
        "{staged:?}"
    );
    assert!(staged.iter().any(|f| f.ends_with("record.json")));
    // An index past the runner's shards is refused with the count.
    let o = run(with_aws(kmodfarm())
        .args([
            "work", "--plan", &plan_url, "--runner", "x86_64", "--index", "2",
        ])
        .args(["--out", &staging])
        .arg("--cache")
        .arg(cache_dir()));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 shard(s) for runner x86_64"));
}

/// Containers and a network of one test, removed however the test ends.
struct DockerScope {
    network: String,
    containers: std::cell::RefCell<Vec<String>>,
}

impl DockerScope {
    fn docker(args: &[&str]) -> std::process::Output {
        Command::new("docker").args(args).output().expect("docker")
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = Self::docker(&["rm", "-f", c]);
        }
        let _ = Self::docker(&["network", "rm", &self.network]);
    }
}

/// A worker image as a fleet would build it: Debian's minimal root with bubblewrap, ca-certificates and
/// zstd (made once per machine with mmdebstrap from the configured mirror, imported locally), plus this
/// kmodfarm binary.
fn worker_image(dir: &Path) -> String {
    let base = "kmodfarm-worker-test-base:bookworm-1";
    let have = DockerScope::docker(&["image", "inspect", base])
        .status
        .success();
    if !have {
        let mirror = kmf_kernels::mirrors::DebianMirrors::discover().expect("a Debian mirror");
        let tar = dir.join("worker-root.tar");
        let o = run(Command::new("mmdebstrap")
            .args(["--quiet", "--variant=minbase"])
            .arg("--include=bubblewrap,ca-certificates,zstd")
            .arg("bookworm")
            .arg(&tar)
            .arg(&mirror.archive));
        assert!(o.status.success(), "mmdebstrap");
        let o = run(Command::new("docker").arg("import").arg(&tar).arg(base));
        assert!(o.status.success());
        let _ = std::fs::remove_file(&tar);
    }
    let ctx = dir.join("image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_kmodfarm"), ctx.join("kmodfarm")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY kmodfarm /usr/local/bin/kmodfarm\n"),
    )
    .unwrap();
    let tag = "kmodfarm-worker-test:current";
    let o = run(Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(&ctx));
    assert!(o.status.success(), "docker build");
    tag.to_string()
}

/// `docker run` options for a pod's container, from the manifest `ci kubernetes` wrote: the image, the
/// command and arguments (with `$(JOB_COMPLETION_INDEX)` substituted as Kubernetes does), the environment,
/// the user, the read-only root, the dropped capabilities, no privilege escalation, the seccomp and
/// AppArmor profiles, the unmasked `/proc`, and the `emptyDir` volumes as tmpfs.
fn docker_args_for(pod: &serde_json::Value, index: usize) -> Vec<String> {
    let ctr = &pod["containers"][0];
    let sc = &ctr["securityContext"];
    let psc = &pod["securityContext"];
    let mut a: Vec<String> = vec![];
    let user = format!("{}:{}", psc["runAsUser"], psc["runAsGroup"]);
    a.extend(["--user".into(), user]);
    if sc["readOnlyRootFilesystem"] == true {
        a.push("--read-only".into());
    }
    assert_eq!(sc["privileged"], false);
    if sc["allowPrivilegeEscalation"] == false {
        a.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in sc["capabilities"]["drop"].as_array().unwrap() {
        a.extend(["--cap-drop".into(), cap.as_str().unwrap().into()]);
    }
    if psc["seccompProfile"]["type"] == "Unconfined" {
        a.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
    if psc["appArmorProfile"]["type"] == "Unconfined" {
        a.extend(["--security-opt".into(), "apparmor=unconfined".into()]);
    }
    if sc["procMount"] == "Unmasked" {
        a.extend(["--security-opt".into(), "systempaths=unconfined".into()]);
    }
    for m in ctr["volumeMounts"].as_array().unwrap() {
        a.extend([
            "--tmpfs".into(),
            format!("{}:rw,exec", m["mountPath"].as_str().unwrap()),
        ]);
    }
    a.extend(["-e".into(), format!("JOB_COMPLETION_INDEX={index}")]);
    for e in ctr["env"].as_array().unwrap() {
        a.extend([
            "-e".into(),
            format!(
                "{}={}",
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap()
            ),
        ]);
    }
    a.extend([
        "--entrypoint".into(),
        ctr["command"][0].as_str().unwrap().into(),
    ]);
    a.push(ctr["image"].as_str().unwrap().into());
    for arg in ctr["args"].as_array().unwrap() {
        a.push(
            arg.as_str()
                .unwrap()
                .replace("$(JOB_COMPLETION_INDEX)", &index.to_string()),
        );
    }
    a
}

/// The worker container runs in Docker as the Indexed Job's pod spec says: two pods (completion indices 0
/// and 1) at once, non-root, read-only root, no capability, on a network that reaches the store (S3 in a
/// container beside them) and nothing else; they build their shards into staging and the publisher
/// publishes them. Without the pod's unmasked `/proc` or its unconfined seccomp profile, bubblewrap cannot
/// make its sandbox.
#[test]
fn the_worker_container_runs_as_the_pod_spec_says() {
    if !crate::docker::docker_usable() {
        return;
    }
    let Some(crawl) = debian_crawl() else { return };
    let Some(s3s) = kmf_store::loopback::s3s_fs_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "s3s-fs is required under CI=true"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = worker_image(dir.path());
    let scope = DockerScope {
        network: format!("kmodfarm-test-{}", std::process::id()),
        containers: Default::default(),
    };
    // The store on an internal network: nothing there reaches beyond it.
    assert!(
        DockerScope::docker(&["network", "create", "--internal", &scope.network])
            .status
            .success()
    );
    let data = dir.path().join("s3");
    std::fs::create_dir_all(data.join("kmods")).unwrap();
    for d in [dir.path(), &data, &data.join("kmods")] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let s3 = format!("{}-s3", scope.network);
    scope.containers.borrow_mut().push(s3.clone());
    let (ak, sk) = ("kmodfarm-worker", "kmodfarm-worker-secret");
    let o = run(Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &s3,
            "--network",
            &scope.network,
            "--user",
            "1000:1000",
        ])
        .arg("-v")
        .arg(format!("{}:/usr/local/bin/s3s-fs:ro", s3s.display()))
        .arg("-v")
        .arg(format!("{}:/data", data.display()))
        .args([
            &image,
            "s3s-fs",
            "--host",
            "0.0.0.0",
            "--access-key",
            ak,
            "--secret-key",
            sk,
        ])
        .arg("/data"));
    assert!(o.status.success());
    let ip = String::from_utf8(
        DockerScope::docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &s3,
        ])
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let endpoint = format!("http://{ip}:8014");
    for _ in 0..50 {
        if std::net::TcpStream::connect((ip.as_str(), 8014)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = |prefix: &str| {
        format!("s3://kmods/{prefix}?endpoint={endpoint}&region=us-east-1&path_style=true")
    };
    let creds = |mut c: Command| {
        c.env("AWS_ACCESS_KEY_ID", ak)
            .env("AWS_SECRET_ACCESS_KEY", sk)
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        c
    };

    // The farm configuration of this test: its store, its image.
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let example = std::fs::read_to_string(workspace().join("examples/farm.toml")).unwrap();
    let config = dir.path().join("farm.toml");
    std::fs::write(
        &config,
        example
            .replace("\"s3://acme-kmods/modules\"", &quoted(&url("modules")))
            .replace("\"s3://acme-kmods/farm\"", &quoted(&url("farm")))
            .replace(
                "image = \"registry.acme.example/kmodfarm:0.1.0\"\n# The store",
                &format!("image = {}\n# The store", quoted(&image)),
            ),
    )
    .unwrap();

    let mut c = creds(kmodfarm());
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
    c.args(["--shard-size", "1", "--json", "--store", &url("modules")]);
    c.args(["--out", &url("farm")])
        .arg("--cache")
        .arg(cache_dir());
    let o = run(&mut c);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan_url = summary["location"].as_str().unwrap().to_string();

    let manifests = dir.path().join("run.yaml");
    let o = run(creds(kmodfarm())
        .args(["ci", "kubernetes", "--config"])
        .arg(&config)
        .args(["--plan", &plan_url, "--out"])
        .arg(&manifests)
        .arg("--cache")
        .arg(dir.path().join("cache")));
    assert!(o.status.success());
    // The Indexed Job's pod, read back from the YAML.
    let text = std::fs::read_to_string(&manifests).unwrap();
    assert!(text.contains(&format!("image: {image}")), "{text}");
    let pod = yaml_pod(&text);
    assert_eq!(pod["containers"][0]["image"], image.as_str());

    // Two pods at once, with the worker's credentials only.
    let mut workers = Vec::new();
    for index in 0..2 {
        let name = format!("{}-w{index}", scope.network);
        scope.containers.borrow_mut().push(name.clone());
        let mut c = Command::new("docker");
        c.args(["run", "--name", &name, "--network", &scope.network]);
        c.args(["-e", &format!("AWS_ACCESS_KEY_ID={ak}")]);
        c.args(["-e", &format!("AWS_SECRET_ACCESS_KEY={sk}")]);
        c.args(["-e", "HOME=/tmp"]);
        c.args(docker_args_for(&pod, index));
        c.args(["--report-dir", "/tmp/report"]);
        workers.push(
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a worker pod failed:\n{stderr}");
        assert!(stderr.contains("1 variant(s) built"), "{stderr}");
    }

    let o = run(creds(kmodfarm())
        .args(["publish", "--plan", &plan_url])
        .args(["--bundles", &plan_url.replacen("/plans/", "/staging/", 1)])
        .args(["--store", &url("modules")])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--report-dir")
        .arg(dir.path().join("report")));
    assert!(o.status.success());
    let matrix = read_json(&data.join("kmods/modules/hello/0.1.0/matrix.json"));
    assert_eq!(matrix.as_array().unwrap().len(), 2);

    // What the pod's settings are for: without them bubblewrap cannot build its sandbox.
    let bwrap = [
        "bwrap",
        "--unshare-all",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "true",
    ];
    let mut base: Vec<String> = docker_args_for(&pod, 0);
    let image_at = base.iter().position(|a| a == &image).unwrap();
    base.truncate(image_at);
    let entry = base.iter().position(|a| a == "--entrypoint").unwrap();
    base.drain(entry..entry + 2);
    let try_bwrap = |drop_opt: Option<&str>| {
        let mut args: Vec<String> = base.clone();
        if let Some(opt) = drop_opt {
            let i = args.iter().position(|a| a == opt).unwrap();
            args.drain(i - 1..=i);
        }
        let mut c = Command::new("docker");
        c.args(["run", "--rm", "--network", "none"])
            .args(&args)
            .arg(&image)
            .args(bwrap);
        run(&mut c).status.success()
    };
    assert!(try_bwrap(None), "bubblewrap works with the pod's settings");
    assert!(
        !try_bwrap(Some("systempaths=unconfined")),
        "a masked /proc stops it"
    );
    assert!(
        !try_bwrap(Some("seccomp=unconfined")),
        "the default seccomp profile stops it"
    );

    // And the pods' network reaches nothing but the store: not the Debian mirror.
    let mirror = kmf_kernels::mirrors::DebianMirrors::discover()
        .unwrap()
        .archive;
    let host = mirror
        .split("://")
        .nth(1)
        .unwrap()
        .split(['/', ':'])
        .next()
        .unwrap()
        .to_string();
    let o = run(Command::new("docker")
        .args(["run", "--rm", "--network", &scope.network, &image])
        .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{host}/80")]));
    assert!(!o.status.success(), "a worker pod reached {host}");
}

/// The pod spec of the first Indexed Job in `ci kubernetes` output, as JSON.
fn yaml_pod(text: &str) -> serde_json::Value {
    for doc in text.split("\n---\n") {
        let Ok(v) = yaml_serde::from_str::<serde_json::Value>(doc) else {
            continue;
        };
        if v["kind"] == "Job" && v["spec"]["completionMode"] == "Indexed" {
            return v["spec"]["template"]["spec"].clone();
        }
    }
    panic!("no Indexed Job in:\n{text}");
}

/// Every file under `root`, relative to it, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// Issue 22: `ci github --out DIR` with a hostile farm.toml. A runner label that climbs out of DIR or is
/// absolute (it names the scale set's values file), a GitHub expression, an injected line or a command
/// substitution where a name belongs: refused before anything is written, naming the key, and nothing
/// appears anywhere. Hostile words of the `plan` command line are allowed, and stay data: the generated
/// plan step, run by bash, hands them to kmodfarm as they were written and runs none of them.
#[test]
fn ci_github_refuses_hostile_names_and_keeps_values_data() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let out = root.join("out");
    let config = root.join("farm.toml");
    let example = std::fs::read_to_string(workspace().join("examples/farm.toml")).unwrap();
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let runner = "github_runner = \"kmodfarm-prod-x86-64\"";
    let install = "[github]\n";
    assert!(example.contains(runner) && example.contains(install));
    let abs = root.join("abs-escaped").display().to_string();
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            runner,
            format!("github_runner = {}", quoted("../../../escaped")),
            "architectures.x86_64.github_runner".into(),
            "runner label",
        ),
        (
            runner,
            format!("github_runner = {}", quoted(&abs)),
            "architectures.x86_64.github_runner".into(),
            "runner label",
        ),
        (
            runner,
            format!("github_runner = {}", quoted("${{ secrets.X }}")),
            "architectures.x86_64.github_runner".into(),
            "expression syntax",
        ),
        (
            runner,
            format!("github_runner = {}", quoted("x\nrun: evil")),
            "architectures.x86_64.github_runner".into(),
            "control character",
        ),
        (
            runner,
            format!("github_runner = {}", quoted("$(id)")),
            "architectures.x86_64.github_runner".into(),
            "`$`",
        ),
        (
            install,
            format!(
                "[github]\ninstall = {}\n",
                quoted("kmodfarm --version\nrun: evil")
            ),
            "github.install".into(),
            "control character",
        ),
        (
            install,
            format!(
                "[github]\ninstall = {}\n",
                quoted("echo ${{ secrets.KMODFARM_SIGNING_KEY }}")
            ),
            "github.install".into(),
            "expression syntax",
        ),
    ];
    for (from, to, key, why) in &cases {
        std::fs::write(&config, example.replacen(from, to, 1)).unwrap();
        let o = run(kmodfarm()
            .args(["ci", "github", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{to}: {err}");
        assert!(
            err.contains(&format!("{key} = `")) && err.contains(why),
            "{to}: {err}"
        );
        assert!(!err.contains("\nrun: evil"), "{err}");
        assert_eq!(tree(root), ["farm.toml"], "{to}: something was written");
    }

    // Words of the plan command line that a shell or GitHub would run, were they spliced into a script.
    let hostile = [
        "$(touch PWNED)",
        "`touch PWNED`",
        "'; touch PWNED; '",
        "\"; touch PWNED; \"",
        "a  b",
        "x;id|cat&",
    ];
    let plan_args = "plan_args = [\"--distro\", \"debian\", \"--latest\", \"1\"]";
    assert!(example.contains(plan_args));
    let words: Vec<String> = hostile.iter().map(|h| quoted(h)).collect();
    std::fs::write(
        &config,
        example.replacen(
            plan_args,
            &format!(
                "plan_args = [\"--distro\", \"debian\", {}]",
                words.join(", ")
            ),
            1,
        ),
    )
    .unwrap();
    let o = run(kmodfarm()
        .args(["ci", "github", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success());
    for f in tree(root) {
        assert!(
            f == "farm.toml" || f.starts_with("out"),
            "{f} outside --out"
        );
    }
    let workflow: serde_json::Value = yaml_serde::from_str(
        &std::fs::read_to_string(out.join(".github/workflows/kmodfarm-prod.yml")).unwrap(),
    )
    .unwrap();
    let step = workflow["jobs"]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "plan")
        .unwrap();
    let script = step["run"].as_str().unwrap();
    for h in hostile {
        assert!(!script.contains(h), "{h} in the script:\n{script}");
    }
    // The step as a runner runs it, with a kmodfarm that records its arguments.
    let bin = root.join("bin");
    let work = root.join("work");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let fake = bin.join("kmodfarm");
    std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$ARGS_FILE\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut bash = Command::new("bash");
    bash.args(["-e", "-c", script])
        .current_dir(&work)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("ARGS_FILE", root.join("args.txt"))
        .env("GITHUB_OUTPUT", root.join("github-output"))
        .env("KMODFARM_STORE", "s3://store")
        .env("KMODFARM_FARM", "s3://farm");
    for (k, v) in step["env"].as_object().unwrap() {
        bash.env(k, v.as_str().unwrap());
    }
    let o = run(&mut bash);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = std::fs::read_to_string(root.join("args.txt")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args[0], "plan");
    let at = args.iter().position(|a| *a == "debian").unwrap();
    assert_eq!(&args[at + 1..at + 1 + hostile.len()], hostile, "{args:?}");
    assert!(!work.join("PWNED").exists() && !root.join("PWNED").exists());
}
