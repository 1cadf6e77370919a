//! yum/dnf (rpm-md) repositories: `repodata/repomd.xml`, primary metadata and the kernel-devel crawler
//! for Fedora, AlmaLinux, Rocky Linux, CentOS Stream and Amazon Linux 2 / 2023.

mod crawl;
mod primary;
mod repomd;

pub use crawl::{crawl_rpm_repos, fetch_primary, RpmRepoSource};
pub use primary::{parse_primary, RpmPackage};
pub use repomd::{parse_repomd, Digest, DigestAlgorithm, RepoData};

/// An attribute of an XML element by local name (namespace prefixes such as `xml:base` ignored), unescaped.
fn attr(e: &quick_xml::events::BytesStart, key: &[u8]) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == key)
            .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
            .flatten()
    })
}
