//! The bubblewrap sandbox against the real bwrap, with the host's own root (a merged-/usr Debian) as the
//! builder rootfs. Skipped with a message where bwrap cannot run, except under `CI=true`.

mod common;

use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_none_left, bubblewrap, Fixture};
use kmf_sandbox::{ExitKind, HostRunner, Mount, Sandbox, SANDBOX_UID_BASE};

#[tokio::test]
async fn exit_codes_propagate_and_the_log_has_a_header() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let out = bw
        .run(&f.spec("echo to-stdout; echo to-stderr >&2; echo again; exit 7"))
        .await
        .unwrap();
    assert_eq!(out.exit, ExitKind::Exited(7));
    assert!(!out.success());
    assert_eq!(out.command_line[0], bw.path().display().to_string());
    assert!(out.command_line.iter().any(|a| a == "--unshare-net"));
    let log = f.log_text();
    let first = log.lines().next().unwrap();
    assert!(
        first.starts_with("# kmodfarm sandbox=bubblewrap: "),
        "{first}"
    );
    assert!(
        first.contains("--unshare-all") && first.contains("'echo to-stdout;"),
        "{first}"
    );
    assert_eq!(f.output(), "to-stdout\nto-stderr\nagain\n");
    assert!(
        log.ends_with("\n| to-stdout\n| to-stderr\n| again\n"),
        "{log}"
    );
    assert_eq!(
        out.log_bytes,
        "| to-stdout\n| to-stderr\n| again\n".len() as u64
    );
    assert!(!out.log_truncated && !out.log_limit_exceeded && !out.oom_killed);

    let out = bw.run(&f.spec("true")).await.unwrap();
    assert!(out.success());
    // A command killed by a signal shows as 128 + N, as bwrap reports it.
    let out = bw.run(&f.spec("kill -TERM $$")).await.unwrap();
    assert_eq!(out.exit, ExitKind::Exited(128 + 15));
}

#[tokio::test]
async fn runs_as_an_unprivileged_user_without_capabilities() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let out = bw
        .run(&f.spec(
            "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; touch made-inside; hostname",
        ))
        .await
        .unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(
        f.output(),
        "1000\n1000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nkmodfarm\n"
    );
    let owner = std::fs::metadata(f.build.join("made-inside"))
        .unwrap()
        .uid();
    let header = f.log_text();
    if header.contains("# runs as host uid") {
        // kmodfarm is root here: the build ran as a dedicated unprivileged host uid, not as root.
        assert!(owner >= SANDBOX_UID_BASE, "file made by uid {owner}");
    } else {
        eprintln!("note: bwrap ran in mapped-root mode here; the host owner is {owner}");
    }
}

#[tokio::test]
async fn root_filesystem_is_read_only_and_only_the_build_dir_writable() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let script = r#"
        for p in /usr/x /x /etc/x /usr/lib/x /var/x; do
            if touch "$p" 2>/dev/null; then echo "WROTE $p"; fi
        done
        touch /tmp/scratch && echo tmp-ok
        echo built > /build/out.txt && echo build-ok
        mkdir -p /build/sub/dir && echo mkdir-ok
    "#;
    let out = bw.run(&f.spec(script)).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(f.output(), "tmp-ok\nbuild-ok\nmkdir-ok\n");
    assert_eq!(
        std::fs::read_to_string(f.build.join("out.txt")).unwrap(),
        "built\n"
    );
    assert!(!std::path::Path::new("/usr/x").exists() && !std::path::Path::new("/x").exists());
}

#[tokio::test]
async fn the_network_is_unreachable_inside_but_reachable_on_the_host() {
    let Some(bw) = bubblewrap() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let f = Fixture::new();
    let script = format!("echo hello > /dev/tcp/127.0.0.1/{port} && echo CONNECTED");
    let out = bw.run(&f.spec(&script)).await.unwrap();
    assert!(!out.success(), "{}", f.log_text());
    assert!(!f.output().contains("CONNECTED"));
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's listener"
    );
    // The same command on the host does connect: the test can tell the difference.
    let mut spec = f.spec(&script);
    spec.cwd = f.build.clone();
    let accept = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    });
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(accept.join().unwrap(), "hello\n");
    // Inside there is only a loopback interface, and it is down.
    let out = bw
        .run(&f.spec("ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1"))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(
        f.output().split_whitespace().collect::<Vec<_>>(),
        vec!["lo"]
    );
}

