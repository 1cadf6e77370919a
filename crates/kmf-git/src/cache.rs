//! The git cache in the farm's store: each repository's bare mirror as an uncompressed tarball, with the
//! MD5 of its `git ls-remote` output beside it, so that an updater tells without fetching whether a
//! repository changed, and a pipeline restores a large repository in seconds instead of cloning it.
//!
//! ```text
//! <store>/git-cache/<name>.tar    tar of the bare mirror (refs/heads, refs/tags, the remote HEAD)
//! <store>/git-cache/<name>.md5    "<md5 of ls-remote>  <url>\n", written after the tarball
//! <store>/git-cache/.lock         the updater's lock: created only if absent, with an expiry
//! ```
//!
//! `<name>` is a digest of the repository's URL (without password) and its last path component. Writers
//! ([`update`]) are the git-cache updater role alone; readers ([`restore`]) are planners and builders.
//! Git data hardly compresses (packs are zlib already), so tarballs stay uncompressed and stream both ways:
//! from the store into the unpacker, from the packer into a multipart upload, never whole in memory and
//! never twice on disk. A tarball's upload completes before its `.md5` is written, so a killed update
//! leaves the previous pair, which still agree with each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use kmf_store::{Store, StoreError};

mod check;

pub use check::Refusal;

use crate::checkout::{fetch, run_git};
use crate::spec::{public_url, GitSpec};

/// Where the cache lives under the farm's store.
pub const PREFIX: &str = "git-cache/";
const LOCK_KEY: &str = "git-cache/.lock";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] crate::GitError),
    #[error("git ls-remote {url}: {message}")]
    LsRemote { url: String, message: String },
    #[error(
        "the git cache is being updated by {holder} (lock {key}, expires in {expires_in} s); \
         try again later or pass --wait SECS"
    )]
    Locked {
        holder: String,
        key: String,
        expires_in: u64,
    },
    #[error("{url}: the cached tarball is not usable ({why})")]
    BadTarball { url: String, why: String },
    /// The tarball holds what a mirror made by the updater never does: someone else wrote it.
    #[error("{url}: the cached tarball {key} is refused: {refusal}; nothing of it was kept")]
    Refused {
        url: String,
        key: String,
        refusal: Refusal,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache entry's name for a repository URL.
pub fn entry_name(url: &str) -> String {
    let public = public_url(url);
    let digest = hex::encode(Sha256::digest(public.as_bytes()));
    let base: String = public
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{}-{}", &digest[..16], base.trim_start_matches('.'))
}

fn tar_key(url: &str) -> String {
    format!("{PREFIX}{}.tar", entry_name(url))
}

fn md5_key(url: &str) -> String {
    format!("{PREFIX}{}.md5", entry_name(url))
}

/// Limits on what a tarball may unpack to.
#[derive(Debug, Clone)]
pub struct CacheLimits {
    /// Bytes a repository's tarball may hold; a larger one is refused.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        // Several times a full Linux kernel repository.
        CacheLimits {
            max_bytes: 16 << 30,
        }
    }
}

/// The MD5 of `git ls-remote <url>`: what says whether the repository changed.
pub async fn ls_remote_md5(url: &str) -> Result<String, CacheError> {
    let out = tokio::process::Command::new("git")
        .args(["ls-remote", "--end-of-options", url])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| CacheError::Git(crate::GitError::NoGit(e)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(CacheError::LsRemote {
            url: public_url(url),
            message: stderr.lines().last().unwrap_or("failed").trim().to_string(),
        });
    }
    Ok(hex::encode(Md5::digest(&out.stdout)))
}

/// The `.md5` record: the digest and the URL it belongs to.
fn md5_record(md5: &str, url: &str) -> String {
    format!("{md5}  {}\n", public_url(url))
}

fn parse_md5_record(bytes: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (md5, url) = text.trim_end().split_once("  ")?;
    (md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (md5.to_string(), url.to_string()))
}

