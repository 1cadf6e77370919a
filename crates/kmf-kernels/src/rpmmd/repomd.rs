//! `repodata/repomd.xml`: which metadata files a yum/dnf repository has, with their digests.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::KernelsError;

/// One `<data type="...">` record of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoData {
    /// `primary`, `filelists`, `primary_db`, `primary_zck`, ...
    pub kind: String,
    /// Relative to the repository root (`repodata/<digest>-primary.xml.zst`).
    pub href: String,
    pub checksum: Digest,
    /// Size of the compressed file, when given (createrepo_c always gives it; old yum did not).
    pub size: Option<u64>,
}

/// A digest as rpm-md metadata writes it: the algorithm name and lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algorithm: DigestAlgorithm,
    pub hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithms rpm-md uses that kmodfarm can verify. `sha`/`sha1` and `md5` (yum 3 era) are
    /// refused rather than trusted unverified.
    pub fn parse(name: &str) -> Option<DigestAlgorithm> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(DigestAlgorithm::Sha256),
            "sha512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    pub fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }

    pub fn digest_hex(self, bytes: &[u8]) -> String {
        use sha2::Digest as _;
        match self {
            DigestAlgorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            DigestAlgorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        }
    }
}

/// A `<data>` being read: (kind, href, checksum (type, text), size) collected so far.
type PartialData = (
    String,
    Option<String>,
    Option<(String, String)>,
    Option<u64>,
);

/// Parses repomd.xml. Every `<data>` needs a location and a verifiable checksum; a repository whose
/// metadata cannot be verified is an error, not something to read on trust.
pub fn parse_repomd(xml: &[u8], url: &str) -> Result<Vec<RepoData>, KernelsError> {
    let bad = |msg: String| KernelsError::RepoMetadata {
        url: url.to_string(),
        msg,
    };
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut saw_root = false;
    let mut current: Option<PartialData> = None;
    let mut text_of: Option<&'static str> = None;
    let mut checksum_type = String::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                let attr = |key: &[u8]| super::attr(&e, key);
                match name.as_ref() {
                    b"repomd" => saw_root = true,
                    b"data" => {
                        current = Some((attr(b"type").unwrap_or_default(), None, None, None))
                    }
                    b"location" => {
                        if let Some(c) = current.as_mut() {
                            c.1 = attr(b"href");
                        }
                    }
                    b"checksum" if current.is_some() => {
                        checksum_type = attr(b"type").unwrap_or_default();
                        text_of = Some("checksum");
                    }
                    b"size" if current.is_some() => text_of = Some("size"),
                    _ => text_of = None,
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| bad(format!("bad text: {e}")))?
                    .trim()
                    .to_string();
                if let (Some(field), Some(c)) = (text_of, current.as_mut()) {
                    match field {
                        "checksum" => c.2 = Some((checksum_type.clone(), text)),
                        "size" => {
                            c.3 = Some(
                                text.parse()
                                    .map_err(|_| bad(format!("bad size {text:?}")))?,
                            )
                        }
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                text_of = None;
                if e.local_name().as_ref() == b"data" {
                    let (kind, href, checksum, size) = current.take().unwrap_or_default();
                    let href =
                        href.ok_or_else(|| bad(format!("<data type={kind:?}> has no location")))?;
                    let (algo, hex) = checksum
                        .ok_or_else(|| bad(format!("<data type={kind:?}> has no checksum")))?;
                    out.push(RepoData {
                        kind,
                        href,
                        checksum: parse_digest(&algo, &hex).map_err(bad)?,
                        size,
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if current.is_some() {
        return Err(bad("truncated: a <data> element is not closed".into()));
    }
    if !saw_root {
        return Err(bad("no <repomd> element: not a repomd.xml".into()));
    }
    Ok(out)
}

/// Checks an rpm-md `(type, hex)` pair.
pub(crate) fn parse_digest(algorithm: &str, hex: &str) -> Result<Digest, String> {
    let algo = DigestAlgorithm::parse(algorithm).ok_or_else(|| {
        format!("checksum type {algorithm:?} is not supported (sha256 and sha512 are)")
    })?;
    let hex = hex.trim().to_ascii_lowercase();
    if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("malformed {algorithm} checksum {hex:?}"));
    }
    Ok(Digest {
        algorithm: algo,
        hex,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The shape createrepo_c writes (trimmed to two records).
    pub(crate) const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1732000000</revision>
  <data type="primary">
    <checksum type="sha256">6a1c2f4f3a6b2d2e0c9a1c4d9b0b7e7c1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f</checksum>
    <open-checksum type="sha256">0000000000000000000000000000000000000000000000000000000000000000</open-checksum>
    <location href="repodata/6a1c2f4f3a6b2d2e0c9a1c4d9b0b7e7c1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f-primary.xml.zst"/>
    <timestamp>1732000000</timestamp>
    <size>1234</size>
    <open-size>5678</open-size>
  </data>
  <data type="primary_db">
    <checksum type="sha256">1111111111111111111111111111111111111111111111111111111111111111</checksum>
    <location href="repodata/1111-primary.sqlite.bz2"/>
    <size>99</size>
    <database_version>10</database_version>
  </data>
</repomd>
"#;

    #[test]
    fn parses_createrepo_output() {
        let data = parse_repomd(REPOMD.as_bytes(), "r").unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].kind, "primary");
        assert!(data[0].href.ends_with("-primary.xml.zst"));
        assert_eq!(data[0].size, Some(1234));
        assert_eq!(data[0].checksum.algorithm, DigestAlgorithm::Sha256);
        assert!(data[0].checksum.hex.starts_with("6a1c2f"));
        assert_eq!(data[1].kind, "primary_db");
    }

    #[test]
    fn refuses_unverifiable_or_malformed_metadata() {
        let sha1 = REPOMD.replace(
            r#"<checksum type="sha256">6a1c"#,
            r#"<checksum type="sha">6a1c"#,
        );
        let e = parse_repomd(sha1.as_bytes(), "http://r/repodata/repomd.xml").unwrap_err();
        assert!(e.to_string().contains("\"sha\" is not supported"), "{e}");
        let short = REPOMD.replace(
            "6a1c2f4f3a6b2d2e0c9a1c4d9b0b7e7c1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f</checksum>",
            "6a1c</checksum>",
        );
        assert!(parse_repomd(short.as_bytes(), "r").is_err());
        assert!(parse_repomd(b"<html><body>404</body></html>", "r")
            .unwrap_err()
            .to_string()
            .contains("not a repomd.xml"));
        assert!(parse_repomd(b"<repomd><data type='primary'>", "r")
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let no_loc = REPOMD.replace(r#"<location href="repodata/1111-primary.sqlite.bz2"/>"#, "");
        assert!(parse_repomd(no_loc.as_bytes(), "r")
            .unwrap_err()
            .to_string()
            .contains("primary_db"));
    }
}
