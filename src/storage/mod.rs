//! Partition storage: Kafka's segmented on-disk log (`.log`, `.index`, `.timeindex`),
//! recovery after a crash, checkpoints and the data directory layout. Synchronous code with
//! no knowledge of sockets or the wire protocol; the broker layer drives it.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod data_dir;
pub mod error;
pub mod fsync;
pub mod index;
pub mod journal;
pub mod log;
pub mod producer_state;
pub mod recompress;
pub mod records;
pub mod segment;

pub use error::StorageError;
