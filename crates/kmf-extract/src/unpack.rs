//! Tar extraction that never writes outside the destination.
//!
//! Nothing is ever opened or created through a symlink: every parent directory of a member is
//! checked (once, then remembered) to be a real directory, files are created with `O_EXCL`, and an
//! existing non-directory at a member's path is unlinked rather than written through. Directories
//! are never replaced by anything else, so a directory once checked stays a directory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use filetime::FileTime;
use tar::EntryType;

use crate::error::ExtractError;
use crate::{ExtractLimits, ExtractReport};

/// Copy buffer: large, since the input is a decompressor and the output many small files.
const COPY_BUFFER: usize = 256 * 1024;
/// Header bytes allowed per member (tar header, GNU long names, PAX records): far above anything
/// legitimate, small enough that a hostile 4 GB "long name" cannot exhaust memory.
const METADATA_ALLOWANCE: u64 = 1 << 20;
/// Symlinks expanded while resolving one link target, as the kernel's MAXSYMLINKS.
const MAX_SYMLINK_EXPANSIONS: u32 = 40;
/// Permission bits kept: setuid, setgid and sticky are dropped.
const PERMISSION_BITS: u32 = 0o777;

/// Byte accounting shared between the metered reader (inside the tar parser) and the extractor.
#[derive(Default)]
struct Budget {
    consumed: Cell<u64>,
    allowance: Cell<u64>,
    tripped: Cell<bool>,
}

/// Refuses to read past the allowance the extractor grants member by member, so that tar's own
/// buffering of metadata (which it reads whole into memory) stays bounded.
struct Metered<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .budget
            .allowance
            .get()
            .saturating_sub(self.budget.consumed.get());
        if left == 0 && !buf.is_empty() {
            self.budget.tripped.set(true);
            return Err(io::Error::other(
                "archive metadata exceeds the allowed size",
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget
            .consumed
            .set(self.budget.consumed.get() + n as u64);
        Ok(n)
    }
}

/// Extracts a tar stream into `dest` (created if missing). `label` names the archive in errors.
pub(crate) fn extract_tar_stream<R: Read>(
    reader: R,
    dest: &Path,
    limits: &ExtractLimits,
    label: &str,
) -> Result<ExtractReport, ExtractError> {
    fs::create_dir_all(dest).map_err(|e| ExtractError::io(dest, e))?;
    let budget = Rc::new(Budget::default());
    budget.allowance.set(METADATA_ALLOWANCE);
    let metered = Metered {
        inner: reader,
        budget: budget.clone(),
    };
    let mut archive = tar::Archive::new(metered);
    let mut x = Extractor::new(dest, limits, label);
    let corrupt = |source: io::Error| {
        if budget.tripped.get() {
            ExtractError::LimitExceeded {
                archive: label.to_string(),
                what: "metadata bytes of one entry",
                limit: METADATA_ALLOWANCE,
            }
        } else {
            ExtractError::Corrupt {
                archive: label.to_string(),
                source,
            }
        }
    };
    let entries = archive.entries().map_err(corrupt)?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let size = entry.size();
        x.admit(size)?;
        // This member's data (padded to a block) plus the next member's headers.
        budget.allowance.set(
            budget
                .consumed
                .get()
                .saturating_add(size.saturating_add(511) & !511)
                .saturating_add(METADATA_ALLOWANCE),
        );
        x.member(&mut entry).map_err(|e| match e {
            Failure::Read(source) => corrupt(source),
            Failure::Other(e) => e,
        })?;
    }
    x.finish()
}

/// What a member is, whatever the archive format.
pub(crate) enum MemberKind {
    File,
    Dir,
    Symlink(Option<PathBuf>),
    Hardlink(Option<PathBuf>),
    /// Not extracted (device node, fifo, socket, unknown type): why.
    Unsupported(String),
}

/// Errors inside one member: reading the archive (corrupt) or anything else.
pub(crate) enum Failure {
    Read(io::Error),
    Other(ExtractError),
}

impl From<ExtractError> for Failure {
    fn from(e: ExtractError) -> Self {
        Failure::Other(e)
    }
}