#[tokio::test]
async fn host_secrets_are_not_visible() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    // A small rootfs of our own: the host's /usr, our own /etc; nothing else of the host.
    let rootfs = f.path().join("rootfs");
    for d in ["usr", "etc", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "builder:x:1000:1000::/build:/bin/sh\n",
    )
    .unwrap();
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        symlink(target, rootfs.join(link)).unwrap();
    }
    std::fs::write(f.path().join("secret.txt"), "s3cret").unwrap();
    let mut spec = f.spec(&format!(
        "ls -A /; echo ---; cat /etc/passwd; echo ---; \
         for p in /root /home /etc/hostname /etc/shadow /root/.aws /root/.cargo {secret} {fixture}; do \
           test -e \"$p\" && echo \"VISIBLE $p\"; done; echo done",
        secret = f.path().join("secret.txt").display(),
        fixture = f.path().display(),
    ));
    spec.rootfs = rootfs;
    spec.ro_mounts = vec![Mount {
        src: "/usr".into(),
        dest: "/usr".into(),
    }];
    let out = bw.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(
        f.output(),
        "bin\nbuild\ndev\netc\nlib\nlib64\nproc\nsbin\ntmp\nusr\n---\nbuilder:x:1000:1000::/build:/bin/sh\n---\ndone\n"
    );
}

