//! Webhook subscriptions: what both route families store and check alike. The
//! SpaceOS routes ([`crate::webhooks`]) and the gospace routes
//! ([`crate::gospace`]) differ in their fields' names and shapes only.

use crate::access::Reach;
use crate::schema::subscriptions;
use crate::{Backend, EventsState, Fail, catalog, now, secrets};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::ids::{self, prefix};
use service_kit::pagination::Sort;
use service_kit::{ApiError, FieldError};
use store::{DbConnection, StoreError};

service_kit::words! {
    /// The route family a subscription was made in: it decides the delivery's
    /// body and product signature.
    Family {
        /// `{event, timestamp, webhook_id, data}`, `X-Webhook-Signature`.
        SpaceOs = "spaceos",
        /// `{event, workspace_id, request_id, payload}`, `x-gospace-signature`.
        Gospace = "gospace",
        /// A content space's (or its upload config's) `webhook_url`, made by
        /// the intake for the events that name it (`file.uploaded`):
        /// `{event, …data}` as Tuzzle sends it, with no product signature
        /// (Tuzzle has none) and no secret; never listed, never failing.
        Tuzzle = "tuzzle",
    }
}

service_kit::words! {
    /// Whether a subscription receives events.
    Status {
        /// Enabled; new events are delivered.
        Active = "active",
        /// Turned off (`enabled: false`); new events are not delivered to it.
        Disabled = "disabled",
        /// The last retry of a delivery failed: it receives no new events and
        /// its pending deliveries wait, until `enabled: true` revives it.
        Failing = "failing",
    }
}

/// `state` of a subscription that delivers.
pub const ACTIVE: &str = "active";
/// `state` of a subscription whose last delivery exhausted its retries.
pub const FAILING: &str = "failing";

/// Longest mail address (RFC 5321).
const MAX_EMAIL: usize = 254;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = subscriptions)]
pub struct Subscription {
    pub id: String,
    pub workspace_id: String,
    pub family: String,
    pub organization_id: Option<String>,
    pub url: String,
    pub events: String,
    pub secret_sealed: String,
    pub secret_hint: String,
    pub notify_email: Option<String>,
    pub enabled: bool,
    pub state: String,
    pub failing_since: Option<NaiveDateTime>,
    pub notified_at: Option<NaiveDateTime>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Subscription {
    pub fn family(&self) -> Family {
        Family::parse(&self.family).unwrap_or(Family::SpaceOs)
    }

    /// The event names it listens to.
    pub fn event_names(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }

    pub fn status(&self) -> Status {
        match (self.enabled, self.state.as_str()) {
            (false, _) => Status::Disabled,
            (true, FAILING) => Status::Failing,
            (true, _) => Status::Active,
        }
    }
}

/// Whether a stored event list (JSON) names `event_type`.
pub(crate) fn listens_to(events_json: &str, event_type: &str) -> bool {
    serde_json::from_str::<Vec<String>>(events_json)
        .is_ok_and(|names| names.iter().any(|n| n == event_type))
}

#[derive(Insertable, Debug)]
#[diesel(table_name = subscriptions)]
struct NewRow {
    id: String,
    workspace_id: String,
    family: String,
    organization_id: Option<String>,
    url: String,
    events: String,
    secret_sealed: String,
    secret_hint: String,
    notify_email: Option<String>,
    enabled: bool,
    state: String,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// The subscription `id` within reach (of `family`, when given; never a
/// content space's `webhook_url`, which no route shows), or 404.
pub(crate) fn find(
    conn: &mut DbConnection,
    reach: &Reach,
    id: &str,
    family: Option<Family>,
) -> Result<Subscription, Fail> {
    let missing = || Fail::Api(ApiError::not_found("webhook"));
    if !ids::is_valid(prefix::WEBHOOK, id) {
        return Err(missing());
    }
    let mut query = subscriptions::table
        .filter(subscriptions::id.eq(id))
        .filter(subscriptions::workspace_id.eq(&reach.workspace_id))
        .into_boxed::<Backend>();
    query = match family {
        Some(family) => query.filter(subscriptions::family.eq(family.as_str())),
        None => query.filter(subscriptions::family.ne(Family::Tuzzle.as_str())),
    };
    if let Some(organization) = &reach.organization_id {
        query = query.filter(subscriptions::organization_id.eq(organization));
    }
    query
        .select(Subscription::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)
}

/// A create's or an update's fields, as sent (`None`: not sent).
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    /// `Some(None)`: cleared.
    pub notify_email: Option<Option<String>>,
}

/// The fields of a [`Draft`] once checked (`None`: not sent, or refused).
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub notify_email: Option<Option<String>>,
}

