//! Opaque, prefixed, time-sortable ids: `<prefix>_<ULID>`.

use ulid::Ulid;

/// The prefixes in use, one per kind of object (DESIGN §5).
pub mod prefix {
    pub const USER: &str = "usr";
    pub const WORKSPACE: &str = "wrk";
    pub const SERVICE_PRINCIPAL: &str = "spn";
    pub const ROLE: &str = "rol";
    pub const ORGANIZATION: &str = "org";
    pub const SPACE_GROUP: &str = "sg";
    pub const MEETING_SPACE: &str = "ms";
    pub const BOOKING: &str = "bk";
    pub const SPACE: &str = "spc";
    pub const UPLOAD_CONFIG: &str = "upc";
    pub const WORKSPACE_API_KEY: &str = "apk";
    pub const SPACE_API_KEY: &str = "spk";
    pub const WEBHOOK: &str = "wh";
    pub const EVENT: &str = "evt";
    pub const DELIVERY: &str = "dlv";
    pub const FILE: &str = "fil";
    pub const FOLDER: &str = "fld";
}

/// A new id with the given prefix. ULIDs sort by creation time (millisecond
/// resolution), so ids double as a stable ordering key.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Ulid::new())
}

/// True when `candidate` is a well-formed id of the given kind. Handlers use this to
/// answer 404 for ids that cannot exist without touching the database.
pub fn is_valid(prefix: &str, candidate: &str) -> bool {
    candidate
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid.len() == 26 && Ulid::from_string(ulid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_prefixed_valid_and_sortable() {
        let a = new_id(prefix::BOOKING);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(prefix::BOOKING);
        assert!(a.starts_with("bk_"));
        assert!(is_valid(prefix::BOOKING, &a));
        assert!(a < b, "ids must sort by creation time");
    }

    #[test]
    fn rejects_wrong_prefix_and_garbage() {
        let id = new_id(prefix::SPACE);
        assert!(!is_valid(prefix::BOOKING, &id));
        assert!(!is_valid(prefix::SPACE, "spc_"));
        assert!(!is_valid(prefix::SPACE, "spc_not-a-ulid-at-all-xxxxxxx"));
        assert!(!is_valid(prefix::SPACE, "spcx01HQ0000000000000000000000"));
    }
}
