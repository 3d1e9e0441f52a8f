//! Errors of the storage layer. Each says what happened and where, so that the broker can
//! log it and map it to a Kafka error code (in `broker::error_code`, the one place that
//! does so).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::batch::BatchError;
use super::producer_state::SequenceError;
use super::records::RecordsError;

#[derive(Debug)]
pub enum StorageError {
    /// A file operation failed (disk full, permissions, I/O error).
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The batch failed its CRC or length checks.
    CorruptBatch(BatchError),
    /// The batch is well-formed but not acceptable (more than one batch, control batch from
    /// a client, inconsistent counts).
    InvalidRecord { reason: &'static str },
    /// Some records of the batch are not acceptable; their indexes within the batch.
    InvalidRecords {
        reason: &'static str,
        record_indexes: Vec<i32>,
    },
    /// The batch exceeds the topic's `max.message.bytes`.
    RecordTooLarge {
        batch_bytes: usize,
        max_message_bytes: usize,
    },
    /// The requested offset is outside `[log_start_offset, log_end_offset]`.
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A verbatim append would not extend the log (base offset below the log end).
    OffsetsNotIncreasing {
        batch_base_offset: i64,
        log_end_offset: i64,
    },
    /// An earlier write or fsync failed in a way that could not be undone; the log refuses
    /// further work until the broker restarts and recovers it.
    LogOffline { dir: PathBuf },
    /// The log's files or offsets contradict each other in a way recovery cannot repair
    /// (or a bug broke an invariant): the partition goes offline instead of serving them.
    Inconsistent { dir: PathBuf, reason: String },
    /// The records inside a batch could not be read.
    Records(RecordsError),
    /// The producer's epoch or sequence is not acceptable.
    Sequence(SequenceError),
}

impl StorageError {
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    /// True if the error concerns the disk rather than the request.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. }
                | StorageError::LogOffline { .. }
                | StorageError::Inconsistent { .. }
        )
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io {
                operation,
                path,
                source,
            } => {
                write!(f, "{operation} failed for {}: {source}", path.display())
            }
            StorageError::CorruptBatch(err) => write!(f, "{err}"),
            StorageError::InvalidRecord { reason } => write!(f, "invalid record batch: {reason}"),
            StorageError::InvalidRecords {
                reason,
                record_indexes,
            } => {
                write!(f, "{reason} ({} records rejected)", record_indexes.len())
            }
            StorageError::RecordTooLarge {
                batch_bytes,
                max_message_bytes,
            } => write!(
                f,
                "record batch of {batch_bytes} bytes exceeds max.message.bytes={max_message_bytes}"
            ),
            StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            } => write!(
                f,
                "offset {offset} is outside the log's range [{log_start_offset}, {log_end_offset}]"
            ),
            StorageError::OffsetsNotIncreasing {
                batch_base_offset,
                log_end_offset,
            } => write!(
                f,
                "batch at offset {batch_base_offset} does not extend the log ending at \
                 {log_end_offset}"
            ),
            StorageError::LogOffline { dir } => write!(
                f,
                "log {} is offline after an earlier I/O failure; restart the broker to recover it",
                dir.display()
            ),
            StorageError::Inconsistent { dir, reason } => {
                write!(f, "log {} is inconsistent: {reason}", dir.display())
            }
            StorageError::Records(err) => write!(f, "{err}"),
            StorageError::Sequence(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<BatchError> for StorageError {
    fn from(err: BatchError) -> Self {
        StorageError::CorruptBatch(err)
    }
}

impl From<RecordsError> for StorageError {
    fn from(err: RecordsError) -> Self {
        StorageError::Records(err)
    }
}
