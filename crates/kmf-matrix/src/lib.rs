//! The build matrix: which variants exist, in the seed pipeline's JSON shape.
//!
//! [`generate`] turns kernel lists (kernel-crawler JSON or kmodfarm's crawl) into
//! [`MatrixEntry`](kmf_types::MatrixEntry)s, filtered the way the seed's `matrix-gen generate` is
//! (`--distro`, `--arch`, `--kernel-release`, `--driver-version`). Output is deterministic: the same input
//! gives the same bytes.
//!
//! [`diff`] compares a published matrix with a fresh one: what to build (added and modified variants, each
//! modification with its [`ChangeReason`]s), what was removed, and which groups are held because they
//! vanished or shrank too much to trust (safe diffs). Also deterministic.

mod diff;
mod error;
mod generate;

pub use diff::{
    check_unique, diff, ChangeReason, DiffOptions, DiffSummary, HeldGroup, HoldReason, MatrixDiff,
    Modified, DEFAULT_SHRINK_THRESHOLD,
};
pub use error::MatrixError;
pub use generate::{generate, to_json, Generated, MatrixFilter};
