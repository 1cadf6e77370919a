//! Reading what untrusted code wrote: a build directory after its sandbox ended, or a driver project.
//!
//! kmodfarm runs as root and the trees it reads here were written by somebody else. A path name is
//! therefore never handed to the kernel whole: [`Beneath`] opens its root once and then every component
//! with `openat(O_NOFOLLOW)` relative to the directory before it, so that no symlink is followed anywhere
//! on the path (a symlinked directory in the middle included), and `..` or absolute names are refused
//! before any system call. Only regular files are read, and only after `fstat` on the open descriptor
//! says so; FIFOs, sockets and devices are never opened for reading. What is read is copied once into a
//! host-owned file ([`Beneath::stage`]) and only that copy is verified, hashed, signed and published.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Why something could not be read from an untrusted tree.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedError {
    #[error("`{path}`: `{link}` is a symbolic link; kmodfarm follows no links in what a build or a project wrote")]
    Symlink { path: String, link: String },
    #[error("`{path}` is a {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("`{path}`: `{component}` is a {kind}, not a directory")]
    NotDirectory {
        path: String,
        component: String,
        kind: &'static str,
    },
    #[error("`{path}` does not exist")]
    Missing { path: String },
    #[error("`{path}` is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "`{path}` has {links} names (hard links): one of them may be a file outside the tree, so it is not read"
    )]
    HardLinked { path: String, links: u64 },
    #[error("`{path}` is not a relative path of plain names (no `..`, no leading `/`)")]
    BadPath { path: String },
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl UntrustedError {
    /// A problem of the tree's content (a link, a special file, a missing or oversized file), as opposed to
    /// an I/O error of this machine.
    pub fn is_content(&self) -> bool {
        !matches!(self, UntrustedError::Io { .. })
    }
}

