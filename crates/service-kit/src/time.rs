//! Timestamps on the wire are RFC 3339, UTC, with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now_rfc3339() -> String {
    format_rfc3339(Utc::now())
}

pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `#[serde(with = "service_kit::time::rfc3339")]` for `DateTime<Utc>` fields.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_utc_with_millis() {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
        assert_eq!(format_rfc3339(t), "2025-01-15T10:00:00.000Z");
    }
}
