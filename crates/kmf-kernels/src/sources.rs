//! What `kmodfarm kernels crawl` reads: one or more repositories of any supported family, from a TOML
//! file (`[[source]]` tables) or built from command-line flags, crawled into one kernel-crawler list.
//!
//! ```toml
//! [[source]]                      # Debian: the mirror defaults to this machine's apt configuration
//! distro = "debian"
//! suites = ["bookworm", "bookworm-security"]
//!
//! [[source]]
//! distro = "ubuntu"
//! uri = "http://ubuntu-mirror.example/ubuntu"
//! ports_uri = "http://ubuntu-mirror.example/ubuntu-ports"   # arm64
//! suites = ["noble", "noble-updates", "noble-security"]
//! flavours = ["generic", "aws"]
//!
//! [[source]]
//! distro = "fedora"
//! label = "updates"
//! baseurl = "http://fedora-mirror.example/fedora/updates/41/Everything/$basearch/"
//!
//! [[source]]
//! distro = "amazonlinux2"
//! label = "kernel-5.10"
//! mirrorlist = "http://al2-mirror.example/2/extras/kernel-5.10/latest/$basearch/mirror.list"
//! ```
//!
//! An apt source may name the keyrings its Releases must be signed by, as deb822's `Signed-By` does:
//! `signed_by = ["/etc/kmodfarm/keys/mirror.gpg"]` (default: `--keyring`, else the distribution's archive
//! keyring as installed).
//!
//! A yum/dnf source may require its metadata to be signed, as dnf's `repo_gpgcheck` does:
//! `repo_gpgcheck = true` with `gpgkey = ["/etc/pki/rpm-gpg/RPM-GPG-KEY-fedora-41-primary"]` makes the crawl
//! read `repodata/repomd.xml` only after `repomd.xml.asc` verified against those keys. (The kernel-devel
//! packages' own signatures are checked when a build fetches them, against `--rpm-keyring DISTRO=FILE`.)
//!
//! No mirror host is built in: every repository except Debian's (taken from `/etc/apt`) is named by
//! the user, since private mirrors and air-gapped sites are the rule for build farms.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use kmf_types::{Arch, KernelList};
use serde::Deserialize;

use crate::apt::{
    crawl_debian, crawl_ubuntu, AptTrust, ArchiveKeys, CrawlOptions, TrustOptions,
    UbuntuCrawlOptions,
};
use crate::family::{Family, RepoFormat};
use crate::mirrors::DebianMirrors;
use crate::rpmmd::{crawl_rpm_repos, RpmRepoSource};
use crate::KernelsError;

/// The default Debian suites: the supported stable releases and their security updates.
pub const DEFAULT_DEBIAN_SUITES: &[&str] =
    &["bookworm", "bookworm-security", "trixie", "trixie-security"];

/// One `[[source]]` table as written. Fields that do not apply to the distro's repository format are
/// refused, so that a typo'd or misplaced key is not silently ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub distro: String,
    /// Architectures (default: the crawl's `--arch`).
    pub arches: Option<Vec<Arch>>,
    // apt families
    pub uri: Option<String>,
    pub security_uri: Option<String>,
    pub ports_uri: Option<String>,
    pub suites: Option<Vec<String>>,
    pub flavours: Option<Vec<String>>,
    /// Keyring files this source's Releases must be signed by (deb822 `Signed-By`), instead of the
    /// distribution's archive keyring or `--keyring`.
    pub signed_by: Option<Vec<PathBuf>>,
    // rpm-md families
    pub baseurl: Option<String>,
    pub mirrorlist: Option<String>,
    pub packages: Option<Vec<String>>,
    pub label: Option<String>,
    /// Keyring files (`RPM-GPG-KEY-*`) `repodata/repomd.xml.asc` must be signed by; used with
    /// `repo_gpgcheck`.
    pub gpgkey: Option<Vec<PathBuf>>,
    /// Refuse the repository unless `repomd.xml.asc` verifies against `gpgkey` (dnf's `repo_gpgcheck`).
    pub repo_gpgcheck: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    source: Vec<SourceSpec>,
}

/// Reads a sources file.
pub fn read_sources_file(path: &Path) -> Result<Vec<SourceSpec>, KernelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| KernelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: SourcesFile = toml::from_str(&text)
        .map_err(|e| KernelsError::BadSource(format!("{}: {e}", path.display())))?;
    if file.source.is_empty() {
        return Err(KernelsError::BadSource(format!(
            "{}: no [[source]] tables",
            path.display()
        )));
    }
    Ok(file.source)
}

/// A repository ready to crawl.
#[derive(Debug, Clone)]
pub enum CrawlSource {
    Debian(CrawlOptions),
    Ubuntu(UbuntuCrawlOptions),
    Rpm(RpmRepoSource),
}

