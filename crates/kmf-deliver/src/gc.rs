//! `kmodfarm store gc`: artifacts that no published matrix references.
//!
//! Kept: every published matrix (`<driver>/<version>/matrix.json`), every driver index
//! (`<driver>/index.json`) and every object under a prefix a matrix lists (`<driver>/<output>/`). Everything else
//! is garbage: variants pruned from or never admitted to a matrix, and objects an interrupted publish left
//! behind. Deletion removes each unreferenced variant's `metadata.json` first, so a half-deleted variant never
//! looks complete.
//!
//! A `sync` publishing to the same store writes a variant's objects before the matrix that references them,
//! so gc leaves alone every directory holding an object younger than `min_age` (one hour by default, far
//! longer than a publish takes): running gc from a cron job beside the nightly sync is safe.

use std::collections::{BTreeMap, BTreeSet};

use kmf_store::{Store, StoreError};
use kmf_types::published::{
    belongs_to_record, is_driver_index_key, is_matrix_key, is_metadata_key, metadata_key,
    parse_matrix_key, prefix_splits, variant_prefix, PublishedVariant,
};
use kmf_types::MatrixEntry;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub store: String,
    pub matrices: Vec<String>,
    /// Objects kept.
    pub kept: usize,
    /// Unreferenced objects: deleted with `delete`, else only listed.
    pub garbage: Vec<String>,
    /// Unreferenced objects left alone because they, or objects beside them, are younger than `min_age`:
    /// a publish may be in progress.
    pub recent: Vec<String>,
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} is not a kmodfarm matrix ({why}): nothing is collected while a matrix cannot be read")]
    BadMatrix { key: String, why: String },
}

