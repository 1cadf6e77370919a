//! Appended module signatures (`~Module signature appended~`): the trailer the kernel reads, and a
//! cryptographic check of the PKCS#7 signature against a certificate with `openssl cms -verify`, the
//! same check the kernel makes against its keyring.

use std::path::Path;
use std::process::Command;

/// The marker the kernel looks for at the end of a signed module.
pub const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len.
const MODULE_SIGNATURE_LEN: usize = 12;
/// `id_type` of a PKCS#7 signature (the only kind sign-file writes since Linux 4.3).
const PKEY_ID_PKCS7: u8 = 2;

/// Whether `bytes` end with a module signature trailer.
pub fn is_signed(bytes: &[u8]) -> bool {
    bytes.ends_with(MODULE_SIG_MAGIC)
}

/// The PKCS#7 signature appended to `signed`, and the module it covers.
pub fn split_signature(signed: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let body = signed
        .strip_suffix(MODULE_SIG_MAGIC)
        .ok_or("no appended signature (the module signature marker is missing)")?;
    if body.len() < MODULE_SIGNATURE_LEN {
        return Err("truncated module_signature record".into());
    }
    let (rest, record) = body.split_at(body.len() - MODULE_SIGNATURE_LEN);
    if record[2] != PKEY_ID_PKCS7 {
        return Err(format!(
            "signature id type {} is not PKCS#7 ({PKEY_ID_PKCS7})",
            record[2]
        ));
    }
    // PKCS#7 signatures keep signer and key id inside the blob: the record's own fields are zero.
    if record[..2] != [0, 0] || record[3..8] != [0, 0, 0, 0, 0] {
        return Err("malformed module_signature record".into());
    }
    let sig_len = u32::from_be_bytes([record[8], record[9], record[10], record[11]]) as usize;
    if sig_len == 0 || sig_len > rest.len() {
        return Err(format!(
            "signature length {sig_len} does not fit the module"
        ));
    }
    let (module, sig) = rest.split_at(rest.len() - sig_len);
    Ok((module, sig))
}

/// Checks that `signed` carries a PKCS#7 signature that verifies against `cert` (PEM or DER) and returns
/// the module bytes it covers.
pub fn verify_signature<'a>(signed: &'a [u8], cert: &Path) -> Result<&'a [u8], String> {
    let (module, sig) = split_signature(signed)?;
    // tempfile makes the directory 0700: the module and its signature are nobody else's business.
    let dir = tempfile::Builder::new()
        .prefix("kmodfarm-sigcheck-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let (sig_path, content_path) = (dir.path().join("sig.p7"), dir.path().join("content"));
    std::fs::write(&sig_path, sig).map_err(|e| e.to_string())?;
    std::fs::write(&content_path, module).map_err(|e| e.to_string())?;
    let out = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-nointern",
            "-noverify",
        ])
        .arg("-in")
        .arg(&sig_path)
        .arg("-content")
        .arg(&content_path)
        .arg("-certfile")
        .arg(cert)
        .args(["-out", "/dev/null"])
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the signature does not verify against the certificate: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
        ));
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects_trailers() {
        let module = b"\x7fELF module bytes".to_vec();
        let sig = vec![0x30u8; 40];
        let mut signed = module.clone();
        signed.extend_from_slice(&sig);
        signed.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
        signed.extend_from_slice(&(sig.len() as u32).to_be_bytes());
        signed.extend_from_slice(MODULE_SIG_MAGIC);
        let (m, s) = split_signature(&signed).unwrap();
        assert_eq!((m, s), (&module[..], &sig[..]));

        assert!(split_signature(&module).unwrap_err().contains("marker"));
        let mut too_long = signed.clone();
        let at = too_long.len() - MODULE_SIG_MAGIC.len() - 4;
        too_long[at..at + 4].copy_from_slice(&10_000u32.to_be_bytes());
        assert!(split_signature(&too_long)
            .unwrap_err()
            .contains("does not fit"));
        let mut not_pkcs7 = signed.clone();
        not_pkcs7[at - 6] = 1;
        assert!(split_signature(&not_pkcs7)
            .unwrap_err()
            .contains("not PKCS#7"));
        // A signature that is not valid PKCS#7 over the module is refused by the cryptographic check.
        let cert = std::env::temp_dir().join("kmodfarm-no-such-cert.pem");
        assert!(verify_signature(&signed, &cert).is_err());
        assert!(verify_signature(&module, &cert)
            .unwrap_err()
            .contains("marker"));
    }
}
