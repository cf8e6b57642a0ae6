//! natrec's store: NAT mappings in time partitions of fixed-size records,
//! append-only, sealed and sorted once their time is over.
//!
//! * [`Store`] is a directory: `store.json` (its [`StoreConfig`]),
//!   `store.lock`, and `partitions/` with one file per partition segment.
//! * [`Writer`] (one per store, holds `store.lock`) appends [`Mapping`]s to
//!   the active log of the partition their time falls in, seals partitions
//!   whose time is over (sorted by public ip and port, checksummed, published
//!   atomically), and carries mappings still held at a partition's end into
//!   the next one, so a lookup reads only the partition containing its time.
//! * [`Reader`] answers "who held public IP X port P at time T"
//!   ([`Reader::lookup`] with a [`Query`], answered by [`Holder`]s) with a
//!   binary search of that partition, and exports, lists and verifies.
//! * [`StoreError`] says what went wrong, why, and what to do.
//!
//! Records are never altered or deleted once sealed and never contain
//! payload. docs/FORMAT.md draws every byte and every crash point.
//!
//! ```
//! use natrec_storage::{EndReason, Mapping, Proto, Query, Store, StoreConfig, NANOS_PER_SEC};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(&dir.path().join("store"), StoreConfig::default())?;
//! let mut w = store.writer()?;
//! let t = 1_772_373_600 * NANOS_PER_SEC; // 2026-03-01T14:00:00Z
//! w.append(&Mapping {
//!     proto: Proto::Tcp,
//!     internal: "100.64.0.2:40000".parse()?,
//!     public: "203.0.113.7:1024".parse()?,
//!     remote: "198.51.100.9:443".parse()?,
//!     first_ns: t,
//!     last_ns: t + 5 * NANOS_PER_SEC,
//!     end: EndReason::Fin,
//!     packets_out: 6,
//!     packets_in: 5,
//!     flags: 0,
//! })?;
//! w.seal_all()?;
//! let found = store.reader().lookup(&Query::at("203.0.113.7".parse()?, 1024, t + NANOS_PER_SEC))?;
//! assert_eq!(found.holders.len(), 1);
//! assert_eq!(found.holders[0].mapping.internal, "100.64.0.2:40000".parse()?);
//! assert_eq!(found.holders[0].partition, "20260301T140000Z-0000.part");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod chores;
mod error;
pub mod format;
mod fsutil;
pub mod gaps;
#[allow(unsafe_code)]
mod hwcrc;
#[allow(unsafe_code)]
mod mmap;
pub mod model;
mod partition;
mod radix;
mod reader;
pub mod sealed_v2;
#[allow(unsafe_code)]
mod simd;
mod store;
mod writer;

pub use error::StoreError;
pub use gaps::{Gap, GapKind};
pub use model::{
    EndReason, HoldTimes, Mapping, Proto, UnixNanos, FLAG_MIDFLOW, NANOS_PER_SEC,
    UDP_STREAM_AFTER_NS,
};
pub use partition::{LOG_SLOTS_INITIAL, PARTITION_RECORDS_MAX};
pub use reader::{
    Holder, LookupOutcome, PartitionInfo, PartitionState, Query, Reader, LOG_SNAPSHOTS_MAX,
    SEALED_VIEWS_CACHED_MAX,
};
pub use store::{Store, StoreConfig, PARTITION_SPAN_S_MAX, PARTITION_SPAN_S_MIN};
pub use writer::{
    Writer, WriterStats, LATE_REROUTE_SPANS_MAX, PUBLISHES_IN_FLIGHT_MAX, SEALED_LOGS_PENDING_MAX,
};
