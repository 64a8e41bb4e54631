//! The connection addresses (PostgreSQL and Redis URLs, the Kafka broker
//! list) and what makes them usable. Checked at start with the same parsers
//! the clients use later, so a value that passes here cannot fail there for
//! its syntax. The URLs hold passwords: errors name the key and the fault,
//! never the value.

use super::{invalid, ConfigError};

/// `postgres.url`: a `postgres://` or `postgresql://` URL that
/// tokio-postgres (under diesel-async) accepts.
pub(super) fn postgres(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "postgres.url";
    if !["postgres://", "postgresql://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(invalid(
            KEY,
            "must start with one of postgres://, postgresql://",
        ));
    }
    // tokio-postgres names the parameter at fault (`port`, `sslmode`), not
    // its value; that is the part of its message worth keeping.
    url.parse::<tokio_postgres::Config>()
        .map(drop)
        .map_err(|e| invalid(KEY, format!("is not a valid PostgreSQL URL ({e})")))
}

/// `redis.url`: a `redis://`, `rediss://` or `unix://` URL the redis crate
/// accepts (host, numeric port, numeric database; `rediss://` only if the
/// crate was built with TLS).
pub(super) fn redis(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "redis.url";
    if !["redis://", "rediss://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(invalid(
            KEY,
            "must start with one of redis://, rediss://, unix://",
        ));
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        // The redis crate's messages are fixed texts ("Invalid database
        // number"); none carries the URL.
        .map_err(|e| invalid(KEY, format!("is not a usable Redis URL ({e})")))
}

/// `kafka.brokers`: comma-separated `host[:port]` entries (optionally
/// `scheme://host:port`, `[v6]:port`), as librdkafka reads them.
pub(super) fn kafka_brokers(brokers: &str) -> Result<(), ConfigError> {
    const KEY: &str = "kafka.brokers";
    if brokers.trim().is_empty() {
        return Err(invalid(KEY, "must not be empty"));
    }
    for entry in brokers.split(',').map(str::trim) {
        let address = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        let port = match address.rsplit_once(']') {
            // `[::1]:9092` or `[::1]`
            Some((_, rest)) => rest.strip_prefix(':'),
            None => address.rsplit_once(':').map(|(_, port)| port),
        };
        let host_ok = !address.is_empty()
            && !address.starts_with(':')
            && !address.contains(char::is_whitespace);
        if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(invalid(
                KEY,
                format!("`{entry}` is not host[:port] (entries are separated by commas)"),
            ));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` of `url`: what logs, errors and metric labels
/// show. The path, query and user info may all hold a secret (webhook
/// tokens often live in the path), so none of them is shown.
pub fn label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            (None, _) => u.scheme().to_owned(),
        },
        Err(_) => "invalid-url".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_drop_credentials_and_queries() {
        assert_eq!(
            super::label("https://user:pw@hooks.example.com/services/T/s3cret?token=s3cret"),
            "https://hooks.example.com"
        );
        assert_eq!(
            super::label("http://127.0.0.1:9000/x"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(super::label("https://user:p?w@host/x"), "invalid-url");
    }

    use super::*;

    #[test]
    fn postgres_urls_that_the_client_would_refuse_are_refused() {
        for ok in [
            "postgres://u:p@h:5432/db",
            "postgresql://h/db?sslmode=disable",
            "postgres://h1:5432,h2:5433/db",
        ] {
            postgres(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "postgres://u:secret@h:notaport/db",
            "postgres://u:secret@h/db?sslmode=sometimes",
            "mysql://u:secret@h/db",
        ] {
            let e = postgres(bad).expect_err(bad).to_string();
            assert!(e.contains("postgres.url") && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn redis_urls_that_the_client_would_refuse_are_refused() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://:pw@h/3",
            "unix:///tmp/r.sock",
        ] {
            redis(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "redis://:secret@h:notaport",
            "redis://:secret@h/notadb",
            // Built without TLS: `run` could never connect.
            "rediss://:secret@h",
        ] {
            let e = redis(bad).expect_err(bad).to_string();
            assert!(e.contains("redis.url") && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn broker_lists_need_hosts_and_numeric_ports() {
        for ok in [
            "localhost:9092",
            "a:1, b:2",
            "broker",
            "SSL://b:9093",
            "[::1]:9092",
        ] {
            kafka_brokers(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "a:notaport", "a:1,,b:2", ":9092", "a:99999", "a b:1"] {
            let e = kafka_brokers(bad).expect_err(bad).to_string();
            assert!(e.contains("kafka.brokers"), "{e}");
        }
    }
}