/// What every source shares unless it says otherwise.
#[derive(Debug, Clone)]
pub struct CrawlDefaults {
    pub arches: Vec<Arch>,
    pub index_cache: Option<PathBuf>,
    /// Keyrings and expiry decisions for apt sources.
    pub trust: TrustOptions,
}

impl SourceSpec {
    /// Checks the spec against its family and fills in defaults. `debian_mirrors` is asked only when a
    /// Debian source names no `uri`.
    pub fn resolve(
        &self,
        defaults: &CrawlDefaults,
        debian_mirrors: impl FnOnce() -> Result<DebianMirrors, KernelsError>,
    ) -> Result<CrawlSource, KernelsError> {
        let family = Family::parse(&self.distro).ok_or_else(|| {
            KernelsError::BadSource(format!(
                "unknown distro {:?} (known: {})",
                self.distro,
                Family::ALL.map(|f| f.distribution()).join(", ")
            ))
        })?;
        let bad = |msg: String| KernelsError::BadSource(format!("{family} source: {msg}"));
        let arches = self
            .arches
            .clone()
            .unwrap_or_else(|| defaults.arches.clone());
        if arches.is_empty() {
            return Err(bad("no architectures".into()));
        }
        let refuse = |fields: &[(&str, bool)], why: &str| -> Result<(), KernelsError> {
            match fields.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(bad(format!("`{name}` {why}"))),
                None => Ok(()),
            }
        };
        let clean = |u: &String| u.trim().trim_end_matches('/').to_string();
        match family.repo_format() {
            RepoFormat::Apt => {
                refuse(
                    &[
                        ("baseurl", self.baseurl.is_some()),
                        ("mirrorlist", self.mirrorlist.is_some()),
                        ("packages", self.packages.is_some()),
                        ("label", self.label.is_some()),
                        ("gpgkey", self.gpgkey.is_some()),
                        ("repo_gpgcheck", self.repo_gpgcheck.is_some()),
                    ],
                    "is for yum/dnf repositories; apt sources take uri, suites and flavours",
                )?;
                let suites = self.suites.clone().filter(|s| !s.is_empty());
                let trust = |keys: ArchiveKeys| -> Result<std::sync::Arc<AptTrust>, KernelsError> {
                    let mut opts = defaults.trust.clone();
                    if let Some(files) = self.signed_by.clone().filter(|f| !f.is_empty()) {
                        opts.keyring = files;
                    }
                    AptTrust::load(&opts, keys).map(std::sync::Arc::new)
                };
                if family == Family::Debian {
                    refuse(
                        &[("ports_uri", self.ports_uri.is_some())],
                        "is for Ubuntu; Debian serves every architecture from one archive",
                    )?;
                    let mirrors = match &self.uri {
                        Some(uri) => DebianMirrors {
                            archive: clean(uri),
                            security: self
                                .security_uri
                                .as_ref()
                                .map(clean)
                                .or_else(|| debian_mirrors().ok().and_then(|m| m.security)),
                        },
                        None => {
                            let mut m = debian_mirrors()?;
                            if let Some(s) = &self.security_uri {
                                m.security = Some(clean(s));
                            }
                            m
                        }
                    };
                    Ok(CrawlSource::Debian(CrawlOptions {
                        mirrors,
                        suites: suites.unwrap_or_else(|| {
                            DEFAULT_DEBIAN_SUITES
                                .iter()
                                .map(|s| s.to_string())
                                .collect()
                        }),
                        arches,
                        flavours: self.flavours.clone(),
                        index_cache: defaults.index_cache.clone(),
                        trust: trust(ArchiveKeys::Debian)?,
                    }))
                } else {
                    refuse(
                        &[("security_uri", self.security_uri.is_some())],
                        "is for Debian; Ubuntu's mirrors carry the -security pockets",
                    )?;
                    let archive = self.uri.as_ref().map(clean).ok_or_else(|| {
                        bad("needs `uri` (the archive mirror; `ports_uri` for arm64)".into())
                    })?;
                    let suites = suites.ok_or_else(|| {
                        bad(
                            "needs `suites` (for example noble, noble-updates, noble-security)"
                                .into(),
                        )
                    })?;
                    Ok(CrawlSource::Ubuntu(UbuntuCrawlOptions {
                        archive,
                        ports: self.ports_uri.as_ref().map(clean),
                        suites,
                        arches,
                        flavours: self.flavours.clone(),
                        index_cache: defaults.index_cache.clone(),
                        trust: trust(ArchiveKeys::Ubuntu)?,
                    }))
                }
            }
            RepoFormat::RpmMd => {
                refuse(
                    &[
                        ("uri", self.uri.is_some()),
                        ("security_uri", self.security_uri.is_some()),
                        ("ports_uri", self.ports_uri.is_some()),
                        ("suites", self.suites.is_some()),
                        ("flavours", self.flavours.is_some()),
                        ("signed_by", self.signed_by.is_some()),
                    ],
                    "is for apt repositories; yum/dnf sources take baseurl or mirrorlist",
                )?;
                if self.baseurl.is_some() == self.mirrorlist.is_some() {
                    return Err(bad("needs exactly one of `baseurl` and `mirrorlist`".into()));
                }
                let packages = self
                    .packages
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| vec!["kernel-devel".to_string()]);
                if let Some(p) = packages.iter().find(|p| !p.ends_with("-devel")) {
                    return Err(bad(format!(
                        "package {p:?} is not a kernel-*-devel package (the build tree is in those)"
                    )));
                }
                let gpgkey = self.gpgkey.clone().filter(|k| !k.is_empty());
                let repo_keyring = match (self.repo_gpgcheck.unwrap_or(false), gpgkey) {
                    (true, Some(files)) => Some(std::sync::Arc::new(
                        kmf_trust::Keyring::from_files(&files)
                            .map_err(|e| KernelsError::Keyring(format!("{family} source: {e}")))?,
                    )),
                    (true, None) => {
                        return Err(bad("`repo_gpgcheck = true` needs `gpgkey` (the keys \
                             repodata/repomd.xml.asc must be signed by)"
                            .into()))
                    }
                    (false, Some(_)) => {
                        return Err(bad(
                            "`gpgkey` is only used with `repo_gpgcheck = true` (it checks \
                             repomd.xml.asc); the packages' signatures are checked at build time \
                             against --rpm-keyring DISTRO=FILE"
                                .into(),
                        ))
                    }
                    (false, None) => None,
                };
                Ok(CrawlSource::Rpm(RpmRepoSource {
                    family,
                    baseurl: self.baseurl.clone(),
                    mirrorlist: self.mirrorlist.clone(),
                    arches,
                    packages,
                    label: self.label.clone(),
                    repo_keyring,
                }))
            }
        }
    }
}

