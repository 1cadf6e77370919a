//! Downloading and verifying Packages indices.

use std::collections::HashMap;

use crate::apt::PackageStanza;
use std::io::BufReader;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::index::parse_reader;
use super::release::{fetch_release, AptTrust, VerifiedRelease};
use super::PackageIndex;
use crate::http::get_bytes;
use crate::index_cache::{read_verified, write_atomically};
use crate::KernelsError;

/// Downloads and parses `COMPONENT/binary-ARCH/Packages` of `suite` from the repository at `base_uri`.
///
/// The index's SHA256 and size come from the suite's Release, taken only after `trust` verified its
/// signature, suite and freshness ([`fetch_release`]); the download is checked against both before it is
/// decompressed (`.xz`, or `.gz` when the Release lists no `.xz`). Network errors are retried. A suite the
/// mirror does not have is [`KernelsError::SuiteNotFound`].
pub async fn fetch_index(
    client: &reqwest::Client,
    trust: &AptTrust,
    base_uri: &str,
    suite: &str,
    component: &str,
    arch: &str,
) -> Result<PackageIndex, KernelsError> {
    fetch_index_filtered(
        client,
        trust,
        None,
        IndexPath {
            base: base_uri,
            suite,
            component,
            arch,
        },
        PackageFilter::ALL,
    )
    .await
}

/// [`fetch_index`] with a content-addressed cache of compressed indices in `cache_dir`: the Release file is
/// always fetched (it says what is current), the index itself only when no file with its SHA256 is cached.
/// A Packages.xz is megabytes; the Release file that names it is kilobytes.
pub async fn fetch_index_cached(
    client: &reqwest::Client,
    trust: &AptTrust,
    cache_dir: Option<&Path>,
    base_uri: &str,
    suite: &str,
    component: &str,
    arch: &str,
) -> Result<PackageIndex, KernelsError> {
    fetch_index_filtered(
        client,
        trust,
        cache_dir,
        IndexPath {
            base: base_uri,
            suite,
            component,
            arch,
        },
        PackageFilter::ALL,
    )
    .await
}

/// Which packages of an index to keep, under a name that keys the cache of parsed indices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackageFilter {
    /// Part of the cached file's name: two filters must never share one.
    pub name: &'static str,
    pub keep: fn(&str) -> bool,
}

impl PackageFilter {
    /// Every package (not cached parsed: a whole index is what the compressed copy already is).
    pub const ALL: PackageFilter = PackageFilter {
        name: "all",
        keep: |_| true,
    };
}

/// [`fetch_index_cached`] keeping only the packages `filter` accepts. With a cache, what a filtered parse
/// kept is cached too, under the index's SHA256 and the filter's name: an unchanged index is neither
/// downloaded nor decompressed and parsed again (a few kilobytes of JSON instead of ~60 MB of text).
pub(crate) async fn fetch_index_filtered(
    client: &reqwest::Client,
    trust: &AptTrust,
    cache_dir: Option<&Path>,
    at: IndexPath<'_>,
    filter: PackageFilter,
) -> Result<PackageIndex, KernelsError> {
    let release = fetch_release(client, at.base, at.suite, trust).await?;
    fetch_index_of_release(client, &release, cache_dir, at, filter).await
}

/// Which index of a repository: `<base>/dists/<suite>/<component>/binary-<arch>/Packages`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPath<'a> {
    pub base: &'a str,
    pub suite: &'a str,
    pub component: &'a str,
    /// Debian architecture name (`amd64`).
    pub arch: &'a str,
}

