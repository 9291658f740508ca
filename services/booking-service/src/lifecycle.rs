//! The booking lifecycle that runs by itself: the moves that time makes.
//!
//! | when | move | event |
//! |---|---|---|
//! | 15 minutes before a confirmed booking starts | (announced: `start_notified_at`) | `booking.start` |
//! | the start, on a booking made without check-in | `confirmed → active` | — |
//! | the end of an active booking | `active → completed` | `booking.end` |
//! | the check-in deadline of a pending or confirmed booking | `→ cancelled` (`no_show`) | `booking.cancelled` |
//!
//! "Without check-in" is the booking's own record: a booking made on a space
//! with `requires_check_in` carries a `check_in_deadline` until it is checked
//! in, and is released as a no-show after it instead of starting by itself.
//!
//! Every replica runs a pass every `bookings.lifecycle_interval_secs`. A pass
//! reads what is due, in four index-backed queries (at most [`BATCH`] rows
//! each), and makes each move as one conditional `UPDATE` (the row must still
//! be as the move needs it) followed by its event, in one transaction per
//! move. Replicas that race for a move make it once: the loser's `UPDATE`
//! finds the row moved and writes nothing, event included.
//!
//! Moves happen in the order they were due, across bookings, also when a pass
//! catches up after downtime: a booking that both started and ended while no
//! replica ran is announced, started and completed, in that order, with the
//! other bookings' moves between them where they belong. An event emitted more
//! than one interval (and a second of timer slack) after it was due carries
//! `"late": true`. When a query returns a full batch, the pass only makes
//! moves due no later than the last row of that batch (nothing unread can
//! come before them) and then reads again.

use crate::bookings::{BookingRow, CHECK_IN_EARLY_MINUTES, CancelReason, Status};
use crate::outbox::{self, BookingEvent};
use crate::schema::bookings;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use events::Nudge;
use store::{Database, DbConnection, StoreError};

/// Rows per query per pass.
pub const BATCH: i64 = 200;
/// Timer slack on top of one interval before an event counts as late.
const LATE_SLACK: Duration = Duration::seconds(1);

// The status conditions of the scans, written literally (a bound value could
// not prove the partial indexes of the lifecycle migration usable).
const CONFIRMED: &str = "bookings.status = 'confirmed'";
const ACTIVE: &str = "bookings.status = 'active'";

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moves {
    /// `booking.start` recorded.
    pub announced: usize,
    /// `confirmed → active`.
    pub started: usize,
    /// `active → completed` (`booking.end`).
    pub ended: usize,
    /// No-shows released (`booking.cancelled`, `no_show`).
    pub released: usize,
    /// Events of this run marked `late`.
    pub late: usize,
}

impl Moves {
    pub fn events(&self) -> usize {
        self.announced + self.ended + self.released
    }

    pub fn is_empty(&self) -> bool {
        *self == Moves::default()
    }
}

/// The lifecycle of one replica.
#[derive(Clone)]
pub struct Lifecycle {
    db: Database,
    nudge: Nudge,
    interval: std::time::Duration,
}

impl Lifecycle {
    /// `interval` is the time between passes, which is also how late an event
    /// may be before it is marked `late`.
    pub fn new(db: Database, nudge: Nudge, interval: std::time::Duration) -> Lifecycle {
        Lifecycle {
            db,
            nudge,
            interval,
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        self.interval
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Makes every move due at `now`, in the order they were due; wakes the
    /// relay when events were recorded.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<Moves, StoreError> {
        let mut moves = Moves::default();
        let outcome = self.catch_up(now, &mut moves).await;
        if moves.events() > 0 {
            self.nudge.nudge();
        }
        outcome.map(|()| moves)
    }

    async fn catch_up(&self, now: DateTime<Utc>, moves: &mut Moves) -> Result<(), StoreError> {
        let now = now.naive_utc();
        let late_after = Duration::from_std(self.interval)
            .ok()
            .and_then(|interval| interval.checked_add(&LATE_SLACK))
            .unwrap_or(Duration::MAX);
        loop {
            let plan = self.db.run(move |conn| due_moves(conn, now)).await?;
            let mut made = 0;
            for step in plan.steps {
                let late = now - step.late_due > late_after;
                let kind = step.kind;
                if self
                    .db
                    .transaction(move |conn| make(conn, &step, now, late))
                    .await?
                {
                    made += 1;
                    moves.late += usize::from(late && kind.emits());
                    match kind {
                        Kind::Announce => moves.announced += 1,
                        Kind::Start => moves.started += 1,
                        Kind::End => moves.ended += 1,
                        Kind::Release => moves.released += 1,
                    }
                }
            }
            // Another batch only when one was full and this one moved
            // something: a batch whose moves all went to another replica
            // ends the run, and the next pass carries on.
            if !plan.more || made == 0 {
                return Ok(());
            }
        }
    }
}

/// The moves, in the order of a booking's life when two fall due at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Announce,
    Start,
    End,
    Release,
}