/// A fake header package set laid out as Debian's: the arch package's `scripts` points into the kbuild
/// package, and `lib/modules/X/build` points at the header tree.
#[tokio::test]
async fn overlays_appear_merged_over_the_rootfs() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let rel = "6.1.0-99-kmftest";
    let arch_pkg = f.path().join("pkg-arch");
    let kbuild_pkg = f.path().join("pkg-kbuild");
    std::fs::create_dir_all(arch_pkg.join(format!("usr/src/linux-headers-{rel}"))).unwrap();
    std::fs::write(
        arch_pkg.join(format!("usr/src/linux-headers-{rel}/.config")),
        "CONFIG_X=y\n",
    )
    .unwrap();
    symlink(
        format!("../../lib/linux-kbuild-{rel}/scripts"),
        arch_pkg.join(format!("usr/src/linux-headers-{rel}/scripts")),
    )
    .unwrap();
    std::fs::create_dir_all(arch_pkg.join(format!("lib/modules/{rel}"))).unwrap();
    symlink(
        format!("/usr/src/linux-headers-{rel}"),
        arch_pkg.join(format!("lib/modules/{rel}/build")),
    )
    .unwrap();
    std::fs::create_dir_all(kbuild_pkg.join(format!("usr/lib/linux-kbuild-{rel}/scripts/mod")))
        .unwrap();
    std::fs::write(
        kbuild_pkg.join(format!("usr/lib/linux-kbuild-{rel}/scripts/f")),
        "from-kbuild\n",
    )
    .unwrap();
    let modpost = kbuild_pkg.join(format!("usr/lib/linux-kbuild-{rel}/scripts/mod/modpost"));
    std::fs::write(&modpost, "#!/bin/sh\necho modpost-ran\n").unwrap();
    std::fs::set_permissions(&modpost, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut spec = f.spec(&format!(
        "cat /usr/src/linux-headers-{rel}/scripts/f; \
         /usr/src/linux-headers-{rel}/scripts/mod/modpost; \
         cat /lib/modules/{rel}/build/.config; \
         readlink /lib/modules/{rel}/build; \
         test -d /usr/lib/x86_64-linux-gnu -o -d /usr/lib/aarch64-linux-gnu && echo multiarch-ok; \
         test -d /usr/lib/gcc && echo gcc-ok; \
         gcc --version >/dev/null && echo gcc-runs; \
         touch /usr/src/new 2>/dev/null && echo WROTE-usr-src; \
         touch /usr/lib/linux-kbuild-{rel}/new 2>/dev/null && echo WROTE-kbuild; \
         touch /usr/lib/new 2>/dev/null && echo WROTE-usr-lib; \
         echo done"
    ));
    spec.overlays = vec![arch_pkg, kbuild_pkg];
    let out = bw.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(
        f.output(),
        format!(
            "from-kbuild\nmodpost-ran\nCONFIG_X=y\n/usr/src/linux-headers-{rel}\nmultiarch-ok\ngcc-ok\ngcc-runs\ndone\n"
        )
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_tree() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let marker = "1000.0417";
    let mut spec = f.spec(&format!(
        "echo started; sh -c 'sleep {marker} & sleep {marker}'"
    ));
    spec.limits.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let out = bw.run(&spec).await.unwrap();
    assert_eq!(out.exit, ExitKind::TimedOut);
    assert!(!out.success());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(out.duration >= Duration::from_secs(2));
    let log = f.log_text();
    assert!(log.contains("started\n"), "{log}");
    assert!(log.contains("[kmodfarm: timed out after 2s"), "{log}");
    assert_none_left(marker, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn dropping_the_run_kills_the_sandbox() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let marker = "1000.0733";
    let spec = f.spec(&format!("sleep {marker} & sleep {marker}"));
    let run = tokio::spawn(async move { bw.run(&spec).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::sleepers(marker).len() < 2 {
        assert!(Instant::now() < deadline, "the sandbox never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    let _ = run.await;
    assert_none_left(marker, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn output_past_the_log_limit_stops_the_run() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let marker = "1000.0929";
    // Endless output, with a background process of the sandbox that must go too.
    let mut spec = f.spec(&format!("sleep {marker} & yes flood; echo finished >&2"));
    spec.limits.max_log_bytes = 1 << 20;
    spec.limits.timeout = Duration::from_secs(100);
    let start = Instant::now();
    let out = bw.run(&spec).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(!out.success());
    assert_ne!(out.exit, ExitKind::TimedOut);
    assert!(out.log_limit_exceeded && out.log_truncated);
    assert!(out.log_bytes <= 1 << 20 && out.log_bytes > (1 << 20) - 8);
    let size = std::fs::metadata(&f.log).unwrap().len();
    assert!(
        size > 1 << 20 && size < (1 << 20) + 16 * 1024,
        "log is {size} bytes"
    );
    let log = f.log_text();
    assert!(
        log.ends_with(
            "\n\n[kmodfarm: output exceeded the log limit of 1048576 bytes; the run was stopped]\n"
        ),
        "{}",
        &log[log.len() - 300..]
    );
    assert!(!f.output().contains("finished"));
    assert!(f.output().starts_with("flood\nflood\n"));
    common::assert_log_is_well_formed(&std::fs::read(&f.log).unwrap());
    assert_none_left(marker, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_process_limit_stops_a_fork_bomb() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let marker = "30.0913";
    let mut spec = f.spec(&format!(
        "for i in $(seq 2000); do sleep {marker} & done; echo loop-finished"
    ));
    spec.limits.max_processes = Some(64);
    spec.limits.timeout = Duration::from_secs(40);
    let run = bw.run(&spec);
    tokio::pin!(run);
    // Watch the run from the host: it never gets more processes than the limit.
    let mut peak = 0;
    let out = loop {
        tokio::select! {
            out = &mut run => break out.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                peak = peak.max(common::sleepers(marker).len());
            }
        }
    };
    let log = f.log_text();
    assert!(peak > 10, "the loop never got going (peak {peak}): {log}");
    assert!(peak <= 64, "{peak} processes with a limit of 64");
    assert!(!out.success());
    assert!(
        log.contains("Resource temporarily unavailable") || log.contains("fork: retry"),
        "no fork ever failed: {}",
        &log[..log.len().min(3000)]
    );
    assert!(!f.output().contains("loop-finished"), "{log}");
    assert_none_left(&format!("sleep {marker}"), Duration::from_secs(5)).await;
    // The host can still start processes.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn the_memory_limit_stops_a_greedy_process() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let mut spec = f.spec("python3 -c 'b = bytearray(2 * 1024**3); print(\"ALLOCATED\")'");
    spec.limits.memory_bytes = Some(256 << 20);
    let start = Instant::now();
    let out = bw.run(&spec).await.unwrap();
    let log = f.log_text();
    assert!(!out.success(), "{log}");
    assert_ne!(out.exit, ExitKind::TimedOut);
    assert!(!f.output().contains("ALLOCATED"), "{log}");
    assert!(
        log.contains("the memory limit (268435456 bytes) was reached")
            || log.contains("MemoryError"),
        "{log}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// `head` feeding `tail` a single endless line: `tail` keeps it all in memory until the OOM killer ends it.
const GREEDY: &str = "head -c 1G /dev/zero | tail; echo after";

#[tokio::test]
async fn an_oom_kill_is_reported() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let mut spec = f.spec(GREEDY);
    spec.limits.memory_bytes = Some(64 << 20);
    let out = bw.run(&spec).await.unwrap();
    let log = f.log_text();
    if !common::assert_oom_reported(&out, &log) {
        return;
    }
    assert!(f.output().ends_with("after\n"), "{log}");
    // Far below the limit: nothing to report.
    let out = bw
        .run(&f.spec("head -c 1M /dev/zero | tail | wc -c"))
        .await
        .unwrap();
    assert!(out.success() && !out.oom_killed, "{}", f.log_text());
}

/// The host's kernel command line is not the build's business (it can hold secrets of the machine).
#[tokio::test]
async fn proc_cmdline_is_empty_inside() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let script = "wc -c < /proc/cmdline; stat -c %F /proc/cmdline; \
                  { echo x > /proc/cmdline; } 2>/dev/null && echo WRITABLE; \
                  head -c 4 /proc/self/cmdline; echo";
    let out = bw.run(&f.spec(script)).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(f.output(), "0\nregular empty file\nhead\n");
    assert!(std::fs::metadata("/proc/cmdline").is_ok());

    // The same when bwrap runs as root with the build mapped (a source the sandbox uid cannot reach).
    let private = f.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let build = private.join("build");
    std::fs::create_dir(&build).unwrap();
    let mut spec = f.spec(script);
    spec.rw_mounts[0].src = build;
    let out = bw.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(f.output(), "0\nregular empty file\nhead\n");
    if !f.log_text().contains("# bwrap runs as root") {
        assert!(
            !f.log_text().contains("# runs as host uid"),
            "{}",
            f.log_text()
        );
    }
}

/// Not a test by itself: the body of the child process of `proc_cmdline_is_empty_for_a_normal_user`, run as
/// a user other than root.
#[tokio::test]
#[ignore = "helper of proc_cmdline_is_empty_for_a_normal_user"]
async fn helper_reads_proc_cmdline_as_a_normal_user() {
    if std::env::var_os("KMF_HELPER_CMDLINE").is_none() {
        return;
    }
    let bw = kmf_sandbox::Bubblewrap::detect().expect("bubblewrap as a normal user");
    let f = Fixture::new();
    let out = bw
        .run(&f.spec("id -u; wc -c < /proc/cmdline"))
        .await
        .unwrap();
    assert!(out.success(), "{}", f.log_text());
    let header: Vec<String> = f
        .log_text()
        .lines()
        .filter(|l| l.starts_with("# runs as"))
        .map(str::to_string)
        .collect();
    println!("HELPER-HEADER={header:?}");
    println!("HELPER-OUTPUT={:?}", f.output());
}

/// kmodfarm run by a normal user (bwrap as the caller's own uid): the same empty `/proc/cmdline`.
#[tokio::test]
async fn proc_cmdline_is_empty_for_a_normal_user() {
    let Some(_bw) = bubblewrap() else { return };
    if !kmf_is_root() {
        eprintln!("note: not root, so proc_cmdline_is_empty_inside already ran as a normal user");
        return;
    }
    // nobody; the test binary and the temporary directory are reachable by every user.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_reads_proc_cmdline_as_a_normal_user",
            "--nocapture",
        ])
        .env_clear()
        .env("KMF_HELPER_CMDLINE", "1")
        .env("PATH", "/usr/bin:/bin")
        .env("TMPDIR", std::env::temp_dir())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("bubblewrap as a normal user") {
        // Unprivileged user namespaces are off here: no normal user can run bwrap at all.
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "bwrap does not run for a normal user: {stderr}"
        );
        eprintln!("skipped: bwrap does not run for a normal user here: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("HELPER-HEADER=[\"# runs as kmodfarm's own uid 65534 (uid 1000 inside)"),
        "{stdout}"
    );
    assert!(stdout.contains("HELPER-OUTPUT=\"1000\\n0\\n\""), "{stdout}");
}

fn kmf_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A tmpfs mounted on the host for the test; unmounted on drop.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// Root only; `None` (with a message) elsewhere, a failure under `CI=true`.
    fn new(at: PathBuf, options: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(&at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "cannot mount a tmpfs: {err}"
            );
            eprintln!("skipped: cannot mount a tmpfs here: {err}");
            return None;
        }
        Some(TmpfsMount(at))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The per-mount options of `mountpoint` in a mountinfo text.
fn mount_options<'a>(mountinfo: &'a str, mountpoint: &str) -> Option<Vec<&'a str>> {
    mountinfo.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 5 && f[4] == mountpoint).then(|| f[5].split(',').collect())
    })
}

