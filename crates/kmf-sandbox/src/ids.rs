//! The unprivileged host uids that bubblewrap runs as, one per concurrent run.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::SandboxError;

/// First host uid (and gid) used for sandboxed builds when kmodfarm runs as root; run `n` of those running
/// at the same time uses `SANDBOX_UID_BASE + n`. The range lies above the ranges systemd hands out to
/// containers and below 2^31, so no other user owns files with these ids and no tool mistakes them for
/// negative numbers.
pub const SANDBOX_UID_BASE: u32 = 2_100_000_000;

/// How many runs may hold a uid at once; when all are taken, further runs use the mapped-root mode.
const SLOTS: u32 = 1024;

static USED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Where the machine-wide locks of the uids live: root's own runtime directory, so that no other user can
/// plant files there.
const LOCK_DIR: &str = "/run/kmodfarm-sandbox-uids";

/// A uid reserved for one run; released on drop. Reserved within this process and, through a lock file
/// under [`LOCK_DIR`], across kmodfarm processes on the machine: processes of two runs sharing a uid would
/// share one `RLIMIT_NPROC` budget, and one run's fork bomb would starve the other.
#[derive(Debug)]
pub(crate) struct UidSlot {
    slot: u32,
    _lock: Option<std::fs::File>,
}

/// The lock directory, made once; `None` where it cannot be (then slots are only unique in-process).
fn lock_dir() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::DirBuilderExt;
        let dir = PathBuf::from(LOCK_DIR);
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let ok = match made {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::symlink_metadata(&dir)
                    .is_ok_and(|m| m.is_dir() && m.uid() == crate::sys::effective_uid())
            }
            Err(_) => false,
        };
        if !ok {
            tracing::debug!(
                dir = LOCK_DIR,
                "no machine-wide uid locks; uids are unique within this process only"
            );
        }
        ok.then_some(dir)
    })
    .as_deref()
}

/// Locks `slot` machine-wide: `Some(None)` when there is no lock directory, `None` when another process
/// holds it.
fn lock_slot(slot: u32) -> Option<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(dir) = lock_dir() else {
        return Some(None);
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dir.join(format!("{}.lock", SANDBOX_UID_BASE + slot)));
    match file {
        Ok(f) => match crate::sys::try_lock_exclusive(&f) {
            Ok(true) => Some(Some(f)),
            Ok(false) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot lock a sandbox uid; relying on in-process uniqueness");
                Some(None)
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "cannot open a sandbox uid lock; relying on in-process uniqueness");
            Some(None)
        }
    }
}

impl UidSlot {
    pub(crate) fn acquire() -> Option<UidSlot> {
        let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
        for slot in 0..SLOTS {
            if used.contains(&slot) {
                continue;
            }
            if let Some(lock) = lock_slot(slot) {
                used.insert(slot);
                return Some(UidSlot { slot, _lock: lock });
            }
        }
        None
    }

    pub(crate) fn uid(&self) -> u32 {
        SANDBOX_UID_BASE + self.slot
    }

    pub(crate) fn gid(&self) -> u32 {
        self.uid()
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
        used.remove(&self.slot);
    }
}

/// Gives a writable mount's tree to the run's uid. Never follows symlinks (the tree may hold links planted
/// by an earlier untrusted build), and leaves alone regular files with more than one link, which could be
/// another name of a file outside the tree.
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            SandboxError::Io {
                action: "walk",
                path,
                source: e.into(),
            }
        })?;
        let meta = entry.metadata().map_err(|e| SandboxError::Io {
            action: "stat",
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        if meta.uid() == uid && meta.gid() == gid {
            continue;
        }
        if meta.is_file() && meta.nlink() > 1 {
            tracing::debug!(path = %entry.path().display(), "not changing the owner of a hard-linked file");
            continue;
        }
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))
            .map_err(SandboxError::io("change the owner of", entry.path()))?;
    }
    Ok(())
}

/// The first directory on the way to `path` (or `path` itself, when a directory) that `uid`/`gid` (with no
/// supplementary groups) may not search, or `None` when the path is reachable. ACLs are not looked at;
/// a path that cannot be resolved at all counts as unreachable.
pub(crate) fn unreachable_dir(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let Ok(real) = std::fs::canonicalize(path) else {
        return Some(path.to_path_buf());
    };
    let is_dir = real.is_dir();
    let mut dirs: Vec<&Path> = real.ancestors().skip(1).collect();
    dirs.reverse();
    if is_dir {
        dirs.push(&real);
    }
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(dir) else {
            return Some(dir.to_path_buf());
        };
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Some(dir.to_path_buf());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn slots_are_locked_across_processes() {
        let a = UidSlot::acquire().unwrap();
        if a._lock.is_none() {
            eprintln!("skipped: no machine-wide lock directory here (not root)");
            return;
        }
        // Another process (flock, from util-linux) cannot take the lock this one holds.
        let path = Path::new(LOCK_DIR).join(format!("{}.lock", a.uid()));
        let taken = std::process::Command::new("flock")
            .args(["--nonblock", "--exclusive"])
            .arg(&path)
            .arg("true")
            .status()
            .unwrap();
        assert!(!taken.success());
        drop(a);
    }

    #[test]
    fn slots_are_unique_and_released() {
        let a = UidSlot::acquire().unwrap();
        let b = UidSlot::acquire().unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(a.uid() >= SANDBOX_UID_BASE && a.uid() < SANDBOX_UID_BASE + SLOTS);
        let freed = a.uid();
        drop(a);
        let used = USED.lock().unwrap();
        assert!(!used.contains(&(freed - SANDBOX_UID_BASE)));
    }

    #[test]
    fn reachability_follows_the_mode_bits() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let own = std::fs::metadata(dir.path()).unwrap();
        let stranger = own.uid().wrapping_add(12345);
        assert_eq!(
            unreachable_dir(&inner, stranger, stranger),
            Some(std::fs::canonicalize(dir.path().join("a")).unwrap())
        );
        // The owner's bits count for the owner.
        assert_eq!(unreachable_dir(&inner, own.uid(), own.gid()), None);
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o711))
            .unwrap();
        // /tmp and / are searchable by all on any sane machine.
        assert_eq!(unreachable_dir(&inner, stranger, stranger), None);
        assert_eq!(
            unreachable_dir(&dir.path().join("missing"), stranger, stranger),
            Some(dir.path().join("missing"))
        );
    }
}