/// Crawls every source and merges the lists. Sources of one family are listed in the order given: an
/// upload found twice is kept from the first. Any source failing fails the whole crawl, since a
/// partial list would read as kernels removed.
///
/// `index_cache` holds the rpm-md primaries (apt sources carry their own cache directory).
pub async fn crawl_all(
    client: &reqwest::Client,
    sources: &[CrawlSource],
    index_cache: Option<&Path>,
) -> Result<KernelList, KernelsError> {
    let rpm: Vec<RpmRepoSource> = sources
        .iter()
        .filter_map(|s| match s {
            CrawlSource::Rpm(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let mut lists = Vec::new();
    for source in sources {
        match source {
            CrawlSource::Debian(o) => lists.push(crawl_debian(client, o).await?),
            CrawlSource::Ubuntu(o) => lists.push(crawl_ubuntu(client, o).await?),
            CrawlSource::Rpm(_) => {}
        }
    }
    if !rpm.is_empty() {
        lists.push(crawl_rpm_repos(client, &rpm, index_cache).await?);
    }
    Ok(merge(lists))
}

/// Concatenates lists key by key, dropping an entry whose (arch, release, package version) an earlier
/// list already has.
fn merge(lists: Vec<KernelList>) -> KernelList {
    let mut out: BTreeMap<String, Vec<kmf_types::KernelEntry>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for list in lists {
        for (key, entries) in list.distros {
            let slot = out.entry(key.clone()).or_default();
            for e in entries {
                if seen.insert((
                    key.clone(),
                    e.arch,
                    e.kernelrelease.clone(),
                    e.packageversion.clone(),
                )) {
                    slot.push(e);
                }
            }
        }
    }
    KernelList { distros: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> CrawlDefaults {
        CrawlDefaults {
            arches: vec![Arch::X86_64, Arch::Aarch64],
            index_cache: None,
            trust: TrustOptions::default(),
        }
    }

    fn no_apt() -> Result<DebianMirrors, KernelsError> {
        Err(KernelsError::NoMirror)
    }

    #[test]
    fn reads_the_documented_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sources.toml");
        // The module documentation's example, verbatim.
        let doc: String = include_str!("sources.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, doc).unwrap();
        let specs = read_sources_file(&path).unwrap();
        assert_eq!(specs.len(), 4);
        let apt = || {
            Ok(DebianMirrors {
                archive: "http://d.invalid/debian".into(),
                security: Some("http://d.invalid/debian-security".into()),
            })
        };
        let resolved: Vec<CrawlSource> = specs
            .iter()
            .map(|s| s.resolve(&defaults(), apt).unwrap())
            .collect();
        match &resolved[0] {
            CrawlSource::Debian(o) => {
                assert_eq!(o.mirrors.archive, "http://d.invalid/debian");
                assert_eq!(o.suites, ["bookworm", "bookworm-security"]);
            }
            other => panic!("{other:?}"),
        }
        match &resolved[1] {
            CrawlSource::Ubuntu(o) => {
                assert_eq!(
                    o.ports.as_deref(),
                    Some("http://ubuntu-mirror.example/ubuntu-ports")
                );
                assert_eq!(o.flavours.as_ref().unwrap().len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match &resolved[3] {
            CrawlSource::Rpm(r) => {
                assert_eq!(r.family, Family::AmazonLinux2);
                assert_eq!(r.packages, ["kernel-devel"]);
                assert_eq!(r.label.as_deref(), Some("kernel-5.10"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_misplaced_and_missing_fields() {
        let spec = |toml_text: &str| -> SourceSpec { toml::from_str(toml_text).unwrap() };
        let err = |s: SourceSpec| s.resolve(&defaults(), no_apt).unwrap_err().to_string();
        assert!(err(spec(
            "distro = 'fedora'\nsuites = ['x']\nbaseurl = 'http://x/'"
        ))
        .contains("`suites` is for apt"));
        assert!(
            err(spec("distro = 'fedora'")).contains("exactly one of `baseurl` and `mirrorlist`")
        );
        assert!(err(spec("distro = 'ubuntu'\nsuites = ['noble']")).contains("needs `uri`"));
        assert!(err(spec("distro = 'ubuntu'\nuri = 'http://u/'")).contains("needs `suites`"));
        assert!(err(spec("distro = 'debian'\nbaseurl = 'http://x/'"))
            .contains("`baseurl` is for yum/dnf"));
        assert!(err(spec("distro = 'debian'")).contains("no Debian mirror configured"));
        assert!(err(spec("distro = 'gentoo'")).contains("unknown distro"));
        assert!(err(spec(
            "distro = 'almalinux'\nbaseurl = 'http://x/'\npackages = ['kernel']"
        ))
        .contains("not a kernel-*-devel"));
        assert!(err(spec(
            "distro = 'ubuntu'\nuri = 'http://u/'\nsuites = ['noble']\nrepo_gpgcheck = true"
        ))
        .contains("`repo_gpgcheck` is for yum/dnf"));
        assert!(err(spec(
            "distro = 'fedora'\nbaseurl = 'http://x/'\nrepo_gpgcheck = true"
        ))
        .contains("needs `gpgkey`"));
        assert!(err(spec(
            "distro = 'fedora'\nbaseurl = 'http://x/'\ngpgkey = ['/k']"
        ))
        .contains("only used with `repo_gpgcheck = true`"));
        assert!(err(spec(
            "distro = 'fedora'\nbaseurl = 'http://x/'\ngpgkey = ['/nonexistent/RPM-GPG-KEY']\nrepo_gpgcheck = true"
        ))
        .contains("/nonexistent/RPM-GPG-KEY"));
        assert!(toml::from_str::<SourceSpec>("distro = 'debian'\nsuite = ['x']").is_err());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        assert!(read_sources_file(&empty)
            .unwrap_err()
            .to_string()
            .contains("no [[source]]"));
    }

    #[test]
    fn repo_gpgcheck_loads_the_gpgkey_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("RPM-GPG-KEY-test");
        std::fs::write(&key, crate::test_server::test_key().public_armored()).unwrap();
        let spec: SourceSpec = toml::from_str(&format!(
            "distro = 'almalinux'\nbaseurl = 'http://x/'\ngpgkey = ['{}']\nrepo_gpgcheck = true",
            key.display()
        ))
        .unwrap();
        match spec.resolve(&defaults(), no_apt).unwrap() {
            CrawlSource::Rpm(r) => {
                let ring = r.repo_keyring.expect("a keyring");
                assert_eq!(
                    ring.fingerprints(),
                    [crate::test_server::test_key().fingerprint()]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_keeps_the_first_upload() {
        let e = |release: &str, suite: &str| kmf_types::KernelEntry {
            kernelrelease: release.into(),
            arch: Some(Arch::X86_64),
            packageversion: Some("1".into()),
            suite: Some(suite.into()),
            ..Default::default()
        };
        let a = KernelList {
            distros: BTreeMap::from([("Fedora".into(), vec![e("6.1", "a")])]),
        };
        let b = KernelList {
            distros: BTreeMap::from([("Fedora".into(), vec![e("6.1", "b"), e("6.2", "b")])]),
        };
        let m = merge(vec![a, b]);
        let got: Vec<_> = m.distros["Fedora"]
            .iter()
            .map(|e| format!("{} {}", e.kernelrelease, e.suite.as_deref().unwrap()))
            .collect();
        assert_eq!(got, ["6.1 a", "6.2 b"]);
    }
}
