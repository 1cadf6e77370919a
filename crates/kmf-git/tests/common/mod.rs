//! Repositories made with git and packed with tar as the git cache's tarballs, for the tests of `restore`.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_git::cache::{restore, CacheError, CacheLimits};
use kmf_git::checkout::mirror_path;
use kmf_git::GitSpec;
use kmf_store::LocalStore;

pub const URL: &str = "https://git.example/acme/hello.git";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
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

/// A bare repository at `bare` whose `main` holds `file` with `content`, made as a mirror is (objects
/// written into it, loose); its commit.
pub fn bare_repo(bare: &Path, file: &str, content: &str) -> String {
    std::fs::create_dir_all(bare).unwrap();
    git(bare, &["init", "-q", "--bare", "-b", "main"]);
    let work = bare.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join(file), content).unwrap();
    let with_tree = |args: &[&str]| {
        let mut all = vec!["--work-tree", work.to_str().unwrap()];
        all.extend(args);
        git(bare, &all)
    };
    with_tree(&["add", "-A"]);
    with_tree(&["commit", "-qm", file]);
    std::fs::remove_dir_all(&work).unwrap();
    git(
        bare,
        &["update-ref", "refs/kmodfarm/HEAD", "refs/heads/main"],
    );
    std::fs::remove_file(bare.join("index")).unwrap();
    git(bare, &["rev-parse", "refs/heads/main"])
}

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub store: LocalStore,
    pub cache: PathBuf,
    /// Another repository on this machine: a mirror in the same cache, holding `secret`.
    pub other: PathBuf,
    pub other_commit: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let cache = base.join("cache");
        let other = cache.join("git/mirrors/other.git");
        let other_commit = bare_repo(&other, "secret", "the other repository's secret\n");
        Fixture {
            store: LocalStore::new(base.join("store")).unwrap(),
            _dir: dir,
            base,
            cache,
            other,
            other_commit,
        }
    }

    /// A mirror of the driver, as the updater would pack it, in a directory of its own.
    pub fn mirror(&self, name: &str) -> PathBuf {
        let repo = self.base.join(name);
        bare_repo(&repo, "hello.c", "int x;\n");
        repo
    }

    /// Packs `repo` with tar as the cache's tarball of [`URL`].
    pub fn pack(&self, repo: &Path) {
        let key = format!(
            "{}{}.tar",
            kmf_git::cache::PREFIX,
            kmf_git::cache::entry_name(URL)
        );
        let tar = self.store.root().join(key);
        std::fs::create_dir_all(tar.parent().unwrap()).unwrap();
        let out = Command::new("tar")
            .arg("-C")
            .arg(repo)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .expect("tar");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Where the build's cache would get the mirror of [`URL`].
    pub fn target(&self) -> PathBuf {
        mirror_path(&GitSpec::parse(&format!("git+{URL}")).unwrap(), &self.cache)
    }

    pub async fn restore(&self) -> Result<bool, CacheError> {
        restore(&self.store, URL, &self.target(), &CacheLimits::default()).await
    }

    /// `repo` packed and restored: refused, with a message naming `what`; nothing left in the cache but
    /// the other repository.
    pub async fn refused(&self, repo: &Path, what: &str) -> String {
        let e = self.not_restored(repo, what).await;
        assert!(matches!(e, CacheError::Refused { .. }), "{e}");
        e.to_string()
    }

    /// `repo` packed and restored: not usable (objects missing), with a message naming `what`; nothing
    /// left in the cache but the other repository.
    pub async fn unusable(&self, repo: &Path, what: &str) -> String {
        let e = self.not_restored(repo, what).await;
        assert!(matches!(e, CacheError::BadTarball { .. }), "{e}");
        e.to_string()
    }

    async fn not_restored(&self, repo: &Path, what: &str) -> CacheError {
        self.pack(repo);
        let e = self.restore().await.expect_err("the tarball was accepted");
        let message = e.to_string();
        eprintln!("{message}");
        assert!(message.contains(what), "{message} does not name {what}");
        assert!(!self.target().exists());
        let left: Vec<String> = std::fs::read_dir(self.cache.join("git/mirrors"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["other.git"], "the restore left something");
        e
    }
}
