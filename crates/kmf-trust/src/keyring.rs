//! Keyrings and the signature checks made against them.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Timestamp, VerifyingKey};

use crate::TrustError;

/// Signatures made this far in the future are still taken (clocks of signer and checker differ).
const CLOCK_SKEW: Duration = Duration::from_secs(600);

/// OpenPGP public keys read from one or more files (binary keyrings as Debian ships them in
/// `/usr/share/keyrings/`, or ASCII-armored files such as `RPM-GPG-KEY-*`).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    /// The files it was read from, for messages.
    origin: String,
    /// Each key's [`KeyState`] once computed, by fingerprint.
    states: Arc<Mutex<HashMap<String, KeyState>>>,
}

/// Who vouched for a file: the key whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Fingerprint of the key that made the signature (a subkey's own when a subkey signed), upper-case hex.
    pub fingerprint: String,
    /// Fingerprint of the certificate's primary key, upper-case hex.
    pub primary_fingerprint: String,
    /// The certificate's first user ID (`Debian Archive Automatic Signing Key (13/trixie) <…>`).
    pub user_id: Option<String>,
    /// When the signature was made.
    pub signed_at: Option<SystemTime>,
}

/// One key of a certificate that can have made a signature: the primary or a subkey.
#[derive(Debug)]
enum Candidate<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicKey, &'a SignedPublicSubKey),
}

