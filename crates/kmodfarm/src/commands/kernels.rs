use std::collections::BTreeMap;

use anyhow::bail;
use anyhow::Context;
use kmf_kernels::sources::{crawl_all, read_sources_file, CrawlDefaults, SourceSpec};
use kmf_kernels::{Family, RepoFormat};

use super::{debian_mirrors, http_client, write_output, Outcome};
use crate::cli::{CrawlArgs, MirrorArgs};

pub async fn crawl(args: CrawlArgs) -> anyhow::Result<Outcome> {
    let client = http_client()?;
    let cache = std::env::var_os("KMODFARM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(super::build::default_cache_dir)
        .join("indexes");
    let defaults = CrawlDefaults {
        arches: args.arch.clone(),
        index_cache: Some(cache.clone()),
        trust: super::trust_options(&args.trust)?,
    };
    let specs = match &args.sources {
        Some(path) => read_sources_file(path)?,
        None => specs_from_flags(&args)?,
    };
    let mirror_args = MirrorArgs {
        mirror: None,
        security_mirror: args.security_mirror.clone(),
        trust: args.trust.clone(),
    };
    let mut sources = Vec::new();
    for spec in &specs {
        sources.push(spec.resolve(&defaults, || {
            debian_mirrors(&mirror_args).map_err(|_| kmf_kernels::KernelsError::NoMirror)
        })?);
    }
    let list = crawl_all(&client, &sources, Some(&cache))
        .await
        .context("crawling")?;
    for (distro, entries) in &list.distros {
        tracing::info!(distro, kernels = entries.len(), "crawled");
    }
    let mut json = serde_json::to_string_pretty(&list)?;
    json.push('\n');
    write_output(args.out.as_deref(), &json)?;
    Ok(Outcome::Success)
}

/// The one source the flags describe: an apt distribution with --mirror/--suite, or one yum/dnf
/// source per --repo and --mirror-list.
fn specs_from_flags(args: &CrawlArgs) -> anyhow::Result<Vec<SourceSpec>> {
    let family = Family::parse(&args.distro).with_context(|| {
        format!(
            "unknown --distro {:?} (known: {})",
            args.distro,
            Family::ALL.map(|f| f.distribution()).join(", ")
        )
    })?;
    let base = SourceSpec {
        distro: family.distribution(),
        arches: Some(args.arch.clone()),
        ..SourceSpec::default()
    };
    match family.repo_format() {
        RepoFormat::Apt => {
            if !args.repo.is_empty() || !args.mirror_list.is_empty() {
                bail!("--repo and --mirror-list are for yum/dnf distributions; {family} takes --mirror and --suite");
            }
            Ok(vec![SourceSpec {
                uri: args.mirror.clone(),
                security_uri: args.security_mirror.clone(),
                ports_uri: args.ports_mirror.clone(),
                suites: args.suite.clone(),
                flavours: args.flavour.clone(),
                ..base
            }])
        }
        RepoFormat::RpmMd => {
            if args.mirror.is_some() || args.suite.is_some() || args.ports_mirror.is_some() {
                bail!("{family} is crawled from yum/dnf repositories: pass --repo URL or --mirror-list URL, not --mirror/--suite");
            }
            if args.repo.is_empty() && args.mirror_list.is_empty() {
                bail!("{family} has no built-in mirror: pass --repo URL (the directory holding repodata/, `$basearch` allowed) or --mirror-list URL, or list repositories in --sources FILE");
            }
            let rpm = |baseurl: Option<String>, mirrorlist: Option<String>| SourceSpec {
                baseurl,
                mirrorlist,
                packages: Some(args.package.clone()),
                ..base.clone()
            };
            Ok(args
                .repo
                .iter()
                .map(|r| rpm(Some(r.clone()), None))
                .chain(args.mirror_list.iter().map(|m| rpm(None, Some(m.clone()))))
                .collect())
        }
    }
}

pub async fn show(sources: Vec<String>, json: bool) -> anyhow::Result<Outcome> {
    let client = http_client()?;
    let list = kmf_kernels::load_all(&sources, &client).await?;
    let mut summary: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (distro, entries) in &list.distros {
        for e in entries {
            let arch = e
                .arch
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".into());
            *summary
                .entry(distro.clone())
                .or_default()
                .entry(arch)
                .or_default() += 1;
        }
    }
    if json {
        write_output(None, &(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        let mut text = String::new();
        for (distro, arches) in &summary {
            let parts: Vec<String> = arches.iter().map(|(a, n)| format!("{a}: {n}")).collect();
            text.push_str(&format!("{distro:<20} {}\n", parts.join(", ")));
        }
        text.push_str(&format!("{} kernels in all\n", list.len()));
        write_output(None, &text)?;
    }
    Ok(Outcome::Success)
}
