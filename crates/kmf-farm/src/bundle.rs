//! Bundles: what a worker hands to the publisher for one variant of a plan, and how the publisher checks it.
//! This module owns the format; [`write_bundle`] is the worker's side and [`verify_bundle`] the publisher's.
//!
//! A bundle is a directory `shard-<N>/<driver>/<output>/` under the worker's output: the modules (by file
//! name), `build.log`, `boot.log` when a boot test ran, and `record.json`, written last: the plan and shard
//! it belongs to, the variant, its input and build keys, the toolchain, the header packages, each module's
//! SHA256 and size, durations, and the result or failure class.
//!
//! Nothing a worker wrote is trusted. The publisher opens the bundle without following links (any link,
//! FIFO, device or directory inside, or a file the record does not name, refuses the bundle), copies each
//! module once into a private directory while hashing it, and re-derives every fact it publishes from those
//! copies: the SHA256 and size must be the record's, each module must be ELF for the plan's architecture
//! with the plan's kernel release as vermagic, the modules must be the project's expected ones, and the
//! record's plan, shard, variant and input key must be the plan's (its build key must follow from them).

use std::path::{Path, PathBuf};

use kmf_build::kbuild::OutputLimits;
use kmf_build::untrusted::{
    create_dirs_beneath, create_nofollow, Beneath, EntryKind, UntrustedError,
};
use kmf_build::workdir::PrivateDir;
use kmf_build::BuiltModule;
use kmf_report::{BootRecord, Durations, InputPackage, Toolchain, VariantResult};
use kmf_types::names::{check_path_component, printable};
use kmf_types::published::FirmwareFile;
use kmf_types::FailureClass;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, PlannedVariant};

/// `schema` of `record.json`.
pub const BUNDLE_SCHEMA: &str = "kmodfarm-bundle/1";
/// The record, written last: a bundle directory without it is incomplete.
pub const RECORD_FILE: &str = "record.json";
pub const BUILD_LOG: &str = "build.log";
pub const BOOT_LOG: &str = "boot.log";
/// Largest record read.
const MAX_RECORD_BYTES: u64 = 4 << 20;
/// Largest log taken from a bundle (the worker's own limit is far lower).
const MAX_BUNDLE_LOG_BYTES: u64 = 64 << 20;

/// Where a worker writes its bundles, and for which plan and shard.
#[derive(Debug, Clone)]
pub struct BundleSink {
    pub dir: PathBuf,
    pub plan: String,
    pub shard: usize,
}

/// The directory of a variant's bundle, relative to the bundles' root.
pub fn bundle_dir(shard: usize, variant: &str) -> PathBuf {
    Path::new(&format!("shard-{shard}")).join(variant)
}

/// A module as the record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleModule {
    pub file_name: String,
    /// Path relative to the project's source root.
    pub relative_path: String,
    /// Where a host installs it (see [`kmf_types::published::PublishedModule::destination`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub sha256: String,
    pub size: u64,
}

/// `record.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleRecord {
    pub schema: String,
    pub kmodfarm_version: String,
    pub plan: String,
    pub shard: usize,
    /// The plan's variant id (`<driver>/<output>`).
    pub variant: String,
    pub input_key: String,
    /// `success`, `failed` or `excluded`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<Toolchain>,
    #[serde(default)]
    pub packages: Vec<InputPackage>,
    #[serde(default)]
    pub modules: Vec<BundleModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
    pub durations: Durations,
    pub built_at: String,
}

impl BundleRecord {
    fn base(sink: &BundleSink, result: &VariantResult, input_key: &str) -> BundleRecord {
        BundleRecord {
            schema: BUNDLE_SCHEMA.to_string(),
            kmodfarm_version: env!("CARGO_PKG_VERSION").to_string(),
            plan: sink.plan.clone(),
            shard: sink.shard,
            variant: result.store_prefix.clone(),
            input_key: input_key.to_string(),
            result: "success".into(),
            class: None,
            message: None,
            kernel_release: result.kernel_release.clone(),
            build_key: result.build_key.clone(),
            toolchain: None,
            packages: vec![],
            modules: vec![],
            boot: None,
            durations: result.durations.clone(),
            built_at: crate::farm::now_rfc3339(),
        }
    }

