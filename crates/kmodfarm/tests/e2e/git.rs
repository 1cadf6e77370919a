//! Driver sources from git, served by a real `git daemon` on loopback: a driver built from a tag and from a
//! commit, each recorded in metadata.json and the provenance; a new commit upstream makes the next plan
//! rebuild; with the upstream down the build goes on from the cached mirror, with a warning.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::*;

struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself, not `git daemon`, whose wrapper process would outlive a kill of its own.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let mut child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return GitDaemon { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("git daemon did not listen on {port}");
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bare repository `hello.git` under `base` holding examples/hello in `driver/`, tagged v0.1.1; the
/// working clone it was pushed from.
fn hello_repo(base: &Path) -> PathBuf {
    let work = base.join("work");
    std::fs::create_dir_all(work.join("driver")).unwrap();
    for f in files(&workspace().join("examples/hello")) {
        std::fs::copy(
            workspace().join("examples/hello").join(&f),
            work.join("driver").join(&f),
        )
        .unwrap();
    }
    std::fs::write(work.join("README"), "hello driver\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "hello 0.1.1"]);
    git(&work, &["tag", "v0.1.1"]);
    let bare = base.join("srv/hello.git");
    let o = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(o.status.success());
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    work
}

fn metadata(store: &Path) -> serde_json::Value {
    let found: Vec<String> = files(store)
        .into_iter()
        .filter(|f| f.ends_with("metadata.json") && f.starts_with("hello/"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    read_json(&store.join(&found[0]))
}

#[test]
fn drivers_build_from_git_tags_and_commits() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let work = hello_repo(dir.path());
    let tag_commit = git(&work, &["rev-parse", "v0.1.1"]);
    let daemon = GitDaemon::start(&dir.path().join("srv"));
    // The suite's shared cache: builders, header packages, and the git mirrors (one per URL) and trees.
    let build = |spec: &str, store: &Path| {
        let mut c = kmodfarm();
        c.args(["build", spec, "--kernels"])
            .arg(&crawl)
            .args(["--distro", "debian", "--latest", "1", "--kernel-release"])
            .arg(r"^6\.1\.0-[0-9]+-amd64$")
            .arg("--cache")
            .arg(cache_dir())
            .arg("--store")
            .arg(store)
            .arg("--report-dir")
            .arg(dir.path().join("report"));
        run(&mut c)
    };

    // A tag, with the project in a subdirectory.
    let spec = format!("git+{}@v0.1.1#subdirectory=driver", daemon.url("hello.git"));
    let store = dir.path().join("store-tag");
    let o = build(&spec, &store);
    assert!(o.status.success(), "build from {spec}");
    let m = metadata(&store);
    assert_eq!(m["inputs"]["git"]["commit"], tag_commit.as_str());
    assert_eq!(m["inputs"]["git"]["reference"], "v0.1.1");
    assert_eq!(m["inputs"]["git"]["subdirectory"], "driver");
    assert_eq!(m["inputs"]["git"]["url"], daemon.url("hello.git"));
    let prov_dir = store
        .join("hello")
        .join(m["variant"]["output"].as_str().unwrap());
    let prov = read_json(&published_file(&prov_dir, "provenance.intoto.json"));
    let source = &prov["predicate"]["buildDefinition"]["resolvedDependencies"][0];
    assert_eq!(source["digest"]["gitCommit"], tag_commit.as_str());
    assert_eq!(
        source["uri"],
        format!(
            "git+{}@{tag_commit}#subdirectory=driver",
            daemon.url("hello.git")
        )
    );

    // A new commit upstream: the branch moves, the tag does not.
    std::fs::write(
        work.join("driver/hello.c"),
        std::fs::read_to_string(work.join("driver/hello.c")).unwrap() + "\n/* 0.1.2 */\n",
    )
    .unwrap();
    git(&work, &["commit", "-qam", "a fix"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let new_commit = git(&work, &["rev-parse", "HEAD"]);

    // The commit by id, into the store built from the tag: a new source, so it builds again.
    let spec = format!(
        "git+{}@{new_commit}#subdirectory=driver",
        daemon.url("hello.git")
    );
    let o = build(&spec, &store);
    assert!(o.status.success(), "build from {spec}");
    let m = metadata(&store);
    assert_eq!(m["inputs"]["git"]["commit"], new_commit.as_str());

    // `plan` records the commit a branch resolves to; with nothing new, nothing to build.
    let plan_dir = dir.path().join("plan");
    let branch = format!("git+{}@main#subdirectory=driver", daemon.url("hello.git"));
    let o = run(kmodfarm()
        .args(["plan", &branch, "--kernels"])
        .arg(&crawl)
        .args(["--distro", "debian", "--latest", "1", "--kernel-release"])
        .arg(r"^6\.1\.0-[0-9]+-amd64$")
        .args(["--no-prefetch", "--json", "--cache"])
        .arg(cache_dir())
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(&plan_dir));
    assert!(o.status.success());
    let plan = read_json(&plan_dir.join("plan.json"));
    assert_eq!(plan["drivers"][0]["git"]["commit"], new_commit.as_str());
    assert_eq!(plan["variants"].as_array().unwrap().len(), 0, "up to date");

    // The upstream is down: the branch builds from the cached mirror, and says so.
    drop(daemon);
    let o = build(&branch, &dir.path().join("store-offline"));
    assert!(o.status.success(), "build with the upstream down");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the upstream is unreachable") && stderr.contains(&new_commit),
        "{stderr}"
    );
    // A ref it never saw cannot be built.
    let o = build(
        &branch.replace("@main", "@v9.9"),
        &dir.path().join("store-none"),
    );
    assert_eq!(o.status.code(), Some(2), "an unknown ref is bad input");
}
