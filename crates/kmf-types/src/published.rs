//! What a store holds for consumers, owned here: a published variant's record ([`PublishedVariant`],
//! `metadata.json`), a driver's index of published versions ([`DriverIndex`], `index.json`), and the keys
//! they and the variants' files sit under. The publisher writes these types and every reader (the farm's
//! up-to-date check, `boot-test`, `install`, `store gc`) reads them, so writer and readers cannot drift
//! apart: a field added to the record is written and read in one shape.
//!
//! ```text
//! <driver>/index.json                          the driver's published versions and their matrices
//! <driver>/<MAJOR.MINOR.0>/matrix.json         a version's published matrix: the variants consumers get
//! <driver>/<output>/metadata.json              written last, replaced atomically: the variant's record
//! <driver>/<output>/<artifacts>/hello.ko       immutable once written; <artifacts> is the build key's
//! <driver>/<output>/<artifacts>/SHA256SUMS     first 16 hex digits, so a rebuild never overwrites what
//! <driver>/<output>/<artifacts>/provenance.intoto.json   the current metadata.json names
//! <driver>/<output>/<artifacts>/build.log, boot.log
//! ```
//!
//! Republishing a variant (new builder, new signing key, `--rebuild`) writes a new artifacts directory and
//! only then the new `metadata.json`: a reader sees the old record with the old files or the new record
//! with the new files, never one with the other's, and a publish killed half-way leaves the old record
//! intact. `store gc` removes artifacts directories no record names. Records written before this layout
//! have no `artifacts` field: their files sit directly in the variant's prefix.
//!
//! Stores outlive the program that wrote them, so every field added to the record after its first release
//! reads with a default: an older record parses, with the newer parts empty or absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{output_version, MatrixEntry};

/// The record's file name in a variant's prefix.
pub const METADATA: &str = "metadata.json";

/// The driver index's file name in a driver's prefix.
pub const DRIVER_INDEX: &str = "index.json";

/// The published matrix's file name in a driver version's prefix.
pub const MATRIX: &str = "matrix.json";

/// The key of a driver's index (`<driver>/index.json`): which driver versions have a published matrix, for
/// consumers such as `kmodfarm install` that cannot list the store (http).
pub fn driver_index_key(driver: &str) -> String {
    format!("{driver}/{DRIVER_INDEX}")
}

/// The key of a driver version's published matrix (`<driver>/<MAJOR.MINOR.0>/matrix.json`): one per store
/// prefix version, so a patch release diffs against its minor release's matrix (and rebuilds everything),
/// while a new minor release starts its own.
pub fn matrix_key(driver: &str, driver_version: &str) -> String {
    format!("{driver}/{}/{MATRIX}", output_version(driver_version))
}

/// A variant's prefix (`<driver>/<output>`, no trailing slash): where its record and artifacts are.
pub fn variant_prefix(driver: &str, output: &str) -> String {
    format!("{driver}/{output}")
}

/// The key of the record of the variant published under `prefix` (`<driver>/<output>`).
pub fn metadata_key(prefix: &str) -> String {
    format!("{prefix}/{METADATA}")
}

/// The file name of a variant's exclusion record.
pub const EXCLUDED: &str = "excluded.json";

/// The key of the exclusion record of the variant under `prefix` (`<driver>/<output>`).
pub fn excluded_key(prefix: &str) -> String {
    format!("{prefix}/{EXCLUDED}")
}

/// `<driver>/<output>/excluded.json`: the project's requirements (`BUILD_EXCLUSIVE_*` in `dkms.conf`,
/// `requires_config`, `arches`, `kernel_min`/`kernel_max` in `kmodfarm.toml`) rule the kernel out. Written
/// by the publisher so that later runs with the same inputs skip the variant without building it; a new
/// input key (another driver source, another header package) decides again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludedVariant {
    pub schema: u32,
    #[serde(default)]
    pub kmodfarm_version: String,
    pub driver: String,
    pub driver_version: String,
    pub variant: MatrixEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// The inputs the decision was made for.
    pub input_key: String,
    /// Which requirement rules the kernel out, in a sentence.
    pub reason: String,
    /// RFC 3339.
    #[serde(default)]
    pub decided_at: String,
}

