//! The Redis commands behind the dead-letter queue. Every change touches the
//! topic's list and the by-id index together, in one Lua script, so the two
//! never disagree.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionLike;
use redis::RedisError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DlqEntry, Keys};

/// Most bytes of entries sent in one script call: a large batch of large
/// payloads goes in several calls rather than one huge request.
const CHUNK_BYTES: usize = 4 << 20;

/// KEYS[1] = the topic's list, KEYS[2] = the by-id index, KEYS[3] = the topic
/// set, KEYS[4] = the count of extra entries per id. ARGV[1] = topic,
/// ARGV[2] = list key prefix, then per entry: id, partition, offset,
/// replayed-from position (or ""), json.
///
/// Per entry, when the id is already indexed:
/// - from the same record (a redelivery): nothing changes;
/// - from a replay of the indexed entry (its replayed-from is that entry's
///   position): the new failure replaces the old entry;
/// - from any other record with the same id (a producer's duplicate, or a
///   header naming someone else's id): it is appended to the list too, so its
///   bytes are kept, and counted in KEYS[4]; the index keeps the first. When
///   the first is removed, the next one takes its place in the index.
///
/// Returns how many entries were added.
const PUSH: &str = r#"
local parked = 0
for i = 3, #ARGV, 5 do
  local id, from, json = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local old = redis.call('HGET', KEYS[2], id)
  if not old then
    redis.call('HSET', KEYS[2], id, json)
    redis.call('RPUSH', KEYS[1], json)
    parked = parked + 1
  else
    local ok, o = pcall(cjson.decode, old)
    local known = ok and type(o) == 'table' and type(o.topic) == 'string'
      and type(o.partition) == 'number' and type(o.offset) == 'number'
    local same = known and o.topic == ARGV[1] and o.partition == tonumber(ARGV[i + 1])
      and o.offset == tonumber(ARGV[i + 2])
    if not same then
      if known and from == o.topic .. '/' .. string.format('%d', o.partition) .. '/'
          .. string.format('%d', o.offset) then
        redis.call('LREM', ARGV[2] .. o.topic, 1, old)
        redis.call('HSET', KEYS[2], id, json)
      else
        redis.call('HINCRBY', KEYS[4], id, 1)
      end
      redis.call('RPUSH', KEYS[1], json)
      parked = parked + 1
    end
  end
end
redis.call('SADD', KEYS[3], ARGV[1])
return parked
"#;

/// KEYS[1] = the index, KEYS[2] = the entry's list, KEYS[3] = the extras
/// count; ARGV[1] = id, ARGV[2] = the entry exactly as read, ARGV[3] = list
/// key prefix. Removes it only if it is still the indexed entry. If other
/// entries with the same id are parked, the oldest takes its place in the
/// index. Returns 1 if removed.
const REMOVE: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 1, current)
if tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') > 0 then
  local needle = '"message_id":"' .. ARGV[1] .. '"'
  local lists = redis.call('SMEMBERS', KEYS[4])
  for _, topic in ipairs(lists) do
    for _, item in ipairs(redis.call('LRANGE', ARGV[3] .. topic, 0, -1)) do
      if string.find(item, needle, 1, true) then
        redis.call('HSET', KEYS[1], ARGV[1], item)
        if redis.call('HINCRBY', KEYS[3], ARGV[1], -1) <= 0 then
          redis.call('HDEL', KEYS[3], ARGV[1])
        end
        return 1
      end
    end
  end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
"#;

/// KEYS[1] = lock; ARGV[1] = holder. Releases the lock only for its holder.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

fn serialise(entry: &DlqEntry) -> Result<String, RedisError> {
    serde_json::to_string(entry).map_err(|e| {
        RedisError::from((
            redis::ErrorKind::Client,
            "cannot serialise DLQ entry",
            e.to_string(),
        ))
    })
}

/// Parks entries of one topic; returns how many were parked now. An `Err`
/// means Redis did not acknowledge, and nothing may be committed past them.
pub async fn push<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    topic: &str,
    entries: &[DlqEntry],
) -> Result<usize, RedisError> {
    let script = redis::Script::new(PUSH);
    let mut parked = 0;
    let mut pending = entries.iter().peekable();
    while pending.peek().is_some() {
        let mut invocation = script.key(keys.list(topic));
        invocation
            .key(keys.index())
            .key(keys.topics())
            .key(keys.extras())
            .arg(topic)
            .arg(keys.list_prefix());
        let mut bytes = 0;
        while let Some(entry) = pending.next_if(|_| bytes < CHUNK_BYTES) {
            let json = serialise(entry)?;
            bytes += json.len();
            invocation
                .arg(entry.message_id.to_string())
                .arg(entry.partition)
                .arg(entry.offset)
                .arg(entry.replayed_from.as_deref().unwrap_or(""))
                .arg(json);
        }
        parked += invocation.invoke_async::<usize>(conn).await?;
    }
    Ok(parked)
}

/// An entry as stored: parsed, and the exact text (to remove it safely).
#[derive(Debug, Clone)]
pub struct Stored {
    pub entry: DlqEntry,
    pub raw: String,
}