    /// The record of a built and verified variant.
    pub(crate) fn success(
        sink: &BundleSink,
        result: &VariantResult,
        input_key: &str,
        build_key: &str,
        prepared: &crate::farm::Prepared,
        sandbox: &str,
        boot: Option<BootRecord>,
    ) -> BundleRecord {
        BundleRecord {
            build_key: Some(build_key.to_string()),
            toolchain: Some(prepared.toolchain(sandbox)),
            packages: prepared.input_packages(),
            modules: result
                .modules
                .iter()
                .map(|m| BundleModule {
                    file_name: m.file_name.clone(),
                    relative_path: m.relative_path.clone(),
                    destination: m.destination.clone(),
                    sha256: m.sha256.clone(),
                    size: m.size,
                })
                .collect(),
            boot,
            ..BundleRecord::base(sink, result, input_key)
        }
    }

    /// The record of a variant whose kernel the project's requirements rule out.
    pub(crate) fn excluded(
        sink: &BundleSink,
        result: &VariantResult,
        input_key: &str,
        reason: &str,
    ) -> BundleRecord {
        BundleRecord {
            result: "excluded".into(),
            message: Some(reason.to_string()),
            ..BundleRecord::base(sink, result, input_key)
        }
    }

    /// The record of a variant that failed on the worker.
    pub(crate) fn failure(
        sink: &BundleSink,
        result: &VariantResult,
        input_key: &str,
        class: FailureClass,
        message: &str,
    ) -> BundleRecord {
        BundleRecord {
            result: "failed".into(),
            class: Some(class),
            message: Some(message.to_string()),
            ..BundleRecord::base(sink, result, input_key)
        }
    }
}

/// Writes a bundle: modules and logs first, the record last, no path through a link.
pub fn write_bundle(
    sink: &BundleSink,
    record: &BundleRecord,
    modules: &[BuiltModule],
    firmware: &[(&FirmwareFile, &[u8])],
    log: &Path,
    boot_log: Option<&Path>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&sink.dir)?;
    let dir = create_dirs_beneath(&sink.dir, &bundle_dir(sink.shard, &record.variant))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let copy = |from: &Path, name: &str| -> std::io::Result<()> {
        let mut src = std::fs::File::open(from)?;
        let mut out = create_nofollow(&dir.join(name))?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()
    };
    for m in modules {
        copy(&m.path, &m.file_name)?;
    }
    // The project's firmware, as the planner hashed it: the publisher takes it from here.
    for (f, bytes) in firmware {
        let mut out = create_nofollow(&dir.join(&f.file_name))?;
        std::io::Write::write_all(&mut out, bytes)?;
        out.sync_all()?;
    }
    if log.exists() {
        copy(log, BUILD_LOG)?;
    }
    if let Some(boot_log) = boot_log {
        copy(boot_log, BOOT_LOG)?;
    }
    let mut out = create_nofollow(&dir.join(RECORD_FILE))?;
    std::io::Write::write_all(
        &mut out,
        &serde_json::to_vec_pretty(record).expect("a record serialises"),
    )?;
    out.sync_all()?;
    Ok(dir)
}

/// A bundle that passed every check: its modules and logs copied into a private directory.
#[derive(Debug)]
pub struct VerifiedBundle {
    pub record: BundleRecord,
    /// Verified copies; `modinfo` re-read from them.
    pub modules: Vec<BuiltModule>,
    pub log: Option<PathBuf>,
    pub boot_log: Option<PathBuf>,
    /// Verified copies of the project's firmware files (the plan's digests).
    pub firmware: Vec<(FirmwareFile, PathBuf)>,
    pub toolchain: Toolchain,
    pub build_key: String,
    pub kernel_release: String,
    _staging: PrivateDir,
}

