//! The nightly job's matrix side: bring the store up to date with a freshly generated matrix ([`crate::run::sync`]
//! runs it).
//!
//! For each driver: (1) read the matrix published last time (`<driver>/<MAJOR.MINOR.0>/matrix.json`),
//! (2) take the freshly generated one, (3) diff them, with groups that vanished or shrank held rather than
//! removed, (4) build every variant of the new matrix whose build key differs from the store's (new and
//! modified ones, and any whose source or toolchain changed under the same version; the rest are found up to
//! date without a download), (5) publish artifacts, then the new matrix last.
//!
//! The published matrix lists only variants whose artifacts are in the store: a variant that failed for the
//! first time stays out (the next run retries it); one that failed after an earlier success keeps its earlier
//! entry, whose artifacts are still there and whose diff against the next crawl still shows the change, so it is
//! retried too. Removed variants keep their artifacts and their place in the matrix unless pruning is asked
//! for; then they leave the matrix first and their artifacts are deleted after it is published.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kmf_matrix::{DiffOptions, DiffSummary, HeldGroup, MatrixDiff};
use kmf_store::Store;
use kmf_types::published::{self, driver_index_key, DriverIndex};
use kmf_types::MatrixEntry;
use serde::Serialize;

use crate::{Driver, VariantResult};

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub diff: DiffOptions,
    /// Delete the artifacts of removed variants (never those of held groups). Off: only report them.
    pub prune: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the published matrix {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: kmf_store::StoreError,
    },
    #[error("the published matrix {key} is not a kmodfarm matrix ({source}); fix or delete it to start afresh")]
    BadMatrix {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("publishing the matrix {key}: {source}")]
    Publish {
        key: String,
        #[source]
        source: kmf_store::StoreError,
    },
}

/// What a sync did for one driver: the element of `sync.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DriverSync {
    pub driver: String,
    pub driver_version: String,
    /// Store key of the published matrix.
    pub matrix: String,
    /// Entries in the matrix published before this run (0 on the first run).
    pub previous: usize,
    /// Entries in the freshly generated matrix.
    pub generated: usize,
    pub diff: DiffSummary,
    pub held: Vec<HeldGroup>,
    /// Variants built (successfully) by this run.
    pub built: usize,
    /// Variants whose build key matched the store: nothing downloaded or built.
    pub up_to_date: usize,
    pub failed: usize,
    /// Variants the driver's requirements rule out: not built, not in the matrix, not failures.
    pub excluded: usize,
    /// Entries in the matrix this run published.
    pub published: usize,
    /// Store prefixes of removed variants: deleted with pruning, else left in place and listed here.
    pub removed_prefixes: Vec<String>,
    pub pruned: bool,
    pub warnings: Vec<String>,
}

/// The key of a driver's published matrix ([`kmf_types::published::matrix_key`]).
pub fn matrix_key(driver: &Driver) -> String {
    published::matrix_key(&driver.name, &driver.version)
}

/// Adds (or refreshes) this driver version in the index, after its matrix was published.
async fn update_driver_index(
    store: &dyn Store,
    driver: &Driver,
    matrix: &str,
) -> Result<(), kmf_store::StoreError> {
    let key = driver_index_key(&driver.name);
    // An index that cannot be read is rebuilt: it only points at matrices, which stay where they are.
    let mut index: DriverIndex = store
        .get_bytes(&key)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    index.driver = driver.name.clone();
    index.add(&driver.version, matrix);
    let json = serde_json::to_vec_pretty(&index).expect("index serialises");
    store.put_bytes(&key, &json).await
}

/// The matrix published last time, or an empty one when there is none.
pub async fn published_matrix(store: &dyn Store, key: &str) -> Result<Vec<MatrixEntry>, SyncError> {
    let bytes = store
        .get_bytes(key)
        .await
        .map_err(|source| SyncError::Store {
            key: key.to_string(),
            source,
        })?;
    match bytes {
        None => Ok(vec![]),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|source| SyncError::BadMatrix {
            key: key.to_string(),
            source,
        }),
    }
}

