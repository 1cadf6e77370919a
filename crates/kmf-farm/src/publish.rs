//! Publishing a plan from the workers' bundles (`kmodfarm publish`): the trusted step, which alone holds the
//! store's write access and the signing key.
//!
//! For every variant of the plan, each of its copies' bundles is checked from scratch
//! ([`crate::bundle::verify_bundle`]); a variant is published only when every copy verified and, with
//! redundancy, all copies carry byte-identical modules. It is then signed (the key exists only here, and the
//! kernel tree's `sign-file` comes from the verified header packages), and published as `build` publishes:
//! modules, logs, `SHA256SUMS` and provenance into the build's directory, `metadata.json` last; then each
//! driver's matrix and index. Variants without a usable bundle stay out of the matrix (an earlier entry of
//! theirs stays), so the next plan builds them again. A variant whose record in the store already has the
//! same build key and modules is left as it is: publishing the same bundles twice changes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kmf_build::untrusted::create_nofollow;
use kmf_report::{Inputs, Status, VariantResult};
use kmf_types::published::{
    artifacts_dir, excluded_key, ExcludedVariant, PublishedModule, PublishedVariant,
};
use kmf_types::FailureClass;

use crate::bundle::{verify_bundle, BundleVerdict, VerifiedBundle};
use crate::plan::{Plan, PlannedDriver, PlannedVariant};
use crate::sync::{DriverSync, SyncError, SyncOptions};
use crate::{keys, Driver, Farm, FarmReporter};

type Failure = (FailureClass, String);
use crate::farm::Stop;

/// How a plan is published.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub sync: SyncOptions,
    /// Write each driver's matrix and index after its variants (`publish`, `sync`); `build` writes the
    /// variants' records only.
    pub matrices: bool,
}

/// The publisher of one plan: the farm (store, signing key, boot tester), the plan, where the bundles are,
/// and the driver projects where it has them (a boot test runs the project's check script).
pub struct Publisher<'a> {
    pub farm: &'a Farm,
    pub plan: &'a Plan,
    pub bundles: &'a Path,
    pub drivers: HashMap<String, Arc<Driver>>,
    /// The bundles were written by this process (`build`, `sync`): a worker's failure is reported in its own
    /// words, without naming a shard.
    pub in_process: bool,
}

/// Publishes `plan` from the bundles; returns per-driver summaries and every variant's result (the plan's
/// up-to-date variants included, as up to date).
pub async fn publish_plan(
    publisher: &Publisher<'_>,
    opts: &PublishOptions,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(Vec<DriverSync>, Vec<VariantResult>), SyncError> {
    let results: Vec<VariantResult> = futures::stream::iter(&publisher.plan.variants)
        .map(|variant| {
            let reporter = reporter.clone();
            async move {
                reporter.started(&variant_label(publisher.plan, variant));
                let r = publisher.publish_variant(variant, reporter.as_ref()).await;
                reporter.finished(&r);
                r
            }
        })
        .buffered(publish_width(publisher.farm))
        .collect()
        .await;
    publish_results(publisher.farm, publisher.plan, results, opts).await
}

/// Variants published at once. Re-verifying a bundle takes little CPU and writing it to a store is
/// round trips, so several per core; a boot test is a VM per variant, so one per job then.
fn publish_width(farm: &Farm) -> usize {
    match farm.boot() {
        Some(_) => farm.jobs(),
        None => (farm.jobs() * 4).max(8),
    }
}

/// After the variants: each driver's matrix (unless `opts.matrices` is off) from `results`, one per
/// variant of the plan in its order, and the up-to-date variants. Returns the summaries and all results.
pub(crate) async fn publish_results(
    farm: &Farm,
    plan: &Plan,
    results: Vec<VariantResult>,
    opts: &PublishOptions,
) -> Result<(Vec<DriverSync>, Vec<VariantResult>), SyncError> {
    let store = farm.store();
    let mut summaries = Vec::new();
    let mut all = Vec::new();
    for planned in &plan.drivers {
        let driver = Arc::new(Driver {
            name: planned.name.clone(),
            version: planned.version.clone(),
            project: Default::default(),
            source_sha256: planned.source_sha256.clone(),
            git: planned.git.clone(),
        });
        let mut generated = Vec::new();
        let mut mine = Vec::new();
        for e in &planned.up_to_date {
            generated.push(e.clone());
            mine.push(up_to_date_result(planned, e));
        }
        for x in &planned.excluded {
            generated.push(x.entry.clone());
            let mut r = VariantResult::started(&planned.name, &planned.version, x.entry.clone());
            r.status = Status::Excluded {
                reason: x.reason.clone(),
            };
            mine.push(r);
        }
        for (v, r) in plan.variants.iter().zip(&results) {
            if v.driver == planned.name {
                generated.push(v.entry.clone());
                mine.push(r.clone());
            }
        }
        if opts.matrices {
            let key = planned.matrix_key.clone();
            let previous = crate::sync::published_matrix(store.as_ref(), &key).await?;
            let diff = kmf_matrix::diff(&previous, &generated, &opts.sync.diff);
            let summary = crate::sync::publish_matrix(
                store.as_ref(),
                crate::sync::Plan {
                    driver,
                    key,
                    previous,
                    generated,
                    diff,
                },
                &mine,
                &opts.sync,
            )
            .await?;
            summaries.push(summary);
        }
        all.extend(mine);
    }
    Ok((summaries, all))
}

fn up_to_date_result(driver: &PlannedDriver, entry: &kmf_types::MatrixEntry) -> VariantResult {
    let mut r = VariantResult::started(&driver.name, &driver.version, entry.clone());
    r.status = Status::UpToDate;
    r.builder = entry.builder.clone();
    r.build_key = entry.buildkey.clone();
    r
}

fn planned_driver<'p>(plan: &'p Plan, variant: &PlannedVariant) -> &'p PlannedDriver {
    plan.drivers
        .iter()
        .find(|d| d.name == variant.driver)
        .expect("a plan names the driver of each variant")
}

