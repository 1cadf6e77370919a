//! The rpm-md kernel crawler: every `kernel-devel` of the configured repositories, as kernel-crawler
//! entries with each package's SHA256.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kmf_types::{Arch, HeaderPackage, KernelEntry, KernelList, KernelVersion};
use reqwest::Url;

use super::primary::{parse_primary, RpmPackage};
use super::repomd::{parse_repomd, DigestAlgorithm, RepoData};
use crate::apt::compare_versions;
use crate::family::{Family, RepoFormat};
use crate::http::get_bytes;
use crate::index_cache::write_atomically;
use crate::KernelsError;

/// repomd.xml is kilobytes; a mirror list a few hundred lines.
const REPOMD_LIMIT: u64 = 16 << 20;
/// repomd.xml.asc: one or a few signature packets, armored.
const REPOMD_SIGNATURE_LIMIT: u64 = 1 << 20;
const MIRRORLIST_LIMIT: u64 = 1 << 20;
/// Bound on a primary file whose size repomd.xml does not give.
const PRIMARY_LIMIT: u64 = 1 << 30;
/// Repositories read at once.
const CONCURRENT_REPOS: usize = 3;

/// One yum/dnf repository to crawl, as a `.repo` file would name it.
#[derive(Debug, Clone)]
pub struct RpmRepoSource {
    pub family: Family,
    /// Base URL of the repository (the directory holding `repodata/`); `$basearch` and `$arch` are
    /// replaced by each architecture crawled.
    pub baseurl: Option<String>,
    /// A mirror list (one URL per line, as Amazon Linux 2 serves `mirror.list`): the first mirror that
    /// answers is used. Same substitutions as `baseurl`.
    pub mirrorlist: Option<String>,
    pub arches: Vec<Arch>,
    /// Package names holding kernel build trees (`kernel-devel`; `kernel-64k-devel` and the like add a
    /// flavour).
    pub packages: Vec<String>,
    /// A name for the repository, recorded as the entries' `suite` (`updates`, `core`).
    pub label: Option<String>,
    /// dnf's `repo_gpgcheck`: the keys (`gpgkey`) `repodata/repomd.xml.asc` must be signed by; the
    /// metadata is read only after that signature verified. `None`: repomd.xml is taken as served (the
    /// packages' own signatures are checked when they are fetched for a build).
    pub repo_keyring: Option<Arc<kmf_trust::Keyring>>,
}

impl RpmRepoSource {
    fn url_for(template: &str, arch: Arch) -> String {
        template
            .replace("$basearch", arch.as_str())
            .replace("$arch", arch.as_str())
    }

    /// Whether the URLs name an architecture, so that one repository serves one architecture.
    fn per_arch(&self) -> bool {
        [&self.baseurl, &self.mirrorlist]
            .into_iter()
            .flatten()
            .any(|u| u.contains("$basearch") || u.contains("$arch"))
    }
}

