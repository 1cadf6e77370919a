//! Module signing for Secure Boot and `CONFIG_MODULE_SIG_FORCE` kernels.
//!
//! Each built `.ko` is signed with the kernel tree's own `scripts/sign-file` and the hash the kernel was
//! configured with (`CONFIG_MODULE_SIG_HASH`), so that the signature is exactly what that kernel expects.
//! The private key never enters the build sandbox: signing is a separate sandboxed run, after the build
//! and its verification, in which nothing of the driver's is executed (only the distribution's
//! `sign-file`, from the verified header packages, inside the builder's root filesystem whose libcrypto it
//! was linked against). Its writable directory holds a copy of the key and the modules, and is deleted
//! as soon as the run ends.
//!
//! Every signature is then checked on the host before anything is published: the appended trailer
//! (`~Module signature appended~`, a PKCS#7 `module_signature` record) must wrap the unsigned module
//! byte for byte, and the PKCS#7 signature must verify against the certificate
//! ([`kmf_verify::signature`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_sandbox::{ExitKind, Limits, Mount, Sandbox, SandboxSpec};
use kmf_types::FailureClass;
use sha2::{Digest, Sha256};

use crate::kbuild::{resolve_merged, BuiltModule, KernelTree};
use crate::BuildError;

/// What metadata.json records about a variant's signatures ([`kmf_types::published`]).
pub use kmf_types::published::SignatureRecord;

/// Where the signing run sees its directory.
const SANDBOX_SIGN_DIR: &str = "/kmodfarm-sign";

/// A signing key and its X.509 certificate, checked to belong together.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// SHA256 of the certificate in DER form: part of every signed variant's build key.
    pub cert_sha256: String,
    /// The certificate's subject common name: what `modinfo` shows as `signer`.
    pub signer: String,
}

