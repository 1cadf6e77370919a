//! The target host: distribution, kernel release and version, architecture.

use std::path::Path;

use kmf_types::{normalize_distro, Arch};
use serde::Serialize;

/// What `install` matches the store's matrix against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// kmodfarm's distribution name (`debian`, `ubuntu`, `amazonlinux2023`, ...).
    pub distro: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -v` (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2025-10-16)`), when known.
    pub kernel_version: Option<String>,
    pub arch: Arch,
}

/// Values given on the command line win over detection.
#[derive(Debug, Clone, Default)]
pub struct HostOverrides {
    pub distro: Option<String>,
    pub kernel_release: Option<String>,
    pub kernel_version: Option<String>,
    pub arch: Option<Arch>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot tell the distribution: {0} (pass --distro)")]
    Distro(String),
    #[error("cannot read the running kernel's release from /proc/sys/kernel/osrelease: {0} (pass --kernel-release)")]
    Release(std::io::Error),
    #[error("kmodfarm builds for x86_64 and aarch64, not `{0}` (pass --arch)")]
    Arch(String),
}

impl Host {
    /// Detects what `overrides` leaves open: the distribution from `<root>/etc/os-release` (else
    /// `<root>/usr/lib/os-release`), release and version from the running kernel (`/proc/sys/kernel/osrelease`
    /// and `version`, which `uname -r` and `uname -v` print), the architecture this binary runs on.
    pub fn detect(root: &Path, overrides: HostOverrides) -> Result<Host, HostError> {
        let distro = match overrides.distro {
            Some(d) => normalize_distro(&d),
            None => {
                let text = std::fs::read_to_string(root.join("etc/os-release"))
                    .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
                    .map_err(|e| HostError::Distro(format!("os-release: {e}")))?;
                distro_from_os_release(&text)
                    .ok_or_else(|| HostError::Distro("os-release has no ID".into()))?
            }
        };
        let kernel_release = match overrides.kernel_release {
            Some(r) => r,
            None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_err(HostError::Release)?
                .trim()
                .to_string(),
        };
        let kernel_version = overrides.kernel_version.or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/version")
                .ok()
                .map(|v| v.trim().to_string())
        });
        let arch = match overrides.arch {
            Some(a) => a,
            None => Arch::host().ok_or_else(|| HostError::Arch(std::env::consts::ARCH.into()))?,
        };
        Ok(Host {
            distro,
            kernel_release,
            kernel_version,
            arch,
        })
    }

    /// The distribution's package version of the running kernel, where `uname -v` names it: Debian's
    /// `... Debian 6.1.192-2 (2025-10-16)`.
    pub fn package_version(&self) -> Option<String> {
        let v = self.kernel_version.as_deref()?;
        let rest = v.split(" Debian ").nth(1)?;
        let word = rest.split_whitespace().next()?;
        Some(word.to_string())
    }

    /// The build number `uname -v` starts with (`#115-Ubuntu SMP ...` → `115`, `#1 SMP` → `1`).
    pub fn build_number(&self) -> Option<String> {
        let v = self.kernel_version.as_deref()?.strip_prefix('#')?;
        let n: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
        (!n.is_empty()).then_some(n)
    }
}

/// os-release `ID` (and `VERSION_ID` where kmodfarm's names carry it) → kmodfarm's distribution name, the
/// normalised kernel-crawler key.
pub fn distro_from_os_release(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k == name).then(|| v.trim().trim_matches(['"', '\'']).to_string())
        })
    };
    let id = field("ID")?.to_ascii_lowercase();
    let version = field("VERSION_ID").unwrap_or_default();
    let major = version.split('.').next().unwrap_or("").to_string();
    let name = match id.as_str() {
        "amzn" => format!("amazonlinux{major}"),
        "ol" => format!("oracle{major}"),
        "photon" => "photonos".to_string(),
        "arch" => "archlinux".to_string(),
        id if id.starts_with("opensuse") || id == "sles" => "opensuse".to_string(),
        other => other.to_string(),
    };
    Some(normalize_distro(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_os_release() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(distro_from_os_release(debian).as_deref(), Some("debian"));
        let amzn = "NAME=\"Amazon Linux\"\nVERSION_ID=\"2023\"\nID=\"amzn\"\n";
        assert_eq!(
            distro_from_os_release(amzn).as_deref(),
            Some("amazonlinux2023")
        );
        assert_eq!(
            distro_from_os_release("ID=ol\nVERSION_ID=\"8.9\"\n").as_deref(),
            Some("oracle8")
        );
        assert_eq!(
            distro_from_os_release("ID=ubuntu\n").as_deref(),
            Some("ubuntu")
        );
        assert_eq!(distro_from_os_release("NAME=x\n"), None);
    }

    #[test]
    fn versions_from_uname_v() {
        let host = |v: &str| Host {
            distro: "debian".into(),
            kernel_release: "6.1.0-56-amd64".into(),
            kernel_version: Some(v.into()),
            arch: Arch::X86_64,
        };
        let d = host("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2025-10-16)");
        assert_eq!(d.package_version().as_deref(), Some("6.1.192-2"));
        assert_eq!(d.build_number().as_deref(), Some("1"));
        let u = host("#115-Ubuntu SMP Tue Nov 1 12:00:00 UTC 2022");
        assert_eq!(u.package_version(), None);
        assert_eq!(u.build_number().as_deref(), Some("115"));
    }

    #[test]
    fn detects_from_a_root_with_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        let h = Host::detect(
            dir.path(),
            HostOverrides {
                kernel_release: Some("6.1.0-56-amd64".into()),
                arch: Some(Arch::Aarch64),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (h.distro.as_str(), h.kernel_release.as_str(), h.arch),
            ("debian", "6.1.0-56-amd64", Arch::Aarch64)
        );
        assert!(Host::detect(&dir.path().join("none"), HostOverrides::default()).is_err());
    }
}
