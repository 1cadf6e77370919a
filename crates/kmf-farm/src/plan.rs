//! The plan of a distributed run (`kmodfarm plan`): what to build, grouped into shards, each shard with the
//! runner it needs. This module owns the format of `plan.json`; the planner writes it and workers and the
//! publisher read it through the same types.
//!
//! A plan is computed by the trusted planner: for each driver it diffs the freshly generated matrix against
//! the one published last time, leaves out variants whose input key and builder match the store's record
//! (no download, no build), and puts every remaining variant into shards that are homogeneous in
//! architecture and in what decides the toolchain, so that a worker needs one builder per shard:
//!
//! * the builder itself once the headers' kernel config is known (planning with prefetch);
//! * otherwise the distribution release: the suite where the kernel list names one, else the kernel list's
//!   target with the kernel's MAJOR.MINOR series (one release of a distribution ships one kernel series,
//!   built by one compiler).
//!
//! Shards of the same group hold at most `shard_size` variants. With `redundancy` R, every variant is put
//! into R different shards (copy 0, 1, …; a copy's shards never hold another copy's), in a rotated order so
//! that the variants sharing one shard differ from copy to copy: two workers have to agree before anything
//! is published.
//!
//! The plan id is the SHA256 of the plan's canonical JSON with the id left empty: the same inputs (drivers,
//! kernels, store state, options) give the same id.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use kmf_matrix::HeldGroup;
use kmf_types::{Arch, MatrixEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `schema` of `plan.json`.
pub const PLAN_SCHEMA: &str = "kmodfarm-plan/1";
/// The file a plan is written to, in its directory or store prefix.
pub const PLAN_FILE: &str = "plan.json";
/// Most entries GitHub Actions takes in one job's `strategy.matrix`.
pub const GITHUB_MATRIX_LIMIT: usize = 256;
/// Default variants per shard: with small drivers, a few minutes of work for a two-core runner.
pub const DEFAULT_SHARD_SIZE: usize = 16;

/// How the plan was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    pub shard_size: usize,
    /// How many shards (and so workers) build each variant.
    pub redundancy: usize,
    /// Whether the plan carries every input (header packages, builders, sources) for offline workers.
    pub prefetch: bool,
    /// The certificate the publisher will sign with (SHA256 of its DER form): input keys are those of signed
    /// variants, so that a store of signed modules is found up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_cert: Option<String>,
    /// Workers boot-test (`work --boot-test`): with prefetch, the plan carries each variant's kernel image
    /// and busybox packages too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot_test: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            shard_size: DEFAULT_SHARD_SIZE,
            redundancy: 1,
            prefetch: true,
            signing_cert: None,
            boot_test: false,
        }
    }
}

/// A driver as planned: what publishing needs to write its matrix afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedDriver {
    pub name: String,
    pub version: String,
    /// The version is what dkms.conf's computed `PACKAGE_VERSION` evaluated to before any kernel: a
    /// worker's evaluation for its kernel must come to the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub version_evaluated: bool,
    pub source_sha256: String,
    /// The git commit the project was checked out from, when it came from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<kmf_types::published::GitOrigin>,
    /// The project as a tar archive in the plan directory, for workers (absent when the plan was not
    /// written to a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::sources::SourceArchive>,
    /// The modules the project expects (`[build] modules`; empty: whatever `.ko` files the build makes).
    pub modules: Vec<String>,
    /// What hosts need to load the modules (`[install]`), published with every variant; the firmware's
    /// digests are what the publisher checks the workers' copies against.
    #[serde(
        default,
        skip_serializing_if = "kmf_types::published::Delivery::is_empty"
    )]
    pub delivery: kmf_types::published::Delivery,
    /// The build follows the project's dkms.conf: module destinations come from its evaluation (any
    /// valid one is accepted, unless `install_dest` fixes them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dkms: bool,
    /// `[install] dest`: every module's destination is `<install_dest>/<file name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_dest: Option<String>,
    /// Store key of its published matrix.
    pub matrix_key: String,
    /// Entries of the matrix published before the plan.
    pub previous: usize,
    /// Entries of the freshly generated matrix.
    pub generated: usize,
    /// Generated variants the store already has with the same keys: published as they are.
    pub up_to_date: Vec<MatrixEntry>,
    /// Those of `up_to_date` published without a boot test, when the farm boot-tests: the publisher boots
    /// their published modules and adds the boot to their records (no rebuild).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbooted: Vec<MatrixEntry>,
    /// Generated variants the store has exclusion records for with the same input keys: not built, not in
    /// the matrix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<PlannedExclusion>,
    /// Groups that vanished or shrank past the threshold, and the old entries kept for them.
    pub held: Vec<HeldGroup>,
    pub kept: Vec<MatrixEntry>,
    /// Outputs the new matrix no longer has (outside held groups).
    pub removed: Vec<String>,
}

