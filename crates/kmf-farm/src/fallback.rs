//! `install --build-fallback`: the store has no module for the host's kernel, so build one on the host the
//! way the farm would (headers from the mirror, verified; the kernel's compiler; the sandbox), publish it to
//! a local store, and let `install` take it from there with its usual checks.
//!
//! The host's kernels come from kernel lists the operator gives (any distribution), or for Debian from the
//! apt mirror: the host's release (`VERSION_CODENAME`) and its security suite. The variant is the one
//! `install` would have picked had the store held it ([`kmf_deliver::install::select`]); when none
//! matches, the error names the nearest kernels listed.

use std::path::Path;
use std::sync::Arc;

use kmf_deliver::Host;
use kmf_kernels::apt::CrawlOptions;
use kmf_kernels::mirrors::DebianMirrors;
use kmf_matrix::MatrixFilter;
use kmf_types::{FailureClass, KernelList, MatrixEntry};

use crate::run::RunError;
use crate::sync::SyncOptions;
use crate::{Driver, Farm, FarmReporter, Status};

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error(
        "--build-fallback finds {0} kernels through --kernels LIST (for example the output of `kmodfarm kernels \
         crawl --sources FILE`); only Debian's are looked up on the apt mirror by default"
    )]
    NotDebian(String),
    #[error(
        "--build-fallback needs the host's Debian release: no VERSION_CODENAME in {0} (or pass --kernels LIST)"
    )]
    NoCodename(String),
    #[error("looking for {release} on the Debian mirror: {source}")]
    Crawl {
        release: String,
        #[source]
        source: kmf_kernels::KernelsError,
    },
    #[error(transparent)]
    Matrix(#[from] kmf_matrix::MatrixError),
    /// The driver's requirements rule the host's kernel out: there is nothing to build or install.
    #[error("the driver does not apply to kernel {release}: {reason}")]
    Excluded { release: String, reason: String },
    #[error("no header packages for {distro} {arch} kernel {release} either{nearest}")]
    NoHeaders {
        distro: String,
        arch: String,
        release: String,
        /// ` (nearest listed: …)` or empty.
        nearest: String,
    },
    #[error(transparent)]
    Run(Box<RunError>),
    #[error("building the module for {release} failed ({class}: {message}){log}")]
    Failed {
        release: String,
        class: FailureClass,
        message: String,
        /// `; log: <path>` or empty.
        log: String,
    },
    #[error("nothing was built for {0}")]
    NothingBuilt(String),
}

/// The kernels of the host's Debian release and its security suite, crawled on the apt mirror (indices
/// cached under `index_cache`).
pub async fn debian_host_kernels(
    client: &reqwest::Client,
    host: &Host,
    root: &Path,
    mirrors: DebianMirrors,
    trust: std::sync::Arc<kmf_kernels::apt::AptTrust>,
    index_cache: &Path,
) -> Result<KernelList, FallbackError> {
    if host.distro != "debian" {
        return Err(FallbackError::NotDebian(host.distro.clone()));
    }
    let path = root.join("etc/os-release");
    let os_release = std::fs::read_to_string(&path).unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| FallbackError::NoCodename(path.display().to_string()))?;
    let opts = CrawlOptions {
        mirrors,
        suites: vec![codename.clone(), format!("{codename}-security")],
        arches: vec![host.arch],
        flavours: None,
        index_cache: Some(index_cache.to_path_buf()),
        trust,
    };
    kmf_kernels::apt::crawl_debian(client, &opts)
        .await
        .map_err(|source| FallbackError::Crawl {
            release: host.kernel_release.clone(),
            source,
        })
}

/// The variant of `lists` for the host's kernel, as `install` would pick it from a store.
pub fn host_variant(
    lists: &KernelList,
    host: &Host,
    driver_version: &str,
) -> Result<MatrixEntry, FallbackError> {
    let filter = MatrixFilter {
        distros: Some(vec![host.distro.clone()]),
        arches: vec![host.arch],
        driver_version: driver_version.to_string(),
        kernel_release: Some(format!("^{}$", regex::escape(&host.kernel_release))),
    };
    let entries = kmf_matrix::generate(lists, &filter)?.entries;
    let mut notes = Vec::new();
    let entry = kmf_deliver::install::select(&entries, host, &mut notes)
        .map_err(|(nearest, _)| FallbackError::NoHeaders {
            distro: host.distro.clone(),
            arch: host.arch.to_string(),
            release: host.kernel_release.clone(),
            nearest: if nearest.is_empty() {
                String::new()
            } else {
                format!(" (nearest listed: {})", nearest.join(", "))
            },
        })?
        .clone();
    for n in notes {
        tracing::info!("{n}");
    }
    Ok(entry)
}

/// Builds `entry` of `driver` into the farm's store (sync's path: plan, work, publish, matrix), and
/// succeeds when the store has it.
pub async fn build_for_host(
    farm: &Farm,
    driver: Arc<Driver>,
    entry: MatrixEntry,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(), FallbackError> {
    let release = entry.kversion.clone();
    tracing::info!(variant = %entry.label(), store = %farm.store().url(), "building the host's module here");
    let (_, results) = crate::run::sync(
        farm,
        vec![(driver, vec![entry])],
        &SyncOptions::default(),
        reporter,
    )
    .await
    .map_err(|e| FallbackError::Run(Box::new(e)))?;
    match results.first() {
        Some(r) if matches!(r.status, Status::Success | Status::UpToDate) => Ok(()),
        Some(kmf_report::VariantResult {
            status: Status::Excluded { reason },
            ..
        }) => Err(FallbackError::Excluded {
            release,
            reason: reason.clone(),
        }),
        Some(r) => {
            let Status::Failed { class, message } = &r.status else {
                unreachable!("matched above")
            };
            Err(FallbackError::Failed {
                release,
                class: *class,
                message: message.clone(),
                log: r
                    .log
                    .as_ref()
                    .map(|l| format!("; log: {}", l.display()))
                    .unwrap_or_default(),
            })
        }
        None => Err(FallbackError::NothingBuilt(release)),
    }
}
