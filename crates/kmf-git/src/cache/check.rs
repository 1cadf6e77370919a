//! What a bare repository unpacked from the git cache may hold before it becomes a mirror.
//!
//! Whoever can write the store can write a tarball, and a repository has files that make git read beyond
//! it (gitrepository-layout(5)): `objects/info/alternates` borrows the objects of another repository on
//! this machine, `commondir` makes another repository's refs and objects this one's, `info/grafts` and
//! `shallow` rewrite history, a `.git` file or a `worktrees/*/gitdir` points elsewhere, and a symbolic or
//! hard link in the tree is another file of this machine under a repository's name. A mirror the updater
//! made never holds any of these, so finding one is tampering: the tarball is refused, not cleaned, and the
//! repository is then checked with git itself (every object reachable from every ref present), with no
//! configuration, alternates or replacements from anywhere else.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a tarball from the git cache was refused: each names what it found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{path} {why}")]
    Redirect { path: String, why: &'static str },
    #[error("{path} is a symbolic link")]
    Symlink { path: String },
    #[error("{path} is a hard link (one file under two names)")]
    HardLink { path: String },
    #[error("{path} is neither a regular file nor a directory")]
    Special { path: String },
    #[error("member {member} was not unpacked: {reason}")]
    UnsafeMember { member: String, reason: String },
    #[error("ref {name} is outside refs/heads, refs/tags and refs/kmodfarm")]
    ForeignRef { name: String },
    #[error("{path} cannot be read: {message}")]
    Unreadable { path: String, message: String },
}

/// Files at fixed places that make git read, or believe, something the repository does not hold.
const REDIRECTS: &[(&str, &str)] = &[
    (
        "objects/info/alternates",
        "names other object stores whose objects git would read",
    ),
    (
        "objects/info/http-alternates",
        "names URLs git would read objects from",
    ),
    (
        "commondir",
        "makes another repository's refs, objects and configuration this one's",
    ),
    (
        "info/grafts",
        "gives commits parents that are not their own",
    ),
    (
        "shallow",
        "cuts history at the commits it names (a mirror is never shallow)",
    ),
    (
        "worktrees",
        "links working trees elsewhere on this machine (their gitdir files)",
    ),
    ("gitdir", "points git at another directory"),
    ("modules", "holds other repositories"),
    ("common", "is shared with other working trees"),
    (
        "config.worktree",
        "is configuration, which a cached repository may not carry",
    ),
];

/// The refs a mirror has: what `fetch` writes (branches, tags, the default branch).
const REF_NAMESPACES: &[&str] = &["refs/heads/", "refs/tags/", "refs/kmodfarm/"];

