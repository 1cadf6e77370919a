//! yum/dnf (rpm-md) repositories: `repodata/repomd.xml`, primary metadata and the kernel-devel crawler
//! for Fedora, AlmaLinux, Rocky Linux, CentOS Stream and Amazon Linux 2 / 2023.

mod crawl;
mod primary;
mod repomd;

pub use crawl::{crawl_rpm_repos, fetch_primary, RpmRepoSource};
pub use primary::{parse_primary, RpmPackage};
pub use repomd::{parse_repomd, Digest, DigestAlgorithm, RepoData};
