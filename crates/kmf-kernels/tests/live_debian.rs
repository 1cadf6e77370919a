//! Against the Debian mirrors this machine's apt uses. Skipped (with a message) when they cannot be
//! reached, unless CI=true, where that is a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use std::sync::Arc;

use kmf_kernels::apt::{
    compare_versions, crawl_debian, fetch_index, fetch_release, resolve_debian_headers, AptTrust,
    ArchiveKeys, CrawlOptions, TrustOptions,
};
use kmf_kernels::mirrors::DebianMirrors;
use kmf_types::{Arch, KernelEntry};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(why: &str) -> Option<DebianMirrors> {
    if ci() {
        panic!("CI=true and the Debian mirror is unusable: {why}");
    }
    eprintln!("SKIP live Debian test: {why}");
    None
}

async fn mirrors(client: &reqwest::Client) -> Option<DebianMirrors> {
    let mirrors = match DebianMirrors::discover() {
        Ok(m) => m,
        Err(e) => return skip(&e.to_string()),
    };
    for base in [Some(&mirrors.archive), mirrors.security.as_ref()]
        .into_iter()
        .flatten()
    {
        let url = format!(
            "{base}/dists/bookworm{}/Release",
            if Some(base) == mirrors.security.as_ref() {
                "-security"
            } else {
                ""
            }
        );
        match client
            .get(&url)
            .timeout(Duration::from_secs(15))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => return skip(&format!("GET {url}: HTTP {}", r.status())),
            Err(e) => return skip(&format!("GET {url}: {e}")),
        }
    }
    if mirrors.security.is_none() {
        return skip("no security mirror configured");
    }
    Some(mirrors)
}

/// The installed debian-archive-keyring, as a crawl uses it by default.
fn debian_trust() -> Arc<AptTrust> {
    Arc::new(AptTrust::load(&TrustOptions::default(), ArchiveKeys::Debian).unwrap())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_and_resolve_live() {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let Some(mirrors) = mirrors(&client).await else {
        return;
    };
    let opts = CrawlOptions {
        mirrors: mirrors.clone(),
        suites: vec![
            "bookworm".into(),
            "bookworm-security".into(),
            "trixie".into(),
            "trixie-security".into(),
        ],
        arches: vec![Arch::X86_64, Arch::Aarch64],
        flavours: None,
        index_cache: None,
        trust: debian_trust(),
    };
    let started = std::time::Instant::now();
    let list = crawl_debian(&client, &opts).await.unwrap();
    eprintln!("crawled {} kernels in {:?}", list.len(), started.elapsed());
    let entries: &[KernelEntry] = &list.distros["Debian"];
    assert!(entries.len() > 20, "only {} kernels", entries.len());

    // Every package of every suite is proven by its suite's Release, signed by a Debian archive key.
    let keyring = kmf_trust::Keyring::from_file(std::path::Path::new(
        kmf_kernels::apt::DEBIAN_ARCHIVE_KEYRING,
    ))
    .unwrap();
    let mut proven_suites = BTreeSet::new();
    for e in entries {
        for p in &e.headerpackages {
            match &p.proof {
                Some(kmf_types::InputProof::SignedIndex(r)) => {
                    assert_eq!(Some(&r.suite), e.suite.as_ref(), "{}", p.url);
                    assert!(keyring.fingerprints().contains(&r.signed_by), "{r:?}");
                    assert!(is_hex64(&r.sha256) && r.date.is_some() && r.expired_since.is_none());
                    proven_suites.insert(r.suite.clone());
                }
                other => panic!("{} is not proven by a signed index: {other:?}", p.url),
            }
        }
    }
    eprintln!("proven suites: {proven_suites:?}");
    assert!(proven_suites.contains("bookworm") && proven_suites.contains("trixie-security"));

    let flavours: BTreeSet<_> = entries
        .iter()
        .filter_map(|e| e.flavour.as_deref())
        .collect();
    for want in [
        "amd64",
        "cloud-amd64",
        "rt-amd64",
        "arm64",
        "cloud-arm64",
        "rt-arm64",
    ] {
        assert!(
            flavours.contains(want),
            "flavour {want} missing from {flavours:?}"
        );
    }
    // trixie adds arm64-16k (16 KiB pages), which the six-flavour form in the brief did not know.
    let form = regex::Regex::new(
        r"^\d+\.\d+\.\d+.*-(amd64|cloud-amd64|rt-amd64|arm64|arm64-16k|cloud-arm64|rt-arm64)$",
    )
    .unwrap();
    let suites: BTreeSet<_> = entries.iter().filter_map(|e| e.suite.as_deref()).collect();
    assert_eq!(
        suites,
        BTreeSet::from(["bookworm", "bookworm-security", "trixie", "trixie-security"])
    );
    let mut seen = BTreeSet::new();
    for e in entries {
        let arch = e.arch.unwrap();
        let flavour = e.flavour.as_deref().unwrap();
        assert!(form.is_match(&e.kernelrelease), "{}", e.kernelrelease);
        assert!(e.kernelrelease.ends_with(&format!("-{flavour}")));
        assert!(
            flavour.contains(arch.deb_arch()),
            "{flavour} listed for {arch}"
        );
        assert_eq!(e.target, "debian");
        assert_eq!(e.headers.len(), 3);
        assert_eq!(e.headerpackages.len(), 3);
        let pv = e.packageversion.as_deref().unwrap();
        assert!(
            seen.insert((arch, e.kernelrelease.clone(), pv.to_string())),
            "duplicate {e:?}"
        );
        for (url, p) in e.headers.iter().zip(&e.headerpackages) {
            assert_eq!(url, &p.url);
            assert!(is_hex64(p.sha256.as_deref().unwrap()), "{p:?}");
            assert!(p.size.unwrap() > 0);
            assert!(url.ends_with(p.path.as_deref().unwrap()));
            let suite = e.suite.as_deref().unwrap();
            assert!(
                url.starts_with(mirrors.uri_for_suite(suite)),
                "{url} for {suite}"
            );
        }
        assert!(e.headers[0].ends_with(&format!("_{}.deb", arch.deb_arch())));
        assert!(e.headers[1].ends_with("_all.deb"));
        assert!(e.headers[2].ends_with(&format!("_{}.deb", arch.deb_arch())));
        let kbuild = e.headerpackages[2].package.as_deref().unwrap();
        assert!(kbuild.starts_with("linux-kbuild-"), "{kbuild}");
    }
    // Sorted by arch, then release.
    for w in entries.windows(2) {
        assert!(w[0].arch <= w[1].arch);
        if w[0].arch == w[1].arch {
            assert_ne!(
                compare_versions(&w[0].kernelrelease, &w[1].kernelrelease),
                std::cmp::Ordering::Greater
            );
        }
    }

    // Cross-build resolution for the newest bookworm arm64 kernel, kbuild from the amd64 index.
    let newest = entries
        .iter()
        .filter(|e| {
            e.arch == Some(Arch::Aarch64)
                && e.flavour.as_deref() == Some("arm64")
                && e.suite
                    .as_deref()
                    .is_some_and(|s| s.starts_with("bookworm"))
        })
        .max_by(|a, b| {
            compare_versions(
                a.packageversion.as_deref().unwrap(),
                b.packageversion.as_deref().unwrap(),
            )
        })
        .unwrap();
    let suite = newest.suite.as_deref().unwrap();
    let base = mirrors.uri_for_suite(suite);
    let trust = debian_trust();
    let target = fetch_index(&client, &trust, base, suite, "main", "arm64")
        .await
        .unwrap();
    let host = fetch_index(&client, &trust, base, suite, "main", "amd64")
        .await
        .unwrap();
    let resolved = resolve_debian_headers(&target, Some(&host), &newest.kernelrelease).unwrap();
    eprintln!("resolved {} ({suite}): {resolved:#?}", newest.kernelrelease);
    assert_eq!(resolved.len(), 3);
    assert_eq!(resolved[0], newest.headerpackages[0]);
    assert_eq!(resolved[1], newest.headerpackages[1]);
    assert!(
        resolved[2].url.ends_with("_amd64.deb"),
        "{}",
        resolved[2].url
    );
    assert_eq!(resolved[2].package, newest.headerpackages[2].package);
    assert!(is_hex64(resolved[2].sha256.as_deref().unwrap()));
    // The same kbuild upload for both architectures, built for different machines.
    assert_eq!(resolved[2].version, newest.headerpackages[2].version);
    assert_ne!(resolved[2].sha256, newest.headerpackages[2].sha256);

    let err = resolve_debian_headers(&target, Some(&host), "6.1.0-9999-arm64").unwrap_err();
    assert!(err.to_string().contains("6.1.0-9999-arm64"), "{err}");
}

#[tokio::test]
async fn missing_suite_live() {
    let client = reqwest::Client::new();
    let Some(mirrors) = mirrors(&client).await else {
        return;
    };
    let err = fetch_index(
        &client,
        &debian_trust(),
        &mirrors.archive,
        "no-such-suite-kmodfarm",
        "main",
        "amd64",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, kmf_kernels::KernelsError::SuiteNotFound { suite, .. } if suite == "no-such-suite-kmodfarm"),
        "{err}"
    );
}

