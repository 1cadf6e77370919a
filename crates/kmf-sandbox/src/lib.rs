//! Running untrusted kernel-module builds.
//!
//! A driver's Makefile/Kbuild is code from whoever published the driver, so builds run in a [`Sandbox`]:
//!
//! * [`Bubblewrap`] (the default): no network, every namespace unshared, a read-only builder root filesystem
//!   with the kernel header packages merged over it, a private `/tmp`, only the build directory writable,
//!   an empty `/proc/cmdline` (the host's kernel command line can hold secrets), a cleared environment, a
//!   non-root uid, and limits on time, memory, processes and log size. Every bind mount is `nosuid,nodev`
//!   (bwrap adds both), and a flag of the source mount, such as `noexec`, carries over.
//! * [`HostRunner`] (`--sandbox none`): the same logging and limits, but no isolation at all; only for trusted
//!   code on a disposable machine.
//!
//! * [`Docker`] (`--sandbox docker`, or Podman with `KMODFARM_DOCKER=podman`): the same isolation from a
//!   container engine: each builder root filesystem imported once as a local image, the header packages
//!   bound read-only, `--network none`, a read-only root, a non-root uid, memory/process/CPU limits, and
//!   the container removed in every case (see [`docker`]).
//!
//! # Who runs the build
//!
//! When kmodfarm runs as root, [`Bubblewrap`] starts `bwrap` as a dedicated unprivileged host uid (one per
//! concurrent run, from [`SANDBOX_UID_BASE`] up, locked machine-wide under `/run/kmodfarm-sandbox-uids`),
//! which then uses an unprivileged user namespace: the build is uid 1000 inside and an unprivileged,
//! otherwise unused uid outside, so `RLIMIT_NPROC` and file permissions really apply. For that, `bwrap`
//! must be able to reach every bind source as that uid: every directory above the root filesystem, the
//! header package roots and the mounts must be searchable by others (`chmod o+x`; e.g. not under a `0700`
//! home or `tempfile::tempdir()`). The writable mounts are `lchown`ed to the run's uid before the run (and
//! stay so afterwards; root still reads them). When a source is not reachable, or unprivileged user
//! namespaces do not work on the machine, `bwrap` runs as root with `--unshare-user --uid 1000 --gid 1000
//! --cap-drop ALL` instead and a warning (and the log header) says so.
//!
//! # Limits and clean-up
//!
//! Memory and process limits use a per-run cgroup (v2 where its controllers can be enabled, else v1's
//! `memory` and `pids` hierarchies), falling back to `RLIMIT_AS` / `RLIMIT_NPROC`; a tracing line and the
//! log header say which applied. A process the OOM killer took is reported in [`RunOutcome::oom_killed`]
//! and a note in the log. The run's processes never outlive it: on timeout, when its output passes the log
//! limit, on exit (leftover background processes) and when the run's future is dropped they are killed
//! through the process group, the cgroup and `kill_on_drop`; if kmodfarm itself dies, the child gets
//! SIGKILL (parent-death signal) and bwrap's `--die-with-parent` takes the sandbox down. One gap is bwrap's
//! own: killed while bwrap is still setting the sandbox up, its namespace init may survive; it stays in the
//! dead run's cgroup, which the next run on the machine finds (by its dead owner) and clears.
//!
//! # Logs
//!
//! The log starts with `# kmodfarm sandbox=<name>: <the full command line, shell-quoted>`, then `# ` lines
//! with the limits and the identity used, then stdout and stderr interleaved as written, then
//! `[kmodfarm: ...]` notes on the log limit, timeout or the memory limit. Every line of the command's output
//! starts with `| ` (a last line without newline too, which kmodfarm then ends), and control characters other
//! than tab and newline are written escaped (`\r`, `\x1b`; also the UTF-8 forms of the C1 controls, as
//! `\xc2\x9b`), so kmodfarm's own lines are the only ones that start with `#` or `[`, and showing the
//! log in a terminal cannot drive it. Other bytes, invalid UTF-8 included, are kept as they are (a
//! literal `\x1b` in the output reads the same as an escaped one). The output's part of the log, prefixes
//! and escapes counted, is capped at [`Limits::max_log_bytes`]: output going past it stops the run (its
//! processes are killed as on timeout) and [`RunOutcome::log_limit_exceeded`] says so. So a log is at
//! most its header, the cap and the notes. Under bubblewrap the log must lie outside the writable mounts
//! (the run is refused otherwise): there the build could replace it, or plant a symlink for kmodfarm to
//! follow as root. Logs are opened without following a symlink in any runner.

