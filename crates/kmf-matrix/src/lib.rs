//! The build matrix: which variants exist, in the seed pipeline's JSON shape.
//!
//! [`generate`] turns kernel lists (kernel-crawler JSON or kmodfarm's crawl) into [`MatrixEntry`]s, filtered the
//! way the seed's `matrix-gen generate` is (`--distro`, `--arch`, `--kernel-release`, `--driver-version`).
//! Output is deterministic: the same input gives the same bytes.

mod error;
mod generate;

pub use error::MatrixError;
pub use generate::{generate, to_json, Generated, MatrixFilter};
