//! The Ubuntu kernel crawler: every `linux-headers-<abi>-<flavour>` of the requested pockets, with the
//! shared `linux[-<source>]-headers-<abi>` package it links into.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use kmf_types::{Arch, KernelEntry, KernelList, KernelVersion};

use super::crawl::collect_entries;
use super::fetch::fetch_index_filtered;
use super::resolve::pick;
use super::{PackageIndex, PackageStanza};
use crate::KernelsError;

/// The key Ubuntu kernels are listed under, as in kernel-crawler's lists.
pub const UBUNTU_KEY: &str = "Ubuntu";

const CONCURRENT_INDICES: usize = 3;

/// Where and what [`crawl_ubuntu`] reads.
#[derive(Debug, Clone)]
pub struct UbuntuCrawlOptions {
    /// The archive mirror (amd64 and i386: `.../ubuntu`).
    pub archive: String,
    /// The ports mirror (arm64 and the other architectures: `.../ubuntu-ports`); the archive when `None`
    /// (some private mirrors merge both).
    pub ports: Option<String>,
    /// Pockets in order of preference (`jammy-security`, `jammy-updates`, `jammy`).
    pub suites: Vec<String>,
    pub arches: Vec<Arch>,
    /// Flavours to keep (`generic`, `aws`, `azure`, `gcp`, `lowlatency`, ...); `None` keeps all.
    pub flavours: Option<Vec<String>>,
    pub index_cache: Option<PathBuf>,
    /// Keyrings and expiry decisions every Release is checked with (Ubuntu's archive keyring by default).
    pub trust: std::sync::Arc<super::AptTrust>,
}

impl UbuntuCrawlOptions {
    fn uri_for(&self, arch: Arch) -> &str {
        match arch {
            Arch::X86_64 => &self.archive,
            Arch::Aarch64 => self.ports.as_deref().unwrap_or(&self.archive),
        }
    }
}

fn kernel_package(name: &str) -> bool {
    name.starts_with("linux-headers-") || name.contains("-headers-")
}

/// Lists every Ubuntu kernel with headers in `opts.suites` × `opts.arches` (main component), under
/// `"Ubuntu"`: `kernelrelease` is `uname -r` (`5.15.0-91-generic`), `kernelversion` the upload number
/// `uname -v` prints after `#` (`101`, `44~20.04.1`), `target` kernel-crawler's `ubuntu-<source>`
/// (`ubuntu-generic`, `ubuntu-aws`, `ubuntu-hwe-5.15`), and the header packages the flavour's and the
/// shared one, in that order. An upload found in several pockets is listed once, under the first.
pub async fn crawl_ubuntu(
    client: &reqwest::Client,
    opts: &UbuntuCrawlOptions,
) -> Result<KernelList, KernelsError> {
    let jobs: Vec<(usize, &str, Arch)> = opts
        .suites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| opts.arches.iter().map(move |&a| (i, s.as_str(), a)))
        .collect();
    let indices: Vec<(usize, Arch, Box<PackageIndex>)> = futures::stream::iter(jobs)
        .map(|(i, suite, arch)| async move {
            let base = opts.uri_for(arch);
            tracing::info!(suite, arch = %arch, base, "crawling Ubuntu package index");
            let index = fetch_index_filtered(
                client,
                &opts.trust,
                opts.index_cache.as_deref(),
                super::fetch::IndexPath {
                    base,
                    suite,
                    component: "main",
                    arch: arch.deb_arch(),
                },
                super::fetch::PackageFilter {
                    name: "ubuntu-kernel-headers",
                    keep: kernel_package,
                },
            )
            .await?;
            Ok::<_, KernelsError>((i, arch, Box::new(index)))
        })
        .buffer_unordered(CONCURRENT_INDICES)
        .try_collect()
        .await?;
    let flavours = opts.flavours.as_deref();
    let entries = collect_entries(indices, |index, arch| {
        entries_of_index(index, arch, flavours)
    });
    tracing::info!(kernels = entries.len(), "Ubuntu crawl done");
    Ok(KernelList {
        distros: BTreeMap::from([(UBUNTU_KEY.to_string(), entries)]),
    })
}

