//! A suite's `Release`, taken only as far as it proves itself: signed by a key of the configured keyring,
//! naming the suite that was asked for, and not past its `Valid-Until` (unless the user accepted that for
//! exactly this suite). Only the signed text is read; the package indices it lists are then checked
//! against its SHA256 sums, and every package against its index.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kmf_trust::Keyring;
use kmf_types::ReleaseProof;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::http::get_bytes;
use crate::KernelsError;

/// Release files are a few hundred kilobytes; anything far larger is not one.
const RELEASE_LIMIT: u64 = 32 << 20;

/// Debian's archive keyring as the `debian-archive-keyring` package installs it.
pub const DEBIAN_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Ubuntu's archive keyring as the `ubuntu-keyring` package installs it.
pub const UBUNTU_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";

/// What the user said about trusting apt repositories (command line and `farm.toml` `[trust]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustOptions {
    /// Keyring files for every suite without one of its own, replacing the distribution's archive keyring.
    #[serde(default)]
    pub keyring: Vec<PathBuf>,
    /// Keyring files per suite, in the spirit of deb822 `Signed-By`.
    #[serde(default)]
    pub suite_keyrings: BTreeMap<String, Vec<PathBuf>>,
    /// Suites whose Release may be past its `Valid-Until` (snapshot mirrors, a frozen sid); recorded as
    /// expired in every variant built from them.
    #[serde(default)]
    pub allow_expired_release: BTreeSet<String>,
    /// Refuse inputs that nothing proved (kernel-list URLs that no signed index lists).
    #[serde(default)]
    pub require_verified: bool,
}

impl TrustOptions {
    /// Parses one `--keyring` value: `PATH` (every suite) or `SUITE=PATH` (that suite).
    pub fn add_keyring_arg(&mut self, value: &str) -> Result<(), String> {
        match value.split_once('=') {
            Some((suite, path)) if !suite.is_empty() && !suite.contains('/') => {
                if path.is_empty() {
                    return Err(format!("--keyring {value}: no file after '='"));
                }
                self.suite_keyrings
                    .entry(suite.to_string())
                    .or_default()
                    .push(PathBuf::from(path));
            }
            _ => self.keyring.push(PathBuf::from(value)),
        }
        Ok(())
    }
}

/// Which keys a distribution's repositories are checked against when the user named none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKeys {
    Debian,
    Ubuntu,
}

/// The keyrings and expiry decisions of one run, loaded once.
#[derive(Debug, Clone)]
pub struct AptTrust {
    default: Result<Arc<Keyring>, String>,
    per_suite: BTreeMap<String, Arc<Keyring>>,
    /// The files behind `default` and `per_suite`, for tools that read keyrings themselves (mmdebstrap).
    default_files: Vec<PathBuf>,
    per_suite_files: BTreeMap<String, Vec<PathBuf>>,
    allow_expired: BTreeSet<String>,
    /// Inputs nothing proved are refused.
    require_verified: bool,
}

impl AptTrust {
    /// Loads the keyrings `opts` names, and the distribution's archive keyring for suites without one. A
    /// keyring file the user named that cannot be read is an error now; a missing default keyring is one
    /// only when a suite needs it.
    pub fn load(opts: &TrustOptions, keys: ArchiveKeys) -> Result<AptTrust, KernelsError> {
        let load = |files: &[PathBuf]| {
            Keyring::from_files(files)
                .map(Arc::new)
                .map_err(|e| KernelsError::Keyring(e.to_string()))
        };
        let mut default_files = opts.keyring.clone();
        let default = if opts.keyring.is_empty() {
            let file = match keys {
                ArchiveKeys::Debian => DEBIAN_ARCHIVE_KEYRING,
                ArchiveKeys::Ubuntu => UBUNTU_ARCHIVE_KEYRING,
            };
            if Path::new(file).exists() {
                default_files = vec![PathBuf::from(file)];
                Ok(load(&[PathBuf::from(file)])?)
            } else {
                Err(format!(
                    "{file} is absent (install {}) and no --keyring was given",
                    match keys {
                        ArchiveKeys::Debian => "debian-archive-keyring",
                        ArchiveKeys::Ubuntu => "ubuntu-keyring",
                    }
                ))
            }
        } else {
            Ok(load(&opts.keyring)?)
        };
        let mut per_suite = BTreeMap::new();
        for (suite, files) in &opts.suite_keyrings {
            per_suite.insert(suite.clone(), load(files)?);
        }
        Ok(AptTrust {
            default,
            per_suite,
            default_files,
            per_suite_files: opts.suite_keyrings.clone(),
            allow_expired: opts.allow_expired_release.clone(),
            require_verified: opts.require_verified,
        })
    }

