//! Whether a driver applies to a kernel at all: the project's requirements (`[build] requires_config`,
//! `arches`, `kernel_min`, `kernel_max` in `kmodfarm.toml`, or `BUILD_EXCLUSIVE_*` in `dkms.conf`) checked
//! against the kernel's release, architecture and configuration before anything is compiled. A variant
//! they rule out is *excluded*: not built, not a failure.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use kmf_types::Arch;

/// What is known of the kernel a variant targets.
#[derive(Debug, Clone)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    pub arch: Arch,
    /// The kernel's configuration; `None` when the tree has none (configuration requirements are then
    /// not checked, as DKMS does).
    pub config: Option<KernelConfig>,
}

/// `CONFIG_*` values of a kernel configuration (`.config` or `include/config/auto.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig(BTreeMap<String, String>);

impl KernelConfig {
    /// Parses `CONFIG_X=value` lines; `# CONFIG_X is not set` and anything else is skipped.
    pub fn parse(text: &str) -> KernelConfig {
        KernelConfig(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .filter(|(k, _)| k.starts_with("CONFIG_") && !k.contains(char::is_whitespace))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    /// The configuration of the kernel tree at `dir` (its `include/config/auto.conf`, else `.config`, the
    /// order DKMS reads them in); `None` when it has neither.
    pub fn of_tree(dir: &Path) -> Option<KernelConfig> {
        ["include/config/auto.conf", ".config"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .map(|t| KernelConfig::parse(&t))
    }

    /// True when the option is built in or a module (`=y` or `=m`).
    pub fn enabled(&self, option: &str) -> bool {
        matches!(self.0.get(option).map(String::as_str), Some("y" | "m"))
    }
}

/// A project's requirements on the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `CONFIG_X` (must be `y` or `m`) or `!CONFIG_X` (must not be).
    pub config: Vec<String>,
    /// Architectures the driver builds for; empty: all.
    pub arches: Vec<Arch>,
    /// Oldest kernel release, compared number by number (`6.1` admits `6.1.0-57-amd64`).
    pub kernel_min: Option<String>,
    /// Newest kernel release: `6.5` admits `6.5` itself but not `6.5.3`, which is newer (see
    /// [`compare_releases`]), as in DKMS.
    pub kernel_max: Option<String>,
}

impl Requirements {
    /// Why the kernel is ruled out, or `None` when the driver applies to it.
    pub fn exclusion(&self, kernel: &KernelFacts) -> Option<String> {
        if !self.arches.is_empty() && !self.arches.contains(&kernel.arch) {
            let list: Vec<&str> = self.arches.iter().map(|a| a.as_str()).collect();
            return Some(format!(
                "the driver builds for {} only, not {}",
                list.join(", "),
                kernel.arch
            ));
        }
        if let Some(min) = &self.kernel_min {
            if compare_releases(&kernel.release, min) == Ordering::Less {
                return Some(format!(
                    "kernel {} is older than the driver's minimum {min}",
                    kernel.release
                ));
            }
        }
        if let Some(max) = &self.kernel_max {
            if compare_releases(&kernel.release, max) == Ordering::Greater {
                return Some(format!(
                    "kernel {} is newer than the driver's maximum {max}",
                    kernel.release
                ));
            }
        }
        if let Some(config) = &kernel.config {
            for want in &self.config {
                let (negated, option) = match want.strip_prefix('!') {
                    Some(o) => (true, o),
                    None => (false, want.as_str()),
                };
                if config.enabled(option) == negated {
                    return Some(if negated {
                        format!("the kernel has {option} set, which the driver excludes")
                    } else {
                        format!("the kernel lacks {option}, which the driver requires")
                    });
                }
            }
        }
        None
    }
}

/// A `requires_config` / `BUILD_EXCLUSIVE_CONFIG` entry: `CONFIG_` and upper-case letters, digits and
/// underscores, optionally behind `!`.
pub fn valid_config_requirement(entry: &str) -> bool {
    let option = entry.strip_prefix('!').unwrap_or(entry);
    option.len() > "CONFIG_".len()
        && option.starts_with("CONFIG_")
        && option
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Compares kernel releases by the runs of digits before the first letter, in order, as numbers
/// (`6.1.0-57-amd64` → 6, 1, 0, 57; `6.12.57+deb13-amd64` → 6, 12, 57; `5.14.0-427.13.1.el9_4.x86_64` →
/// 5, 14, 0, 427, 13, 1); the first difference decides, and a release that runs out of numbers first is
/// the older one. The flavour and distribution suffix take no part, so `kernel_max = "6.1.0-57"` admits
/// `6.1.0-57-amd64`. DKMS compares zero-padded whole strings instead, which also orders numbers over 999
/// wrongly.
pub fn compare_releases(a: &str, b: &str) -> Ordering {
    let numbers = |s: &str| -> Vec<u64> {
        let version = s
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(s, |end| &s[..end]);
        version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    numbers(a).cmp(&numbers(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(release: &str, arch: Arch, config: &str) -> KernelFacts {
        KernelFacts {
            release: release.into(),
            arch,
            config: Some(KernelConfig::parse(config)),
        }
    }

    #[test]
    fn releases_compare_number_by_number() {
        use Ordering::*;
        assert_eq!(compare_releases("6.1.0-57-amd64", "6.1"), Greater);
        assert_eq!(compare_releases("6.12.57+deb13-amd64", "6.2"), Greater);
        assert_eq!(compare_releases("5.10.0-46-amd64", "6.1"), Less);
        assert_eq!(compare_releases("6.1.0-1000-amd64", "6.1.0-999"), Greater);
        assert_eq!(compare_releases("6.5", "6.5"), Equal);
        assert_eq!(compare_releases("6.1.0-57-amd64", "6.1.0-57"), Equal);
        assert_eq!(
            compare_releases("5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427"),
            Greater
        );
    }

    #[test]
    fn requirements_rule_out_kernels_and_say_why() {
        let cfg = "CONFIG_KALLSYMS=y\nCONFIG_VIDEO_DEV=m\n# CONFIG_KALLSYMS_ALL is not set\nCONFIG_HZ=250\n";
        let k = facts("6.1.0-57-amd64", Arch::X86_64, cfg);
        let none = Requirements::default();
        assert_eq!(none.exclusion(&k), None);
        let r = |config: &[&str]| Requirements {
            config: config.iter().map(|s| s.to_string()).collect(),
            ..Requirements::default()
        };
        assert_eq!(
            r(&["CONFIG_KALLSYMS", "CONFIG_VIDEO_DEV"]).exclusion(&k),
            None
        );
        let why = r(&["CONFIG_KALLSYMS_ALL"]).exclusion(&k).unwrap();
        assert!(why.contains("lacks CONFIG_KALLSYMS_ALL"), "{why}");
        let why = r(&["!CONFIG_VIDEO_DEV"]).exclusion(&k).unwrap();
        assert!(why.contains("has CONFIG_VIDEO_DEV"), "{why}");
        assert_eq!(r(&["!CONFIG_KALLSYMS_ALL"]).exclusion(&k), None);
        // No configuration: not checked.
        let bare = KernelFacts {
            config: None,
            ..k.clone()
        };
        assert_eq!(r(&["CONFIG_KALLSYMS_ALL"]).exclusion(&bare), None);

        let arches = Requirements {
            arches: vec![Arch::Aarch64],
            ..Requirements::default()
        };
        assert!(arches.exclusion(&k).unwrap().contains("aarch64 only"));
        let window = |min: Option<&str>, max: Option<&str>| Requirements {
            kernel_min: min.map(Into::into),
            kernel_max: max.map(Into::into),
            ..Requirements::default()
        };
        assert_eq!(window(Some("6.1"), Some("6.2")).exclusion(&k), None);
        assert!(window(Some("6.2"), None)
            .exclusion(&k)
            .unwrap()
            .contains("older"));
        assert!(window(None, Some("6.0"))
            .exclusion(&k)
            .unwrap()
            .contains("newer"));
    }

    #[test]
    fn config_requirements_are_checked_for_shape() {
        assert!(valid_config_requirement("CONFIG_KALLSYMS_ALL"));
        assert!(valid_config_requirement("!CONFIG_X86_64"));
        for bad in [
            "KALLSYMS",
            "CONFIG_",
            "CONFIG_a",
            "!!CONFIG_X",
            "CONFIG_X; rm -rf /",
        ] {
            assert!(!valid_config_requirement(bad), "{bad}");
        }
    }
}
