//! Plans and bundles in a store, for workers that reach nothing but the store.
//!
//! Layout under a store root (the URL given to `plan --out`):
//!
//! * `plans/<plan id>/plan.json`: the plan, written last;
//! * `cache/sha256/<sha256>`: every carried file (header packages, builder archives, boot packages, source
//!   archives), shared by all plans: a file already there is not uploaded again;
//! * `staging/<plan id>/shard-<N>/<driver>/<output>/`: the workers' bundles, each `record.json` last.
//!
//! A worker is given a [`StoreReader`] for the plan (it cannot write there) and a store rooted at its
//! staging prefix for the bundles. Everything it fetches is fetched into a local plan directory of the
//! same shape as `plan --out DIR` writes, size-limited by the plan's own sizes, and checked against the
//! plan's SHA256 on use; the plan itself must carry the id its URL names. The publisher downloads only the
//! bundle files of the plan's own shards and variants, each at most a set size, into a private directory,
//! and verifies them there exactly as bundles from a directory.

use std::path::{Path, PathBuf};

use kmf_build::untrusted::create_dirs_beneath;
use kmf_store::{Store, StoreError, StoreReader};
use kmf_types::names::{check_path_component, check_relative_path};

use crate::bundle::{bundle_dir, RECORD_FILE};
use crate::plan::{input_path, Plan, PlanError, PlannedInput, PLAN_FILE};

pub const PLANS_PREFIX: &str = "plans";
pub const CACHE_PREFIX: &str = "cache/sha256";
pub const STAGING_PREFIX: &str = "staging";
/// Largest `plan.json` read from a store.
const MAX_PLAN_BYTES: u64 = 256 << 20;
/// Largest file of a bundle taken from a store (modules are limited further by the verification).
const MAX_BUNDLE_FILE_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PlanStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    #[error("`{0}` is not a plan's location in a store: it must end in /plans/<plan id>")]
    NotAPlanUrl(String),
    #[error("{url} holds plan {found}, not the plan {wanted} its location names")]
    WrongPlan {
        url: String,
        wanted: String,
        found: String,
    },
    #[error("{url} has no plan.json")]
    NoPlan { url: String },
    #[error("the plan's {what} {key} is missing from the store")]
    MissingInput { what: String, key: String },
}

/// Where a plan is: a local directory, or a store root and the plan's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanLocation {
    Dir(PathBuf),
    Store { root: String, id: String },
}

/// Whether `s` names a store (a URL) rather than a local directory.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

impl PlanLocation {
    /// A path, or `<store URL>/plans/<plan id>` (a store URL's options, `?…`, stay at its end).
    pub fn parse(s: &str) -> Result<PlanLocation, PlanStoreError> {
        if !is_url(s) {
            return Ok(PlanLocation::Dir(PathBuf::from(s)));
        }
        let (path, query) = split_query(s);
        let trimmed = path.trim_end_matches('/');
        let (rest, id) = trimmed
            .rsplit_once('/')
            .ok_or_else(|| PlanStoreError::NotAPlanUrl(s.to_string()))?;
        let root = rest
            .strip_suffix(&format!("/{PLANS_PREFIX}"))
            .ok_or_else(|| PlanStoreError::NotAPlanUrl(s.to_string()))?;
        let hex = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || root.ends_with(':') || root.ends_with('/') {
            return Err(PlanStoreError::NotAPlanUrl(s.to_string()));
        }
        Ok(PlanLocation::Store {
            root: format!("{root}{query}"),
            id: id.to_string(),
        })
    }
}

/// `(path, "?query")` of a URL (the query empty when there is none).
fn split_query(url: &str) -> (&str, &str) {
    match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    }
}

/// `<root>/<sub>`, with the root URL's options kept at the end.
pub fn join_url(root: &str, sub: &str) -> String {
    let (path, query) = split_query(root);
    format!("{}/{sub}{query}", path.trim_end_matches('/'))
}

/// The URL of plan `id` under the store root `root`.
pub fn plan_url(root: &str, id: &str) -> String {
    join_url(root, &format!("{PLANS_PREFIX}/{id}"))
}

/// The URL of plan `id`'s staging prefix under the store root `root`, where its workers put bundles.
pub fn staging_url(root: &str, id: &str) -> String {
    join_url(root, &format!("{STAGING_PREFIX}/{id}"))
}

fn cache_key(sha256: &str) -> String {
    format!("{CACHE_PREFIX}/{sha256}")
}

