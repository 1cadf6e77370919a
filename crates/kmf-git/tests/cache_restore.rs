//! Tarballs in the git cache that would make git read beyond the repository they hold (issue 22): each
//! shape is a real repository made here with git and packed with tar, and shown to work on git before it
//! is packed; `restore` refuses each, naming what it found, and leaves nothing in the cache. A tarball
//! missing objects (git fsck's connectivity check) is not usable, like a damaged one. A tarball the
//! updater would write still restores.

mod common;

use std::process::Command;

use common::{git, Fixture};

#[tokio::test]
async fn a_tarball_the_updater_writes_restores() {
    let fx = Fixture::new();
    let repo = fx.mirror("good.git");
    let commit = git(&repo, &["rev-parse", "refs/heads/main"]);
    // What the updater's mirror also has: hooks and a config of its own, packed refs.
    git(&repo, &["pack-refs", "--all"]);
    git(&repo, &["config", "remote.origin.url", "/elsewhere"]);
    fx.pack(&repo);
    assert!(fx.restore().await.unwrap());
    let mirror = fx.target();
    assert_eq!(git(&mirror, &["rev-parse", "refs/heads/main"]), commit);
    assert!(!mirror.join("hooks").exists());
    let config = std::fs::read_to_string(mirror.join("config")).unwrap();
    assert!(!config.contains("elsewhere"), "{config}");
}

#[tokio::test]
async fn alternates_to_another_repository_are_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    std::fs::write(
        repo.join("objects/info/alternates"),
        format!("{}\n", fx.other.join("objects").display()),
    )
    .unwrap();
    // A commit whose tree is the other repository's: git finds it through the alternates.
    let tree = git(
        &repo,
        &["rev-parse", &format!("{}^{{tree}}", fx.other_commit)],
    );
    let commit = git(&repo, &["commit-tree", &tree, "-m", "borrowed"]);
    git(&repo, &["update-ref", "refs/heads/main", &commit]);
    assert_eq!(
        git(&repo, &["cat-file", "-p", "refs/heads/main:secret"]),
        "the other repository's secret",
        "the shape works on git"
    );
    fx.refused(&repo, "objects/info/alternates").await;

    // The same commit without the alternates: its tree is not in the tarball, which is not used.
    std::fs::remove_file(repo.join("objects/info/alternates")).unwrap();
    let message = fx.unusable(&repo, &format!("missing tree {tree}")).await;
    assert!(message.contains("git fsck"), "{message}");
}

#[tokio::test]
async fn http_alternates_are_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    std::fs::write(
        repo.join("objects/info/http-alternates"),
        "http://127.0.0.1:9/other.git/objects\n",
    )
    .unwrap();
    fx.refused(&repo, "objects/info/http-alternates").await;
}

#[tokio::test]
async fn commondir_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    std::fs::write(repo.join("commondir"), format!("{}\n", fx.other.display())).unwrap();
    assert_eq!(
        git(&repo, &["rev-parse", "refs/heads/main"]),
        fx.other_commit,
        "the shape works on git: the other repository's commit"
    );
    fx.refused(&repo, "commondir").await;
}

#[tokio::test]
async fn grafts_are_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    let commit = git(&repo, &["rev-parse", "refs/heads/main"]);
    std::fs::write(
        repo.join("info/grafts"),
        format!("{commit} {}\n", fx.other_commit),
    )
    .unwrap();
    fx.refused(&repo, "info/grafts").await;
}

#[tokio::test]
async fn a_shallow_file_naming_foreign_objects_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    std::fs::write(repo.join("shallow"), format!("{}\n", fx.other_commit)).unwrap();
    fx.refused(&repo, "shallow").await;
}

#[tokio::test]
async fn a_gitdir_file_or_worktree_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    // git looks for DIR/.git before DIR itself: `gitdir:` there replaces the repository.
    std::fs::write(
        repo.join(".git"),
        format!("gitdir: {}\n", fx.other.display()),
    )
    .unwrap();
    let out = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        fx.other_commit,
        "the shape works on git"
    );
    fx.refused(&repo, ".git").await;
    std::fs::remove_file(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("worktrees/w")).unwrap();
    std::fs::write(repo.join("worktrees/w/gitdir"), "/srv/w/.git\n").unwrap();
    fx.refused(&repo, "worktrees").await;
}

#[tokio::test]
async fn replacement_refs_are_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    let commit = git(&repo, &["rev-parse", "refs/heads/main"]);
    let tree = git(&repo, &["rev-parse", "refs/heads/main^{tree}"]);
    let other = git(&repo, &["commit-tree", &tree, "-m", "not the upstream's"]);
    git(&repo, &["replace", &commit, &other]);
    fx.refused(&repo, &format!("refs/replace/{commit}")).await;
}

#[tokio::test]
async fn a_symlink_entry_is_refused() {
    let fx = Fixture::new();
    // The object store a link to the other repository's.
    let repo = fx.mirror("hostile.git");
    std::fs::remove_dir_all(repo.join("objects")).unwrap();
    std::os::unix::fs::symlink(fx.other.join("objects"), repo.join("objects")).unwrap();
    git(&repo, &["update-ref", "refs/heads/main", &fx.other_commit]);
    assert_eq!(
        git(&repo, &["cat-file", "-p", "refs/heads/main:secret"]),
        "the other repository's secret",
        "the shape works on git"
    );
    fx.refused(&repo, "objects is a symbolic link").await;

    // `config` a link to a file of this machine: restore rewrote the config before, through the link.
    let repo = fx.mirror("hostile-config.git");
    let host_file = fx.base.join("host-file");
    std::fs::write(&host_file, "untouched\n").unwrap();
    std::fs::remove_file(repo.join("config")).unwrap();
    std::os::unix::fs::symlink(&host_file, repo.join("config")).unwrap();
    fx.refused(&repo, "config is a symbolic link").await;
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "untouched\n");
}

#[tokio::test]
async fn a_hard_link_entry_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    // tar writes the second name of a file as a hard link member.
    std::fs::hard_link(repo.join("HEAD"), repo.join("info/refs")).unwrap();
    fx.refused(&repo, "is a hard link").await;
}

#[tokio::test]
async fn a_special_file_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    let fifo = repo.join("objects/info/fifo");
    let out = Command::new("mkfifo").arg(&fifo).output().expect("mkfifo");
    assert!(out.status.success());
    fx.refused(&repo, "objects/info/fifo").await;
}

#[tokio::test]
async fn a_missing_object_is_refused() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    let blob = git(&repo, &["rev-parse", "refs/heads/main:hello.c"]);
    std::fs::remove_file(repo.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    let message = fx.unusable(&repo, &format!("missing blob {blob}")).await;
    assert!(message.contains("objects are missing"), "{message}");
}
