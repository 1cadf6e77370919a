//! The Docker sandbox against the machine's real container engine, with a tiny root filesystem (static
//! busybox) imported as the builder image. Skipped with a message where no engine is reachable, except under
//! `CI=true`.

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Fixture;
use kmf_sandbox::docker::{builder_image_tag, CONTAINER_PREFIX};
use kmf_sandbox::{Docker, ExitKind, Limits, Sandbox, SandboxSpec, SANDBOX_UID_BASE};

fn docker() -> Option<Docker> {
    match Docker::detect() {
        Ok(d) => Some(d),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("a container engine is required when CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no usable container engine here: {e}");
            None
        }
    }
}

const ROOTFS_ID: &str = "kmodfarm-test-busybox-2";

/// A minimal root filesystem: static busybox and its applets, made once per machine (atomically, since
/// test processes run in parallel).
fn busybox_rootfs() -> PathBuf {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let base = std::env::temp_dir().join("kmodfarm-docker-test");
    let dest = base.join(ROOTFS_ID);
    if dest.join("usr/bin/busybox").is_file() {
        return dest;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in [
        "usr/bin", "usr/src", "usr/lib", "etc", "tmp", "proc", "dev", "sys",
    ] {
        std::fs::create_dir_all(tmp.join(d)).unwrap();
    }
    // The engine gives the private /tmp the mode of the directory it covers.
    std::fs::set_permissions(tmp.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/usr/bin/busybox", tmp.join("usr/bin/busybox")).unwrap();
    let list = std::process::Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", tmp.join("usr/bin").join(applet));
        }
    }
    symlink("usr/bin", tmp.join("bin")).unwrap();
    symlink("usr/lib", tmp.join("lib")).unwrap();
    std::fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    if std::fs::rename(&tmp, &dest).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dest.join("usr/bin/busybox").is_file());
    dest
}

fn spec(f: &Fixture, script: &str) -> SandboxSpec {
    let mut s = f.spec(script);
    s.rootfs = busybox_rootfs();
    s.argv = vec!["sh".into(), "-c".into(), script.into()];
    s
}

/// Names of containers (running or not) this test process started.
fn my_containers() -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={CONTAINER_PREFIX}{}-", std::process::id()),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

async fn assert_no_container_left(within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = my_containers();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "containers left: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn exit_status_and_output_come_back_with_a_header() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let out = d
        .run(&spec(&f, "echo to-stdout; echo to-stderr >&2; exit 7"))
        .await
        .unwrap();
    assert_eq!(out.exit, ExitKind::Exited(7), "{}", f.log_text());
    let log = f.log_text();
    let first = log.lines().next().unwrap();
    assert!(first.starts_with("# kmodfarm sandbox=docker: "), "{first}");
    assert!(first.contains("--network none"), "{first}");
    assert!(log.contains("# container limits:"), "{log}");
    let output = f.output();
    assert!(
        output.contains("to-stdout\n") && output.contains("to-stderr\n"),
        "{output}"
    );

    let out = d.run(&spec(&f, "true")).await.unwrap();
    assert!(out.success());
    // A command killed by a signal shows as 128 + N (the build is not the container's pid 1).
    let out = d.run(&spec(&f, "kill -TERM $$; sleep 5")).await.unwrap();
    assert_eq!(out.exit, ExitKind::Exited(128 + 15));
    // A missing command is a failed run (127 from the engine), not a kmodfarm error.
    let mut s = spec(&f, "");
    s.argv = vec!["no-such-program".into()];
    let out = d.run(&s).await.unwrap();
    assert!(!out.success());
    assert_no_container_left(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn runs_unprivileged_on_a_read_only_root_with_only_the_build_dir_writable() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let out = d
        .run(&spec(
            &f,
            "id -u; hostname; grep -E '^CapEff:' /proc/self/status; \
             touch /etc/x 2>/dev/null && echo root-writable; \
             touch /usr/src/x 2>/dev/null && echo usr-writable; \
             touch /tmp/x && echo tmp-ok; touch made-inside && echo build-ok",
        ))
        .await
        .unwrap();
    assert!(out.success(), "{}", f.log_text());
    let output = f.output();
    let uid: u32 = output.lines().next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    if kmf_sandbox_is_root() {
        assert!(uid >= SANDBOX_UID_BASE, "{uid}");
        assert_eq!(
            std::fs::metadata(f.build.join("made-inside"))
                .unwrap()
                .uid(),
            uid
        );
    }
    assert!(output.contains("kmodfarm\n"), "{output}");
    assert!(output.contains("CapEff:\t0000000000000000"), "{output}");
    assert!(!output.contains("root-writable"), "{output}");
    assert!(!output.contains("usr-writable"), "{output}");
    assert!(output.contains("tmp-ok\nbuild-ok\n"), "{output}");
}

fn kmf_sandbox_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn the_network_is_unreachable() {
    let Some(d) = docker() else { return };
    // A listener on every host address: reachable from a normal container through the bridge.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s);
        }
    });
    let f = Fixture::new();
    let out = d
        .run(&spec(
            &f,
            &format!(
                "ls /sys/class/net; for h in 172.17.0.1 127.0.0.1 1.1.1.1; do \
                 if echo x | nc -w 2 $h {port} >/dev/null 2>&1; then echo reached-$h; fi; done; \
                 ip route 2>/dev/null | grep -c default || true"
            ),
        ))
        .await
        .unwrap();
    assert!(out.success(), "{}", f.log_text());
    let output = f.output();
    assert!(!output.contains("reached-"), "{output}");
    assert!(!output.contains("eth0"), "{output}");
    assert!(output.contains("lo\n"), "{output}");
}

