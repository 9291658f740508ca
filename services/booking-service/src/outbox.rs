//! What booking-service tells the rest of the platform (DESIGN §9): its part of
//! the event catalog and how each event is recorded, in the outbox table of the
//! booking database, in the same transaction as the change it describes. The
//! relay (`events::config::start_relay`) moves the rows to the event stream.
//!
//! Every event carries `workspace_id`, `organization_id` and `subject_id` (the
//! booking, organization or meeting space it is about), and the id of the
//! request that caused it, when a request did. Times in payloads are RFC 3339,
//! UTC, with milliseconds, as the API writes them.
//!
//! # Booking events
//!
//! `booking.created`, `booking.confirmed`, `booking.updated`,
//! `booking.cancelled`, `booking.start` and `booking.end` share one payload,
//! the booking as it is after the change ([`booking_event`]):
//!
//! ```json
//! {"booking_id": "bk_…", "meeting_space_id": "ms_…", "organization_id": "org_…",
//!  "start_time": "2025-01-15T10:00:00.000Z", "end_time": "2025-01-15T11:00:00.000Z",
//!  "status": "confirmed", "organizer": {"name": "John Doe", "email": "john@example.com"}}
//! ```
//!
//! with, besides:
//!
//! - `booking.cancelled`: `"reason"`: `user`, `admin` or `no_show`;
//! - `booking.updated`: `"previous_start_time"` and `"previous_end_time"`;
//! - events of the lifecycle (`booking.start`, `booking.end`, and
//!   `booking.cancelled` with `no_show`): `"late": true` when emitted more
//!   than one lifecycle interval after they were due (after downtime); absent
//!   otherwise.
//!
//! When each is recorded:
//!
//! | event | recorded when |
//! |---|---|
//! | `booking.created` | `POST /api/v1/bookings` (status `confirmed`, or `pending` when anonymous) |
//! | `booking.confirmed` | `POST …/confirm` (`pending → confirmed`) |
//! | `booking.updated` | `PATCH /api/v1/bookings/{id}` moved the booking (its times changed) |
//! | `booking.cancelled` | `PATCH …/cancel` (`user`, `admin`); the lifecycle's no-show release (`no_show`) |
//! | `booking.start` | the lifecycle, 15 minutes before a confirmed booking starts (at once when it is made, moved or confirmed later than that); a check-in that comes first |
//! | `booking.end` | the lifecycle, at the end of an active booking (`active → completed`); `POST …/check-out` |
//!
//! # `organization.updated`
//!
//! `PATCH /api/v1/organizations/{id}` ([`organization_updated`]):
//!
//! ```json
//! {"organization_id": "org_…", "name": "Acme", "slug": "acme",
//!  "timezone": "Europe/London", "logo": "https://…"}
//! ```
//!
//! (`logo` may be `null`.)
//!
//! # `space.availability_changed`
//!
//! A change that bears on when a meeting space can be booked
//! ([`availability_changed`]):
//!
//! ```json
//! {"meeting_space_id": "ms_…", "organization_id": "org_…", "reason": "business_hours"}
//! ```
//!
//! `reason` is one of [`AvailabilityChange`]: `business_hours` (`PUT
//! …/business-hours`), `unavailability_added`, `unavailability_removed`,
//! `space_updated` (a `PATCH` of the space that changed its time zone or
//! booking rules; or of its organization or group that changed the time zone
//! the space keeps).

use crate::bookings::BookingRow;
use crate::input::wire_time;
use crate::organizations::OrganizationRow;
use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Nullable, Text, Timestamp};
use diesel::{PgConnection, QueryResult, RunQueryDsl};
use events::Event;
use serde_json::json;
use store::{DbConnection, StoreError};

/// The `producer` of every event of this service.
pub const PRODUCER: &str = "booking-service";

/// The booking events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingEvent {
    Created,
    Confirmed,
    Updated,
    Cancelled,
    Start,
    End,
}

impl BookingEvent {
    pub fn name(self) -> &'static str {
        match self {
            BookingEvent::Created => "booking.created",
            BookingEvent::Confirmed => "booking.confirmed",
            BookingEvent::Updated => "booking.updated",
            BookingEvent::Cancelled => "booking.cancelled",
            BookingEvent::Start => "booking.start",
            BookingEvent::End => "booking.end",
        }
    }
}

