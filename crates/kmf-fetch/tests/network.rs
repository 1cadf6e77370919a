//! Fetches a real package from the Debian mirror configured in this machine's apt sources.
//! Skips (with a message) when the mirror is unreachable, unless CI=true.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use kmf_fetch::{Download, FetchOptions, Fetcher};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips the test, or fails it under CI.
fn unavailable(why: &str) {
    if in_ci() {
        panic!("Debian mirror needed under CI=true: {why}");
    }
    eprintln!("SKIPPED: Debian mirror unavailable: {why}");
}

/// The first URI of the deb822 apt source whose Suites list `suite`.
fn apt_uri_for_suite(suite: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").ok()?;
    for stanza in text.split("\n\n") {
        let mut uris = None;
        let mut suites = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("URIs:") {
                uris = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Suites:") {
                suites = Some(v.trim().to_string());
            }
        }
        if let (Some(uris), Some(suites)) = (uris, suites) {
            if suites.split_whitespace().any(|s| s == suite) {
                return uris
                    .split_whitespace()
                    .next()
                    .map(|u| u.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_a_real_package_from_the_debian_mirror() {
    let Some(mirror) = apt_uri_for_suite("bookworm") else {
        return unavailable("no bookworm source in /etc/apt/sources.list.d/debian.sources");
    };
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(
        dir.path(),
        FetchOptions {
            retries: 2,
            connect_timeout: Duration::from_secs(10),
            ..FetchOptions::default()
        },
    )
    .unwrap();

    // The index itself has no digest known beforehand: fetched by name.
    let index = Download {
        file_name: "bookworm_main_binary-amd64_Packages.xz".into(),
        urls: vec![format!(
            "{mirror}/dists/bookworm/main/binary-amd64/Packages.xz"
        )],
        ..Default::default()
    };
    let index = match fetcher.fetch(&index).await {
        Ok(f) => f,
        Err(e) if !e.is_not_found() => return unavailable(&e.to_string()),
        Err(e) => panic!("{e}"),
    };

    // The first small package in the index.
    let reader = BufReader::new(xz2::read::XzDecoder::new(
        std::fs::File::open(&index.path).unwrap(),
    ));
    let mut fields = std::collections::HashMap::new();
    let mut chosen = None;
    for line in reader.lines() {
        let line = line.unwrap();
        if line.is_empty() {
            let small = fields
                .get("Size")
                .and_then(|s: &String| s.parse::<u64>().ok())
                .is_some_and(|s| s < 20_000);
            if small && fields.contains_key("Filename") && fields.contains_key("SHA256") {
                chosen = Some(std::mem::take(&mut fields));
                break;
            }
            fields.clear();
        } else if let Some((k, v)) = line.split_once(": ") {
            fields.insert(k.to_string(), v.to_string());
        }
    }
    let pkg = chosen.expect("a package smaller than 20 kB in bookworm main");
    let filename = &pkg["Filename"];
    let download = Download {
        file_name: filename.rsplit('/').next().unwrap().to_string(),
        sha256: Some(pkg["SHA256"].clone()),
        size: Some(pkg["Size"].parse().unwrap()),
        urls: vec![format!("{mirror}/{filename}")],
    };
    let got = fetcher.fetch(&download).await.unwrap();
    assert_eq!(got.sha256, pkg["SHA256"]);
    assert_eq!(Some(got.size), download.size);
    assert!(got.url.is_some());
    let bytes = std::fs::read(&got.path).unwrap();
    assert!(bytes.starts_with(b"!<arch>\n"), "not a .deb: {filename}");

    let again = fetcher.fetch(&download).await.unwrap();
    assert_eq!(
        (again.url.as_ref(), again.downloaded_bytes),
        (got.url.as_ref(), 0)
    );
    assert_eq!(again.path, got.path);
    eprintln!(
        "fetched {} ({} bytes) and found it in the cache afterwards",
        pkg["Package"], got.size
    );
}