/// What the publisher found for one copy of a variant.
#[derive(Debug)]
pub enum BundleVerdict {
    /// No bundle: the shard did not run, or did not get to this variant.
    Missing,
    /// The worker reports a failure (its class and message, as untrusted text made printable).
    Failed {
        class: FailureClass,
        message: String,
        log: Option<PathBuf>,
        _staging: Option<PrivateDir>,
    },
    /// The worker found the kernel ruled out by the project's requirements (the reason made printable).
    Excluded {
        reason: String,
        log: Option<PathBuf>,
        _staging: Option<PrivateDir>,
    },
    /// The bundle is not what the plan asked for, or not a bundle at all.
    Refused(String),
    Verified(Box<VerifiedBundle>),
}

/// Checks the bundle of `variant` from `shard` under `root` against the plan (see the module documentation).
/// `expected` is the project's list of expected modules (empty: any, at least one). Copies go under
/// `staging_parent`.
pub fn verify_bundle(
    root: &Path,
    plan: &Plan,
    variant: &PlannedVariant,
    shard: usize,
    expected: &[String],
    staging_parent: &Path,
    limits: &OutputLimits,
) -> BundleVerdict {
    let rel = bundle_dir(shard, &variant.id);
    let bundles = match Beneath::open(root) {
        Ok(b) => b.refusing_hard_links(),
        Err(UntrustedError::Io { .. }) if !root.exists() => return BundleVerdict::Missing,
        Err(e) => return BundleVerdict::Refused(e.to_string()),
    };
    let dir = match bundles.open_dir(&rel) {
        Ok(d) => d,
        Err(UntrustedError::Missing { .. }) => return BundleVerdict::Missing,
        Err(e) => return BundleVerdict::Refused(e.to_string()),
    };
    match check(&dir, plan, variant, shard, expected, staging_parent, limits) {
        Ok(v) => v,
        Err(why) => BundleVerdict::Refused(why),
    }
}

