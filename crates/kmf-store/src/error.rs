use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store key `{key}`: {why}")]
    BadKey { key: String, why: String },
    #[error(
        "store URL `{url}`: scheme `{scheme}` is not supported (use a path, file://, s3:// or http(s)://)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("store URL `{url}`: {why}")]
    BadUrl { url: String, why: String },
    #[error("{url} is a read-only store: publish to its file:// or s3:// location instead")]
    ReadOnly { url: String },
    #[error("{key}: this process has no store (a worker neither reads nor writes the store)")]
    NoStore { key: String },
    #[error("{key} in {store} is larger than {limit} bytes")]
    TooLarge {
        store: String,
        key: String,
        limit: u64,
    },
    #[error("{url} cannot be listed (an http store serves known keys only)")]
    NotListable { url: String },
    #[error("{op} {key} in {store}: {message}")]
    Remote {
        op: &'static str,
        store: String,
        key: String,
        message: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn too_large(store: &str, key: &str, limit: u64) -> Self {
        StoreError::TooLarge {
            store: store.to_string(),
            key: key.to_string(),
            limit,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}
