//! A repository's exact commit as a plain source tree, through a local mirror.
//!
//! ```text
//! <cache>/git/mirrors/<key>.git     bare mirror of one repository (branches, tags, the remote HEAD)
//! <cache>/git/mirrors/<key>.lock    flock(2) held while the mirror is fetched or read
//! <cache>/git/trees/<commit>/       the commit's tree with its submodules, without .git: what builds see
//! <cache>/git/trees/<commit>+local-submodules/   the same, made with `#submodules=local`
//! <cache>/git/tmp/                  trees being made; renamed into trees/ only when complete
//! ```
//!
//! A commit names its tree and its submodules' commits, so a tree under `trees/` is never made twice. The
//! mirror is fetched when a branch or tag is asked for (they move) and when a commit is not there yet; if
//! the upstream is unreachable, a mirror that already has the ref is used as it is, and the checkout says so.
//!
//! Submodules come only over the network transports a top repository may use ([`NETWORK_TRANSPORTS`]),
//! whatever brought the project: its `.gitmodules` is the project's to write, and a `file://` URL, a path or
//! a relative URL under a `file://` repository would put a repository of this machine into the tree. The
//! operator allows those for a project they trust with `#submodules=local`
//! ([`SubmoduleSources::AlsoLocal`]); a tree made so is kept apart from the others, so that a checkout
//! without it never reuses one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kmf_types::published::GitOrigin;
use sha2::{Digest, Sha256};

use crate::spec::{GitSpec, SubmoduleSources, NETWORK_TRANSPORTS};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{url} has no branch, tag or commit {reference}")]
    RefNotFound { url: String, reference: String },
    #[error("{url} at {commit}: {message}")]
    Checkout {
        url: String,
        commit: String,
        message: String,
    },
    #[error("{url} at {commit} has no directory {subdirectory}")]
    NoSubdirectory {
        url: String,
        commit: String,
        subdirectory: String,
    },
    /// A submodule would come from where the project may not take it (see the module documentation).
    #[error("{url} at {commit}: submodule {path} ({submodule_url}) {why}")]
    SubmoduleRefused {
        url: String,
        commit: String,
        path: String,
        submodule_url: String,
        why: String,
    },
    #[error("running git: {0} (is git installed?)")]
    NoGit(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A source tree checked out of git.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The project directory: the commit's tree, or its subdirectory.
    pub dir: PathBuf,
    pub origin: GitOrigin,
    /// The upstream could not be reached and the mirror's copy of the ref was used: why, when so.
    pub upstream_unreachable: Option<String>,
}

fn mirror_key(spec: &GitSpec) -> String {
    hex::encode(Sha256::digest(spec.url.as_bytes()))[..32].to_string()
}

/// Where `spec`'s repository is mirrored under `cache` (a bare repository once it exists).
pub fn mirror_path(spec: &GitSpec, cache: &Path) -> PathBuf {
    cache
        .join("git/mirrors")
        .join(format!("{}.git", mirror_key(spec)))
}

