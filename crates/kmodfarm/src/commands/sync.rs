use anyhow::Context;
use kmf_farm::sync::{DriverSync, SyncOptions};
use kmf_matrix::DiffOptions;

use super::build::{
    cache_dir, kernel_lists, load_drivers, matrix_for, open_farm, report, run_indexes,
};
use super::{write_output, Outcome};
use crate::cli::SyncArgs;

pub async fn sync(args: SyncArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.shrink_threshold) {
        anyhow::bail!(
            "--shrink-threshold must be a fraction between 0 and 1, not {}",
            args.shrink_threshold
        );
    }
    let drivers = load_drivers(
        &args.projects,
        args.source.driver_version.as_deref(),
        &cache_dir(&args.farm),
        args.farm.git_cache.as_deref(),
        Some(&args.farm.sandbox),
    )
    .await?;
    let indexes = run_indexes(&args.source, &args.farm)?;
    let lists = kernel_lists(&args.source, &args.farm, indexes.as_deref())
        .await?
        .context("sync needs the current kernels: pass --kernels FILE|URL or --crawl")?;
    let mut work = Vec::new();
    for driver in drivers {
        let entries = matrix_for(&lists, &args.source, &driver.version)?;
        work.push((driver, entries));
    }
    let variants = work.iter().map(|(_, e)| e.len()).sum();
    let (farm, ui) = open_farm(&args.farm, &args.source, variants, indexes)?;
    let opts = SyncOptions {
        diff: DiffOptions {
            shrink_threshold: args.shrink_threshold,
        },
        prune: args.prune,
    };
    let (summaries, results) = kmf_farm::run::sync(&farm, work, &opts, ui.clone()).await?;
    ui.finish();

    let sync_json = serde_json::to_string_pretty(&summaries)? + "\n";
    write_output(Some(&args.farm.report_dir.join("sync.json")), &sync_json)?;
    let outcome = report(&args.farm, &results)?;
    if !args.farm.json {
        for s in &summaries {
            eprint!("{}", summary(s));
        }
    }
    Ok(outcome)
}

fn summary(s: &DriverSync) -> String {
    let d = &s.diff;
    let mut out = format!(
        "{} {}: matrix {} -> {} entries (+{} added, ~{} modified, -{} removed, {} kept in held groups, {} \
         unchanged); built {}, up to date {}, excluded {}, failed {}; published {} entries to {}\n",
        s.driver,
        s.driver_version,
        s.previous,
        s.generated,
        d.added,
        d.modified,
        d.removed,
        d.kept,
        d.unchanged,
        s.built,
        s.up_to_date,
        s.excluded,
        s.failed,
        s.published,
        s.matrix
    );
    for w in &s.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    if s.pruned {
        for p in &s.removed_prefixes {
            out.push_str(&format!("  deleted {p}\n"));
        }
    }
    out
}
