use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kmf_build::kbuild::OutputLimits;
use kmf_build::untrusted::{append_nofollow, create_dirs_beneath, create_nofollow};
use kmf_build::workdir::{PrivateDir, WorkDir};
use kmf_build::{BuilderStore, KbuildJob, KernelTree, ProjectConfig};
use kmf_extract::PackageTrees;
use kmf_fetch::{FetchOptions, Fetcher};
use kmf_kernels::mirrors::DebianMirrors;
use kmf_sandbox::{Limits, Sandbox};
use kmf_store::Store;
use kmf_types::{Arch, FailureClass, InputProof, MatrixEntry};

use crate::keys;
use crate::resolve::{resolve, Indexes};
use kmf_report::{BootRecord, InputPackage, Status, Toolchain, VariantResult};
use kmf_types::published::{metadata_key, PublishedVariant};

/// A driver project to build: its `kmodfarm.toml`, resolved version and source digest.
#[derive(Debug, Clone)]
pub struct Driver {
    pub name: String,
    pub version: String,
    pub project: ProjectConfig,
    pub source_sha256: String,
    /// The git commit the project was checked out from, when it came from git.
    pub git: Option<kmf_types::published::GitOrigin>,
}

impl Driver {
    /// Loads the project in `dir`; `version` overrides the one in kmodfarm.toml.
    ///
    /// The name (from kmodfarm.toml or the directory's name) and the version (from the command line or
    /// kmodfarm.toml) become directory names in the report and the store: they are checked here, before any
    /// work, as is every link in the source tree.
    pub fn load(dir: &Path, version: Option<&str>) -> Result<Driver, kmf_build::BuildError> {
        let mut project = ProjectConfig::load(dir)?;
        let version = project.resolve_version(version)?;
        Driver::of_project(dir, project, version)
    }

    /// As [`Driver::load`], and a `PACKAGE_VERSION` that dkms.conf computes, with no version given, is
    /// evaluated in `sandbox` before any kernel ([`kmf_build::dkms_version`]); `cache_dir` holds the
    /// evaluation's root filesystem and scratch space. The sandbox is opened only when one is needed.
    pub async fn load_evaluating(
        dir: &Path,
        version: Option<&str>,
        sandbox: &mut (dyn FnMut() -> Result<Arc<dyn Sandbox>, kmf_build::BuildError> + Send),
        cache_dir: &Path,
    ) -> Result<Driver, kmf_build::BuildError> {
        let mut project = ProjectConfig::load(dir)?;
        let version = match project.computed_version(version) {
            Some(_) => {
                let evaluated =
                    kmf_build::dkms_version::evaluate(sandbox()?.as_ref(), &project, cache_dir)
                        .await?;
                project.settle_evaluated_version(&evaluated)
            }
            None => project.resolve_version(version)?,
        };
        Driver::of_project(dir, project, version)
    }

    fn of_project(
        dir: &Path,
        project: ProjectConfig,
        version: String,
    ) -> Result<Driver, kmf_build::BuildError> {
        let name = project.name();
        let config_err = |e: kmf_types::names::NameError| kmf_build::BuildError::Config {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        };
        kmf_types::names::check_name("driver name", &name).map_err(config_err)?;
        kmf_types::names::check_version("driver version", &version).map_err(config_err)?;
        let source_sha256 = kmf_build::kbuild::source_digest(&project.source_dir())?;
        Ok(Driver {
            name,
            version,
            project,
            source_sha256,
            git: None,
        })
    }
}

/// Where a variant is in the pipeline, for live progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Comparing build keys with the store.
    Check,
    Resolve,
    Download,
    Extract,
    Toolchain,
    Build,
    Verify,
    /// Signing the modules (`--sign-key`).
    Sign,
    /// Booting the target kernel in QEMU with the modules (`--boot-test`).
    Boot,
    Publish,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Resolve => "resolve",
            Stage::Download => "download",
            Stage::Extract => "extract",
            Stage::Toolchain => "toolchain",
            Stage::Build => "build",
            Stage::Verify => "verify",
            Stage::Sign => "sign",
            Stage::Boot => "boot",
            Stage::Publish => "publish",
        }
    }
}

/// Progress callbacks; the binary draws bars on a terminal and writes log lines elsewhere.
pub trait FarmReporter: Send + Sync {
    fn started(&self, _label: &str) {}
    fn stage(&self, _label: &str, _stage: Stage) {}
    fn finished(&self, _result: &VariantResult) {}
}

