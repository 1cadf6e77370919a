//! `kmodfarm git-cache …`: the farm's git cache (kmf_git::cache).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{write_output, Outcome};
use crate::cli::{GitCacheRestoreArgs, GitCacheUpdateArgs};

/// A repository argument as a URL: a `git+` source loses its prefix, ref and subdirectory.
fn repo_url(arg: &str) -> anyhow::Result<String> {
    if kmf_git::GitSpec::is_git(arg) {
        return Ok(kmf_git::GitSpec::parse(arg)?.url);
    }
    Ok(kmf_git::GitSpec::parse(&format!("git+{arg}"))
        .with_context(|| format!("{arg}: not a repository URL"))?
        .url)
}

pub async fn update(args: GitCacheUpdateArgs) -> anyhow::Result<Outcome> {
    let urls = args
        .repos
        .iter()
        .map(|r| repo_url(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store: Arc<dyn kmf_store::Store> = kmf_store::open(&args.store)
        .with_context(|| format!("opening {}", args.store))?
        .into();
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(super::build::default_cache_dir);
    let opts = kmf_git::cache::UpdateOptions {
        wait: Duration::from_secs(args.wait),
        lock_ttl: Duration::from_secs(args.lock_ttl),
        limits: kmf_git::cache::CacheLimits {
            max_bytes: args.max_size << 20,
        },
        work_dir: cache.join("git/updates"),
    };
    let report = kmf_git::cache::update(store, &urls, &opts).await?;
    if args.json {
        write_output(None, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        for r in &report {
            let what = match &r.outcome {
                kmf_git::cache::RepoOutcome::Unchanged => "unchanged".to_string(),
                kmf_git::cache::RepoOutcome::Updated { bytes, restored } => format!(
                    "updated ({bytes} bytes{})",
                    if *restored {
                        ", restored and fetched"
                    } else {
                        ", cloned"
                    }
                ),
                kmf_git::cache::RepoOutcome::Failed { message } => format!("FAILED: {message}"),
            };
            eprintln!("{:<60} {what} ({:.1} s)", r.url, r.secs);
        }
    }
    let failed = report
        .iter()
        .filter(|r| matches!(r.outcome, kmf_git::cache::RepoOutcome::Failed { .. }))
        .count();
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

pub async fn restore(args: GitCacheRestoreArgs) -> anyhow::Result<Outcome> {
    let url = repo_url(&args.repo)?;
    anyhow::ensure!(
        !args.dir.exists(),
        "{} exists: restore writes a new directory",
        args.dir.display()
    );
    let store = kmf_store::open(&args.store).with_context(|| format!("opening {}", args.store))?;
    let limits = kmf_git::cache::CacheLimits {
        max_bytes: args.max_size << 20,
    };
    let found = match kmf_git::cache::restore(store.as_ref(), &url, &args.dir, &limits).await {
        Ok(found) => found,
        Err(kmf_git::cache::CacheError::BadTarball { url, why }) => {
            eprintln!("warning: {url}: the cached tarball is not usable ({why}); cloning");
            false
        }
        Err(e) => {
            // Not damage but a tarball the updater did not write: the caller must hear of it rather than
            // get a clone it cannot tell from a restore.
            if let kmf_git::cache::CacheError::Refused { key, .. } = &e {
                anyhow::bail!(
                    "{e}. The git-cache updater never writes such a tarball: remove {key} and the .md5 \
                     beside it from the store, and `kmodfarm git-cache update {}` makes it again",
                    args.repo
                );
            }
            return Err(e.into());
        }
    };
    let dir = args.dir.clone();
    let fetched =
        tokio::task::spawn_blocking(move || kmf_git::cache::fetch_into(&dir, &url, !found))
            .await
            .expect("git fetch panicked");
    match (found, fetched) {
        (_, Ok(())) => eprintln!(
            "{}: {}",
            args.dir.display(),
            if found {
                "restored from the git cache, then fetched"
            } else {
                "not in the git cache: cloned"
            }
        ),
        (true, Err(e)) => eprintln!(
            "warning: {}: restored from the git cache; the upstream is unreachable ({e}), so it is the cache's copy alone",
            args.dir.display()
        ),
        (false, Err(e)) => {
            let _ = std::fs::remove_dir_all(&args.dir);
            return Err(e.into());
        }
    }
    Ok(Outcome::Success)
}
