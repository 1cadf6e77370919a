//! `kmodfarm builder`: the container images `--sandbox docker` builds in (see [`kmf_build::builder_images`]).
//!
//! Image references go to stdout, one a line, progress to stderr.

use anyhow::Context;
use kmf_build::builder_images::{self, Event, MirrorError, MirrorSource};
use kmf_build::BuilderStore;
use kmf_sandbox::docker::Docker;

use super::build::default_cache_dir;
use super::{debian_mirrors, Outcome};
use crate::cli::{
    BuilderBuildArgs, BuilderCommand, BuilderCreateArgs, BuilderPruneArgs, MirrorArgs,
};

pub async fn run(cmd: BuilderCommand) -> anyhow::Result<Outcome> {
    match cmd {
        BuilderCommand::Create(args) => create(args).await,
        BuilderCommand::Build(args) => build(args).await,
        BuilderCommand::List => list(),
        BuilderCommand::Prune(args) => prune(args),
    }
}

fn engine() -> anyhow::Result<Docker> {
    Docker::detect().context("connecting to the container engine")
}

/// The mirror flags, resolved only when a builder has to be created, with the keyrings and expiry decisions
/// that mmdebstrap gets.
struct CliMirrors<'a>(&'a MirrorArgs);

impl MirrorSource for CliMirrors<'_> {
    fn apt_source(&self, suite: &str) -> Result<kmf_build::AptSource, MirrorError> {
        let mirrors = debian_mirrors(self.0)?;
        let trust = super::apt_trust(&self.0.trust, kmf_kernels::apt::ArchiveKeys::Debian)?;
        Ok(kmf_build::AptSource {
            uri: mirrors.uri_for_suite(suite).to_string(),
            keyrings: trust.keyring_files(suite).to_vec(),
            allow_expired: trust.expired_allowed(suite),
        })
    }
}

/// Checks each suite's Release as a crawl would, so that a builder of an expired or forged suite fails with
/// that reason rather than as mmdebstrap's error.
async fn verify_suites(
    args: &MirrorArgs,
    builders: &BuilderStore,
    suites: &[String],
) -> anyhow::Result<()> {
    let missing: Vec<_> = suites
        .iter()
        .map(|s| builder_images::suite_builder(s))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|spec| builders.existing(spec).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mirrors = debian_mirrors(args)?;
    let trust = super::apt_trust(&args.trust, kmf_kernels::apt::ArchiveKeys::Debian)?;
    let client = super::http_client()?;
    for spec in missing {
        kmf_kernels::apt::fetch_release(
            &client,
            mirrors.uri_for_suite(&spec.suite),
            &spec.suite,
            &trust,
        )
        .await
        .with_context(|| format!("creating the {} builder", spec.suite))?;
    }
    Ok(())
}

fn store(cache: Option<std::path::PathBuf>) -> BuilderStore {
    BuilderStore::new(cache.unwrap_or_else(default_cache_dir).join("builders"))
}

fn show(event: Event<'_>) {
    match event {
        Event::CreatingBuilder { id, suite } => {
            eprintln!("creating builder {id} with mmdebstrap (suite {suite})")
        }
        Event::BuilderImage { image, imported } => eprintln!(
            "{image}: {}",
            if imported { "imported" } else { "up to date" }
        ),
        Event::Ready { image } => println!("{image}"),
        Event::FamilyUpToDate { tag } => eprintln!("{tag}: up to date"),
        Event::Building { tag, dockerfile } => {
            eprintln!("{tag}: building {}", dockerfile.display())
        }
        Event::BaseFailed { family, error } => {
            eprintln!("{family}: {:#}", anyhow::Error::from(error))
        }
        Event::BuildFailed { tag, status } => {
            eprintln!("{tag}: the build failed ({status}); is its base image available here?")
        }
        Event::Removing { image, dry_run } => println!(
            "{}{image}",
            if dry_run {
                "would remove "
            } else {
                "removing "
            }
        ),
    }
}

async fn create(args: BuilderCreateArgs) -> anyhow::Result<Outcome> {
    let docker = engine()?;
    let builders = store(args.cache);
    verify_suites(&args.mirrors, &builders, &args.suite).await?;
    let mirrors = CliMirrors(&args.mirrors);
    builder_images::create(&docker, &builders, &mirrors, &args.suite, &mut show).await?;
    Ok(Outcome::Success)
}

async fn build(args: BuilderBuildArgs) -> anyhow::Result<Outcome> {
    let docker = engine()?;
    let mirrors = CliMirrors(&args.mirrors);
    let summary = builder_images::build(
        &docker,
        &store(args.cache),
        &mirrors,
        &args.builders_dir,
        &args.family,
        &mut show,
    )
    .await?;
    if summary.failed.is_empty() {
        Ok(Outcome::Success)
    } else {
        eprintln!("not built: {}", summary.failed.join(", "));
        Ok(Outcome::SomeFailed)
    }
}

fn list() -> anyhow::Result<Outcome> {
    let images = builder_images::list(&engine()?)?;
    println!(
        "{:<64} {:<14} {:<10} {:<16} FROM",
        "IMAGE", "ID", "SIZE", "CREATED"
    );
    for i in images {
        let info = &i.info;
        println!(
            "{:<64} {:<14} {:<10} {:<16} {}",
            info.reference, info.id, info.size, info.created, i.origin
        );
    }
    Ok(Outcome::Success)
}

fn prune(args: BuilderPruneArgs) -> anyhow::Result<Outcome> {
    builder_images::prune(&engine()?, &args.builders_dir, args.dry_run, &mut show)?;
    Ok(Outcome::Success)
}
