//! Which builder compiles modules for which kernel.
//!
//! A module must be built with the compiler that built its kernel: the kernel's config records it in
//! `CONFIG_CC_VERSION_TEXT` (`gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0`). The table maps the GCC major
//! version to the Debian suite whose toolchain provides it; each builder also carries the aarch64 cross
//! compiler of the same version, because Debian's split header packages let arm64 modules be cross-built on
//! x86_64 hosts.
//!
//! | GCC | builder suite | note |
//! |-----|---------------|------|
//! | 9   | bullseye      | gcc-9 is packaged in bullseye: Ubuntu 20.04 kernels |
//! | 10  | bullseye      | Debian 11 kernels, Amazon Linux 2's 5.x kernels |
//! | 11  | bookworm      | gcc-11 is packaged in bookworm |
//! | 12  | bookworm      | Debian 12 kernels (6.1, and 6.12 `+deb12`) |
//! | 13  | trixie        | gcc-13 is packaged in trixie |
//! | 14  | trixie        | Debian 13 kernels |
//! | 15  | sid           | gcc-15 is packaged in sid (native only: sid has no gcc-15 aarch64 cross compiler) |
//! | 16  | sid           | unstable kernels (7.x `+deb14`) |
//!
//! Other distributions' kernels go to the builder of the same GCC major: a module only has to agree with
//! its kernel on what the compiler major decides (the plugin and feature probes `CONFIG_CC_HAS_*`, the
//! `-mrecord-mcount`/`-mfentry`/retpoline/stack-protector flags the config turns on, the structure layout
//! rules), and GCC keeps those stable within a major. So Fedora and AlmaLinux 9 (`gcc (GCC) 11.4.1 ...
//! (Red Hat 11.4.1-3)`, GCC 11 to 14), Amazon Linux 2023 (GCC 11) and Amazon Linux 2's 5.x kernels
//! (`gcc10-gcc (GCC) 10.5.0`), and Ubuntu (`x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) 12.3.0`,
//! 20.04's `gcc (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0`) all have builders. A kernel built by GCC 7 or 8
//! (Amazon Linux 2's 4.14 kernels, AlmaLinux 8, Ubuntu 18.04) has none: no Debian suite on the mirror
//! packages those compilers any more, and building with GCC 9
//! instead is refused rather than tried, because kbuild then re-probes compiler features the kernel's
//! config recorded for another compiler and the module can disagree with the kernel in ways nothing
//! checks before it is loaded. Those kernels fail with *toolchain unavailable*.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::BuildError;

/// A builder: a Debian root filesystem made by mmdebstrap with one GCC version and its aarch64 cross compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuilderSpec {
    /// `debian-bookworm-gcc12-<hash>`: changes whenever what goes into the rootfs changes.
    pub id: String,
    pub suite: String,
    pub gcc_major: u32,
    pub packages: Vec<String>,
}

/// Bumped whenever the builder recipe changes in a way the package list does not show.
const RECIPE: u32 = 1;

/// GCC major version → Debian suite that packages it.
const GCC_SUITES: &[(u32, &str)] = &[
    (9, "bullseye"),
    (10, "bullseye"),
    (11, "bookworm"),
    (12, "bookworm"),
    (13, "trixie"),
    (14, "trixie"),
    (15, "sid"),
    (16, "sid"),
];

/// The compiler each Debian suite's own kernels are built with: the builder `builder create --suite` makes.
const SUITE_DEFAULT_GCC: &[(&str, u32)] = &[
    ("bullseye", 10),
    ("bookworm", 12),
    ("trixie", 14),
    ("sid", 15),
];

/// Every builder the toolchain table knows, one per GCC major version.
pub fn all_builders() -> Vec<BuilderSpec> {
    GCC_SUITES.iter().map(|(m, s)| spec(s, *m)).collect()
}

/// The builder for a Debian suite's own kernels; `None` for a suite the table does not know.
pub fn suite_builder(suite: &str) -> Option<BuilderSpec> {
    SUITE_DEFAULT_GCC
        .iter()
        .find(|(s, _)| *s == suite)
        .map(|(s, m)| spec(s, *m))
}

