//! Artifact stores. Everything kmodfarm publishes goes through [`Store`]: a local directory ([`LocalStore`]),
//! S3 or an S3-compatible server, or a read-only http(s) server ([`RemoteStore`]).
//!
//! Keys are `/`-separated relative paths (`0.1.0/debian/x86_64/6.1.0-56-amd64/hello.ko`). A store never
//! exposes a half-written object: the local store writes to a temporary file in the same directory, syncs it
//! and renames it into place; S3 makes an object visible only once its upload (single or multipart) completed.

mod aws_profile;
mod error;
mod local;
#[doc(hidden)]
pub mod loopback;
mod remote;

use std::path::Path;

pub use error::StoreError;
pub use local::LocalStore;
pub use remote::{RemoteStore, MULTIPART_CHUNK, MULTIPART_THRESHOLD};

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Where the store is, for logs and reports (`file:///srv/kmods`).
    fn url(&self) -> String;
    /// Publishes a file under `key`, atomically.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError>;
    /// Publishes bytes under `key`, atomically.
    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The object's bytes, or `None` when absent.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Streams the object into a new file at `dest` (through a temporary name beside it, renamed when
    /// complete); `None` when absent. An object larger than `max_bytes` is refused and nothing is left.
    /// Returns the object's size.
    async fn get_file(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(bytes) = self.get_bytes(key).await? else {
            return Ok(None);
        };
        if bytes.len() as u64 > max_bytes {
            return Err(StoreError::too_large(&self.url(), key, max_bytes));
        }
        let tmp = temporary_beside(dest);
        std::fs::write(&tmp, &bytes).map_err(StoreError::io("write", &tmp))?;
        std::fs::rename(&tmp, dest).map_err(StoreError::io("rename", dest))?;
        Ok(Some(bytes.len() as u64))
    }
    /// Every key under `prefix` (recursively), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
    /// Every key under `prefix` with the time its object was last written, sorted by key.
    async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The object's bytes as a stream, read as they arrive; `None` when absent.
    async fn get_reader(&self, key: &str) -> Result<Option<ObjectReader>, StoreError> {
        Ok(self
            .get_bytes(key)
            .await?
            .map(|b| Box::new(std::io::Cursor::new(b)) as ObjectReader))
    }
    /// Publishes what `reader` yields under `key`, atomically, as it is read (S3: a multipart upload
    /// completed at the end and aborted on error; a local store: a temporary file renamed into place).
    /// Returns the size.
    async fn put_reader(&self, key: &str, mut reader: ObjectReader) -> Result<u64, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(StoreError::io("read", Path::new(key)))?;
        self.put_bytes(key, &bytes).await?;
        Ok(bytes.len() as u64)
    }
    /// Creates `key` only if no object is there (S3: a conditional `If-None-Match: *` write); `false`
    /// when one is.
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError>;
}

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A temporary name beside `dest` for a download that is renamed into place once complete.
pub(crate) fn temporary_beside(dest: &Path) -> std::path::PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

/// Read access to a store, and nothing else: what a worker is given for the plan's store. It cannot
/// write or delete, whatever the credentials in its environment would allow.
#[async_trait::async_trait]
pub trait StoreReader: Send + Sync {
    fn url(&self) -> String;
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// See [`Store::get_file`].
    async fn get_file(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// The read-only face of a store.
struct ReadOnly(Box<dyn Store>);

#[async_trait::async_trait]
impl StoreReader for ReadOnly {
    fn url(&self) -> String {
        self.0.url()
    }
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get_bytes(key).await
    }
    async fn get_file(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.0.get_file(key, dest, max_bytes).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.0.exists(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }
}

/// No store at all: what a worker's farm holds, since a worker must neither read records from the store
/// nor write to it (the plan decided what to build; bundles go where `work --out` says). Every operation
/// fails with [`StoreError::NoStore`].
pub struct NoStore;

#[async_trait::async_trait]
impl Store for NoStore {
    fn url(&self) -> String {
        "none".into()
    }
    async fn put_file(&self, key: &str, _: &Path) -> Result<(), StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
    async fn put_bytes(&self, key: &str, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
    async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        Err(StoreError::NoStore { key: prefix.into() })
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
    async fn put_new(&self, key: &str, _: &[u8]) -> Result<bool, StoreError> {
        Err(StoreError::NoStore { key: key.into() })
    }
}

/// Opens a store for reading only (see [`StoreReader`]).
pub fn open_reader(url: &str) -> Result<Box<dyn StoreReader>, StoreError> {
    Ok(Box::new(ReadOnly(open(url)?)))
}

/// Opens a store from a URL: `file:///dir` or a plain path, `s3://bucket[/prefix][?options]` (see
/// [`RemoteStore::s3`]), or a read-only `http(s)://` URL.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Box::new(LocalStore::new(path)?));
    }
    if url.starts_with("s3://") {
        return Ok(Box::new(RemoteStore::s3(url)?));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Box::new(RemoteStore::http(url)?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(StoreError::UnsupportedScheme {
            url: url.to_string(),
            scheme: scheme.to_string(),
        });
    }
    Ok(Box::new(LocalStore::new(url)?))
}

/// Rejects keys that could leave the store's root or alias another key.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::BadKey {
            key: key.to_string(),
            why: why.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("absolute");
    }
    if key.contains('\\') || key.contains('\0') {
        return bad("contains a backslash or NUL");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("`.` or `..` segment"),
            s if s.starts_with(".kmf-tmp") => return bad("reserved name"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a/.kmf-tmp-1",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        validate_key("0.1.0/debian/x86_64/6.1.0-56-amd64/hello.ko").unwrap();
    }

    #[tokio::test]
    async fn a_reader_reads_with_a_size_limit_and_no_store_refuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        store
            .put_bytes("cache/sha256/ab", b"0123456789")
            .await
            .unwrap();
        let url = store.url();
        let reader = open_reader(&url).unwrap();
        let dest = dir.path().join("copy");
        assert_eq!(
            reader.get_file("cache/sha256/ab", &dest, 10).await.unwrap(),
            Some(10)
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"0123456789");
        let small = dir.path().join("small");
        let err = reader
            .get_file("cache/sha256/ab", &small, 9)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(!small.exists());
        assert_eq!(reader.get_file("missing", &small, 9).await.unwrap(), None);
        assert_eq!(reader.list("cache/").await.unwrap(), ["cache/sha256/ab"]);

        let none = NoStore;
        assert!(none.get_bytes("x").await.is_err());
        assert!(none.put_bytes("x", b"").await.is_err());
        assert!(none.list("").await.is_err());
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(
            open("gs://bucket"),
            Err(StoreError::UnsupportedScheme { .. })
        ));
    }
}
