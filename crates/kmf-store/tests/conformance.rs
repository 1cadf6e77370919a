//! The same behaviour from every store: the local directory, S3 (a real S3 server, `s3s-fs`, on loopback) and
//! read-only http (a static server over a local store).

use kmf_store::loopback::{static_http, S3Server};
use kmf_store::{open, LocalStore, RemoteStore, Store, StoreError};

async fn conformance(store: &dyn Store) {
    // Put, get, exists.
    store.put_bytes("d/0.1.0/a/b.json", b"{}").await.unwrap();
    store.put_bytes("d/0.1.0/a/c.ko", b"ko").await.unwrap();
    store.put_bytes("e/other", b"x").await.unwrap();
    assert_eq!(
        store
            .get_bytes("d/0.1.0/a/b.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(store.get_bytes("d/nope").await.unwrap(), None);
    assert!(store.exists("d/0.1.0/a/c.ko").await.unwrap());
    assert!(!store.exists("d/0.1.0/a/zz").await.unwrap());

    // List: recursive, sorted, relative to the store; a prefix is a whole path segment.
    assert_eq!(
        store.list("d").await.unwrap(),
        ["d/0.1.0/a/b.json", "d/0.1.0/a/c.ko"]
    );
    assert_eq!(store.list("d/").await.unwrap().len(), 2);
    assert_eq!(
        store.list("").await.unwrap(),
        ["d/0.1.0/a/b.json", "d/0.1.0/a/c.ko", "e/other"]
    );
    assert!(store.list("d/0.1").await.unwrap().is_empty());

    // Overwriting is idempotent and atomic from the reader's side: the new bytes, whole.
    store.put_bytes("d/0.1.0/a/c.ko", b"ko2").await.unwrap();
    store.put_bytes("d/0.1.0/a/c.ko", b"ko2").await.unwrap();
    assert_eq!(
        store.get_bytes("d/0.1.0/a/c.ko").await.unwrap().as_deref(),
        Some(&b"ko2"[..])
    );

    // Files, small and large (the S3 store uploads the large one in parts).
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"small file").unwrap();
    store.put_file("f/small", &small).await.unwrap();
    let large = dir.path().join("large");
    let body: Vec<u8> = (0..(kmf_store::MULTIPART_CHUNK * 2 + 12345))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&large, &body).unwrap();
    store.put_file("f/large.ko", &large).await.unwrap();
    assert_eq!(
        store.get_bytes("f/large.ko").await.unwrap().unwrap().len(),
        body.len()
    );
    assert!(store.get_bytes("f/large.ko").await.unwrap().unwrap() == body);
    assert!(store
        .put_file("f/missing", &dir.path().join("nope"))
        .await
        .is_err());
    assert!(!store.exists("f/missing").await.unwrap());

    // Keys that could escape or alias are refused everywhere.
    for bad in ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/.kmf-tmp-1"] {
        assert!(
            matches!(
                store.put_bytes(bad, b"x").await,
                Err(StoreError::BadKey { .. })
            ),
            "{bad}"
        );
        assert!(store.get_bytes(bad).await.is_err(), "{bad}");
    }

    // Delete: gone, and deleting again is fine.
    store.delete("d/0.1.0/a/c.ko").await.unwrap();
    store.delete("d/0.1.0/a/c.ko").await.unwrap();
    assert!(!store.exists("d/0.1.0/a/c.ko").await.unwrap());
    assert_eq!(store.list("d").await.unwrap(), ["d/0.1.0/a/b.json"]);
}

#[tokio::test]
async fn local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("store")).unwrap();
    conformance(&store).await;
}

#[tokio::test]
async fn s3_store_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = S3Server::start(&dir.path().join("s3"), "kmods") else {
        return;
    };
    // Credentials through the URL's options here; the e2e tests use the standard AWS variables.
    let creds = format!(
        "&access_key_id={}&secret_access_key={}",
        kmf_store::loopback::ACCESS_KEY,
        kmf_store::loopback::SECRET_KEY
    );
    // Under a prefix, with a small multipart threshold so the large file goes up in parts.
    let store = RemoteStore::s3(&(server.url("kmods", "farm/nightly") + &creds))
        .unwrap()
        .with_multipart_threshold(kmf_store::MULTIPART_CHUNK as u64);
    conformance(&store).await;
    // The objects sit under the prefix in the bucket.
    assert!(server
        .root
        .join("kmods/farm/nightly/d/0.1.0/a/b.json")
        .is_file());
    // Another prefix of the same bucket is a separate store.
    let other = open(&(server.url("kmods", "other") + &creds)).unwrap();
    assert!(other.list("").await.unwrap().is_empty());
    // And the bucket's root sees both.
    let root = open(&(server.url("kmods", "") + &creds)).unwrap();
    assert!(root
        .list("farm")
        .await
        .unwrap()
        .contains(&"farm/nightly/d/0.1.0/a/b.json".to_string()));
    // Wrong credentials are an error, not an empty store.
    let wrong = open(&(server.url("kmods", "") + "&access_key_id=x&secret_access_key=y")).unwrap();
    assert!(wrong.get_bytes("farm/nightly/e/other").await.is_err());
}

#[tokio::test]
async fn http_store_reads_a_published_directory() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStore::new(dir.path().join("store")).unwrap();
    local.put_bytes("d/0.1.0/matrix.json", b"[]").await.unwrap();
    local
        .put_bytes("d/0.1.0/x/hello.ko", b"\x7fELF")
        .await
        .unwrap();
    let server = static_http(local.root());
    let url = format!("http://127.0.0.1:{}/", server.port);
    let store = open(&url).unwrap();
    assert_eq!(
        store
            .get_bytes("d/0.1.0/matrix.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"[]"[..])
    );
    assert_eq!(
        store
            .get_bytes("d/0.1.0/x/hello.ko")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"\x7fELF"[..])
    );
    assert_eq!(store.get_bytes("d/none.json").await.unwrap(), None);
    assert!(store.exists("d/0.1.0/x/hello.ko").await.unwrap());
    assert!(!store.exists("d/0.1.0/x/none.ko").await.unwrap());
    assert!(matches!(
        store.put_bytes("d/new", b"x").await,
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(
        store.delete("d/0.1.0/matrix.json").await,
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(local.exists("d/0.1.0/matrix.json").await.unwrap());
    // A store under a path of the server.
    let sub = open(&format!("http://127.0.0.1:{}/d/0.1.0", server.port)).unwrap();
    assert!(sub.exists("matrix.json").await.unwrap());
}
