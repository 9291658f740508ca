//! Tables of the booking database.

diesel::table! {
    organizations (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        slug -> Text,
        timezone -> Text,
        settings -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        logo -> Nullable<Text>,
    }
}

diesel::table! {
    space_groups (id) {
        id -> Text,
        workspace_id -> Text,
        organization_id -> Text,
        name -> Text,
        timezone -> Nullable<Text>,
        address -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    meeting_spaces (id) {
        id -> Text,
        workspace_id -> Text,
        organization_id -> Text,
        space_group_id -> Nullable<Text>,
        name -> Text,
        slug -> Text,
        timezone -> Nullable<Text>,
        capacity -> Integer,
        description -> Text,
        amenities -> Text,
        booking_increment -> Integer,
        min_duration -> Integer,
        max_duration -> Integer,
        buffer_before -> Integer,
        buffer_after -> Integer,
        public_booking -> Bool,
        requires_check_in -> Bool,
        check_in_grace_minutes -> Integer,
        unavailable_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    business_hours (meeting_space_id, weekday, open_minute) {
        meeting_space_id -> Text,
        weekday -> Integer,
        open_minute -> Integer,
        close_minute -> Integer,
    }
}

diesel::table! {
    unavailability (id) {
        id -> Text,
        workspace_id -> Text,
        meeting_space_id -> Text,
        start_time -> Timestamp,
        end_time -> Timestamp,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    bookings (id) {
        id -> Text,
        workspace_id -> Text,
        organization_id -> Text,
        meeting_space_id -> Text,
        start_time -> Timestamp,
        end_time -> Timestamp,
        blocked_start -> Timestamp,
        blocked_end -> Timestamp,
        organizer_name -> Text,
        organizer_email -> Text,
        notes -> Nullable<Text>,
        status -> Text,
        cancel_reason -> Nullable<Text>,
        check_in_deadline -> Nullable<Timestamp>,
        checked_in_at -> Nullable<Timestamp>,
        checked_out_at -> Nullable<Timestamp>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        start_notified_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        status_code -> Integer,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(space_groups -> organizations (organization_id));
diesel::joinable!(meeting_spaces -> organizations (organization_id));
diesel::joinable!(meeting_spaces -> space_groups (space_group_id));
diesel::joinable!(bookings -> meeting_spaces (meeting_space_id));
diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    space_groups,
    meeting_spaces,
    business_hours,
    unavailability,
    bookings,
    idempotency_keys,
);
