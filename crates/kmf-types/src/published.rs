//! How a published variant sits in a store, and the typed reader every consumer of a published
//! `metadata.json` shares (the farm's up-to-date check, `boot-test`, `install`, `store gc`).
//!
//! ```text
//! <driver>/<output>/metadata.json              written last, replaced atomically: the variant's record
//! <driver>/<output>/<artifacts>/hello.ko       immutable once written; <artifacts> is the build key's
//! <driver>/<output>/<artifacts>/SHA256SUMS     first 16 hex digits, so a rebuild never overwrites what
//! <driver>/<output>/<artifacts>/provenance.intoto.json   the current metadata.json names
//! <driver>/<output>/<artifacts>/build.log, boot.log
//! ```
//!
//! Republishing a variant (new builder, new signing key, `--rebuild`) writes a new artifacts directory and
//! only then the new `metadata.json`: a reader sees the old record with the old files or the new record
//! with the new files, never one with the other's, and a publish killed half-way leaves the old record
//! intact. `store gc` removes artifacts directories no record names. Records written before this layout
//! have no `artifacts` field: their files sit directly in the variant's prefix.

use serde::Deserialize;

use crate::MatrixEntry;

/// The record's file name in a variant's prefix.
pub const METADATA: &str = "metadata.json";

/// The artifacts directory of a build: the first 16 hex digits of its build key, slash-terminated.
pub fn artifacts_dir(build_key: &str) -> String {
    let short: String = build_key.chars().take(16).collect();
    format!("{short}/")
}

/// The parts of a published `metadata.json` that programs read. Everything else in it is for people
/// and other tools.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishedVariant {
    pub driver: String,
    pub driver_version: String,
    pub variant: MatrixEntry,
    pub kernel_release: String,
    pub build_key: String,
    pub input_key: String,
    pub toolchain: PublishedToolchain,
    #[serde(default)]
    pub modules: Vec<PublishedModule>,
    /// The directory (relative to the variant's prefix, `/`-terminated) holding the modules and logs.
    #[serde(default)]
    pub artifacts: Option<String>,
    /// Present when the variant passed a boot test before it was published.
    #[serde(default)]
    pub boot: Option<serde_json::Value>,
    /// Present when the modules are signed.
    #[serde(default)]
    pub signature: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublishedToolchain {
    pub builder: String,
    pub builder_identity: String,
    pub cc_version_text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublishedModule {
    pub file_name: String,
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub modinfo: PublishedModinfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublishedModinfo {
    #[serde(default)]
    pub name: Option<String>,
}

impl PublishedVariant {
    /// Parses a record, refusing artifact directories or file names that could leave the variant's
    /// prefix (a store is not trusted more than any other input).
    pub fn parse(bytes: &[u8]) -> Result<PublishedVariant, String> {
        let v: PublishedVariant = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if let Some(dir) = &v.artifacts {
            let inner = dir.strip_suffix('/').unwrap_or("");
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("bad artifacts directory {dir:?}"));
            }
        }
        for m in &v.modules {
            let f = &m.file_name;
            if f.is_empty() || f.contains('/') || f.starts_with('.') || !f.ends_with(".ko") {
                return Err(format!("bad module file name {f:?}"));
            }
        }
        Ok(v)
    }

    /// The store key of `file` (a module, `SHA256SUMS`, a log) of this variant, published under
    /// `prefix` (`<driver>/<output>`).
    pub fn object_key(&self, prefix: &str, file: &str) -> String {
        match &self.artifacts {
            Some(dir) => format!("{prefix}/{dir}{file}"),
            None => format!("{prefix}/{file}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(artifacts: &str, file: &str) -> String {
        format!(
            r#"{{"driver":"hello","driver_version":"0.1.0","kernel_release":"6.1.0-9-amd64",
            "build_key":"ab","input_key":"cd",
            "variant":{{"kversion":"6.1.0-9-amd64","distribution":"debian","architecture":"x86_64",
              "kernelurls":[],"output":"0.1.0/debian/x86_64/6.1.0-9-amd64","driverversion":"0.1.0"}},
            "toolchain":{{"builder":"b","builder_identity":"b@1","cc_version_text":null}},
            "modules":[{{"file_name":"{file}","sha256":"00","size":3}}]{artifacts}}}"#
        )
    }

    #[test]
    fn keys_follow_the_record() {
        let v =
            PublishedVariant::parse(record(r#","artifacts":"0123abcd/""#, "hello.ko").as_bytes())
                .unwrap();
        assert_eq!(
            v.object_key("hello/0.1.0/x", "hello.ko"),
            "hello/0.1.0/x/0123abcd/hello.ko"
        );
        let old = PublishedVariant::parse(record("", "hello.ko").as_bytes()).unwrap();
        assert_eq!(
            old.object_key("hello/0.1.0/x", "hello.ko"),
            "hello/0.1.0/x/hello.ko"
        );
        assert_eq!(artifacts_dir("0123456789abcdef0123"), "0123456789abcdef/");
    }

    #[test]
    fn refuses_paths_out_of_the_prefix() {
        for (a, f) in [
            (r#","artifacts":"../x/""#, "hello.ko"),
            (r#","artifacts":"/""#, "hello.ko"),
            ("", "../hello.ko"),
            ("", "hello.txt"),
        ] {
            assert!(
                PublishedVariant::parse(record(a, f).as_bytes()).is_err(),
                "{a} {f}"
            );
        }
    }
}
