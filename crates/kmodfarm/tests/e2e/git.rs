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
        GitDaemon::start_on(base, port)
    }

    fn start_on(base: &Path, port: u16) -> GitDaemon {
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

/// `kmodfarm git-cache ARGS --store STORE` with its own cache directory and the loopback S3 credentials.
fn git_cache_command(store: &std::ffi::OsStr, cache: &Path, args: &[&str]) -> Command {
    let mut c = kmodfarm();
    c.arg("git-cache")
        .args(args)
        .arg("--store")
        .arg(store)
        .env("KMODFARM_CACHE", cache);
    for (k, v) in kmf_store::loopback::S3Server::credentials_env() {
        c.env(k, v);
    }
    c
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
    // `plan SPEC --out OUT` against `store`, without prefetch: the plan records the commit.
    let plan_of = |spec: &str, store: &Path, out: &Path| {
        let mut c = kmodfarm();
        c.args(["plan", spec, "--kernels"])
            .arg(&crawl)
            .args(["--distro", "debian", "--latest", "1", "--kernel-release"])
            .arg(r"^6\.1\.0-[0-9]+-amd64$")
            .args(["--no-prefetch", "--cache"])
            .arg(cache_dir())
            .arg("--store")
            .arg(store)
            .arg("--out")
            .arg(out);
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

    // A plan of the branch against the store built from the tag: the new commit is to build.
    let branch = format!("git+{}@main#subdirectory=driver", daemon.url("hello.git"));
    let plan_dir = dir.path().join("plan-new");
    let o = plan_of(&branch, &store, &plan_dir);
    assert!(o.status.success());
    let plan = read_json(&plan_dir.join("plan.json"));
    assert_eq!(plan["drivers"][0]["git"]["commit"], new_commit.as_str());
    assert_eq!(
        plan["variants"].as_array().unwrap().len(),
        1,
        "the new commit builds"
    );

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
    let o = plan_of(&branch, &store, &plan_dir);
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
    // ... and the plan says so too.
    let o = plan_of(
        &branch,
        &dir.path().join("store-offline"),
        &dir.path().join("plan-offline"),
    );
    assert!(o.status.success());
    let plan = read_json(&dir.path().join("plan-offline/plan.json"));
    assert!(
        plan["drivers"][0]["git"]["upstream_unreachable"].is_string(),
        "{plan:#}"
    );
    // A ref it never saw cannot be built.
    let o = build(
        &branch.replace("@main", "@v9.9"),
        &dir.path().join("store-none"),
    );
    assert_eq!(o.status.code(), Some(2), "an unknown ref is bad input");
}

/// `kmodfarm git-cache` against S3 on loopback and a git daemon: the first update clones, the next one only
/// runs `ls-remote`, a new commit is fetched into the restored tarball; `restore` and a build with
/// `--git-cache` on a fresh machine work with the upstream down; a held lock makes a second updater exit
/// (or wait), an expired one is taken over; a corrupt tarball is refused and cloned again; an updater
/// killed midway leaves the previous tarball and MD5.
#[test]
fn the_git_cache_in_the_store() {
    let Some(crawl) = debian_crawl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let farm = s3.url("kmods", "farm");
    let objects = s3.root.join("kmods/farm/git-cache");
    let work = hello_repo(dir.path());
    let daemon = GitDaemon::start(&dir.path().join("srv"));
    let url = daemon.url("hello.git");
    let cache = dir.path().join("updater-cache");
    let git_cache_at =
        |store: &std::ffi::OsStr, args: &[&str]| git_cache_command(store, &cache, args);
    let git_cache = |args: &[&str]| git_cache_at(farm.as_ref(), args);
    let update = |extra: &[&str]| {
        let mut args = vec!["update", url.as_str(), "--json"];
        args.extend(extra);
        let o = run(&mut git_cache(&args));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        (o, report)
    };
    let object = |suffix: &str| {
        let found: Vec<PathBuf> = std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    };

    // First update: not in the cache, cloned.
    let (o, report) = update(&[]);
    assert!(o.status.success());
    assert_eq!(report[0]["outcome"], "updated");
    assert_eq!(report[0]["restored"], false);
    let tar = object(".tar");
    let md5_before = std::fs::read_to_string(object(".md5")).unwrap();
    assert!(md5_before.ends_with(&format!("  {url}\n")), "{md5_before}");
    let tar_written = std::fs::metadata(&tar).unwrap().modified().unwrap();

    // No change upstream: only ls-remote, nothing written.
    let (o, report) = update(&[]);
    assert!(o.status.success());
    assert_eq!(report[0]["outcome"], "unchanged");
    assert_eq!(
        std::fs::metadata(&tar).unwrap().modified().unwrap(),
        tar_written
    );

    // A new commit: restored from the cache, fetched, written back.
    std::fs::write(work.join("driver/NEWS"), "0.1.2\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "news"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let new_commit = git(&work, &["rev-parse", "HEAD"]);
    let (o, report) = update(&[]);
    assert!(o.status.success());
    assert_eq!(report[0]["outcome"], "updated");
    assert_eq!(report[0]["restored"], true);
    let md5_after = std::fs::read_to_string(object(".md5")).unwrap();
    assert_ne!(md5_after, md5_before);

    // A held lock: a second updater exits 2 at once, or after --wait; an expired lock is taken over.
    let lock = objects.join(".lock");
    let held = |expires: u64| {
        std::fs::write(
            &lock,
            format!(r#"{{"holder":"other:1","acquired":0,"expires":{expires}}}"#),
        )
        .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    held(now + 3600);
    let (o, _) = update(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("being updated by other:1"));
    let (o, _) = update(&["--wait", "2"]);
    assert_eq!(o.status.code(), Some(2));
    held(now - 1);
    let (o, report) = update(&[]);
    assert!(o.status.success(), "the expired lock is taken over");
    assert_eq!(report[0]["outcome"], "unchanged");
    assert!(!lock.exists(), "released");

    // Two updaters at once after a change: one fetches, the other waits for it and finds nothing to do.
    // On a local-directory farm, whose create-if-absent is atomic (s3s-fs checks and then writes, so two
    // creates at the same instant can both succeed there; S3 itself makes them atomic).
    let local_farm = dir.path().join("local-farm");
    let seed = run(&mut git_cache_at(
        local_farm.as_os_str(),
        &["update", url.as_str()],
    ));
    assert!(seed.status.success());
    std::fs::write(work.join("driver/NEWS"), "0.1.3\n").unwrap();
    git(&work, &["commit", "-qam", "news 2"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let spawn = || {
        let mut c = git_cache_at(
            local_farm.as_os_str(),
            &["update", url.as_str(), "--json", "--wait", "120"],
        );
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut outcomes: Vec<String> = [a, b]
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            r[0]["outcome"].as_str().unwrap().to_string()
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["unchanged", "updated"]);
    let latest = git(&work, &["rev-parse", "HEAD"]);
    assert_ne!(latest, new_commit);
    let (o, report) = update(&[]);
    assert!(o.status.success());
    assert_eq!(report[0]["outcome"], "updated");

    // restore: the mirror as the cache has it, then fetched.
    let restored = dir.path().join("restored.git");
    let o = run(git_cache(&["restore", url.as_str()]).arg(&restored));
    assert!(o.status.success());
    assert_eq!(git(&restored, &["rev-parse", "refs/heads/main"]), latest);

    // A fresh machine with the upstream down: the build restores the mirror from the cache and goes on.
    let port = daemon.port;
    drop(daemon);
    let o = run(git_cache(&["restore", url.as_str()]).arg(dir.path().join("offline.git")));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("the upstream is unreachable"));
    // The shared cache has the builders and header packages but no mirror of this URL (its port is new).
    let fresh = cache_dir();
    let mut c = kmodfarm();
    c.args([
        "build",
        &format!("git+{url}@main#subdirectory=driver"),
        "--kernels",
    ])
    .arg(&crawl)
    .args(["--distro", "debian", "--latest", "1", "--kernel-release"])
    .arg(r"^6\.1\.0-[0-9]+-amd64$")
    .arg("--cache")
    .arg(&fresh)
    .arg("--git-cache")
    .arg(&farm)
    .arg("--store")
    .arg(dir.path().join("store"))
    .arg("--report-dir")
    .arg(dir.path().join("report"));
    for (k, v) in kmf_store::loopback::S3Server::credentials_env() {
        c.env(k, v);
    }
    let o = run(&mut c);
    assert!(o.status.success(), "build from the git cache");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the upstream is unreachable") && stderr.contains(&latest),
        "{stderr}"
    );
    assert_eq!(
        metadata(&dir.path().join("store"))["inputs"]["git"]["commit"],
        latest.as_str()
    );

    // A corrupt tarball: refused on restore, cloned again by the next update.
    let daemon = GitDaemon::start_on(&dir.path().join("srv"), port);
    let tar = object(".tar");
    let len = std::fs::metadata(&tar).unwrap().len();
    let bytes = std::fs::read(&tar).unwrap();
    std::fs::write(&tar, &bytes[..(len as usize) / 3]).unwrap();
    let o = run(git_cache(&["restore", url.as_str()]).arg(dir.path().join("bad.git")));
    assert!(o.status.success(), "restore clones instead");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not usable"));
    std::fs::write(object(".md5"), "0".repeat(32) + "  " + &url + "\n").unwrap();
    let (o, report) = update(&[]);
    assert!(o.status.success());
    assert_eq!(report[0]["outcome"], "updated");
    assert_eq!(
        report[0]["restored"], false,
        "the corrupt tarball was not used"
    );
    drop(daemon);
}

/// An updater killed midway through an update (after it took the lock, while it restores, fetches or
/// uploads) leaves the previous tarball and MD5 in place and consistent; its lock stays until it expires,
/// then the next updater takes it over and completes the update.
#[test]
fn a_killed_update_leaves_a_valid_cache() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let farm = s3.url("kmods", "farm");
    let objects = s3.root.join("kmods/farm/git-cache");
    let work = hello_repo(dir.path());
    // Enough data that restoring and uploading take a while: 64 MiB that does not compress.
    let mut blob = std::fs::File::create(work.join("firmware.bin")).unwrap();
    std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 64 << 20),
        &mut blob,
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "firmware"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let old = git(&work, &["rev-parse", "HEAD"]);
    let daemon = GitDaemon::start(&dir.path().join("srv"));
    let url = daemon.url("hello.git");
    let cache = dir.path().join("cache");
    let git_cache = |args: &[&str]| git_cache_command(farm.as_ref(), &cache, args);
    assert!(run(&mut git_cache(&["update", url.as_str()]))
        .status
        .success());
    let md5 = |objects: &Path| {
        let f = std::fs::read_dir(objects)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "md5"))
            .unwrap();
        std::fs::read_to_string(f).unwrap()
    };
    let before = md5(&objects);

    std::fs::write(work.join("NEWS"), "new\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "news"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let new = git(&work, &["rev-parse", "HEAD"]);
    let mut updater = git_cache(&["update", url.as_str(), "--lock-ttl", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = objects.join(".lock");
    let started = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the updater never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    updater.kill().unwrap();
    updater.wait().unwrap();
    assert_eq!(md5(&objects), before, "the MD5 is the previous one");
    let restored = dir.path().join("restored.git");
    // Restored without the upstream: the previous tarball, whole.
    drop(daemon);
    let o = run(git_cache(&["restore", url.as_str()]).arg(&restored));
    assert!(o.status.success());
    assert_eq!(git(&restored, &["rev-parse", "refs/heads/main"]), old);
    assert!(
        lock.exists(),
        "the killed updater's lock stays until it expires"
    );

    let port: u16 = url
        .trim_start_matches("git://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _daemon = GitDaemon::start_on(&dir.path().join("srv"), port);
    let o = run(&mut git_cache(&[
        "update",
        url.as_str(),
        "--wait",
        "30",
        "--json",
    ]));
    assert!(o.status.success(), "the expired lock is taken over");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report[0]["outcome"], "updated");
    assert_ne!(md5(&objects), before);
    let again = dir.path().join("again.git");
    assert!(run(git_cache(&["restore", url.as_str()]).arg(&again))
        .status
        .success());
    assert_eq!(git(&again, &["rev-parse", "refs/heads/main"]), new);
}

/// Hostile repositories and tarballs: a link out of the tree is refused when the driver loads; a tarball in
/// the cache beyond --max-size is not used and the repository is cloned instead; one with a `..` member, or
/// whose alternates borrow another repository's objects, is refused (`restore` exits 2 naming what it found,
/// nothing is written outside its directory or kept), and a plan with `--git-cache` fetches the upstream.
#[test]
fn hostile_repositories_and_tarballs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = kmf_store::loopback::S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    let farm = s3.url("kmods", "farm");
    let work = hello_repo(dir.path());
    std::os::unix::fs::symlink("/etc/passwd", work.join("driver/passwd")).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "a link out"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let daemon = GitDaemon::start(&dir.path().join("srv"));
    let url = daemon.url("hello.git");
    let cache = dir.path().join("cache");

    // The link is refused before anything is built.
    let o = run(kmodfarm()
        .args([
            "plan",
            &format!("git+{url}@main#subdirectory=driver"),
            "--kernels",
        ])
        // The project is loaded first: no kernel list is read.
        .arg(dir.path().join("kernels.json"))
        .args(["--no-prefetch", "--cache"])
        .arg(&cache)
        .arg("--store")
        .arg(dir.path().join("store")));
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("passwd"), "{stderr}");

    // A crafted tarball in the cache: a `..` member, and one over the size limit.
    let git_cache = |args: &[&str]| git_cache_command(farm.as_ref(), &cache, args);
    assert!(run(&mut git_cache(&["update", url.as_str()]))
        .status
        .success());
    let objects = s3.root.join("kmods/farm/git-cache");
    let tar = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tar"))
        .unwrap();
    let original = std::fs::read(&tar).unwrap();
    let mut crafted = Vec::new();
    {
        let mut b = tar::Builder::new(&mut crafted);
        let mut h = tar::Header::new_gnu();
        let body = b"escaped\n";
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // tar::Header::set_path refuses `..`: write the name bytes directly, as an attacker would.
        let name = b"../../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &body[..]).unwrap();
        b.finish().unwrap();
    }
    std::fs::write(&tar, &crafted).unwrap();
    let target = dir.path().join("restores/one.git");
    let o = run(git_cache(&["restore", url.as_str()]).arg(&target));
    // The updater never writes such a member: tampering, which restore reports instead of cloning.
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("is refused: member ../../escaped was not unpacked"),
        "{stderr}"
    );
    assert!(!target.exists());
    assert!(!dir.path().join("escaped").exists());
    assert!(!dir.path().join("restores/escaped").exists());

    std::fs::write(&tar, &original).unwrap();
    let o = run(git_cache(&["restore", url.as_str(), "--max-size", "0"])
        .arg(dir.path().join("restores/two.git")));
    assert!(o.status.success(), "cloned instead");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not usable"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A real mirror, packed with tar, whose alternates name another repository of this machine (a mirror
    // in the same cache) and whose main is a commit with that repository's tree (issue 22).
    let other = cache.join("git/mirrors/other.git");
    let other_work = dir.path().join("other-work");
    std::fs::create_dir_all(&other_work).unwrap();
    std::fs::write(other_work.join("secret"), "another repository's secret\n").unwrap();
    git(&other_work, &["init", "-q", "-b", "main"]);
    git(&other_work, &["add", "-A"]);
    git(&other_work, &["commit", "-qm", "secret"]);
    let o = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&other_work)
        .arg(&other)
        .output()
        .unwrap();
    assert!(o.status.success());
    let hostile = dir.path().join("hostile.git");
    let o = Command::new("git")
        .args(["clone", "-q", "--bare", "--no-local"])
        .arg(dir.path().join("srv/hello.git"))
        .arg(&hostile)
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::write(
        hostile.join("objects/info/alternates"),
        format!("{}\n", other.join("objects").display()),
    )
    .unwrap();
    let bare = |args: &[&str]| {
        let mut all = vec!["--git-dir", hostile.to_str().unwrap()];
        all.extend(args);
        git(dir.path(), &all)
    };
    let borrowed = bare(&[
        "commit-tree",
        &git(&other_work, &["rev-parse", "HEAD^{tree}"]),
        "-m",
        "borrowed",
    ]);
    bare(&["update-ref", "refs/heads/main", &borrowed]);
    bare(&["update-ref", "refs/kmodfarm/HEAD", &borrowed]);
    assert_eq!(
        bare(&["cat-file", "-p", "refs/heads/main:secret"]),
        "another repository's secret",
        "git reads the other repository through the alternates"
    );
    let o = Command::new("tar")
        .arg("-C")
        .arg(&hostile)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success());
    let target = dir.path().join("restores/three.git");
    let o = run(git_cache(&["restore", url.as_str()]).arg(&target));
    assert_eq!(o.status.code(), Some(2), "refused, not cloned");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("is refused: objects/info/alternates names other object stores"),
        "{stderr}"
    );
    assert!(!target.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("restores"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".restore")),
        "{left:?}"
    );

    // A plan with the git cache on a machine without the mirror: the tarball is not used, the mirror
    // comes from the upstream.
    let fresh = dir.path().join("fresh-cache");
    let o = run(kmodfarm()
        .args([
            "plan",
            &format!("git+{url}@main#subdirectory=driver"),
            "--kernels",
        ])
        .arg(dir.path().join("kernels.json"))
        .args(["--no-prefetch", "--cache"])
        .arg(&fresh)
        .arg("--git-cache")
        .arg(&farm)
        .arg("--store")
        .arg(dir.path().join("store"))
        .envs(kmf_store::loopback::S3Server::credentials_env()));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("objects/info/alternates") && stderr.contains("fetching from the upstream"),
        "{stderr}"
    );
    let mirrors: Vec<PathBuf> = std::fs::read_dir(fresh.join("git/mirrors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "git"))
        .collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    assert!(!mirrors[0].join("objects/info/alternates").exists());
    assert_eq!(
        git(&mirrors[0], &["rev-parse", "refs/heads/main"]),
        git(&work, &["rev-parse", "HEAD"]),
        "the upstream's commit, not the tarball's"
    );
}
