//! `kmodfarm install` and `kmodfarm store gc`: delivery from the store (logic in kmf-deliver).

use anyhow::Context;
use kmf_deliver::{Host, HostOverrides, InstallOptions};

use super::Outcome;
use crate::cli::{InstallArgs, StoreGcArgs};

pub async fn install(args: InstallArgs) -> anyhow::Result<Outcome> {
    let store = kmf_store::open(&args.store).context("opening the store")?;
    let host = Host::detect(
        &args.root,
        HostOverrides {
            distro: args.distro.clone(),
            kernel_release: args.kernel_release.clone(),
            kernel_version: args.kernel_version.clone(),
            arch: args.arch,
        },
    )?;
    let opts = InstallOptions {
        driver: args.driver.clone(),
        driver_version: args.driver_version.clone(),
        root: args.root.clone(),
        dest: args.dest.clone(),
        load: args.load,
        verify_cert: args.verify_cert.clone(),
    };
    let (report, store) = match kmf_deliver::install(store.as_ref(), &host, &opts).await {
        Err(kmf_deliver::InstallError::NoMatch(m)) if args.build_fallback.is_some() => {
            let project = args.build_fallback.as_deref().expect("checked");
            eprintln!(
                "{m}: building it here (--build-fallback {})",
                project.display()
            );
            let url = super::fallback::build_for_host(&args, project, &host).await?;
            let local = kmf_store::open(&url).context("opening the fallback store")?;
            let opts = InstallOptions {
                driver: Some(
                    load_driver_name(project, args.cache.as_deref())
                        .await
                        .unwrap_or_else(|| opts.driver.clone().unwrap_or_default()),
                ),
                ..opts
            };
            (
                kmf_deliver::install(local.as_ref(), &host, &opts).await?,
                local,
            )
        }
        other => (other?, store),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!(
            "installed {} {} for {} {} {} from {} ({}):",
            report.driver,
            report.driver_version,
            host.distro,
            host.arch,
            host.kernel_release,
            store.url(),
            report.variant
        );
        for m in &report.modules {
            eprintln!("  {} (sha256 {} verified)", m.path.display(), m.sha256);
        }
        for f in &report.firmware {
            eprintln!("  firmware {} (sha256 verified)", f.display());
        }
        if let Some(conf) = &report.modprobe_conf {
            eprintln!("  modprobe configuration {}", conf.display());
        }
        eprintln!("  depmod: {}", report.depmod);
        for p in &report.inputs {
            let proof = p
                .proof
                .as_ref()
                .map(|proof| proof.summary())
                .unwrap_or_else(|| "no proof recorded (published before proofs were)".into());
            eprintln!("  built from {}: {proof}", p.file_name);
        }
        for m in &report.unloaded {
            eprintln!("  unloaded {m}");
        }
        for m in &report.loaded {
            eprintln!("  loaded {m}");
        }
        for n in &report.notes {
            eprintln!("  note: {n}");
        }
    }
    Ok(Outcome::Success)
}

/// The driver name of a project, so that install picks it in a fallback store holding several drivers.
async fn load_driver_name(
    project: &std::path::Path,
    cache: Option<&std::path::Path>,
) -> Option<String> {
    let cache = cache
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(super::build::default_cache_dir);
    super::build::load_drivers(&[project.to_path_buf()], None, &cache, None, None)
        .await
        .ok()?
        .first()
        .map(|d| d.name.clone())
}

pub async fn gc(args: StoreGcArgs) -> anyhow::Result<Outcome> {
    let store = kmf_store::open(&args.store).context("opening the store")?;
    let report = kmf_deliver::gc(
        store.as_ref(),
        args.delete,
        std::time::Duration::from_secs(args.min_age),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if report.deleted {
            "deleted"
        } else {
            "unreferenced"
        };
        for k in &report.garbage {
            println!("{verb} {k}");
        }
        for k in &report.recent {
            println!("recent {k}");
        }
        eprintln!(
            "{}: {} matrices, {} objects kept, {} too recent to judge (--min-age {}s), {} {}{}",
            report.store,
            report.matrices.len(),
            report.kept,
            report.recent.len(),
            args.min_age,
            report.garbage.len(),
            verb,
            if report.deleted || report.garbage.is_empty() {
                ""
            } else {
                " (pass --delete to remove them)"
            }
        );
    }
    Ok(Outcome::Success)
}