/// One variant to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedVariant {
    /// `<driver>/<output>`: the variant's store prefix, and its name in shards and bundles.
    pub id: String,
    pub driver: String,
    pub entry: MatrixEntry,
    /// The part of the build key known before any download (see [`crate::keys`]).
    pub input_key: String,
    /// The builder, when planning with prefetch found the kernel's compiler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// What decides the toolchain: the builder, or the distribution release (see the module docs).
    pub group: String,
    /// With prefetch: `uname -r` read from the header tree (what the modules' vermagic must start with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// With prefetch: the kernel's `CONFIG_CC_VERSION_TEXT`, which chose the builder (the publisher records
    /// it from here, not from a worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_version_text: Option<String>,
    /// With prefetch: the header packages, in the plan's `cache/sha256/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PlannedInput>,
    /// With prefetch: why the planner could not gather the variant's inputs (headers unavailable, no
    /// builder for its compiler); a worker reports this failure without building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<(kmf_types::FailureClass, String)>,
    /// With prefetch and boot tests: the packages a boot of the variant needs, in `cache/sha256/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_packages: Option<PlannedBootPackages>,
    /// The shards that build it, one per copy.
    pub shards: Vec<usize>,
}

/// A file the plan carries, at `cache/sha256/<sha256>` under the plan directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInput {
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    /// Where the package is published (header packages), for the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How the planner proved the package (header packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<kmf_types::InputProof>,
}

/// The kernel image and busybox packages a boot test of a variant needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBootPackages {
    pub kernel: PlannedInput,
    /// A split image's kernel, modules and config packages (Linux 7 on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_parts: Vec<PlannedInput>,
    pub busybox: PlannedInput,
}

/// A builder the plan carries (with prefetch): its root filesystem as an archive in `cache/sha256/`, and the
/// identity a worker must find once it is unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBuilder {
    pub id: String,
    pub identity: String,
    pub archive: PlannedInput,
}

