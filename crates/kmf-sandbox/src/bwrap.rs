//! The bubblewrap sandbox.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::host::DEFAULT_PATH;
use crate::ids::{self, UidSlot};
use crate::mounts::plan_mounts;
use crate::runner::{execute, Launch};
use crate::sys::{self, ChildSetup};
use crate::{RunOutcome, Sandbox, SandboxError, SandboxSpec};

/// The uid and gid the build has inside the sandbox.
const INSIDE_ID: u32 = 1000;

/// Who bwrap runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// kmodfarm is root: each run gets its own unprivileged host uid, and bwrap an unprivileged user
    /// namespace.
    RunUid,
    /// kmodfarm is root but the above does not work: bwrap runs as root and maps the build to uid 1000.
    MappedRoot,
    /// kmodfarm is not root: bwrap runs as kmodfarm's own uid.
    Caller,
}

/// Runs builds in bubblewrap: no network, all namespaces unshared, a cleared environment, a read-only
/// root filesystem with the header packages merged over it, a private `/tmp`, only the writable mounts
/// writable, a non-root uid, and the [`crate::Limits`]. See the crate documentation for the uid it runs
/// as and what that asks of the caller's paths.
#[derive(Debug, Clone)]
pub struct Bubblewrap {
    bwrap: PathBuf,
    mode: Mode,
}

fn find_bwrap() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// The options every run starts with.
fn base_args() -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-all",
        "--unshare-user",
        "--unshare-net",
        // Nested user namespaces are kernel attack surface a module build never needs.
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "kmodfarm",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.extend(
        [
            "--uid",
            &INSIDE_ID.to_string(),
            "--gid",
            &INSIDE_ID.to_string(),
        ]
        .map(OsString::from),
    );
    args
}

/// The options that show an empty, read-only `/proc/cmdline` over the one `--proc` mounted: the host's kernel
/// command line may hold secrets (tokens for the machine's init, addresses) and tells a build what it runs
/// on. bwrap copies what it reads from the descriptor (`/dev/null`: nothing) into a file of its own, so
/// this needs no host path the run's uid can reach. Must follow `--proc /proc`. (No `--perms 0444`: the
/// file is the build user's `0600` then, which changes nothing on a read-only mount, and older bwrap
/// releases lack the option.)
fn empty_cmdline_args() -> std::io::Result<(OwnedFd, Vec<OsString>)> {
    let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let args = [
        "--ro-bind-data".into(),
        null.as_raw_fd().to_string().into(),
        "/proc/cmdline".into(),
    ]
    .to_vec();
    Ok((null, args))
}

/// Environment variable names bwrap and a shell can take.
pub(crate) fn check_env(env: &[(String, String)]) -> Result<(), SandboxError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::InvalidEnv { name: k.clone() });
        }
    }
    Ok(())
}

