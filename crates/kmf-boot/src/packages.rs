//! The packages a boot needs, found through the apt index of the mirror: the kernel image of the release
//! under test and busybox-static for the guest's architecture.

use kmf_fetch::Download;
use kmf_kernels::apt::{self, PackageIndex, PackageStanza};

/// Package indexes of the mirror, each fetched at most once per [`crate::BootTester`].
pub(crate) type Indexes = apt::IndexSet;

/// The suite a `-security` or `-updates` suite builds on (`bookworm-security` → `bookworm`).
pub(crate) fn base_suite(suite: &str) -> &str {
    for suffix in [
        "-security",
        "/updates",
        "-updates",
        "-proposed-updates",
        "-backports",
    ] {
        if let Some(base) = suite.strip_suffix(suffix) {
            return base;
        }
    }
    suite
}

/// Suites to search for a kernel image, in order: the variant's own, its base suite, the base's security
/// suite (a point release moves a kernel from security into the base suite).
fn image_suites(suite: &str) -> Vec<String> {
    let base = base_suite(suite);
    let mut out = vec![suite.to_string()];
    for s in [base.to_string(), format!("{base}-security")] {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Package names holding the image of `release`: Debian's signed package, then the unsigned one.
pub(crate) fn image_package_names(release: &str) -> [String; 2] {
    [
        format!("linux-image-{release}"),
        format!("linux-image-{release}-unsigned"),
    ]
}

fn download_of(index: &PackageIndex, p: &PackageStanza) -> Download {
    Download {
        file_name: p
            .filename
            .rsplit('/')
            .next()
            .unwrap_or(&p.filename)
            .to_string(),
        sha256: (!p.sha256.is_empty()).then(|| p.sha256.clone()),
        size: Some(p.size),
        urls: vec![index.url(p)],
    }
}

/// Packages an image package of Linux 7 and later depends on for what older images carried themselves: the
/// kernel (`linux-binary-<release>`, at `usr/lib/modules/<release>/vmlinuz`), its modules
/// (`linux-modules-<release>`) and its config and System.map (`linux-base-<release>`).
fn split_parts(release: &str) -> [String; 3] {
    [
        format!("linux-binary-{release}"),
        format!("linux-modules-{release}"),
        format!("linux-base-{release}"),
    ]
}

/// The kernel image package of `release` (at `version` when given) for `deb_arch`, searched through
/// the apt indexes of `suite` and its relatives, first; then, for a split image (Linux 7 on), the packages
/// of [`split_parts`] it depends on, from the same index at the versions it names.
pub(crate) async fn kernel_image(
    indexes: &Indexes,
    suite: &str,
    deb_arch: &str,
    release: &str,
    version: Option<&str>,
) -> Result<Vec<Download>, String> {
    let (index, image) = image_stanza(indexes, suite, deb_arch, release, version).await?;
    let mut out = vec![download_of(&index, &image)];
    for part in split_parts(release) {
        let Some(dep) = image.depends.iter().find(|d| d.name == part) else {
            continue;
        };
        let stanza = index.satisfying(dep).ok_or_else(|| {
            format!(
                "{} depends on {part}, which {} does not list",
                image.package, index.suite
            )
        })?;
        out.push(download_of(&index, stanza));
    }
    Ok(out)
}

/// The image package's stanza and the index it was found in.
async fn image_stanza(
    indexes: &Indexes,
    suite: &str,
    deb_arch: &str,
    release: &str,
    version: Option<&str>,
) -> Result<(std::sync::Arc<PackageIndex>, PackageStanza), String> {
    let names = image_package_names(release);
    let mut errors = Vec::new();
    let mut fallback: Option<(std::sync::Arc<PackageIndex>, PackageStanza)> = None;
    for s in image_suites(suite) {
        let index = match indexes.get(&s, deb_arch).await {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("{s}: {e}"));
                continue;
            }
        };
        for name in &names {
            let stanzas = index.versions_of(name);
            if let Some(p) = stanzas
                .iter()
                .find(|p| version.is_none_or(|v| p.version == v))
            {
                let p = (*p).clone();
                return Ok((index, p));
            }
            if fallback.is_none() {
                fallback = index.newest(name).map(|p| (index.clone(), p.clone()));
            }
        }
    }
    // Same release (the ABI name), another upload: good enough to load modules built for the release.
    if let Some((index, p)) = fallback {
        tracing::warn!(
            release,
            version,
            package = %p.package,
            found = %p.version,
            "no kernel image at the exact package version; using another upload of the same release"
        );
        return Ok((index, p));
    }
    let mut msg = format!(
        "no {} package for {deb_arch} in {suite} (or its base and security suites)",
        names[0]
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; index errors: {}", errors.join("; ")));
    }
    Err(msg)
}

/// busybox-static for `deb_arch`, from the base suite of `suite`; experimental carries only what differs
/// from sid, so for it sid's.
pub(crate) async fn busybox(
    indexes: &Indexes,
    suite: &str,
    deb_arch: &str,
) -> Result<Download, String> {
    let base = base_suite(suite);
    let mut suites = vec![base];
    if matches!(base, "experimental" | "rc-buggy") {
        suites.push("sid");
    }
    for s in &suites {
        let index = indexes.get(s, deb_arch).await?;
        if let Some(p) = index.newest("busybox-static") {
            return Ok(download_of(&index, p));
        }
    }
    Err(format!(
        "no busybox-static package for {deb_arch} in {}",
        suites.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites() {
        assert_eq!(base_suite("bookworm-security"), "bookworm");
        assert_eq!(base_suite("buster/updates"), "buster");
        assert_eq!(base_suite("trixie"), "trixie");
        assert_eq!(
            image_suites("bookworm-security"),
            ["bookworm-security", "bookworm"]
        );
        assert_eq!(image_suites("bookworm"), ["bookworm", "bookworm-security"]);
        assert_eq!(
            image_package_names("6.1.0-56-amd64"),
            [
                "linux-image-6.1.0-56-amd64",
                "linux-image-6.1.0-56-amd64-unsigned"
            ]
        );
    }
}
