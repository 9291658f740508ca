//! Bookings: creation under the no-overlap guarantee and the state machine
//! (`pending → confirmed → active → completed`, or `cancelled` with a reason)
//! as the API moves it; the moves that time makes are in [`crate::lifecycle`].
//! Each change records its event ([`crate::outbox`]) in its transaction.
//!
//! No two active bookings (pending, confirmed, active) of one space overlap,
//! buffers included. Each booking stores the interval it blocks,
//! `[start − buffer_before, end + buffer_after)`; on PostgreSQL an exclusion
//! constraint over those half-open ranges refuses overlaps under any
//! concurrency, on SQLite the check runs inside the write-locked transaction
//! that inserts or moves the booking. Either way the answer is 409 naming the
//! booking in the way.

use crate::availability::{self, ACTIVE_STATUSES};
use crate::idempotency::{self, Claim};
use crate::input::{self, MAX_NAME, MAX_TEXT, Problems};
use crate::meeting_spaces::{
    self, Bookable, Hours, MAX_BUFFER_MINUTES, MAX_DURATION_MINUTES, Space,
};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope};
use crate::outbox::{self, BookingEvent};
use crate::schema::bookings;
use crate::tenancy::Caller;
use crate::{BookingState, Failure, workspace_with};
use actix_web::{HttpRequest, HttpResponse, web};
use cache::Quota;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::{Identity, Scope};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{Database, DbConnection, StoreError};
use utoipa::{IntoParams, ToSchema};

/// Name of the PostgreSQL exclusion constraint (see the migration).
const NO_OVERLAP: &str = "bookings_no_overlap";
/// Check-in opens this long before a booking starts, when its start is
/// announced (`booking.start`).
pub const CHECK_IN_EARLY_MINUTES: i64 = 15;

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Made without a credential on a public space; awaits confirmation.
    Pending,
    Confirmed,
    /// In progress: checked in, or started on a space without check-in.
    Active,
    /// Over: checked out, or its end came while it was active.
    Completed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Confirmed,
        Status::Active,
        Status::Completed,
        Status::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Active => "active",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a booking was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// By the organizer (the default).
    User,
    /// By an administrator.
    Admin,
    /// Not checked in within the grace period; set by the service only.
    NoShow,
}

impl CancelReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::Admin => "admin",
            CancelReason::NoShow => "no_show",
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = bookings)]
pub struct BookingRow {
    pub id: String,
    pub workspace_id: String,
    pub organization_id: String,
    pub meeting_space_id: String,
    pub start_time: NaiveDateTime,
    pub end_time: NaiveDateTime,
    pub organizer_name: String,
    pub organizer_email: String,
    pub notes: Option<String>,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub check_in_deadline: Option<NaiveDateTime>,
    pub checked_in_at: Option<NaiveDateTime>,
    pub checked_out_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingView {
    /// `bk_…`
    id: String,
    /// `org_…`
    organization_id: String,
    /// `ms_…`
    meeting_space_id: String,
    #[schema(format = DateTime)]
    start_time: String,
    #[schema(format = DateTime)]
    end_time: String,
    organizer_name: String,
    #[schema(format = Email)]
    organizer_email: String,
    notes: Option<String>,
    #[schema(value_type = Status)]
    status: String,
    /// Only when cancelled.
    #[schema(value_type = Option<CancelReason>)]
    cancel_reason: Option<String>,
    /// While pending or confirmed, when the space requires check-in: released
    /// as `no_show` if not checked in by then. Cleared once checked in or cancelled.
    #[schema(format = DateTime)]
    check_in_deadline: Option<String>,
    #[schema(format = DateTime)]
    checked_in_at: Option<String>,
    #[schema(format = DateTime)]
    checked_out_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<BookingRow> for BookingView {
    fn from(r: BookingRow) -> Self {
        BookingView {
            id: r.id,
            organization_id: r.organization_id,
            meeting_space_id: r.meeting_space_id,
            start_time: input::wire_time(r.start_time),
            end_time: input::wire_time(r.end_time),
            organizer_name: r.organizer_name,
            organizer_email: r.organizer_email,
            notes: r.notes,
            status: r.status,
            cancel_reason: r.cancel_reason,
            check_in_deadline: r.check_in_deadline.map(input::wire_time),
            checked_in_at: r.checked_in_at.map(input::wire_time),
            checked_out_at: r.checked_out_at.map(input::wire_time),
            created_at: input::wire_time(r.created_at),
            updated_at: input::wire_time(r.updated_at),
        }
    }
}

fn find(conn: &mut DbConnection, workspace: &str, id: &str) -> Result<BookingRow, Failure> {
    bookings::table
        .filter(bookings::id.eq(id))
        .filter(bookings::workspace_id.eq(workspace))
        .select(BookingRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Failure::Api(ApiError::not_found("booking")))
}

/// The interval a booking of `[start, end)` keeps others from.
pub fn blocked(
    space: &Space,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        start - Duration::minutes(space.row.buffer_before.into()),
        end + Duration::minutes(space.row.buffer_after.into()),
    )
}

/// When a booking starting at `start` must be checked into, if the space
/// asks for check-in.
fn check_in_deadline(space: &Space, start: DateTime<Utc>) -> Option<NaiveDateTime> {
    space
        .row
        .requires_check_in
        .then(|| (start + Duration::minutes(space.row.check_in_grace_minutes.into())).naive_utc())
}

/// The first active booking of the space (other than `except`) whose blocked
/// interval overlaps `[from, to)`.
pub fn overlapping(
    conn: &mut DbConnection,
    space_id: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    except: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let earliest = from - Duration::minutes(MAX_DURATION_MINUTES + 2 * MAX_BUFFER_MINUTES);
    let mut q = bookings::table
        .filter(bookings::meeting_space_id.eq(space_id.to_owned()))
        .filter(bookings::status.eq_any(ACTIVE_STATUSES))
        .filter(bookings::blocked_start.ge(earliest.naive_utc()))
        .filter(bookings::blocked_start.lt(to.naive_utc()))
        .filter(bookings::blocked_end.gt(from.naive_utc()))
        .select(bookings::id)
        .order(bookings::blocked_start.asc())
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(bookings::id.ne(id.to_owned()));
    }
    q.first(conn).optional().map_err(StoreError::from)
}

