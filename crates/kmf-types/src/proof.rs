//! How an input was proven authentic before anything was built from it.

use serde::{Deserialize, Serialize};

/// The proof behind one input (a header package), recorded with it from the crawl to the published
/// `metadata.json` and provenance. Never part of a build key: the same bytes proven again by a newer
/// Release are the same input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum InputProof {
    /// Listed with its SHA256 and size in a package index whose SHA256 is in an OpenPGP-verified Release.
    SignedIndex(ReleaseProof),
    /// The package's own OpenPGP signature (an RPM's header signature) verified against the family's keys.
    PackageSignature(SignatureProof),
    /// Nothing proved it: a URL from a kernel list with no digest, and no signed index or signature to
    /// check it against.
    Unverified { reason: String },
}

impl InputProof {
    /// Whether the input was proven (by a signed index or its own signature).
    pub fn is_verified(&self) -> bool {
        !matches!(self, InputProof::Unverified { .. })
    }

    /// Set when the proving index was accepted although its `Valid-Until` had passed.
    pub fn expired_since(&self) -> Option<&str> {
        match self {
            InputProof::SignedIndex(r) => r.expired_since.as_deref(),
            _ => None,
        }
    }

    /// One line for logs and `install`/`publish` output.
    pub fn summary(&self) -> String {
        match self {
            InputProof::SignedIndex(r) => {
                let mut s = format!(
                    "signed index of {} (Release sha256:{}…, Date {}, key {})",
                    r.suite,
                    &r.sha256[..r.sha256.len().min(12)],
                    r.date.as_deref().unwrap_or("?"),
                    r.signed_by
                );
                if let Some(since) = &r.expired_since {
                    s.push_str(&format!(", EXPIRED since {since}, accepted as configured"));
                }
                s
            }
            InputProof::PackageSignature(p) => format!("package signature by key {}", p.signed_by),
            InputProof::Unverified { reason } => format!("UNVERIFIED: {reason}"),
        }
    }
}

/// A verified apt `Release` (from `InRelease`, or `Release` with `Release.gpg`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReleaseProof {
    /// The suite asked for (`bookworm-security`); the Release named it as its `Suite` or `Codename`.
    pub suite: String,
    /// Where the signed Release was read.
    pub url: String,
    /// SHA256 of the signed file as fetched.
    pub sha256: String,
    /// The Release's `Date`, as written there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Fingerprint of the key whose signature verified (upper-case hex).
    pub signed_by: String,
    /// That key's user ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// When `Valid-Until` had passed and the user allowed it for this suite: the `Valid-Until` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_since: Option<String>,
}

/// A verified OpenPGP signature carried by the input itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignatureProof {
    /// Fingerprint of the key whose signature verified (upper-case hex).
    pub signed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The keyring it was checked against (file names).
    pub keyring: String,
}
