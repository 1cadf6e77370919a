//! A throwaway signing key for the tests of kmodfarm's crates: loopback mirrors sign their `InRelease` with
//! it and hand its public half to the code under test as the keyring. Generated in memory by rPGP; the
//! tests that need the shapes rPGP cannot make (expired, revoked keys) make them with gpg.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};

/// A signing key and its public certificate.
pub struct TestKey {
    secret: SignedSecretKey,
}

impl TestKey {
    /// A new Ed25519 key with the given user ID.
    pub fn generate(user_id: &str) -> TestKey {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.into())
            .build()
            .expect("key parameters");
        let secret = params.generate(rand::thread_rng()).expect("key generation");
        TestKey { secret }
    }

    /// The public certificate, binary, as a keyring file holds it.
    pub fn public_keyring(&self) -> Vec<u8> {
        use pgp::ser::Serialize;
        self.secret
            .to_public_key()
            .to_bytes()
            .expect("serialise public key")
    }

    /// The public certificate, ASCII-armored (`RPM-GPG-KEY-*`, `repomd.xml.key`).
    pub fn public_armored(&self) -> String {
        self.secret
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .expect("armor public key")
    }

    /// Upper-case hex fingerprint.
    pub fn fingerprint(&self) -> String {
        crate::keyring::fingerprint_hex(&self.secret.fingerprint())
    }

    /// `text` as an inline-signed (cleartext) document, like apt's `InRelease`.
    pub fn clearsign(&self, text: &str) -> Vec<u8> {
        CleartextSignedMessage::sign(rand::thread_rng(), text, &*self.secret, &Password::empty())
            .expect("clearsign")
            .to_armored_bytes(ArmorOptions::default())
            .expect("armor cleartext")
    }

    /// An armored detached signature over `data`, like `Release.gpg` or `repomd.xml.asc`.
    pub fn detach_sign(&self, data: &[u8]) -> Vec<u8> {
        DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &*self.secret,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .expect("detached signature")
        .to_armored_bytes(ArmorOptions::default())
        .expect("armor signature")
    }
}
