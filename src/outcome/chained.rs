//! The outcome writer's single-entry path: operator actions (replay,
//! discard, "run it now") and the outbox relay's entries, each the next
//! entry of its own chain (`operator`, `relay`: never a partition's),
//! appended in the caller's diesel transaction beside the state it
//! changes (a replay job's progress, an outbox row). Linked by the same
//! step as a flush's entries ([`link_next`]); a writer racing another for
//! the same sequence number finds the chain's head moved in
//! `audit_chain_heads` and tries again, so the chain never forks.

use std::borrow::Cow;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::store::audit::{no_nul, AuditEntry};
use crate::store::chain::{Fields, Hasher, OPERATOR_CHAIN};
use crate::store::schema::{audit_chain_heads, audit_chains, audit_log};

/// The sequence number and hash of the entry after `prev_hash` whose
/// fields (with its own sequence number) are `fields`: the one linking step
/// of every chained entry, a flush's (`writer`) and a single one's.
pub fn link_next(
    hasher: &mut Hasher,
    fields: &Fields<'_>,
    prev_hash: &[u8; 32],
) -> (i64, [u8; 32]) {
    (fields.seq, hasher.hash(fields, prev_hash))
}

/// Appends one operator action on a dead-lettered message (replay,
/// discard: status [`REPLAYED`](crate::store::audit::REPLAYED) or
/// [`DISCARDED`](crate::store::audit::DISCARDED)) to the message's
/// lifecycle, as the next entry of the operator chain. Its `attempt` is the
/// replay count for a replay, the attempts so far for a discard; its
/// `occurred_at`, for a replay, when it started (before the publish), so
/// the lifecycle lists it before the copy's own rows; its `detail` says
/// who, why, and for a replay where the new copy went.
///
/// In a transaction of its own (a savepoint inside the caller's): moving the
/// chain's head and inserting the entry commit together or not at all, and
/// a concurrent action waits for this one's commit before it reads the
/// head, so entries are recorded in sequence order.
pub async fn write_operator_event(
    conn: &mut AsyncPgConnection,
    event: &AuditEntry<'_>,
) -> QueryResult<()> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| append_chained(conn, OPERATOR_CHAIN, event).await)
        .await
}

/// Moves a head the writer read fails this many times in a row only if
/// something else is wrong.
const ATTEMPTS: usize = 8;

/// Appends `event` as the next entry of the chain named `chain` (created if
/// new), in the caller's transaction, which must be one (moving the head
/// and inserting the entry are two statements). One entry at a time:
/// for entries that are not a batch's (operator actions, the relay's).
/// The chain's row in `audit_chain_heads` is moved from the head read to
/// the new entry before the entry is inserted: a writer racing another
/// waits for it on that row, matches nothing once it commits, reads the new
/// head and tries again, so the chain never forks.
pub async fn append_chained(
    conn: &mut AsyncPgConnection,
    chain: &str,
    event: &AuditEntry<'_>,
) -> QueryResult<()> {
    use audit_log::dsl as a;
    use diesel::sql_types::{BigInt, Binary, Integer};
    let key = event
        .message_key
        .as_deref()
        .map(|k| no_nul(Cow::Borrowed(k)));
    diesel::insert_into(audit_chains::table)
        .values(audit_chains::name.eq(chain))
        .on_conflict(audit_chains::name)
        .do_nothing()
        .execute(conn)
        .await?;
    let chain_id: i32 = audit_chains::table
        .filter(audit_chains::name.eq(chain))
        .select(audit_chains::chain_id)
        .first(conn)
        .await?;
    let mut attempt = 0;
    let (seq, hash) = loop {
        attempt += 1;
        let (prev_seq, prev_hash): (i64, Vec<u8>) = audit_chain_heads::table
            .find(chain_id)
            .select((audit_chain_heads::chain_seq, audit_chain_heads::entry_hash))
            .first(conn)
            .await?;
        let prev_hash = <[u8; 32]>::try_from(prev_hash.as_slice()).map_err(|_| {
            diesel::result::Error::DeserializationError(
                "a chain's head has a malformed entry_hash".into(),
            )
        })?;
        let fields = Fields {
            message_key: key.as_deref(),
            ..event.fields(chain, prev_seq + 1)
        };
        let (seq, hash) = link_next(&mut Hasher::default(), &fields, &prev_hash);
        let moved = diesel::sql_query(
            "UPDATE audit_chain_heads SET chain_seq = $3, entry_hash = $4 \
             WHERE chain_id = $1 AND chain_seq = $2",
        )
        .bind::<Integer, _>(chain_id)
        .bind::<BigInt, _>(prev_seq)
        .bind::<BigInt, _>(seq)
        .bind::<Binary, _>(&hash[..])
        .execute(conn)
        .await?;
        if moved == 1 {
            break (seq, hash);
        }
        if attempt >= ATTEMPTS {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("the head of audit chain {chain} kept moving").into(),
            ));
        }
    };
    let receipt = event.receipt.as_ref();
    diesel::insert_into(audit_log::table)
        .values((
            (
                a::message_id.eq(event.message_id),
                a::status.eq(event.status),
                a::topic.eq(event.topic),
                a::kafka_partition.eq(event.kafka_partition),
                a::kafka_offset.eq(event.kafka_offset),
                a::message_key.eq(key.as_deref()),
                a::event_type.eq(event.event_type),
                a::attempt.eq(event.attempt),
                a::error.eq(event.error.as_deref()),
                a::consumer_group.eq(event.consumer_group),
                a::occurred_at.eq(event.occurred_at),
                a::detail.eq(event.detail.as_ref()),
            ),
            (
                a::received_at.eq(receipt.map(|r| r.received_at)),
                a::received_detail.eq(receipt.and_then(|r| r.detail.as_ref())),
                a::key_bytes.eq(receipt.and_then(|r| r.key)),
                a::payload.eq(receipt.and_then(|r| r.payload)),
                a::headers.eq(receipt.and_then(|r| r.headers.as_ref())),
                a::kafka_timestamp.eq(receipt.and_then(|r| r.kafka_timestamp)),
                a::payload_sha256.eq(receipt.map(|r| &r.payload_sha256[..])),
            ),
            (
                a::chain_id.eq(chain_id),
                a::chain_seq.eq(seq),
                a::entry_hash.eq(&hash[..]),
                a::blinding.eq(&event.blinding[..]),
            ),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