/// What a worker of a prefetched plan takes its inputs from: the plan directory and nothing else (no
/// mirror, no store). Each carried file is checked against its SHA256 once per process before use.
#[derive(Debug)]
pub struct PlanInputs {
    pub dir: std::path::PathBuf,
    pub variants: std::collections::HashMap<String, PlannedVariant>,
    pub builders: std::collections::HashMap<String, PlannedBuilder>,
    verified: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PlanInputs {
    pub fn new(dir: &std::path::Path, plan: &Plan) -> PlanInputs {
        PlanInputs {
            dir: dir.to_path_buf(),
            variants: plan
                .variants
                .iter()
                .map(|v| (v.id.clone(), v.clone()))
                .collect(),
            builders: plan
                .builders
                .iter()
                .map(|b| (b.id.clone(), b.clone()))
                .collect(),
            verified: Default::default(),
        }
    }

    /// The carried file's path, once its content matched the plan's SHA256 and size.
    pub fn verified(&self, input: &PlannedInput) -> Result<std::path::PathBuf, String> {
        use std::io::Read;
        kmf_types::names::check_path_component("a carried file's digest", &input.sha256)
            .map_err(|e| e.to_string())?;
        let path = input_path(&self.dir, &input.sha256);
        if self
            .verified
            .lock()
            .expect("poisoned")
            .contains(&input.sha256)
        {
            return Ok(path);
        }
        let mut file = std::fs::File::open(&path)
            .map_err(|e| format!("{} ({}): {e}", input.file_name, path.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        if actual != input.sha256 || size != input.size {
            return Err(format!(
                "{}: the plan's copy has SHA256 {actual} ({size} bytes), the plan says {} ({} bytes)",
                input.file_name, input.sha256, input.size
            ));
        }
        self.verified
            .lock()
            .expect("poisoned")
            .insert(input.sha256.clone());
        Ok(path)
    }
}

/// Where the plan directory keeps a carried file.
pub fn input_path(plan_dir: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    plan_dir.join("cache/sha256").join(sha256)
}

/// A unit of work for one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    /// The architecture its variants are built for.
    pub arch: Arch,
    /// The runner label it needs: `x86_64`, or `aarch64` where x86_64 cannot cross-build.
    pub runner: String,
    pub group: String,
    /// Which copy of the variants this shard builds (0 without redundancy).
    pub copy: usize,
    /// Variant ids, sorted.
    pub variants: Vec<String>,
}

/// `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub id: String,
    pub options: PlanOptions,
    pub drivers: Vec<PlannedDriver>,
    pub variants: Vec<PlannedVariant>,
    pub shards: Vec<Shard>,
    /// With prefetch: every builder the shards need.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builders: Vec<PlannedBuilder>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] crate::sync::SyncError),
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    #[error("planning with prefetch writes the inputs into the plan directory: pass --out DIR")]
    PrefetchNeedsDir,
    #[error("{}", .0.display())]
    Io(std::path::PathBuf, #[source] std::io::Error),
    #[error("a plan for boot tests gathers the kernel images: the planner needs a boot tester (--boot-test)")]
    BootNeedsTester,
    #[error("the shard size must be at least 1")]
    ShardSize,
    #[error("redundancy must be between 1 and 8, not {0}")]
    Redundancy(usize),
    #[error("{0} is not a kmodfarm plan: {1}")]
    NotAPlan(String, String),
    #[error("plan {path}: its id {claimed} does not match its content ({actual}); it was changed after planning")]
    IdMismatch {
        path: String,
        claimed: String,
        actual: String,
    },
}

/// The runner a variant needs: x86_64 builds x86_64, and aarch64 for Debian, whose `linux-kbuild` is taken
/// for the build host; RPM distributions and Ubuntu carry host tools built for the kernel's architecture, so
/// their aarch64 variants need aarch64 workers (see `kmf_build::check_host_tools`).
pub fn runner_for(entry: &MatrixEntry) -> &'static str {
    match entry.architecture {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 if entry.distribution == "debian" => "x86_64",
        Arch::Aarch64 => "aarch64",
    }
}

/// The toolchain group of a variant planned without its headers: the distribution release.
pub fn release_group(entry: &MatrixEntry) -> String {
    let release = match &entry.suite {
        Some(suite) => suite.clone(),
        None => {
            let series: Vec<&str> = entry.kversion.split(['.', '-']).take(2).collect();
            let target = if entry.target.is_empty() {
                entry.distribution.as_str()
            } else {
                entry.target.as_str()
            };
            format!("{target}-{}", series.join("."))
        }
    };
    format!("{}/{release}", entry.distribution)
}

/// Puts `variants` (ids and groups filled, shards empty) into shards; returns the shards and fills each
/// variant's `shards`.
pub fn shard(variants: &mut [PlannedVariant], opts: &PlanOptions) -> Result<Vec<Shard>, PlanError> {
    if opts.shard_size == 0 {
        return Err(PlanError::ShardSize);
    }
    if !(1..=8).contains(&opts.redundancy) {
        return Err(PlanError::Redundancy(opts.redundancy));
    }
    // (arch, runner, group) → variant positions, sorted by id.
    let mut groups: BTreeMap<(Arch, &'static str, String), Vec<usize>> = BTreeMap::new();
    for (i, v) in variants.iter().enumerate() {
        groups
            .entry((v.entry.architecture, runner_for(&v.entry), v.group.clone()))
            .or_default()
            .push(i);
    }
    for members in groups.values_mut() {
        members.sort_by(|a, b| variants[*a].id.cmp(&variants[*b].id));
    }
    let mut shards = Vec::new();
    for copy in 0..opts.redundancy {
        for ((arch, runner, group), members) in &groups {
            // Each copy starts half a shard further on: the variants that share a shard differ per copy.
            let mut order = members.clone();
            if !order.is_empty() {
                let shift = (copy * opts.shard_size.div_ceil(2).max(1)) % order.len();
                order.rotate_left(shift);
            }
            for chunk in order.chunks(opts.shard_size) {
                let index = shards.len();
                let mut ids: Vec<String> = chunk.iter().map(|&i| variants[i].id.clone()).collect();
                ids.sort();
                for &i in chunk {
                    variants[i].shards.push(index);
                }
                shards.push(Shard {
                    index,
                    arch: *arch,
                    runner: runner.to_string(),
                    group: group.clone(),
                    copy,
                    variants: ids,
                });
            }
        }
    }
    Ok(shards)
}

impl Plan {
    /// Assembles a plan and computes its id. `variants` need ids, groups and keys; they are sharded here.
    pub fn new(
        options: PlanOptions,
        drivers: Vec<PlannedDriver>,
        variants: Vec<PlannedVariant>,
    ) -> Result<Plan, PlanError> {
        Plan::with_builders(options, drivers, variants, vec![])
    }

    /// [`Plan::new`] for a plan that carries its builders.
    pub fn with_builders(
        options: PlanOptions,
        drivers: Vec<PlannedDriver>,
        mut variants: Vec<PlannedVariant>,
        mut builders: Vec<PlannedBuilder>,
    ) -> Result<Plan, PlanError> {
        builders.sort_by(|a, b| a.id.cmp(&b.id));
        variants.sort_by(|a, b| a.id.cmp(&b.id));
        for v in &mut variants {
            v.shards.clear();
        }
        let shards = shard(&mut variants, &options)?;
        let mut plan = Plan {
            schema: PLAN_SCHEMA.to_string(),
            id: String::new(),
            options,
            drivers,
            variants,
            shards,
            builders,
        };
        plan.id = plan.content_id();
        Ok(plan)
    }

    /// SHA256 of the canonical JSON with an empty id.
    pub fn content_id(&self) -> String {
        let mut copy = self.clone();
        copy.id = String::new();
        let bytes = serde_json::to_vec(&copy).expect("a plan serialises");
        hex::encode(Sha256::digest(&bytes))
    }

    /// The plan as written to `plan.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises") + "\n"
    }

    /// Reads `plan.json` and checks that its id is its content's: a plan edited after planning is refused.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_slice(bytes)
            .map_err(|e| PlanError::NotAPlan(origin.to_string(), e.to_string()))?;
        if plan.schema != PLAN_SCHEMA {
            return Err(PlanError::NotAPlan(
                origin.to_string(),
                format!("schema `{}`, expected `{PLAN_SCHEMA}`", plan.schema),
            ));
        }
        let actual = plan.content_id();
        if actual != plan.id {
            return Err(PlanError::IdMismatch {
                path: origin.to_string(),
                claimed: plan.id,
                actual,
            });
        }
        Ok(plan)
    }