fn conflict(with: Option<&str>) -> ApiError {
    match with {
        Some(id) => ApiError::conflict(format!(
            "the meeting space is already booked at that time (booking {id})"
        ))
        .with_field("start_time", format!("overlaps booking {id}")),
        None => ApiError::conflict("the meeting space was just booked at that time"),
    }
}

/// On SQLite, the overlap check of the write-locked transaction; on
/// PostgreSQL, nothing: the exclusion constraint refuses the write instead.
fn check_overlap(
    conn: &mut DbConnection,
    space_id: &str,
    interval: (DateTime<Utc>, DateTime<Utc>),
    except: Option<&str>,
) -> Result<(), Failure> {
    if let DbConnection::Sqlite(_) = conn
        && let Some(id) = overlapping(conn, space_id, interval, except)?
    {
        return Err(Failure::Api(conflict(Some(&id))));
    }
    Ok(())
}

/// A write refused by the exclusion constraint becomes 409 naming the booking
/// in the way, looked up once the failed transaction is gone.
async fn explain_overlap(
    db: &Database,
    failure: Failure,
    space_id: String,
    times: (DateTime<Utc>, DateTime<Utc>),
    except: Option<String>,
) -> ApiError {
    match failure {
        Failure::Store(StoreError::ConstraintViolation { constraint })
            if constraint.as_deref() == Some(NO_OVERLAP) =>
        {
            let found = db
                .run(move |conn| {
                    let space = meeting_spaces::load(conn, None, &space_id)?;
                    Ok::<_, Failure>(overlapping(
                        conn,
                        &space_id,
                        blocked(&space, times.0, times.1),
                        except.as_deref(),
                    )?)
                })
                .await;
            conflict(found.ok().flatten().as_deref())
        }
        other => other.into(),
    }
}

/// The checks of a booking's times against its space: length, alignment,
/// business hours, unavailability. 422 naming the field.
fn check_schedule(
    conn: &mut DbConnection,
    hours: &Hours,
    space: &Space,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), Failure> {
    let r = &space.row;
    let minutes = (end - start).num_minutes();
    let increment = i64::from(r.booking_increment);
    let mut p = Problems::new();
    if (end - start).num_seconds() % 60 != 0 || minutes % increment != 0 {
        p.add(
            "end_time",
            format!("the length must be a multiple of {increment} minutes"),
        );
    } else if minutes < i64::from(r.min_duration) {
        p.add(
            "end_time",
            format!("the booking must last at least {} minutes", r.min_duration),
        );
    } else if minutes > i64::from(r.max_duration) {
        p.add(
            "end_time",
            format!("the booking may last at most {} minutes", r.max_duration),
        );
    }
    if !availability::is_aligned(space.tz, increment, start) {
        p.add(
            "start_time",
            format!(
                "must fall on a {increment}-minute step from midnight in the space's time zone ({})",
                space.tz.name()
            ),
        );
    }
    if !p.is_empty() {
        return Err(Failure::Api(p.finish().unwrap_err()));
    }
    if !availability::within_hours(space.tz, hours, start, end) {
        p.add(
            "start_time",
            "the booking is outside the space's business hours",
        );
    } else if !meeting_spaces::unavailable_between(conn, space, start, end)?.is_empty() {
        p.add(
            "start_time",
            "the meeting space is unavailable at that time",
        );
    }
    p.finish().map_err(Failure::Api)
}

