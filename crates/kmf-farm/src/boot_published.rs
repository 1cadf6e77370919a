//! Boot-testing variants already in a store (`kmodfarm boot-test`): each published record's modules are
//! copied out of the store and loaded into the variant's real kernel under QEMU, several variants at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kmf_boot::{BootOutcome, BootRequest, BootTester};
use kmf_store::{Store, StoreError};
use kmf_types::published::{parse_metadata_key, PublishedVariant};
use serde::Serialize;

/// A driver project's boot settings (`[boot]` of kmodfarm.toml).
#[derive(Debug, Clone, Default)]
pub struct BootConfig {
    /// The check script's content.
    pub check: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

/// One variant's result, as `boot-test --json` prints it and `boot-test.json` records it.
#[derive(Debug, Serialize)]
pub struct BootResult {
    pub driver: String,
    pub output: String,
    pub kernel_release: String,
    pub architecture: String,
    pub result: &'static str,
    pub failure_class: Option<kmf_types::FailureClass>,
    pub message: Option<String>,
    pub accel: &'static str,
    pub kernel_package: Option<String>,
    pub load_order: Vec<kmf_boot::LoadStep>,
    pub modules_loaded: Vec<String>,
    pub taint: Option<u64>,
    pub durations: kmf_boot::BootDurations,
    /// The console log, relative to the report directory.
    pub log: String,
}

/// Every published variant of `store` that `wanted` accepts, as (store prefix, record). Records that do
/// not parse are skipped with a warning.
pub async fn published_variants(
    store: &dyn Store,
    wanted: impl Fn(&str, &PublishedVariant) -> bool,
) -> Result<Vec<(String, PublishedVariant)>, StoreError> {
    let mut variants = Vec::new();
    for key in store.list("").await? {
        let Some(prefix) = parse_metadata_key(&key) else {
            continue;
        };
        let Some(bytes) = store.get_bytes(&key).await? else {
            continue;
        };
        match PublishedVariant::parse(&bytes) {
            Ok(meta) if wanted(prefix, &meta) => variants.push((prefix.to_string(), meta)),
            Ok(_) => {}
            Err(e) => tracing::warn!(key, "not a variant's metadata ({e}); skipped"),
        }
    }
    Ok(variants)
}

/// What a boot-test run shares across variants.
pub struct PublishedBootRun {
    pub tester: Arc<BootTester>,
    pub store: Arc<dyn Store>,
    /// By driver name.
    pub configs: HashMap<String, BootConfig>,
    /// The limit per boot where the driver's project sets none.
    pub default_timeout: Duration,
    /// Console logs go to `<report_dir>/logs/<prefix>/boot.log`.
    pub report_dir: PathBuf,
    /// Scratch space for the modules copied out of the store.
    pub work: PathBuf,
    pub jobs: usize,
}

/// Boot-tests `variants`, `run.jobs` at a time; `on_done` sees each outcome as it comes. Results are sorted
/// by driver and output.
pub async fn boot_published(
    run: &PublishedBootRun,
    variants: Vec<(String, PublishedVariant)>,
    on_done: impl Fn(&str, &BootOutcome),
) -> Vec<BootResult> {
    let on_done = &on_done;
    let mut results: Vec<BootResult> = futures::stream::iter(variants)
        .map(|(prefix, meta)| async move {
            let config = run.configs.get(&meta.driver).cloned().unwrap_or_default();
            // The operator's limit is a ceiling: a project may ask for less time, never more.
            let timeout = config
                .timeout
                .map_or(run.default_timeout, |t| t.min(run.default_timeout));
            let outcome = run_one(run, &prefix, &meta, &config, timeout).await;
            let log_rel = format!("logs/{prefix}/boot.log");
            let log_path = run.report_dir.join(&log_rel);
            if let Err(e) = write_log(&log_path, &outcome.console_log) {
                tracing::warn!(path = %log_path.display(), "cannot write the boot log: {e}");
            }
            on_done(&prefix, &outcome);
            BootResult {
                driver: meta.driver.clone(),
                output: prefix
                    .strip_prefix(&format!("{}/", meta.driver))
                    .unwrap_or(&prefix)
                    .to_string(),
                kernel_release: meta.kernel_release.clone(),
                architecture: meta.variant.architecture.as_str().to_string(),
                result: if outcome.passed() { "passed" } else { "failed" },
                failure_class: outcome.verdict.as_ref().err().map(|(c, _)| *c),
                message: outcome.verdict.as_ref().err().map(|(_, m)| m.clone()),
                accel: outcome.accel,
                kernel_package: outcome.kernel_package.clone(),
                load_order: outcome.load_order.clone(),
                modules_loaded: outcome.modules_loaded.clone(),
                taint: outcome.taint,
                durations: outcome.durations,
                log: log_rel,
            }
        })
        .buffer_unordered(run.jobs.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| (&a.driver, &a.output).cmp(&(&b.driver, &b.output)));
    results
}

/// Copies the variant's modules out of the store and boot-tests them.
async fn run_one(
    run: &PublishedBootRun,
    prefix: &str,
    meta: &PublishedVariant,
    config: &BootConfig,
    timeout: Duration,
) -> BootOutcome {
    let dir = match tempfile::Builder::new()
        .prefix("modules-")
        .tempdir_in(&run.work)
    {
        Ok(d) => d,
        Err(e) => return internal(format!("creating a work directory: {e}")),
    };
    let mut modules = Vec::new();
    for m in &meta.modules {
        let key = meta.object_key(prefix, &m.file_name);
        let bytes = match run.store.get_bytes(&key).await {
            Ok(Some(b)) => b,
            Ok(None) => return internal(format!("{key} is missing from the store")),
            Err(e) => return internal(format!("reading {key}: {e}")),
        };
        // Only the file name (checked by the record's parser): the store's layout never decides where a
        // file lands here.
        let path = dir.path().join(&m.file_name);
        if let Err(e) = std::fs::write(&path, bytes) {
            return internal(format!("writing {}: {e}", path.display()));
        }
        modules.push(path);
    }
    let req = BootRequest {
        arch: meta.variant.architecture,
        kernel_release: meta.kernel_release.clone(),
        suite: meta.variant.suite.clone(),
        package_version: meta.variant.packageversion.clone(),
        modules,
        check_script: config.check.clone(),
        timeout,
        packages: None,
    };
    run.tester.boot_test(&req).await
}

fn internal(msg: String) -> BootOutcome {
    BootOutcome::failed_before_boot(kmf_types::FailureClass::Internal, msg, Duration::ZERO)
}

fn write_log(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