/// Checks `spec` out under `cache` (see the module documentation).
pub fn checkout(spec: &GitSpec, cache: &Path) -> Result<Checkout, GitError> {
    let root = cache.join("git");
    let mirrors = root.join("mirrors");
    std::fs::create_dir_all(&mirrors).map_err(io(&mirrors))?;
    let key = &mirror_key(spec);
    let mirror = mirror_path(spec, cache);
    let lock_path = mirrors.join(format!("{key}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        GitError::Io {
            path: lock_path.clone(),
            source: e.into(),
        }
    })?;

    if !mirror.join("HEAD").is_file() {
        let tmp = mirrors.join(format!("{key}.git.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        run_git(
            Command::new("git")
                .args(["init", "--bare", "--quiet"])
                .arg(&tmp),
            |m| GitError::Fetch {
                url: spec.public_url(),
                message: m,
            },
        )?;
        std::fs::rename(&tmp, &mirror).map_err(io(&mirror))?;
    }

    // A commit already in the mirror needs no fetch: it cannot change.
    let pinned = spec
        .reference
        .as_deref()
        .filter(|r| is_commit_id(r))
        .and_then(|r| resolve(&mirror, r));
    let mut upstream_unreachable = None;
    if pinned.is_none() {
        if let Err(e) = fetch(&mirror, spec) {
            let GitError::Fetch { message, .. } = &e else {
                return Err(e);
            };
            // Without the ref in the mirror there is nothing to fall back to.
            let wanted = spec.reference.as_deref().unwrap_or(DEFAULT_REF);
            if candidates(wanted)
                .iter()
                .all(|c| resolve(&mirror, c).is_none())
            {
                return Err(e);
            }
            tracing::warn!(
                "{}: the upstream is unreachable ({message}); using the cached copy of {wanted}",
                spec.public_url()
            );
            upstream_unreachable = Some(message.clone());
        }
    }
    let commit = match pinned {
        Some(c) => c,
        None => {
            let wanted = spec.reference.as_deref().unwrap_or(DEFAULT_REF);
            candidates(wanted)
                .iter()
                .find_map(|c| resolve(&mirror, c))
                .ok_or_else(|| GitError::RefNotFound {
                    url: spec.public_url(),
                    reference: spec.reference.clone().unwrap_or_else(|| "HEAD".into()),
                })?
        }
    };

    let trees = root.join("trees");
    let tree = trees.join(match spec.submodules {
        SubmoduleSources::Network => commit.clone(),
        SubmoduleSources::AlsoLocal => format!("{commit}+local-submodules"),
    });
    if !tree.is_dir() {
        make_tree(spec, &mirror, &commit, &root, &tree)?;
    }
    drop(lock);

    let dir = match &spec.subdirectory {
        Some(sub) => tree.join(sub),
        None => tree.clone(),
    };
    // No component of the subdirectory may be a link: the repository is untrusted, and `a/b` with `a` a
    // link to `/etc` would make a host directory the project.
    let mut is_dir = true;
    let mut at = tree.clone();
    for component in spec.subdirectory.iter().flat_map(|d| d.split('/')) {
        at.push(component);
        is_dir &= std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir());
    }
    if !is_dir {
        return Err(GitError::NoSubdirectory {
            url: spec.public_url(),
            commit,
            subdirectory: spec.subdirectory.clone().unwrap_or_default(),
        });
    }
    Ok(Checkout {
        dir,
        origin: GitOrigin {
            url: spec.public_url(),
            reference: spec.reference.clone(),
            commit,
            subdirectory: spec.subdirectory.clone(),
            upstream_unreachable: upstream_unreachable.clone(),
        },
        upstream_unreachable,
    })
}

/// The ref that stands for the repository's default branch in a mirror.
const DEFAULT_REF: &str = "refs/kmodfarm/HEAD";

/// Where a ref may be, in the order git's own lookup would prefer for a name given by a user.
fn candidates(reference: &str) -> Vec<String> {
    if reference.starts_with("refs/") {
        return vec![reference.to_string()];
    }
    let mut out = vec![
        format!("refs/tags/{reference}"),
        format!("refs/heads/{reference}"),
    ];
    if is_commit_id(reference) {
        out.push(reference.to_string());
    }
    out
}

