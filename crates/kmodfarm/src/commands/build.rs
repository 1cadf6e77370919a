use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kmf_farm::{Driver, Farm, FarmOptions, VariantResult};
use kmf_kernels::apt::{CrawlOptions, IndexSet};
use kmf_sandbox::{Limits, SandboxKind};
use kmf_types::{KernelList, MatrixEntry};

use super::matrix::{filter, read_matrix};
use super::{debian_mirrors, http_client, write_output, Outcome};
use crate::cli::{BuildArgs, FarmArgs, KernelSourceArgs, MirrorArgs};
use crate::reporters;

pub async fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let drivers = load_drivers(
        &args.projects,
        args.source.driver_version.as_deref(),
        &cache_dir(&args.farm),
        args.farm.git_cache.as_deref(),
        Some(&args.farm.sandbox),
    )
    .await?;
    let indexes = run_indexes(&args.source, &args.farm)?;
    let lists = kernel_lists(&args.source, &args.farm, indexes.as_deref()).await?;
    let from_matrix = args.matrix.as_deref().map(read_matrix).transpose()?;
    if lists.is_none() && from_matrix.is_none() {
        anyhow::bail!("no kernels to build for: pass --matrix FILE, --kernels FILE|URL or --crawl");
    }

    let mut jobs = Vec::new();
    for driver in &drivers {
        let entries = match (&from_matrix, &lists) {
            (Some(m), _) => select(m.clone(), &args.source),
            (None, Some(lists)) => matrix_for(lists, &args.source, &driver.version)?,
            (None, None) => unreachable!(),
        };
        jobs.extend(entries.into_iter().map(|e| (driver.clone(), e)));
    }
    if jobs.is_empty() {
        anyhow::bail!("the filters select no kernel: nothing to build");
    }

    let (farm, ui) = open_farm(&args.farm, &args.source, jobs.len(), indexes)?;
    let results = kmf_farm::run::build(&farm, jobs, ui.clone()).await;
    ui.finish();
    report(&args.farm, &results?)
}

/// The projects' drivers: each a directory, or a git source (`git+URL[@REF][#subdirectory=DIR]`) checked out
/// at the commit its ref names now, into `cache`; a repository the cache lacks is first restored from the
/// farm's git cache when one is given. With a `sandbox` (`--sandbox`), a version dkms.conf computes is
/// evaluated in it; without, such a project needs its version given.
pub(crate) async fn load_drivers(
    projects: &[PathBuf],
    version: Option<&str>,
    cache: &std::path::Path,
    git_cache: Option<&str>,
    sandbox: Option<&str>,
) -> anyhow::Result<Vec<Arc<Driver>>> {
    let kind: Option<SandboxKind> = sandbox
        .map(|s| s.parse().map_err(|e| anyhow::anyhow!("{e}")))
        .transpose()
        .context("--sandbox")?;
    let mut opened: Option<Arc<dyn kmf_sandbox::Sandbox>> = None;
    let mut drivers = Vec::new();
    for p in projects {
        let (dir, git) = project_dir(p, cache, git_cache).await?;
        let loaded = match kind {
            Some(kind) => {
                let mut open =
                    || -> Result<Arc<dyn kmf_sandbox::Sandbox>, kmf_build::BuildError> {
                        if let Some(s) = &opened {
                            return Ok(s.clone());
                        }
                        let s: Arc<dyn kmf_sandbox::Sandbox> = kmf_sandbox::open(kind)?.into();
                        opened = Some(s.clone());
                        Ok(s)
                    };
                Driver::load_evaluating(&dir, version, &mut open, cache).await
            }
            None => Driver::load(&dir, version),
        };
        let mut driver =
            loaded.with_context(|| format!("loading driver project {}", p.display()))?;
        driver.git = git;
        drivers.push(Arc::new(driver));
    }
    Ok(drivers)
}

