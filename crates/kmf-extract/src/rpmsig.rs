//! An RPM's own signature, checked the way `rpm -K` (`rpmkeys --checksig`) checks it, against the
//! family's keys (`RPM-GPG-KEY-*`) instead of rpm's database.
//!
//! The signature header carries OpenPGP signatures and digests over the other parts of the file:
//!
//! | tag | name | over |
//! |---|---|---|
//! | 268, 267 | RSAHEADER, DSAHEADER (EdDSA and ECDSA too) | main header |
//! | 278 | OPENPGP (rpm 6: base64 signatures, any number) | main header |
//! | 1002, 1005 | SIGPGP, SIGGPG (`rpmsign --rpmv3`, rpm 3 era) | main header + payload |
//! | 273, 269, 279 | SHA256, SHA1, SHA3-256 digests | main header |
//! | 1004 | MD5 digest | main header + payload |
//!
//! and the main header the payload's digest (PAYLOADSHA256 5092 with its algorithm in 5093, or rpm 6's
//! PAYLOADSHA512 5121 and PAYLOADSHA3_256 5123), over the payload as it is in the file (compressed). A
//! header signature thus covers the payload through that digest; a package whose header has no payload
//! digest needs a header+payload signature. As rpm does, the v4 and v3 signatures are ignored when rpm 6
//! signatures are present.
//!
//! Every present signature by a key of the keyring must verify and every present digest must match; at
//! least one signature by a usable key must cover the header and the payload. Signatures by keys outside
//! the keyring are passed over when another verifies (a package signed by two vendors).

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use base64::Engine as _;
use kmf_trust::{Keyring, Signer, TrustError};
use sha2::Digest as _;

use crate::error::ExtractError;
use crate::rpm::read_headers;
use crate::unpack;

const SIG_DSA: i32 = 267;
const SIG_RSA: i32 = 268;
const SIG_SHA1: i32 = 269;
const SIG_SHA256: i32 = 273;
const SIG_OPENPGP: i32 = 278;
const SIG_SHA3_256: i32 = 279;
const SIG_PGP: i32 = 1002;
const SIG_MD5: i32 = 1004;
const SIG_GPG: i32 = 1005;

const TAG_PAYLOADSHA256: i32 = 5092;
const TAG_PAYLOADSHA256ALGO: i32 = 5093;
const TAG_PAYLOADSHA512: i32 = 5121;
const TAG_PAYLOADSHA3_256: i32 = 5123;

/// OpenPGP hash algorithm numbers, as PAYLOADSHA256ALGO gives them.
const PGP_HASH_SHA256: u32 = 8;
const PGP_HASH_SHA512: u32 = 10;
const PGP_HASH_SHA3_256: u32 = 12;

/// A header+payload signature needs the whole package in memory; kernel-devel packages are tens of MiB.
const MAX_SIGNED_PACKAGE: u64 = 2 << 30;

/// What an RPM's signature check established.
#[derive(Debug, Clone)]
pub struct RpmSignature {
    /// The key whose signature verified.
    pub signer: Signer,
    /// Which signature it was (`header signature (RSAHEADER)`).
    pub signature: &'static str,
    /// The digests that matched, as `rpm -K` names them (`Header SHA256`, `Payload SHA256`, `MD5`).
    pub digests: Vec<&'static str>,
}