pub(crate) struct Extractor<'a> {
    dest: PathBuf,
    limits: &'a ExtractLimits,
    label: &'a str,
    report: ExtractReport,
    entries: u64,
    /// Sum of member sizes seen, written or not.
    declared: u64,
    /// Relative paths checked or created as real directories (never replaced afterwards).
    real_dirs: HashSet<PathBuf>,
    /// Regular files this extraction wrote: the only valid hardlink targets.
    regular_files: HashSet<PathBuf>,
    /// Final mode and mtime of directories, applied at the end (children change a dir's mtime).
    dir_attrs: HashMap<PathBuf, (u32, u64)>,
    /// Attributes of the archive's `./` member, applied to `dest` itself.
    root_attrs: Option<(u32, u64)>,
    symlinks: Vec<PathBuf>,
    buf: Vec<u8>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(dest: &Path, limits: &'a ExtractLimits, label: &'a str) -> Self {
        Extractor {
            dest: dest.to_path_buf(),
            limits,
            label,
            report: ExtractReport::default(),
            entries: 0,
            declared: 0,
            real_dirs: HashSet::new(),
            regular_files: HashSet::new(),
            dir_attrs: HashMap::new(),
            root_attrs: None,
            symlinks: Vec::new(),
            buf: vec![0; COPY_BUFFER],
        }
    }

    /// Counts a member against the limits before anything of it is read.
    pub(crate) fn admit(&mut self, size: u64) -> Result<(), ExtractError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.limit("entries", self.limits.max_entries));
        }
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.limits.max_bytes {
            return Err(self.limit("unpacked bytes", self.limits.max_bytes));
        }
        Ok(())
    }

    pub(crate) fn limit(&self, what: &'static str, limit: u64) -> ExtractError {
        ExtractError::LimitExceeded {
            archive: self.label.to_string(),
            what,
            limit,
        }
    }

    pub(crate) fn skip(&mut self, member: &str, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::debug!(archive = self.label, member, %reason, "skipping member");
        self.report.skipped.push((member.to_string(), reason));
    }

    fn member<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            // Metadata for the reader, not a member.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = match entry.path() {
            Ok(p) => p.into_owned(),
            Err(e) => {
                self.skip(&name, format!("unusable path: {e}"));
                return Ok(());
            }
        };
        let mode = entry.header().mode().unwrap_or(0o644);
        let mtime = entry.header().mtime().unwrap_or(0);
        let kind = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => MemberKind::File,
            EntryType::Directory => MemberKind::Dir,
            EntryType::Symlink => MemberKind::Symlink(link_target(entry)),
            EntryType::Link => MemberKind::Hardlink(link_target(entry)),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                MemberKind::Unsupported("device node or fifo".to_string())
            }
            other => MemberKind::Unsupported(format!("unsupported entry type {other:?}")),
        };
        let size = entry.size();
        self.add(&name, &path, kind, mode, mtime, entry, size)
    }

    /// Adds one archive member of any format: `name` as the archive spells it (for reports), `path`
    /// its path, `mode` its permission bits (file-type bits and setuid/setgid/sticky are dropped),
    /// `data` the reader positioned at its `size` bytes of contents (read only for regular files).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add<R: Read>(
        &mut self,
        name: &str,
        path: &Path,
        kind: MemberKind,
        mode: u32,
        mtime: u64,
        data: &mut R,
        size: u64,
    ) -> Result<(), Failure> {
        let rel = match normalize(path) {
            Ok(rel) => rel,
            Err(reason) => {
                self.skip(name, reason);
                return Ok(());
            }
        };
        let mode = mode & PERMISSION_BITS;
        if rel.as_os_str().is_empty() {
            if matches!(kind, MemberKind::Dir) {
                self.root_attrs = Some((mode, mtime));
            } else {
                self.skip(name, "non-directory member names the root");
            }
            return Ok(());
        }
        match kind {
            MemberKind::File => self.file(data, size, name, &rel, mode, mtime),
            MemberKind::Dir => Ok(self.dir(name, &rel, mode, mtime)?),
            MemberKind::Symlink(target) => Ok(self.symlink(name, &rel, target, mtime)?),
            MemberKind::Hardlink(target) => Ok(self.hardlink(name, &rel, target)?),
            MemberKind::Unsupported(reason) => {
                self.skip(name, reason);
                Ok(())
            }
        }
    }

    /// Makes sure every ancestor of `rel` is a real directory inside `dest`, creating missing ones.
    /// `Ok(Err(reason))` means the member must be skipped.
    fn prepare_parents(&mut self, rel: &Path) -> Result<Result<(), String>, ExtractError> {
        let Some(parent) = rel.parent() else {
            return Ok(Ok(()));
        };
        let mut prefix = PathBuf::new();
        for comp in parent.components() {
            prefix.push(comp);
            if self.real_dirs.contains(&prefix) {
                continue;
            }
            let full = self.dest.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Ok(Err(format!(
                        "parent {} is a symlink; not writing through it",
                        prefix.display()
                    )))
                }
                Ok(_) => {
                    return Ok(Err(format!(
                        "parent {} is not a directory",
                        prefix.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|e| ExtractError::io(&full, e))?;
                }
                Err(e) => return Err(ExtractError::io(&full, e)),
            }
            self.real_dirs.insert(prefix.clone());
        }
        Ok(Ok(()))
    }

    /// Clears the way for a non-directory at `rel`: unlinks an existing file or symlink (never
    /// writing through it). `Ok(Err(reason))` when a directory is in the way.
    fn clear_for_non_dir(&mut self, rel: &Path) -> Result<Result<(), String>, ExtractError> {
        let full = self.dest.join(rel);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(())),
            Err(e) => Err(ExtractError::io(&full, e)),
            Ok(m) if m.file_type().is_dir() => {
                Ok(Err("a directory of the same name exists".to_string()))
            }
            Ok(_) => {
                fs::remove_file(&full).map_err(|e| ExtractError::io(&full, e))?;
                self.regular_files.remove(rel);
                Ok(Ok(()))
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut R,
        expected: u64,
        name: &str,
        rel: &Path,
        mode: u32,
        mtime: u64,
    ) -> Result<(), Failure> {
        if let Err(reason) = self.prepare_parents(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        if let Err(reason) = self.clear_for_non_dir(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        let full = self.dest.join(rel);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&full)
            .map_err(|e| ExtractError::io(&full, e))?;
        let room = self.limits.max_bytes.saturating_sub(self.report.bytes);
        let written = match self.copy(entry, expected, &mut file, &full, room) {
            Ok(n) => n,
            Err(e) => {
                // Never leave a truncated file that looks like a member.
                drop(file);
                let _ = fs::remove_file(&full);
                return Err(e);
            }
        };
        // By descriptor: the path might be swapped, the descriptor cannot.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| ExtractError::io(&full, e))?;
        let t = FileTime::from_unix_time(mtime as i64, 0);
        filetime::set_file_handle_times(&file, Some(t), Some(t))
            .map_err(|e| ExtractError::io(&full, e))?;
        self.report.files += 1;
        self.report.bytes += written;
        self.regular_files.insert(rel.to_path_buf());
        Ok(())
    }

    fn copy<R: Read>(
        &mut self,
        entry: &mut R,
        expected: u64,
        file: &mut File,
        full: &Path,
        room: u64,
    ) -> Result<u64, Failure> {
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                // The tar reader ends a member quietly at end of input: a cut archive.
                Ok(0) if written < expected => {
                    return Err(Failure::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("member data ends after {written} of {expected} bytes"),
                    )))
                }
                Ok(0) => return Ok(written),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Read(e)),
            };
            written += n as u64;
            if written > room {
                return Err(self.limit("unpacked bytes", self.limits.max_bytes).into());
            }
            file.write_all(&self.buf[..n])
                .map_err(|e| ExtractError::io(full, e))?;
        }
    }

    fn dir(&mut self, name: &str, rel: &Path, mode: u32, mtime: u64) -> Result<(), ExtractError> {
        if let Err(reason) = self.prepare_parents(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        let full = self.dest.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                // A file or symlink from an earlier member: replaced, never followed.
                fs::remove_file(&full).map_err(|e| ExtractError::io(&full, e))?;
                self.regular_files.remove(rel);
                self.create_dir(&full)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.create_dir(&full)?,
            Err(e) => return Err(ExtractError::io(&full, e)),
        }
        self.real_dirs.insert(rel.to_path_buf());
        self.dir_attrs.insert(rel.to_path_buf(), (mode, mtime));
        self.report.dirs += 1;
        Ok(())
    }

    fn create_dir(&self, full: &Path) -> Result<(), ExtractError> {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(full)
            .map_err(|e| ExtractError::io(full, e))
    }

    fn symlink(
        &mut self,
        name: &str,
        rel: &Path,
        target: Option<PathBuf>,
        mtime: u64,
    ) -> Result<(), ExtractError> {
        let Some(target) = target.filter(|t| !t.as_os_str().is_empty()) else {
            self.skip(name, "symlink without a target");
            return Ok(());
        };
        if let Err(reason) = self.prepare_parents(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        if let Err(reason) = resolve_inside(&self.dest, rel, &target) {
            self.skip(name, format!("symlink to {}: {reason}", target.display()));
            return Ok(());
        }
        if let Err(reason) = self.clear_for_non_dir(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        let full = self.dest.join(rel);
        std::os::unix::fs::symlink(&target, &full).map_err(|e| ExtractError::io(&full, e))?;
        let t = FileTime::from_unix_time(mtime as i64, 0);
        filetime::set_symlink_file_times(&full, t, t).map_err(|e| ExtractError::io(&full, e))?;
        self.report.symlinks += 1;
        self.symlinks.push(rel.to_path_buf());
        Ok(())
    }

    fn hardlink(
        &mut self,
        name: &str,
        rel: &Path,
        target: Option<PathBuf>,
    ) -> Result<(), ExtractError> {
        let target_rel = match target.as_deref().map(normalize) {
            Some(Ok(t)) if !t.as_os_str().is_empty() => t,
            Some(Err(reason)) => {
                self.skip(name, format!("hardlink target: {reason}"));
                return Ok(());
            }
            _ => {
                self.skip(name, "hardlink without a target");
                return Ok(());
            }
        };
        if target_rel == rel {
            self.skip(name, "hardlink to itself");
            return Ok(());
        }
        if !self.regular_files.contains(&target_rel) {
            self.skip(
                name,
                format!(
                    "hardlink target {} is not a regular file extracted earlier",
                    target_rel.display()
                ),
            );
            return Ok(());
        }
        let target_full = self.dest.join(&target_rel);
        match fs::symlink_metadata(&target_full) {
            Ok(m) if m.file_type().is_file() => {}
            _ => {
                self.skip(
                    name,
                    format!(
                        "hardlink target {} is no longer a regular file",
                        target_rel.display()
                    ),
                );
                return Ok(());
            }
        }
        if let Err(reason) = self.prepare_parents(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        if let Err(reason) = self.clear_for_non_dir(rel)? {
            self.skip(name, reason);
            return Ok(());
        }
        let full = self.dest.join(rel);
        // link(2) does not follow a symlink at the old path on Linux; it is a regular file anyway.
        fs::hard_link(&target_full, &full).map_err(|e| ExtractError::io(&full, e))?;
        self.report.hardlinks += 1;
        self.regular_files.insert(rel.to_path_buf());
        Ok(())
    }

    /// Re-checks symlinks against the finished tree (a later member can change where an earlier
    /// link leads), then applies directory modes and mtimes, deepest first.
    pub(crate) fn finish(mut self) -> Result<ExtractReport, ExtractError> {
        let symlinks = std::mem::take(&mut self.symlinks);
        let mut checked = HashSet::new();
        for rel in symlinks {
            if !checked.insert(rel.clone()) {
                continue;
            }
            let full = self.dest.join(&rel);
            let Ok(target) = fs::read_link(&full) else {
                continue; // replaced by a later member
            };
            if let Err(reason) = resolve_inside(&self.dest, &rel, &target) {
                fs::remove_file(&full).map_err(|e| ExtractError::io(&full, e))?;
                self.report.symlinks -= 1;
                let name = rel.to_string_lossy().into_owned();
                self.skip(
                    &name,
                    format!(
                        "symlink to {}: {reason} (through links extracted after it)",
                        target.display()
                    ),
                );
            }
        }

        let mut dirs: Vec<(PathBuf, (u32, u64))> = self.dir_attrs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, (mode, mtime)) in dirs {
            set_dir_attrs(&self.dest.join(rel), mode, mtime)?;
        }
        if let Some((mode, mtime)) = self.root_attrs {
            set_dir_attrs(&self.dest, mode, mtime)?;
        }
        if !self.report.skipped.is_empty() {
            tracing::warn!(
                archive = self.label,
                skipped = self.report.skipped.len(),
                "unsafe or unsupported members skipped"
            );
        }
        Ok(self.report)
    }
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Option<PathBuf> {
    entry.link_name().ok().flatten().map(|p| p.into_owned())
}

fn set_dir_attrs(full: &Path, mode: u32, mtime: u64) -> Result<(), ExtractError> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(full)
        .map_err(|e| ExtractError::io(full, e))?;
    dir.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ExtractError::io(full, e))?;
    let t = FileTime::from_unix_time(mtime as i64, 0);
    filetime::set_file_handle_times(&dir, Some(t), Some(t)).map_err(|e| ExtractError::io(full, e))
}

