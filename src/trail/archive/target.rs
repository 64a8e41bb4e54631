//! Where archives are kept: a local directory (the default) or any
//! S3-compatible bucket, through the `object_store` crate. Paths inside
//! are relative to the configured prefix.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::ExposeSecret;

use crate::config::ArchiveSettings;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("audit.archive.url: {0}")]
    Config(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is missing")]
    Missing { path: String },
}

/// An opened archive store.
#[derive(Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// What `audit_archives.store_url` records.
    url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).finish()
    }
}

impl Target {
    /// Opens the configured store (creating a local directory if needed).
    /// Errors never hold the secret key.
    pub fn open(settings: &ArchiveSettings) -> Result<Target, TargetError> {
        Target::opening(settings, true)
    }

    /// Opens a store to read what is there: a missing local directory is
    /// an error, not created.
    pub fn open_existing(settings: &ArchiveSettings) -> Result<Target, TargetError> {
        Target::opening(settings, false)
    }

    fn opening(settings: &ArchiveSettings, create: bool) -> Result<Target, TargetError> {
        let config = |e: &dyn std::fmt::Display| TargetError::Config(e.to_string());
        if let Some(rest) = settings.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&settings.s3_region)
                .with_allow_http(settings.s3_allow_http)
                .with_virtual_hosted_style_request(false);
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) =
                (&settings.s3_access_key_id, &settings.s3_secret_access_key)
            {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret.expose_secret());
            }
            let store = builder.build().map_err(|_| {
                TargetError::Config("the S3 settings are incomplete or invalid".into())
            })?;
            return Ok(Target {
                store: Arc::new(store),
                prefix: Path::from(prefix.trim_matches('/')),
                url: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
            });
        }
        let dir = settings
            .url
            .strip_prefix("file://")
            .unwrap_or(&settings.url);
        if create {
            std::fs::create_dir_all(dir)
                .map_err(|e| config(&format!("cannot create {dir}: {e}")))?;
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| config(&format!("{dir}: {e}")))?;
        // Synced: the partition is dropped once its files are written.
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| config(&e))?
            .with_fsync(true);
        Ok(Target {
            store: Arc::new(store),
            prefix: Path::default(),
            url: format!("file://{}", dir.display()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn full(&self, path: &str) -> Path {
        let mut full = self.prefix.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            full = full.clone().join(part);
        }
        full
    }

    /// The store and the full path of `path`, for a reader of its own.
    pub(crate) fn locate(&self, path: &str) -> (&Arc<dyn ObjectStore>, Path) {
        (&self.store, self.full(path))
    }

    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), TargetError> {
        self.store
            .put(&self.full(path), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| TargetError::Io {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    pub async fn get(&self, path: &str) -> Result<Bytes, TargetError> {
        let result = match self.store.get(&self.full(path)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(TargetError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(e) => {
                return Err(TargetError::Io {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        result.bytes().await.map_err(|e| TargetError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The paths (from the store's root) of every object under `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, TargetError> {
        use futures::TryStreamExt;
        let root = self.full(dir);
        let failed = |e: object_store::Error| TargetError::Io {
            path: dir.to_owned(),
            reason: e.to_string(),
        };
        let found: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(failed)?;
        let skip = self.prefix.parts().count();
        Ok(found
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    pub async fn delete(&self, path: &str) -> Result<(), TargetError> {
        match self.store.delete(&self.full(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(TargetError::Io {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}
