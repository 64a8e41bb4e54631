//! The dead-letter queue as Redis keeps it: a test's entries (under its own
//! key prefix, Redis being shared) read straight from the list.

use super::TestEnv;

impl TestEnv {
    /// `<prefix>:<topic>`: with the default prefix, `dlq:<topic>`.
    pub fn dlq_list_key(&self) -> String {
        custodian::dlq::Keys::new(&self.dlq_prefix).list(&self.topic)
    }

    /// The parked entries of the test's topic, oldest first.
    pub fn dlq_entries(&self) -> Vec<custodian::dlq::DlqEntry> {
        self.dlq_entries_at(&self.redis_url)
    }

    /// The parked entries of the test's topic in the Redis at `redis_url`,
    /// oldest first.
    pub fn dlq_entries_at(&self, redis_url: &str) -> Vec<custodian::dlq::DlqEntry> {
        let client = redis::Client::open(redis_url).expect("redis url");
        self.rt.block_on(async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection");
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(self.dlq_list_key())
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("LRANGE");
            raw.iter()
                .map(|j| {
                    serde_json::from_str(j).expect("DLQ entry is JSON of the documented shape")
                })
                .collect()
        })
    }

    /// Runs one Redis command on a connection of its own.
    pub fn redis_query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut conn = self.redis().get_connection().expect("redis connection");
        cmd.query(&mut conn).expect("redis command")
    }
}
