//! Tables of the spaces database.

diesel::table! {
    spaces (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        name_key -> Text,
        description -> Nullable<Text>,
        handle -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}
