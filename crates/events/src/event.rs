//! The envelope every event travels in, from the outbox through the stream to
//! events-service.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Id prefix of events (DESIGN §5: `evt_<ULID>`).
pub const EVENT_ID_PREFIX: &str = service_kit::ids::prefix::EVENT;

/// Something that happened in one service, as the rest of the platform sees it.
///
/// On the wire (stream entries, events-service):
///
/// ```json
/// {"id": "evt_01J…", "type": "booking.created", "occurred_at": "2025-01-15T10:00:00.000Z",
///  "workspace_id": "wrk_01J…", "organization_id": "org_01J…", "subject_id": "bk_01J…",
///  "data": {…}, "producer": "booking-service", "request_id": "req_01J…"}
/// ```
///
/// Absent workspace, organization and request ids are written as `null` and may
/// be left out when reading; unknown fields are ignored, so producers can add
/// fields before consumers know them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_<ULID>`; consumers deduplicate by it (delivery is at-least-once).
    pub id: String,
    /// A dotted name from the event catalog (`proto-docs/events.md`), such as
    /// `booking.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened; RFC 3339 UTC with milliseconds on the wire.
    #[serde(with = "service_kit::time::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The id of the thing the event is about (a booking, a member, a space).
    pub subject_id: String,
    /// The payload; its shape is fixed per `type` by the catalog.
    pub data: serde_json::Value,
    /// The service that recorded the event, such as `booking-service`.
    pub producer: String,
    /// The request that caused the change, when a request did.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Event {
    /// A new event that occurred now, with a fresh id.
    ///
    /// The request id is an argument, not read from
    /// [`service_kit::request_id::current`], because that task-local is not
    /// visible where events are usually built: inside a `Database::transaction`
    /// closure, which runs on a blocking thread. Capture it before the
    /// transaction and move it in:
    ///
    /// ```ignore
    /// let request_id = service_kit::request_id::current();
    /// db.transaction(move |conn| {
    ///     let booking = insert_booking(conn, &new)?;
    ///     let event = Event::new("booking-service", "booking.created", &booking.id,
    ///                            json!({ "booking_id": booking.id }), request_id)
    ///         .with_workspace(&booking.workspace_id);
    ///     events::outbox::record(conn, &event)?;
    ///     Ok(booking)
    /// }).await?;
    /// relay_nudge.nudge();
    /// ```
    ///
    /// Build the event inside the transaction, after the change: its
    /// `occurred_at` then follows the change it describes.
    pub fn new(
        producer: impl Into<String>,
        event_type: impl Into<String>,
        subject_id: impl Into<String>,
        data: serde_json::Value,
        request_id: Option<String>,
    ) -> Event {
        Event {
            id: service_kit::ids::new_id(EVENT_ID_PREFIX),
            event_type: event_type.into(),
            occurred_at: to_millis(Utc::now()),
            workspace_id: None,
            organization_id: None,
            subject_id: subject_id.into(),
            data,
            producer: producer.into(),
            request_id,
        }
    }

    pub fn with_workspace(mut self, workspace_id: impl Into<String>) -> Event {
        self.workspace_id = Some(workspace_id.into());
        self
    }

    pub fn with_organization(mut self, organization_id: impl Into<String>) -> Event {
        self.organization_id = Some(organization_id.into());
        self
    }

    /// Overrides when the event occurred (kept to the millisecond, the wire's
    /// precision, so that an event reads back equal to what was recorded).
    pub fn with_occurred_at(mut self, occurred_at: DateTime<Utc>) -> Event {
        self.occurred_at = to_millis(occurred_at);
        self
    }
}

/// Drops sub-millisecond digits: the wire carries milliseconds, and an event
/// that went through the outbox or the stream must compare equal to itself.
pub(crate) fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_form_round_trips() {
        let event = Event::new(
            "booking-service",
            "booking.created",
            "bk_1",
            json!({"booking_id": "bk_1", "n": 2}),
            Some("req_1".into()),
        )
        .with_workspace("wrk_1")
        .with_organization("org_1");
        assert!(service_kit::ids::is_valid(EVENT_ID_PREFIX, &event.id));

        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(wire["type"], "booking.created");
        assert_eq!(wire["workspace_id"], "wrk_1");
        let at = wire["occurred_at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 24, "{at}");

        let back: Event = serde_json::from_value(wire).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn optional_ids_may_be_missing_and_unknown_fields_are_ignored() {
        let event: Event = serde_json::from_value(json!({
            "id": "evt_01JAAAAAAAAAAAAAAAAAAAAAAA",
            "type": "member.added",
            "occurred_at": "2025-01-15T10:00:00.123Z",
            "subject_id": "usr_1",
            "data": {},
            "producer": "auth-service",
            "schema_version": 2
        }))
        .unwrap();
        assert_eq!(event.workspace_id, None);
        assert_eq!(event.request_id, None);
        assert_eq!(event.occurred_at.timestamp_subsec_millis(), 123);
        let nulls = serde_json::to_value(&event).unwrap();
        assert!(nulls["organization_id"].is_null());
    }
}
