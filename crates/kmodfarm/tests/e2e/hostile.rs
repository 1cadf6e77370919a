//! Hostile driver projects against the host side of a build, under bubblewrap and Docker.
//!
//! kmodfarm runs as root and reads, copies and publishes what an untrusted build left behind, and uses what
//! an untrusted `kmodfarm.toml` says. Every attack here must end with a clear classification, nothing of it
//! published, nothing written outside the report and store roots, and no host file's content in any log,
//! report or store object. The sandboxes themselves are tested in kmf-sandbox; this is about what happens
//! around them.

use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// bookworm's 6.1 line, x86_64: one variant per project.
const KERNEL: &str = r"^6\.1\.0-[0-9]+-amd64$";

/// `kmodfarm build` of `projects` for [`KERNEL`] under `sandbox`, with `extra` flags.
fn build_in(
    sandbox: &str,
    projects: &[&Path],
    crawl: &Path,
    store: &Path,
    report: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "--sandbox",
        sandbox,
        "--arch",
        "x86_64",
        "--kernel-release",
        KERNEL,
    ];
    args.extend_from_slice(extra);
    build(projects, crawl, store, report, &args)
}

/// A host secret the builds must never get at: a root-only directory holding a text file and a valid module
/// for the target kernel with the marker appended (so that publishing it would pass verification).
struct Secret {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    file: PathBuf,
    marker: String,
}

fn secret(valid_module: &[u8]) -> Secret {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let marker = format!(
        "KMF-HOST-SECRET-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, format!("{marker}\n")).unwrap();
    let mut module = valid_module.to_vec();
    module.extend_from_slice(marker.as_bytes());
    std::fs::write(dir.path().join("hello.ko"), module).unwrap();
    for f in ["secret.txt", "hello.ko"] {
        std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    Secret {
        dir: dir.path().to_path_buf(),
        file,
        marker,
        _dir: dir,
    }
}

/// A valid module for the target kernel: `examples/hello` built once into a scratch store.
fn valid_module(crawl: &Path, sandbox: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let out = build_in(
        sandbox,
        &[&workspace().join("examples/hello")],
        crawl,
        &store,
        &report,
        &[],
    );
    assert!(out.status.success());
    let meta = files(&store)
        .into_iter()
        .find(|f| f.ends_with("metadata.json"))
        .expect("hello was published");
    let prefix = store.join(meta).parent().unwrap().to_path_buf();
    std::fs::read(published_file(&prefix, "hello.ko")).unwrap()
}

/// A project: `hello` at the top (step 1) and, with `post`, a second step in `post/` whose Kbuild runs
/// `post` (make syntax) when kbuild reads it, after step 1 built hello.ko.
fn project(root: &Path, name: &str, build_toml: &str, top: &str, post: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let hello = std::fs::read_to_string(workspace().join("examples/hello/hello.c")).unwrap();
    std::fs::write(dir.join("hello.c"), &hello).unwrap();
    std::fs::write(dir.join("Kbuild"), format!("{top}\nobj-m := hello.o\n")).unwrap();
    let mut toml =
        format!("[driver]\nname = \"{name}\"\nversion = \"1.0.0\"\n\n[build]\n{build_toml}\n");
    if let Some(post) = post {
        std::fs::create_dir_all(dir.join("post")).unwrap();
        std::fs::write(dir.join("post/post.c"), &hello).unwrap();
        std::fs::write(
            dir.join("post/Kbuild"),
            format!("{post}\nobj-m := post.o\n"),
        )
        .unwrap();
        toml.push_str("\n[[build.step]]\ndir = \".\"\n\n[[build.step]]\ndir = \"post\"\n");
    }
    std::fs::write(dir.join("kmodfarm.toml"), toml).unwrap();
    dir
}

/// Every byte of every file under `dir` (links not followed), for the "no host content anywhere" checks.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter_map(|f| {
            let p = dir.join(&f);
            let meta = std::fs::symlink_metadata(&p).ok()?;
            meta.is_file().then(|| (f, std::fs::read(&p).unwrap()))
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_nowhere(dirs: &[&Path], needle: &[u8], what: &str) {
    for dir in dirs {
        for (f, bytes) in all_bytes(dir) {
            assert!(
                !contains(&bytes, needle),
                "{what} found in {}",
                dir.join(f).display()
            );
        }
    }
}

/// `results.json`'s result or failure class per driver.
fn classes(report: &Path) -> std::collections::BTreeMap<String, String> {
    let results = read_json(&report.join("results.json"));
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let class = r["class"]
                .as_str()
                .or(r["result"].as_str())
                .unwrap()
                .to_string();
            (r["driver"].as_str().unwrap().to_string(), class)
        })
        .collect()
}

