use std::collections::BTreeMap;

use anyhow::Context;
use kmf_kernels::apt::CrawlOptions;

use super::{debian_mirrors, http_client, write_output, Outcome};
use crate::cli::CrawlArgs;

pub async fn crawl(args: CrawlArgs) -> anyhow::Result<Outcome> {
    let client = http_client()?;
    let opts = CrawlOptions {
        mirrors: debian_mirrors(&args.mirrors)?,
        suites: args.suite,
        arches: args.arch,
        flavours: args.flavour,
        index_cache: Some(
            std::env::var_os("KMODFARM_CACHE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(super::build::default_cache_dir)
                .join("indexes"),
        ),
    };
    let list = kmf_kernels::apt::crawl_debian(&client, &opts)
        .await
        .context("crawling the Debian mirror")?;
    tracing::info!(kernels = list.len(), "crawl finished");
    let mut json = serde_json::to_string_pretty(&list)?;
    json.push('\n');
    write_output(args.out.as_deref(), &json)?;
    Ok(Outcome::Success)
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
