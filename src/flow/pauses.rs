//! Operators' pauses, kept in `flow_pauses` (so every instance and every
//! restart honours them): taking one and resuming it, each in one
//! transaction with its chained operator entry (FLOW_PAUSED,
//! FLOW_RESUMED), and reading the active ones. Bound parameters only.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::identity::{who, Actor};
use crate::trail::operator;

pub const PAUSED: &str = "FLOW_PAUSED";
pub const RESUMED: &str = "FLOW_RESUMED";

/// What a pause holds: a topic, one partition of it, or an http route
/// (by its label: the URL without credentials or query).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub route: Option<String>,
}

impl Target {
    /// `topic`, `topic/partition` or `route:<label>`.
    pub fn describe(&self) -> String {
        match (&self.topic, self.partition, &self.route) {
            (Some(t), Some(p), _) => format!("{t}/{p}"),
            (Some(t), None, _) => t.clone(),
            (None, _, Some(r)) => format!("route:{r}"),
            _ => "nothing".into(),
        }
    }

    /// A target as an operator names it, checked: a topic of `topics` (and
    /// perhaps a partition), or a route of `routes` (labels); the error
    /// names the field at fault.
    pub fn checked(
        topic: Option<String>,
        partition: Option<i32>,
        route: Option<String>,
        topics: &[String],
        routes: &[&str],
    ) -> Result<Target, String> {
        match (&topic, partition, &route) {
            (Some(t), p, None) => {
                if !topics.contains(t) {
                    return Err(format!("topic: {t} is not one of kafka.topics"));
                }
                if p.is_some_and(|p| p < 0) {
                    return Err("partition: 0 or more".into());
                }
            }
            (None, None, Some(r)) => {
                if !routes.contains(&r.as_str()) {
                    return Err(format!(
                        "route: {r} is not an http route (the flow list names them)"
                    ));
                }
            }
            (None, Some(_), _) => return Err("partition: only with a topic".into()),
            _ => {
                return Err(
                    "topic: name a topic (and perhaps a partition), or a route, not both".into(),
                )
            }
        }
        Ok(Target {
            topic,
            partition,
            route,
        })
    }

    /// Whether this pause holds partition `partition` of `topic`. A topic's
    /// pause holds its retry topic (`<topic>.retry`) too: its records are
    /// the topic's.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        let Some(paused) = self.topic.as_deref() else {
            return false;
        };
        let same = topic == paused;
        let its_retries =
            self.partition.is_none() && topic.strip_suffix(".retry").is_some_and(|t| t == paused);
        its_retries || (same && self.partition.is_none_or(|p| p == partition))
    }
}

/// One pause, active or resumed.
#[derive(Debug, Clone, Serialize, diesel::QueryableByName, utoipa::ToSchema)]
pub struct Pause {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub topic: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    #[serde(rename = "partition")]
    pub kafka_partition: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub route: Option<String>,
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// Who paused it (name, role, channel, client, request id).
    #[diesel(sql_type = Jsonb)]
    #[schema(value_type = Object)]
    pub paused_by: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub paused_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub resumed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    #[schema(value_type = Option<Object>)]
    pub resumed_by: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub resume_reason: Option<String>,
}

impl Pause {
    pub fn target(&self) -> Target {
        Target {
            topic: self.topic.clone(),
            partition: self.kafka_partition,
            route: self.route.clone(),
        }
    }

    /// Who paused it and why, as `/status` and a held partition say it.
    pub fn why(&self) -> String {
        let by = self.paused_by["name"].as_str().unwrap_or("?");
        format!("paused by {by}: {}", self.reason)
    }
}

const COLUMNS: &str = "id, topic, kafka_partition, route, reason, paused_by, paused_at, \
                       resumed_at, resumed_by, resume_reason";

/// Why a pause or resume was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0} is paused already")]
    AlreadyPaused(String),
    #[error("{0} is not paused")]
    NotPaused(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// The active pauses, oldest first.
pub async fn active(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Pause>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM flow_pauses WHERE resumed_at IS NULL ORDER BY id"
    ))
    .load(conn)
    .await
}

