//! The `audit` section: hash-chaining the audit trail and signing its
//! checkpoints (see `trail`).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

use super::duration::{duration, optional_duration};
use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Hash-chain pipeline entries (`false` only to measure what chaining
    /// costs: entries written unchained cannot be verified). Operator actions
    /// are always chained.
    pub chain: bool,
    /// Who signs: the first line of every checkpoint and the signing key's
    /// name (no whitespace, no '+').
    pub origin: String,
    /// A file holding the Ed25519 signing key: the base64 of its 32-byte
    /// seed (`custodian audit keygen` writes one).
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// The same key given directly (`CUSTODIAN_AUDIT__SIGNING_KEY`). Never
    /// logged, never stored in the database.
    #[serde(default)]
    pub signing_key: Option<SecretString>,
    /// Where checkpoints are appended, one line each. Ship this file off the
    /// database server: it is what a truncated trail is caught against.
    #[serde(default)]
    pub checkpoint_file: Option<PathBuf>,
    /// A chain is checkpointed once this many entries are past its last
    /// checkpoint…
    pub checkpoint_every_entries: u64,
    /// …or once its last checkpoint is this old and it has new entries.
    #[serde(deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// Connections `audit verify` (and `GET /audit/verify`) reads chains
    /// over concurrently: more is faster, and more load on the database.
    pub verify_connections: usize,
    /// How long one partition of `audit_log` is: `month` or `day` (for
    /// high volume). Applies to partitions created from now on.
    pub partition: Period,
    /// Partitions kept ready past the current one.
    pub partitions_ahead: u32,
    /// How often the partitions ahead are checked (and created).
    #[serde(deserialize_with = "duration")]
    pub partition_check_interval: Duration,
    /// Seal every partition that ended more than this long ago, on the
    /// partition timer (unset: only `custodian audit seal` seals).
    #[serde(default, deserialize_with = "optional_duration")]
    pub seal_after: Option<Duration>,
    /// Where sealed partitions are archived (`custodian audit archive`).
    pub archive: ArchiveSettings,
    /// How long archived periods are kept: `7y` (calendar years) or `400d`.
    /// `custodian audit retain` deletes, from the archive, every archived
    /// period that ended longer ago, unless a legal hold covers it (unset:
    /// nothing is ever deleted).
    #[serde(default)]
    pub retention: Option<Retention>,
}

/// `audit.retention`: calendar years or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Years(u32),
    Days(u32),
}

impl Retention {
    /// The end a period must have ended before to be past retention at `now`.
    pub fn cutoff(
        self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Retention::Years(y) => now.checked_sub_months(chrono::Months::new(y.checked_mul(12)?)),
            Retention::Days(d) => now.checked_sub_days(chrono::Days::new(u64::from(d))),
        }
    }

    fn parse(text: &str) -> Result<Retention, String> {
        let bad = || format!("`{text}` is not a retention like 7y or 400d (1 day to 100 years)");
        let text = text.trim();
        let (number, unit) = text.split_at(text.len().saturating_sub(1));
        let n: u32 = number.parse().map_err(|_| bad())?;
        match unit {
            "y" if (1..=100).contains(&n) => Ok(Retention::Years(n)),
            "d" if (1..=36_600).contains(&n) => Ok(Retention::Days(n)),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Retention::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The length of one partition of the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Month,
    Day,
}

impl Period {
    /// As `custodian_audit_partitions_ensure` and `date_trunc` spell it.
    pub fn as_sql(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Day => "day",
        }
    }
}

/// The `audit.archive` section: an object store for sealed periods.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    /// A local directory (a path, or `file:///…`) or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); unset: AWS.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    #[serde(default)]
    pub s3_access_key_id: Option<String>,
    /// Never logged (`CUSTODIAN_AUDIT__ARCHIVE__S3_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub s3_secret_access_key: Option<SecretString>,
    /// Allow an `http://` endpoint (a test server; never in production).
    pub s3_allow_http: bool,
    /// Most entries in one Parquet file.
    pub file_rows: usize,
}

pub fn defaults() -> serde_json::Value {
    serde_json::json!({
        "chain": true,
        "origin": "custodian",
        "checkpoint_every_entries": 10000,
        "checkpoint_interval": "60s",
        "verify_connections": 3,
        "partition": "month",
        "partitions_ahead": 2,
        "partition_check_interval": "1h",
        "archive": {
            "url": "custodian-archive",
            "s3_region": "us-east-1",
            "s3_allow_http": false,
            "file_rows": 1_000_000,
        },
    })
}

/// The 32-byte Ed25519 seed, kept secret in memory.
pub type SigningSeed = SecretBox<[u8; 32]>;