/// The entry parked under `id`, if any. An entry that is not valid JSON of
/// the expected shape is an error naming the id, not a panic.
pub async fn get<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: Uuid,
) -> Result<Option<Stored>, RedisError> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(keys.index())
        .arg(id.to_string())
        .query_async(conn)
        .await?;
    raw.map(|raw| match serde_json::from_str(&raw) {
        Ok(entry) => Ok(Stored { entry, raw }),
        Err(e) => Err(RedisError::from((
            redis::ErrorKind::Parse,
            "corrupt DLQ entry",
            format!("{id}: {e}"),
        ))),
    })
    .transpose()
}

/// Removes `stored` if it is still the entry under its id; `false` if it
/// was removed or replaced meanwhile.
pub async fn remove<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    stored: &Stored,
) -> Result<bool, RedisError> {
    let removed: i64 = redis::Script::new(REMOVE)
        .key(keys.index())
        .key(keys.list(&stored.entry.topic))
        .key(keys.extras())
        .key(keys.topics())
        .arg(stored.entry.message_id.to_string())
        .arg(&stored.raw)
        .arg(keys.list_prefix())
        .invoke_async(conn)
        .await?;
    Ok(removed == 1)
}

/// Takes the operator lock on one entry for `ttl`; `false` if another
/// action holds it.
pub async fn lock<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: Uuid,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, RedisError> {
    let set: Option<String> = redis::cmd("SET")
        .arg(keys.lock(id))
        .arg(holder)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

pub async fn unlock<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: Uuid,
    holder: &str,
) -> Result<(), RedisError> {
    redis::Script::new(UNLOCK)
        .key(keys.lock(id))
        .arg(holder)
        .invoke_async::<i64>(conn)
        .await
        .map(|_| ())
}

/// Which entries a listing or a bulk replay takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub topic: Option<String>,
    pub error_kind: Option<String>,
    /// Entries whose last failure is at or after this time…
    pub from: Option<DateTime<Utc>>,
    /// …and before this one.
    pub to: Option<DateTime<Utc>>,
}

/// Kafka's rule for topic names.
pub fn valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Filter {
    /// Whether the filter narrows anything at all.
    pub fn is_empty(&self) -> bool {
        self.topic.is_none()
            && self.error_kind.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }

    /// Refuses what cannot be a real filter, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(topic) = &self.topic {
            if !valid_topic(topic) {
                return Err("topic: 1 to 249 of A-Z a-z 0-9 . _ -".into());
            }
        }
        if self.error_kind.as_ref().is_some_and(|k| k.len() > 100) {
            return Err("error_kind: at most 100 characters".into());
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from >= to {
                return Err("from must be before to".into());
            }
        }
        Ok(())
    }

    pub fn matches(&self, entry: &DlqEntry) -> bool {
        self.topic.as_ref().is_none_or(|t| *t == entry.topic)
            && self
                .error_kind
                .as_ref()
                .is_none_or(|k| *k == entry.error_kind)
            && self.from.is_none_or(|from| entry.last_failed_at >= from)
            && self.to.is_none_or(|to| entry.last_failed_at < to)
    }
}

/// One page of a listing.
#[derive(Debug, Serialize)]
pub struct Page {
    pub entries: Vec<DlqEntry>,
    /// Where the next page starts, if there is one.
    pub next_offset: Option<usize>,
}

/// Entries per LRANGE while scanning.
const SCAN_CHUNK: isize = 500;

/// Matching entries, oldest first per topic (topics in name order), skipping
/// the first `offset` matches and returning at most `limit`. Scans the
/// lists, so its cost grows with the queue's length.
pub async fn list<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Result<Page, RedisError> {
    let topics = match &filter.topic {
        Some(topic) => vec![topic.clone()],
        None => {
            let mut topics: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys.topics())
                .query_async(conn)
                .await?;
            topics.sort();
            topics
        }
    };
    let mut skipped = 0;
    let mut entries = Vec::new();
    for topic in topics {
        let key = keys.list(&topic);
        let mut start: isize = 0;
        loop {
            let chunk: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(start)
                .arg(start + SCAN_CHUNK - 1)
                .query_async(conn)
                .await?;
            for raw in &chunk {
                let entry: DlqEntry = match serde_json::from_str(raw) {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!(list = %key, error = %e, "skipping a DLQ entry that does not parse");
                        continue;
                    }
                };
                if !filter.matches(&entry) {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                } else if entries.len() < limit {
                    entries.push(entry);
                } else {
                    // One more match exists: there is a next page.
                    return Ok(Page {
                        next_offset: Some(offset + entries.len()),
                        entries,
                    });
                }
            }
            if (chunk.len() as isize) < SCAN_CHUNK {
                break;
            }
            start += SCAN_CHUNK;
        }
    }
    Ok(Page {
        entries,
        next_offset: None,
    })
}

/// How many entries each topic's list holds.
pub async fn depths<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<(String, u64)>, RedisError> {
    let topics: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.topics())
        .query_async(conn)
        .await?;
    let mut depths = Vec::with_capacity(topics.len());
    for topic in topics {
        let len: u64 = redis::cmd("LLEN")
            .arg(keys.list(&topic))
            .query_async(conn)
            .await?;
        depths.push((topic, len));
    }
    Ok(depths)
}
