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
use kmf_build::workdir::PrivateDir;
use kmf_report::{Inputs, Status, VariantResult};
use kmf_types::names::printable;
use kmf_types::published::{
    artifacts_dir, excluded_key, ExcludedVariant, InputPackage, PublishedModule, PublishedVariant,
    WorkerClaims,
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
    publish_results(publisher, results, opts, reporter).await
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
    publisher: &Publisher<'_>,
    results: Vec<VariantResult>,
    opts: &PublishOptions,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(Vec<DriverSync>, Vec<VariantResult>), SyncError> {
    let (farm, plan) = (publisher.farm, publisher.plan);
    let booted = publisher.boot_published(reporter).await;
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
            let prefix = kmf_types::published::variant_prefix(&planned.name, &e.output);
            mine.push(match booted.get(&prefix) {
                Some(r) => r.clone(),
                None => up_to_date_result(planned, e),
            });
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
        result.durations.close(start.elapsed().as_secs_f64());
        crate::preflight::note_first_error(&mut result);
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
                "publisher: bundle of plan {} re-verified ({} module(s): SHA256, ELF machine, .modinfo name, \
                 vermagic {}){}",
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
        let worker = &bundle.record;

        // The kernel tree is needed to sign (its sign-file), and is how the publisher learns the inputs and
        // the builder itself when the plan does not carry them.
        let prepared = if farm.signing().is_some() || (!self.in_process && !plan.options.prefetch) {
            Some(
                farm.prepare(&variant.entry, result, &log_path, reporter)
                    .await?,
            )
        } else {
            None
        };
        let established = match (self.in_process, &prepared) {
            // The worker is this process: its record is the run's own.
            (true, _) => Established {
                by: "this run",
                toolchain: bundle.toolchain.clone(),
                packages: worker.packages.clone(),
            },
            (false, Some(prepared)) => Established {
                by: "the publisher's",
                toolchain: prepared.toolchain(""),
                packages: prepared.input_packages(),
            },
            (false, None) => established_by_plan(plan, variant)
                .map_err(|m| refuse(&log_path, &format!("the plan cannot vouch for it: {m}")))?,
        };
        if !self.in_process {
            if let Some(prepared) = &prepared {
                if prepared.tree.release != bundle.kernel_release {
                    return Err(refuse(
                        &log_path,
                        &format!(
                            "the modules are for {}, the headers the publisher fetched are {}",
                            bundle.kernel_release, prepared.tree.release
                        ),
                    ));
                }
            }
            for (shard, v) in &verdicts {
                if let BundleVerdict::Verified(copy) = v {
                    established.check_claims(&copy.record).map_err(|why| {
                        refuse(
                            &log_path,
                            &format!("the bundle from shard {shard} is refused: {why}"),
                        )
                    })?;
                }
            }
        }
        result.builder = Some(established.toolchain.builder_identity.clone());

        let mut modules = bundle.modules.clone();
        let (input_key, signature) = match (farm.signing(), &prepared) {
            (Some(key), Some(prepared)) => {
                // The key is used here only: the kernel tree's sign-file from the verified header packages.
                reporter.stage(&result.label, crate::Stage::Sign);
                let signature = farm.sign(key, prepared, &mut modules, &log_path).await?;
                // A plan made with the certificate already holds signed input keys.
                let input_key = match &plan.options.signing_cert {
                    Some(_) => variant.input_key.clone(),
                    None => keys::signed_input_key(&variant.input_key, &key.cert_sha256),
                };
                (input_key, Some(signature))
            }
            _ => (variant.input_key.clone(), None),
        };
        let build_key = keys::build_key(&input_key, &established.toolchain.builder_identity);
        result.build_key = Some(build_key.clone());
        result.modules = modules.clone();

        // A boot counts when the publisher ran it; a worker's word that it booted is only a claim.
        let mut boot = if self.in_process {
            worker.boot.clone()
        } else {
            None
        };
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
            toolchain: established.toolchain,
            inputs: Inputs {
                source_sha256: driver.source_sha256.clone(),
                packages: established.packages,
                git: driver.git.clone(),
            },
            build_key,
            input_key,
            boot,
            signature,
            // The build's stages and this publisher's (its preparation to sign, its boot): in one process,
            // all are this run's; from a worker's bundle, only the publisher's own.
            durations: {
                let mut d = if self.in_process {
                    worker.durations.then(&result.durations)
                } else {
                    result.durations.clone()
                };
                d.close(0.0);
                d
            },
            built_at: if self.in_process {
                worker.built_at.clone()
            } else {
                crate::farm::now_rfc3339()
            },
            log: "build.log".into(),
            delivery: driver.delivery.clone(),
            worker_claims: (!self.in_process).then(|| worker_claims(worker)),
        };
        note(
            &log_path,
            &format!(
                "publisher: inputs and builder as {} ({}); the worker's sandbox, timings and boot are \
                 recorded as its claims",
                if self.in_process { "built" } else { established.by },
                record.toolchain.builder_identity
            ),
        );
        result.input_warnings = record
            .inputs
            .packages
            .iter()
            .filter_map(|p| p.proof_warning())
            .collect();
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

impl Publisher<'_> {
    /// Boot-tests the variants the store already has without a boot record (`--boot-test` over what an
    /// earlier run published): their published modules, checked against the record's digests and
    /// re-verified, not a new build. A boot that passes is added to the record, which is replaced in one
    /// write; a second identical run then finds nothing to do. Results by store prefix.
    async fn boot_published(
        &self,
        reporter: Arc<dyn FarmReporter>,
    ) -> HashMap<String, VariantResult> {
        if self.farm.boot().is_none() {
            return HashMap::new();
        }
        let unbooted: Vec<(&PlannedDriver, &kmf_types::MatrixEntry)> = self
            .plan
            .drivers
            .iter()
            .flat_map(|d| d.unbooted.iter().map(move |e| (d, e)))
            .collect();
        futures::stream::iter(unbooted)
            .map(|(driver, entry)| {
                let reporter = reporter.clone();
                async move {
                    let mut r = up_to_date_result(driver, entry);
                    reporter.started(&r.label);
                    let start = Instant::now();
                    if let Err((class, message)) = self
                        .boot_published_one(driver, &mut r, reporter.as_ref())
                        .await
                    {
                        r.status = Status::Failed { class, message };
                    }
                    r.durations.close(start.elapsed().as_secs_f64());
                    crate::preflight::note_first_error(&mut r);
                    reporter.finished(&r);
                    (r.store_prefix.clone(), r)
                }
            })
            .buffer_unordered(self.farm.jobs())
            .collect()
            .await
    }

    async fn boot_published_one(
        &self,
        driver: &PlannedDriver,
        result: &mut VariantResult,
        reporter: &dyn FarmReporter,
    ) -> Result<(), Failure> {
        let farm = self.farm;
        let tester = farm.boot().expect("only called when the farm boot-tests");
        let store = farm.store();
        let prefix = result.store_prefix.clone();
        let internal = |m: String| (FailureClass::Internal, m);
        let key = kmf_types::published::metadata_key(&prefix);
        let bytes = store
            .get_bytes(&key)
            .await
            .map_err(|e| internal(format!("reading {key}: {e}")))?
            .ok_or_else(|| internal(format!("{key} is gone from the store")))?;
        let mut record =
            PublishedVariant::parse(&bytes).map_err(|e| internal(format!("{key}: {e}")))?;
        let log_dir = farm.log_dir(&prefix)?;
        let log_path = log_dir.join("build.log");
        result.log = Some(log_path.clone());
        note(
            &log_path,
            &format!(
                "publisher: {prefix} is published (build key {}) without a boot test: booting its published modules",
                record.build_key
            ),
        );
        reporter.stage(&result.label, crate::Stage::Verify);
        let staging = PrivateDir::create(&farm.cache_dir().join("staging"))
            .map_err(|e| internal(e.to_string()))?;
        let mut modules = Vec::new();
        for m in &record.modules {
            let object = record.object_key(&prefix, &m.file_name);
            let bytes = store
                .get_bytes(&object)
                .await
                .map_err(|e| internal(format!("reading {object}: {e}")))?
                .ok_or_else(|| {
                    (
                        FailureClass::VerificationFailed,
                        format!("{object} is missing from the store"),
                    )
                })?;
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if sha256 != m.sha256 || m.size.is_some_and(|s| s != bytes.len() as u64) {
                let message = format!(
                    "{object} has SHA256 {sha256} ({} bytes), its record says {} ({:?} bytes)",
                    bytes.len(),
                    m.sha256,
                    m.size
                );
                note(&log_path, &format!("publisher: {message}"));
                return Err((FailureClass::VerificationFailed, message));
            }
            let path = staging.path().join(&m.file_name);
            let mut out = create_nofollow(&path).map_err(|e| internal(e.to_string()))?;
            std::io::Write::write_all(&mut out, &bytes).map_err(|e| internal(e.to_string()))?;
            let modinfo = kmf_verify::verify_module(
                &path,
                record.variant.architecture,
                &record.kernel_release,
            )
            .map_err(|e| (FailureClass::VerificationFailed, e.to_string()))?;
            modules.push(kmf_build::BuiltModule {
                file_name: m.file_name.clone(),
                relative_path: m.relative_path.clone(),
                path,
                sha256,
                size: bytes.len() as u64,
                modinfo,
                destination: m.destination.clone(),
            });
        }
        result.modules = modules;
        result.kernel_release = Some(record.kernel_release.clone());
        reporter.stage(&result.label, crate::Stage::Boot);
        let project = self.drivers.get(&driver.name).cloned().unwrap_or_else(|| {
            Arc::new(Driver {
                name: driver.name.clone(),
                version: driver.version.clone(),
                project: Default::default(),
                source_sha256: driver.source_sha256.clone(),
                git: driver.git.clone(),
            })
        });
        let release = record.kernel_release.clone();
        let boot = farm
            .boot_test(tester, &project, result, &release, &log_dir, &log_path)
            .await?;
        reporter.stage(&result.label, crate::Stage::Publish);
        let t = Instant::now();
        if let Some(log) = &result.boot_log {
            store
                .put_file(&record.object_key(&prefix, "boot.log"), log)
                .await
                .map_err(|e| internal(e.to_string()))?;
        }
        record.boot = Some(boot);
        // The record alone changes, in one write: readers see it without the boot or with it.
        let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
        store
            .put_bytes(&key, &json)
            .await
            .map_err(|e| internal(format!("writing {key}: {e}")))?;
        result.durations.publish_secs = t.elapsed().as_secs_f64();
        note(
            &log_path,
            "publisher: booted; the boot is added to the record",
        );
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

/// The toolchain and header packages a published record states, and who established them.
struct Established {
    /// `the plan's`, `the publisher's` or `this run` (in messages).
    by: &'static str,
    toolchain: kmf_types::published::Toolchain,
    packages: Vec<InputPackage>,
}

impl Established {
    /// A worker's record must name the builder and the header packages established for the variant: one
    /// that says otherwise built something else, or lies.
    fn check_claims(&self, record: &crate::bundle::BundleRecord) -> Result<(), String> {
        let claimed = record
            .toolchain
            .as_ref()
            .map(|t| t.builder_identity.as_str())
            .unwrap_or_default();
        if claimed != self.toolchain.builder_identity {
            return Err(format!(
                "the worker says it built with `{}`, {} builder is `{}`",
                printable(claimed),
                self.by,
                self.toolchain.builder_identity
            ));
        }
        let digests = |packages: &[InputPackage]| {
            let mut d: Vec<String> = packages
                .iter()
                .map(|p| p.sha256.to_ascii_lowercase())
                .collect();
            d.sort();
            d
        };
        if digests(&record.packages) != digests(&self.packages) {
            let names = |packages: &[InputPackage]| {
                packages
                    .iter()
                    .map(|p| format!("{} ({})", printable(&p.file_name), printable(&p.sha256)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "the worker says it built from {}, {} header packages are {}",
                names(&record.packages),
                self.by,
                names(&self.packages)
            ));
        }
        Ok(())
    }
}

/// What a prefetched plan states about a variant: the builder the planner found for the kernel's compiler
/// (with the identity a worker must find after unpacking it) and the header packages it fetched, with the
/// proofs it checked.
fn established_by_plan(plan: &Plan, variant: &PlannedVariant) -> Result<Established, String> {
    let id = variant
        .builder
        .as_deref()
        .ok_or("it names no builder for the variant")?;
    let builder = plan
        .builders
        .iter()
        .find(|b| b.id == id)
        .ok_or_else(|| format!("it carries no builder `{id}`"))?;
    if variant.packages.is_empty() {
        return Err("it carries no header package for the variant".into());
    }
    let suite = kmf_build::toolchain::all_builders()
        .into_iter()
        .find(|b| b.id == id)
        .map(|b| b.suite)
        .unwrap_or_default();
    Ok(Established {
        by: "the plan's",
        toolchain: kmf_types::published::Toolchain {
            builder: id.to_string(),
            builder_identity: builder.identity.clone(),
            suite,
            cc_version_text: variant.cc_version_text.clone(),
            // The publisher did not see the build: the worker's sandbox is its claim.
            sandbox: String::new(),
        },
        packages: variant
            .packages
            .iter()
            .map(|p| InputPackage {
                file_name: p.file_name.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
                url: p.url.clone(),
                proof: Some(
                    p.proof
                        .clone()
                        .unwrap_or(kmf_types::InputProof::Unverified {
                            reason: "the plan records no proof for it".into(),
                        }),
                ),
            })
            .collect(),
    })
}

/// The worker's unchecked statements, made printable (they are its text, shown to operators).
fn worker_claims(record: &crate::bundle::BundleRecord) -> WorkerClaims {
    let text = |s: &str| printable(s).into_owned();
    WorkerClaims {
        shard: record.shard,
        kmodfarm_version: text(&record.kmodfarm_version),
        sandbox: text(
            record
                .toolchain
                .as_ref()
                .map(|t| t.sandbox.as_str())
                .unwrap_or_default(),
        ),
        boot: record
            .boot
            .as_ref()
            .map(|b| kmf_types::published::BootRecord {
                accel: text(&b.accel),
                kernel_package: b.kernel_package.as_deref().map(text),
                load_order: b.load_order.iter().map(|m| text(m)).collect(),
                taint: b.taint,
                secs: b.secs,
                log: text(&b.log),
            }),
        durations: record.durations.clone(),
        built_at: text(&record.built_at),
    }
}

/// A refusal of the bundle, noted in the log.
fn refuse(log: &Path, why: &str) -> Stop {
    note(
        log,
        &format!("publisher: {}: {why}", FailureClass::BundleRefused),
    );
    Stop::Failed(FailureClass::BundleRefused, why.to_string())
}
