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
    }
}