/// [`fetch_index_filtered`] with the suite's Release already verified (one Release serves every
/// architecture's index of the suite).
pub(crate) async fn fetch_index_of_release(
    client: &reqwest::Client,
    release: &VerifiedRelease,
    cache_dir: Option<&Path>,
    at: IndexPath<'_>,
    filter: PackageFilter,
) -> Result<PackageIndex, KernelsError> {
    let IndexPath {
        suite,
        component,
        arch,
        ..
    } = at;
    let keep = filter.keep;
    let base = at.base.trim_end_matches('/');
    let release_url = release.proof.url.clone();
    let sums = parse_release_sha256(&release.text, &release_url)?;

    let stem = format!("{component}/binary-{arch}/Packages");
    let (compression, path) = [(Compression::Xz, ".xz"), (Compression::Gz, ".gz")]
        .into_iter()
        .map(|(c, ext)| (c, format!("{stem}{ext}")))
        .find(|(_, p)| sums.contains_key(p))
        .ok_or_else(|| KernelsError::IndexNotListed {
            release_url: release_url.clone(),
            wanted: format!("{stem}.xz"),
        })?;
    let (expected_sha, expected_size) = sums[&path].clone();
    let url = format!("{base}/dists/{suite}/{path}");
    tracing::debug!(%url, size = expected_size, "fetching package index");

    let parsed_cache = cache_dir
        .filter(|_| filter.name != PackageFilter::ALL.name)
        .map(|d| {
            d.join(format!(
                "sha256-{expected_sha}.{}.v{PARSED_FORMAT}.json",
                filter.name
            ))
        });
    if let Some(packages) = parsed_cache.as_deref().and_then(read_parsed) {
        tracing::debug!(%url, "package index unchanged: using what was kept of it last time");
        return Ok(PackageIndex {
            base_uri: base.to_string(),
            suite: suite.to_string(),
            arch: arch.to_string(),
            packages,
            release: Some(release.proof.clone()),
        });
    }
    let cached = cache_dir.map(|d| d.join(format!("sha256-{expected_sha}")));
    if let Some(bytes) = cached
        .as_deref()
        .and_then(|p| read_verified(p, &expected_sha))
    {
        tracing::debug!(%url, "package index unchanged: using the cached copy");
        let index = parse_index(bytes, compression, url, base, suite, arch, keep)
            .await?
            .proven_by(release.proof.clone());
        write_parsed(parsed_cache.as_deref(), &index);
        return Ok(index);
    }
    let bytes = get_bytes(client, &url, Some(expected_size)).await?;
    if bytes.len() as u64 != expected_size {
        return Err(KernelsError::Size {
            url,
            expected: expected_size,
            actual: bytes.len() as u64,
        });
    }
    let actual_sha = hex::encode(Sha256::digest(&bytes));
    if actual_sha != expected_sha {
        return Err(KernelsError::Checksum {
            url,
            expected: expected_sha,
            actual: actual_sha,
        });
    }

    if let Some(path) = &cached {
        // A cache that cannot be written only costs the next run a download.
        if let Err(e) = write_atomically(path, &bytes) {
            tracing::debug!(path = %path.display(), error = %e, "package index not cached");
        }
    }
    let index = parse_index(bytes, compression, url, base, suite, arch, keep)
        .await?
        .proven_by(release.proof.clone());
    write_parsed(parsed_cache.as_deref(), &index);
    Ok(index)
}

/// Bump when [`PackageStanza`] or the parsing changes: cached parses of another format are not read.
const PARSED_FORMAT: u32 = 1;

/// The stanzas a filtered parse kept, as cached; `None` when absent or unreadable (then the index is parsed).
fn read_parsed(path: &Path) -> Option<Vec<PackageStanza>> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_parsed(path: Option<&Path>, index: &PackageIndex) {
    let Some(path) = path else { return };
    let json = serde_json::to_vec(&index.packages).expect("stanzas serialise");
    // A cache that cannot be written only costs the next run a parse.
    if let Err(e) = write_atomically(path, &json) {
        tracing::debug!(path = %path.display(), error = %e, "parsed package index not cached");
    }
}