/// The caller's address as the gateway saw it (the gateway replaces any
/// `X-Forwarded-For` a client sends).
fn client_ip(req: &HttpRequest) -> String {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

async fn limit_anonymous(state: &BookingState, ip: &str) -> Result<(), ApiError> {
    let quota = Quota::new(
        state.rules.anonymous_per_minute,
        std::time::Duration::from_secs(60),
    );
    let decision = state
        .cache
        .rate_limit(&format!("bookings:anonymous:{ip}"), quota)
        .await
        .map_err(|e| ApiError::service_unavailable("rate limiter unavailable").with_source(e))?;
    if decision.allowed {
        Ok(())
    } else {
        let seconds = decision
            .retry_after
            .map_or(1, |d| d.as_secs_f64().ceil() as u64)
            .max(1);
        Err(ApiError::rate_limited(seconds))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    /// `ms_…`
    meeting_space_id: String,
    /// RFC 3339 with an offset; in the future, on an increment step of the space's day.
    #[schema(format = DateTime)]
    start_time: String,
    /// RFC 3339 with an offset; after `start_time`, the length within the space's min/max.
    #[schema(format = DateTime)]
    end_time: String,
    organizer_name: String,
    #[schema(format = Email)]
    organizer_email: String,
    notes: Option<String>,
}

/// Checked fields of a booking request.
struct Details {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    name: String,
    email: String,
}

fn check_details(b: &NewBooking, now: DateTime<Utc>) -> Result<Details, ApiError> {
    let mut p = Problems::new();
    let start = p.time("start_time", &b.start_time);
    let end = p.time("end_time", &b.end_time);
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            p.add("end_time", "must be after start_time");
        }
        if s <= now {
            p.add("start_time", "must be in the future");
        }
    }
    let name = p.name("organizer_name", &b.organizer_name, MAX_NAME);
    let email = p.email("organizer_email", &b.organizer_email);
    if let Some(n) = &b.notes {
        p.text("notes", n, MAX_TEXT);
    }
    p.finish()?;
    Ok(Details {
        start: start.unwrap_or_default(),
        end: end.unwrap_or_default(),
        name,
        email,
    })
}

