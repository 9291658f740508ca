//! spaces-service: content spaces, access control, security settings, upload configs and
//! space API keys, and the content itself: uploads, files, folders and their delivery
//! (`/cdn`).
//!
//! A library (`SpacesService` builds the app, testable in-process or on port 0) and a thin
//! binary. The surface is Tuzzle's Upload API and admin API, in Tuzzle's wire dialect
//! (declared once, in the route table below: `{data}`, Laravel cursor lists, `{message,
//! errors}` with 422 for invalid input); `proto-docs/spaces-service.openapi.json`
//! documents every endpoint.
//!
//! Decisions the Tuzzle reference leaves open:
//! - Who reaches what ([`access`]): workspace credentials reach every space of their
//!   workspace. A space key (`sk_…`, type `space`) reaches its own space only: it may
//!   read and change that space, its settings, configs and space keys (and delete it),
//!   but cannot create spaces or mint keys (403). An account key (type `account`)
//!   reaches every space of its workspace and may create spaces and mint space keys,
//!   never account keys; only a workspace admin (`keys:admin`, not a key) mints or
//!   revokes account keys: a key minting keys as broad as itself would outlive its own
//!   revocation. Anything out of reach answers 404. The gateway describes both types
//!   alike (introspection names the space a key was minted for); spaces-service looks
//!   the type up by the key's id, and refuses (401) a key that is gone.
//! - Names are unique per workspace by their lowercase form (`name_key`, folded by the
//!   service so both databases agree); a name already taken is a validation error on
//!   `name` (422, `The name has already been taken.`), for spaces and upload configs.
//!   Handles (six lowercase letters or digits) and custom domains are unique across the
//!   platform (a taken custom domain is a 409). The database holds all of these, and
//!   that a space's active upload config is one of its own and cannot be deleted.
//! - Unknown body fields are ignored (as Laravel does); the documented ones are checked,
//!   each failure named by its field. Required fields answer `The … field is required.`
//! - `PUT` on a space, access control, security and upload configs changes the fields
//!   named (`{"webhook_url": …}` alone is a whole request); absent fields keep their
//!   value, `null` clears the nullable ones. `DELETE` on access control and security
//!   restores the defaults. `DELETE /api/v1/spaces` takes the id as `?id=` or in a JSON
//!   body `{"id": …}`.
//! - `folder_mode` is `dynamic` (uploads create the folders they name) or `fixed`.
//! - Upload configs ([`upload_configs`]) have Tuzzle's shape; what a request leaves out
//!   takes Tuzzle's defaults (any format but executables and server scripts, up to
//!   50 MB, delivered publicly). `allow_unsigned` needs `unsigned_restrictions`. Lists
//!   leave `config` out. New spaces get `starter` (images up to 10 MiB, signed
//!   uploads), active. Configs stored in the earlier shape were migrated without loss.
//! - Space keys are stored as HMAC-SHA256 under a key derived from `secret.key`, looked
//!   up by that hash. Clients know a key by an integer id, never reused; introspection,
//!   revocations and identities name it by its internal `spk_…` id. Introspection
//!   answers from memory once a key was read (`introspection.cache_ttl_secs`), and every
//!   replica evicts a key as its revocation arrives on the cache bus. `last_used_at` is
//!   written at most once a minute per key.
//! - Events: every change of an existing space (`PUT` on the space, on its access
//!   control or security, and their `DELETE` resets) records `space.updated`
//!   (`{space_id, name, handle, changed}`, `changed` naming the fields that differ)
//!   in the outbox, in the same transaction; a request that changes nothing
//!   records nothing, and neither do creating or deleting a space, upload-config
//!   changes or key minting. The relay publishes them to `events:spaces-service`.
//! - Storage ([`storage`]): file bytes live in an object store through
//!   `object_store` — a directory (`storage.url = "file://./data/objects"`, the
//!   default) or an S3-compatible bucket (`s3://BUCKET`, `storage.endpoint`,
//!   `storage.region`, `storage.path_style`; credentials from the AWS environment
//!   unless `storage.access_key_id`/`secret_access_key` are set). The S3 client is
//!   `object_store`'s `aws-base` with `ring` signing over the workspace's
//!   reqwest/rustls, not its `aws` feature, which would build aws-lc-rs, a second
//!   (C) crypto library. Writes stream in parts of `storage.part_size_bytes`
//!   (5 MiB), waiting for one part to be stored before buffering the next: an
//!   upload holds at most two parts in memory whatever its size.
//! - Files ([`files`]): ids are `fil_<ULID>` and folders `fld_<ULID>`, like every
//!   other id of the platform (Tuzzle shows bare ULIDs; its space ids too, which
//!   are `spc_…` here). A file's bytes are stored under `{handle}/{file id}`
//!   (`object_key`), fixed for its life; its public address is `storage_path` =
//!   `{handle}/{name}` and its `url` is `{delivery.cdn_url}/{storage_path}` (the
//!   documented form: the path already starts with the handle). Names are unique
//!   per space: generated (`image-01HQ…`, `video-…`, `audio-…`, `doc-…`, `file-…`,
//!   from the content's kind) unless the config keeps names
//!   (`generate_filename: false`), then made unique (`photo-2.jpg`) or, with
//!   `unique_filename: false`, refused (409). `status` is `active` (Tuzzle's word
//!   for ready) or `pending`; `type` is the config's `delivery_type`; `hash` is the
//!   SHA-256 of the stored bytes; `storage_meta.face_detections` is always empty.
//!   `PUT /api/v1/files` renames (the address moves, the bytes do not), moves
//!   between folders, relabels; `size`, `storage_path` and `space` describe the
//!   bytes and are accepted only unchanged (files do not move between spaces).
//!   `POST /files/urls` leaves out ids out of reach and signs the URLs of files
//!   that are not public.
//! - Folders ([`folders`]): `path` is the full path with a trailing slash, unique
//!   per space; renames and moves rewrite the subtree's paths (files keep their
//!   addresses). A folder is deleted only when it holds no files (pending ones
//!   included) and no folders (409 otherwise). `security` shows the space's.
//! - Access control ([`access_control`]) cascades file → folder (nearest first) →
//!   space, each answer naming its `source` and `inherited_from`. A file or folder
//!   stores its own setting whole: `PUT …/access-control` starts from what it
//!   inherits and changes the fields named; `DELETE` makes it inherit again. A file
//!   is public when its `type` is `upload` and the setting in force allows public
//!   reading without auth; anything else needs a signed URL or a credential for the
//!   space ([`delivery::Deliverable::is_public`]).
//! - Uploads ([`uploads`]): every upload is checked against an upload config (the
//!   one named by id or name, else the space's active one): its size as it streams
//!   (413 `File too large.` before the rest is read; the request as a whole is
//!   capped by `uploads.max_request_bytes`, actix's payload limits do not apply);
//!   its name (`media::safe_filename`: traversal and control characters 400,
//!   dangerous or double extensions 422 `Security validation failed.`); its type
//!   by its first bytes and its name (a PNG named `.jpg`, or a name whose type is
//!   always recognisable but was not, 422 `File type not allowed.`; executable
//!   content is refused whatever its name); the config's formats; an image's
//!   dimensions and pixel count from its header (decompression bombs refused before
//!   decoding). JPEG, PNG and WebP images up to `uploads.image_memory_bytes` are
//!   read whole and processed (`strip_metadata`, `upload_format`, `upload_quality`;
//!   dimensions and blurhash recorded), a few at a time (one per core); larger ones
//!   are stored as sent, or refused (413) when their config asks for processing.
//!   Other files spool in memory up to one storage part, then stream. A request
//!   stores all its files or none (`files[]` answers a list, `file` one record),
//!   with their rows and `file.uploaded` events in one transaction. Send the form
//!   fields before the files: a file that precedes `space` is streamed to
//!   `_incoming/`, bounded by the request limit, and checked once the form is read
//!   (fields after the files may not change where they go, 422). Uploads into a
//!   disabled space are refused (403). `ref` is unique per space.
//! - Signed uploads: `generate-signed-url` (configs with `is_signed` only) answers
//!   `{url, upload_config_id, space_id, expires, expires_at}`; the URL
//!   (`uploads.public_url` + `/api/v1/upload/signed?…`) carries `expires` and an
//!   HMAC-SHA256 `signature` over the path and every other parameter, sorted
//!   ([`signed_urls`]), under a key derived for that purpose. Its `filename`
//!   becomes the file's `original_name`, its `content_type` must be the content's;
//!   form fields `upload_config_id`/`space_id`, when sent, must be the URL's.
//!   Expired or altered URLs answer 403. Signed and unsigned uploads go to the
//!   config's `storage.folder`.
//! - Unsigned uploads: the config must have `allow_unsigned`; a non-empty
//!   `allowed_referrers` needs a `Referer` whose host matches (`*.example.com`
//!   matches subdomains, not the domain itself); `require_https` reads the
//!   gateway's `x-forwarded-proto`; `max_uploads_per_hour` is a GCRA limit per
//!   config in the shared cache, counted as requests are admitted (429 with
//!   `Retry-After` beyond). Refusals are 403.
//! - Presigned uploads: `presign` checks the name, size and format against the
//!   config, records the file `pending` (its name chosen at once) and answers bare
//!   `{file_id, upload_url, object_key, expires_in}` (201); `upload_url` is S3's own
//!   presigned PUT, or on the filesystem store spaces-service's
//!   `PUT /api/v1/upload/objects/{fileId}?expires&signature` (public at the gateway,
//!   at most the announced size). `confirm` checks the object as an upload is
//!   checked (exact size, content against name and announced type, formats,
//!   dimensions; images processed), then activates the file and records
//!   `file.uploaded`; an object that fails is removed and the file stays pending.
//!   Files still pending `uploads.presign_expires_secs` after their URL expired are
//!   deleted with their objects.
//! - `file.uploaded` (outbox, same transaction as the file's row or activation):
//!   `{file: {id, name, original_name, mime_type, size, storage_path, type,
//!   resource_type, space_id}, webhook_urls}`, `webhook_urls` being the space's
//!   `webhook_url` and the config's `notifications.webhook_url`, each once, left out
//!   when there are none; events-service delivers it.
//! - Delivery ([`delivery`], for the `/cdn` handler): signed delivery URLs carry
//!   `expires` and `signature` (HMAC-SHA256 under their own key, default 1 hour,
//!   at most `delivery.signed_url_max_ttl_secs`), signed over `/{storage_path}`
//!   and every query parameter (transformations included, checked as the CDN
//!   checks them), so they do not depend on where the CDN is mounted. Variants are
//!   stored beside their original at `{handle}/_variants/{file id}/{digest}` and
//!   removed with it.
//! - The CDN ([`cdn`], `GET|HEAD /cdn/{handle}/{name}`, public at the gateway):
//!   errors in Tuzzle's CDN shape (`{error: {code, message, type, details},
//!   request_id}`; only the gateway's and the identity check's refusals come in
//!   the API's). Unknown files and other workspaces' files answer 404 whoever
//!   asks; a name with `..`, `/`, `\` or control characters 400; a file that is
//!   not public needs a credential reaching its space (`spaces:read`; another
//!   workspace's credential gets 404) or a signed URL (403 `unsigned`,
//!   `expired`, `invalid_signature`); a disabled space serves nothing (403).
//!   JPEG, PNG and WebP images take `w h r g f q` (422 `Invalid modifiers`,
//!   each parameter named in `details` and in `x-tzzl-errors`); without `f`,
//!   WebP when `Accept` lists it (`Vary: Accept`); everything else is served as
//!   it is, parameters ignored. A variant's digest is the transform's
//!   normalised key (`w100_h0_rfit_gc_fwebp_q0`, negotiated formats marked),
//!   plus `_m{fingerprint}` of the watermark (its image bytes, position and
//!   opacity) when one applies: a changed watermark makes new variants. The
//!   first requests for a variant share one rendering in this replica; it takes
//!   a transform slot (`image_work`, one per core, shared with uploads) within
//!   `delivery.transform_wait_ms` (else 503 `Server busy, try again later`,
//!   `Retry-After: 1`) and only then reads the original (at most
//!   `delivery.transform_max_source_bytes`; larger images are served only as
//!   they are, or 422 when a transform or watermark is asked). Requests wait
//!   `delivery.transform_timeout_ms` for it (then 504, `Retry-After`); the
//!   rendering, which cannot be interrupted on its blocking thread, keeps its
//!   slot until done and is stored for the next request: what bounds it is the
//!   work (the pixel limit read from the header before decoding, outputs of at
//!   most 4096 pixels a side). Stored variants are streamed from storage
//!   (`x-cache: HIT`; `MISS` when rendered for the request).
//! - A replica remembers between requests ([`cdn::cache`]) the files it
//!   looked up (file, space, access control in force) for
//!   `delivery.cache_ttl_secs`, and up to `delivery.variant_memory_bytes` of
//!   variant bytes (each at most 1 MiB, the oldest out first), so a request
//!   for content already delivered reads neither the database nor storage.
//!   Every change to a space's files, folders or settings forgets the space's
//!   entries at once on every replica (the cache bus, `spaces.delivery`).
//! - The watermark (security settings) is laid over every image delivered,
//!   originals included, while enabled: fetched through `outbound`'s guard
//!   (https and public hosts only, unless `watermarks.allow_private_targets`,
//!   which the settings check obeys too; no redirects; at most
//!   `watermarks.max_bytes`), decoded once, kept by URL, position and opacity
//!   (`watermarks.cache_entries`, least recently used out), fetched again after
//!   `watermarks.refresh_secs`, the copy in hand kept while a refetch fails. An
//!   image whose watermark never could be fetched is not served bare (503).
//! - Delivery headers: strong `ETag`s (an original's SHA-256; a variant's from
//!   it and its digest, known before the variant is), `Last-Modified` (the
//!   file's creation: its bytes never change), 304 on `If-None-Match` /
//!   `If-Modified-Since` before storage is touched, one `Range` per request on
//!   originals (206, 416 with `Content-Range: bytes */size`, `If-Range`; several
//!   ranges get the whole file), variants whole (`Accept-Ranges: none`).
//!   `Cache-Control`: public content `public, max-age={delivery.public_max_age_secs}`
//!   (Tuzzle's 30 days; not `immutable`, since a name may later hold other bytes
//!   or another watermark); a signed URL of a cacheable file `public` until it
//!   expires (Tuzzle: private files are public once signed); with a credential
//!   `private, no-cache`; `authenticated` files `private, no-store`; errors
//!   `no-store`. Images carry `x-image-width`, `x-image-height` (the original's,
//!   as Tuzzle documents) and `x-blurhash`; every answer `x-content-type-options:
//!   nosniff` and a sandboxing `content-security-policy`. Bodies stream from
//!   storage with their `Content-Length`. Metrics: `cdn_transforms_total{outcome}`,
//!   `cdn_transform_duration_seconds`, `cdn_variant_requests_total{cache}`.
//! - Deleting a space ([`purge`]) deletes its row, configs and keys at once and
//!   records a purge in the same transaction; its files, objects (everything under
//!   its handle) and folders go in the background, worked at start-up, after each
//!   deletion and every 30 s, resumable after a crash (every step repeats safely),
//!   retried with backoff. Files and folders have no foreign key to their space for
//!   that reason; every read of them goes through their space, so a deleted space's
//!   content is gone at once. Its handle stays taken until the purge is over.