/// A build directory that is a `nosuid,nodev` tmpfs of its own keeps both flags inside, and bwrap makes
/// every bind `nosuid,nodev` anyway, from a plain ext4/overlay directory too.
#[tokio::test]
async fn binds_are_nosuid_and_nodev() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let Some(tmpfs) = TmpfsMount::new(
        f.path().join("tmpfs-work"),
        "size=64m,nosuid,nodev,mode=0700",
    ) else {
        return;
    };
    let plain = f.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let mut spec = f.spec("cat /proc/self/mountinfo; touch /work/made && echo tmpfs-writable");
    spec.rw_mounts.push(Mount {
        src: tmpfs.0.clone(),
        dest: "/work".into(),
    });
    spec.ro_mounts.push(Mount {
        src: plain.clone(),
        dest: "/mnt".into(),
    });
    let out = bw.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    let inside = f.output();
    assert!(inside.ends_with("tmpfs-writable\n"), "{inside}");
    let host_mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for (dest, writable) in [("/work", true), ("/build", true), ("/mnt", false)] {
        let opts = mount_options(&inside, dest).unwrap_or_else(|| panic!("{dest} in {inside}"));
        assert!(
            opts.contains(&"nosuid") && opts.contains(&"nodev"),
            "{dest}: {opts:?}"
        );
        assert_eq!(opts.contains(&"rw"), writable, "{dest}: {opts:?}");
    }
    // Where the fixture's filesystem has neither flag on the host (here: ext4 `rw,relatime`), bwrap added them.
    let fixture_fs = std::process::Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "-T"])
        .arg(&plain)
        .output()
        .unwrap();
    let fixture_opts = String::from_utf8_lossy(&fixture_fs.stdout).into_owned();
    eprintln!("note: the fixture's filesystem on the host: {fixture_opts}");
    assert!(host_mountinfo.contains(&tmpfs.0.display().to_string()));
}