/// Unpacks `url`'s tarball from the store into `mirror` (which must not exist), checked to be a bare git
/// repository that holds every object its refs reach and nothing that makes git read beyond it (see
/// [`Refusal`]). `Ok(false)`: the cache has no tarball for it. On any error nothing of the tarball is left.
pub async fn restore(
    store: &dyn Store,
    url: &str,
    mirror: &Path,
    limits: &CacheLimits,
) -> Result<bool, CacheError> {
    let Some(reader) = store.get_reader(&tar_key(url)).await? else {
        return Ok(false);
    };
    let parent = mirror.parent().expect("a mirror has a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(
        ".restore-{}-{}",
        std::process::id(),
        entry_name(url)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let (unpack_to, max_bytes) = (tmp.clone(), limits.max_bytes);
    let handle = tokio::runtime::Handle::current();
    let unpacked = tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        kmf_extract::extract_tar_with_limits(
            bridge,
            &unpack_to,
            &kmf_extract::ExtractLimits {
                max_bytes,
                max_entries: 10_000_000,
            },
        )
    })
    .await
    .expect("the unpacker panicked");
    let home = tmp.with_extension("home");
    let checked = match unpacked {
        Err(e) => Err(Unusable::Bad(e.to_string())),
        Ok(report) => {
            let (dir, home) = (tmp.clone(), home.clone());
            tokio::task::spawn_blocking(move || check_restored(&dir, &report, &home))
                .await
                .expect("the tarball check panicked")
        }
    };
    let _ = std::fs::remove_dir_all(&home);
    if let Err(e) = checked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(match e {
            Unusable::Bad(why) => CacheError::BadTarball {
                url: public_url(url),
                why,
            },
            Unusable::Refused(refusal) => CacheError::Refused {
                url: public_url(url),
                key: tar_key(url),
                refusal,
            },
        });
    }
    match std::fs::rename(&tmp, mirror) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            if mirror.join("HEAD").is_file() {
                // Another process restored it meanwhile.
                Ok(true)
            } else {
                Err(io(mirror)(e))
            }
        }
    }
}

/// Why an unpacked tarball is not used.
enum Unusable {
    /// Damaged or not a repository: what a killed upload or a full disk leaves.
    Bad(String),
    /// Something a mirror made by the updater never holds.
    Refused(Refusal),
}