/// Every file a plan carries, with what it is.
fn carried(plan: &Plan, shards: Option<&[usize]>) -> Vec<(&'static str, PlannedInput, PathBuf)> {
    let wanted = |v: &&crate::plan::PlannedVariant| match shards {
        Some(s) => v.shards.iter().any(|i| s.contains(i)),
        None => true,
    };
    let mut out = Vec::new();
    let mut builders = std::collections::BTreeSet::new();
    let mut drivers = std::collections::BTreeSet::new();
    for v in plan.variants.iter().filter(wanted) {
        for p in &v.packages {
            out.push(("header package", p.clone(), PathBuf::new()));
        }
        if let Some(b) = &v.boot_packages {
            out.push(("kernel image", b.kernel.clone(), PathBuf::new()));
            for part in &b.kernel_parts {
                out.push(("kernel image part", part.clone(), PathBuf::new()));
            }
            out.push(("busybox package", b.busybox.clone(), PathBuf::new()));
        }
        if let Some(b) = &v.builder {
            builders.insert(b.clone());
        }
        drivers.insert(v.driver.clone());
    }
    for b in &plan.builders {
        if builders.contains(&b.id) {
            out.push(("builder archive", b.archive.clone(), PathBuf::new()));
        }
    }
    for d in &plan.drivers {
        if let (Some(source), true) = (&d.source, shards.is_none() || drivers.contains(&d.name)) {
            out.push((
                "source archive",
                PlannedInput {
                    proof: None,
                    file_name: source.path.clone(),
                    sha256: source.sha256.clone(),
                    size: source.size,
                    url: None,
                },
                PathBuf::from(&source.path),
            ));
        }
    }
    out
}

/// Uploads the plan written to `dir` into the store: its carried files into the shared cache (those the
/// store lacks), then `plans/<id>/plan.json`. Returns the plan's URL under `root` (the store's URL).
pub async fn upload_plan(
    store: &dyn Store,
    root: &str,
    plan: &Plan,
    dir: &Path,
) -> Result<String, PlanStoreError> {
    let mut uploaded = 0u64;
    for (_, input, local) in carried(plan, None) {
        let key = cache_key(&input.sha256);
        if store.exists(&key).await? {
            continue;
        }
        let path = if local.as_os_str().is_empty() {
            input_path(dir, &input.sha256)
        } else {
            dir.join(local)
        };
        store.put_file(&key, &path).await?;
        uploaded += input.size;
    }
    store
        .put_bytes(
            &format!("{PLANS_PREFIX}/{}/{PLAN_FILE}", plan.id),
            plan.to_json().as_bytes(),
        )
        .await?;
    tracing::info!(plan = %plan.id, bytes = uploaded, "plan uploaded");
    Ok(plan_url(root, &plan.id))
}

/// Reads the plan at `location` and, for a plan in a store, fetches into `<cache>/plans/<id>/` what
/// `shards` (all when `None`) need: the sources, and with `inputs` the header packages, builders and boot
/// packages. Returns the local plan directory and the plan.
pub async fn fetch_plan(
    location: &PlanLocation,
    cache: &Path,
    shards: Option<&[usize]>,
    inputs: bool,
) -> Result<(PathBuf, Plan), PlanStoreError> {
    let (root, id) = match location {
        PlanLocation::Dir(dir) => {
            let path = dir.join(PLAN_FILE);
            let bytes = std::fs::read(&path).map_err(|e| PlanStoreError::Io(path.clone(), e))?;
            let plan = Plan::parse(&bytes, &path.display().to_string())?;
            return Ok((dir.clone(), plan));
        }
        PlanLocation::Store { root, id } => (root, id),
    };
    let reader = kmf_store::open_reader(root)?;
    let url = plan_url(root, id);
    let dir = cache.join(PLANS_PREFIX).join(id);
    std::fs::create_dir_all(dir.join(CACHE_PREFIX))
        .map_err(|e| PlanStoreError::Io(dir.clone(), e))?;
    let plan_path = dir.join(PLAN_FILE);
    let key = format!("{PLANS_PREFIX}/{id}/{PLAN_FILE}");
    if reader
        .get_file(&key, &plan_path, MAX_PLAN_BYTES)
        .await?
        .is_none()
    {
        return Err(PlanStoreError::NoPlan { url });
    }
    let bytes = std::fs::read(&plan_path).map_err(|e| PlanStoreError::Io(plan_path.clone(), e))?;
    let plan = Plan::parse(&bytes, &url)?;
    if &plan.id != id {
        return Err(PlanStoreError::WrongPlan {
            url,
            wanted: id.clone(),
            found: plan.id,
        });
    }
    fetch_inputs(reader.as_ref(), &plan, &dir, shards, inputs).await?;
    Ok((dir, plan))
}