/// Starts a trivial sandbox the way `mode` would, to see whether it works here.
fn probe(bwrap: &Path, mode: Mode) -> Result<(), String> {
    let slot = match mode {
        Mode::RunUid => Some(UidSlot::acquire().ok_or("no free sandbox uid")?),
        _ => None,
    };
    let (null, cmdline_args) =
        empty_cmdline_args().map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args(base_args())
        .args(["--clearenv", "--ro-bind", "/", "/", "--proc", "/proc"])
        .args(cmdline_args)
        .args(["--dev", "/dev", "--", "true"])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    sys::install_child_setup(
        &mut cmd,
        ChildSetup {
            drop_to: slot.as_ref().map(|s| (s.uid(), s.gid())),
            parent_pid: std::process::id() as i32,
            keep_fds: vec![null.as_raw_fd()],
            ..Default::default()
        },
    );
    let spawned = cmd.spawn();
    drop(null);
    let mut child = spawned.map_err(|e| format!("cannot start it: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("a trivial sandbox did not finish within 20 s".into());
            }
            Err(e) => return Err(format!("waiting for it failed: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    Err(format!(
        "a trivial sandbox failed ({status}): {}",
        stderr.trim()
    ))
}

impl Bubblewrap {
    /// Finds `bwrap` and checks with one trivial run that it can make a sandbox here, choosing who it runs
    /// as (see the crate documentation).
    pub fn detect() -> Result<Self, SandboxError> {
        let bwrap = find_bwrap().ok_or(SandboxError::BwrapNotFound)?;
        let mode = if sys::effective_uid() == 0 {
            match probe(&bwrap, Mode::RunUid) {
                Ok(()) => Mode::RunUid,
                Err(detail) => {
                    tracing::warn!(
                        %detail,
                        "bubblewrap cannot run as an unprivileged uid here; running it as root with the build \
                         mapped to uid {INSIDE_ID} instead (the process limit then relies on cgroups)"
                    );
                    probe(&bwrap, Mode::MappedRoot).map_err(|detail| {
                        SandboxError::BwrapUnusable {
                            bwrap: bwrap.clone(),
                            detail,
                        }
                    })?;
                    Mode::MappedRoot
                }
            }
        } else {
            probe(&bwrap, Mode::Caller).map_err(|detail| SandboxError::BwrapUnusable {
                bwrap: bwrap.clone(),
                detail,
            })?;
            Mode::Caller
        };
        tracing::debug!(bwrap = %bwrap.display(), ?mode, "bubblewrap works");
        Ok(Bubblewrap { bwrap, mode })
    }

    /// The `bwrap` binary in use.
    pub fn path(&self) -> &Path {
        &self.bwrap
    }
}

pub(crate) fn check_mount_sources(spec: &SandboxSpec) -> Result<(), SandboxError> {
    if !spec.cwd.is_absolute() {
        return Err(SandboxError::BadPath {
            what: "working directory",
            path: spec.cwd.clone(),
            reason: "must be an absolute path inside the sandbox".into(),
        });
    }
    for (what, mounts) in [
        ("read-only mount", &spec.ro_mounts),
        ("writable mount", &spec.rw_mounts),
    ] {
        for m in mounts {
            if !m.dest.is_absolute() {
                return Err(SandboxError::BadPath {
                    what,
                    path: m.dest.clone(),
                    reason: "the destination must be an absolute path inside the sandbox".into(),
                });
            }
            if let Err(e) = std::fs::metadata(&m.src) {
                return Err(SandboxError::BadPath {
                    what,
                    path: m.src.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The log must not be where the build can write: it could replace the file (forging the evidence) or,
/// before a later run, put a symlink there for kmodfarm to follow as root.
pub(crate) fn check_log_outside_rw_mounts(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let mut existing = spec.log_path.as_path();
    let real_log_dir = loop {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                if let Ok(real) = std::fs::canonicalize(parent) {
                    break real;
                }
                existing = parent;
            }
            _ => break std::env::current_dir().unwrap_or_default(),
        }
    };
    for m in &spec.rw_mounts {
        let Ok(real_src) = std::fs::canonicalize(&m.src) else {
            continue;
        };
        if real_log_dir.starts_with(&real_src) {
            return Err(SandboxError::BadPath {
                what: "log",
                path: spec.log_path.clone(),
                reason: format!(
                    "it is inside the writable mount {}, where the build could replace it or plant a symlink; \
                     keep logs outside the build directory",
                    m.src.display()
                ),
            });
        }
    }
    Ok(())
}

/// The first bind source the run's uid cannot reach, with the directory in the way.
fn unreachable_source(spec: &SandboxSpec, uid: u32, gid: u32) -> Option<(PathBuf, PathBuf)> {
    let full = std::iter::once(&spec.rootfs)
        .chain(&spec.overlays)
        .chain(spec.ro_mounts.iter().map(|m| &m.src));
    for src in full {
        if let Some(dir) = ids::unreachable_dir(src, uid, gid) {
            return Some((src.clone(), dir));
        }
    }
    // Writable mounts become the uid's own; only the way to them matters.
    for m in &spec.rw_mounts {
        let parent = std::fs::canonicalize(&m.src)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(dir) = parent.and_then(|p| ids::unreachable_dir(&p, uid, gid)) {
            return Some((m.src.clone(), dir));
        }
    }
    None
}

#[async_trait::async_trait]
impl Sandbox for Bubblewrap {
    fn name(&self) -> &'static str {
        "bubblewrap"
    }

    async fn run(&self, spec: &SandboxSpec) -> Result<RunOutcome, SandboxError> {
        let (program, args) = spec.argv.split_first().ok_or(SandboxError::EmptyArgv)?;
        check_env(&spec.env)?;
        check_mount_sources(spec)?;
        check_log_outside_rw_mounts(spec)?;
        let (rootfs, overlays) = (spec.rootfs.clone(), spec.overlays.clone());
        let plan = tokio::task::spawn_blocking(move || plan_mounts(&rootfs, &overlays))
            .await
            .map_err(|e| SandboxError::Task(e.to_string()))??;

        let mut mode = self.mode;
        let mut slot = None;
        let mut notes = Vec::new();
        if mode == Mode::RunUid {
            match UidSlot::acquire() {
                None => {
                    tracing::warn!("every sandbox uid is in use; this run's bwrap runs as root");
                    mode = Mode::MappedRoot;
                }
                Some(s) => {
                    if let Some((src, dir)) = unreachable_source(spec, s.uid(), s.gid()) {
                        tracing::warn!(
                            source = %src.display(),
                            blocked_at = %dir.display(),
                            "the sandbox uid cannot reach a mount source, so this run's bwrap runs as root with \
                             the build mapped to uid {INSIDE_ID}; make the directories above it searchable by \
                             others (chmod o+x) to run it unprivileged"
                        );
                        notes.push(format!(
                            "bwrap runs as root (uid mapped to {INSIDE_ID}): {} is not reachable by an \
                             unprivileged uid",
                            dir.display()
                        ));
                        mode = Mode::MappedRoot;
                    } else {
                        let (uid, gid) = (s.uid(), s.gid());
                        let rw: Vec<PathBuf> =
                            spec.rw_mounts.iter().map(|m| m.src.clone()).collect();
                        tokio::task::spawn_blocking(move || {
                            rw.iter().try_for_each(|src| ids::chown_tree(src, uid, gid))
                        })
                        .await
                        .map_err(|e| SandboxError::Task(e.to_string()))??;
                        notes.push(format!(
                            "runs as host uid {uid} (uid {INSIDE_ID} inside), no network, read-only root"
                        ));
                        slot = Some(s);
                    }
                }
            }
        }
        match mode {
            Mode::RunUid => {}
            Mode::MappedRoot => notes.push(format!(
                "bwrap runs as root; uid {INSIDE_ID} inside a user namespace, no network, read-only root"
            )),
            Mode::Caller => notes.push(format!(
                "runs as kmodfarm's own uid {} (uid {INSIDE_ID} inside), no network, read-only root",
                sys::effective_uid()
            )),
        }

        let mut env: Vec<(String, String)> = spec.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !env.iter().any(|(k, _)| k == "HOME") {
            let home = spec
                .rw_mounts
                .first()
                .map_or_else(|| "/tmp".to_string(), |m| m.dest.display().to_string());
            env.push(("HOME".into(), home));
        }

        let mut bargs = base_args();
        bargs.push("--clearenv".into());
        for (k, v) in &env {
            bargs.extend(["--setenv".into(), k.into(), v.into()]);
        }
        for m in &plan.mounts {
            bargs.extend(m.to_args());
        }
        bargs.extend(["--proc", "/proc"].map(OsString::from));
        let (null, cmdline_args) =
            empty_cmdline_args().map_err(SandboxError::io("open", PathBuf::from("/dev/null")))?;
        bargs.extend(cmdline_args);
        bargs.extend(["--dev", "/dev", "--tmpfs", "/tmp"].map(OsString::from));
        for m in &spec.ro_mounts {
            bargs.extend([
                "--ro-bind".into(),
                m.src.clone().into(),
                m.dest.clone().into(),
            ]);
        }
        for m in &spec.rw_mounts {
            bargs.extend(["--bind".into(), m.src.clone().into(), m.dest.clone().into()]);
        }
        for m in &plan.remount_ro {
            bargs.extend(m.to_args());
        }
        bargs.extend(["--chdir".into(), spec.cwd.clone().into(), "--".into()]);
        bargs.push(program.into());
        bargs.extend(args.iter().map(OsString::from));

        let launch = Launch {
            sandbox: self.name(),
            program: self.bwrap.clone().into(),
            args: bargs,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            drop_to: slot.as_ref().map(|s| (s.uid(), s.gid())),
            nproc_rlimit_always: slot.is_some(),
            notes,
            pass_fds: vec![null],
        };
        let outcome = execute(launch, &spec.limits, &spec.log_path).await;
        drop(slot);
        outcome
    }
}
