//! A tiny HTTP/1.1 server on 127.0.0.1 for tests: real sockets, real reqwest, canned answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Server {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

struct State {
    routes: HashMap<String, (u16, Vec<u8>)>,
    /// How many connections to drop without an answer before serving, to exercise retries.
    drop_first: AtomicUsize,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves each path with 200 and its body; anything else is 404.
    pub fn start(routes: Vec<(String, Vec<u8>)>) -> Server {
        Self::start_with(routes.into_iter().map(|(p, b)| (p, 200, b)).collect(), 0)
    }

    pub fn start_with(routes: Vec<(String, u16, Vec<u8>)>, drop_first: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            routes: routes.into_iter().map(|(p, s, b)| (p, (s, b))).collect(),
            drop_first: AtomicUsize::new(drop_first),
            requests: requests.clone(),
        });
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Paths requested so far, in order (dropped connections included).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    state.requests.lock().unwrap().push(path.clone());
    let dropping = state
        .drop_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if dropping {
        return;
    }
    let (status, body) = state
        .routes
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found".to_vec()));
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

/// The archive key of the unit tests' loopback mirrors, made once per test process.
pub fn test_key() -> &'static kmf_trust::testing::TestKey {
    static KEY: std::sync::OnceLock<kmf_trust::testing::TestKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        kmf_trust::testing::TestKey::generate("kmodfarm unit-test archive <t@invalid>")
    })
}

/// Trust in exactly [`test_key`].
pub fn test_trust() -> crate::apt::AptTrust {
    crate::apt::AptTrust::with_keyring(
        kmf_trust::Keyring::from_bytes(&test_key().public_keyring(), "the unit-test keyring")
            .unwrap(),
    )
}