impl ExcludedVariant {
    pub fn parse(bytes: &[u8]) -> Result<ExcludedVariant, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The prefix of the variant whose record `key` is (`<prefix>/metadata.json`), or `None` when it is no
/// record.
pub fn parse_metadata_key(key: &str) -> Option<&str> {
    key.strip_suffix(METADATA)?.strip_suffix('/')
}

/// Whether `key` is a variant's record (`<prefix>/metadata.json`).
pub fn is_metadata_key(key: &str) -> bool {
    parse_metadata_key(key).is_some()
}

/// The artifacts directory of a build: the first 16 hex digits of its build key, slash-terminated.
pub fn artifacts_dir(build_key: &str) -> String {
    let short: String = build_key.chars().take(16).collect();
    format!("{short}/")
}

/// The driver whose index `key` is (`<driver>/index.json`), or `None` when it is no driver index.
pub fn parse_driver_index_key(key: &str) -> Option<&str> {
    match key.split('/').collect::<Vec<_>>()[..] {
        [driver, DRIVER_INDEX] => Some(driver),
        _ => None,
    }
}

/// Whether `key` is a driver's index (`<driver>/index.json`).
pub fn is_driver_index_key(key: &str) -> bool {
    parse_driver_index_key(key).is_some()
}

/// The parts of a published matrix's key (`<driver>/<version>/matrix.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixKey<'a> {
    pub driver: &'a str,
    /// The store prefix version (`MAJOR.MINOR.0`).
    pub version: &'a str,
}

/// The driver and version whose published matrix `key` is, or `None` when it is no matrix.
pub fn parse_matrix_key(key: &str) -> Option<MatrixKey<'_>> {
    match key.split('/').collect::<Vec<_>>()[..] {
        [driver, version, MATRIX] => Some(MatrixKey { driver, version }),
        _ => None,
    }
}

/// Whether `key` is a published matrix (`<driver>/<version>/matrix.json`).
pub fn is_matrix_key(key: &str) -> bool {
    parse_matrix_key(key).is_some()
}

/// Every way `key` splits into a slash-terminated prefix and the rest, shortest prefix first: the
/// candidates for the variant prefix (`<driver>/<output>/`) a key lies in, for a reader that knows the
/// live prefixes but not how deep outputs are.
pub fn prefix_splits(key: &str) -> impl Iterator<Item = (&str, &str)> {
    key.match_indices('/')
        .map(move |(i, _)| (&key[..=i], &key[i + 1..]))
}

/// Whether the object at `rest` (its key relative to a variant's prefix) is part of the variant as its
/// record publishes it: the record itself and the files of the artifacts directory it names. With no
/// artifacts directory (a record older than that layout, or one that cannot be read) everything under the
/// prefix is, since nothing may be guessed away.
pub fn belongs_to_record(rest: &str, artifacts: Option<&str>) -> bool {
    match artifacts {
        None => true,
        Some(dir) => rest == METADATA || rest.starts_with(dir),
    }
}

/// A variant's published record: `<driver>/<output>/metadata.json`, written last by the publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedVariant {
    /// The record's format version (`kmf_report::RESULTS_SCHEMA` when written).
    #[serde(default)]
    pub schema: u32,
    /// The directory (relative to the variant's prefix, `/`-terminated) holding its modules, logs,
    /// `SHA256SUMS` and provenance. Absent in records written before that layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<String>,
    #[serde(default)]
    pub kmodfarm_version: String,
    pub driver: String,
    pub driver_version: String,
    /// `success`: only built, verified variants are published.
    #[serde(default)]
    pub result: String,
    pub variant: MatrixEntry,
    pub kernel_release: String,
    #[serde(default)]
    pub modules: Vec<PublishedModule>,
    pub toolchain: Toolchain,
    #[serde(default)]
    pub inputs: Inputs,
    /// The boot test the modules passed before publishing, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
    /// The modules' signatures, when they were signed (`--sign-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRecord>,
    /// What decides whether the variant must be rebuilt: a new build key means new inputs.
    pub build_key: String,
    /// The part of the build key known before any download (source, driver version, header package
    /// identities, make arguments, recipe); see `kmf_farm::keys`.
    pub input_key: String,
    /// The stages this record's writer timed itself: the whole build when it built the variant, the
    /// verification, signing, boot and publication when it published a worker's bundle (the worker's own
    /// timings are then in [`PublishedVariant::worker_claims`]).
    #[serde(default)]
    pub durations: Durations,
    /// RFC 3339: when the variant was built, or, published from a worker's bundle, when the publisher
    /// verified it.
    #[serde(default)]
    pub built_at: String,
    /// The build log's file name in the artifacts directory.
    #[serde(default)]
    pub log: String,
    /// What a host needs to load the modules besides the files (`[install]` in `kmodfarm.toml`).
    #[serde(default, skip_serializing_if = "Delivery::is_empty")]
    pub delivery: Delivery,
    /// Published from a worker's bundle: what the worker said that nothing could check. Every other field
    /// comes from the plan or from what the publisher verified itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_claims: Option<WorkerClaims>,
}

/// The unchecked part of a worker's record, kept apart so that nothing reads it as established: which
/// sandbox it built in, its own timings and clock, and a boot test it says it ran (a boot counts only when
/// the publisher ran it, [`PublishedVariant::boot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerClaims {
    /// The shard whose bundle was published.
    pub shard: usize,
    #[serde(default)]
    pub kmodfarm_version: String,
    #[serde(default)]
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
    #[serde(default)]
    pub durations: Durations,
    #[serde(default)]
    pub built_at: String,
}

