//! Driver sources from git: wherever kmodfarm takes a project directory it also takes
//! `git+<url>[@<ref>][#subdirectory=<dir>]` ([`GitSpec`]). The ref is resolved to a commit when the
//! project is loaded (at plan time); the commit's tree, submodules included, is checked out once per
//! commit into the cache ([`checkout()`]) and then loaded like any directory, and the commit is recorded in
//! the plan, `metadata.json` and the provenance ([`kmf_types::published::GitOrigin`]). Submodules come over
//! the network only, unless the source says `#submodules=local` ([`SubmoduleSources`]). The farm's git cache
//! ([`cache`]) keeps each repository's mirror in the store for pipelines that restore instead of cloning;
//! a tarball that could make git read beyond the repository is refused ([`cache::Refusal`]).

pub mod cache;
pub mod checkout;
pub mod spec;

pub use checkout::{checkout, Checkout, GitError};
pub use spec::{GitSpec, SpecError, SubmoduleSources};