/// One OpenPGP signature of the signature header.
struct PackageSig {
    what: &'static str,
    covers_payload: bool,
    packet: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algo {
    Sha256,
    Sha512,
    Sha3_256,
}

/// A digest the package claims: over what, with which algorithm, which value (lower-case hex).
struct Claim {
    what: &'static str,
    algo: Algo,
    hex: String,
}

/// Checks the signature of the RPM package `rpm` against `keyring` at time `now`, before anything of it
/// is unpacked: see the module documentation for what must hold. Errors name the package and say why:
/// [`ExtractError::NotSigned`], [`ExtractError::Signature`] (a key outside the keyring, a BAD signature,
/// an expired or revoked key), [`ExtractError::DigestMismatch`] (changed after it was built or signed),
/// [`ExtractError::PayloadUnsigned`].
pub fn verify_rpm_signature(
    rpm: &Path,
    keyring: &Keyring,
    now: SystemTime,
) -> Result<RpmSignature, ExtractError> {
    let malformed = |reason: String| ExtractError::NotAnRpm {
        path: rpm.to_path_buf(),
        reason,
    };
    let mut file = unpack::open_buffered(rpm)?;
    let (sigh, header) = read_headers(&mut file, rpm)?;

    // The signatures: rpm 6's when there are any, else the v4 (header) and v3 (header+payload) ones.
    let mut sigs = Vec::new();
    if sigh.has(SIG_OPENPGP) {
        let values = sigh.string_array(SIG_OPENPGP).ok_or_else(|| {
            malformed("signature header: OPENPGP (278) is not a string array".into())
        })?;
        for v in values {
            let text: Vec<u8> = v.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            let packet = base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map_err(|e| ExtractError::Signature {
                    path: rpm.to_path_buf(),
                    what: "header signature (OPENPGP)".into(),
                    source: TrustError::Malformed(format!("invalid base64: {e}")),
                })?;
            sigs.push(PackageSig {
                what: "header signature (OPENPGP)",
                covers_payload: false,
                packet,
            });
        }
    } else {
        for (tag, what, covers_payload) in [
            (SIG_RSA, "header signature (RSAHEADER)", false),
            (SIG_DSA, "header signature (DSAHEADER)", false),
            (SIG_PGP, "header+payload signature (SIGPGP)", true),
            (SIG_GPG, "header+payload signature (SIGGPG)", true),
        ] {
            if !sigh.has(tag) {
                continue;
            }
            let packet = sigh.bin(tag).ok_or_else(|| {
                malformed(format!("signature header: tag {tag} is not binary data"))
            })?;
            sigs.push(PackageSig {
                what,
                covers_payload,
                packet: packet.to_vec(),
            });
        }
    }
    if sigs.is_empty() {
        return Err(ExtractError::NotSigned {
            path: rpm.to_path_buf(),
        });
    }

    // The digests the package claims.
    let sig_hex = |tag: i32, what: &str, len: usize| -> Result<Option<String>, ExtractError> {
        if !sigh.has(tag) {
            return Ok(None);
        }
        match sigh.string(tag) {
            Some(h) if h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(h.to_ascii_lowercase()))
            }
            _ => Err(malformed(format!(
                "signature header: the {what} digest (tag {tag}) is not {len} hex digits"
            ))),
        }
    };
    let header_sha256 = sig_hex(SIG_SHA256, "header SHA256", 64)?;
    let header_sha1 = sig_hex(SIG_SHA1, "header SHA1", 40)?;
    let header_sha3 = sig_hex(SIG_SHA3_256, "header SHA3-256", 64)?;
    let md5 = match sigh.has(SIG_MD5) {
        false => None,
        true => Some(
            sigh.bin(SIG_MD5)
                .filter(|b| b.len() == 16)
                .map(hex::encode)
                .ok_or_else(|| {
                    malformed("signature header: the MD5 digest is not 16 bytes".into())
                })?,
        ),
    };
    let mut payload_claims = Vec::new();
    if let Some(values) = header.string_array(TAG_PAYLOADSHA256) {
        let algo = match header
            .int32(TAG_PAYLOADSHA256ALGO)
            .unwrap_or(PGP_HASH_SHA256)
        {
            PGP_HASH_SHA256 => Some((Algo::Sha256, "Payload SHA256")),
            PGP_HASH_SHA512 => Some((Algo::Sha512, "Payload SHA512")),
            PGP_HASH_SHA3_256 => Some((Algo::Sha3_256, "Payload SHA3-256")),
            other => {
                tracing::debug!(package = %rpm.display(), algorithm = other,
                    "payload digest of an unsupported algorithm not checked");
                None
            }
        };
        if let Some((algo, what)) = algo {
            payload_claims.extend(values.into_iter().map(|v| Claim {
                what,
                algo,
                hex: v.to_ascii_lowercase(),
            }));
        }
    }
    for (tag, algo, what) in [
        (TAG_PAYLOADSHA512, Algo::Sha512, "Payload SHA512"),
        (TAG_PAYLOADSHA3_256, Algo::Sha3_256, "Payload SHA3-256"),
    ] {
        if let Some(v) = header.string(tag) {
            payload_claims.push(Claim {
                what,
                algo,
                hex: v.to_ascii_lowercase(),
            });
        }
    }

    // One pass over the payload: its digests, the MD5 over header and payload, and the signed bytes
    // when a signature covers the payload.
    let needs_package = sigs.iter().any(|s| s.covers_payload);
    let mut hashers = PayloadHashers::new(&payload_claims);
    let mut md5_ctx = md5.as_ref().map(|_| {
        let mut m = md5::Md5::new();
        m.update(header.blob());
        m
    });
    let mut signed_package = needs_package.then(|| header.blob().to_vec());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ExtractError::io(rpm, e)),
        };
        let chunk = &buf[..n];
        hashers.update(chunk);
        if let Some(m) = md5_ctx.as_mut() {
            m.update(chunk);
        }
        if let Some(p) = signed_package.as_mut() {
            if p.len() as u64 + n as u64 > MAX_SIGNED_PACKAGE {
                return Err(malformed(format!(
                    "larger than the {MAX_SIGNED_PACKAGE} bytes a header+payload signature is checked over"
                )));
            }
            p.extend_from_slice(chunk);
        }
    }

    // Signatures first: a BAD one says more than the digest that changed with it.
    let mut header_good: Option<(&'static str, Signer)> = None;
    let mut package_good: Option<(&'static str, Signer)> = None;
    let mut refused: Option<(&'static str, TrustError)> = None;
    for sig in &sigs {
        let data = match (&signed_package, sig.covers_payload) {
            (Some(p), true) => p.as_slice(),
            _ => header.blob(),
        };
        match keyring.verify_detached(data, &sig.packet, now) {
            Ok(signer) => {
                let slot = match sig.covers_payload {
                    true => &mut package_good,
                    false => &mut header_good,
                };
                slot.get_or_insert((sig.what, signer));
            }
            Err(e @ TrustError::BadSignature { .. }) => {
                return Err(ExtractError::Signature {
                    path: rpm.to_path_buf(),
                    what: sig.what.into(),
                    source: e,
                })
            }
            Err(e) => {
                refused.get_or_insert((sig.what, e));
            }
        }
    }

    let mut digests = Vec::new();
    let mut check = |what: &'static str, expected: &str, actual: String| {
        if expected != actual {
            return Err(ExtractError::DigestMismatch {
                path: rpm.to_path_buf(),
                what,
                expected: expected.to_string(),
                actual,
            });
        }
        digests.push(what);
        Ok(())
    };
    if let Some(h) = &header_sha256 {
        check(
            "Header SHA256",
            h,
            hex::encode(sha2::Sha256::digest(header.blob())),
        )?;
    }
    if let Some(h) = &header_sha1 {
        check(
            "Header SHA1",
            h,
            hex::encode(sha1::Sha1::digest(header.blob())),
        )?;
    }
    if let Some(h) = &header_sha3 {
        check(
            "Header SHA3-256",
            h,
            hex::encode(sha3::Sha3_256::digest(header.blob())),
        )?;
    }
    let computed = hashers.finish();
    for claim in &payload_claims {
        let actual = computed
            .iter()
            .find(|(a, _)| *a == claim.algo)
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        check(claim.what, &claim.hex, actual)?;
    }
    if let (Some(expected), Some(m)) = (&md5, md5_ctx) {
        check("MD5", expected, hex::encode(m.finalize()))?;
    }

    let Some((what, signer)) = header_good.clone().or_else(|| package_good.clone()) else {
        let (what, source) = refused.expect("a signature was present");
        return Err(ExtractError::Signature {
            path: rpm.to_path_buf(),
            what: what.into(),
            source,
        });
    };
    if package_good.is_none() && payload_claims.is_empty() {
        return Err(ExtractError::PayloadUnsigned {
            path: rpm.to_path_buf(),
            reason:
                "its header carries no payload digest (PAYLOADSHA256) for the header signature to \
                     cover, and no header+payload signature verified"
                    .into(),
        });
    }
    Ok(RpmSignature {
        signer,
        signature: what,
        digests,
    })
}

/// The payload digests the package claims, computed in one pass.
struct PayloadHashers {
    sha256: Option<sha2::Sha256>,
    sha512: Option<sha2::Sha512>,
    sha3_256: Option<sha3::Sha3_256>,
}

impl PayloadHashers {
    fn new(claims: &[Claim]) -> PayloadHashers {
        let wants = |a: Algo| claims.iter().any(|c| c.algo == a);
        PayloadHashers {
            sha256: wants(Algo::Sha256).then(sha2::Sha256::new),
            sha512: wants(Algo::Sha512).then(sha2::Sha512::new),
            sha3_256: wants(Algo::Sha3_256).then(sha3::Sha3_256::new),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        if let Some(h) = self.sha256.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = self.sha512.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = self.sha3_256.as_mut() {
            h.update(chunk);
        }
    }

    fn finish(self) -> Vec<(Algo, String)> {
        let mut out = Vec::new();
        if let Some(h) = self.sha256 {
            out.push((Algo::Sha256, hex::encode(h.finalize())));
        }
        if let Some(h) = self.sha512 {
            out.push((Algo::Sha512, hex::encode(h.finalize())));
        }
        if let Some(h) = self.sha3_256 {
            out.push((Algo::Sha3_256, hex::encode(h.finalize())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made packages for the shapes rpmsign does not make here (rpm 6 signatures, a header without a
    //! payload digest); rpmsign's own are in `tests/rpm_signature.rs`.

    use super::*;
    use kmf_trust::testing::TestKey;

    /// A header structure of (tag, type, count, data) entries.
    fn header(entries: &[(i32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let (mut index, mut store) = (Vec::new(), Vec::<u8>::new());
        for (tag, typ, count, data) in entries {
            for v in [*tag as u32, *typ, store.len() as u32, *count] {
                index.extend(v.to_be_bytes());
            }
            store.extend(data);
        }
        let mut blob = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        blob.extend((entries.len() as u32).to_be_bytes());
        blob.extend((store.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(store);
        blob
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// lead + signature header (padded) + main header + payload.
    fn package(sigh: &[u8], main: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut lead = vec![0u8; 96];
        lead[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
        lead[4] = 3;
        let mut out = lead;
        out.extend(sigh);
        out.resize(out.len() + (8 - sigh.len() % 8) % 8, 0);
        out.extend(main);
        out.extend(payload);
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn rpm6_signatures_and_payload_coverage() {
        let key = TestKey::generate("vendor <v@invalid>");
        let ring =
            Keyring::from_bytes(key.public_armored().as_bytes(), "RPM-GPG-KEY-test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let payload = b"07070100000000 not really cpio".to_vec();
        let payload_sha = hex::encode(sha2::Sha256::digest(&payload));
        let now = SystemTime::now();

        // rpm 6: base64 signatures in OPENPGP, the payload's SHA256 in the signed header.
        let main = header(&[
            (1000, 6, 1, string("kernel-devel")),
            (TAG_PAYLOADSHA256, 8, 1, string(&payload_sha)),
        ]);
        let armored = String::from_utf8(key.detach_sign(&main)).unwrap();
        let b64: String = armored
            .lines()
            .skip_while(|l| !l.is_empty())
            .skip(1)
            .take_while(|l| !l.starts_with('=') && !l.starts_with("-----"))
            .collect();
        let sha256 = hex::encode(sha2::Sha256::digest(&main));
        let sigh = header(&[
            (SIG_SHA256, 6, 1, string(&sha256)),
            (SIG_OPENPGP, 8, 1, string(&b64)),
            // Ignored, as rpm ignores v4 signatures next to v6 ones.
            (SIG_RSA, 7, 4, vec![1, 2, 3, 4]),
        ]);
        let rpm = write(dir.path(), "v6.rpm", &package(&sigh, &main, &payload));
        let ok = verify_rpm_signature(&rpm, &ring, now).unwrap();
        assert_eq!(ok.signature, "header signature (OPENPGP)");
        assert_eq!(ok.signer.primary_fingerprint, key.fingerprint());
        assert_eq!(ok.digests, ["Header SHA256", "Payload SHA256"]);

        let mut changed = payload.clone();
        changed[3] ^= 1;
        let rpm = write(
            dir.path(),
            "v6-changed.rpm",
            &package(&sigh, &main, &changed),
        );
        let err = verify_rpm_signature(&rpm, &ring, now).unwrap_err();
        assert!(matches!(err, ExtractError::DigestMismatch { .. }), "{err}");

        // A header signature over a header that names no payload digest leaves the payload unproven.
        let bare = header(&[(1000, 6, 1, string("kernel-devel"))]);
        let sig = key.detach_sign(&bare);
        let sigh = header(&[(SIG_RSA, 7, sig.len() as u32, sig)]);
        let rpm = write(dir.path(), "bare.rpm", &package(&sigh, &bare, &payload));
        let err = verify_rpm_signature(&rpm, &ring, now).unwrap_err();
        assert!(matches!(err, ExtractError::PayloadUnsigned { .. }), "{err}");

        // A signature header of digests only is not signed.
        let sigh = header(&[(
            SIG_SHA256,
            6,
            1,
            string(&hex::encode(sha2::Sha256::digest(&bare))),
        )]);
        let rpm = write(
            dir.path(),
            "digests-only.rpm",
            &package(&sigh, &bare, &payload),
        );
        let err = verify_rpm_signature(&rpm, &ring, now).unwrap_err();
        assert!(matches!(err, ExtractError::NotSigned { .. }), "{err}");
    }
}
