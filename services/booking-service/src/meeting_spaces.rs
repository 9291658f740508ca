//! Meeting spaces, their business hours and unavailability periods. Same scopes
//! as organizations; the by-slug look-up is public and shows public fields only.

use crate::input::{self, MAX_NAME, MAX_TEXT, Problems};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::outbox::{self, AvailabilityChange};
use crate::schema::{
    bookings, business_hours, meeting_spaces, organizations, space_groups, unavailability,
};
use crate::tenancy::Caller;
use crate::{BookingState, Failure, organizations as orgs, space_groups as groups, workspace_with};
use actix_web::web;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use identity::Scope;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, Json, Query};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{DbConnection, StoreError};
use utoipa::{IntoParams, ToSchema};

/// Prefix of unavailability periods' ids.
pub const UNAVAILABILITY_PREFIX: &str = "ua";
/// Bookings are at most a week long, so a look-up of the bookings touching a
/// window need only start this much earlier.
pub const MAX_DURATION_MINUTES: i64 = 7 * 24 * 60;
pub const MAX_BUFFER_MINUTES: i64 = 24 * 60;
const MAX_AMENITIES: usize = 50;
const MAX_AMENITY: usize = 50;
const ACTIVE: [&str; 3] = ["pending", "confirmed", "active"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = meeting_spaces)]
pub struct SpaceRow {
    pub id: String,
    pub workspace_id: String,
    pub organization_id: String,
    pub space_group_id: Option<String>,
    pub name: String,
    pub slug: String,
    pub timezone: Option<String>,
    pub capacity: i32,
    pub description: String,
    pub amenities: String,
    pub booking_increment: i32,
    pub min_duration: i32,
    pub max_duration: i32,
    pub buffer_before: i32,
    pub buffer_after: i32,
    pub public_booking: bool,
    pub requires_check_in: bool,
    pub check_in_grace_minutes: i32,
    pub unavailable_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Bumped by every change that bears on booking the space.
    pub version: i64,
}

/// A space with the time zone it keeps: its own, else its group's, else its
/// organization's.
#[derive(Debug, Clone)]
pub struct Space {
    pub row: SpaceRow,
    pub tz: Tz,
}

/// The space `id`: of `workspace`, or of any workspace for public callers
/// (`None`), who must then check `public_booking`. 404 when not found.
pub fn load(conn: &mut DbConnection, workspace: Option<&str>, id: &str) -> Result<Space, Failure> {
    // Not boxed, so that the statement is prepared once per connection: this
    // runs for every booking.
    let query = meeting_spaces::table
        .inner_join(organizations::table)
        .left_join(
            space_groups::table.on(space_groups::id
                .nullable()
                .eq(meeting_spaces::space_group_id)),
        )
        .filter(meeting_spaces::id.eq(id))
        .select((
            SpaceRow::as_select(),
            organizations::timezone,
            space_groups::timezone.nullable(),
        ));
    let found: Option<(SpaceRow, String, Option<String>)> = match workspace {
        Some(w) => query
            .filter(meeting_spaces::workspace_id.eq(w))
            .first(conn)
            .optional()?,
        None => query.first(conn).optional()?,
    };
    let (row, org_tz, group_tz) =
        found.ok_or_else(|| Failure::Api(ApiError::not_found("meeting space")))?;
    Ok(with_zone(row, org_tz, group_tz))
}