mod bwrap;
mod cgroup;
pub mod docker;
mod error;
mod host;
mod ids;
mod mounts;
mod runner;
mod sys;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use bwrap::Bubblewrap;
pub use docker::Docker;
pub use error::SandboxError;
pub use host::HostRunner;
pub use ids::SANDBOX_UID_BASE;
pub use mounts::{plan_mounts, BwrapArg, MountPlan};

/// A bind mount: `src` on the host appears at `dest` inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub src: PathBuf,
    pub dest: PathBuf,
}

/// Resource limits of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time; past it the whole process tree is killed and the outcome is [`ExitKind::TimedOut`].
    pub timeout: Duration,
    /// Memory of the whole run (cgroup), or address space per process (`RLIMIT_AS`) where no cgroup can be
    /// made.
    pub memory_bytes: Option<u64>,
    /// Processes of the whole run (cgroup `pids.max`), and `RLIMIT_NPROC` of the run's uid.
    pub max_processes: Option<u64>,
    /// Output kept in the log, counted as written there (line prefixes and escapes included). Output going
    /// past it stops the run: its whole process tree is killed, as on timeout, and the log says so.
    pub max_log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(20 * 60),
            memory_bytes: Some(4 << 30),
            max_processes: Some(512),
            max_log_bytes: 8 << 20,
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Builder root filesystem (made by mmdebstrap), mounted read-only as `/`.
    pub rootfs: PathBuf,
    /// Extracted package roots (each laid out like a filesystem root: `usr/src/...`, `lib/modules/...`),
    /// merged read-only over the rootfs. On a clash of files the later overlay wins.
    pub overlays: Vec<PathBuf>,
    /// Extra read-only binds.
    pub ro_mounts: Vec<Mount>,
    /// Writable binds (the private build dir).
    pub rw_mounts: Vec<Mount>,
    /// The command; `argv[0]` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// The whole environment of the command; `PATH` (and, in bubblewrap, `HOME`) get defaults when absent.
    pub env: Vec<(String, String)>,
    /// Working directory, as the command sees it.
    pub cwd: PathBuf,
    pub limits: Limits,
    /// Host path of the log: a header line with the command line, then stdout and stderr interleaved.
    pub log_path: PathBuf,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit status. Under bubblewrap a command killed by signal N shows as `128 + N`, as in a shell.
    Exited(i32),
    /// Killed by this signal (the host runner, or bwrap itself).
    Signaled(i32),
    /// Ran past [`Limits::timeout`] and was killed.
    TimedOut,
}

/// The result of a run that happened.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit: ExitKind,
    pub duration: Duration,
    /// Bytes of the command's output stored in the log, in its log form (line prefixes and escapes
    /// included; the header and kmodfarm's notes not counted). At most [`Limits::max_log_bytes`].
    pub log_bytes: u64,
    /// The output went past [`Limits::max_log_bytes`] and the rest was dropped.
    pub log_truncated: bool,
    /// The output went past [`Limits::max_log_bytes`], so the run was stopped: every process of it still
    /// running was killed, as on timeout. [`RunOutcome::exit`] is how the command ended, normally by that
    /// kill (`Signaled(9)`), or its own status if it had ended before the rest of its output was read.
    pub log_limit_exceeded: bool,
    /// The kernel's OOM killer killed a process of the run because of [`Limits::memory_bytes`] (the
    /// run's memory cgroup under bubblewrap and `none`; the container's `State.OOMKilled` under docker).
    /// Always false where the limit is only `RLIMIT_AS` (no cgroup): an allocation fails there instead.
    pub oom_killed: bool,
    /// The full command started on the host (the `bwrap ...` line, or the command itself).
    pub command_line: Vec<String>,
}

impl RunOutcome {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.exit == ExitKind::Exited(0)
    }
}