/// sid's Release carries a `Valid-Until` a week after its `Date`: where the mirror's copy has passed it (a
/// frozen or snapshot mirror), it is refused with the option that accepts it, and accepted (recorded as
/// expired) with that option; where it is current, it is taken either way.
#[tokio::test]
async fn expired_releases_need_the_users_word_live() {
    let client = reqwest::Client::new();
    let Some(mirrors) = mirrors(&client).await else {
        return;
    };
    let strict = debian_trust();
    let relaxed = Arc::new(
        AptTrust::load(
            &TrustOptions {
                allow_expired_release: ["sid".to_string()].into(),
                ..Default::default()
            },
            ArchiveKeys::Debian,
        )
        .unwrap(),
    );
    let accepted = fetch_release(&client, &mirrors.archive, "sid", &relaxed)
        .await
        .unwrap();
    let valid_until = accepted
        .proof
        .valid_until
        .clone()
        .expect("sid has a Valid-Until");
    let expired =
        kmf_kernels::apt::parse_release_date(&valid_until).unwrap() <= std::time::SystemTime::now();
    eprintln!("sid: Valid-Until {valid_until}, expired: {expired}");
    match fetch_release(&client, &mirrors.archive, "sid", &strict).await {
        Ok(_) => assert!(!expired),
        Err(e) => {
            assert!(expired, "{e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("Release of sid expired on {valid_until}"))
                    && msg.ends_with("--allow-expired-release sid accepts it"),
                "{msg}"
            );
            assert_eq!(
                accepted.proof.expired_since.as_deref(),
                Some(valid_until.as_str())
            );
        }
    }
    // "experimental" is the Release's Suite (its Codename is rc-buggy): asked by either name it is taken.
    let exp = fetch_release(
        &client,
        &mirrors.archive,
        "experimental",
        &relaxed.as_ref().clone().allow_expired("experimental"),
    )
    .await
    .unwrap();
    assert!(exp.text.contains("Suite: experimental"));
}