impl Kind {
    fn emits(self) -> bool {
        self != Kind::Start
    }
}

#[derive(Debug)]
struct Step {
    /// When the move was due; the order of moves.
    due: NaiveDateTime,
    /// What lateness is measured from: `due`, except for an announcement of a
    /// booking made, moved or confirmed inside its last 15 minutes, which was
    /// due only then.
    late_due: NaiveDateTime,
    kind: Kind,
    booking: String,
}

/// What a pass reads about a booking.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = bookings)]
struct Timing {
    id: String,
    status: String,
    start_time: NaiveDateTime,
    end_time: NaiveDateTime,
    check_in_deadline: Option<NaiveDateTime>,
    start_notified_at: Option<NaiveDateTime>,
    updated_at: NaiveDateTime,
}

struct Plan {
    steps: Vec<Step>,
    /// A query returned a full batch: more may be due.
    more: bool,
}

fn announce_lead() -> Duration {
    Duration::minutes(CHECK_IN_EARLY_MINUTES)
}

/// The moves due at `now`, in time order.
fn due_moves(conn: &mut DbConnection, now: NaiveDateTime) -> Result<Plan, StoreError> {
    let lead = announce_lead();
    let to_announce: Vec<Timing> = bookings::table
        .filter(sql::<Bool>(CONFIRMED))
        .filter(bookings::start_time.le(now + lead))
        .filter(bookings::start_notified_at.is_null())
        .order(bookings::start_time.asc())
        .limit(BATCH)
        .select(Timing::as_select())
        .load(conn)?;
    let to_start: Vec<Timing> = bookings::table
        .filter(sql::<Bool>(CONFIRMED))
        .filter(bookings::start_time.le(now))
        .filter(bookings::check_in_deadline.is_null())
        .order(bookings::start_time.asc())
        .limit(BATCH)
        .select(Timing::as_select())
        .load(conn)?;
    let to_end: Vec<Timing> = bookings::table
        .filter(sql::<Bool>(ACTIVE))
        .filter(bookings::end_time.le(now))
        .order(bookings::end_time.asc())
        .limit(BATCH)
        .select(Timing::as_select())
        .load(conn)?;
    let to_release: Vec<Timing> = bookings::table
        .filter(bookings::check_in_deadline.le(now))
        .filter(bookings::status.eq_any([Status::Pending.as_str(), Status::Confirmed.as_str()]))
        .order(bookings::check_in_deadline.asc())
        .limit(BATCH)
        .select(Timing::as_select())
        .load(conn)?;

    // Nothing unread is due before the last row of a full batch.
    let full = |rows: &[Timing], due: fn(&Timing) -> NaiveDateTime| {
        (rows.len() as i64 >= BATCH)
            .then(|| rows.last().map(due))
            .flatten()
    };
    let horizon = [
        full(&to_announce, |t| t.start_time - announce_lead()),
        full(&to_start, |t| t.start_time),
        full(&to_end, |t| t.end_time),
        full(&to_release, |t| t.check_in_deadline.unwrap_or(t.start_time)),
    ]
    .into_iter()
    .flatten()
    .min();

    let mut seen = std::collections::HashSet::new();
    let mut steps = Vec::new();
    for t in [to_announce, to_start, to_end, to_release]
        .into_iter()
        .flatten()
    {
        if seen.insert(t.id.clone()) {
            steps_of(&t, now, &mut steps);
        }
    }
    if let Some(h) = horizon {
        steps.retain(|s| s.due <= h);
    }
    steps.sort_by(|a, b| (a.due, a.kind, &a.booking).cmp(&(b.due, b.kind, &b.booking)));
    Ok(Plan {
        steps,
        more: horizon.is_some(),
    })
}

/// The moves due at `now` for the booking `t`, in the order of its life.
fn steps_of(t: &Timing, now: NaiveDateTime, steps: &mut Vec<Step>) {
    let mut step = |due: NaiveDateTime, late_due: NaiveDateTime, kind: Kind| {
        steps.push(Step {
            due,
            late_due,
            kind,
            booking: t.id.clone(),
        })
    };
    let mut status = Status::ALL
        .into_iter()
        .find(|s| s.as_str() == t.status)
        .unwrap_or(Status::Cancelled);
    if status == Status::Confirmed {
        let announce_at = t.start_time - announce_lead();
        if t.start_notified_at.is_none() && announce_at <= now {
            step(
                announce_at,
                announce_at.max(t.updated_at.min(now)),
                Kind::Announce,
            );
        }
        if t.check_in_deadline.is_none() && t.start_time <= now {
            step(t.start_time, t.start_time, Kind::Start);
            status = Status::Active;
        }
    }
    if status == Status::Active && t.end_time <= now {
        step(t.end_time, t.end_time, Kind::End);
    }
    if matches!(status, Status::Pending | Status::Confirmed)
        && let Some(deadline) = t.check_in_deadline.filter(|d| *d <= now)
    {
        step(deadline, deadline, Kind::Release);
    }
}

