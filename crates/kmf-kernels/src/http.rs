//! Downloads with retries, shared by the list loader and the apt client.

use std::time::Duration;

use futures::StreamExt;

use crate::KernelsError;

const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// GETs `url` into memory. Network errors and 5xx answers are retried with exponential backoff
/// (mirrors drop connections under load); other HTTP errors fail at once. With `limit`, a body larger
/// than that is refused while it streams in, so a hostile or broken server cannot exhaust memory.
pub(crate) async fn get_bytes(
    client: &reqwest::Client,
    url: &str,
    limit: Option<u64>,
) -> Result<Vec<u8>, KernelsError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match get_once(client, url, limit).await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::warn!(%url, attempt, error = %e, "download failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn retryable(e: &KernelsError) -> bool {
    match e {
        KernelsError::Network { .. } => true,
        KernelsError::Http { status, .. } => status.is_server_error(),
        _ => false,
    }
}

async fn get_once(
    client: &reqwest::Client,
    url: &str,
    limit: Option<u64>,
) -> Result<Vec<u8>, KernelsError> {
    let network = |source| KernelsError::Network {
        url: url.to_string(),
        source,
    };
    let response = client.get(url).send().await.map_err(network)?;
    let status = response.status();
    if !status.is_success() {
        return Err(KernelsError::Http {
            url: url.to_string(),
            status,
        });
    }
    let too_large = |limit| KernelsError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if let (Some(limit), Some(len)) = (limit, response.content_length()) {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let capacity = response.content_length().unwrap_or(0).min(64 << 20) as usize;
    let mut body = Vec::with_capacity(capacity);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(network)?;
        body.extend_from_slice(&chunk);
        if let Some(limit) = limit {
            if body.len() as u64 > limit {
                return Err(too_large(limit));
            }
        }
    }
    Ok(body)
}
