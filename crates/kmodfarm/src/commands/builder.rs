//! `kmodfarm builder`: the container images `--sandbox docker` builds in.
//!
//! `create` makes the Debian builders with mmdebstrap (the same root filesystems bubblewrap uses) and imports
//! each as `kmodfarm-builder:<builder id>`; `build` builds the Dockerfiles under `builders/`, tagged
//! `kmodfarm-<family>:<content hash>`, the Debian ones FROM those imported images; `list` and `prune` manage
//! what is in the engine.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use kmf_build::{BuilderSpec, BuilderStore};
use kmf_sandbox::docker::{self, Docker, LABEL_FAMILY};

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
    Docker::detect()
        .map_err(|e| anyhow::anyhow!(e))
        .context("connecting to the container engine")
}

/// The builder of a Debian suite, from the toolchain table.
fn suite_builder(suite: &str) -> anyhow::Result<BuilderSpec> {
    kmf_build::toolchain::suite_builder(suite).with_context(|| {
        format!(
            "no builder for suite `{suite}` (known: {})",
            kmf_build::toolchain::known_suites().join(", ")
        )
    })
}

/// Creates (when missing) the suite's builder and imports it; returns the image reference.
async fn ensure_builder_image(
    docker: &Docker,
    store: &BuilderStore,
    mirrors: &MirrorArgs,
    suite: &str,
) -> anyhow::Result<String> {
    let spec = suite_builder(suite)?;
    let rootfs = match store.existing(&spec) {
        Some(r) => r,
        None => {
            let m = debian_mirrors(mirrors)?;
            eprintln!(
                "creating builder {} with mmdebstrap (suite {suite})",
                spec.id
            );
            store
                .ensure(&spec, m.uri_for_suite(&spec.suite))
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("creating builder {}", spec.id))?
        }
    };
    let image = docker::builder_image_tag(&spec.id);
    let (cli, r, img) = (docker.cli().to_path_buf(), rootfs.clone(), image.clone());
    let imported = tokio::task::spawn_blocking(move || docker::ensure_image(&cli, &r, &img))
        .await?
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("importing {}", rootfs.display()))?;
    eprintln!(
        "{image}: {}",
        if imported { "imported" } else { "up to date" }
    );
    Ok(image)
}

async fn create(args: BuilderCreateArgs) -> anyhow::Result<Outcome> {
    let docker = engine()?;
    let cache = args.cache.clone().unwrap_or_else(default_cache_dir);
    let store = BuilderStore::new(cache.join("builders"));
    for suite in &args.suite {
        let image = ensure_builder_image(&docker, &store, &args.mirrors, suite).await?;
        println!("{image}");
    }
    Ok(Outcome::Success)
}

fn families(dir: &Path, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    all.sort();
    if wanted.is_empty() {
        return Ok(all);
    }
    for w in wanted {
        anyhow::ensure!(
            all.contains(w),
            "no builders/{w}/Dockerfile (families: {})",
            all.join(", ")
        );
    }
    Ok(wanted.to_vec())
}

/// `kmodfarm-<family>:<first 16 hex of the context digest>`.
fn family_tag(dir: &Path, family: &str, build_args: &[String]) -> anyhow::Result<String> {
    let digest =
        docker::context_digest(&dir.join(family), build_args).map_err(|e| anyhow::anyhow!(e))?;
    Ok(format!("kmodfarm-{family}:{}", &digest[..16]))
}

/// The build arguments of a family: Debian ones start FROM the imported builder image.
async fn family_build_args(
    docker: &Docker,
    store: &BuilderStore,
    mirrors: &MirrorArgs,
    family: &str,
) -> anyhow::Result<Vec<String>> {
    match family.strip_prefix("debian-") {
        Some(suite) => {
            let image = ensure_builder_image(docker, store, mirrors, suite).await?;
            Ok(vec![format!("BASE={image}")])
        }
        None => Ok(vec![]),
    }
}

async fn build(args: BuilderBuildArgs) -> anyhow::Result<Outcome> {
    let docker = engine()?;
    let cache = args.cache.clone().unwrap_or_else(default_cache_dir);
    let store = BuilderStore::new(cache.join("builders"));
    let mut failed = Vec::new();
    for family in families(&args.builders_dir, &args.family)? {
        let build_args = match family_build_args(&docker, &store, &args.mirrors, &family).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{family}: {e:#}");
                failed.push(family);
                continue;
            }
        };
        let tag = family_tag(&args.builders_dir, &family, &build_args)?;
        if docker::image_exists(docker.cli(), &tag) {
            eprintln!("{tag}: up to date");
            println!("{tag}");
            continue;
        }
        let context: PathBuf = args.builders_dir.join(&family);
        let mut cmd = tokio::process::Command::new(docker.cli());
        cmd.arg("build").args([
            "--tag",
            &tag,
            "--label",
            &format!("{LABEL_FAMILY}={family}"),
        ]);
        for a in &build_args {
            cmd.args(["--build-arg", a]);
        }
        cmd.arg(&context)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        eprintln!("{tag}: building {}", context.join("Dockerfile").display());
        let status = cmd
            .status()
            .await
            .with_context(|| format!("running {} build", docker.cli().display()))?;
        if status.success() {
            println!("{tag}");
        } else {
            eprintln!("{tag}: the build failed ({status}); is its base image available here?");
            failed.push(family);
        }
    }
    if failed.is_empty() {
        Ok(Outcome::Success)
    } else {
        eprintln!("not built: {}", failed.join(", "));
        Ok(Outcome::SomeFailed)
    }
}

fn list() -> anyhow::Result<Outcome> {
    let docker = engine()?;
    let images = docker::list_images(docker.cli()).map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{:<64} {:<14} {:<10} {:<16} FROM",
        "IMAGE", "ID", "SIZE", "CREATED"
    );
    for i in images {
        let from = match (&i.builder_id, &i.family) {
            (_, Some(f)) => format!("builders/{f}/Dockerfile"),
            (Some(b), None) => format!("builder {b} (imported root filesystem)"),
            (None, None) => String::new(),
        };
        println!(
            "{:<64} {:<14} {:<10} {:<16} {from}",
            i.reference, i.id, i.size, i.created
        );
    }
    Ok(Outcome::Success)
}

fn prune(args: BuilderPruneArgs) -> anyhow::Result<Outcome> {
    let docker = engine()?;
    // Every row of the toolchain table, from the table itself.
    let current_builders: Vec<String> = kmf_build::toolchain::all_builders()
        .iter()
        .map(|s| docker::builder_image_tag(&s.id))
        .collect();
    let images = docker::list_images(docker.cli()).map_err(|e| anyhow::anyhow!(e))?;
    let mut remove = Vec::new();
    for i in images {
        let keep = match &i.family {
            // A Dockerfile build is current when its tag is the digest of the family's context today (with
            // the build arguments it was built with: the imported builder for Debian).
            Some(family) => {
                let base = current_builders
                    .iter()
                    .filter(|_| family.starts_with("debian-"))
                    .filter_map(|b| {
                        family_tag(&args.builders_dir, family, &[format!("BASE={b}")]).ok()
                    })
                    .chain(family_tag(&args.builders_dir, family, &[]).ok())
                    .collect::<Vec<_>>();
                base.contains(&i.reference)
            }
            None => current_builders.contains(&i.reference),
        };
        if !keep {
            remove.push(i.reference);
        }
    }
    for r in &remove {
        println!(
            "{}{r}",
            if args.dry_run {
                "would remove "
            } else {
                "removing "
            }
        );
    }
    if !args.dry_run {
        docker::remove_images(docker.cli(), &remove).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(Outcome::Success)
}