    /// The short form `plan --json` prints.
    pub fn summary(&self) -> PlanSummary<'_> {
        PlanSummary {
            id: &self.id,
            variants: self.variants.len(),
            up_to_date: self.drivers.iter().map(|d| d.up_to_date.len()).sum(),
            options: &self.options,
            shards: &self.shards,
        }
    }

    /// The shards as GitHub Actions' `strategy.matrix` takes them: per runner label, chunks of at most
    /// [`GITHUB_MATRIX_LIMIT`] entries (`{"include": [{"shard": 0, "arch": "x86_64", "runner": "x86_64"}]}`).
    pub fn github_matrices(&self) -> Vec<GithubMatrix> {
        let mut by_runner: BTreeMap<&str, Vec<GithubShard>> = BTreeMap::new();
        for s in &self.shards {
            by_runner.entry(&s.runner).or_default().push(GithubShard {
                shard: s.index,
                arch: s.arch,
                runner: s.runner.clone(),
            });
        }
        let mut out = Vec::new();
        for (runner, shards) in by_runner {
            for (chunk, part) in shards.chunks(GITHUB_MATRIX_LIMIT).enumerate() {
                out.push(GithubMatrix {
                    runner: runner.to_string(),
                    chunk,
                    matrix: GithubInclude {
                        include: part.to_vec(),
                    },
                });
            }
        }
        out
    }
}

