//! One HTTP attempt at one URL, streaming into the part file.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::cache::{hash_into, validator_path, CacheKey};
use crate::error::FetchError;
use crate::{Download, FetchProgress};

/// Write buffer for the part file: large, because header packages are tens of MB.
const WRITE_BUFFER: usize = 1 << 20;
/// Longest server-requested pause honoured before a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A verified part file, ready to be renamed into the cache.
#[derive(Debug)]
pub(crate) struct Completed {
    pub sha256: String,
    pub size: u64,
}

/// How an attempt failed, which decides what the caller does next.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// 404/410: this URL will never have it; try the next URL at once.
    NotFound(String),
    /// Transient (network, 5xx, 429, truncated body): retry this URL after a pause; the part file
    /// is kept so the retry resumes.
    Retry {
        error: FetchError,
        after: Option<Duration>,
    },
    /// This URL serves something else or refuses us: move on to the next URL.
    NextUrl(FetchError),
    /// The cache itself failed (disk full, permissions): no URL can help.
    Fatal(FetchError),
}

pub(crate) struct Attempt<'a> {
    pub client: &'a reqwest::Client,
    pub key: &'a CacheKey,
    pub download: &'a Download,
    pub url: &'a str,
    pub part: &'a Path,
    pub progress: &'a dyn FetchProgress,
    /// Bytes received over the network by every attempt of this fetch.
    pub received: &'a mut u64,
    /// Whether `started` was reported already for this fetch.
    pub started: &'a mut bool,
}