#[tokio::test]
async fn concurrent_runs_get_different_host_uids() {
    let Some(bw) = bubblewrap() else { return };
    let (a, b) = (Fixture::new(), Fixture::new());
    let script = "touch mine; sleep 1";
    let (sa, sb) = (a.spec(script), b.spec(script));
    let (ra, rb) = tokio::join!(bw.run(&sa), bw.run(&sb));
    assert!(ra.unwrap().success() && rb.unwrap().success());
    let ua = std::fs::metadata(a.build.join("mine")).unwrap().uid();
    let ub = std::fs::metadata(b.build.join("mine")).unwrap().uid();
    if a.log_text().contains("# runs as host uid") {
        assert_ne!(ua, ub);
    }
}

#[tokio::test]
async fn an_unreachable_source_falls_back_to_mapped_root() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    // A build dir under a 0700 directory cannot be reached by an unprivileged uid.
    let private = f.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let build = private.join("build");
    std::fs::create_dir(&build).unwrap();
    let mut spec = f.spec("id -u; touch ok");
    spec.rw_mounts = vec![Mount {
        src: build.clone(),
        dest: "/build".into(),
    }];
    let out = bw.run(&spec).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    assert_eq!(f.output(), "1000\n");
    assert!(build.join("ok").exists());
    let unprivileged_mode = {
        let g = Fixture::new();
        bw.run(&g.spec("true")).await.unwrap();
        g.log_text().contains("# runs as host uid")
    };
    if unprivileged_mode {
        let log = f.log_text();
        assert!(
            log.contains(&format!("{} is not reachable", private.display())),
            "{log}"
        );
        assert_eq!(std::fs::metadata(build.join("ok")).unwrap().uid(), 0);
    }
}

