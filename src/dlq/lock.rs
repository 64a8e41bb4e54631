//! Operator locks and their owners' heartbeats in Redis: a replay or a
//! discard locks its entry in the name of the process that took it, and a
//! process says it is alive with a key that lapses unless beaten, so a lock
//! (or a replay job) whose owner is gone blocks no one.

use redis::aio::ConnectionLike;
use redis::RedisError;
use uuid::Uuid;

use super::Keys;

/// KEYS[1] = lock, KEYS[2] = the taker's owner key; ARGV[1] = holder
/// (`<owner>/<token>`), ARGV[2] = lock ttl (ms), ARGV[3] = owner ttl (ms),
/// ARGV[4] = what precedes an owner id in its owner key. Beats the taker's
/// owner key, then takes the lock if it is free or its holder's owner has
/// no live owner key (that process is gone: its lock would otherwise block
/// every operator until it expired). A lock without an owner (written by an
/// older version) is left to expire. Returns 1 if taken.
const LOCK: &str = r"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
local current = redis.call('GET', KEYS[1])
if current then
  local owner = string.match(current, '^([^/]+)/')
  if not owner or redis.call('EXISTS', ARGV[4] .. owner) == 1 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS[1] = lock; ARGV[1] = holder. Releases the lock only for its holder.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What precedes an owner id in its owner key: `<prefix>:#owner:`.
pub fn owner_prefix(keys: &Keys) -> String {
    format!("{}#owner:", keys.list_prefix())
}

/// The key that says `owner` (one process's operator actions and jobs) is
/// alive; it lapses unless beaten.
pub fn owner_key(keys: &Keys, owner: &str) -> String {
    format!("{}{owner}", owner_prefix(keys))
}

/// The value a lock holds: who took it (`owner`, so a lock whose owner is
/// gone can be taken over) and which action (`token`, so only that action
/// releases it).
pub fn lock_holder(owner: &str, token: &str) -> String {
    format!("{owner}/{token}")
}

/// The lengths of a lock and of its owner's liveness.
#[derive(Debug, Clone, Copy)]
pub struct LockTtl {
    /// How long the lock lasts if never released (a backstop).
    pub lock: std::time::Duration,
    /// How long the owner counts as alive after a beat.
    pub owner: std::time::Duration,
}

/// Takes the operator lock on one entry for `holder` (see [`lock_holder`]),
/// beating `owner`'s key; `false` if a live owner's action holds it.
pub async fn lock<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: Uuid,
    owner: &str,
    holder: &str,
    ttl: LockTtl,
) -> Result<bool, RedisError> {
    let taken: i64 = redis::Script::new(LOCK)
        .key(keys.lock(id))
        .key(owner_key(keys, owner))
        .arg(holder)
        .arg(ttl.lock.as_millis() as u64)
        .arg(ttl.owner.as_millis() as u64)
        .arg(owner_prefix(keys))
        .invoke_async(conn)
        .await?;
    Ok(taken == 1)
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

/// Says `owner` is alive for `ttl` more.
pub async fn beat<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    owner: &str,
    ttl: std::time::Duration,
) -> Result<(), RedisError> {
    redis::cmd("SET")
        .arg(owner_key(keys, owner))
        .arg("1")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(conn)
        .await
}

/// Whether `owner` beat within its ttl.
pub async fn alive<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    owner: &str,
) -> Result<bool, RedisError> {
    redis::cmd("EXISTS")
        .arg(owner_key(keys, owner))
        .query_async(conn)
        .await
}