/// How many store records the planner reads at once.
const CHECKS_IN_FLIGHT: usize = 16;

/// A variant left out of a plan because its kernel was found ruled out before, with the same inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlannedExclusion {
    pub entry: MatrixEntry,
    pub reason: String,
}

/// Why `kmodfarm.toml`'s `arches`, `kernel_min` or `kernel_max` rule the entry out, if they do.
fn requirement_exclusion(driver: &crate::Driver, entry: &MatrixEntry) -> Option<String> {
    let facts = kmf_build::applicability::KernelFacts {
        release: entry.kversion.clone(),
        arch: entry.architecture,
        config: None,
    };
    let why = driver.project.requirements().exclusion(&facts)?;
    Some(format!("kmodfarm.toml: {why}"))
}

/// What the store says of a variant before it is planned.
enum Known {
    UpToDate(Box<kmf_types::published::PublishedVariant>),
    Excluded(String),
    Unknown,
}

/// Plans a run: for each driver and its freshly generated matrix, diffs against the published matrix, leaves
/// out what the store has with the same keys ([`crate::Farm::up_to_date`]: one record read per variant, no
/// download) and shards the rest. Planning with prefetch is done by the caller on top of this.
pub async fn plan(
    farm: &crate::Farm,
    drivers: Vec<(Arc<crate::Driver>, Vec<MatrixEntry>)>,
    diff_options: &kmf_matrix::DiffOptions,
    options: PlanOptions,
    plan_dir: Option<&std::path::Path>,
) -> Result<Plan, PlanError> {
    let store = farm.store();
    let mut planned_drivers = Vec::new();
    let mut variants = Vec::new();
    for (driver, generated) in drivers {
        let matrix_key = crate::sync::matrix_key(&driver);
        let previous = crate::sync::published_matrix(store.as_ref(), &matrix_key).await?;
        let diff = kmf_matrix::diff(&previous, &generated, diff_options);
        for w in diff.warnings() {
            tracing::warn!(driver = %driver.name, "{w}");
        }
        let checks: Vec<(MatrixEntry, Known)> = futures::stream::iter(generated.iter().cloned())
            .map(|entry| {
                let driver = driver.clone();
                async move {
                    let prefix = kmf_types::published::variant_prefix(&driver.name, &entry.output);
                    let known = if farm.rebuild() {
                        Known::Unknown
                    } else if let Some(p) = farm.up_to_date(&driver, &prefix, &entry).await {
                        Known::UpToDate(Box::new(p))
                    } else if let Some(reason) =
                        farm.excluded_before(&driver, &prefix, &entry).await
                    {
                        Known::Excluded(reason)
                    } else {
                        Known::Unknown
                    };
                    (entry, known)
                }
            })
            .buffered(CHECKS_IN_FLIGHT)
            .collect()
            .await;
        let mut up_to_date = Vec::new();
        let mut unbooted = Vec::new();
        let mut excluded = Vec::new();
        for (entry, known) in checks {
            // Architecture and release requirements need no download: decided here, before any input is
            // fetched (configuration requirements wait for the kernel's .config).
            let known = match known {
                Known::Unknown => requirement_exclusion(&driver, &entry)
                    .map(Known::Excluded)
                    .unwrap_or(Known::Unknown),
                known => known,
            };
            match known {
                Known::UpToDate(p) => {
                    let mut e = entry;
                    e.builder = Some(p.toolchain.builder_identity);
                    e.buildkey = Some(p.build_key);
                    if farm.boot().is_some() && p.boot.is_none() {
                        unbooted.push(e.clone());
                    }
                    up_to_date.push(e);
                }
                Known::Excluded(reason) => excluded.push(PlannedExclusion { entry, reason }),
                Known::Unknown => {
                    let group = release_group(&entry);
                    variants.push(PlannedVariant {
                        id: kmf_types::published::variant_prefix(&driver.name, &entry.output),
                        driver: driver.name.clone(),
                        input_key: farm.input_key(&driver, &entry),
                        builder: None,
                        group,
                        kernel_release: None,
                        cc_version_text: None,
                        packages: vec![],
                        unavailable: None,
                        boot_packages: None,
                        entry,
                        shards: vec![],
                    });
                }
            }
        }
        tracing::info!(
            driver = %driver.name,
            generated = generated.len(),
            up_to_date = up_to_date.len(),
            "planned"
        );
        let source = match plan_dir {
            Some(dir) => Some(crate::sources::pack(&driver.project.root, dir)?),
            None => None,
        };
        planned_drivers.push(PlannedDriver {
            source,
            name: driver.name.clone(),
            version: driver.version.clone(),
            version_evaluated: driver.project.version_evaluated,
            source_sha256: driver.source_sha256.clone(),
            git: driver.git.clone(),
            modules: driver.project.build.modules.clone(),
            delivery: driver.project.delivery.clone(),
            dkms: driver.project.uses_dkms(),
            install_dest: driver.project.install.dest.clone(),
            matrix_key,
            previous: previous.len(),
            generated: generated.len(),
            up_to_date,
            unbooted,
            excluded,
            held: diff.held.clone(),
            kept: diff.kept.clone(),
            removed: diff.removed.iter().map(|e| e.output.clone()).collect(),
        });
    }
    let mut builders = Vec::new();
    if options.prefetch {
        let dir = plan_dir.ok_or(PlanError::PrefetchNeedsDir)?;
        builders = prefetch(farm, dir, &mut variants, options.boot_test).await?;
    }
    Plan::with_builders(options, planned_drivers, variants, builders)
}