/// What is at a path, looked at without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket, device.
    Special(&'static str),
    Missing,
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

fn shown(p: &Path) -> String {
    kmf_types::names::printable(&p.to_string_lossy()).into_owned()
}

/// A directory whose content is not trusted, opened once; everything below it is reached through it.
#[derive(Debug)]
pub struct Beneath {
    dir: OwnedFd,
    root: PathBuf,
    /// Refuse regular files with more than one link ([`Beneath::refusing_hard_links`]).
    single_link: bool,
}

impl Beneath {
    /// Opens `root` (a path the caller chose, so it may itself be reached through links) as the base.
    pub fn open(root: &Path) -> Result<Beneath, UntrustedError> {
        let dir = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UntrustedError::Io {
            op: "open",
            path: shown(root),
            source: e.into(),
        })?;
        Ok(Beneath {
            dir,
            root: root.to_path_buf(),
            single_link: false,
        })
    }

    /// The host path this was opened at (for messages only: never reopened by name).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The plain names of `rel`, or `BadPath`.
    fn names(rel: &Path) -> Result<Vec<&OsStr>, UntrustedError> {
        let mut names = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => names.push(n),
                Component::CurDir => {}
                _ => return Err(UntrustedError::BadPath { path: shown(rel) }),
            }
        }
        Ok(names)
    }

    /// Opens the directory holding the last name of `rel`, every component without following links.
    fn parent_of<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, Option<&'a OsStr>), UntrustedError> {
        let names = Self::names(rel)?;
        let Some((last, dirs)) = names.split_last() else {
            let dup = self.dir.try_clone().map_err(|e| UntrustedError::Io {
                op: "open",
                path: shown(&self.root),
                source: e,
            })?;
            return Ok((dup, None));
        };
        let mut cur: Option<OwnedFd> = None;
        let mut walked = PathBuf::new();
        for name in dirs {
            walked.push(name);
            let base = cur.as_ref().map_or(self.dir.as_fd(), |f| f.as_fd());
            let next = openat(
                base,
                *name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            match next {
                Ok(fd) => cur = Some(fd),
                Err(e) => return Err(self.explain(base, name, &walked, rel, e, true)),
            }
        }
        let fd = match cur {
            Some(fd) => fd,
            None => self.dir.try_clone().map_err(|e| UntrustedError::Io {
                op: "open",
                path: shown(&self.root),
                source: e,
            })?,
        };
        Ok((fd, Some(*last)))
    }

    /// Turns a failed `openat` into what the entry really is.
    fn explain(
        &self,
        base: std::os::fd::BorrowedFd<'_>,
        name: &OsStr,
        walked: &Path,
        rel: &Path,
        e: Errno,
        want_dir: bool,
    ) -> UntrustedError {
        match statat(base, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => UntrustedError::Missing { path: shown(rel) },
            Ok(st) => {
                let t = FileType::from_raw_mode(st.st_mode);
                match t {
                    FileType::Symlink => UntrustedError::Symlink {
                        path: shown(rel),
                        link: shown(walked),
                    },
                    FileType::Directory => UntrustedError::Io {
                        op: "open",
                        path: shown(&self.root.join(rel)),
                        source: e.into(),
                    },
                    FileType::RegularFile if !want_dir => UntrustedError::Io {
                        op: "open",
                        path: shown(&self.root.join(rel)),
                        source: e.into(),
                    },
                    other if want_dir => UntrustedError::NotDirectory {
                        path: shown(rel),
                        component: shown(walked),
                        kind: kind_name(other),
                    },
                    other => UntrustedError::NotRegular {
                        path: shown(rel),
                        kind: kind_name(other),
                    },
                }
            }
            Err(_) => UntrustedError::Io {
                op: "open",
                path: shown(&self.root.join(rel)),
                source: e.into(),
            },
        }
    }

    /// Makes every file read through this base (and the directories opened from it) refuse a regular file
    /// with more than one link: in a tree someone else wrote on this machine's file system (a worker's
    /// bundle in a local directory), another name of the same file may be a file of the host that the
    /// writer could not read itself, and reading it here would put it into what is published.
    pub fn refusing_hard_links(mut self) -> Beneath {
        self.single_link = true;
        self
    }

    /// The directory `rel` below this one, opened without following a link anywhere on the way: a base for
    /// reading a subtree (a bundle in a directory of bundles).
    pub fn open_dir(&self, rel: &Path) -> Result<Beneath, UntrustedError> {
        let (dir, last) = self.parent_of(rel)?;
        let Some(last) = last else {
            return Beneath::open(&self.root).map(|b| Beneath {
                single_link: self.single_link,
                ..b
            });
        };
        let fd = openat(
            &dir,
            last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.explain(dir.as_fd(), last, rel, rel, e, true))?;
        Ok(Beneath {
            dir: fd,
            root: self.root.join(rel),
            single_link: self.single_link,
        })
    }

    /// The entries of this directory with what each is (no link followed), sorted by name.
    pub fn entries(&self) -> Result<Vec<(String, EntryKind)>, UntrustedError> {
        let io = |e: Errno| UntrustedError::Io {
            op: "list",
            path: shown(&self.root),
            source: e.into(),
        };
        let fd = self.dir.try_clone().map_err(|e| UntrustedError::Io {
            op: "list",
            path: shown(&self.root),
            source: e,
        })?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let kind = self.kind(Path::new(&name))?;
            out.push((name, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// What `rel` is, no link followed on the way or at the end.
    pub fn kind(&self, rel: &Path) -> Result<EntryKind, UntrustedError> {
        let (dir, last) = match self.parent_of(rel) {
            Ok(x) => x,
            Err(UntrustedError::Missing { .. }) => return Ok(EntryKind::Missing),
            Err(e) => return Err(e),
        };
        let Some(last) = last else {
            return Ok(EntryKind::Dir);
        };
        match statat(&dir, last, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(EntryKind::Missing),
            Err(e) => Err(UntrustedError::Io {
                op: "stat",
                path: shown(&self.root.join(rel)),
                source: e.into(),
            }),
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => EntryKind::File,
                FileType::Directory => EntryKind::Dir,
                FileType::Symlink => EntryKind::Symlink,
                other => EntryKind::Special(kind_name(other)),
            }),
        }
    }

    /// `rel` must be a directory reached without links (a build step's directory, a project's source).
    pub fn require_dir(&self, rel: &Path) -> Result<(), UntrustedError> {
        match self.kind(rel)? {
            EntryKind::Dir => Ok(()),
            EntryKind::Missing => Err(UntrustedError::Missing { path: shown(rel) }),
            EntryKind::Symlink => Err(UntrustedError::Symlink {
                path: shown(rel),
                link: shown(rel),
            }),
            EntryKind::File => Err(UntrustedError::NotDirectory {
                path: shown(rel),
                component: shown(rel),
                kind: "regular file",
            }),
            EntryKind::Special(kind) => Err(UntrustedError::NotDirectory {
                path: shown(rel),
                component: shown(rel),
                kind,
            }),
        }
    }

    /// Opens the regular file `rel` for reading; its size comes with it (from `fstat` of the open file).
    pub fn open_file(&self, rel: &Path) -> Result<(File, u64), UntrustedError> {
        let (dir, last) = self.parent_of(rel)?;
        let last = last.ok_or_else(|| UntrustedError::NotRegular {
            path: shown(rel),
            kind: "directory",
        })?;
        // Look before opening: opening a FIFO or a device can block or act; only regular files are opened.
        match self.kind_at(&dir, last, rel)? {
            FileType::RegularFile => {}
            FileType::Symlink => {
                return Err(UntrustedError::Symlink {
                    path: shown(rel),
                    link: shown(rel),
                })
            }
            other => {
                return Err(UntrustedError::NotRegular {
                    path: shown(rel),
                    kind: kind_name(other),
                })
            }
        }
        let fd = openat(
            &dir,
            last,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.explain(dir.as_fd(), last, rel, rel, e, false))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| UntrustedError::Io {
            op: "stat",
            path: shown(&self.root.join(rel)),
            source: e.into(),
        })?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(UntrustedError::NotRegular {
                path: shown(rel),
                kind: kind_name(t),
            });
        }
        if self.single_link && st.st_nlink > 1 {
            return Err(UntrustedError::HardLinked {
                path: shown(rel),
                links: st.st_nlink as u64,
            });
        }
        Ok((File::from(fd), st.st_size as u64))
    }

    fn kind_at(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<FileType, UntrustedError> {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => Err(UntrustedError::Missing { path: shown(rel) }),
            Err(e) => Err(UntrustedError::Io {
                op: "stat",
                path: shown(&self.root.join(rel)),
                source: e.into(),
            }),
        }
    }

    /// The whole of the regular file `rel`, at most `limit` bytes.
    pub fn read(&self, rel: &Path, limit: u64) -> Result<Vec<u8>, UntrustedError> {
        let (file, size) = self.open_file(rel)?;
        if size > limit {
            return Err(UntrustedError::TooLarge {
                path: shown(rel),
                size,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        file.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| UntrustedError::Io {
                op: "read",
                path: shown(&self.root.join(rel)),
                source: e,
            })?;
        if buf.len() as u64 > limit {
            return Err(UntrustedError::TooLarge {
                path: shown(rel),
                size: buf.len() as u64,
                limit,
            });
        }
        Ok(buf)
    }

    /// Copies the regular file `rel` (at most `limit` bytes) into the new file `dest`, which must not exist
    /// (created `0600`, never through a link), and returns the copy's SHA256 and size. Reading once and
    /// hashing while copying: what is verified and published afterwards is this copy, which no build can
    /// reach.
    pub fn stage(
        &self,
        rel: &Path,
        dest: &Path,
        limit: u64,
    ) -> Result<(String, u64), UntrustedError> {
        let (mut file, size) = self.open_file(rel)?;
        if size > limit {
            return Err(UntrustedError::TooLarge {
                path: shown(rel),
                size,
                limit,
            });
        }
        let io = |op, path: &Path| {
            let path = shown(path);
            move |source| UntrustedError::Io { op, path, source }
        };
        let mut out = create_new_private(dest).map_err(io("create", dest))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut copied = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io("read", &self.root.join(rel)))?;
            if n == 0 {
                break;
            }
            copied += n as u64;
            if copied > limit {
                drop(out);
                let _ = std::fs::remove_file(dest);
                return Err(UntrustedError::TooLarge {
                    path: shown(rel),
                    size: copied,
                    limit,
                });
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io("write", dest))?;
        }
        out.sync_all().map_err(io("write", dest))?;
        Ok((hex::encode(hasher.finalize()), copied))
    }
}