impl Draft {
    /// Checks every sent field, adding one error per bad field (named
    /// `url_field` for the URL); the receiver's URL is looked up in DNS.
    pub(crate) async fn check(
        self,
        state: &EventsState,
        url_field: &str,
        errors: &mut Vec<FieldError>,
    ) -> Checked {
        let url = match self.url {
            Some(raw) => match state.guard.check_target(&raw).await {
                Ok(url) => Some(String::from(url)),
                Err(refusal) => {
                    errors.push(FieldError::new(url_field, refusal.to_string()));
                    None
                }
            },
            None => None,
        };
        let events = self.events.map(|names| check_events(&names, errors));
        let secret = self
            .secret
            .filter(|secret| match secrets::check_secret(secret) {
                Ok(()) => true,
                Err(message) => {
                    errors.push(FieldError::new("secret", message));
                    false
                }
            });
        let notify_email = self.notify_email.map(|email| {
            email.and_then(|raw| match check_email(&raw) {
                Ok(email) => Some(email),
                Err(message) => {
                    errors.push(FieldError::new("notify_email", message));
                    None
                }
            })
        });
        Checked {
            url,
            events,
            secret,
            notify_email,
        }
    }
}

/// Event names, each from the catalog, without repeats (in the order sent).
fn check_events(names: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if names.is_empty() {
        errors.push(FieldError::new("events", "must name at least one event"));
    }
    let mut kept: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if !catalog::is_known(name) {
            errors.push(FieldError::new(
                format!("events[{i}]"),
                format!(
                    "unknown event `{}`; one of {}",
                    name.chars().take(100).collect::<String>(),
                    catalog::names().join(", ")
                ),
            ));
        } else if !kept.contains(name) {
            kept.push(name.clone());
        }
    }
    kept
}

/// A mail address, trimmed: `local@domain.tld` in a conservative alphabet (the
/// address goes into a mail header).
pub(crate) fn check_email(raw: &str) -> Result<String, &'static str> {
    const MESSAGE: &str = "must be a mail address such as admin@example.com";
    let email = raw.trim();
    let local_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let domain_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let valid = email.len() <= MAX_EMAIL
        && email.split_once('@').is_some_and(|(local, domain)| {
            (1..=64).contains(&local.len())
                && local.chars().all(local_char)
                && domain.contains('.')
                && domain.chars().all(domain_char)
                && domain.split('.').all(|label| !label.is_empty())
        });
    if valid {
        Ok(email.to_owned())
    } else {
        Err(MESSAGE)
    }
}

/// For fields that may be cleared: absent is `None`, `null` is `Some(None)`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

/// `field is required`, for a field a create must send.
pub(crate) fn required(field: &str) -> FieldError {
    FieldError::new(field, "field is required")
}

/// A new subscription, checked.
pub(crate) struct New {
    pub family: Family,
    pub organization_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    /// The client's secret; `None`: one is generated.
    pub secret: Option<String>,
    pub notify_email: Option<String>,
    pub enabled: bool,
    pub created_by: String,
}

/// Stores a new subscription; returns it, and its secret when generated (to
/// be shown once).
pub(crate) async fn create(
    state: &EventsState,
    reach: &Reach,
    new: New,
) -> Result<(Subscription, Option<String>), ApiError> {
    let id = ids::new_id(prefix::WEBHOOK);
    let (secret, generated) = match new.secret {
        Some(secret) => (secret, None),
        None => {
            let secret = secrets::generate_secret();
            (secret.clone(), Some(secret))
        }
    };
    let at = now();
    let row = NewRow {
        secret_sealed: state.keys.seal(&secret, &id),
        secret_hint: secrets::hint(&secret),
        id,
        workspace_id: reach.workspace_id.clone(),
        family: new.family.as_str().to_owned(),
        organization_id: new.organization_id,
        url: new.url,
        events: serde_json::to_string(&new.events).map_err(ApiError::internal)?,
        notify_email: new.notify_email,
        enabled: new.enabled,
        state: ACTIVE.to_owned(),
        created_by: new.created_by,
        created_at: at,
        updated_at: at,
    };
    let stored = state
        .db
        .run(move |conn| {
            diesel::insert_into(subscriptions::table)
                .values(&row)
                .execute(conn)?;
            subscriptions::table
                .find(&row.id)
                .select(Subscription::as_select())
                .first(conn)
                .map_err(StoreError::from)
        })
        .await?;
    tracing::info!(webhook = %stored.id, workspace = %stored.workspace_id,
        family = %stored.family, "webhook subscription created");
    Ok((stored, generated))
}

