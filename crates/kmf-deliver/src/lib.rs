//! Delivery: from a store to the hosts that load the modules, and the store's retention.
//!
//! * [`host`]: what the target host runs (distribution from `os-release`, kernel release and version as
//!   `uname -r` and `uname -v` print them, architecture), each overridable;
//! * [`install`]: find the host's variant through the driver's published index and matrix, download its
//!   modules and firmware, check each against `metadata.json`'s SHA256 and size, install them atomically
//!   where the record says (`/lib/modules/<release>/<destination>`, default `extra/<driver>/`; firmware
//!   under `/lib/firmware/`) with its modprobe configuration, run `depmod`, optionally unload the modules
//!   the driver replaces and load its own in the record's order;
//! * [`gc`]: artifacts no published matrix references.

pub mod gc;
pub mod host;
pub mod install;
mod version;

pub use gc::{gc, GcError, GcReport};
pub use host::{Host, HostOverrides};
pub use install::{install, InstallError, InstallOptions, InstallReport, NoMatch};
