//! The content benchmark: Tuzzle's Upload API and CDN through the gateway,
//! with the release auth-service, spaces-service (on the filesystem store, in
//! the run's scratch directory) and gateway (on Redis, as in production), each
//! on its own scratch database.
//!
//! - **Uploads:** `POST /api/v1/upload` of one file of `--upload-mib` MiB
//!   with a space key (`sk_…`), `--upload-concurrency` at once, closed loop;
//!   MB/s of file bytes beside a raw write of the same bytes to files in the
//!   same directory by as many threads for as long. Neither `fsync`s (the
//!   store does not); the kernel's dirty pages are flushed (`sync`) before
//!   each of the two phases.
//! - **Delivery:** `GET /cdn/{handle}/{path}?w=400&f=webp` of a stored
//!   variant, anonymous (a public space), `--cdn-concurrency` connections,
//!   beside nginx serving the same bytes from a file in the same directory.
//! - **First transforms:** a 12-megapixel JPEG (4000×3000, a photo-like
//!   gradient with noise, quality 90) uploaded `--transforms` times; the first
//!   request of each file's 400-pixel WebP variant, one after another (p50,
//!   p99), then `--transform-concurrency` at once (a `503` is retried after
//!   its `Retry-After`, as a client does; the time counts), with
//!   spaces-service's peak RSS over each phase. Beside them, the render alone
//!   in the bench's own process (`media::render`), to show what the service
//!   adds around it.

use crate::api::AuthApi;
use crate::cpu::CpuSample;
use crate::load::{self, Failure, Tally, Worker};
use crate::nginx::Nginx;
use crate::redis_keys::RedisKeys;
use crate::report::{self, millis, rss_row, table, tally_summary, verdict};
use crate::service::{self, GatewayCache, GatewaySettings, Settings};
use crate::setup;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use identity::{IdentitySigner, SigningKey};
use launcher::{Memory, PartProcess, ScratchDatabase};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::collections::VecDeque;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upload MB/s through the gateway over a raw write of the same bytes.
pub const UPLOAD_RATIO_TARGET: f64 = 0.5;
/// Variant requests/s through the gateway over nginx serving the same file.
pub const CDN_RATIO_TARGET: f64 = 0.5;
/// p99 of a first-time 12 MP JPEG → 400 px WebP, through the gateway.
pub const TRANSFORM_P99_TARGET: Duration = Duration::from_millis(300);
/// spaces-service's peak RSS while transforms run at once (decimal MB).
pub const TRANSFORM_RSS_TARGET_BYTES: u64 = 200_000_000;

const POOL_SIZE: u32 = 8;
/// The source of the transforms: 12 megapixels.
const PHOTO_WIDTH: u32 = 4000;
const PHOTO_HEIGHT: u32 = 3000;
const PHOTO_QUALITY: u8 = 90;
/// The variant measured: 400 pixels wide, WebP.
const VARIANT: &str = "w=400&f=webp";
/// The concurrent phase asks for another quality, so each file's variant is
/// rendered for the first time again.
const CONCURRENT_VARIANT: &str = "w=400&f=webp&q=70";
const VARIANT_WIDTH: u32 = 400;
/// Renders of the in-process reference.
const REFERENCE_RENDERS: usize = 10;
const BOUNDARY: &str = "----spaceport-bench-content";

pub struct Options {
    pub upload_concurrency: usize,
    /// Bytes of each uploaded file.
    pub upload_bytes: usize,
    pub cdn_concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Files of the transform phases (each rendered once per phase).
    pub transforms: usize,
    pub transform_concurrency: usize,
    pub database_url: String,
    pub redis_url: String,
    pub auth_bin: PathBuf,
    pub spaces_bin: PathBuf,
    pub gateway_bin: PathBuf,
}

/// A measured throughput phase and the CPU seconds each part spent in it.
pub struct Phase {
    pub tally: Tally,
    pub warmup_errors: u64,
    pub cpu: Option<PhaseCpu>,
}