/// Makes the directories of `rel` under `root` (which must exist), none of them through a link: an entry
/// on the way that is a link or not a directory is an error, never followed. For report and log
/// directories, whose names come from drivers and kernel lists.
pub fn create_dirs_beneath(root: &Path, rel: &Path) -> Result<PathBuf, UntrustedError> {
    let names = Beneath::names(rel)?;
    let base = Beneath::open(root)?;
    let mut cur: Option<OwnedFd> = None;
    let mut walked = PathBuf::new();
    for name in names {
        walked.push(name);
        let fd = cur.as_ref().map_or(base.dir.as_fd(), |f| f.as_fd());
        match rustix::fs::mkdirat(fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(UntrustedError::Io {
                    op: "create",
                    path: shown(&root.join(&walked)),
                    source: e.into(),
                })
            }
        }
        match openat(
            fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => cur = Some(next),
            Err(e) => return Err(base.explain(fd, name, &walked, rel, e, true)),
        }
    }
    Ok(root.join(rel))
}

/// Opens `path` for writing (created `0644` or truncated), refusing a link at the last component; the
/// directories above are the caller's (see [`create_dirs_beneath`]).
pub fn create_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens `path` for appending (created when missing), refusing a link at the last component.
pub fn append_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates `path` as a new file only kmodfarm's uid can read, never through a link, never over an existing
/// file.
pub fn create_new_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Beneath) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/m.ko"), b"module").unwrap();
        std::fs::write(r.join("outside-secret"), b"secret").unwrap();
        std::fs::create_dir_all(r.join("host")).unwrap();
        std::fs::write(r.join("host/m.ko"), b"secret").unwrap();
        symlink(r.join("host"), r.join("a/linkdir")).unwrap();
        symlink("b/m.ko", r.join("a/link.ko")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("a/fifo.ko"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let b = Beneath::open(r).unwrap();
        (d, b)
    }

    #[test]
    fn reads_regular_files_only_and_follows_no_link() {
        let (d, b) = tree();
        assert_eq!(b.read(Path::new("a/b/m.ko"), 100).unwrap(), b"module");
        assert_eq!(b.read(Path::new("./a/b/m.ko"), 100).unwrap(), b"module");
        let e = b.read(Path::new("a/linkdir/m.ko"), 100).unwrap_err();
        assert!(
            matches!(&e, UntrustedError::Symlink { link, .. } if link == "a/linkdir"),
            "{e}"
        );
        let e = b.read(Path::new("a/link.ko"), 100).unwrap_err();
        assert!(matches!(e, UntrustedError::Symlink { .. }), "{e}");
        // A FIFO is never opened (opening it for reading would block).
        let e = b.read(Path::new("a/fifo.ko"), 100).unwrap_err();
        assert!(
            matches!(e, UntrustedError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
        for bad in ["../outside-secret", "/etc/passwd", "a/../../x"] {
            let e = b.read(Path::new(bad), 100).unwrap_err();
            assert!(matches!(e, UntrustedError::BadPath { .. }), "{bad}: {e}");
        }
        assert!(matches!(
            b.read(Path::new("a/nope.ko"), 100).unwrap_err(),
            UntrustedError::Missing { .. }
        ));
        assert!(matches!(
            b.read(Path::new("a/b/m.ko"), 3).unwrap_err(),
            UntrustedError::TooLarge { size: 6, .. }
        ));
        let e = b.read(Path::new("a/b/m.ko/x"), 100).unwrap_err();
        assert!(matches!(e, UntrustedError::NotDirectory { .. }), "{e}");

        assert_eq!(b.kind(Path::new("a/linkdir")).unwrap(), EntryKind::Symlink);
        assert_eq!(b.kind(Path::new("a/b")).unwrap(), EntryKind::Dir);
        assert_eq!(b.kind(Path::new("a/zz")).unwrap(), EntryKind::Missing);
        assert!(b.require_dir(Path::new("a/linkdir")).is_err());
        b.require_dir(Path::new("a")).unwrap();
        drop(d);
    }

    #[test]
    fn report_directories_are_made_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("report");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        let made = create_dirs_beneath(&root, Path::new("logs/hello/0.1.0/debian")).unwrap();
        assert!(made.is_dir());
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("logs/planted")).unwrap();
        let e = create_dirs_beneath(&root, Path::new("logs/planted/x")).unwrap_err();
        assert!(matches!(e, UntrustedError::Symlink { .. }), "{e}");
        assert!(create_dirs_beneath(&root, Path::new("logs/../../x")).is_err());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        let log = made.join("build.log");
        symlink(outside.join("victim"), &log).unwrap();
        assert!(create_nofollow(&log).is_err());
        assert!(append_nofollow(&log).is_err());
        assert!(!outside.join("victim").exists());
    }

    #[test]
    fn stage_copies_once_and_hashes_the_copy() {
        let (d, b) = tree();
        let dest = d.path().join("staged.ko");
        let (sha, size) = b.stage(Path::new("a/b/m.ko"), &dest, 100).unwrap();
        assert_eq!(size, 6);
        assert_eq!(sha, hex::encode(Sha256::digest(b"module")));
        assert_eq!(std::fs::read(&dest).unwrap(), b"module");
        // Never over an existing file or through a link planted at the destination.
        assert!(b.stage(Path::new("a/b/m.ko"), &dest, 100).is_err());
        let planted = d.path().join("planted.ko");
        symlink(d.path().join("outside-secret"), &planted).unwrap();
        assert!(b.stage(Path::new("a/b/m.ko"), &planted, 100).is_err());
        assert_eq!(
            std::fs::read(d.path().join("outside-secret")).unwrap(),
            b"secret"
        );
        let big = d.path().join("big.ko");
        assert!(matches!(
            b.stage(Path::new("a/b/m.ko"), &big, 5).unwrap_err(),
            UntrustedError::TooLarge { .. }
        ));
        assert!(!big.exists());
    }

    #[test]
    fn hard_links_are_refused_where_asked() {
        let (d, b) = tree();
        // Another name of a file outside the tree, as a worker could plant in its bundle.
        std::fs::hard_link(d.path().join("outside-secret"), b.root.join("a/b/linked")).unwrap();
        assert_eq!(b.read(Path::new("a/b/linked"), 100).unwrap(), b"secret");
        let strict = Beneath::open(&b.root).unwrap().refusing_hard_links();
        let err = strict.read(Path::new("a/b/linked"), 100).unwrap_err();
        assert!(
            matches!(err, UntrustedError::HardLinked { links: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("hard links"), "{err}");
        // The rule carries to the directories opened from it; single-link files still read.
        let sub = strict.open_dir(Path::new("a/b")).unwrap();
        assert!(sub
            .stage(Path::new("linked"), &d.path().join("copy"), 100)
            .is_err());
        assert!(!d.path().join("copy").exists());
        assert_eq!(sub.read(Path::new("m.ko"), 100).unwrap(), b"module");
    }
}
