//! Kernel lists and apt repositories.
//!
//! * [`parse_kernel_list`], [`load`], [`load_all`]: Falco kernel-crawler `list.json` files and kmodfarm's
//!   own crawl output (same shape), from files or URLs, with each entry's architecture filled in.
//! * [`mirrors`]: the Debian mirrors this machine's apt uses, or the ones the user names; nothing is
//!   hard-coded.
//! * [`apt`]: dpkg version ordering, verified Packages index downloads, Debian header package resolution
//!   (`uname -r` → headers, common headers, kbuild) and the Debian kernel crawler.

pub mod apt;
mod error;
mod http;
mod list;
pub mod mirrors;
#[cfg(test)]
mod test_server;

pub use error::KernelsError;
pub use list::{load, load_all, parse_kernel_list};
