//! Directories on the host for one build: the sandbox's writable work directory and the staging directory
//! its verified output is copied into.
//!
//! Both get unguessable names (128 random bits) under a parent that others may pass through but not list
//! (`0711`). The work directory is, when kmodfarm runs as root, a tmpfs mounted for this build alone with
//! `size=` the disk limit, `nosuid,nodev` and mode `0700`:
//!
//! * the disk limit is the kernel's: a build that writes more gets `ENOSPC`, and [`WorkDir::usage`] tells
//!   the caller that this is why it failed;
//! * a setuid file or a device node the build leaves there means nothing, on the host as in the sandbox;
//! * the sandbox's mount table shows the tmpfs, not the directory's host path, so a build cannot name its
//!   siblings' directories (whose names it cannot guess either);
//! * removing it is one unmount, whatever the build left behind.
//!
//! The sandbox then hands the directory to the build's own unprivileged uid. Without root (or where mounting
//! is not allowed, as in an unprivileged container) the build's directory is `build/` inside a `0700`
//! directory of kmodfarm's own, which the build cannot change (it is above its mount): no other local user
//! reaches what the build leaves, whatever modes it sets. There the caller measures the disk use instead
//! ([`WorkDir::usage`] walks it).
//!
//! What the build produced is copied out into a [`PrivateDir`] (root's own, `0700`, outside every writable
//! mount) before anything reads it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::BuildError;

/// 32 hex digits from the operating system's random source.
fn random_name() -> Result<String, BuildError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| BuildError::Io {
        op: "draw a random name for",
        path: PathBuf::from("a work directory"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(bytes))
}

/// Makes `parent` (and its parents) and gives it mode `0711` when it is ours: passable, not listable. A
/// symlink there is refused, so that nothing is created through one.
fn prepare_parent(parent: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(parent).map_err(BuildError::io("create", parent))?;
    let meta = std::fs::symlink_metadata(parent).map_err(BuildError::io("stat", parent))?;
    if !meta.is_dir() {
        return Err(BuildError::Io {
            op: "use",
            path: parent.to_path_buf(),
            source: std::io::Error::other("not a directory (a symlink is not accepted here)"),
        });
    }
    if meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o777 != 0o711 {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))
            .map_err(BuildError::io("chmod", parent))?;
    }
    Ok(())
}

/// A private directory and the lock that says it is in use: `<parent>/<name>.lock`, held (`flock`) for as long
/// as the directory lives. A process killed outright (SIGKILL, or a signal handler that exits at once) leaves
/// its directories behind, tmpfs mounts included; the next process to make one under the same parent finds
/// them by their unlocked lock files and removes them ([`sweep_stale`]).
fn make_private_dir(parent: &Path) -> Result<(PathBuf, std::fs::File), BuildError> {
    prepare_parent(parent)?;
    sweep_stale(parent);
    for _ in 0..8 {
        let name = random_name()?;
        // The lock first, held before the directory exists: a sweeping process never sees the directory
        // without a held lock.
        let lock_path = parent.join(format!("{name}.lock"));
        let lock = match crate::untrusted::create_new_private(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BuildError::io("create", &lock_path)(e)),
        };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| BuildError::io("lock", &lock_path)(e.into()))?;
        let path = parent.join(&name);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok((path, lock)),
            Err(e) => {
                let _ = std::fs::remove_file(&lock_path);
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(BuildError::io("create", &path)(e));
                }
            }
        }
    }
    Err(BuildError::Io {
        op: "create",
        path: parent.to_path_buf(),
        source: std::io::Error::other("no fresh random name in 8 tries"),
    })
}

/// Removes the directories under `parent` whose lock nobody holds any more (their process is gone): unmounts
/// a leftover tmpfs, deletes the tree, then the lock file. Once per parent and process.
fn sweep_stale(parent: &Path) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    if !SWEPT
        .lock()
        .expect("poisoned")
        .get_or_insert_with(HashSet::new)
        .insert(parent.to_path_buf())
    {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(dir_name) = name.strip_suffix(".lock") else {
            continue;
        };
        let Ok(lock) = std::fs::OpenOptions::new().read(true).open(entry.path()) else {
            continue;
        };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let dir = parent.join(dir_name);
        tracing::info!(dir = %dir.display(), "removing a build directory its process left behind");
        let _ = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(entry.path());
    }
}

/// The writable directory of one build (see the module documentation); removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    /// The random-named directory under the parent: the tmpfs, or the private directory holding `build/`.
    outer: PathBuf,
    /// Held while the directory lives (see [`make_private_dir`]).
    lock: Option<std::fs::File>,
    /// What the sandbox mounts.
    path: PathBuf,
    /// The tmpfs' size, when it is one.
    tmpfs_bytes: Option<u64>,
}

impl WorkDir {
    /// A new work directory under `parent`; a tmpfs of `disk_bytes` when kmodfarm is root and may mount.
    pub fn create(parent: &Path, disk_bytes: u64) -> Result<WorkDir, BuildError> {
        let (outer, lock) = make_private_dir(parent)?;
        let mut dir = WorkDir {
            path: outer.clone(),
            outer,
            lock: Some(lock),
            tmpfs_bytes: None,
        };
        if rustix::process::geteuid().is_root() {
            // One inode per 8 KiB of the limit: plenty for object files, no inode exhaustion of the host.
            let inodes = (disk_bytes / 8192).max(4096);
            let data =
                std::ffi::CString::new(format!("size={disk_bytes},nr_inodes={inodes},mode=0700"))
                    .expect("no NUL in numbers");
            let mounted = rustix::mount::mount(
                "kmodfarm-build",
                &dir.path,
                "tmpfs",
                rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOATIME,
                Some(data.as_c_str()),
            );
            match mounted {
                Ok(()) => dir.tmpfs_bytes = Some(disk_bytes),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot mount a tmpfs for the build directory; using a plain directory, whose disk use is \
                     measured while the build runs"
                ),
            }
        }
        if dir.tmpfs_bytes.is_none() {
            dir.path = dir.outer.join("build");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir.path)
                .map_err(BuildError::io("create", &dir.path))?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the disk limit is the tmpfs' own.
    pub fn is_tmpfs(&self) -> bool {
        self.tmpfs_bytes.is_some()
    }

