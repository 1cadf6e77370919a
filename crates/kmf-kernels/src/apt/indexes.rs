//! The package indices of a mirror as one run sees them: each (suite, architecture) fetched at most once,
//! concurrent askers sharing the one fetch, compressed indices kept on disk by SHA256.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::fetch::{fetch_index_filtered, PackageFilter};
use super::PackageIndex;
use crate::mirrors::DebianMirrors;
use crate::KernelsError;

type IndexCell = Arc<OnceCell<Result<Arc<PackageIndex>, Arc<KernelsError>>>>;

/// `main` package indices of the configured Debian mirrors, memoized for the life of the value.
pub struct IndexSet {
    client: reqwest::Client,
    mirrors: Option<DebianMirrors>,
    cache_dir: Option<PathBuf>,
    /// Which packages of each index are kept (all, or only what kernel headers need).
    keep: PackageFilter,
    cells: Mutex<HashMap<(String, String), IndexCell>>,
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
        cache_dir: Option<PathBuf>,
    ) -> Self {
        IndexSet {
            client,
            mirrors,
            cache_dir,
            keep: PackageFilter::ALL,
            cells: Mutex::default(),
        }
    }

    /// An index set keeping only [`kernel_header_packages`]: what the farm and the crawler need, parsed
    /// in a fraction of the time and memory of whole indices. One such set serves both within a run.
    pub fn kernel_headers_only(
        client: reqwest::Client,
        mirrors: Option<DebianMirrors>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        IndexSet {
            keep: PackageFilter {
                name: "kernel-headers",
                keep: kernel_header_packages,
            },
            ..IndexSet::new(client, mirrors, cache_dir)
        }
    }

    pub fn mirrors(&self) -> Option<&DebianMirrors> {
        self.mirrors.as_ref()
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
            fetch_index_filtered(
                &self.client,
                self.cache_dir.as_deref(),
                mirrors.uri_for_suite(suite),
                suite,
                "main",
                deb_arch,
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
}
