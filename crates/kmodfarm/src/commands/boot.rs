//! `kmodfarm boot-test`: boot-tests the variants published in the store (kmf_farm::boot_published).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kmf_boot::{BootOptions, BootTester};
use kmf_build::ProjectConfig;
use kmf_farm::boot_published::{boot_published, published_variants, BootConfig, PublishedBootRun};

use super::{debian_mirrors, write_output, Outcome};
use crate::cli::BootTestArgs;

/// File written beside the reports.
const BOOT_TEST_JSON: &str = "boot-test.json";

pub async fn boot_test(args: BootTestArgs) -> anyhow::Result<Outcome> {
    let filter = args
        .kernel_release
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--kernel-release is not a valid regular expression")?;
    let mut configs: HashMap<String, BootConfig> = HashMap::new();
    for project in &args.projects {
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(super::build::default_cache_dir);
        let (dir, _) = super::build::project_dir(project, &cache, None).await?;
        let cfg = ProjectConfig::load(&dir)
            .with_context(|| format!("loading driver project {}", project.display()))?;
        configs.insert(
            cfg.name(),
            BootConfig {
                check: cfg.boot_check_script().map(<[u8]>::to_vec),
                timeout: cfg.boot.timeout_secs.map(Duration::from_secs),
            },
        );
    }

    let store: Arc<dyn kmf_store::Store> = kmf_store::open(&args.store)
        .with_context(|| format!("opening the store {}", args.store))?
        .into();
    let variants = published_variants(store.as_ref(), |prefix, meta| {
        let driver = prefix.split('/').next().unwrap_or("");
        args.driver
            .as_ref()
            .is_none_or(|wanted| wanted.iter().any(|w| w == driver))
            && args.arch.contains(&meta.variant.architecture)
            && filter
                .as_ref()
                .is_none_or(|r| r.is_match(&meta.kernel_release))
    })
    .await
    .context("listing the store")?;
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
        BootTester::new(
            &cache,
            Some(mirrors),
            super::apt_trust(&args.mirrors.trust, kmf_kernels::apt::ArchiveKeys::Debian)?,
            options,
        )
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
    let run = PublishedBootRun {
        tester,
        store,
        configs,
        default_timeout: Duration::from_secs(args.timeout),
        report_dir: args.report_dir.clone(),
        work,
        jobs,
    };
    let results = boot_published(&run, variants, |prefix, outcome| match &outcome.verdict {
        Ok(()) => eprintln!(
            "PASS {prefix}: {} loaded ({:.1} s boot, {})",
            outcome.modules_loaded.join(", "),
            outcome.durations.boot_secs,
            outcome.accel
        ),
        Err((class, msg)) => eprintln!("FAIL {prefix}: {class}: {msg}"),
    })
    .await;

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