/// Book a meeting space
///
/// With `bookings:write` the booking is `confirmed`. Without a credential it
/// is possible on spaces with `public_booking` only, is rate-limited per
/// client address, and starts `pending`. Honours `Idempotency-Key`: the same
/// key and body within 24 hours replay the first answer (with
/// `idempotent-replayed: true`).
#[utoipa::path(
    post, path = "/api/v1/bookings", operation_id = "create_booking", tag = "bookings",
    params(crate::openapi::IdempotencyHeader),
    request_body = NewBooking,
    security((), ("bearer_token" = ["bookings:write"]), ("api_key" = ["bookings:write"])),
    responses(
        (status = 201, description = "The new booking.", body = Envelope<BookingView>),
        (status = 401, description = "No credential, for a space that is not public.", body = ErrorEnvelope),
        (status = 403, description = "Without `bookings:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space (visible to the caller).", body = ErrorEnvelope),
        (status = 409, description = "Overlaps an active booking (buffers included); `message` and `errors[0].message` name it.", body = ErrorEnvelope),
        (status = 422, description = "A bad field (times, length, alignment, business hours, unavailability, email, text lengths), or an `Idempotency-Key` reused with another body.", body = ErrorEnvelope),
        (status = 429, description = "Too many anonymous bookings from this address.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    req: HttpRequest,
    identity: Caller,
    body: Json<NewBooking>,
    state: web::Data<BookingState>,
) -> Result<HttpResponse, ApiError> {
    let workspace = if identity.is_anonymous() {
        None
    } else {
        Some(
            identity
                .workspace_for(
                    &state,
                    &Scope::BOOKINGS_WRITE,
                    ("meeting_space_id", Some(&body.meeting_space_id)),
                )
                .await?,
        )
    };
    let body = body.into_inner();
    let details = check_details(&body, Utc::now())?;
    input::known_id(
        prefix::MEETING_SPACE,
        &body.meeting_space_id,
        "meeting space",
    )?;
    let scope = match &workspace {
        Some(w) => w.clone(),
        None => {
            let ip = client_ip(&req);
            limit_anonymous(&state, &ip).await?;
            format!("anonymous:{ip}")
        }
    };
    let claim = Claim::from_request(&req, &scope, &body)?;
    let space_id = body.meeting_space_id.clone();
    let times = (details.start, details.end);
    let booking = NewRow {
        id: ids::new_id(prefix::BOOKING),
        status: if workspace.is_some() {
            Status::Confirmed
        } else {
            Status::Pending
        },
        details,
        notes: body.notes,
        created_by: identity.principal_id.clone(),
        created_at: Utc::now().naive_utc(),
        request_id: service_kit::request_id::current(),
    };
    let spaces = state.spaces.clone();
    let wanted = space_id.clone();
    let outcome = idempotency::respond_single_write(&state.db, claim, move |conn| {
        let workspace = workspace.as_deref();
        // First against the space as last read. Should it have changed since,
        // the write finds another version (or the checks may have refused on
        // old rules): the checks then run again on a fresh read.
        let (mut bookable, mut fresh) = match spaces.last_seen(&wanted) {
            Some(seen) => (seen, false),
            None => (spaces.read(conn, workspace, &wanted)?, true),
        };
        for _ in 0..MAX_VERSION_ATTEMPTS {
            let refused = match insert_checked(conn, &bookable, workspace, &booking) {
                Ok(Some(row)) => return Ok(ApiResponse::created(BookingView::from(row))),
                Ok(None) => None,
                Err(Failure::Api(e)) if !fresh => Some(e),
                Err(e) => return Err(e),
            };
            let latest = spaces.read(conn, workspace, &wanted)?;
            if let Some(e) = refused
                && latest.space.row.version == bookable.space.row.version
            {
                return Err(Failure::Api(e));
            }
            (bookable, fresh) = (latest, true);
        }
        Err(Failure::Api(ApiError::conflict(
            "the meeting space kept changing while it was being booked; try again",
        )))
    })
    .await;
    match outcome {
        Ok(response) => {
            state.nudge.nudge();
            Ok(response)
        }
        Err(failure) => Err(explain_overlap(&state.db, failure, space_id, times, None).await),
    }
}

/// Reads of a changing space a booking makes before it gives up (409).
const MAX_VERSION_ATTEMPTS: usize = 3;

/// A booking about to be written, whatever version of its space it meets.
struct NewRow {
    id: String,
    status: Status,
    details: Details,
    notes: Option<String>,
    created_by: String,
    created_at: NaiveDateTime,
    /// Of the request that makes it, for its `booking.created`.
    request_id: Option<String>,
}

/// Checks `b` against `bookable` and writes it with its `booking.created`, in
/// one statement that finds the space still at the version checked: `None`
/// when it is not there any more (changed or deleted), for the caller to read
/// it again. On PostgreSQL the booking and the outbox row are one statement
/// (`outbox::execute_with_event`), so that without an `Idempotency-Key` a
/// booking stays one round trip with no transaction around it; SQLite runs in
/// the handler's write-locked transaction and writes them one after the other.
fn insert_checked(
    conn: &mut DbConnection,
    bookable: &Bookable,
    workspace: Option<&str>,
    b: &NewRow,
) -> Result<Option<BookingRow>, Failure> {
    use crate::schema::meeting_spaces as spaces;
    use diesel::IntoSql;
    use diesel::sql_types::{Nullable, Text, Timestamp};
    let space = &bookable.space;
    let visible = match workspace {
        Some(w) => space.row.workspace_id == w,
        None => space.row.public_booking,
    };
    if !visible {
        return Err(Failure::Api(ApiError::not_found("meeting space")));
    }
    let d = &b.details;
    check_schedule(conn, &bookable.hours, space, d.start, d.end)?;
    let (blocked_start, blocked_end) = blocked(space, d.start, d.end);
    check_overlap(conn, &space.row.id, (blocked_start, blocked_end), None)?;
    let deadline = check_in_deadline(space, d.start);
    let (start, end) = (d.start.naive_utc(), d.end.naive_utc());
    let source = spaces::table
        .filter(spaces::id.eq(&space.row.id))
        .filter(spaces::version.eq(space.row.version))
        .select((
            b.id.as_str().into_sql::<Text>(),
            spaces::workspace_id,
            spaces::organization_id,
            spaces::id,
            start.into_sql::<Timestamp>(),
            end.into_sql::<Timestamp>(),
            blocked_start.naive_utc().into_sql::<Timestamp>(),
            blocked_end.naive_utc().into_sql::<Timestamp>(),
            d.name.as_str().into_sql::<Text>(),
            d.email.as_str().into_sql::<Text>(),
            b.notes.as_deref().into_sql::<Nullable<Text>>(),
            b.status.as_str().into_sql::<Text>(),
            deadline.into_sql::<Nullable<Timestamp>>(),
            b.created_by.as_str().into_sql::<Text>(),
            b.created_at.into_sql::<Timestamp>(),
            b.created_at.into_sql::<Timestamp>(),
        ));
    let insert = diesel::insert_into(bookings::table)
        .values(source)
        .into_columns((
            bookings::id,
            bookings::workspace_id,
            bookings::organization_id,
            bookings::meeting_space_id,
            bookings::start_time,
            bookings::end_time,
            bookings::blocked_start,
            bookings::blocked_end,
            bookings::organizer_name,
            bookings::organizer_email,
            bookings::notes,
            bookings::status,
            bookings::check_in_deadline,
            bookings::created_by,
            bookings::created_at,
            bookings::updated_at,
        ));
    // What is written, without reading it back.
    let row = BookingRow {
        id: b.id.clone(),
        workspace_id: space.row.workspace_id.clone(),
        organization_id: space.row.organization_id.clone(),
        meeting_space_id: space.row.id.clone(),
        start_time: start,
        end_time: end,
        organizer_name: d.name.clone(),
        organizer_email: d.email.clone(),
        notes: b.notes.clone(),
        status: b.status.as_str().to_owned(),
        cancel_reason: None,
        check_in_deadline: deadline,
        checked_in_at: None,
        checked_out_at: None,
        created_at: b.created_at,
        updated_at: b.created_at,
    };
    let event = outbox::booking_event(BookingEvent::Created, &row, b.request_id.clone());
    let written = match conn {
        DbConnection::Postgresql(pg) => {
            outbox::execute_with_event(pg, insert.returning(bookings::id), &event)?
        }
        DbConnection::Sqlite(_) => {
            let written = insert.execute(conn)?;
            if written > 0 {
                outbox::record(conn, &event)?;
            }
            written
        }
    };
    Ok((written > 0).then_some(row))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookingFilter {
    /// `org_…`
    organization_id: Option<String>,
    /// `ms_…`
    meeting_space_id: Option<String>,
    /// Bookings ending after this time (RFC 3339).
    from: Option<String>,
    /// Bookings starting before this time (RFC 3339).
    to: Option<String>,
    /// `pending`, `confirmed`, `active`, `completed` or `cancelled`.
    status: Option<String>,
    organizer_email: Option<String>,
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// List bookings
///
/// Earliest start first. Needs `bookings:read`.
#[utoipa::path(
    get, path = "/api/v1/bookings", operation_id = "list_bookings", tag = "bookings",
    params(BookingFilter),
    security(("bearer_token" = ["bookings:read"]), ("api_key" = ["bookings:read"])),
    responses(
        (status = 200, description = "A page of bookings.", body = ListEnvelope<Vec<BookingView>>),
        (status = 400, description = "A bad query parameter.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `bookings:read`.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Caller,
    query: Query<BookingFilter>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<Vec<BookingView>>, ApiError> {
    let workspace = identity.list_workspace(&Scope::BOOKINGS_READ)?;
    let mut f = query.into_inner();
    f.organization_id = identity.list_organization(f.organization_id.as_deref())?;
    let page = OffsetQuery {
        page: f.page,
        limit: f.limit,
    }
    .validate()?;
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                input::parse_time(t).map(|t| t.naive_utc()).ok_or_else(|| {
                    ApiError::invalid_query(field, "must be an RFC 3339 time with an offset")
                })
            })
            .transpose()
    };
    input::query_text("organization_id", f.organization_id.as_deref())?;
    input::query_text("meeting_space_id", f.meeting_space_id.as_deref())?;
    input::query_text("organizer_email", f.organizer_email.as_deref())?;
    let from = time("from", &f.from)?;
    let to = time("to", &f.to)?;
    let status = f
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::invalid_query(
                    "status",
                    "must be pending, confirmed, active, completed or cancelled",
                )
            })
        })
        .transpose()?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            let filtered = || {
                let mut q = bookings::table.into_boxed();
                if let Some(w) = &workspace {
                    q = q.filter(bookings::workspace_id.eq(w.clone()));
                }
                if let Some(v) = &f.organization_id {
                    q = q.filter(bookings::organization_id.eq(v.clone()));
                }
                if let Some(v) = &f.meeting_space_id {
                    q = q.filter(bookings::meeting_space_id.eq(v.clone()));
                }
                if let Some(v) = from {
                    q = q.filter(bookings::end_time.gt(v));
                }
                if let Some(v) = to {
                    q = q.filter(bookings::start_time.lt(v));
                }
                if let Some(s) = status {
                    q = q.filter(bookings::status.eq(s.as_str()));
                }
                if let Some(v) = &f.organizer_email {
                    q = q.filter(bookings::organizer_email.eq(v.trim().to_owned()));
                }
                q
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows = filtered()
                .order((bookings::start_time.asc(), bookings::id.asc()))
                .select(BookingRow::as_select())
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    let views = rows.into_iter().map(BookingView::from).collect();
    Ok(ApiResponse::ok(views).meta(page.meta(total as u64)))
}

