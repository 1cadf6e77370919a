//! The package indices of a mirror as one run sees them: each (suite, architecture) fetched at most once,
//! concurrent askers sharing the one fetch, compressed indices kept on disk by SHA256.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{fetch_index_cached, PackageIndex};
use crate::mirrors::DebianMirrors;

type IndexCell = Arc<OnceCell<Result<Arc<PackageIndex>, String>>>;

/// `main` package indices of the configured Debian mirrors, memoized for the life of the value.
pub struct IndexSet {
    client: reqwest::Client,
    mirrors: Option<DebianMirrors>,
    cache_dir: Option<PathBuf>,
    cells: Mutex<HashMap<(String, String), IndexCell>>,
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
            cells: Mutex::default(),
        }
    }

    pub fn mirrors(&self) -> Option<&DebianMirrors> {
        self.mirrors.as_ref()
    }

    /// The index of `suite` for a Debian architecture name (`amd64`, `arm64`); errors as text, shared by
    /// every caller that asked for the same index.
    pub async fn get(&self, suite: &str, deb_arch: &str) -> Result<Arc<PackageIndex>, String> {
        let mirrors = self.mirrors.as_ref().ok_or("no Debian mirror configured")?;
        let cell = {
            let mut cells = self.cells.lock().expect("index map poisoned");
            cells
                .entry((suite.to_string(), deb_arch.to_string()))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| async {
            fetch_index_cached(
                &self.client,
                self.cache_dir.as_deref(),
                mirrors.uri_for_suite(suite),
                suite,
                "main",
                deb_arch,
            )
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string())
        })
        .await
        .clone()
    }
}
