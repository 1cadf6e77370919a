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