/// Get a booking
#[utoipa::path(
    get, path = "/api/v1/bookings/{id}", operation_id = "get_booking", tag = "bookings",
    params(("id" = String, Path, description = "`bk_…`")),
    security(("bearer_token" = ["bookings:read"]), ("api_key" = ["bookings:read"])),
    responses(
        (status = 200, description = "The booking.", body = Envelope<BookingView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `bookings:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such booking in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<BookingView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::BOOKINGS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::BOOKING, &id, "booking")?;
    let row = state
        .db
        .run(move |conn| find(conn, &workspace, &id))
        .await?;
    Ok(ApiResponse::ok(row.into()))
}

/// An absent field stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingChange {
    /// RFC 3339 with an offset; moving needs both times or keeps the other.
    #[schema(format = DateTime)]
    start_time: Option<String>,
    #[schema(format = DateTime)]
    end_time: Option<String>,
    organizer_name: Option<String>,
    #[schema(format = Email)]
    organizer_email: Option<String>,
    notes: Option<String>,
}

/// Reschedule a booking or change its details
///
/// New times obey the same rules as a new booking (future, length, alignment,
/// business hours, unavailability, no overlap). Only pending and confirmed
/// bookings move; completed and cancelled ones do not change.
#[utoipa::path(
    patch, path = "/api/v1/bookings/{id}", operation_id = "update_booking", tag = "bookings",
    params(("id" = String, Path, description = "`bk_…`")),
    request_body = BookingChange,
    security(("bearer_token" = ["bookings:write"]), ("api_key" = ["bookings:write"])),
    responses(
        (status = 200, description = "The booking as changed.", body = Envelope<BookingView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `bookings:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such booking in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "The new times overlap another booking, or the booking's state does not allow the change.", body = ErrorEnvelope),
        (status = 422, description = "A bad field.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Caller,
    path: web::Path<String>,
    body: Json<BookingChange>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<BookingView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::BOOKINGS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::BOOKING, &id, "booking")?;
    let c = body.into_inner();
    let mut p = Problems::new();
    let start = c
        .start_time
        .as_deref()
        .and_then(|t| p.time("start_time", t));
    let end = c.end_time.as_deref().and_then(|t| p.time("end_time", t));
    let name = c
        .organizer_name
        .as_deref()
        .map(|n| p.name("organizer_name", n, MAX_NAME));
    let email = c
        .organizer_email
        .as_deref()
        .map(|e| p.email("organizer_email", e));
    if let Some(n) = &c.notes {
        p.text("notes", n, MAX_TEXT);
    }
    p.finish()?;
    let moving = start.is_some() || end.is_some();
    let request_id = service_kit::request_id::current();
    let spaces = state.spaces.clone();
    let (ws, bid) = (workspace.clone(), id.clone());
    // Filled in by the transaction for the overlap explanation.
    let attempted = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = attempted.clone();
    let outcome = state
        .db
        .transaction(move |conn| {
            let current = find(conn, &ws, &bid)?;
            let status = Status::parse(&current.status).unwrap_or(Status::Cancelled);
            let open = matches!(status, Status::Pending | Status::Confirmed);
            if moving && !open {
                return Err(Failure::Api(ApiError::conflict(format!(
                    "a booking that is {} cannot be rescheduled",
                    status.as_str()
                ))));
            }
            if matches!(status, Status::Completed | Status::Cancelled) {
                return Err(Failure::Api(ApiError::conflict(format!(
                    "a booking that is {} cannot be changed",
                    status.as_str()
                ))));
            }
            if moving {
                let (s, e) = (
                    start.unwrap_or(current.start_time.and_utc()),
                    end.unwrap_or(current.end_time.and_utc()),
                );
                let mut p = Problems::new();
                if e <= s {
                    p.add("end_time", "must be after start_time");
                } else if s <= Utc::now() {
                    p.add("start_time", "must be in the future");
                }
                p.finish()?;
                let bookable = spaces.read(conn, Some(&ws), &current.meeting_space_id)?;
                let space = &bookable.space;
                check_schedule(conn, &bookable.hours, space, s, e)?;
                let (bs, be) = blocked(space, s, e);
                *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((current.meeting_space_id.clone(), (s, e)));
                check_overlap(conn, &space.row.id, (bs, be), Some(&bid))?;
                let deadline = check_in_deadline(space, s);
                diesel::update(bookings::table.filter(bookings::id.eq(&bid)))
                    .set((
                        bookings::start_time.eq(s.naive_utc()),
                        bookings::end_time.eq(e.naive_utc()),
                        bookings::blocked_start.eq(bs.naive_utc()),
                        bookings::blocked_end.eq(be.naive_utc()),
                        bookings::check_in_deadline.eq(deadline),
                    ))
                    .execute(conn)?;
                if s.naive_utc() != current.start_time {
                    // A new start is announced afresh (`booking.start`).
                    diesel::update(bookings::table.filter(bookings::id.eq(&bid)))
                        .set(bookings::start_notified_at.eq(None::<NaiveDateTime>))
                        .execute(conn)?;
                }
            }
            let previous = (current.start_time, current.end_time);
            diesel::update(bookings::table.filter(bookings::id.eq(&bid)))
                .set((
                    bookings::organizer_name.eq(name.unwrap_or(current.organizer_name)),
                    bookings::organizer_email.eq(email.unwrap_or(current.organizer_email)),
                    bookings::notes.eq(c.notes.or(current.notes)),
                    bookings::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            let row = find(conn, &ws, &bid)?;
            // `booking.updated` is the reschedule: only when the times changed.
            if (row.start_time, row.end_time) != previous {
                let mut event = outbox::booking_event(BookingEvent::Updated, &row, request_id);
                event.data["previous_start_time"] = input::wire_time(previous.0).into();
                event.data["previous_end_time"] = input::wire_time(previous.1).into();
                outbox::record(conn, &event)?;
            }
            Ok(row)
        })
        .await;
    match outcome {
        Ok(row) => {
            state.nudge.nudge();
            Ok(ApiResponse::ok(row.into()))
        }
        Err(failure) => {
            let attempt = attempted.lock().unwrap_or_else(|p| p.into_inner()).take();
            match attempt {
                Some((space_id, times)) => {
                    Err(explain_overlap(&state.db, failure, space_id, times, Some(id)).await)
                }
                None => Err(failure.into()),
            }
        }
    }
}

/// A move along the state machine: a conditional update, so concurrent moves
/// (and replicas) cannot both succeed, with its event in the same transaction:
/// `booking.confirmed`, `booking.cancelled`, `booking.end` (check-out); a
/// check-in records `booking.start` when the lifecycle has not announced the
/// start yet (the check-in window opens when the announcement is due).
async fn transition(
    state: &BookingState,
    workspace: String,
    id: String,
    to: Status,
    reason: Option<CancelReason>,
    claim: Option<Claim>,
) -> Result<HttpResponse, ApiError> {
    input::known_id(prefix::BOOKING, &id, "booking")?;
    let from: &'static [&'static str] = match to {
        Status::Confirmed => &["pending"],
        Status::Active => &["confirmed"],
        Status::Completed => &["active"],
        Status::Cancelled => &["pending", "confirmed"],
        Status::Pending => &[],
    };
    let verb = match to {
        Status::Confirmed => "confirmed",
        Status::Active => "checked in",
        Status::Completed => "checked out",
        Status::Cancelled => "cancelled",
        Status::Pending => "made pending",
    };
    let request_id = service_kit::request_id::current();
    let response = idempotency::respond(&state.db, claim, move |conn| {
        let current = find(conn, &workspace, &id)?;
        if !from.contains(&current.status.as_str()) {
            let allowed = from.join(" or ");
            return Err(Failure::Api(ApiError::conflict(format!(
                "a booking that is {} cannot be {verb} (only {allowed} bookings can)",
                current.status
            ))));
        }
        let now = Utc::now();
        if to == Status::Active {
            let opens = current.start_time.and_utc() - Duration::minutes(CHECK_IN_EARLY_MINUTES);
            if now < opens {
                return Err(Failure::Api(ApiError::conflict(format!(
                    "check-in opens {CHECK_IN_EARLY_MINUTES} minutes before the booking starts"
                ))));
            }
            let closes = current
                .check_in_deadline
                .map_or(current.end_time, |d| d.min(current.end_time));
            if now.naive_utc() >= closes {
                return Err(Failure::Api(ApiError::conflict(
                    "the check-in window has closed",
                )));
            }
        }
        let now = now.naive_utc();
        let target = bookings::table
            .filter(bookings::id.eq(&id))
            .filter(bookings::status.eq_any(from));
        let changed = match to {
            Status::Active => diesel::update(target)
                .set((
                    bookings::status.eq(to.as_str()),
                    bookings::check_in_deadline.eq(None::<NaiveDateTime>),
                    bookings::checked_in_at.eq(now),
                    bookings::updated_at.eq(now),
                ))
                .execute(conn)?,
            Status::Completed => diesel::update(target)
                .set((
                    bookings::status.eq(to.as_str()),
                    bookings::checked_out_at.eq(now),
                    bookings::updated_at.eq(now),
                ))
                .execute(conn)?,
            Status::Cancelled => diesel::update(target)
                .set((
                    bookings::status.eq(to.as_str()),
                    bookings::cancel_reason.eq(reason.map(CancelReason::as_str)),
                    bookings::check_in_deadline.eq(None::<NaiveDateTime>),
                    bookings::updated_at.eq(now),
                ))
                .execute(conn)?,
            Status::Confirmed | Status::Pending => diesel::update(target)
                .set((
                    bookings::status.eq(to.as_str()),
                    bookings::updated_at.eq(now),
                ))
                .execute(conn)?,
        };
        if changed == 0 {
            return Err(Failure::Api(ApiError::conflict(
                "the booking changed meanwhile; read it again",
            )));
        }
        let event = match to {
            Status::Confirmed => Some(BookingEvent::Confirmed),
            Status::Cancelled => Some(BookingEvent::Cancelled),
            Status::Completed => Some(BookingEvent::End),
            Status::Active => {
                let unannounced = diesel::update(
                    bookings::table
                        .filter(bookings::id.eq(&id))
                        .filter(bookings::start_notified_at.is_null()),
                )
                .set(bookings::start_notified_at.eq(now))
                .execute(conn)?;
                (unannounced > 0).then_some(BookingEvent::Start)
            }
            Status::Pending => None,
        };
        let row = find(conn, &workspace, &id)?;
        if let Some(kind) = event {
            outbox::record(conn, &outbox::booking_event(kind, &row, request_id))?;
        }
        Ok(ApiResponse::ok(BookingView::from(row)))
    })
    .await?;
    state.nudge.nudge();
    Ok(response)
}

macro_rules! transition_handler {
    ($name:ident, $path:literal, $op:literal, $to:expr, $summary:literal, $description:literal, $ok:literal) => {
        #[doc = $summary]
        #[doc = ""]
        #[doc = $description]
        #[utoipa::path(
            post, path = $path, operation_id = $op, tag = "bookings",
            params(("id" = String, Path, description = "`bk_…`"), crate::openapi::IdempotencyHeader),
            security(("bearer_token" = ["bookings:write"]), ("api_key" = ["bookings:write"])),
            responses(
                (status = 200, description = $ok, body = Envelope<BookingView>),
                (status = 401, description = "No credential.", body = ErrorEnvelope),
                (status = 403, description = "Without `bookings:write`.", body = ErrorEnvelope),
                (status = 404, description = "No such booking in this workspace.", body = ErrorEnvelope),
                (status = 409, description = "The booking's state (or the time) does not allow it; `message` says why.", body = ErrorEnvelope),
            )
        )]
        pub async fn $name(
            req: HttpRequest,
            identity: Identity,
            path: web::Path<String>,
            state: web::Data<BookingState>,
        ) -> Result<HttpResponse, ApiError> {
            let workspace = workspace_with(&identity, &Scope::BOOKINGS_WRITE)?;
            let claim = Claim::from_request(&req, &workspace, &serde_json::Value::Null)?;
            transition(&state, workspace, path.into_inner(), $to, None, claim).await
        }
    };
}