/// How a host installs and loads a variant's modules (`kmodfarm install`): from the project's
/// `[install]` section; each module's destination is in [`PublishedModule::destination`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    /// Module names in the order they load; modules not named load after them, in record order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_order: Vec<String>,
    /// Modules (in-tree ones the driver replaces) to unload before loading the driver's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unload_first: Vec<String>,
    /// The content of `/etc/modprobe.d/kmodfarm-<driver>.conf`: `options` lines for the modules' parameters,
    /// then the project's own modprobe configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modprobe_conf: Option<String>,
    /// Firmware files published beside the modules, installed under `/lib/firmware/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub firmware: Vec<FirmwareFile>,
}

impl Delivery {
    pub fn is_empty(&self) -> bool {
        *self == Delivery::default()
    }
}

/// A firmware file of the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareFile {
    /// Path under `/lib/firmware/` (`kmf/pair.bin`): names checked like module destinations.
    pub name: String,
    /// The file in the variant's artifacts directory (`firmware-<n>.bin`, flat).
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
}

/// A firmware path under `/lib/firmware/`: `/`-separated plain names, nothing that could leave it.
pub fn valid_firmware_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|p| {
            crate::names::check_path_component("firmware file", p).is_ok() && !p.starts_with('.')
        })
}

/// A module name as the kernel knows it (`modprobe` takes it): letters, digits, `_` and `-`.
pub fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 56
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A published module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedModule {
    pub file_name: String,
    /// Path relative to the project source root.
    #[serde(default)]
    pub relative_path: String,
    pub sha256: String,
    /// Always written; a record without it is still read (its modules are then checked by SHA256 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default)]
    pub modinfo: ModuleInfo,
    /// Where a host installs the module, relative to `/lib/modules/<release>/`
    /// (`updates/dkms/hello.ko`, from `dkms.conf`'s `DEST_MODULE_LOCATION`/`DEST_MODULE_NAME`, or
    /// `[install] dest` in `kmodfarm.toml`). Absent: [`DEFAULT_INSTALL_DIR`]`/<driver>/<file_name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Where `kmodfarm install` puts a module whose record names no destination, under
/// `/lib/modules/<release>/` (followed by `<driver>/<file_name>`).
pub const DEFAULT_INSTALL_DIR: &str = "extra";

/// A module destination: `updates/` or `extra/` then plain names, ending in `.ko`. Nothing that could leave
/// the kernel's module tree, and nothing under `kernel/`: a driver's module never replaces a distribution's
/// in-tree file (it takes precedence through depmod's search order, `updates` first, as DKMS arranges it on
/// Debian, Ubuntu, Fedora and SUSE).
pub fn valid_destination(dest: &str) -> bool {
    let mut parts = dest.split('/');
    let top_ok = matches!(parts.next(), Some("updates" | "extra"));
    let rest: Vec<&str> = parts.collect();
    top_ok
        && rest
            .last()
            .is_some_and(|f| f.ends_with(".ko") && f.len() > 3)
        && rest
            .iter()
            .all(|p| crate::names::check_path_component("module destination", p).is_ok())
}

/// The file name under `/etc/modprobe.d/` a driver's modprobe configuration is installed as: prefixed, so
/// that it never replaces a distribution's or another package's file.
pub fn modprobe_conf_file(driver: &str) -> String {
    format!("kmodfarm-{driver}.conf")
}

/// Why a modprobe configuration is refused: only `options`, `alias`, `softdep` and `blacklist` lines (and
/// comments) are installed on hosts. `install` and `remove` run shell commands as root whenever a module
/// is loaded or removed, `include` reads other files: a store or a project cannot ask for either.
pub fn check_modprobe_conf(text: &str) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let first = words.next();
        let ok = match command {
            "options" | "blacklist" | "softdep" => first.is_some_and(valid_module_name),
            "alias" => first.is_some() && words.next().is_some_and(valid_module_name),
            _ => false,
        };
        if !ok || line.contains(['\0', '\r']) || line.ends_with('\\') {
            return Err(format!(
                "line {}: `{}`: only options, alias, softdep and blacklist lines naming modules are \
                 installed",
                n + 1,
                crate::names::printable(line)
            ));
        }
    }
    Ok(())
}

/// What a module's `.modinfo` (and its appended signature) says, as `modinfo` shows it. Every part reads
/// with a default, since a record may carry less of it than `kmf_verify` reads today.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleInfo {
    /// The module name: `.modinfo`'s `name` (kbuild writes it since Linux 5.x), else the file stem with
    /// `-` turned into `_` as the kernel does.
    pub name: String,
    pub vermagic: String,
    /// Modules this one needs loaded first.
    pub depends: Vec<String>,
    pub license: Option<String>,
    pub version: Option<String>,
    pub srcversion: Option<String>,
    /// Common name of the signing key's issuer, when a signature is appended (as `modinfo` shows it).
    pub signer: Option<String>,
    /// ELF `e_machine` (62 for x86_64, 183 for aarch64).
    pub elf_machine: u16,
    /// Every `.modinfo` pair, in file order (`alias`, `parm` and the like repeat).
    pub fields: Vec<(String, String)>,
}