    /// Bytes in use: the tmpfs' count, or a walk adding up the blocks of everything under the directory.
    pub fn usage(&self) -> u64 {
        if self.tmpfs_bytes.is_some() {
            if let Ok(st) = rustix::fs::statvfs(&self.path) {
                return (st.f_blocks - st.f_bfree) * st.f_frsize;
            }
        }
        walkdir::WalkDir::new(&self.path)
            .follow_links(false)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    /// Whether the tmpfs is (nearly) full: a build that failed then most likely failed for lack of space.
    pub fn full(&self) -> bool {
        match self.tmpfs_bytes {
            Some(_) => rustix::fs::statvfs(&self.path).is_ok_and(|st| {
                st.f_bavail * st.f_frsize < 1 << 20 || (st.f_files > 0 && st.f_ffree < 16)
            }),
            None => false,
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.tmpfs_bytes.is_some() {
            let _ = rustix::mount::unmount(&self.outer, rustix::mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_dir(&self.outer);
        } else {
            let _ = std::fs::remove_dir_all(&self.outer);
        }
        remove_lock(&self.outer, self.lock.take());
    }
}

/// The lock file of `dir`, removed after the directory, then released.
fn remove_lock(dir: &Path, lock: Option<std::fs::File>) {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".lock");
    let _ = std::fs::remove_file(PathBuf::from(name));
    drop(lock);
}

/// A directory only kmodfarm's uid can enter, outside every sandbox mount; removed on drop.
#[derive(Debug)]
pub struct PrivateDir(PathBuf, Option<std::fs::File>);

impl PrivateDir {
    pub fn create(parent: &Path) -> Result<PrivateDir, BuildError> {
        make_private_dir(parent).map(|(path, lock)| PrivateDir(path, Some(lock)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        remove_lock(&self.0, self.1.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_random_and_directories_private() {
        let d = tempfile::tempdir().unwrap();
        let parent = d.path().join("work");
        let a = WorkDir::create(&parent, 64 << 20).unwrap();
        let b = WorkDir::create(&parent, 64 << 20).unwrap();
        assert_ne!(a.path(), b.path());
        let outer = a.path().strip_prefix(&parent).unwrap();
        let name = outer
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|c| c.is_ascii_hexdigit()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&parent), 0o711);
        assert_eq!(mode(a.path()), 0o700);
        assert_eq!(mode(&parent.join(&*name)), 0o700);
        let s = PrivateDir::create(&d.path().join("staging")).unwrap();
        assert_eq!(mode(s.path()), 0o700);
        let (pa, ps) = (a.path().to_path_buf(), s.path().to_path_buf());
        drop((a, s));
        assert!(!pa.exists() && !ps.exists());
    }

    #[test]
    fn directories_of_a_dead_process_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let parent = d.path().join("work");
        // A directory whose lock nobody holds, as a killed process leaves it; and one still in use.
        std::fs::create_dir_all(parent.join("0123456789abcdef0123456789abcdef/build/src")).unwrap();
        std::fs::write(parent.join("0123456789abcdef0123456789abcdef.lock"), "").unwrap();
        let alive = PrivateDir::create(&d.path().join("other")).unwrap();
        let held = std::fs::OpenOptions::new()
            .read(true)
            .open(format!("{}.lock", alive.path().display()))
            .unwrap();
        assert!(
            rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
        );
        let fresh = WorkDir::create(&parent, 1 << 20).unwrap();
        assert!(!parent.join("0123456789abcdef0123456789abcdef").exists());
        assert!(!parent
            .join("0123456789abcdef0123456789abcdef.lock")
            .exists());
        assert!(fresh.path().exists());
        assert!(alive.path().exists(), "a directory in use is left alone");
        let outer = parent.join(
            fresh
                .path()
                .strip_prefix(&parent)
                .unwrap()
                .components()
                .next()
                .unwrap(),
        );
        drop(fresh);
        assert!(!outer.exists());
        assert!(!PathBuf::from(format!("{}.lock", outer.display())).exists());
    }

    #[test]
    fn as_root_the_work_directory_is_a_bounded_nosuid_tmpfs() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI runs as root"
            );
            eprintln!("skipping: needs root to mount");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let w = WorkDir::create(&d.path().join("work"), 8 << 20).unwrap();
        assert!(w.is_tmpfs());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(w.path().to_str().unwrap()))
            .expect("the work directory is a mount point");
        let opts = line.split(' ').nth(5).unwrap();
        assert!(opts.contains("nosuid") && opts.contains("nodev"), "{line}");
        assert!(line.contains(" - tmpfs "), "{line}");
        // The limit is the kernel's: the 9th MiB does not fit.
        let big = vec![7u8; 1 << 20];
        let mut f = std::fs::File::create(w.path().join("fill")).unwrap();
        use std::io::Write;
        let mut written = 0;
        while f.write_all(&big).is_ok() {
            written += 1;
            assert!(written <= 8, "wrote past the limit");
        }
        assert!(w.full());
        assert!(w.usage() >= 7 << 20);
        drop(f);
        let p = w.path().to_path_buf();
        assert_eq!(p.parent().unwrap(), d.path().join("work"));
        drop(w);
        assert!(!p.exists());
        assert!(!std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(p.to_str().unwrap()));
    }
}
