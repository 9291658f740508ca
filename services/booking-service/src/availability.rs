//! Availability: a space's slots in its own time zone, aligned to its booking
//! increment counted from local midnight, each `available`, `booked` or
//! `unavailable`. The arithmetic is pure (and tested on DST days); the handler
//! only loads what it needs.
//!
//! Slots step through real time from local midnight to the next local
//! midnight, so a 23-hour day has 23 hours of slots and a 25-hour day 25, and a
//! wall-clock time that does not exist never appears.

use crate::input;
use crate::meeting_spaces::{self, Hours, MAX_BUFFER_MINUTES, MAX_DURATION_MINUTES};
use crate::openapi::{Envelope, ErrorEnvelope};
use crate::schema::bookings;
use crate::tenancy::Caller;
use crate::{BookingState, Failure};
use actix_web::web;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use identity::Scope;
use serde::{Deserialize, Serialize};
use service_kit::ids::prefix;
use service_kit::{ApiError, ApiResponse, Query};
use store::{DbConnection, StoreError};
use utoipa::{IntoParams, ToSchema};

pub const MAX_RANGE_DAYS: i64 = 31;
pub const ACTIVE_STATUSES: [&str; 3] = ["pending", "confirmed", "active"];

type Interval = (DateTime<Utc>, DateTime<Utc>);

/// The instant a local wall-clock time of `date` names: the earlier one when
/// the clock goes back, the first instant after the gap when it goes forward.
/// `minute` may be 1440 (the next midnight).
pub fn local_instant(tz: Tz, date: NaiveDate, minute: u32) -> DateTime<Utc> {
    let naive =
        date.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minute));
    let mut probe = naive;
    // Gaps are at most a few hours (a day when a zone changed its base offset).
    for _ in 0..(26 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            LocalResult::None => probe += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// `[start, end)` of a local day.
pub fn day_bounds(tz: Tz, date: NaiveDate) -> Interval {
    let next = date.succ_opt().unwrap_or(date);
    (local_instant(tz, date, 0), local_instant(tz, next, 0))
}

/// The local date an instant falls on.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// Opening intervals of a local day; a space without business hours is open
/// all day.
pub fn open_intervals(tz: Tz, hours: &Hours, date: NaiveDate) -> Vec<Interval> {
    if hours.is_empty() {
        return vec![day_bounds(tz, date)];
    }
    let weekday = date.weekday().number_from_monday();
    hours
        .iter()
        .filter(|(d, _, _)| *d == weekday)
        .map(|&(_, open, close)| {
            (
                local_instant(tz, date, open),
                local_instant(tz, date, close),
            )
        })
        .filter(|(o, c)| o < c)
        .collect()
}

/// Whether `t` is a whole number of increments after its local midnight.
pub fn is_aligned(tz: Tz, increment_minutes: i64, t: DateTime<Utc>) -> bool {
    let (midnight, _) = day_bounds(tz, local_date(tz, t));
    let since = t - midnight;
    since.num_seconds() % (increment_minutes * 60) == 0 && t.timestamp_subsec_nanos() == 0
}

/// Whether `[start, end)` lies inside one opening interval.
pub fn within_hours(tz: Tz, hours: &Hours, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    let date = local_date(tz, start);
    // An interval of the previous day may run past midnight only up to 24:00,
    // so the start's own day and (for 24:00 openings) contiguous next days suffice.
    let mut open = open_intervals(tz, hours, date);
    let mut day = date;
    while let Some(&(_, close)) = open.last() {
        if close >= end {
            break;
        }
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
        let next = open_intervals(tz, hours, day);
        match next.first() {
            // A 24:00 close continuing into a 00:00 opening is one interval.
            Some(&(o, c)) if o == close => {
                let last = open.len() - 1;
                open[last].1 = c;
            }
            _ => break,
        }
        if day > date + Duration::days(8) {
            break;
        }
    }
    open.iter().any(|&(o, c)| o <= start && end <= c)
}

fn overlaps(a: Interval, b: Interval) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    Available,
    Booked,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: SlotStatus,
}

