//! Merging package roots over the builder root filesystem with bind mounts only.
//!
//! bwrap 0.8.0 has no overlayfs options, so the merged view is built from bind mounts on bwrap's empty
//! tmpfs root. Every top-level entry of the rootfs is bound on its own. For an overlay, each entry that the
//! rootfs lacks (after following the rootfs' symlinks: a package's `lib/modules/...` lands in
//! `usr/lib/modules/...` of a merged-/usr root) is a "mount unit" bound whole; directories that both have
//! are descended into. The directory a unit goes into exists read-only in the rootfs, so it is rebuilt on a
//! tmpfs ("shadowed"): every rootfs entry of it bound again, then the units added. Shadows are made ready
//! parents first and remounted read-only after every mount is in place.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use crate::SandboxError;

/// One mount operation on bwrap's command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BwrapArg {
    /// `--ro-bind SRC DEST`: a host file or directory, read-only.
    RoBind { src: PathBuf, dest: PathBuf },
    /// `--symlink TARGET DEST`.
    Symlink { target: PathBuf, dest: PathBuf },
    /// `--tmpfs DEST`: an empty directory to rebuild a shadowed directory in.
    Tmpfs { dest: PathBuf },
    /// `--remount-ro DEST` (not recursive).
    RemountRo { dest: PathBuf },
}

impl BwrapArg {
    /// The option and its operands, ready for bwrap's argv.
    pub fn to_args(&self) -> Vec<OsString> {
        let os = |s: &str| OsString::from(s);
        match self {
            BwrapArg::RoBind { src, dest } => {
                vec![os("--ro-bind"), src.clone().into(), dest.clone().into()]
            }
            BwrapArg::Symlink { target, dest } => {
                vec![os("--symlink"), target.clone().into(), dest.clone().into()]
            }
            BwrapArg::Tmpfs { dest } => vec![os("--tmpfs"), dest.clone().into()],
            BwrapArg::RemountRo { dest } => vec![os("--remount-ro"), dest.clone().into()],
        }
    }

    /// Where the operation acts inside the sandbox.
    pub fn dest(&self) -> &Path {
        match self {
            BwrapArg::RoBind { dest, .. }
            | BwrapArg::Symlink { dest, .. }
            | BwrapArg::Tmpfs { dest }
            | BwrapArg::RemountRo { dest } => dest,
        }
    }
}

/// The mounts that make the merged root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// Binds, symlinks and tmpfs mounts, every parent before what goes into it.
    pub mounts: Vec<BwrapArg>,
    /// Read-only remounts of the tmpfs directories and of `/` itself. They must come after every other
    /// mount, the caller's own binds included: a mount point cannot be created in a read-only directory.
    pub remount_ro: Vec<BwrapArg>,
}

/// Top-level names the sandbox provides itself (`--proc`, `--dev`, a private `/tmp`); `/sys` is left out
/// altogether, since builds do not need the host's devices.
const OWN_TOP_LEVEL: [&str; 4] = ["dev", "proc", "sys", "tmp"];

/// As many symlinks as the kernel follows in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Plans the mounts that show `rootfs` with every overlay merged over it, read-only. Later overlays win
/// over earlier ones and over the rootfs where a non-directory clashes with anything; directories merge.
pub fn plan_mounts(rootfs: &Path, overlays: &[PathBuf]) -> Result<MountPlan, SandboxError> {
    require_dir("root filesystem", rootfs)?;
    for overlay in overlays {
        require_dir("overlay", overlay)?;
    }
    let mut planner = Planner {
        rootfs: rootfs.to_path_buf(),
        root: Dir {
            rootfs: Some(rootfs.to_path_buf()),
            shadow: true,
            children: BTreeMap::new(),
        },
    };
    for overlay in overlays {
        planner.walk(overlay, &[])?;
    }
    let mut plan = MountPlan::default();
    emit_dir(&planner.root, Path::new("/"), true, &mut plan)?;
    plan.remount_ro.push(BwrapArg::RemountRo {
        dest: PathBuf::from("/"),
    });
    Ok(plan)
}