fn openssl(args: &[&str], input_path: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(input_path)
        .output()
        .map_err(|e| format!("cannot run openssl: {e} (install the openssl package)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out.stdout)
}

/// The SHA256 of a certificate in DER form (PEM or DER read): what the build keys of signed variants hold,
/// for a planner that must know which certificate the publisher will sign with but never sees the key.
pub fn certificate_sha256(cert: &Path) -> Result<String, BuildError> {
    let bad = |what: String| BuildError::Signing(what);
    std::fs::metadata(cert)
        .map_err(|e| bad(format!("signing certificate {}: {e}", cert.display())))?;
    let form = if openssl(&["x509", "-inform", "PEM", "-noout"], cert).is_ok() {
        "PEM"
    } else {
        "DER"
    };
    let der = openssl(&["x509", "-inform", form, "-outform", "DER"], cert).map_err(|e| {
        bad(format!(
            "{} is not an X.509 certificate (PEM or DER): {e}",
            cert.display()
        ))
    })?;
    Ok(hex::encode(Sha256::digest(&der)))
}

impl SigningKey {
    /// Loads and checks a key pair: the certificate must parse (PEM or DER), the key must be a private
    /// key whose public half is the certificate's. Failing here stops a run before anything is built.
    pub fn load(key: &Path, cert: &Path) -> Result<SigningKey, BuildError> {
        let bad = |what: String| BuildError::Signing(what);
        for (p, what) in [(key, "signing key"), (cert, "signing certificate")] {
            std::fs::metadata(p).map_err(|e| bad(format!("{what} {}: {e}", p.display())))?;
        }
        let read_cert = |form: &str, args: &[&str]| {
            let mut all = vec!["x509", "-inform", form, "-noout"];
            all.extend_from_slice(args);
            openssl(&all, cert)
        };
        let form = if read_cert("PEM", &[]).is_ok() {
            "PEM"
        } else if read_cert("DER", &[]).is_ok() {
            "DER"
        } else {
            return Err(bad(format!(
                "{} is not an X.509 certificate (PEM or DER)",
                cert.display()
            )));
        };
        let der = openssl(&["x509", "-inform", form, "-outform", "DER"], cert).map_err(bad)?;
        let subject = read_cert(form, &["-subject", "-nameopt", "RFC2253"]).map_err(bad)?;
        let subject = String::from_utf8_lossy(&subject).trim().to_string();
        let signer = common_name(&subject).ok_or_else(|| {
            bad(format!(
                "certificate {} has no CN in its subject ({subject})",
                cert.display()
            ))
        })?;
        let cert_pub = read_cert(form, &["-pubkey"]).map_err(bad)?;
        let key_pub = openssl(&["pkey", "-pubout"], key).map_err(|e| {
            bad(format!(
                "{} is not a private key openssl can read (PKCS#11 URIs are not supported): {e}",
                key.display()
            ))
        })?;
        if cert_pub != key_pub {
            return Err(bad(format!(
                "the key {} does not belong to the certificate {}",
                key.display(),
                cert.display()
            )));
        }
        Ok(SigningKey {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
            cert_sha256: hex::encode(Sha256::digest(&der)),
            signer,
        })
    }
}

/// `CN=...` of an RFC 2253 subject line (`subject=CN=kmodfarm test,O=Example`).
fn common_name(subject: &str) -> Option<String> {
    let s = subject.strip_prefix("subject=").unwrap_or(subject);
    let mut out = None;
    // RFC 2253 escapes commas inside values with a backslash.
    let mut part = String::new();
    let mut parts = Vec::new();
    let mut escaped = false;
    for c in s.chars() {
        match c {
            '\\' if !escaped => {
                escaped = true;
                continue;
            }
            ',' if !escaped => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
        escaped = false;
    }
    parts.push(part);
    for p in parts {
        if let Some(v) = p.trim().strip_prefix("CN=") {
            out = Some(v.to_string());
        }
    }
    out.filter(|v| !v.is_empty())
}

/// `CONFIG_MODULE_SIG_HASH` of a kernel `.config`; `None` when the kernel does not check module
/// signatures at all.
pub fn module_sig_hash(config: &str) -> Option<String> {
    let enabled = config.lines().any(|l| l.trim() == "CONFIG_MODULE_SIG=y");
    let hash = config.lines().find_map(|l| {
        l.strip_prefix("CONFIG_MODULE_SIG_HASH=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })?;
    (enabled && !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then_some(hash)
}

/// Everything a signing run needs besides the key.
pub struct SignJob<'a> {
    pub tree: &'a KernelTree,
    pub rootfs: PathBuf,
    pub package_roots: Vec<PathBuf>,
    /// A fresh directory for the run, removed by the caller afterwards.
    pub work_dir: PathBuf,
    /// The sign-file run's output goes here (outside `work_dir`).
    pub log_path: PathBuf,
}

/// Signs `modules` in place (their files, sizes and digests are updated) and checks every signature.
pub async fn sign_modules(
    sandbox: &dyn Sandbox,
    job: &SignJob<'_>,
    key: &SigningKey,
    modules: &mut [BuiltModule],
) -> Result<SignatureRecord, (FailureClass, String)> {
    let fail = |msg: String| (FailureClass::SigningFailed, msg);
    let config_path = resolve_merged(&job.package_roots, &job.tree.sandbox_dir.join(".config"))
        .unwrap_or_else(|| job.tree.host_dir.join(".config"));
    let config = std::fs::read_to_string(&config_path)
        .map_err(|e| fail(format!("cannot read the kernel's .config: {e}")))?;
    let hash = module_sig_hash(&config).ok_or_else(|| {
        fail(format!(
            "kernel {} is not configured to check module signatures (no CONFIG_MODULE_SIG / \
             CONFIG_MODULE_SIG_HASH), so a signature would mean nothing to it; build it without signing",
            job.tree.release
        ))
    })?;
    let sign_file_rel = Path::new("scripts/sign-file");
    if resolve_merged(
        &job.package_roots,
        &job.tree.sandbox_dir.join(sign_file_rel),
    )
    .is_none()
        && !job.tree.host_dir.join(sign_file_rel).is_file()
    {
        return Err(fail(format!(
            "the header packages of {} carry no scripts/sign-file",
            job.tree.release
        )));
    }

    // The run's directory: the key, the certificate and the modules, nothing else.
    let dir = &job.work_dir;
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io("signing directory", e))?;
    set_mode(dir, 0o700).map_err(|e| io("signing directory", e))?;
    std::fs::copy(&key.key, dir.join("key.pem")).map_err(|e| io("copying the key", e))?;
    std::fs::copy(&key.cert, dir.join("cert")).map_err(|e| io("copying the certificate", e))?;
    set_mode(&dir.join("key.pem"), 0o600).map_err(|e| io("key permissions", e))?;
    let root = if sandbox.name() == "none" {
        dir.clone()
    } else {
        PathBuf::from(SANDBOX_SIGN_DIR)
    };
    let mut script = String::from("set -e\n");
    let mut originals = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let name = format!("{i}.ko");
        std::fs::copy(&m.path, dir.join(&name)).map_err(|e| io("copying a module", e))?;
        originals.push(std::fs::read(&m.path).map_err(|e| io("reading a module", e))?);
        script.push_str(&format!(
            "\"$SIGN_FILE\" {hash} {r}/key.pem {r}/cert {r}/{name}\n",
            r = root.display()
        ));
    }
    let spec = SandboxSpec {
        rootfs: job.rootfs.clone(),
        overlays: job.package_roots.clone(),
        ro_mounts: vec![],
        rw_mounts: vec![Mount {
            src: dir.clone(),
            dest: PathBuf::from(SANDBOX_SIGN_DIR),
        }],
        argv: vec!["/bin/sh".into(), "-c".into(), script],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            (
                "SIGN_FILE".into(),
                job.tree
                    .sandbox_dir
                    .join(sign_file_rel)
                    .display()
                    .to_string(),
            ),
        ],
        cwd: root.clone(),
        limits: Limits {
            timeout: std::time::Duration::from_secs(120),
            ..Limits::default()
        },
        log_path: job.log_path.clone(),
    };
    let outcome = sandbox
        .run(&spec)
        .await
        .map_err(|e| fail(format!("signing run: {e}")))?;
    if outcome.exit != ExitKind::Exited(0) {
        let tail = std::fs::read_to_string(&job.log_path).unwrap_or_default();
        return Err(fail(format!(
            "sign-file failed ({:?}): {}",
            outcome.exit,
            tail.lines().last().unwrap_or("").trim()
        )));
    }
    // Drop the key copy at once: the modules are all that is needed from here on.
    let _ = std::fs::remove_file(dir.join("key.pem"));
    // The directory was the signing run's to write: read back without following links, as a build's.
    let signed_dir = crate::untrusted::Beneath::open(dir)
        .map_err(|e| fail(format!("reading the signed modules: {e}")))?;
    for (i, (m, original)) in modules.iter_mut().zip(&originals).enumerate() {
        // A signature adds a few KiB; a file much larger than the module is not its signed form.
        let limit = original.len() as u64 + (1 << 20);
        let signed = signed_dir
            .read(Path::new(&format!("{i}.ko")), limit)
            .map_err(|e| fail(format!("reading a signed module: {e}")))?;
        let covered = kmf_verify::signature::verify_signature(&signed, &key.cert)
            .map_err(|e| fail(format!("{}: {e}", m.file_name)))?;
        if covered != &original[..] {
            return Err(fail(format!(
                "{}: the signed module's content differs from the module that was built",
                m.file_name
            )));
        }
        std::fs::write(&m.path, &signed).map_err(|e| io("writing a signed module", e))?;
        m.sha256 = hex::encode(Sha256::digest(&signed));
        m.size = signed.len() as u64;
    }
    Ok(SignatureRecord {
        hash,
        signer: key.signer.clone(),
        cert_sha256: key.cert_sha256.clone(),
    })
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_configured_hash() {
        let cfg = "CONFIG_MODULES=y\nCONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_HASH=\"sha256\"\n";
        assert_eq!(module_sig_hash(cfg).as_deref(), Some("sha256"));
        assert_eq!(
            module_sig_hash("# CONFIG_MODULE_SIG is not set\nCONFIG_MODULE_SIG_HASH=\"sha256\"\n"),
            None
        );
        assert_eq!(module_sig_hash("CONFIG_MODULE_SIG=y\n"), None);
        assert_eq!(
            module_sig_hash("CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_HASH=\"sha256; rm -rf /\"\n"),
            None
        );
    }

    #[test]
    fn common_names() {
        assert_eq!(
            common_name("subject=CN=kmodfarm test signing key,O=kmodfarm tests").as_deref(),
            Some("kmodfarm test signing key")
        );
        assert_eq!(
            common_name("subject=O=x,CN=Acme\\, Inc. module key").as_deref(),
            Some("Acme, Inc. module key")
        );
        assert_eq!(common_name("subject=O=x"), None);
    }
}