/// A full or abbreviated (at least 7 hex digits) commit id.
fn is_commit_id(r: &str) -> bool {
    (7..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `rev` names in `repo`, if any.
fn resolve(repo: &Path, rev: &str) -> Option<String> {
    let out = git_in(repo)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let id = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && is_commit_id(&id)).then_some(id)
}

pub(crate) fn git_in(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        // Never ask for a password on a terminal: a CI job would hang.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd`; a failure becomes `err(<git's last lines>)`.
pub(crate) fn run_git(
    cmd: &mut Command,
    err: impl FnOnce(String) -> GitError,
) -> Result<Output, GitError> {
    let out = cmd.output().map_err(GitError::NoGit)?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(3)
        .collect();
    let message: Vec<&str> = message.into_iter().rev().collect();
    Err(err(if message.is_empty() {
        format!("git exited with {}", out.status)
    } else {
        message.join("; ")
    }))
}

/// Brings the mirror up to date with the upstream's branches, tags and default branch.
pub(crate) fn fetch(mirror: &Path, spec: &GitSpec) -> Result<(), GitError> {
    let err = |message| GitError::Fetch {
        url: spec.public_url(),
        message,
    };
    run_git(
        git_in(mirror)
            .args([
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-recurse-submodules",
                "--end-of-options",
            ])
            .arg(&spec.url)
            .args([
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                &format!("+HEAD:{DEFAULT_REF}"),
            ]),
        err,
    )?;
    // A commit that no branch or tag names (an old one, or one only reachable by id) is fetched by id,
    // which servers allow for reachable commits (uploadpack.allowReachableSHA1InWant, the default of
    // protocol v2).
    if let Some(r) = spec.reference.as_deref().filter(|r| is_commit_id(r)) {
        if resolve(mirror, r).is_none() && r.len() >= 40 {
            run_git(
                git_in(mirror)
                    .args(["fetch", "--quiet", "--no-tags", "--end-of-options"])
                    .arg(&spec.url)
                    .arg(r),
                |message| GitError::Fetch {
                    url: spec.public_url(),
                    message,
                },
            )?;
        }
    }
    Ok(())
}

/// Checks `commit` out of the mirror with its submodules into a temporary directory, copies the files
/// (not `.git`) into a second one, and renames that to `tree`.
fn make_tree(
    spec: &GitSpec,
    mirror: &Path,
    commit: &str,
    root: &Path,
    tree: &Path,
) -> Result<(), GitError> {
    let tmp_root = root.join("tmp");
    std::fs::create_dir_all(&tmp_root).map_err(io(&tmp_root))?;
    let tmp = tmp_root.join(format!("{commit}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let work = tmp.join("work");
    let err = |message| GitError::Checkout {
        url: spec.public_url(),
        commit: commit.to_string(),
        message,
    };
    let result = (|| {
        run_git(
            Command::new("git")
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("LC_ALL", "C")
                .args([
                    "clone",
                    "--quiet",
                    "--no-checkout",
                    "--shared",
                    "--end-of-options",
                ])
                .arg(mirror)
                .arg(&work),
            err,
        )?;
        run_git(
            git_in(&work).args(["checkout", "--quiet", "--detach", commit, "--"]),
            err,
        )?;
        if work.join(".gitmodules").exists() {
            // Relative submodule URLs are relative to the upstream, not to the mirror.
            run_git(
                git_in(&work)
                    .args(["remote", "set-url", "origin", "--"])
                    .arg(&spec.url),
                err,
            )?;
            check_submodules(spec, &work, commit)?;
            update_submodules(spec, &work, commit)?;
        }
        let files = tmp.join("tree");
        copy_tree(&work, &files)?;
        std::fs::create_dir_all(tree.parent().expect("trees/")).map_err(io(tree))?;
        match std::fs::rename(&files, tree) {
            Ok(()) => Ok(()),
            // Made meanwhile by a process with another cache lock holder: same commit, same tree.
            Err(_) if tree.is_dir() => Ok(()),
            Err(e) => Err(io(tree)(e)),
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// How git reaches a submodule URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// One of [`NETWORK_TRANSPORTS`].
    Network(&'static str),
    /// A repository on this machine: `file://`, or a path.
    Local,
    /// Anything else: `ext::` and other remote helpers, unknown schemes.
    Other(String),
}

/// The transport git uses for submodule `url` of a repository whose remote is `base` (relative URLs,
/// `./` and `../`, are resolved against it, so they go where it goes).
fn transport(url: &str, base: &str) -> Transport {
    if url.starts_with("./") || url.starts_with("../") {
        return transport(base, "");
    }
    // As git reads a URL (transport.c): `<helper>::<address>`, `<scheme>://`, an scp-like `host:path`
    // (a colon before any slash), else a path.
    let scheme_len = url
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || b"+.-".contains(b))
        .count();
    let (scheme, rest) = url.split_at(scheme_len);
    if scheme_len > 0 && rest.starts_with("::") {
        return Transport::Other(format!("{scheme}::"));
    }
    if scheme_len > 0 && rest.starts_with("://") {
        return match scheme {
            "file" => Transport::Local,
            "git+ssh" | "ssh+git" => Transport::Network("ssh"),
            s => NETWORK_TRANSPORTS.iter().find(|t| **t == s).map_or_else(
                || Transport::Other(s.to_string()),
                |t| Transport::Network(t),
            ),
        };
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), slash) if !matches!(slash, Some(slash) if slash < colon) => {
            Transport::Network("ssh")
        }
        _ => Transport::Local,
    }
}

/// Why a submodule on `transport` is refused under `spec`, if it is.
fn refusal(spec: &GitSpec, transport: &Transport) -> Option<String> {
    let network = match NETWORK_TRANSPORTS.split_last() {
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    match transport {
        Transport::Network(_) => None,
        Transport::Local if spec.submodules == SubmoduleSources::AlsoLocal => None,
        Transport::Local => {
            let allowed = GitSpec {
                submodules: SubmoduleSources::AlsoLocal,
                ..spec.clone()
            };
            Some(format!(
                "is a repository on this machine, and a project's .gitmodules may name only {network} \
                 repositories; if you trust this project, allow submodules from this machine by adding \
                 #submodules=local to its source: {allowed}"
            ))
        }
        Transport::Other(t) => Some(format!(
            "uses transport {t}, which a submodule never may (only {network}; and this machine's \
             repositories with #submodules=local)"
        )),
    }
}

/// Refuses the submodules of the checked-out `work` that `spec` does not allow, by name, before git
/// clones any (`update_submodules` has git enforce the same on nested ones).
fn check_submodules(spec: &GitSpec, work: &Path, commit: &str) -> Result<(), GitError> {
    let err = |message| GitError::Checkout {
        url: spec.public_url(),
        commit: commit.to_string(),
        message,
    };
    // The submodules git would clone: the commit's gitlinks, and each one's URL in .gitmodules.
    let staged = run_git(git_in(work).args(["ls-files", "--stage", "-z"]), err)?;
    let gitlinks: Vec<String> = staged
        .stdout
        .split(|b| *b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (meta, path) = e.split_once('\t')?;
            meta.starts_with("160000 ").then(|| path.to_string())
        })
        .collect();
    // Without includes: .gitmodules is the project's, and an include would read a file of this machine.
    let out = git_in(work)
        .args(["config", "--file", ".gitmodules", "--no-includes", "-z"])
        .args(["--get-regexp", r"^submodule\..*\.(path|url)$"])
        .output()
        .map_err(GitError::NoGit)?;
    let mut paths = Vec::new();
    let mut urls = std::collections::HashMap::new();
    for entry in out.stdout.split(|b| *b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((key, value)) = entry.split_once('\n') else {
            continue;
        };
        if let Some(name) = key
            .strip_prefix("submodule.")
            .and_then(|k| k.strip_suffix(".path"))
        {
            paths.push((name.to_string(), value.to_string()));
        } else if let Some(name) = key
            .strip_prefix("submodule.")
            .and_then(|k| k.strip_suffix(".url"))
        {
            urls.insert(name.to_string(), value.to_string());
        }
    }
    for (name, path) in paths {
        if !gitlinks.contains(&path) {
            continue;
        }
        let Some(url) = urls.get(&name) else {
            continue;
        };
        if let Some(why) = refusal(spec, &transport(url, &spec.url)) {
            return Err(GitError::SubmoduleRefused {
                url: spec.public_url(),
                commit: commit.to_string(),
                path,
                submodule_url: crate::spec::public_url(url),
                why,
            });
        }
    }
    Ok(())
}

/// `git submodule update --init --recursive` in `work`, with git allowed only the transports `spec`
/// allows: the enforcement for every level, including the nested ones `check_submodules` cannot see.
fn update_submodules(spec: &GitSpec, work: &Path, commit: &str) -> Result<(), GitError> {
    let mut allowed = NETWORK_TRANSPORTS.join(":");
    if spec.submodules == SubmoduleSources::AlsoLocal {
        allowed.push_str(":file");
    }
    let out = git_in(work)
        // Overrides every protocol.*.allow of the host's configuration, and reaches the clones that
        // `submodule update` runs.
        .env("GIT_ALLOW_PROTOCOL", &allowed)
        .args(["submodule", "update", "--init", "--recursive", "--quiet"])
        .output()
        .map_err(GitError::NoGit)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "fatal: transport 'file' not allowed", then "fatal: clone of 'URL' into submodule path 'PATH' failed".
    let refused = stderr.lines().find_map(|l| {
        l.split_once("transport '")
            .and_then(|(_, rest)| rest.split_once("' not allowed"))
            .map(|(t, _)| t.to_string())
    });
    if let Some(t) = refused {
        let (submodule_url, path) = stderr
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("clone of '")?;
                let (url, rest) = rest.split_once("' into submodule path '")?;
                let (path, _) = rest.rsplit_once("' failed")?;
                Some((url.to_string(), path.to_string()))
            })
            .unwrap_or_else(|| ("?".into(), "?".into()));
        let path = Path::new(&path)
            .strip_prefix(work)
            .map_or(path.clone(), |p| p.display().to_string());
        let transport = if t == "file" {
            Transport::Local
        } else {
            Transport::Other(t)
        };
        if let Some(why) = refusal(spec, &transport) {
            return Err(GitError::SubmoduleRefused {
                url: spec.public_url(),
                commit: commit.to_string(),
                path,
                submodule_url: crate::spec::public_url(&submodule_url),
                why,
            });
        }
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(GitError::Checkout {
        url: spec.public_url(),
        commit: commit.to_string(),
        message: lines[lines.len().saturating_sub(3)..].join("; "),
    })
}

/// Copies `from` to `to` without any `.git` entry, links as links (never followed), modes kept.
fn copy_tree(from: &Path, to: &Path) -> Result<(), GitError> {
    let walker = walkdir::WalkDir::new(from)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for entry in walker {
        let entry = entry.map_err(|e| GitError::Io {
            path: from.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(from).expect("under from");
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io(entry.path()))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io(&dest))?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &dest).map_err(io(&dest))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@localhost",
                "-c",
                "protocol.file.allow=always",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// An upstream repository with one file, committed and tagged `v1`.
    fn upstream(dir: &Path) -> PathBuf {
        let repo = dir.join("upstream");
        std::fs::create_dir_all(repo.join("module")).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("module/hello.c"), "int x;\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "one"]);
        git(&repo, &["tag", "v1"]);
        repo
    }

    fn spec(repo: &Path, tail: &str) -> GitSpec {
        GitSpec::parse(&format!("git+file://{}{tail}", repo.display())).unwrap()
    }

    #[test]
    fn tags_branches_commits_and_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let repo = upstream(dir.path());
        let cache = dir.path().join("cache");
        let v1 = git(&repo, &["rev-parse", "HEAD"]);
        std::fs::write(repo.join("module/hello.c"), "int y;\n").unwrap();
        git(&repo, &["commit", "-qam", "two"]);
        let two = git(&repo, &["rev-parse", "HEAD"]);

        let c = checkout(&spec(&repo, "@v1"), &cache).unwrap();
        assert_eq!(c.origin.commit, v1);
        assert_eq!(
            std::fs::read_to_string(c.dir.join("module/hello.c")).unwrap(),
            "int x;\n"
        );
        assert!(!c.dir.join(".git").exists());
        let c = checkout(&spec(&repo, "@main#subdirectory=module"), &cache).unwrap();
        assert_eq!(c.origin.commit, two);
        assert_eq!(
            std::fs::read_to_string(c.dir.join("hello.c")).unwrap(),
            "int y;\n"
        );
        let c = checkout(&spec(&repo, ""), &cache).unwrap();
        assert_eq!(c.origin.commit, two, "the default branch");
        let c = checkout(&spec(&repo, &format!("@{v1}")), &cache).unwrap();
        assert_eq!(c.origin.commit, v1);
        let c = checkout(&spec(&repo, &format!("@{}", &v1[..10])), &cache).unwrap();
        assert_eq!(c.origin.commit, v1, "an abbreviated commit");

        assert!(matches!(
            checkout(&spec(&repo, "@v9"), &cache),
            Err(GitError::RefNotFound { .. })
        ));
        assert!(matches!(
            checkout(&spec(&repo, "@v1#subdirectory=nope"), &cache),
            Err(GitError::NoSubdirectory { .. })
        ));

        // A link in the repository is never the way to the project.
        std::fs::create_dir_all(dir.path().join("outside/inner")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), repo.join("out")).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "a link out"]);
        for sub in ["out", "out/inner"] {
            assert!(
                matches!(
                    checkout(&spec(&repo, &format!("@main#subdirectory={sub}")), &cache),
                    Err(GitError::NoSubdirectory { .. })
                ),
                "{sub}"
            );
        }
    }

    #[test]
    fn an_unreachable_upstream_falls_back_to_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let repo = upstream(dir.path());
        let cache = dir.path().join("cache");
        let first = checkout(&spec(&repo, "@main"), &cache).unwrap();
        assert!(first.upstream_unreachable.is_none());
        let moved = dir.path().join("gone");
        std::fs::rename(&repo, &moved).unwrap();
        let again = checkout(&spec(&repo, "@main"), &cache).unwrap();
        assert_eq!(again.origin.commit, first.origin.commit);
        assert!(again.upstream_unreachable.is_some());
        // A ref the mirror never saw cannot come from anywhere.
        assert!(matches!(
            checkout(&spec(&repo, "@other"), &cache),
            Err(GitError::Fetch { .. })
        ));
        // Not a repository at all.
        let plain = dir.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let e = checkout(&spec(&plain, ""), &cache).unwrap_err();
        assert!(matches!(e, GitError::Fetch { .. }), "{e}");
    }

    /// A top repository `top` under `dir` whose submodule `vendor/sub` is `sub`, its URL in .gitmodules
    /// then set to `url`.
    fn with_submodule(dir: &Path, name: &str, sub: &Path, url: &str) -> PathBuf {
        let top = dir.join(name);
        std::fs::create_dir_all(&top).unwrap();
        git(&top, &["init", "-q", "-b", "main"]);
        git(
            &top,
            &[
                "submodule",
                "add",
                "-q",
                &format!("file://{}", sub.display()),
                "vendor/sub",
            ],
        );
        git(
            &top,
            &[
                "config",
                "-f",
                ".gitmodules",
                "submodule.vendor/sub.url",
                url,
            ],
        );
        git(&top, &["add", ".gitmodules"]);
        git(&top, &["commit", "-qm", "with a submodule"]);
        top
    }

    fn local_spec(repo: &Path) -> GitSpec {
        spec(repo, "@main#submodules=local")
    }

    #[test]
    fn submodules_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = upstream(dir.path());
        let top = with_submodule(
            dir.path(),
            "top",
            &sub,
            &format!("file://{}", sub.display()),
        );
        let c = checkout(&local_spec(&top), &dir.path().join("cache")).unwrap();
        assert_eq!(
            std::fs::read_to_string(c.dir.join("vendor/sub/module/hello.c")).unwrap(),
            "int x;\n"
        );
        assert!(!c.dir.join("vendor/sub/.git").exists());
    }

    /// Issue 22: a project's .gitmodules naming a repository of this machine is refused, whatever brought
    /// the project (here a file:// repository, which kmodfarm reads itself), unless its source says
    /// `#submodules=local`.
    #[test]
    fn local_submodules_need_the_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let sub = upstream(dir.path());
        let cache = dir.path().join("cache");
        for (name, url) in [
            ("path", sub.display().to_string()),
            ("file-url", format!("file://{}", sub.display())),
            // Resolved against the top repository's file:// URL: `<dir>/upstream`.
            ("relative", "../upstream".to_string()),
        ] {
            let top = with_submodule(dir.path(), name, &sub, &url);
            let e = checkout(&spec(&top, "@main"), &cache).unwrap_err();
            let message = e.to_string();
            eprintln!("{message}");
            assert!(
                matches!(&e, GitError::SubmoduleRefused { path, .. } if path == "vendor/sub"),
                "{name}: {message}"
            );
            assert!(message.contains(&url), "{name}: {message}");
            assert!(message.contains("#submodules=local"), "{name}: {message}");
            assert!(
                message.contains(&format!("{}@main#submodules=local", top.display())),
                "{name}: the source to use: {message}"
            );
            assert!(
                !cache.join("git/trees").exists()
                    || std::fs::read_dir(cache.join("git/trees")).unwrap().count() == 0,
                "{name}: no tree is kept"
            );

            let c = checkout(&local_spec(&top), &cache).unwrap();
            assert_eq!(
                std::fs::read_to_string(c.dir.join("vendor/sub/module/hello.c")).unwrap(),
                "int x;\n",
                "{name}"
            );
            assert!(c
                .dir
                .ends_with(format!("{}+local-submodules", c.origin.commit)));
            // The tree made with the opt-in is never what a checkout without it gets.
            assert!(checkout(&spec(&top, "@main"), &cache).is_err(), "{name}");
            std::fs::remove_dir_all(cache.join("git/trees")).unwrap();
        }
    }

    #[test]
    fn other_transports_are_refused_even_with_the_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let sub = upstream(dir.path());
        let pwned = dir.path().join("pwned");
        let top = with_submodule(
            dir.path(),
            "top",
            &sub,
            &format!("ext::sh -c touch% {}", pwned.display()),
        );
        let e = checkout(&local_spec(&top), &dir.path().join("cache")).unwrap_err();
        eprintln!("{e}");
        assert!(
            matches!(&e, GitError::SubmoduleRefused { why, .. } if why.contains("transport ext::")),
            "{e}"
        );
        assert!(!pwned.exists());
    }

    /// Submodules of submodules, which the check before cloning cannot see: git itself refuses them, and
    /// the error still names the submodule and the opt-in.
    #[test]
    fn git_enforces_the_rule_on_every_level() {
        let dir = tempfile::tempdir().unwrap();
        let sub = upstream(dir.path());
        let top = with_submodule(
            dir.path(),
            "top",
            &sub,
            &format!("file://{}", sub.display()),
        );
        let work = dir.path().join("work");
        git(dir.path(), &["clone", "-q", top.to_str().unwrap(), "work"]);
        let s = spec(&top, "@main");
        let e = update_submodules(&s, &work, "c0ffee").unwrap_err();
        eprintln!("{e}");
        let message = e.to_string();
        assert!(
            matches!(&e, GitError::SubmoduleRefused { path, .. } if path == "vendor/sub"),
            "{message}"
        );
        assert!(message.contains("#submodules=local"), "{message}");
        assert!(!work.join("vendor/sub/module").exists());
        update_submodules(&local_spec(&top), &work, "c0ffee").unwrap();
        assert!(work.join("vendor/sub/module/hello.c").is_file());
    }

    #[test]
    fn submodule_transports() {
        let https = "https://git.example/acme/top.git";
        let file = "file:///srv/git/top.git";
        for (url, base, expected) in [
            (
                "https://git.example/acme/sub.git",
                file,
                Transport::Network("https"),
            ),
            (
                "git://git.example/sub.git",
                https,
                Transport::Network("git"),
            ),
            (
                "ssh://git@git.example/sub.git",
                https,
                Transport::Network("ssh"),
            ),
            (
                "git+ssh://git@git.example/sub.git",
                https,
                Transport::Network("ssh"),
            ),
            (
                "git@git.example:acme/sub.git",
                https,
                Transport::Network("ssh"),
            ),
            ("../sub.git", https, Transport::Network("https")),
            (
                "./sub.git",
                "git://git.example/top.git",
                Transport::Network("git"),
            ),
            ("../sub.git", file, Transport::Local),
            ("../sub.git", "/srv/git/top.git", Transport::Local),
            ("/root/x", https, Transport::Local),
            ("file:///root/x", https, Transport::Local),
            ("sub", https, Transport::Local),
            ("./a:b", "/srv/top", Transport::Local),
            ("dir/with:colon", https, Transport::Local),
            (
                "ext::sh -c touch% /tmp/x",
                https,
                Transport::Other("ext::".into()),
            ),
            ("fd::3", https, Transport::Other("fd::".into())),
            ("ftp://h/x", https, Transport::Other("ftp".into())),
        ] {
            assert_eq!(transport(url, base), expected, "{url} under {base}");
        }
    }
}