/// Makes one move if the booking is still as it needs, with its event; inside
/// the move's transaction. `false` when the booking had moved on (another
/// replica, or a request, came first).
fn make(
    conn: &mut DbConnection,
    step: &Step,
    now: NaiveDateTime,
    late: bool,
) -> Result<bool, StoreError> {
    let this = || bookings::table.filter(bookings::id.eq(&step.booking));
    let (changed, event) = match step.kind {
        Kind::Announce => (
            diesel::update(
                this()
                    .filter(bookings::status.eq(Status::Confirmed.as_str()))
                    .filter(bookings::start_notified_at.is_null())
                    .filter(bookings::start_time.le(now + announce_lead())),
            )
            .set(bookings::start_notified_at.eq(now))
            .execute(conn)?,
            Some(BookingEvent::Start),
        ),
        Kind::Start => (
            diesel::update(
                this()
                    .filter(bookings::status.eq(Status::Confirmed.as_str()))
                    .filter(bookings::check_in_deadline.is_null())
                    .filter(bookings::start_time.le(now)),
            )
            .set((
                bookings::status.eq(Status::Active.as_str()),
                bookings::updated_at.eq(now),
            ))
            .execute(conn)?,
            None,
        ),
        Kind::End => (
            diesel::update(
                this()
                    .filter(bookings::status.eq(Status::Active.as_str()))
                    .filter(bookings::end_time.le(now)),
            )
            .set((
                bookings::status.eq(Status::Completed.as_str()),
                bookings::updated_at.eq(now),
            ))
            .execute(conn)?,
            Some(BookingEvent::End),
        ),
        Kind::Release => (
            diesel::update(
                this()
                    .filter(
                        bookings::status
                            .eq_any([Status::Pending.as_str(), Status::Confirmed.as_str()]),
                    )
                    .filter(bookings::check_in_deadline.le(now)),
            )
            .set((
                bookings::status.eq(Status::Cancelled.as_str()),
                bookings::cancel_reason.eq(CancelReason::NoShow.as_str()),
                bookings::check_in_deadline.eq(None::<NaiveDateTime>),
                bookings::updated_at.eq(now),
            ))
            .execute(conn)?,
            Some(BookingEvent::Cancelled),
        ),
    };
    if changed == 0 {
        return Ok(false);
    }
    if let Some(kind) = event {
        let row: BookingRow = this().select(BookingRow::as_select()).first(conn)?;
        let mut event = outbox::booking_event(kind, &row, None);
        if late {
            event.data["late"] = true.into();
        }
        outbox::record(conn, &event)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc()
            + Duration::minutes(minutes)
    }

    fn timing(status: Status, start: i64, end: i64, deadline: Option<i64>) -> Timing {
        Timing {
            id: "bk_1".into(),
            status: status.as_str().into(),
            start_time: at(start),
            end_time: at(end),
            check_in_deadline: deadline.map(at),
            start_notified_at: None,
            updated_at: at(start - 24 * 60),
        }
    }

    fn steps(t: &Timing, now: i64) -> Vec<(Kind, i64)> {
        let mut out = Vec::new();
        steps_of(t, at(now), &mut out);
        out.iter()
            .map(|s| (s.kind, (s.due - at(0)).num_minutes()))
            .collect()
    }

    #[test]
    fn a_booking_that_passed_unseen_is_announced_started_and_ended() {
        let t = timing(Status::Confirmed, 60, 120, None);
        assert_eq!(steps(&t, 0), []);
        assert_eq!(steps(&t, 45), [(Kind::Announce, 45)]);
        assert_eq!(
            steps(&t, 500),
            [(Kind::Announce, 45), (Kind::Start, 60), (Kind::End, 120)]
        );
        let started = Timing {
            status: "active".into(),
            start_notified_at: Some(at(45)),
            ..timing(Status::Confirmed, 60, 120, None)
        };
        assert_eq!(steps(&started, 90), []);
        assert_eq!(steps(&started, 120), [(Kind::End, 120)]);
    }

    #[test]
    fn bookings_with_check_in_are_released_not_started() {
        let t = timing(Status::Confirmed, 60, 120, Some(70));
        assert_eq!(steps(&t, 65), [(Kind::Announce, 45)]);
        assert_eq!(steps(&t, 70), [(Kind::Announce, 45), (Kind::Release, 70)]);
        let pending = timing(Status::Pending, 60, 120, Some(70));
        assert_eq!(steps(&pending, 500), [(Kind::Release, 70)]);
        let pending_free = timing(Status::Pending, 60, 120, None);
        assert_eq!(steps(&pending_free, 500), [], "time does not move it");
    }

    #[test]
    fn a_late_made_booking_is_announced_on_time() {
        let t = Timing {
            updated_at: at(50),
            ..timing(Status::Confirmed, 60, 120, None)
        };
        let mut out = Vec::new();
        steps_of(&t, at(50), &mut out);
        assert_eq!(out[0].due, at(45), "ordered as due");
        assert_eq!(out[0].late_due, at(50), "but due only once made");
    }
}
