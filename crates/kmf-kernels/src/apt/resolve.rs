//! From a Debian kernel release (`uname -r`) to the header packages a module build needs.

use kmf_types::HeaderPackage;

use super::{compare_versions, Dependency, PackageIndex, PackageStanza};
use crate::KernelsError;

/// The header packages of Debian kernel `kernelrelease` (`6.1.0-56-amd64`, `6.12.117+deb12-amd64`,
/// `6.1.0-56-cloud-arm64`): the flavour's `linux-headers-<release>` (newest upload in `target`), the
/// `linux-headers-<abi>-common[-rt]` it depends on at the exact version, and the `linux-kbuild-*` package
/// meeting its relation. In that order.
///
/// `linux-kbuild` holds executables (fixdep, modpost) run on the build machine, so when cross-building
/// (`host` given, e.g. the amd64 index for an arm64 target) it is taken from `host` instead.
pub fn resolve_debian_headers(
    target: &PackageIndex,
    host: Option<&PackageIndex>,
    kernelrelease: &str,
) -> Result<Vec<HeaderPackage>, KernelsError> {
    let name = format!("linux-headers-{kernelrelease}");
    let headers = target
        .newest(&name)
        .ok_or_else(|| KernelsError::HeadersNotFound {
            release: kernelrelease.to_string(),
            suite: target.suite.clone(),
        })?;
    resolve_stanza(target, host, headers).map(|r| r.packages)
}

/// What [`resolve_stanza`] found out about a flavour headers package.
pub(crate) struct Resolved {
    /// The ABI part of the release (`6.1.0-56`), the rest being `-<flavour>`.
    pub abi: String,
    /// Flavour headers, common headers, kbuild.
    pub packages: Vec<HeaderPackage>,
}

/// The ABI named by a `linux-headers-<abi>-common` or `linux-headers-<abi>-common-<featureset>` package.
pub(crate) fn common_abi(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("linux-headers-")?;
    let abi = match rest.strip_suffix("-common") {
        Some(abi) => abi,
        None => &rest[..rest.rfind("-common-")?],
    };
    (!abi.is_empty()).then_some(abi)
}

/// The dependency on the common headers of `release`: its ABI must prefix the release, so that a
/// meta package (`linux-headers-amd64`) or the common package itself never qualifies.
pub(crate) fn common_dependency<'a>(
    stanza: &'a PackageStanza,
    release: &str,
) -> Option<(&'a Dependency, &'a str)> {
    stanza.depends.iter().find_map(|d| {
        let abi = common_abi(&d.name)?;
        let flavour = release.strip_prefix(abi)?.strip_prefix('-')?;
        (!flavour.is_empty()).then_some((d, abi))
    })
}

pub(crate) fn resolve_stanza(
    target: &PackageIndex,
    host: Option<&PackageIndex>,
    headers: &PackageStanza,
) -> Result<Resolved, KernelsError> {
    resolve_stanza_in(target, &[target], &[host.unwrap_or(target)], headers)
}

/// The suite a suite's kernels may take the packages they need from when it does not carry them itself:
/// experimental (`rc-buggy`) holds only what differs from sid.
pub(crate) fn overlaid_suite(suite: &str) -> Option<&'static str> {
    matches!(suite, "experimental" | "rc-buggy").then_some("sid")
}

/// [`resolve_stanza`] for a suite that overlays `base` (experimental over sid, see [`overlaid_suite`]): the
/// common headers and kbuild come from `target` when it has a matching package, from `base` (same
/// architecture) otherwise, each with the URL and proof of the index it was found in.
pub(crate) fn resolve_stanza_over(
    target: &PackageIndex,
    base: &PackageIndex,
    headers: &PackageStanza,
) -> Result<Resolved, KernelsError> {
    resolve_stanza_in(target, &[target, base], &[target, base], headers)
}

