//! apt repository access: dpkg version ordering, Packages indices (download, verification, parsing,
//! lookups), Debian header resolution and the Debian kernel crawler.

mod crawl;
mod fetch;
mod index;
mod indexes;
mod release;
mod resolve;
mod ubuntu;
mod version;

pub use crawl::{crawl_debian, crawl_debian_in, CrawlOptions, DEBIAN_KEY};
pub use fetch::{fetch_index, fetch_index_cached};
pub use index::{header_packages_to_kmf, Dependency, PackageIndex, PackageStanza};
pub use indexes::{kernel_header_packages, IndexSet};
pub use release::{
    fetch_release, format_release_date, parse_release_date, AptTrust, ArchiveKeys, TrustOptions,
    VerifiedRelease, DEBIAN_ARCHIVE_KEYRING, UBUNTU_ARCHIVE_KEYRING,
};
pub use resolve::resolve_debian_headers;
pub use ubuntu::{crawl_ubuntu, UbuntuCrawlOptions, UBUNTU_KEY};
pub use version::compare_versions;