impl Keyring {
    /// Reads every file in `paths` (each binary or armored, each may hold many keys).
    pub fn from_files(paths: &[PathBuf]) -> Result<Keyring, TrustError> {
        let mut keys = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| TrustError::KeyringIo {
                path: path.clone(),
                source,
            })?;
            keys.extend(parse_keys(&bytes, &path.display().to_string())?);
        }
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Keyring::from_keys(keys, origin)
    }

    /// Reads one file.
    pub fn from_file(path: &Path) -> Result<Keyring, TrustError> {
        Keyring::from_files(&[path.to_path_buf()])
    }

    /// Keys from bytes (binary or armored); `origin` names them in messages.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Keyring, TrustError> {
        Keyring::from_keys(parse_keys(bytes, origin)?, origin.to_string())
    }

    fn from_keys(keys: Vec<SignedPublicKey>, origin: String) -> Result<Keyring, TrustError> {
        if keys.is_empty() {
            return Err(TrustError::EmptyKeyring {
                origin,
                detail: None,
            });
        }
        Ok(Keyring {
            keys,
            origin,
            states: Arc::default(),
        })
    }

    /// The files (or name) the keys came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Primary key fingerprints, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint_hex(&k.primary_key.fingerprint()))
            .collect()
    }

    /// Checks an inline-signed (cleartext) document such as apt's `InRelease` at time `now`, and returns
    /// the text that was signed with the key that vouched for it. Only the signed text may be used: anything
    /// around the signature block is not covered by it.
    pub fn verify_cleartext(
        &self,
        document: &[u8],
        now: SystemTime,
    ) -> Result<(String, Signer), TrustError> {
        let text = std::str::from_utf8(document)
            .map_err(|_| TrustError::Malformed("the signed document is not UTF-8".into()))?;
        let framed = CleartextFrame::split(text)?;
        let signatures = parse_detached(framed.signature.as_bytes())?;
        let signed = framed.signed_text();
        let signer = self.verify_signatures(&signatures, signed.as_bytes(), now)?;
        // The signed text is hashed with CRLF line ends; callers parse it with LF ones.
        Ok((signed.replace("\r\n", "\n"), signer))
    }

    /// Checks a detached signature (binary or armored, one or more signature packets) over `data`: apt's
    /// `Release.gpg`, `repomd.xml.asc`, an RPM header's OpenPGP signature.
    pub fn verify_detached(
        &self,
        data: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<Signer, TrustError> {
        let signatures = parse_detached(signature)?;
        self.verify_signatures(&signatures, data, now)
    }

    fn verify_signatures(
        &self,
        signatures: &[Signature],
        data: &[u8],
        now: SystemTime,
    ) -> Result<Signer, TrustError> {
        if signatures.is_empty() {
            return Err(TrustError::NotSigned("no signature packet".into()));
        }
        let mut good: Option<Signer> = None;
        // The first reason a signature by a keyring key was not taken, reported when none was good.
        let mut refused: Option<TrustError> = None;
        let mut unknown = Vec::new();
        for sig in signatures {
            let Some(candidate) = self.issuer_of(sig) else {
                unknown.extend(issuer_names(sig));
                continue;
            };
            let fingerprint = candidate.fingerprint();
            if sig.verify(&candidate, Cursor::new(data)).is_err() {
                // gpgv's BADSIG: whatever else verifies, the document is not what the key signed.
                return Err(TrustError::BadSignature { fingerprint });
            }
            match candidate.usable_for(sig, now, &self.states) {
                Ok(()) => {
                    good.get_or_insert_with(|| candidate.signer(sig));
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        if let Some(signer) = good {
            return Ok(signer);
        }
        Err(refused.unwrap_or(TrustError::UnknownKey {
            issuers: unknown,
            keyring: self.origin.clone(),
        }))
    }

    /// The keyring key named as `sig`'s issuer (by fingerprint, else by key ID).
    fn issuer_of(&self, sig: &Signature) -> Option<Candidate<'_>> {
        let fingerprints = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        let matches = |fp: pgp::types::Fingerprint, id: pgp::types::KeyId| {
            fingerprints.iter().any(|f| **f == fp) || ids.iter().any(|i| **i == id)
        };
        for key in &self.keys {
            if matches(
                key.primary_key.fingerprint(),
                key.primary_key.legacy_key_id(),
            ) {
                return Some(Candidate::Primary(key));
            }
            for sub in &key.public_subkeys {
                if matches(sub.key.fingerprint(), sub.key.legacy_key_id()) {
                    return Some(Candidate::Subkey(key, sub));
                }
            }
        }
        None
    }
}

impl Candidate<'_> {
    fn cert(&self) -> &SignedPublicKey {
        match self {
            Candidate::Primary(k) | Candidate::Subkey(k, _) => k,
        }
    }

    fn fingerprint(&self) -> String {
        match self {
            Candidate::Primary(k) => fingerprint_hex(&k.primary_key.fingerprint()),
            Candidate::Subkey(_, s) => fingerprint_hex(&s.key.fingerprint()),
        }
    }

    fn signer(&self, sig: &Signature) -> Signer {
        let cert = self.cert();
        Signer {
            fingerprint: self.fingerprint(),
            primary_fingerprint: fingerprint_hex(&cert.primary_key.fingerprint()),
            user_id: cert
                .details
                .users
                .first()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned()),
            signed_at: sig.created().map(system_time),
        }
    }

    /// What this key's self-signatures say, whatever the time of checking: revoked, without a valid
    /// self-signature or binding, or usable until its (and its primary's) expiry. Verifying the
    /// self-signatures is most of the cost of a check, so a keyring computes this once per key.
    fn state(&self) -> KeyState {
        let cert = self.cert();
        let primary = &cert.primary_key;
        let fingerprint = self.fingerprint();
        let primary_fp = fingerprint_hex(&primary.fingerprint());

        // A revocation counts only when the primary key made it.
        if let Some(rev) = cert
            .details
            .revocation_signatures
            .iter()
            .find(|r| r.verify_key(primary).is_ok())
        {
            return KeyState::Revoked {
                fingerprint: primary_fp,
                reason: revocation_reason(rev),
            };
        }
        let self_sig = newest(
            cert.details
                .users
                .iter()
                .flat_map(|u| {
                    u.signatures.iter().filter(move |s| {
                        s.verify_certification(primary, pgp::types::Tag::UserId, &u.id)
                            .is_ok()
                    })
                })
                .chain(
                    cert.details
                        .direct_signatures
                        .iter()
                        .filter(|s| s.verify_key(primary).is_ok()),
                ),
        );
        let Some(self_sig) = self_sig else {
            return KeyState::Invalid {
                fingerprint: primary_fp,
                why: "comes from a certificate without a valid self-signature".into(),
            };
        };
        let mut expiries = Vec::new();
        expiries.extend(expiry(primary.created_at(), self_sig).map(|t| (primary_fp, t)));

        if let Candidate::Subkey(_, sub) = self {
            let valid: Vec<&Signature> = sub
                .signatures
                .iter()
                .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
                .collect();
            if let Some(rev) = valid
                .iter()
                .find(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
            {
                return KeyState::Revoked {
                    fingerprint,
                    reason: revocation_reason(rev),
                };
            }
            let Some(binding) = newest(
                valid
                    .into_iter()
                    .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
            ) else {
                return KeyState::Invalid {
                    fingerprint,
                    why: "comes from a subkey without a valid binding signature".into(),
                };
            };
            if !binding.key_flags().sign() {
                return KeyState::Invalid {
                    fingerprint,
                    why: "comes from a subkey not certified for signing".into(),
                };
            }
            expiries.extend(expiry(sub.key.created_at(), binding).map(|t| (fingerprint, t)));
        }
        KeyState::Valid { expiries }
    }

    /// Whether this key may vouch for a document at `now` (its [`KeyState`] from `states`), and the
    /// signature itself is neither from the future nor expired.
    fn usable_for(
        &self,
        sig: &Signature,
        now: SystemTime,
        states: &Mutex<HashMap<String, KeyState>>,
    ) -> Result<(), TrustError> {
        let fingerprint = self.fingerprint();
        let cached = states
            .lock()
            .expect("key states")
            .get(&fingerprint)
            .cloned();
        let state = match cached {
            Some(state) => state,
            None => {
                let state = self.state();
                states
                    .lock()
                    .expect("key states")
                    .insert(fingerprint.clone(), state.clone());
                state
            }
        };
        match state {
            KeyState::Revoked {
                fingerprint,
                reason,
            } => {
                return Err(TrustError::RevokedKey {
                    fingerprint,
                    reason,
                })
            }
            KeyState::Invalid { fingerprint, why } => {
                return Err(TrustError::InvalidSignature { fingerprint, why })
            }
            KeyState::Valid { expiries } => {
                if let Some((fp, t)) = expiries.into_iter().find(|(_, t)| *t <= now) {
                    return Err(TrustError::ExpiredKey {
                        fingerprint: fp,
                        expired: rfc3339(t),
                    });
                }
            }
        }

        let Some(created) = sig.created().map(system_time) else {
            return Err(TrustError::InvalidSignature {
                fingerprint,
                why: "has no creation time".into(),
            });
        };
        if created > now + CLOCK_SKEW {
            return Err(TrustError::InvalidSignature {
                fingerprint,
                why: format!("was made in the future ({})", rfc3339(created)),
            });
        }
        if let Some(d) = sig.signature_expiration_time().filter(|d| d.as_secs() > 0) {
            let until = created + Duration::from_secs(d.as_secs().into());
            if until <= now {
                return Err(TrustError::InvalidSignature {
                    fingerprint,
                    why: format!("expired on {}", rfc3339(until)),
                });
            }
        }
        Ok(())
    }
}

impl VerifyingKey for Candidate<'_> {
    fn verify(
        &self,
        hash: pgp::crypto::hash::HashAlgorithm,
        data: &[u8],
        sig: &pgp::types::SignatureBytes,
    ) -> pgp::errors::Result<()> {
        match self {
            Candidate::Primary(k) => k.verify(hash, data, sig),
            Candidate::Subkey(_, s) => s.verify(hash, data, sig),
        }
    }
}

