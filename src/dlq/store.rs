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

/// Lua shared by the scripts that change which entry an id's index holds:
/// the time indexes (sorted sets scored by the last failure, in epoch
/// milliseconds) follow the by-id index. `P` is the key prefix with its colon.
const INDEX_LUA: &str = r#"
local function ms(t)
  if type(t) ~= 'string' then return 0 end
  local y, mo, d, h, mi, s = string.match(t, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)')
  if not y then return 0 end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local frac = string.match(t, '^[^.]*T%d+:%d+:%d+%.(%d+)') or '0'
  frac = tonumber(string.sub(frac .. '000', 1, 3))
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + frac
end
local function zkeys(P, topic, kind)
  return { P .. '#by-time', P .. '#by-time:t:' .. topic, P .. '#by-time:k:' .. kind,
           P .. '#by-time:tk:' .. topic .. ':' .. kind }
end
local function index(P, id, topic, kind, score)
  for _, k in ipairs(zkeys(P, topic, kind)) do redis.call('ZADD', k, score, id) end
end
local function unindex(P, id, o)
  if type(o) == 'table' and type(o.topic) == 'string' and type(o.error_kind) == 'string' then
    for _, k in ipairs(zkeys(P, o.topic, o.error_kind)) do redis.call('ZREM', k, id) end
  end
end
local function parse(json)
  local ok, o = pcall(cjson.decode, json)
  if ok and type(o) == 'table' then return o end
  return nil
end
local function position(o)
  return o.topic .. '/' .. string.format('%d', o.partition) .. '/' .. string.format('%d', o.offset)
end
"#;

/// KEYS[1] = the topic's list, KEYS[2] = the by-id index, KEYS[3] = the topic
/// set, KEYS[4] = the count of extra entries per id. ARGV[1] = topic,
/// ARGV[2] = key prefix with its colon, then per entry: id, partition,
/// offset, replayed-from position (or ""), record SHA-256 (hex), error
/// kind, score (last failure, epoch ms), json.
///
/// Per entry, when the id is already indexed:
/// - from the same record (a redelivery): nothing changes;
/// - from a replay of the indexed entry (its trusted replayed-from is that
///   entry's position), or the same record failing again (equal record
///   digests: key, payload and the producer's headers; a producer's resend,
///   or a second copy of one replay): the new failure replaces the old
///   entry, so one message never has more entries than distinct records;
/// - from any other record with the same id (another payload claiming the
///   id): it is appended to the list too, so its bytes are kept, and counted
///   in KEYS[4]; the index keeps the first. When the first is removed, the
///   next one takes its place in the index.
///
/// Returns how many entries were added or replaced.
const PUSH: &str = r#"
local P = ARGV[2]
local parked = 0
for i = 3, #ARGV, 8 do
  local id, from, digest = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local kind, score, json = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local old = redis.call('HGET', KEYS[2], id)
  if not old then
    redis.call('HSET', KEYS[2], id, json)
    redis.call('RPUSH', KEYS[1], json)
    index(P, id, ARGV[1], kind, score)
    parked = parked + 1
  else
    local o = parse(old)
    local known = o and type(o.topic) == 'string'
      and type(o.partition) == 'number' and type(o.offset) == 'number'
    local same = known and o.topic == ARGV[1] and o.partition == tonumber(ARGV[i + 1])
      and o.offset == tonumber(ARGV[i + 2])
    if not same then
      if known and ((from ~= '' and from == position(o))
          or (digest ~= '' and o.record_sha256 == digest)) then
        redis.call('LREM', P .. o.topic, 1, old)
        unindex(P, id, o)
        redis.call('HSET', KEYS[2], id, json)
        index(P, id, ARGV[1], kind, score)
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
/// count, KEYS[4] = the topic set; ARGV[1] = id, ARGV[2] = the entry exactly
/// as read, ARGV[3] = key prefix with its colon. Removes it only if it is
/// still the indexed entry. If other entries with the same id are parked,
/// the oldest takes its place in the index. Returns 1 if removed.
const REMOVE: &str = r#"
local P = ARGV[3]
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 1, current)
unindex(P, ARGV[1], parse(current))
if tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') > 0 then
  local needle = '"message_id":"' .. ARGV[1] .. '"'
  local lists = redis.call('SMEMBERS', KEYS[4])
  for _, topic in ipairs(lists) do
    for _, item in ipairs(redis.call('LRANGE', P .. topic, 0, -1)) do
      if string.find(item, needle, 1, true) then
        redis.call('HSET', KEYS[1], ARGV[1], item)
        local o = parse(item)
        if o and type(o.error_kind) == 'string' then
          index(P, ARGV[1], topic, o.error_kind, ms(o.last_failed_at))
        end
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

