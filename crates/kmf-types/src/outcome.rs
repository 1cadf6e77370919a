use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a variant failed. Every failure gets exactly one class, so reports can group them and a nightly run
/// can tell a mirror outage (headers unavailable, download failed) from a driver bug (compile error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// No mirror and no recorded URL has the header packages (404/410 everywhere).
    HeadersUnavailable,
    /// Network errors, checksum mismatches, truncated downloads after all retries.
    DownloadFailed,
    /// An input was not proven: the suite's Release failed its signature, suite or expiry check, a
    /// package's own signature did not verify, or (under `--require-verified`) nothing proved a package.
    InputUnproven,
    /// A header package could not be unpacked (corrupt or hostile archive).
    ExtractFailed,
    /// No builder for the kernel's compiler, or the builder could not be created.
    ToolchainUnavailable,
    /// `make` exited non-zero (or, for a DKMS package, a patch, `PRE_BUILD` or `POST_BUILD` did).
    CompileError,
    /// The project's `dkms.conf` could not be evaluated for the kernel, or set a value kmodfarm refuses
    /// (a path out of the project, a module without a name, an invalid regular expression).
    ConfigError,
    /// The build exceeded its wall-clock limit.
    Timeout,
    /// A module is missing, for the wrong architecture, or has the wrong vermagic.
    VerificationFailed,
    /// The build left something other than a regular file where kmodfarm reads its output (a module or a
    /// directory on its path that is a symlink, a FIFO, a device), or turned a later step's directory into
    /// one: nothing of it is read.
    UnsafeOutput,
    /// The build went past one of the operator's limits on disk use, module size, module count or log size,
    /// and was stopped.
    ResourceLimit,
    /// The kernel killed a process of the build at its memory limit.
    OutOfMemory,
    /// Publishing a plan: no worker delivered a complete bundle for the variant (its shard did not run, or
    /// stopped before it).
    BundleMissing,
    /// Publishing a plan: a worker's bundle did not pass the publisher's checks (a module that differs from
    /// its record or is not for the kernel, a link or extra file, a record naming another variant, or copies
    /// of a redundant plan that disagree). Nothing of it is published.
    BundleRefused,
    /// Module signing: the kernel does not check signatures, `sign-file` failed, or the signature it
    /// wrote does not verify against the certificate.
    SigningFailed,
    /// Boot test: the kernel did not reach the test's init, or the VM stopped before the test finished.
    BootFailed,
    /// Boot test: loading or unloading a module failed; the message says why (vermagic mismatch, symbol
    /// version mismatch, unknown symbol, invalid module format, a missing dependency, ...).
    LoadFailed,
    /// Boot test: the kernel printed an oops, BUG, WARNING or panic, or was tainted beyond what an
    /// out-of-tree unsigned module causes.
    KernelWarning,
    /// Boot test: the VM did not finish within its time limit (a module init that never returns).
    BootTimeout,
    /// Boot test: the project's check script exited non-zero in the guest.
    CheckFailed,
    /// Anything else (a bug or a local I/O problem); the message says what.
    Internal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::HeadersUnavailable => "headers unavailable",
            FailureClass::DownloadFailed => "download failed",
            FailureClass::InputUnproven => "input unproven",
            FailureClass::ExtractFailed => "extract failed",
            FailureClass::ToolchainUnavailable => "toolchain unavailable",
            FailureClass::CompileError => "compile error",
            FailureClass::ConfigError => "config error",
            FailureClass::Timeout => "timeout",
            FailureClass::VerificationFailed => "verification failed",
            FailureClass::UnsafeOutput => "unsafe output",
            FailureClass::ResourceLimit => "resource limit",
            FailureClass::OutOfMemory => "out of memory",
            FailureClass::BundleMissing => "bundle missing",
            FailureClass::BundleRefused => "bundle refused",
            FailureClass::SigningFailed => "signing failed",
            FailureClass::BootFailed => "boot failed",
            FailureClass::LoadFailed => "load failed",
            FailureClass::KernelWarning => "kernel warning",
            FailureClass::BootTimeout => "boot timeout",
            FailureClass::CheckFailed => "boot check failed",
            FailureClass::Internal => "internal error",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
