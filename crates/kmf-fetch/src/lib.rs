//! Downloads into a content-addressed cache.
//!
//! Header packages are tens of MB and shared by many build variants, so each is downloaded once,
//! verified, and reused from the cache afterwards. A [`Fetcher`]:
//!
//! * keys content by its SHA256 when the repository index gave one (`<root>/sha256/ab/abcd…`),
//!   otherwise by its URL-independent file name with a sidecar recording the digest seen at download
//!   time, which is re-checked on every reuse;
//! * never exposes a file that is not complete and verified: it downloads into `<root>/partial/`,
//!   hashes while writing, fsyncs, and renames into place;
//! * resumes an interrupted part with an HTTP `Range` request (guarded by `If-Range` when the digest
//!   is not known in advance);
//! * tries the URLs in order (mirror first, then fallbacks), retrying network errors, 5xx and 429
//!   with exponential backoff and jitter, and moving on at once after 404/410 or a bad checksum;
//! * downloads content once even when several tasks (or processes) ask for it together.

mod cache;
mod download;
mod error;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{OwnedMutexGuard, Semaphore};

use cache::{CacheKey, Sidecar};
use download::{discard_part, AttemptError};
pub use error::FetchError;

/// Tuning of a [`Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Retries per URL after a transient failure (network error, 5xx, 429, truncated body).
    pub retries: u32,
    /// Downloads in flight at once, over all `fetch` and `fetch_all` calls of this fetcher.
    pub concurrency: usize,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for one read to make progress (not for the whole download, which may be large).
    pub read_timeout: Duration,
    /// First retry pause; it doubles with each retry, plus random jitter.
    pub backoff_base: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            retries: 4,
            concurrency: 4,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
        }
    }
}

/// Something to download.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Download {
    /// URL-independent file name (`linux-headers-6.1.0-28-common_6.1.119-1_all.deb`). It is the cache
    /// key when `sha256` is unknown, so it must then be unique across the sources fed to one cache.
    pub file_name: String,
    /// Expected lower- or upper-case hex SHA256; the download is refused unless it matches.
    pub sha256: Option<String>,
    /// Expected size in bytes, when the index gave one.
    pub size: Option<u64>,
    /// Tried in order: mirror first, then fallbacks.
    pub urls: Vec<String>,
}

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where the content is in the cache; read it, never modify it.
    pub path: PathBuf,
    /// Lower-case hex SHA256 of the content.
    pub sha256: String,
    pub size: u64,
    /// The URL it came from; on a cache hit, the one it was downloaded from (when that is still one of the
    /// download's URLs; `None` for files cached before sources were kept).
    pub url: Option<String>,
    /// Bytes received over the network by this call (all attempts; 0 on a cache hit).
    pub downloaded_bytes: u64,
}

/// Progress reports, e.g. for progress bars. Calls come from download tasks, possibly at once for
/// different files. Cache hits report nothing.
pub trait FetchProgress: Send + Sync {
    /// A download from the network began; `total` is its size when known.
    fn started(&self, file_name: &str, total: Option<u64>) {
        let _ = (file_name, total);
    }
    /// `bytes` more bytes arrived (a resumed download first reports the bytes it already had).
    fn advanced(&self, file_name: &str, bytes: u64) {
        let _ = (file_name, bytes);
    }
    /// The download ended, verified and cached (`ok`) or failed.
    fn finished(&self, file_name: &str, ok: bool) {
        let _ = (file_name, ok);
    }
    /// `url` failed with a transient `error`; retry number `attempt` (1-based) follows a pause.
    fn retrying(&self, file_name: &str, url: &str, attempt: u32, error: &str) {
        let _ = (file_name, url, attempt, error);
    }
}

struct NoProgress;
impl FetchProgress for NoProgress {}

/// Downloads into a cache directory. Cheap to clone; clones share the client, the per-key locks and
/// the concurrency limit.
#[derive(Clone)]
pub struct Fetcher {
    shared: Arc<Shared>,
    progress: Arc<dyn FetchProgress>,
}

