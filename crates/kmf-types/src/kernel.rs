use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Arch;

/// A kernel list in Falco kernel-crawler's `list.json` shape: distro name → entries. kmodfarm's crawlers
/// write the same shape, so either can feed `matrix generate`. Distro keys are kept as written
/// (`AmazonLinux2023`); [`crate::normalize_distro`] gives the matrix spelling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KernelList {
    pub distros: BTreeMap<String, Vec<KernelEntry>>,
}

impl KernelList {
    pub fn len(&self) -> usize {
        self.distros.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds another list's entries after this one's.
    pub fn merge(&mut self, other: KernelList) {
        for (distro, entries) in other.distros {
            self.distros.entry(distro).or_default().extend(entries);
        }
    }
}

/// kernel-crawler's `kernelversion`: the build number of a release (Ubuntu's upload counter, `1` for most
/// others). Published lists mix JSON numbers and strings; it is written back the way it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KernelVersion {
    Number(u64),
    Text(String),
}

impl Default for KernelVersion {
    fn default() -> Self {
        KernelVersion::Number(1)
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelVersion::Number(n) => write!(f, "{n}"),
            KernelVersion::Text(s) => f.write_str(s),
        }
    }
}

/// One kernel of a distribution: kernel-crawler's fields, then kmodfarm's extras (absent from
/// kernel-crawler's own lists, ignored by tools that do not know them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelEntry {
    #[serde(default)]
    pub kernelversion: KernelVersion,
    /// For kmodfarm's crawls: exactly what `uname -r` prints on that kernel. kernel-crawler's Debian entries
    /// use `<package version>-<flavour>` instead; the build reads the real release from the header tree.
    pub kernelrelease: String,
    #[serde(default)]
    pub target: String,
    /// URLs of the header packages (kernel-crawler's field).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Base64 of the kernel's `.config`, where the crawler had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernelconfigdata: Option<String>,

    /// Architecture, when the list says it (kmodfarm's crawls do; kernel-crawler publishes one list per arch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// The distribution's package version (`6.1.176-1`), which tells apart two uploads with the same ABI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packageversion: Option<String>,
    /// Kernel flavour (`amd64`, `cloud-amd64`, `rt-arm64`, `generic`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<String>,
    /// Repository suite the kernel was found in (`bookworm-security`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// The header packages with the digests and sizes the repository index gives, in `headers` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headerpackages: Vec<HeaderPackage>,
}

/// A header package as a repository index describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeaderPackage {
    pub url: String,
    /// Package name (`linux-headers-6.1.0-50-common`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Lower-case hex SHA256 from the repository index; downloads are verified against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Path relative to the repository root (`pool/main/l/linux/...deb`), so that any mirror can serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How the package's digest was proven (the signed index that listed it), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<crate::InputProof>,
}

impl HeaderPackage {
    /// A package known only by its URL (kernel-crawler lists).
    pub fn from_url(url: &str) -> Self {
        HeaderPackage {
            url: url.to_string(),
            ..Default::default()
        }
    }

    /// The file name: last path segment of the URL.
    pub fn file_name(&self) -> &str {
        let path = self.url.split(['?', '#']).next().unwrap_or(&self.url);
        path.rsplit('/').next().unwrap_or(path)
    }
}

impl KernelEntry {
    /// Header packages with whatever is known of them: the detailed list when the crawler wrote one,
    /// otherwise one bare package per URL.
    pub fn header_packages(&self) -> Vec<HeaderPackage> {
        if !self.headerpackages.is_empty() {
            return self.headerpackages.clone();
        }
        self.headers
            .iter()
            .map(|u| HeaderPackage::from_url(u))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernelversion_round_trips_numbers_and_strings() {
        let json = r#"{"Debian":[{"kernelversion":1,"kernelrelease":"6.1.0-1-amd64","target":"debian","headers":[]}],
                       "Ubuntu":[{"kernelversion":"115","kernelrelease":"4.15.0-1104-oem","target":"ubuntu-oem","headers":["u"],"future":{"x":1}}]}"#;
        let list: KernelList = serde_json::from_str(json).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list.distros["Debian"][0].kernelversion,
            KernelVersion::Number(1)
        );
        assert_eq!(list.distros["Ubuntu"][0].kernelversion.to_string(), "115");
        let back = serde_json::to_string(&list).unwrap();
        assert!(back.contains(r#""kernelversion":1"#));
        assert!(back.contains(r#""kernelversion":"115""#));
    }

    #[test]
    fn file_name_ignores_query() {
        let p = HeaderPackage::from_url("http://m/pool/a/linux-headers_1_amd64.deb?x=1");
        assert_eq!(p.file_name(), "linux-headers_1_amd64.deb");
    }
}
