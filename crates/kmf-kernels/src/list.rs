//! Kernel lists: Falco kernel-crawler's `list.json` and kmodfarm's own crawl output (same shape).

use std::path::Path;

use kmf_types::{Arch, KernelEntry, KernelList};
use serde::Deserialize;
use serde_json::Value;

use crate::KernelsError;

/// Parses a kernel list. `source` names the list in error messages and, failing everything else, tells
/// the architecture of its entries (kernel-crawler publishes one list per architecture, e.g.
/// `x86_64-list-2022-10-03.json`).
///
/// The document is read as untyped JSON first and then entry by entry, so that a bad entry is reported as
/// `Debian[3]: missing field `kernelrelease`` rather than as a byte offset. Unknown fields and distro keys
/// are accepted (and dropped). Entries without `arch` get one inferred from their header URLs, then their
/// release, then `source`; it stays `None` when none of them says.
pub fn parse_kernel_list(bytes: &[u8], source: &str) -> Result<KernelList, KernelsError> {
    // Well-formed lists (the common case) go straight into the typed structure, about twice as fast as
    // through `Value`; anything the typed parse rejects is parsed again the slow way for a precise error.
    let mut list = match serde_json::from_slice::<KernelList>(bytes) {
        Ok(list) => list,
        Err(typed) => {
            parse_untyped(bytes, source)?;
            // Only the typed parse objects (e.g. a field given twice): its own message is the best there is.
            return Err(json_error(&typed, source));
        }
    };
    let source_arch = arch_from_source(source);
    for (distro, entries) in &mut list.distros {
        for (index, entry) in entries.iter_mut().enumerate() {
            if entry.kernelrelease.trim().is_empty() {
                return Err(KernelsError::MalformedEntry {
                    source_name: source.to_string(),
                    distro: distro.clone(),
                    index,
                    msg: "empty kernelrelease".to_string(),
                });
            }
            if entry.arch.is_none() {
                entry.arch = infer_arch(entry).or(source_arch);
            }
        }
    }
    Ok(list)
}

/// Parses via `Value`, entry by entry, so that errors can name the distro and entry index.
fn parse_untyped(bytes: &[u8], source: &str) -> Result<(), KernelsError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e, source))?;
    let Value::Object(map) = doc else {
        return Err(KernelsError::MalformedList {
            source_name: source.to_string(),
            msg: format!(
                "the top level is {}, expected an object keyed by distribution",
                json_kind(&doc)
            ),
        });
    };
    for (distro, value) in map {
        let Value::Array(items) = value else {
            return Err(KernelsError::MalformedDistro {
                source_name: source.to_string(),
                msg: format!(
                    "expected an array of kernel entries, found {}",
                    json_kind(&value)
                ),
                distro,
            });
        };
        for (index, item) in items.iter().enumerate() {
            let malformed = |msg: String| KernelsError::MalformedEntry {
                source_name: source.to_string(),
                distro: distro.clone(),
                index,
                msg,
            };
            if !item.is_object() {
                return Err(malformed(format!(
                    "expected an object, found {}",
                    json_kind(item)
                )));
            }
            KernelEntry::deserialize(item).map_err(|e| malformed(e.to_string()))?;
        }
    }
    Ok(())
}

fn json_error(e: &serde_json::Error, source: &str) -> KernelsError {
    // serde_json appends the position to its message; the error variant carries it already.
    let msg = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    KernelsError::Json {
        source_name: source.to_string(),
        line: e.line(),
        column: e.column(),
        msg: msg.strip_suffix(&position).unwrap_or(&msg).to_string(),
    }
}

