use std::path::PathBuf;

/// Why a keyring could not be read or a signed file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read keyring {path}: {source}")]
    KeyringIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("keyring {origin} holds no usable OpenPGP public key{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    EmptyKeyring {
        origin: String,
        detail: Option<String>,
    },

    #[error("not signed: {0}")]
    NotSigned(String),

    #[error("malformed signature: {0}")]
    Malformed(String),

    #[error("signed by {}, which is not in the keyring {keyring}", issuers.join(", "))]
    UnknownKey {
        issuers: Vec<String>,
        keyring: String,
    },

    #[error("BAD signature by {fingerprint}: the signed content was changed after signing")]
    BadSignature { fingerprint: String },

    #[error("signed by {fingerprint}, whose key expired on {expired}")]
    ExpiredKey {
        fingerprint: String,
        expired: String,
    },

    #[error("signed by {fingerprint}, whose key was revoked{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    RevokedKey {
        fingerprint: String,
        reason: Option<String>,
    },

    #[error("the signature by {fingerprint} {why}")]
    InvalidSignature { fingerprint: String, why: String },
}