transition_handler!(
    confirm,
    "/api/v1/bookings/{id}/confirm",
    "confirm_booking",
    Status::Confirmed,
    "Confirm a pending booking",
    "`pending → confirmed`.",
    "The confirmed booking."
);
transition_handler!(
    check_in,
    "/api/v1/bookings/{id}/check-in",
    "check_in_booking",
    Status::Active,
    "Check in",
    "`confirmed → active`, from 15 minutes before the start until the end (or the check-in deadline).",
    "The active booking."
);
transition_handler!(
    check_out,
    "/api/v1/bookings/{id}/check-out",
    "check_out_booking",
    Status::Completed,
    "Check out",
    "`active → completed`.",
    "The completed booking."
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// `user` (the default) or `admin`; `no_show` is the service's own.
    #[schema(value_type = Option<CancelReason>)]
    reason: Option<CancelReason>,
}

/// Cancel a booking
///
/// `pending | confirmed → cancelled`. The body is optional.
#[utoipa::path(
    patch, path = "/api/v1/bookings/{id}/cancel", operation_id = "cancel_booking", tag = "bookings",
    params(("id" = String, Path, description = "`bk_…`")),
    request_body(content = Option<Cancellation>, description = "Optional."),
    security(("bearer_token" = ["bookings:write"]), ("api_key" = ["bookings:write"])),
    responses(
        (status = 200, description = "The cancelled booking.", body = Envelope<BookingView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `bookings:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such booking in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "The booking is active, completed or cancelled already.", body = ErrorEnvelope),
        (status = 422, description = "A bad `reason`.", body = ErrorEnvelope),
    )
)]
pub async fn cancel(
    identity: Caller,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<BookingState>,
) -> Result<HttpResponse, ApiError> {
    let workspace = workspace_with(&identity, &Scope::BOOKINGS_WRITE)?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        CancelReason::User
    } else {
        service_kit::extract::parse_json::<Cancellation>(&body)?
            .reason
            .unwrap_or(CancelReason::User)
    };
    if reason == CancelReason::NoShow {
        return Err(ApiError::validation(vec![FieldError::new(
            "reason",
            "must be user or admin (no_show is set by the service)",
        )]));
    }
    transition(
        &state,
        workspace,
        path.into_inner(),
        Status::Cancelled,
        Some(reason),
        None,
    )
    .await
}
