use std::path::PathBuf;

use kmf_build::BuiltModule;
use kmf_types::published::{variant_prefix, Durations};
use kmf_types::{FailureClass, MatrixEntry};
use serde::Serialize;

/// The `schema` of the records the publisher writes ([`kmf_types::published::PublishedVariant`]).
pub const RESULTS_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Status {
    /// Built, verified and published in this run.
    Success,
    /// Already in the store with the same build key: a farm run found it up to date and did not rebuild it
    /// (with [`VariantResult::booted_now`], it boot-tested the published modules).
    UpToDate,
    /// Not built; `class` says why in one word, `message` in a sentence.
    Failed {
        class: FailureClass,
        message: String,
    },
    /// Not applicable: the project's requirements rule the kernel out (`reason` says which). Not built, not
    /// a failure, not in the published matrix.
    Excluded { reason: String },
}

/// What happened to one variant: the element of `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub driver: String,
    pub driver_version: String,
    pub label: String,
    pub entry: MatrixEntry,
    /// Store prefix the artifacts went to (`<driver>/<output>`).
    pub store_prefix: String,
    #[serde(flatten)]
    pub status: Status,
    /// `uname -r` read from the header tree, when it got that far.
    pub kernel_release: Option<String>,
    pub builder: Option<String>,
    /// The content-addressed key of the build's inputs, once known (see `kmf_farm::keys`).
    pub build_key: Option<String>,
    pub modules: Vec<BuiltModule>,
    /// The build log on this machine (kept for failures too).
    pub log: Option<PathBuf>,
    /// The QEMU console log of the boot test, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_log: Option<PathBuf>,
    pub durations: Durations,
    /// Inputs built from without full proof, one line each: a package nothing proved (`unverified`), or one
    /// proven by a Release accepted past its `Valid-Until`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_warnings: Vec<String>,
    /// A failed variant's first diagnostic that explains it: the compiler's first `error:` with its file and
    /// line, make's `***`, modpost's `ERROR:`, or the boot's first failed step or kernel complaint (printable,
    /// at most 400 characters); absent when its log has none (the message then says it all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl VariantResult {
    /// A variant of `driver` whose handling starts: successful until something says otherwise.
    pub fn started(driver: &str, driver_version: &str, entry: MatrixEntry) -> VariantResult {
        VariantResult {
            driver: driver.to_string(),
            driver_version: driver_version.to_string(),
            label: format!("{driver} {}", entry.label()),
            store_prefix: variant_prefix(driver, &entry.output),
            entry,
            status: Status::Success,
            kernel_release: None,
            builder: None,
            build_key: None,
            modules: vec![],
            log: None,
            boot_log: None,
            durations: Durations::default(),
            input_warnings: vec![],
            first_error: None,
        }
    }

    /// Up to date, and boot-tested by this run from its published modules (a boot the record lacked).
    pub fn booted_now(&self) -> bool {
        self.status == Status::UpToDate && self.boot_log.is_some()
    }

    /// True for variants whose modules are in the store: built now ([`Status::Success`]) or found up to
    /// date ([`Status::UpToDate`]).
    pub fn is_success(&self) -> bool {
        matches!(self.status, Status::Success | Status::UpToDate)
    }

    /// True for variants the project's requirements rule out.
    pub fn is_excluded(&self) -> bool {
        matches!(self.status, Status::Excluded { .. })
    }
}
