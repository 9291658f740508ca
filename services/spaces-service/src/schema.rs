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
        folder_mode -> Text,
        custom_domain -> Nullable<Text>,
        webhook_url -> Nullable<Text>,
        access_control -> Text,
        security -> Text,
        active_upload_config_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    upload_configs (id) {
        id -> Text,
        space_id -> Text,
        workspace_id -> Text,
        name -> Text,
        name_key -> Text,
        description -> Nullable<Text>,
        is_signed -> Bool,
        allow_unsigned -> Bool,
        delivery_type -> Text,
        config -> Text,
        unsigned_restrictions -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    space_api_keys (id) {
        id -> Text,
        number -> BigInt,
        kind -> Text,
        space_id -> Text,
        workspace_id -> Text,
        name -> Text,
        key_hash -> Text,
        prefix -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(upload_configs -> spaces (space_id));
diesel::joinable!(space_api_keys -> spaces (space_id));
diesel::allow_tables_to_appear_in_same_query!(spaces, upload_configs, space_api_keys);