pub mod access;
pub mod access_control;
pub mod addresses;
pub mod cdn;
pub mod config;
pub mod delivery;
pub mod files;
mod folders;
pub mod handles;
pub mod openapi;
pub mod purge;
pub mod schema;
pub mod secrets;
mod settings;
pub mod signed_urls;
pub mod space_keys;
mod spaces;
pub mod storage;
mod upload_configs;
mod uploads;

use actix_web::web;
use bootstrap::Backing;
use cache::Cache;
use config::SpacesConfig;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use identity::revocation::{self, Revocation};
use service_kit::cli::ServicePart;
use service_kit::pagination::CursorCodec;
use service_kit::{ApiError, AppSpec};
use space_keys::KeyCache;
use std::sync::Arc;
use std::time::Duration;
use store::{Database, Migrations, StoreError};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

/// Shared state of the handlers.
pub struct SpacesState {
    pub db: Database,
    pub cache: Cache,
    pub secrets: secrets::Keys,
    pub cursors: CursorCodec,
    pub keys: Arc<KeyCache>,
    pub allow_private_webhooks: bool,
    /// Wakes this replica's outbox relay after a commit that recorded events.
    pub events: events::Nudge,
    /// Where file bytes live.
    pub storage: storage::Storage,
    /// Delivery URLs, plain and signed.
    pub delivery: delivery::Delivery,
    pub settings: ContentSettings,
    /// Wakes the purge of deleted spaces.
    pub purges: purge::Purges,
    /// Bounds how many images are decoded at once (one per core), so that
    /// image work cannot take every core and all the memory.
    pub image_work: Arc<tokio::sync::Semaphore>,
    /// The `/cdn` handler's settings, variants in flight and watermarks.
    pub cdn: cdn::Cdn,
}

