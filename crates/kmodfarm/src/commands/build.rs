use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kmf_farm::{Driver, Farm, FarmOptions, VariantResult};
use kmf_kernels::apt::CrawlOptions;
use kmf_sandbox::{Limits, SandboxKind};
use kmf_types::{KernelList, MatrixEntry};

use super::matrix::filter;
use super::{debian_mirrors, http_client, write_output, Outcome};
use crate::cli::BuildArgs;
use crate::reporters;

pub async fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let sandbox_kind: SandboxKind = args
        .sandbox
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("--sandbox")?;
    let drivers: Vec<Arc<Driver>> = args
        .projects
        .iter()
        .map(|p| {
            Driver::load(p, args.driver_version.as_deref())
                .map(Arc::new)
                .with_context(|| format!("loading driver project {}", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;

    let client = http_client()?;
    let mirrors = debian_mirrors(&args.mirrors).ok();
    let lists = if args.crawl {
        let mirrors = debian_mirrors(&args.mirrors)?;
        Some(
            kmf_kernels::apt::crawl_debian(
                &client,
                &CrawlOptions {
                    mirrors,
                    suites: args.suite.clone(),
                    arches: args.filter.arch.clone(),
                    flavours: args.flavour.clone(),
                },
            )
            .await
            .context("crawling the Debian mirror")?,
        )
    } else if !args.kernels.is_empty() {
        Some(kmf_kernels::load_all(&args.kernels, &client).await?)
    } else {
        None
    };
    let from_matrix: Option<Vec<MatrixEntry>> = match &args.matrix {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a kmodfarm matrix", path.display()))?,
            )
        }
        None => None,
    };
    if lists.is_none() && from_matrix.is_none() {
        anyhow::bail!("no kernels to build for: pass --matrix FILE, --kernels FILE|URL or --crawl");
    }

    let mut jobs = Vec::new();
    for driver in &drivers {
        let entries = match (&from_matrix, &lists) {
            (Some(m), _) => m.clone(),
            (None, Some(lists)) => matrix_for(lists, &args, &driver.version)?,
            (None, None) => unreachable!(),
        };
        let entries = match args.latest {
            Some(n) => kmf_farm::select::latest(entries, n),
            None => entries,
        };
        jobs.extend(entries.into_iter().map(|e| (driver.clone(), e)));
    }
    if jobs.is_empty() {
        anyhow::bail!("the filters select no kernel: nothing to build");
    }

    let cache = args.cache.clone().unwrap_or_else(default_cache_dir);
    let store = kmf_store::open(&args.store).context("opening the store")?;
    let sandbox = kmf_sandbox::open(sandbox_kind).context("preparing the sandbox")?;
    let (jobs_n, make_jobs) = parallelism(args.jobs);
    let ui = reporters::FarmProgress::new(jobs.len());
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
            ..Limits::default()
        },
        fetch: Default::default(),
        fetch_progress: Some(ui.clone()),
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(
        variants = jobs.len(),
        jobs = jobs_n,
        "building {} variant(s), {} at a time",
        jobs.len(),
        jobs_n
    );
    let results = farm.build(jobs, ui.clone()).await;
    ui.finish();

    let results_path = args.report_dir.join("results.json");
    let results_json = serde_json::to_string_pretty(&results)? + "\n";
    write_output(Some(&results_path), &results_json)?;
    if args.json {
        write_output(None, &results_json)?;
    } else {
        eprint!("{}", reporters::summary_table(&results));
        eprintln!("results: {}", results_path.display());
    }
    Ok(if results.iter().all(VariantResult::is_success) {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

fn matrix_for(
    lists: &KernelList,
    args: &BuildArgs,
    version: &str,
) -> anyhow::Result<Vec<MatrixEntry>> {
    let generated = kmf_matrix::generate(lists, &filter(&args.filter, version))?;
    Ok(generated.entries)
}

/// `$XDG_CACHE_HOME/kmodfarm` or `~/.cache/kmodfarm`; as root `/var/cache/kmodfarm`, because root's home is
/// private (0700) and the unprivileged uid that runs each sandboxed build must reach the cached trees.
fn default_cache_dir() -> PathBuf {
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
