//! Errors an operator can act on: every message reads
//! `<what>: <why>; <what to do>` and names the path, plus the byte offset,
//! field, and expected vs found values where they apply.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Corrupt files and full disks
/// are operating errors and land here; a broken invariant of the store's own
/// code is a bug and is an `assert!` instead.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {}: {source}; check that the path exists, is writable and the disk has free space", path.display())]
    Io {
        /// File or directory operated on.
        path: PathBuf,
        /// What was being done (`open`, `write`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no `store.json`.
    #[error("{} is not a natrec store: it has no store.json; `natrec replay --store DIR` creates one", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// A store or partition file has a format version this build cannot read.
    #[error("{}: format version {found} was written by a newer natrec (this one reads up to version {supported}); upgrade natrec", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// Another writer holds `store.lock`.
    #[error("{}: another natrec is writing to this store (store.lock is held); stop it or use another store directory", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// `Store::create` found something already there.
    #[error("{}: {detail}; open it instead, or choose an empty directory", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
        /// What is there.
        detail: String,
    },
    /// Bytes on disk do not form what the format says.
    #[error("{} at byte {offset}: corrupt {field}: {detail}; run `natrec verify` and restore this file from a backup (other partitions are unaffected)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset in the file of the bad field.
        offset: u64,
        /// Name of the bad field.
        field: &'static str,
        /// Expected vs found.
        detail: String,
    },
    /// A CRC-32 does not match the bytes it covers.
    #[error("{}: checksum of {what} does not match: expected {expected:#010x}, found {found:#010x}; the file was damaged after it was written; run `natrec verify` and restore it from a backup", path.display())]
    BadChecksum {
        /// The file.
        path: PathBuf,
        /// What the checksum covers, with its byte offset.
        what: String,
        /// Checksum stored in the file.
        expected: u32,
        /// Checksum computed over the bytes read.
        found: u32,
    },
    /// The store configuration is unusable.
    #[error("{}: invalid configuration: {detail}; fix store.json or the options given", path.display())]
    Config {
        /// `store.json` or the store directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A mapping cannot be stored (checked before anything is written).
    #[error("{}: mapping not stored: {detail}; this is a bug in the caller, please report it", path.display())]
    BadMapping {
        /// The store directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A query that cannot be answered as asked.
    #[error("{}: bad query: {detail}; give a time range with from <= to", path.display())]
    BadQuery {
        /// The store directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Publishing a sealed partition failed (on the seal thread); the writer
    /// refuses further work. The partition's log is intact on disk, and the
    /// next writer's recovery seals it again.
    #[error("{}: sealing failed earlier ({detail}); this writer stops: restart it (the partition's log is intact and is sealed again on open)", path.display())]
    SealFailed {
        /// The sealed partition that was being published.
        path: PathBuf,
        /// The first error.
        detail: String,
    },
    /// Work the writer hands to its background thread (the periodic
    /// `fdatasync` of the logs, a directory fsync, the removal of a sealed
    /// log) failed earlier; the writer refuses further work. A failed
    /// `fdatasync` is not retried (the kernel may have dropped the pages it
    /// could not write and report the next one as a success): what it
    /// covered may be lost, and the next writer's recovery reads the logs
    /// back to their last valid record.
    #[error("{}: making records durable failed earlier ({detail}); this writer stops: restart it (the next writer recovers the logs to their last valid record)", path.display())]
    SyncFailed {
        /// The file or directory the failed work was on.
        path: PathBuf,
        /// The first error.
        detail: String,
    },
    /// A partition reached its bound on records.
    #[error("{}: partition full at {records_max} records (the bound `partition_records_max`); use a smaller partition_span_s", path.display())]
    PartitionFull {
        /// The active log.
        path: PathBuf,
        /// The bound.
        records_max: u64,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Io`].
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, op, source }
    }
}
