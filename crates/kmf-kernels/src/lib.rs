//! Kernel lists and apt repositories.
//!
//! * [`parse_kernel_list`], [`load`], [`load_all`]: Falco kernel-crawler `list.json` files and kmodfarm's
//!   own crawl output (same shape), from files or URLs, with each entry's architecture filled in.
//! * [`mirrors`]: the Debian mirrors this machine's apt uses, or the ones the user names; nothing is
//!   hard-coded.
//! * [`apt`]: dpkg version ordering, verified Packages index downloads, Debian header package resolution
//!   (`uname -r` → headers, common headers, kbuild), the Debian and Ubuntu kernel crawlers.
//! * [`rpmmd`]: yum/dnf repositories (repomd.xml, primary metadata) and the kernel-devel crawler for
//!   Fedora, AlmaLinux, Rocky, CentOS Stream and Amazon Linux.
//! * [`sources`]: what to crawl, from a TOML file or the command line, and one crawl over all of it.

pub mod apt;
mod error;
pub mod family;
mod http;
mod index_cache;
mod list;
pub mod mirrors;
pub mod rpmmd;
pub mod sources;
#[cfg(test)]
mod test_server;

pub use error::KernelsError;
pub use family::{Family, RepoFormat};
pub use list::{load, load_all, parse_kernel_list};