impl KeyDetails for Candidate<'_> {
    fn version(&self) -> pgp::types::KeyVersion {
        match self {
            Candidate::Primary(k) => k.version(),
            Candidate::Subkey(_, s) => s.version(),
        }
    }
    fn legacy_key_id(&self) -> pgp::types::KeyId {
        match self {
            Candidate::Primary(k) => k.legacy_key_id(),
            Candidate::Subkey(_, s) => s.legacy_key_id(),
        }
    }
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        match self {
            Candidate::Primary(k) => k.fingerprint(),
            Candidate::Subkey(_, s) => s.fingerprint(),
        }
    }
    fn algorithm(&self) -> pgp::crypto::public_key::PublicKeyAlgorithm {
        match self {
            Candidate::Primary(k) => k.algorithm(),
            Candidate::Subkey(_, s) => s.algorithm(),
        }
    }
    fn created_at(&self) -> Timestamp {
        match self {
            Candidate::Primary(k) => k.created_at(),
            Candidate::Subkey(_, s) => s.created_at(),
        }
    }
    fn legacy_v3_expiration_days(&self) -> Option<u16> {
        None
    }
    fn public_params(&self) -> &pgp::types::PublicParams {
        match self {
            Candidate::Primary(k) => k.public_params(),
            Candidate::Subkey(_, s) => s.public_params(),
        }
    }
}

