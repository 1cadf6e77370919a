#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("invalid --kernel-release regex `{pattern}`: {msg}")]
    BadRegex { pattern: String, msg: String },
    #[error("unknown distro `{name}`; the kernel lists have: {known}")]
    UnknownDistro { name: String, known: String },
    #[error("the driver version is empty")]
    EmptyDriverVersion,
    #[error("cannot serialise the matrix: {0}")]
    Json(#[from] serde_json::Error),
}
