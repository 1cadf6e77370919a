use std::path::PathBuf;

/// Everything that can keep a sandboxed command from being run. A command that runs and fails is not an
/// error: it is a [`crate::RunOutcome`] with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "bubblewrap (`bwrap`) was not found in PATH or /usr/bin; install it with `apt-get install bubblewrap`, \
         or run with `--sandbox none` on a disposable machine"
    )]
    BwrapNotFound,

    #[error(
        "bubblewrap at {bwrap} cannot create a sandbox on this machine: {detail}\nhint: bwrap needs unprivileged \
         user namespaces (check `sysctl user.max_user_namespaces` > 0, and on Ubuntu 24.04+ \
         `kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap); inside a container \
         it also needs the container to allow mounts in a user namespace"
    )]
    BwrapUnusable { bwrap: PathBuf, detail: String },

    #[error(
        "unknown sandbox `{0}` (expected `bubblewrap`, `bwrap`, `docker`, `podman` or `none`)"
    )]
    UnknownKind(String),

    #[error(
        "invalid environment variable `{name}`: names must be non-empty without `=`, and neither name nor \
         value may hold a NUL byte"
    )]
    InvalidEnv { name: String },

    #[error("the command to run is empty")]
    EmptyArgv,

    #[error("{what} {path} does not exist or is not usable: {reason}")]
    BadPath {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "too many levels of symbolic links while resolving {path} in the root filesystem {rootfs}"
    )]
    SymlinkLoop { rootfs: PathBuf, path: PathBuf },

    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("waiting for the sandboxed command failed: {0}")]
    Wait(#[source] std::io::Error),

    #[error("internal task failed: {0}")]
    Task(String),
}

impl SandboxError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SandboxError::Io {
            action,
            path,
            source,
        }
    }
}