impl Attempt<'_> {
    pub(crate) async fn run(mut self) -> Result<Completed, AttemptError> {
        // A 416 to our Range request means the part is stale or already whole; one fresh request
        // follows it.
        let mut allow_range = true;
        loop {
            let offset = if allow_range {
                self.resume_offset().await?
            } else {
                0
            };
            if let Some(done) = self.complete_without_network(offset).await? {
                return Ok(done);
            }
            let validator = if offset > 0 {
                tokio::fs::read_to_string(validator_path(self.part))
                    .await
                    .ok()
            } else {
                None
            };
            let mut request = self.client.get(self.url);
            if offset > 0 {
                request = request.header(RANGE, format!("bytes={offset}-"));
                if let Some(v) = &validator {
                    request = request.header(IF_RANGE, v.trim());
                }
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if e.is_builder() => {
                    return Err(AttemptError::NextUrl(
                        self.network(error_chain(&e.without_url())),
                    ));
                }
                Err(e) => {
                    return Err(AttemptError::Retry {
                        error: self.network(error_chain(&e.without_url())),
                        after: None,
                    })
                }
            };
            let status = response.status();
            if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 && allow_range {
                tracing::debug!(url = self.url, offset, "range not satisfiable, restarting");
                self.discard_part().await?;
                allow_range = false;
                continue;
            }
            return self.receive(response, offset).await;
        }
    }

    /// How much of an earlier part can be continued: only what a final digest check will cover,
    /// or what the server can confirm unchanged through If-Range.
    async fn resume_offset(&self) -> Result<u64, AttemptError> {
        let len = match tokio::fs::metadata(self.part).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(AttemptError::Fatal(FetchError::io(
                    self.part,
                    std::io::Error::other("part path is not a regular file"),
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(AttemptError::Fatal(FetchError::io(self.part, e))),
        };
        let has_validator = tokio::fs::try_exists(validator_path(self.part))
            .await
            .unwrap_or(false);
        let verifiable = self.key.expected_sha256().is_some() || has_validator;
        let too_long = self.download.size.is_some_and(|s| len > s);
        if len == 0 || !verifiable || too_long {
            self.discard_part().await?;
            return Ok(0);
        }
        Ok(len)
    }

    /// A part that already has the whole expected size needs no request, only a check.
    async fn complete_without_network(
        &self,
        offset: u64,
    ) -> Result<Option<Completed>, AttemptError> {
        let (Some(expected), Some(size)) = (self.key.expected_sha256(), self.download.size) else {
            return Ok(None);
        };
        if offset != size || offset == 0 {
            return Ok(None);
        }
        let part = self.part.to_path_buf();
        let (sha, len) = tokio::task::spawn_blocking(move || crate::cache::hash_file(&part))
            .await
            .map_err(|e| AttemptError::Fatal(self.task_error(e)))?
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
        if sha == expected && len == size {
            return Ok(Some(Completed { sha256: sha, size }));
        }
        self.discard_part().await?;
        Ok(None)
    }

    async fn receive(
        &mut self,
        mut response: reqwest::Response,
        offset: u64,
    ) -> Result<Completed, AttemptError> {
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(AttemptError::NotFound(status_text(status)));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(AttemptError::Retry {
                error: self.http(status),
                after: retry_after(response.headers()),
            });
        }
        let (start, total) = match status {
            StatusCode::OK => (0, response.content_length()),
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                match parse_content_range(response.headers()) {
                    Some((start, total)) if start == offset => (start, total),
                    other => {
                        // Appending at the wrong place would corrupt the part: start over.
                        self.discard_part().await?;
                        return Err(AttemptError::Retry {
                            error: self.network(format!(
                                "asked to resume at byte {offset}, server answered Content-Range {other:?}"
                            )),
                            after: None,
                        });
                    }
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                return Err(AttemptError::NextUrl(self.network(
                    "partial content (206) to a request without Range".to_string(),
                )))
            }
            _ => return Err(AttemptError::NextUrl(self.http(status))),
        };
        if let (Some(expected), Some(actual)) = (self.download.size, total) {
            if expected != actual {
                self.discard_part().await?;
                return Err(AttemptError::NextUrl(FetchError::SizeMismatch {
                    url: self.url.to_string(),
                    expected,
                    actual,
                }));
            }
        }
        let body_len = response.content_length();

        let mut hasher = Sha256::new();
        let file = if start > 0 {
            let part = self.part.to_path_buf();
            let (h, len) = tokio::task::spawn_blocking(move || {
                let mut h = Sha256::new();
                hash_into(&part, &mut h).map(|len| (h, len))
            })
            .await
            .map_err(|e| AttemptError::Fatal(self.task_error(e)))?
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
            if len != start {
                self.discard_part().await?;
                return Err(AttemptError::Retry {
                    error: self.network("part file changed while resuming".to_string()),
                    after: None,
                });
            }
            hasher = h;
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(self.part)
                .await
                .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?
        } else {
            self.create_part(response.headers()).await?
        };

        if !*self.started {
            *self.started = true;
            self.progress
                .started(&self.download.file_name, total.or(self.download.size));
            if start > 0 {
                self.progress.advanced(&self.download.file_name, start);
            }
        }

        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut got = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived so that the retry resumes after it.
                    self.keep_partial(&mut writer).await?;
                    return Err(AttemptError::Retry {
                        error: self.network(format!(
                            "body interrupted after {} bytes: {}",
                            start + got,
                            error_chain(&e.without_url())
                        )),
                        after: None,
                    });
                }
            };
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
            got += chunk.len() as u64;
            *self.received += chunk.len() as u64;
            self.progress
                .advanced(&self.download.file_name, chunk.len() as u64);
            if let Some(expected) = self.download.size {
                if start + got > expected {
                    drop(writer);
                    self.discard_part().await?;
                    return Err(AttemptError::NextUrl(FetchError::SizeMismatch {
                        url: self.url.to_string(),
                        expected,
                        actual: start + got,
                    }));
                }
            }
        }
        if let Some(body_len) = body_len {
            if got != body_len {
                self.keep_partial(&mut writer).await?;
                return Err(AttemptError::Retry {
                    error: self.network(format!(
                        "body truncated: received {got} of {body_len} announced bytes"
                    )),
                    after: None,
                });
            }
        }
        writer
            .flush()
            .await
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
        let file = writer.into_inner();
        file.sync_all()
            .await
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
        drop(file);

        let size = start + got;
        if let Some(total) = total {
            if size != total {
                return Err(AttemptError::Retry {
                    error: self.network(format!("body truncated: have {size} of {total} bytes")),
                    after: None,
                });
            }
        }
        if let Some(expected) = self.download.size {
            if size != expected {
                self.discard_part().await?;
                return Err(AttemptError::NextUrl(FetchError::SizeMismatch {
                    url: self.url.to_string(),
                    expected,
                    actual: size,
                }));
            }
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = self.key.expected_sha256() {
            if actual != expected {
                self.discard_part().await?;
                let error = FetchError::Checksum {
                    url: self.url.to_string(),
                    expected: expected.to_string(),
                    actual,
                };
                // A resumed part may have been the bad half: one fresh try from this URL.
                return Err(if start > 0 {
                    AttemptError::Retry { error, after: None }
                } else {
                    AttemptError::NextUrl(error)
                });
            }
        }
        Ok(Completed {
            sha256: actual,
            size,
        })
    }

    /// Truncates (or creates) the part and records the validator a later resume will send.
    async fn create_part(&self, headers: &HeaderMap) -> Result<tokio::fs::File, AttemptError> {
        let validator = validator_path(self.part);
        let _ = tokio::fs::remove_file(&validator).await;
        let file = tokio::fs::File::create(self.part)
            .await
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))?;
        if let Some(v) = strong_validator(headers) {
            tokio::fs::write(&validator, v)
                .await
                .map_err(|e| AttemptError::Fatal(FetchError::io(&validator, e)))?;
        }
        Ok(file)
    }

    async fn keep_partial(
        &self,
        writer: &mut BufWriter<tokio::fs::File>,
    ) -> Result<(), AttemptError> {
        writer
            .flush()
            .await
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))
    }

    pub(crate) async fn discard_part(&self) -> Result<(), AttemptError> {
        discard_part(self.part)
            .await
            .map_err(|e| AttemptError::Fatal(FetchError::io(self.part, e)))
    }

    fn network(&self, msg: String) -> FetchError {
        FetchError::Network {
            url: self.url.to_string(),
            msg,
        }
    }

    fn http(&self, status: StatusCode) -> FetchError {
        FetchError::Http {
            url: self.url.to_string(),
            status: status.as_u16(),
        }
    }

    fn task_error(&self, e: tokio::task::JoinError) -> FetchError {
        FetchError::Task {
            file_name: self.download.file_name.clone(),
            msg: e.to_string(),
        }
    }
}

