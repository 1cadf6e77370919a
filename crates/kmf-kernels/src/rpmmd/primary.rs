//! Primary metadata (`primary.xml`): one `<package>` per RPM, streamed so that only the kept ones are
//! held in memory (Fedora's Everything primary is over 100 MB of XML).

use std::io::BufRead;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::attr;
use super::repomd::{parse_digest, Digest};
use crate::KernelsError;

/// One binary package of a primary metadata file, reduced to what kmodfarm uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    pub arch: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    /// The package file's digest (`<checksum pkgid="YES">`).
    pub checksum: Digest,
    pub size: u64,
    /// Relative to the repository root, or to `location_base` when that is set. May climb out of the
    /// repository (`../../blobstore/...` in Amazon Linux 2's repositories).
    pub location_href: String,
    /// `xml:base` of `<location>`: another root URL for this package.
    pub location_base: Option<String>,
}

impl RpmPackage {
    /// `version-release`, with `epoch:` in front when the epoch is not 0, as rpm prints EVRs.
    pub fn evr(&self) -> String {
        if self.epoch == 0 {
            format!("{}-{}", self.version, self.release)
        } else {
            format!("{}:{}-{}", self.epoch, self.version, self.release)
        }
    }

    /// What `uname -r` prints on the kernel a `kernel-devel` package belongs to: `version-release.arch`
    /// (`6.5.6-300.fc39.x86_64`, `5.10.205-195.807.amzn2.x86_64`).
    pub fn kernel_release(&self) -> String {
        format!("{}-{}.{}", self.version, self.release, self.arch)
    }
}

#[derive(Default)]
struct Partial {
    name: Option<String>,
    arch: Option<String>,
    evr: Option<(u64, String, String)>,
    checksum: Option<(String, String)>,
    size: Option<u64>,
    location: Option<(String, Option<String>)>,
}

