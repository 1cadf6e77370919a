//! RPM signatures: packages built by `rpmbuild` and signed by `rpmsign` with gpg keys made here (in a
//! temporary GNUPGHOME), checked by [`verify_rpm_signature`] and, where rpm can tell, compared with
//! `rpm -K`'s own verdict. Skips (with a message) when rpmbuild, rpmsign or gpg is missing, unless
//! CI=true.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use kmf_extract::{extract_rpm, verify_rpm_signature, ExtractError};
use kmf_trust::{Keyring, TrustError};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// rpmbuild, rpmsign and gpg, or None (the test skips) when one is missing outside CI.
fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let found = (tool("rpmbuild"), tool("rpmsign"), tool("gpg"));
    match found {
        (Some(b), Some(s), Some(g)) => Some((b, s, g)),
        _ if in_ci() => {
            panic!("rpmbuild, rpmsign and gpg are needed under CI=true (Debian packages `rpm`, `gnupg`)")
        }
        _ => {
            eprintln!(
                "skipping: rpmbuild, rpmsign or gpg not found (install Debian's `rpm` and `gnupg`)"
            );
            None
        }
    }
}

/// A temporary GNUPGHOME with signing keys; its gpg-agent is stopped on drop.
struct Gpg {
    gpg: PathBuf,
    home: PathBuf,
}

