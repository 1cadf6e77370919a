use std::path::PathBuf;

/// Why a [`crate::Fetcher::fetch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Every URL answered 404 or 410: the package is gone, which callers report as "headers
    /// unavailable" rather than as a failed download.
    #[error("{file_name}: not found at any URL ({})", format_tried(tried))]
    NotFound {
        file_name: String,
        /// Each URL tried with its HTTP status or error.
        tried: Vec<(String, String)>,
    },
    /// The downloaded content does not have the expected SHA256.
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    /// The downloaded (or announced) size is not the expected one.
    #[error("{url}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    /// The server answered with an HTTP status that is neither success nor "not found"
    /// (after the retries, for 5xx and 429).
    #[error("{url}: HTTP status {status}")]
    Http { url: String, status: u16 },
    /// Connection, timeout or protocol error, including a body shorter than its Content-Length.
    #[error("{url}: {msg}")]
    Network { url: String, msg: String },
    /// Reading or writing the cache failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not cached, and the download lists no URL to get it from.
    #[error("{file_name}: not in the cache and no URL to download it from")]
    NoUrls { file_name: String },
    /// The file name cannot be used as a cache key (it is also a file name in the cache).
    #[error("invalid file name {file_name:?}: {reason}")]
    InvalidFileName {
        file_name: String,
        reason: &'static str,
    },
    /// The expected digest is not 64 hex digits.
    #[error("{file_name}: invalid sha256 {value:?}: expected 64 hex digits")]
    InvalidSha256 { file_name: String, value: String },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {msg}")]
    Client { msg: String },
    /// A blocking helper task (hashing, locking) panicked or was cancelled.
    #[error("{file_name}: background task failed: {msg}")]
    Task { file_name: String, msg: String },
}

impl FetchError {
    /// True when every URL answered 404/410, i.e. the content does not exist any more (as opposed
    /// to a download that failed and might succeed later).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FetchError::Io {
            path: path.into(),
            source,
        }
    }
}

fn format_tried(tried: &[(String, String)]) -> String {
    if tried.is_empty() {
        return "no URL tried".to_string();
    }
    tried
        .iter()
        .map(|(url, why)| format!("{url}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_lists_every_url() {
        let e = FetchError::NotFound {
            file_name: "a.deb".into(),
            tried: vec![
                ("http://m/a.deb".into(), "404 Not Found".into()),
                ("http://f/a.deb".into(), "410 Gone".into()),
            ],
        };
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "a.deb: not found at any URL (http://m/a.deb: 404 Not Found; http://f/a.deb: 410 Gone)"
        );
        let other = FetchError::Http {
            url: "u".into(),
            status: 500,
        };
        assert!(!other.is_not_found());
    }
}
