use std::path::PathBuf;

/// Why an extraction failed. Members that are merely unsafe (escaping paths, devices, links
/// leaving the tree) are not errors: they are skipped and listed in
/// [`crate::ExtractReport::skipped`].
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Creating or writing something in the destination (or reading the package file) failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive stream is damaged: bad tar header, bad compression, truncated data.
    #[error("{archive}: corrupt archive: {source}")]
    Corrupt {
        archive: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a Debian binary package.
    #[error("{}: not a Debian package: {reason}", path.display())]
    NotADeb { path: PathBuf, reason: String },
    /// The file is not an RPM package, or its headers are damaged.
    #[error("{}: not an RPM package: {reason}", path.display())]
    NotAnRpm { path: PathBuf, reason: String },
    /// The package has no `data.tar*` member.
    #[error("{}: no data.tar member", path.display())]
    NoData { path: PathBuf },
    /// The `data.tar` member (or an RPM's payload) uses a compression this crate does not read.
    #[error("{}: unsupported compression of member {member}", path.display())]
    UnsupportedCompression { path: PathBuf, member: String },
    /// Unpacking would exceed [`crate::ExtractLimits`]: a decompression bomb, or a package far
    /// larger than any header package.
    #[error("{archive}: {what} exceed the limit of {limit}")]
    LimitExceeded {
        archive: String,
        /// "unpacked bytes", "entries" or "metadata bytes of one entry".
        what: &'static str,
        limit: u64,
    },
    /// The file is none of the package formats this crate reads.
    #[error("{}: unknown package format", path.display())]
    UnknownFormat { path: PathBuf },
    /// An RPM that must be signed carries no OpenPGP signature.
    #[error("{}: not signed: the package carries no OpenPGP signature (rpmsign --addsign makes one)", path.display())]
    NotSigned { path: PathBuf },
    /// An RPM's signature was not accepted: made by a key outside the keyring, BAD (the package was
    /// changed after signing), by an expired or revoked key, or malformed.
    #[error("{}: {what}: {source}", path.display())]
    Signature {
        path: PathBuf,
        /// Which signature (`header signature (RSAHEADER)`).
        what: String,
        #[source]
        source: kmf_trust::TrustError,
    },
    /// A digest of an RPM does not match what it covers.
    #[error("{}: {what} digest BAD: expected {expected}, got {actual} (the package was changed after it was built or signed)", path.display())]
    DigestMismatch {
        path: PathBuf,
        /// As `rpm -K` names it: `Header SHA256`, `Payload SHA256`, `MD5`.
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// An RPM's signature does not cover its payload.
    #[error("{}: the payload is not covered by a signature: {reason}", path.display())]
    PayloadUnsigned { path: PathBuf, reason: String },
    /// A [`crate::PackageTrees`] key that cannot be a directory name.
    #[error("invalid tree key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
}

impl ExtractError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ExtractError::Io {
            path: path.into(),
            source,
        }
    }
}