    /// Trust in exactly `keyring` for every suite (tests, embedders).
    pub fn with_keyring(keyring: Keyring) -> AptTrust {
        AptTrust {
            default: Ok(Arc::new(keyring)),
            per_suite: BTreeMap::new(),
            default_files: Vec::new(),
            per_suite_files: BTreeMap::new(),
            allow_expired: BTreeSet::new(),
            require_verified: false,
        }
    }

    /// Trust that refuses every Release, saying `why` (a farm without configured keyrings).
    pub fn refusing(why: &str) -> AptTrust {
        AptTrust {
            default: Err(why.to_string()),
            per_suite: BTreeMap::new(),
            default_files: Vec::new(),
            per_suite_files: BTreeMap::new(),
            allow_expired: BTreeSet::new(),
            require_verified: false,
        }
    }

    /// Accepts an expired Release for `suite`.
    pub fn allow_expired(mut self, suite: &str) -> AptTrust {
        self.allow_expired.insert(suite.to_string());
        self
    }

    /// Whether inputs nothing proved are refused (`--require-verified`).
    pub fn require_verified(&self) -> bool {
        self.require_verified
    }

    /// Whether the user accepted an expired Release for `suite`.
    pub fn expired_allowed(&self, suite: &str) -> bool {
        self.allow_expired.contains(suite)
    }

    /// The keyring `suite` is checked against.
    pub fn keyring_for(&self, suite: &str) -> Result<&Arc<Keyring>, KernelsError> {
        if let Some(k) = self.per_suite.get(suite) {
            return Ok(k);
        }
        self.default.as_ref().map_err(|why| {
            KernelsError::Keyring(format!(
                "no keyring to check the Release of {suite} against: {why}"
            ))
        })
    }

    /// The keyring files `suite` is checked against (empty when the keyring was given in memory).
    pub fn keyring_files(&self, suite: &str) -> &[PathBuf] {
        self.per_suite_files
            .get(suite)
            .map(Vec::as_slice)
            .unwrap_or(&self.default_files)
    }
}

/// A Release whose signature, suite and freshness were checked.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    /// The signed text only.
    pub text: String,
    pub proof: ReleaseProof,
}

/// Fetches `dists/SUITE/InRelease` (or `Release` with `Release.gpg` where a mirror has no InRelease) from
/// `base` and checks it; see the module documentation.
pub async fn fetch_release(
    client: &reqwest::Client,
    base: &str,
    suite: &str,
    trust: &AptTrust,
) -> Result<VerifiedRelease, KernelsError> {
    let base = base.trim_end_matches('/');
    let dists = format!("{base}/dists/{suite}");
    let keyring = trust.keyring_for(suite)?;
    let now = SystemTime::now();
    let untrusted = |url: &str, reason: String| KernelsError::ReleaseUntrusted {
        suite: suite.to_string(),
        url: url.to_string(),
        reason,
    };

    let inrelease_url = format!("{dists}/InRelease");
    let (url, fetched, verified) =
        match get_bytes(client, &inrelease_url, Some(RELEASE_LIMIT)).await {
            Ok(bytes) => {
                let verified = keyring
                    .verify_cleartext(&bytes, now)
                    .map_err(|e| untrusted(&inrelease_url, e.to_string()))?;
                (inrelease_url, bytes, verified)
            }
            Err(KernelsError::Http { status, .. }) if is_absent(status) => {
                let release_url = format!("{dists}/Release");
                let release = get_bytes(client, &release_url, Some(RELEASE_LIMIT))
                    .await
                    .map_err(|e| match e {
                        KernelsError::Http { url, status } if is_absent(status) => {
                            KernelsError::SuiteNotFound {
                                suite: suite.to_string(),
                                url,
                                status,
                            }
                        }
                        e => e,
                    })?;
                let sig_url = format!("{dists}/Release.gpg");
                let signature = match get_bytes(client, &sig_url, Some(1 << 20)).await {
                    Ok(s) => s,
                    Err(KernelsError::Http { status, .. }) if is_absent(status) => {
                        return Err(untrusted(
                            &release_url,
                            "not signed: the mirror has neither InRelease nor Release.gpg".into(),
                        ))
                    }
                    Err(e) => return Err(e),
                };
                let signer = keyring
                    .verify_detached(&release, &signature, now)
                    .map_err(|e| untrusted(&release_url, e.to_string()))?;
                let text = String::from_utf8(release.clone())
                    .map_err(|_| untrusted(&release_url, "the Release is not UTF-8".into()))?;
                (release_url, release, (text, signer))
            }
            Err(e) => return Err(e),
        };
    let (text, signer) = verified;
    let fields = ReleaseFields::parse(&text);

    // A validly signed Release of another suite (an old one, one with other packages) must not stand in
    // for the one asked for: apt compares the same two fields.
    if fields.suite.as_deref() != Some(suite) && fields.codename.as_deref() != Some(suite) {
        return Err(untrusted(
            &url,
            format!(
                "it is the Release of Suite {} / Codename {}, not of {suite}",
                fields.suite.as_deref().unwrap_or("(none)"),
                fields.codename.as_deref().unwrap_or("(none)")
            ),
        ));
    }

    let mut expired_since = None;
    if let Some(valid_until) = &fields.valid_until {
        let until = parse_release_date(valid_until)
            .ok_or_else(|| untrusted(&url, format!("unreadable Valid-Until {valid_until:?}")))?;
        if until <= now {
            if !trust.expired_allowed(suite) {
                return Err(KernelsError::ReleaseExpired {
                    suite: suite.to_string(),
                    url,
                    valid_until: valid_until.clone(),
                });
            }
            tracing::warn!(suite, valid_until = %valid_until,
                "Release expired; accepted because --allow-expired-release names this suite");
            expired_since = Some(valid_until.clone());
        }
    }
    if let Some(date) = &fields.date {
        if parse_release_date(date).is_none() {
            return Err(untrusted(&url, format!("unreadable Date {date:?}")));
        }
    }

    Ok(VerifiedRelease {
        proof: ReleaseProof {
            suite: suite.to_string(),
            url,
            sha256: hex::encode(Sha256::digest(&fetched)),
            date: fields.date,
            valid_until: fields.valid_until,
            signed_by: signer.primary_fingerprint,
            signer: signer.user_id,
            expired_since,
        },
        text,
    })
}