/// A project argument as a directory: itself, or a git source's checkout in `cache`, with its commit.
pub(crate) async fn project_dir(
    project: &std::path::Path,
    cache: &std::path::Path,
    git_cache: Option<&str>,
) -> anyhow::Result<(PathBuf, Option<kmf_types::published::GitOrigin>)> {
    let Some(spec) = project.to_str().filter(|s| kmf_git::GitSpec::is_git(s)) else {
        return Ok((project.to_path_buf(), None));
    };
    let spec = kmf_git::GitSpec::parse(spec)?;
    if let Some(url) = git_cache {
        let mirror = kmf_git::checkout::mirror_path(&spec, cache);
        if !mirror.join("HEAD").is_file() {
            let store = kmf_store::open(url).with_context(|| format!("opening {url}"))?;
            match kmf_git::cache::restore(
                store.as_ref(),
                &spec.url,
                &mirror,
                &kmf_git::cache::CacheLimits::default(),
            )
            .await
            {
                Ok(true) => tracing::info!("{spec}: mirror restored from the git cache"),
                Ok(false) => tracing::info!("{spec}: not in the git cache"),
                // A bad tarball is the cache's problem, not the build's: clone instead.
                Err(e) => tracing::warn!("{spec}: {e}; fetching from the upstream instead"),
            }
        }
    }
    let checkout = {
        let (job, cache) = (spec.clone(), cache.to_path_buf());
        tokio::task::spawn_blocking(move || kmf_git::checkout(&job, &cache))
            .await
            .expect("the checkout panicked")
            .with_context(|| format!("checking out {spec}"))?
    };
    match &checkout.upstream_unreachable {
        Some(why) => eprintln!(
            "warning: {spec}: the upstream is unreachable ({why}); building commit {} from the cache",
            checkout.origin.commit
        ),
        None => tracing::info!("{spec}: commit {}", checkout.origin.commit),
    }
    Ok((checkout.dir, Some(checkout.origin)))
}

/// The run's package indices of the Debian mirror, when one is configured: the crawl reads through them
/// and the farm resolves headers from the same parsed copies.
pub(crate) fn run_indexes(
    source: &KernelSourceArgs,
    farm: &FarmArgs,
) -> anyhow::Result<Option<Arc<IndexSet>>> {
    run_indexes_for(&source.mirrors, farm)
}

pub(crate) fn run_indexes_for(
    args: &MirrorArgs,
    farm: &FarmArgs,
) -> anyhow::Result<Option<Arc<IndexSet>>> {
    let Ok(mirrors) = debian_mirrors(args) else {
        return Ok(None);
    };
    let trust = super::apt_trust(&args.trust, kmf_kernels::apt::ArchiveKeys::Debian)?;
    Ok(Some(Arc::new(IndexSet::kernel_headers_only(
        http_client()?,
        Some(mirrors),
        trust,
        Some(cache_dir(farm).join("indexes")),
    ))))
}

/// The kernel lists of --crawl or --kernels, if either was given.
pub(crate) async fn kernel_lists(
    args: &KernelSourceArgs,
    farm: &FarmArgs,
    indexes: Option<&IndexSet>,
) -> anyhow::Result<Option<KernelList>> {
    let client = http_client()?;
    if args.crawl {
        let mirrors = debian_mirrors(&args.mirrors)?;
        let opts = CrawlOptions {
            mirrors,
            suites: args.suite.clone(),
            arches: args.filter.arch.clone(),
            flavours: args.flavour.clone(),
            index_cache: Some(cache_dir(farm).join("indexes")),
            trust: match indexes {
                Some(indexes) => indexes.trust().clone(),
                None => {
                    super::apt_trust(&args.mirrors.trust, kmf_kernels::apt::ArchiveKeys::Debian)?
                }
            },
        };
        let lists = match indexes {
            Some(indexes) => kmf_kernels::apt::crawl_debian_in(indexes, &opts).await,
            None => kmf_kernels::apt::crawl_debian(&client, &opts).await,
        }
        .context("crawling the Debian mirror")?;
        Ok(Some(lists))
    } else if !args.kernels.is_empty() {
        Ok(Some(kmf_kernels::load_all(&args.kernels, &client).await?))
    } else {
        Ok(None)
    }
}

