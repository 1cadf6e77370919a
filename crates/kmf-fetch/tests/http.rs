//! Fetcher against a real HTTP server on 127.0.0.1.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmf_fetch::{Download, FetchError, FetchOptions, FetchProgress, Fetcher};
use sha2::{Digest, Sha256};
use support::{etag, Behavior, Route, TestServer};

/// Deterministic, incompressible-looking bytes: several HTTP chunks worth.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn fast_options() -> FetchOptions {
    FetchOptions {
        retries: 3,
        backoff_base: Duration::from_millis(5),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

fn download(name: &str, data: Option<&[u8]>, urls: Vec<String>) -> Download {
    Download {
        file_name: name.to_string(),
        sha256: data.map(sha),
        size: data.map(|d| d.len() as u64),
        urls,
    }
}

/// Files under `dir`, recursively (sidecars and locks included).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl FetchProgress for Recorder {
    fn started(&self, file_name: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("started {file_name} {total:?}"));
    }
    fn finished(&self, file_name: &str, ok: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("finished {file_name} {ok}"));
    }
    fn retrying(&self, file_name: &str, _url: &str, attempt: u32, _error: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("retrying {file_name} {attempt}"));
    }
}

#[tokio::test]
async fn downloads_verifies_and_then_serves_from_cache_without_requests() {
    let server = TestServer::start().await;
    let data = content(300_000, 1);
    server.route("/a.deb", Route::serve(&data));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("a.deb", Some(&data), vec![server.url("/a.deb")]);

    let first = fetcher.fetch(&d).await.unwrap();
    assert_eq!(first.url.as_deref(), Some(server.url("/a.deb").as_str()));
    assert_eq!(first.sha256, sha(&data));
    assert_eq!(first.size, data.len() as u64);
    assert_eq!(first.downloaded_bytes, data.len() as u64);
    assert_eq!(std::fs::read(&first.path).unwrap(), data);
    let hex = sha(&data);
    assert_eq!(
        first.path,
        dir.path().join("sha256").join(&hex[..2]).join(&hex)
    );

    let second = fetcher.fetch(&d).await.unwrap();
    // A cache hit names where the file came from, as the download did.
    assert_eq!(second.url, first.url);
    assert_eq!(second.downloaded_bytes, 0);
    assert_eq!(second.path, first.path);
    assert_eq!(server.requests("/a.deb").len(), 1);

    // A fresh fetcher (next run) finds it too, even with no URL at all.
    let again = Fetcher::new(dir.path(), fast_options()).unwrap();
    let no_urls = Download {
        urls: vec![],
        ..d.clone()
    };
    assert_eq!(again.cached(&no_urls).unwrap().path, first.path);
    assert_eq!(again.fetch(&no_urls).await.unwrap().url, first.url);
    assert_eq!(server.requests("/a.deb").len(), 1);
    // Nothing left in partial/.
    assert!(files_under(&dir.path().join("partial")).is_empty());
}

#[tokio::test]
async fn by_name_cache_reverifies_and_refetches_tampered_content() {
    let server = TestServer::start().await;
    let data = content(50_000, 2);
    server.route("/b.deb", Route::serve(&data));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("b.deb", None, vec![server.url("/b.deb")]);

    let first = fetcher.fetch(&d).await.unwrap();
    assert_eq!(first.sha256, sha(&data));
    assert_eq!(first.path, dir.path().join("by-name/b.deb"));
    let sidecar = std::fs::read_to_string(dir.path().join("meta/by-name/b.deb")).unwrap();
    assert!(sidecar.contains(&sha(&data)), "{sidecar}");
    assert_eq!(fetcher.fetch(&d).await.unwrap().url, first.url);
    assert_eq!(server.requests("/b.deb").len(), 1);

    // Corrupt the cached copy in place: the recorded digest no longer matches, so it is fetched again.
    let mut bad = data.clone();
    bad[100] ^= 0xff;
    std::fs::write(&first.path, &bad).unwrap();
    assert_eq!(fetcher.cached(&d), None);
    let refetched = fetcher.fetch(&d).await.unwrap();
    assert!(refetched.url.is_some());
    assert_eq!(std::fs::read(&refetched.path).unwrap(), data);
    assert_eq!(server.requests("/b.deb").len(), 2);
}