fn is_absent(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE
}

/// The single-line fields of a Release that decide whether it is taken.
#[derive(Debug, Default)]
struct ReleaseFields {
    suite: Option<String>,
    codename: Option<String>,
    date: Option<String>,
    valid_until: Option<String>,
}

impl ReleaseFields {
    fn parse(text: &str) -> ReleaseFields {
        let mut f = ReleaseFields::default();
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            let slot = match key.trim() {
                k if k.eq_ignore_ascii_case("Suite") => &mut f.suite,
                k if k.eq_ignore_ascii_case("Codename") => &mut f.codename,
                k if k.eq_ignore_ascii_case("Date") => &mut f.date,
                k if k.eq_ignore_ascii_case("Valid-Until") => &mut f.valid_until,
                _ => continue,
            };
            // The first occurrence counts, as in apt.
            if slot.is_none() {
                *slot = value;
            }
        }
        f
    }
}

/// A Release date (`Sat, 11 Jul 2026 10:16:37 UTC`): RFC 2822 with `UTC`/`GMT`/`Z` or a numeric zone.
pub fn parse_release_date(value: &str) -> Option<SystemTime> {
    use time::format_description::well_known::Rfc2822;
    let v = value.trim();
    let normalised = ["UTC", "GMT", "UT", "Z"]
        .iter()
        .find_map(|z| v.strip_suffix(z).map(|s| format!("{}+0000", s)))
        .unwrap_or_else(|| v.to_string());
    let dt = time::OffsetDateTime::parse(&normalised, &Rfc2822).ok()?;
    Some(SystemTime::from(dt))
}

