//! Operations: the pipeline wired end to end.
//!
//! [`Farm::build`] takes (driver, matrix entry) jobs and, for each, resolves the header packages (mirror first,
//! recorded URLs as fallback), fetches them into the content-addressed cache, extracts each package once,
//! picks and creates the builder for the kernel's compiler, runs kbuild in the sandbox, verifies the modules and
//! publishes them with their metadata. Jobs run in parallel; one failure never stops the others. A variant whose
//! [`keys`] match the store's record is reported up to date without a download.
//!
//! [`sync::sync`] is the nightly job on top: diff against the published matrix, build what changed, publish
//! the artifacts and then the new matrix.

pub mod boot_published;
pub mod bundle;
mod farm;
mod host_layout;
pub mod keys;
pub mod plan;
pub mod publish;
mod resolve;
pub mod select;
pub mod sources;
pub mod sync;

pub use farm::{BootTesting, Driver, Farm, FarmOptions, FarmReporter, Stage};
pub use kmf_report::{Status, VariantMetadata, VariantResult, RESULTS_SCHEMA};
