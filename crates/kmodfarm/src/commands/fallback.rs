//! `kmodfarm install --build-fallback`: the arguments of a fallback build (a local store and report under
//! the cache, one job, the host's kernel as the only filter); the logic is `kmf_farm::fallback`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kmf_deliver::Host;
use kmf_farm::fallback;

use super::build::{cache_dir, load_drivers, open_farm};
use super::{debian_mirrors, http_client};
use crate::cli::{FarmArgs, FilterArgs, InstallArgs, KernelSourceArgs, MirrorArgs};

/// Builds the driver at `project` for `host` and returns the store it was published to.
pub async fn build_for_host(
    args: &InstallArgs,
    project: &Path,
    host: &Host,
) -> anyhow::Result<String> {
    let cache = match &args.cache {
        Some(c) => c.clone(),
        None => super::build::default_cache_dir(),
    };
    let drivers = load_drivers(
        &[project.to_path_buf()],
        None,
        &cache,
        None,
        Some(&args.sandbox),
    )
    .await?;
    let driver = drivers.into_iter().next().context("no driver project")?;
    let farm_args = FarmArgs {
        store: String::new(),
        cache: args.cache.clone(),
        git_cache: None,
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
            trust: args.mirrors.trust.clone(),
        },
    };
    let lists = if args.fallback_kernels.is_empty() {
        let mirrors = debian_mirrors(&source.mirrors)?;
        fallback::debian_host_kernels(
            &http_client()?,
            host,
            &args.root,
            mirrors,
            super::apt_trust(&args.mirrors.trust, kmf_kernels::apt::ArchiveKeys::Debian)?,
            &cache.join("indexes"),
        )
        .await?
    } else {
        kmf_kernels::load_all(&args.fallback_kernels, &http_client()?).await?
    };
    let entry = fallback::host_variant(&lists, host, &driver.version)?;
    // The mirror's indices, with the keyrings the host's packages are proven by.
    let indexes = super::build::run_indexes(&source, &farm_args)?;
    let (farm, ui) = open_farm(&farm_args, &source, 1, indexes)?;
    let built = fallback::build_for_host(&farm, driver, entry, ui.clone()).await;
    ui.finish();
    built?;
    Ok(farm_args.store)
}
