//! Which packages a variant needs and where to get them: the mirror first, the recorded URLs after.

use kmf_fetch::Download;
use kmf_kernels::apt;
use kmf_types::{Arch, FailureClass, HeaderPackage, InputProof, MatrixEntry};

/// Package indexes of the configured Debian mirror, each fetched at most once per run.
pub(crate) type Indexes = apt::IndexSet;

/// A header package to fetch, with how it is proven (or that nothing proves it).
#[derive(Debug, Clone)]
pub(crate) struct ResolvedInput {
    pub download: Download,
    pub proof: InputProof,
}

/// The downloads for a variant's header packages, each with its proof.
///
/// Debian kernels are resolved through the suite's signed index: every package is then proven by it. When
/// the index no longer lists the kernel, the recorded URLs are used, and each package is still looked up in
/// the signed indices by file name (its kbuild often outlives the headers). An index whose Release was
/// refused (bad or unknown signature, expired, another suite) fails the variant: a forged mirror must not
/// turn into a quiet fall back to unchecked URLs. Proofs written in a kernel list or matrix are claims and
/// never taken; only what this run verified counts.
pub(crate) async fn resolve(
    indexes: &Indexes,
    entry: &MatrixEntry,
    host: Option<Arch>,
) -> Result<Vec<ResolvedInput>, (FailureClass, String)> {
    let cross_host = host.filter(|h| *h != entry.architecture);
    let recorded: Vec<HeaderPackage> = entry
        .header_packages()
        .into_iter()
        .map(|p| HeaderPackage { proof: None, ..p })
        .collect();
    if entry.distribution == "debian" {
        let mut proving = Vec::new();
        if let (Some(suite), Some(_)) = (&entry.suite, indexes.mirrors()) {
            match resolve_from_mirror(indexes, suite, entry, cross_host).await {
                Ok(pkgs) => return Ok(to_downloads(Some(indexes), &pkgs, &recorded, &[])),
                Err(MirrorLookup::Refused(e)) => {
                    return Err((FailureClass::InputUnproven, e.to_string()))
                }
                Err(MirrorLookup::NotListed(e, indices)) => {
                    tracing::warn!(
                        variant = %entry.label(),
                        "mirror lookup failed ({e}); using the recorded header URLs"
                    );
                    proving = indices;
                }
                Err(MirrorLookup::Unreachable(e)) => tracing::warn!(
                    variant = %entry.label(),
                    "mirror lookup failed ({e}); using the recorded header URLs, unverified"
                ),
            }
        }
        if entry.suite.is_none() && indexes.mirrors().is_some() {
            // A kernel-crawler list names no suite: its packages may still be listed by one of the current
            // suites' signed indices.
            proving = default_suite_indices(indexes, entry.architecture, cross_host).await;
        }
        let pkgs = select_debian_flavour(&recorded, &entry.kversion);
        let pkgs = match cross_host {
            Some(h) => swap_kbuild_arch(pkgs, entry.architecture, h),
            None => pkgs,
        };
        if pkgs.is_empty() {
            return Err((
                FailureClass::HeadersUnavailable,
                "the kernel list records no header packages for this kernel".into(),
            ));
        }
        return Ok(to_downloads(Some(indexes), &pkgs, &recorded, &proving));
    }
    let pkgs = if entry.distribution == "ubuntu" {
        select_ubuntu_flavour(&recorded, &entry.kversion)
    } else {
        recorded.clone()
    };
    if pkgs.is_empty() {
        return Err((
            FailureClass::HeadersUnavailable,
            "the kernel list records no header packages for this kernel".into(),
        ));
    }
    // Only Debian's pool paths mean anything on the configured Debian mirrors.
    Ok(to_downloads(None, &pkgs, &recorded, &[]))
}

/// Why the mirror did not give a Debian variant's packages.
enum MirrorLookup {
    /// The suite's Release was refused: the variant fails.
    Refused(kmf_kernels::KernelsError),
    /// The (verified) indices do not list the kernel; they can still prove packages by file name.
    NotListed(String, Vec<std::sync::Arc<apt::PackageIndex>>),
    /// The mirror could not be read (network, missing suite).
    Unreachable(kmf_kernels::KernelsError),
}

