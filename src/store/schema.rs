//! Diesel table definitions, matching `migrations/` (what `diesel
//! print-schema` would write). The `message_audit` view has none: it is
//! read with SQL into `store::audit::AuditRow`, typed by `audit_log`'s
//! columns, which it shows.

diesel::table! {
    audit_log (id) {
        id -> Int8,
        message_id -> Uuid,
        status -> Text,
        topic -> Text,
        kafka_partition -> Int4,
        kafka_offset -> Int8,
        message_key -> Nullable<Text>,
        event_type -> Nullable<Text>,
        attempt -> Int4,
        error -> Nullable<Text>,
        consumer_group -> Text,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
        detail -> Nullable<Jsonb>,
        received_at -> Nullable<Timestamptz>,
        received_detail -> Nullable<Jsonb>,
        key_bytes -> Nullable<Bytea>,
        payload -> Nullable<Bytea>,
        headers -> Nullable<Jsonb>,
        kafka_timestamp -> Nullable<Timestamptz>,
        payload_sha256 -> Nullable<Bytea>,
        chain_id -> Nullable<Int4>,
        chain_seq -> Nullable<Int8>,
        entry_hash -> Nullable<Bytea>,
        blinding -> Nullable<Bytea>,
        erased_digest -> Nullable<Bytea>,
    }
}

diesel::table! {
    audit_chain_heads (chain_id) {
        chain_id -> Int4,
        chain_seq -> Int8,
        entry_hash -> Bytea,
    }
}

diesel::table! {
    audit_chains (chain_id) {
        chain_id -> Int4,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_payloads (message_id) {
        message_id -> Uuid,
        topic -> Text,
        kafka_partition -> Int4,
        kafka_offset -> Int8,
        message_key -> Nullable<Bytea>,
        payload -> Nullable<Bytea>,
        headers -> Nullable<Jsonb>,
        kafka_timestamp -> Nullable<Timestamptz>,
        first_seen_at -> Timestamptz,
    }
}

diesel::table! {
    applied_messages (message_id) {
        message_id -> Uuid,
        handler -> Text,
        applied_at -> Timestamptz,
        payload_sha256 -> Nullable<Bytea>,
    }
}

diesel::table! {
    transactions (id) {
        id -> Text,
        user_id -> Text,
        transaction_type -> Text,
        product -> Nullable<Text>,
        status -> Text,
        currency -> Text,
        amount -> Numeric,
        created_at -> Nullable<Timestamptz>,
        metadata -> Jsonb,
        enrichment -> Jsonb,
        enriched -> Bool,
        enriched_at -> Nullable<Timestamptz>,
        searchable_content -> Text,
        version -> Int8,
        last_event_type -> Text,
        last_message_id -> Uuid,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        name -> Text,
        email -> Text,
        created_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        last_message_id -> Uuid,
    }
}

diesel::table! {
    orders (id) {
        id -> Text,
        user_id -> Text,
        amount -> Numeric,
        currency -> Text,
        items -> Jsonb,
        placed_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_message_id -> Uuid,
    }
}

diesel::table! {
    payments (order_id) {
        order_id -> Text,
        payment_id -> Nullable<Text>,
        amount -> Numeric,
        status -> Text,
        settled_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_message_id -> Uuid,
    }
}

diesel::table! {
    inventory (sku) {
        sku -> Text,
        quantity -> Int8,
        updated_at -> Timestamptz,
        last_message_id -> Uuid,
    }
}

diesel::joinable!(orders -> users (user_id));
diesel::joinable!(payments -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(users, orders, payments, inventory);