/// Pauses `target`, chained FLOW_PAUSED; 409 when it is paused already.
pub async fn pause(
    conn: &mut AsyncPgConnection,
    target: &Target,
    reason: &str,
    by: &Actor,
) -> Result<Pause, FlowError> {
    let sql = format!(
        "INSERT INTO flow_pauses (topic, kafka_partition, route, paused_by, reason) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    );
    let refused = FlowError::AlreadyPaused(target.describe());
    change(conn, (&sql, PAUSED, refused), target, reason, by).await
}

/// Resumes `target`'s active pause, chained FLOW_RESUMED; 404 when it is
/// not paused.
pub async fn resume(
    conn: &mut AsyncPgConnection,
    target: &Target,
    reason: &str,
    by: &Actor,
) -> Result<Pause, FlowError> {
    let sql = format!(
        "UPDATE flow_pauses SET resumed_at = now(), resumed_by = $4, resume_reason = $5 \
          WHERE resumed_at IS NULL AND topic IS NOT DISTINCT FROM $1 \
            AND kafka_partition IS NOT DISTINCT FROM $2 AND route IS NOT DISTINCT FROM $3 \
         RETURNING {COLUMNS}"
    );
    let refused = FlowError::NotPaused(target.describe());
    change(conn, (&sql, RESUMED, refused), target, reason, by).await
}

/// One pause or resume: `sql` (bound to the target, who and why; it
/// answers the row it changed, or none) and its chained `status` entry, in
/// one transaction; `refused` when it changed no row.
async fn change(
    conn: &mut AsyncPgConnection,
    (sql, status, refused): (&str, &'static str, FlowError),
    target: &Target,
    reason: &str,
    by: &Actor,
) -> Result<Pause, FlowError> {
    conn.transaction(async |conn| {
        let changed: Option<Pause> = diesel::sql_query(sql)
            .bind::<Nullable<Text>, _>(target.topic.as_deref())
            .bind::<Nullable<Integer>, _>(target.partition)
            .bind::<Nullable<Text>, _>(target.route.as_deref())
            .bind::<Jsonb, _>(by.to_json())
            .bind::<Text, _>(reason.trim())
            .get_result(conn)
            .await
            .optional()?;
        let Some(changed) = changed else {
            return Err(refused);
        };
        record(conn, status, &changed, by, reason).await?;
        Ok(changed)
    })
    .await
}

/// The chained entry of a pause or resume.
async fn record(
    conn: &mut AsyncPgConnection,
    status: &'static str,
    pause: &Pause,
    by: &Actor,
    reason: &str,
) -> diesel::QueryResult<()> {
    let mut detail = who(by, None);
    detail["reason"] = reason.trim().into();
    detail["pause"] = pause.id.into();
    detail["target"] = serde_json::to_value(pause.target()).unwrap_or_default();
    // Under no message's position: the target is in `detail`.
    operator::record(
        conn,
        operator::Action::about(
            &format!("flow/{}", pause.target().describe()),
            status,
            pause.id,
            None,
            detail,
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::Target;

    fn target(topic: &str, partition: Option<i32>) -> Target {
        Target {
            topic: Some(topic.into()),
            partition,
            route: None,
        }
    }

    #[test]
    fn a_pause_holds_its_topic_or_partition_and_the_topics_retries() {
        let topic = target("pay", None);
        assert!(topic.holds("pay", 0) && topic.holds("pay", 7));
        assert!(topic.holds("pay.retry", 2), "its retry topic");
        assert!(!topic.holds("payments", 0) && !topic.holds("other.retry", 0));
        let one = target("pay", Some(3));
        assert!(one.holds("pay", 3));
        assert!(!one.holds("pay", 2) && !one.holds("pay.retry", 3));
        let route = Target {
            topic: None,
            partition: None,
            route: Some("http://x".into()),
        };
        assert!(!route.holds("pay", 0));
        assert_eq!(one.describe(), "pay/3");
        assert_eq!(route.describe(), "route:http://x");
    }

    #[test]
    fn a_target_names_a_known_topic_or_route_and_not_both() {
        let topics = vec!["pay".to_string()];
        let routes = ["http://x"];
        let check = |t: Option<&str>, p: Option<i32>, r: Option<&str>| {
            Target::checked(t.map(Into::into), p, r.map(Into::into), &topics, &routes)
        };
        assert!(check(Some("pay"), Some(1), None).is_ok());
        assert!(check(None, None, Some("http://x")).is_ok());
        for (bad, field) in [
            (check(Some("nope"), None, None), "topic"),
            (check(Some("pay"), Some(-1), None), "partition"),
            (check(None, Some(1), None), "partition"),
            (check(None, None, Some("http://y")), "route"),
            (check(Some("pay"), None, Some("http://x")), "topic"),
            (check(None, None, None), "topic"),
        ] {
            assert!(bad.as_ref().is_err_and(|e| e.starts_with(field)), "{bad:?}");
        }
    }
}
