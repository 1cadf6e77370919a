//! `build` and `sync` on one machine: the same three steps as a distributed run, in one process.
//!
//! [`plan`](crate::plan::plan) decides what to build (variants whose keys match the store's record are up
//! to date, nothing downloaded), [`Farm::work_one`] builds each remaining variant into a bundle in a private
//! directory under the cache, and the [`Publisher`] re-verifies that bundle, signs, boot-tests and publishes
//! it, exactly as `kmodfarm publish` does with bundles from other machines. A variant is published as soon
//! as its own bundle is written (the steps are chained per variant, `jobs` variants at a time), and the
//! matrices last. So a store filled by `build`/`sync` and one filled by `plan`, `work` and `publish` hold the
//! same objects, and the checks a fleet relies on run on every path.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kmf_build::workdir::PrivateDir;
use kmf_types::MatrixEntry;

use crate::bundle::BundleSink;
use crate::plan::{PlanError, PlanOptions};
use crate::publish::{publish_results, PublishOptions, Publisher};
use crate::sync::{DriverSync, SyncOptions};
use crate::{Driver, Farm, FarmReporter, Stage, VariantResult, WorkJob};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    #[error("two projects are both named `{0}`: a driver's name is its place in the store")]
    DuplicateDriver(String),
    #[error("the run's bundle directory: {0}")]
    Bundles(#[from] kmf_build::BuildError),
}

/// Builds and publishes every (driver, variant) job that the store does not already have with the same
/// keys; the variants' records only, no matrix. Results come back in input order.
pub async fn build(
    farm: &Farm,
    jobs: Vec<(Arc<Driver>, MatrixEntry)>,
    reporter: Arc<dyn FarmReporter>,
) -> Result<Vec<VariantResult>, RunError> {
    let mut drivers: Vec<(Arc<Driver>, Vec<MatrixEntry>)> = Vec::new();
    for (driver, entry) in jobs {
        match drivers.iter_mut().find(|(d, _)| d.name == driver.name) {
            Some((d, entries)) if Arc::ptr_eq(d, &driver) => entries.push(entry),
            Some(_) => return Err(RunError::DuplicateDriver(driver.name.clone())),
            None => drivers.push((driver, vec![entry])),
        }
    }
    let opts = PublishOptions {
        sync: SyncOptions::default(),
        matrices: false,
    };
    let (_, results) = run(farm, drivers, &opts, reporter).await?;
    Ok(results)
}

/// The nightly job: diff each driver's fresh matrix against the published one, build what the store lacks,
/// publish the variants and then the matrices. Returns per-driver summaries and every variant's result.
pub async fn sync(
    farm: &Farm,
    drivers: Vec<(Arc<Driver>, Vec<MatrixEntry>)>,
    opts: &SyncOptions,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(Vec<DriverSync>, Vec<VariantResult>), RunError> {
    for (i, (d, _)) in drivers.iter().enumerate() {
        if drivers[..i].iter().any(|(o, _)| o.name == d.name) {
            return Err(RunError::DuplicateDriver(d.name.clone()));
        }
    }
    let opts = PublishOptions {
        sync: opts.clone(),
        matrices: true,
    };
    run(farm, drivers, &opts, reporter).await
}

async fn run(
    farm: &Farm,
    drivers: Vec<(Arc<Driver>, Vec<MatrixEntry>)>,
    opts: &PublishOptions,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(Vec<DriverSync>, Vec<VariantResult>), RunError> {
    // Results are reported in the order the caller listed the variants.
    let order: HashMap<String, usize> = drivers
        .iter()
        .flat_map(|(d, entries)| {
            entries
                .iter()
                .map(move |e| kmf_types::published::variant_prefix(&d.name, &e.output))
        })
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let by_name: HashMap<String, Arc<Driver>> = drivers
        .iter()
        .map(|(d, _)| (d.name.clone(), d.clone()))
        .collect();
    let options = PlanOptions {
        prefetch: false,
        signing_cert: farm.signing().map(|k| k.cert_sha256.clone()),
        ..PlanOptions::default()
    };
    let plan = crate::plan::plan(farm, drivers, &opts.sync.diff, options, None).await?;
    let bundles = PrivateDir::create(&farm.cache_dir().join("runs"))?;
    let publisher = Publisher {
        farm,
        plan: &plan,
        bundles: bundles.path(),
        drivers: by_name.clone(),
        in_process: true,
    };
    let results: Vec<VariantResult> = futures::stream::iter(&plan.variants)
        .map(|variant| {
            let (reporter, publisher, by_name) = (reporter.clone(), &publisher, &by_name);
            async move {
                let job = WorkJob {
                    driver: by_name[&variant.driver].clone(),
                    entry: variant.entry.clone(),
                    sink: BundleSink {
                        dir: publisher.bundles.to_path_buf(),
                        plan: publisher.plan.id.clone(),
                        shard: variant.shards[0],
                    },
                    boot: false,
                };
                let steps = Steps(reporter.as_ref());
                let worked = farm.work_one(&job, &steps).await;
                let mut r = publisher.publish_variant(variant, &steps).await;
                // One variant's time is its build's and its publication's (a failure keeps the stages
                // it went through).
                r.durations = worked.durations.then(&r.durations);
                reporter.finished(&r);
                r
            }
        })
        .buffered(farm.jobs())
        .collect()
        .await;
    let (summaries, mut all) = publish_results(&publisher, results, opts, reporter.clone()).await?;
    drop(bundles);
    // Up-to-date variants and exclusions already in the store were decided at plan time: their lines (a
    // variant booted now had its own).
    for r in all.iter().filter(|r| {
        (r.status == crate::Status::UpToDate && r.boot_log.is_none()) || r.is_excluded()
    }) {
        if !plan.variants.iter().any(|v| v.id == r.store_prefix) {
            reporter.finished(r);
        }
    }
    all.sort_by_key(|r| order.get(&r.store_prefix).copied().unwrap_or(usize::MAX));
    Ok((summaries, all))
}

/// The reporter of one in-process variant across its two steps: it starts with the work and finishes once,
/// after publishing.
struct Steps<'a>(&'a dyn FarmReporter);

impl FarmReporter for Steps<'_> {
    fn started(&self, label: &str) {
        self.0.started(label)
    }
    fn stage(&self, label: &str, stage: Stage) {
        self.0.stage(label, stage)
    }
}
