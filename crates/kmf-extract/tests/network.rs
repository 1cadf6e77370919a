//! Extracts the real header packages of the newest bookworm kernel from the security archive
//! configured in this machine's apt sources, and compares the result with `dpkg-deb -c`.
//! Skips (with a message) when the archive is unreachable, unless CI=true.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kmf_extract::{extract_deb, PackageTrees};
use kmf_fetch::{Download, FetchOptions, Fetcher};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn unavailable(why: &str) {
    if in_ci() {
        panic!("needed under CI=true: {why}");
    }
    eprintln!("SKIPPED: {why}");
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

type Stanza = HashMap<String, String>;

fn parse_packages(path: &Path) -> Vec<Stanza> {
    let reader = BufReader::new(xz2::read::XzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let mut out = Vec::new();
    let mut cur = Stanza::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if line.is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if !line.starts_with(' ') {
            if let Some((k, v)) = line.split_once(": ") {
                cur.insert(k.to_string(), v.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `6.1.0-37` → (6, 1, 0, 37), for picking the newest ABI.
fn abi_key(abi: &str) -> Option<Vec<u64>> {
    abi.split(['.', '-'])
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u64>>>()
        .filter(|v| v.len() == 4)
}

/// `dpkg-deb -c`: regular files (hardlinks included) and symlinks with their targets.
fn dpkg_listing(deb: &Path) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let out = std::process::Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb -c {}", deb.display());
    let mut files = BTreeSet::new();
    let mut links = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // perms owner size date time name...
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ').unwrap()..];
        }
        let name = rest.trim_start();
        let clean = |n: &str| n.trim_start_matches("./").trim_end_matches('/').to_string();
        match line.as_bytes()[0] {
            b'-' => {
                files.insert(clean(name));
            }
            b'h' => {
                let (n, _) = name.split_once(" link to ").unwrap();
                files.insert(clean(n));
            }
            b'l' => {
                let (n, t) = name.split_once(" -> ").unwrap();
                links.insert(clean(n), t.to_string());
            }
            _ => {}
        }
    }
    (files, links)
}

/// The same, from an extracted tree.
fn tree_listing(root: &Path) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut files = BTreeSet::new();
    let mut links = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let t = e.file_type().unwrap();
            let name = r.to_string_lossy().into_owned();
            if t.is_dir() {
                stack.push(r);
            } else if t.is_symlink() {
                let target = std::fs::read_link(root.join(&r)).unwrap();
                links.insert(name, target.to_string_lossy().into_owned());
            } else if t.is_file() {
                files.insert(name);
            } else {
                panic!("unexpected file type at {name}");
            }
        }
    }
    (files, links)
}

#[test]
fn real_kernel_header_packages_match_dpkg() {
    let Some(security) = apt_uri_for_suite("bookworm-security") else {
        return unavailable(
            "no bookworm-security source in /etc/apt/sources.list.d/debian.sources",
        );
    };
    if std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_err()
    {
        return unavailable("dpkg-deb (the reference listing) is not installed");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = FetchOptions {
        retries: 2,
        connect_timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    };
    // The index changes: always fresh. The packages are verified by digest: kept between runs.
    let index_dir = tempfile::tempdir().unwrap();
    let index_fetcher = Fetcher::new(index_dir.path(), options.clone()).unwrap();
    let index = Download {
        file_name: "Packages.xz".into(),
        urls: vec![format!(
            "{security}/dists/bookworm-security/main/binary-amd64/Packages.xz"
        )],
        ..Default::default()
    };
    let index = match rt.block_on(index_fetcher.fetch(&index)) {
        Ok(f) => f,
        Err(e) if !e.is_not_found() => return unavailable(&format!("security archive: {e}")),
        Err(e) => panic!("{e}"),
    };
    let stanzas = parse_packages(&index.path);

    let (abi, common) = stanzas
        .iter()
        .filter_map(|s| {
            let abi = s["Package"]
                .strip_prefix("linux-headers-")?
                .strip_suffix("-common")?;
            Some((abi_key(abi)?, abi.to_string(), s))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, abi, s)| (abi, s))
        .expect("a linux-headers-*-common package in bookworm-security");
    let version = &common["Version"];
    let find = |name: &str| {
        stanzas
            .iter()
            .find(|s| s["Package"] == name && &s["Version"] == version)
            .unwrap_or_else(|| panic!("{name} {version} in bookworm-security"))
    };
    let major_minor: Vec<_> = abi.split('.').take(2).collect();
    let kbuild = find(&format!("linux-kbuild-{}", major_minor.join(".")));
    let amd64 = find(&format!("linux-headers-{abi}-amd64"));

    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kmf-extract-debs");
    let fetcher = Fetcher::new(&cache, options).unwrap();
    let downloads: Vec<Download> = [common, kbuild, amd64]
        .iter()
        .map(|s| Download {
            file_name: s["Filename"].rsplit('/').next().unwrap().to_string(),
            sha256: Some(s["SHA256"].clone()),
            size: s["Size"].parse().ok(),
            urls: vec![format!("{security}/{}", s["Filename"])],
        })
        .collect();
    let fetched: Vec<_> = rt
        .block_on(fetcher.fetch_all(&downloads))
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let work = tempfile::tempdir().unwrap();
    for (d, f) in downloads.iter().zip(&fetched) {
        let dest = work.path().join(&d.file_name);
        let started = Instant::now();
        let report = extract_deb(&f.path, &dest).unwrap();
        let elapsed = started.elapsed();
        eprintln!(
            "{}: {} files, {} symlinks, {} hardlinks, {} bytes in {:?}",
            d.file_name, report.files, report.symlinks, report.hardlinks, report.bytes, elapsed
        );
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let (want_files, want_links) = dpkg_listing(&f.path);
        let (got_files, got_links) = tree_listing(&dest);
        assert_eq!(got_files, want_files, "{}", d.file_name);
        assert_eq!(got_links, want_links, "{}", d.file_name);
        assert!(!want_files.is_empty());
    }

    // The links a module build depends on survived.
    let amd64_tree = work.path().join(&downloads[2].file_name);
    let kbuild_dir = format!("linux-kbuild-{}", major_minor.join("."));
    assert_eq!(
        std::fs::read_link(amd64_tree.join(format!("usr/src/linux-headers-{abi}-amd64/scripts")))
            .unwrap(),
        PathBuf::from(format!("../../lib/{kbuild_dir}/scripts"))
    );
    assert_eq!(
        std::fs::read_link(amd64_tree.join(format!("lib/modules/{abi}-amd64/build"))).unwrap(),
        PathBuf::from(format!("/usr/src/linux-headers-{abi}-amd64"))
    );

    // And through PackageTrees: the common package, once, timed.
    let trees = PackageTrees::new(work.path().join("trees"));
    let started = Instant::now();
    let tree = trees.tree(&fetched[0].path, &fetched[0].sha256).unwrap();
    eprintln!("PackageTrees::tree(common) took {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(
        trees.tree(&fetched[0].path, &fetched[0].sha256).unwrap(),
        tree
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    let (files, _) = tree_listing(&tree);
    assert_eq!(files, dpkg_listing(&fetched[0].path).0);
}