pub struct PhaseCpu {
    pub gateway: f64,
    pub spaces: f64,
    pub nginx: f64,
    pub bench: f64,
    pub postgres: f64,
    pub redis: f64,
    pub other: f64,
    pub idle: f64,
    pub disturbed: bool,
}

/// First-time renders of one phase.
pub struct Renders {
    pub tally: Tally,
    /// `503`s answered (and retried after `Retry-After`).
    pub busy: u64,
    /// spaces-service's peak RSS over the phase.
    pub memory: Memory,
}

pub struct ContentReport {
    pub nginx_version: String,
    pub upload: Phase,
    pub raw_write: Phase,
    pub cdn: Phase,
    pub nginx: Phase,
    pub variant_bytes: usize,
    pub photo_bytes: usize,
    pub sequential: Renders,
    pub concurrent: Renders,
    /// The render alone, in this process, one after another.
    pub reference: Vec<Duration>,
    pub spaces_memory: Memory,
    pub gateway_memory: Memory,
    pub logs: Vec<(&'static str, (usize, Vec<String>))>,
}

pub async fn run(options: &Options) -> Result<ContentReport> {
    // Declared before the gateway, so the keys go after it.
    let keys = RedisKeys::fresh(&options.redis_url)?;
    let dir = service::scratch_dir()?;
    let nginx = Nginx::start(dir.path(), "/").await?;
    let auth_db = ScratchDatabase::create(&options.database_url, "spaceport_bench_auth")?;
    let spaces_db = ScratchDatabase::create(&options.database_url, "spaceport_bench_spaces")?;
    let gateway_key = SigningKey::generate()?;
    let public_pem = gateway_key.public_pem();
    let (auth, outbox) = service::start_auth(
        &options.auth_bin,
        auth_db.url(),
        POOL_SIZE,
        &public_pem,
        dir.path(),
    )
    .await?;
    let objects = dir.path().join("objects");
    let mut spaces = service::start(
        &options.spaces_bin,
        &Settings {
            name: "spaces-service",
            env_prefix: "SPACES",
            database_url: spaces_db.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &public_pem,
            root_secret: true,
            dir: dir.path(),
        },
        &[(
            "SPACES__STORAGE__URL".to_owned(),
            format!("file://{}", objects.display()),
        )],
    )
    .await?;
    let mut gateway = service::start_gateway(
        &options.gateway_bin,
        &GatewaySettings {
            name: "gateway",
            signing_key_pem: gateway_key.private_pem(),
            upstreams: vec![("AUTH", auth.base_url()), ("SPACES", spaces.base_url())],
            cache: GatewayCache::Redis {
                url: &options.redis_url,
                prefix: keys.prefix(),
            },
            config_file: None,
            dir: dir.path(),
        },
    )
    .await?;

    // A signed-in owner, a public space taking any file up to 5 GiB, its key.
    let auth_api = AuthApi::new(
        auth.addr(),
        IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    )?;
    let session = setup::sign_in(&auth_api, &outbox, "bench-content@example.com").await?;
    let api = Gateway::new(&gateway.base_url())?;
    let bearer = format!("Bearer {}", session.access_token);
    let (handle, key) = api.space(&bearer).await?;
    let key = format!("Bearer {key}");
    let pids = Pids {
        gateway: gateway.pid(),
        spaces: spaces.pid(),
    };

    // Uploads beside raw writes of the same bytes, each after a flush.
    let payload = Bytes::from(noise(options.upload_bytes, 7));
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).context("creating the raw write directory")?;
    flush_dirty_pages()?;
    let writers = (0..options.upload_concurrency)
        .map(|i| RawWriter {
            dir: raw_dir.clone(),
            name: format!("w{i}"),
            written: 0,
            bytes: payload.clone(),
        })
        .collect();
    let raw_write = measure(writers, options, pids).await;
    flush_dirty_pages()?;
    let body = Bytes::from(multipart(&handle, "blob.bin", &payload));
    let (upload_url, key_header) = (api.url("/api/v1/upload")?, header(&key)?);
    let uploaders = (0..options.upload_concurrency)
        .map(|_| Uploader {
            http: api.http.clone(),
            url: upload_url.clone(),
            key: key_header.clone(),
            body: body.clone(),
        })
        .collect();
    let upload = measure(uploaders, options, pids).await;
    drop(body);