/// The spaces `ids` of `workspace`, in the order of `ids`, in one query.
/// The spaces `ids`, in that order; of `workspace` only, or of any (`None`,
/// a caller spanning workspaces).
fn load_many(
    conn: &mut DbConnection,
    workspace: Option<&str>,
    ids: &[String],
) -> Result<Vec<Space>, Failure> {
    let mut query = meeting_spaces::table
        .inner_join(organizations::table)
        .left_join(
            space_groups::table.on(space_groups::id
                .nullable()
                .eq(meeting_spaces::space_group_id)),
        )
        .filter(meeting_spaces::id.eq_any(ids))
        .select((
            SpaceRow::as_select(),
            organizations::timezone,
            space_groups::timezone.nullable(),
        ))
        .into_boxed();
    if let Some(workspace) = workspace {
        query = query.filter(meeting_spaces::workspace_id.eq(workspace));
    }
    let rows: Vec<(SpaceRow, String, Option<String>)> = query.load(conn)?;
    let mut by_id: HashMap<String, Space> = rows
        .into_iter()
        .map(|(row, org_tz, group_tz)| (row.id.clone(), with_zone(row, org_tz, group_tz)))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

fn with_zone(row: SpaceRow, org_tz: String, group_tz: Option<String>) -> Space {
    let name = row.timezone.clone().or(group_tz).unwrap_or(org_tz);
    let tz = name.parse::<Tz>().unwrap_or(Tz::UTC);
    Space { row, tz }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingSpaceView {
    /// `ms_…`
    id: String,
    /// `org_…`
    organization_id: String,
    /// `sg_…`, when in a group.
    space_group_id: Option<String>,
    name: String,
    /// Globally unique, `[a-z0-9-]`.
    slug: String,
    /// The space's own IANA time zone, `null` when it keeps its group's or
    /// organization's.
    timezone_override: Option<String>,
    /// The time zone it keeps (own, group's or organization's).
    timezone: String,
    capacity: i32,
    description: String,
    amenities: Vec<String>,
    /// Minutes; bookings start on and last multiples of it, counted from local midnight.
    booking_increment: i32,
    /// Minutes.
    min_duration: i32,
    /// Minutes.
    max_duration: i32,
    /// Minutes kept free before each booking.
    buffer_before: i32,
    /// Minutes kept free after each booking.
    buffer_after: i32,
    /// Anyone may book without a credential (rate-limited per client address).
    public_booking: bool,
    /// Bookings not checked in within `check_in_grace_minutes` of their start are released (`no_show`).
    requires_check_in: bool,
    check_in_grace_minutes: i32,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// What anyone may read about a meeting space.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicMeetingSpaceView {
    id: String,
    name: String,
    slug: String,
    timezone: String,
    capacity: i32,
    description: String,
    amenities: Vec<String>,
    booking_increment: i32,
    min_duration: i32,
    max_duration: i32,
    public_booking: bool,
}

fn amenities(row: &SpaceRow) -> Vec<String> {
    serde_json::from_str(&row.amenities).unwrap_or_default()
}

impl From<Space> for MeetingSpaceView {
    fn from(s: Space) -> Self {
        let amenities = amenities(&s.row);
        let r = s.row;
        MeetingSpaceView {
            id: r.id,
            organization_id: r.organization_id,
            space_group_id: r.space_group_id,
            name: r.name,
            slug: r.slug,
            timezone_override: r.timezone,
            timezone: s.tz.name().to_owned(),
            capacity: r.capacity,
            description: r.description,
            amenities,
            booking_increment: r.booking_increment,
            min_duration: r.min_duration,
            max_duration: r.max_duration,
            buffer_before: r.buffer_before,
            buffer_after: r.buffer_after,
            public_booking: r.public_booking,
            requires_check_in: r.requires_check_in,
            check_in_grace_minutes: r.check_in_grace_minutes,
            created_at: input::wire_time(r.created_at),
            updated_at: input::wire_time(r.updated_at),
        }
    }
}

/// The booking rules of a space, as created or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rules {
    capacity: i32,
    booking_increment: i32,
    min_duration: i32,
    max_duration: i32,
    buffer_before: i32,
    buffer_after: i32,
    public_booking: bool,
    requires_check_in: bool,
    check_in_grace_minutes: i32,
}

impl Rules {
    fn of(row: &SpaceRow) -> Rules {
        Rules {
            capacity: row.capacity,
            booking_increment: row.booking_increment,
            min_duration: row.min_duration,
            max_duration: row.max_duration,
            buffer_before: row.buffer_before,
            buffer_after: row.buffer_after,
            public_booking: row.public_booking,
            requires_check_in: row.requires_check_in,
            check_in_grace_minutes: row.check_in_grace_minutes,
        }
    }

    /// Whether bookings are checked differently under `other`; capacity is
    /// informational.
    fn bear_on_booking_unlike(&self, other: &Rules) -> bool {
        Rules {
            capacity: other.capacity,
            ..self.clone()
        } != *other
    }

    fn check(&self, p: &mut Problems) {
        p.within("capacity", self.capacity.into(), 1..=100_000);
        let inc = i64::from(self.booking_increment);
        p.within("booking_increment", inc, 1..=1440);
        if (1..=1440).contains(&inc) && 1440 % inc != 0 {
            p.add(
                "booking_increment",
                "must divide a day (1440 minutes) evenly",
            );
        }
        p.within(
            "min_duration",
            self.min_duration.into(),
            1..=MAX_DURATION_MINUTES,
        );
        p.within(
            "max_duration",
            self.max_duration.into(),
            1..=MAX_DURATION_MINUTES,
        );
        if inc > 0 {
            for (field, v) in [
                ("min_duration", self.min_duration),
                ("max_duration", self.max_duration),
            ] {
                if i64::from(v) % inc != 0 {
                    p.add(field, "must be a multiple of booking_increment");
                }
            }
        }
        if self.max_duration < self.min_duration {
            p.add("max_duration", "must be at least min_duration");
        }
        p.within(
            "buffer_before",
            self.buffer_before.into(),
            0..=MAX_BUFFER_MINUTES,
        );
        p.within(
            "buffer_after",
            self.buffer_after.into(),
            0..=MAX_BUFFER_MINUTES,
        );
        p.within(
            "check_in_grace_minutes",
            self.check_in_grace_minutes.into(),
            0..=1440,
        );
    }
}

fn check_amenities(p: &mut Problems, list: &[String]) -> String {
    if list.len() > MAX_AMENITIES {
        p.add("amenities", format!("at most {MAX_AMENITIES} entries"));
    }
    for a in list {
        if a.trim().is_empty() || a.chars().count() > MAX_AMENITY || a.contains('\0') {
            p.add(
                "amenities",
                format!("each must be 1 to {MAX_AMENITY} characters"),
            );
            break;
        }
    }
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpaceFilter {
    /// `org_…`
    organization_id: Option<String>,
    /// `sg_…`
    space_group_id: Option<String>,
    /// At least this many people.
    capacity_gte: Option<i32>,
    /// Has this amenity (exact match).
    amenity: Option<String>,
    /// With `available_to`: only spaces with no active booking (buffers
    /// included) and no unavailability in `[available_from, available_to)`. RFC 3339.
    available_from: Option<String>,
    available_to: Option<String>,
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// List meeting spaces
///
/// Oldest first, filtered. Needs `organizations:read`.
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces", operation_id = "list_meeting_spaces", tag = "meeting-spaces",
    params(SpaceFilter),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "A page of meeting spaces.", body = ListEnvelope<Vec<MeetingSpaceView>>),
        (status = 400, description = "A bad query parameter.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Caller,
    query: Query<SpaceFilter>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<Vec<MeetingSpaceView>>, ApiError> {
    let workspace = identity.list_workspace(&Scope::ORGANIZATIONS_READ)?;
    let mut f = query.into_inner();
    f.organization_id = identity.list_organization(f.organization_id.as_deref())?;
    let page = OffsetQuery {
        page: f.page,
        limit: f.limit,
    }
    .validate()?;
    input::query_text("organization_id", f.organization_id.as_deref())?;
    input::query_text("space_group_id", f.space_group_id.as_deref())?;
    input::query_text("amenity", f.amenity.as_deref())?;
    let window = match (&f.available_from, &f.available_to) {
        (None, None) => None,
        (Some(from), Some(to)) => {
            let from = input::parse_time(from).ok_or_else(|| {
                ApiError::invalid_query("available_from", "must be an RFC 3339 time with an offset")
            })?;
            let to = input::parse_time(to).ok_or_else(|| {
                ApiError::invalid_query("available_to", "must be an RFC 3339 time with an offset")
            })?;
            if to <= from {
                return Err(ApiError::invalid_query(
                    "available_to",
                    "must be after available_from",
                ));
            }
            Some((from.naive_utc(), to.naive_utc()))
        }
        (Some(_), None) => {
            return Err(ApiError::invalid_query(
                "available_to",
                "is required with available_from",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_query(
                "available_from",
                "is required with available_to",
            ));
        }
    };
    let amenity_pattern = f.amenity.as_ref().map(|a| {
        let quoted = serde_json::to_string(a).unwrap_or_default();
        let escaped: String = quoted
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("%{escaped}%")
    });
    let (rows, total) = state
        .db
        .run(move |conn| {
            let filtered = || {
                let mut q = meeting_spaces::table.into_boxed();
                if let Some(w) = &workspace {
                    q = q.filter(meeting_spaces::workspace_id.eq(w.clone()));
                }
                if let Some(v) = &f.organization_id {
                    q = q.filter(meeting_spaces::organization_id.eq(v.clone()));
                }
                if let Some(v) = &f.space_group_id {
                    q = q.filter(meeting_spaces::space_group_id.eq(v.clone()));
                }
                if let Some(v) = f.capacity_gte {
                    q = q.filter(meeting_spaces::capacity.ge(v));
                }
                if let Some(p) = &amenity_pattern {
                    q = q.filter(meeting_spaces::amenities.like(p.clone()).escape('\\'));
                }
                if let Some((from, to)) = window {
                    q = q
                        .filter(diesel::dsl::not(diesel::dsl::exists(
                            bookings::table
                                .filter(bookings::meeting_space_id.eq(meeting_spaces::id))
                                .filter(bookings::status.eq_any(ACTIVE))
                                .filter(bookings::blocked_start.lt(to))
                                .filter(bookings::blocked_end.gt(from)),
                        )))
                        .filter(diesel::dsl::not(diesel::dsl::exists(
                            unavailability::table
                                .filter(unavailability::meeting_space_id.eq(meeting_spaces::id))
                                .filter(unavailability::start_time.lt(to))
                                .filter(unavailability::end_time.gt(from)),
                        )));
                }
                q
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let ids: Vec<String> = filtered()
                .order((meeting_spaces::created_at.asc(), meeting_spaces::id.asc()))
                .select(meeting_spaces::id)
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load(conn)?;
            let spaces = load_many(conn, workspace.as_deref(), &ids)?
                .into_iter()
                .map(MeetingSpaceView::from)
                .collect::<Vec<_>>();
            Ok::<_, Failure>((spaces, total))
        })
        .await?;
    Ok(ApiResponse::ok(rows).meta(page.meta(total as u64)))
}

/// Get a meeting space
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces/{id}", operation_id = "get_meeting_space", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`")),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "The meeting space.", body = Envelope<MeetingSpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<MeetingSpaceView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let space = state
        .db
        .run(move |conn| load(conn, Some(&workspace), &id))
        .await?;
    Ok(ApiResponse::ok(space.into()))
}

/// Find a meeting space by its slug (public)
///
/// No credential needed; answers the public fields only.
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces/by-slug/{slug}", operation_id = "get_meeting_space_by_slug", tag = "meeting-spaces",
    params(("slug" = String, Path, description = "The space's slug.")),
    security(()),
    responses(
        (status = 200, description = "The space's public fields.", body = Envelope<PublicMeetingSpaceView>),
        (status = 404, description = "No space has this slug.", body = ErrorEnvelope),
    )
)]
pub async fn by_slug(
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<PublicMeetingSpaceView>, ApiError> {
    let slug = path.into_inner();
    if !input::plausible_slug(&slug) {
        return Err(ApiError::not_found("meeting space"));
    }
    let space = state
        .db
        .run(move |conn| {
            let id: String = meeting_spaces::table
                .filter(meeting_spaces::slug.eq(&slug))
                .select(meeting_spaces::id)
                .first(conn)
                .optional()?
                .ok_or_else(|| Failure::Api(ApiError::not_found("meeting space")))?;
            load(conn, None, &id)
        })
        .await?;
    let amenities = amenities(&space.row);
    let r = space.row;
    Ok(ApiResponse::ok(PublicMeetingSpaceView {
        id: r.id,
        name: r.name,
        slug: r.slug,
        timezone: space.tz.name().to_owned(),
        capacity: r.capacity,
        description: r.description,
        amenities,
        booking_increment: r.booking_increment,
        min_duration: r.min_duration,
        max_duration: r.max_duration,
        public_booking: r.public_booking,
    }))
}

/// Defaults: capacity 1, increment 30, min = increment, max 480, no buffers,
/// not public, no check-in (grace 15).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMeetingSpace {
    /// `org_…`; may be left out when `space_group_id` is given.
    organization_id: Option<String>,
    /// `sg_…`
    space_group_id: Option<String>,
    name: String,
    slug: String,
    /// IANA time zone; absent: the group's or organization's.
    timezone: Option<String>,
    capacity: Option<i32>,
    description: Option<String>,
    amenities: Option<Vec<String>>,
    /// Minutes, dividing 1440.
    booking_increment: Option<i32>,
    min_duration: Option<i32>,
    max_duration: Option<i32>,
    buffer_before: Option<i32>,
    buffer_after: Option<i32>,
    public_booking: Option<bool>,
    requires_check_in: Option<bool>,
    check_in_grace_minutes: Option<i32>,
}

