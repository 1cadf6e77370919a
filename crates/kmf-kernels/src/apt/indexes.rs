//! The package indices of a mirror as one run sees them: each (suite, architecture) fetched at most once,
//! concurrent askers sharing the one fetch, compressed indices kept on disk by SHA256.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::fetch::{fetch_index_of_release, IndexPath, PackageFilter};
use super::release::AptTrust;
use super::PackageIndex;
use crate::mirrors::DebianMirrors;
use crate::KernelsError;

type IndexCell = Arc<OnceCell<Result<Arc<PackageIndex>, Arc<KernelsError>>>>;
type ReleaseCell = Arc<OnceCell<Result<Arc<super::VerifiedRelease>, Arc<KernelsError>>>>;

/// `main` package indices of the configured Debian mirrors, memoized for the life of the value.
pub struct IndexSet {
    client: reqwest::Client,
    mirrors: Option<DebianMirrors>,
    /// Keyrings and expiry decisions every Release is checked with.
    trust: Arc<AptTrust>,
    cache_dir: Option<PathBuf>,
    /// Which packages of each index are kept (all, or only what kernel headers need).
    keep: PackageFilter,
    cells: Mutex<HashMap<(String, String), IndexCell>>,
    /// Each suite's Release, fetched and verified once for all its architectures.
    releases: Mutex<HashMap<String, ReleaseCell>>,
}

/// The packages kernel header resolution and the crawlers look at: `linux-headers-*`, `linux-kbuild-*`
/// (and Ubuntu's `linux-<source>-headers-*`). A main index has ~60,000 stanzas; these are a few hundred.
pub fn kernel_header_packages(name: &str) -> bool {
    name.starts_with("linux-headers-") || name.starts_with("linux-kbuild-") || {
        name.starts_with("linux-") && name.contains("-headers-")
    }
}

impl IndexSet {
    /// `cache_dir`: where compressed indices are kept by SHA256 (see [`fetch_index_cached`]).
    pub fn new(
        client: reqwest::Client,
        mirrors: Option<DebianMirrors>,
        trust: Arc<AptTrust>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        IndexSet {
            client,
            mirrors,
            trust,
            cache_dir,
            keep: PackageFilter::ALL,
            cells: Mutex::default(),
            releases: Mutex::default(),
        }
    }

    /// An index set keeping only [`kernel_header_packages`]: what the farm and the crawler need, parsed
    /// in a fraction of the time and memory of whole indices. One such set serves both within a run.
    pub fn kernel_headers_only(
        client: reqwest::Client,
        mirrors: Option<DebianMirrors>,
        trust: Arc<AptTrust>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        IndexSet {
            keep: PackageFilter {
                name: "kernel-headers",
                keep: kernel_header_packages,
            },
            ..IndexSet::new(client, mirrors, trust, cache_dir)
        }
    }

    pub fn mirrors(&self) -> Option<&DebianMirrors> {
        self.mirrors.as_ref()
    }

    /// The keyrings and expiry decisions Releases are checked with.
    pub fn trust(&self) -> &Arc<AptTrust> {
        &self.trust
    }

    /// Fetches and checks `suite`'s Release on its mirror (as every index read does), for tools that read the
    /// suite themselves (mmdebstrap creating a builder): they fail with kmodfarm's reason, not their own.
    pub async fn verify_release(
        &self,
        suite: &str,
    ) -> Result<super::VerifiedRelease, KernelsError> {
        let mirrors = self.mirrors.as_ref().ok_or(KernelsError::NoMirror)?;
        super::fetch_release(
            &self.client,
            mirrors.uri_for_suite(suite),
            suite,
            &self.trust,
        )
        .await
    }

    /// The index of `suite` for a Debian architecture name (`amd64`, `arm64`); errors as text, shared by
    /// every caller that asked for the same index.
    pub async fn get(&self, suite: &str, deb_arch: &str) -> Result<Arc<PackageIndex>, String> {
        self.get_typed(suite, deb_arch)
            .await
            .map_err(|e| e.to_string())
    }

    /// [`IndexSet::get`] with the error's kind kept ([`KernelsError::Shared`]).
    pub async fn get_typed(
        &self,
        suite: &str,
        deb_arch: &str,
    ) -> Result<Arc<PackageIndex>, KernelsError> {
        let mirrors = self.mirrors.as_ref().ok_or(KernelsError::NoMirror)?;
        let cell = {
            let mut cells = self.cells.lock().expect("index map poisoned");
            cells
                .entry((suite.to_string(), deb_arch.to_string()))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| async {
            let release = self.release(suite).await?;
            fetch_index_of_release(
                &self.client,
                &release,
                self.cache_dir.as_deref(),
                IndexPath {
                    base: mirrors.uri_for_suite(suite),
                    suite,
                    component: "main",
                    arch: deb_arch,
                },
                self.keep,
            )
            .await
            .map(Arc::new)
            .map_err(Arc::new)
        })
        .await
        .clone()
        .map_err(KernelsError::Shared)
    }

    /// `suite`'s verified Release, fetched once per run.
    async fn release(&self, suite: &str) -> Result<Arc<super::VerifiedRelease>, Arc<KernelsError>> {
        let mirrors = self
            .mirrors
            .as_ref()
            .ok_or_else(|| Arc::new(KernelsError::NoMirror))?;
        let cell = {
            let mut cells = self.releases.lock().expect("release map poisoned");
            cells.entry(suite.to_string()).or_default().clone()
        };
        cell.get_or_init(|| async {
            super::fetch_release(
                &self.client,
                mirrors.uri_for_suite(suite),
                suite,
                &self.trust,
            )
            .await
            .map(Arc::new)
            .map_err(Arc::new)
        })
        .await
        .clone()
    }
}