async fn resolve_from_mirror(
    indexes: &Indexes,
    suite: &str,
    entry: &MatrixEntry,
    cross_host: Option<Arch>,
) -> Result<Vec<HeaderPackage>, MirrorLookup> {
    let get = |arch: Arch| async move {
        indexes
            .get_typed(suite, arch.deb_arch())
            .await
            .map_err(|e| match e.is_trust_failure() {
                true => MirrorLookup::Refused(e),
                false => MirrorLookup::Unreachable(e),
            })
    };
    let target = get(entry.architecture).await?;
    let host = match cross_host {
        Some(h) => Some(get(h).await?),
        None => None,
    };
    apt::resolve_debian_headers(&target, host.as_deref(), &entry.kversion).map_err(|e| {
        let mut indices = vec![target.clone()];
        indices.extend(host.clone());
        MirrorLookup::NotListed(e.to_string(), indices)
    })
}

/// The verified indices of Debian's default suites for the variant's architectures (each fetched once per
/// run); a suite that cannot be read or proven just proves nothing.
async fn default_suite_indices(
    indexes: &Indexes,
    target: Arch,
    cross_host: Option<Arch>,
) -> Vec<std::sync::Arc<apt::PackageIndex>> {
    let mut out = Vec::new();
    for suite in kmf_kernels::sources::DEFAULT_DEBIAN_SUITES {
        for arch in std::iter::once(target).chain(cross_host) {
            match indexes.get_typed(suite, arch.deb_arch()).await {
                Ok(index) => out.push(index),
                Err(e) => {
                    tracing::debug!(suite, error = %e, "cannot prove recorded packages with this suite")
                }
            }
        }
    }
    out
}

/// The proof of a recorded package: a stanza of the same file name and (where recorded) SHA256 in one of
/// the verified `indices`, whose digest and size then become the download's.
fn prove_by_file_name(
    p: &HeaderPackage,
    indices: &[std::sync::Arc<apt::PackageIndex>],
) -> Option<(String, u64, InputProof)> {
    indices.iter().find_map(|index| {
        let release = index.release.clone()?;
        let stanza = index.packages.iter().find(|s| {
            s.filename.rsplit('/').next() == Some(p.file_name())
                && !s.sha256.is_empty()
                && p.sha256
                    .as_deref()
                    .is_none_or(|sha| sha.eq_ignore_ascii_case(&s.sha256))
        })?;
        Some((
            stanza.sha256.clone(),
            stanza.size,
            InputProof::SignedIndex(release),
        ))
    })
}

/// Mirror URLs first (any pool path the configured mirrors could serve), then the URLs the list recorded.
fn to_downloads(
    indexes: Option<&Indexes>,
    pkgs: &[HeaderPackage],
    recorded: &[HeaderPackage],
    proving: &[std::sync::Arc<apt::PackageIndex>],
) -> Vec<ResolvedInput> {
    pkgs.iter()
        .map(|p| {
            let mut urls = Vec::new();
            let mut push = |u: String| {
                if !urls.contains(&u) {
                    urls.push(u);
                }
            };
            if let Some(m) = indexes.and_then(|i| i.mirrors()) {
                let pool_path = p
                    .path
                    .clone()
                    .or_else(|| p.url.find("/pool/").map(|i| p.url[i + 1..].to_string()));
                if let Some(path) = pool_path {
                    for u in mirror_urls(m, &path) {
                        push(u);
                    }
                }
            }
            push(p.url.clone());
            for r in recorded {
                if r.file_name() == p.file_name() {
                    push(r.url.clone());
                }
            }
            let mut sha256 = p.sha256.clone().or_else(|| {
                recorded
                    .iter()
                    .find(|r| r.file_name() == p.file_name())
                    .and_then(|r| r.sha256.clone())
            });
            let mut size = p.size;
            let proof = match (&p.proof, prove_by_file_name(p, proving)) {
                (Some(proof), _) => proof.clone(),
                (None, Some((sha, len, proof))) => {
                    sha256 = Some(sha);
                    size = Some(len);
                    proof
                }
                (None, None) => InputProof::Unverified {
                    reason: if sha256.is_some() {
                        "fetched by a recorded URL and checked against the kernel list's SHA256; no \
                         signed index lists it"
                            .into()
                    } else {
                        "fetched by a recorded URL with no checksum; no signed index lists it".into()
                    },
                },
            };
            ResolvedInput {
                download: Download {
                    file_name: p.file_name().to_string(),
                    sha256,
                    size,
                    urls,
                },
                proof,
            }
        })
        .collect()
}

