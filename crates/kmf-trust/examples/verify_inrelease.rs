//! Times what a crawl spends on one suite's proof: loading a keyring and verifying an `InRelease`.
//!
//! cargo run --release -p kmf-trust --example verify_inrelease -- KEYRING INRELEASE [ROUNDS]

use std::time::{Instant, SystemTime};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(keyring), Some(document)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: verify_inrelease KEYRING INRELEASE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: u32 = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(20);
    let bytes = std::fs::read(document).expect("reading the InRelease");
    let t = Instant::now();
    let mut ring = None;
    for _ in 0..rounds {
        ring = Some(kmf_trust::Keyring::from_file(std::path::Path::new(keyring)).expect("keyring"));
    }
    let load = t.elapsed() / rounds;
    let ring = ring.expect("at least one round");
    let t = Instant::now();
    let mut signer = None;
    for _ in 0..rounds {
        signer = Some(
            ring.verify_cleartext(&bytes, SystemTime::now())
                .expect("verifies"),
        );
    }
    let verify = t.elapsed() / rounds;
    let (_, signer) = signer.expect("at least one round");
    println!(
        "keys {} | load {:.2} ms | verify {:.2} ms ({} bytes, signed by {})",
        ring.fingerprints().len(),
        load.as_secs_f64() * 1e3,
        verify.as_secs_f64() * 1e3,
        bytes.len(),
        signer.fingerprint
    );
}