fn variant_label(plan: &Plan, variant: &PlannedVariant) -> String {
    let driver = planned_driver(plan, variant);
    VariantResult::started(&driver.name, &driver.version, variant.entry.clone()).label
}

impl Publisher<'_> {
    /// Verifies, signs, boot-tests (when the farm boot-tests) and publishes one variant of the plan.
    pub async fn publish_variant(
        &self,
        variant: &PlannedVariant,
        reporter: &dyn FarmReporter,
    ) -> VariantResult {
        let start = Instant::now();
        let driver = planned_driver(self.plan, variant);
        let mut result =
            VariantResult::started(&driver.name, &driver.version, variant.entry.clone());
        match self
            .publish_checked(driver, variant, &mut result, reporter)
            .await
        {
            Ok(()) => {}
            Err(Stop::Failed(class, message)) => result.status = Status::Failed { class, message },
            Err(Stop::Excluded(reason)) => result.status = Status::Excluded { reason },
        }
        result.durations.total_secs = start.elapsed().as_secs_f64();
        result
    }

    /// Writes the variant's exclusion record, so that runs with the same inputs skip it.
    async fn record_exclusion(
        &self,
        driver: &PlannedDriver,
        variant: &PlannedVariant,
        reason: &str,
        log_path: &Path,
    ) -> Result<(), Failure> {
        let record = ExcludedVariant {
            schema: crate::RESULTS_SCHEMA,
            kmodfarm_version: env!("CARGO_PKG_VERSION").into(),
            driver: driver.name.clone(),
            driver_version: driver.version.clone(),
            variant: variant.entry.clone(),
            kernel_release: variant.kernel_release.clone(),
            input_key: self.published_input_key(variant),
            reason: reason.to_string(),
            decided_at: crate::farm::now_rfc3339(),
        };
        let key = excluded_key(&variant.id);
        let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
        self.farm
            .store()
            .put_bytes(&key, &json)
            .await
            .map_err(|e| (FailureClass::Internal, format!("writing {key}: {e}")))?;
        note(log_path, &format!("publisher: exclusion recorded in {key}"));
        Ok(())
    }

    /// The input key a published record of `variant` carries: with the signing certificate when this
    /// publisher signs and the plan was made without it.
    fn published_input_key(&self, variant: &PlannedVariant) -> String {
        match (self.farm.signing(), &self.plan.options.signing_cert) {
            (Some(key), None) => keys::signed_input_key(&variant.input_key, &key.cert_sha256),
            _ => variant.input_key.clone(),
        }
    }

    async fn publish_checked(
        &self,
        driver: &PlannedDriver,
        variant: &PlannedVariant,
        result: &mut VariantResult,
        reporter: &dyn FarmReporter,
    ) -> Result<(), Stop> {
        let (farm, plan) = (self.farm, self.plan);
        let log_dir = farm.log_dir(&variant.id)?;
        let log_path = log_dir.join("build.log");
        result.log = Some(log_path.clone());
        reporter.stage(&result.label, crate::Stage::Verify);
        let staging = farm.cache_dir().join("staging");
        let limits = farm.output_limits().clone();
        let verdicts: Vec<(usize, BundleVerdict)> = {
            let (plan, variant, expected, bundles) = (
                plan.clone(),
                variant.clone(),
                driver.modules.clone(),
                self.bundles.to_path_buf(),
            );
            tokio::task::spawn_blocking(move || {
                variant
                    .shards
                    .iter()
                    .map(|&s| {
                        let v = verify_bundle(
                            &bundles, &plan, &variant, s, &expected, &staging, &limits,
                        );
                        (s, v)
                    })
                    .collect()
            })
            .await
            .map_err(|e| (FailureClass::Internal, e.to_string()))?
        };
        let bundle = match decide(&verdicts, &log_path, self.in_process) {
            Ok(b) => b,
            Err(Stop::Excluded(reason)) => {
                // Recorded for later runs when this process decided it, or every one of several
                // workers did; a single remote worker's word is reported but decided again next time.
                if self.in_process || variant.shards.len() > 1 {
                    self.record_exclusion(driver, variant, &reason, &log_path)
                        .await?;
                } else {
                    note(
                        &log_path,
                        "publisher: one worker's exclusion is not recorded; the next run decides again",
                    );
                }
                return Err(Stop::Excluded(reason));
            }
            Err(stop) => return Err(stop),
        };

        copy_log(bundle.log.as_deref(), &log_path);
        note(
            &log_path,
            &format!(
                "publisher: bundle of plan {} re-verified ({} module(s): SHA256, ELF machine, vermagic {}){}",
                plan.id,
                bundle.modules.len(),
                bundle.kernel_release,
                if verdicts.len() > 1 {
                    format!(", {} copies byte-identical", verdicts.len())
                } else {
                    String::new()
                }
            ),
        );
        let mut boot_log = bundle.boot_log.as_ref().map(|b| {
            let dest = log_dir.join("boot.log");
            copy_log(Some(b), &dest);
            dest
        });
        result.boot_log = boot_log.clone();
        result.kernel_release = Some(bundle.kernel_release.clone());
        result.builder = Some(bundle.toolchain.builder_identity.clone());
        let record = &bundle.record;
        result.durations = record.durations.clone();

        let mut modules = bundle.modules.clone();
        let (input_key, signature) = match farm.signing() {
            Some(key) => {
                // The key is used here only: the kernel tree's sign-file from the verified header packages.
                let prepared = farm
                    .prepare(&variant.entry, result, &log_path, reporter)
                    .await?;
                reporter.stage(&result.label, crate::Stage::Sign);
                let signature = farm.sign(key, &prepared, &mut modules, &log_path).await?;
                // A plan made with the certificate already holds signed input keys.
                let input_key = match &plan.options.signing_cert {
                    Some(_) => variant.input_key.clone(),
                    None => keys::signed_input_key(&variant.input_key, &key.cert_sha256),
                };
                (input_key, Some(signature))
            }
            None => (variant.input_key.clone(), None),
        };
        let build_key = keys::build_key(&input_key, &bundle.toolchain.builder_identity);
        result.build_key = Some(build_key.clone());
        result.modules = modules.clone();
        // Preparing the signing tree timed its own steps: the record's are the build's.
        result.durations = record.durations.clone();

        let mut boot = record.boot.clone();
        if let Some(tester) = farm.boot() {
            // The modules as they will be published (signed, where they are) are what boots.
            reporter.stage(&result.label, crate::Stage::Boot);
            let project = self.drivers.get(&driver.name).cloned().unwrap_or_else(|| {
                note(
                    &log_path,
                    "publisher: the driver's project is not at hand; booting without its check script",
                );
                Arc::new(Driver {
                    name: driver.name.clone(),
                    version: driver.version.clone(),
                    project: Default::default(),
                    source_sha256: driver.source_sha256.clone(),
                    git: driver.git.clone(),
                })
            });
            let release = bundle.kernel_release.clone();
            boot = Some(
                farm.boot_test(tester, &project, result, &release, &log_dir, &log_path)
                    .await?,
            );
            boot_log = result.boot_log.clone();
        }

        if !farm.rebuild() && farm.already_published(&variant.id, &build_key).await {
            note(
                &log_path,
                "publisher: the store already has this build; nothing written",
            );
            result.status = Status::UpToDate;
            return Ok(());
        }
        reporter.stage(&result.label, crate::Stage::Publish);
        let t = Instant::now();
        let record = PublishedVariant {
            schema: crate::RESULTS_SCHEMA,
            artifacts: Some(artifacts_dir(&build_key)),
            kmodfarm_version: env!("CARGO_PKG_VERSION").into(),
            driver: driver.name.clone(),
            driver_version: driver.version.clone(),
            result: "success".into(),
            variant: variant.entry.clone(),
            kernel_release: bundle.kernel_release.clone(),
            modules: modules.iter().map(PublishedModule::from).collect(),
            toolchain: bundle.toolchain.clone(),
            inputs: Inputs {
                source_sha256: driver.source_sha256.clone(),
                packages: record.packages.clone(),
                git: driver.git.clone(),
            },
            build_key,
            input_key,
            boot,
            signature,
            durations: result.durations.clone(),
            built_at: record.built_at.clone(),
            log: "build.log".into(),
            delivery: driver.delivery.clone(),
        };
        farm.publish(
            &variant.id,
            &modules,
            &bundle.firmware,
            &log_path,
            boot_log.as_deref(),
            &record,
        )
        .await
        .map_err(|e| (FailureClass::Internal, e.to_string()))?;
        result.durations.publish_secs = t.elapsed().as_secs_f64();
        Ok(())
    }
}