/// The ABI a shared headers package is for: `linux-headers-5.15.0-91` and
/// `linux-aws-headers-5.15.0-1051` and `linux-hwe-5.15-headers-5.15.0-41` all name one.
fn shared_abi(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("linux-")?;
    let at = rest.find("headers-")?;
    // Either `headers-` right away or after a `<source>-` part.
    if at != 0 && !rest[..at].ends_with('-') {
        return None;
    }
    Some(&rest[at + "headers-".len()..])
}

/// The shared package's dependency and the flavour for flavour headers `stanza`.
fn shared_dependency<'a>(
    stanza: &'a PackageStanza,
    release: &'a str,
) -> Option<(&'a super::Dependency, &'a str)> {
    stanza.depends.iter().find_map(|d| {
        let abi = shared_abi(&d.name)?;
        let flavour = release.strip_prefix(abi)?.strip_prefix('-')?;
        (!flavour.is_empty() && !abi.is_empty()).then_some((d, flavour))
    })
}

/// kernel-crawler's target: `ubuntu-<source without "linux-">`, and `ubuntu-<flavour>` for the main
/// `linux` source (`ubuntu-generic`, `ubuntu-lowlatency`).
fn target_of(source: Option<&str>, flavour: &str) -> String {
    match source.and_then(|s| s.strip_prefix("linux-")) {
        Some(rest) if !rest.is_empty() => format!("ubuntu-{rest}"),
        _ => format!("ubuntu-{flavour}"),
    }
}