/// A booking event about `b` as it is after the change. `booking.cancelled`
/// takes its `reason` from the row; the other additions (`previous_*`,
/// `late`) are the caller's: `event.data["late"] = true.into()`.
pub(crate) fn booking_event(
    kind: BookingEvent,
    b: &BookingRow,
    request_id: Option<String>,
) -> Event {
    let mut data = json!({
        "booking_id": b.id,
        "meeting_space_id": b.meeting_space_id,
        "organization_id": b.organization_id,
        "start_time": wire_time(b.start_time),
        "end_time": wire_time(b.end_time),
        "status": b.status,
        "organizer": {"name": b.organizer_name, "email": b.organizer_email},
    });
    if kind == BookingEvent::Cancelled {
        data["reason"] = json!(b.cancel_reason);
    }
    Event::new(PRODUCER, kind.name(), &b.id, data, request_id)
        .with_workspace(&b.workspace_id)
        .with_organization(&b.organization_id)
}

/// `organization.updated` about `org` as it is after the change.
pub(crate) fn organization_updated(
    workspace: &str,
    org: &OrganizationRow,
    request_id: Option<String>,
) -> Event {
    let data = json!({
        "organization_id": org.id,
        "name": org.name,
        "slug": org.slug,
        "timezone": org.timezone,
        "logo": org.logo,
    });
    Event::new(PRODUCER, "organization.updated", &org.id, data, request_id)
        .with_workspace(workspace)
        .with_organization(&org.id)
}

/// Why a space's availability changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityChange {
    BusinessHours,
    UnavailabilityAdded,
    UnavailabilityRemoved,
    SpaceUpdated,
}

impl AvailabilityChange {
    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilityChange::BusinessHours => "business_hours",
            AvailabilityChange::UnavailabilityAdded => "unavailability_added",
            AvailabilityChange::UnavailabilityRemoved => "unavailability_removed",
            AvailabilityChange::SpaceUpdated => "space_updated",
        }
    }
}

/// `space.availability_changed` about the space `space_id`.
pub(crate) fn availability_changed(
    workspace: &str,
    space_id: &str,
    organization_id: &str,
    reason: AvailabilityChange,
    request_id: Option<String>,
) -> Event {
    let data = json!({
        "meeting_space_id": space_id,
        "organization_id": organization_id,
        "reason": reason.as_str(),
    });
    Event::new(
        PRODUCER,
        "space.availability_changed",
        space_id,
        data,
        request_id,
    )
    .with_workspace(workspace)
    .with_organization(organization_id)
}

/// Writes `event` to the outbox; inside the transaction of the change.
pub(crate) fn record(conn: &mut DbConnection, event: &Event) -> Result<(), StoreError> {
    events::outbox::record(conn, event)
}

/// `statement` and the outbox row of `event` as one PostgreSQL statement:
/// `WITH changed AS (<statement> RETURNING …) INSERT INTO outbox … SELECT …
/// FROM changed`. The event is written once for each row the statement
/// writes, so none when it writes none, and both are atomic without a
/// transaction around them: the booking `INSERT … SELECT` stays one round
/// trip. `statement` must end in a `RETURNING` clause. Returns the rows
/// written to the outbox.
pub(crate) fn execute_with_event<Q>(
    conn: &mut PgConnection,
    statement: Q,
    event: &Event,
) -> QueryResult<usize>
where
    Q: QueryFragment<Pg>,
{
    WithEvent {
        statement,
        event,
        occurred_at: event.occurred_at.naive_utc(),
        data: event.data.to_string(),
    }
    .execute(conn)
}

struct WithEvent<'a, Q> {
    statement: Q,
    event: &'a Event,
    occurred_at: NaiveDateTime,
    data: String,
}

impl<Q> QueryId for WithEvent<'_, Q> {
    type QueryId = ();
    // Prepared statements are then cached by their SQL, which is the same for
    // every booking.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for WithEvent<'_, Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let e = self.event;
        out.push_sql("WITH changed AS (");
        self.statement.walk_ast(out.reborrow())?;
        out.push_sql(
            ") INSERT INTO outbox (id, event_type, occurred_at, workspace_id, \
             organization_id, subject_id, data, producer, request_id) SELECT ",
        );
        out.push_bind_param::<Text, _>(&e.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&e.event_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.occurred_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&e.workspace_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&e.organization_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&e.subject_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.data)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&e.producer)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&e.request_id)?;
        out.push_sql(" FROM changed");
        Ok(())
    }
}

impl<Q> RunQueryDsl<PgConnection> for WithEvent<'_, Q> {}