/// The settings of uploads that handlers read.
#[derive(Debug, Clone)]
pub struct ContentSettings {
    pub uploads: config::UploadsConfig,
    /// `storage.part_size_bytes`.
    pub part_size: u64,
}

impl SpacesState {
    /// Tells the CDN of every replica that what the space's files serve, or
    /// to whom, may have changed ([`cdn::cache::DeliveryCache::space_changed`]).
    async fn space_content_changed(&self, space_id: &str) {
        self.cdn.cache.space_changed(&self.cache, space_id).await;
    }

    /// Tells every gateway (and every replica's key cache) that a space key is
    /// gone. A failure is logged: the deletion itself has happened.
    async fn revoke_space_keys(&self, ids: Vec<String>) {
        for id in ids {
            self.keys.evict(&id);
            let revocation = Revocation::SpaceKey { id };
            if let Err(e) = self
                .cache
                .publish(revocation::CHANNEL, &revocation.to_bytes())
                .await
            {
                tracing::error!(error = %e, ?revocation, "could not publish a revocation");
            }
        }
    }
}

pub struct SpacesService;

impl ServicePart for SpacesService {
    const NAME: &'static str = "spaces-service";
    const ENV_PREFIX: &'static str = "SPACES";
    type Config = SpacesConfig;

    fn default_config() -> SpacesConfig {
        SpacesConfig::defaults()
    }

