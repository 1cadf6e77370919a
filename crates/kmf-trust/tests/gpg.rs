//! Keys and signatures made by gpg, the tool Debian's and the RPM distributions' archives are signed with:
//! a signing subkey, an expired key, a revoked key, and a document signed by two keys of which one is
//! unknown. Skipped without gpg, except under CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use kmf_trust::{Keyring, TrustError};

fn gpg_available() -> bool {
    let found = Command::new("gpg").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "gpg is required under CI=true"
        );
        eprintln!("skipped: gpg is not installed");
    }
    found
}

/// A gpg home of its own; `faked` sets gpg's clock (`--faked-system-time`) for every call.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        Gpg { home }
    }

    fn run(&self, faked: Option<&str>, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.home.path()).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked {
            cmd.arg("--faked-system-time").arg(t);
        }
        cmd.args(args);
        use std::io::Write;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn gen_key(&self, faked: Option<&str>, uid: &str, expire: &str) -> String {
        self.run(
            faked,
            &["--quick-gen-key", uid, "ed25519", "sign", expire],
            None,
        );
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = String::from_utf8(self.run(None, &["--with-colons", "--list-keys", uid], None))
            .unwrap();
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    fn export(&self, uid: &str, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.gpg", uid.split_whitespace().next().unwrap()));
        std::fs::write(&path, self.run(None, &["--export", uid], None)).unwrap();
        path
    }

    fn clearsign(&self, faked: Option<&str>, signers: &[&str], text: &str) -> Vec<u8> {
        let mut args = vec!["--clearsign", "--digest-algo", "SHA256"];
        for s in signers {
            args.extend(["--local-user", s]);
        }
        self.run(faked, &args, Some(text.as_bytes()))
    }
}

const RELEASE: &str = "Origin: Test\nSuite: testing\nCodename: kmf\nSHA256:\n";

/// What the cleartext framework escapes or normalises: lines starting with dashes (one looks like the
/// signature block), trailing blanks, an empty line at the end.
const AWKWARD: &str =
    "Origin: Test\n-----BEGIN PGP SIGNATURE-----\n--- dashes\nblanks   \t\nDescription: x\n\n";

#[test]
fn gpg_signatures_by_primary_keys_and_subkeys_verify() {
    if !gpg_available() {
        return;
    }
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let fpr = gpg.gen_key(None, "archive <archive@invalid>", "never");
    // A signing subkey, as Debian's archive keys and most RPM keys sign with.
    gpg.run(
        None,
        &["--quick-add-key", &fpr, "ed25519", "sign", "never"],
        None,
    );
    let ring = Keyring::from_file(&gpg.export("archive <archive@invalid>", dir.path())).unwrap();
    let doc = gpg.clearsign(None, &[&fpr], RELEASE);
    let (text, signer) = ring.verify_cleartext(&doc, SystemTime::now()).unwrap();
    assert_eq!(text.trim_end(), RELEASE.trim_end());
    assert_eq!(signer.primary_fingerprint, fpr);
    assert_ne!(signer.fingerprint, fpr, "signed by the subkey");

    let doc = gpg.clearsign(None, &[&fpr], AWKWARD);
    let (text, _) = ring.verify_cleartext(&doc, SystemTime::now()).unwrap();
    assert_eq!(
        text,
        "Origin: Test\n-----BEGIN PGP SIGNATURE-----\n--- dashes\nblanks\nDescription: x\n"
    );
    // CRLF line ends (a mirror served through a Windows proxy) verify too.
    let crlf = String::from_utf8(doc).unwrap().replace('\n', "\r\n");
    ring.verify_cleartext(crlf.as_bytes(), SystemTime::now())
        .unwrap();
}

#[test]
fn expired_and_revoked_keys_are_refused() {
    if !gpg_available() {
        return;
    }
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    // Made two years ago with a one-year life: expired a year ago, as gpg itself sees it.
    let two_years_ago = time_ago(2 * 365 * 86400);
    gpg.gen_key(Some(&two_years_ago), "expired <expired@invalid>", "1y");
    let expired_ring =
        Keyring::from_file(&gpg.export("expired <expired@invalid>", dir.path())).unwrap();
    let doc = gpg.clearsign(
        Some(&time_ago(400 * 86400)),
        &["expired <expired@invalid>"],
        RELEASE,
    );
    let err = expired_ring
        .verify_cleartext(&doc, SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, TrustError::ExpiredKey { .. }), "{err}");
    assert!(err.to_string().contains("expired on"), "{err}");

    let fpr = gpg.gen_key(None, "revoked <revoked@invalid>", "never");
    let doc = gpg.clearsign(None, &["revoked <revoked@invalid>"], RELEASE);
    let good = Keyring::from_file(&gpg.export("revoked <revoked@invalid>", dir.path())).unwrap();
    good.verify_cleartext(&doc, SystemTime::now()).unwrap();
    // gpg keeps a revocation certificate for each key; importing it revokes the key.
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
    let cert = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    gpg.run(None, &["--import"], Some(cert.as_bytes()));
    let revoked = Keyring::from_file(&gpg.export("revoked <revoked@invalid>", dir.path())).unwrap();
    let err = revoked
        .verify_cleartext(&doc, SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, TrustError::RevokedKey { .. }), "{err}");
}

#[test]
fn one_good_signature_among_unknown_ones_is_enough_but_a_bad_one_is_not() {
    if !gpg_available() {
        return;
    }
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    gpg.gen_key(None, "old <old@invalid>", "never");
    gpg.gen_key(None, "new <new@invalid>", "never");
    // Debian signs each Release with several archive keys; a host's keyring may know only some of them.
    let doc = gpg.clearsign(None, &["old <old@invalid>", "new <new@invalid>"], RELEASE);
    let only_new = Keyring::from_file(&gpg.export("new <new@invalid>", dir.path())).unwrap();
    let (_, signer) = only_new.verify_cleartext(&doc, SystemTime::now()).unwrap();
    assert_eq!(
        signer.primary_fingerprint,
        gpg.fingerprint("new <new@invalid>")
    );

    let changed = String::from_utf8(doc)
        .unwrap()
        .replace("Codename: kmf", "Codename: kmg");
    let err = only_new
        .verify_cleartext(changed.as_bytes(), SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, TrustError::BadSignature { .. }), "{err}");
}

#[test]
fn the_installed_debian_archive_keyring_loads() {
    let path = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !path.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "debian-archive-keyring is required under CI=true"
        );
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let ring = Keyring::from_file(path).unwrap();
    assert!(ring.fingerprints().len() >= 3, "{:?}", ring.fingerprints());
}

/// `--faked-system-time` takes seconds since the epoch followed by `!` (a frozen clock).
fn time_ago(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{}!", now - secs)
}