/// A member path made relative to the destination: `./` and interior `.` dropped; absolute paths
/// and `..` refused. The empty path is the destination itself.
pub(crate) fn normalize(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::Normal(c) => out.push(c),
            Component::ParentDir => return Err("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// Checks that a symlink at `link` (relative to `dest`) pointing to `target` resolves inside
/// `dest`, with chroot semantics: an absolute target starts at `dest`, a relative one at the
/// link's directory, and symlinks already in the tree are followed (but `..` above `dest` is an
/// escape rather than staying at the root, since tools outside the sandbox read the tree too).
pub(crate) fn resolve_inside(dest: &Path, link: &Path, target: &Path) -> Result<(), String> {
    let mut stack: Vec<OsString> = link
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let mut budget = MAX_SYMLINK_EXPANSIONS;
    walk(dest, &mut stack, target, &mut budget)
}

fn walk(
    dest: &Path,
    stack: &mut Vec<OsString>,
    target: &Path,
    budget: &mut u32,
) -> Result<(), String> {
    for comp in target.components() {
        match comp {
            Component::RootDir => stack.clear(),
            Component::Prefix(_) => return Err("unsupported path prefix".to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return Err("leads outside the tree".to_string());
                }
            }
            Component::Normal(c) => {
                stack.push(c.to_os_string());
                let here: PathBuf = stack.iter().collect();
                let full = dest.join(&here);
                let is_link = fs::symlink_metadata(&full)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    if *budget == 0 {
                        return Err("too many levels of symbolic links".to_string());
                    }
                    *budget -= 1;
                    let next = fs::read_link(&full).map_err(|e| e.to_string())?;
                    stack.pop();
                    walk(dest, stack, &next, budget)?;
                }
            }
        }
    }
    Ok(())
}

