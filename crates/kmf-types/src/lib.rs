//! Shared nouns of kmodfarm. Every stage crate speaks in these types; none of them does I/O.
//!
//! * [`Arch`]: a CPU architecture under its kernel-crawler / matrix spelling (`x86_64`, `aarch64`).
//! * [`KernelList`] / [`KernelEntry`]: Falco kernel-crawler's `list.json`, plus the fields kmodfarm's own
//!   crawlers add (package digests, the Debian package version, the flavour). Other tools ignore the extras.
//! * [`MatrixEntry`]: one build variant, the element of the seed pipeline's matrix JSON.
//! * [`names`]: checks for names that become paths, and escaping of untrusted text for terminals.
//! * [`published`]: what a store holds for consumers: a published variant's record (`metadata.json`), a
//!   driver's index (`index.json`), and the keys of both and of the variants' files.

mod arch;
mod distro;
mod kernel;
mod matrix;
pub mod names;
mod outcome;
mod proof;
pub mod published;

pub use arch::{Arch, UnknownArch};
pub use distro::normalize_distro;
pub use kernel::{HeaderPackage, KernelEntry, KernelList, KernelVersion};
pub use matrix::{output_version, MatrixEntry};
pub use outcome::FailureClass;
pub use proof::{InputProof, ReleaseProof, SignatureProof};
