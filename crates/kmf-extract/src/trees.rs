//! One extracted tree per package, shared by every build that needs it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::ExtractError;
use crate::{extract_package, ExtractLimits};

/// Extracted package trees under one root: `<root>/<key>/`, where the key is the package's SHA256.
/// A tree, once there, is complete: it is extracted beside its final place and renamed.
#[derive(Debug, Clone)]
pub struct PackageTrees {
    root: PathBuf,
    limits: ExtractLimits,
}

impl PackageTrees {
    /// Trees under `root` (created on first use), with the default [`ExtractLimits`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PackageTrees {
            root: root.into(),
            limits: ExtractLimits::default(),
        }
    }

    /// Uses `limits` for every extraction.
    pub fn with_limits(mut self, limits: ExtractLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The directory holding the trees.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Extracts the package once into `<root>/<key>/` (key = its sha256) and returns that directory.
    /// Atomic: extracts into a temporary directory beside it, then renames; concurrent callers for
    /// the same key (threads or processes) serialise on a lock file and extract once.
    pub fn tree(&self, package: &Path, key: &str) -> Result<PathBuf, ExtractError> {
        validate_key(key)?;
        let target = self.root.join(key);
        if is_real_dir(&target) {
            return Ok(target);
        }
        let locks = self.root.join(".locks");
        fs::create_dir_all(&locks).map_err(|e| ExtractError::io(&locks, e))?;
        let lock_path = locks.join(format!("{key}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ExtractError::io(&lock_path, e))?;
        // flock locks an open file description, so threads of one process exclude each other too.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| ExtractError::io(&lock_path, e.into()))?;
        if is_real_dir(&target) {
            return Ok(target);
        }

        let prefix = format!(".tmp-{key}-");
        self.remove_stale(&prefix)?;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&self.root)
            .map_err(|e| ExtractError::io(&self.root, e))?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| ExtractError::io(tmp.path(), e))?;
        let started = std::time::Instant::now();
        let report = match extract_package(package, tmp.path(), &self.limits) {
            Ok(r) => r,
            Err(e) => {
                remove_tree(tmp.path());
                return Err(e);
            }
        };
        // Make the contents durable before the rename publishes them.
        let dir = File::open(tmp.path()).map_err(|e| ExtractError::io(tmp.path(), e))?;
        rustix::fs::syncfs(&dir).map_err(|e| ExtractError::io(tmp.path(), e.into()))?;
        drop(dir);
        let tmp_path = tmp.keep();
        if let Err(e) = fs::rename(&tmp_path, &target) {
            remove_tree(&tmp_path);
            return Err(ExtractError::io(&target, e));
        }
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| ExtractError::io(&self.root, e))?;
        tracing::info!(
            package = %package.display(),
            tree = %target.display(),
            files = report.files,
            symlinks = report.symlinks,
            bytes = report.bytes,
            skipped = report.skipped.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "extracted package"
        );
        for (member, why) in &report.skipped {
            tracing::warn!(package = %package.display(), member, why, "member skipped");
        }
        drop(lock);
        Ok(target)
    }

    /// Leftovers of extractions of this key that died (we hold its lock: nobody is running one).
    fn remove_stale(&self, prefix: &str) -> Result<(), ExtractError> {
        let entries = fs::read_dir(&self.root).map_err(|e| ExtractError::io(&self.root, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                tracing::debug!(path = %entry.path().display(), "removing stale extraction");
                remove_tree(&entry.path());
            }
        }
        Ok(())
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// Removes a tree whose directories may be read-only (packages ship 0555 directories).
fn remove_tree(path: &Path) {
    fn make_writable(dir: &Path) -> io::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                make_writable(&entry.path())?;
            }
        }
        Ok(())
    }
    if fs::remove_dir_all(path).is_err() {
        let _ = make_writable(path);
        if let Err(e) = fs::remove_dir_all(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove temporary tree");
        }
    }
}

fn validate_key(key: &str) -> Result<(), ExtractError> {
    let reason = if key.is_empty() {
        Some("empty")
    } else if key.len() > 128 {
        Some("longer than 128 characters")
    } else if key.starts_with('.') {
        Some("starts with a dot")
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ExtractError::InvalidKey {
            key: key.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_plain_names() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(
                matches!(validate_key(bad), Err(ExtractError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        validate_key(&"0123456789abcdef".repeat(4)).unwrap();
        validate_key("linux-headers_6.1.0-28.deb").unwrap();
    }
}
