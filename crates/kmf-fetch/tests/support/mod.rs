//! A small HTTP/1.1 server on 127.0.0.1 whose routes misbehave on demand, and which logs every
//! request it sees.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with the body (206 for a satisfiable `Range: bytes=N-` when `honour_range`).
    Serve,
    /// Always this status, empty body.
    Status(u16),
    /// `status` for the first `remaining` requests, then serve.
    FailThenServe { remaining: u32, status: u16 },
    /// For the first `remaining` requests: announce the full length, send `cut_at` bytes, hang up.
    TruncateThenServe { remaining: u32, cut_at: usize },
    /// Announce a Content-Length of `announced` bytes and send the whole body.
    ShortContentLength { announced: usize },
}

#[derive(Debug, Clone)]
pub struct Route {
    pub body: Vec<u8>,
    pub behavior: Behavior,
    pub honour_range: bool,
    /// Pause before answering, to make requests overlap.
    pub delay: Duration,
}

impl Route {
    pub fn serve(body: &[u8]) -> Self {
        Route {
            body: body.to_vec(),
            behavior: Behavior::Serve,
            honour_range: true,
            delay: Duration::ZERO,
        }
    }

    pub fn status(code: u16) -> Self {
        Route {
            body: Vec::new(),
            behavior: Behavior::Status(code),
            honour_range: true,
            delay: Duration::ZERO,
        }
    }

    pub fn with(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    pub fn ignoring_range(mut self) -> Self {
        self.honour_range = false;
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Seen>,
}

pub struct TestServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, st).await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), route);
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16])
}

async fn handle(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    let mut if_range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value),
                "if-range" => if_range = Some(value),
                _ => {}
            }
        }
    }
    let route = {
        let mut st = state.lock().unwrap();
        st.log.push(Seen {
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
        });
        let route = st.routes.get_mut(&path).map(|r| {
            let snapshot = r.clone();
            // Count down the misbehaviour for the next request.
            match &mut r.behavior {
                Behavior::FailThenServe { remaining, .. }
                | Behavior::TruncateThenServe { remaining, .. }
                    if *remaining > 0 =>
                {
                    *remaining -= 1
                }
                _ => {}
            }
            snapshot
        });
        route
    };
    let mut stream = reader.into_inner();
    let Some(route) = route else {
        return respond(&mut stream, 404, &[], b"", None).await;
    };
    if !route.delay.is_zero() {
        tokio::time::sleep(route.delay).await;
    }
    let body = &route.body;
    let tag = etag(body);
    match route.behavior {
        Behavior::Status(code) => respond(&mut stream, code, &[], b"", None).await,
        Behavior::FailThenServe { remaining, status } if remaining > 0 => {
            respond(&mut stream, status, &[], b"", None).await
        }
        Behavior::TruncateThenServe { remaining, cut_at } if remaining > 0 => {
            let headers = [("ETag".to_string(), tag)];
            respond(
                &mut stream,
                200,
                &headers,
                &body[..cut_at],
                Some(body.len()),
            )
            .await
        }
        Behavior::ShortContentLength { announced } => {
            respond(&mut stream, 200, &[], body, Some(announced)).await
        }
        _ => {
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            let range_applies = route.honour_range && if_range.as_deref().is_none_or(|v| v == tag);
            match start {
                Some(start) if range_applies && start >= body.len() => {
                    let headers = [(
                        "Content-Range".to_string(),
                        format!("bytes */{}", body.len()),
                    )];
                    respond(&mut stream, 416, &headers, b"", None).await
                }
                Some(start) if range_applies => {
                    let headers = [
                        ("ETag".to_string(), tag),
                        (
                            "Content-Range".to_string(),
                            format!("bytes {}-{}/{}", start, body.len() - 1, body.len()),
                        ),
                    ];
                    respond(&mut stream, 206, &headers, &body[start..], None).await
                }
                _ => {
                    let headers = [("ETag".to_string(), tag)];
                    respond(&mut stream, 200, &headers, body, None).await
                }
            }
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
    content_length: Option<usize>,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        content_length.unwrap_or(body.len())
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}
