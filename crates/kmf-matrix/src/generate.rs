use std::collections::{BTreeMap, BTreeSet, HashMap};

use kmf_types::{normalize_distro, output_version, Arch, KernelList, MatrixEntry};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::MatrixError;

/// The seed pipeline's filters.
#[derive(Debug, Clone)]
pub struct MatrixFilter {
    /// Normalised distro names to keep; `None` keeps every distro of the lists.
    pub distros: Option<Vec<String>>,
    pub arches: Vec<Arch>,
    pub driver_version: String,
    /// Regex over `kernelrelease`; unanchored like the seed's (`'.*6\.[0-9]+\..*'`).
    pub kernel_release: Option<String>,
}

/// The matrix plus what was left out and why, so the CLI can say it.
#[derive(Debug, Default)]
pub struct Generated {
    pub entries: Vec<MatrixEntry>,
    /// Entries whose architecture nothing in the list told (no `arch`, no hint in names or source).
    pub unknown_arch: usize,
    /// Exact duplicates across the input lists (same distro, arch, release and kernelversion).
    pub duplicates: usize,
    /// Entries left out because their kernelrelease is not a plain name (`../x`, `/abs`, control characters).
    pub unsafe_release: usize,
}

pub fn generate(lists: &KernelList, filter: &MatrixFilter) -> Result<Generated, MatrixError> {
    if filter.driver_version.trim().is_empty() {
        return Err(MatrixError::EmptyDriverVersion);
    }
    let release_re = match &filter.kernel_release {
        Some(p) => Some(Regex::new(p).map_err(|e| MatrixError::BadRegex {
            pattern: p.clone(),
            msg: e.to_string(),
        })?),
        None => None,
    };
    let known: BTreeSet<String> = lists.distros.keys().map(|k| normalize_distro(k)).collect();
    let wanted: Option<BTreeSet<String>> = match &filter.distros {
        Some(names) => {
            let mut set = BTreeSet::new();
            for name in names {
                let n = normalize_distro(name);
                if !known.contains(&n) {
                    return Err(MatrixError::UnknownDistro {
                        name: name.clone(),
                        known: known.iter().cloned().collect::<Vec<_>>().join(", "),
                    });
                }
                set.insert(n);
            }
            Some(set)
        }
        None => None,
    };
    let prefix = output_version(&filter.driver_version);

    let mut out = Generated::default();
    // Identity of a variant: distro, arch, release, kernel-crawler's kernelversion.
    let mut seen: BTreeMap<(String, Arch, String, String), MatrixEntry> = BTreeMap::new();
    for (key, entries) in &lists.distros {
        let distribution = normalize_distro(key);
        if wanted.as_ref().is_some_and(|w| !w.contains(&distribution)) {
            continue;
        }
        for entry in entries {
            let Some(arch) = entry.arch else {
                out.unknown_arch += 1;
                continue;
            };
            if !filter.arches.contains(&arch) {
                continue;
            }
            if release_re
                .as_ref()
                .is_some_and(|re| !re.is_match(&entry.kernelrelease))
            {
                continue;
            }
            // The release becomes a directory name in the store and the report: one that could climb out
            // of it (or is otherwise not a plain name) is left out, and counted.
            if kmf_types::names::check_path_component("kernelrelease", &entry.kernelrelease)
                .is_err()
            {
                out.unsafe_release += 1;
                continue;
            }
            let kernelversion = entry.kernelversion.to_string();
            let id = (
                distribution.clone(),
                arch,
                entry.kernelrelease.clone(),
                kernelversion.clone(),
            );
            if seen.contains_key(&id) {
                out.duplicates += 1;
                continue;
            }
            let packages = entry.header_packages();
            let matrix_entry = MatrixEntry {
                kversion: entry.kernelrelease.clone(),
                distribution: distribution.clone(),
                architecture: arch,
                kernelurls: packages.iter().map(|p| p.url.clone()).collect(),
                output: String::new(),
                driverversion: filter.driver_version.clone(),
                kernelversion,
                target: entry.target.clone(),
                flavour: entry.flavour.clone(),
                packageversion: entry.packageversion.clone(),
                suite: entry.suite.clone(),
                headerpackages: entry.headerpackages.clone(),
                kernelconfigsha256: entry
                    .kernelconfigdata
                    .as_ref()
                    .map(|d| hex::encode(Sha256::digest(d.as_bytes()))),
                builder: None,
                buildkey: None,
            };
            seen.insert(id, matrix_entry);
        }
    }

    // A release listed more than once (kernel-crawler keeps Ubuntu re-uploads as separate entries with their
    // own kernelversion) needs a distinct store prefix for each upload.
    let mut uploads: HashMap<(String, Arch, String), usize> = HashMap::new();
    for (d, a, r, _) in seen.keys() {
        *uploads.entry((d.clone(), *a, r.clone())).or_default() += 1;
    }
    out.entries = seen
        .into_iter()
        .map(|((d, a, r, kv), mut e)| {
            let base = format!("{prefix}/{d}/{a}/{r}");
            e.output = if uploads[&(d, a, r)] > 1 {
                format!("{base}_{}", sanitize(&kv))
            } else {
                base
            };
            e
        })
        .collect();
    out.entries.sort_by(|a, b| a.output.cmp(&b.output));
    Ok(out)
}