    // The photo, stored `--transforms` times (and once for the CDN phase).
    let photo = Bytes::from(photo_jpeg(PHOTO_WIDTH, PHOTO_HEIGHT, PHOTO_QUALITY)?);
    let mut paths = Vec::with_capacity(options.transforms + 1);
    for i in 0..=options.transforms {
        let form = multipart(&handle, &format!("photo-{i}.jpg"), &photo);
        paths.push(api.upload(&key, form).await?);
    }
    let cover = paths.pop().context("the cover photo")?;

    // A stored variant through the gateway's CDN route beside nginx.
    let variant = api.cdn(&format!("/cdn/{cover}?{VARIANT}")).await?;
    let variant_file = nginx.files_root.join("variant.webp");
    std::fs::write(&variant_file, &variant).context("writing the variant for nginx")?;
    let cdn_url = api.url(&format!("/cdn/{cover}?{VARIANT}"))?;
    let nginx_url = reqwest::Url::parse(&format!("http://{}/variant.webp", nginx.files))?;
    let getters = |url: &reqwest::Url| {
        (0..options.cdn_concurrency)
            .map(|_| Getter {
                http: api.http.clone(),
                url: url.clone(),
                expected_len: variant.len(),
            })
            .collect::<Vec<_>>()
    };
    let cdn = measure(getters(&cdn_url), options, pids).await;
    let nginx_phase = measure(getters(&nginx_url), options, pids).await;

    // First renders: one after another, then several at once.
    let reference = render_in_process(&photo).await?;
    let sequential = first_renders(&api, &spaces, &paths, VARIANT, 1).await?;
    let concurrent = first_renders(
        &api,
        &spaces,
        &paths,
        CONCURRENT_VARIANT,
        options.transform_concurrency,
    )
    .await?;

    spaces.ensure_running()?;
    gateway.ensure_running()?;
    let spaces_memory = spaces.memory()?;
    let gateway_memory = gateway.memory()?;
    Ok(ContentReport {
        nginx_version: nginx.version.clone(),
        upload,
        raw_write,
        cdn,
        nginx: nginx_phase,
        variant_bytes: variant.len(),
        photo_bytes: photo.len(),
        sequential,
        concurrent,
        reference,
        spaces_memory,
        gateway_memory,
        logs: vec![
            ("gateway", (gateway.log_lines(), gateway.log_tail(5))),
            ("spaces-service", (spaces.log_lines(), spaces.log_tail(5))),
            ("auth-service", (auth.log_lines(), auth.log_tail(5))),
        ],
    })
}

#[derive(Clone, Copy)]
struct Pids {
    gateway: u32,
    spaces: u32,
}