/// The builder a variant was built in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    pub builder: String,
    /// The builder id plus a digest of every package installed in its root filesystem.
    pub builder_identity: String,
    #[serde(default)]
    pub suite: String,
    pub cc_version_text: Option<String>,
    #[serde(default)]
    pub sandbox: String,
}

/// What a variant was built from besides the builder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub source_sha256: String,
    pub packages: Vec<InputPackage>,
    /// The git commit the source tree was checked out from, when the driver came from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitOrigin>,
}

/// Where a driver's source tree came from when it came from git: the repository, the ref as asked for,
/// the commit it resolved to when planned, and the project's subdirectory. Credentials never appear in
/// `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitOrigin {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdirectory: Option<String>,
    /// Set when the upstream could not be reached and the ref was taken from the cached mirror: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_unreachable: Option<String>,
}

impl GitOrigin {
    /// `git+<url>@<commit>[#subdirectory=<dir>]`: the exact source, in the form kmodfarm accepts.
    pub fn pinned_spec(&self) -> String {
        let mut s = format!("git+{}@{}", self.url, self.commit);
        if let Some(d) = &self.subdirectory {
            s.push_str("#subdirectory=");
            s.push_str(d);
        }
        s
    }
}

/// A header package a variant was built against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPackage {
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    pub url: Option<String>,
    /// How the package was proven before it was built from; absent in records written before proofs were
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<crate::InputProof>,
}

impl InputPackage {
    /// One line when the package was not fully proven (nothing proved it, or its index was accepted past
    /// its `Valid-Until`); `None` when proven, or when the record predates proofs.
    pub fn proof_warning(&self) -> Option<String> {
        let proof = self.proof.as_ref()?;
        if !proof.is_verified() {
            return Some(format!("{}: {}", self.file_name, proof.summary()));
        }
        proof.expired_since().map(|since| {
            format!(
                "{}: proven by an index expired since {since}",
                self.file_name
            )
        })
    }
}

/// A passed boot test, as recorded in `metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What metadata.json records about a variant's signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    /// `CONFIG_MODULE_SIG_HASH` of the kernel (`sha256`, `sha512`).
    pub hash: String,
    pub signer: String,
    pub cert_sha256: String,
}

/// How long each stage of a variant took, in seconds. `total_secs` is the sum of the stages
/// ([`Durations::close`]); a failed variant keeps the stages it went through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub resolve_secs: f64,
    pub fetch_secs: f64,
    pub extract_secs: f64,
    pub toolchain_secs: f64,
    pub build_secs: f64,
    /// Booting the target kernel and loading the modules (`--boot-test`); absent in records written before
    /// boot tests.
    #[serde(default)]
    pub boot_secs: f64,
    /// Everything after the build and boot: writing the bundle, re-verifying it, signing, writing the store.
    pub publish_secs: f64,
    pub total_secs: f64,
}

impl Durations {
    /// The stages before publishing, summed.
    pub fn before_publish(&self) -> f64 {
        self.resolve_secs
            + self.fetch_secs
            + self.extract_secs
            + self.toolchain_secs
            + self.build_secs
            + self.boot_secs
    }

    /// Closes the account of a variant that took `elapsed` seconds: what no earlier stage timed is
    /// publishing's (the bookkeeping between stages is a few milliseconds), and the total is the stages'
    /// sum, so that every column of a report adds up.
    pub fn close(&mut self, elapsed: f64) {
        let untimed = elapsed - self.before_publish() - self.publish_secs;
        if untimed > 0.0 {
            self.publish_secs += untimed;
        }
        self.total_secs = self.before_publish() + self.publish_secs;
    }

    /// The stages of `self` followed by those of `later` (a variant built, then published by the same run).
    pub fn then(&self, later: &Durations) -> Durations {
        let mut d = Durations {
            resolve_secs: self.resolve_secs + later.resolve_secs,
            fetch_secs: self.fetch_secs + later.fetch_secs,
            extract_secs: self.extract_secs + later.extract_secs,
            toolchain_secs: self.toolchain_secs + later.toolchain_secs,
            build_secs: self.build_secs + later.build_secs,
            boot_secs: self.boot_secs + later.boot_secs,
            publish_secs: self.publish_secs + later.publish_secs,
            total_secs: 0.0,
        };
        d.total_secs = d.before_publish() + d.publish_secs;
        d
    }
}