/// Lists (and with `delete`, removes) the store's unreferenced objects.
pub async fn gc(
    store: &dyn Store,
    delete: bool,
    min_age: std::time::Duration,
) -> Result<GcReport, GcError> {
    let listed = store.list_modified("").await?;
    let now = std::time::SystemTime::now();
    let dir_of = |k: &str| {
        k.rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default()
    };
    // Clock skew between this machine and the store counts as recent, never as old.
    let recent_dirs: BTreeSet<String> = listed
        .iter()
        .filter(|(_, t)| now.duration_since(*t).map_or(true, |age| age < min_age))
        .map(|(k, _)| dir_of(k))
        .collect();
    let keys: Vec<String> = listed.into_iter().map(|(k, _)| k).collect();
    let matrices: Vec<String> = keys.iter().filter(|k| is_matrix_key(k)).cloned().collect();
    // Live variant prefix (`<driver>/<output>/`) → the artifacts directory its record names; `None` keeps
    // everything under the prefix (records older than the artifacts layout, or a record that cannot be
    // read: nothing is guessed away).
    let mut live: BTreeMap<String, Option<String>> = BTreeMap::new();
    for key in &matrices {
        let driver = parse_matrix_key(key).expect("a matrix key").driver;
        let bytes = store.get_bytes(key).await?.unwrap_or_default();
        let entries: Vec<MatrixEntry> =
            serde_json::from_slice(&bytes).map_err(|e| GcError::BadMatrix {
                key: key.clone(),
                why: e.to_string(),
            })?;
        for e in entries {
            let prefix = variant_prefix(driver, &e.output);
            let record = store
                .get_bytes(&metadata_key(&prefix))
                .await?
                .and_then(|b| PublishedVariant::parse(&b).ok());
            live.insert(format!("{prefix}/"), record.and_then(|r| r.artifacts));
        }
    }
    let referenced = |k: &str| {
        is_matrix_key(k)
            || is_driver_index_key(k)
            // Old builds of a republished variant are garbage; the record and its build are not.
            || prefix_splits(k).any(|(prefix, rest)| {
                live.get(prefix)
                    .is_some_and(|artifacts| belongs_to_record(rest, artifacts.as_deref()))
            })
    };
    let (recent, mut garbage): (Vec<String>, Vec<String>) = keys
        .iter()
        .filter(|k| !referenced(k))
        .cloned()
        .partition(|k| recent_dirs.contains(&dir_of(k)));
    let kept = keys.len() - garbage.len() - recent.len();
    if delete {
        // Metadata first: a variant without metadata.json is incomplete to every reader.
        garbage.sort_by_key(|k| (!is_metadata_key(k), k.clone()));
        for k in &garbage {
            store.delete(k).await?;
        }
        garbage.sort();
    }
    Ok(GcReport {
        store: store.url(),
        matrices,
        kept,
        garbage,
        recent,
        deleted: delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_store::LocalStore;

    #[tokio::test]
    async fn keeps_what_matrices_reference() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let matrix = serde_json::json!([{
            "kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
            "kernelurls": [], "output": "0.1.0/debian/x86_64/6.1.0-9-amd64", "driverversion": "0.1.0",
        }]);
        store
            .put_bytes("hello/0.1.0/matrix.json", matrix.to_string().as_bytes())
            .await
            .unwrap();
        store.put_bytes("hello/index.json", b"{}").await.unwrap();
        for k in [
            "hello/0.1.0/debian/x86_64/6.1.0-9-amd64/hello.ko",
            "hello/0.1.0/debian/x86_64/6.1.0-9-amd64/metadata.json",
            "hello/0.1.0/debian/x86_64/6.1.0-9-amd64-rt/hello.ko",
            "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/metadata.json",
            "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/hello.ko",
            "stray.txt",
        ] {
            store.put_bytes(k, b"x").await.unwrap();
        }
        // Everything was just written: nothing is collected inside the grace period.
        let fresh = gc(&store, true, std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(fresh.garbage.is_empty());
        assert_eq!(fresh.recent.len(), 4);
        assert_eq!(store.list("").await.unwrap().len(), 8);
        // A publish in progress: one new object in an old variant's directory keeps the directory.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for k in store.list("").await.unwrap() {
            let f = std::fs::File::options()
                .write(true)
                .open(dir.path().join(&k))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        store
            .put_bytes("hello/0.1.0/debian/x86_64/6.1.0-5-amd64/hello.ko", b"y")
            .await
            .unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let publishing = gc(&store, false, hour).await.unwrap();
        assert_eq!(
            publishing.recent,
            [
                "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/hello.ko",
                "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/metadata.json",
            ]
        );
        let dry = gc(&store, false, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(
            dry.garbage,
            [
                "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/hello.ko",
                "hello/0.1.0/debian/x86_64/6.1.0-5-amd64/metadata.json",
                "hello/0.1.0/debian/x86_64/6.1.0-9-amd64-rt/hello.ko",
                "stray.txt",
            ]
        );
        assert_eq!(dry.kept, 4);
        assert_eq!(store.list("").await.unwrap().len(), 8);
        let done = gc(&store, true, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(done.garbage.len(), 4);
        assert_eq!(store.list("").await.unwrap().len(), 4);
        assert!(gc(&store, false, std::time::Duration::ZERO)
            .await
            .unwrap()
            .garbage
            .is_empty());

        store
            .put_bytes("bad/0.1.0/matrix.json", b"{")
            .await
            .unwrap();
        assert!(matches!(
            gc(&store, true, std::time::Duration::ZERO).await,
            Err(GcError::BadMatrix { .. })
        ));
    }

    #[tokio::test]
    async fn old_builds_of_a_republished_variant_are_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let output = "0.1.0/debian/x86_64/6.1.0-9-amd64";
        let matrix = serde_json::json!([{
            "kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
            "kernelurls": [], "output": output, "driverversion": "0.1.0",
        }]);
        store
            .put_bytes("hello/0.1.0/matrix.json", matrix.to_string().as_bytes())
            .await
            .unwrap();
        let record = serde_json::json!({
            "driver": "hello", "driver_version": "0.1.0", "kernel_release": "6.1.0-9-amd64",
            "build_key": "bbbb", "input_key": "i", "variant": matrix[0],
            "toolchain": {"builder": "b", "builder_identity": "b@1", "cc_version_text": null},
            "modules": [{"file_name": "hello.ko", "sha256": "00"}],
            "artifacts": "bbbb/",
        });
        let prefix = format!("hello/{output}");
        store
            .put_bytes(
                &format!("{prefix}/metadata.json"),
                record.to_string().as_bytes(),
            )
            .await
            .unwrap();
        for k in [
            "aaaa/hello.ko",
            "aaaa/build.log",
            "bbbb/hello.ko",
            "bbbb/build.log",
        ] {
            store
                .put_bytes(&format!("{prefix}/{k}"), b"x")
                .await
                .unwrap();
        }
        let report = gc(&store, true, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(
            report.garbage,
            [
                format!("{prefix}/aaaa/build.log"),
                format!("{prefix}/aaaa/hello.ko")
            ]
        );
        let left = store.list(&prefix).await.unwrap();
        assert_eq!(
            left,
            [
                format!("{prefix}/bbbb/build.log"),
                format!("{prefix}/bbbb/hello.ko"),
                format!("{prefix}/metadata.json")
            ]
        );
    }
}
