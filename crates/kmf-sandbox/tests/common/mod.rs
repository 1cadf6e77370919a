//! Helpers shared by the sandbox tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kmf_sandbox::{Bubblewrap, Limits, Mount, SandboxSpec};

/// bwrap, or `None` (with a message) where it cannot run; under `CI=true` that is a failure instead.
pub fn bubblewrap() -> Option<Bubblewrap> {
    match Bubblewrap::detect() {
        Ok(b) => Some(b),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("bubblewrap is required when CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: bubblewrap is not usable here: {e}");
            None
        }
    }
}

/// A temporary directory that an unprivileged sandbox uid can reach, with a build dir and a log path.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub build: PathBuf,
    pub log: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let build = dir.path().join("build");
        std::fs::create_dir(&build).unwrap();
        let log = dir.path().join("logs/run.log");
        Fixture { dir, build, log }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `bash -c script` in /build, with the host's own root as the builder rootfs.
    pub fn spec(&self, script: &str) -> SandboxSpec {
        SandboxSpec {
            rootfs: "/".into(),
            overlays: vec![],
            ro_mounts: vec![],
            rw_mounts: vec![Mount {
                src: self.build.clone(),
                dest: "/build".into(),
            }],
            argv: vec!["bash".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/build".into(),
            limits: Limits {
                timeout: Duration::from_secs(120),
                ..Limits::default()
            },
            log_path: self.log.clone(),
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap()).into_owned()
    }

    /// The command's output as the log shows it: its `| ` lines without the prefix (escapes kept), and none of
    /// kmodfarm's own lines.
    pub fn output(&self) -> String {
        output_of(&self.log_text())
    }
}

/// The `| ` lines of a log, without the prefix.
pub fn output_of(log: &str) -> String {
    log.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every line of a log is kmodfarm's own (`# ` header lines first, `[kmodfarm: ...]` notes, blank lines
/// before notes) or output behind `| `, and no byte in it can drive a terminal.
pub fn assert_log_is_well_formed(log: &[u8]) {
    for (i, &b) in log.iter().enumerate() {
        assert!(
            !(b < 0x20 && b != b'\n' && b != b'\t' || b == 0x7f),
            "control byte {b:#04x} at offset {i} of the log:\n{}",
            String::from_utf8_lossy(log)
        );
    }
    let text = String::from_utf8_lossy(log);
    let mut in_header = true;
    for line in text.lines() {
        if in_header && line.starts_with("# ") {
            continue;
        }
        in_header = false;
        assert!(
            line.starts_with("| ") || line.starts_with("[kmodfarm: ") || line.is_empty(),
            "a line that is neither output nor kmodfarm's: {line:?} in\n{text}"
        );
    }
}

/// Pids of live processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Zombies have an empty command line and are gone once reaped; count only live ones.
        if cmdline.contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of live `sleep <marker>` processes (not the shells or bwraps whose command lines mention them).
pub fn sleepers(marker: &str) -> Vec<u32> {
    processes_with(marker)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
        .collect()
}

/// Waits up to `within` for no process with `marker` to be left.
pub async fn assert_none_left(marker: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            let details: Vec<String> = left
                .iter()
                .map(|pid| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    format!(
                        "{pid}: stat [{}] cmd [{}]",
                        stat.trim(),
                        &cmd[..cmd.len().min(80)]
                    )
                })
                .collect();
            panic!(
                "processes with `{marker}` outlived the run:\n{}",
                details.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that a run limited to 64 MiB that blew past it reported the kernel's OOM kill, in its outcome and
/// its log. `false` (skip) where the run had no memory cgroup, which under `CI=true` fails instead.
#[allow(dead_code)]
pub fn assert_oom_reported(out: &kmf_sandbox::RunOutcome, log: &str) -> bool {
    if !log.contains("memory: cgroup") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no memory cgroup for the run: {log}"
        );
        eprintln!("skipped: no memory cgroup here, so no OOM kill to report");
        return false;
    }
    assert!(out.oom_killed, "{log}");
    assert!(
        log.contains("[kmodfarm: the memory limit (67108864 bytes) was reached"),
        "{log}"
    );
    true
}
