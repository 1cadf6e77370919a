//! Driver sources carried by a plan: each project directory as one deterministic tar archive, named by its
//! SHA256, so that a worker needs neither the project's repository nor the network to build it.
//!
//! The archive holds what a build would copy: `kmodfarm.toml` and the source tree without VCS metadata or
//! build outputs, links as links (only those that stay inside the project; others refuse the project as
//! they do for a build). Entries are sorted, owned by 0:0, dated 0 and moded 0644/0755, so the same tree
//! gives the same bytes on any machine. The worker checks the archive's SHA256 before unpacking it
//! (confined to its directory, see `kmf_extract`) and then the unpacked tree's content digest against the
//! plan's.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kmf_build::kbuild::{escaping_link, is_ignored};
use kmf_build::BuildError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a plan keeps a driver's source archive, relative to the plan directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceArchive {
    /// `sources/<sha256>.tar`.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Project(#[from] BuildError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the source archive {path} has SHA256 {actual}, the plan says {expected}")]
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("unpacking the source archive {path}: {message}")]
    Unpack { path: PathBuf, message: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io { op, path, source }
}

/// Writes the project at `project` as `<plan_dir>/sources/<sha256>.tar` (once: an archive of the same
/// content is already there) and says where it is.
pub fn pack(project: &Path, plan_dir: &Path) -> Result<SourceArchive, SourceError> {
    let dir = plan_dir.join("sources");
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("create", &dir))?;
    let file = tmp.as_file().try_clone().map_err(io("create", &dir))?;
    let hashing = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut builder = tar::Builder::new(hashing);
    let walk = walkdir::WalkDir::new(project)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !is_ignored(e.file_name().to_string_lossy().as_ref()));
    for entry in walk {
        let entry = entry.map_err(|e| SourceError::Io {
            op: "walk",
            path: project.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(project).expect("under the root");
        if rel.as_os_str().is_empty() {
            continue;
        }
        let ft = entry.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, rel, std::io::empty())
                .map_err(io("archive", entry.path()))?;
        } else if ft.is_symlink() {
            escaping_link(project, rel, entry.path())?;
            let target = std::fs::read_link(entry.path()).map_err(io("read", entry.path()))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, rel, &target)
                .map_err(io("archive", entry.path()))?;
        } else if ft.is_file() {
            let file = std::fs::File::open(entry.path()).map_err(io("read", entry.path()))?;
            let meta = file.metadata().map_err(io("stat", entry.path()))?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            builder
                .append_data(&mut header, rel, file.take(meta.len()))
                .map_err(io("archive", entry.path()))?;
        }
    }
    let mut hashing = builder.into_inner().map_err(io("archive", project))?;
    hashing.inner.flush().map_err(io("write", &dir))?;
    drop(hashing.inner);
    let sha256 = hex::encode(hashing.hasher.finalize());
    let name = format!("{sha256}.tar");
    let dest = dir.join(&name);
    if !dest.exists() {
        // Workers may run as another uid than the planner.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io("chmod", tmp.path()))?;
        tmp.persist(&dest).map_err(|e| SourceError::Io {
            op: "write",
            path: dest.clone(),
            source: e.error,
        })?;
    }
    Ok(SourceArchive {
        path: format!("sources/{name}"),
        sha256,
        size: hashing.written,
    })
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks the archive at `plan_dir/<archive.path>` against its SHA256 and unpacks it once into
/// `<cache>/sources/<sha256>/`; returns that directory.
pub fn unpack(
    plan_dir: &Path,
    archive: &SourceArchive,
    cache: &Path,
) -> Result<PathBuf, SourceError> {
    let dest = cache.join("sources").join(&archive.sha256);
    if dest.is_dir() {
        return Ok(dest);
    }
    // The plan's own relative path, checked like any name from a file someone else wrote.
    kmf_types::names::check_relative_path("source archive path", &archive.path).map_err(|e| {
        SourceError::Unpack {
            path: plan_dir.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    let path = plan_dir.join(&archive.path);
    let bytes = std::fs::read(&path).map_err(io("read", &path))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != archive.sha256 {
        return Err(SourceError::Digest {
            path,
            expected: archive.sha256.clone(),
            actual,
        });
    }
    let parent = cache.join("sources");
    std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&parent)
        .map_err(io("create", &parent))?;
    kmf_extract::extract_tar(&bytes[..], tmp.path()).map_err(|e| SourceError::Unpack {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Readable by the sandbox's unprivileged uid, as a project directory would be.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", tmp.path()))?;
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another worker on this machine unpacked the same archive first.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(io("rename", &dest)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tree_gives_the_same_archive_and_unpacks_to_the_same_digest() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("p");
        std::fs::create_dir_all(project.join("sub/.git")).unwrap();
        std::fs::write(project.join("kmodfarm.toml"), "[driver]\nname='p'\n").unwrap();
        std::fs::write(project.join("sub/a.c"), "int a;").unwrap();
        std::fs::write(project.join("sub/old.o"), "junk").unwrap();
        std::os::unix::fs::symlink("a.c", project.join("sub/b.c")).unwrap();
        let plan = d.path().join("plan");
        let a = pack(&project, &plan).unwrap();
        let b = pack(&project, &plan).unwrap();
        assert_eq!(a, b);
        let cache = d.path().join("cache");
        let out = unpack(&plan, &a, &cache).unwrap();
        assert_eq!(
            kmf_build::kbuild::source_digest(&out).unwrap(),
            kmf_build::kbuild::source_digest(&project).unwrap()
        );
        assert!(!out.join("sub/old.o").exists());
        // A changed archive is refused before anything is unpacked.
        let tampered = SourceArchive {
            sha256: "0".repeat(64),
            ..a.clone()
        };
        assert!(matches!(
            unpack(&plan, &tampered, &d.path().join("c2")),
            Err(SourceError::Digest { .. })
        ));
        // A link out of the project refuses it.
        std::os::unix::fs::symlink("/etc/passwd", project.join("evil")).unwrap();
        assert!(pack(&project, &plan).is_err());
    }
}