/// Removes a part file and its validator; absent files are fine.
pub(crate) async fn discard_part(part: &Path) -> std::io::Result<()> {
    let _ = tokio::fs::remove_file(validator_path(part)).await;
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL unless `*`).
fn parse_content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    if total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, total))
}

/// An ETag that is not weak, else Last-Modified: what If-Range accepts.
fn strong_validator(headers: &HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
        if !etag.starts_with("W/") {
            return Some(etag.to_string());
        }
    }
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from mirrors and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// An error with its causes, since reqwest's own message hides the interesting part.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(name: reqwest::header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn content_range_parsing() {
        let p = |v| parse_content_range(&headers(CONTENT_RANGE, v));
        assert_eq!(p("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(p("bytes 0-0/*"), Some((0, None)));
        assert_eq!(p("bytes 100-99/200"), None);
        assert_eq!(p("bytes 100-200/200"), None);
        assert_eq!(p("bytes */200"), None);
        assert_eq!(p("items 1-2/3"), None);
    }

    #[test]
    fn validator_prefers_strong_etag() {
        let mut h = headers(ETAG, "\"abc\"");
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(strong_validator(&h).as_deref(), Some("\"abc\""));
        h.insert(ETAG, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(
            strong_validator(&h).as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(strong_validator(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "3")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "99999")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }
}