pub struct FarmOptions {
    /// Downloads, extracted packages, builders and scratch space live here.
    pub cache_dir: PathBuf,
    /// Build logs and results of this run.
    pub report_dir: PathBuf,
    pub jobs: usize,
    pub make_jobs: usize,
    pub sandbox: Arc<dyn Sandbox>,
    pub store: Arc<dyn Store>,
    pub mirrors: Option<DebianMirrors>,
    /// Per build: `timeout` and `max_log_bytes` for all its steps together; the operator's, which a project
    /// may only lower.
    pub limits: Limits,
    /// Disk, module size and module count per build.
    pub output_limits: OutputLimits,
    pub fetch: FetchOptions,
    pub fetch_progress: Option<Arc<dyn kmf_fetch::FetchProgress>>,
    /// Build even when the store holds the variant with the same build key.
    pub rebuild: bool,
    /// Boot-test each variant: on the worker when its job asks for it, else on the publisher (after signing);
    /// a variant that fails is not published.
    pub boot: Option<BootTesting>,
    /// Sign every module after the build (and before the boot test and publishing).
    pub signing: Option<kmf_build::sign::SigningKey>,
    /// The certificate (SHA256 of its DER form) the publisher signs with, where this process holds no key
    /// (planner, worker): input keys are those of signed variants, as a signing `build` computes them.
    pub signing_cert: Option<String>,
    /// A worker of a prefetched plan: header packages and builders come from the plan directory only.
    pub plan_inputs: Option<Arc<crate::plan::PlanInputs>>,
    /// The mirror's package indices, when the caller already read some (a crawl through the same
    /// [`kmf_kernels::apt::IndexSet`] leaves them parsed); otherwise the farm reads them as needed.
    pub indexes: Option<Arc<kmf_kernels::apt::IndexSet>>,
    /// Keys per RPM distribution (matrix name, `fedora`): each `.rpm` header package of that distribution
    /// must carry a signature by one of them, checked before it is unpacked.
    pub rpm_keys: std::collections::BTreeMap<String, Arc<kmf_trust::Keyring>>,
}

/// One variant for [`Farm::work`]: the driver, the matrix entry, where its bundle goes, and whether the
/// worker boot-tests it (else the publisher may).
#[derive(Clone)]
pub struct WorkJob {
    pub driver: Arc<Driver>,
    pub entry: MatrixEntry,
    pub sink: crate::bundle::BundleSink,
    pub boot: bool,
}

/// `--boot-test`: the tester (shared by all variants) and the time limit per boot unless the project sets one.
#[derive(Clone)]
pub struct BootTesting {
    pub tester: Arc<kmf_boot::BootTester>,
    pub timeout: Duration,
}

pub struct Farm {
    opts: FarmOptions,
    fetcher: Fetcher,
    trees: PackageTrees,
    builders: BuilderStore,
    indexes: Arc<Indexes>,
}

impl Farm {
    pub fn new(opts: FarmOptions) -> Result<Farm, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("kmodfarm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        let mut fetcher = Fetcher::new(opts.cache_dir.join("downloads"), opts.fetch.clone())
            .map_err(|e| e.to_string())?;
        if let Some(p) = &opts.fetch_progress {
            fetcher = fetcher.with_progress(p.clone());
        }
        Ok(Farm {
            fetcher,
            trees: PackageTrees::new(opts.cache_dir.join("packages")),
            builders: BuilderStore::new(opts.cache_dir.join("builders")),
            indexes: opts.indexes.clone().unwrap_or_else(|| {
                Arc::new(Indexes::kernel_headers_only(
                    client,
                    opts.mirrors.clone(),
                    Arc::new(kmf_kernels::apt::AptTrust::refusing(
                        "the farm was set up without keyrings",
                    )),
                    Some(opts.cache_dir.join("indexes")),
                ))
            }),
            opts,
        })
    }

    /// The store artifacts are published to.
    pub fn store(&self) -> Arc<dyn Store> {
        self.opts.store.clone()
    }

    /// Variants handled at once.
    pub fn jobs(&self) -> usize {
        self.opts.jobs.max(1)
    }

    pub fn cache_dir(&self) -> &Path {
        &self.opts.cache_dir
    }

    pub fn output_limits(&self) -> &OutputLimits {
        &self.opts.output_limits
    }

    pub fn signing(&self) -> Option<&kmf_build::sign::SigningKey> {
        self.opts.signing.as_ref()
    }

    /// Whether variants are built even when the store has them with the same build key.
    pub fn rebuild(&self) -> bool {
        self.opts.rebuild
    }

    pub fn boot(&self) -> Option<&BootTesting> {
        self.opts.boot.as_ref()
    }

    /// [`Farm::prepare`] for the planner: headers fetched and unpacked, the builder made; its log goes to
    /// `log` (the planner keeps none).
    pub(crate) async fn prepare_for_plan(
        &self,
        id: &str,
        entry: &MatrixEntry,
        log: &Path,
    ) -> Result<Prepared, Failure> {
        struct Quiet;
        impl FarmReporter for Quiet {}
        let driver = id.split('/').next().unwrap_or_default();
        let mut result = VariantResult::started(driver, "", entry.clone());
        self.prepare(entry, &mut result, log, &Quiet).await
    }

    /// The builder's root filesystem as an archive for a plan (see [`BuilderStore::archive`]).
    pub(crate) async fn builder_archive(
        &self,
        prepared: &Prepared,
    ) -> Result<(PathBuf, String, u64), kmf_build::BuildError> {
        self.builders
            .archive(&prepared.spec, &prepared.rootfs, &prepared.builder_identity)
            .await
    }

    /// Whether the store holds this variant's record with exactly this build key and all its modules.
    pub(crate) async fn already_published(&self, store_prefix: &str, build_key: &str) -> bool {
        let store = &self.opts.store;
        let Ok(Some(bytes)) = store.get_bytes(&metadata_key(store_prefix)).await else {
            return false;
        };
        let Ok(published) = PublishedVariant::parse(&bytes) else {
            return false;
        };
        if published.build_key != build_key {
            return false;
        }
        for m in &published.modules {
            let key = published.object_key(store_prefix, &m.file_name);
            if !store.exists(&key).await.unwrap_or(false) {
                return false;
            }
        }
        true
    }

