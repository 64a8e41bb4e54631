//! Finding one message in the archive, opening as little as possible:
//! for each archived file, its footer and then, per row group, the bloom
//! filter of `message_id` (range reads); only a row group whose filter may
//! hold the id is read, and its rows filtered.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde::Serialize;
use uuid::Uuid;

use super::manifest::Manifest;
use super::target::Target;
use crate::trail::entry::Entry;

/// Where and how the search went.
#[derive(Debug, Default, Serialize)]
pub struct Found {
    /// The message's archived entries, oldest first.
    #[serde(skip)]
    pub entries: Vec<Entry>,
    /// The files that held them.
    pub files: Vec<String>,
    /// The periods those files belong to.
    pub partitions: Vec<String>,
    pub files_total: usize,
    /// Row groups whose bloom filter let them through, and those read.
    pub row_groups_read: usize,
    pub row_groups_total: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("archive file {path}: {reason}")]
pub struct FindError {
    pub path: String,
    pub reason: String,
}

/// Searches `manifests` (each a dropped period's) for message `id`.
pub async fn find(target: &Target, manifests: &[Manifest], id: Uuid) -> Result<Found, FindError> {
    let mut found = Found::default();
    let column = super::parquet::schema()
        .index_of("message_id")
        .map_err(|e| FindError {
            path: String::new(),
            reason: e.to_string(),
        })?;
    for manifest in manifests {
        for record in &manifest.files {
            found.files_total += 1;
            let failed = |e: &dyn std::fmt::Display| FindError {
                path: record.path.clone(),
                reason: e.to_string(),
            };
            let (store, path) = target.locate(&record.path);
            let reader = RangeReader {
                store: Arc::clone(store),
                path,
                size: record.bytes,
            };
            let mut builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|e| failed(&e))?;
            let groups = builder.metadata().num_row_groups();
            found.row_groups_total += groups;
            let mut candidates = Vec::new();
            for g in 0..groups {
                let filter = builder
                    .get_row_group_column_bloom_filter(g, column)
                    .await
                    .map_err(|e| failed(&e))?;
                if filter.is_none_or(|f| f.check(&id.as_bytes()[..])) {
                    candidates.push(g);
                }
            }
            if candidates.is_empty() {
                continue;
            }
            found.row_groups_read += candidates.len();
            let stream = builder
                .with_row_groups(candidates)
                .build()
                .map_err(|e| failed(&e))?;
            let batches: Vec<_> = stream.try_collect().await.map_err(|e| failed(&e))?;
            let mut entries = Vec::new();
            for batch in &batches {
                super::parquet::decode_batch(batch, &mut entries).map_err(|e| failed(&e))?;
            }
            let before = found.entries.len();
            found
                .entries
                .extend(entries.into_iter().filter(|e| e.message_id == id));
            if found.entries.len() > before {
                found.files.push(record.path.clone());
                if !found.partitions.contains(&manifest.partition) {
                    found.partitions.push(manifest.partition.clone());
                }
            }
        }
    }
    found.entries.sort_by_key(|e| (e.occurred_at, e.id));
    Ok(found)
}

/// Reads byte ranges of one file of known size (from its manifest), as
/// the Parquet reader asks for them: the footer, a bloom filter, a row
/// group's column chunks.
struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