/// Create a meeting space
///
/// In an organization, or a space group (whose organization it joins). Needs
/// `organizations:write`. Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/api/v1/meeting-spaces", operation_id = "create_meeting_space", tag = "meeting-spaces",
    params(crate::openapi::IdempotencyHeader),
    request_body = NewMeetingSpace,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 201, description = "The new space.", body = Envelope<MeetingSpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such organization or group in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "The slug is taken.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or an `Idempotency-Key` reused with another body.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    req: actix_web::HttpRequest,
    identity: Caller,
    body: Json<NewMeetingSpace>,
    state: web::Data<BookingState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let workspace = identity
        .workspace_for(
            &state,
            &Scope::ORGANIZATIONS_WRITE,
            (
                "organization_id",
                body.organization_id
                    .as_deref()
                    .or(body.space_group_id.as_deref()),
            ),
        )
        .await?;
    let body = body.into_inner();
    let key = crate::idempotency::Claim::from_request(&req, &workspace, &body)?;
    let mut p = Problems::new();
    let name = p.name("name", &body.name, MAX_NAME);
    p.slug("slug", &body.slug);
    if let Some(tz) = &body.timezone {
        p.timezone("timezone", tz);
    }
    let description = body.description.clone().unwrap_or_default();
    p.text("description", &description, MAX_TEXT);
    let amenities = check_amenities(&mut p, body.amenities.as_deref().unwrap_or_default());
    let increment = body.booking_increment.unwrap_or(30);
    let rules = Rules {
        capacity: body.capacity.unwrap_or(1),
        booking_increment: increment,
        min_duration: body.min_duration.unwrap_or(increment),
        max_duration: body.max_duration.unwrap_or(480.max(increment)),
        buffer_before: body.buffer_before.unwrap_or(0),
        buffer_after: body.buffer_after.unwrap_or(0),
        public_booking: body.public_booking.unwrap_or(false),
        requires_check_in: body.requires_check_in.unwrap_or(false),
        check_in_grace_minutes: body.check_in_grace_minutes.unwrap_or(15),
    };
    rules.check(&mut p);
    if body.organization_id.is_none() && body.space_group_id.is_none() {
        p.add(
            "organization_id",
            "organization_id or space_group_id is required",
        );
    }
    p.finish()?;
    if let Some(g) = &body.space_group_id {
        input::known_id(prefix::SPACE_GROUP, g, "space group")?;
    }
    if let Some(o) = &body.organization_id {
        input::known_id(prefix::ORGANIZATION, o, "organization")?;
    }
    crate::idempotency::respond_single_write(&state.db, key, move |conn| {
        let group = match &body.space_group_id {
            Some(g) => Some(groups::find(conn, &workspace, g)?),
            None => None,
        };
        let organization_id = match (&body.organization_id, &group) {
            (Some(o), Some(g)) if *o != g.organization_id => {
                return Err(Failure::Api(ApiError::validation(vec![
                    service_kit::FieldError::new(
                        "space_group_id",
                        "belongs to another organization",
                    ),
                ])));
            }
            (_, Some(g)) => g.organization_id.clone(),
            (Some(o), None) => orgs::find(conn, &workspace, o)?.id,
            (None, None) => unreachable!("checked above"),
        };
        let now = Utc::now().naive_utc();
        let id = ids::new_id(prefix::MEETING_SPACE);
        diesel::insert_into(meeting_spaces::table)
            .values((
                meeting_spaces::id.eq(&id),
                meeting_spaces::workspace_id.eq(&workspace),
                meeting_spaces::organization_id.eq(&organization_id),
                meeting_spaces::space_group_id.eq(&body.space_group_id),
                meeting_spaces::name.eq(&name),
                meeting_spaces::slug.eq(&body.slug),
                meeting_spaces::timezone.eq(&body.timezone),
                meeting_spaces::capacity.eq(rules.capacity),
                meeting_spaces::description.eq(&description),
                meeting_spaces::amenities.eq(&amenities),
                meeting_spaces::booking_increment.eq(rules.booking_increment),
                meeting_spaces::min_duration.eq(rules.min_duration),
                meeting_spaces::max_duration.eq(rules.max_duration),
                meeting_spaces::buffer_before.eq(rules.buffer_before),
                meeting_spaces::buffer_after.eq(rules.buffer_after),
                meeting_spaces::public_booking.eq(rules.public_booking),
                meeting_spaces::requires_check_in.eq(rules.requires_check_in),
                meeting_spaces::check_in_grace_minutes.eq(rules.check_in_grace_minutes),
                meeting_spaces::created_at.eq(now),
                meeting_spaces::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(ApiResponse::created(MeetingSpaceView::from(load(
            conn,
            Some(&workspace),
            &id,
        )?)))
    })
    .await
    .map_err(orgs::slug_taken)
}

/// An absent field stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingSpaceChange {
    name: Option<String>,
    slug: Option<String>,
    /// IANA time zone of the space itself.
    timezone: Option<String>,
    capacity: Option<i32>,
    description: Option<String>,
    amenities: Option<Vec<String>>,
    booking_increment: Option<i32>,
    min_duration: Option<i32>,
    max_duration: Option<i32>,
    buffer_before: Option<i32>,
    buffer_after: Option<i32>,
    public_booking: Option<bool>,
    requires_check_in: Option<bool>,
    check_in_grace_minutes: Option<i32>,
}

