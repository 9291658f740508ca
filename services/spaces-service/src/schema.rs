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

diesel::table! {
    folders (id) {
        id -> Text,
        workspace_id -> Text,
        space_id -> Text,
        parent_id -> Nullable<Text>,
        name -> Text,
        path -> Text,
        access_control -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        workspace_id -> Text,
        space_id -> Text,
        folder_id -> Nullable<Text>,
        upload_config_id -> Nullable<Text>,
        status -> Text,
        name -> Text,
        original_name -> Text,
        mime_type -> Text,
        extension -> Nullable<Text>,
        size -> BigInt,
        object_key -> Text,
        storage_path -> Text,
        sha256 -> Nullable<Text>,
        reference -> Nullable<Text>,
        access_type -> Text,
        resource_type -> Text,
        width -> Nullable<Integer>,
        height -> Nullable<Integer>,
        blur_hash -> Nullable<Text>,
        access_control -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    space_purges (space_id) {
        space_id -> Text,
        workspace_id -> Text,
        handle -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(upload_configs -> spaces (space_id));
diesel::joinable!(space_api_keys -> spaces (space_id));
diesel::joinable!(files -> folders (folder_id));
diesel::allow_tables_to_appear_in_same_query!(
    spaces,
    upload_configs,
    space_api_keys,
    folders,
    files,
    space_purges
);
