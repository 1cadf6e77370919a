//! apt repository access: dpkg version ordering, Packages indices (download, verification, parsing,
//! lookups), Debian header resolution and the Debian kernel crawler.

mod crawl;
mod fetch;
mod index;
mod resolve;
mod version;

pub use crawl::{crawl_debian, CrawlOptions, DEBIAN_KEY};
pub use fetch::fetch_index;
pub use index::{header_packages_to_kmf, Dependency, PackageIndex, PackageStanza};
pub use resolve::resolve_debian_headers;
pub use version::compare_versions;