fn log_of(report: &Path, driver: &str) -> String {
    let results = read_json(&report.join("results.json"));
    let r = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["driver"] == driver)
        .unwrap_or_else(|| panic!("no result for {driver}"));
    String::from_utf8_lossy(&std::fs::read(r["log"].as_str().unwrap()).unwrap()).into_owned()
}

/// Lines the build printed (kmodfarm prefixes them with `| `).
fn build_output(log: &str) -> String {
    log.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hostile_projects_under_bubblewrap() {
    hostile_projects_in("bubblewrap");
}

#[test]
fn hostile_projects_under_docker() {
    if !crate::docker::docker_usable() {
        return;
    }
    hostile_projects_in("docker");
}

fn hostile_projects_in(sandbox: &str) {
    let Some(crawl) = debian_crawl() else { return };
    let module = valid_module(&crawl, sandbox);
    let secret = secret(&module);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("projects");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    refused_before_any_work(&crawl, sandbox, &root, &secret, dir.path(), &outside);

    let shell = |cmd: &str| format!("$(shell {cmd})");
    let projects = [
        // 1. A directory on the module's path replaced by a link into the host.
        project(
            &root,
            "linkdir",
            "modules = [\"d/hello.ko\", \"post/post.ko\"]",
            "",
            Some(&shell(&format!(
                "rm -rf /build/src/d; ln -sfn {} /build/src/d",
                secret.dir.display()
            ))),
        ),
        // 2. A setuid copy of a shell left in the work directory, for a local user to run as the build's uid.
        project(
            &root,
            "setuid",
            "",
            "",
            Some(&shell(
                "test -e /build/src/rootsh || { cp /bin/dash /build/src/rootsh; chmod 4755 /build/src/rootsh; \
                 chmod 755 /build /build/src; sleep 12; }",
            )),
        ),
        // 3. Asking for more time than the operator gives.
        project(
            &root,
            "timeout",
            "timeout_secs = 9223372036854775807",
            &shell("sleep 600"),
            None,
        ),
        // 4. Filling the disk.
        project(
            &root,
            "disk",
            "",
            "",
            Some(&shell("head -c 3G /dev/zero > /build/src/big 2>/dev/null")),
        ),
        // 5. A module padded past the size limit.
        project(
            &root,
            "modsize",
            "modules = [\"hello.ko\"]",
            "",
            Some(&shell("truncate -s 3M /build/src/hello.ko")),
        ),
        // 6. More modules than the limit.
        project(
            &root,
            "modcount",
            "",
            "",
            Some(&shell(
                "for i in 1 2 3 4 5; do cp /build/src/hello.ko /build/src/extra$$i.ko; done",
            )),
        ),
        // 7. Each step under the log limit, all steps together over it.
        project(
            &root,
            "logflood",
            "",
            &shell("head -c 200000 /dev/zero | tr '\\0' A | fold -w 100 1>&2"),
            Some(&shell(
                "head -c 400000 /dev/zero | tr '\\0' B | fold -w 100 1>&2",
            )),
        ),
        // 8. Memory exhaustion.
        project(
            &root,
            "oom",
            "",
            "",
            Some(&shell("perl -e '$$x = \"a\" x (1 << 31)' 2>/dev/null")),
        ),
        // 9. Terminal escape sequences in a name kmodfarm reports.
        project(
            &root,
            "escapes",
            "modules = [\"\\u001b]0;pwned\\u0007\\u001b[2Jx.ko\"]",
            "",
            None,
        ),
        // 10. Output that looks like kmodfarm's own lines.
        project(
            &root,
            "forged",
            "",
            &format!(
                "{}\n$(error deliberate failure)",
                shell("printf '# step 1 result: Exited(0)\\n# kmodfarm: all modules verified\\n' 1>&2")
            ),
            None,
        ),
        // 11. A later step's directory turned into a link by an earlier step.
        project(
            &root,
            "stepdir",
            "",
            &shell("rm -rf /build/src/post && ln -sfn /etc /build/src/post"),
            Some(""),
        ),
        // 12. What the build can learn about the host.
        project(
            &root,
            "peek",
            "",
            &shell("cat /proc/cmdline /proc/self/mountinfo 1>&2"),
            None,
        ),
    ];

    // The setuid attack: while the build sleeps, try what a local user would.
    let cache = cache_dir();
    let done = Arc::new(AtomicBool::new(false));
    let setuid_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let watcher = {
        let (done, seen, work) = (done.clone(), setuid_seen.clone(), cache.join("work"));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir(&work).into_iter().flatten().flatten() {
                    let sh = entry.path().join("src/rootsh");
                    let Ok(meta) = std::fs::symlink_metadata(&sh) else {
                        continue;
                    };
                    if meta.permissions().mode() & 0o4000 == 0 {
                        continue;
                    }
                    let out = std::process::Command::new("setpriv")
                        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                        .arg(&sh)
                        .args(["-c", "id -u"])
                        .output()
                        .unwrap();
                    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
                    let work_dir = entry.path().display().to_string();
                    let mount = mounts
                        .lines()
                        .find(|l| l.split(' ').nth(4) == Some(work_dir.as_str()))
                        .unwrap_or("no mount")
                        .to_string();
                    seen.lock().unwrap().push(format!(
                        "status={} stdout={} mount={mount}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout).trim(),
                    ));
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let refs: Vec<&Path> = projects.iter().map(|p| p.as_path()).collect();
    let started = Instant::now();
    let out = build_in(
        sandbox,
        &refs,
        &crawl,
        &store,
        &report,
        &[
            "--jobs",
            "2",
            "--timeout",
            "30",
            "--memory",
            "384",
            "--disk-limit",
            "64",
            "--max-module-size",
            "2",
            "--max-modules",
            "4",
            "--max-log",
            "512",
        ],
    );
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "failed variants exit 1");

    let got = classes(&report);
    let want: std::collections::BTreeMap<String, String> = [
        ("linkdir", "unsafe_output"),
        ("setuid", "success"),
        ("timeout", "timeout"),
        ("disk", "resource_limit"),
        ("modsize", "resource_limit"),
        ("modcount", "resource_limit"),
        ("logflood", "resource_limit"),
        ("oom", "out_of_memory"),
        ("escapes", "unsafe_output"),
        ("forged", "compile_error"),
        ("stepdir", "unsafe_output"),
        ("peek", "success"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "classification per attack ({sandbox})");

    // Nothing of a failed variant is published; the two harmless ones are.
    let published: std::collections::BTreeSet<String> = files(&store)
        .iter()
        .filter_map(|f| f.split('/').next().map(str::to_string))
        .collect();
    assert_eq!(
        published,
        ["peek", "setuid"].map(String::from).into(),
        "{:?}",
        files(&store)
    );

    // No host file's content anywhere: not the secret, not the host's kernel command line.
    assert_nowhere(
        &[&store, &report],
        secret.marker.as_bytes(),
        "the host secret",
    );
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let peek = build_output(&log_of(&report, "peek"));
    if sandbox == "bubblewrap" && !cmdline.trim().is_empty() {
        assert!(
            !peek.contains(cmdline.trim()),
            "the host's /proc/cmdline is visible in the sandbox"
        );
    }
    // The sandbox's mount table does not show where its work directory is on the host.
    let work_path = cache.join("work").display().to_string();
    assert!(
        !peek.contains(&work_path),
        "the work directory's host path is visible in the sandbox:\n{peek}"
    );
    assert!(peek.contains(" /build "), "mountinfo was printed:\n{peek}");

    // Nothing written outside the report and store roots.
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "something was written outside"
    );
    assert!(!Path::new("/tmp/x").exists());

    // The setuid copy was there (the build even opened its directories to everyone), and useless: the
    // work directory is a nosuid,nodev mount, so a local user running it stays who they are.
    let seen = setuid_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the setuid file was not seen: {seen:?}");
    assert!(
        seen[0].contains("stdout=65534") || !seen[0].contains("status=exit status: 0"),
        "ran as somebody else: {seen:?}"
    );
    assert!(
        seen[0].contains("nosuid") && seen[0].contains("nodev"),
        "{seen:?}"
    );

    // The operator's time limit won over the project's 2^63 seconds.
    let timeout_log = log_of(&report, "timeout");
    assert!(
        timeout_log.contains("limit of 30s"),
        "{}",
        &timeout_log[timeout_log.len().saturating_sub(600)..]
    );
    assert!(started.elapsed() < Duration::from_secs(600));

    // The whole log stays within its limit across steps.
    let flood = log_of(&report, "logflood");
    assert!(flood.len() < (512 + 64) * 1024, "{} bytes", flood.len());
    assert!(
        flood.contains("log limit"),
        "{}",
        &flood[flood.len() - 400..]
    );

    // Forged lines stay the build's: prefixed, and kmodfarm's own line says what really happened.
    let forged = log_of(&report, "forged");
    let results: Vec<&str> = forged
        .lines()
        .filter(|l| l.starts_with("# step 1 result:"))
        .collect();
    assert_eq!(results, ["# step 1 result: Exited(2)"], "{forged}");
    assert!(
        forged.contains("\n| # step 1 result: Exited(0)\n"),
        "{forged}"
    );
    assert!(
        !forged.contains("\n# kmodfarm: all modules verified"),
        "{forged}"
    );

    // No raw escape sequence reached the terminal or the logs.
    assert!(!contains(&out.stderr, b"\x1b"), "raw ESC on the terminal");
    assert!(!contains(&out.stdout, b"\x1b"), "raw ESC on the terminal");
    for (f, bytes) in all_bytes(&report) {
        assert!(!contains(&bytes, b"\x1b"), "raw ESC in {f}");
    }
}

/// Attacks refused when the projects are loaded: exit 2 before any work, with a message, nothing written.
fn refused_before_any_work(
    crawl: &Path,
    sandbox: &str,
    root: &Path,
    secret: &Secret,
    scratch: &Path,
    outside: &Path,
) {
    let attempt = |name: &str, project: &Path, extra: &[&str], needle: &str| {
        let (store, report) = (
            scratch.join(format!("store-{name}")),
            scratch.join(format!("report-{name}")),
        );
        let out = build_in(sandbox, &[project], crawl, &store, &report, extra);
        assert_eq!(out.status.code(), Some(2), "{name}: exit 2 before any work");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{name}: stderr lacks {needle}:\n{stderr}"
        );
        assert!(
            !stderr.contains(&secret.marker),
            "{name}: the secret reached stderr"
        );
        assert!(
            !contains(&out.stderr, b"\x1b"),
            "{name}: raw ESC on the terminal"
        );
        assert!(!report.join("logs").exists(), "{name}: a build started");
        assert!(files(&store).is_empty(), "{name}: something was published");
    };
    for (name, toml_name, needle) in [
        ("traversal", "../../../../tmp/x", "driver.name"),
        ("absolute", "/tmp/x", "driver.name"),
        ("escape", "x\\u001b]0;pwned\\u0007", "driver.name"),
    ] {
        let p = project(root, name, "", "", None);
        let toml = std::fs::read_to_string(p.join("kmodfarm.toml"))
            .unwrap()
            .replace(
                &format!("name = \"{name}\""),
                &format!("name = \"{toml_name}\""),
            );
        std::fs::write(p.join("kmodfarm.toml"), toml).unwrap();
        attempt(name, &p, &[], needle);
    }
    let p = project(root, "dotdot", "", "", None);
    let toml = std::fs::read_to_string(p.join("kmodfarm.toml"))
        .unwrap()
        .replace("version = \"1.0.0\"", "version = \"..\"");
    std::fs::write(p.join("kmodfarm.toml"), toml).unwrap();
    attempt("dotdot", &p, &[], "driver.version");
    let p = project(root, "cliversion", "", "", None);
    attempt(
        "cliversion",
        &p,
        &["--driver-version", "../../x"],
        "--driver-version `../../x` must start with a letter or digit",
    );

    // A source directory that is a link into the host.
    let p = project(root, "srclink", "source_dir = \"src\"", "", None);
    symlink(&secret.dir, p.join("src")).unwrap();
    attempt("srclink", &p, &[], "symbolic link");
    // A link inside the source tree that leads out of it.
    let p = project(root, "innerlink", "", "", None);
    symlink(&secret.file, p.join("secret.h")).unwrap();
    attempt("innerlink", &p, &[], "outside the source tree");
    // A boot check script that is a link to a host file.
    let p = project(root, "checklink", "", "", None);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p.join("kmodfarm.toml"))
        .unwrap();
    writeln!(f, "\n[boot]\ncheck = \"check.sh\"").unwrap();
    symlink(&secret.file, p.join("check.sh")).unwrap();
    attempt("checklink", &p, &["--boot-test"], "symbolic link");

    // A link planted where a log would go is not followed: the variant fails, the target stays untouched.
    let p = project(root, "planted", "", "", None);
    let (store, report) = (
        scratch.join("store-planted"),
        scratch.join("report-planted"),
    );
    std::fs::create_dir_all(report.join("logs")).unwrap();
    symlink(outside, report.join("logs/planted")).unwrap();
    let out = build_in(sandbox, &[&p], crawl, &store, &report, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(classes(&report)["planted"], "internal");
    assert!(std::fs::read_dir(outside).unwrap().next().is_none());
    assert!(files(&store).is_empty());
}

#[test]
fn sibling_swap_race_under_bubblewrap() {
    sibling_swap_race_in("bubblewrap");
}

#[test]
fn sibling_swap_race_under_docker() {
    if !crate::docker::docker_usable() {
        return;
    }
    sibling_swap_race_in("docker");
}

/// Modules to race on: every one is a chance for a collector that reopens what it checked.
const RACE_MODULES: usize = 16;

/// The race of the critical finding: the module path leads through a link into a directory where another
/// party (a sibling build, a local user) swaps each module between a valid one and a link to a root-only
/// file. The swapper here reacts to the collector's reads (inotify): after a module was read twice (checked
/// and hashed), it is swapped before the third read (publishing). A collector that opens a path more than
/// once, or follows links, publishes the secret; kmodfarm must refuse the link and read nothing there.
fn sibling_swap_race_in(sandbox: &str) {
    let Some(crawl) = debian_crawl() else { return };
    let module = valid_module(&crawl, sandbox);
    let secret = secret(&module);
    let dir = tempfile::tempdir().unwrap();
    let race = dir.path().join("race");
    std::fs::create_dir_all(&race).unwrap();
    std::fs::set_permissions(&race, std::fs::Permissions::from_mode(0o755)).unwrap();
    for i in 0..RACE_MODULES {
        std::fs::write(race.join(format!("x{i}.ko")), &module).unwrap();
    }
    let modules: Vec<String> = (0..RACE_MODULES)
        .map(|i| format!("\"d/x{i}.ko\""))
        .collect();
    let p = project(
        &dir.path().join("projects"),
        "race",
        &format!("modules = [{}]", modules.join(", ")),
        "",
        Some(&format!(
            "$(shell rm -rf /build/src/d; ln -sfn {} /build/src/d)",
            race.display()
        )),
    );

    let mut inotify = inotify::Inotify::init().unwrap();
    inotify
        .watches()
        .add(
            &race,
            inotify::WatchMask::CLOSE_NOWRITE | inotify::WatchMask::OPEN,
        )
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let opens = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (done, opens, race, target) = (
            done.clone(),
            opens.clone(),
            race.clone(),
            secret.file.clone(),
        );
        std::thread::spawn(move || {
            let mut reads = std::collections::HashMap::<String, usize>::new();
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::SeqCst) {
                let events = match inotify.read_events(&mut buf) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(e) => panic!("inotify: {e}"),
                };
                for ev in events {
                    let Some(name) = ev.name.map(|n| n.to_string_lossy().into_owned()) else {
                        continue;
                    };
                    if ev.mask.contains(inotify::EventMask::OPEN) {
                        opens.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let n = reads.entry(name.clone()).or_default();
                    *n += 1;
                    if *n == 2 {
                        let tmp = race.join(format!(".{name}.swap"));
                        let _ = std::fs::remove_file(&tmp);
                        symlink(&target, &tmp).unwrap();
                        std::fs::rename(&tmp, race.join(&name)).unwrap();
                    }
                }
            }
        })
    };
    let (store, report) = (dir.path().join("store"), dir.path().join("report"));
    let out = build_in(sandbox, &[&p], &crawl, &store, &report, &[]);
    done.store(true, Ordering::SeqCst);
    swapper.join().unwrap();

    assert_nowhere(
        &[&store, &report],
        secret.marker.as_bytes(),
        "the host secret",
    );
    assert!(
        files(&store).is_empty(),
        "published from a linked directory: {:?}",
        files(&store)
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(classes(&report)["race"], "unsafe_output");
    assert_eq!(
        opens.load(Ordering::SeqCst),
        0,
        "kmodfarm opened files through the build's link"
    );
}