impl AuditSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.origin.is_empty()
            || self.origin.len() > 200
            || self
                .origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(invalid(
                "audit.origin",
                "must be 1 to 200 characters without whitespace or '+'",
            ));
        }
        if self.checkpoint_every_entries == 0 {
            return Err(invalid(
                "audit.checkpoint_every_entries",
                "must be greater than zero",
            ));
        }
        if self.checkpoint_interval.is_zero()
            || self.checkpoint_interval > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "audit.checkpoint_interval",
                "must be more than zero and at most 24h",
            ));
        }
        if !(1..=16).contains(&self.verify_connections) {
            return Err(invalid("audit.verify_connections", "must be 1 to 16"));
        }
        if !(1..=24).contains(&self.partitions_ahead) {
            return Err(invalid("audit.partitions_ahead", "must be 1 to 24"));
        }
        if self
            .seal_after
            .is_some_and(|d| d.is_zero() || d > Duration::from_secs(100 * 366 * 86_400))
        {
            return Err(invalid(
                "audit.seal_after",
                "must be more than zero and at most 100 years",
            ));
        }
        if self.partition_check_interval < Duration::from_secs(1)
            || self.partition_check_interval > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "audit.partition_check_interval",
                "must be 1s to 24h",
            ));
        }
        self.archive.validate()?;
        let signing = self.signing_seed()?.is_some();
        self.checkpoint_file_writable(signing)
    }

    /// With a signing key, checkpoints are appended to the file: one that
    /// cannot be opened for append (a directory, a missing or read-only
    /// directory, no permission) would leave a truncated trail undetectable,
    /// so it stops custodian at start. Opening creates the file, empty, as
    /// the first checkpoint would.
    fn checkpoint_file_writable(&self, signing: bool) -> Result<(), ConfigError> {
        let Some(path) = self.checkpoint_file.as_deref().filter(|_| signing) else {
            return Ok(());
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| {
                invalid(
                    "audit.checkpoint_file",
                    format!("cannot open {} for append: {e}", path.display()),
                )
            })
    }

    /// The configured signing key, if any. Errors name the key, never the
    /// value.
    pub fn signing_seed(&self) -> Result<Option<SigningSeed>, ConfigError> {
        let text = match (&self.signing_key_file, &self.signing_key) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "audit.signing_key",
                    "set either audit.signing_key or audit.signing_key_file, not both",
                ))
            }
            (None, None) => return Ok(None),
            (None, Some(key)) => SecretString::from(key.expose_secret().to_owned()),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "audit.signing_key_file",
                        format!("cannot read {}: {}", path.display(), e.kind()),
                    )
                })?;
                SecretString::from(text)
            }
        };
        let key = if self.signing_key.is_some() {
            "audit.signing_key"
        } else {
            "audit.signing_key_file"
        };
        parse_seed(text.expose_secret())
            .map(|seed| Some(SecretBox::new(Box::new(seed))))
            .ok_or_else(|| invalid(key, "must be the base64 of a 32-byte Ed25519 seed"))
    }
}

impl ArchiveSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(invalid(
                "audit.archive.url",
                "must name a directory or s3://bucket",
            ));
        }
        if let Some(rest) = self.url.strip_prefix("s3://") {
            if rest.split('/').next().is_none_or(str::is_empty) {
                return Err(invalid(
                    "audit.archive.url",
                    "s3:// needs a bucket: s3://bucket/prefix",
                ));
            }
        } else if self.url.contains("://") && !self.url.starts_with("file://") {
            return Err(invalid(
                "audit.archive.url",
                "must be a directory, file:///path or s3://bucket/prefix",
            ));
        }
        if let Some(endpoint) = &self.s3_endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|_| invalid("audit.archive.s3_endpoint", "is not a URL"))?;
            if parsed.scheme() == "http" && !self.s3_allow_http {
                return Err(invalid(
                    "audit.archive.s3_endpoint",
                    "is http://; set audit.archive.s3_allow_http = true for a test server",
                ));
            }
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err(invalid(
                "audit.archive.s3_secret_access_key",
                "set both s3_access_key_id and s3_secret_access_key, or neither",
            ));
        }
        if !(1_000..=100_000_000).contains(&self.file_rows) {
            return Err(invalid(
                "audit.archive.file_rows",
                "must be 1000 to 100000000",
            ));
        }
        Ok(())
    }
}

fn parse_seed(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn bad_audit_settings_name_the_key_without_echoing_secrets() {
        for (key, value) in [
            ("audit.origin", serde_json::json!("has space")),
            ("audit.checkpoint_every_entries", serde_json::json!(0)),
            ("audit.checkpoint_interval", serde_json::json!("0s")),
            ("audit.verify_connections", serde_json::json!(0)),
            ("audit.signing_key", serde_json::json!("hunter2-not-a-key")),
            (
                "audit.signing_key_file",
                serde_json::json!("/nonexistent/custodian.key"),
            ),
        ] {
            let err = Settings::from_overrides(&[(key, value)]).expect_err(key);
            let text = err.to_string();
            assert!(text.contains(key), "{key}: {text}");
            assert!(!text.contains("hunter2"), "{key}: {text}");
        }
    }

    #[test]
    fn a_checkpoint_file_that_cannot_be_appended_to_is_refused_naming_the_key() {
        let seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let dir = std::env::temp_dir().join(format!("custodian-cpf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let impossible = dir.join("no-such-dir").join("checkpoints.log");
        for path in [&dir, &impossible] {
            let err = Settings::from_overrides(&[
                ("audit.signing_key", seed.into()),
                ("audit.checkpoint_file", path.display().to_string().into()),
            ])
            .expect_err("refused");
            let text = err.to_string();
            assert!(text.contains("audit.checkpoint_file"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        // A writable one loads (and exists from then on).
        let good = dir.join("checkpoints.log");
        Settings::from_overrides(&[
            ("audit.signing_key", seed.into()),
            ("audit.checkpoint_file", good.display().to_string().into()),
        ])
        .expect("a writable file loads");
        assert!(good.is_file());
        // Without a signing key nothing is appended, so nothing is checked.
        Settings::from_overrides(&[("audit.checkpoint_file", dir.display().to_string().into())])
            .expect("not written without a key");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_good_key_loads_and_stays_out_of_debug_output() {
        let seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let s = Settings::from_overrides(&[("audit.signing_key", seed.into())]).expect("loads");
        assert!(s.audit.signing_seed().expect("valid").is_some());
        assert!(!format!("{s:?}").contains(seed));
    }
}