/// Parses primary metadata streamed from `reader`, keeping the packages whose name `keep` accepts.
/// A kept package missing a field, or with a digest kmodfarm cannot verify, is an error naming it.
pub fn parse_primary(
    reader: impl BufRead,
    source_name: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<RpmPackage>, KernelsError> {
    let bad = |msg: String| KernelsError::RepoMetadata {
        url: source_name.to_string(),
        msg,
    };
    let mut reader = Reader::from_reader(reader);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut saw_root = false;
    let mut pkg: Option<Partial> = None;
    // Depth inside <package>: only its direct children are fields (the <format> block nests
    // rpm:entry elements named like nothing here, but be exact anyway).
    let mut depth = 0usize;
    let mut text_of: Option<&'static str> = None;
    let mut checksum_type = String::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                text_of = None;
                match name.as_ref() {
                    b"metadata" if pkg.is_none() => saw_root = true,
                    b"package" if pkg.is_none() => {
                        pkg = Some(Partial::default());
                        depth = 0;
                        if empty {
                            return Err(bad("empty <package> element".into()));
                        }
                        buf.clear();
                        continue;
                    }
                    _ => {}
                }
                if let Some(p) = pkg.as_mut() {
                    if depth == 0 {
                        match name.as_ref() {
                            b"name" => text_of = Some("name"),
                            b"arch" => text_of = Some("arch"),
                            b"checksum" => {
                                checksum_type = attr(e, b"type").unwrap_or_default();
                                text_of = Some("checksum");
                            }
                            b"version" => {
                                let epoch = match attr(e, b"epoch") {
                                    Some(s) if !s.is_empty() => {
                                        s.parse().map_err(|_| bad(format!("bad epoch {s:?}")))?
                                    }
                                    _ => 0,
                                };
                                p.evr = Some((
                                    epoch,
                                    attr(e, b"ver").unwrap_or_default(),
                                    attr(e, b"rel").unwrap_or_default(),
                                ));
                            }
                            b"size" => {
                                if let Some(s) = attr(e, b"package") {
                                    p.size = Some(
                                        s.parse().map_err(|_| bad(format!("bad size {s:?}")))?,
                                    );
                                }
                            }
                            b"location" => {
                                p.location = attr(e, b"href").map(|h| (h, attr(e, b"base")));
                            }
                            _ => {}
                        }
                    }
                    if !empty {
                        depth += 1;
                    }
                }
            }
            Event::Text(t) => {
                if let (Some(field), Some(p)) = (text_of, pkg.as_mut()) {
                    let text = t
                        .unescape()
                        .map_err(|e| bad(format!("bad text: {e}")))?
                        .trim()
                        .to_string();
                    match field {
                        "name" => p.name = Some(text),
                        "arch" => p.arch = Some(text),
                        "checksum" => p.checksum = Some((checksum_type.clone(), text)),
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                text_of = None;
                if pkg.is_some() {
                    if depth == 0 && e.local_name().as_ref() == b"package" {
                        let p = pkg.take().unwrap_or_default();
                        if let Some(kept) = finish(p, &keep).map_err(bad)? {
                            out.push(kept);
                        }
                    } else {
                        depth = depth.saturating_sub(1);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if pkg.is_some() {
        return Err(bad("truncated: a <package> element is not closed".into()));
    }
    if !saw_root {
        return Err(bad("no <metadata> element: not primary metadata".into()));
    }
    Ok(out)
}

fn finish(p: Partial, keep: &impl Fn(&str) -> bool) -> Result<Option<RpmPackage>, String> {
    let name = p.name.ok_or("a <package> has no <name>")?;
    if !keep(&name) {
        return Ok(None);
    }
    let missing = |what: &str| format!("package {name} has no {what}");
    let arch = p.arch.ok_or_else(|| missing("<arch>"))?;
    let (epoch, version, release) = p.evr.ok_or_else(|| missing("<version>"))?;
    if version.is_empty() || release.is_empty() {
        return Err(missing("ver/rel in <version>"));
    }
    let (algo, hex) = p.checksum.ok_or_else(|| missing("<checksum>"))?;
    let checksum = parse_digest(&algo, &hex).map_err(|e| format!("package {name}: {e}"))?;
    let size = p.size.ok_or_else(|| missing("<size package=...>"))?;
    let (href, base) = p.location.ok_or_else(|| missing("<location>"))?;
    Ok(Some(RpmPackage {
        name,
        arch,
        epoch,
        version,
        release,
        checksum,
        size,
        location_href: href,
        location_base: base,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// createrepo_c's layout, with a package whose `<format>` block nests elements named like fields.
    pub(crate) const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="3">
<package type="rpm">
  <name>kernel-devel</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="6.5.6" rel="300.fc39"/>
  <checksum type="sha256" pkgid="YES">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
  <summary>Development package for building kernel modules to match the kernel</summary>
  <packager>Fedora Project</packager>
  <url>https://www.kernel.org/</url>
  <time file="1696800000" build="1696700000"/>
  <size package="19000000" installed="70000000" archive="71000000"/>
  <location href="Packages/k/kernel-devel-6.5.6-300.fc39.x86_64.rpm"/>
  <format>
    <rpm:license>GPL-2.0-only</rpm:license>
    <rpm:provides>
      <rpm:entry name="kernel-devel" flags="EQ" epoch="0" ver="6.5.6" rel="300.fc39"/>
    </rpm:provides>
    <name>not-the-name</name>
  </format>
</package>
<package type="rpm">
  <name>kernel-headers</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="6.5.6" rel="300.fc39"/>
  <checksum type="sha1" pkgid="YES">bbbb</checksum>
  <size package="1" installed="1" archive="1"/>
  <location href="Packages/k/kernel-headers-6.5.6-300.fc39.x86_64.rpm"/>
</package>
<package type="rpm">
  <name>kernel-devel</name>
  <arch>aarch64</arch>
  <version epoch="2" ver="5.10.205" rel="195.807.amzn2"/>
  <checksum type="sha256" pkgid="YES">CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC</checksum>
  <size package="20" installed="1" archive="1"/>
  <location xml:base="http://other.invalid/root/" href="../../blobstore/cccc/kernel-devel-5.10.205-195.807.amzn2.aarch64.rpm"/>
</package>
</metadata>
"#;

    #[test]
    fn keeps_only_wanted_packages_with_their_fields() {
        let pkgs = parse_primary(PRIMARY.as_bytes(), "p", |n| n == "kernel-devel").unwrap();
        assert_eq!(pkgs.len(), 2);
        let p = &pkgs[0];
        assert_eq!(p.name, "kernel-devel");
        assert_eq!(p.kernel_release(), "6.5.6-300.fc39.x86_64");
        assert_eq!(p.evr(), "6.5.6-300.fc39");
        assert_eq!(p.size, 19_000_000);
        assert_eq!(
            p.location_href,
            "Packages/k/kernel-devel-6.5.6-300.fc39.x86_64.rpm"
        );
        assert_eq!(p.location_base, None);
        let q = &pkgs[1];
        assert_eq!(q.evr(), "2:5.10.205-195.807.amzn2");
        assert_eq!(q.kernel_release(), "5.10.205-195.807.amzn2.aarch64");
        assert_eq!(q.checksum.hex, "c".repeat(64));
        assert_eq!(
            q.location_base.as_deref(),
            Some("http://other.invalid/root/")
        );
    }

    #[test]
    fn an_unverifiable_kept_package_is_an_error_others_are_not_looked_at() {
        let e = parse_primary(PRIMARY.as_bytes(), "p.xml", |n| n.starts_with("kernel-"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel-headers") && e.contains("\"sha1\""),
            "{e}"
        );
    }

    #[test]
    fn malformed_input() {
        let truncated = &PRIMARY[..PRIMARY.len() / 2];
        assert!(parse_primary(truncated.as_bytes(), "p", |_| true).is_err());
        let e = parse_primary(&b"<html/>"[..], "p", |_| true).unwrap_err();
        assert!(e.to_string().contains("not primary metadata"), "{e}");
        let no_size = PRIMARY.replace(
            r#"<size package="19000000" installed="70000000" archive="71000000"/>"#,
            "",
        );
        let e = parse_primary(no_size.as_bytes(), "p", |n| n == "kernel-devel").unwrap_err();
        assert!(e.to_string().contains("<size"), "{e}");
    }
}
