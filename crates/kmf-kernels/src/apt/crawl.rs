//! The Debian kernel crawler: every kernel flavour with headers in the requested suites.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use kmf_types::{Arch, KernelEntry, KernelList, KernelVersion};

use super::compare_versions;
use std::sync::Arc;

use super::release::AptTrust;
use super::resolve::{common_dependency, overlaid_suite, resolve_stanza, resolve_stanza_over};
use super::{IndexSet, PackageIndex, PackageStanza};
use crate::mirrors::DebianMirrors;
use crate::KernelsError;

/// Indices downloaded at once: each is ~10 MB compressed and decompressed on a blocking thread.
const CONCURRENT_INDICES: usize = 3;

/// The distro key crawled kernels are listed under, as in kernel-crawler's lists.
pub const DEBIAN_KEY: &str = "Debian";

/// What [`crawl_debian`] looks at.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    pub mirrors: DebianMirrors,
    /// Suites in order of preference (`bookworm`, `bookworm-security`, `trixie`, ...). `*-security` suites
    /// are read from the security mirror.
    pub suites: Vec<String>,
    pub arches: Vec<Arch>,
    /// Kernel flavours to keep (`amd64`, `cloud-arm64`, ...); `None` keeps all.
    pub flavours: Option<Vec<String>>,
    /// Where compressed package indices are kept by SHA256, so an unchanged index is not downloaded again.
    pub index_cache: Option<std::path::PathBuf>,
    /// Keyrings and expiry decisions every Release is checked with.
    pub trust: Arc<AptTrust>,
}

/// Lists every Debian kernel with headers in `opts.suites` × `opts.arches` (main component).
///
/// A kernel is a `linux-headers-<abi>-<flavour>` package depending on `linux-headers-<abi>-common*`, which
/// leaves out meta packages (`linux-headers-amd64`) and the common packages themselves. Each becomes one
/// entry under `"Debian"` whose `kernelrelease` is what `uname -r` prints on it, with the flavour headers,
/// common headers and the target architecture's kbuild as header packages. A release uploaded to several
/// suites with the same package version is listed once, under the first of those suites in
/// `opts.suites`; different package versions are different builds and are all kept. Output is sorted by
/// architecture, release and package version. A suite missing from its mirror is an error.
pub async fn crawl_debian(
    client: &reqwest::Client,
    opts: &CrawlOptions,
) -> Result<KernelList, KernelsError> {
    let indexes = IndexSet::kernel_headers_only(
        client.clone(),
        Some(opts.mirrors.clone()),
        opts.trust.clone(),
        opts.index_cache.clone(),
    );
    crawl_debian_in(&indexes, opts).await
}

/// [`crawl_debian`] through `indexes` (whose mirrors are used, not `opts.mirrors`), so that a farm run
/// resolving headers afterwards reuses the parsed indices instead of reading them again.
pub async fn crawl_debian_in(
    indexes: &IndexSet,
    opts: &CrawlOptions,
) -> Result<KernelList, KernelsError> {
    let jobs: Vec<(usize, &str, Arch)> = opts
        .suites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| opts.arches.iter().map(move |&a| (i, s.as_str(), a)))
        .collect();
    let indices: Vec<(usize, Arch, Arc<PackageIndex>)> = futures::stream::iter(jobs)
        .map(|(i, suite, arch)| async move {
            tracing::info!(suite, arch = %arch, "crawling Debian package index");
            let index = indexes.get_typed(suite, arch.deb_arch()).await?;
            Ok::<_, KernelsError>((i, arch, index))
        })
        .buffer_unordered(CONCURRENT_INDICES)
        .try_collect()
        .await?;
    let flavours = opts.flavours.as_deref();
    // experimental carries only what differs from sid: sid's index is read when one of its kernels needs it.
    let mut bases = HashMap::new();
    for (_, arch, index) in &indices {
        if let Some(base) = overlaid_suite(&index.suite) {
            if kernel_stanzas(index, flavours).any(|s| resolve_stanza(index, None, s).is_err()) {
                let base = indexes.get_typed(base, arch.deb_arch()).await?;
                bases.insert((index.suite.clone(), *arch), base);
            }
        }
    }
    let entries = collect_entries(indices, |index, arch| {
        let base = bases.get(&(index.suite.clone(), arch)).map(|b| &**b);
        entries_of_index(index, arch, flavours, base)
    });
    tracing::info!(kernels = entries.len(), "Debian crawl done");
    Ok(KernelList {
        distros: BTreeMap::from([(DEBIAN_KEY.to_string(), entries)]),
    })
}

