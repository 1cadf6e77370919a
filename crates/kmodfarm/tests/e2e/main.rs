//! End-to-end tests: the real `kmodfarm` binary against the real Debian mirror, real bubblewrap and real
//! builders. Network tests skip with a message when the mirror is unreachable, except under `CI=true`, where
//! they fail: a green CI means the real paths ran.

mod bad_input;
mod boot;
mod ci;
mod debian;
mod distributed;
mod dkms;
mod dkms_shapes;
mod docker;
mod fallback;
mod families;
mod git;
mod hostile;
mod matrix;
mod plan;
mod preflight;
mod signing;
mod store;
mod sync;
mod trust;
mod util;
