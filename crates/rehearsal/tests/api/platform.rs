//! The running topology and the client's view of it.

use chrono::{DateTime, Utc};
use rehearsal::{Options, Topology};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests a minute per API key at the gateways (small, to reach it quickly).
pub const KEY_LIMIT: u32 = 8;

pub struct Rehearsal {
    pub topology: Topology,
    pub client: reqwest::Client,
    pub owner_token: String,
    _dir: tempfile::TempDir,
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} must be set for this test"))
}

/// The part binaries: beside this test's `deps/` directory.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_owned()
}

impl Rehearsal {
    pub async fn start() -> Rehearsal {
        Rehearsal::start_with(|_| {}).await
    }

    /// As [`Rehearsal::start`], with the options changed by `configure` first
    /// (another Redis, more replicas, more environment variables).
    pub async fn start_with(configure: impl FnOnce(&mut Options)) -> Rehearsal {
        service_kit::tls::ensure_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options {
            postgres_url: required("TEST_DATABASE_URL"),
            redis_url: required("TEST_REDIS_URL"),
            bin_dir: bin_dir(),
            dir: dir.path().to_owned(),
            gateways: 2,
            booking_replicas: 2,
            events_replicas: 1,
            base_port: None,
            extra_env: vec![
                (
                    "GATEWAY__RATE_LIMITS__PER_API_KEY_PER_MINUTE".into(),
                    KEY_LIMIT.to_string(),
                ),
                (
                    "GATEWAY__RATE_LIMITS__PER_TOKEN_PER_MINUTE".into(),
                    "100000".into(),
                ),
            ],
        };
        configure(&mut options);
        let topology = Topology::start(&options)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut rehearsal = Rehearsal {
            topology,
            client,
            owner_token: String::new(),
            _dir: dir,
        };
        rehearsal.owner_token = rehearsal.sign_in(0, "owner@rehearsal.example").await;
        rehearsal
    }