struct Shared {
    root: PathBuf,
    options: FetchOptions,
    client: reqwest::Client,
    /// One async lock per cache key, so that concurrent fetches of the same content queue up.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("root", &self.shared.root)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher over the cache at `cache_root`, created if missing.
    pub fn new(cache_root: impl Into<PathBuf>, options: FetchOptions) -> Result<Self, FetchError> {
        let root = cache_root.into();
        for dir in ["sha256", "by-name", "meta/by-name", "partial", "locks"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| FetchError::io(&path, e))?;
        }
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(concat!("kmodfarm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client {
                msg: download::error_chain(&e),
            })?;
        let permits = Semaphore::new(options.concurrency.max(1));
        Ok(Fetcher {
            shared: Arc::new(Shared {
                root,
                options,
                client,
                locks: Mutex::new(HashMap::new()),
                permits,
            }),
            progress: Arc::new(NoProgress),
        })
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn FetchProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// The cache directory.
    pub fn cache_root(&self) -> &Path {
        &self.shared.root
    }

    /// The options this fetcher was made with.
    pub fn options(&self) -> &FetchOptions {
        &self.shared.options
    }

    /// The cached file when present and valid, else downloaded from the first URL that serves it
    /// with the expected digest and size.
    pub async fn fetch(&self, download: &Download) -> Result<Fetched, FetchError> {
        let key = CacheKey::for_download(download)?;
        if let Some(hit) = self.lookup_async(&key, download).await? {
            return Ok(hit);
        }
        if download.urls.is_empty() {
            return Err(FetchError::NoUrls {
                file_name: download.file_name.clone(),
            });
        }
        let _key_lock = self.lock_key(&key).await;
        let _file_lock = self.lock_file(&key, download).await?;
        // Whoever held the lock before us may have downloaded it.
        if let Some(hit) = self.lookup_async(&key, download).await? {
            return Ok(hit);
        }
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .map_err(|e| FetchError::Task {
                file_name: download.file_name.clone(),
                msg: e.to_string(),
            })?;
        let (result, started) = match self.download(&key, download).await {
            Ok((fetched, started)) => (Ok(fetched), started),
            Err((error, started)) => (Err(error), started),
        };
        if started {
            self.progress.finished(&download.file_name, result.is_ok());
        }
        result
    }

    /// Fetches all `downloads`, up to `concurrency` at once; results are in the same order.
    pub async fn fetch_all(&self, downloads: &[Download]) -> Vec<Result<Fetched, FetchError>> {
        futures::stream::iter(downloads)
            .map(|d| self.fetch(d))
            .buffered(self.shared.options.concurrency.max(1))
            .collect()
            .await
    }

    /// The cached file for `download`, without any network access. Content stored by name has its
    /// digest re-checked against the sidecar, so this reads the whole file in that case.
    pub fn cached(&self, download: &Download) -> Option<Fetched> {
        let key = CacheKey::for_download(download).ok()?;
        lookup(&self.shared.root, &key, download)
    }

    async fn lookup_async(
        &self,
        key: &CacheKey,
        download: &Download,
    ) -> Result<Option<Fetched>, FetchError> {
        match key {
            // No hashing involved: cheap enough for the async thread.
            CacheKey::Digest(_) => Ok(lookup(&self.shared.root, key, download)),
            CacheKey::Name(_) => {
                let root = self.shared.root.clone();
                let key = key.clone();
                let d = download.clone();
                tokio::task::spawn_blocking(move || lookup(&root, &key, &d))
                    .await
                    .map_err(|e| FetchError::Task {
                        file_name: download.file_name.clone(),
                        msg: e.to_string(),
                    })
            }
        }
    }