/// A way of running a build command.
#[async_trait::async_trait]
pub trait Sandbox: Send + Sync {
    /// Short name for logs and metadata (`bubblewrap`, `none`).
    fn name(&self) -> &'static str;
    /// Runs `spec.argv` to completion (or timeout). Dropping the future kills the command.
    async fn run(&self, spec: &SandboxSpec) -> Result<RunOutcome, SandboxError>;
}

/// The sandbox implementations, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SandboxKind {
    Bubblewrap,
    /// The Docker CLI (or the client `KMODFARM_DOCKER` names).
    Docker,
    /// Podman's Docker-compatible CLI, `podman`.
    Podman,
    None,
}

impl FromStr for SandboxKind {
    type Err = SandboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bubblewrap" | "bwrap" => Ok(SandboxKind::Bubblewrap),
            "docker" => Ok(SandboxKind::Docker),
            "podman" => Ok(SandboxKind::Podman),
            "none" => Ok(SandboxKind::None),
            _ => Err(SandboxError::UnknownKind(s.to_string())),
        }
    }
}

impl fmt::Display for SandboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxKind::Bubblewrap => "bubblewrap",
            SandboxKind::Docker => "docker",
            SandboxKind::Podman => "podman",
            SandboxKind::None => "none",
        })
    }
}

/// Opens the sandbox of that kind, checking that it works here.
pub fn open(kind: SandboxKind) -> Result<Box<dyn Sandbox>, SandboxError> {
    match kind {
        SandboxKind::Bubblewrap => Ok(Box::new(Bubblewrap::detect()?)),
        SandboxKind::Docker => Ok(Box::new(Docker::detect()?)),
        SandboxKind::Podman => Ok(Box::new(Docker::with_cli("podman")?)),
        SandboxKind::None => {
            tracing::warn!(
                "sandbox `none`: build commands run directly on this machine with no isolation; \
                 use it only for trusted code on a disposable machine"
            );
            Ok(Box::new(HostRunner))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parses_and_displays() {
        assert_eq!(
            "bubblewrap".parse::<SandboxKind>().unwrap(),
            SandboxKind::Bubblewrap
        );
        assert_eq!(
            " BWRAP ".parse::<SandboxKind>().unwrap(),
            SandboxKind::Bubblewrap
        );
        assert_eq!("none".parse::<SandboxKind>().unwrap(), SandboxKind::None);
        assert_eq!(
            "docker".parse::<SandboxKind>().unwrap(),
            SandboxKind::Docker
        );
        assert_eq!(
            "podman".parse::<SandboxKind>().unwrap(),
            SandboxKind::Podman
        );
        let err = "lxc".parse::<SandboxKind>().unwrap_err();
        assert!(err.to_string().contains("`lxc`"), "{err}");
        for k in [
            SandboxKind::Bubblewrap,
            SandboxKind::Docker,
            SandboxKind::Podman,
            SandboxKind::None,
        ] {
            assert_eq!(k.to_string().parse::<SandboxKind>().unwrap(), k);
        }
    }

    #[test]
    fn podman_selects_the_podman_client() {
        let podman_here = std::process::Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        match open(SandboxKind::Podman) {
            Ok(s) => assert!(podman_here, "opened a sandbox without podman: {}", s.name()),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("podman"), "{msg}");
                assert!(!msg.contains("`docker`"), "{msg}");
            }
        }
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.timeout, Duration::from_secs(1200));
        assert_eq!(l.memory_bytes, Some(4 * 1024 * 1024 * 1024));
        assert_eq!(l.max_processes, Some(512));
        assert_eq!(l.max_log_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn success_is_exit_zero_only() {
        let mk = |exit| RunOutcome {
            exit,
            duration: Duration::ZERO,
            log_bytes: 0,
            log_truncated: false,
            log_limit_exceeded: false,
            oom_killed: false,
            command_line: vec![],
        };
        assert!(mk(ExitKind::Exited(0)).success());
        assert!(!mk(ExitKind::Exited(1)).success());
        assert!(!mk(ExitKind::Signaled(9)).success());
        assert!(!mk(ExitKind::TimedOut).success());
    }
}
