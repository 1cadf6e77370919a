//! Real servers on loopback for tests of the S3 and http stores: `s3s-fs` (an S3 implementation over a local
//! directory, installed by `scripts/setup.sh`) and Python's static `http.server`. Each server is killed when its
//! handle is dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key and secret the loopback S3 server accepts.
pub const ACCESS_KEY: &str = "kmodfarm-test";
pub const SECRET_KEY: &str = "kmodfarm-test-secret";

/// A running server process.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs` serving `root` (each subdirectory is a bucket).
pub struct S3Server {
    pub server: Server,
    pub root: PathBuf,
}

impl S3Server {
    /// Starts `s3s-fs` with bucket `bucket` created. `None` when the binary is missing (`scripts/setup.sh`
    /// installs it), except under `CI=true`, where that panics.
    pub fn start(root: &Path, bucket: &str) -> Option<S3Server> {
        let Some(bin) = s3s_fs_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("s3s-fs is required under CI=true: run scripts/setup.sh");
            }
            eprintln!("skipping: s3s-fs is not installed (scripts/setup.sh installs it)");
            return None;
        };
        std::fs::create_dir_all(root.join(bucket)).expect("creating the bucket directory");
        let port = free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let server = Server { child, port };
        wait_listening(port);
        Some(S3Server {
            server,
            root: root.to_path_buf(),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `s3://bucket/prefix?endpoint=..&region=..&path_style=true`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let location = if prefix.is_empty() {
            bucket.to_string()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{location}?endpoint={}&region=us-east-1&path_style=true",
            self.endpoint()
        )
    }

    /// The environment a process needs to reach this server with the standard AWS variables.
    pub fn credentials_env() -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}

/// `python3 -m http.server` serving `dir` read-only on loopback.
pub fn static_http(dir: &Path) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 -m http.server");
    let server = Server { child, port };
    wait_listening(port);
    server
}

/// The s3s-fs binary the tests use (`KMODFARM_S3S_FS`, PATH, or cargo's bin directory).
pub fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KMODFARM_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no server came up on 127.0.0.1:{port}");
}
