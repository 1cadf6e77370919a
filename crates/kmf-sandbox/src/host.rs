//! `--sandbox none`: the command runs directly on the host.

use std::ffi::OsString;

use crate::runner::{execute, Launch};
use crate::{RunOutcome, Sandbox, SandboxError, SandboxSpec};

/// `PATH` when the caller gives none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Runs commands directly on the host (`--sandbox none`). **No isolation at all**: the command sees the
/// whole machine, its network and every file kmodfarm's user may touch. Only for trusted code on a
/// disposable machine (a CI runner that builds the project's own driver).
///
/// It keeps what does not need isolation: `argv` runs in `cwd` with only `spec.env` (plus a default
/// `PATH`), the timeout kills its whole process group (and cgroup, where one can be made), memory and
/// process limits apply as in bubblewrap, and the log is written and capped the same way. `rootfs`,
/// `overlays` and the mounts are ignored: every path in `argv`, `env` and `cwd` must be a host path.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostRunner;

#[async_trait::async_trait]
impl Sandbox for HostRunner {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn run(&self, spec: &SandboxSpec) -> Result<RunOutcome, SandboxError> {
        let (program, args) = spec.argv.split_first().ok_or(SandboxError::EmptyArgv)?;
        crate::bwrap::check_env(&spec.env)?;
        if !spec.cwd.is_dir() {
            return Err(SandboxError::BadPath {
                what: "working directory",
                path: spec.cwd.clone(),
                reason: "not a directory on this host".into(),
            });
        }
        let mut env: Vec<(OsString, OsString)> =
            spec.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        if !spec.env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let launch = Launch {
            sandbox: self.name(),
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env,
            cwd: spec.cwd.clone(),
            drop_to: None,
            nproc_rlimit_always: false,
            notes: vec![format!(
                "no isolation: runs directly on this host in {}",
                spec.cwd.display()
            )],
            pass_fds: Vec::new(),
        };
        execute(launch, &spec.limits, &spec.log_path).await
    }
}
