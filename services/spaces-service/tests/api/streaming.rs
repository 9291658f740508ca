//! A 200 MB upload streams: sent as a stream (never a buffer of its size),
//! received and stored as it arrives, the process's resident memory grows by
//! less than 30 MB, and the stored bytes are the bytes sent.
//!
//! The service runs in this test's process, so `/proc/self/status` measures
//! client and server together; nextest runs each test in a process of its
//! own, so no other test's memory is counted.

use crate::helpers::{
    Multipart, StorageKind, TestSpaces, configured_space, member, new_workspace, noise,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::content::rss;
use testkit::reqwest::{Body, Method};
use testkit::{CacheKind, DbKind};

const SIZE: usize = 200 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const MAX_GROWTH: u64 = 30 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_streams_in_flat_memory() {
    let app = TestSpaces::start_full(
        DbKind::Sqlite,
        CacheKind::Memory,
        StorageKind::Filesystem,
        |_| {},
    )
    .await;
    let me = member(&new_workspace());
    let space = configured_space(&app, &me, "Large", json!({"config": {"validation": {"allowed_formats": null, "max_file_size": 300 * 1024 * 1024}}})).await;
    // Everything the upload path needs, warmed up once.
    let warm = Multipart::new().text("space", &space.handle).file(
        "file",
        "warm.bin",
        "application/octet-stream",
        &noise(6 * 1024 * 1024, 4),
    );
    let answer = app.upload(Some(&me), "/api/v1/upload", warm).await;
    assert_eq!(answer.status, 201, "{}", answer.json());

    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // The body, made as it is sent: the part's head, 200 MB of noise in
    // 64 KiB chunks (hashed on the way), the closing boundary.
    let form = Multipart::new().text("space", &space.handle);
    let boundary = form.boundary().to_owned();
    let (content_type, fields) = form.finish();
    let fields = fields[..fields.len() - format!("--{boundary}--\r\n").len()].to_vec();
    let head = Multipart::file_head(&boundary, "file", "big.bin", "application/octet-stream");
    let tail = format!("\r\n--{boundary}--\r\n");
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let mut seed = 0u64;
    let chunks = {
        let hasher = hasher.clone();
        futures_util::stream::iter((0..SIZE / CHUNK).map(move |_| {
            seed += 1;
            let chunk = noise(CHUNK, seed);
            hasher.lock().unwrap().update(&chunk);
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        }))
    };
    let body = futures_util::stream::iter([Ok(Bytes::from(fields)), Ok(Bytes::from(head))])
        .chain(chunks)
        .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]));
    let request = app
        .request_as(&me, Method::POST, "/api/v1/upload")
        .header("content-type", content_type)
        .timeout(Duration::from_secs(600))
        .body(Body::wrap_stream(body));
    let answer = app.server.send(request).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let sent = spaces_service::storage::hex(&hasher.lock().unwrap().clone().finalize());
    let data = answer.json()["data"].clone();
    assert_eq!(data["size"], SIZE);
    assert_eq!(data["hash"], sent);
    let stored = app
        .storage
        .open()
        .digest(data["object_key"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!((stored.size, stored.sha256), (SIZE as u64, sent));

    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "RSS: baseline {} MiB, peak {} MiB, growth {} MiB",
        baseline >> 20,
        peak.load(Ordering::Relaxed) >> 20,
        growth >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "a 200 MB upload grew RSS by {} MiB (limit 30 MB)",
        growth >> 20
    );
}