/// Store keys must stay plain path segments whatever a list puts in `kernelversion`.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The matrix as pretty JSON with a trailing newline: stable bytes for diffs and the store.
pub fn to_json(entries: &[MatrixEntry]) -> Result<String, MatrixError> {
    let mut s = serde_json::to_string_pretty(entries)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_types::{KernelEntry, KernelVersion};

    fn entry(release: &str, kv: KernelVersion, arch: Option<Arch>) -> KernelEntry {
        KernelEntry {
            kernelversion: kv,
            kernelrelease: release.into(),
            target: "t".into(),
            headers: vec![format!("https://m/{release}.rpm")],
            arch,
            ..Default::default()
        }
    }

    fn filter() -> MatrixFilter {
        MatrixFilter {
            distros: None,
            arches: vec![Arch::X86_64, Arch::Aarch64],
            driver_version: "0.1.1".into(),
            kernel_release: None,
        }
    }

    #[test]
    fn seed_example_shape() {
        let mut list = KernelList::default();
        list.distros.insert(
            "AmazonLinux2023".into(),
            vec![entry(
                "6.1.12-17.42.amzn2023.x86_64",
                KernelVersion::Number(1),
                Some(Arch::X86_64),
            )],
        );
        let g = generate(&list, &filter()).unwrap();
        let json = serde_json::to_value(&g.entries[0]).unwrap();
        assert_eq!(json["distribution"], "amazonlinux2023");
        assert_eq!(json["architecture"], "x86_64");
        assert_eq!(
            json["output"],
            "0.1.0/amazonlinux2023/x86_64/6.1.12-17.42.amzn2023.x86_64"
        );
        assert_eq!(json["driverversion"], "0.1.1");
        assert_eq!(
            json["kernelurls"][0],
            "https://m/6.1.12-17.42.amzn2023.x86_64.rpm"
        );
    }

    #[test]
    fn reuploads_get_distinct_outputs() {
        let mut list = KernelList::default();
        list.distros.insert(
            "Ubuntu".into(),
            vec![
                entry(
                    "4.15.0-1008-oracle",
                    KernelVersion::Text("9".into()),
                    Some(Arch::X86_64),
                ),
                entry(
                    "4.15.0-1008-oracle",
                    KernelVersion::Text("10".into()),
                    Some(Arch::X86_64),
                ),
                entry(
                    "4.15.0-1009-oracle",
                    KernelVersion::Text("11".into()),
                    Some(Arch::X86_64),
                ),
            ],
        );
        let g = generate(&list, &filter()).unwrap();
        let outputs: Vec<_> = g.entries.iter().map(|e| e.output.as_str()).collect();
        assert_eq!(
            outputs,
            [
                "0.1.0/ubuntu/x86_64/4.15.0-1008-oracle_10",
                "0.1.0/ubuntu/x86_64/4.15.0-1008-oracle_9",
                "0.1.0/ubuntu/x86_64/4.15.0-1009-oracle",
            ]
        );
    }

    #[test]
    fn filters_and_errors() {
        let mut list = KernelList::default();
        list.distros.insert(
            "Debian".into(),
            vec![
                entry(
                    "6.1.0-1-amd64",
                    KernelVersion::Number(1),
                    Some(Arch::X86_64),
                ),
                entry(
                    "5.10.0-1-arm64",
                    KernelVersion::Number(1),
                    Some(Arch::Aarch64),
                ),
                entry("5.10.0-2-arm64", KernelVersion::Number(1), None),
            ],
        );
        let mut f = filter();
        f.kernel_release = Some(r".*6\.[0-9]+\..*".into());
        let g = generate(&list, &f).unwrap();
        assert_eq!(g.entries.len(), 1);
        assert_eq!(g.unknown_arch, 1);

        f.kernel_release = Some("(".into());
        assert!(matches!(
            generate(&list, &f),
            Err(MatrixError::BadRegex { .. })
        ));
        f.kernel_release = None;
        f.distros = Some(vec!["Gentoo".into()]);
        let err = generate(&list, &f).unwrap_err().to_string();
        assert!(err.contains("gentoo") || err.contains("Gentoo"), "{err}");
        assert!(err.contains("debian"), "{err}");
    }

    #[test]
    fn deterministic_bytes() {
        let mut list = KernelList::default();
        list.distros.insert(
            "Debian".into(),
            vec![
                entry(
                    "6.1.0-2-amd64",
                    KernelVersion::Number(1),
                    Some(Arch::X86_64),
                ),
                entry(
                    "6.1.0-1-amd64",
                    KernelVersion::Number(1),
                    Some(Arch::X86_64),
                ),
            ],
        );
        let mut reversed = list.clone();
        reversed.distros.get_mut("Debian").unwrap().reverse();
        let a = to_json(&generate(&list, &filter()).unwrap().entries).unwrap();
        let b = to_json(&generate(&reversed, &filter()).unwrap().entries).unwrap();
        assert_eq!(a, b);
    }
}