/// A key expires `key_expiration_time` after its creation, as its newest self-signature says.
fn expiry(created: Timestamp, self_sig: &Signature) -> Option<SystemTime> {
    self_sig
        .key_expiration_time()
        .filter(|d| d.as_secs() > 0)
        .map(|d| system_time(created) + Duration::from_secs(d.as_secs().into()))
}

/// What a key's self-signatures say (see [`Candidate::state`]).
#[derive(Debug, Clone)]
enum KeyState {
    Valid {
        expiries: Vec<(String, SystemTime)>,
    },
    Revoked {
        fingerprint: String,
        reason: Option<String>,
    },
    Invalid {
        fingerprint: String,
        why: String,
    },
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn revocation_reason(sig: &Signature) -> Option<String> {
    sig.revocation_reason_string()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .filter(|s| !s.is_empty())
}

fn issuer_names(sig: &Signature) -> Vec<String> {
    let fps: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| fingerprint_hex(f))
        .collect();
    if !fps.is_empty() {
        return fps;
    }
    let ids: Vec<String> = sig
        .issuer_key_id()
        .iter()
        .map(|id| format!("key ID {}", hex::encode_upper(id.as_ref())))
        .collect();
    if ids.is_empty() {
        vec!["an unnamed key".into()]
    } else {
        ids
    }
}

fn parse_keys(bytes: &[u8], origin: &str) -> Result<Vec<SignedPublicKey>, TrustError> {
    let (keys, _) = SignedPublicKey::from_reader_many(Cursor::new(bytes)).map_err(|e| {
        TrustError::EmptyKeyring {
            origin: origin.to_string(),
            detail: Some(e.to_string()),
        }
    })?;
    let mut out = Vec::new();
    for key in keys {
        match key {
            Ok(k) => out.push(k),
            // One unparsable certificate (an algorithm rPGP does not know) must not hide the others.
            Err(e) => tracing::debug!(origin, error = %e, "certificate skipped"),
        }
    }
    Ok(out)
}

fn parse_detached(bytes: &[u8]) -> Result<Vec<Signature>, TrustError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(TrustError::NotSigned("the signature is empty".into()));
    }
    let (sigs, _) = DetachedSignature::from_reader_many(Cursor::new(trimmed))
        .map_err(|e| TrustError::Malformed(e.to_string()))?;
    let sigs = sigs
        .map(|s| s.map(|s| s.signature))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Malformed(e.to_string()))?;
    Ok(sigs)
}

/// A cleartext-signed document (RFC 9580 section 7) cut into its signed text and its signature block.
///
/// rPGP parses the same framework, but its reader searches the whole text read so far after every line, which
/// costs ~20 ms on a 150 KB `InRelease`; this is one pass. It only cuts: the text returned is exactly the
/// text hashed for verification (normalised as the RFC says), and the signature block is parsed and verified
/// by rPGP, so a framing mistake can only make a good document fail, never let an unsigned byte through.
struct CleartextFrame<'a> {
    /// The dash-escaped body, without the line break before the signature block.
    body: &'a str,
    /// The armored signature block, `-----BEGIN PGP SIGNATURE-----` to its END line.
    signature: &'a str,
}

impl<'a> CleartextFrame<'a> {
    const BEGIN: &'static str = "-----BEGIN PGP SIGNED MESSAGE-----";
    const SIGNATURE: &'static str = "-----BEGIN PGP SIGNATURE-----";
    const END: &'static str = "-----END PGP SIGNATURE-----";