#[tokio::test]
async fn the_host_environment_is_absent() {
    let Some(d) = docker() else { return };
    std::env::set_var("KMODFARM_HOST_SECRET", "s3cr3t-value");
    let f = Fixture::new();
    let mut s = spec(&f, "env | sort");
    s.env = vec![("SOURCE_DATE_EPOCH".into(), "1700000000".into())];
    let out = d.run(&s).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    let output = f.output();
    assert!(!output.contains("s3cr3t-value"), "{output}");
    assert!(!output.contains("KMODFARM_HOST_SECRET"), "{output}");
    assert!(
        output.contains("SOURCE_DATE_EPOCH=1700000000\n"),
        "{output}"
    );
    assert!(output.contains("HOME=/build\n"), "{output}");
    let names: Vec<&str> = output
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for n in &names {
        assert!(
            [
                "HOME",
                "HOSTNAME",
                "PATH",
                "PWD",
                "SHLVL",
                "SOURCE_DATE_EPOCH"
            ]
            .contains(n),
            "unexpected variable {n} in {output}"
        );
    }
}

#[tokio::test]
async fn overlays_appear_read_only_at_their_absolute_paths() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let pkg = f.path().join("pkg");
    let tree = pkg.join("usr/src/linux-headers-9.9.9-test");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("Makefile"), "hello from the headers\n").unwrap();
    std::fs::create_dir_all(pkg.join("lib/modules/9.9.9-test")).unwrap();
    symlink(
        "/usr/src/linux-headers-9.9.9-test",
        pkg.join("lib/modules/9.9.9-test/build"),
    )
    .unwrap();
    let mut s = spec(
        &f,
        "cat /usr/src/linux-headers-9.9.9-test/Makefile; cat /lib/modules/9.9.9-test/build/Makefile; \
         touch /usr/src/linux-headers-9.9.9-test/x 2>/dev/null && echo headers-writable; echo done",
    );
    s.overlays = vec![pkg];
    let out = d.run(&s).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(
        f.output(),
        "hello from the headers\nhello from the headers\ndone\n"
    );
}