/// The flavour `headers` of `target` with their common headers from the first of `commons` and their
/// kbuild from the first of `kbuilds` that has a package meeting the dependency.
fn resolve_stanza_in(
    target: &PackageIndex,
    commons: &[&PackageIndex],
    kbuilds: &[&PackageIndex],
    headers: &PackageStanza,
) -> Result<Resolved, KernelsError> {
    let release = headers
        .package
        .strip_prefix("linux-headers-")
        .unwrap_or(&headers.package);
    let (common_dep, abi) =
        common_dependency(headers, release).ok_or_else(|| KernelsError::UnexpectedDepends {
            package: format!("{} {}", headers.package, headers.version),
            wanted: format!("linux-headers-<abi>-common (for release {release})"),
        })?;
    let kbuild_dep = headers
        .depends
        .iter()
        .find(|d| d.name.starts_with("linux-kbuild-"))
        .ok_or_else(|| KernelsError::UnexpectedDepends {
            package: format!("{} {}", headers.package, headers.version),
            wanted: "linux-kbuild-*".to_string(),
        })?;
    let first = |indices: &[&'_ PackageIndex], dep| {
        indices
            .iter()
            .find_map(|&i| pick(i, dep, &headers.version).map(|p| i.header_package(p)))
            .ok_or_else(|| missing(headers, dep, indices))
    };
    let common = first(commons, common_dep)?;
    let kbuild = first(kbuilds, kbuild_dep)?;
    Ok(Resolved {
        abi: abi.to_string(),
        packages: vec![target.header_package(headers), common, kbuild],
    })
}

/// The package meeting `dep`, preferring the upload of the same source version as the headers (Debian
/// does not always pin kbuild: `linux-kbuild-6.12.117+deb12` comes without a relation).
pub(crate) fn pick<'a>(
    index: &'a PackageIndex,
    dep: &Dependency,
    same_upload: &str,
) -> Option<&'a PackageStanza> {
    index
        .packages
        .iter()
        .filter(|p| p.package == dep.name && dep.accepts(&p.version))
        .max_by(|a, b| {
            let same = |p: &PackageStanza| p.version == same_upload;
            same(a)
                .cmp(&same(b))
                .then_with(|| compare_versions(&a.version, &b.version))
        })
}