    async fn lock_key(&self, key: &CacheKey) -> KeyLock {
        let id = key.id();
        let lock = {
            let mut locks = self.shared.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        KeyLock {
            shared: self.shared.clone(),
            id,
            lock: Some(lock),
            guard: Some(guard),
        }
    }

    /// Serialises with other processes sharing the cache. Blocking, so on a blocking thread; the
    /// per-key async lock already keeps this process's own tasks from piling up here.
    async fn lock_file(
        &self,
        key: &CacheKey,
        download: &Download,
    ) -> Result<std::fs::File, FetchError> {
        let path = key.lock_path(&self.shared.root);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| FetchError::io(&path, e))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| FetchError::io(&path, e.into()))?;
            Ok(file)
        })
        .await
        .map_err(|e| FetchError::Task {
            file_name: download.file_name.clone(),
            msg: e.to_string(),
        })?
    }

    /// Tries each URL in order. The bool says whether `started` was reported.
    async fn download(
        &self,
        key: &CacheKey,
        download: &Download,
    ) -> Result<(Fetched, bool), (FetchError, bool)> {
        let root = &self.shared.root;
        let part = key.partial_path(root);
        let options = &self.shared.options;
        let mut tried: Vec<(String, String)> = Vec::new();
        let mut last_error: Option<FetchError> = None;
        let mut received = 0u64;
        let mut started = false;

        for url in &download.urls {
            let mut retry = 0u32;
            loop {
                let attempt = download::Attempt {
                    client: &self.shared.client,
                    key,
                    download,
                    url,
                    part: &part,
                    progress: self.progress.as_ref(),
                    received: &mut received,
                    started: &mut started,
                };
                match attempt.run().await {
                    Ok(done) => {
                        let fetched = self
                            .finalize(key, download, &part, done, url, received)
                            .await
                            .map_err(|e| (e, started))?;
                        tracing::info!(
                            file = %download.file_name,
                            url = %url,
                            bytes = received,
                            "downloaded"
                        );
                        return Ok((fetched, started));
                    }
                    Err(AttemptError::NotFound(status)) => {
                        tracing::debug!(url = %url, %status, "not found, trying the next URL");
                        tried.push((url.clone(), status));
                        break;
                    }
                    Err(AttemptError::NextUrl(error)) => {
                        tracing::warn!(url = %url, %error, "giving up on this URL");
                        tried.push((url.clone(), error.to_string()));
                        last_error = Some(error);
                        break;
                    }
                    Err(AttemptError::Fatal(error)) => return Err((error, started)),
                    Err(AttemptError::Retry { error, after }) => {
                        if retry >= options.retries {
                            tracing::warn!(url = %url, %error, retries = retry, "retries exhausted");
                            tried.push((url.clone(), error.to_string()));
                            last_error = Some(error);
                            break;
                        }
                        retry += 1;
                        let pause = after.unwrap_or_else(|| backoff(options.backoff_base, retry));
                        tracing::debug!(url = %url, %error, retry, ?pause, "retrying");
                        self.progress
                            .retrying(&download.file_name, url, retry, &error.to_string());
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
        let error = last_error.unwrap_or_else(|| FetchError::NotFound {
            file_name: download.file_name.clone(),
            tried,
        });
        Err((error, started))
    }

    async fn finalize(
        &self,
        key: &CacheKey,
        download: &Download,
        part: &Path,
        done: download::Completed,
        url: &str,
        received: u64,
    ) -> Result<Fetched, FetchError> {
        let root = self.shared.root.clone();
        let key = key.clone();
        let part = part.to_path_buf();
        let sha = done.sha256.clone();
        let size = done.size;
        let source_url = url.to_string();
        let path = tokio::task::spawn_blocking(move || -> Result<PathBuf, FetchError> {
            let target = key.final_path(&root);
            let dir = target.parent().unwrap_or(&root);
            std::fs::create_dir_all(dir).map_err(|e| FetchError::io(dir, e))?;
            std::fs::rename(&part, &target).map_err(|e| FetchError::io(&target, e))?;
            let _ = std::fs::remove_file(cache::validator_path(&part));
            cache::sync_dir(dir).map_err(|e| FetchError::io(dir, e))?;
            if let Some(sidecar) = key.sidecar_path(&root) {
                let record = Sidecar { sha256: sha, size };
                cache::write_atomically(&sidecar, record.render().as_bytes())
                    .map_err(|e| FetchError::io(&sidecar, e))?;
            }
            let source = key.source_path(&root);
            cache::write_atomically(&source, source_url.as_bytes())
                .map_err(|e| FetchError::io(&source, e))?;
            Ok(target)
        })
        .await
        .map_err(|e| FetchError::Task {
            file_name: download.file_name.clone(),
            msg: e.to_string(),
        })??;
        Ok(Fetched {
            path,
            sha256: done.sha256,
            size: done.size,
            url: Some(url.to_string()),
            downloaded_bytes: received,
        })
    }

    /// Deletes the interrupted part of `download`, if any, so that the next fetch starts afresh.
    pub async fn discard_partial(&self, download: &Download) -> Result<(), FetchError> {
        let key = CacheKey::for_download(download)?;
        let part = key.partial_path(&self.shared.root);
        discard_part(&part)
            .await
            .map_err(|e| FetchError::io(&part, e))
    }
}

/// Cache lookup shared by [`Fetcher::cached`] and `fetch`.
fn lookup(root: &Path, key: &CacheKey, download: &Download) -> Option<Fetched> {
    let path = key.final_path(root);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let size = meta.len();
    let sha256 = match key {
        CacheKey::Digest(hex) => {
            // Verified before it was renamed into place; the size catches a gross mix-up cheaply.
            if download.size.is_some_and(|s| s != size) {
                tracing::warn!(path = %path.display(), size, expected = ?download.size, "cached file has the wrong size");
                return None;
            }
            hex.clone()
        }
        CacheKey::Name(_) => {
            let sidecar_path = key.sidecar_path(root)?;
            let sidecar = Sidecar::parse(&std::fs::read_to_string(&sidecar_path).ok()?)?;
            if download.size.is_some_and(|s| s != sidecar.size) || size != sidecar.size {
                return None;
            }
            let (actual, len) = cache::hash_file(&path).ok()?;
            if actual != sidecar.sha256 || len != sidecar.size {
                tracing::warn!(path = %path.display(), expected = %sidecar.sha256, %actual, "cached file changed since download; fetching again");
                return None;
            }
            actual
        }
    };
    // Where it was downloaded from (absent for files cached before sources were kept).
    let url = std::fs::read_to_string(key.source_path(root))
        .ok()
        .filter(|u| download.urls.iter().any(|c| c == u) || download.urls.is_empty());
    Some(Fetched {
        path,
        sha256,
        size,
        url,
        downloaded_bytes: 0,
    })
}

/// Holds a per-key lock; forgets the key's entry when nobody else is waiting for it.
struct KeyLock {
    shared: Arc<Shared>,
    id: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let Some(lock) = self.lock.take() else { return };
        let mut locks = self.shared.locks.lock().unwrap_or_else(|e| e.into_inner());
        // One reference in the map, one here: no other task holds or waits for it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&self.id);
        }
    }
}

/// `base * 2^(retry-1)`, capped at a minute, plus up to half of that again as jitter so that many
/// clients failing together do not retry together.
fn backoff(base: Duration, retry: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(60));
    capped + jitter(capped / 2)
}