/// A warm-up, then the measured run, with where the CPU went.
async fn measure<W: Worker>(workers: Vec<W>, options: &Options, pids: Pids) -> Phase {
    let (workers, warmup) = load::run(workers, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(workers, options.duration).await;
    let cpu = before.zip(CpuSample::take()).map(|(b, a)| {
        let usage = b.until(&a, None);
        let gateway = b.pid_secs(&a, pids.gateway);
        let spaces = b.pid_secs(&a, pids.spaces);
        let nginx = b.named_secs(&a, "nginx");
        let redis = b.named_secs(&a, "redis-server");
        PhaseCpu {
            gateway,
            spaces,
            nginx,
            bench: usage.bench,
            postgres: usage.postgres,
            redis,
            other: (usage.other - gateway - spaces - nginx - redis).max(0.0),
            idle: usage.idle,
            disturbed: usage.other - gateway - spaces - nginx - redis > 0.05 * usage.total(),
        }
    });
    Phase {
        tally,
        warmup_errors: warmup.failed(),
        cpu,
    }
}

/// The gateway as a client reaches it.
struct Gateway {
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    fn new(base: &str) -> Result<Gateway> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(Gateway {
            http,
            base: base.to_owned(),
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url> {
        let url = format!("{}{path}", self.base);
        reqwest::Url::parse(&url).with_context(|| format!("the URL {url}"))
    }

    /// `method path` with a credential and a JSON body; `data` of a 2xx answer.
    async fn call(
        &self,
        credential: &str,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let response = self
            .http
            .request(method.clone(), self.url(path)?)
            .header(AUTHORIZATION, credential)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: HTTP {status}: {answer}");
        }
        Ok(answer["data"].clone())
    }

    /// A space whose active upload config takes any safe file up to 5 GiB
    /// and delivers publicly; its handle and a space key for it.
    async fn space(&self, bearer: &str) -> Result<(String, String)> {
        use reqwest::Method;
        let space = self
            .call(
                bearer,
                Method::POST,
                "/api/v1/spaces",
                serde_json::json!({ "name": "Bench media" }),
            )
            .await?;
        let text = |value: &serde_json::Value, field: &str| {
            value[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("an answer without {field}: {value}"))
        };
        let (id, handle) = (text(&space, "id")?, text(&space, "handle")?);
        let config = text(&space, "active_upload_config_id")?;
        self.call(
            bearer,
            Method::PUT,
            &format!("/api/v1/upload-configs/{config}"),
            serde_json::json!({
                "delivery_type": "upload",
                "config": { "validation": {
                    "allowed_formats": null,
                    "max_file_size": 5_u64 << 30,
                }},
            }),
        )
        .await?;
        let key = self
            .call(
                bearer,
                Method::POST,
                &format!("/api/v1/spaces/{id}/api-keys"),
                serde_json::json!({ "name": "bench uploads" }),
            )
            .await?;
        Ok((handle, text(&key, "key")?))
    }

    /// Uploads a multipart `form`; the stored file's `storage_path`.
    async fn upload(&self, key: &str, form: Vec<u8>) -> Result<String> {
        let response = self
            .http
            .post(self.url("/api/v1/upload")?)
            .header(AUTHORIZATION, key)
            .header(CONTENT_TYPE, content_type())
            .body(form)
            .send()
            .await
            .context("uploading")?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status != reqwest::StatusCode::CREATED {
            bail!("uploading: HTTP {status}: {answer}");
        }
        answer["data"]["storage_path"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("an upload answer without data.storage_path: {answer}"))
    }

    /// An anonymous `GET` of a CDN path that must answer 200 with a WebP of
    /// the variant's width (decoded: `x-image-width` is the original's, as
    /// Tuzzle documents); its bytes.
    async fn cdn(&self, path: &str) -> Result<Bytes> {
        let response = self
            .http
            .get(self.url(path)?)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        if status != reqwest::StatusCode::OK {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let size =
            image::ImageReader::with_format(std::io::Cursor::new(&body), image::ImageFormat::WebP)
                .into_dimensions()
                .with_context(|| format!("GET {path}: not a WebP"))?;
        if size.0 != VARIANT_WIDTH {
            bail!(
                "GET {path}: a WebP {} pixels wide, not {VARIANT_WIDTH}",
                size.0
            );
        }
        Ok(body)
    }
}

fn header(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).context("a header value")
}

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A Tuzzle upload form: the space's handle, then `bytes` as `filename`.
fn multipart(handle: &str, filename: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"space\"\r\n\r\n{handle}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `POST /api/v1/upload` of the same form again and again.
struct Uploader {
    http: reqwest::Client,
    url: reqwest::Url,
    key: HeaderValue,
    body: Bytes,
}

impl Worker for Uploader {
    async fn request(&mut self) -> Result<(), Failure> {
        let request = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.key.clone())
            .header(CONTENT_TYPE, content_type())
            .body(self.body.clone());
        load::answer(request, 201).await.map(drop)
    }
}

/// Writes the same bytes to a new file of its own each time.
struct RawWriter {
    dir: PathBuf,
    name: String,
    written: u64,
    bytes: Bytes,
}

impl Worker for RawWriter {
    async fn request(&mut self) -> Result<(), Failure> {
        self.written += 1;
        let path = self.dir.join(format!("{}-{}", self.name, self.written));
        let bytes = self.bytes.clone();
        tokio::task::spawn_blocking(move || std::fs::write(&path, &bytes))
            .await
            .map_err(|e| Failure::new(format!("writer: {e}")))?
            .map_err(|e| Failure::new(format!("write: {e}")))
    }
}

/// `GET url`; the answer must be 200 with the variant's length.
struct Getter {
    http: reqwest::Client,
    url: reqwest::Url,
    expected_len: usize,
}

impl Worker for Getter {
    async fn request(&mut self) -> Result<(), Failure> {
        let body = load::answer(self.http.get(self.url.clone()), 200).await?;
        if body.len() != self.expected_len {
            return Err(Failure::new("another body"));
        }
        Ok(())
    }
}

/// The first request of `variant` of every path, `concurrency` at once;
/// spaces-service's peak RSS over the phase (its high-water mark reset at
/// the start).
async fn first_renders(
    api: &Gateway,
    spaces: &PartProcess,
    paths: &[String],
    variant: &str,
    concurrency: usize,
) -> Result<Renders> {
    reset_peak_rss(spaces.pid())?;
    let queue = Arc::new(Mutex::new(paths.iter().cloned().collect::<VecDeque<_>>()));
    let busy = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, busy) = (queue.clone(), busy.clone());
        let (http, base, variant) = (api.http.clone(), api.base.clone(), variant.to_owned());
        tasks.push(tokio::spawn(async move {
            let api = Gateway { http, base };
            let mut latencies = Vec::new();
            loop {
                let Some(path) = queue.lock().expect("queue").pop_front() else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                loop {
                    match api.first_render(&format!("/cdn/{path}?{variant}")).await? {
                        Render::Done => break,
                        Render::Busy(wait) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a render client panicked")??);
    }
    Ok(Renders {
        tally: Tally::of(latencies, start.elapsed()),
        busy: busy.load(Ordering::Relaxed),
        memory: spaces.memory()?,
    })
}

enum Render {
    Done,
    /// `503`: retry after this long.
    Busy(Duration),
}

impl Gateway {
    /// A variant's first request: 200 rendered for it (`x-cache: MISS`), or
    /// 503 with `Retry-After`.
    async fn first_render(&self, path: &str) -> Result<Render> {
        let response = self.http.get(self.url(path)?).send().await?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (cache, retry_after) = (header("x-cache"), header("retry-after"));
        let body = response.bytes().await?;
        match status.as_u16() {
            200 if cache.as_deref() == Some("MISS") && body.get(8..12) == Some(b"WEBP") => {
                Ok(Render::Done)
            }
            200 => bail!("GET {path}: not a first render (x-cache {cache:?})"),
            503 => {
                let secs = retry_after.and_then(|s| s.parse().ok()).unwrap_or(1);
                Ok(Render::Busy(Duration::from_secs(secs)))
            }
            _ => bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

/// The render alone, one after another, in this process: what the service
/// adds around it is the rest of a first request's time.
async fn render_in_process(photo: &Bytes) -> Result<Vec<Duration>> {
    let photo = photo.clone();
    tokio::task::spawn_blocking(move || {
        let query: Vec<(String, String)> = form_urlencoded::parse(VARIANT.as_bytes())
            .into_owned()
            .collect();
        let transform =
            media::Transform::parse(query).map_err(|e| anyhow!("the variant {VARIANT}: {e:?}"))?;
        let limits = media::Limits::default();
        let mut times = Vec::with_capacity(REFERENCE_RENDERS);
        for _ in 0..REFERENCE_RENDERS {
            let start = Instant::now();
            media::render(&photo, &transform, None, &limits)
                .map_err(|e| anyhow!("rendering in process: {e:?}"))?;
            times.push(start.elapsed());
        }
        times.sort();
        Ok(times)
    })
    .await
    .context("the in-process renders panicked")?
}

/// A photo-like JPEG: smooth gradients, a disc, per-pixel noise.
fn photo_jpeg(width: u32, height: u32, quality: u8) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 24) as i32 - 12
    };
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.2;
        let blue = if disc {
            230.0
        } else {
            128.0 + 100.0 * (fx * 12.0).sin() * (fy * 9.0).cos()
        };
        image::Rgb([255.0 * fx, 255.0 * fy, blue].map(|v| (v as i32 + noise()).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .context("encoding the photo")?;
    Ok(out)
}

/// Deterministic pseudo-random bytes (xorshift): nothing compresses them.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the kernel's dirty pages out, so one phase's writes are not
/// flushed during the next.
fn flush_dirty_pages() -> Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync")?;
    if !status.success() {
        bail!("sync: {status}");
    }
    Ok(())
}

/// Resets a process's `VmHWM` to its current RSS (`5` into `clear_refs`).
fn reset_peak_rss(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("writing {path}"))
}

impl ContentReport {
    fn phases(&self) -> [(&'static str, &Phase); 4] {
        [
            ("upload through the gateway", &self.upload),
            ("raw write", &self.raw_write),
            ("CDN variant through the gateway", &self.cdn),
            ("nginx static", &self.nginx),
        ]
    }

    /// Names of the phases with too many failed requests.
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        self.phases()
            .into_iter()
            .filter(|(_, p)| p.tally.error_ratio() > report::MAX_ERROR_RATIO)
            .map(|(name, _)| name)
            .collect()
    }

    pub fn render(&self, options: &Options) -> String {
        let mb_per_sec = |phase: &Phase| {
            phase.tally.ok as f64 * options.upload_bytes as f64
                / phase.tally.elapsed.as_secs_f64().max(1e-9)
                / 1e6
        };
        let (upload, raw) = (mb_per_sec(&self.upload), mb_per_sec(&self.raw_write));
        let upload_ratio = upload / raw.max(1e-9);
        let (cdn, nginx) = (self.cdn.tally.rate(), self.nginx.tally.rate());
        let cdn_ratio = cdn / nginx.max(1e-9);
        let latencies = |tally: &Tally| {
            format!(
                "(p50 {}, p99 {})",
                millis(tally.latency(0.50)),
                millis(tally.latency(0.99))
            )
        };
        let mib = options.upload_bytes as f64 / (1024.0 * 1024.0);
        let transform_p99 = self.sequential.tally.latency(0.99);
        let reference = |q: f64| {
            let rank =
                ((q * self.reference.len() as f64).ceil() as usize).clamp(1, self.reference.len());
            self.reference.get(rank - 1).copied()
        };
        let rows = vec![
            [
                format!(
                    "upload, {mib:.0} MiB files, {} at once, through the gateway",
                    options.upload_concurrency
                ),
                format!("{upload:.1} MB/s"),
                latencies(&self.upload.tally),
                format!("{upload_ratio:.2} of raw"),
                format!(
                    "target ≥ {UPLOAD_RATIO_TARGET:.2}  {}",
                    verdict(upload_ratio >= UPLOAD_RATIO_TARGET)
                ),
            ],
            [
                format!(
                    "raw write of the same bytes, {} threads, same disk",
                    options.upload_concurrency
                ),
                format!("{raw:.1} MB/s"),
                latencies(&self.raw_write.tally),
                String::new(),
                String::new(),
            ],
            [
                format!(
                    "CDN, stored variant ({} B), {} connections, through the gateway",
                    self.variant_bytes, options.cdn_concurrency
                ),
                format!("{cdn:.1}/s"),
                latencies(&self.cdn.tally),
                format!("{cdn_ratio:.2} of nginx"),
                format!(
                    "target ≥ {CDN_RATIO_TARGET:.2}  {}",
                    verdict(cdn_ratio >= CDN_RATIO_TARGET)
                ),
            ],
            [
                format!("nginx {} static, same bytes", self.nginx_version),
                format!("{nginx:.1}/s"),
                latencies(&self.nginx.tally),
                String::new(),
                String::new(),
            ],
            [
                format!(
                    "first transform, {PHOTO_WIDTH}×{PHOTO_HEIGHT} JPEG ({:.1} MB) → 400 px WebP, one at a time ({})",
                    self.photo_bytes as f64 / 1e6,
                    self.sequential.tally.ok
                ),
                format!("p99 {}", millis(transform_p99)),
                format!("(p50 {})", millis(self.sequential.tally.latency(0.50))),
                String::new(),
                format!(
                    "target < {} ms  {}",
                    TRANSFORM_P99_TARGET.as_millis(),
                    verdict(transform_p99.is_some_and(|p| p < TRANSFORM_P99_TARGET))
                ),
            ],
            [
                format!("  the render alone, in the bench's process ({REFERENCE_RENDERS})"),
                format!("p99 {}", millis(reference(0.99))),
                format!("(p50 {})", millis(reference(0.50))),
                String::new(),
                String::new(),
            ],
            [
                format!(
                    "first transforms, {} at once ({}; {} answered 503 and retried)",
                    options.transform_concurrency, self.concurrent.tally.ok, self.concurrent.busy
                ),
                format!("{:.1}/s", self.concurrent.tally.rate()),
                latencies(&self.concurrent.tally),
                String::new(),
                String::new(),
            ],
            rss_row(
                "spaces-service peak RSS, transforms at once",
                &self.concurrent.memory,
                TRANSFORM_RSS_TARGET_BYTES,
            ),
            rss_row(
                "spaces-service peak RSS, one transform at a time",
                &self.sequential.memory,
                TRANSFORM_RSS_TARGET_BYTES,
            ),
        ];
        let mut out = table(&rows);
        let _ = writeln!(
            out,
            "peak RSS over the whole run: spaces-service {:.1} MB, gateway {:.1} MB",
            report::mb(self.spaces_memory.peak_kb),
            report::mb(self.gateway_memory.peak_kb)
        );
        let mut disturbed = Vec::new();
        for (name, phase) in self.phases() {
            let _ = write!(out, "{}", tally_summary(name, &phase.tally));
            if phase.warmup_errors > 0 {
                let _ = write!(out, "; {} failed during warm-up", phase.warmup_errors);
            }
            out.push('\n');
            if let Some(cpu) = &phase.cpu {
                let _ = writeln!(
                    out,
                    "  cpu s: gateway {:.1}, spaces-service {:.1}, nginx {:.1}, bench {:.1}, \
                     postgres {:.1}, redis {:.1}, other {:.1}, idle {:.1}",
                    cpu.gateway,
                    cpu.spaces,
                    cpu.nginx,
                    cpu.bench,
                    cpu.postgres,
                    cpu.redis,
                    cpu.other,
                    cpu.idle
                );
                if cpu.disturbed {
                    disturbed.push(name);
                }
            }
        }
        out.push_str(&report::disturbed_note(&disturbed));
        for (part, log) in &self.logs {
            out.push_str(&report::log_note(part, log));
        }
        out
    }
}