/// The bundle to publish, when every copy verified and all agree; otherwise why not (refusals first: they
/// are what an operator must look at).
fn decide<'a>(
    verdicts: &'a [(usize, BundleVerdict)],
    log_path: &Path,
    in_process: bool,
) -> Result<&'a VerifiedBundle, Stop> {
    let fail = |class: FailureClass, message: String| {
        note(log_path, &format!("publisher: {class}: {message}"));
        Err(Stop::Failed(class, message))
    };
    for (shard, v) in verdicts {
        if let BundleVerdict::Refused(why) = v {
            return fail(
                FailureClass::BundleRefused,
                format!("the bundle from shard {shard} is refused: {why}"),
            );
        }
    }
    for (shard, v) in verdicts {
        if let BundleVerdict::Failed {
            class,
            message,
            log,
            ..
        } = v
        {
            copy_log(log.as_deref(), log_path);
            if in_process {
                // The log already says it; the message is the build's own.
                return Err(Stop::Failed(*class, message.clone()));
            }
            return fail(*class, format!("on the worker of shard {shard}: {message}"));
        }
    }
    // An exclusion stands only when every copy reports it, for the same reason: with redundancy, one
    // worker cannot talk the others' modules out of the store.
    let excluded: Vec<(usize, &String, &Option<std::path::PathBuf>)> = verdicts
        .iter()
        .filter_map(|(s, v)| match v {
            BundleVerdict::Excluded { reason, log, .. } => Some((*s, reason, log)),
            _ => None,
        })
        .collect();
    if let Some((first_shard, reason, log)) = excluded.first() {
        if let Some((shard, other)) = verdicts.iter().find_map(|(s, v)| match v {
            BundleVerdict::Excluded { reason: r, .. } if r == *reason => None,
            BundleVerdict::Excluded { reason: r, .. } => Some((*s, r.as_str())),
            BundleVerdict::Verified(_) => Some((*s, "built")),
            _ => None,
        }) {
            return fail(
                FailureClass::BundleRefused,
                format!(
                    "the copies disagree: shard {first_shard} found the kernel excluded ({reason}), shard \
                     {shard} says {other}"
                ),
            );
        }
        copy_log(log.as_deref(), log_path);
        note(log_path, &format!("publisher: excluded: {reason}"));
        return Err(Stop::Excluded((*reason).clone()));
    }
    for (shard, v) in verdicts {
        if let BundleVerdict::Missing = v {
            return fail(
                FailureClass::BundleMissing,
                format!("no complete bundle from shard {shard}"),
            );
        }
    }
    let mut verified: Vec<(usize, &VerifiedBundle)> = verdicts
        .iter()
        .filter_map(|(s, v)| match v {
            BundleVerdict::Verified(b) => Some((*s, b.as_ref())),
            _ => None,
        })
        .collect();
    let (first_shard, first) = verified.remove(0);
    let digests = |b: &VerifiedBundle| {
        let mut d: Vec<(String, String, Option<String>)> = b
            .modules
            .iter()
            .map(|m| (m.file_name.clone(), m.sha256.clone(), m.destination.clone()))
            .collect();
        d.sort();
        d
    };
    for (shard, other) in &verified {
        if digests(other) != digests(first) {
            return fail(
                FailureClass::BundleRefused,
                format!(
                    "the copies disagree: shard {first_shard} built {:?}, shard {shard} built {:?}; nothing is \
                     published unless every worker built the same bytes",
                    digests(first),
                    digests(other)
                ),
            );
        }
    }
    Ok(first)
}

fn copy_log(from: Option<&Path>, to: &Path) {
    let Some(from) = from else { return };
    if let (Ok(mut src), Ok(mut dest)) = (std::fs::File::open(from), create_nofollow(to)) {
        let _ = std::io::copy(&mut src, &mut dest);
    }
}

fn note(log: &Path, msg: &str) {
    use std::io::Write;
    if let Ok(mut f) = kmf_build::untrusted::append_nofollow(log) {
        let _ = writeln!(f, "# kmodfarm: {msg}");
    }
}