/// Loads a kernel list from a file path or an `http(s)://` URL.
pub async fn load(source: &str, client: &reqwest::Client) -> Result<KernelList, KernelsError> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        crate::http::get_bytes(client, source, None).await?
    } else {
        let path = Path::new(source.strip_prefix("file://").unwrap_or(source));
        tokio::fs::read(path).await.map_err(|e| KernelsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
    };
    let source_name = source.to_string();
    // Parsing a multi-megabyte list is CPU work; keep it off the async workers.
    tokio::task::spawn_blocking(move || parse_kernel_list(&bytes, &source_name))
        .await
        .map_err(|e| KernelsError::Task(e.to_string()))?
}

/// Loads every source (concurrently) and merges them in the order given.
pub async fn load_all(
    sources: &[String],
    client: &reqwest::Client,
) -> Result<KernelList, KernelsError> {
    let lists = futures::future::try_join_all(sources.iter().map(|s| load(s, client))).await?;
    let mut merged = KernelList::default();
    for list in lists {
        merged.merge(list);
    }
    Ok(merged)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The architecture the header packages are built for, else the one the release names.
fn infer_arch(entry: &KernelEntry) -> Option<Arch> {
    let (mut x86, mut arm) = (0usize, 0usize);
    for url in &entry.headers {
        // The file name is the most specific hint; directory names (`.../x86_64/Packages/`) come next.
        let file = url.split(['?', '#']).next().unwrap_or(url);
        let file = file.rsplit('/').next().unwrap_or(file);
        match Arch::guess_from_name(file).or_else(|| Arch::guess_from_name(url)) {
            Some(Arch::X86_64) => x86 += 1,
            Some(Arch::Aarch64) => arm += 1,
            None => {}
        }
    }
    if x86 > arm {
        return Some(Arch::X86_64);
    }
    if arm > x86 {
        return Some(Arch::Aarch64);
    }
    Arch::guess_from_name(&entry.kernelrelease)
}

fn arch_from_source(source: &str) -> Option<Arch> {
    let file = source.rsplit(['/', '\\']).next().unwrap_or(source);
    Arch::guess_from_name(file).or_else(|| Arch::guess_from_name(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_types::KernelVersion;

    fn shared_list(name: &str) -> Option<Vec<u8>> {
        let path = format!(
            "{}/../../../shared/kernel-crawler/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIP: kernel-crawler list {path} not readable ({e})");
                None
            }
        }
    }

    fn check_real_list(name: &str, count: usize, arch: Arch) {
        let Some(bytes) = shared_list(name) else {
            return;
        };
        let started = std::time::Instant::now();
        let list = parse_kernel_list(&bytes, name).unwrap();
        eprintln!("parsed {name} in {:?}", started.elapsed());
        assert_eq!(list.len(), count);
        for (distro, entries) in &list.distros {
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e.arch, Some(arch), "{distro}[{i}] {}", e.kernelrelease);
            }
        }
        // The same entries must come out when the source name says nothing: the headers and releases
        // alone place all but the header-less entries.
        let anon = parse_kernel_list(&bytes, "list.json").unwrap();
        let unplaced: Vec<_> = anon
            .distros
            .iter()
            .flat_map(|(d, es)| es.iter().map(move |e| (d, e)))
            .filter(|(_, e)| e.arch.is_none())
            .collect();
        assert!(
            unplaced.iter().all(|(_, e)| e.headers.is_empty()),
            "entries with headers left unplaced"
        );
        let placed = anon.distros.values().flatten().filter(|e| e.arch.is_some());
        assert!(placed.into_iter().all(|e| e.arch == Some(arch)));
    }

    #[test]
    fn parses_real_x86_64_list() {
        check_real_list("x86_64-list-2022-10-03.json", 4544, Arch::X86_64);
    }

    #[test]
    fn parses_real_aarch64_list() {
        check_real_list("aarch64-list-2022-10-03.json", 1890, Arch::Aarch64);
    }

    #[test]
    fn numbers_and_strings_and_unknown_fields() {
        let json = br#"{
          "Debian": [{"kernelversion": 1, "kernelrelease": "6.1.0-1-amd64", "target": "debian",
                      "headers": ["http://m/pool/linux-headers-6.1.0-1-amd64_6.1.4-1_amd64.deb",
                                  "http://m/pool/linux-headers-6.1.0-1-common_6.1.4-1_all.deb"],
                      "shinyNewField": {"nested": [1, 2]}}],
          "Ubuntu": [{"kernelversion": "115", "kernelrelease": "4.15.0-1104-oem", "target": "ubuntu-oem",
                      "headers": ["http://m/linux-headers-4.15.0-1104-oem_4.15.0-1104.115_arm64.deb"]}],
          "SomeFutureDistro": [{"kernelrelease": "1.2.3", "kernelconfigdata": "Q09ORklHPXkK"}],
          "Empty": []
        }"#;
        let list = parse_kernel_list(json, "list.json").unwrap();
        assert_eq!(list.len(), 3);
        let deb = &list.distros["Debian"][0];
        assert_eq!(deb.kernelversion, KernelVersion::Number(1));
        assert_eq!(deb.arch, Some(Arch::X86_64));
        let ubu = &list.distros["Ubuntu"][0];
        assert_eq!(ubu.kernelversion, KernelVersion::Text("115".into()));
        assert_eq!(ubu.arch, Some(Arch::Aarch64));
        let fut = &list.distros["SomeFutureDistro"][0];
        assert_eq!(fut.arch, None, "nothing tells this one's arch");
        assert_eq!(fut.kernelconfigdata.as_deref(), Some("Q09ORklHPXkK"));
        assert!(list.distros["Empty"].is_empty());
    }

    #[test]
    fn kmodfarm_extras_are_kept_and_arch_wins_over_inference() {
        let json = br#"{"Debian": [{"kernelversion": 1, "kernelrelease": "6.1.0-56-arm64", "target": "debian",
            "headers": ["http://m/a_amd64.deb"], "arch": "aarch64", "packageversion": "6.1.192-2",
            "flavour": "arm64", "suite": "bookworm-security",
            "headerpackages": [{"url": "http://m/a_amd64.deb", "sha256": "00", "size": 3, "path": "a_amd64.deb"}]}]}"#;
        let list = parse_kernel_list(json, "x86_64-list.json").unwrap();
        let e = &list.distros["Debian"][0];
        assert_eq!(e.arch, Some(Arch::Aarch64));
        assert_eq!(e.packageversion.as_deref(), Some("6.1.192-2"));
        assert_eq!(e.suite.as_deref(), Some("bookworm-security"));
        assert_eq!(e.headerpackages[0].size, Some(3));
    }

    #[test]
    fn arch_inference_order() {
        // Headers disagree 2:1 → majority.
        let json = br#"{"X": [{"kernelrelease": "5.0", "headers": ["a_arm64.deb", "b_arm64.deb", "c_amd64.deb"]},
                             {"kernelrelease": "5.0.x86_64", "headers": ["a_arm64.deb", "c_amd64.deb"]},
                             {"kernelrelease": "5.0", "headers": ["common_all.deb"]},
                             {"kernelrelease": "5.0", "headers": ["http://m/aarch64/Packages/kernel-devel-5.0.rpm"]}]}"#;
        let list = parse_kernel_list(json, "https://example.invalid/x86_64/list.json").unwrap();
        let arches: Vec<_> = list.distros["X"].iter().map(|e| e.arch).collect();
        assert_eq!(
            arches,
            [
                Some(Arch::Aarch64),
                Some(Arch::X86_64), // tie in headers → release
                Some(Arch::X86_64), // nothing in headers or release → source URL
                Some(Arch::Aarch64),
            ]
        );
    }

    #[test]
    fn malformed_entries_name_source_distro_and_index() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"Debian": [{"kernelrelease": "a"}, {"kernelrelease": "b"}, {"kernelrelease": "c"},
                                {"kernelversion": 1, "headers": []}]}"#,
                "lst.json: Debian[3]: missing field `kernelrelease`",
            ),
            (
                br#"{"Ubuntu": [{"kernelrelease": "a", "headers": "http://x"}]}"#,
                "lst.json: Ubuntu[0]: invalid type: string",
            ),
            (
                br#"{"Ubuntu": [{"kernelrelease": "a", "kernelversion": -3}]}"#,
                "lst.json: Ubuntu[0]:",
            ),
            (br#"{"Ubuntu": [{"kernelrelease": " "}]}"#, "lst.json: Ubuntu[0]: empty kernelrelease"),
            (br#"{"Ubuntu": [17]}"#, "lst.json: Ubuntu[0]: expected an object, found a number"),
            (br#"{"Ubuntu": {"a": 1}}"#, "lst.json: Ubuntu: expected an array"),
            (br#"[{"kernelrelease": "a"}]"#, "lst.json is not a kernel list: the top level is an array"),
            (b"{\n  \"Debian\": [\n    {\"kernelrelease\": }", "lst.json is not valid JSON (line 3, column"),
            (b"", "lst.json is not valid JSON (line 1, column 0)"),
            (b"\xff\xfe", "lst.json is not valid JSON (line 1, column 1)"),
            (
                br#"{"Debian": [{"kernelrelease": "a", "kernelrelease": "b"}]}"#,
                "lst.json is not valid JSON (line 1, column 50): duplicate field `kernelrelease`",
            ),
            (
                b"{\"a\": [}",
                "lst.json is not valid JSON (line 1, column 8): expected value",
            ),
        ];
        for (input, want) in cases {
            let err = parse_kernel_list(input, "lst.json")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "got {err:?}, want prefix {want:?}");
            assert!(!err.contains(" at line "), "position given twice: {err}");
        }
    }

    #[tokio::test]
    async fn load_reads_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aarch64-list.json");
        std::fs::write(&path, br#"{"Minikube": [{"kernelrelease": "4.19.202"}]}"#).unwrap();
        let client = reqwest::Client::new();
        let list = load(path.to_str().unwrap(), &client).await.unwrap();
        assert_eq!(list.distros["Minikube"][0].arch, Some(Arch::Aarch64));

        let missing = dir.path().join("nope.json");
        let err = load(missing.to_str().unwrap(), &client).await.unwrap_err();
        assert!(matches!(err, KernelsError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope.json"), "{err}");
    }

    #[tokio::test]
    async fn load_all_merges_in_order_over_http() {
        let server = crate::test_server::Server::start(vec![
            (
                "/x86_64/list.json".into(),
                br#"{"Debian": [{"kernelrelease": "6.1.0-1-amd64"}], "Fedora": []}"#.to_vec(),
            ),
            (
                "/aarch64/list.json".into(),
                br#"{"Debian": [{"kernelrelease": "6.1.0-1-arm64"}]}"#.to_vec(),
            ),
        ]);
        let client = reqwest::Client::new();
        let sources = vec![
            server.url("/x86_64/list.json"),
            server.url("/aarch64/list.json"),
        ];
        let list = load_all(&sources, &client).await.unwrap();
        let deb: Vec<_> = list.distros["Debian"]
            .iter()
            .map(|e| (e.kernelrelease.as_str(), e.arch))
            .collect();
        assert_eq!(
            deb,
            [
                ("6.1.0-1-amd64", Some(Arch::X86_64)),
                ("6.1.0-1-arm64", Some(Arch::Aarch64))
            ]
        );

        let missing = server.url("/riscv/list.json");
        let err = load_all(&[sources[0].clone(), missing.clone()], &client)
            .await
            .unwrap_err();
        match &err {
            KernelsError::Http { url, status } => {
                assert_eq!(url, &missing);
                assert_eq!(status.as_u16(), 404);
            }
            other => panic!("expected an HTTP error, got {other}"),
        }
        assert!(err.to_string().contains("404"), "{err}");
    }
}