fn jitter(max: Duration) -> Duration {
    use std::hash::BuildHasher;
    let nanos = max.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    // RandomState is seeded randomly per instance: randomness without a dependency.
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    Duration::from_nanos(r % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for retry in 1..=4u32 {
            let exp = base * (1 << (retry - 1));
            for _ in 0..20 {
                let b = backoff(base, retry);
                assert!(b >= exp && b <= exp + exp / 2, "retry {retry}: {b:?}");
            }
        }
        assert!(backoff(Duration::from_secs(10), 30) <= Duration::from_secs(90));
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn cached_lookup_by_digest_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fetcher::new(dir.path(), FetchOptions::default()).unwrap();
        let content = b"hello";
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let by_digest = Download {
            file_name: "h.deb".into(),
            sha256: Some(sha.into()),
            size: Some(5),
            urls: vec![],
        };
        assert_eq!(f.cached(&by_digest), None);
        let p = dir.path().join("sha256/2c").join(sha);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        let hit = f.cached(&by_digest).unwrap();
        assert_eq!((hit.path, hit.size, hit.url), (p, 5, None));
        let wrong_size = Download {
            size: Some(6),
            ..by_digest
        };
        assert_eq!(f.cached(&wrong_size), None);

        let by_name = Download {
            file_name: "h.deb".into(),
            ..Default::default()
        };
        assert_eq!(f.cached(&by_name), None);
        std::fs::write(dir.path().join("by-name/h.deb"), content).unwrap();
        // No sidecar: not trusted.
        assert_eq!(f.cached(&by_name), None);
        std::fs::write(
            dir.path().join("meta/by-name/h.deb"),
            format!("sha256 {sha}\nsize 5\n"),
        )
        .unwrap();
        assert_eq!(f.cached(&by_name).unwrap().sha256, sha);
        // Same size, different content: the re-check catches it.
        std::fs::write(dir.path().join("by-name/h.deb"), b"jello").unwrap();
        assert_eq!(f.cached(&by_name), None);
    }
}