#[tokio::test]
async fn bad_specs_are_clear_errors() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.argv.clear();
    assert!(bw
        .run(&spec)
        .await
        .unwrap_err()
        .to_string()
        .contains("empty"));
    let mut spec = f.spec("true");
    spec.rootfs = PathBuf::from("/nonexistent/rootfs");
    let err = bw.run(&spec).await.unwrap_err().to_string();
    assert!(err.contains("root filesystem /nonexistent/rootfs"), "{err}");
    let mut spec = f.spec("true");
    spec.rw_mounts[0].src = f.path().join("missing");
    let err = bw.run(&spec).await.unwrap_err().to_string();
    assert!(
        err.contains("writable mount") && err.contains("missing"),
        "{err}"
    );
    let mut spec = f.spec("true");
    spec.cwd = "relative".into();
    assert!(bw
        .run(&spec)
        .await
        .unwrap_err()
        .to_string()
        .contains("absolute"));
    // A log inside the build dir could be replaced by the build, or be a symlink it planted.
    let mut spec = f.spec("true");
    spec.log_path = f.build.join("logs/step.log");
    let err = bw.run(&spec).await.unwrap_err().to_string();
    assert!(err.contains("inside the writable mount"), "{err}");
    let mut spec = f.spec("true");
    spec.log_path = f.build.join("step.log");
    assert!(bw.run(&spec).await.is_err());
    let mut spec = f.spec("true");
    spec.env = vec![("A=B".into(), "x".into())];
    assert!(bw
        .run(&spec)
        .await
        .unwrap_err()
        .to_string()
        .contains("`A=B`"));
}

#[tokio::test]
async fn a_missing_command_is_a_failed_run_with_the_reason_logged() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.argv = vec!["no-such-command-kmf".into()];
    let out = bw.run(&spec).await.unwrap();
    assert!(!out.success());
    let log = f.log_text();
    assert!(log.contains("no-such-command-kmf"), "{log}");
}

/// Not a test by itself: the body of the child process of `the_sandbox_dies_with_kmodfarm`.
#[tokio::test]
#[ignore = "helper of the_sandbox_dies_with_kmodfarm"]
async fn helper_runs_a_long_sandbox() {
    let Ok(marker) = std::env::var("KMF_HELPER_MARKER") else {
        return;
    };
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    let _ = bw
        .run(&f.spec(&format!("sleep {marker} & sleep {marker}")))
        .await;
}

/// kmodfarm killed outright (SIGKILL, no clean-up of its own): the sandbox must die with it.
#[tokio::test]
async fn the_sandbox_dies_with_kmodfarm() {
    if bubblewrap().is_none() {
        return;
    }
    let marker = "1000.0857";
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_runs_a_long_sandbox",
            "--nocapture",
        ])
        .env("KMF_HELPER_MARKER", marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait for the build to be running: killed during bwrap's own start-up, bwrap may leave its
    // namespace's init behind (it arms its parent-death signal only after cloning).
    while common::sleepers(marker).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the helper's sandbox never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert_none_left(marker, Duration::from_secs(5)).await;
}

/// kmodfarm killed while bwrap is still setting up: bwrap's namespace init may outlive it (bwrap arms its
/// parent-death signal only after its set-up). Such leftovers sit in the dead run's cgroup, which the
/// next run clears.
#[tokio::test]
async fn a_sandbox_orphaned_during_start_up_is_cleared_by_the_next_run() {
    let Some(bw) = bubblewrap() else { return };
    let f = Fixture::new();
    bw.run(&f.spec("true")).await.unwrap();
    if !f.log_text().contains("pids: cgroup") && !f.log_text().contains("processes: cgroup") {
        eprintln!("skipped: no cgroups here, so leftovers of a killed kmodfarm cannot be found");
        return;
    }
    let marker = "1000.0313";
    // Each helper's own run clears what the ones before it left; the last one's leftovers are ours to see.
    for delay_ms in [40, 20, 10, 5, 0] {
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "helper_runs_a_long_sandbox"])
            .env("KMF_HELPER_MARKER", marker)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as its bwrap exists, so as to hit bwrap's set-up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while common::processes_with(marker).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the helper's sandbox never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        helper.kill().unwrap();
        helper.wait().unwrap();
    }
    // Let any orphan finish its set-up, then start a new run: it clears the dead runs' cgroups.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "note: {} sleeper(s) outlived their killed kmodfarm before the next run",
        common::sleepers(marker).len()
    );
    bw.run(&f.spec("true")).await.unwrap();
    assert_none_left(marker, Duration::from_secs(5)).await;
}