pub(crate) fn open_farm(
    args: &FarmArgs,
    source: &KernelSourceArgs,
    variants: usize,
    indexes: Option<Arc<IndexSet>>,
) -> anyhow::Result<(Farm, Arc<reporters::FarmProgress>)> {
    let sandbox = open_sandbox(args)?;
    farm_with(
        args,
        &source.mirrors,
        variants,
        indexes,
        sandbox,
        Role::default(),
    )
}

/// The sandbox `--sandbox` names, checked to work here.
pub(crate) fn open_sandbox(args: &FarmArgs) -> anyhow::Result<Box<dyn kmf_sandbox::Sandbox>> {
    let kind: SandboxKind = args
        .sandbox
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("--sandbox")?;
    kmf_sandbox::open(kind).context("preparing the sandbox")
}

/// A worker's farm (`kmodfarm work`): builds in the sandbox into bundles; no signing key is accepted.
pub(crate) fn open_worker_farm(
    args: &FarmArgs,
    mirrors: &MirrorArgs,
    variants: usize,
    plan_inputs: Option<Arc<kmf_farm::plan::PlanInputs>>,
    signing_cert: Option<String>,
) -> anyhow::Result<(Farm, Arc<reporters::FarmProgress>)> {
    anyhow::ensure!(
        args.sign_key.is_none() && args.sign_cert.is_none(),
        "a worker never holds the signing key: sign with `kmodfarm publish --sign-key`"
    );
    let sandbox = open_sandbox(args)?;
    // A prefetched plan carries every input: the worker reads no mirror index.
    let indexes = match plan_inputs {
        Some(_) => None,
        None => run_indexes_for(mirrors, args)?,
    };
    farm_with(
        args,
        mirrors,
        variants,
        indexes,
        sandbox,
        Role {
            plan_inputs,
            signing_cert,
            no_store: true,
        },
    )
}

/// A farm for the planner, which reads the store and the mirrors and never builds: it gets no sandbox (a
/// planning machine needs none) and no signing key (planning must not hold it). With `--boot-test` it gets
/// a boot tester, to gather the kernel images a plan for boot tests carries (and a variant published
/// without a boot test is not up to date for such a plan).
pub(crate) fn open_planning_farm(
    args: &FarmArgs,
    source: &KernelSourceArgs,
    indexes: Option<Arc<IndexSet>>,
    signing_cert: Option<String>,
) -> anyhow::Result<Farm> {
    let args = FarmArgs {
        sign_key: None,
        sign_cert: None,
        store: args.store.clone(),
        cache: args.cache.clone(),
        git_cache: args.git_cache.clone(),
        report_dir: args.report_dir.clone(),
        sandbox: "none".into(),
        ..*args
    };
    let (farm, _) = farm_with(
        &args,
        &source.mirrors,
        0,
        indexes,
        Box::new(kmf_sandbox::HostRunner),
        Role {
            signing_cert,
            ..Role::default()
        },
    )?;
    Ok(farm)
}

/// What sets a worker's or planner's farm apart from `build`'s (the default).
#[derive(Default)]
pub(crate) struct Role {
    /// A worker: its farm gets no store at all (`--store` is not opened).
    pub no_store: bool,
    pub plan_inputs: Option<Arc<kmf_farm::plan::PlanInputs>>,
    pub signing_cert: Option<String>,
}