/// Refuses `dir` if anything in it could make git read outside it (see the module documentation). Runs
/// before git is ever started in `dir`, and before kmodfarm writes in it.
pub(crate) fn layout(dir: &Path) -> Result<(), Refusal> {
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| Refusal::Unreadable {
            path: e
                .path()
                .and_then(|p| p.strip_prefix(dir).ok())
                .map_or_else(|| ".".into(), |p| p.display().to_string()),
            message: e.to_string(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        if let Some((_, why)) = REDIRECTS.iter().find(|(p, _)| *p == rel) {
            return Err(Refusal::Redirect { path: rel, why });
        }
        // A `.git` file ("gitdir: PATH") or directory is where git looks first for a repository: at the
        // top it would replace this one for every command run in it.
        if rel.split('/').any(|c| c == ".git") {
            return Err(Refusal::Redirect {
                path: rel,
                why: "points git at another repository",
            });
        }
        let ft = entry.file_type();
        if ft.is_symlink() {
            return Err(Refusal::Symlink { path: rel });
        }
        if !ft.is_dir() && !ft.is_file() {
            return Err(Refusal::Special { path: rel });
        }
        if ft.is_dir() {
            continue;
        }
        let meta = entry.metadata().map_err(|e| Refusal::Unreadable {
            path: rel.clone(),
            message: e.to_string(),
        })?;
        // The unpacker links a hard link member to the file it names; a second name of one file is
        // never in a mirror, and the link could be a host file's name if the tree were ever reused.
        if meta.nlink() > 1 {
            return Err(Refusal::HardLink { path: rel });
        }
        // `remotes/NAME` and `branches/NAME` are URLs a fetch of NAME goes to (git init leaves
        // `branches/` empty).
        if rel.starts_with("remotes/") || rel.starts_with("branches/") {
            return Err(Refusal::Redirect {
                path: rel,
                why: "names a URL git would fetch from",
            });
        }
        if rel.starts_with("refs/") && !REF_NAMESPACES.iter().any(|ns| rel.starts_with(ns)) {
            return Err(Refusal::ForeignRef { name: rel });
        }
    }
    packed_refs(dir)
}

/// Each ref in `packed-refs` is in a mirror's namespaces: `refs/replace/*` would make git show another
/// object's content under a commit's id.
fn packed_refs(dir: &Path) -> Result<(), Refusal> {
    let Ok(text) = std::fs::read(dir.join("packed-refs")) else {
        return Ok(());
    };
    for line in String::from_utf8_lossy(&text).lines() {
        if line.starts_with('#') || line.starts_with('^') || line.is_empty() {
            continue;
        }
        let name = line.split_once(' ').map_or(line, |(_, name)| name);
        if !REF_NAMESPACES.iter().any(|ns| name.starts_with(ns)) {
            return Err(Refusal::ForeignRef {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// git on `dir` and nothing else: no system or user configuration (an `[include]` or an
/// `url.insteadOf` of this machine's), no alternates or object directories from the environment, no
/// replacement objects, `HOME` an empty directory.
pub(crate) fn sealed_git(dir: &Path, home: &Path) -> Command {
    let mut c = Command::new("git");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LC_ALL", "C")
        .env("GIT_DIR", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    c
}

/// Every object reachable from every ref (and HEAD) is in `dir` itself; `Err` says which are not. Not a
/// [`Refusal`]: a damaged tarball (one cut at a member's end unpacks cleanly) looks the same as one whose
/// commits name another repository's objects, and neither is used.
pub(crate) fn connectivity(dir: &Path, home: &Path) -> Result<(), String> {
    let out = sealed_git(dir, home)
        .args([
            "fsck",
            "--connectivity-only",
            "--no-dangling",
            "--no-progress",
        ])
        .output()
        .map_err(|e| format!("running git fsck: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // fsck aligns its columns with runs of spaces; "missing <type> <id>" is what says most.
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty() && !l.starts_with("notice:"))
        .collect();
    let missing: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("missing "))
        .map(String::as_str)
        .collect();
    let lines: Vec<&str> = if missing.is_empty() {
        lines.iter().map(String::as_str).take(3).collect()
    } else {
        missing.into_iter().take(3).collect()
    };
    Err(format!(
        "objects are missing: git fsck --connectivity-only says {}",
        if lines.is_empty() {
            format!("it exited with {}", out.status)
        } else {
            lines.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_packed_refs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = "a".repeat(40);
        std::fs::write(
            dir.path().join("packed-refs"),
            format!(
                "# pack-refs with: peeled fully-peeled sorted\n{id} refs/heads/main\n{id} refs/tags/v1\n^{id}\n"
            ),
        )
        .unwrap();
        assert_eq!(layout(dir.path()), Ok(()));
        std::fs::write(
            dir.path().join("packed-refs"),
            format!("{id} refs/heads/main\n{id} refs/replace/{id}\n"),
        )
        .unwrap();
        assert_eq!(
            layout(dir.path()),
            Err(Refusal::ForeignRef {
                name: format!("refs/replace/{id}")
            })
        );
    }

    #[test]
    fn redirecting_files_are_named() {
        for path in [
            "objects/info/alternates",
            "commondir",
            "info/grafts",
            "shallow",
            "worktrees/x/gitdir",
            ".git",
            "objects/.git",
            "remotes/origin",
            "branches/origin",
            "refs/replace/abc",
            "refs/remotes/origin/main",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "x\n").unwrap();
            let refused = layout(dir.path()).expect_err(path);
            let first = path.split('/').next().unwrap();
            assert!(refused.to_string().contains(first), "{path}: {refused}");
        }
        // What git init leaves is fine.
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "branches",
            "refs/heads",
            "refs/tags",
            "objects/info",
            "info",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("info/exclude"), "").unwrap();
        std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(layout(dir.path()), Ok(()));
    }
}