#[tokio::test]
async fn checksum_mismatch_is_rejected_and_nothing_is_cached() {
    let server = TestServer::start().await;
    let expected = content(40_000, 3);
    let served = content(40_000, 4);
    server.route("/c.deb", Route::serve(&served));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("c.deb", Some(&expected), vec![server.url("/c.deb")]);

    let err = fetcher.fetch(&d).await.unwrap_err();
    match &err {
        FetchError::Checksum {
            url,
            expected: e,
            actual,
        } => {
            assert_eq!(url, &server.url("/c.deb"));
            assert_eq!(e, &sha(&expected));
            assert_eq!(actual, &sha(&served));
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(!err.is_not_found());
    // No retry of the same URL for a mismatch, and no trace of the content anywhere.
    assert_eq!(server.requests("/c.deb").len(), 1);
    assert_eq!(fetcher.cached(&d), None);
    for sub in ["sha256", "by-name", "partial"] {
        assert!(
            files_under(&dir.path().join(sub)).is_empty(),
            "{sub} not empty"
        );
    }

    // The next URL is tried after a mismatch, and its good copy is kept.
    server.route("/good/c.deb", Route::serve(&expected));
    let d2 = download(
        "c.deb",
        Some(&expected),
        vec![server.url("/c.deb"), server.url("/good/c.deb")],
    );
    let ok = fetcher.fetch(&d2).await.unwrap();
    assert_eq!(ok.url.as_deref(), Some(server.url("/good/c.deb").as_str()));
    assert_eq!(std::fs::read(ok.path).unwrap(), expected);
}

#[tokio::test]
async fn fallback_url_is_used_after_404_on_the_mirror_without_retrying_it() {
    let server = TestServer::start().await;
    let data = content(10_000, 5);
    server.route("/mirror/d.deb", Route::status(404));
    server.route("/fallback/d.deb", Route::serve(&data));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download(
        "d.deb",
        Some(&data),
        vec![server.url("/mirror/d.deb"), server.url("/fallback/d.deb")],
    );
    let got = fetcher.fetch(&d).await.unwrap();
    assert_eq!(
        got.url.as_deref(),
        Some(server.url("/fallback/d.deb").as_str())
    );
    assert_eq!(server.requests("/mirror/d.deb").len(), 1);
    assert_eq!(server.requests("/fallback/d.deb").len(), 1);
}

#[tokio::test]
async fn retries_after_500_with_backoff_then_succeeds() {
    let server = TestServer::start().await;
    let data = content(20_000, 6);
    server.route(
        "/e.deb",
        Route::serve(&data).with(Behavior::FailThenServe {
            remaining: 2,
            status: 500,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let fetcher = Fetcher::new(dir.path(), fast_options())
        .unwrap()
        .with_progress(recorder.clone());
    let d = download("e.deb", Some(&data), vec![server.url("/e.deb")]);
    let got = fetcher.fetch(&d).await.unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), data);
    assert_eq!(server.requests("/e.deb").len(), 3);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            "retrying e.deb 1".to_string(),
            "retrying e.deb 2".to_string(),
            "started e.deb Some(20000)".to_string(),
            "finished e.deb true".to_string(),
        ]
    );
}

#[tokio::test]
async fn persistent_5xx_exhausts_retries_and_is_not_not_found() {
    let server = TestServer::start().await;
    server.route("/f.deb", Route::status(503));
    server.route("/g.deb", Route::status(404));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(
        dir.path(),
        FetchOptions {
            retries: 2,
            ..fast_options()
        },
    )
    .unwrap();
    let d = download(
        "f.deb",
        None,
        vec![server.url("/f.deb"), server.url("/g.deb")],
    );
    let err = fetcher.fetch(&d).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Http { status: 503, url } if url == &server.url("/f.deb")),
        "{err}"
    );
    assert!(!err.is_not_found());
    assert_eq!(server.requests("/f.deb").len(), 3);
    assert_eq!(server.requests("/g.deb").len(), 1);
}

