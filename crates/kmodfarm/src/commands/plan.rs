//! The distributed run's three steps: `plan` (trusted, reads the store), `work` (untrusted: one shard into
//! bundles), `publish` (trusted: re-verifies the bundles, signs, writes the store).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use kmf_farm::bundle::BundleSink;
use std::path::PathBuf;

use kmf_farm::plan::{PlanOptions, PLAN_FILE};
use kmf_farm::plan_store::{self, PlanLocation};
use kmf_farm::publish::{PublishOptions, Publisher};
use kmf_farm::sync::SyncOptions;
use kmf_farm::{Driver, WorkJob};
use kmf_matrix::DiffOptions;

use super::build::{
    cache_dir, farm_with, kernel_lists, load_drivers, matrix_for, open_planning_farm, open_sandbox,
    open_worker_farm, report, run_indexes, run_indexes_for, Role,
};
use super::{write_output, Outcome};
use crate::cli::{PlanArgs, PublishArgs, WorkArgs};

pub async fn plan(args: PlanArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.shrink_threshold) {
        anyhow::bail!(
            "--shrink-threshold must be a fraction between 0 and 1, not {}",
            args.shrink_threshold
        );
    }
    if !args.no_prefetch && args.out.is_none() {
        anyhow::bail!(
            "planning with prefetch gathers header packages and builders into the plan directory: pass --out \
             DIR (or --no-prefetch for workers that reach the mirrors themselves)"
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
        .context("plan needs the current kernels: pass --kernels FILE|URL or --crawl")?;
    let mut work = Vec::new();
    for driver in drivers {
        let entries = matrix_for(&lists, &args.source, &driver.version)?;
        work.push((driver, entries));
    }
    let signing_cert = args
        .signing_cert
        .as_deref()
        .map(kmf_build::sign::certificate_sha256)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))
        .context("--signing-cert")?;
    let farm = open_planning_farm(&args.farm, &args.source, indexes, signing_cert.clone())?;
    let options = PlanOptions {
        shard_size: args.shard_size,
        redundancy: args.redundancy,
        prefetch: !args.no_prefetch,
        signing_cert,
        boot_test: args.farm.boot_test,
    };
    let diff = DiffOptions {
        shrink_threshold: args.shrink_threshold,
    };
    // A plan for a store is made in a private directory under the cache, then uploaded.
    let (staging, out_dir) = match args.out.as_deref() {
        Some(url) if plan_store::is_url(url) => {
            let dir = kmf_build::workdir::PrivateDir::create(&cache_dir(&args.farm).join("plans"))
                .map_err(|e| anyhow::anyhow!(e))?;
            let path = dir.path().to_path_buf();
            (Some(dir), Some(path))
        }
        Some(dir) => (None, Some(std::path::PathBuf::from(dir))),
        None => (None, None),
    };
    let plan = kmf_farm::plan::plan(&farm, work, &diff, options, out_dir.as_deref()).await?;
    let mut location = None;
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_output(Some(&dir.join(PLAN_FILE)), &plan.to_json())?;
        location = Some(dir.display().to_string());
    }
    if let (Some(_), Some(url), Some(dir)) = (&staging, args.out.as_deref(), &out_dir) {
        let store = kmf_store::open(url).with_context(|| format!("opening {url}"))?;
        let plan_url = plan_store::upload_plan(store.as_ref(), url, &plan, dir)
            .await
            .with_context(|| format!("uploading plan {} to {url}", plan.id))?;
        location = Some(plan_url);
    }
    drop(staging);
    if let Some(file) = &args.github_output {
        github_output(
            &plan,
            location.as_deref(),
            args.out.as_deref(),
            file,
            args.github_chunks,
        )?;
    }
    if let Some(file) = &args.dotenv {
        let mut text = String::new();
        if let Some(l) = &location {
            text.push_str(&format!("{}={l}\n", kmf_ci::gitlab::ENV_PLAN));
        }
        if let Some(root) = args.out.as_deref().filter(|o| plan_store::is_url(o)) {
            text.push_str(&format!(
                "{}={}\n",
                kmf_ci::gitlab::ENV_STAGING,
                plan_store::staging_url(root, &plan.id)
            ));
        }
        write_output(Some(file), &text)?;
    }
    if args.github_matrix {
        write_output(
            None,
            &(serde_json::to_string(&plan.github_matrices())? + "\n"),
        )?;
    } else if args.farm.json {
        let mut summary = serde_json::to_value(plan.summary())?;
        if let Some(l) = &location {
            summary["location"] = l.clone().into();
        }
        write_output(None, &(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        if let Some(l) = &location {
            println!("{l}");
        }
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

/// The plan at `location` (`DIR` or a store URL), with a local directory holding what `shards` need.
async fn read_plan(
    location: &str,
    farm: &crate::cli::FarmArgs,
    shards: Option<&[usize]>,
    inputs: bool,
) -> anyhow::Result<(PathBuf, kmf_farm::plan::Plan)> {
    let parsed = PlanLocation::parse(location)?;
    plan_store::fetch_plan(&parsed, &cache_dir(farm), shards, inputs)
        .await
        .with_context(|| format!("reading the plan {location}"))
}

pub async fn work(args: WorkArgs) -> anyhow::Result<Outcome> {
    let shard_indexes: Vec<usize> = match (args.shard, &args.runner, args.index) {
        (Some(s), None, None) => vec![s],
        (None, Some(runner), Some(index)) => {
            // The plan alone first: which shards are this worker's.
            let (_, plan) = read_plan(&args.plan, &args.farm, Some(&[]), false).await?;
            let picked = runner_shards(&plan, runner, index, args.of);
            if picked.is_empty() {
                let count = plan.shards.iter().filter(|s| &s.runner == runner).count();
                match args.of {
                    // A static fan-out (GitLab's parallel:matrix) has more workers than this plan has
                    // shards: this one has nothing to do.
                    Some(of) => {
                        tracing::info!(
                            "plan {} has {count} shard(s) for runner {runner}; worker {index} of {of} has none",
                            plan.id
                        );
                        return report(&args.farm, &[]);
                    }
                    None => anyhow::bail!(
                        "plan {} has {count} shard(s) for runner {runner}; there is no index {index}",
                        plan.id
                    ),
                }
            }
            picked
        }
        _ => anyhow::bail!("name the shard: --shard N, or --runner LABEL --index N"),
    };
    let (plan_dir, plan) = read_plan(&args.plan, &args.farm, Some(&shard_indexes), true).await?;
    // Bundles for a store are written here first, then uploaded.
    let to_store = plan_store::is_url(&args.out);
    let local_out = match to_store {
        true => Some(
            kmf_build::workdir::PrivateDir::create(&cache_dir(&args.farm).join("bundles"))
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        false => None,
    };
    let out_dir = match &local_out {
        Some(d) => d.path().to_path_buf(),
        None => PathBuf::from(&args.out),
    };
    let cache = cache_dir(&args.farm);
    let mut drivers: HashMap<String, Arc<Driver>> = HashMap::new();
    let mut jobs = Vec::new();
    let mut shards = Vec::new();
    for &shard_index in &shard_indexes {
        let shard = plan
            .shards
            .get(shard_index)
            .with_context(|| {
                format!(
                    "plan {} has {} shard(s); there is no shard {}",
                    plan.id,
                    plan.shards.len(),
                    shard_index
                )
            })?
            .clone();
        for id in &shard.variants {
            let variant = plan
                .variants
                .iter()
                .find(|v| &v.id == id)
                .with_context(|| {
                    format!(
                        "plan {} names variant {id} in a shard but not in its list",
                        plan.id
                    )
                })?;
            let driver = match drivers.get(&variant.driver) {
                Some(d) => d.clone(),
                None => {
                    let d = planned_driver(&plan, &variant.driver, &plan_dir, &cache)?;
                    drivers.insert(variant.driver.clone(), d.clone());
                    d
                }
            };
            jobs.push(WorkJob {
                driver,
                entry: variant.entry.clone(),
                sink: BundleSink {
                    dir: out_dir.clone(),
                    plan: plan.id.clone(),
                    shard: shard.index,
                },
                boot: args.farm.boot_test,
            });
        }
        shards.push(shard);
    }
    let inputs = plan
        .options
        .prefetch
        .then(|| Arc::new(kmf_farm::plan::PlanInputs::new(&plan_dir, &plan)));
    let (farm, ui) = open_worker_farm(
        &args.farm,
        &args.mirrors,
        jobs.len(),
        inputs,
        plan.options.signing_cert.clone(),
    )?;
    let names: Vec<String> = shards.iter().map(|s| s.index.to_string()).collect();
    tracing::info!(
        plan = %plan.id,
        shards = %names.join(","),
        variants = jobs.len(),
        "building shard(s) {} ({} variant(s)) into {}",
        names.join(", "),
        jobs.len(),
        args.out
    );
    let results = farm.work(jobs, ui.clone()).await;
    ui.finish();
    if to_store {
        // All a worker may write: the plan's staging prefix.
        let staging =
            kmf_store::open(&args.out).with_context(|| format!("opening {}", args.out))?;
        for shard in &shards {
            let n = plan_store::upload_bundles(staging.as_ref(), &plan, shard.index, &out_dir)
                .await
                .with_context(|| format!("uploading the bundles to {}", args.out))?;
            tracing::info!(
                "shard {}: {n} bundle(s) uploaded to {}",
                shard.index,
                args.out
            );
        }
    }
    report(&args.farm, &results)
}

/// The shards of `runner` a worker builds: its `index`-th (from 0), or with `of` workers sharing the
/// runner's shards, every `of`-th from the `index`-th.
fn runner_shards(
    plan: &kmf_farm::plan::Plan,
    runner: &str,
    index: usize,
    of: Option<usize>,
) -> Vec<usize> {
    let own = plan
        .shards
        .iter()
        .filter(|s| s.runner == runner)
        .map(|s| s.index);
    match of {
        None => own.skip(index).take(1).collect(),
        Some(of) => own.skip(index).step_by(of.max(1)).collect(),
    }
}

/// The driver of the plan named `name`, from the plan's source archive: unpacked once into the cache, and
/// its content checked against the plan's digest.
fn planned_driver(
    plan: &kmf_farm::plan::Plan,
    name: &str,
    plan_dir: &std::path::Path,
    cache: &std::path::Path,
) -> anyhow::Result<Arc<Driver>> {
    let planned = plan
        .drivers
        .iter()
        .find(|d| d.name == name)
        .with_context(|| format!("plan {} names no driver {name}", plan.id))?;
    let archive = planned.source.as_ref().with_context(|| {
        format!(
            "plan {} carries no source for {name} (it was not written with --out)",
            plan.id
        )
    })?;
    let dir = kmf_farm::sources::unpack(plan_dir, archive, cache)?;
    let mut driver = Driver::load(&dir, Some(&planned.version))
        .with_context(|| format!("loading {name} from the plan's source archive"))?;
    driver.project.version_evaluated = planned.version_evaluated;
    anyhow::ensure!(
        driver.name == planned.name && driver.source_sha256 == planned.source_sha256,
        "the plan's source archive of {name} does not hold the tree the plan was made from \
         (name {}, source digest {}; the plan says {} and {})",
        driver.name,
        driver.source_sha256,
        planned.name,
        planned.source_sha256
    );
    Ok(Arc::new(driver))
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.shrink_threshold) {
        anyhow::bail!(
            "--shrink-threshold must be a fraction between 0 and 1, not {}",
            args.shrink_threshold
        );
    }
    // Signing takes the kernel tree (and builder) from a prefetched plan's inputs.
    let (plan_dir, plan) =
        read_plan(&args.plan, &args.farm, None, args.farm.sign_key.is_some()).await?;
    let bundles_dir = match plan_store::is_url(&args.bundles) {
        true => {
            let dir =
                kmf_build::workdir::PrivateDir::create(&cache_dir(&args.farm).join("bundles"))
                    .map_err(|e| anyhow::anyhow!(e))?;
            plan_store::fetch_bundles(&args.bundles, &plan, dir.path())
                .await
                .with_context(|| format!("fetching the bundles from {}", args.bundles))?;
            Bundles::Fetched(dir)
        }
        false => Bundles::Dir(PathBuf::from(&args.bundles)),
    };
    let indexes = run_indexes_for(&args.mirrors, &args.farm)?;
    let sandbox: Box<dyn kmf_sandbox::Sandbox> = if args.farm.sign_key.is_some() {
        // Signing runs the kernel tree's sign-file, in the sandbox as `build` does.
        open_sandbox(&args.farm)?
    } else {
        Box::new(kmf_sandbox::HostRunner)
    };
    // With a prefetched plan, signing takes the kernel tree and builder from the plan too.
    let inputs = plan
        .options
        .prefetch
        .then(|| Arc::new(kmf_farm::plan::PlanInputs::new(&plan_dir, &plan)));
    let (farm, ui) = farm_with(
        &args.farm,
        &args.mirrors,
        plan.variants.len(),
        indexes,
        sandbox,
        Role {
            plan_inputs: inputs,
            ..Role::default()
        },
    )?;
    if let Some(want) = &plan.options.signing_cert {
        let have = farm.signing().map(|k| k.cert_sha256.as_str());
        anyhow::ensure!(
            have == Some(want.as_str()),
            "plan {} was made for modules signed with the certificate of SHA256 {want}; publish it with that \
             certificate's key (--sign-key, --sign-cert)",
            plan.id
        );
    }
    let opts = PublishOptions {
        sync: SyncOptions {
            diff: DiffOptions {
                shrink_threshold: args.shrink_threshold,
            },
            prune: args.prune,
        },
        matrices: true,
    };
    // A boot test runs the project's check script: the projects come from the plan's source archives.
    let mut drivers = HashMap::new();
    if args.farm.boot_test {
        let cache = cache_dir(&args.farm);
        for d in &plan.drivers {
            drivers.insert(
                d.name.clone(),
                planned_driver(&plan, &d.name, &plan_dir, &cache)?,
            );
        }
    }
    let publisher = Publisher {
        farm: &farm,
        plan: &plan,
        bundles: bundles_dir.path(),
        drivers,
        in_process: false,
    };
    let (summaries, results) =
        kmf_farm::publish::publish_plan(&publisher, &opts, ui.clone()).await?;
    ui.finish();
    let publish_json = serde_json::to_string_pretty(&summaries)? + "\n";
    write_output(
        Some(&args.farm.report_dir.join("publish.json")),
        &publish_json,
    )?;
    report(&args.farm, &results)
}

/// The bundles `publish` reads: a directory, or a private copy of a staging prefix.
enum Bundles {
    Dir(PathBuf),
    Fetched(kmf_build::workdir::PrivateDir),
}

impl Bundles {
    fn path(&self) -> &std::path::Path {
        match self {
            Bundles::Dir(d) => d,
            Bundles::Fetched(d) => d.path(),
        }
    }
}

/// Appends the plan's GitHub step outputs to `file` (see `--github-output`).
fn github_output(
    plan: &kmf_farm::plan::Plan,
    location: Option<&str>,
    out: Option<&str>,
    file: &std::path::Path,
    chunks: usize,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut lines = Vec::new();
    if let Some(l) = location {
        lines.push(format!("{}={l}", kmf_ci::github::OUTPUT_PLAN));
    }
    if let Some(root) = out.filter(|o| plan_store::is_url(o)) {
        lines.push(format!(
            "{}={}",
            kmf_ci::github::OUTPUT_STAGING,
            plan_store::staging_url(root, &plan.id)
        ));
    }
    for m in plan.github_matrices() {
        anyhow::ensure!(
            m.chunk < chunks,
            "plan {} needs more than {chunks} build job(s) of 256 shards for runner {}: raise the shard size \
             or the workflow's chunks (kmodfarm ci github --chunks)",
            plan.id,
            m.runner
        );
        lines.push(format!(
            "{}={}",
            kmf_ci::github::matrix_output(&m.runner, m.chunk),
            serde_json::to_string(&m.matrix)?
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    for l in lines {
        writeln!(f, "{l}").with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}
