//! `kmodfarm install --build-fallback`: the store has no module for the host's kernel, so build one here
//! the way the farm would (headers from the mirror, verified; the kernel's compiler; the sandbox), publish it
//! to a local store under the cache, and let `install` take it from there with its usual checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kmf_deliver::Host;
use kmf_farm::sync::SyncOptions;
use kmf_kernels::apt::CrawlOptions;
use kmf_report::Status;
use kmf_types::KernelList;

use super::build::{cache_dir, load_drivers, matrix_for, open_farm};
use super::{debian_mirrors, http_client};
use crate::cli::{FarmArgs, FilterArgs, InstallArgs, KernelSourceArgs, MirrorArgs};

/// Builds the driver at `project` for `host` and returns the store it was published to.
pub async fn build_for_host(
    args: &InstallArgs,
    project: &Path,
    host: &Host,
) -> anyhow::Result<String> {
    let drivers = load_drivers(&[project.to_path_buf()], None)?;
    let driver = drivers.into_iter().next().context("no driver project")?;
    let farm_args = FarmArgs {
        store: String::new(),
        cache: args.cache.clone(),
        report_dir: PathBuf::new(),
        sandbox: args.sandbox.clone(),
        jobs: Some(1),
        timeout: 1200,
        memory: 4096,
        disk_limit: crate::cli::DISK_LIMIT_MIB,
        max_module_size: crate::cli::MAX_MODULE_MIB,
        max_modules: crate::cli::MAX_MODULES,
        max_log: crate::cli::MAX_LOG_KIB,
        rebuild: false,
        boot_test: false,
        boot_timeout: 120,
        sign_key: None,
        sign_cert: None,
        json: false,
    };
    let cache = cache_dir(&farm_args);
    let farm_args = FarmArgs {
        store: cache.join("fallback/store").display().to_string(),
        report_dir: cache.join("fallback/report"),
        ..farm_args
    };
    let source = KernelSourceArgs {
        kernels: args.fallback_kernels.clone(),
        crawl: false,
        suite: vec![],
        flavour: None,
        filter: FilterArgs {
            distro: Some(vec![host.distro.clone()]),
            arch: vec![host.arch],
            kernel_release: Some(format!("^{}$", regex::escape(&host.kernel_release))),
        },
        latest: None,
        driver_version: None,
        mirrors: MirrorArgs {
            mirror: args.mirrors.mirror.clone(),
            security_mirror: args.mirrors.security_mirror.clone(),
        },
    };
    let lists = kernel_list(args, host, &source, &cache).await?;
    let entries = matrix_for(&lists, &source, &driver.version)?;
    let mut notes = Vec::new();
    let entry = kmf_deliver::install::select(&entries, host, &mut notes)
        .map_err(|(nearest, _)| {
            anyhow::anyhow!(
                "no header packages for {} {} kernel {} either{}",
                host.distro,
                host.arch,
                host.kernel_release,
                if nearest.is_empty() {
                    String::new()
                } else {
                    format!(" (nearest listed: {})", nearest.join(", "))
                }
            )
        })?
        .clone();
    for n in notes {
        tracing::info!("{n}");
    }
    tracing::info!(variant = %entry.label(), store = %farm_args.store, "building the host's module here");
    let (farm, ui) = open_farm(&farm_args, &source, 1, None)?;
    let (_, results) = kmf_farm::run::sync(
        &farm,
        vec![(driver, vec![entry])],
        &SyncOptions {
            diff: Default::default(),
            prune: false,
        },
        ui.clone(),
    )
    .await?;
    ui.finish();
    match results.first().map(|r| (&r.status, r)) {
        Some((Status::Success | Status::UpToDate, _)) => Ok(farm_args.store),
        Some((Status::Failed { class, message }, r)) => bail!(
            "building the module for {} failed ({class}: {message}){}",
            host.kernel_release,
            r.log
                .as_ref()
                .map(|l| format!("; log: {}", l.display()))
                .unwrap_or_default()
        ),
        None => bail!("nothing was built for {}", host.kernel_release),
    }
}

/// The kernels to look in: `--kernels` lists, else (Debian) a crawl of the host's release and its
/// security suite on the apt mirror.
async fn kernel_list(
    args: &InstallArgs,
    host: &Host,
    source: &KernelSourceArgs,
    cache: &Path,
) -> anyhow::Result<KernelList> {
    let client = http_client()?;
    if !args.fallback_kernels.is_empty() {
        return Ok(kmf_kernels::load_all(&args.fallback_kernels, &client).await?);
    }
    if host.distro != "debian" {
        bail!(
            "--build-fallback finds {} kernels through --kernels LIST (for example the output of `kmodfarm \
             kernels crawl --sources FILE`); only Debian's are looked up on the apt mirror by default",
            host.distro
        );
    }
    let os_release = std::fs::read_to_string(args.root.join("etc/os-release")).unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context(
            "--build-fallback needs the host's Debian release: no VERSION_CODENAME in os-release (or pass \
             --kernels LIST)",
        )?;
    let opts = CrawlOptions {
        mirrors: debian_mirrors(&source.mirrors)?,
        suites: vec![codename.clone(), format!("{codename}-security")],
        arches: vec![host.arch],
        flavours: None,
        index_cache: Some(cache.join("indexes")),
    };
    kmf_kernels::apt::crawl_debian(&client, &opts)
        .await
        .with_context(|| format!("looking for {} on the Debian mirror", host.kernel_release))
}
