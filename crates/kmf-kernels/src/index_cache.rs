//! The content-addressed cache of compressed repository indices (`<cache>/indexes/<algo>-<hex>`): an
//! index whose digest the repository still announces is read from disk, not downloaded again.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The cached file's bytes if their SHA256 is still `sha` (a damaged cache entry is ignored and replaced).
pub(crate) fn read_verified(path: &Path, sha: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    (hex::encode(Sha256::digest(&bytes)) == sha).then_some(bytes)
}

/// Writes through a temporary file in the same directory, so that a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