/// The entries of crawled indices, `(suite position, arch, index)` in any order: an upload found in
/// several suites is kept from the first suite of the crawl's list; sorted by architecture, release and
/// package version.
pub(crate) fn collect_entries<I: std::ops::Deref<Target = PackageIndex>>(
    mut indices: Vec<(usize, Arch, I)>,
    entries_of: impl Fn(&PackageIndex, Arch) -> Vec<KernelEntry>,
) -> Vec<KernelEntry> {
    // Completion order is arbitrary; suite order decides which suite a shared upload is listed under.
    indices.sort_by_key(|(i, arch, _)| (*i, *arch));
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (_, arch, index) in &indices {
        for entry in entries_of(index, *arch) {
            let key = (
                entry.arch,
                entry.kernelrelease.clone(),
                entry.packageversion.clone(),
            );
            if seen.insert(key) {
                entries.push(entry);
            }
        }
    }
    entries.sort_by(|a, b| {
        a.arch
            .cmp(&b.arch)
            .then_with(|| compare_versions(&a.kernelrelease, &b.kernelrelease))
            .then_with(|| a.kernelrelease.cmp(&b.kernelrelease))
            .then_with(|| {
                let v = |e: &KernelEntry| e.packageversion.clone().unwrap_or_default();
                compare_versions(&v(a), &v(b)).then_with(|| v(a).cmp(&v(b)))
            })
            .then_with(|| a.suite.cmp(&b.suite))
            .then(Ordering::Equal)
    });
    entries
}

/// The flavour headers packages of `index` (its own architecture's, of the kept flavours).
fn kernel_stanzas<'a>(
    index: &'a PackageIndex,
    flavours: Option<&'a [String]>,
) -> impl Iterator<Item = &'a PackageStanza> + 'a {
    index.packages.iter().filter(move |stanza| {
        let Some(release) = stanza.package.strip_prefix("linux-headers-") else {
            return false;
        };
        // Flavour headers are built per architecture; `all` ones are the common trees.
        if stanza.architecture != index.arch {
            return false;
        }
        let Some((_, abi)) = common_dependency(stanza, release) else {
            return false;
        };
        let flavour = &release[abi.len() + 1..];
        flavours.is_none_or(|f| f.iter().any(|f| f == flavour))
    })
}