/// Why a published record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("bad artifacts directory {0:?}")]
    BadArtifactsDir(String),
    #[error("bad module file name {0:?}")]
    BadModuleFileName(String),
    #[error(
        "bad module destination {0:?} (kernel/, updates/ or extra/ then names, ending in .ko)"
    )]
    BadDestination(String),
    #[error("bad delivery: {0}")]
    BadDelivery(String),
}

impl PublishedVariant {
    /// Parses a record, refusing artifact directories or file names that could leave the variant's
    /// prefix (a store is not trusted more than any other input).
    pub fn parse(bytes: &[u8]) -> Result<PublishedVariant, RecordError> {
        let v: PublishedVariant = serde_json::from_slice(bytes)?;
        if let Some(dir) = &v.artifacts {
            let inner = dir.strip_suffix('/').unwrap_or("");
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(RecordError::BadArtifactsDir(dir.clone()));
            }
        }
        for m in &v.modules {
            let f = &m.file_name;
            if f.is_empty() || f.contains('/') || f.starts_with('.') || !f.ends_with(".ko") {
                return Err(RecordError::BadModuleFileName(f.clone()));
            }
            if let Some(dest) = &m.destination {
                if !valid_destination(dest) {
                    return Err(RecordError::BadDestination(dest.clone()));
                }
            }
        }
        let d = &v.delivery;
        if let Some(conf) = &d.modprobe_conf {
            check_modprobe_conf(conf).map_err(RecordError::BadDelivery)?;
        }
        for m in d.load_order.iter().chain(&d.unload_first) {
            if !valid_module_name(m) {
                return Err(RecordError::BadDelivery(format!("module name {m:?}")));
            }
        }
        for f in &d.firmware {
            let flat = f.file_name.starts_with("firmware-")
                && !f.file_name.contains('/')
                && !f.file_name.contains("..");
            if !valid_firmware_name(&f.name) || !flat || f.sha256.len() != 64 {
                return Err(RecordError::BadDelivery(format!(
                    "firmware {:?} ({:?})",
                    f.name, f.file_name
                )));
            }
        }
        Ok(v)
    }

    /// The store key of `file` (a module, `SHA256SUMS`, a log) of this variant, published under
    /// `prefix` (`<driver>/<output>`).
    pub fn object_key(&self, prefix: &str, file: &str) -> String {
        match &self.artifacts {
            Some(dir) => format!("{prefix}/{dir}{file}"),
            None => format!("{prefix}/{file}"),
        }
    }
}

/// `<driver>/index.json`: `{"driver": .., "versions": {"0.1.0": {"driver_version": "0.1.1", "matrix": ..}}}`.
/// Read leniently, as consumers always have: a missing part reads as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriverIndex {
    pub driver: String,
    /// By store prefix version (`MAJOR.MINOR.0`).
    pub versions: BTreeMap<String, IndexedVersion>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexedVersion {
    /// The newest driver version published under this prefix version.
    pub driver_version: String,
    /// Store key of the published matrix.
    pub matrix: String,
}

impl DriverIndex {
    /// Records `driver_version`'s published matrix, under its store prefix version (a patch release
    /// replaces its minor release's entry).
    pub fn add(&mut self, driver_version: &str, matrix: &str) {
        self.versions.insert(
            output_version(driver_version),
            IndexedVersion {
                driver_version: driver_version.to_string(),
                matrix: matrix.to_string(),
            },
        );
    }