/// Change a meeting space
///
/// New rules apply to new bookings and reschedules; existing bookings keep
/// their times and buffers.
#[utoipa::path(
    patch, path = "/api/v1/meeting-spaces/{id}", operation_id = "update_meeting_space", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`")),
    request_body = MeetingSpaceChange,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "The space as changed.", body = Envelope<MeetingSpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "The slug is taken.", body = ErrorEnvelope),
        (status = 422, description = "A bad field.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Caller,
    path: web::Path<String>,
    body: Json<MeetingSpaceChange>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<MeetingSpaceView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let c = body.into_inner();
    let request_id = service_kit::request_id::current();
    let space = state
        .db
        .transaction(move |conn| {
            let current = load(conn, Some(&workspace), &id)?.row;
            let (rules_before, zone_before) = (Rules::of(&current), current.timezone.clone());
            let mut p = Problems::new();
            let name = c
                .name
                .as_deref()
                .map(|n| p.name("name", n, MAX_NAME))
                .unwrap_or(current.name);
            if let Some(s) = &c.slug {
                p.slug("slug", s);
            }
            if let Some(tz) = &c.timezone {
                p.timezone("timezone", tz);
            }
            let description = c.description.unwrap_or(current.description);
            p.text("description", &description, MAX_TEXT);
            let amenities = match &c.amenities {
                Some(list) => check_amenities(&mut p, list),
                None => current.amenities,
            };
            let rules = Rules {
                capacity: c.capacity.unwrap_or(current.capacity),
                booking_increment: c.booking_increment.unwrap_or(current.booking_increment),
                min_duration: c.min_duration.unwrap_or(current.min_duration),
                max_duration: c.max_duration.unwrap_or(current.max_duration),
                buffer_before: c.buffer_before.unwrap_or(current.buffer_before),
                buffer_after: c.buffer_after.unwrap_or(current.buffer_after),
                public_booking: c.public_booking.unwrap_or(current.public_booking),
                requires_check_in: c.requires_check_in.unwrap_or(current.requires_check_in),
                check_in_grace_minutes: c
                    .check_in_grace_minutes
                    .unwrap_or(current.check_in_grace_minutes),
            };
            rules.check(&mut p);
            p.finish()?;
            let zone = c.timezone.or(current.timezone);
            let bears_on_booking =
                zone != zone_before || rules.bear_on_booking_unlike(&rules_before);
            diesel::update(meeting_spaces::table.filter(meeting_spaces::id.eq(&id)))
                .set((
                    meeting_spaces::name.eq(name),
                    meeting_spaces::slug.eq(c.slug.unwrap_or(current.slug)),
                    meeting_spaces::timezone.eq(zone),
                    meeting_spaces::capacity.eq(rules.capacity),
                    meeting_spaces::description.eq(description),
                    meeting_spaces::amenities.eq(amenities),
                    meeting_spaces::booking_increment.eq(rules.booking_increment),
                    meeting_spaces::min_duration.eq(rules.min_duration),
                    meeting_spaces::max_duration.eq(rules.max_duration),
                    meeting_spaces::buffer_before.eq(rules.buffer_before),
                    meeting_spaces::buffer_after.eq(rules.buffer_after),
                    meeting_spaces::public_booking.eq(rules.public_booking),
                    meeting_spaces::requires_check_in.eq(rules.requires_check_in),
                    meeting_spaces::check_in_grace_minutes.eq(rules.check_in_grace_minutes),
                    meeting_spaces::updated_at.eq(Utc::now().naive_utc()),
                    meeting_spaces::version.eq(meeting_spaces::version + 1),
                ))
                .execute(conn)?;
            if bears_on_booking {
                let event = outbox::availability_changed(
                    &workspace,
                    &id,
                    &current.organization_id,
                    AvailabilityChange::SpaceUpdated,
                    request_id,
                );
                outbox::record(conn, &event)?;
            }
            load(conn, Some(&workspace), &id)
        })
        .await
        .map_err(orgs::slug_taken)?;
    state.nudge.nudge();
    Ok(ApiResponse::ok(space.into()))
}

/// Delete a meeting space
///
/// With its bookings, business hours and unavailability.
#[utoipa::path(
    delete, path = "/api/v1/meeting-spaces/{id}", operation_id = "delete_meeting_space", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`")),
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "Deleted.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let deleted = state
        .db
        .transaction(move |conn| {
            diesel::delete(
                meeting_spaces::table
                    .filter(meeting_spaces::id.eq(&id))
                    .filter(meeting_spaces::workspace_id.eq(&workspace)),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("meeting space"));
    }
    Ok(ApiResponse::ok(()).message("deleted"))
}