/// The configured mirrors' URLs of a pool path, the likelier archive first. A pool path identifies the
/// file on any Debian mirror; which archive (main or security) holds it is not recorded in kernel-crawler
/// lists, so both are tried, but the security archive's pool is `pool/updates/...`: such a path goes
/// there first instead of costing a 404 from the main archive for every security kernel's package.
fn mirror_urls(m: &kmf_kernels::mirrors::DebianMirrors, path: &str) -> Vec<String> {
    let archive = format!("{}/{}", m.archive.trim_end_matches('/'), path);
    let security = m
        .security
        .as_ref()
        .map(|sec| format!("{}/{}", sec.trim_end_matches('/'), path));
    match security {
        Some(sec) if path.starts_with("pool/updates/") => vec![sec, archive],
        Some(sec) => vec![archive, sec],
        None => vec![archive],
    }
}

/// kernel-crawler's Debian entries list the headers of every flavour of an upload (`rt`, `cloud`, ...);
/// keep the flavour this entry is for, its common package and kbuild.
fn select_debian_flavour(pkgs: &[HeaderPackage], release: &str) -> Vec<HeaderPackage> {
    let name = |p: &HeaderPackage| {
        p.package
            .clone()
            .unwrap_or_else(|| p.file_name().split('_').next().unwrap_or("").to_string())
    };
    let abi = pkgs.iter().find_map(|p| {
        name(p)
            .strip_prefix("linux-headers-")
            .and_then(|n| n.strip_suffix("-common"))
            .map(str::to_string)
    });
    let Some(abi) = abi else {
        return pkgs.to_vec();
    };
    let flavours: Vec<String> = pkgs
        .iter()
        .filter_map(|p| {
            name(p)
                .strip_prefix(&format!("linux-headers-{abi}-"))
                .filter(|f| !f.starts_with("common"))
                .map(str::to_string)
        })
        .collect();
    let Some(flavour) = flavours
        .iter()
        .filter(|f| release.ends_with(&format!("-{f}")))
        .max_by_key(|f| f.len())
    else {
        return pkgs.to_vec();
    };
    let common = if flavour.starts_with("rt-") {
        format!("linux-headers-{abi}-common-rt")
    } else {
        format!("linux-headers-{abi}-common")
    };
    let own = format!("linux-headers-{abi}-{flavour}");
    pkgs.iter()
        .filter(|p| {
            let n = name(p);
            n == own || n == common || n.starts_with("linux-kbuild-")
        })
        .cloned()
        .collect()
}

/// kernel-crawler's Ubuntu entries may list several flavours' headers of one ABI
/// (`linux-headers-4.4.0-21-generic`, `-lowlatency`, and the shared `linux-headers-4.4.0-21`); keep the
/// entry's own (`linux-headers-<kernelrelease>`) and the shared package its name starts with. Lists that
/// name no package of that form are kept whole.
fn select_ubuntu_flavour(pkgs: &[HeaderPackage], release: &str) -> Vec<HeaderPackage> {
    let name = |p: &HeaderPackage| {
        p.package
            .clone()
            .unwrap_or_else(|| p.file_name().split('_').next().unwrap_or("").to_string())
    };
    let own = format!("linux-headers-{release}");
    if !pkgs.iter().any(|p| name(p) == own) {
        return pkgs.to_vec();
    }
    pkgs.iter()
        .filter(|p| {
            let n = name(p);
            n == own || (n.starts_with("linux-headers-") && own.starts_with(&format!("{n}-")))
        })
        .cloned()
        .collect()
}

