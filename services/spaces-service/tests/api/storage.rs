//! The object store (`spaces_service::storage`) on both backends: the local
//! filesystem and an S3 API server (`TEST_S3_URL`, a fresh bucket per test).

use crate::helpers::{StorageKind, TestStorage, noise, sha256};
use bytes::Bytes;
use futures_util::StreamExt;
use spaces_service::storage::StorageError;
use testkit::storage_test;

storage_test!(
    writes_stream_in_parts_and_read_back_in_ranges,
    streamed_writes
);
async fn streamed_writes(kind: StorageKind) {
    let test = TestStorage::new(kind).await;
    let storage = test.open();
    // Three parts of 5 MiB and a bit: written as it comes, 64 KiB at a time.
    let bytes = noise(11 * 1024 * 1024 + 12_345, 1);
    let mut writer = storage.writer("abcdef/fil_1").await.unwrap();
    for chunk in bytes.chunks(64 * 1024) {
        writer.write(chunk).await.unwrap();
    }
    assert_eq!(writer.size(), bytes.len() as u64);
    let written = writer.finish().await.unwrap();
    assert_eq!(written.size, bytes.len() as u64);
    assert_eq!(written.sha256, sha256(&bytes));

    let head = storage.head("abcdef/fil_1").await.unwrap();
    assert_eq!(head.size, bytes.len() as u64);
    let digest = storage.digest("abcdef/fil_1").await.unwrap();
    assert_eq!(digest, written);

    // A range across a part boundary.
    let range = 5 * 1024 * 1024 - 100..5 * 1024 * 1024 + 100;
    let mut object = storage
        .get("abcdef/fil_1", Some(range.clone()))
        .await
        .unwrap();
    assert_eq!(object.range, range);
    assert_eq!(object.info.size, bytes.len() as u64);
    let mut got = Vec::new();
    while let Some(chunk) = object.bytes.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, &bytes[range.start as usize..range.end as usize]);
    assert_eq!(
        storage.read_head("abcdef/fil_1", 10).await.unwrap(),
        Bytes::copy_from_slice(&bytes[..10])
    );

    storage
        .rename("abcdef/fil_1", "abcdef/fil_2")
        .await
        .unwrap();
    assert!(matches!(
        storage.head("abcdef/fil_1").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(storage.read_all("abcdef/fil_2").await.unwrap(), bytes);

    // Deleting by prefix takes whole segments only.
    storage
        .put("abcdef/_variants/fil_2/w100", Bytes::from_static(b"v"))
        .await
        .unwrap();
    storage
        .put("abcdefg/fil_3", Bytes::from_static(b"other space"))
        .await
        .unwrap();
    assert_eq!(storage.delete_prefix("abcdef").await.unwrap(), 2);
    assert!(matches!(
        storage.head("abcdef/fil_2").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(storage.head("abcdefg/fil_3").await.unwrap().size, 11);
    // Deleting what is gone is no error.
    storage.delete("abcdef/fil_2").await.unwrap();
}

storage_test!(an_abandoned_write_leaves_nothing, abandoned_writes);
async fn abandoned_writes(kind: StorageKind) {
    let test = TestStorage::new(kind).await;
    let storage = test.open();
    let bytes = noise(6 * 1024 * 1024, 2);
    let mut writer = storage.writer("abcdef/fil_1").await.unwrap();
    writer.write(&bytes).await.unwrap();
    writer.abort().await;
    assert!(matches!(
        storage.head("abcdef/fil_1").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(storage.delete_prefix("abcdef").await.unwrap(), 0);
    // Keys the store must never see.
    for bad in ["../x", "a//b", "", "a/./b"] {
        assert!(matches!(
            storage.writer(bad).await,
            Err(StorageError::InvalidKey(_))
        ));
    }
}

storage_test!(presigned_puts_come_from_the_store, presigned_puts);
async fn presigned_puts(kind: StorageKind) {
    let test = TestStorage::new(kind).await;
    let storage = test.open();
    let url = storage
        .presigned_put("abcdef/fil_9", std::time::Duration::from_secs(300))
        .await
        .unwrap();
    match kind {
        // The filesystem cannot presign: spaces-service signs its own PUT URLs.
        StorageKind::Filesystem => {
            assert!(url.is_none());
            assert!(!storage.presigns());
        }
        StorageKind::S3 => {
            let url = url.expect("S3 presigns");
            assert!(url.query().unwrap_or_default().contains("X-Amz-Signature"));
            let bytes = noise(1000, 3);
            let put = testkit::client()
                .put(url.as_str())
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "{}", put.status());
            assert_eq!(storage.read_all("abcdef/fil_9").await.unwrap(), bytes);
        }
    }
}