    fn split(text: &'a str) -> Result<CleartextFrame<'a>, TrustError> {
        let malformed = |m: &str| TrustError::Malformed(m.to_string());
        let rest = text.trim_start().strip_prefix(Self::BEGIN).ok_or_else(|| {
            TrustError::NotSigned(format!("no cleartext signature ({})", Self::BEGIN))
        })?;
        let rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
            .ok_or_else(|| malformed("text on the BEGIN line"))?;
        // Armor headers (`Hash: SHA512`) up to the first empty line.
        let mut offset = 0;
        loop {
            let line_end = rest[offset..]
                .find('\n')
                .map(|i| offset + i + 1)
                .ok_or_else(|| malformed("no end of the armor headers"))?;
            let line = rest[offset..line_end].trim_end_matches(['\r', '\n']);
            offset = line_end;
            if line.is_empty() {
                break;
            }
            if !line.starts_with("Hash: ") {
                return Err(malformed(&format!("unexpected armor header {line:?}")));
            }
        }
        let rest = &rest[offset..];
        // Inside the text every line starting with `-` is escaped as `- -`: the first line that starts with
        // five dashes is the signature block.
        let sig_start = if rest.starts_with(Self::SIGNATURE) {
            0
        } else {
            rest.find(&format!("\n{}", Self::SIGNATURE))
                .map(|i| i + 1)
                .ok_or_else(|| malformed("no signature block"))?
        };
        let body = rest[..sig_start]
            .strip_suffix("\r\n")
            .or_else(|| rest[..sig_start].strip_suffix('\n'))
            .unwrap_or(&rest[..sig_start]);
        let block = &rest[sig_start..];
        let end = block
            .find(Self::END)
            .map(|i| i + Self::END.len())
            .ok_or_else(|| malformed("no end of the signature block"))?;
        if !block[end..].trim().is_empty() {
            return Err(malformed("data after the signature block"));
        }
        Ok(CleartextFrame {
            body,
            signature: &block[..end],
        })
    }

    /// The text the signatures cover: dash escapes removed, trailing spaces and tabs dropped from each line,
    /// lines joined with CRLF (RFC 9580 section 7.2).
    fn signed_text(&self) -> String {
        let mut out = String::with_capacity(self.body.len() + self.body.len() / 32);
        for (i, line) in self.body.split('\n').enumerate() {
            if i > 0 {
                out.push_str("\r\n");
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line.strip_prefix("- ").unwrap_or(line);
            out.push_str(line.trim_end_matches([' ', '\t']));
        }
        out
    }
}

/// Upper-case hex, as gpg prints fingerprints.
pub(crate) fn fingerprint_hex(fp: &pgp::types::Fingerprint) -> String {
    hex::encode_upper(fp.as_bytes())
}

fn system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.as_secs().into())
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestKey;

    const RELEASE: &str =
        "Origin: Debian\nSuite: stable\nCodename: trixie\nSHA256:\n 00 1 main/x\n";

    #[test]
    fn clearsigned_text_verifies_and_names_its_signer() {
        let key = TestKey::generate("kmodfarm test archive <test@invalid>");
        let ring = Keyring::from_bytes(&key.public_keyring(), "test ring").unwrap();
        assert_eq!(ring.fingerprints(), vec![key.fingerprint()]);
        let (text, signer) = ring
            .verify_cleartext(&key.clearsign(RELEASE), SystemTime::now())
            .unwrap();
        assert_eq!(text.trim_end(), RELEASE.trim_end());
        assert_eq!(signer.fingerprint, key.fingerprint());
        assert_eq!(
            signer.user_id.as_deref(),
            Some("kmodfarm test archive <test@invalid>")
        );
        // Armored keyrings read as well as binary ones.
        let armored = Keyring::from_bytes(key.public_armored().as_bytes(), "armored").unwrap();
        armored
            .verify_cleartext(&key.clearsign(RELEASE), SystemTime::now())
            .unwrap();
    }

    #[test]
    fn changed_unsigned_and_foreign_documents_are_refused() {
        let key = TestKey::generate("archive <a@invalid>");
        let other = TestKey::generate("intruder <i@invalid>");
        let ring = Keyring::from_bytes(&key.public_keyring(), "ring").unwrap();
        let now = SystemTime::now();

        let signed = String::from_utf8(key.clearsign(RELEASE)).unwrap();
        let changed = signed.replace("Codename: trixie", "Codename: forky");
        assert_ne!(changed, signed);
        let err = ring.verify_cleartext(changed.as_bytes(), now).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err}");

