use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{validate_key, Store, StoreError};

/// A store in a local directory: `<root>/<key>`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(StoreError::io("create", &root))?;
        let root = root
            .canonicalize()
            .map_err(StoreError::io("resolve", &root))?;
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes through a temp file in the target directory, then renames: readers see the old object or the
    /// new one, never a prefix of it.
    fn write_atomic(
        &self,
        key: &str,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let dir = dest.parent().expect("validated keys have a parent");
        std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let tmp = dir.join(format!(
            ".kmf-tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            fill(&mut f)?;
            f.flush()?;
            f.sync_all()?;
            std::fs::rename(&tmp, &dest)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Io {
                op: "write",
                path: dest,
                source: e,
            });
        }
        Ok(())
    }
}

impl LocalStore {
    /// A fresh temporary path beside `dest`, in a directory that exists.
    fn temporary_for(&self, key: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        let dest = self.path(key)?;
        let dir = dest.parent().expect("validated keys have a parent");
        std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let tmp = dir.join(format!(
            ".kmf-tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        Ok((dest, tmp))
    }
}

#[async_trait::async_trait]
impl Store for LocalStore {
    async fn get_reader(&self, key: &str) -> Result<Option<crate::ObjectReader>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("open", &path)(e)),
        }
    }

    async fn put_reader(
        &self,
        key: &str,
        mut reader: crate::ObjectReader,
    ) -> Result<u64, StoreError> {
        let (dest, tmp) = self.temporary_for(key)?;
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            let n = tokio::io::copy(&mut reader, &mut f).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &dest).await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::io("write", &dest)(e)
        })
    }

    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        let (dest, tmp) = self.temporary_for(key)?;
        let written = std::fs::write(&tmp, bytes).and_then(|_| {
            // A link fails when the name exists: the create-if-absent step is atomic.
            match std::fs::hard_link(&tmp, &dest) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        });
        let _ = std::fs::remove_file(&tmp);
        written.map_err(StoreError::io("write", &dest))
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let this = self.clone();
        let (key, path) = (key.to_string(), path.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut src = std::fs::File::open(&path).map_err(StoreError::io("open", &path))?;
            this.write_atomic(&key, |f| std::io::copy(&mut src, f).map(|_| ()))
        })
        .await
        .expect("store writer panicked")
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let this = self.clone();
        let (key, bytes) = (key.to_string(), bytes.to_vec());
        tokio::task::spawn_blocking(move || this.write_atomic(&key, |f| f.write_all(&bytes)))
            .await
            .expect("store writer panicked")
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                op: "read",
                path,
                source: e,
            }),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        Ok(tokio::fs::try_exists(&path).await.unwrap_or(false))
    }

    async fn get_file(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        let (store, key, dest) = (self.url(), key.to_string(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let src = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::io("open", &path)(e)),
            };
            let too_large = || StoreError::too_large(&store, &key, max_bytes);
            let tmp = crate::temporary_beside(&dest);
            let mut out = std::fs::File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            let copied = std::io::copy(&mut src.take(max_bytes.saturating_add(1)), &mut out)
                .and_then(|n| out.sync_all().map(|_| n));
            match copied {
                Ok(n) if n > max_bytes => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(too_large())
                }
                Ok(n) => {
                    std::fs::rename(&tmp, &dest).map_err(StoreError::io("rename", &dest))?;
                    Ok(Some(n))
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(StoreError::io("copy", &path)(e))
                }
            }
        })
        .await
        .expect("store reader panicked")
    }

    async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                        if let Ok(rel) = dir.strip_prefix(&root) {
                            let modified = std::fs::metadata(&dir)
                                .and_then(|m| m.modified())
                                .map_err(StoreError::io("list", &dir))?;
                            keys.push((rel.to_string_lossy().into_owned(), modified));
                        }
                        continue;
                    }
                    Err(e) => return Err(StoreError::io("list", &dir)(e)),
                };
                for entry in rd {
                    let entry = entry.map_err(StoreError::io("list", &dir))?;
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with(".kmf-tmp") {
                        continue;
                    }
                    let path = entry.path();
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let modified = entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .map_err(StoreError::io("list", &path))?;
                        keys.push((rel.to_string_lossy().into_owned(), modified));
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .expect("store lister panicked")
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("delete", path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("s")).unwrap();
        store.put_bytes("a/b/c.json", b"{}").await.unwrap();
        store.put_bytes("a/d.ko", b"ko").await.unwrap();
        assert_eq!(
            store.get_bytes("a/b/c.json").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(store.get_bytes("nope").await.unwrap(), None);
        assert_eq!(store.list("a").await.unwrap(), ["a/b/c.json", "a/d.ko"]);
        assert_eq!(store.list("").await.unwrap().len(), 2);
        store.delete("a/d.ko").await.unwrap();
        assert!(!store.exists("a/d.ko").await.unwrap());
        assert!(store.put_bytes("../x", b"no").await.is_err());
        assert!(!dir.path().join("x").exists());
    }

    #[tokio::test]
    async fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let missing = dir.path().join("does-not-exist");
        assert!(store.put_file("k/v.ko", &missing).await.is_err());
        assert!(!store.exists("k/v.ko").await.unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
