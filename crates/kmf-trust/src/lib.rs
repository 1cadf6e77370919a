//! OpenPGP proof of what kmodfarm builds from.
//!
//! A kernel's header packages carry Makefiles, scripts and host programs that run during the build and shape
//! every module the farm signs, so they are taken only when a key the operator trusts vouches for them, the
//! way apt, dnf and mmdebstrap take them: an apt repository's `InRelease` (or `Release` + `Release.gpg`)
//! signed by a key of the distribution's archive keyring, an RPM's header signature by the family's
//! `RPM-GPG-KEY-*`. This crate owns the keyrings and the signature checks; the crates that fetch decide what a
//! verified file then proves (an index's SHA256 sums, a package's digests).
//!
//! Verification follows gpgv as apt runs it: at least one signature must come from a key of the keyring
//! that is neither expired nor revoked at the time of checking and must verify; a signature by a keyring key
//! that does *not* verify fails the whole file (the text was changed after signing); signatures by keys
//! outside the keyring are ignored when a good one is present (Debian signs with several keys at once).

mod error;
mod keyring;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use error::TrustError;
pub use keyring::{Keyring, Signer};