fn entries_of_index(
    index: &PackageIndex,
    arch: Arch,
    flavours: Option<&[String]>,
) -> Vec<KernelEntry> {
    let mut out = Vec::new();
    for stanza in &index.packages {
        let Some(release) = stanza.package.strip_prefix("linux-headers-") else {
            continue;
        };
        if stanza.architecture != index.arch {
            continue;
        }
        let Some((dep, flavour)) = shared_dependency(stanza, release) else {
            continue;
        };
        if flavours.is_some_and(|f| !f.iter().any(|f| f == flavour)) {
            continue;
        }
        let Some(shared) = pick(index, dep, &stanza.version) else {
            tracing::warn!(suite = %index.suite, package = %stanza.package, version = %stanza.version,
                dependency = %dep.name, "skipping kernel whose shared headers are missing");
            continue;
        };
        let abi = &release[..release.len() - flavour.len() - 1];
        // 5.15.0-91.101 → 101; 5.15.0-41.44~20.04.1 → 44~20.04.1: what `uname -v` shows after `#`.
        let upload = stanza
            .version
            .strip_prefix(abi)
            .and_then(|r| r.strip_prefix('.'))
            .filter(|r| !r.is_empty())
            .unwrap_or(&stanza.version);
        let packages = vec![index.header_package(stanza), index.header_package(shared)];
        out.push(KernelEntry {
            kernelversion: KernelVersion::Text(upload.to_string()),
            kernelrelease: release.to_string(),
            target: target_of(stanza.source.as_deref(), flavour),
            headers: packages.iter().map(|p| p.url.clone()).collect(),
            kernelconfigdata: None,
            arch: Some(arch),
            packageversion: Some(stanza.version.clone()),
            flavour: Some(flavour.to_string()),
            suite: Some(index.suite.clone()),
            headerpackages: packages,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAMMY_AMD64: &str = "\
Package: linux-headers-5.15.0-91
Architecture: all
Version: 5.15.0-91.101
Source: linux
Depends: coreutils
Filename: pool/main/l/linux/linux-headers-5.15.0-91_5.15.0-91.101_all.deb
Size: 13000000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: linux-headers-5.15.0-91-generic
Architecture: amd64
Version: 5.15.0-91.101
Source: linux
Depends: linux-headers-5.15.0-91, libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0~~alpha1), zlib1g (>= 1:1.2.3.3)
Filename: pool/main/l/linux/linux-headers-5.15.0-91-generic_5.15.0-91.101_amd64.deb
Size: 3000000
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: linux-headers-generic
Architecture: amd64
Version: 5.15.0.91.88
Source: linux-meta
Depends: linux-headers-5.15.0-91-generic
Filename: pool/main/l/linux-meta/linux-headers-generic_5.15.0.91.88_amd64.deb
Size: 2000
SHA256: 3333333333333333333333333333333333333333333333333333333333333333

Package: linux-aws-headers-5.15.0-1051
Architecture: all
Version: 5.15.0-1051.56
Source: linux-aws
Filename: pool/main/l/linux-aws/linux-aws-headers-5.15.0-1051_5.15.0-1051.56_all.deb
Size: 13000000
SHA256: 4444444444444444444444444444444444444444444444444444444444444444

Package: linux-headers-5.15.0-1051-aws
Architecture: amd64
Version: 5.15.0-1051.56
Source: linux-aws
Depends: linux-aws-headers-5.15.0-1051, libc6 (>= 2.34)
Filename: pool/main/l/linux-aws/linux-headers-5.15.0-1051-aws_5.15.0-1051.56_amd64.deb
Size: 3000000
SHA256: 5555555555555555555555555555555555555555555555555555555555555555

Package: linux-headers-5.15.0-41-generic
Architecture: amd64
Version: 5.15.0-41.44~20.04.1
Source: linux-hwe-5.15
Depends: linux-hwe-5.15-headers-5.15.0-41, libc6 (>= 2.34)
Filename: pool/main/l/linux-hwe-5.15/linux-headers-5.15.0-41-generic_5.15.0-41.44~20.04.1_amd64.deb
Size: 3000000
SHA256: 6666666666666666666666666666666666666666666666666666666666666666

Package: linux-headers-5.15.0-50-generic
Architecture: amd64
Version: 5.15.0-50.56
Source: linux
Depends: linux-headers-5.15.0-50
Filename: pool/main/l/linux/linux-headers-5.15.0-50-generic_5.15.0-50.56_amd64.deb
Size: 3000000
SHA256: 7777777777777777777777777777777777777777777777777777777777777777
";

    fn summary(entries: &[KernelEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} #{} {} {}",
                    e.kernelrelease,
                    e.target,
                    e.kernelversion,
                    e.flavour.as_deref().unwrap(),
                    e.headerpackages
                        .iter()
                        .map(|p| p.package.clone().unwrap())
                        .collect::<Vec<_>>()
                        .join("+")
                )
            })
            .collect()
    }

    #[test]
    fn pairs_flavour_and_shared_headers() {
        let index = PackageIndex::parse(
            JAMMY_AMD64,
            "http://u.invalid/ubuntu",
            "jammy-updates",
            "amd64",
        )
        .unwrap();
        let entries = entries_of_index(&index, Arch::X86_64, None);
        assert_eq!(
            summary(&entries),
            [
                "5.15.0-91-generic ubuntu-generic #101 generic linux-headers-5.15.0-91-generic+linux-headers-5.15.0-91",
                "5.15.0-1051-aws ubuntu-aws #56 aws linux-headers-5.15.0-1051-aws+linux-aws-headers-5.15.0-1051",
            ]
        );
        // The hwe kernel's shared package and 5.15.0-50's are missing: skipped, not half-listed.
        assert_eq!(
            entries[1].headers[1],
            "http://u.invalid/ubuntu/pool/main/l/linux-aws/linux-aws-headers-5.15.0-1051_5.15.0-1051.56_all.deb"
        );
        assert_eq!(
            entries[0].headerpackages[1].sha256.as_deref(),
            Some(&*"1".repeat(64))
        );

        let only_aws = entries_of_index(&index, Arch::X86_64, Some(&["aws".to_string()]));
        assert_eq!(only_aws.len(), 1);
    }

    #[test]
    fn names() {
        assert_eq!(shared_abi("linux-headers-5.15.0-91"), Some("5.15.0-91"));
        assert_eq!(
            shared_abi("linux-hwe-5.15-headers-5.15.0-41"),
            Some("5.15.0-41")
        );
        assert_eq!(
            shared_abi("linux-aws-headers-5.15.0-1051"),
            Some("5.15.0-1051")
        );
        assert_eq!(shared_abi("linux-libc-dev"), None);
        assert_eq!(target_of(Some("linux"), "lowlatency"), "ubuntu-lowlatency");
        assert_eq!(
            target_of(Some("linux-hwe-5.15"), "generic"),
            "ubuntu-hwe-5.15"
        );
        assert_eq!(target_of(None, "generic"), "ubuntu-generic");
    }
}
