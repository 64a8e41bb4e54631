//! The projections the pipeline builds: transactions, users, orders,
//! payments, inventory.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

use super::Db;

impl Db<'_> {
    /// The sum of the transactions' versions: one per applied event.
    pub fn versions(&self) -> i64 {
        self.count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions")
    }

    /// Transaction `id`'s version (panics if there is no such row).
    pub fn version_of(&self, id: &str) -> i64 {
        self.count_with(
            "SELECT version::int8 AS n FROM transactions WHERE id = $1",
            &[id],
        )
    }

    /// Whether transaction `id` has a projection row.
    pub fn has_transaction(&self, id: &str) -> bool {
        self.count_with(
            "SELECT count(*) AS n FROM transactions WHERE id = $1",
            &[id],
        ) == 1
    }

    /// Transactions at `version` whose amount is `amount`.
    pub fn transactions_at(&self, version: i64, amount: i64) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM transactions \
             WHERE version = $1::int8 AND amount = $2::numeric",
            &[&version.to_string(), &amount.to_string()],
        )
    }

    /// Transactions applied more (or less) than once.
    pub fn transactions_not_at_version_1(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM transactions WHERE version <> 1")
    }

    /// Users among the transactions.
    pub fn transaction_users(&self) -> i64 {
        self.count("SELECT count(DISTINCT user_id) AS n FROM transactions")
    }

    /// A stored amount as PostgreSQL prints it (`None`: no such row).
    fn amount(&self, sql: &str, id: &str) -> Option<String> {
        #[derive(QueryableByName)]
        struct Amount {
            #[diesel(sql_type = Text)]
            amount: String,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(sql)
                    .bind::<Text, _>(id)
                    .load::<Amount>(&mut conn),
            )
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .pop()
            .map(|a| a.amount)
    }

    /// Transaction `id`'s amount, as stored.
    pub fn transaction_amount(&self, id: &str) -> Option<String> {
        self.amount(
            "SELECT amount::text AS amount FROM transactions WHERE id = $1",
            id,
        )
    }

    /// Order `id`'s amount, as stored.
    pub fn order_amount(&self, id: &str) -> Option<String> {
        self.amount(
            "SELECT amount::text AS amount FROM orders WHERE id = $1",
            id,
        )
    }

    /// The amount of order `id`'s payment, as stored.
    pub fn payment_amount(&self, order_id: &str) -> Option<String> {
        self.amount(
            "SELECT amount::text AS amount FROM payments WHERE order_id = $1",
            order_id,
        )
    }

    /// User `id`'s name (`None`: no such user).
    pub fn user_name(&self, id: &str) -> Option<String> {
        self.amount("SELECT name AS amount FROM users WHERE id = $1", id)
    }

    /// The stock of `sku`.
    pub fn inventory(&self, sku: &str) -> i64 {
        self.count_with(
            "SELECT quantity::int8 AS n FROM inventory WHERE sku = $1",
            &[sku],
        )
    }
}