    async fn migrate(config: &SpacesConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: SpacesConfig) -> anyhow::Result<AppSpec> {
        let secrets = secrets::Keys::load(config.secret.key.expose(), &config.secret.key_file)?;
        let mut backing = Backing::connect(Self::NAME, &config, &MIGRATIONS).await?;
        let keys = Arc::new(KeyCache::new(Duration::from_secs(
            config.introspection.cache_ttl_secs,
        )));
        keys.clone().listen(&backing.cache).await?;
        let nudge = backing
            .start_relay(Self::NAME, &config, &config.events)
            .await?;
        let storage = storage::Storage::from_config(&config.storage)?;
        let purges = purge::Purges::start(
            backing.db.clone(),
            storage.clone(),
            Duration::from_secs(config.uploads.presign_expires_secs),
        );
        let cdn = cdn::Cdn::new(&config)?;
        cdn.cache.clone().listen(&backing.cache).await?;
        let cdn_metrics = cdn.variants.metrics.clone();
        let state = web::Data::new(SpacesState {
            cdn,
            delivery: delivery::Delivery::new(&config.delivery, &secrets),
            settings: ContentSettings {
                uploads: config.uploads.clone(),
                part_size: config.storage.part_size_bytes as u64,
            },
            storage,
            purges,
            image_work: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            db: backing.db.clone(),
            cache: backing.cache.clone(),
            cursors: secrets.cursor_codec(),
            secrets,
            keys,
            allow_private_webhooks: config.webhooks.allow_private_targets,
            events: nudge,
        });
        let mut spec = backing
            .app_spec(Self::NAME, &config, move |cfg| {
                cfg.app_data(state.clone());
                register(cfg);
            })
            .families(families());
        cdn_metrics.register(spec.metrics.registry_mut());
        Ok(spec)
    }
}