/// Gathers every variant's header packages and builder into the plan directory (hard links into the
/// farm's caches where the file system allows, copies otherwise), so that workers need no network, and
/// groups variants by builder.
async fn prefetch(
    farm: &crate::Farm,
    dir: &std::path::Path,
    variants: &mut [PlannedVariant],
    boot_test: bool,
) -> Result<Vec<PlannedBuilder>, PlanError> {
    let mut builders: BTreeMap<String, PlannedBuilder> = BTreeMap::new();
    let scratch = tempfile::tempdir().map_err(|e| PlanError::Io(dir.to_path_buf(), e))?;
    for v in variants.iter_mut() {
        let log = scratch.path().join("prefetch.log");
        let prepared = match farm.prepare_for_plan(&v.id, &v.entry, &log).await {
            Ok(p) => p,
            Err(failure) => {
                tracing::warn!(variant = %v.id, "cannot gather the inputs: {}", failure.1);
                v.unavailable = Some(failure);
                continue;
            }
        };
        let mut packages = Vec::new();
        for input in &prepared.files {
            let f = &input.fetched;
            place(&f.path, &input_path(dir, &f.sha256))
                .map_err(|e| PlanError::Io(f.path.clone(), e))?;
            packages.push(PlannedInput {
                file_name: input.name.clone(),
                sha256: f.sha256.clone(),
                size: f.size,
                url: f.url.clone(),
                proof: Some(input.proof.clone()),
            });
        }
        if !builders.contains_key(&prepared.spec.id) {
            let (archive, sha256, size) = farm.builder_archive(&prepared).await.map_err(|e| {
                PlanError::Io(
                    prepared.rootfs.clone(),
                    std::io::Error::other(e.to_string()),
                )
            })?;
            place(&archive, &input_path(dir, &sha256))
                .map_err(|e| PlanError::Io(archive.clone(), e))?;
            builders.insert(
                prepared.spec.id.clone(),
                PlannedBuilder {
                    id: prepared.spec.id.clone(),
                    identity: prepared.builder_identity.clone(),
                    archive: PlannedInput {
                        proof: None,
                        file_name: format!("{}.tar.zst", prepared.spec.id),
                        sha256,
                        size,
                        url: None,
                    },
                },
            );
        }
        if boot_test {
            match boot_packages(farm, dir, &v.entry, &prepared.tree.release).await? {
                Ok(p) => v.boot_packages = Some(p),
                Err(failure) => {
                    tracing::warn!(variant = %v.id, "cannot gather the boot packages: {}", failure.1);
                    v.unavailable = Some(failure);
                    continue;
                }
            }
        }
        v.packages = packages;
        v.kernel_release = Some(prepared.tree.release.clone());
        v.cc_version_text = prepared.tree.cc_version_text.clone();
        v.builder = Some(prepared.spec.id.clone());
        v.group = prepared.spec.id.clone();
    }
    Ok(builders.into_values().collect())
}