/// The suites [`suite_builder`] knows.
pub fn known_suites() -> Vec<&'static str> {
    SUITE_DEFAULT_GCC.iter().map(|(s, _)| *s).collect()
}

/// Reads `CONFIG_CC_VERSION_TEXT` from a kernel `.config`.
pub fn cc_version_text(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        l.strip_prefix("CONFIG_CC_VERSION_TEXT=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// The GCC major version named by a `CONFIG_CC_VERSION_TEXT`, e.g. 12 for
/// `gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0` or `x86_64-linux-gnu-gcc-12 (...) 12.2.0`, 11 for
/// `gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3)`. GCC prints `NAME (PKGVERSION) VERSION [DATE] [(NOTE)]`:
/// the version is the word after the first parenthesised group.
pub fn gcc_major(cc_text: &str) -> Option<u32> {
    if cc_text.contains("clang") {
        return None;
    }
    let major = |word: &str| -> Option<u32> {
        let first = word.split('.').next()?;
        if word.contains('.') && !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
            first.parse().ok()
        } else {
            None
        }
    };
    let after_group = cc_text
        .find('(')
        .and_then(|open| cc_text[open..].find(')').map(|close| open + close + 1))
        .and_then(|end| cc_text[end..].split_whitespace().next());
    after_group
        .and_then(major)
        .or_else(|| cc_text.rsplit(' ').next().and_then(major))
}

/// Picks the builder for a kernel whose config says `cc_text`.
pub fn builder_for(cc_text: &str) -> Result<BuilderSpec, BuildError> {
    let unsupported = |why: &str| BuildError::UnsupportedCompiler {
        cc: cc_text.to_string(),
        why: why.to_string(),
    };
    if cc_text.contains("clang") {
        return Err(unsupported("clang-built kernels have no builder yet"));
    }
    let major = gcc_major(cc_text).ok_or_else(|| unsupported("no GCC version in it"))?;
    let suite = GCC_SUITES
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            if major < 9 {
                return unsupported(&format!(
                    "GCC {major} is not in the toolchain table: no Debian suite on the mirror packages \
                     it, and modules are not built with another GCC major than their kernel's"
                ));
            }
            unsupported(&format!(
                "GCC {major} is not in the toolchain table (known: {})",
                GCC_SUITES
                    .iter()
                    .map(|(m, _)| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok(spec(suite, major))
}

fn spec(suite: &str, major: u32) -> BuilderSpec {
    // The kbuild host tools (modpost, objtool) link against libelf and libssl, whose package names carry the
    // t64 suffix from trixie on.
    let t64 = matches!(suite, "trixie" | "forky" | "sid");
    let (libelf, libssl) = match suite {
        "bullseye" => ("libelf1", "libssl1.1"),
        _ if t64 => ("libelf1t64", "libssl3t64"),
        _ => ("libelf1", "libssl3"),
    };
    let mut packages: Vec<String> = vec![
        format!("gcc-{major}"),
        format!("gcc-{major}-aarch64-linux-gnu"),
        "make".into(),
        "libc6-dev".into(),
        // DKMS packages' PATCH[#] entries are applied with patch(1) in the sandbox.
        "patch".into(),
        // pahole: kernels with CONFIG_DEBUG_INFO_BTF_MODULES (Debian 6.12 on) add BTF to every module.
        "dwarves".into(),
        libelf.into(),
        libssl.into(),
    ];
    packages.sort();
    let mut h = Sha256::new();
    h.update(format!("{RECIPE}\n{suite}\n{}", packages.join("\n")));
    let hash = hex::encode(h.finalize());
    BuilderSpec {
        id: format!("debian-{suite}-gcc{major}-{}", &hash[..12]),
        suite: suite.to_string(),
        gcc_major: major,
        packages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_row_is_a_current_builder() {
        let all: Vec<String> = all_builders().into_iter().map(|b| b.id).collect();
        assert_eq!(all.len(), GCC_SUITES.len());
        // gcc-9 and gcc-16 builders are current too (a copied table once left them out, and prune deleted them).
        for major in [9, 10, 11, 12, 13, 14, 15, 16] {
            let b = builder_for(&format!("gcc-{major} (Debian) {major}.1.0")).unwrap();
            assert!(all.contains(&b.id), "gcc-{major}");
        }
        assert_eq!(suite_builder("bookworm").unwrap().gcc_major, 12);
        assert!(suite_builder("jessie").is_none());
    }

    #[test]
    fn reads_cc_text_from_config() {
        let cfg = "#\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_CC_IS_GCC=y\n";
        let text = cc_version_text(cfg).unwrap();
        assert_eq!(text, "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0");
        let b = builder_for(&text).unwrap();
        assert_eq!(b.suite, "bookworm");
        assert!(b.packages.contains(&"gcc-12-aarch64-linux-gnu".to_string()));
    }

    #[test]
    fn maps_each_debian_release() {
        assert_eq!(
            builder_for("gcc-10 (Debian 10.2.1-6) 10.2.1")
                .unwrap()
                .suite,
            "bullseye"
        );
        let trixie = builder_for("x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0").unwrap();
        assert_eq!(trixie.suite, "trixie");
        assert!(trixie.packages.contains(&"libelf1t64".to_string()));
        // sid's 7.x kernels.
        let sid = builder_for("x86_64-linux-gnu-gcc-16 (Debian 16.1.0-2) 16.1.0").unwrap();
        assert_eq!((sid.suite.as_str(), sid.gcc_major), ("sid", 16));
        assert!(sid
            .packages
            .contains(&"gcc-16-aarch64-linux-gnu".to_string()));
        assert!(builder_for("Debian clang version 16.0.6").is_err());
        assert!(builder_for("gcc (GCC) 4.8.5 20150623 (Red Hat 4.8.5-44)").is_err());
    }

    #[test]
    fn maps_other_families_by_gcc_major() {
        for (text, major, suite) in [
            (
                "gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3)",
                11,
                "bookworm",
            ),
            (
                "gcc (GCC) 11.4.1 20230605 (Red Hat 11.4.1-2)",
                11,
                "bookworm",
            ),
            ("gcc (GCC) 13.2.1 20240316 (Red Hat 13.2.1-7)", 13, "trixie"),
            ("gcc (GCC) 14.2.1 20240912 (Red Hat 14.2.1-3)", 14, "trixie"),
            ("gcc10-gcc (GCC) 10.5.0", 10, "bullseye"),
            (
                "x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) 12.3.0",
                12,
                "bookworm",
            ),
            ("gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0", 11, "bookworm"),
            (
                "aarch64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0",
                13,
                "trixie",
            ),
        ] {
            assert_eq!(gcc_major(text), Some(major), "{text}");
            let b = builder_for(text).unwrap();
            assert_eq!((b.gcc_major, b.suite.as_str()), (major, suite), "{text}");
        }
        let focal = builder_for("gcc (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0").unwrap();
        assert_eq!((focal.gcc_major, focal.suite.as_str()), (9, "bullseye"));
        assert!(focal
            .packages
            .contains(&"gcc-9-aarch64-linux-gnu".to_string()));
        for old in [
            "gcc (GCC) 7.3.1 20180712 (Red Hat 7.3.1-17)",
            "gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-22)",
            "gcc-8 (Ubuntu 8.4.0-1ubuntu1~18.04) 8.4.0",
        ] {
            let err = builder_for(old).unwrap_err().to_string();
            assert!(err.contains("not in the toolchain table"), "{old}: {err}");
        }
    }

    #[test]
    fn builder_ids_change_with_contents() {
        assert_ne!(
            builder_for("gcc-12 (x) 12.2.0").unwrap().id,
            builder_for("gcc-11 (x) 11.3.0").unwrap().id
        );
        assert_eq!(
            builder_for("gcc-12 (x) 12.2.0").unwrap(),
            builder_for("gcc-12 (y) 12.3.0").unwrap()
        );
    }
}