// Routes are tried in this order, each pattern with a parameter by a regular
// expression: the hot paths (the gateway's introspection of space keys, the
// CDN) come first, so their requests are not matched against the others.
service_kit::service_routes! {
    SpaceOs {
        "/internal/space-keys/introspect" => [post => space_keys::introspect],
    }
    Tuzzle {
        // Errors in Tuzzle's CDN shape, written by the handler itself.
        "/cdn/{handle}/{name}" => [
            get => cdn::get,
            head => cdn::head,
        ],
        "/api/v1/spaces" => [
            get => spaces::list,
            post => spaces::create,
            delete => spaces::delete_by_query,
        ],
        "/api/v1/spaces/{id}" => [
            get => spaces::get,
            put => spaces::update,
            delete => spaces::delete,
        ],
        "/api/v1/spaces/{id}/access-control" => [
            put => settings::set_access_control,
            delete => settings::reset_access_control,
        ],
        "/api/v1/spaces/{id}/security" => [
            put => settings::set_security,
            delete => settings::reset_security,
        ],
        "/api/v1/spaces/{id}/api-keys" => [
            post => space_keys::create,
            get => space_keys::list,
        ],
        "/api/v1/spaces/{id}/api-keys/{key_id}" => [delete => space_keys::delete],
        "/api/v1/upload-configs" => [
            get => upload_configs::list,
            post => upload_configs::create,
        ],
        // Before `{id}`, which would take `all` for an id.
        "/api/v1/upload-configs/all" => [get => upload_configs::list_all],
        "/api/v1/upload-configs/{id}" => [
            get => upload_configs::get,
            put => upload_configs::update,
            delete => upload_configs::delete,
        ],
        "/api/v1/upload" => [post => uploads::direct],
        "/api/v1/upload/generate-signed-url" => [post => uploads::generate_signed_url],
        "/api/v1/upload/signed" => [post => uploads::signed],
        "/api/v1/upload/unsigned/{spaceHandle}/{configName}" => [post => uploads::unsigned],
        "/api/v1/upload/presign" => [post => uploads::presign],
        "/api/v1/upload/objects/{fileId}" => [put => uploads::put_object],
        "/api/v1/upload/confirm/{fileId}" => [post => uploads::confirm],
        "/api/v1/files" => [
            get => files::list,
            put => files::update,
        ],
        // Before `{id}`, which would take `by-ref` and `urls` for ids.
        "/api/v1/files/by-ref" => [get => files::by_ref],
        "/api/v1/files/urls" => [post => files::urls],
        "/api/v1/files/{id}" => [
            get => files::get,
            delete => files::delete,
        ],
        "/api/v1/files/{id}/signed-url" => [post => files::signed_url],
        "/api/v1/files/{id}/access-control" => [
            put => files::set_access_control,
            delete => files::reset_access_control,
        ],
        "/api/v1/folders" => [
            get => folders::list,
            post => folders::create,
        ],
        "/api/v1/folders/{id}" => [
            get => folders::get,
            put => folders::update,
            delete => folders::delete,
        ],
        "/api/v1/folders/{id}/access-control" => [
            put => folders::set_access_control,
            delete => folders::reset_access_control,
        ],
    }
}

