//! The real auth-service and spaces-service behind a gateway, with an SMTP sink
//! for sign-in codes and an echo service behind `/echo`: the platform as a
//! client sees it.

use crate::gateway_with;
use crate::upstream::Echo;
use base64::Engine;
use std::time::Duration;
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestServer};

pub struct Platform {
    pub gw: TestServer,
    pub echo: Echo,
    /// The cache (and bus) every part shares.
    pub cache: service_kit::config::CacheConfig,
    pub sink: mail::sink::SmtpSink,
    pub auth: TestServer,
    _spaces: TestServer,
    _booking: Option<[(TestServer, TestDatabase); 2]>,
    _db: TestDatabase,
    _spaces_db: TestDatabase,
}

/// The operator key of [`Platform::with_booking`]'s gateway.
pub const SYSTEM_KEY: &str = "sys_pppppppppppppppppppppppppppppppppppppppp";

impl Platform {
    pub async fn start() -> Platform {
        Self::start_on(CacheKind::Memory).await
    }

    /// With the cache (and so the revocation bus) on `kind`: Redis is how
    /// several gateways and services share it in production.
    pub async fn start_on(kind: CacheKind) -> Platform {
        Self::start_parts(kind, false).await
    }

    /// Every service: booking-service stands behind `booking` (so `/echo` is
    /// not served), events-service behind `events` (private webhook targets
    /// allowed, retries after 1 s), and the gateway knows [`SYSTEM_KEY`].
    pub async fn with_booking() -> Platform {
        Self::start_parts(CacheKind::Memory, true).await
    }

    async fn start_parts(kind: CacheKind, with_booking: bool) -> Platform {
        let sink = mail::sink::SmtpSink::start().await;
        let cache = TestCache::new(kind);
        let db = TestDatabase::new(DbKind::Sqlite);
        let sink_url = sink.url();
        let auth =
            testkit::part::start_part_with::<auth_service::AuthService>(Some(&db), &cache, |c| {
                c.secret.key = service_kit::config::Secret::new(
                    base64::engine::general_purpose::STANDARD.encode([5u8; 32]),
                );
                c.mail.url = service_kit::config::Secret::new(sink_url);
            })
            .await;
        let spaces_db = TestDatabase::new(DbKind::Sqlite);
        let spaces = testkit::part::start_part_with::<spaces_service::SpacesService>(
            Some(&spaces_db),
            &cache,
            |c| {
                c.secret.key = service_kit::config::Secret::new(
                    base64::engine::general_purpose::STANDARD.encode([6u8; 32]),
                );
            },
        )
        .await;
        let booking = if with_booking {
            let db = TestDatabase::new(DbKind::Sqlite);
            let server =
                testkit::part::start_part::<booking_service::BookingService>(Some(&db), &cache)
                    .await;
            let events_db = TestDatabase::new(DbKind::Sqlite);
            let events = testkit::part::start_part_with::<events_service::EventsService>(
                Some(&events_db),
                &cache,
                |c| {
                    c.secret.key = service_kit::config::Secret::new(
                        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
                    );
                    c.mail.url = service_kit::config::Secret::new("log");
                    c.webhooks.allow_private_targets = true;
                    c.webhooks.retry_schedule_secs = "1,1".into();
                    c.webhooks.poll_interval_ms = 100;
                },
            )
            .await;
            Some([(server, db), (events, events_db)])
        } else {
            None
        };
        let booking_base = booking
            .as_ref()
            .map(|[(booking, _), (events, _)]| (booking.base.clone(), events.base.clone()));
        let echo = Echo::start();
        let auth_base = auth.base.clone();
        let spaces_base = spaces.base.clone();
        let cache_config = cache.config.clone();
        let gw = gateway_with(&echo.server.base, |c| {
            c.upstreams.auth = auth_base;
            c.upstreams.spaces = spaces_base;
            // One bus: revocations published by auth-service reach this gateway.
            c.cache = cache_config;
            // The echo behind a Tuzzle route too (what a Tuzzle route forwards).
            c.routes.push(gateway::config::RouteConfig {
                dialect: service_kit::Dialect::Tuzzle,
                ..gateway::config::RouteConfig::new("/echo/tuzzle", "booking")
            });
            if let Some((booking, events)) = booking_base {
                c.upstreams.booking = booking;
                c.upstreams.events = events;
                c.system_keys.sha256 = crate::system_key_digest(SYSTEM_KEY);
            }
        })
        .await;
        Platform {
            gw,
            echo,
            cache: cache.config.clone(),
            sink,
            auth,
            _spaces: spaces,
            _booking: booking,
            _db: db,
            _spaces_db: spaces_db,
        }
    }

    /// Another gateway replica in front of the same auth-service, spaces-service
    /// and echo, on the same cache.
    pub async fn another_gateway(
        &self,
        tweak: impl FnOnce(&mut gateway::config::GatewayConfig),
    ) -> TestServer {
        let auth = self.auth.base.clone();
        let spaces = self._spaces.base.clone();
        let cache = self.cache.clone();
        gateway_with(&self.echo.server.base, |c| {
            c.upstreams.auth = auth;
            c.upstreams.spaces = spaces;
            c.cache = cache;
            tweak(c);
        })
        .await
    }

    /// Signs in by one-time code through the gateway; returns the answer's `data`.
    pub async fn sign_in(&self, email: &str) -> serde_json::Value {
        let gw = &self.gw;
        let requested = gw
            .send(
                gw.client
                    .post(gw.url("/api/v1/auth/otp/request"))
                    .json(&serde_json::json!({"email": email})),
            )
            .await;
        assert_eq!(requested.status, 200, "{:?}", requested.json());
        let mail = self
            .sink
            .wait_for(email, Duration::from_secs(5))
            .await
            .expect("code mailed");
        let code = mail
            .body_text()
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .expect("a six-digit code")
            .to_owned();
        let signed_in = gw
            .send(
                gw.client
                    .post(gw.url("/api/v1/auth/otp/verify"))
                    .json(&serde_json::json!({"email": email, "otp": code})),
            )
            .await;
        assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
        signed_in.json()["data"].clone()
    }
}
