//! `kmodfarm boot-test`: boot-tests the variants published in the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kmf_boot::{BootOptions, BootOutcome, BootRequest, BootTester};
use kmf_build::ProjectConfig;
use kmf_types::published::PublishedVariant;
use serde::Serialize;

use super::{debian_mirrors, write_output, Outcome};
use crate::cli::BootTestArgs;

/// File written beside the reports.
const BOOT_TEST_JSON: &str = "boot-test.json";

/// Per-project boot settings, by driver name.
#[derive(Debug, Clone, Default)]
struct BootConfig {
    check: Option<PathBuf>,
    timeout: Option<Duration>,
}

/// One variant's result, as printed with `--json` and written to boot-test.json.
#[derive(Debug, Serialize)]
struct BootResult {
    driver: String,
    output: String,
    kernel_release: String,
    architecture: String,
    result: &'static str,
    failure_class: Option<kmf_types::FailureClass>,
    message: Option<String>,
    accel: &'static str,
    kernel_package: Option<String>,
    load_order: Vec<kmf_boot::LoadStep>,
    modules_loaded: Vec<String>,
    taint: Option<u64>,
    durations: kmf_boot::BootDurations,
    /// The console log, relative to the report directory.
    log: String,
}

pub async fn boot_test(args: BootTestArgs) -> anyhow::Result<Outcome> {
    let filter = args
        .kernel_release
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--kernel-release is not a valid regular expression")?;
    let mut configs: HashMap<String, BootConfig> = HashMap::new();
    for dir in &args.projects {
        let cfg = ProjectConfig::load(dir)
            .with_context(|| format!("loading driver project {}", dir.display()))?;
        if let Some(check) = cfg.boot_check_script() {
            anyhow::ensure!(
                check.is_file(),
                "{}: the [boot] check script {} does not exist",
                dir.display(),
                check.display()
            );
        }
        configs.insert(
            cfg.name(),
            BootConfig {
                check: cfg.boot_check_script(),
                timeout: cfg.boot.timeout_secs.map(Duration::from_secs),
            },
        );
    }

    let store: Arc<dyn kmf_store::Store> = kmf_store::open(&args.store)
        .with_context(|| format!("opening the store {}", args.store))?
        .into();
    let keys = store.list("").await.context("listing the store")?;
    let mut variants = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with("/metadata.json")) {
        let prefix = key.trim_end_matches("/metadata.json").to_string();
        let driver = prefix.split('/').next().unwrap_or("");
        if let Some(wanted) = &args.driver {
            if !wanted.iter().any(|w| w == driver) {
                continue;
            }
        }
        let Some(bytes) = store.get_bytes(key).await? else {
            continue;
        };
        let meta = match PublishedVariant::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(key, "not a variant's metadata ({e}); skipped");
                continue;
            }
        };
        if !args.arch.contains(&meta.variant.architecture) {
            continue;
        }
        if filter
            .as_ref()
            .is_some_and(|r| !r.is_match(&meta.kernel_release))
        {
            continue;
        }
        variants.push((prefix, meta));
    }
    if variants.is_empty() {
        anyhow::bail!(
            "the store {} holds no published variant matching the filters",
            args.store
        );
    }

    let mirrors = debian_mirrors(&args.mirrors)?;
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(super::build::default_cache_dir);
    let options = BootOptions {
        memory_mib: args.memory,
        ..BootOptions::default()
    };
    let tester = Arc::new(
        BootTester::new(&cache, mirrors, options)
            .map_err(|e| anyhow::anyhow!(e))
            .context("setting up the boot tester")?,
    );
    let jobs = args
        .jobs
        .unwrap_or_else(|| kmf_boot::default_jobs(args.memory))
        .max(1);
    let work = cache.join("boot/work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    tracing::info!(variants = variants.len(), jobs, "boot-testing");
    let started = Instant::now();
    let total = variants.len();

    let results: Vec<BootResult> = futures::stream::iter(variants)
        .map(|(prefix, meta)| {
            let tester = tester.clone();
            let store = store.clone();
            let config = configs.get(&meta.driver).cloned().unwrap_or_default();
            let timeout = config.timeout.unwrap_or(Duration::from_secs(args.timeout));
            let report_dir = args.report_dir.clone();
            let work = work.clone();
            async move {
                let outcome = run_one(
                    &tester,
                    store.as_ref(),
                    &prefix,
                    &meta,
                    &config,
                    timeout,
                    &work,
                )
                .await;
                let log_rel = format!("logs/{prefix}/boot.log");
                let log_path = report_dir.join(&log_rel);
                if let Err(e) = write_log(&log_path, &outcome.console_log) {
                    tracing::warn!(path = %log_path.display(), "cannot write the boot log: {e}");
                }
                let output = prefix
                    .strip_prefix(&format!("{}/", meta.driver))
                    .unwrap_or(&prefix)
                    .to_string();
                let result = BootResult {
                    driver: meta.driver.clone(),
                    output,
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
                };
                match &outcome.verdict {
                    Ok(()) => eprintln!(
                        "PASS {prefix}: {} loaded ({:.1} s boot, {})",
                        outcome.modules_loaded.join(", "),
                        outcome.durations.boot_secs,
                        outcome.accel
                    ),
                    Err((class, msg)) => eprintln!("FAIL {prefix}: {class}: {msg}"),
                }
                result
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;

    let mut results = results;
    results.sort_by(|a, b| (&a.driver, &a.output).cmp(&(&b.driver, &b.output)));
    let failed = results.iter().filter(|r| r.result != "passed").count();
    let json = serde_json::to_string_pretty(&results)? + "\n";
    write_output(Some(&args.report_dir.join(BOOT_TEST_JSON)), &json)?;
    if args.json {
        write_output(None, &json)?;
    }
    eprintln!(
        "boot test: {} passed, {failed} failed of {total} in {:.1} s; logs under {}",
        total - failed,
        started.elapsed().as_secs_f64(),
        args.report_dir.join("logs").display()
    );
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

/// Copies the variant's modules out of the store and boot-tests them.
async fn run_one(
    tester: &BootTester,
    store: &dyn kmf_store::Store,
    prefix: &str,
    meta: &PublishedVariant,
    config: &BootConfig,
    timeout: Duration,
    work: &Path,
) -> BootOutcome {
    let dir = match tempfile::Builder::new().prefix("modules-").tempdir_in(work) {
        Ok(d) => d,
        Err(e) => return internal(format!("creating a work directory: {e}")),
    };
    let mut modules = Vec::new();
    for m in &meta.modules {
        let key = meta.object_key(prefix, &m.file_name);
        let bytes = match store.get_bytes(&key).await {
            Ok(Some(b)) => b,
            Ok(None) => return internal(format!("{key} is missing from the store")),
            Err(e) => return internal(format!("reading {key}: {e}")),
        };
        // Only the file name: the store's layout never decides where a file lands here.
        let Some(name) = Path::new(&m.file_name).file_name() else {
            return internal(format!("bad module file name {:?}", m.file_name));
        };
        let path = dir.path().join(name);
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
    };
    tester.boot_test(&req).await
}

fn internal(msg: String) -> BootOutcome {
    BootOutcome {
        verdict: Err((kmf_types::FailureClass::Internal, msg)),
        console_log: String::new(),
        load_order: vec![],
        modules_loaded: vec![],
        accel: "",
        kernel_package: None,
        taint: None,
        durations: Default::default(),
    }
}

fn write_log(path: &Path, text: &str) -> anyhow::Result<()> {
    write_output(Some(path), text)
}
