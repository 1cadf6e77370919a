//! Stores on the network through the `object_store` crate: S3 and S3-compatible servers (read-write) and plain
//! http(s) servers (read-only).
//!
//! An S3 PUT is atomic: an object becomes visible only once its whole body arrived, and a multipart upload only
//! when it is completed. Files larger than [`MULTIPART_THRESHOLD`] are streamed in parts of
//! [`MULTIPART_CHUNK`] bytes, never read into memory whole; a failed upload is aborted, so nothing partial is
//! left behind under the key.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::{validate_key, Store, StoreError};

/// Files at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB for every part but the last).
pub const MULTIPART_CHUNK: usize = 8 * 1024 * 1024;
/// Parts in flight at once per upload.
const MULTIPART_CONCURRENCY: usize = 4;

/// A store behind `object_store`: `s3://bucket/prefix` or a read-only `http(s)://host/path`.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    inner: Arc<dyn ObjectStore>,
    /// Prepended to every key (`prefix/` or empty).
    prefix: String,
    /// For logs and reports; never holds credentials.
    display: String,
    read_only: bool,
    multipart_threshold: u64,
}

impl RemoteStore {
    /// `s3://bucket[/prefix][?option=value&..]`.
    ///
    /// Configuration follows the standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`,
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, web identity, container and instance credentials); query options
    /// override it: `endpoint`, `region`, `allow_http`, `path_style=true` (the same as
    /// `virtual_hosted_style_request=false`, the default with a custom endpoint) and any other `object_store`
    /// S3 option name. An `http://` endpoint allows plain http.
    pub fn s3(url: &str) -> Result<RemoteStore, StoreError> {
        let bad = |why: &str| StoreError::BadUrl {
            url: redact(url),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| bad(&e.to_string()))?;
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(profile) = crate::aws_profile::credentials_from_profile() {
            builder = profile.apply(builder);
        }
        let mut endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let (k, v) = (percent_decode(k), percent_decode(v));
            let (key, value) = match k.as_str() {
                "path_style" => (
                    AmazonS3ConfigKey::VirtualHostedStyleRequest,
                    (!parse_bool(&v)).to_string(),
                ),
                "allow_http" => ("aws_allow_http".parse().expect("a known key"), v.clone()),
                other => (
                    other
                        .parse()
                        .map_err(|_| bad(&format!("unknown S3 option `{other}`")))?,
                    v.clone(),
                ),
            };
            if key == AmazonS3ConfigKey::Endpoint {
                endpoint = Some(value.clone());
            }
            builder = builder.with_config(key, value);
        }
        if endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| bad(&e.to_string()))?;
        let mut display = format!("s3://{bucket}");
        if !prefix.is_empty() {
            display.push('/');
            display.push_str(prefix);
        }
        if let Some(e) = &endpoint {
            display.push_str(&format!(" (endpoint {e})"));
        }
        Ok(RemoteStore {
            inner: Arc::new(store),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            display,
            read_only: false,
            multipart_threshold: MULTIPART_THRESHOLD,
        })
    }

    /// A read-only store served over `http://` or `https://` (a static web server over a published store
    /// directory, or an S3 bucket's public endpoint). Objects are read with GET and HEAD; listing needs a
    /// WebDAV server, writing is refused.
    pub fn http(url: &str) -> Result<RemoteStore, StoreError> {
        let base = url.trim_end_matches('/');
        let store = HttpBuilder::new()
            .with_url(base)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(std::time::Duration::from_secs(20)),
            )
            .build()
            .map_err(|e| StoreError::BadUrl {
                url: redact(url),
                why: e.to_string(),
            })?;
        Ok(RemoteStore {
            inner: Arc::new(store),
            prefix: String::new(),
            display: redact(base),
            read_only: true,
            multipart_threshold: MULTIPART_THRESHOLD,
        })
    }

    /// Uploads files of at least `bytes` in parts (tests use a small threshold).
    pub fn with_multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    fn path(&self, key: &str) -> Result<ObjectPath, StoreError> {
        validate_key(key)?;
        let full = format!("{}{key}", self.prefix);
        ObjectPath::parse(&full).map_err(|e| StoreError::BadKey {
            key: key.to_string(),
            why: e.to_string(),
        })
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly {
                url: self.display.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn backend(
        &self,
        op: &'static str,
        key: &str,
    ) -> impl FnOnce(object_store::Error) -> StoreError {
        let (store, key) = (self.display.clone(), key.to_string());
        move |e| StoreError::Remote {
            op,
            store,
            key,
            message: e.to_string(),
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        target: &ObjectPath,
        path: &Path,
    ) -> Result<(), StoreError> {
        let err = self.backend("upload", key);
        let upload = self
            .inner
            .put_multipart(target)
            .await
            .map_err(self.backend("upload", key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(StoreError::io("open", path))?;
        let mut buf = vec![0u8; MULTIPART_CHUNK];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::io("read", path)(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await {
                // `abort` would wait on the failed part again; the server expires abandoned uploads.
                return Err(err(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(err)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for RemoteStore {
    fn url(&self) -> String {
        self.display.clone()
    }

    async fn get_reader(&self, key: &str) -> Result<Option<crate::ObjectReader>, StoreError> {
        let target = self.path(key)?;
        match self.inner.get(&target).await {
            Ok(result) => {
                let stream = result
                    .into_stream()
                    .map_err(|e| std::io::Error::other(e.to_string()));
                Ok(Some(Box::new(tokio_util::io::StreamReader::new(stream))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend("get", key)(e)),
        }
    }

    async fn put_reader(
        &self,
        key: &str,
        mut reader: crate::ObjectReader,
    ) -> Result<u64, StoreError> {
        self.writable()?;
        let target = self.path(key)?;
        let err = self.backend("upload", key);
        let upload = self
            .inner
            .put_multipart(&target)
            .await
            .map_err(self.backend("upload", key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // Nothing becomes visible: the upload is never completed.
                    let _ = writer.abort().await;
                    return Err(StoreError::io("read", Path::new(key))(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await {
                return Err(err(e));
            }
            writer.write(&buf[..n]);
            total += n as u64;
        }
        writer.finish().await.map_err(err)?;
        Ok(total)
    }

    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        self.writable()?;
        let target = self.path(key)?;
        let opts = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&target, PutPayload::from(bytes.to_vec()), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.backend("put", key)(e)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.writable()?;
        let target = self.path(key)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(StoreError::io("open", path))?
            .len();
        if size >= self.multipart_threshold {
            return self.put_multipart(key, &target, path).await;
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(StoreError::io("read", path))?;
        self.inner
            .put(&target, PutPayload::from(bytes))
            .await
            .map_err(self.backend("put", key))?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        let target = self.path(key)?;
        self.inner
            .put(&target, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(self.backend("put", key))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let target = self.path(key)?;
        match self.inner.get(&target).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(self.backend("get", key))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend("get", key)(e)),
        }
    }

    async fn get_file(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let target = self.path(key)?;
        let response = match self.inner.get(&target).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.backend("get", key)(e)),
        };
        let too_large = || StoreError::too_large(&self.display, key, max_bytes);
        if response.meta.size > max_bytes {
            return Err(too_large());
        }
        // Streamed: a builder archive of 150 MB is never held in memory.
        let tmp = crate::temporary_beside(dest);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(StoreError::io("create", &tmp))?;
            let mut stream = response.into_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(self.backend("get", key))?;
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(too_large());
                }
                file.write_all(&chunk)
                    .await
                    .map_err(StoreError::io("write", &tmp))?;
            }
            file.sync_all()
                .await
                .map_err(StoreError::io("write", &tmp))?;
            Ok(written)
        }
        .await;
        match result {
            Ok(n) => {
                tokio::fs::rename(&tmp, dest)
                    .await
                    .map_err(StoreError::io("rename", dest))?;
                Ok(Some(n))
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let target = self.path(key)?;
        match self.inner.head(&target).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend("head", key)(e)),
        }
    }

    async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        if self.read_only {
            return Err(StoreError::NotListable {
                url: self.display.clone(),
            });
        }
        let prefix = prefix.trim_end_matches('/');
        let target = if prefix.is_empty() {
            if self.prefix.is_empty() {
                None
            } else {
                Some(
                    ObjectPath::parse(self.prefix.trim_end_matches('/'))
                        .expect("validated when opened"),
                )
            }
        } else {
            Some(self.path(prefix)?)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(target.as_ref())
            .try_collect()
            .await
            .map_err(self.backend("list", prefix))?;
        let mut keys: Vec<(String, std::time::SystemTime)> = metas
            .into_iter()
            .filter_map(|m| {
                let key = m
                    .location
                    .as_ref()
                    .strip_prefix(self.prefix.as_str())
                    .map(str::to_string)?;
                Some((key, std::time::SystemTime::from(m.last_modified)))
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.writable()?;
        let target = self.path(key)?;
        match self.inner.delete(&target).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend("delete", key)(e)),
        }
    }
}

/// The URL without its query string and user information, which may hold secrets.
pub(crate) fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

fn parse_bool(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_and_queries() {
        assert_eq!(
            redact("http://user:pw@host:8080/store?token=x"),
            "http://host:8080/store"
        );
        assert_eq!(redact("s3://b/p?secret_access_key=x"), "s3://b/p");
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            percent_decode("http%3A%2F%2F127.0.0.1%3A9000"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn s3_urls_are_checked() {
        assert!(RemoteStore::s3("s3://").is_err());
        assert!(RemoteStore::s3("s3://b/../x").is_err());
        assert!(RemoteStore::s3("s3://b/p?no_such_option=1").is_err());
        let s = RemoteStore::s3(
            "s3://bucket/some/prefix?endpoint=http://127.0.0.1:1&region=us-east-1&path_style=true",
        )
        .unwrap();
        assert_eq!(
            s.url(),
            "s3://bucket/some/prefix (endpoint http://127.0.0.1:1)"
        );
        assert_eq!(s.prefix, "some/prefix/");
    }

    #[tokio::test]
    async fn http_stores_are_read_only() {
        let s = RemoteStore::http("http://127.0.0.1:1/store/").unwrap();
        assert!(matches!(
            s.put_bytes("a/b", b"x").await,
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            s.delete("a/b").await,
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            s.list("").await,
            Err(StoreError::NotListable { .. })
        ));
    }
}
