//! The checks of a restored tarball see the repository alone: alternates named by the environment of
//! kmodfarm's process do not make a tarball whose objects are elsewhere look whole. A test binary of its
//! own, since it sets the process's environment.

mod common;

use common::{git, Fixture};

#[tokio::test]
async fn alternates_from_the_environment_are_not_used() {
    let fx = Fixture::new();
    let repo = fx.mirror("hostile.git");
    // A commit whose tree is the other repository's, which only the environment's alternates supply.
    std::env::set_var("GIT_ALTERNATE_OBJECT_DIRECTORIES", fx.other.join("objects"));
    let tree = git(
        &repo,
        &["rev-parse", &format!("{}^{{tree}}", fx.other_commit)],
    );
    let commit = git(&repo, &["commit-tree", &tree, "-m", "borrowed"]);
    git(&repo, &["update-ref", "refs/heads/main", &commit]);
    git(&repo, &["fsck", "--connectivity-only"]);
    let message = fx.unusable(&repo, "objects are missing").await;
    assert!(
        message.contains(&format!("missing tree {tree}")),
        "{message}"
    );
}
