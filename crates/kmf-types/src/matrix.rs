use serde::{Deserialize, Serialize};

use crate::{Arch, HeaderPackage};

/// One build variant: an element of the matrix JSON of the seed pipeline, plus the extra fields a build
/// needs. The six seed fields come first and keep their names (`kversion`, `distribution`, `architecture`,
/// `kernelurls`, `output`, `driverversion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixEntry {
    pub kversion: String,
    pub distribution: String,
    pub architecture: Arch,
    pub kernelurls: Vec<String>,
    /// Store key prefix: `<driver major.minor.0>/<distribution>/<architecture>/<kversion>`, with
    /// `_<kernelversion>` appended when one release was uploaded more than once.
    pub output: String,
    pub driverversion: String,

    /// kernel-crawler's `kernelversion` (upload counter), part of the variant's identity.
    #[serde(default = "default_kernelversion")]
    pub kernelversion: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packageversion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Header packages with digests where the kernel list had them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headerpackages: Vec<HeaderPackage>,
    /// SHA256 of the decoded kernel config, when the list carried one (`kernelconfigdata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernelconfigsha256: Option<String>,
    /// The builder (toolchain root filesystem and compiler) a published variant was built with. Absent in
    /// freshly generated matrices; `sync` fills it in the matrix it publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// The content-addressed build key of a published variant (see `kmf_farm::keys`); absent until built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildkey: Option<String>,
}

fn default_kernelversion() -> String {
    "1".to_string()
}

impl MatrixEntry {
    /// Header packages with whatever is known of them.
    pub fn header_packages(&self) -> Vec<HeaderPackage> {
        if !self.headerpackages.is_empty() {
            return self.headerpackages.clone();
        }
        self.kernelurls
            .iter()
            .map(|u| HeaderPackage::from_url(u))
            .collect()
    }

    /// A short name for logs and reports: `debian/x86_64/6.1.0-50-amd64`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.distribution, self.architecture, self.kversion
        )
    }
}

/// The version part of store paths: a patch release of the driver writes where its minor release does
/// (`0.1.1` → `0.1.0`), as in the seed pipeline. The core ends at the first `-`, `+` or `~` (`1.4.2-rc1`,
/// `1.0~rc1` → `1.4.0`, `1.0.0`: a Debian-style pre-release writes where its release will). Versions that
/// are not `MAJOR.MINOR[.PATCH...]` are kept whole (`13`, `v0.3-47-g1a2b3c4`).
pub fn output_version(driver_version: &str) -> String {
    let core = driver_version
        .split(['-', '+', '~'])
        .next()
        .unwrap_or(driver_version);
    let mut parts = core.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor))
            if !major.is_empty()
                && !minor.is_empty()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{major}.{minor}.0")
        }
        _ => driver_version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_releases_share_the_output_prefix() {
        assert_eq!(output_version("0.1.1"), "0.1.0");
        assert_eq!(output_version("0.1.0"), "0.1.0");
        assert_eq!(output_version("2.3"), "2.3.0");
        assert_eq!(output_version("1.4.2-rc1"), "1.4.0");
        assert_eq!(output_version("nightly"), "nightly");
        assert_eq!(output_version("1.0~rc1"), "1.0.0");
        assert_eq!(output_version("2.3.4~bpo12+1"), "2.3.0");
        // Not MAJOR.MINOR: kept whole, `~` included (a path component every store key accepts).
        assert_eq!(output_version("13"), "13");
        assert_eq!(output_version("13~rc1"), "13~rc1");
        assert_eq!(output_version("v0.3-47-g1a2b3c4"), "v0.3-47-g1a2b3c4");
    }
}