async fn fetch_inputs(
    reader: &dyn StoreReader,
    plan: &Plan,
    dir: &Path,
    shards: Option<&[usize]>,
    inputs: bool,
) -> Result<(), PlanStoreError> {
    let mut fetched = 0u64;
    for (what, input, local) in carried(plan, shards) {
        if !inputs && what != "source archive" {
            continue;
        }
        kmf_types::names::check_path_component("a carried file's digest", &input.sha256).map_err(
            |e| PlanStoreError::Io(dir.to_path_buf(), std::io::Error::other(e.to_string())),
        )?;
        let dest = if local.as_os_str().is_empty() {
            input_path(dir, &input.sha256)
        } else {
            check_relative_path("source archive path", &input.file_name).map_err(|e| {
                PlanStoreError::Io(dir.to_path_buf(), std::io::Error::other(e.to_string()))
            })?;
            dir.join(local)
        };
        // Present from an earlier shard of the same plan (it is checked against its digest on use).
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == input.size) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| PlanStoreError::Io(parent.to_path_buf(), e))?;
        }
        let key = cache_key(&input.sha256);
        match reader.get_file(&key, &dest, input.size).await? {
            Some(n) => fetched += n,
            None => {
                return Err(PlanStoreError::MissingInput {
                    what: format!("{what} {}", input.file_name),
                    key,
                })
            }
        }
    }
    tracing::info!(plan = %plan.id, bytes = fetched, "fetched the plan's inputs from the store");
    Ok(())
}

/// Uploads the bundles `work` wrote for `shard` under `dir` to a store rooted at the staging prefix: each
/// bundle's files, its record last. Returns how many bundles were uploaded.
pub async fn upload_bundles(
    staging: &dyn Store,
    plan: &Plan,
    shard: usize,
    dir: &Path,
) -> Result<usize, PlanStoreError> {
    let mut count = 0;
    let Some(s) = plan.shards.get(shard) else {
        return Ok(0);
    };
    for id in &s.variants {
        let rel = bundle_dir(shard, id);
        let local = dir.join(&rel);
        let Ok(entries) = std::fs::read_dir(&local) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.iter().any(|n| n == RECORD_FILE) {
            continue;
        }
        // The record last: a bundle without it is incomplete to the publisher.
        names.sort_by_key(|n| n == RECORD_FILE);
        let prefix = rel.to_string_lossy().into_owned();
        for name in names {
            staging
                .put_file(&format!("{prefix}/{name}"), &local.join(&name))
                .await?;
        }
        count += 1;
    }
    Ok(count)
}

/// Downloads the plan's bundles from the staging store `url` into `dest` (a fresh private directory): for
/// each variant and each shard that builds it, the objects under `shard-<N>/<variant>/`.
///
/// What a worker put there is judged by the verification of the copy, as for bundles in a directory, and
/// never stops the publishing of other bundles: an object deeper than one file name becomes a directory in
/// the copy (which refuses that bundle), and one larger than [`MAX_BUNDLE_FILE_BYTES`] is left out (the
/// bundle then lacks a file its record names, or its record). Only the store failing stops the run.
pub async fn fetch_bundles(url: &str, plan: &Plan, dest: &Path) -> Result<(), PlanStoreError> {
    let reader = kmf_store::open_reader(url)?;
    fetch_bundles_from(reader.as_ref(), plan, dest, MAX_BUNDLE_FILE_BYTES).await
}