/// Crawls `sources` (in order of preference: a kernel found in two repositories is listed under the
/// first) into kernel-crawler JSON keyed by each family's kernel-crawler name. Compressed primary files
/// are cached in `index_cache` by digest. An unreachable repository or one whose metadata does not
/// verify is an error: a partial crawl must not look like kernels vanished.
pub async fn crawl_rpm_repos(
    client: &reqwest::Client,
    sources: &[RpmRepoSource],
    index_cache: Option<&Path>,
) -> Result<KernelList, KernelsError> {
    let mut jobs = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        if source.family.repo_format() != RepoFormat::RpmMd {
            return Err(KernelsError::BadSource(format!(
                "{} repositories are apt repositories, not yum/dnf ones",
                source.family
            )));
        }
        if source.baseurl.is_none() == source.mirrorlist.is_none() {
            return Err(KernelsError::BadSource(format!(
                "a {} repository needs exactly one of baseurl and mirrorlist",
                source.family
            )));
        }
        if source.per_arch() {
            jobs.extend(source.arches.iter().map(|&a| (i, source, Some(a))));
        } else {
            jobs.push((i, source, None));
        }
    }
    let mut found: Vec<(usize, Option<Arch>, String, Vec<RpmPackage>)> = futures::stream::iter(
        jobs,
    )
    .map(|(i, source, arch)| async move {
        let base_candidates = base_urls(client, source, arch).await?;
        let wanted: HashSet<String> = source.packages.iter().cloned().collect();
        let mut last_err = None;
        let count = base_candidates.len();
        for (n, base) in base_candidates.into_iter().enumerate() {
            let wanted = wanted.clone();
            let keyring = source.repo_keyring.as_deref();
            match fetch_primary(client, index_cache, &base, keyring, move |n| {
                wanted.contains(n)
            })
            .await
            {
                Ok(pkgs) => return Ok((i, arch, base, pkgs)),
                Err(e) if n + 1 < count => {
                    tracing::warn!(%base, error = %e, "mirror unusable, trying the next one");
                    last_err = Some(e);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| KernelsError::NoRepository {
            url: source.mirrorlist.clone().unwrap_or_default(),
            msg: "the mirror list names no http(s) mirror".into(),
        }))
    })
    .buffer_unordered(CONCURRENT_REPOS)
    .try_collect()
    .await?;
    found.sort_by_key(|(i, arch, _, _)| (*i, *arch));

    let mut lists: BTreeMap<String, Vec<KernelEntry>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (i, arch, base, pkgs) in &found {
        let source = &sources[*i];
        for pkg in pkgs {
            let pkg_arch = match pkg.arch.as_str() {
                "x86_64" => Arch::X86_64,
                "aarch64" => Arch::Aarch64,
                _ => continue, // noarch, src, i686, ...
            };
            if arch.is_some_and(|a| a != pkg_arch) || !source.arches.contains(&pkg_arch) {
                continue;
            }
            let Some(entry) = entry_of(source, base, pkg, pkg_arch) else {
                continue;
            };
            if seen.insert((source.family, entry.arch, entry.kernelrelease.clone())) {
                lists
                    .entry(source.family.key().to_string())
                    .or_default()
                    .push(entry);
            }
        }
    }
    for entries in lists.values_mut() {
        entries.sort_by(|a, b| {
            a.arch
                .cmp(&b.arch)
                .then_with(|| compare_versions(&a.kernelrelease, &b.kernelrelease))
                .then_with(|| a.kernelrelease.cmp(&b.kernelrelease))
        });
    }
    for source in sources {
        // A family with repositories but no kernels is listed empty, which `matrix diff` holds.
        lists.entry(source.family.key().to_string()).or_default();
    }
    Ok(KernelList { distros: lists })
}