fn missing(headers: &PackageStanza, dep: &Dependency, indices: &[&PackageIndex]) -> KernelsError {
    let dependency = match &dep.relation {
        Some((op, v)) => format!("{} ({op} {v})", dep.name),
        None => dep.name.clone(),
    };
    let suite = indices
        .iter()
        .map(|i| format!("{} ({})", i.suite, i.arch))
        .collect::<Vec<_>>()
        .join(" or ");
    KernelsError::DependencyNotFound {
        package: format!("{} {}", headers.package, headers.version),
        dependency,
        suite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::index::tests::{BOOKWORM_SECURITY_AMD64, BOOKWORM_SECURITY_ARM64};

    fn idx(text: &str, arch: &str) -> PackageIndex {
        PackageIndex::parse(
            text,
            "http://m.invalid/debian-security",
            "bookworm-security",
            arch,
        )
        .unwrap()
    }

    fn names(pkgs: &[HeaderPackage]) -> Vec<String> {
        pkgs.iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p.package.as_deref().unwrap(),
                    p.version.as_deref().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn resolves_flavours_common_and_kbuild() {
        let amd64 = idx(BOOKWORM_SECURITY_AMD64, "amd64");
        let cases: &[(&str, [&str; 3])] = &[
            (
                "6.1.0-56-amd64",
                [
                    "linux-headers-6.1.0-56-amd64=6.1.192-2",
                    "linux-headers-6.1.0-56-common=6.1.192-2",
                    "linux-kbuild-6.1=6.1.192-2",
                ],
            ),
            (
                "6.1.0-56-rt-amd64",
                [
                    "linux-headers-6.1.0-56-rt-amd64=6.1.192-2",
                    "linux-headers-6.1.0-56-common-rt=6.1.192-2",
                    "linux-kbuild-6.1=6.1.192-2",
                ],
            ),
            (
                // An older ABI still in the index: exact common, kbuild by `>=`.
                "6.1.0-55-amd64",
                [
                    "linux-headers-6.1.0-55-amd64=6.1.176-1",
                    "linux-headers-6.1.0-55-common=6.1.176-1",
                    "linux-kbuild-6.1=6.1.192-2",
                ],
            ),
            (
                "6.12.117+deb12-amd64",
                [
                    "linux-headers-6.12.117+deb12-amd64=6.12.117-1~deb12u1",
                    "linux-headers-6.12.117+deb12-common=6.12.117-1~deb12u1",
                    "linux-kbuild-6.12.117+deb12=6.12.117-1~deb12u1",
                ],
            ),
        ];
        for (release, want) in cases {
            let got = resolve_debian_headers(&amd64, None, release).unwrap();
            assert_eq!(names(&got), want, "{release}");
            assert!(got
                .iter()
                .all(|p| p.sha256.as_ref().is_some_and(|s| s.len() == 64)));
        }
        let got = resolve_debian_headers(&amd64, None, "6.1.0-56-amd64").unwrap();
        assert_eq!(
            got[0].url,
            "http://m.invalid/debian-security/pool/updates/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"
        );
    }

    #[test]
    fn cross_build_takes_kbuild_from_the_host() {
        let amd64 = idx(BOOKWORM_SECURITY_AMD64, "amd64");
        let arm64 = idx(BOOKWORM_SECURITY_ARM64, "arm64");
        let native = resolve_debian_headers(&arm64, None, "6.1.0-56-cloud-arm64").unwrap();
        assert!(native[2]
            .url
            .ends_with("linux-kbuild-6.1_6.1.192-2_arm64.deb"));
        let cross = resolve_debian_headers(&arm64, Some(&amd64), "6.1.0-56-cloud-arm64").unwrap();
        assert_eq!(
            names(&cross),
            [
                "linux-headers-6.1.0-56-cloud-arm64=6.1.192-2",
                "linux-headers-6.1.0-56-common=6.1.192-2",
                "linux-kbuild-6.1=6.1.192-2",
            ]
        );
        assert!(cross[0].url.ends_with("_arm64.deb"));
        assert!(cross[1].url.ends_with("_all.deb"));
        assert!(cross[2]
            .url
            .ends_with("linux-kbuild-6.1_6.1.192-2_amd64.deb"));
        assert_eq!(
            cross[2].sha256.as_deref(),
            Some("7e852381f1c455a439230ea3261e3669f2307afdbed57db0fc08ed8ffa689f60")
        );
    }

    #[test]
    fn unknown_and_unresolvable_releases() {
        let amd64 = idx(BOOKWORM_SECURITY_AMD64, "amd64");
        let err = resolve_debian_headers(&amd64, None, "6.1.0-99-amd64").unwrap_err();
        assert!(
            matches!(&err, KernelsError::HeadersNotFound { release, suite }
                if release == "6.1.0-99-amd64" && suite == "bookworm-security"),
            "{err}"
        );
        // A meta package exists under that name but is not a kernel's headers.
        let err = resolve_debian_headers(&amd64, None, "amd64").unwrap_err();
        assert!(
            matches!(err, KernelsError::UnexpectedDepends { .. }),
            "{err}"
        );

        // The arm64 snippet has no rt common headers: a dangling dependency is named.
        let arm64 = idx(
            &format!(
                "{BOOKWORM_SECURITY_ARM64}\nPackage: linux-headers-6.1.0-56-rt-arm64\nVersion: 6.1.192-2\n\
                 Architecture: arm64\nDepends: linux-headers-6.1.0-56-common-rt (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2)\n\
                 Filename: pool/x_arm64.deb\n"
            ),
            "arm64",
        );
        let err = resolve_debian_headers(&arm64, None, "6.1.0-56-rt-arm64")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux-headers-6.1.0-56-common-rt (= 6.1.192-2)")
                && err.contains("bookworm-security (arm64)"),
            "{err}"
        );
        // A host index without the required kbuild version.
        let host = idx(
            &BOOKWORM_SECURITY_AMD64.replace(
                "Version: 6.1.192-2\nInstalled-Size: 2397",
                "Version: 6.1.100-1\nInstalled-Size: 2397",
            ),
            "amd64",
        );
        let err = resolve_debian_headers(&arm64, Some(&host), "6.1.0-56-arm64")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux-kbuild-6.1 (>= 6.1.192-2)") && err.contains("(amd64)"),
            "{err}"
        );
    }

    /// A Packages stanza of the Debian archive's `pool/main/l/linux/`.
    fn stanza(package: &str, version: &str, arch: &str, depends: &str) -> String {
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: {arch}\nDepends: {depends}\n\
             Filename: pool/main/l/linux/{package}_{version}_{arch}.deb\nSize: 1000\nSHA256: {}\n\n",
            "ab".repeat(32)
        )
    }

    #[test]
    fn experimental_takes_what_it_lacks_from_sid() {
        assert_eq!(overlaid_suite("experimental"), Some("sid"));
        assert_eq!(overlaid_suite("rc-buggy"), Some("sid"));
        assert_eq!(overlaid_suite("sid"), None);
        assert_eq!(overlaid_suite("trixie-backports"), None);
        let v = "7.3~rc7-1~exp1";
        let headers = stanza(
            "linux-headers-7.3-arm64",
            v,
            "arm64",
            &format!("linux-headers-7.3-common (= {v}), linux-kbuild-7.3"),
        );
        let parse = |text: &str, suite: &str, arch: &str| {
            PackageIndex::parse(text, "http://m.invalid/debian", suite, arch).unwrap()
        };
        // experimental carries the flavour headers and kbuild; the common headers only sid has.
        let exp = parse(
            &(headers.clone() + &stanza("linux-kbuild-7.3", v, "arm64", "libc6")),
            "experimental",
            "arm64",
        );
        let sid = parse(
            &(stanza("linux-headers-7.3-common", v, "all", "")
                + &stanza("linux-kbuild-7.3", "7.2-1", "arm64", "libc6")),
            "sid",
            "arm64",
        );
        let err = resolve_debian_headers(&exp, None, "7.3-arm64").unwrap_err();
        assert!(err.to_string().contains("experimental (arm64)"), "{err}");
        let flavour = exp.newest("linux-headers-7.3-arm64").unwrap();
        let got = resolve_stanza_over(&exp, &sid, flavour).unwrap();
        assert_eq!(got.abi, "7.3");
        assert_eq!(
            names(&got.packages),
            [
                "linux-headers-7.3-arm64=7.3~rc7-1~exp1",
                "linux-headers-7.3-common=7.3~rc7-1~exp1",
                "linux-kbuild-7.3=7.3~rc7-1~exp1",
            ]
        );
        // experimental's own kbuild wins over sid's; the common headers are sid's.
        let listed_in = |index: &PackageIndex, p: &HeaderPackage| {
            index.packages.iter().any(|s| {
                Some(&s.package) == p.package.as_ref() && Some(&s.version) == p.version.as_ref()
            })
        };
        assert!(listed_in(&exp, &got.packages[2]) && !listed_in(&exp, &got.packages[1]));
        assert!(listed_in(&sid, &got.packages[1]));

        // Missing everywhere: both suites are named.
        let err = resolve_stanza_over(&exp, &parse("", "sid", "arm64"), flavour)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("linux-headers-7.3-common (= 7.3~rc7-1~exp1)")
                && err.contains("experimental (arm64) or sid (arm64)"),
            "{err}"
        );
    }

    #[test]
    fn common_abi_names() {
        assert_eq!(
            common_abi("linux-headers-6.1.0-56-common"),
            Some("6.1.0-56")
        );
        assert_eq!(
            common_abi("linux-headers-6.1.0-56-common-rt"),
            Some("6.1.0-56")
        );
        assert_eq!(
            common_abi("linux-headers-6.12.117+deb12-common"),
            Some("6.12.117+deb12")
        );
        assert_eq!(common_abi("linux-headers-amd64"), None);
        assert_eq!(common_abi("linux-headers--common"), None);
        assert_eq!(common_abi("linux-kbuild-6.1"), None);
    }
}