async fn fetch_bundles_from(
    reader: &dyn StoreReader,
    plan: &Plan,
    dest: &Path,
    max_file_bytes: u64,
) -> Result<(), PlanStoreError> {
    use futures::StreamExt;
    // One listing of the staging prefix (a few requests however many bundles), then each planned
    // bundle's keys by prefix; keys of no planned bundle are never read.
    let all = reader.list("").await?;
    let mut bundles = Vec::new();
    for v in &plan.variants {
        for &shard in &v.shards {
            let rel = bundle_dir(shard, &v.id);
            let prefix = format!("{}/", rel.to_string_lossy());
            let start = all.partition_point(|k| k.as_str() < prefix.as_str());
            let keys: Vec<String> = all[start..]
                .iter()
                .take_while(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            if !keys.is_empty() {
                bundles.push((rel, prefix, keys));
            }
        }
    }
    // Each bundle is a few small objects: round trips, fetched many at a time.
    let mut fetches = futures::stream::iter(bundles)
        .map(|(rel, prefix, keys)| fetch_bundle(reader, rel, prefix, keys, dest, max_file_bytes))
        .buffer_unordered(BUNDLE_FETCHES);
    while let Some(r) = fetches.next().await {
        r?;
    }
    Ok(())
}

/// Bundles fetched at once by `publish --bundles URL`.
const BUNDLE_FETCHES: usize = 16;

async fn fetch_bundle(
    reader: &dyn StoreReader,
    rel: PathBuf,
    prefix: String,
    keys: Vec<String>,
    dest: &Path,
    max_file_bytes: u64,
) -> Result<(), PlanStoreError> {
    let io = |p: PathBuf, e: kmf_build::untrusted::UntrustedError| {
        PlanStoreError::Io(p, std::io::Error::other(e.to_string()))
    };
    let local = create_dirs_beneath(dest, &rel).map_err(|e| io(dest.join(&rel), e))?;
    for key in keys {
        let name = key.strip_prefix(&prefix).unwrap_or_default();
        if check_path_component("bundle file", name).is_err() {
            tracing::warn!(key = %kmf_types::names::printable(&key), "not a bundle file");
            let first = name.split('/').next().unwrap_or_default();
            if check_path_component("bundle entry", first).is_ok() {
                create_dirs_beneath(&local, Path::new(first))
                    .map_err(|e| io(local.join(first), e))?;
            }
            continue;
        }
        match reader
            .get_file(&key, &local.join(name), max_file_bytes)
            .await
        {
            Ok(_) => {}
            Err(StoreError::TooLarge { .. }) => {
                tracing::warn!(key = %key, "left out: larger than {max_file_bytes} bytes");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_workers_odd_objects_refuse_its_bundle_not_the_run() {
        use crate::plan::{PlanOptions, PlannedVariant};
        let entry: kmf_types::MatrixEntry = serde_json::from_value(serde_json::json!({
            "kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
            "kernelurls": [], "output": "0.1.0/debian/x86_64/6.1.0-9-amd64", "driverversion": "0.1.0"
        }))
        .unwrap();
        let variant = |driver: &str| PlannedVariant {
            id: format!("{driver}/{}", entry.output),
            driver: driver.into(),
            entry: entry.clone(),
            input_key: "k".into(),
            builder: None,
            group: "debian/bookworm".into(),
            kernel_release: None,
            cc_version_text: None,
            packages: vec![],
            unavailable: None,
            boot_packages: None,
            shards: vec![],
        };
        let plan = Plan::new(
            PlanOptions {
                prefetch: false,
                ..Default::default()
            },
            vec![],
            vec![variant("good"), variant("odd")],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = kmf_store::LocalStore::new(dir.path().join("staging")).unwrap();
        let good = format!("shard-0/good/{}", entry.output);
        let odd = format!("shard-0/odd/{}", entry.output);
        store
            .put_bytes(&format!("{good}/record.json"), b"{}")
            .await
            .unwrap();
        store
            .put_bytes(&format!("{good}/hello.ko"), b"12345")
            .await
            .unwrap();
        store
            .put_bytes(&format!("{odd}/record.json"), b"{}")
            .await
            .unwrap();
        store
            .put_bytes(&format!("{odd}/nested/x.ko"), b"1")
            .await
            .unwrap();
        store
            .put_bytes(&format!("{odd}/huge.ko"), b"123456789")
            .await
            .unwrap();
        let dest = dir.path().join("copy");
        std::fs::create_dir(&dest).unwrap();
        let reader = kmf_store::open_reader(&store.url()).unwrap();
        fetch_bundles_from(reader.as_ref(), &plan, &dest, 8)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dest.join(&good).join("hello.ko")).unwrap(),
            b"12345"
        );
        assert!(
            dest.join(&odd).join("nested").is_dir(),
            "the copy keeps the oddity visible"
        );
        assert!(!dest.join(&odd).join("nested/x.ko").exists());
        assert!(!dest.join(&odd).join("huge.ko").exists());
        assert!(dest.join(&odd).join("record.json").is_file());
    }

    #[test]
    fn plan_locations() {
        let id = "a".repeat(64);
        assert_eq!(
            PlanLocation::parse("plan-dir").unwrap(),
            PlanLocation::Dir("plan-dir".into())
        );
        assert_eq!(
            PlanLocation::parse(&format!("s3://b/nightly/plans/{id}/")).unwrap(),
            PlanLocation::Store {
                root: "s3://b/nightly".into(),
                id: id.clone()
            }
        );
        assert_eq!(
            plan_url("s3://b/nightly/", &id),
            format!("s3://b/nightly/plans/{id}")
        );
        for bad in [
            "s3://b/nightly".to_string(),
            format!("s3://b/nightly/{id}"),
            "s3://b/plans/../x".to_string(),
            format!("s3://b/plans/{}", "g".repeat(64)),
        ] {
            assert!(PlanLocation::parse(&bad).is_err(), "{bad}");
        }
    }
}