/// One driver's matrix before and after a run, for [`publish_matrix`].
pub(crate) struct Plan {
    pub driver: Arc<Driver>,
    pub key: String,
    pub previous: Vec<MatrixEntry>,
    pub generated: Vec<MatrixEntry>,
    pub diff: MatrixDiff,
}

/// Publishes a driver's new matrix from `results` (one per generated entry, in order), then its index entry,
/// then deletes pruned variants.
pub(crate) async fn publish_matrix(
    store: &dyn Store,
    plan: Plan,
    results: &[VariantResult],
    opts: &SyncOptions,
) -> Result<DriverSync, SyncError> {
    let previous_by_output: BTreeMap<&str, &MatrixEntry> = plan
        .previous
        .iter()
        .map(|e| (e.output.as_str(), e))
        .collect();
    let mut published: Vec<MatrixEntry> = Vec::new();
    let (mut built, mut up_to_date, mut failed, mut excluded) = (0, 0, 0, 0);
    for (entry, result) in plan.generated.iter().zip(results) {
        match &result.status {
            crate::Status::Success | crate::Status::UpToDate => {
                if result.status == crate::Status::Success {
                    built += 1;
                } else {
                    up_to_date += 1;
                }
                let mut e = entry.clone();
                e.builder = result.builder.clone();
                e.buildkey = result.build_key.clone();
                published.push(e);
            }
            // Not applicable to the kernel: out of the matrix, whatever was published before.
            crate::Status::Excluded { .. } => excluded += 1,
            crate::Status::Failed { .. } => {
                failed += 1;
                if let Some(old) = previous_by_output.get(entry.output.as_str()) {
                    published.push((*old).clone());
                }
            }
        }
    }
    // Held groups keep what they had.
    published.extend(plan.diff.kept.iter().cloned());
    let live: HashSet<String> = published.iter().map(|e| e.output.clone()).collect();
    let removed_prefixes: Vec<String> = plan
        .diff
        .removed
        .iter()
        .filter(|e| !live.contains(&e.output))
        .map(|e| published::variant_prefix(&plan.driver.name, &e.output))
        .collect();
    if !opts.prune {
        // Without pruning, removed variants stay listed: their artifacts are still served, and a later run with
        // pruning can still find and delete them.
        published.extend(
            plan.diff
                .removed
                .iter()
                .filter(|e| !live.contains(&e.output))
                .cloned(),
        );
    }
    published.sort_by(|a, b| a.output.cmp(&b.output));
    published.dedup_by(|a, b| a.output == b.output);

    let json = kmf_matrix::to_json(&published).expect("matrix serialises");
    store
        .put_bytes(&plan.key, json.as_bytes())
        .await
        .map_err(|source| SyncError::Publish {
            key: plan.key.clone(),
            source,
        })?;

    let mut warnings = plan.diff.warnings();
    if let Err(e) = update_driver_index(store, &plan.driver, &plan.key).await {
        warnings.push(format!(
            "updating {}: {e}",
            driver_index_key(&plan.driver.name)
        ));
    }
    if opts.prune {
        for prefix in &removed_prefixes {
            if let Err(e) = delete_prefix(store, prefix).await {
                warnings.push(format!("deleting {prefix}: {e}"));
            }
        }
    } else if !removed_prefixes.is_empty() {
        warnings.push(format!(
            "{} removed variant(s) keep their artifacts; pass --prune to delete them",
            removed_prefixes.len()
        ));
    }
    Ok(DriverSync {
        driver: plan.driver.name.clone(),
        driver_version: plan.driver.version.clone(),
        matrix: plan.key,
        previous: plan.previous.len(),
        generated: plan.generated.len(),
        diff: plan.diff.summary(),
        held: plan.diff.held.clone(),
        built,
        up_to_date,
        failed,
        excluded,
        published: published.len(),
        removed_prefixes,
        pruned: opts.prune,
        warnings,
    })
}

/// Metadata first, so a half-deleted variant no longer looks complete to anyone reading the store.
async fn delete_prefix(store: &dyn Store, prefix: &str) -> Result<(), kmf_store::StoreError> {
    let mut keys = store.list(&format!("{prefix}/")).await?;
    keys.sort_by_key(|k| !published::is_metadata_key(k));
    for key in keys {
        store.delete(&key).await?;
    }
    Ok(())
}