/// The repository roots to try for `source` on `arch`: its baseurl, or the mirrors its list names.
async fn base_urls(
    client: &reqwest::Client,
    source: &RpmRepoSource,
    arch: Option<Arch>,
) -> Result<Vec<String>, KernelsError> {
    let subst = |t: &str| match arch {
        Some(a) => RpmRepoSource::url_for(t, a),
        None => t.to_string(),
    };
    if let Some(base) = &source.baseurl {
        return Ok(vec![subst(base)]);
    }
    let list_url = subst(source.mirrorlist.as_deref().unwrap_or_default());
    let text = get_bytes(client, &list_url, Some(MIRRORLIST_LIMIT)).await?;
    let mirrors: Vec<String> = String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
        .map(subst)
        .collect();
    if mirrors.is_empty() {
        return Err(KernelsError::NoRepository {
            url: list_url,
            msg: "the mirror list names no http(s) mirror".into(),
        });
    }
    tracing::debug!(%list_url, mirrors = mirrors.len(), "mirror list read");
    Ok(mirrors)
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// `href` resolved against `base` with `..` segments collapsed, as yum and dnf resolve locations.
fn join(base: &str, href: &str) -> Result<String, KernelsError> {
    let bad = |msg: String| KernelsError::RepoMetadata {
        url: base.to_string(),
        msg,
    };
    let base = Url::parse(&with_slash(base)).map_err(|e| bad(format!("bad URL: {e}")))?;
    let url = base
        .join(href)
        .map_err(|e| bad(format!("bad location {href:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Err(bad(format!("location {href:?} leaves http(s)")));
    }
    Ok(url.to_string())
}

/// Reads `base/repodata/repomd.xml` (first checking `repomd.xml.asc` against `repo_keyring`, when given),
/// downloads the primary metadata it names (verified against its digest and size, cached by digest) and
/// returns the packages `keep` accepts.
pub async fn fetch_primary(
    client: &reqwest::Client,
    index_cache: Option<&Path>,
    base: &str,
    repo_keyring: Option<&kmf_trust::Keyring>,
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> Result<Vec<RpmPackage>, KernelsError> {
    let repomd_url = join(base, "repodata/repomd.xml")?;
    let repomd = match get_bytes(client, &repomd_url, Some(REPOMD_LIMIT)).await {
        Ok(b) => b,
        Err(KernelsError::Http { url, status }) if status == reqwest::StatusCode::NOT_FOUND => {
            return Err(KernelsError::NoRepository {
                url,
                msg: format!("HTTP {status}: no repodata/repomd.xml there (is the baseurl right?)"),
            })
        }
        Err(e) => return Err(e),
    };
    if let Some(keyring) = repo_keyring {
        verify_repomd(client, base, &repomd_url, &repomd, keyring).await?;
    }
    let data = parse_repomd(&repomd, &repomd_url)?;
    let primary = choose_primary(&data).ok_or_else(|| KernelsError::RepoMetadata {
        url: repomd_url.clone(),
        msg: format!(
            "no primary metadata in XML form (it lists: {})",
            data.iter()
                .map(|d| d.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let url = join(base, &primary.href)?;
    let compression = Compression::of(&primary.href).ok_or_else(|| KernelsError::RepoMetadata {
        url: url.clone(),
        msg: "unsupported compression (gz, xz, zst and plain XML are read)".into(),
    })?;
    let algo = primary.checksum.algorithm;
    let expected = primary.checksum.hex.clone();
    let cached = index_cache.map(|d| {
        d.join(format!(
            "{}-{expected}",
            match algo {
                DigestAlgorithm::Sha256 => "sha256",
                DigestAlgorithm::Sha512 => "sha512",
            }
        ))
    });
    let from_cache = cached
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .filter(|b| algo.digest_hex(b) == expected);
    let bytes = match from_cache {
        Some(b) => {
            tracing::debug!(%url, "primary metadata unchanged: using the cached copy");
            b
        }
        None => {
            tracing::info!(%url, "fetching primary metadata");
            let bytes =
                get_bytes(client, &url, Some(primary.size.unwrap_or(PRIMARY_LIMIT))).await?;
            if let Some(size) = primary.size {
                if bytes.len() as u64 != size {
                    return Err(KernelsError::Size {
                        url,
                        expected: size,
                        actual: bytes.len() as u64,
                    });
                }
            }
            let actual = algo.digest_hex(&bytes);
            if actual != expected {
                return Err(KernelsError::Checksum {
                    url,
                    expected,
                    actual,
                });
            }
            if let Some(path) = &cached {
                if let Err(e) = write_atomically(path, &bytes) {
                    tracing::debug!(path = %path.display(), error = %e, "primary metadata not cached");
                }
            }
            bytes
        }
    };
    // Decompressing and parsing is CPU work: off the async workers, streamed.
    tokio::task::spawn_blocking(move || {
        let cursor = std::io::Cursor::new(bytes);
        let reader: Box<dyn Read> = match compression {
            Compression::Gz => Box::new(flate2::read::MultiGzDecoder::new(cursor)),
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(cursor)),
            Compression::Zst => {
                Box::new(zstd::stream::read::Decoder::new(cursor).map_err(|source| {
                    KernelsError::Decompress {
                        url: url.clone(),
                        source,
                    }
                })?)
            }
            Compression::None => Box::new(cursor),
        };
        parse_primary(BufReader::with_capacity(1 << 16, reader), &url, keep)
    })
    .await
    .map_err(|e| KernelsError::Task(e.to_string()))?
}

/// dnf's `repo_gpgcheck`: `repomd.xml.asc` must be a detached signature over exactly `repomd` by a key of
/// `keyring`, or nothing of the repository is read.
async fn verify_repomd(
    client: &reqwest::Client,
    base: &str,
    repomd_url: &str,
    repomd: &[u8],
    keyring: &kmf_trust::Keyring,
) -> Result<(), KernelsError> {
    let refused = |reason: String| KernelsError::RepomdUntrusted {
        url: repomd_url.to_string(),
        reason,
    };
    let asc_url = join(base, "repodata/repomd.xml.asc")?;
    let signature = match get_bytes(client, &asc_url, Some(REPOMD_SIGNATURE_LIMIT)).await {
        Ok(b) => b,
        Err(KernelsError::Http { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
            return Err(refused(format!(
                "not signed: {asc_url} does not exist, and repo_gpgcheck requires it"
            )))
        }
        Err(e) => return Err(e),
    };
    let signer = keyring
        .verify_detached(repomd, &signature, std::time::SystemTime::now())
        .map_err(|e| refused(format!("repomd.xml.asc: {e}")))?;
    tracing::debug!(url = %repomd_url, key = %signer.primary_fingerprint, "repomd.xml signature verified");
    Ok(())
}

/// The XML primary: what dnf itself reads. (The sqlite `primary_db` is an optional extra of the same
/// data; every repository createrepo or createrepo_c writes has the XML.)
fn choose_primary(data: &[RepoData]) -> Option<&RepoData> {
    data.iter()
        .find(|d| d.kind == "primary" && Compression::of(&d.href).is_some())
        .or_else(|| data.iter().find(|d| d.kind == "primary"))
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    Gz,
    Xz,
    Zst,
    None,
}

impl Compression {
    fn of(href: &str) -> Option<Compression> {
        if href.ends_with(".gz") {
            Some(Compression::Gz)
        } else if href.ends_with(".xz") {
            Some(Compression::Xz)
        } else if href.ends_with(".zst") {
            Some(Compression::Zst)
        } else if href.ends_with(".xml") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// The kernel-crawler entry of one kernel-devel package. `None` (with a warning) for a package that
/// cannot be named or verified.
fn entry_of(
    source: &RpmRepoSource,
    base: &str,
    pkg: &RpmPackage,
    arch: Arch,
) -> Option<KernelEntry> {
    if pkg.checksum.algorithm != DigestAlgorithm::Sha256 {
        tracing::warn!(package = %pkg.name, evr = %pkg.evr(),
            "skipping a package whose digest is not SHA256: kmodfarm records and verifies SHA256");
        return None;
    }
    let root = pkg.location_base.as_deref().unwrap_or(base);
    let url = match join(root, &pkg.location_href) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(package = %pkg.name, error = %e, "skipping a package with a bad location");
            return None;
        }
    };
    // `kernel-64k-devel` → flavour 64k, release `...aarch64+64k`, as Red Hat names those kernels.
    let flavour = pkg
        .name
        .strip_prefix("kernel-")
        .and_then(|r| r.strip_suffix("-devel"))
        .filter(|f| !f.is_empty() && *f != "rt");
    let mut release = pkg.kernel_release();
    if let Some(f) = flavour {
        release = format!("{release}+{f}");
    }
    Some(KernelEntry {
        kernelversion: KernelVersion::Number(1),
        kernelrelease: release,
        target: source.family.target().to_string(),
        headers: vec![url.clone()],
        kernelconfigdata: None,
        arch: Some(arch),
        packageversion: Some(pkg.evr()),
        flavour: flavour.map(str::to_string),
        suite: source.label.clone(),
        headerpackages: vec![HeaderPackage {
            proof: None,
            url,
            package: Some(pkg.name.clone()),
            version: Some(pkg.evr()),
            sha256: Some(pkg.checksum.hex.clone()),
            size: Some(pkg.size),
            path: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::rpmmd::primary::tests::PRIMARY;
    use crate::test_server::Server;

    fn zst(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A repository at `root` whose primary is `body`, compressed as `ext` says.
    fn repo_routes(root: &str, body: &[u8], ext: &str) -> Vec<(String, Vec<u8>)> {
        let compressed = match ext {
            "zst" => zst(body),
            "gz" => gz(body),
            _ => body.to_vec(),
        };
        let sha = DigestAlgorithm::Sha256.digest_hex(&compressed);
        let href = format!("repodata/{sha}-primary.xml.{ext}");
        let repomd = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">{sha}</checksum><location href="{href}"/><size>{}</size></data>
</repomd>"#,
            compressed.len()
        );
        vec![
            (format!("{root}/repodata/repomd.xml"), repomd.into_bytes()),
            (format!("{root}/{href}"), compressed),
        ]
    }

    fn source(
        family: Family,
        baseurl: Option<String>,
        mirrorlist: Option<String>,
    ) -> RpmRepoSource {
        RpmRepoSource {
            family,
            baseurl,
            mirrorlist,
            arches: vec![Arch::X86_64, Arch::Aarch64],
            packages: vec!["kernel-devel".into()],
            label: Some("updates".into()),
            repo_keyring: None,
        }
    }

    #[tokio::test]
    async fn crawls_a_repository_per_arch_and_caches_the_primary() {
        let x86 = PRIMARY
            .replace("aarch64", "x86_64")
            .replace("5.10.205", "5.10.206");
        let mut routes = repo_routes("/f/x86_64", x86.as_bytes(), "zst");
        routes.extend(repo_routes("/f/aarch64", PRIMARY.as_bytes(), "gz"));
        let server = Server::start(routes);
        let cache = tempfile::tempdir().unwrap();
        let sources = [source(
            Family::Fedora,
            Some(server.url("/f/$basearch")),
            None,
        )];
        let client = reqwest::Client::new();
        let list = crawl_rpm_repos(&client, &sources, Some(cache.path()))
            .await
            .unwrap();
        let fedora = &list.distros["Fedora"];
        let names: Vec<String> = fedora
            .iter()
            .map(|e| format!("{} {}", e.arch.unwrap(), e.kernelrelease))
            .collect();
        assert_eq!(
            names,
            [
                "x86_64 5.10.206-195.807.amzn2.x86_64",
                "x86_64 6.5.6-300.fc39.x86_64",
                "aarch64 5.10.205-195.807.amzn2.aarch64",
            ]
        );
        let e = &fedora[1];
        assert_eq!(e.target, "fedora");
        assert_eq!(e.suite.as_deref(), Some("updates"));
        assert_eq!(
            e.headers,
            [server.url("/f/x86_64/Packages/k/kernel-devel-6.5.6-300.fc39.x86_64.rpm")]
        );
        assert_eq!(
            e.headerpackages[0].sha256.as_deref(),
            Some(&*"a".repeat(64))
        );
        assert_eq!(e.headerpackages[0].size, Some(19_000_000));
        // xml:base wins, and `..` is resolved the way dnf resolves it.
        assert_eq!(
            fedora[2].headers,
            ["http://other.invalid/blobstore/cccc/kernel-devel-5.10.205-195.807.amzn2.aarch64.rpm"]
        );

        // Second crawl: repomd.xml again, the primaries from the cache.
        let before = server.requests().len();
        let again = crawl_rpm_repos(&client, &sources, Some(cache.path()))
            .await
            .unwrap();
        assert_eq!(again, list);
        let new: Vec<String> = server.requests()[before..].to_vec();
        assert_eq!(new.len(), 2, "{new:?}");
        assert!(new.iter().all(|r| r.ends_with("repomd.xml")), "{new:?}");

        let json = serde_json::to_vec(&list).unwrap();
        assert_eq!(crate::parse_kernel_list(&json, "crawl.json").unwrap(), list);
    }

    #[tokio::test]
    async fn mirror_list_falls_through_to_a_working_mirror() {
        // Mirrors on one server, the list (naming a dead mirror first) on another.
        let mirrors = Server::start(repo_routes("/good/x86_64", PRIMARY.as_bytes(), "zst"));
        let list_text = format!(
            "# mirrors\n{}\n\n{}\n",
            mirrors.url("/dead/$basearch/"),
            mirrors.url("/good/$basearch")
        );
        let lists = Server::start(vec![(
            "/al2/x86_64/mirror.list".into(),
            list_text.into_bytes(),
        )]);
        let mut src = source(
            Family::AmazonLinux2,
            None,
            Some(lists.url("/al2/$basearch/mirror.list")),
        );
        src.arches = vec![Arch::X86_64];
        let client = reqwest::Client::new();
        let list = crawl_rpm_repos(&client, &[src.clone()], None)
            .await
            .unwrap();
        let al2 = &list.distros["AmazonLinux2"];
        assert_eq!(al2.len(), 1);
        assert_eq!(al2[0].target, "amazonlinux2");
        assert_eq!(al2[0].kernelrelease, "6.5.6-300.fc39.x86_64");
        assert!(al2[0].headers[0].starts_with(&mirrors.url("/good/x86_64/")));
        assert!(mirrors.requests().iter().any(|r| r.contains("/dead/")));

        // A list naming only dead mirrors is an error, not an empty crawl.
        let dead = Server::start(vec![(
            "/al2/x86_64/mirror.list".into(),
            format!("{}\n", mirrors.url("/dead/$basearch/")).into_bytes(),
        )]);
        src.mirrorlist = Some(dead.url("/al2/$basearch/mirror.list"));
        let e = crawl_rpm_repos(&client, &[src], None).await.unwrap_err();
        assert!(e.to_string().contains("repomd.xml"), "{e}");
    }

    #[tokio::test]
    async fn tampered_metadata_and_bad_sources_are_errors() {
        let mut routes = repo_routes("/r", PRIMARY.as_bytes(), "gz");
        routes[1].1[20] ^= 1;
        let server = Server::start(routes);
        let client = reqwest::Client::new();
        let e = crawl_rpm_repos(
            &client,
            &[source(Family::Fedora, Some(server.url("/r")), None)],
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, KernelsError::Checksum { .. }), "{e}");

        let e = crawl_rpm_repos(
            &client,
            &[source(Family::Fedora, Some(server.url("/nothing")), None)],
            None,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("no repodata/repomd.xml"), "{e}");

        let e = crawl_rpm_repos(
            &client,
            &[source(Family::Ubuntu, Some(server.url("/r")), None)],
            None,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("apt repositories"), "{e}");
        let e = crawl_rpm_repos(&client, &[source(Family::Fedora, None, None)], None)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("exactly one of baseurl and mirrorlist"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn repo_gpgcheck_reads_only_metadata_signed_by_the_keys() {
        use crate::test_server::test_key;
        let other = kmf_trust::testing::TestKey::generate("someone else <e@invalid>");
        let keyring = Arc::new(
            kmf_trust::Keyring::from_bytes(
                test_key().public_armored().as_bytes(),
                "RPM-GPG-KEY-test",
            )
            .unwrap(),
        );
        let with_asc = |root: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
            let mut routes = repo_routes(root, PRIMARY.as_bytes(), "zst");
            let asc = sign(&routes[0].1);
            routes.push((format!("{root}/repodata/repomd.xml.asc"), asc));
            routes
        };
        let mut routes = with_asc("/good", &|d| test_key().detach_sign(d));
        routes.extend(with_asc("/foreign", &|d| other.detach_sign(d)));
        routes.extend(repo_routes("/unsigned", PRIMARY.as_bytes(), "zst"));
        let mut changed = with_asc("/changed", &|d| test_key().detach_sign(d));
        changed[0].1 = String::from_utf8(changed[0].1.clone())
            .unwrap()
            .replace("<revision>1</revision>", "<revision>2</revision>")
            .into_bytes();
        routes.extend(changed);
        let server = Server::start(routes);
        let client = reqwest::Client::new();
        let crawl = |root: &str| {
            let mut src = source(Family::Fedora, Some(server.url(root)), None);
            src.arches = vec![Arch::Aarch64];
            src.repo_keyring = Some(keyring.clone());
            let client = client.clone();
            async move { crawl_rpm_repos(&client, &[src], None).await }
        };

        let list = crawl("/good").await.unwrap();
        assert_eq!(list.distros["Fedora"].len(), 1);

        for (root, why) in [
            ("/unsigned", "not signed"),
            ("/foreign", "not in the keyring"),
            ("/changed", "BAD signature"),
        ] {
            let before = server.requests().len();
            let e = crawl(root).await.unwrap_err();
            assert!(
                matches!(e, KernelsError::RepomdUntrusted { .. }),
                "{root}: {e}"
            );
            assert!(e.is_trust_failure());
            assert!(e.to_string().contains(why), "{root}: {e}");
            // Nothing the unverified repomd.xml names was fetched.
            let after = server.requests()[before..].to_vec();
            assert!(
                after.iter().all(|r| r.contains("repomd.xml")),
                "{root}: {after:?}"
            );
        }

        // Without repo_gpgcheck, the unsigned repository is read as before.
        let src = source(Family::Fedora, Some(server.url("/unsigned")), None);
        assert!(crawl_rpm_repos(&client, &[src], None).await.is_ok());
    }

    #[test]
    fn joins_like_dnf() {
        assert_eq!(
            join(
                "http://m/2/core/2.0/x86_64/guid",
                "../../../../../blobstore/ab/k.rpm"
            )
            .unwrap(),
            "http://m/blobstore/ab/k.rpm"
        );
        assert_eq!(
            join("http://m/r/", "Packages/k.rpm").unwrap(),
            "http://m/r/Packages/k.rpm"
        );
        assert!(join("http://m/r/", "javascript:alert(1)").is_err());
    }
}