/// The kernel image and busybox packages a boot of `entry` needs, fetched through the farm's boot tester and
/// placed into the plan directory. The outer error is the plan's; the inner one the variant's.
async fn boot_packages(
    farm: &crate::Farm,
    dir: &std::path::Path,
    entry: &MatrixEntry,
    kernel_release: &str,
) -> Result<Result<PlannedBootPackages, (kmf_types::FailureClass, String)>, PlanError> {
    let Some(boot) = farm.boot() else {
        return Err(PlanError::BootNeedsTester);
    };
    let request = kmf_boot::BootRequest {
        arch: entry.architecture,
        kernel_release: kernel_release.to_string(),
        suite: entry.suite.clone(),
        package_version: entry.packageversion.clone(),
        modules: vec![],
        check_script: None,
        timeout: boot.timeout,
        packages: None,
    };
    let packages = match boot.tester.packages_for(&request).await {
        Ok(p) => p,
        Err(failure) => return Ok(Err(failure)),
    };
    let carry = |p: &kmf_boot::LocalPackage| -> Result<PlannedInput, PlanError> {
        place(&p.path, &input_path(dir, &p.sha256))
            .map_err(|e| PlanError::Io(p.path.clone(), e))?;
        Ok(PlannedInput {
            proof: None,
            file_name: p.file_name.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            url: None,
        })
    };
    Ok(Ok(PlannedBootPackages {
        kernel: carry(&packages.kernel)?,
        kernel_parts: packages
            .kernel_parts
            .iter()
            .map(carry)
            .collect::<Result<_, _>>()?,
        busybox: carry(&packages.busybox)?,
    }))
}

/// Puts `from` at `to` once: a hard link where possible, else a copy (through a temporary name).
fn place(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    if to.exists() {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)
}

#[derive(Debug, Serialize)]
pub struct PlanSummary<'a> {
    pub id: &'a str,
    pub variants: usize,
    pub up_to_date: usize,
    pub options: &'a PlanOptions,
    pub shards: &'a [Shard],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubShard {
    pub shard: usize,
    pub arch: Arch,
    pub runner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubInclude {
    pub include: Vec<GithubShard>,
}

