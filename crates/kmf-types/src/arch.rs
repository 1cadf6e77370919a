use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A target CPU architecture. Spelled as kernel-crawler and the seed matrix spell it (`x86_64`, `aarch64`);
/// Debian's (`amd64`, `arm64`) and the kernel's own names are accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown architecture `{0}` (expected x86_64 or aarch64; amd64 and arm64 are accepted too)"
)]
pub struct UnknownArch(pub String);

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The matrix / kernel-crawler spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's architecture name, used in Packages paths and `.deb` file names.
    pub fn deb_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The kernel's `ARCH=` value.
    pub fn kernel_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The GNU triplet, also the prefix of Debian's cross compilers (`aarch64-linux-gnu-gcc-12`).
    pub fn gnu_triplet(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
        }
    }

    /// `e_machine` of an ELF object built for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,   // EM_X86_64
            Arch::Aarch64 => 183, // EM_AARCH64
        }
    }

    /// The architecture this binary runs on, if it is one kmodfarm builds for.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// Guesses the architecture a package or kernel name is for, from the suffixes distributions use
    /// (`_amd64.deb`, `.x86_64.rpm`, `-arm64`, `.aarch64`). `None` when nothing in the name says.
    pub fn guess_from_name(name: &str) -> Option<Arch> {
        let lower = name.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        let x86 = has(&["x86_64", "amd64", "x86-64"]);
        let arm = has(&["aarch64", "arm64"]);
        match (x86, arm) {
            (true, false) => Some(Arch::X86_64),
            (false, true) => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" | "x86" | "x64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => Err(UnknownArch(s.to_string())),
        }
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        for s in ["x86_64", "amd64", "X86_64"] {
            assert_eq!(s.parse::<Arch>().unwrap(), Arch::X86_64);
        }
        for s in ["aarch64", "arm64"] {
            assert_eq!(s.parse::<Arch>().unwrap(), Arch::Aarch64);
        }
        assert!("riscv64".parse::<Arch>().is_err());
    }

    #[test]
    fn guesses_from_package_names() {
        assert_eq!(
            Arch::guess_from_name("linux-headers-6.1.0-50-amd64_6.1.176-1_amd64.deb"),
            Some(Arch::X86_64)
        );
        assert_eq!(
            Arch::guess_from_name("kernel-devel-5.10.1.amzn2.aarch64.rpm"),
            Some(Arch::Aarch64)
        );
        assert_eq!(
            Arch::guess_from_name("linux-headers-6.1.0-50-common_all.deb"),
            None
        );
    }
}