pub(crate) fn farm_with(
    args: &FarmArgs,
    mirrors: &MirrorArgs,
    variants: usize,
    indexes: Option<Arc<IndexSet>>,
    sandbox: Box<dyn kmf_sandbox::Sandbox>,
    role: Role,
) -> anyhow::Result<(Farm, Arc<reporters::FarmProgress>)> {
    let Role {
        plan_inputs,
        signing_cert,
        no_store,
    } = role;
    let cache = cache_dir(args);
    let mirrors_args = mirrors;
    let mirrors = debian_mirrors(mirrors).ok();
    let boot = if args.boot_test {
        // A worker of a plan that carries the boot packages needs no mirror.
        let carried = plan_inputs
            .as_ref()
            .is_some_and(|p| p.variants.values().all(|v| v.boot_packages.is_some()));
        let mirrors = match (mirrors.clone(), carried) {
            (Some(m), _) => Some(m),
            (None, true) => None,
            (None, false) => anyhow::bail!(
                "--boot-test needs a Debian mirror for the kernel images (--mirror URL)"
            ),
        };
        let trust = match &indexes {
            Some(i) => i.trust().clone(),
            None => super::apt_trust(&mirrors_args.trust, kmf_kernels::apt::ArchiveKeys::Debian)?,
        };
        let tester =
            kmf_boot::BootTester::new(&cache, mirrors, trust, kmf_boot::BootOptions::default())
                .map_err(|e| anyhow::anyhow!(e))
                .context("setting up the boot tester")?;
        Some(kmf_farm::BootTesting {
            tester: Arc::new(tester),
            timeout: Duration::from_secs(args.boot_timeout),
        })
    } else {
        None
    };
    let signing = match (&args.sign_key, &args.sign_cert) {
        (Some(key), Some(cert)) => Some(
            kmf_build::sign::SigningKey::load(key, cert)
                .map_err(|e| anyhow::anyhow!(e))
                .context("--sign-key/--sign-cert")?,
        ),
        _ => None,
    };
    let store: Box<dyn kmf_store::Store> = match no_store {
        true => Box::new(kmf_store::NoStore),
        false => kmf_store::open(&args.store).context("opening the store")?,
    };
    let (jobs_n, make_jobs) = parallelism(args.jobs);
    let ui = reporters::FarmProgress::new(variants);
    let farm = Farm::new(FarmOptions {
        cache_dir: cache,
        report_dir: args.report_dir.clone(),
        jobs: jobs_n,
        make_jobs,
        sandbox: Arc::from(sandbox),
        store: Arc::from(store),
        mirrors,
        limits: Limits {
            timeout: Duration::from_secs(args.timeout),
            memory_bytes: Some(args.memory * 1024 * 1024),
            max_log_bytes: args.max_log.saturating_mul(1024),
            ..Limits::default()
        },
        output_limits: kmf_build::kbuild::OutputLimits {
            disk_bytes: args.disk_limit.saturating_mul(1 << 20),
            module_bytes: args.max_module_size.saturating_mul(1 << 20),
            modules: args.max_modules,
        },
        fetch: Default::default(),
        fetch_progress: Some(ui.clone()),
        rebuild: args.rebuild,
        boot,
        signing,
        indexes,
        plan_inputs,
        signing_cert,
        rpm_keys: rpm_keys(&mirrors_args.trust)?,
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    if variants > 0 {
        tracing::info!(
            variants,
            jobs = jobs_n,
            "{variants} variant(s), {jobs_n} at a time"
        );
    }
    Ok((farm, ui))
}

/// `--rpm-keyring DISTRO=FILE`: each RPM distribution's files read into one keyring.
fn rpm_keys(
    args: &crate::cli::TrustArgs,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<kmf_trust::Keyring>>> {
    use kmf_kernels::{Family, RepoFormat};
    let mut files: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for arg in &args.rpm_keyring {
        let (distro, file) = arg
            .split_once('=')
            .filter(|(d, f)| !d.is_empty() && !f.is_empty())
            .with_context(|| format!("--rpm-keyring {arg:?}: expected DISTRO=FILE"))?;
        let family = Family::parse(distro)
            .filter(|f| f.repo_format() == RepoFormat::RpmMd)
            .with_context(|| {
                format!("--rpm-keyring {arg}: {distro:?} is not an RPM distribution (fedora, almalinux, rockylinux, centos, amazonlinux2, amazonlinux2023)")
            })?;
        files
            .entry(family.distribution())
            .or_default()
            .push(PathBuf::from(file));
    }
    files
        .into_iter()
        .map(|(distro, files)| {
            let ring = kmf_trust::Keyring::from_files(&files)
                .with_context(|| format!("--rpm-keyring {distro}"))?;
            Ok((distro, Arc::new(ring)))
        })
        .collect()
}

/// Writes results.json, junit.xml and index.html, prints the summary (or the results as JSON with --json) and
/// picks the exit code.
pub(crate) fn report(args: &FarmArgs, results: &[VariantResult]) -> anyhow::Result<Outcome> {
    let files = kmf_report::write_reports(&args.report_dir, results)
        .with_context(|| format!("writing reports to {}", args.report_dir.display()))?;
    if args.json {
        write_output(None, &kmf_report::results_json(results)?)?;
    } else {
        eprint!("{}", reporters::summary_table(results));
        eprintln!(
            "reports: {}, {}, {}",
            files.results_json.display(),
            files.junit_xml.display(),
            files.html.display()
        );
    }
    // An excluded variant is not applicable to its kernel: not a failure.
    Ok(
        if results.iter().all(|r| r.is_success() || r.is_excluded()) {
            Outcome::Success
        } else {
            Outcome::SomeFailed
        },
    )
}

/// The matrix of a kernel list for one driver version, with --latest applied.
pub(crate) fn matrix_for(
    lists: &KernelList,
    args: &KernelSourceArgs,
    version: &str,
) -> anyhow::Result<Vec<MatrixEntry>> {
    let generated = kmf_matrix::generate(lists, &filter(&args.filter, version))?;
    Ok(select(generated.entries, args))
}

fn select(entries: Vec<MatrixEntry>, args: &KernelSourceArgs) -> Vec<MatrixEntry> {
    match args.latest {
        Some(n) => kmf_farm::select::latest(entries, n),
        None => entries,
    }
}

/// Absolute: the path is handed to the sandbox as a bind-mount source, which must not depend on a cwd.
pub(crate) fn cache_dir(args: &FarmArgs) -> PathBuf {
    let dir = args.cache.clone().unwrap_or_else(default_cache_dir);
    std::path::absolute(&dir).unwrap_or(dir)
}

/// `$XDG_CACHE_HOME/kmodfarm` or `~/.cache/kmodfarm`; as root `/var/cache/kmodfarm`, because root's home is
/// private (0700) and the unprivileged uid that runs each sandboxed build must reach the cached trees.
pub(crate) fn default_cache_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root && std::env::var_os("XDG_CACHE_HOME").is_none() {
        return PathBuf::from("/var/cache/kmodfarm");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("kmodfarm")
}

/// Variant builds in parallel up to the cores, at most one per 2 GiB of memory; make's -j shares the rest.
fn parallelism(requested: Option<usize>) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(4, |kib| kib / (1024 * 1024));
    let jobs = requested
        .unwrap_or_else(|| cores.min((mem_gib / 2).max(1)))
        .max(1);
    (jobs, (cores / jobs).max(1))
}

/// `kmodfarm init`: a commented kmodfarm.toml for the project.
pub(crate) fn init(args: crate::cli::InitArgs) -> anyhow::Result<Outcome> {
    let report = kmf_build::init::init_project(&args.dir, args.force)?;
    if args.json {
        write_output(None, &serde_json::to_string_pretty(&report)?)?;
    } else {
        eprintln!(
            "wrote {} for {}{}",
            report.path.display(),
            kmf_types::names::printable(&report.name),
            match (&report.dkms_conf, report.from_dkms_conf) {
                (Some(path), _) => format!(
                    " from {} (builds follow it: [build] dkms_conf)",
                    kmf_types::names::printable(path)
                ),
                (None, true) => " from its dkms.conf (builds follow dkms.conf)".to_string(),
                (None, false) => String::new(),
            }
        );
    }
    Ok(Outcome::Success)
}
