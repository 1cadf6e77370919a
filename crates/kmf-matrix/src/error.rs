#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("invalid --kernel-release regex `{pattern}`: {msg}")]
    BadRegex { pattern: String, msg: String },
    #[error("unknown distro `{name}`; the kernel lists have: {known}")]
    UnknownDistro { name: String, known: String },
    #[error("the driver version is empty")]
    EmptyDriverVersion,
    #[error(
        "variant {label} (kernelversion {kernelversion}) is listed twice, as entries {first} and {second} \
         (counting from 0); a matrix names each distribution, architecture, release and upload once"
    )]
    DuplicateVariant {
        label: String,
        kernelversion: String,
        first: usize,
        second: usize,
    },
    #[error("cannot serialise the matrix: {0}")]
    Json(#[from] serde_json::Error),
}
