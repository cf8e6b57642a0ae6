//! natrec's store (work in progress: the model types land first).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod model;

pub use model::{EndReason, HoldTimes, Mapping, Proto, UnixNanos, FLAG_MIDFLOW, NANOS_PER_SEC};