/// Opens `path` for reading with a large buffer.
pub(crate) fn open_buffered(path: &Path) -> Result<io::BufReader<File>, ExtractError> {
    let file = File::open(path).map_err(|e| ExtractError::io(path, e))?;
    Ok(io::BufReader::with_capacity(1 << 20, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dot_and_refuses_escapes() {
        assert_eq!(
            normalize(Path::new("./usr/src/x")).unwrap(),
            PathBuf::from("usr/src/x")
        );
        assert_eq!(normalize(Path::new("./")).unwrap(), PathBuf::new());
        assert_eq!(
            normalize(Path::new("a/./b/")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(normalize(Path::new("/etc/passwd")).is_err());
        assert!(normalize(Path::new("../x")).is_err());
        assert!(normalize(Path::new("a/../../x")).is_err());
        // Even a `..` that would stay inside is refused: tar has no business writing one.
        assert!(normalize(Path::new("a/../b")).is_err());
    }

    #[test]
    fn symlink_resolution_with_chroot_semantics() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path();
        let ok =
            |link: &str, target: &str| resolve_inside(dest, Path::new(link), Path::new(target));
        assert!(ok("usr/src/h/scripts", "../../lib/kbuild/scripts").is_ok());
        assert!(ok("lib/modules/6.1/build", "/usr/src/h").is_ok());
        assert!(ok("a", "/../x").is_err());
        assert!(ok("usr/x", "../../../../etc/passwd").is_err());
        assert!(ok("x", "..").is_err());
        assert!(ok("x", ".").is_ok());

        // Through links already in the tree: `up` leads to the root, so `up/..` is outside.
        fs::create_dir_all(dest.join("sub")).unwrap();
        std::os::unix::fs::symlink("..", dest.join("sub/up")).unwrap();
        assert!(ok("z", "sub/up/..").is_err());
        assert!(ok("z", "sub/up/sub").is_ok());
        // A loop is refused, not followed forever.
        std::os::unix::fs::symlink("loop2", dest.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", dest.join("loop2")).unwrap();
        assert_eq!(
            ok("z", "loop1/x").unwrap_err(),
            "too many levels of symbolic links"
        );
    }
}
