//! `kmodfarm preflight`: flags to options, then [`kmf_farm::preflight`]'s two steps.

use anyhow::Context;
use kmf_farm::preflight::{self, Outcome as Verdict, PreflightOptions, PreflightReport};
use kmf_types::names::printable;

use super::build::{cache_dir, farm_with, load_drivers, open_sandbox, run_indexes_for, Role};
use super::{debian_mirrors, write_output, Outcome};
use crate::cli::{FarmArgs, PreflightArgs};
use crate::reporters;

pub async fn preflight(args: PreflightArgs) -> anyhow::Result<Outcome> {
    if let Some(store) = &args.store {
        anyhow::bail!(
            "preflight never publishes: --store {} is refused (its modules go to a throwaway store, {})",
            printable(store),
            args.report.join("throwaway-store").display()
        );
    }
    let mut farm_args = farm_args(&args);
    let cache = cache_dir(&farm_args);
    let drivers = load_drivers(
        &args.projects,
        args.driver_version.as_deref(),
        &cache,
        args.git_cache.as_deref(),
        Some(&farm_args.sandbox),
    )
    .await?;
    debian_mirrors(&args.mirrors).context("preflight crawls the Debian mirror")?;
    let indexes = run_indexes_for(&args.mirrors, &farm_args)?
        .context("preflight crawls the Debian mirror: pass --mirror URL")?;
    let opts = PreflightOptions {
        suites: args
            .suite
            .clone()
            .unwrap_or_else(|| preflight::default_suites(&args.release)),
        arches: args.arch.clone(),
        flavours: Some(args.flavour.clone()),
        latest: args.latest,
        report_dir: args.report.clone(),
        index_cache: Some(cache.join("indexes")),
    };
    let jobs = preflight::kernels(&indexes, &drivers, &opts).await?;

    let store = preflight::throwaway_store(&args.report)?;
    farm_args.store = store.display().to_string();
    let sandbox = open_sandbox(&farm_args)?;
    let (farm, ui) = farm_with(
        &farm_args,
        &args.mirrors,
        jobs.len(),
        Some(indexes),
        sandbox,
        Role::default(),
    )?;
    let (report, results) = preflight::run(&farm, jobs, &opts, &store, ui.clone()).await?;
    ui.finish();

    if args.json {
        write_output(None, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        eprint!("{}", reporters::summary_table(&results));
        eprint!("{}", verdicts(&report));
        eprintln!(
            "reports: {}",
            args.report.join(preflight::PREFLIGHT_JSON).display()
        );
    }
    Ok(match report.summary.failed {
        0 => Outcome::Success,
        _ => Outcome::SomeFailed,
    })
}

/// `build`'s farm settings, with preflight's report directory as the report and no store of the user's:
/// `store` is set to the throwaway one before the farm opens.
fn farm_args(args: &PreflightArgs) -> FarmArgs {
    FarmArgs {
        store: String::new(),
        cache: args.cache.clone(),
        git_cache: args.git_cache.clone(),
        report_dir: args.report.clone(),
        sandbox: args.sandbox.clone(),
        jobs: args.jobs,
        timeout: args.timeout,
        memory: 4096,
        disk_limit: crate::cli::DISK_LIMIT_MIB,
        max_module_size: crate::cli::MAX_MODULE_MIB,
        max_modules: crate::cli::MAX_MODULES,
        max_log: crate::cli::MAX_LOG_KIB,
        rebuild: false,
        boot_test: !args.no_boot_test,
        boot_timeout: args.boot_timeout,
        sign_key: None,
        sign_cert: None,
        json: args.json,
    }
}

/// One line per kernel, and for each failure its first error and where the driver last passed.
fn verdicts(report: &PreflightReport) -> String {
    let s = &report.summary;
    let mut out = format!(
        "preflight ({}): {} kernel(s), {} passed, {} failed{}\n",
        report.suites.join(", "),
        s.kernels,
        s.passed,
        s.failed,
        if report.boot_test {
            ", boot-tested"
        } else {
            ", not boot-tested"
        }
    );
    for k in &report.kernels {
        let what = match k.result {
            Verdict::Passed => "passed",
            Verdict::Failed => "FAILED",
            Verdict::Excluded => "excluded",
        };
        out.push_str(&format!(
            "  {what:8} {} {} {}{}\n",
            printable(&k.driver),
            k.kernel.arch,
            printable(&k.kernel.to_string()),
            k.class
                .as_deref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default()
        ));
        if let (Some(line), Some(from)) = (&k.first_error, k.first_error_in) {
            out.push_str(&format!("           first error ({from}): {line}\n"));
        }
        if let Some(newest) = &k.newest_passed {
            let newest = newest.as_ref().map_or_else(
                || "none in this run".to_string(),
                |n| printable(&n.to_string()).into_owned(),
            );
            out.push_str(&format!("           newest that passed: {newest}\n"));
        }
    }
    out
}