/// One job's matrix: the shards of one runner label, at most [`GITHUB_MATRIX_LIMIT`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubMatrix {
    pub runner: String,
    /// 0, 1, … among the chunks of this runner.
    pub chunk: usize,
    pub matrix: GithubInclude,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(distro: &str, arch: Arch, release: &str, suite: Option<&str>) -> MatrixEntry {
        MatrixEntry {
            kversion: release.to_string(),
            distribution: distro.to_string(),
            architecture: arch,
            kernelurls: vec![],
            output: format!("0.1.0/{distro}/{arch}/{release}"),
            driverversion: "0.1.0".into(),
            kernelversion: "1".into(),
            target: distro.to_string(),
            flavour: None,
            packageversion: None,
            suite: suite.map(str::to_string),
            headerpackages: vec![],
            kernelconfigsha256: None,
            builder: None,
            buildkey: None,
        }
    }

    fn variant(e: MatrixEntry) -> PlannedVariant {
        PlannedVariant {
            id: format!("hello/{}", e.output),
            driver: "hello".into(),
            input_key: hex::encode(Sha256::digest(e.output.as_bytes())),
            builder: None,
            group: release_group(&e),
            kernel_release: None,
            cc_version_text: None,
            packages: vec![],
            unavailable: None,
            boot_packages: None,
            entry: e,
            shards: vec![],
        }
    }

    fn variants() -> Vec<PlannedVariant> {
        let mut v = Vec::new();
        for i in 0..7 {
            v.push(variant(entry(
                "debian",
                Arch::X86_64,
                &format!("6.1.0-{i}-amd64"),
                Some("bookworm"),
            )));
            v.push(variant(entry(
                "debian",
                Arch::Aarch64,
                &format!("6.1.0-{i}-arm64"),
                Some("bookworm"),
            )));
            v.push(variant(entry(
                "fedora",
                Arch::Aarch64,
                &format!("6.{i}.4-301.fc41.aarch64"),
                None,
            )));
        }
        v
    }

    #[test]
    fn groups_runners_and_sizes() {
        let plan = Plan::new(
            PlanOptions {
                shard_size: 3,
                redundancy: 1,
                prefetch: false,
                signing_cert: None,
                boot_test: false,
            },
            vec![],
            variants(),
        )
        .unwrap();
        for v in &plan.variants {
            assert_eq!(v.shards.len(), 1);
            let s = &plan.shards[v.shards[0]];
            assert!(s.variants.contains(&v.id));
            assert_eq!(s.arch, v.entry.architecture);
            assert_eq!(s.group, v.group);
        }
        assert!(plan.shards.iter().all(|s| s.variants.len() <= 3));
        // Debian cross-builds aarch64 on x86_64; Fedora's aarch64 headers need an aarch64 worker.
        for s in &plan.shards {
            let want = if s.group.starts_with("fedora") {
                "aarch64"
            } else {
                "x86_64"
            };
            assert_eq!(s.runner, want, "{s:?}");
        }
        // Fedora's kernels of different series are different releases.
        assert!(plan.shards.iter().any(|s| s.group == "fedora/fedora-6.0"));
        assert_eq!(plan.summary().variants, 21);
    }

    #[test]
    fn redundancy_puts_each_variant_into_distinct_shards_with_other_companions() {
        let plan = Plan::new(
            PlanOptions {
                shard_size: 3,
                redundancy: 2,
                prefetch: false,
                signing_cert: None,
                boot_test: false,
            },
            vec![],
            variants(),
        )
        .unwrap();
        let mut same_companions = 0;
        for v in &plan.variants {
            assert_eq!(v.shards.len(), 2);
            let (a, b) = (&plan.shards[v.shards[0]], &plan.shards[v.shards[1]]);
            assert_ne!(a.index, b.index);
            assert_ne!(a.copy, b.copy);
            if a.variants == b.variants {
                same_companions += 1;
            }
        }
        assert!(
            same_companions < plan.variants.len() / 2,
            "{same_companions}"
        );
        assert!(Plan::new(
            PlanOptions {
                redundancy: 9,
                ..Default::default()
            },
            vec![],
            variants()
        )
        .is_err());
    }

    #[test]
    fn ids_are_content_hashes_and_edits_are_refused() {
        let opts = PlanOptions {
            shard_size: 4,
            redundancy: 1,
            prefetch: false,
            signing_cert: None,
            boot_test: false,
        };
        let a = Plan::new(opts.clone(), vec![], variants()).unwrap();
        let mut reversed = variants();
        reversed.reverse();
        let b = Plan::new(opts, vec![], reversed).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.to_json(), b.to_json());
        let parsed = Plan::parse(a.to_json().as_bytes(), "plan.json").unwrap();
        assert_eq!(parsed, a);
        let edited = a.to_json().replacen("6.1.0-0-amd64", "6.1.0-9-amd64", 1);
        let e = Plan::parse(edited.as_bytes(), "plan.json").unwrap_err();
        assert!(matches!(e, PlanError::IdMismatch { .. }), "{e}");
    }

    #[test]
    fn github_matrices_stay_within_the_limit() {
        let mut v = Vec::new();
        for i in 0..600 {
            v.push(variant(entry(
                "debian",
                Arch::X86_64,
                &format!("6.1.0-{i}-amd64"),
                Some("bookworm"),
            )));
        }
        let plan = Plan::new(
            PlanOptions {
                shard_size: 1,
                redundancy: 1,
                prefetch: false,
                signing_cert: None,
                boot_test: false,
            },
            vec![],
            v,
        )
        .unwrap();
        let m = plan.github_matrices();
        assert_eq!(m.len(), 3);
        assert!(m
            .iter()
            .all(|c| c.matrix.include.len() <= GITHUB_MATRIX_LIMIT));
        let total: usize = m.iter().map(|c| c.matrix.include.len()).sum();
        assert_eq!(total, 600);
    }
}
