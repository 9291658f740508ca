//! Tables of the events database.

diesel::table! {
    subscriptions (id) {
        id -> Text,
        workspace_id -> Text,
        family -> Text,
        organization_id -> Nullable<Text>,
        url -> Text,
        events -> Text,
        secret_sealed -> Text,
        secret_hint -> Text,
        notify_email -> Nullable<Text>,
        enabled -> Bool,
        state -> Text,
        failing_since -> Nullable<Timestamp>,
        notified_at -> Nullable<Timestamp>,
        notify_lease_until -> Nullable<Timestamp>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        event_type -> Text,
        occurred_at -> Timestamp,
        workspace_id -> Nullable<Text>,
        organization_id -> Nullable<Text>,
        subject_id -> Text,
        data -> Text,
        producer -> Text,
        request_id -> Nullable<Text>,
        received_at -> Timestamp,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        subscription_id -> Text,
        event_id -> Text,
        workspace_id -> Text,
        status -> Text,
        manual -> Bool,
        attempts -> Integer,
        next_attempt_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_attempt_at -> Nullable<Timestamp>,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    attempts (delivery_id, number) {
        delivery_id -> Text,
        number -> Integer,
        started_at -> Timestamp,
        duration_ms -> BigInt,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        response_truncated -> Bool,
        error -> Nullable<Text>,
        outcome -> Text,
        next_attempt_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(deliveries -> subscriptions (subscription_id));
diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(attempts -> deliveries (delivery_id));
diesel::allow_tables_to_appear_in_same_query!(subscriptions, events, deliveries, attempts);