    /// Where the parts' logs are (`<part>.log`) and the mail outbox.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, gateway: usize, path: &str) -> String {
        format!("{}{path}", self.topology.gateways[gateway].base_url())
    }

    pub fn request(
        &self,
        gateway: usize,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(gateway, path))
    }

    pub fn get(&self, gateway: usize, path: &str) -> reqwest::RequestBuilder {
        self.request(gateway, reqwest::Method::GET, path)
    }

    /// Status and JSON body.
    pub async fn send(
        &self,
        _gateway: usize,
        request: reqwest::RequestBuilder,
    ) -> (u16, serde_json::Value) {
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Status and headers.
    pub async fn send_raw(
        &self,
        _gateway: usize,
        request: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap) {
        let response = request.send().await.expect("an answer");
        (response.status().as_u16(), response.headers().clone())
    }

    /// Signs in by one-time code through `gateway`; returns the access token.
    pub async fn sign_in(&self, gateway: usize, email: &str) -> String {
        let requested = self
            .send(
                gateway,
                self.request(gateway, reqwest::Method::POST, "/api/v1/auth/otp/request")
                    .json(&serde_json::json!({ "email": email })),
            )
            .await;
        assert_eq!(requested.0, 200, "{}", requested.1);
        let code = launcher::outbox::take_code(self.topology.outbox(), email)
            .await
            .unwrap();
        let verified = self
            .send(
                gateway,
                self.request(gateway, reqwest::Method::POST, "/api/v1/auth/otp/verify")
                    .json(&serde_json::json!({ "email": email, "otp": code })),
            )
            .await;
        assert_eq!(verified.0, 200, "{}", verified.1);
        verified.1["data"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn create_api_key(&self, name: &str) -> String {
        self.create_api_key_with_id(name).await.0
    }

    /// A workspace API key of the owner's workspace, and its id.
    pub async fn create_api_key_with_id(&self, name: &str) -> (String, String) {
        let created = self
            .send(
                0,
                self.request(0, reqwest::Method::POST, "/v1/auth/api-key")
                    .bearer_auth(&self.owner_token)
                    .json(&serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(created.0, 201, "{}", created.1);
        let data = &created.1["data"];
        (
            data["api_key"].as_str().unwrap().to_owned(),
            data["id"].as_str().unwrap().to_owned(),
        )
    }

    /// A meeting space in a new organization of the owner's workspace: bookable
    /// all day in quarter hours.
    pub async fn meeting_space(&self) -> String {
        let org = self
            .send(
                0,
                self.request(0, reqwest::Method::POST, "/api/v1/organizations")
                    .bearer_auth(&self.owner_token)
                    .json(&serde_json::json!({
                        "name": "Rehearsal", "slug": "rehearsal-org", "timezone": "UTC"
                    })),
            )
            .await;
        assert_eq!(org.0, 201, "{}", org.1);
        let space = self
            .send(
                1,
                self.request(1, reqwest::Method::POST, "/api/v1/meeting-spaces")
                    .bearer_auth(&self.owner_token)
                    .json(&serde_json::json!({
                        "organization_id": org.1["data"]["id"],
                        "name": "Room 1",
                        "slug": "rehearsal-room-1",
                        "capacity": 8,
                        "booking_increment": 15,
                        "min_duration": 15,
                        "max_duration": 240,
                    })),
            )
            .await;
        assert_eq!(space.0, 201, "{}", space.1);
        space.1["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Books `[from, to)` of `space` through `gateway`: status and body.
    pub async fn book(
        &self,
        gateway: usize,
        space: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (u16, serde_json::Value) {
        self.send(
            gateway,
            self.request(gateway, reqwest::Method::POST, "/api/v1/bookings")
                .bearer_auth(&self.owner_token)
                .json(&booking(space, from, to)),
        )
        .await
    }

    /// `POST /api/v1/bookings` requests each booking replica has counted
    /// (its own `/metrics`).
    pub async fn booking_posts_per_replica(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for replica in &self.topology.booking {
            let text = self
                .client
                .get(format!("{}/metrics", replica.base_url()))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            counts.push(
                text.lines()
                    .filter(|l| {
                        l.starts_with("http_requests_total{")
                            && l.contains("method=\"POST\"")
                            && l.contains("route=\"/api/v1/bookings\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum(),
            );
        }
        counts
    }

    /// Events events-service has stored from the stream whose name ends in
    /// `stream` (its own `/metrics`, `events_consumed_total`).
    pub async fn events_consumed(&self, stream: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.topology.events[0].base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let label = format!("{stream}\"");
        text.lines()
            .filter(|l| {
                l.starts_with("events_consumed_total{")
                    && l.contains(&label)
                    && l.contains("outcome=\"stored\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Eight clients book consecutive free quarter hours of `space` through the
    /// first gateway; after `after`, `act` runs; they go on for 2 s more.
    /// Every answer, in order of arrival per client.
    pub async fn book_slots_during(
        &mut self,
        space: &str,
        after: Duration,
        act: impl FnOnce(&mut Rehearsal),
    ) -> Vec<(u16, serde_json::Value)> {
        let stop = Arc::new(AtomicBool::new(false));
        let next_slot = Arc::new(AtomicUsize::new(0));
        let first = day_start(5);
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (stop, next_slot) = (stop.clone(), next_slot.clone());
            let request = self
                .request(0, reqwest::Method::POST, "/api/v1/bookings")
                .bearer_auth(&self.owner_token);
            let space = space.to_owned();
            clients.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let slot = next_slot.fetch_add(1, Ordering::Relaxed) as i64;
                    let from = first + chrono::Duration::minutes(15 * slot);
                    let response = request
                        .try_clone()
                        .unwrap()
                        .json(&booking(&space, from, from + chrono::Duration::minutes(15)))
                        .send()
                        .await
                        .expect("the gateway answers, never hangs");
                    let status = response.status().as_u16();
                    answers.push((status, response.json().await.unwrap_or_default()));
                }
                answers
            }));
        }
        tokio::time::sleep(after).await;
        act(self);
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in clients {
            all.extend(client.await.unwrap());
        }
        all
    }

    /// Eight clients call `GET /v1/auth/me` through `gateway` in a loop, each
    /// reading the whole answer; after `after`, `act` runs (its instant is
    /// returned), and the clients stop at their first failure (or after 3 s).
    /// Every outcome, with when its request started.
    pub async fn load_during(
        &self,
        gateway: usize,
        after: Duration,
        act: impl FnOnce(&Rehearsal),
    ) -> (Instant, Vec<(Instant, Result<u16, reqwest::Error>)>) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let request = self
                .get(gateway, "/v1/auth/me")
                .bearer_auth(&self.owner_token);
            let stop = stop.clone();
            clients.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = match request.try_clone().unwrap().send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            response.bytes().await.map(|_| status)
                        }
                        Err(e) => Err(e),
                    };
                    let failed = outcome.is_err();
                    outcomes.push((started, outcome));
                    if failed {
                        break;
                    }
                }
                outcomes
            }));
        }
        tokio::time::sleep(after).await;
        let acted = Instant::now();
        act(self);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in clients {
            all.extend(client.await.unwrap());
        }
        (acted, all)
    }
}

/// Midnight UTC, `days` from today.
pub fn day_start(days: i64) -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

pub fn booking(space: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> serde_json::Value {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "meeting_space_id": space,
        "start_time": time(from),
        "end_time": time(to),
        "organizer_name": "Rehearsal",
        "organizer_email": "organizer@rehearsal.example",
    })
}