/// A script with the shared index functions in front of it.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{INDEX_LUA}\n{body}"))
}

/// The score an entry has in the time indexes: its last failure, in epoch
/// milliseconds (what the Lua `ms` function computes from the JSON).
fn score(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

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
    let script = script(PUSH);
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
                .arg(entry.record_sha256.as_deref().unwrap_or(""))
                .arg(&entry.error_kind)
                .arg(score(entry.last_failed_at))
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
    let removed: i64 = script(REMOVE)
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

/// Matching entries, oldest last failure first, skipping the first
/// `offset` matches and returning at most `limit`. The time index of the
/// filter's topic and error kind answers which ids match, so a listing reads
/// only the entries of its page, however long the queue.
///
/// Time filters work to the millisecond in the index and are checked
/// exactly on the page's entries.
pub async fn list<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Result<Page, RedisError> {
    let mut ids: Vec<String> = matching(conn, keys, filter, offset, limit.saturating_add(1))
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let more = ids.len() > limit;
    ids.truncate(limit);
    let raws: Vec<Option<String>> = if ids.is_empty() {
        Vec::new()
    } else {
        redis::cmd("HMGET")
            .arg(keys.index())
            .arg(&ids)
            .query_async(conn)
            .await?
    };
    let entries = raws
        .into_iter()
        .zip(&ids)
        .filter_map(|(raw, id)| {
            // Removed between the two reads: not part of the page.
            let raw = raw?;
            match serde_json::from_str::<DlqEntry>(&raw) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "skipping a DLQ entry that does not parse");
                    None
                }
            }
        })
        .filter(|entry| filter.matches(entry))
        .collect();
    Ok(Page {
        entries,
        next_offset: more.then_some(offset + limit),
    })
}

/// The ids of matching entries with their time-index score (last failure,
/// epoch ms), oldest first: what a bulk replay walks, one entry at a time.
pub async fn matching<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Result<Vec<(String, i64)>, RedisError> {
    let (min, max) = score_range(filter);
    redis::cmd("ZRANGEBYSCORE")
        .arg(keys.by_time(filter.topic.as_deref(), filter.error_kind.as_deref()))
        .arg(min)
        .arg(max)
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(offset)
        .arg(limit)
        .query_async(conn)
        .await
}

/// The score range of a filter's time bounds: `from` inclusive, `to`
/// exclusive.
fn score_range(filter: &Filter) -> (String, String) {
    let min = filter
        .from
        .map_or_else(|| "-inf".to_owned(), |t| score(t).to_string());
    let max = filter
        .to
        .map_or_else(|| "+inf".to_owned(), |t| format!("({}", score(t)));
    (min, max)
}

/// The score an entry has in the time indexes.
pub fn entry_score(entry: &DlqEntry) -> i64 {
    score(entry.last_failed_at)
}

/// How many entries match `filter` (by the time index, to the millisecond).
pub async fn count<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    filter: &Filter,
) -> Result<u64, RedisError> {
    let (min, max) = score_range(filter);
    redis::cmd("ZCOUNT")
        .arg(keys.by_time(filter.topic.as_deref(), filter.error_kind.as_deref()))
        .arg(min)
        .arg(max)
        .query_async(conn)
        .await
}

/// The version of the time indexes this code maintains.
const INDEX_VERSION: &str = "1";

/// Builds the time indexes for entries parked before they existed (an
/// upgrade); a no-op once done. Reads the by-id index in chunks, never the
/// whole queue at once.
pub async fn ensure_indexed<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
) -> Result<(), RedisError> {
    let version: Option<String> = redis::cmd("GET")
        .arg(keys.index_version())
        .query_async(conn)
        .await?;
    if version.as_deref() == Some(INDEX_VERSION) {
        return Ok(());
    }
    let mut cursor: u64 = 0;
    loop {
        let (next, chunk): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(keys.index())
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(conn)
            .await?;
        let mut pipe = redis::pipe();
        let mut queued = false;
        for (id, raw) in &chunk {
            let Ok(entry) = serde_json::from_str::<DlqEntry>(raw) else {
                continue;
            };
            let at = score(entry.last_failed_at);
            for key in keys.time_indexes(&entry.topic, &entry.error_kind) {
                pipe.cmd("ZADD").arg(key).arg(at).arg(id).ignore();
                queued = true;
            }
        }
        if queued {
            pipe.query_async::<()>(conn).await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    redis::cmd("SET")
        .arg(keys.index_version())
        .arg(INDEX_VERSION)
        .query_async::<()>(conn)
        .await
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
