use std::path::PathBuf;

use kmf_build::BuiltModule;
use kmf_types::{FailureClass, MatrixEntry};
use serde::Serialize;

pub const RESULTS_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Status {
    /// Built, verified and published in this run.
    Success,
    /// Already in the store with the same build key: a farm run found it up to date and did not rebuild it.
    UpToDate,
    /// Not built; `class` says why in one word, `message` in a sentence.
    Failed {
        class: FailureClass,
        message: String,
    },
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
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Durations {
    pub resolve_secs: f64,
    pub fetch_secs: f64,
    pub extract_secs: f64,
    pub toolchain_secs: f64,
    pub build_secs: f64,
    /// Booting the target kernel and loading the modules (`--boot-test`).
    pub boot_secs: f64,
    pub publish_secs: f64,
    pub total_secs: f64,
}

impl VariantResult {
    /// A variant of `driver` whose handling starts: successful until something says otherwise.
    pub fn started(driver: &str, driver_version: &str, entry: MatrixEntry) -> VariantResult {
        VariantResult {
            driver: driver.to_string(),
            driver_version: driver_version.to_string(),
            label: format!("{driver} {}", entry.label()),
            store_prefix: format!("{driver}/{}", entry.output),
            entry,
            status: Status::Success,
            kernel_release: None,
            builder: None,
            build_key: None,
            modules: vec![],
            log: None,
            boot_log: None,
            durations: Durations::default(),
        }
    }

    /// True for variants whose modules are in the store: built now ([`Status::Success`]) or found up to
    /// date ([`Status::UpToDate`]).
    pub fn is_success(&self) -> bool {
        matches!(self.status, Status::Success | Status::UpToDate)
    }
}

/// The metadata JSON published beside a variant's modules (`<prefix>/metadata.json`), written last.
#[derive(Debug, Clone, Serialize)]
pub struct VariantMetadata {
    pub schema: u32,
    /// The directory under the variant's prefix holding its modules, logs, SHA256SUMS and provenance
    /// (`kmf_types::published`).
    pub artifacts: String,
    pub kmodfarm_version: &'static str,
    pub driver: String,
    pub driver_version: String,
    pub result: &'static str,
    pub variant: MatrixEntry,
    pub kernel_release: String,
    pub modules: Vec<BuiltModule>,
    pub toolchain: Toolchain,
    pub inputs: Inputs,
    /// The boot test the modules passed before publishing, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
    /// The modules' signatures, when they were signed (`--sign-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<kmf_build::sign::SignatureRecord>,
    /// What decides whether the variant must be rebuilt: a new build key means new inputs.
    pub build_key: String,
    /// The part of the build key known before any download (source, driver version, header package
    /// identities, make arguments, recipe); see `kmf_farm::keys`.
    pub input_key: String,
    pub durations: Durations,
    pub built_at: String,
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Toolchain {
    pub builder: String,
    /// The builder id plus a digest of every package installed in its root filesystem.
    pub builder_identity: String,
    pub suite: String,
    pub cc_version_text: Option<String>,
    pub sandbox: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub source_sha256: String,
    pub packages: Vec<InputPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InputPackage {
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    pub url: Option<String>,
}

/// A passed boot test, as recorded in `metadata.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BootRecord {
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The kernel image package booted (`linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb`).
    pub kernel_package: Option<String>,
    /// Modules in the order they were loaded, in-tree dependencies first.
    pub load_order: Vec<String>,
    /// `/proc/sys/kernel/tainted` after loading: at most O (out-of-tree) and E (unsigned).
    pub taint: Option<u64>,
    pub secs: f64,
    pub log: String,
}