/// A failure inside a transaction: an answer for the client, or the database's.
/// Database conflicts become 409s that say which rule was broken.
#[derive(Debug)]
pub(crate) enum Fail {
    Api(ApiError),
    Store(StoreError),
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail::Api(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<diesel::result::Error> for Fail {
    fn from(e: diesel::result::Error) -> Self {
        Fail::Store(e.into())
    }
}

/// What each named constraint means to a client: a name already taken is a
/// validation error on `name` (as Laravel's `unique` rule makes it), the
/// others conflicts that say which rule was broken.
const CONSTRAINTS: &[(&str, Option<&str>)] = &[
    ("spaces_name_unique", None),
    ("spaces_handle_unique", Some("the handle is taken")),
    (
        "spaces_custom_domain_unique",
        Some("the custom domain is used by another space"),
    ),
    ("upload_configs_name_unique", None),
    (
        "spaces_active_upload_config_fk",
        Some("the active upload config cannot be deleted"),
    ),
    ("files_storage_path_unique", Some("the file name is taken")),
    ("files_reference_unique", Some("the reference is taken")),
    ("folders_path_unique", Some("the folder exists")),
];

impl From<Fail> for ApiError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Api(e) => e,
            Fail::Store(e) => {
                let meaning = e
                    .constraint()
                    .and_then(|c| CONSTRAINTS.iter().find(|(name, _)| *name == c))
                    .map(|(_, meaning)| *meaning);
                match meaning {
                    Some(None) => spaces::name_taken_error(),
                    Some(Some(message)) => ApiError::conflict(message).with_source(e),
                    None => e.into(),
                }
            }
        }
    }
}

