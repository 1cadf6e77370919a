use std::path::PathBuf;

/// Everything that can go wrong reading kernel lists, apt configuration and apt repositories.
#[derive(Debug, thiserror::Error)]
pub enum KernelsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("GET {url} failed: HTTP {status}")]
    Http {
        url: String,
        status: reqwest::StatusCode,
    },

    #[error("GET {url} failed: {source}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{url} is larger than the {limit} bytes expected of it")]
    TooLarge { url: String, limit: u64 },

    #[error("{source_name} is not valid JSON (line {line}, column {column}): {msg}")]
    Json {
        source_name: String,
        line: usize,
        column: usize,
        msg: String,
    },

    #[error("{source_name} is not a kernel list: {msg}")]
    MalformedList { source_name: String, msg: String },

    #[error("{source_name}: {distro}: {msg}")]
    MalformedDistro {
        source_name: String,
        distro: String,
        msg: String,
    },

    #[error("{source_name}: {distro}[{index}]: {msg}")]
    MalformedEntry {
        source_name: String,
        distro: String,
        index: usize,
        msg: String,
    },

    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },

    #[error("size mismatch for {url}: expected {expected} bytes, got {actual}")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error("suite {suite} not found: GET {url} returned HTTP {status}")]
    SuiteNotFound {
        suite: String,
        url: String,
        status: reqwest::StatusCode,
    },

    #[error("Release of {suite} refused ({url}): {reason}")]
    ReleaseUntrusted {
        suite: String,
        url: String,
        reason: String,
    },

    #[error("Release of {suite} expired on {valid_until} ({url}); --allow-expired-release {suite} accepts it")]
    ReleaseExpired {
        suite: String,
        url: String,
        valid_until: String,
    },

    #[error("{0}")]
    Keyring(String),

    #[error("malformed Release file {url}: {msg}")]
    Release { url: String, msg: String },

    #[error("{release_url} lists no SHA256 for {wanted} (is the component or architecture served there?)")]
    IndexNotListed { release_url: String, wanted: String },

    #[error("cannot decompress {url}: {source}")]
    Decompress {
        url: String,
        #[source]
        source: std::io::Error,
    },

    #[error("malformed package index {source_name}, line {line}: {msg}")]
    IndexParse {
        source_name: String,
        line: usize,
        msg: String,
    },

    #[error("no linux-headers-{release} package in suite {suite}")]
    HeadersNotFound { release: String, suite: String },

    #[error("{package} depends on {dependency}, which suite {suite} does not provide")]
    DependencyNotFound {
        package: String,
        dependency: String,
        suite: String,
    },

    #[error("{package} does not depend on a {wanted} package; cannot resolve its headers")]
    UnexpectedDepends { package: String, wanted: String },

    #[error(
        "no Debian mirror configured: pass --mirror, set KMODFARM_DEBIAN_MIRROR, or configure a Debian suite in /etc/apt"
    )]
    NoMirror,

    #[error("malformed repository metadata {url}: {msg}")]
    RepoMetadata { url: String, msg: String },

    #[error("repository metadata {url} refused: {reason}")]
    RepomdUntrusted { url: String, reason: String },

    #[error("no yum/dnf repository at {url}: {msg}")]
    NoRepository { url: String, msg: String },

    #[error("bad crawl source: {0}")]
    BadSource(String),

    /// An error shared by every caller of a memoized fetch ([`crate::apt::IndexSet`]).
    #[error(transparent)]
    Shared(std::sync::Arc<KernelsError>),

    #[error("background task failed: {0}")]
    Task(String),
}

impl KernelsError {
    /// Whether a Release (or the keyring to check it) was refused, as opposed to a mirror that could not be
    /// read: callers must not fall back to unchecked sources on these.
    pub fn is_trust_failure(&self) -> bool {
        match self {
            KernelsError::ReleaseUntrusted { .. }
            | KernelsError::ReleaseExpired { .. }
            | KernelsError::RepomdUntrusted { .. }
            | KernelsError::Keyring(_) => true,
            KernelsError::Shared(inner) => inner.is_trust_failure(),
            _ => false,
        }
    }
}