impl Gpg {
    fn new(gpg: &Path, home: PathBuf) -> Gpg {
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gpg {
            gpg: gpg.to_path_buf(),
            home,
        }
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(&self.gpg)
            .env("GNUPGHOME", &self.home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new key without passphrase (`algo`: `rsa2048`, `ed25519`); returns its fingerprint.
    fn generate(&self, email: &str, algo: &str) -> String {
        self.run(&[
            "--quick-gen-key",
            &format!("kmodfarm test <{email}>"),
            algo,
            "sign",
            "never",
        ]);
        let listing =
            String::from_utf8(self.run(&["--with-colons", "--list-keys", email])).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }

    /// The armored public key, as an `RPM-GPG-KEY-*` file.
    fn export(&self, email: &str, to: &Path) {
        fs::write(to, self.run(&["--armor", "--export", email])).unwrap();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A small noarch package laid out as kernel-devel is.
fn build_rpm(rpmbuild: &Path, work: &Path) -> PathBuf {
    let top = work.join("top");
    fs::create_dir_all(&top).unwrap();
    let spec = top.join("test.spec");
    fs::write(
        &spec,
        "Name: kmf-sig-test\nVersion: 1.0\nRelease: 1.fc41\nSummary: kmodfarm signature fixture\n\
         License: MIT\nBuildArch: noarch\nAutoReqProv: no\n%description\nkmodfarm signature fixture\n\
         %install\nk=$RPM_BUILD_ROOT/usr/src/kernels/6.1.0-1.fc41.x86_64\nmkdir -p $k\n\
         printf 'obj-m := x.o\\n' > $k/Makefile\nseq 1 20000 > $k/Module.symvers\n\
         %files\n/usr/src/kernels/6.1.0-1.fc41.x86_64\n",
    )
    .unwrap();
    let out = Command::new(rpmbuild)
        .arg("-bb")
        .args(["--define", &format!("_topdir {}", top.display())])
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpmbuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    top.join("RPMS/noarch/kmf-sig-test-1.0-1.fc41.noarch.rpm")
}

/// A copy of `rpm` at `to`, signed by `email`'s key (`extra`: more rpmsign flags, such as `--rpmv3`).
fn sign(rpmsign: &Path, gpg: &Gpg, rpm: &Path, to: &Path, email: &str, extra: &[&str]) {
    fs::copy(rpm, to).unwrap();
    let out = Command::new(rpmsign)
        .env("GNUPGHOME", &gpg.home)
        .arg("--addsign")
        .args(extra)
        .args(["--define", &format!("_gpg_name {email}")])
        .args(["--define", &format!("__gpg {}", gpg.gpg.display())])
        .arg(to)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpmsign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rpm -K`'s verdict on `rpm` with only `keys` imported (None when rpm cannot be run).
fn rpm_checksig(work: &Path, keys: &[&Path], rpm: &Path) -> Option<bool> {
    let rpm_bin = tool("rpm")?;
    let db = work.join("rpmdb");
    if !db.exists() {
        fs::create_dir_all(&db).unwrap();
        for k in keys {
            let st = Command::new(&rpm_bin)
                .args(["--dbpath"])
                .arg(&db)
                .arg("--import")
                .arg(k)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    let out = Command::new(&rpm_bin)
        .arg("--dbpath")
        .arg(&db)
        .arg("-K")
        .arg(rpm)
        .output()
        .unwrap();
    Some(out.status.success())
}

/// The offset of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("marker in the package")
}

#[test]
fn rpmsign_signatures_are_checked_like_rpm_k() {
    let Some((rpmbuild, rpmsign, gpg_bin)) = tools() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gpg = Gpg::new(&gpg_bin, w.join("gnupg"));
    let vendor = gpg.generate("vendor@kmodfarm.invalid", "rsa2048");
    let other = gpg.generate("other@kmodfarm.invalid", "ed25519");
    let vendor_key = w.join("RPM-GPG-KEY-vendor");
    let other_key = w.join("RPM-GPG-KEY-other");
    gpg.export("vendor@kmodfarm.invalid", &vendor_key);
    gpg.export("other@kmodfarm.invalid", &other_key);
    let keyring = Keyring::from_file(&vendor_key).unwrap();
    let now = SystemTime::now();

    let unsigned = build_rpm(&rpmbuild, w);
    let signed = w.join("signed.rpm");
    sign(
        &rpmsign,
        &gpg,
        &unsigned,
        &signed,
        "vendor@kmodfarm.invalid",
        &[],
    );
    let v3 = w.join("v3.rpm");
    sign(
        &rpmsign,
        &gpg,
        &unsigned,
        &v3,
        "vendor@kmodfarm.invalid",
        &["--rpmv3"],
    );
    let foreign = w.join("foreign.rpm");
    sign(
        &rpmsign,
        &gpg,
        &unsigned,
        &foreign,
        "other@kmodfarm.invalid",
        &[],
    );

    // Signed by the vendor's key (RSA header signature): accepted, with the digests rpm -K lists.
    let ok = verify_rpm_signature(&signed, &keyring, now).unwrap();
    assert_eq!(ok.signer.primary_fingerprint, vendor);
    assert_eq!(ok.signature, "header signature (RSAHEADER)");
    for d in ["Header SHA256", "Header SHA1", "Payload SHA256", "MD5"] {
        assert!(ok.digests.contains(&d), "{d} not in {:?}", ok.digests);
    }
    assert_eq!(rpm_checksig(w, &[&vendor_key], &signed), Some(true));
    // A verified package still extracts as before.
    let out = w.join("out");
    extract_rpm(&signed, &out).unwrap();
    assert!(out
        .join("usr/src/kernels/6.1.0-1.fc41.x86_64/Makefile")
        .is_file());

    // rpmsign --rpmv3 adds a header+payload signature: both verify.
    let ok = verify_rpm_signature(&v3, &keyring, now).unwrap();
    assert_eq!(ok.signer.primary_fingerprint, vendor);
    assert_eq!(rpm_checksig(w, &[&vendor_key], &v3), Some(true));

    // An Ed25519 key (rpm's DSAHEADER tag) verifies when it is the family's key.
    let ed_ring = Keyring::from_files(&[vendor_key.clone(), other_key.clone()]).unwrap();
    let ok = verify_rpm_signature(&foreign, &ed_ring, now).unwrap();
    assert_eq!(ok.signer.primary_fingerprint, other);
    assert_eq!(ok.signature, "header signature (DSAHEADER)");

    // Unsigned: refused as such.
    let err = verify_rpm_signature(&unsigned, &keyring, now).unwrap_err();
    assert!(matches!(err, ExtractError::NotSigned { .. }), "{err}");
    assert!(err.to_string().contains("not signed"), "{err}");

    // Signed by a key outside the family's keyring: refused, naming the key.
    let err = verify_rpm_signature(&foreign, &keyring, now).unwrap_err();
    match &err {
        ExtractError::Signature {
            source: TrustError::UnknownKey { issuers, .. },
            ..
        } => assert!(
            issuers
                .iter()
                .any(|i| other.ends_with(i.trim_start_matches("key ID "))),
            "{issuers:?} vs {other}"
        ),
        e => panic!("expected an unknown key, got {e}"),
    }
    assert!(err.to_string().contains("not in the keyring"), "{err}");
    assert_eq!(rpm_checksig(w, &[&vendor_key], &foreign), Some(false));

    // Changed after signing, in the payload: the signed header's payload digest no longer matches.
    let bytes = fs::read(&signed).unwrap();
    let mut payload = bytes.clone();
    let last = payload.len() - 20;
    payload[last] ^= 0x55;
    let tampered = w.join("tampered-payload.rpm");
    fs::write(&tampered, &payload).unwrap();
    let err = verify_rpm_signature(&tampered, &keyring, now).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::DigestMismatch {
                what: "Payload SHA256",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("BAD"), "{err}");
    assert_eq!(rpm_checksig(w, &[&vendor_key], &tampered), Some(false));

    // Changed after signing, in the main header (its description): BAD signature.
    let mut header = bytes.clone();
    let at = find(&header, b"kmodfarm signature fixture\0");
    header[at] = b'K';
    let tampered = w.join("tampered-header.rpm");
    fs::write(&tampered, &header).unwrap();
    let err = verify_rpm_signature(&tampered, &keyring, now).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Signature {
                source: TrustError::BadSignature { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("BAD signature"), "{err}");
    assert_eq!(rpm_checksig(w, &[&vendor_key], &tampered), Some(false));

    // The legacy header+payload signature alone also catches a changed payload.
    let mut v3_bytes = fs::read(&v3).unwrap();
    let last = v3_bytes.len() - 20;
    v3_bytes[last] ^= 0x55;
    let tampered = w.join("tampered-v3.rpm");
    fs::write(&tampered, &v3_bytes).unwrap();
    let err = verify_rpm_signature(&tampered, &keyring, now).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Signature {
                source: TrustError::BadSignature { .. },
                ..
            }
        ),
        "{err}"
    );

    // Not an RPM at all.
    let junk = w.join("junk.rpm");
    fs::write(&junk, b"<html>404</html>").unwrap();
    let err = verify_rpm_signature(&junk, &keyring, now).unwrap_err();
    assert!(matches!(err, ExtractError::NotAnRpm { .. }), "{err}");
}
