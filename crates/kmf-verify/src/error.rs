use std::path::PathBuf;

use crate::machine_name;

/// Why a built file is not the kernel module that was asked for.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path} is {what}, not a regular file")]
    NotAFile { path: PathBuf, what: &'static str },

    #[error("{path} is {size} bytes, more than the {limit} bytes a module may have")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error("{path} is not an ELF file: {detail}")]
    NotElf { path: PathBuf, detail: String },

    #[error("{path} is an ELF {kind}, not a relocatable object (ET_REL) as kernel modules are")]
    NotRelocatable { path: PathBuf, kind: String },

    #[error(
        "{path} is built for ELF machine {actual} ({}), expected {expected} ({})",
        machine_name(*actual),
        machine_name(*expected)
    )]
    WrongMachine {
        path: PathBuf,
        expected: u16,
        actual: u16,
    },

    #[error("{path} has no .modinfo section: it is not a kernel module")]
    NoModinfo { path: PathBuf },

    #[error("{path} has no vermagic in its .modinfo: it is not a kernel module")]
    NoVermagic { path: PathBuf },

    #[error(
        "{path} was built for another kernel: its vermagic `{vermagic}` does not start with \
         `{expected_release} `"
    )]
    VermagicMismatch {
        path: PathBuf,
        expected_release: String,
        vermagic: String,
    },

    #[error(
        "{path} is the module `{modinfo_name}` (its .modinfo name), not `{file_name}`: a module is published \
         and loaded under its own name only"
    )]
    NameMismatch {
        path: PathBuf,
        file_name: String,
        modinfo_name: String,
    },

    #[error("expected modules missing from {dir}: {}", names.join(", "))]
    Missing { dir: PathBuf, names: Vec<String> },

    #[error("expected module name `{name}` must be a relative path without `..`")]
    BadName { name: String },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