/// The kernels of `index`; with `base`, the index of the suite it overlays (see [`overlaid_suite`]), their
/// packages are looked up there too.
fn entries_of_index(
    index: &PackageIndex,
    arch: Arch,
    flavours: Option<&[String]>,
    base: Option<&PackageIndex>,
) -> Vec<KernelEntry> {
    let mut out = Vec::new();
    for stanza in kernel_stanzas(index, flavours) {
        let release = &stanza.package["linux-headers-".len()..];
        let resolved = match base {
            Some(base) => resolve_stanza_over(index, base, stanza),
            None => resolve_stanza(index, None, stanza),
        };
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(suite = %index.suite, arch = %index.arch, error = %e,
                    "skipping kernel whose header packages are incomplete");
                continue;
            }
        };
        let flavour = &release[resolved.abi.len() + 1..];
        out.push(KernelEntry {
            kernelversion: KernelVersion::Number(1),
            kernelrelease: release.to_string(),
            target: "debian".to_string(),
            headers: resolved.packages.iter().map(|p| p.url.clone()).collect(),
            kernelconfigdata: None,
            arch: Some(arch),
            packageversion: Some(stanza.version.clone()),
            flavour: Some(flavour.to_string()),
            suite: Some(index.suite.clone()),
            headerpackages: resolved.packages,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::apt::index::tests::{BOOKWORM_SECURITY_AMD64, BOOKWORM_SECURITY_ARM64};
    use crate::test_server::{test_key, test_trust, Server};

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Routes serving `dists/<suite>` under `base` with the given Packages per Debian arch.
    fn suite_routes(base: &str, suite: &str, per_arch: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut release = format!("Suite: testing\nCodename: {suite}\nSHA256:\n");
        let mut routes = Vec::new();
        for (arch, text) in per_arch {
            let body = xz(text.as_bytes());
            let path = format!("main/binary-{arch}/Packages.xz");
            release.push_str(&format!(
                " {} {} {path}\n",
                hex::encode(Sha256::digest(&body)),
                body.len()
            ));
            routes.push((format!("{base}/dists/{suite}/{path}"), body));
        }
        routes.push((
            format!("{base}/dists/{suite}/InRelease"),
            test_key().clearsign(&release),
        ));
        routes
    }

    /// bookworm (archive) carries the 6.1.0-56 upload that bookworm-security also has.
    fn bookworm_amd64() -> String {
        BOOKWORM_SECURITY_AMD64
            .split("\n\n")
            .filter(|s| s.contains("6.1.0-56") || s.contains("Package: linux-kbuild-6.1\n"))
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    fn server() -> (Server, DebianMirrors) {
        let mut routes = suite_routes(
            "/debian-security",
            "bookworm-security",
            &[
                ("amd64", BOOKWORM_SECURITY_AMD64),
                ("arm64", BOOKWORM_SECURITY_ARM64),
            ],
        );
        routes.extend(suite_routes(
            "/debian",
            "bookworm",
            &[
                ("amd64", &bookworm_amd64()),
                ("arm64", BOOKWORM_SECURITY_ARM64),
            ],
        ));
        let server = Server::start(routes);
        let mirrors = DebianMirrors {
            archive: server.url("/debian"),
            security: Some(server.url("/debian-security/")),
        };
        (server, mirrors)
    }

    fn summary(list: &KernelList) -> Vec<String> {
        list.distros[DEBIAN_KEY]
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {} {}",
                    e.arch.unwrap(),
                    e.kernelrelease,
                    e.packageversion.as_deref().unwrap(),
                    e.flavour.as_deref().unwrap(),
                    e.suite.as_deref().unwrap()
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn crawls_dedups_and_sorts() {
        let (server, mirrors) = server();
        let client = reqwest::Client::new();
        let mut opts = CrawlOptions {
            mirrors,
            suites: vec!["bookworm".into(), "bookworm-security".into()],
            arches: vec![Arch::Aarch64, Arch::X86_64],
            flavours: None,
            index_cache: None,
            trust: Arc::new(test_trust()),
        };
        let list = crawl_debian(&client, &opts).await.unwrap();
        assert_eq!(list.distros.len(), 1);
        // One Release per suite, verified once, serves both architectures' indices.
        let releases = server
            .requests()
            .iter()
            .filter(|p| p.ends_with("/InRelease"))
            .count();
        assert_eq!(releases, 2, "{:?}", server.requests());
        assert_eq!(
            summary(&list),
            [
                "x86_64 6.1.0-55-amd64 6.1.176-1 amd64 bookworm-security",
                "x86_64 6.1.0-56-amd64 6.1.192-2 amd64 bookworm",
                "x86_64 6.1.0-56-rt-amd64 6.1.192-2 rt-amd64 bookworm",
                "x86_64 6.12.117+deb12-amd64 6.12.117-1~deb12u1 amd64 bookworm-security",
                "aarch64 6.1.0-56-arm64 6.1.192-2 arm64 bookworm",
                "aarch64 6.1.0-56-cloud-arm64 6.1.192-2 cloud-arm64 bookworm",
            ]
        );
        let e = &list.distros[DEBIAN_KEY][1];
        // Each package names the signed Release that proved it.
        for p in &e.headerpackages {
            match &p.proof {
                Some(kmf_types::InputProof::SignedIndex(r)) => {
                    assert_eq!(r.suite, "bookworm");
                    assert_eq!(r.signed_by, test_key().fingerprint());
                    assert!(
                        r.url.ends_with("/debian/dists/bookworm/InRelease"),
                        "{}",
                        r.url
                    );
                }
                other => panic!("unproven {}: {other:?}", p.url),
            }
        }
        assert_eq!(e.kernelversion, KernelVersion::Number(1));
        assert_eq!(e.target, "debian");
        assert_eq!(e.headers.len(), 3);
        assert_eq!(
            e.headers,
            e.headerpackages
                .iter()
                .map(|p| p.url.clone())
                .collect::<Vec<_>>()
        );
        assert!(e.headers[0].starts_with(&opts.mirrors.archive));
        assert!(e.headers[2].ends_with("linux-kbuild-6.1_6.1.192-2_amd64.deb"));
        let sec = &list.distros[DEBIAN_KEY][0];
        assert!(sec.headers[0].starts_with(
            opts.mirrors
                .security
                .as_deref()
                .unwrap()
                .trim_end_matches('/')
        ));
        assert!(!sec.headers[0].contains("//pool"));

        // Suite order decides where a shared upload is listed.
        opts.suites.reverse();
        let list = crawl_debian(&client, &opts).await.unwrap();
        assert!(summary(&list)
            .iter()
            .all(|s| s.ends_with("bookworm-security")));
        assert_eq!(list.len(), 6);

        // The serialised list reads back through the kernel list parser unchanged.
        let json = serde_json::to_vec(&list).unwrap();
        assert_eq!(crate::parse_kernel_list(&json, "crawl.json").unwrap(), list);
    }

    #[tokio::test]
    async fn flavour_filter() {
        let (_server, mirrors) = server();
        let opts = CrawlOptions {
            mirrors,
            suites: vec!["bookworm-security".into()],
            arches: vec![Arch::X86_64, Arch::Aarch64],
            flavours: Some(vec!["rt-amd64".into(), "cloud-arm64".into()]),
            index_cache: None,
            trust: Arc::new(test_trust()),
        };
        let list = crawl_debian(&reqwest::Client::new(), &opts).await.unwrap();
        assert_eq!(
            summary(&list),
            [
                "x86_64 6.1.0-56-rt-amd64 6.1.192-2 rt-amd64 bookworm-security",
                "aarch64 6.1.0-56-cloud-arm64 6.1.192-2 cloud-arm64 bookworm-security",
            ]
        );
    }

    /// experimental lists a 7.3 kernel whose common headers only sid has: they come from sid's index,
    /// which is read only for that.
    #[tokio::test]
    async fn experimental_takes_what_it_lacks_from_sid() {
        let v = "7.3~rc7-1~exp1";
        let stanza = |package: &str, version: &str, arch: &str, depends: &str| {
            format!(
                "Package: {package}\nVersion: {version}\nArchitecture: {arch}\nDepends: {depends}\n\
                 Filename: pool/main/l/linux/{package}_{version}_{arch}.deb\nSize: 1000\nSHA256: {}\n\n",
                "cd".repeat(32)
            )
        };
        let headers = stanza(
            "linux-headers-7.3-amd64",
            v,
            "amd64",
            &format!("linux-headers-7.3-common (= {v}), linux-kbuild-7.3"),
        );
        let kbuild = stanza("linux-kbuild-7.3", v, "amd64", "libc6");
        let common = stanza("linux-headers-7.3-common", v, "all", "");
        let crawl = |experimental: String, sid: String| async move {
            let mut routes = suite_routes("/debian", "experimental", &[("amd64", &experimental)]);
            routes.extend(suite_routes("/debian", "sid", &[("amd64", &sid)]));
            let server = Server::start(routes);
            let opts = CrawlOptions {
                mirrors: DebianMirrors {
                    archive: server.url("/debian"),
                    security: None,
                },
                suites: vec!["experimental".into()],
                arches: vec![Arch::X86_64],
                flavours: None,
                index_cache: None,
                trust: Arc::new(test_trust()),
            };
            let list = crawl_debian(&reqwest::Client::new(), &opts).await.unwrap();
            let read_sid = server.requests().iter().any(|r| r.contains("/dists/sid/"));
            (list, read_sid)
        };

        let (list, read_sid) = crawl(headers.clone() + &kbuild, common.clone()).await;
        assert!(read_sid);
        assert_eq!(
            summary(&list),
            ["x86_64 7.3-amd64 7.3~rc7-1~exp1 amd64 experimental"]
        );
        let e = &list.distros[DEBIAN_KEY][0];
        let suites: Vec<&str> = e
            .headerpackages
            .iter()
            .map(|p| match &p.proof {
                Some(kmf_types::InputProof::SignedIndex(r)) => r.suite.as_str(),
                other => panic!("unproven {}: {other:?}", p.url),
            })
            .collect();
        assert_eq!(suites, ["experimental", "sid", "experimental"]);
        assert!(e.headers[1].ends_with("linux-headers-7.3-common_7.3~rc7-1~exp1_all.deb"));

        // An experimental upload that carries everything never reads sid.
        let (list, read_sid) = crawl(headers + &kbuild + &common, common).await;
        assert!(!read_sid);
        assert_eq!(list.len(), 1);
    }

    #[tokio::test]
    async fn missing_suite_is_an_error() {
        let (server, mirrors) = server();
        let opts = CrawlOptions {
            mirrors,
            suites: vec!["bookworm".into(), "trixie-security".into()],
            arches: vec![Arch::X86_64],
            flavours: None,
            index_cache: None,
            trust: Arc::new(test_trust()),
        };
        let err = crawl_debian(&reqwest::Client::new(), &opts)
            .await
            .unwrap_err();
        let KernelsError::Shared(err) = &err else {
            panic!("expected a shared fetch error, got {err}")
        };
        match err.as_ref() {
            KernelsError::SuiteNotFound { suite, url, .. } => {
                assert_eq!(suite, "trixie-security");
                assert_eq!(
                    url,
                    &server.url("/debian-security/dists/trixie-security/Release")
                );
            }
            other => panic!("expected SuiteNotFound, got {other}"),
        }
    }
}

#[cfg(test)]
mod refused {
    use std::sync::Arc;

    use super::*;
    use crate::test_server::Server;
    use kmf_trust::testing::TestKey;

    /// A mirror signed by a key the crawl does not trust is refused before any index is downloaded.
    #[tokio::test]
    async fn a_mirror_signed_by_another_key_yields_nothing() {
        let intruder = TestKey::generate("intruder <i@invalid>");
        let server = Server::start(vec![
            (
                "/debian/dists/bookworm/InRelease".into(),
                intruder.clearsign("Suite: oldstable\nCodename: bookworm\nSHA256:\n"),
            ),
            (
                "/debian/dists/bookworm/main/binary-amd64/Packages.xz".into(),
                b"x".to_vec(),
            ),
        ]);
        let opts = CrawlOptions {
            mirrors: DebianMirrors {
                archive: server.url("/debian"),
                security: None,
            },
            suites: vec!["bookworm".into()],
            arches: vec![Arch::X86_64],
            flavours: None,
            index_cache: None,
            trust: Arc::new(crate::test_server::test_trust()),
        };
        let err = crawl_debian(&reqwest::Client::new(), &opts)
            .await
            .unwrap_err();
        assert!(err.is_trust_failure(), "{err}");
        assert!(err.to_string().contains(&intruder.fingerprint()), "{err}");
        assert_eq!(
            server.requests(),
            vec!["/debian/dists/bookworm/InRelease".to_string()]
        );
    }
}