/// Checks the tarball unpacked into `dir`, in an order that starts no git and writes nothing in `dir`
/// before its layout is known to be a plain repository's.
fn check_restored(
    dir: &Path,
    report: &kmf_extract::ExtractReport,
    home: &Path,
) -> Result<(), Unusable> {
    // The unpacker leaves out what it will not write (`..`, devices, FIFOs, links leading out): the
    // updater's tarballs have none of them.
    if let Some((member, reason)) = report.skipped.first() {
        return Err(Unusable::Refused(Refusal::UnsafeMember {
            member: member.clone(),
            reason: reason.clone(),
        }));
    }
    check::layout(dir).map_err(Unusable::Refused)?;
    // git reads a repository's config and runs its hooks: what came from the store keeps neither, so a
    // tampered tarball cannot redirect a fetch or run a command. (The layout check refused a `config` or
    // `hooks` that is a link, so neither write goes anywhere else.)
    std::fs::write(
        dir.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .and_then(|_| match std::fs::remove_dir_all(dir.join("hooks")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .and_then(|_| std::fs::create_dir_all(home))
    .map_err(|e| Unusable::Bad(e.to_string()))?;
    check_bare_repository(dir, home).map_err(Unusable::Bad)?;
    check::connectivity(dir, home).map_err(Unusable::Bad)
}

/// Whether `dir` is a bare repository with refs, as git (alone, see [`check::sealed_git`]) sees it.
fn check_bare_repository(dir: &Path, home: &Path) -> Result<(), String> {
    let out = check::sealed_git(dir, home)
        .args(["rev-parse", "--is-bare-repository"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "true" {
        return Err("not a bare git repository".into());
    }
    let out = check::sealed_git(dir, home)
        .args(["for-each-ref", "--format=%(objectname)"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim().is_empty() {
        return Err("no refs".into());
    }
    Ok(())
}

/// Brings the bare repository `dir` up to date with `url` (creating it first when `init`): what a
/// restore does after unpacking.
pub fn fetch_into(dir: &Path, url: &str, init: bool) -> Result<(), crate::GitError> {
    if init {
        run_git(
            std::process::Command::new("git")
                .args(["init", "--bare", "--quiet"])
                .arg(dir),
            |m| crate::GitError::Fetch {
                url: public_url(url),
                message: m,
            },
        )?;
    }
    let spec = GitSpec {
        url: url.to_string(),
        reference: None,
        subdirectory: None,
        submodules: Default::default(),
    };
    fetch(dir, &spec)
}

/// What [`update`] did to one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RepoOutcome {
    /// `ls-remote` matched the stored MD5: nothing fetched or written.
    Unchanged,
    /// Restored from the cache (or cloned when it had none), fetched, written back.
    Updated {
        bytes: u64,
        restored: bool,
    },
    Failed {
        message: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoUpdate {
    pub url: String,
    #[serde(flatten)]
    pub outcome: RepoOutcome,
    pub secs: f64,
}

#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// How long to wait for another updater's lock; zero: fail at once.
    pub wait: Duration,
    /// How long a lock holds before the next updater may take it over (an updater that was killed).
    pub lock_ttl: Duration,
    pub limits: CacheLimits,
    /// Scratch space for mirrors being updated.
    pub work_dir: PathBuf,
}

/// The lock object's content.
#[derive(Debug, Serialize, Deserialize)]
struct LockRecord {
    holder: String,
    /// Seconds since the epoch.
    acquired: u64,
    expires: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who holds the lock: host and process, and a nonce that tells two attempts of one process apart.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}:{}:{nonce:08x}", std::process::id())
}

/// The updater's lock; released on drop (best effort: an expired lock is taken over anyway).
pub struct CacheLock {
    store: Arc<dyn Store>,
    released: bool,
}

impl CacheLock {
    pub async fn acquire(
        store: Arc<dyn Store>,
        wait: Duration,
        ttl: Duration,
    ) -> Result<CacheLock, CacheError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let record = LockRecord {
                holder: holder(),
                acquired: now_secs(),
                expires: now_secs() + ttl.as_secs().max(1),
            };
            let bytes = serde_json::to_vec(&record).expect("a lock record serialises");
            if store.put_new(LOCK_KEY, &bytes).await? {
                // Read back: a store whose conditional create is not atomic (some S3-compatible servers)
                // lets two creates succeed, and only the last one's record is there.
                let mine = store.get_bytes(LOCK_KEY).await?.is_some_and(|b| b == bytes);
                if mine {
                    return Ok(CacheLock {
                        store,
                        released: false,
                    });
                }
                tracing::warn!(
                    "the git cache lock was created twice at once; waiting for the other"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let current = store
                .get_bytes(LOCK_KEY)
                .await?
                .and_then(|b| serde_json::from_slice::<LockRecord>(&b).ok());
            match current {
                // Expired (its holder died) or unreadable: take it over. Two updaters doing this at once
                // both delete, and only one of their next conditional creates succeeds.
                Some(c) if c.expires <= now_secs() => {
                    tracing::warn!(
                        "taking over the git cache lock of {} (expired {} s ago)",
                        c.holder,
                        now_secs() - c.expires
                    );
                    store.delete(LOCK_KEY).await?;
                    continue;
                }
                None => {
                    store.delete(LOCK_KEY).await?;
                    continue;
                }
                Some(c) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(CacheError::Locked {
                            holder: c.holder,
                            key: LOCK_KEY.into(),
                            expires_in: c.expires.saturating_sub(now_secs()),
                        });
                    }
                    tracing::info!("waiting for the git cache lock held by {}", c.holder);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    pub async fn release(mut self) -> Result<(), CacheError> {
        self.released = true;
        self.store.delete(LOCK_KEY).await?;
        Ok(())
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        if !self.released {
            let store = self.store.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = store.delete(LOCK_KEY).await;
                });
            }
        }
    }
}

/// The repositories the cache holds (their URLs, from the `.md5` records).
pub async fn cached_repositories(store: &dyn Store) -> Result<Vec<String>, CacheError> {
    let mut urls = Vec::new();
    for key in store.list(PREFIX).await? {
        if !key.ends_with(".md5") {
            continue;
        }
        if let Some((_, url)) = store
            .get_bytes(&key)
            .await?
            .as_deref()
            .and_then(parse_md5_record)
        {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// Updates the cache's copy of each repository in `urls` (all it holds when empty), under the lock.
pub async fn update(
    store: Arc<dyn Store>,
    urls: &[String],
    opts: &UpdateOptions,
) -> Result<Vec<RepoUpdate>, CacheError> {
    let lock = CacheLock::acquire(store.clone(), opts.wait, opts.lock_ttl).await?;
    let urls = if urls.is_empty() {
        cached_repositories(store.as_ref()).await?
    } else {
        urls.to_vec()
    };
    // Which repositories changed: `ls-remote` and the stored MD5, several repositories at a time (each is
    // a round trip to its host and one to the store).
    use futures::StreamExt;
    let checks: Vec<(
        String,
        std::time::Instant,
        Result<Option<String>, CacheError>,
    )> = futures::stream::iter(urls.iter().cloned())
        .map(|url| {
            let store = store.clone();
            async move {
                let start = std::time::Instant::now();
                let changed = changed_md5(store.as_ref(), &url).await;
                (url, start, changed)
            }
        })
        .buffered(LS_REMOTES)
        .collect()
        .await;
    let mut report = Vec::new();
    for (url, start, changed) in checks {
        let outcome = match changed {
            Ok(None) => Ok(RepoOutcome::Unchanged),
            Ok(Some(md5)) => update_one(store.as_ref(), &url, &md5, opts).await,
            Err(e) => Err(e),
        };
        report.push(RepoUpdate {
            url: public_url(&url),
            outcome: outcome.unwrap_or_else(|e| RepoOutcome::Failed {
                message: e.to_string(),
            }),
            secs: start.elapsed().as_secs_f64(),
        });
    }
    lock.release().await?;
    Ok(report)
}

/// `ls-remote`s running at once during an update.
const LS_REMOTES: usize = 8;

/// The repository's new `ls-remote` MD5 when it differs from the stored one; `None` when unchanged.
async fn changed_md5(store: &dyn Store, url: &str) -> Result<Option<String>, CacheError> {
    let key = md5_key(url);
    let (md5, stored) = futures::join!(ls_remote_md5(url), store.get_bytes(&key));
    let md5 = md5?;
    let stored = stored?.as_deref().and_then(parse_md5_record);
    let changed = match stored {
        Some((m, _)) => m != md5,
        None => true,
    };
    Ok(changed.then_some(md5))
}

async fn update_one(
    store: &dyn Store,
    url: &str,
    md5: &str,
    opts: &UpdateOptions,
) -> Result<RepoOutcome, CacheError> {
    let work = opts.work_dir.join(format!("update-{}", std::process::id()));
    let mirror = work.join(format!("{}.git", entry_name(url)));
    let _ = std::fs::remove_dir_all(&mirror);
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let result = async {
        let restored = match restore(store, url, &mirror, &opts.limits).await {
            Ok(found) => found,
            Err(CacheError::BadTarball { url, why }) => {
                tracing::warn!("{url}: {why}; cloning it again");
                false
            }
            // Cloning again replaces the tampered tarball with one the updater made.
            Err(e @ CacheError::Refused { .. }) => {
                tracing::warn!("{e}; cloning it again");
                false
            }
            Err(e) => return Err(e),
        };
        let (dir, fetch_url) = (mirror.clone(), url.to_string());
        tokio::task::spawn_blocking(move || fetch_into(&dir, &fetch_url, !restored))
            .await
            .expect("git fetch panicked")?;
        let bytes = upload_tarball(store, url, &mirror, &opts.limits).await?;
        // The digest last: until it is written, readers see the previous, consistent pair.
        store
            .put_bytes(&md5_key(url), md5_record(md5, url).as_bytes())
            .await?;
        Ok(RepoOutcome::Updated { bytes, restored })
    }
    .await;
    let _ = std::fs::remove_dir_all(&mirror);
    result
}

/// Streams a tar of `mirror` into the store under `url`'s tarball key.
async fn upload_tarball(
    store: &dyn Store,
    url: &str,
    mirror: &Path,
    limits: &CacheLimits,
) -> Result<u64, CacheError> {
    let (reader, writer) = tokio::io::duplex(4 << 20);
    let dir = mirror.to_path_buf();
    let handle = tokio::runtime::Handle::current();
    let packer = tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        let mut builder = tar::Builder::new(tokio_util::io::SyncIoBridge::new(writer));
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Deterministic);
        let r = builder.append_dir_all(".", &dir);
        let r = r.and_then(|_| builder.into_inner()).and_then(|mut w| {
            use std::io::Write;
            w.flush()?;
            w.shutdown()
        });
        r.map_err(|e| CacheError::Io {
            path: dir,
            source: e,
        })
    });
    let uploaded = store.put_reader(&tar_key(url), Box::new(reader)).await;
    packer.await.expect("the packer panicked")?;
    let bytes = uploaded?;
    if bytes > limits.max_bytes {
        tracing::warn!(
            "{}: the tarball is {bytes} bytes, above the limit of {} that restores accept",
            public_url(url),
            limits.max_bytes
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_records() {
        let a = entry_name("https://git.example/acme/hello.git");
        assert!(a.ends_with("-hello.git"), "{a}");
        assert_eq!(
            a,
            entry_name("https://user:token@git.example/acme/hello.git")
        );
        assert_ne!(a, entry_name("https://git.example/other/hello.git"));
        assert!(!entry_name("file:///srv/..").contains('/'));
        let r = md5_record(&"a".repeat(32), "https://u:p@h/r.git");
        assert_eq!(
            parse_md5_record(r.as_bytes()),
            Some(("a".repeat(32), "https://h/r.git".into()))
        );
        assert_eq!(parse_md5_record(b"garbage"), None);
    }
}