/// Where a time zone that changed comes from.
pub(crate) enum ZoneOf<'a> {
    Organization(&'a str),
    Group(&'a str),
}

/// Records `space.availability_changed` (`space_updated`) for each space that
/// keeps the time zone of the organization or group `of`, which changed: its
/// slots and business hours moved in real time.
pub(crate) fn record_zone_change(
    conn: &mut DbConnection,
    workspace: &str,
    of: ZoneOf<'_>,
    request_id: Option<String>,
) -> Result<(), StoreError> {
    let keeping = meeting_spaces::table
        .left_join(
            space_groups::table.on(space_groups::id
                .nullable()
                .eq(meeting_spaces::space_group_id)),
        )
        .filter(meeting_spaces::workspace_id.eq(workspace))
        .filter(meeting_spaces::timezone.is_null())
        .select((meeting_spaces::id, meeting_spaces::organization_id))
        .into_boxed();
    let spaces: Vec<(String, String)> = match of {
        ZoneOf::Organization(id) => keeping
            .filter(meeting_spaces::organization_id.eq(id))
            .filter(space_groups::timezone.is_null())
            .load(conn)?,
        ZoneOf::Group(id) => keeping
            .filter(meeting_spaces::space_group_id.eq(id))
            .load(conn)?,
    };
    for (space, organization) in spaces {
        let event = outbox::availability_changed(
            workspace,
            &space,
            &organization,
            AvailabilityChange::SpaceUpdated,
            request_id.clone(),
        );
        outbox::record(conn, &event)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- business hours

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// ISO number, 1 = Monday.
    fn number(self) -> i32 {
        self as i32 + 1
    }
}

/// One opening interval of a weekday, local wall-clock time of the space.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursEntry {
    weekday: Weekday,
    /// `HH:MM`, 00:00–23:59.
    open: String,
    /// `HH:MM`, after `open`; `24:00` is midnight at the end of the day.
    close: String,
}

/// The week's opening hours; a day without entries is closed, a space without
/// any entry is open around the clock.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    hours: Vec<HoursEntry>,
}