fn require_dir(what: &'static str, path: &Path) -> Result<(), SandboxError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SandboxError::BadPath {
            what,
            path: path.to_path_buf(),
            reason: "not a directory".into(),
        }),
        Err(e) => Err(SandboxError::BadPath {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// A node of the merged tree, where it differs from the rootfs.
#[derive(Debug)]
enum Node {
    Dir(Dir),
    /// An overlay file or whole directory.
    Bind(PathBuf),
    /// An overlay symlink, recreated with the same target.
    Symlink(PathBuf),
}

#[derive(Debug)]
struct Dir {
    /// This directory in the rootfs, when it is a real directory there.
    rootfs: Option<PathBuf>,
    /// Rebuilt on a tmpfs (its rootfs entries bound again one by one) because something new goes in it.
    /// Always true when the rootfs lacks the directory.
    shadow: bool,
    children: BTreeMap<OsString, Node>,
}

impl Dir {
    fn shadow_of_overlay_dir(src: &Path) -> Result<Dir, SandboxError> {
        let mut children = BTreeMap::new();
        for name in sorted_names(src)? {
            let path = src.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(SandboxError::io("stat", &path))?;
            let node = if meta.file_type().is_symlink() {
                Node::Symlink(
                    std::fs::read_link(&path).map_err(SandboxError::io("read link", &path))?,
                )
            } else if meta.is_dir() || meta.is_file() {
                Node::Bind(path)
            } else {
                continue;
            };
            children.insert(name, node);
        }
        Ok(Dir {
            rootfs: None,
            shadow: true,
            children,
        })
    }
}

struct Planner {
    rootfs: PathBuf,
    root: Dir,
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, SandboxError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SandboxError::io("list", dir))? {
        names.push(entry.map_err(SandboxError::io("list", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

impl Planner {
    /// Merges the overlay directory `host_dir`, which lands at `at` (already resolved), into the tree.
    fn walk(&mut self, host_dir: &Path, at: &[OsString]) -> Result<(), SandboxError> {
        for name in sorted_names(host_dir)? {
            let src = host_dir.join(&name);
            let meta = std::fs::symlink_metadata(&src).map_err(SandboxError::io("stat", &src))?;
            let mut path = at.to_vec();
            path.push(name);
            let is_dir = meta.is_dir();
            let target = self.resolve(&path, is_dir)?;
            if let Some(first) = target.first() {
                if OWN_TOP_LEVEL
                    .iter()
                    .any(|n| OsStr::new(n) == first.as_os_str())
                {
                    tracing::warn!(
                        path = %src.display(),
                        "overlay entry ignored: the sandbox provides /{} itself",
                        first.to_string_lossy()
                    );
                    continue;
                }
            }
            if is_dir {
                if self.open_dir(&target)? {
                    self.walk(&src, &target)?;
                } else {
                    self.insert(&target, Node::Bind(src))?;
                }
            } else if meta.file_type().is_symlink() || meta.is_file() {
                if target.is_empty() {
                    continue;
                }
                let node = if meta.is_file() {
                    Node::Bind(src)
                } else {
                    Node::Symlink(
                        std::fs::read_link(&src).map_err(SandboxError::io("read link", &src))?,
                    )
                };
                self.insert(&target, node)?;
            } else {
                tracing::debug!(path = %src.display(), "overlay entry skipped: not a file, directory or symlink");
            }
        }
        Ok(())
    }

    /// Where `path` lands once the rootfs' symlinks are followed (the last component only when
    /// `follow_last`). Symlinks are looked up only while the path stays inside real rootfs directories that
    /// no overlay replaced; absolute targets and `..` stay inside the rootfs, as in a chroot.
    fn resolve(&self, path: &[OsString], follow_last: bool) -> Result<Vec<OsString>, SandboxError> {
        let mut queue: Vec<OsString> = path.iter().rev().cloned().collect();
        // Per resolved component: is the path up to here a real rootfs directory?
        let mut out: Vec<(OsString, bool)> = Vec::new();
        let mut hops = 0;
        while let Some(c) = queue.pop() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                out.pop();
                continue;
            }
            let in_rootfs = !matches!(out.last(), Some((_, false)));
            let mut candidate: Vec<OsString> = out.iter().map(|(n, _)| n.clone()).collect();
            candidate.push(c.clone());
            let host = join_all(&self.rootfs, &candidate);
            let overridden = self
                .node_at(&candidate)
                .is_some_and(|n| !matches!(n, Node::Dir(_)));
            let is_last = queue.is_empty();
            if in_rootfs && !overridden && (follow_last || !is_last) {
                if let Ok(target) = std::fs::read_link(&host) {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(SandboxError::SymlinkLoop {
                            rootfs: self.rootfs.clone(),
                            path: join_all(Path::new("/"), path),
                        });
                    }
                    let mut parts = Vec::new();
                    for comp in target.components() {
                        match comp {
                            Component::RootDir => out.clear(),
                            Component::Normal(n) => parts.push(n.to_os_string()),
                            Component::ParentDir => parts.push(OsString::from("..")),
                            Component::CurDir | Component::Prefix(_) => {}
                        }
                    }
                    queue.extend(parts.into_iter().rev());
                    continue;
                }
            }
            let real = in_rootfs && !overridden && is_real_dir(&host);
            out.push((c, real));
        }
        Ok(out.into_iter().map(|(n, _)| n).collect())
    }

    /// The node the merged tree has at `path`, or the overlay node above it that replaces the rootfs there.
    fn node_at(&self, path: &[OsString]) -> Option<&Node> {
        let mut dir = &self.root;
        for (i, c) in path.iter().enumerate() {
            let node = dir.children.get(c)?;
            match node {
                Node::Dir(d) if i + 1 < path.len() => dir = d,
                _ => return Some(node),
            }
        }
        None
    }

    /// Makes `path` a directory of the merged tree that overlay content can be merged into. Returns
    /// false when there is no directory there to merge with (the caller then binds the overlay's whole).
    fn open_dir(&mut self, path: &[OsString]) -> Result<bool, SandboxError> {
        let mut dir = &mut self.root;
        for c in path {
            let rootfs_child = dir
                .rootfs
                .as_ref()
                .map(|p| p.join(c))
                .filter(|p| is_real_dir(p));
            let converted = match dir.children.get(c) {
                Some(Node::Dir(_)) => None,
                Some(Node::Bind(src)) if is_real_dir(src) => Some(Dir::shadow_of_overlay_dir(src)?),
                Some(_) => return Ok(false),
                None => match rootfs_child {
                    Some(p) => Some(Dir {
                        rootfs: Some(p),
                        shadow: false,
                        children: BTreeMap::new(),
                    }),
                    None => return Ok(false),
                },
            };
            if let Some(new) = converted {
                dir.children.insert(c.clone(), Node::Dir(new));
            }
            dir = match dir.children.get_mut(c) {
                Some(Node::Dir(d)) => d,
                _ => unreachable!("a directory was just put there"),
            };
        }
        Ok(true)
    }

    /// Puts a unit at `path`, shadowing its parent and making the directories above it as needed.
    fn insert(&mut self, path: &[OsString], node: Node) -> Result<(), SandboxError> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(());
        };
        let mut dir = &mut self.root;
        for c in parents {
            let rootfs_child = dir
                .rootfs
                .as_ref()
                .map(|p| p.join(c))
                .filter(|p| is_real_dir(p));
            let replacement = match dir.children.get(c) {
                Some(Node::Dir(_)) => None,
                Some(Node::Bind(src)) if is_real_dir(src) => Some(Dir::shadow_of_overlay_dir(src)?),
                // An overlay file or symlink in the way: the later overlay's directory wins.
                Some(_) => Some(Dir {
                    rootfs: None,
                    shadow: true,
                    children: BTreeMap::new(),
                }),
                None => Some(match rootfs_child {
                    Some(p) => Dir {
                        rootfs: Some(p),
                        shadow: false,
                        children: BTreeMap::new(),
                    },
                    None => Dir {
                        rootfs: None,
                        shadow: true,
                        children: BTreeMap::new(),
                    },
                }),
            };
            if let Some(new) = replacement {
                if new.rootfs.is_none() {
                    // Something new appears in this directory.
                    dir.shadow = true;
                }
                dir.children.insert(c.clone(), Node::Dir(new));
            }
            dir = match dir.children.get_mut(c) {
                Some(Node::Dir(d)) => d,
                _ => unreachable!("a directory was just put there"),
            };
        }
        dir.shadow = true;
        dir.children.insert(last.clone(), node);
        Ok(())
    }
}

fn join_all(base: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

/// Recreates a rootfs entry inside a shadowed directory.
fn rebind(src: &Path, dest: PathBuf, plan: &mut MountPlan) -> Result<(), SandboxError> {
    let meta = std::fs::symlink_metadata(src).map_err(SandboxError::io("stat", src))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(SandboxError::io("read link", src))?;
        plan.mounts.push(BwrapArg::Symlink { target, dest });
    } else if meta.is_dir() || meta.is_file() {
        plan.mounts.push(BwrapArg::RoBind {
            src: src.to_path_buf(),
            dest,
        });
    } else {
        tracing::debug!(path = %src.display(), "rootfs entry skipped: not a file, directory or symlink");
    }
    Ok(())
}

fn emit_dir(
    dir: &Dir,
    dest: &Path,
    is_root: bool,
    plan: &mut MountPlan,
) -> Result<(), SandboxError> {
    if dir.shadow && !is_root {
        plan.mounts.push(BwrapArg::Tmpfs {
            dest: dest.to_path_buf(),
        });
        plan.remount_ro.push(BwrapArg::RemountRo {
            dest: dest.to_path_buf(),
        });
    }
    let mut names: BTreeSet<OsString> = dir.children.keys().cloned().collect();
    if dir.shadow {
        if let Some(rootfs_dir) = &dir.rootfs {
            names.extend(sorted_names(rootfs_dir)?);
        }
    }
    for name in names {
        if is_root
            && OWN_TOP_LEVEL
                .iter()
                .any(|n| OsStr::new(n) == name.as_os_str())
        {
            continue;
        }
        let child_dest = dest.join(&name);
        match dir.children.get(&name) {
            None => {
                if let Some(rootfs_dir) = &dir.rootfs {
                    rebind(&rootfs_dir.join(&name), child_dest, plan)?;
                }
            }
            Some(Node::Dir(child)) => {
                if dir.shadow && !child.shadow {
                    // Unchanged itself but with changes below: its rootfs content is bound first.
                    if let Some(src) = &child.rootfs {
                        plan.mounts.push(BwrapArg::RoBind {
                            src: src.clone(),
                            dest: child_dest.clone(),
                        });
                    }
                }
                emit_dir(child, &child_dest, false, plan)?;
            }
            Some(Node::Bind(src)) => plan.mounts.push(BwrapArg::RoBind {
                src: src.clone(),
                dest: child_dest,
            }),
            Some(Node::Symlink(target)) => plan.mounts.push(BwrapArg::Symlink {
                target: target.clone(),
                dest: child_dest,
            }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mkdirs(root: &Path, dirs: &[&str]) {
        for d in dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
    }

    fn touch(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f.as_bytes()).unwrap();
        }
    }

    fn link(root: &Path, at: &str, target: &str) {
        let p = root.join(at);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn bind(src: PathBuf, dest: &str) -> BwrapArg {
        BwrapArg::RoBind {
            src,
            dest: dest.into(),
        }
    }

    fn sym(target: &str, dest: &str) -> BwrapArg {
        BwrapArg::Symlink {
            target: target.into(),
            dest: dest.into(),
        }
    }

    fn tmpfs(dest: &str) -> BwrapArg {
        BwrapArg::Tmpfs { dest: dest.into() }
    }

    fn ro(dest: &str) -> BwrapArg {
        BwrapArg::RemountRo { dest: dest.into() }
    }

    /// A small merged-/usr Debian root.
    fn debian_rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        mkdirs(
            r,
            &[
                "usr/bin",
                "usr/lib/gcc/x86_64-linux-gnu/12",
                "usr/lib/x86_64-linux-gnu",
                "usr/src",
                "etc",
                "proc",
                "dev",
                "sys",
                "tmp",
                "var/lib",
            ],
        );
        touch(r, &["etc/os-release", "usr/bin/gcc-12"]);
        link(r, "bin", "usr/bin");
        link(r, "lib", "usr/lib");
        link(r, "lib64", "usr/lib64");
        dir
    }

    /// Checks that every mount's parent directory is made writable (or exists) before the mount, and that
    /// no remount comes before it: the order bwrap needs.
    fn assert_parents_first(plan: &MountPlan) {
        let mut tmpfs_seen: Vec<&Path> = vec![Path::new("/")];
        for m in &plan.mounts {
            if let BwrapArg::Tmpfs { dest } = m {
                let parent = dest.parent().unwrap();
                assert!(
                    tmpfs_seen.iter().any(|t| parent.starts_with(t)),
                    "tmpfs {dest:?} before any tmpfs above it"
                );
                tmpfs_seen.push(dest);
            }
        }
        for r in &plan.remount_ro {
            assert!(matches!(r, BwrapArg::RemountRo { .. }));
        }
        assert_eq!(plan.remount_ro.last(), Some(&ro("/")));
    }

    #[test]
    fn plain_rootfs_binds_each_top_level_entry() {
        let root = debian_rootfs();
        let r = root.path();
        let plan = plan_mounts(r, &[]).unwrap();
        assert_eq!(
            plan.mounts,
            vec![
                sym("usr/bin", "/bin"),
                bind(r.join("etc"), "/etc"),
                sym("usr/lib", "/lib"),
                sym("usr/lib64", "/lib64"),
                bind(r.join("usr"), "/usr"),
                bind(r.join("var"), "/var"),
            ]
        );
        assert_eq!(plan.remount_ro, vec![ro("/")]);
    }

    #[test]
    fn debian_header_packages_merge_into_usr_src_and_usr_lib() {
        let root = debian_rootfs();
        let r = root.path();
        let common = tempfile::tempdir().unwrap();
        let c = common.path();
        touch(c, &["usr/src/linux-headers-6.1.0-56-common/Makefile"]);
        let kbuild = tempfile::tempdir().unwrap();
        let k = kbuild.path();
        touch(k, &["usr/lib/linux-kbuild-6.1/scripts/mod/modpost"]);
        link(k, "usr/src/linux-kbuild-6.1", "../lib/linux-kbuild-6.1");
        let amd64 = tempfile::tempdir().unwrap();
        let a = amd64.path();
        touch(a, &["usr/src/linux-headers-6.1.0-56-amd64/.config"]);
        link(
            a,
            "usr/src/linux-headers-6.1.0-56-amd64/scripts",
            "../../lib/linux-kbuild-6.1/scripts",
        );
        link(
            a,
            "lib/modules/6.1.0-56-amd64/build",
            "/usr/src/linux-headers-6.1.0-56-amd64",
        );

        let plan = plan_mounts(r, &[c.to_path_buf(), k.to_path_buf(), a.to_path_buf()]).unwrap();
        assert_eq!(
            plan.mounts,
            vec![
                sym("usr/bin", "/bin"),
                bind(r.join("etc"), "/etc"),
                sym("usr/lib", "/lib"),
                sym("usr/lib64", "/lib64"),
                bind(r.join("usr"), "/usr"),
                // /usr/lib gets the kbuild package and, through the /lib symlink, lib/modules.
                tmpfs("/usr/lib"),
                bind(r.join("usr/lib/gcc"), "/usr/lib/gcc"),
                bind(
                    k.join("usr/lib/linux-kbuild-6.1"),
                    "/usr/lib/linux-kbuild-6.1"
                ),
                bind(a.join("lib/modules"), "/usr/lib/modules"),
                bind(
                    r.join("usr/lib/x86_64-linux-gnu"),
                    "/usr/lib/x86_64-linux-gnu"
                ),
                tmpfs("/usr/src"),
                bind(
                    a.join("usr/src/linux-headers-6.1.0-56-amd64"),
                    "/usr/src/linux-headers-6.1.0-56-amd64"
                ),
                bind(
                    c.join("usr/src/linux-headers-6.1.0-56-common"),
                    "/usr/src/linux-headers-6.1.0-56-common"
                ),
                sym("../lib/linux-kbuild-6.1", "/usr/src/linux-kbuild-6.1"),
                bind(r.join("var"), "/var"),
            ]
        );
        assert_eq!(
            plan.remount_ro,
            vec![ro("/usr/lib"), ro("/usr/src"), ro("/")]
        );
        assert_parents_first(&plan);
    }

    #[test]
    fn existing_modules_dir_is_shadowed_inside_a_shadow() {
        let root = debian_rootfs();
        let r = root.path();
        mkdirs(r, &["usr/lib/modules/5.10.0-1-amd64"]);
        let pkg = tempfile::tempdir().unwrap();
        let p = pkg.path();
        link(p, "lib/modules/6.1.0-56-amd64/build", "/usr/src/x");
        touch(p, &["usr/lib/linux-kbuild-6.1/f"]);
        let plan = plan_mounts(r, &[p.to_path_buf()]).unwrap();
        let lib_part: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.dest().starts_with("/usr/lib"))
            .cloned()
            .collect();
        assert_eq!(
            lib_part,
            vec![
                tmpfs("/usr/lib"),
                bind(r.join("usr/lib/gcc"), "/usr/lib/gcc"),
                bind(
                    p.join("usr/lib/linux-kbuild-6.1"),
                    "/usr/lib/linux-kbuild-6.1"
                ),
                tmpfs("/usr/lib/modules"),
                bind(
                    r.join("usr/lib/modules/5.10.0-1-amd64"),
                    "/usr/lib/modules/5.10.0-1-amd64"
                ),
                bind(
                    p.join("lib/modules/6.1.0-56-amd64"),
                    "/usr/lib/modules/6.1.0-56-amd64"
                ),
                bind(
                    r.join("usr/lib/x86_64-linux-gnu"),
                    "/usr/lib/x86_64-linux-gnu"
                ),
            ]
        );
        assert_eq!(
            plan.remount_ro,
            vec![ro("/usr/lib"), ro("/usr/lib/modules"), ro("/")]
        );
        assert_parents_first(&plan);
    }

    #[test]
    fn a_changed_dir_below_an_untouched_one_is_bound_before_its_shadow() {
        let root = debian_rootfs();
        let r = root.path();
        let pkg = tempfile::tempdir().unwrap();
        let p = pkg.path();
        // var/lib exists, var/lib/dpkg does not: /var/lib is shadowed, /var stays a plain bind.
        touch(p, &["var/lib/dpkg/status", "usr/share/x"]);
        let plan = plan_mounts(r, &[p.to_path_buf()]).unwrap();
        // /usr/share is not in this rootfs: the package's whole directory goes into a rebuilt /usr.
        let usr: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.dest().starts_with("/usr"))
            .cloned()
            .collect();
        assert_eq!(
            usr,
            vec![
                tmpfs("/usr"),
                bind(r.join("usr/bin"), "/usr/bin"),
                bind(r.join("usr/lib"), "/usr/lib"),
                bind(p.join("usr/share"), "/usr/share"),
                bind(r.join("usr/src"), "/usr/src"),
            ]
        );
        let var_part: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.dest().starts_with("/var"))
            .cloned()
            .collect();
        assert_eq!(
            var_part,
            vec![
                bind(r.join("var"), "/var"),
                tmpfs("/var/lib"),
                bind(p.join("var/lib/dpkg"), "/var/lib/dpkg"),
            ]
        );
    }

    #[test]
    fn two_overlays_sharing_a_new_directory_merge_on_a_tmpfs() {
        let root = debian_rootfs();
        let r = root.path();
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        touch(one.path(), &["opt/kmf/a", "opt/kmf/both"]);
        touch(two.path(), &["opt/kmf/b", "opt/kmf/both", "opt/other"]);
        link(one.path(), "opt/kmf/link", "a");
        let plan = plan_mounts(r, &[one.path().to_path_buf(), two.path().to_path_buf()]).unwrap();
        let opt: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.dest().starts_with("/opt"))
            .cloned()
            .collect();
        assert_eq!(
            opt,
            vec![
                tmpfs("/opt"),
                tmpfs("/opt/kmf"),
                bind(one.path().join("opt/kmf/a"), "/opt/kmf/a"),
                bind(two.path().join("opt/kmf/b"), "/opt/kmf/b"),
                // The later overlay wins a clash of files.
                bind(two.path().join("opt/kmf/both"), "/opt/kmf/both"),
                sym("a", "/opt/kmf/link"),
                bind(two.path().join("opt/other"), "/opt/other"),
            ]
        );
        assert!(plan.remount_ro.contains(&ro("/opt")));
        assert!(plan.remount_ro.contains(&ro("/opt/kmf")));
        assert_parents_first(&plan);
    }

    #[test]
    fn overlay_file_replaces_a_rootfs_file() {
        let root = debian_rootfs();
        let r = root.path();
        let pkg = tempfile::tempdir().unwrap();
        touch(pkg.path(), &["etc/os-release"]);
        let plan = plan_mounts(r, &[pkg.path().to_path_buf()]).unwrap();
        let etc: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.dest().starts_with("/etc"))
            .cloned()
            .collect();
        assert_eq!(
            etc,
            vec![
                tmpfs("/etc"),
                bind(pkg.path().join("etc/os-release"), "/etc/os-release"),
            ]
        );
    }

    #[test]
    fn entries_for_the_sandbox_own_dirs_are_ignored() {
        let root = debian_rootfs();
        let pkg = tempfile::tempdir().unwrap();
        touch(pkg.path(), &["tmp/x", "proc/y", "dev/z"]);
        let plan = plan_mounts(root.path(), &[pkg.path().to_path_buf()]).unwrap();
        assert_eq!(plan, plan_mounts(root.path(), &[]).unwrap());
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs_like_a_chroot() {
        let root = debian_rootfs();
        let r = root.path();
        // Absolute targets and too many `..` stay inside the rootfs.
        link(r, "usr/src/abs", "/usr/lib");
        link(r, "usr/src/up", "../../../../../usr/lib");
        let pkg = tempfile::tempdir().unwrap();
        touch(pkg.path(), &["usr/src/abs/one/f", "usr/src/up/two/f"]);
        let plan = plan_mounts(r, &[pkg.path().to_path_buf()]).unwrap();
        assert!(plan
            .mounts
            .contains(&bind(pkg.path().join("usr/src/abs/one"), "/usr/lib/one")));
        assert!(plan
            .mounts
            .contains(&bind(pkg.path().join("usr/src/up/two"), "/usr/lib/two")));
        assert!(!plan.mounts.contains(&tmpfs("/usr/src")));
    }

    #[test]
    fn symlink_loops_are_an_error_not_a_hang() {
        let root = debian_rootfs();
        let r = root.path();
        link(r, "a", "b");
        link(r, "b", "a");
        let pkg = tempfile::tempdir().unwrap();
        touch(pkg.path(), &["a/x"]);
        let err = plan_mounts(r, &[pkg.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, SandboxError::SymlinkLoop { .. }), "{err}");
        assert!(err.to_string().contains("/a"), "{err}");
    }

    #[test]
    fn missing_rootfs_or_overlay_is_a_clear_error() {
        let root = debian_rootfs();
        let missing = root.path().join("nope");
        let err = plan_mounts(&missing, &[]).unwrap_err();
        assert!(err.to_string().contains("root filesystem"), "{err}");
        let err = plan_mounts(root.path(), &[root.path().join("etc/os-release")]).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn args_are_bwrap_options() {
        assert_eq!(
            bind("/a".into(), "/b").to_args(),
            vec!["--ro-bind", "/a", "/b"]
        );
        assert_eq!(sym("t", "/d").to_args(), vec!["--symlink", "t", "/d"]);
        assert_eq!(tmpfs("/d").to_args(), vec!["--tmpfs", "/d"]);
        assert_eq!(ro("/d").to_args(), vec!["--remount-ro", "/d"]);
    }
}
