//! Operations: the pipeline wired end to end, in three steps that may run on different machines.
//!
//! [`plan::plan`] (trusted, reads the store and the mirrors) diffs each driver's fresh matrix against the
//! published one and leaves out variants whose [`keys`] match the store's record, without a download.
//! [`Farm::work`] (untrusted side: no store write, no signing key) takes each remaining variant through the
//! pipeline: resolve the header packages (mirror first, recorded URLs as fallback), fetch them into the
//! content-addressed cache, extract each once, pick the builder for the kernel's compiler, run kbuild in the
//! sandbox, verify the modules, and write a [`bundle`]. [`publish`] (trusted) re-verifies every bundle,
//! signs, boot-tests and publishes the variants, then each driver's matrix. [`run`] chains the three in one
//! process for `build` and `sync`, so the one-machine path and the distributed one are the same code.

pub mod boot_published;
pub mod bundle;
pub mod fallback;
mod farm;
mod host_layout;
pub mod keys;
pub mod plan;
pub mod plan_store;
pub mod preflight;
pub mod publish;
mod resolve;
pub mod run;
pub mod select;
pub mod sources;
pub mod sync;

pub use farm::{BootTesting, Driver, Farm, FarmOptions, FarmReporter, Stage, WorkJob};
pub use kmf_report::{Status, VariantResult, RESULTS_SCHEMA};
