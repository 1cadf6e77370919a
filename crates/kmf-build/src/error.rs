use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("module signing: {0}")]
    Signing(String),
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("no kernel tree (a directory with .config and Makefile under usr/src) in the header packages")]
    NoKernelTree,
    #[error(
        "cross-building {family} {target} needs native {target} workers or host tools rebuilt: the header \
         packages' {tool} is built for {tool_arch} and this host is {host} (Debian cross-builds because its \
         linux-kbuild package is taken for the host; {family}'s header packages carry the tools built for \
         the kernel's architecture)"
    )]
    HostToolsForeign {
        family: String,
        target: kmf_types::Arch,
        host: kmf_types::Arch,
        tool: String,
        tool_arch: kmf_types::Arch,
    },
    #[error(
        "the kernel config has no CONFIG_CC_VERSION_TEXT: cannot tell which compiler built it"
    )]
    NoCompilerText,
    #[error("no builder for a kernel built with `{cc}`: {why}")]
    UnsupportedCompiler { cc: String, why: String },
    #[error("creating builder {id} failed (mmdebstrap exited with {status}); see {log}")]
    BuilderCreate {
        id: String,
        status: String,
        log: PathBuf,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] kmf_sandbox::SandboxError),
}

impl BuildError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io { op, path, source }
    }
}