async fn parse_index(
    bytes: Vec<u8>,
    compression: Compression,
    url: String,
    base: &str,
    suite: &str,
    arch: &str,
    keep: fn(&str) -> bool,
) -> Result<PackageIndex, KernelsError> {
    // Decompressing and parsing ~60 MB of text is CPU work: off the async workers, and streamed so that
    // only the kept stanzas are ever held in memory.
    let packages = tokio::task::spawn_blocking(move || {
        let parse = |reader: Box<dyn std::io::Read>| {
            parse_reader(BufReader::with_capacity(1 << 16, reader), &url, keep)
        };
        match compression {
            Compression::Xz => parse(Box::new(xz2::read::XzDecoder::new_multi_decoder(
                std::io::Cursor::new(bytes),
            ))),
            Compression::Gz => parse(Box::new(flate2::read::MultiGzDecoder::new(
                std::io::Cursor::new(bytes),
            ))),
        }
    })
    .await
    .map_err(|e| KernelsError::Task(e.to_string()))??;

    Ok(PackageIndex {
        base_uri: base.to_string(),
        suite: suite.to_string(),
        arch: arch.to_string(),
        packages,
        release: None,
    })
}

#[derive(Clone, Copy)]
enum Compression {
    Xz,
    Gz,
}

/// The `SHA256:` section of a Release file: path → (lower-case hex digest, size).
fn parse_release_sha256(
    text: &str,
    url: &str,
) -> Result<HashMap<String, (String, u64)>, KernelsError> {
    let mut sums = HashMap::new();
    let mut in_section = false;
    let mut seen_section = false;
    for line in text.lines() {
        if !line.starts_with([' ', '\t']) {
            in_section = line
                .split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("SHA256"));
            seen_section |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(sha), Some(size), Some(path), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(KernelsError::Release {
                url: url.to_string(),
                msg: format!("bad SHA256 line {:?}", line.trim()),
            });
        };
        let bad = |what: &str| KernelsError::Release {
            url: url.to_string(),
            msg: format!("bad {what} in SHA256 line {:?}", line.trim()),
        };
        if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("digest"));
        }
        let size = size.parse::<u64>().map_err(|_| bad("size"))?;
        sums.insert(path.to_string(), (sha.to_ascii_lowercase(), size));
    }
    if !seen_section {
        return Err(KernelsError::Release {
            url: url.to_string(),
            msg: "no SHA256 section".into(),
        });
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::apt::index::tests::BOOKWORM_SECURITY_AMD64;
    use crate::test_server::{test_key, test_trust, Server};

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn release(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut text = String::from(
            "Origin: Debian\nSuite: oldstable-security\nCodename: bookworm-security\n\
             MD5Sum:\n 0123456789abcdef0123456789abcdef 3 main/binary-amd64/Packages.xz\nSHA256:\n",
        );
        for (path, data) in entries {
            text.push_str(&format!(
                " {} {:>8} {path}\n",
                hex::encode(Sha256::digest(data)),
                data.len()
            ));
        }
        test_key().clearsign(&text)
    }

    const SUITE: &str = "/debian-security/dists/bookworm-security";

    #[tokio::test]
    async fn fetches_verifies_and_parses_xz() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[
                    (
                        "main/binary-amd64/Packages",
                        BOOKWORM_SECURITY_AMD64.as_bytes(),
                    ),
                    ("main/binary-amd64/Packages.xz", &packages),
                ]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.xz"), packages),
        ]);
        let client = reqwest::Client::new();
        let base = server.url("/debian-security/");
        let idx = fetch_index(
            &client,
            &test_trust(),
            &base,
            "bookworm-security",
            "main",
            "amd64",
        )
        .await
        .unwrap();
        assert_eq!(idx.packages.len(), 12);
        assert_eq!(idx.base_uri, server.url("/debian-security"));
        assert_eq!(
            (idx.suite.as_str(), idx.arch.as_str()),
            ("bookworm-security", "amd64")
        );
        assert_eq!(
            idx.newest("linux-kbuild-6.1").map(|p| idx.url(p)),
            Some(server.url(
                "/debian-security/pool/updates/main/l/linux/linux-kbuild-6.1_6.1.192-2_amd64.deb"
            ))
        );
    }

    #[tokio::test]
    async fn an_unchanged_index_is_read_from_the_cache() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[("main/binary-amd64/Packages.xz", &packages)]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.xz"), packages),
        ]);
        let cache = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();
        let trust = test_trust();
        let base = server.url("/debian-security");
        let fetch = || {
            fetch_index_cached(
                &client,
                &trust,
                Some(cache.path()),
                &base,
                "bookworm-security",
                "main",
                "amd64",
            )
        };
        let first = fetch().await.unwrap();
        let second = fetch().await.unwrap();
        assert_eq!(first.packages.len(), second.packages.len());
        let index_gets = |r: &Vec<String>| r.iter().filter(|p| p.ends_with("Packages.xz")).count();
        assert_eq!(index_gets(&server.requests()), 1, "{:?}", server.requests());
        assert_eq!(
            server.requests().len(),
            3,
            "the Release file is read every time"
        );

        // A damaged cache entry is not trusted: the index is downloaded again.
        let entry = std::fs::read_dir(cache.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::write(entry.path(), b"not the index").unwrap();
        assert_eq!(fetch().await.unwrap().packages.len(), first.packages.len());
        assert_eq!(index_gets(&server.requests()), 2);
    }

    #[tokio::test]
    async fn a_filtered_parse_is_cached_and_a_new_index_is_not_mistaken_for_it() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[("main/binary-amd64/Packages.xz", &packages)]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.xz"), packages),
        ]);
        let cache = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();
        let trust = test_trust();
        let base = server.url("/debian-security");
        let headers = PackageFilter {
            name: "test-headers",
            keep: |n| n.starts_with("linux-headers-"),
        };
        let fetch = |filter: PackageFilter| {
            fetch_index_filtered(
                &client,
                &trust,
                Some(cache.path()),
                IndexPath {
                    base: &base,
                    suite: "bookworm-security",
                    component: "main",
                    arch: "amd64",
                },
                filter,
            )
        };
        let first = fetch(headers).await.unwrap();
        assert!(!first.packages.is_empty());
        assert!(first
            .packages
            .iter()
            .all(|p| p.package.starts_with("linux-headers-")));
        // With the compressed copy gone, the parsed one answers alone: nothing is downloaded or parsed.
        for e in std::fs::read_dir(cache.path()).unwrap().flatten() {
            if !e.file_name().to_string_lossy().ends_with(".json") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let second = fetch(headers).await.unwrap();
        assert_eq!(second, first);
        let index_gets = |r: &Vec<String>| r.iter().filter(|p| p.ends_with("Packages.xz")).count();
        assert_eq!(index_gets(&server.requests()), 1);
        // Another filter is not answered from this one's parse.
        let all = fetch(PackageFilter::ALL).await.unwrap();
        assert_eq!(all.packages.len(), 12);
        assert_eq!(index_gets(&server.requests()), 2);
    }

    #[tokio::test]
    async fn falls_back_to_gz() {
        let packages = gz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[("main/binary-amd64/Packages.gz", &packages)]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.gz"), packages),
        ]);
        let idx = fetch_index(
            &reqwest::Client::new(),
            &test_trust(),
            &server.url("/debian-security"),
            "bookworm-security",
            "main",
            "amd64",
        )
        .await
        .unwrap();
        assert_eq!(idx.packages.len(), 12);
        assert!(server.requests().iter().all(|p| !p.ends_with(".xz")));
    }

    #[tokio::test]
    async fn checksum_mismatch_is_an_error() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let mut tampered = xz(BOOKWORM_SECURITY_AMD64
            .replace("6.1.192-2", "6.1.192-3")
            .as_bytes());
        tampered.resize(packages.len(), 0);
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[("main/binary-amd64/Packages.xz", &packages)]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.xz"), tampered),
        ]);
        let err = fetch_index(
            &reqwest::Client::new(),
            &test_trust(),
            &server.url("/debian-security"),
            "bookworm-security",
            "main",
            "amd64",
        )
        .await
        .unwrap_err();
        match &err {
            KernelsError::Checksum {
                url,
                expected,
                actual,
            } => {
                assert!(url.ends_with("main/binary-amd64/Packages.xz"), "{url}");
                assert_eq!(expected, &hex::encode(Sha256::digest(&packages)));
                assert_ne!(expected, actual);
            }
            other => panic!("expected a checksum error, got {other}"),
        }
    }

    #[tokio::test]
    async fn oversized_and_short_downloads_are_errors() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let mut longer = packages.clone();
        longer.extend_from_slice(b"trailing junk");
        let short = packages[..packages.len() - 10].to_vec();
        for (body, want) in [(longer, "larger than"), (short, "size mismatch")] {
            let server = Server::start(vec![
                (
                    format!("{SUITE}/InRelease"),
                    release(&[("main/binary-amd64/Packages.xz", &packages)]),
                ),
                (format!("{SUITE}/main/binary-amd64/Packages.xz"), body),
            ]);
            let err = fetch_index(
                &reqwest::Client::new(),
                &test_trust(),
                &server.url("/debian-security"),
                "bookworm-security",
                "main",
                "amd64",
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[tokio::test]
    async fn missing_suite_and_unlisted_arch() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start(vec![
            (
                format!("{SUITE}/InRelease"),
                release(&[("main/binary-amd64/Packages.xz", &packages)]),
            ),
            (format!("{SUITE}/main/binary-amd64/Packages.xz"), packages),
        ]);
        let client = reqwest::Client::new();
        let base = server.url("/debian-security");
        let err = fetch_index(
            &client,
            &test_trust(),
            &base,
            "buster-security",
            "main",
            "amd64",
        )
        .await
        .unwrap_err();
        match &err {
            KernelsError::SuiteNotFound { suite, url, status } => {
                assert_eq!(suite, "buster-security");
                assert_eq!(url, &format!("{base}/dists/buster-security/Release"));
                assert_eq!(status.as_u16(), 404);
            }
            other => panic!("expected SuiteNotFound, got {other}"),
        }
        let err = fetch_index(
            &client,
            &test_trust(),
            &base,
            "bookworm-security",
            "main",
            "riscv64",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("main/binary-riscv64/Packages.xz") && err.contains("/InRelease"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn retries_dropped_connections() {
        let packages = xz(BOOKWORM_SECURITY_AMD64.as_bytes());
        let server = Server::start_with(
            vec![
                (
                    format!("{SUITE}/InRelease"),
                    200,
                    release(&[("main/binary-amd64/Packages.xz", &packages)]),
                ),
                (
                    format!("{SUITE}/main/binary-amd64/Packages.xz"),
                    200,
                    packages,
                ),
            ],
            2,
        );
        let idx = fetch_index(
            &reqwest::Client::new(),
            &test_trust(),
            &server.url("/debian-security"),
            "bookworm-security",
            "main",
            "amd64",
        )
        .await
        .unwrap();
        assert_eq!(idx.packages.len(), 12);
        let release_requests = server
            .requests()
            .iter()
            .filter(|p| p.ends_with("/InRelease"))
            .count();
        assert_eq!(release_requests, 3, "two dropped, the third served");
    }

    #[tokio::test]
    async fn gives_up_after_three_attempts() {
        let server = Server::start_with(
            vec![(format!("{SUITE}/InRelease"), 503, b"busy".to_vec())],
            0,
        );
        let err = fetch_index(
            &reqwest::Client::new(),
            &test_trust(),
            &server.url("/debian-security"),
            "bookworm-security",
            "main",
            "amd64",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, KernelsError::Http { status, .. } if status.as_u16() == 503),
            "{err}"
        );
        assert_eq!(server.requests().len(), 3);
    }

    #[test]
    fn release_parsing() {
        let text = "Origin: Debian\nMD5Sum:\n 0123 5 main/binary-amd64/Packages\nSHA256:\n \
                    ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789 12 main/binary-amd64/Packages\n\
                    Acquire-By-Hash: yes\n";
        let sums = parse_release_sha256(text, "u").unwrap();
        assert_eq!(sums.len(), 1);
        assert_eq!(sums["main/binary-amd64/Packages"].1, 12);
        assert!(sums["main/binary-amd64/Packages"].0.starts_with("abcdef"));
        for bad in [
            "Origin: x\n",
            "SHA256:\n zz 1 a\n",
            "SHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef x a\n",
            "SHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1\n",
        ] {
            assert!(parse_release_sha256(bad, "u").is_err(), "{bad:?}");
        }
    }
}