/// Applies checked changes to the subscription `id` within reach. `enabled:
/// true` revives a failing subscription: it is active again, and will be
/// mailed about again should it fail again.
pub(crate) async fn update(
    state: &EventsState,
    reach: Reach,
    id: String,
    family: Option<Family>,
    changes: Checked,
    enabled: Option<bool>,
) -> Result<Subscription, ApiError> {
    let keys = state.keys.clone();
    let updated = state
        .db
        .transaction(move |conn| {
            let mut row = find(conn, &reach, &id, family)?;
            let at = now();
            if let Some(url) = changes.url {
                row.url = url;
            }
            if let Some(events) = changes.events {
                row.events =
                    serde_json::to_string(&events).map_err(|e| Fail::Api(ApiError::internal(e)))?;
            }
            if let Some(secret) = &changes.secret {
                row.secret_sealed = keys.seal(secret, &row.id);
                row.secret_hint = secrets::hint(secret);
            }
            if let Some(email) = changes.notify_email {
                row.notify_email = email;
            }
            let revive = enabled == Some(true) && row.state == FAILING;
            if let Some(enabled) = enabled {
                row.enabled = enabled;
            }
            if revive {
                row.state = ACTIVE.to_owned();
                row.failing_since = None;
                row.notified_at = None;
            }
            diesel::update(subscriptions::table.find(&row.id))
                .set((
                    subscriptions::url.eq(&row.url),
                    subscriptions::events.eq(&row.events),
                    subscriptions::secret_sealed.eq(&row.secret_sealed),
                    subscriptions::secret_hint.eq(&row.secret_hint),
                    subscriptions::notify_email.eq(&row.notify_email),
                    subscriptions::enabled.eq(row.enabled),
                    subscriptions::state.eq(&row.state),
                    subscriptions::failing_since.eq(row.failing_since),
                    subscriptions::notified_at.eq(row.notified_at),
                    subscriptions::notify_lease_until.eq(None::<NaiveDateTime>),
                    subscriptions::updated_at.eq(at),
                ))
                .execute(conn)?;
            row.updated_at = at;
            Ok::<_, Fail>((row, revive))
        })
        .await
        .map_err(ApiError::from)?;
    let (row, revived) = updated;
    if revived {
        tracing::info!(webhook = %row.id, "failing webhook subscription revived");
        // Its pending deliveries are due again.
        state.dispatcher.wake();
    }
    Ok(row)
}

/// Deletes the subscription `id` within reach, with its deliveries and their
/// attempts.
pub(crate) async fn delete(
    state: &EventsState,
    reach: Reach,
    id: String,
    family: Option<Family>,
) -> Result<(), ApiError> {
    state
        .db
        .transaction(move |conn| {
            let row = find(conn, &reach, &id, family)?;
            diesel::delete(subscriptions::table.find(&row.id)).execute(conn)?;
            tracing::info!(webhook = %row.id, "webhook subscription deleted");
            Ok::<_, Fail>(())
        })
        .await
        .map_err(ApiError::from)
}

/// One page of the subscriptions of `family` within reach (of
/// `organization`, when given), and how many there are.
pub(crate) async fn list(
    state: &EventsState,
    reach: Reach,
    family: Family,
    organization: Option<String>,
    sort: Sort,
    (limit, offset): (i64, i64),
) -> Result<(Vec<Subscription>, u64), ApiError> {
    let (rows, total) = state
        .db
        .run(move |conn| {
            let filtered = || {
                let mut query = subscriptions::table
                    .filter(subscriptions::workspace_id.eq(reach.workspace_id.clone()))
                    .filter(subscriptions::family.eq(family.as_str()))
                    .into_boxed::<Backend>();
                if let Some(organization) = &organization {
                    query = query.filter(subscriptions::organization_id.eq(organization.clone()));
                }
                query
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let query = filtered().select(Subscription::as_select());
            let query = match (sort.field, sort.descending) {
                ("updated_at", false) => {
                    query.order((subscriptions::updated_at.asc(), subscriptions::id.asc()))
                }
                ("updated_at", true) => {
                    query.order((subscriptions::updated_at.desc(), subscriptions::id.desc()))
                }
                (_, false) => {
                    query.order((subscriptions::created_at.asc(), subscriptions::id.asc()))
                }
                (_, true) => {
                    query.order((subscriptions::created_at.desc(), subscriptions::id.desc()))
                }
            };
            let rows = query.limit(limit).offset(offset).load(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    Ok((rows, total.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            check_email(" Admin+hooks@Example.co.uk ").unwrap(),
            "Admin+hooks@Example.co.uk"
        );
        for bad in [
            "",
            "admin",
            "admin@",
            "@example.com",
            "admin@localhost",
            "admin@example..com",
            "a b@example.com",
            "admin@exa mple.com",
            "\"x\"@example.com",
            "admin@example.com\r\nBcc: x@y.z",
            "<admin@example.com>",
            "a@b@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_are_checked_and_deduplicated() {
        let mut errors = Vec::new();
        let kept = check_events(
            &["booking.created", "ping", "booking.created"].map(String::from),
            &mut errors,
        );
        assert_eq!(kept, ["booking.created", "ping"]);
        assert!(errors.is_empty());
        check_events(&["booking.exploded".into()], &mut errors);
        assert_eq!(errors[0].field, "events[0]");
        assert!(errors[0].message.contains("booking.created"));
        let mut errors = Vec::new();
        check_events(&[], &mut errors);
        assert_eq!(errors[0].field, "events");
        assert!(listens_to(r#"["ping","booking.end"]"#, "booking.end"));
        assert!(!listens_to(r#"["ping"]"#, "booking.end"));
        assert!(!listens_to("garbage", "booking.end"));
    }
}