/// Now, to the millisecond: what cursors can name exactly.
pub(crate) fn now() -> chrono::NaiveDateTime {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis())
        .unwrap_or(now)
        .naive_utc()
}

pub(crate) fn rfc3339(t: chrono::NaiveDateTime) -> String {
    service_kit::time::format_rfc3339(t.and_utc())
}

/// Unix seconds in RFC 3339 (`None` out of chrono's range).
pub(crate) fn unix_rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(service_kit::time::format_rfc3339)
}

/// The backend type of boxed queries.
pub(crate) type Backend = <store::DbConnection as diesel::Connection>::Backend;

/// `created_at` of a cursor position, or 400 for a position no list wrote.
pub(crate) fn cursor_time(ms: i64) -> Result<chrono::NaiveDateTime, ApiError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .ok_or_else(|| ApiError::invalid_query("cursor", "is not a valid cursor"))
}

/// Where a page of a list ordered by `(created_at, id)` starts: after the
/// position its cursor names (400 for a position no list wrote), or at the
/// beginning.
pub(crate) fn page_start(
    page: &service_kit::pagination::CursorPage,
) -> Result<Option<(chrono::NaiveDateTime, String)>, ApiError> {
    match &page.after {
        Some(p) => Ok(Some((cursor_time(p.created_at_ms)?, p.id.clone()))),
        None => Ok(None),
    }
}

/// Cuts `rows`, loaded `limit + 1` at a time, to the page: whether more
/// follow, and the position of its last row (`created_at`, `id`).
pub(crate) fn page_end<T>(
    rows: &mut Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> (chrono::NaiveDateTime, &str),
) -> (bool, Option<service_kit::pagination::CursorPosition>) {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let last = rows.last().map(|row| {
        let (created_at, id) = position(row);
        service_kit::pagination::CursorPosition {
            created_at_ms: created_at.and_utc().timestamp_millis(),
            id: id.to_owned(),
        }
    });
    (has_more, last)
}

/// Text a person typed (names, descriptions): no control characters, which
/// some databases refuse and no display wants. Line breaks are allowed where
/// `multiline`.
pub(crate) fn plain_text(value: &str, multiline: bool) -> bool {
    value
        .chars()
        .all(|c| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t')))
}