/// An active booking as availability sees it.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// `[start, end)` of the booking itself.
    pub booked: Interval,
    /// With its buffers.
    pub blocked: Interval,
}

/// What decides a space's slots.
#[derive(Debug, Clone)]
pub struct Rules {
    pub tz: Tz,
    pub increment_minutes: i64,
    pub buffer_before_minutes: i64,
    pub buffer_after_minutes: i64,
    pub hours: Hours,
}

/// Slots of the local days `from..=to`.
///
/// `booked`: the slot overlaps an active booking. `unavailable`: in the past,
/// outside business hours, in an unavailability period, or a booking of just
/// this slot (with the space's buffers) would touch another booking's buffers.
pub fn slots(
    rules: &Rules,
    from: NaiveDate,
    to: NaiveDate,
    unavailable: &[Interval],
    taken: &[Taken],
    now: DateTime<Utc>,
) -> Vec<Slot> {
    let step = Duration::minutes(rules.increment_minutes);
    let before = Duration::minutes(rules.buffer_before_minutes);
    let after = Duration::minutes(rules.buffer_after_minutes);
    let mut out = Vec::new();
    let mut date = from;
    while date <= to {
        let (day_start, day_end) = day_bounds(rules.tz, date);
        let open = open_intervals(rules.tz, &rules.hours, date);
        let mut t = day_start;
        while t + step <= day_end {
            let slot = (t, t + step);
            let status = if taken.iter().any(|b| overlaps(slot, b.booked)) {
                SlotStatus::Booked
            } else if t < now
                || !open.iter().any(|&(o, c)| o <= slot.0 && slot.1 <= c)
                || unavailable.iter().any(|&u| overlaps(slot, u))
                || taken
                    .iter()
                    .any(|b| overlaps((slot.0 - before, slot.1 + after), b.blocked))
            {
                SlotStatus::Unavailable
            } else {
                SlotStatus::Available
            };
            out.push(Slot {
                start: slot.0,
                end: slot.1,
                status,
            });
            t += step;
        }
        date = match date.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    out
}

/// Active bookings of a space whose blocked interval touches `[from, to)`.
pub fn taken_between(
    conn: &mut DbConnection,
    space_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Taken>, StoreError> {
    // Bookings are bounded in length, so the index on (space, blocked_start)
    // serves a narrow range even with years of bookings in the table.
    let earliest = from - Duration::minutes(MAX_DURATION_MINUTES + 2 * MAX_BUFFER_MINUTES);
    let rows: Vec<(NaiveDateTime, NaiveDateTime, NaiveDateTime, NaiveDateTime)> = bookings::table
        .filter(bookings::meeting_space_id.eq(space_id))
        .filter(bookings::blocked_start.ge(earliest.naive_utc()))
        .filter(bookings::blocked_start.lt(to.naive_utc()))
        .filter(bookings::blocked_end.gt(from.naive_utc()))
        .filter(bookings::status.eq_any(ACTIVE_STATUSES))
        .select((
            bookings::start_time,
            bookings::end_time,
            bookings::blocked_start,
            bookings::blocked_end,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, e, bs, be)| Taken {
            booked: (s.and_utc(), e.and_utc()),
            blocked: (bs.and_utc(), be.and_utc()),
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// One local day, `YYYY-MM-DD`.
    date: Option<String>,
    /// First local day of a range, `YYYY-MM-DD` (with `to`).
    from: Option<String>,
    /// Last local day of the range, inclusive; at most 31 days in all.
    to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlotView {
    #[schema(format = DateTime)]
    start_time: String,
    #[schema(format = DateTime)]
    end_time: String,
    /// `start_time` in the space's time zone, with its offset that day.
    local_start_time: String,
    status: SlotStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityView {
    meeting_space_id: String,
    /// The space's IANA time zone.
    timezone: String,
    /// Minutes.
    booking_increment: i32,
    /// First local day, `YYYY-MM-DD`.
    from: String,
    /// Last local day, inclusive.
    to: String,
    slots: Vec<SlotView>,
}

fn parse_date(field: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|d| (1900..=9000).contains(&d.year()))
        .ok_or_else(|| ApiError::invalid_query(field, "must be a date, YYYY-MM-DD"))
}

/// A space's availability
///
/// Slots of one local day (`date`) or of up to 31 (`from`, `to`). Public for
/// spaces with `public_booking`; otherwise needs `organizations:read` or
/// `bookings:read`.
#[utoipa::path(
    get, path = "/api/v1/meeting-spaces/{id}/availability", operation_id = "get_availability", tag = "availability",
    params(("id" = String, Path, description = "`ms_…`"), AvailabilityQuery),
    security((), ("bearer_token" = ["bookings:read"]), ("api_key" = ["bookings:read"])),
    responses(
        (status = 200, description = "The slots, in time order.", body = Envelope<AvailabilityView>),
        (status = 400, description = "Missing or bad dates, or a range over 31 days.", body = ErrorEnvelope),
        (status = 401, description = "No credential, and the space is not public.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read` or `bookings:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such space (visible to the caller).", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Caller,
    path: web::Path<String>,
    query: Query<AvailabilityQuery>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<AvailabilityView>, ApiError> {
    let workspace = if identity.is_anonymous() {
        None
    } else {
        if !identity.scopes.contains(&Scope::ORGANIZATIONS_READ) {
            identity.require_scope(&Scope::BOOKINGS_READ)?;
        }
        Some(identity.require_workspace()?.to_owned())
    };
    let id = path.into_inner();
    input::known_id(prefix::MEETING_SPACE, &id, "meeting space")?;
    let q = query.into_inner();
    let (from, to) = match (&q.date, &q.from, &q.to) {
        (Some(d), None, None) => {
            let d = parse_date("date", d)?;
            (d, d)
        }
        (None, Some(f), Some(t)) => {
            let (f, t) = (parse_date("from", f)?, parse_date("to", t)?);
            if t < f {
                return Err(ApiError::invalid_query("to", "must not be before from"));
            }
            if (t - f).num_days() >= MAX_RANGE_DAYS {
                return Err(ApiError::invalid_query(
                    "to",
                    "the range is at most 31 days",
                ));
            }
            (f, t)
        }
        _ => {
            return Err(ApiError::invalid_query(
                "date",
                "send either date, or from and to",
            ));
        }
    };
    let anonymous = workspace.is_none();
    let cache = state.spaces.clone();
    let (bookable, unavailable, taken) = state
        .db
        .run(move |conn| {
            let bookable = cache.read(conn, workspace.as_deref(), &id)?;
            let space = &bookable.space;
            if anonymous && !space.row.public_booking {
                return Err(Failure::Api(ApiError::not_found("meeting space")));
            }
            let (start, _) = day_bounds(space.tz, from);
            let (_, end) = day_bounds(space.tz, to);
            let unavailable = meeting_spaces::unavailable_between(conn, space, start, end)?;
            let taken = taken_between(conn, &id, start, end)?;
            Ok((bookable, unavailable, taken))
        })
        .await?;
    let (space, hours) = (&bookable.space, &bookable.hours);
    let rules = Rules {
        tz: space.tz,
        increment_minutes: i64::from(space.row.booking_increment),
        buffer_before_minutes: i64::from(space.row.buffer_before),
        buffer_after_minutes: i64::from(space.row.buffer_after),
        hours: hours.to_vec(),
    };
    let slots = slots(&rules, from, to, &unavailable, &taken, Utc::now())
        .into_iter()
        .map(|s| SlotView {
            start_time: service_kit::time::format_rfc3339(s.start),
            end_time: service_kit::time::format_rfc3339(s.end),
            local_start_time: s
                .start
                .with_timezone(&space.tz)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            status: s.status,
        })
        .collect();
    Ok(ApiResponse::ok(AvailabilityView {
        meeting_space_id: space.row.id.clone(),
        timezone: space.tz.name().to_owned(),
        booking_increment: space.row.booking_increment,
        from: from.to_string(),
        to: to.to_string(),
        slots,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Rules {
        Rules {
            tz: chrono_tz::Europe::London,
            increment_minutes: 30,
            buffer_before_minutes: 0,
            buffer_after_minutes: 0,
            hours: Vec::new(),
        }
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn past() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn an_ordinary_day_has_48_half_hours() {
        let s = slots(
            &london(),
            date("2025-06-02"),
            date("2025-06-02"),
            &[],
            &[],
            past(),
        );
        assert_eq!(s.len(), 48);
        assert!(s.iter().all(|s| s.status == SlotStatus::Available));
        // 00:00 BST is 23:00 UTC the day before.
        assert_eq!(
            s[0].start,
            Utc.with_ymd_and_hms(2025, 6, 1, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_23_hour_day_skips_the_missing_hour() {
        // 2025-03-30: London clocks go from 01:00 GMT to 02:00 BST.
        let s = slots(
            &london(),
            date("2025-03-30"),
            date("2025-03-30"),
            &[],
            &[],
            past(),
        );
        assert_eq!(s.len(), 46);
        let local: Vec<String> = s
            .iter()
            .map(|s| {
                s.start
                    .with_timezone(&chrono_tz::Europe::London)
                    .format("%H:%M")
                    .to_string()
            })
            .collect();
        assert_eq!(&local[..4], ["00:00", "00:30", "02:00", "02:30"]);
        assert!(!local.iter().any(|l| l.starts_with("01:")));
        assert_eq!(local.last().unwrap(), "23:30");
    }

    #[test]
    fn the_25_hour_day_has_the_repeated_hour_twice() {
        // 2025-10-26: London clocks go from 02:00 BST back to 01:00 GMT.
        let s = slots(
            &london(),
            date("2025-10-26"),
            date("2025-10-26"),
            &[],
            &[],
            past(),
        );
        assert_eq!(s.len(), 50);
        let one_am = s
            .iter()
            .filter(|s| {
                s.start
                    .with_timezone(&chrono_tz::Europe::London)
                    .format("%H:%M")
                    .to_string()
                    == "01:00"
            })
            .count();
        assert_eq!(one_am, 2);
    }

    #[test]
    fn business_hours_on_a_dst_day_are_wall_clock_hours() {
        let mut rules = london();
        // Sunday 09:00–17:00 local.
        rules.hours = vec![(7, 9 * 60, 17 * 60)];
        let s = slots(
            &rules,
            date("2025-03-30"),
            date("2025-03-30"),
            &[],
            &[],
            past(),
        );
        let open: Vec<_> = s
            .iter()
            .filter(|s| s.status == SlotStatus::Available)
            .collect();
        assert_eq!(open.len(), 16);
        // 09:00 BST = 08:00 UTC.
        assert_eq!(
            open[0].start,
            Utc.with_ymd_and_hms(2025, 3, 30, 8, 0, 0).unwrap()
        );
        // Monday is closed.
        let monday = slots(
            &rules,
            date("2025-03-31"),
            date("2025-03-31"),
            &[],
            &[],
            past(),
        );
        assert!(monday.iter().all(|s| s.status == SlotStatus::Unavailable));
    }

    #[test]
    fn bookings_buffers_and_unavailability() {
        let mut rules = london();
        rules.tz = chrono_tz::UTC;
        rules.buffer_after_minutes = 30;
        let at = |h, m| Utc.with_ymd_and_hms(2025, 6, 2, h, m, 0).unwrap();
        let taken = [Taken {
            booked: (at(10, 0), at(11, 0)),
            blocked: (at(10, 0), at(11, 30)),
        }];
        let unavailable = [(at(14, 0), at(15, 0))];
        let s = slots(
            &rules,
            date("2025-06-02"),
            date("2025-06-02"),
            &unavailable,
            &taken,
            past(),
        );
        let status = |h, m| s.iter().find(|s| s.start == at(h, m)).unwrap().status;
        assert_eq!(status(10, 0), SlotStatus::Booked);
        assert_eq!(status(10, 30), SlotStatus::Booked);
        // Inside the booking's buffer.
        assert_eq!(status(11, 0), SlotStatus::Unavailable);
        // Its own buffer would reach into the booking.
        assert_eq!(status(9, 30), SlotStatus::Unavailable);
        assert_eq!(status(9, 0), SlotStatus::Available);
        assert_eq!(status(11, 30), SlotStatus::Available);
        assert_eq!(status(14, 30), SlotStatus::Unavailable);
        // The past is not bookable.
        let later = slots(
            &rules,
            date("2025-06-02"),
            date("2025-06-02"),
            &[],
            &[],
            at(12, 10),
        );
        assert_eq!(
            later.iter().find(|s| s.start == at(12, 0)).unwrap().status,
            SlotStatus::Unavailable
        );
        assert_eq!(
            later.iter().find(|s| s.start == at(12, 30)).unwrap().status,
            SlotStatus::Available
        );
    }

    #[test]
    fn alignment_and_hours_checks() {
        let tz = chrono_tz::Europe::London;
        let t = Utc.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap(); // 02:00 BST
        assert!(is_aligned(tz, 30, t));
        assert!(!is_aligned(tz, 30, t + Duration::minutes(15)));
        let hours = vec![(7, 9 * 60, 17 * 60)];
        let nine = Utc.with_ymd_and_hms(2025, 3, 30, 8, 0, 0).unwrap();
        assert!(within_hours(tz, &hours, nine, nine + Duration::hours(8)));
        assert!(!within_hours(tz, &hours, nine, nine + Duration::hours(9)));
        // Open all day Monday and Tuesday: a booking across midnight fits.
        let days = vec![(1, 0, 1440), (2, 0, 1440)];
        let late = Utc.with_ymd_and_hms(2025, 6, 2, 22, 0, 0).unwrap(); // Mon 23:00 BST
        assert!(within_hours(tz, &days, late, late + Duration::hours(2)));
    }
    proptest::proptest! {
        /// Any day in any zone: the slots tile the local day exactly (23, 24
        /// or 25 hours, or whatever the zone's change makes it), each aligned.
        #[test]
        fn slots_tile_every_local_day(
            zone in proptest::sample::select(vec![
                "Europe/London", "America/New_York", "Australia/Sydney",
                "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago", "UTC",
            ]),
            days in 0i64..(16 * 366),
            increment in proptest::sample::select(vec![15i64, 30, 60]),
        ) {
            let tz: Tz = zone.parse().unwrap();
            let date = date("2020-01-01") + Duration::days(days);
            let rules = Rules { tz, increment_minutes: increment, ..london() };
            let s = slots(&rules, date, date, &[], &[], past());
            let (start, end) = day_bounds(tz, date);
            proptest::prop_assert_eq!(s.first().map(|s| s.start), Some(start));
            for pair in s.windows(2) {
                proptest::prop_assert_eq!(pair[0].end, pair[1].start);
            }
            // A day whose length is not a whole number of increments (a
            // 30-minute change with 60-minute slots) ends with a shorter gap.
            let last = s.last().unwrap().end;
            proptest::prop_assert!(last <= end && end - last < Duration::minutes(increment));
            for slot in &s {
                proptest::prop_assert!(is_aligned(tz, increment, slot.start));
                proptest::prop_assert_eq!(local_date(tz, slot.start), date);
            }
        }
    }
}
