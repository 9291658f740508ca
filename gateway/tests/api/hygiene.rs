//! Property: whatever identity or forwarding headers a client sends, in any
//! capitalisation and any number, none reaches a service; the service sees only
//! the gateway's own values.

use crate::gateway_with;
use crate::upstream::Echo;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Names a client must never get through, as the client might spell them.
fn reserved_name() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "x-spaceport-identity",
        "x-spaceport-workspace",
        "x-spaceport-principal",
        "x-workspace-id",
        "x-principal-id",
        "x-principal-type",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    ])
    .prop_map(str::to_owned);
    let invented = ("(x-spaceport-|x-principal-|x-forwarded-)", "[a-z]{1,10}")
        .prop_map(|(p, s)| format!("{p}{s}"));
    (prop_oneof![fixed, invented], any::<u32>()).prop_map(|(name, mask)| {
        // Random capitalisation: header names are case-insensitive.
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

#[test]
fn spoofed_identity_headers_never_reach_a_service() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (echo, gw) = runtime.block_on(async {
        let echo = Echo::start();
        let gw = gateway_with(&echo.server.base, |c| c.rate_limits.enabled = false).await;
        (echo, gw)
    });
    let verifier = crate::upstream::booking_verifier();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec((reserved_name(), "[ -~]{0,40}"), 1..8);
    runner
        .run(&strategy, |headers| {
            let seen = runtime.block_on(async {
                let mut request = gw.client.get(gw.url("/echo/hygiene"));
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                gw.send(request).await
            });
            prop_assert_eq!(seen.status, 200);
            let received = seen.json()["headers"].clone();
            for (name, value) in received.as_object().unwrap() {
                let spoofable = name.starts_with("x-spaceport-")
                    || name.starts_with("x-principal-")
                    || name.starts_with("x-forwarded-")
                    || name == "x-workspace-id"
                    || name == "forwarded"
                    || name == "x-real-ip";
                if !spoofable {
                    continue;
                }
                let value = value.as_str().unwrap();
                match name.as_str() {
                    // The gateway's own: its signed token, and facts of the connection.
                    "x-spaceport-identity" => {
                        prop_assert!(verifier.verify(value).is_ok(), "forged identity {value:?}")
                    }
                    "x-forwarded-for" => prop_assert_eq!(value, "127.0.0.1"),
                    "x-forwarded-proto" => prop_assert_eq!(value, "http"),
                    "x-forwarded-host" => prop_assert_eq!(value, gw.addr().to_string()),
                    other => prop_assert!(false, "{} reached the service: {:?}", other, value),
                }
            }
            Ok(())
        })
        .unwrap();
    drop(echo);
}