#[tokio::test]
async fn a_timeout_kills_and_removes_the_container() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let mut s = spec(&f, "echo started; sleep 300");
    s.limits.timeout = Duration::from_secs(4);
    let t = Instant::now();
    let out = d.run(&s).await.unwrap();
    assert_eq!(out.exit, ExitKind::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(
        f.log_text().contains("[kmodfarm: timed out after 4s"),
        "{}",
        f.log_text()
    );
    assert_no_container_left(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dropping_the_run_removes_the_container() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let s = spec(&f, "sleep 300");
    let run = tokio::spawn(async move { d.run(&s).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while my_containers().is_empty() {
        assert!(Instant::now() < deadline, "the container never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.abort();
    let _ = run.await;
    assert_no_container_left(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn output_past_the_log_limit_stops_the_run_and_removes_the_container() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let mut s = spec(&f, "echo start; yes kmodfarm; echo end");
    s.limits.max_log_bytes = 1000;
    s.limits.timeout = Duration::from_secs(120);
    let t = Instant::now();
    let out = d.run(&s).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_ne!(out.exit, ExitKind::TimedOut);
    assert!(!out.success());
    assert!(out.log_limit_exceeded && out.log_truncated);
    assert!(out.log_bytes <= 1000, "{}", out.log_bytes);
    let log = f.log_text();
    assert!(
        log.ends_with(
            "\n[kmodfarm: output exceeded the log limit of 1000 bytes; the run was stopped]\n"
        ),
        "{log}"
    );
    assert!(f.output().starts_with("start\nkmodfarm\n"), "{log}");
    common::assert_log_is_well_formed(&std::fs::read(&f.log).unwrap());
    assert_no_container_left(Duration::from_secs(10)).await;

    let mut s = spec(&f, "printf 'a\\033[2Jb\\n'; printf '[kmodfarm: fake]'");
    s.limits.max_log_bytes = 1000;
    let out = d.run(&s).await.unwrap();
    assert!(out.success() && !out.log_limit_exceeded);
    assert_eq!(f.output(), "a\\x1b[2Jb\n[kmodfarm: fake]\n");
    common::assert_log_is_well_formed(&std::fs::read(&f.log).unwrap());
}

#[tokio::test]
async fn an_oom_kill_is_reported() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    // `tail` keeps the one endless line in memory until the kernel kills it.
    // Like make after an OOM-killed compiler, the run fails: the engine's late OOM event is waited for then.
    let mut s = spec(
        &f,
        "head -c 1073741824 /dev/zero | tail; echo after; exit 3",
    );
    s.limits.memory_bytes = Some(64 << 20);
    let out = d.run(&s).await.unwrap();
    let log = f.log_text();
    assert!(out.oom_killed, "{log}");
    assert_eq!(
        out.exit,
        kmf_sandbox::ExitKind::Exited(3),
        "the shell goes on after `tail` is killed: {log}"
    );
    assert!(
        log.contains("[kmodfarm: the memory limit (67108864 bytes) was reached"),
        "{log}"
    );
    assert!(f.output().ends_with("after\n"), "{log}");
    assert_no_container_left(Duration::from_secs(10)).await;

    let out = d.run(&spec(&f, "echo fine")).await.unwrap();
    assert!(out.success() && !out.oom_killed, "{}", f.log_text());
    assert_no_container_left(Duration::from_secs(10)).await;
}

/// A writable build directory that is a `nosuid,nodev` tmpfs of its own keeps both flags in the container.
#[tokio::test]
async fn a_nosuid_nodev_tmpfs_build_dir_keeps_its_flags() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let at = f.path().join("tmpfs-work");
    std::fs::create_dir(&at).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64m,nosuid,nodev,mode=0700",
            "tmpfs",
        ])
        .arg(&at)
        .output()
        .unwrap();
    if !mounted.status.success() {
        let err = String::from_utf8_lossy(&mounted.stderr);
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "cannot mount a tmpfs: {err}"
        );
        eprintln!("skipped: cannot mount a tmpfs here: {err}");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(at.clone());
    let mut s = spec(
        &f,
        "cat /proc/self/mountinfo; touch /work/made && echo writable",
    );
    s.rw_mounts.push(kmf_sandbox::Mount {
        src: at.clone(),
        dest: "/work".into(),
    });
    let out = d.run(&s).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    let inside = f.output();
    assert!(inside.ends_with("writable\n"), "{inside}");
    let opts: Vec<&str> = inside
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 5 && f[4] == "/work").then(|| f[5])
        })
        .unwrap_or_else(|| panic!("no /work in {inside}"))
        .split(',')
        .collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev") && opts.contains(&"rw"),
        "{opts:?}"
    );
    assert!(at.join("made").exists());
}

#[tokio::test]
async fn the_process_limit_applies() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let mut s = spec(
        &f,
        "n=0; while [ $n -lt 60 ]; do sleep 30 & n=$((n+1)); done 2>/dev/null; \
         echo running $(ls /proc | grep -c '^[0-9]')",
    );
    s.limits = Limits {
        max_processes: Some(20),
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let _ = d.run(&s).await.unwrap();
    let output = f.output();
    let running: usize = output
        .lines()
        .find_map(|l| l.strip_prefix("running "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(running <= 20, "{output}");
    assert_no_container_left(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_builder_image_is_imported_once_and_labelled() {
    let Some(d) = docker() else { return };
    let rootfs = busybox_rootfs();
    let image = d.image_for(&rootfs).await.unwrap();
    assert_eq!(image, builder_image_tag(ROOTFS_ID));
    let again = kmf_sandbox::docker::ensure_image(d.cli(), &rootfs, &image).unwrap();
    assert!(!again, "an image with the same content was imported again");
    let out = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.kmodfarm.builder-id\"}}",
            &image,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ROOTFS_ID);
}

#[tokio::test]
async fn a_log_inside_the_build_dir_is_refused() {
    let Some(d) = docker() else { return };
    let f = Fixture::new();
    let mut s = spec(&f, "true");
    s.log_path = f.build.join("run.log");
    let err = d.run(&s).await.unwrap_err().to_string();
    assert!(err.contains("writable mount"), "{err}");
}
