//! Cache layout:
//!
//! ```text
//! <root>/sha256/<hex[0..2]>/<hex>      content whose digest was known before download
//! <root>/by-name/<file_name>           content known only by URL (kernel-crawler lists)
//! <root>/meta/by-name/<file_name>      its sidecar: "sha256 <hex>\nsize <n>\n"
//! <root>/partial/<id>.part             interrupted download, resumed with a Range request
//! <root>/partial/<id>.part.validator   ETag/Last-Modified the part was fetched under (If-Range)
//! <root>/locks/<id>.lock               flock(2) held while downloading <id>
//! ```
//!
//! Nothing reaches `sha256/` or `by-name/` before it is complete and verified: the part is renamed
//! into place only after its digest (and size) checked out.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::FetchError;
use crate::Download;

/// Longest accepted file name: leaves room for the `name-` / `.part.validator` decorations
/// within the usual 255-byte name limit.
const MAX_FILE_NAME: usize = 200;

/// How a download is found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheKey {
    /// Lower-case hex SHA256, known in advance.
    Digest(String),
    /// Only the URL-independent file name is known; the digest is recorded after download.
    Name(String),
}

impl CacheKey {
    pub(crate) fn for_download(download: &Download) -> Result<Self, FetchError> {
        validate_file_name(&download.file_name)?;
        match &download.sha256 {
            Some(sha) => {
                let lower = sha.trim().to_ascii_lowercase();
                if lower.len() != 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FetchError::InvalidSha256 {
                        file_name: download.file_name.clone(),
                        value: sha.clone(),
                    });
                }
                Ok(CacheKey::Digest(lower))
            }
            None => Ok(CacheKey::Name(download.file_name.clone())),
        }
    }

    /// A name unique to this key, safe as a file name.
    pub(crate) fn id(&self) -> String {
        match self {
            CacheKey::Digest(hex) => format!("sha256-{hex}"),
            CacheKey::Name(name) => format!("name-{name}"),
        }
    }

    pub(crate) fn final_path(&self, root: &Path) -> PathBuf {
        match self {
            CacheKey::Digest(hex) => root.join("sha256").join(&hex[..2]).join(hex),
            CacheKey::Name(name) => root.join("by-name").join(name),
        }
    }

    /// Where the URL the file was downloaded from is kept: a cache hit reports the same source as the
    /// download did, so that records of a package do not depend on the state of the cache.
    pub(crate) fn source_path(&self, root: &Path) -> PathBuf {
        match self {
            CacheKey::Digest(hex) => root.join("meta/source/sha256").join(hex),
            CacheKey::Name(name) => root.join("meta/source/by-name").join(name),
        }
    }

    pub(crate) fn sidecar_path(&self, root: &Path) -> Option<PathBuf> {
        match self {
            CacheKey::Digest(_) => None,
            CacheKey::Name(name) => Some(root.join("meta").join("by-name").join(name)),
        }
    }

    pub(crate) fn partial_path(&self, root: &Path) -> PathBuf {
        root.join("partial").join(format!("{}.part", self.id()))
    }

    pub(crate) fn lock_path(&self, root: &Path) -> PathBuf {
        root.join("locks").join(format!("{}.lock", self.id()))
    }

    pub(crate) fn expected_sha256(&self) -> Option<&str> {
        match self {
            CacheKey::Digest(hex) => Some(hex),
            CacheKey::Name(_) => None,
        }
    }
}

/// Path of the If-Range validator kept beside a part file.
pub(crate) fn validator_path(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_owned();
    s.push(".validator");
    PathBuf::from(s)
}

fn validate_file_name(name: &str) -> Result<(), FetchError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("is a path component")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.len() > MAX_FILE_NAME {
        Some("longer than 200 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FetchError::InvalidFileName {
            file_name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// What the sidecar of a by-name entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sidecar {
    pub sha256: String,
    pub size: u64,
}

impl Sidecar {
    pub(crate) fn render(&self) -> String {
        format!("sha256 {}\nsize {}\n", self.sha256, self.size)
    }

    pub(crate) fn parse(text: &str) -> Option<Sidecar> {
        let mut sha256 = None;
        let mut size = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("sha256", v)) => sha256 = Some(v.trim().to_string()),
                Some(("size", v)) => size = v.trim().parse().ok(),
                _ => {}
            }
        }
        let sha256 = sha256?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Sidecar {
            sha256,
            size: size?,
        })
    }
}

/// SHA256 and length of a file, read in large blocks.
pub(crate) fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let len = hash_into(path, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// Feeds a file into `hasher`; returns its length.
pub(crate) fn hash_into(path: &Path, hasher: &mut Sha256) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(len),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

/// Writes `contents` to `path` so that readers see the old file or the complete new one.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(name: &str, sha: Option<&str>) -> Download {
        Download {
            file_name: name.into(),
            sha256: sha.map(str::to_string),
            size: None,
            urls: vec![],
        }
    }

    #[test]
    fn digest_layout_uses_two_hex_fanout_and_lowercase() {
        let sha = "AB".repeat(32);
        let key = CacheKey::for_download(&dl("x.deb", Some(&sha))).unwrap();
        let root = Path::new("/c");
        let lower = "ab".repeat(32);
        assert_eq!(
            key.final_path(root),
            PathBuf::from(format!("/c/sha256/ab/{lower}"))
        );
        assert_eq!(
            key.partial_path(root),
            PathBuf::from(format!("/c/partial/sha256-{lower}.part"))
        );
        assert_eq!(key.sidecar_path(root), None);
    }

    #[test]
    fn name_layout_has_a_sidecar() {
        let key = CacheKey::for_download(&dl("linux-headers.deb", None)).unwrap();
        let root = Path::new("/c");
        assert_eq!(
            key.final_path(root),
            PathBuf::from("/c/by-name/linux-headers.deb")
        );
        assert_eq!(
            key.sidecar_path(root),
            Some(PathBuf::from("/c/meta/by-name/linux-headers.deb"))
        );
    }

    #[test]
    fn hostile_names_and_digests_are_refused() {
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\nb"] {
            let err = CacheKey::for_download(&dl(name, None)).unwrap_err();
            assert!(
                matches!(err, FetchError::InvalidFileName { .. }),
                "{name:?}: {err}"
            );
        }
        let long = "a".repeat(201);
        assert!(CacheKey::for_download(&dl(&long, None)).is_err());
        for sha in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(65),
            "../../etc/passwd",
        ] {
            let err = CacheKey::for_download(&dl("x", Some(sha))).unwrap_err();
            assert!(matches!(err, FetchError::InvalidSha256 { .. }), "{sha:?}");
        }
    }

    #[test]
    fn sidecar_round_trips_and_rejects_garbage() {
        let s = Sidecar {
            sha256: "0".repeat(64),
            size: 42,
        };
        assert_eq!(Sidecar::parse(&s.render()), Some(s));
        assert_eq!(Sidecar::parse("sha256 xyz\nsize 1\n"), None);
        assert_eq!(
            Sidecar::parse(&format!("sha256 {}\n", "0".repeat(64))),
            None
        );
        assert_eq!(Sidecar::parse(""), None);
    }

    #[test]
    fn hash_file_matches_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (sha, len) = hash_file(&p).unwrap();
        assert_eq!(len, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