#[tokio::test]
async fn truncated_body_is_resumed_with_a_range_request() {
    let server = TestServer::start().await;
    let data = content(200_000, 7);
    let cut = 70_000;
    server.route(
        "/h.deb",
        Route::serve(&data).with(Behavior::TruncateThenServe {
            remaining: 1,
            cut_at: cut,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("h.deb", Some(&data), vec![server.url("/h.deb")]);
    let got = fetcher.fetch(&d).await.unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(got.downloaded_bytes, data.len() as u64);
    let seen = server.requests("/h.deb");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=70000-"));
}

/// Runs a fetch that dies mid-body with no retries, leaving a part file behind.
async fn interrupted_run(dir: &std::path::Path, d: &Download) -> FetchError {
    let fetcher = Fetcher::new(
        dir,
        FetchOptions {
            retries: 0,
            ..fast_options()
        },
    )
    .unwrap();
    let err = fetcher.fetch(d).await.unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert_eq!(fetcher.cached(d), None);
    err
}

fn part_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    files_under(&dir.join("partial"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::metadata(&p).unwrap().len(),
            )
        })
        .collect()
}

#[tokio::test]
async fn part_from_an_interrupted_run_is_resumed_and_verified() {
    let server = TestServer::start().await;
    let data = content(150_000, 8);
    let cut = 60_000;
    server.route(
        "/i.deb",
        Route::serve(&data).with(Behavior::TruncateThenServe {
            remaining: 1,
            cut_at: cut,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = download("i.deb", Some(&data), vec![server.url("/i.deb")]);
    interrupted_run(dir.path(), &d).await;
    assert_eq!(
        part_files(dir.path()),
        vec![(format!("sha256-{}.part", sha(&data)), cut as u64)]
    );

    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let got = fetcher.fetch(&d).await.unwrap();
    assert_eq!(got.downloaded_bytes, (data.len() - cut) as u64);
    assert_eq!(got.sha256, sha(&data));
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    let seen = server.requests("/i.deb");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=60000-"));
    assert!(part_files(dir.path()).is_empty());
}

#[tokio::test]
async fn server_ignoring_range_restarts_from_scratch() {
    let server = TestServer::start().await;
    let data = content(120_000, 9);
    server.route(
        "/j.deb",
        Route::serve(&data)
            .ignoring_range()
            .with(Behavior::TruncateThenServe {
                remaining: 1,
                cut_at: 50_000,
            }),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = download("j.deb", Some(&data), vec![server.url("/j.deb")]);
    interrupted_run(dir.path(), &d).await;

    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let got = fetcher.fetch(&d).await.unwrap();
    // The range was asked for, answered with a full 200, and the whole body was taken afresh.
    assert_eq!(
        server.requests("/j.deb")[1].range.as_deref(),
        Some("bytes=50000-")
    );
    assert_eq!(got.downloaded_bytes, data.len() as u64);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
}

#[tokio::test]
async fn by_name_resume_is_guarded_by_if_range() {
    let server = TestServer::start().await;
    let old = content(100_000, 10);
    let new = content(90_000, 11);
    server.route(
        "/k.deb",
        Route::serve(&old).with(Behavior::TruncateThenServe {
            remaining: 1,
            cut_at: 30_000,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = download("k.deb", None, vec![server.url("/k.deb")]);
    interrupted_run(dir.path(), &d).await;

    // The file changed on the server meanwhile: the part must not be glued to the new content.
    server.route("/k.deb", Route::serve(&new));
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let got = fetcher.fetch(&d).await.unwrap();
    let seen = server.requests("/k.deb");
    assert_eq!(seen[1].range.as_deref(), Some("bytes=30000-"));
    assert_eq!(seen[1].if_range.as_deref(), Some(etag(&old).as_str()));
    assert_eq!(std::fs::read(&got.path).unwrap(), new);
    assert_eq!(got.sha256, sha(&new));
}

#[tokio::test]
async fn concurrent_fetches_of_the_same_content_download_once() {
    let server = TestServer::start().await;
    let data = content(80_000, 12);
    server.route(
        "/common.deb",
        Route::serve(&data).delayed(Duration::from_millis(300)),
    );
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("common.deb", Some(&data), vec![server.url("/common.deb")]);
    let f2 = fetcher.clone();
    let d2 = d.clone();
    let other = tokio::spawn(async move { f2.fetch(&d2).await });
    let (a, b) = tokio::join!(fetcher.fetch(&d), fetcher.fetch(&d));
    let c = other.await.unwrap();
    let results = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(server.requests("/common.deb").len(), 1);
    assert_eq!(results.iter().filter(|r| r.downloaded_bytes > 0).count(), 1);
    assert!(results
        .iter()
        .all(|r| r.url == results[0].url && r.url.is_some()));
    assert!(results.iter().all(|r| r.path == results[0].path));
    assert_eq!(std::fs::read(&results[0].path).unwrap(), data);
}

#[tokio::test]
async fn all_urls_404_or_410_is_not_found() {
    let server = TestServer::start().await;
    server.route("/gone.deb", Route::status(410));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download(
        "l.deb",
        Some(&content(10, 13)),
        vec![server.url("/missing.deb"), server.url("/gone.deb")],
    );
    let err = fetcher.fetch(&d).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    match &err {
        FetchError::NotFound { file_name, tried } => {
            assert_eq!(file_name, "l.deb");
            assert_eq!(
                tried,
                &vec![
                    (server.url("/missing.deb"), "404 Not Found".to_string()),
                    (server.url("/gone.deb"), "410 Gone".to_string()),
                ]
            );
        }
        other => panic!("{other}"),
    }
    // 404 is final for a URL: one request each.
    assert_eq!(server.requests("/missing.deb").len(), 1);
    assert_eq!(server.requests("/gone.deb").len(), 1);
}

#[tokio::test]
async fn short_content_length_and_truncation_are_failures() {
    let server = TestServer::start().await;
    let data = content(30_000, 14);
    server.route(
        "/short.deb",
        Route::serve(&data).with(Behavior::ShortContentLength { announced: 20_000 }),
    );
    server.route(
        "/cut.deb",
        Route::serve(&data).with(Behavior::TruncateThenServe {
            remaining: 100,
            cut_at: 10_000,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();

    let short = download("s.deb", Some(&data), vec![server.url("/short.deb")]);
    let err = fetcher.fetch(&short).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::SizeMismatch {
                expected: 30_000,
                actual: 20_000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fetcher.cached(&short), None);

    // Unknown size and digest: only the Content-Length tells the body was cut.
    let cut = download("t.deb", None, vec![server.url("/cut.deb")]);
    let err = fetcher.fetch(&cut).await.unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert_eq!(fetcher.cached(&cut), None);
    assert!(files_under(&dir.path().join("by-name")).is_empty());
    assert_eq!(server.requests("/cut.deb").len(), 4);
}

#[tokio::test]
async fn fetch_all_keeps_order_and_reports_each_result() {
    let server = TestServer::start().await;
    let mut downloads = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..6u64 {
        let data = content(25_000 + i as usize, 100 + i);
        let path = format!("/p{i}.deb");
        server.route(
            &path,
            Route::serve(&data).delayed(Duration::from_millis(50)),
        );
        downloads.push(download(
            &format!("p{i}.deb"),
            Some(&data),
            vec![server.url(&path)],
        ));
        bodies.push(data);
    }
    downloads.push(download("nope.deb", None, vec![server.url("/nope.deb")]));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(
        dir.path(),
        FetchOptions {
            concurrency: 3,
            ..fast_options()
        },
    )
    .unwrap();
    let results = fetcher.fetch_all(&downloads).await;
    assert_eq!(results.len(), 7);
    for (r, body) in results.iter().zip(&bodies) {
        assert_eq!(&std::fs::read(&r.as_ref().unwrap().path).unwrap(), body);
    }
    assert!(results[6].as_ref().unwrap_err().is_not_found());
}

#[tokio::test]
async fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let no_urls = Download {
        file_name: "x.deb".into(),
        ..Default::default()
    };
    assert!(matches!(
        fetcher.fetch(&no_urls).await,
        Err(FetchError::NoUrls { .. })
    ));
    let hostile = Download {
        file_name: "../../etc/passwd".into(),
        urls: vec!["http://127.0.0.1:9/x".into()],
        ..Default::default()
    };
    assert!(matches!(
        fetcher.fetch(&hostile).await,
        Err(FetchError::InvalidFileName { .. })
    ));
    let bad_url = Download {
        file_name: "x.deb".into(),
        urls: vec!["not a url".into()],
        ..Default::default()
    };
    let err = fetcher.fetch(&bad_url).await.unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_another_process_holding_the_download_lock() {
    let server = TestServer::start().await;
    let data = content(5_000, 15);
    server.route("/m.deb", Route::serve(&data));
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path(), fast_options()).unwrap();
    let d = download("m.deb", Some(&data), vec![server.url("/m.deb")]);
    // Another process sharing the cache takes the same flock on the same file.
    let lock_path = dir
        .path()
        .join("locks")
        .join(format!("sha256-{}.lock", sha(&data)));
    let lock = std::fs::File::create(&lock_path).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let task = tokio::spawn({
        let fetcher = fetcher.clone();
        let d = d.clone();
        async move { fetcher.fetch(&d).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());
    assert!(server.requests("/m.deb").is_empty());
    drop(lock);
    let got = task.await.unwrap().unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), data);
}
