use anyhow::Context;
use kmf_farm::plan::{PlanOptions, PLAN_FILE};
use kmf_matrix::DiffOptions;

use super::build::{kernel_lists, load_drivers, matrix_for, open_planning_farm, run_indexes};
use super::{write_output, Outcome};
use crate::cli::PlanArgs;

pub async fn plan(args: PlanArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.shrink_threshold) {
        anyhow::bail!(
            "--shrink-threshold must be a fraction between 0 and 1, not {}",
            args.shrink_threshold
        );
    }
    if !args.no_prefetch {
        anyhow::bail!(
            "planning with prefetch (header packages, builders and sources gathered into the plan for offline \
             workers) is not available yet; pass --no-prefetch for workers that reach the mirrors themselves"
        );
    }
    let drivers = load_drivers(&args.projects, args.source.driver_version.as_deref())?;
    let indexes = run_indexes(&args.source, &args.farm);
    let lists = kernel_lists(&args.source, &args.farm, indexes.as_deref())
        .await?
        .context("plan needs the current kernels: pass --kernels FILE|URL or --crawl")?;
    let mut work = Vec::new();
    for driver in drivers {
        let entries = matrix_for(&lists, &args.source, &driver.version)?;
        work.push((driver, entries));
    }
    let farm = open_planning_farm(&args.farm, &args.source, indexes)?;
    let options = PlanOptions {
        shard_size: args.shard_size,
        redundancy: args.redundancy,
        prefetch: !args.no_prefetch,
    };
    let diff = DiffOptions {
        shrink_threshold: args.shrink_threshold,
    };
    let plan = kmf_farm::plan::plan(&farm, work, &diff, options).await?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_output(Some(&dir.join(PLAN_FILE)), &plan.to_json())?;
    }
    if args.github_matrix {
        write_output(
            None,
            &(serde_json::to_string(&plan.github_matrices())? + "\n"),
        )?;
    } else if args.farm.json {
        write_output(
            None,
            &(serde_json::to_string_pretty(&plan.summary())? + "\n"),
        )?;
    } else {
        let up_to_date: usize = plan.drivers.iter().map(|d| d.up_to_date.len()).sum();
        eprintln!(
            "plan {}: {} variant(s) to build in {} shard(s), {} up to date",
            plan.id,
            plan.variants.len(),
            plan.shards.len(),
            up_to_date
        );
        for s in &plan.shards {
            eprintln!(
                "  shard {:>4}  {:<8} runner {:<8} {:<32} {} variant(s){}",
                s.index,
                s.arch.to_string(),
                s.runner,
                s.group,
                s.variants.len(),
                if plan.options.redundancy > 1 {
                    format!(" (copy {})", s.copy)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(Outcome::Success)
}