    /// (prefix version, matrix key) of every indexed version that names its matrix.
    pub fn matrices(&self) -> impl Iterator<Item = (&str, &str)> {
        self.versions
            .iter()
            .filter(|(_, v)| !v.matrix.is_empty())
            .map(|(version, v)| (version.as_str(), v.matrix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_out_of_the_in_tree_modules() {
        assert!(valid_destination("updates/dkms/kmf_core.ko"));
        assert!(valid_destination("extra/kmf/kmf_client.ko"));
        for bad in [
            "kernel/fs/ext4/ext4.ko",
            "updates/../kernel/x.ko",
            "updates//x.ko",
            "/updates/x.ko",
            "updates/x",
            "extra/.ko",
            "etc/x.ko",
        ] {
            assert!(!valid_destination(bad), "{bad}");
        }
    }

    #[test]
    fn modprobe_configurations_cannot_run_commands() {
        let ok = "# c\noptions kmf_client verbose=1\nblacklist kmf_legacy\n\
                  softdep kmf_client pre: kmf_core\nalias pci:v00008086d* kmf_core\n";
        assert_eq!(check_modprobe_conf(ok), Ok(()));
        for bad in [
            "install kmf_core /bin/sh -c 'touch /tmp/x'",
            "remove kmf_core /bin/true",
            "include /etc/passwd",
            "options",
            "options ../x a=1",
            "options kmf_core a=1 \\",
            "alias x",
        ] {
            let err = check_modprobe_conf(bad).unwrap_err();
            assert!(err.contains("line 1"), "{bad}: {err}");
        }
    }

    fn record(artifacts: &str, file: &str) -> String {
        format!(
            r#"{{"driver":"hello","driver_version":"0.1.0","kernel_release":"6.1.0-9-amd64",
            "build_key":"ab","input_key":"cd",
            "variant":{{"kversion":"6.1.0-9-amd64","distribution":"debian","architecture":"x86_64",
              "kernelurls":[],"output":"0.1.0/debian/x86_64/6.1.0-9-amd64","driverversion":"0.1.0"}},
            "toolchain":{{"builder":"b","builder_identity":"b@1","cc_version_text":null}},
            "modules":[{{"file_name":"{file}","sha256":"00","size":3}}]{artifacts}}}"#
        )
    }

    /// A record as the publisher writes it, every optional part present.
    fn complete() -> PublishedVariant {
        let variant: MatrixEntry = serde_json::from_value(serde_json::json!({
            "kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
            "kernelurls": ["https://deb.example/linux-headers-6.1.0-9-amd64_6.1.27-1_amd64.deb"],
            "output": "0.1.0/debian/x86_64/6.1.0-9-amd64", "driverversion": "0.1.0",
            "packageversion": "6.1.27-1", "suite": "bookworm",
        }))
        .unwrap();
        PublishedVariant {
            schema: 1,
            artifacts: Some(artifacts_dir("0123456789abcdef0123")),
            kmodfarm_version: "0.1.0".into(),
            driver: "hello".into(),
            driver_version: "0.1.0".into(),
            result: "success".into(),
            variant,
            kernel_release: "6.1.0-9-amd64".into(),
            modules: vec![PublishedModule {
                file_name: "hello.ko".into(),
                relative_path: "hello.ko".into(),
                sha256: "ab".repeat(32),
                size: Some(4096),
                modinfo: ModuleInfo {
                    name: "hello".into(),
                    vermagic: "6.1.0-9-amd64 SMP preempt mod_unload modversions ".into(),
                    depends: vec!["libcrc32c".into()],
                    license: Some("GPL".into()),
                    version: None,
                    srcversion: Some("0123456789ABCDEF012345".into()),
                    signer: Some("kmodfarm fleet signing key".into()),
                    elf_machine: 62,
                    fields: vec![
                        ("license".into(), "GPL".into()),
                        ("alias".into(), "a".into()),
                        ("alias".into(), "b".into()),
                    ],
                },
                destination: None,
            }],
            toolchain: Toolchain {
                builder: "debian-bookworm-gcc-12".into(),
                builder_identity: "debian-bookworm-gcc-12@0123".into(),
                suite: "bookworm".into(),
                cc_version_text: Some("gcc-12 (Debian 12.2.0-14) 12.2.0".into()),
                sandbox: "bubblewrap".into(),
            },
            inputs: Inputs {
                source_sha256: "cd".repeat(32),
                packages: vec![InputPackage {
                    proof: None,
                    file_name: "linux-headers-6.1.0-9-amd64_6.1.27-1_amd64.deb".into(),
                    sha256: "ef".repeat(32),
                    size: 1234,
                    url: Some("https://deb.example/h.deb".into()),
                }],
                git: Some(GitOrigin {
                    url: "https://git.example/acme/hello.git".into(),
                    reference: Some("v0.1.1".into()),
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    subdirectory: None,
                    upstream_unreachable: None,
                }),
            },
            boot: Some(BootRecord {
                accel: "kvm".into(),
                kernel_package: Some("linux-image-6.1.0-9-amd64_6.1.27-1_amd64.deb".into()),
                load_order: vec!["libcrc32c".into(), "hello".into()],
                taint: Some(12288),
                secs: 4.5,
                log: "boot.log".into(),
            }),
            signature: Some(SignatureRecord {
                hash: "sha256".into(),
                signer: "kmodfarm fleet signing key".into(),
                cert_sha256: "01".repeat(32),
            }),
            build_key: "0123456789abcdef0123".into(),
            input_key: "fedcba".into(),
            durations: Durations {
                resolve_secs: 0.25,
                build_secs: 12.5,
                boot_secs: 4.5,
                total_secs: 20.0,
                ..Durations::default()
            },
            built_at: "2026-11-29T12:00:00Z".into(),
            log: "build.log".into(),
            delivery: Delivery::default(),
            worker_claims: None,
        }
    }

    #[test]
    fn a_written_record_parses_back_equal() {
        let written = complete();
        // As `Farm::publish` writes it.
        let json = serde_json::to_vec_pretty(&written).unwrap();
        assert_eq!(PublishedVariant::parse(&json).unwrap(), written);

        let mut unsigned = written;
        unsigned.boot = None;
        unsigned.signature = None;
        let json = serde_json::to_vec_pretty(&unsigned).unwrap();
        assert_eq!(PublishedVariant::parse(&json).unwrap(), unsigned);
    }

    #[test]
    fn the_record_keeps_its_json_shape() {
        let value = serde_json::to_value(complete()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "schema",
            "artifacts",
            "kmodfarm_version",
            "driver",
            "driver_version",
            "result",
            "variant",
            "kernel_release",
            "modules",
            "toolchain",
            "inputs",
            "boot",
            "signature",
            "build_key",
            "input_key",
            "durations",
            "built_at",
            "log",
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["modules"][0]["modinfo"]["fields"][1][0], "alias");
        assert_eq!(value["modules"][0]["size"], 4096);
        assert_eq!(value["toolchain"]["sandbox"], "bubblewrap");
        assert_eq!(value["inputs"]["packages"][0]["size"], 1234);
        assert_eq!(value["durations"]["boot_secs"], 4.5);
        assert_eq!(value["signature"]["hash"], "sha256");

        // Absent boot test and signature are left out, not written as null.
        let mut plain = complete();
        plain.boot = None;
        plain.signature = None;
        let value = serde_json::to_value(plain).unwrap();
        assert!(value.get("boot").is_none() && value.get("signature").is_none());
    }

    #[test]
    fn an_old_record_without_the_newer_fields_parses() {
        // Before artifacts directories, signatures, boot tests (and `boot_secs`); with a module record
        // from before modinfo was published in full.
        let old = serde_json::json!({
            "schema": 1, "kmodfarm_version": "0.0.9",
            "driver": "hello", "driver_version": "0.1.0", "result": "success",
            "variant": {"kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
                "kernelurls": [], "output": "0.1.0/debian/x86_64/6.1.0-9-amd64", "driverversion": "0.1.0"},
            "kernel_release": "6.1.0-9-amd64",
            "modules": [{"file_name": "hello.ko", "relative_path": "hello.ko", "sha256": "00", "size": 3,
                "modinfo": {"name": "hello"}}],
            "toolchain": {"builder": "b", "builder_identity": "b@1", "suite": "bookworm",
                "cc_version_text": null, "sandbox": "bubblewrap"},
            "inputs": {"source_sha256": "11", "packages": []},
            "build_key": "ab", "input_key": "cd",
            "durations": {"resolve_secs": 0.0, "fetch_secs": 0.0, "extract_secs": 0.0,
                "toolchain_secs": 0.0, "build_secs": 1.0, "publish_secs": 0.0, "total_secs": 1.0},
            "built_at": "2026-11-24T00:00:00Z", "log": "build.log",
        });
        let v = PublishedVariant::parse(old.to_string().as_bytes()).unwrap();
        assert_eq!(v.artifacts, None);
        assert_eq!(v.boot, None);
        assert_eq!(v.signature, None);
        assert_eq!(v.durations.boot_secs, 0.0);
        assert_eq!(v.durations.build_secs, 1.0);
        assert_eq!(v.modules[0].modinfo.name, "hello");
        assert_eq!(v.modules[0].modinfo.vermagic, "");
        assert_eq!(
            v.object_key("hello/0.1.0/x", "hello.ko"),
            "hello/0.1.0/x/hello.ko"
        );

        // The least a reader has ever needed: what the first typed reader required.
        let minimal = PublishedVariant::parse(record("", "hello.ko").as_bytes()).unwrap();
        assert_eq!(minimal.schema, 0);
        assert_eq!(minimal.toolchain.suite, "");
        assert_eq!(minimal.inputs, Inputs::default());
        assert_eq!(minimal.modules[0].size, Some(3));
        assert_eq!(minimal.modules[0].modinfo, ModuleInfo::default());
    }

    #[test]
    fn keys_follow_the_record() {
        let v =
            PublishedVariant::parse(record(r#","artifacts":"0123abcd/""#, "hello.ko").as_bytes())
                .unwrap();
        assert_eq!(
            v.object_key("hello/0.1.0/x", "hello.ko"),
            "hello/0.1.0/x/0123abcd/hello.ko"
        );
        let old = PublishedVariant::parse(record("", "hello.ko").as_bytes()).unwrap();
        assert_eq!(
            old.object_key("hello/0.1.0/x", "hello.ko"),
            "hello/0.1.0/x/hello.ko"
        );
        assert_eq!(artifacts_dir("0123456789abcdef0123"), "0123456789abcdef/");
    }

    #[test]
    fn refuses_paths_out_of_the_prefix() {
        for (a, f) in [
            (r#","artifacts":"../x/""#, "hello.ko"),
            (r#","artifacts":"/""#, "hello.ko"),
            ("", "../hello.ko"),
            ("", "hello.txt"),
        ] {
            assert!(
                PublishedVariant::parse(record(a, f).as_bytes()).is_err(),
                "{a} {f}"
            );
        }
        assert!(matches!(
            PublishedVariant::parse(b"{"),
            Err(RecordError::Json(_))
        ));
        assert_eq!(
            PublishedVariant::parse(record("", ".hello.ko").as_bytes())
                .unwrap_err()
                .to_string(),
            r#"bad module file name ".hello.ko""#
        );
    }

    #[test]
    fn store_keys() {
        assert_eq!(driver_index_key("hello"), "hello/index.json");
        assert_eq!(matrix_key("hello", "0.1.1"), "hello/0.1.0/matrix.json");
        assert_eq!(matrix_key("hello", "0.1.0"), "hello/0.1.0/matrix.json");
        assert_eq!(
            variant_prefix("hello", "0.1.0/debian/x86_64/6.1.0-9-amd64"),
            "hello/0.1.0/debian/x86_64/6.1.0-9-amd64"
        );
        assert_eq!(
            metadata_key("hello/0.1.0/debian/x86_64/6.1.0-9-amd64"),
            "hello/0.1.0/debian/x86_64/6.1.0-9-amd64/metadata.json"
        );
    }

    #[test]
    fn classifies_keys() {
        assert_eq!(parse_driver_index_key("hello/index.json"), Some("hello"));
        assert!(is_driver_index_key("hello/index.json"));
        for not_an_index in [
            "index.json",
            "hello/0.1.0/index.json",
            "hello/index.json.tmp",
            "hello/matrix.json",
        ] {
            assert!(!is_driver_index_key(not_an_index), "{not_an_index}");
        }

        assert_eq!(
            parse_matrix_key("hello/0.1.0/matrix.json"),
            Some(MatrixKey {
                driver: "hello",
                version: "0.1.0"
            })
        );
        assert!(is_matrix_key(&matrix_key("hello", "0.1.1")));
        for not_a_matrix in [
            "matrix.json",
            "hello/matrix.json",
            "hello/0.1.0/debian/matrix.json",
            "hello/0.1.0/metadata.json",
            "hello/index.json",
        ] {
            assert!(!is_matrix_key(not_a_matrix), "{not_a_matrix}");
        }

        assert_eq!(
            prefix_splits("hello/0.1.0/x/ab/hello.ko").collect::<Vec<_>>(),
            [
                ("hello/", "0.1.0/x/ab/hello.ko"),
                ("hello/0.1.0/", "x/ab/hello.ko"),
                ("hello/0.1.0/x/", "ab/hello.ko"),
                ("hello/0.1.0/x/ab/", "hello.ko"),
            ]
        );
        assert_eq!(prefix_splits("stray.txt").count(), 0);

        assert_eq!(
            parse_metadata_key("hello/0.1.0/x/metadata.json"),
            Some("hello/0.1.0/x")
        );
        assert!(is_metadata_key(&metadata_key("hello/0.1.0/x")));
        for not_a_record in [
            "metadata.json",
            "hello/0.1.0/x/old-metadata.json",
            "hello/0.1.0/x/ab/hello.ko",
        ] {
            assert!(!is_metadata_key(not_a_record), "{not_a_record}");
        }

        // Under a record naming its artifacts directory: the record and that directory only.
        assert!(belongs_to_record("metadata.json", Some("bbbb/")));
        assert!(belongs_to_record("bbbb/hello.ko", Some("bbbb/")));
        assert!(!belongs_to_record("aaaa/hello.ko", Some("bbbb/")));
        assert!(!belongs_to_record("hello.ko", Some("bbbb/")));
        // An old or unreadable record: everything under the prefix.
        assert!(belongs_to_record("hello.ko", None));
        assert!(belongs_to_record("aaaa/hello.ko", None));
    }

    #[test]
    fn driver_index() {
        let mut index = DriverIndex {
            driver: "hello".into(),
            ..DriverIndex::default()
        };
        index.add("0.1.0", &matrix_key("hello", "0.1.0"));
        index.add("0.1.1", &matrix_key("hello", "0.1.1"));
        index.add("0.2.0", &matrix_key("hello", "0.2.0"));
        assert_eq!(index.versions["0.1.0"].driver_version, "0.1.1");
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(
            json,
            r#"{"driver":"hello","versions":{"0.1.0":{"driver_version":"0.1.1","matrix":"hello/0.1.0/matrix.json"},"0.2.0":{"driver_version":"0.2.0","matrix":"hello/0.2.0/matrix.json"}}}"#
        );
        let back: DriverIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(back, index);
        assert_eq!(
            back.matrices().collect::<Vec<_>>(),
            [
                ("0.1.0", "hello/0.1.0/matrix.json"),
                ("0.2.0", "hello/0.2.0/matrix.json")
            ]
        );

        // Lenient: an empty index, and a version naming no matrix, which is skipped.
        let empty: DriverIndex = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, DriverIndex::default());
        let partial: DriverIndex =
            serde_json::from_str(r#"{"versions":{"0.1.0":{"driver_version":"0.1.0"}}}"#).unwrap();
        assert_eq!(partial.matrices().count(), 0);
    }
}