/// Opening hours as the availability and booking checks use them:
/// `(ISO weekday, open minute, close minute)`.
pub type Hours = Vec<(u32, u32, u32)>;

/// A space as bookings are checked against it: its row, time zone and
/// business hours, all of one `version`.
#[derive(Debug)]
pub struct Bookable {
    pub space: Space,
    pub hours: Arc<Hours>,
}

/// Spaces as this replica last read them, by id. An entry may be out of date
/// (another replica changed the space): a booking checked against one is
/// written only while the space's `version` is still the entry's, and is
/// checked again against a fresh read otherwise. Hours are read again only
/// when the version changed.
#[derive(Debug, Default)]
pub struct SpaceCache(Mutex<HashMap<String, Arc<Bookable>>>);

/// Entries kept before the cache starts afresh.
const SPACE_CACHE_ENTRIES: usize = 10_000;

impl SpaceCache {
    /// The space `id` as last read, if it was; possibly out of date.
    pub fn last_seen(&self, id: &str) -> Option<Arc<Bookable>> {
        self.lock().get(id).cloned()
    }

    /// Reads the space `id` (of `workspace`, as [`load`]) with its hours, and
    /// remembers it.
    pub fn read(
        &self,
        conn: &mut DbConnection,
        workspace: Option<&str>,
        id: &str,
    ) -> Result<Arc<Bookable>, Failure> {
        let space = load(conn, workspace, id)?;
        Ok(self.remember(conn, space)?)
    }