fn check(
    dir: &Beneath,
    plan: &Plan,
    variant: &PlannedVariant,
    shard: usize,
    expected: &[String],
    staging_parent: &Path,
    limits: &OutputLimits,
) -> Result<BundleVerdict, String> {
    let entries = dir.entries().map_err(|e| e.to_string())?;
    if !entries.iter().any(|(n, _)| n == RECORD_FILE) {
        // The record is written last: without it the bundle is incomplete (a worker killed mid-write).
        return Ok(BundleVerdict::Missing);
    }
    for (name, kind) in &entries {
        if *kind != EntryKind::File {
            return Err(format!(
                "`{}` in the bundle is a {}, not a regular file",
                printable(name),
                match kind {
                    EntryKind::Dir => "directory",
                    EntryKind::Symlink => "symbolic link",
                    EntryKind::Special(k) => k,
                    _ => "missing file",
                }
            ));
        }
    }
    let bytes = dir
        .read(Path::new(RECORD_FILE), MAX_RECORD_BYTES)
        .map_err(|e| e.to_string())?;
    let record: BundleRecord = serde_json::from_slice(&bytes)
        .map_err(|e| format!("record.json is not a bundle record: {e}"))?;
    if record.schema != BUNDLE_SCHEMA {
        return Err(format!(
            "record.json has schema `{}`, expected `{BUNDLE_SCHEMA}`",
            printable(&record.schema)
        ));
    }
    let mismatch = |what: &str, got: &str, want: &str| {
        format!(
            "the record's {what} is `{}`, the plan's `{}`",
            printable(got),
            printable(want)
        )
    };
    if record.plan != plan.id {
        return Err(mismatch("plan", &record.plan, &plan.id));
    }
    if record.variant != variant.id {
        return Err(mismatch("variant", &record.variant, &variant.id));
    }
    if record.shard != shard || !variant.shards.contains(&shard) {
        return Err(mismatch(
            "shard",
            &record.shard.to_string(),
            &shard.to_string(),
        ));
    }
    if record.input_key != variant.input_key {
        return Err(mismatch("input key", &record.input_key, &variant.input_key));
    }

    let staging = PrivateDir::create(staging_parent).map_err(|e| e.to_string())?;
    let take_log = |name: &str| -> Result<Option<PathBuf>, String> {
        if !entries.iter().any(|(n, _)| n == name) {
            return Ok(None);
        }
        let dest = staging.path().join(name);
        dir.stage(Path::new(name), &dest, MAX_BUNDLE_LOG_BYTES)
            .map_err(|e| e.to_string())?;
        Ok(Some(dest))
    };
    let log = take_log(BUILD_LOG)?;

    if record.result != "success" {
        let extra: Vec<&String> = entries
            .iter()
            .map(|(n, _)| n)
            .filter(|n| *n != RECORD_FILE && *n != BUILD_LOG)
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "a failed variant's bundle holds more than its record and log: {}",
                printable(&format!("{extra:?}"))
            ));
        }
        if record.result == "excluded" {
            return Ok(BundleVerdict::Excluded {
                reason: printable(record.message.as_deref().unwrap_or("no reason given"))
                    .into_owned(),
                log,
                _staging: Some(staging),
            });
        }
        return Ok(BundleVerdict::Failed {
            class: record.class.unwrap_or(FailureClass::Internal),
            message: printable(record.message.as_deref().unwrap_or("no message")).into_owned(),
            log,
            _staging: Some(staging),
        });
    }

    // Exactly the files the record names and the plan's firmware, nothing else.
    let planned_driver = plan.drivers.iter().find(|d| d.name == variant.driver);
    let planned_firmware: &[FirmwareFile] = planned_driver
        .map(|d| d.delivery.firmware.as_slice())
        .unwrap_or_default();
    let mut allowed: Vec<&str> = vec![RECORD_FILE, BUILD_LOG, BOOT_LOG];
    for m in &record.modules {
        allowed.push(&m.file_name);
    }
    for f in planned_firmware {
        allowed.push(&f.file_name);
    }
    for (name, _) in &entries {
        if !allowed.contains(&name.as_str()) {
            return Err(format!(
                "the bundle holds `{}`, which its record does not name",
                printable(name)
            ));
        }
    }
    if record.modules.is_empty() {
        return Err("the record lists no module".into());
    }
    if record.modules.len() > limits.modules {
        return Err(format!(
            "the record lists {} modules, more than the limit of {}",
            record.modules.len(),
            limits.modules
        ));
    }
    if !expected.is_empty() {
        let mut got: Vec<&str> = record
            .modules
            .iter()
            .map(|m| m.relative_path.as_str())
            .collect();
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        got.sort();
        want.sort();
        if got != want {
            return Err(format!(
                "the bundle's modules are {}, the project expects {}",
                printable(&got.join(", ")),
                printable(&want.join(", "))
            ));
        }
    }
    // The planner's reading of the header tree where it had one (prefetch), else the list's release.
    let release = variant
        .kernel_release
        .clone()
        .unwrap_or_else(|| variant.entry.kversion.clone());
    if record.kernel_release.as_deref() != Some(release.as_str()) {
        return Err(mismatch(
            "kernel release",
            record.kernel_release.as_deref().unwrap_or(""),
            &release,
        ));
    }
    let toolchain = record
        .toolchain
        .clone()
        .ok_or("the record names no toolchain")?;
    let build_key = crate::keys::build_key(&variant.input_key, &toolchain.builder_identity);
    if record.build_key.as_deref() != Some(build_key.as_str()) {
        return Err(mismatch(
            "build key",
            record.build_key.as_deref().unwrap_or(""),
            &build_key,
        ));
    }

    let mut modules = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in &record.modules {
        check_path_component("module file name", &m.file_name).map_err(|e| e.to_string())?;
        if !m.file_name.ends_with(".ko") || !seen.insert(m.file_name.clone()) {
            return Err(format!(
                "module file name `{}` is not a unique `.ko` name",
                printable(&m.file_name)
            ));
        }
        // Where in the project the module was built: a plain relative path ending in its file name, so a
        // record cannot publish a path of its choosing.
        kmf_types::names::check_relative_path("module path", &m.relative_path)
            .map_err(|e| e.to_string())?;
        if m.relative_path.rsplit('/').next() != Some(m.file_name.as_str()) {
            return Err(format!(
                "module path `{}` does not end in its file name `{}`",
                printable(&m.relative_path),
                printable(&m.file_name)
            ));
        }
        let dest = staging.path().join(&m.file_name);
        let (sha256, size) = dir
            .stage(Path::new(&m.file_name), &dest, limits.module_bytes)
            .map_err(|e| e.to_string())?;
        if sha256 != m.sha256 || size != m.size {
            return Err(format!(
                "{}: the file has SHA256 {sha256} ({size} bytes), the record says {} ({} bytes)",
                printable(&m.file_name),
                printable(&m.sha256),
                m.size
            ));
        }
        // Where hosts install the module: what the project says, not what a worker may wish. Only a
        // DKMS package's destinations come from the build (its dkms.conf, evaluated per kernel).
        let dkms = planned_driver.is_some_and(|d| d.dkms);
        let fixed = planned_driver
            .and_then(|d| d.install_dest.as_ref())
            .map(|dir| format!("{}/{}", dir.trim_matches('/'), m.file_name));
        let acceptable = match (&m.destination, &fixed) {
            (got, Some(_)) => got == &fixed,
            (Some(d), None) => dkms && kmf_types::published::valid_destination(d),
            (None, None) => !dkms,
        };
        if !acceptable {
            return Err(format!(
                "{}: destination {} is not the one the project gives ({})",
                printable(&m.file_name),
                printable(&format!("{:?}", m.destination)),
                printable(&match &fixed {
                    Some(f) => f.clone(),
                    None if dkms => "updates/… or extra/… from dkms.conf".into(),
                    None => "none".into(),
                })
            ));
        }
        let modinfo = kmf_verify::verify_module(&dest, variant.entry.architecture, &release)
            .map_err(|e| format!("{}: {e}", printable(&m.file_name)))?;
        modules.push(BuiltModule {
            file_name: m.file_name.clone(),
            relative_path: m.relative_path.clone(),
            path: dest,
            sha256,
            size,
            modinfo,
            destination: m.destination.clone(),
        });
    }
    // A boot log belongs to a boot record and the other way round: one without the other is not what a
    // worker writes.
    let has_boot_log = entries.iter().any(|(n, _)| n == BOOT_LOG);
    match (has_boot_log, &record.boot) {
        (true, None) => {
            return Err("the bundle holds boot.log, but its record names no boot".into())
        }
        (false, Some(_)) => {
            return Err("the record names a boot, but the bundle holds no boot.log".into())
        }
        _ => {}
    }
    let boot_log = take_log(BOOT_LOG)?;
    let mut firmware = Vec::new();
    for f in planned_firmware {
        let dest = staging.path().join(&f.file_name);
        let (sha256, size) = dir
            .stage(Path::new(&f.file_name), &dest, f.size)
            .map_err(|e| format!("firmware {}: {e}", printable(&f.name)))?;
        if sha256 != f.sha256 || size != f.size {
            return Err(format!(
                "firmware {}: the file has SHA256 {sha256} ({size} bytes), the plan says {} ({} bytes)",
                printable(&f.name),
                f.sha256,
                f.size
            ));
        }
        firmware.push((f.clone(), dest));
    }
    Ok(BundleVerdict::Verified(Box::new(VerifiedBundle {
        build_key,
        kernel_release: release,
        toolchain,
        modules,
        log,
        boot_log,
        firmware,
        record,
        _staging: staging,
    })))
}