/// Debian's kbuild package holds executables for the machine that builds; a cross build needs the host's.
/// Only used when the mirror index could not be asked: the pool path differs only in the architecture.
fn swap_kbuild_arch(pkgs: Vec<HeaderPackage>, target: Arch, host: Arch) -> Vec<HeaderPackage> {
    pkgs.into_iter()
        .map(|mut p| {
            let file = p.file_name().to_string();
            let suffix = format!("_{}.deb", target.deb_arch());
            if file.starts_with("linux-kbuild-") && file.ends_with(&suffix) {
                let new_file = format!(
                    "{}_{}.deb",
                    &file[..file.len() - suffix.len()],
                    host.deb_arch()
                );
                p.url = format!("{}{}", &p.url[..p.url.len() - file.len()], new_file);
                p.path = p
                    .path
                    .map(|path| format!("{}{}", &path[..path.len() - file.len()], new_file));
                p.sha256 = None;
                p.size = None;
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(names: &[&str]) -> Vec<HeaderPackage> {
        names
            .iter()
            .map(|n| HeaderPackage::from_url(&format!("http://m/debian/pool/main/l/linux/{n}")))
            .collect()
    }

    #[test]
    fn keeps_only_the_entry_flavour() {
        let pkgs = urls(&[
            "linux-headers-5.19.0-2-common-rt_5.19.11-1_all.deb",
            "linux-headers-5.19.0-2-common_5.19.11-1_all.deb",
            "linux-headers-5.19.0-2-amd64_5.19.11-1_amd64.deb",
            "linux-kbuild-5.19_5.19.11-1_amd64.deb",
            "linux-headers-5.19.0-2-rt-amd64_5.19.11-1_amd64.deb",
            "linux-headers-5.19.0-2-cloud-amd64_5.19.11-1_amd64.deb",
        ]);
        let kept: Vec<_> = select_debian_flavour(&pkgs, "5.19.11-1-cloud-amd64")
            .iter()
            .map(|p| p.file_name().to_string())
            .collect();
        assert_eq!(
            kept,
            [
                "linux-headers-5.19.0-2-common_5.19.11-1_all.deb",
                "linux-kbuild-5.19_5.19.11-1_amd64.deb",
                "linux-headers-5.19.0-2-cloud-amd64_5.19.11-1_amd64.deb"
            ]
        );
        let rt = select_debian_flavour(&pkgs, "5.19.11-1-rt-amd64");
        assert!(rt.iter().any(|p| p
            .file_name()
            .starts_with("linux-headers-5.19.0-2-common-rt")));
    }

    #[test]
    fn ubuntu_entries_keep_their_flavour_and_the_shared_package() {
        let pkgs: Vec<HeaderPackage> = [
            "linux-headers-4.4.0-21-generic_4.4.0-21.37_amd64.deb",
            "linux-headers-4.4.0-21_4.4.0-21.37_all.deb",
            "linux-headers-4.4.0-21-lowlatency_4.4.0-21.37_amd64.deb",
        ]
        .iter()
        .map(|n| HeaderPackage::from_url(&format!("http://m/ubuntu/pool/main/l/linux/{n}")))
        .collect();
        let kept: Vec<_> = select_ubuntu_flavour(&pkgs, "4.4.0-21-generic")
            .iter()
            .map(|p| p.file_name().to_string())
            .collect();
        assert_eq!(
            kept,
            [
                "linux-headers-4.4.0-21-generic_4.4.0-21.37_amd64.deb",
                "linux-headers-4.4.0-21_4.4.0-21.37_all.deb"
            ]
        );
        assert_eq!(select_ubuntu_flavour(&pkgs, "4.4.0-99-generic").len(), 3);
    }

    #[test]
    fn security_pool_paths_go_to_the_security_mirror_first() {
        let m = kmf_kernels::mirrors::DebianMirrors {
            archive: "http://a/debian/".into(),
            security: Some("http://s/debian-security".into()),
        };
        assert_eq!(
            mirror_urls(&m, "pool/updates/main/l/linux/x.deb"),
            [
                "http://s/debian-security/pool/updates/main/l/linux/x.deb",
                "http://a/debian/pool/updates/main/l/linux/x.deb"
            ]
        );
        assert_eq!(
            mirror_urls(&m, "pool/main/l/linux/x.deb")[0],
            "http://a/debian/pool/main/l/linux/x.deb"
        );
        let no_security = kmf_kernels::mirrors::DebianMirrors {
            security: None,
            ..m
        };
        assert_eq!(mirror_urls(&no_security, "pool/updates/x.deb").len(), 1);
    }

    #[test]
    fn cross_builds_take_the_host_kbuild() {
        let pkgs = urls(&[
            "linux-kbuild-6.1_6.1.1-1_arm64.deb",
            "linux-headers-6.1.0-1-arm64_6.1.1-1_arm64.deb",
        ]);
        let swapped = swap_kbuild_arch(pkgs, Arch::Aarch64, Arch::X86_64);
        assert_eq!(swapped[0].file_name(), "linux-kbuild-6.1_6.1.1-1_amd64.deb");
        assert_eq!(
            swapped[1].file_name(),
            "linux-headers-6.1.0-1-arm64_6.1.1-1_arm64.deb"
        );
    }
}