    fn remember(&self, conn: &mut DbConnection, space: Space) -> Result<Arc<Bookable>, StoreError> {
        if let Some(seen) = self.lock().get(&space.row.id)
            && seen.space.row.version == space.row.version
        {
            return Ok(seen.clone());
        }
        let hours = Arc::new(load_hours(conn, &space.row.id)?);
        let entry = Arc::new(Bookable { space, hours });
        let mut map = self.lock();
        if map.len() >= SPACE_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(entry.space.row.id.clone(), entry.clone());
        Ok(entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Bookable>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn load_hours(conn: &mut DbConnection, space_id: &str) -> Result<Hours, StoreError> {
    let rows: Vec<(i32, i32, i32)> = business_hours::table
        .filter(business_hours::meeting_space_id.eq(space_id))
        .order((
            business_hours::weekday.asc(),
            business_hours::open_minute.asc(),
        ))
        .select((
            business_hours::weekday,
            business_hours::open_minute,
            business_hours::close_minute,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(d, o, c)| (d as u32, o as u32, c as u32))
        .collect())
}

fn parse_clock(text: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn hours_view(hours: &Hours) -> BusinessHours {
    BusinessHours {
        hours: hours
            .iter()
            .map(|&(d, o, c)| HoursEntry {
                weekday: Weekday::ALL[(d as usize).saturating_sub(1).min(6)],
                open: clock(o),
                close: clock(c),
            })
            .collect(),
    }
}

/// Get a space's business hours
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces/{id}/business-hours", operation_id = "get_business_hours", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`")),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "The opening hours, Monday first.", body = Envelope<BusinessHours>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get_hours(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<BusinessHours>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let hours = state
        .db
        .run(move |conn| {
            load(conn, Some(&workspace), &id)?;
            Ok::<_, Failure>(load_hours(conn, &id)?)
        })
        .await?;
    Ok(ApiResponse::ok(hours_view(&hours)))
}

/// Replace a space's business hours
///
/// Intervals of one weekday must not overlap. An empty list opens the space
/// around the clock.
#[utoipa::path(
    put, path = "/api/v1/meeting-spaces/{id}/business-hours", operation_id = "put_business_hours", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`")),
    request_body = BusinessHours,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "The opening hours as stored.", body = Envelope<BusinessHours>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "A bad time, or overlapping intervals.", body = ErrorEnvelope),
    )
)]
pub async fn put_hours(
    identity: Caller,
    path: web::Path<String>,
    body: Json<BusinessHours>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<BusinessHours>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let entries = body.into_inner().hours;
    let mut p = Problems::new();
    if entries.len() > 7 * 8 {
        p.add("hours", "at most 56 intervals");
    }
    let mut hours: Hours = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let open = parse_clock(&e.open, false);
        let close = parse_clock(&e.close, true);
        match (open, close) {
            (Some(o), Some(c)) if o < c => hours.push((e.weekday.number() as u32, o, c)),
            (None, _) => p.add(
                &format!("hours[{i}].open"),
                "must be HH:MM between 00:00 and 23:59",
            ),
            (_, None) => p.add(
                &format!("hours[{i}].close"),
                "must be HH:MM between 00:01 and 24:00",
            ),
            _ => p.add(&format!("hours[{i}].close"), "must be after open"),
        }
    }
    hours.sort();
    for pair in hours.windows(2) {
        if pair[0].0 == pair[1].0 && pair[1].1 < pair[0].2 {
            p.add("hours", "intervals of one weekday must not overlap");
            break;
        }
    }
    p.finish()?;
    let stored = hours.clone();
    let request_id = service_kit::request_id::current();
    state
        .db
        .transaction(move |conn| {
            let space = load(conn, Some(&workspace), &id)?.row;
            diesel::delete(business_hours::table.filter(business_hours::meeting_space_id.eq(&id)))
                .execute(conn)?;
            for (d, o, c) in &stored {
                diesel::insert_into(business_hours::table)
                    .values((
                        business_hours::meeting_space_id.eq(&id),
                        business_hours::weekday.eq(*d as i32),
                        business_hours::open_minute.eq(*o as i32),
                        business_hours::close_minute.eq(*c as i32),
                    ))
                    .execute(conn)?;
            }
            // A new version of the space: what was cached of the old one lapses.
            diesel::update(meeting_spaces::table.filter(meeting_spaces::id.eq(&id)))
                .set((
                    meeting_spaces::updated_at.eq(Utc::now().naive_utc()),
                    meeting_spaces::version.eq(meeting_spaces::version + 1),
                ))
                .execute(conn)?;
            let event = outbox::availability_changed(
                &workspace,
                &id,
                &space.organization_id,
                AvailabilityChange::BusinessHours,
                request_id,
            );
            outbox::record(conn, &event)?;
            Ok::<_, Failure>(())
        })
        .await?;
    state.nudge.nudge();
    Ok(ApiResponse::ok(hours_view(&hours)))
}

// ---------------------------------------------------------------- unavailability

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = unavailability)]
struct UnavailabilityRow {
    id: String,
    meeting_space_id: String,
    start_time: NaiveDateTime,
    end_time: NaiveDateTime,
    reason: Option<String>,
    created_at: NaiveDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailabilityView {
    /// `ua_…`
    id: String,
    meeting_space_id: String,
    #[schema(format = DateTime)]
    start_time: String,
    #[schema(format = DateTime)]
    end_time: String,
    reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<UnavailabilityRow> for UnavailabilityView {
    fn from(r: UnavailabilityRow) -> Self {
        UnavailabilityView {
            id: r.id,
            meeting_space_id: r.meeting_space_id,
            start_time: input::wire_time(r.start_time),
            end_time: input::wire_time(r.end_time),
            reason: r.reason,
            created_at: input::wire_time(r.created_at),
        }
    }
}

/// `[start, end)` in UTC.
pub type Period = (DateTime<Utc>, DateTime<Utc>);

/// Keeps `meeting_spaces.unavailable_until` the latest end of the space's
/// periods; one statement, so concurrent changes settle on the right value.
fn refresh_unavailable_until(conn: &mut DbConnection, space_id: &str) -> Result<(), StoreError> {
    let latest = unavailability::table
        .filter(unavailability::meeting_space_id.eq(space_id.to_owned()))
        .select(diesel::dsl::max(unavailability::end_time))
        .single_value();
    diesel::update(meeting_spaces::table.filter(meeting_spaces::id.eq(space_id)))
        .set((
            meeting_spaces::unavailable_until.eq(latest),
            meeting_spaces::version.eq(meeting_spaces::version + 1),
        ))
        .execute(conn)?;
    Ok(())
}

/// Unavailability periods of a space overlapping `[from, to)`.
pub fn unavailable_between(
    conn: &mut DbConnection,
    space: &Space,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Period>, StoreError> {
    if space
        .row
        .unavailable_until
        .is_none_or(|until| until <= from.naive_utc())
    {
        return Ok(Vec::new());
    }
    let space_id = &space.row.id;
    let rows: Vec<(NaiveDateTime, NaiveDateTime)> = unavailability::table
        .filter(unavailability::meeting_space_id.eq(space_id))
        .filter(unavailability::start_time.lt(to.naive_utc()))
        .filter(unavailability::end_time.gt(from.naive_utc()))
        .select((unavailability::start_time, unavailability::end_time))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, e)| (s.and_utc(), e.and_utc()))
        .collect())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUnavailability {
    /// RFC 3339 with an offset.
    #[schema(format = DateTime)]
    start_time: String,
    /// RFC 3339 with an offset, after `start_time`.
    #[schema(format = DateTime)]
    end_time: String,
    reason: Option<String>,
}

/// Add an unavailability period
///
/// No new booking may overlap it; existing bookings stay. Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/api/v1/meeting-spaces/{id}/unavailability", operation_id = "add_unavailability", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`"), crate::openapi::IdempotencyHeader),
    request_body = NewUnavailability,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 201, description = "The new period.", body = Envelope<UnavailabilityView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "A bad field.", body = ErrorEnvelope),
    )
)]
pub async fn add_unavailability(
    req: actix_web::HttpRequest,
    identity: Caller,
    path: web::Path<String>,
    body: Json<NewUnavailability>,
    state: web::Data<BookingState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let space_id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &space_id, "meeting space")?;
    let body = body.into_inner();
    let key = crate::idempotency::Claim::from_request(&req, &workspace, &body)?;
    let mut p = Problems::new();
    let start = p.time("start_time", &body.start_time);
    let end = p.time("end_time", &body.end_time);
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        p.add("end_time", "must be after start_time");
    }
    if let Some(r) = &body.reason {
        p.text("reason", r, input::MAX_ADDRESS);
    }
    p.finish()?;
    let (start, end) = (start.unwrap_or_default(), end.unwrap_or_default());
    let request_id = service_kit::request_id::current();
    let response = crate::idempotency::respond(&state.db, key, move |conn| {
        let space = load(conn, Some(&workspace), &space_id)?.row;
        let id = ids::new_id(UNAVAILABILITY_PREFIX);
        diesel::insert_into(unavailability::table)
            .values((
                unavailability::id.eq(&id),
                unavailability::workspace_id.eq(&workspace),
                unavailability::meeting_space_id.eq(&space_id),
                unavailability::start_time.eq(start.naive_utc()),
                unavailability::end_time.eq(end.naive_utc()),
                unavailability::reason.eq(&body.reason),
                unavailability::created_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn)?;
        refresh_unavailable_until(conn, &space_id)?;
        let event = outbox::availability_changed(
            &workspace,
            &space_id,
            &space.organization_id,
            AvailabilityChange::UnavailabilityAdded,
            request_id,
        );
        outbox::record(conn, &event)?;
        let row = unavailability::table
            .filter(unavailability::id.eq(&id))
            .select(UnavailabilityRow::as_select())
            .first(conn)?;
        Ok(ApiResponse::created(UnavailabilityView::from(row)))
    })
    .await?;
    state.nudge.nudge();
    Ok(response)
}

