//! What PostgreSQL sees of its clients: sessions by application name, what
//! they wait on, the advisory locks they hold.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

use super::Db;

impl Db<'_> {
    /// Sessions to `database` whose application name is `name`.
    pub fn sessions_named(&self, name: &str, database: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = $2",
            &[name, database],
        )
    }

    /// Sessions named `name` waiting on a lock.
    pub fn sessions_waiting_on_a_lock(&self, name: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[name],
        )
    }

    /// The application names of the sessions holding an advisory lock in
    /// this database (the relay's publisher lock).
    pub fn advisory_lock_holders(&self) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT a.application_name AS name FROM pg_locks l \
                     JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted \
                       AND l.database = \
                           (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .load::<Name>(&mut conn),
            )
            .expect("pg_locks")
            .into_iter()
            .map(|n| n.name)
            .collect()
    }
}