    /// A worker's run: builds every job, `jobs` at a time, each into a bundle (see [`crate::bundle`]).
    /// Results come back in input order. Nothing is signed or published here, and no store record is read:
    /// the plan decided what to build.
    pub async fn work(
        &self,
        jobs: Vec<WorkJob>,
        reporter: Arc<dyn FarmReporter>,
    ) -> Vec<VariantResult> {
        let mut results: Vec<(usize, VariantResult)> =
            futures::stream::iter(jobs.into_iter().enumerate())
                .map(|(i, job)| {
                    let reporter = reporter.clone();
                    async move {
                        let r = self.work_one(&job, reporter.as_ref()).await;
                        reporter.finished(&r);
                        (i, r)
                    }
                })
                .buffer_unordered(self.jobs())
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    /// One variant of a plan, from its inputs to its bundle; a failure ends in a bundle too (its class,
    /// message and log), so that the publisher learns of it.
    pub async fn work_one(&self, job: &WorkJob, reporter: &dyn FarmReporter) -> VariantResult {
        let driver = job.driver.as_ref();
        let mut result = VariantResult::started(&driver.name, &driver.version, job.entry.clone());
        reporter.started(&result.label);
        let start = Instant::now();
        let outcome = match self.log_dir(&result.store_prefix) {
            Ok(log_dir) => self.pipeline(job, &mut result, &log_dir, reporter).await,
            Err(e) => Err(e.into()),
        };
        if let Err(Stop::Excluded(reason)) = &outcome {
            let input_key = self.input_key(driver, &result.entry);
            let record =
                crate::bundle::BundleRecord::excluded(&job.sink, &result, &input_key, reason);
            let log = result.log.clone().unwrap_or_default();
            if let Err(e) = crate::bundle::write_bundle(&job.sink, &record, &[], &[], &log, None) {
                tracing::warn!(variant = %result.store_prefix, "writing the exclusion's bundle: {e}");
            }
            result.status = Status::Excluded {
                reason: reason.clone(),
            };
        }
        if let Err(Stop::Failed(class, message)) = outcome {
            let input_key = self.input_key(driver, &result.entry);
            let record = crate::bundle::BundleRecord::failure(
                &job.sink, &result, &input_key, class, &message,
            );
            let log = result.log.clone().unwrap_or_default();
            if let Err(e) = crate::bundle::write_bundle(&job.sink, &record, &[], &[], &log, None) {
                tracing::warn!(variant = %result.store_prefix, "writing the failure's bundle: {e}");
            }
            result.status = Status::Failed { class, message };
        }
        result.durations.close(start.elapsed().as_secs_f64());
        crate::preflight::note_first_error(&mut result);
        result
    }

    /// `<report dir>/logs/<driver>/<output>`, made without following a link on the way: the names come from
    /// the project and the kernel list, and are checked again here.
    pub(crate) fn log_dir(&self, store_prefix: &str) -> Result<PathBuf, (FailureClass, String)> {
        kmf_types::names::check_relative_path("variant output", store_prefix)
            .map_err(|e| (FailureClass::Internal, e.to_string()))?;
        std::fs::create_dir_all(&self.opts.report_dir).map_err(|e| {
            (
                FailureClass::Internal,
                format!("{}: {e}", self.opts.report_dir.display()),
            )
        })?;
        create_dirs_beneath(&self.opts.report_dir, &Path::new("logs").join(store_prefix)).map_err(
            |e| {
                (
                    FailureClass::Internal,
                    format!("the report's log directory: {e}"),
                )
            },
        )
    }

    /// One variant, stage by stage: prepare (headers, toolchain), compile (sandboxed kbuild, modules copied out
    /// and verified), boot-test when the job asks for it, and write the bundle. Signing and publishing are
    /// the publisher's (see [`crate::publish`]).
    async fn pipeline(
        &self,
        job: &WorkJob,
        result: &mut VariantResult,
        log_dir: &Path,
        reporter: &dyn FarmReporter,
    ) -> Result<(), Stop> {
        let driver = job.driver.as_ref();
        let log_path = start_log(result, log_dir)?;
        let entry = result.entry.clone();
        let prepared = self.prepare(&entry, result, &log_path, reporter).await?;
        let input_key = self.input_key(driver, &entry);
        let build_key = keys::build_key(&input_key, &prepared.builder_identity);
        result.builder = Some(prepared.builder_identity.clone());
        result.build_key = Some(build_key.clone());

        let _built = self
            .compile(driver, &prepared, result, &log_path, reporter)
            .await?;
        let boot = match (&self.opts.boot, job.boot) {
            (Some(boot), true) => {
                reporter.stage(&result.label, Stage::Boot);
                let release = prepared.tree.release.clone();
                Some(
                    self.boot_test(boot, driver, result, &release, log_dir, &log_path)
                        .await?,
                )
            }
            _ => None,
        };
        reporter.stage(&result.label, Stage::Publish);
        let t = Instant::now();
        let record = crate::bundle::BundleRecord::success(
            &job.sink,
            result,
            &input_key,
            &build_key,
            &prepared,
            self.opts.sandbox.name(),
            boot,
        );
        let firmware: Vec<_> = driver
            .project
            .delivery
            .firmware
            .iter()
            .zip(&driver.project.firmware)
            .map(|(f, bytes)| (f, bytes.as_slice()))
            .collect();
        crate::bundle::write_bundle(
            &job.sink,
            &record,
            &result.modules,
            &firmware,
            &log_path,
            result.boot_log.as_deref(),
        )
        .map_err(|e| (FailureClass::Internal, e.to_string()))?;
        result.durations.publish_secs = t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Resolve, fetch and unpack the header packages, find the kernel tree, and get the builder for the
    /// kernel's compiler.
    pub(crate) async fn prepare(
        &self,
        entry: &MatrixEntry,
        result: &mut VariantResult,
        log_path: &Path,
        reporter: &dyn FarmReporter,
    ) -> Result<Prepared, Failure> {
        let internal = |e: &dyn std::fmt::Display| (FailureClass::Internal, e.to_string());
        let planned = match &self.opts.plan_inputs {
            Some(inputs) => Some(
                inputs
                    .variants
                    .get(&result.store_prefix)
                    .ok_or_else(|| internal(&"the variant is not in the plan"))?,
            ),
            None => None,
        };
        let files = match (&self.opts.plan_inputs, planned) {
            (Some(inputs), Some(v)) => {
                if let Some(failure) = &v.unavailable {
                    note(
                        log_path,
                        &format!("the planner could not gather the inputs: {}", failure.1),
                    );
                    return Err(failure.clone());
                }
                let mut files = Vec::new();
                for p in &v.packages {
                    let path = inputs.verified(p).map_err(|m| {
                        note(log_path, &m);
                        (FailureClass::DownloadFailed, m)
                    })?;
                    files.push(InputFile {
                        name: p.file_name.clone(),
                        fetched: kmf_fetch::Fetched {
                            path,
                            sha256: p.sha256.clone(),
                            size: p.size,
                            url: p.url.clone(),
                            downloaded_bytes: 0,
                        },
                        // The planner proved it; a plan written before proofs were recorded proved nothing.
                        proof: p.proof.clone().unwrap_or(InputProof::Unverified {
                            reason: "the plan records no proof for it".into(),
                        }),
                    });
                }
                files
            }
            _ => self.download(entry, result, log_path, reporter).await?,
        };
        self.unpack(files, planned, entry, result, log_path, reporter)
            .await
    }

    /// Resolve and fetch the header packages from the mirrors (or the recorded URLs).
    async fn download(
        &self,
        entry: &MatrixEntry,
        result: &mut VariantResult,
        log_path: &Path,
        reporter: &dyn FarmReporter,
    ) -> Result<Vec<InputFile>, Failure> {
        let label = result.label.clone();
        reporter.stage(&label, Stage::Resolve);
        let t = Instant::now();
        let resolved = resolve(&self.indexes, entry, Arch::host()).await;
        result.durations.resolve_secs = t.elapsed().as_secs_f64();
        let resolved = resolved.inspect_err(|(_, m)| note(log_path, m))?;
        for r in &resolved {
            note(
                log_path,
                &format!("{}: {}", r.download.file_name, r.proof.summary()),
            );
        }
        // An RPM of a distribution with keys proves itself by its signature, checked once fetched.
        let rpm_keyring = |file_name: &str| {
            file_name
                .ends_with(".rpm")
                .then(|| self.opts.rpm_keys.get(&entry.distribution).cloned())
                .flatten()
        };
        if self.indexes.trust().require_verified() {
            if let Some(r) = resolved
                .iter()
                .find(|r| !r.proof.is_verified() && rpm_keyring(&r.download.file_name).is_none())
            {
                let m = format!(
                    "{}: {} (--require-verified refuses it)",
                    r.download.file_name,
                    r.proof.summary()
                );
                note(log_path, &m);
                return Err((FailureClass::InputUnproven, m));
            }
        }
        let (downloads, proofs): (Vec<_>, Vec<_>) =
            resolved.into_iter().map(|r| (r.download, r.proof)).unzip();

        reporter.stage(&label, Stage::Download);
        let t = Instant::now();
        let fetched = self.fetcher.fetch_all(&downloads).await;
        result.durations.fetch_secs = t.elapsed().as_secs_f64();
        let mut files = Vec::new();
        for ((d, f), proof) in downloads.iter().zip(fetched).zip(proofs) {
            match f {
                // The record names where the package is published: the URL it came from, or on a cache
                // hit the first it would have been fetched from, so that a warm cache records the same.
                Ok(f) => files.push(InputFile {
                    name: d.file_name.clone(),
                    fetched: kmf_fetch::Fetched {
                        url: f.url.clone().or_else(|| d.urls.first().cloned()),
                        ..f
                    },
                    proof,
                }),
                Err(e) => {
                    let class = if e.is_not_found() {
                        FailureClass::HeadersUnavailable
                    } else {
                        FailureClass::DownloadFailed
                    };
                    let msg = format!("{}: {e}", d.file_name);
                    note(log_path, &msg);
                    return Err((class, msg));
                }
            }
        }
        // Checked before anything of it is unpacked; a package that fails is not built from.
        for file in &mut files {
            let Some(keyring) = rpm_keyring(&file.name) else {
                continue;
            };
            let (path, ring) = (file.fetched.path.clone(), keyring.clone());
            let checked = tokio::task::spawn_blocking(move || {
                kmf_extract::verify_rpm_signature(&path, &ring, std::time::SystemTime::now())
            })
            .await
            .map_err(|e| (FailureClass::Internal, e.to_string()))?;
            match checked {
                Ok(sig) => {
                    file.proof = InputProof::PackageSignature(kmf_types::SignatureProof {
                        signed_by: sig.signer.primary_fingerprint,
                        signer: sig.signer.user_id,
                        keyring: keyring.origin().to_string(),
                    });
                    note(
                        log_path,
                        &format!(
                            "{}: {} ({}; digests {} OK)",
                            file.name,
                            file.proof.summary(),
                            sig.signature,
                            sig.digests.join(", ")
                        ),
                    );
                }
                Err(e) => {
                    // The log keeps the cached file's path; the result names the package.
                    let text = e.to_string();
                    note(log_path, &format!("{}: {text}", file.name));
                    let shown = format!("{}: ", file.fetched.path.display());
                    let why = text.strip_prefix(&shown).unwrap_or(&text);
                    return Err((FailureClass::InputUnproven, format!("{}: {why}", file.name)));
                }
            }
        }
        Ok(files)
    }

    /// Unpack the packages, find the kernel tree, get the builder (from the plan when it carries one).
    async fn unpack(
        &self,
        files: Vec<InputFile>,
        planned: Option<&crate::plan::PlannedVariant>,
        entry: &MatrixEntry,
        result: &mut VariantResult,
        log_path: &Path,
        reporter: &dyn FarmReporter,
    ) -> Result<Prepared, Failure> {
        let internal = |e: &dyn std::fmt::Display| (FailureClass::Internal, e.to_string());
        let label = result.label.clone();
        reporter.stage(&label, Stage::Extract);
        let t = Instant::now();
        let mut roots = Vec::new();
        for InputFile {
            name, fetched: f, ..
        } in &files
        {
            let trees = self.trees.clone();
            let (path, key) = (f.path.clone(), f.sha256.clone());
            let root = tokio::task::spawn_blocking(move || trees.tree(&path, &key))
                .await
                .map_err(|e| internal(&e))?
                .map_err(|e| {
                    let msg = format!("{name}: {e}");
                    note(log_path, &msg);
                    (FailureClass::ExtractFailed, msg)
                })?;
            roots.push(root);
        }
        result.durations.extract_secs = t.elapsed().as_secs_f64();
        let tree = kmf_build::find_kernel_tree(&roots).map_err(|e| {
            note(log_path, &e.to_string());
            (FailureClass::HeadersUnavailable, e.to_string())
        })?;
        result.kernel_release = Some(tree.release.clone());
        kmf_build::check_host_tools(
            &roots,
            &tree,
            &entry.distribution,
            entry.architecture,
            Arch::host(),
        )
        .map_err(|e| {
            note(log_path, &e.to_string());
            (FailureClass::ToolchainUnavailable, e.to_string())
        })?;

        reporter.stage(&label, Stage::Toolchain);
        let t = Instant::now();
        let (spec, rootfs) = match (&self.opts.plan_inputs, planned) {
            (Some(inputs), Some(v)) => self.planned_toolchain(inputs, v, &tree).await,
            _ => self.toolchain(&tree).await,
        }
        .inspect_err(|(_, m)| note(log_path, m))?;
        let builder_identity = self.builders.identity(&spec, &rootfs).map_err(|e| {
            note(log_path, &e.to_string());
            (FailureClass::ToolchainUnavailable, e.to_string())
        })?;
        if let Some(b) = planned
            .and_then(|v| v.builder.as_ref())
            .and_then(|id| self.opts.plan_inputs.as_ref()?.builders.get(id))
        {
            if b.identity != builder_identity {
                let m = format!(
                    "the builder unpacked from the plan has identity {builder_identity}, the plan says {}",
                    b.identity
                );
                note(log_path, &m);
                return Err((FailureClass::ToolchainUnavailable, m));
            }
        }
        result.durations.toolchain_secs = t.elapsed().as_secs_f64();
        Ok(Prepared {
            files,
            roots,
            tree,
            spec,
            rootfs,
            builder_identity,
        })
    }

    /// The sandboxed kbuild; the modules come back as verified copies in a private directory, also listed in
    /// `result.modules`.
    async fn compile(
        &self,
        driver: &Driver,
        prepared: &Prepared,
        result: &mut VariantResult,
        log_path: &Path,
        reporter: &dyn FarmReporter,
    ) -> Result<Built, Stop> {
        let internal = |e: &dyn std::fmt::Display| (FailureClass::Internal, e.to_string());
        if self.opts.sandbox.name() == "none" {
            crate::host_layout::install(&prepared.roots).map_err(|e| internal(&e))?;
        }
        reporter.stage(&result.label, Stage::Build);
        let t = Instant::now();
        let work = WorkDir::create(
            &self.opts.cache_dir.join("work"),
            self.opts.output_limits.disk_bytes,
        )
        .map_err(|e| internal(&e))?;
        // Modules are copied here out of the build directory; what is verified, signed, booted and
        // published is these copies.
        let staging =
            PrivateDir::create(&self.opts.cache_dir.join("staging")).map_err(|e| internal(&e))?;
        let mut limits = self.opts.limits.clone();
        // The operator's limit is a ceiling: a project may ask for less time, never more.
        if let Some(secs) = driver.project.build.timeout_secs {
            limits.timeout = limits.timeout.min(Duration::from_secs(secs));
        }
        let job = KbuildJob {
            arch: result.entry.architecture,
            tree: &prepared.tree,
            project: &driver.project,
            rootfs: prepared.rootfs.clone(),
            package_roots: prepared.roots.clone(),
            work: &work,
            staging: staging.path(),
            log_path: log_path.to_path_buf(),
            limits,
            output_limits: self.opts.output_limits.clone(),
            make_jobs: self.opts.make_jobs,
            gcc_major: prepared.spec.gcc_major,
            source_date_epoch: 1_700_000_000,
        };
        let out = kmf_build::run_kbuild(self.opts.sandbox.as_ref(), &job)
            .await
            .map_err(|e| internal(&e))?;
        // Nothing is read from the build directory any more.
        drop(work);
        result.durations.build_secs = t.elapsed().as_secs_f64();
        if let Some(reason) = out.excluded {
            return Err(Stop::Excluded(reason));
        }
        reporter.stage(&result.label, Stage::Verify);
        if let Some(failure) = out.failure {
            return Err(failure.into());
        }
        result.modules = out.modules;
        Ok(Built { _staging: staging })
    }

    /// Signs `modules` in a separate sandboxed run of the kernel tree's `sign-file`; the build log notes it.
    pub(crate) async fn sign(
        &self,
        key: &kmf_build::sign::SigningKey,
        prepared: &Prepared,
        modules: &mut [kmf_build::BuiltModule],
        log_path: &Path,
    ) -> Result<kmf_build::sign::SignatureRecord, Failure> {
        let dir = WorkDir::create(&self.opts.cache_dir.join("work"), SIGN_DIR_BYTES)
            .map_err(|e| (FailureClass::Internal, e.to_string()))?;
        let sign_log = log_path.with_extension("sign.log");
        let job = kmf_build::sign::SignJob {
            tree: &prepared.tree,
            rootfs: prepared.rootfs.clone(),
            package_roots: prepared.roots.clone(),
            work_dir: dir.path().to_path_buf(),
            log_path: sign_log.clone(),
        };
        let signed =
            kmf_build::sign::sign_modules(self.opts.sandbox.as_ref(), &job, key, modules).await;
        let sign_output = std::fs::read_to_string(&sign_log).unwrap_or_default();
        let _ = std::fs::remove_file(&sign_log);
        match &signed {
            Ok(r) => note(
                log_path,
                &format!(
                    "signed {} module(s) with {} ({}, certificate sha256 {}), signatures verified{}",
                    modules.len(),
                    r.signer,
                    r.hash,
                    r.cert_sha256,
                    if sign_output.trim().is_empty() {
                        String::new()
                    } else {
                        format!("\n{sign_output}")
                    }
                ),
            ),
            Err((_, m)) => note(log_path, &format!("signing failed: {m}\n{sign_output}")),
        }
        signed
    }

    /// The input key, with the signing certificate when modules are signed: signing with another key (or
    /// starting or stopping signing) must publish again.
    pub fn input_key(&self, driver: &Driver, entry: &MatrixEntry) -> String {
        let key = keys::input_key(driver, entry);
        let cert = self
            .opts
            .signing
            .as_ref()
            .map(|s| &s.cert_sha256)
            .or(self.opts.signing_cert.as_ref());
        match cert {
            Some(cert) => keys::signed_input_key(&key, cert),
            None => key,
        }
    }

    /// The published record of this variant when it was built from the same inputs with the same toolchain
    /// and all its modules are in the store (with or without a boot test: a run that boot-tests boots the
    /// published modules of one without, see `Publisher::boot_published`). Needs no download: the input key is computed from the matrix
    /// entry, and the builder is the one the record names (created first if this machine lacks it, since its
    /// identity depends on what the mirror installs today).
    pub async fn up_to_date(
        &self,
        driver: &Driver,
        store_prefix: &str,
        entry: &MatrixEntry,
    ) -> Option<PublishedVariant> {
        let store = &self.opts.store;
        let bytes = store.get_bytes(&metadata_key(store_prefix)).await.ok()??;
        let published = PublishedVariant::parse(&bytes).ok()?;
        if published.input_key != self.input_key(driver, entry) {
            return None;
        }
        let spec = kmf_build::builder_for(published.toolchain.cc_version_text.as_deref()?).ok()?;
        if spec.id != published.toolchain.builder {
            return None;
        }
        let rootfs = match self.builders.existing(&spec) {
            Some(path) => path,
            None => {
                let source = self.builder_source(&spec.suite).await.ok()?;
                self.builders.ensure(&spec, &source).await.ok()?
            }
        };
        let identity = self.builders.identity(&spec, &rootfs).ok()?;
        if identity != published.toolchain.builder_identity
            || keys::build_key(&published.input_key, &identity) != published.build_key
        {
            return None;
        }
        for m in &published.modules {
            let key = published.object_key(store_prefix, &m.file_name);
            if !store.exists(&key).await.unwrap_or(false) {
                return None;
            }
        }
        Some(published)
    }

    /// The reason the store's exclusion record gives for this variant, when it was decided for the same
    /// input key (a new driver source or header package decides again).
    pub async fn excluded_before(
        &self,
        driver: &Driver,
        store_prefix: &str,
        entry: &MatrixEntry,
    ) -> Option<String> {
        let key = kmf_types::published::excluded_key(store_prefix);
        let bytes = self.opts.store.get_bytes(&key).await.ok()??;
        let record = kmf_types::published::ExcludedVariant::parse(&bytes).ok()?;
        (record.input_key == self.input_key(driver, entry)).then_some(record.reason)
    }

    async fn toolchain(
        &self,
        tree: &KernelTree,
    ) -> Result<(kmf_build::BuilderSpec, PathBuf), (FailureClass, String)> {
        let unavailable = |m: String| (FailureClass::ToolchainUnavailable, m);
        let cc = tree
            .cc_version_text
            .as_deref()
            .ok_or_else(|| unavailable(kmf_build::BuildError::NoCompilerText.to_string()))?;
        let spec = kmf_build::builder_for(cc).map_err(|e| unavailable(e.to_string()))?;
        let rootfs = match self.builders.existing(&spec) {
            Some(rootfs) => rootfs,
            None => {
                let source = self.builder_source(&spec.suite).await?;
                self.builders
                    .ensure(&spec, &source)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
            }
        };
        Ok((spec, rootfs))
    }

    /// The apt source a missing builder of `suite` is created from, after its Release passed the same checks
    /// as the crawl's (so an expired or forged suite fails with that reason, not as mmdebstrap's error), with
    /// the same keyring and expiry decision handed to mmdebstrap.
    async fn builder_source(&self, suite: &str) -> Result<kmf_build::AptSource, Failure> {
        let mirrors = self.indexes.mirrors().ok_or_else(|| {
            (
                FailureClass::ToolchainUnavailable,
                "creating a builder needs a Debian mirror (--mirror)".to_string(),
            )
        })?;
        self.indexes.verify_release(suite).await.map_err(|e| {
            let class = if e.is_trust_failure() {
                FailureClass::InputUnproven
            } else {
                FailureClass::ToolchainUnavailable
            };
            (class, format!("creating the {suite} builder: {e}"))
        })?;
        let trust = self.indexes.trust();
        Ok(kmf_build::AptSource {
            uri: mirrors.uri_for_suite(suite).to_string(),
            keyrings: trust.keyring_files(suite).to_vec(),
            allow_expired: trust.expired_allowed(suite),
        })
    }

    /// The builder a prefetched plan carries for this variant, unpacked once from the plan's archive (its
    /// SHA256 checked first). The kernel's compiler must pick the same builder the planner found.
    async fn planned_toolchain(
        &self,
        inputs: &crate::plan::PlanInputs,
        variant: &crate::plan::PlannedVariant,
        tree: &KernelTree,
    ) -> Result<(kmf_build::BuilderSpec, PathBuf), Failure> {
        let unavailable = |m: String| (FailureClass::ToolchainUnavailable, m);
        let cc = tree
            .cc_version_text
            .as_deref()
            .ok_or_else(|| unavailable(kmf_build::BuildError::NoCompilerText.to_string()))?;
        let spec = kmf_build::builder_for(cc).map_err(|e| unavailable(e.to_string()))?;
        let planned = variant
            .builder
            .as_ref()
            .and_then(|id| inputs.builders.get(id))
            .filter(|b| b.id == spec.id)
            .ok_or_else(|| {
                unavailable(format!(
                    "the plan carries no builder {} for this variant",
                    spec.id
                ))
            })?;
        if let Some(rootfs) = self.builders.existing(&spec) {
            return Ok((spec, rootfs));
        }
        let archive = inputs.verified(&planned.archive).map_err(unavailable)?;
        let rootfs = self
            .builders
            .install_archive(&spec, &archive)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok((spec, rootfs))
    }

    /// Boots the target kernel with the verified modules; `Err` (the variant fails, nothing is published)
    /// unless every module loaded and unloaded cleanly.
    pub(crate) async fn boot_test(
        &self,
        boot: &BootTesting,
        driver: &Driver,
        result: &mut VariantResult,
        kernel_release: &str,
        log_dir: &Path,
        log_path: &Path,
    ) -> Result<BootRecord, (FailureClass, String)> {
        let t = Instant::now();
        // A worker of a plan that carries the boot packages takes them from the plan (verified), offline.
        let packages = match &self.opts.plan_inputs {
            Some(inputs) => match inputs
                .variants
                .get(&result.store_prefix)
                .and_then(|v| v.boot_packages.as_ref())
            {
                Some(planned) => {
                    let local = |p: &crate::plan::PlannedInput| {
                        inputs.verified(p).map(|path| kmf_boot::LocalPackage {
                            file_name: p.file_name.clone(),
                            path,
                            sha256: p.sha256.clone(),
                            size: p.size,
                        })
                    };
                    let unavailable = |m: String| (FailureClass::DownloadFailed, m);
                    Some(kmf_boot::BootPackages {
                        kernel: local(&planned.kernel).map_err(unavailable)?,
                        kernel_parts: planned
                            .kernel_parts
                            .iter()
                            .map(local)
                            .collect::<Result<_, _>>()
                            .map_err(unavailable)?,
                        busybox: local(&planned.busybox).map_err(unavailable)?,
                    })
                }
                None => None,
            },
            None => None,
        };
        let entry = &result.entry;
        let request = kmf_boot::BootRequest {
            packages,
            arch: entry.architecture,
            kernel_release: kernel_release.to_string(),
            suite: entry.suite.clone(),
            package_version: entry.packageversion.clone(),
            modules: result.modules.iter().map(|m| m.path.clone()).collect(),
            check_script: driver.project.boot_check_script().map(<[u8]>::to_vec),
            // The operator's limit is a ceiling: a project may ask for less time, never more.
            timeout: driver
                .project
                .boot
                .timeout_secs
                .map_or(boot.timeout, |t| boot.timeout.min(Duration::from_secs(t))),
        };
        let outcome = boot.tester.boot_test(&request).await;
        result.durations.boot_secs = t.elapsed().as_secs_f64();
        let boot_log = log_dir.join("boot.log");
        let written = create_nofollow(&boot_log).and_then(|mut f| {
            use std::io::Write;
            f.write_all(outcome.console_log.as_bytes())
        });
        if written.is_ok() {
            result.boot_log = Some(boot_log);
        }
        if let Err((class, message)) = &outcome.verdict {
            // The reports show the end of build.log: put the end of the console there too.
            // The guest's console is the module's output: marked and escaped as the build's output is.
            let lines: Vec<&str> = outcome.console_log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..]
                .iter()
                .map(|l| format!("| {}", kmf_types::names::printable(l)))
                .collect::<Vec<_>>()
                .join("\n");
            note(
                log_path,
                &format!("boot test failed: {message}\n# last console lines (boot.log):\n{tail}"),
            );
            return Err((*class, message.clone()));
        }
        Ok(BootRecord {
            accel: outcome.accel.to_string(),
            kernel_package: outcome.kernel_package.clone(),
            load_order: outcome.load_order.iter().map(|s| s.name.clone()).collect(),
            taint: outcome.taint,
            secs: result.durations.boot_secs,
            log: "boot.log".into(),
        })
    }

    /// Modules and logs first, then `SHA256SUMS` and the provenance statement, metadata last: a prefix with
    /// metadata.json is complete. Each object is written atomically by the store.
    pub(crate) async fn publish(
        &self,
        prefix: &str,
        modules: &[kmf_build::BuiltModule],
        firmware: &[(kmf_types::published::FirmwareFile, PathBuf)],
        log: &Path,
        boot_log: Option<&Path>,
        record: &PublishedVariant,
    ) -> Result<(), kmf_store::StoreError> {
        use kmf_report::provenance;
        let store = &self.opts.store;
        // Everything but the record goes into the build's own directory, the one the record names; the
        // record, written last, is the only object a republish replaces (see kmf_types::published).
        let key = |file: &str| record.object_key(prefix, file);
        for m in modules {
            publish_pause().await;
            store.put_file(&key(&m.file_name), &m.path).await?;
        }
        for (f, path) in firmware {
            store.put_file(&key(&f.file_name), path).await?;
        }
        store.put_file(&key("build.log"), log).await?;
        if let Some(boot_log) = boot_log {
            store.put_file(&key("boot.log"), boot_log).await?;
        }
        publish_pause().await;
        let sums = provenance::sha256sums(record);
        store
            .put_bytes(&key(provenance::SHA256SUMS), sums.as_bytes())
            .await?;
        let statement = serde_json::to_vec_pretty(&provenance::provenance(record))
            .expect("provenance serialises");
        store
            .put_bytes(&key(provenance::PROVENANCE), &statement)
            .await?;
        publish_pause().await;
        let json = serde_json::to_vec_pretty(record).expect("the record serialises");
        store.put_bytes(&metadata_key(prefix), &json).await
    }
}

/// Test hook: `KMODFARM_TEST_PUBLISH_DELAY_MS` pauses before each step of a publish, so that tests can kill
/// the process while a variant is half published. Unset in normal use.
async fn publish_pause() {
    if let Some(ms) = std::env::var("KMODFARM_TEST_PUBLISH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

type Failure = (FailureClass, String);

/// Why a variant's handling stopped before its bundle: it failed, or the project's requirements rule its
/// kernel out (not a failure).
#[derive(Debug, Clone)]
pub(crate) enum Stop {
    Failed(FailureClass, String),
    Excluded(String),
}

impl From<Failure> for Stop {
    fn from((class, message): Failure) -> Stop {
        Stop::Failed(class, message)
    }
}

/// A variant's header packages fetched and unpacked, its kernel tree, and the builder for its compiler.
/// A fetched header package and how it was proven.
pub(crate) struct InputFile {
    pub name: String,
    pub fetched: kmf_fetch::Fetched,
    pub proof: InputProof,
}

pub(crate) struct Prepared {
    pub files: Vec<InputFile>,
    pub roots: Vec<PathBuf>,
    pub tree: KernelTree,
    pub spec: kmf_build::BuilderSpec,
    pub rootfs: PathBuf,
    pub builder_identity: String,
}

impl Prepared {
    pub fn toolchain(&self, sandbox: &str) -> Toolchain {
        Toolchain {
            builder: self.spec.id.clone(),
            builder_identity: self.builder_identity.clone(),
            suite: self.spec.suite.clone(),
            cc_version_text: self.tree.cc_version_text.clone(),
            sandbox: sandbox.to_string(),
        }
    }

    pub fn input_packages(&self) -> Vec<InputPackage> {
        self.files
            .iter()
            .map(|f| InputPackage {
                file_name: f.name.clone(),
                sha256: f.fetched.sha256.clone(),
                size: f.fetched.size,
                url: f.fetched.url.clone(),
                proof: Some(f.proof.clone()),
            })
            .collect()
    }
}

/// The directory of the verified copies of a build's modules (listed in the result), removed with this.
struct Built {
    _staging: PrivateDir,
}

/// Starts the variant's build log (its directory was made without following links).
fn start_log(result: &mut VariantResult, log_dir: &Path) -> Result<PathBuf, Failure> {
    use std::io::Write;
    let log_path = log_dir.join("build.log");
    result.log = Some(log_path.clone());
    let mut f = create_nofollow(&log_path).map_err(|e| {
        (
            FailureClass::Internal,
            format!("{}: {e}", log_path.display()),
        )
    })?;
    let _ = f.write_all(b"# kmodfarm: build did not start\n");
    Ok(log_path)
}

fn note(log: &Path, msg: &str) {
    use std::io::Write;
    if let Ok(mut f) = append_nofollow(log) {
        let _ = writeln!(f, "# kmodfarm: {msg}");
    }
}

/// The signing run's directory holds a key, a certificate and copies of the modules.
const SIGN_DIR_BYTES: u64 = 4 << 30;

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