/// List a space's unavailability periods
///
/// Earliest first.
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces/{id}/unavailability", operation_id = "list_unavailability", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`"), crate::openapi::PageParams),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "A page of periods.", body = ListEnvelope<Vec<UnavailabilityView>>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such space in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn list_unavailability(
    identity: Caller,
    path: web::Path<String>,
    query: Query<OffsetQuery>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<Vec<UnavailabilityView>>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let page = query.validate()?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            load(conn, Some(&workspace), &id)?;
            let total: i64 = unavailability::table
                .filter(unavailability::meeting_space_id.eq(&id))
                .count()
                .get_result(conn)?;
            let rows = unavailability::table
                .filter(unavailability::meeting_space_id.eq(&id))
                .order((unavailability::start_time.asc(), unavailability::id.asc()))
                .select(UnavailabilityRow::as_select())
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load(conn)?;
            Ok::<_, Failure>((rows, total))
        })
        .await?;
    let views = rows.into_iter().map(UnavailabilityView::from).collect();
    Ok(ApiResponse::ok(views).meta(page.meta(total as u64)))
}

/// Delete an unavailability period
#[utoipa::path(
    delete, path = "/api/v1/meeting-spaces/{id}/unavailability/{unavailability_id}", operation_id = "delete_unavailability", tag = "meeting-spaces",
    params(("id" = String, Path, description = "`ms_…`"), ("unavailability_id" = String, Path, description = "`ua_…`")),
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "Deleted.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such space or period in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete_unavailability(
    identity: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let (space_id, id) = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &space_id, "meeting space")?;
    input::known_id(UNAVAILABILITY_PREFIX, &id, "unavailability period")?;
    let request_id = service_kit::request_id::current();
    let deleted = state
        .db
        .transaction(move |conn| {
            let deleted = diesel::delete(
                unavailability::table
                    .filter(unavailability::id.eq(&id))
                    .filter(unavailability::meeting_space_id.eq(&space_id))
                    .filter(unavailability::workspace_id.eq(&workspace)),
            )
            .execute(conn)?;
            if deleted > 0 {
                refresh_unavailable_until(conn, &space_id)?;
                let organization_id: String = meeting_spaces::table
                    .filter(meeting_spaces::id.eq(&space_id))
                    .select(meeting_spaces::organization_id)
                    .first(conn)?;
                let event = outbox::availability_changed(
                    &workspace,
                    &space_id,
                    &organization_id,
                    AvailabilityChange::UnavailabilityRemoved,
                    request_id,
                );
                outbox::record(conn, &event)?;
            }
            Ok::<_, StoreError>(deleted)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("unavailability period"));
    }
    state.nudge.nudge();
    Ok(ApiResponse::ok(()).message("deleted"))
}
