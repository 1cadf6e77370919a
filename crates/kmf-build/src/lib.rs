//! Toolchains and kbuild.
//!
//! * [`toolchain`]: read `CONFIG_CC_VERSION_TEXT` from the kernel's config and pick the builder (a Debian root
//!   filesystem with the same GCC major version, plus the aarch64 cross compiler of that version).
//! * [`builder`]: create builders with mmdebstrap from the mirror, cache and reuse them.
//! * [`builder_images`]: the container images `--sandbox docker` builds in: builders imported into the
//!   engine, the Dockerfiles under `builders/`, and pruning what neither produces any more.
//! * [`project`]: the driver's `kmodfarm.toml`.
//! * [`dkms`]: the driver's `dkms.conf`, evaluated per kernel in the sandbox.
//! * [`dkms_version`]: a computed `PACKAGE_VERSION`, evaluated in the sandbox before any kernel.
//! * [`init`]: `kmodfarm init`, a commented `kmodfarm.toml` for a project.
//! * [`applicability`]: which kernels a driver applies to (`requires_config`, `BUILD_EXCLUSIVE_*`).
//! * [`kbuild`]: find the kernel tree in the extracted header packages, run `make M=...` in a sandbox, collect
//!   and verify the modules.

pub mod applicability;
pub mod builder;
pub mod builder_images;
pub mod dkms;
pub mod dkms_version;
mod error;
pub mod init;
pub mod kbuild;
pub mod project;
pub mod sign;
pub mod toolchain;
pub mod untrusted;
pub mod workdir;

pub use builder::{builder_identity, AptSource, BuilderStore};
pub use error::BuildError;
pub use kbuild::{
    check_host_tools, find_kernel_tree, resolve_merged, run_kbuild, BuiltModule, KbuildJob,
    KbuildOutput, KernelTree,
};
pub use project::{BootSection, BuildStep, InstallSection, ProjectConfig};
pub use toolchain::{builder_for, BuilderSpec};