        let err = ring.verify_cleartext(RELEASE.as_bytes(), now).unwrap_err();
        assert!(matches!(err, TrustError::NotSigned(_)), "{err}");

        let err = ring
            .verify_cleartext(&other.clearsign(RELEASE), now)
            .unwrap_err();
        match &err {
            TrustError::UnknownKey { issuers, keyring } => {
                assert_eq!(issuers, &vec![other.fingerprint()]);
                assert_eq!(keyring, "ring");
            }
            e => panic!("expected UnknownKey, got {e}"),
        }

        // A signature made in the future (a clock set back) is refused.
        let past = now - Duration::from_secs(3600);
        let err = ring
            .verify_cleartext(&key.clearsign(RELEASE), past)
            .unwrap_err();
        assert!(err.to_string().contains("in the future"), "{err}");
    }

    #[test]
    fn detached_signatures_cover_exactly_their_data() {
        let key = TestKey::generate("rpm signer <r@invalid>");
        let ring =
            Keyring::from_bytes(key.public_armored().as_bytes(), "RPM-GPG-KEY-test").unwrap();
        let data = b"<repomd>...</repomd>\n";
        let sig = key.detach_sign(data);
        let signer = ring.verify_detached(data, &sig, SystemTime::now()).unwrap();
        assert_eq!(signer.primary_fingerprint, key.fingerprint());
        let err = ring
            .verify_detached(b"<repomd>changed</repomd>\n", &sig, SystemTime::now())
            .unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err}");
        let err = ring
            .verify_detached(data, b"", SystemTime::now())
            .unwrap_err();
        assert!(matches!(err, TrustError::NotSigned(_)), "{err}");
        let err = ring
            .verify_detached(
                data,
                b"-----BEGIN PGP SIGNATURE-----\ngarbage\n",
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(matches!(err, TrustError::Malformed(_)), "{err}");
    }

    /// The framing gives exactly the text rPGP's own cleartext parser gives, for the shapes that matter:
    /// dash-escaped lines, trailing blanks, CRLF documents, an empty last line.
    #[test]
    fn cleartext_framing_agrees_with_rpgp() {
        use pgp::composed::CleartextSignedMessage;
        let key = TestKey::generate("framing <f@invalid>");
        let ring = Keyring::from_bytes(&key.public_keyring(), "ring").unwrap();
        for text in [
            RELEASE,
            "-----BEGIN PGP SIGNATURE-----\n- starts with a dash\ntrailing   \t\nlast",
            "one line",
            "windows\r\nline ends\r\n",
            "ends with two newlines\n\n",
        ] {
            let doc = key.clearsign(text);
            let (theirs, _) =
                CleartextSignedMessage::from_string(std::str::from_utf8(&doc).unwrap()).unwrap();
            let ours = CleartextFrame::split(std::str::from_utf8(&doc).unwrap()).unwrap();
            assert_eq!(ours.signed_text(), theirs.signed_text(), "{text:?}");
            // rPGP's signer hashes trailing blanks the RFC says to drop (gpg drops them: tests/gpg.rs).
            if !text.contains(" \t") {
                ring.verify_cleartext(&doc, SystemTime::now()).unwrap();
            }
        }
        // Anything after the signature block is refused, as is a document without one.
        let mut doc = key.clearsign(RELEASE);
        doc.extend_from_slice(b"Codename: forky\n");
        let err = ring.verify_cleartext(&doc, SystemTime::now()).unwrap_err();
        assert!(
            err.to_string().contains("after the signature block"),
            "{err}"
        );
        let doc = String::from_utf8(key.clearsign(RELEASE)).unwrap();
        let cut = &doc[..doc.find("-----BEGIN PGP SIGNATURE").unwrap()];
        let err = ring
            .verify_cleartext(cut.as_bytes(), SystemTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("no signature block"), "{err}");
    }

    #[test]
    fn empty_and_unreadable_keyrings_are_errors() {
        let err = Keyring::from_bytes(b"", "empty").unwrap_err();
        assert!(matches!(err, TrustError::EmptyKeyring { .. }), "{err}");
        let err = Keyring::from_file(Path::new("/nonexistent/keyring.gpg")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/keyring.gpg"),
            "{err}"
        );
    }
}