/// A time as Release files write it (`Sat, 11 Jul 2026 10:16:37 UTC`).
pub fn format_release_date(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC"
    );
    time::OffsetDateTime::from(t)
        .format(&format)
        .expect("a Release date formats")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_server::Server;
    use kmf_trust::testing::TestKey;

    const DISTS: &str = "/debian/dists/trixie";

    fn release(codename: &str, valid_until: Option<&str>) -> String {
        let mut s = format!(
            "Origin: Debian\nSuite: stable\nCodename: {codename}\nDate: {}\n",
            format_release_date(SystemTime::now() - Duration::from_secs(7 * 86400))
        );
        if let Some(v) = valid_until {
            s.push_str(&format!("Valid-Until: {v}\n"));
        }
        s.push_str("SHA256:\n");
        s
    }

    fn days_from_now(days: i64) -> String {
        let now = SystemTime::now();
        let d = Duration::from_secs(days.unsigned_abs() * 86400);
        format_release_date(if days < 0 { now - d } else { now + d })
    }

    fn trust(key: &TestKey) -> AptTrust {
        AptTrust::with_keyring(Keyring::from_bytes(&key.public_keyring(), "test keyring").unwrap())
    }

    async fn fetch(
        routes: Vec<(String, Vec<u8>)>,
        trust: &AptTrust,
    ) -> Result<VerifiedRelease, KernelsError> {
        let server = Server::start(routes);
        fetch_release(
            &reqwest::Client::new(),
            &server.url("/debian"),
            "trixie",
            trust,
        )
        .await
    }

    #[tokio::test]
    async fn a_signed_release_is_taken_with_its_proof() {
        let key = TestKey::generate("test archive <t@invalid>");
        let signed = key.clearsign(&release("trixie", None));
        let v = fetch(
            vec![(format!("{DISTS}/InRelease"), signed.clone())],
            &trust(&key),
        )
        .await
        .unwrap();
        assert!(v.text.contains("Codename: trixie"));
        assert_eq!(v.proof.signed_by, key.fingerprint());
        assert_eq!(v.proof.sha256, hex::encode(Sha256::digest(&signed)));
        assert!(parse_release_date(v.proof.date.as_deref().unwrap()).is_some());
        assert!(v.proof.url.ends_with("/dists/trixie/InRelease"));
        assert_eq!(v.proof.expired_since, None);
    }

    #[tokio::test]
    async fn release_with_a_detached_signature_when_there_is_no_inrelease() {
        let key = TestKey::generate("test archive <t@invalid>");
        let text = release("trixie", None);
        let v = fetch(
            vec![
                (format!("{DISTS}/Release"), text.clone().into_bytes()),
                (
                    format!("{DISTS}/Release.gpg"),
                    key.detach_sign(text.as_bytes()),
                ),
            ],
            &trust(&key),
        )
        .await
        .unwrap();
        assert_eq!(v.text, text);
        assert!(v.proof.url.ends_with("/Release"));
        let err = fetch(
            vec![(format!("{DISTS}/Release"), text.into_bytes())],
            &trust(&key),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("neither InRelease nor Release.gpg") && err.contains("trixie"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn swapped_expired_and_foreign_releases_are_refused() {
        let key = TestKey::generate("test archive <t@invalid>");
        let other = TestKey::generate("someone else <x@invalid>");
        let route = |body: Vec<u8>| vec![(format!("{DISTS}/InRelease"), body)];

        let err = fetch(
            route(key.clearsign(&release("bookworm", None))),
            &trust(&key),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("Codename bookworm, not of trixie"), "{err}");

        let yesterday = days_from_now(-1);
        let expired = release("trixie", Some(&yesterday));
        let err = fetch(route(key.clearsign(&expired)), &trust(&key))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("Release of trixie expired on {yesterday} ("))
                && err.ends_with(
                    "/dists/trixie/InRelease); --allow-expired-release trixie accepts it"
                ),
            "{err}"
        );
        let v = fetch(
            route(key.clearsign(&expired)),
            &trust(&key).allow_expired("trixie"),
        )
        .await
        .unwrap();
        assert_eq!(v.proof.expired_since.as_deref(), Some(yesterday.as_str()));
        // Valid until tomorrow: taken.
        let fresh = release("trixie", Some(&days_from_now(1)));
        fetch(route(key.clearsign(&fresh)), &trust(&key))
            .await
            .unwrap();

        let err = fetch(
            route(other.clearsign(&release("trixie", None))),
            &trust(&key),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("not in the keyring test keyring"), "{err}");

        let err = fetch(route(release("trixie", None).into_bytes()), &trust(&key))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not signed"), "{err}");

        let tampered = String::from_utf8(key.clearsign(&release("trixie", None)))
            .unwrap()
            .replace("Origin: Debian", "Origin: Debiam");
        let err = fetch(route(tampered.into_bytes()), &trust(&key))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("BAD signature"), "{err}");
    }

    #[test]
    fn release_dates_parse_as_apt_writes_them() {
        let now = SystemTime::now();
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            secs(parse_release_date(&format_release_date(now)).unwrap()),
            secs(now)
        );
        let t = parse_release_date("Fri, 30 Oct 2026 08:08:01 UTC").unwrap();
        let u = parse_release_date("Fri, 30 Oct 2026 09:08:01 +0100").unwrap();
        assert_eq!(t, u);
        assert_eq!(
            parse_release_date("Sat, 4 Jul 2026 00:00:00 GMT").unwrap()
                + Duration::from_secs(86400),
            parse_release_date("Sun, 5 Jul 2026 00:00:00 GMT").unwrap()
        );
        assert!(parse_release_date("yesterday").is_none());
    }

    #[test]
    fn keyring_arguments_per_suite_and_for_all() {
        let mut o = TrustOptions::default();
        o.add_keyring_arg("/k/all.gpg").unwrap();
        o.add_keyring_arg("sid=/k/sid.gpg").unwrap();
        assert_eq!(o.keyring, vec![PathBuf::from("/k/all.gpg")]);
        assert_eq!(o.suite_keyrings["sid"], vec![PathBuf::from("/k/sid.gpg")]);
        assert!(o.add_keyring_arg("sid=").is_err());
        let err = AptTrust::load(
            &TrustOptions {
                keyring: vec!["/nonexistent.gpg".into()],
                ..Default::default()
            },
            ArchiveKeys::Debian,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent.gpg"), "{err}");
    }
}
