//! A throwaway PostgreSQL database for a benchmark: created from
//! TEST_POSTGRES_ADMIN_URL, migrated, handed to the benchmark, dropped at
//! the end whatever the benchmark did.

use std::time::Duration;

use anyhow::Context as _;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<usize> {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .with_context(|| sql.chars().take(80).collect::<String>())
}

/// Runs `bench` on a fresh, migrated database named `custodian_bench_{name}_…`.
#[allow(dead_code)]
pub fn with_database<F, Fut>(name: &str, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(AsyncPgConnection) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_database_at(name, |url: String| async move {
        let conn = AsyncPgConnection::establish(&url).await?;
        bench(conn).await
    })
}

/// Runs `bench` with the URL of a fresh, migrated database.
pub fn with_database_at<F, Fut>(name: &str, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let admin = std::env::var("TEST_POSTGRES_ADMIN_URL").map_err(|_| {
        anyhow::anyhow!("TEST_POSTGRES_ADMIN_URL is not set: eval \"$(dev/services.sh env)\" first")
    })?;
    let database = format!(
        "custodian_bench_{name}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => anyhow::bail!("TEST_POSTGRES_ADMIN_URL has no database part"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut admin_conn = AsyncPgConnection::establish(&admin).await?;
        // The name is generated here from a fixed word and hex digits only.
        exec(&mut admin_conn, &format!("CREATE DATABASE {database}")).await?;
        anyhow::Ok(())
    })?;
    let result = custodian::store::migrate::run(&url.clone().into(), Duration::from_secs(30))
        .map_err(anyhow::Error::from)
        .and_then(|_| rt.block_on(bench(url.clone())));
    rt.block_on(async {
        let mut admin_conn = AsyncPgConnection::establish(&admin).await?;
        exec(
            &mut admin_conn,
            &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        )
        .await?;
        anyhow::Ok(())
    })?;
    result
}
