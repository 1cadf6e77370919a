//! Build keys: a variant is rebuilt exactly when the content of its inputs changes.
//!
//! The key is computed in two parts because the toolchain is only known for sure after the headers are
//! unpacked (it follows the kernel's `CONFIG_CC_VERSION_TEXT`):
//!
//! - the **input key**, known before any download: kmodfarm's build recipe version, the driver name and version,
//!   the source tree digest, the project's build section (make arguments, steps, expected modules, the
//!   requirements on the kernel) and what `[install]` publishes (modprobe text, firmware digests), the
//!   variant's identity, the header packages by SHA256 (by file name where the kernel list gave no digest;
//!   never by URL: mirrors move packages and kernel lists reorder them) and the kernel config digest;
//! - the **build key**: the input key plus the builder identity (builder id and a digest of every package
//!   installed in its root filesystem, compiler included).
//!
//! The store keeps both in each variant's `metadata.json`. A later run with the same input key and the same
//! builder identity needs no download and no build.

use kmf_types::MatrixEntry;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Driver;

/// Bump when a change in kmodfarm changes what a build produces from the same inputs (compiler flags, the
/// steps run, verification rules), so every variant is rebuilt once.
pub const RECIPE_VERSION: u32 = 1;

#[derive(Serialize)]
struct InputMaterial<'a> {
    recipe: u32,
    driver: &'a str,
    driver_version: &'a str,
    source_sha256: &'a str,
    build: &'a kmf_build::project::BuildSection,
    distribution: &'a str,
    architecture: &'a str,
    kversion: &'a str,
    kernelversion: &'a str,
    packages: Vec<String>,
    kernelconfigsha256: Option<&'a str>,
    /// `[install]` as published (modprobe text, firmware digests, orders): a change republishes. Absent
    /// when empty, so that projects without it keep their keys.
    #[serde(skip_serializing_if = "kmf_types::published::Delivery::is_empty")]
    delivery: &'a kmf_types::published::Delivery,
}

/// How a header package counts in a key: its SHA256 where known, else its file name.
pub fn package_identity(p: &kmf_types::HeaderPackage) -> String {
    match &p.sha256 {
        Some(sha) => format!("sha256:{}", sha.to_ascii_lowercase()),
        None => format!("file:{}", p.file_name()),
    }
}

/// The part of the build key that is known before anything is downloaded.
pub fn input_key(driver: &Driver, entry: &MatrixEntry) -> String {
    let mut packages: Vec<String> = entry
        .header_packages()
        .iter()
        .map(package_identity)
        .collect();
    packages.sort();
    packages.dedup();
    let arch = entry.architecture.to_string();
    let material = InputMaterial {
        recipe: RECIPE_VERSION,
        driver: &driver.name,
        driver_version: &driver.version,
        source_sha256: &driver.source_sha256,
        build: &driver.project.build,
        distribution: &entry.distribution,
        architecture: &arch,
        kversion: &entry.kversion,
        kernelversion: &entry.kernelversion,
        packages,
        kernelconfigsha256: entry.kernelconfigsha256.as_deref(),
        delivery: &driver.project.delivery,
    };
    digest(&serde_json::to_vec(&material).expect("key material serialises"))
}

/// The input key of a variant whose modules are signed with the certificate of digest `cert_sha256`.
pub fn signed_input_key(input_key: &str, cert_sha256: &str) -> String {
    digest(format!("kmodfarm-signed\n{input_key}\n{cert_sha256}\n").as_bytes())
}

/// The full build key: inputs plus the toolchain that turns them into modules.
pub fn build_key(input_key: &str, builder_identity: &str) -> String {
    digest(format!("kmodfarm-build-key\n{input_key}\n{builder_identity}\n").as_bytes())
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_types::{Arch, HeaderPackage};

    fn driver(version: &str, source: &str) -> Driver {
        Driver {
            name: "hello".into(),
            version: version.into(),
            project: Default::default(),
            source_sha256: source.into(),
            git: None,
        }
    }

    fn entry(urls: &[(&str, Option<&str>)]) -> MatrixEntry {
        MatrixEntry {
            kversion: "6.1.0-56-amd64".into(),
            distribution: "debian".into(),
            architecture: Arch::X86_64,
            kernelurls: urls.iter().map(|(u, _)| u.to_string()).collect(),
            output: "0.1.0/debian/x86_64/6.1.0-56-amd64".into(),
            driverversion: "0.1.1".into(),
            kernelversion: "1".into(),
            target: "debian".into(),
            flavour: None,
            packageversion: None,
            suite: None,
            headerpackages: urls
                .iter()
                .map(|(u, sha)| HeaderPackage {
                    sha256: sha.map(str::to_string),
                    ..HeaderPackage::from_url(u)
                })
                .collect(),
            kernelconfigsha256: None,
            builder: None,
            buildkey: None,
        }
    }

    #[test]
    fn urls_and_order_do_not_change_the_key() {
        let d = driver("0.1.1", "aa");
        let a = entry(&[
            ("http://m1/pool/a_1_amd64.deb", Some("11")),
            ("http://m1/pool/b_1_all.deb", None),
        ]);
        let b = entry(&[
            ("https://m2/other/b_1_all.deb", None),
            ("https://m2/other/a_1_amd64.deb", Some("11")),
        ]);
        assert_eq!(input_key(&d, &a), input_key(&d, &b));
    }

    #[test]
    fn every_input_changes_the_key() {
        let e = entry(&[("http://m/a_1_amd64.deb", Some("11"))]);
        let base = input_key(&driver("0.1.1", "aa"), &e);
        assert_ne!(
            base,
            input_key(&driver("0.1.2", "aa"), &e),
            "driver version"
        );
        assert_ne!(base, input_key(&driver("0.1.1", "ab"), &e), "source");
        let repacked = entry(&[("http://m/a_1_amd64.deb", Some("12"))]);
        assert_ne!(
            base,
            input_key(&driver("0.1.1", "aa"), &repacked),
            "package digest"
        );
        let mut d = driver("0.1.1", "aa");
        d.project.build.make_args.push("EXTRA=1".into());
        assert_ne!(base, input_key(&d, &e), "make arguments");
        let mut d = driver("0.1.1", "aa");
        d.project.build.requires_config.push("CONFIG_X".into());
        assert_ne!(base, input_key(&d, &e), "requirements");
        let mut d = driver("0.1.1", "aa");
        d.project.delivery.modprobe_conf = Some("options x y=1\n".into());
        assert_ne!(base, input_key(&d, &e), "delivery");
        let mut configured = e.clone();
        configured.kernelconfigsha256 = Some("cc".into());
        assert_ne!(
            base,
            input_key(&driver("0.1.1", "aa"), &configured),
            "kernel config"
        );
        assert_ne!(
            build_key(&base, "builder@1"),
            build_key(&base, "builder@2"),
            "toolchain"
        );
    }
}
