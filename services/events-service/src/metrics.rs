//! events-service's own metrics, registered in the app's registry beside the
//! HTTP ones: events consumed, deliveries by outcome, attempt latency,
//! subscriptions failing and the streams' lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub stream: String,
    /// `stored`, or `duplicate` for an event stored before.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `succeeded`, `retrying` (failed, another attempt is scheduled) or
    /// `failed` (failed, no attempt left).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub stream: String,
    /// `pending` (handed out, not acknowledged) or `undelivered` (not handed
    /// out yet).
    pub kind: &'static str,
}

pub struct Metrics {
    consumed: Family<ConsumedLabels, Counter>,
    attempts: Family<OutcomeLabels, Counter>,
    attempt_latency: Histogram,
    failing: Gauge,
    lag: Family<LagLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            consumed: Family::default(),
            attempts: Family::default(),
            attempt_latency: service_kit::metrics::latency_histogram(),
            failing: Gauge::default(),
            lag: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every family in the app's `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "events_consumed",
            "Events read from the streams, by stream and whether they were new",
            self.consumed.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Delivery attempts by outcome: succeeded and failed end a delivery, retrying schedules another attempt",
            self.attempts.clone(),
        );
        registry.register(
            "webhook_attempt_duration_seconds",
            "Time from sending a delivery to its receiver's answer (or the failure)",
            self.attempt_latency.clone(),
        );
        registry.register(
            "webhook_subscriptions_failing",
            "Subscriptions whose deliveries exhausted their retries",
            self.failing.clone(),
        );
        registry.register(
            "events_stream_lag",
            "Entries of a stream the consumer group has not handled, by kind",
            self.lag.clone(),
        );
    }

    pub fn consumed(&self, stream: &str, duplicate: bool) {
        self.consumed
            .get_or_create(&ConsumedLabels {
                stream: stream.to_owned(),
                outcome: if duplicate { "duplicate" } else { "stored" },
            })
            .inc();
    }

    pub fn attempt(&self, outcome: &'static str, seconds: f64) {
        self.attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.attempt_latency.observe(seconds);
    }

    pub fn failing(&self, count: i64) {
        self.failing.set(count);
    }

    pub fn stream_lag(&self, stream: &str, lag: events::Lag) {
        let set = |kind, value: u64| {
            self.lag
                .get_or_create(&LagLabels {
                    stream: stream.to_owned(),
                    kind,
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set("pending", lag.pending);
        if let Some(undelivered) = lag.undelivered {
            set("undelivered", undelivered);
        }
    }
}
