//! The single writer: routes mappings to partitions, seals them, carries
//! held-over mappings forward, and recovers after a crash.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::chores::{Chore, Chores};
use crate::format::{
    file_name, FileKind, Record, EVENT_NS_MAX, RECORD_SIZE, SF_CARRIED, SF_INTERNAL_V4, SF_LATE,
    SF_PUBLIC_V4, SF_REMOTE_V4,
};
use crate::gaps::{Gap, GapLog};
use crate::model::{EndReason, HoldTimes, Mapping, Proto, UnixNanos};
use crate::partition::{encode_sealed, publish_sealed_all, ActiveLog, SealedView};
use crate::store::{list_partitions, StoreConfig, PARTITIONS_DIR, STORE_LOCK};
use crate::{fsutil, StoreError};

/// How many partitions past its window a lookup also searches for late
/// records (a record whose own partition was already sealed goes to the
/// oldest active later partition, however far: see [`Writer::append`]).
/// A late record is the later state of a mapping whose earlier state is in
/// its own partition (or carried into it), so the lookahead only improves the
/// evidence shown (the final state); the holder is found without it.
pub const LATE_REROUTE_SPANS_MAX: i64 = 2;

/// Bound on the logs of published segments waiting to be deleted until
/// their carried copies are durable (the next flush, or the publish of the
/// segment they were carried into). At the bound the writer flushes at once,
/// so at most this many sealed logs lie next to their `.part` ("carry
/// pending" for readers and recovery).
pub const SEALED_LOGS_PENDING_MAX: usize = 16;

/// Records' worth of seal scratch the writer keeps between seals, per
/// buffer: an index (32 bytes per record) or a reduced-record buffer (96
/// bytes per record), 2^18 records. A larger partition's seal allocates its
/// own and frees it after.
const SEAL_SCRATCH_KEEP_RECORDS: usize = 1 << 18;

/// Spare seal scratch sets (an index and a record buffer) kept while no seal
/// thread uses them: as many as can be lent ([`SEAL_SCRATCH_LENT_MAX`]), so
/// a set comes back and is lent again instead of being freed and made anew
/// (sets are given back as soon as each seal is encoded, all four at once
/// when the seals of one `advance` are done). A set is made only when none
/// is spare, so at most [`SEAL_SCRATCH_LENT_MAX`] exist (4 × 32 MiB).
const SEAL_SCRATCH_SPARES_MAX: usize = SEAL_SCRATCH_LENT_MAX;

/// Seal scratch sets (an index and a reduced-record buffer, 128 bytes per
/// record of the partition) lent to seal threads at once. A seal thread
/// gives its set back as soon as its partition is encoded ([`ScratchBack`]),
/// before it writes and fsyncs the `.part`; a seal that would need a fifth
/// set waits for one to come back. This, not the thread count, bounds the
/// seals' memory: up to this many partitions' index and records while they
/// are reduced and encoded (as four seal threads did until round 15).
const SEAL_SCRATCH_LENT_MAX: usize = 4;

/// Seals handed over and not finished at once (each reduces, carries,
/// encodes and publishes one partition; taken by the seal threads in
/// partition order); the seal after that waits for the oldest. Several due
/// partitions (bigstore makes ~4 due per `advance`) are handed over without
/// the writer waiting; a seal past its encode holds only its encoded `.part`
/// (~10 bytes a log record, 20 a mapping) while it waits for the disk
/// (`write`, `fsync`, rename, directory fsync). A publish waits for two
/// cache flushes of the device one after the other (the files' fsyncs, then
/// the directory's after the renames), and a flush took ~40 ms on this VM
/// while the logs' writeback ran (`/sys/block/vda/stat`, bigstore 4 M:
/// ~10 flushes, 0.3–0.4 s of flushing): 80 ms or more a seal, while the
/// writer hands one over every ~7 ms at 5 M mappings/s. With eight in
/// flight (rounds 15–18) the writer waited for the oldest seal's flushes;
/// 32 cover ~220 ms of them (docs/bench/round19-pub19.md). The memory is
/// bounded by [`PUBLISH_RECORDS_IN_FLIGHT_MAX`] too.
pub const PUBLISHES_IN_FLIGHT_MAX: usize = 32;

/// Log records of the seals handed over and not finished, at most (counted
/// at hand-over; a carry appended to a log after that is not counted): a
/// seal that would pass it waits for the oldest ones first, unless none is
/// in flight. It bounds what those seals hold in memory: their encoded
/// `.part`s (~10 bytes a record: ~40 MiB) and a split seal's second half
/// of kept records until its publish. 2^22 records: bigstore's 4 M
/// mappings (~33 k records a partition) never reach it, a replay's hourly
/// partitions of a million records or more are handed over a few at a
/// time.
const PUBLISH_RECORDS_IN_FLIGHT_MAX: u64 = 1 << 22;

/// Seal threads at most ([`SealWorkers`]): as many as scratch sets can be
/// lent. Seals queued behind them wait for one; more threads (eight, one per
/// unfinished seal) measured no less idle time and twice the page faults
/// (each its own allocator arena, round15-wsys15.md).
const SEAL_THREADS_MAX: usize = SEAL_SCRATCH_LENT_MAX;

/// Counters of what a [`Writer`] did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Mappings appended by [`Writer::append`].
    pub records_appended: u64,
    /// Of those, how many arrived after their partition was sealed.
    pub late_records: u64,
    /// Partition segments sealed.
    pub partitions_sealed: u64,
    /// Records carried into a following partition because still held.
    pub carried: u64,
    /// Mappings still `Open` at [`Writer::seal_all`] that were carried one
    /// partition past the last one with data and no further.
    pub open_at_seal_all: u64,
    /// Bytes written to log and partition files (records, headers, footers).
    pub bytes_written: u64,
    /// Log slots holding torn or stale bytes past the committed length,
    /// zeroed when the writer opened.
    pub recovered_zeroed_slots: u64,
    /// Logs found with records but a zero header when the writer opened
    /// (a crash before their first flush); the header was written again.
    pub recovered_log_headers: u64,
    /// Partitions whose seal was interrupted after publishing and whose
    /// carry was finished when the writer opened.
    pub recovered_carries: u64,
    /// Gap records appended by [`Writer::append_gap`] (before splitting at
    /// partition boundaries).
    pub gaps_appended: u64,
}

/// Where records of one partition go (see [`Writer::route_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    /// The partition of the records' event time, `[start, start + span)`.
    start: i64,
    /// The active (or to be created) partition that takes them.
    target: i64,
    /// Store flags they get ([`SF_LATE`] when routed to a later partition).
    flags: u8,
    /// Their own partition is sealed (counted in `late_records`).
    late: bool,
}

/// A sealed partition handed to its seal thread, which reduces it, sends the
/// mappings still held at its end (the carry, [`Carry`]), and publishes the
/// `.part` (`write_sealed`: temp file, fsync, rename, directory fsync) while
/// the writer appends.
struct Publishing {
    /// Where its seal thread sends what it did ([`SealWorkers`]).
    done: mpsc::Receiver<SealDone>,
    /// What it did, once received early ([`Publishing::is_finished`]).
    finished: Option<SealDone>,
    part: PathBuf,
    /// Its start and segment.
    id: (i64, u32),
    /// Where its carried copies went (see [`CarryTo`]).
    carry: CarryTo,
    /// Its log's records at hand-over (for [`PUBLISH_RECORDS_IN_FLIGHT_MAX`]).
    records: u64,
}

impl Publishing {
    /// Whether its seal is done (published or failed), without waiting.
    fn is_finished(&mut self) -> bool {
        if self.finished.is_none() {
            self.finished = self.done.try_recv().ok();
        }
        self.finished.is_some()
    }

    /// Waits for its seal. A seal thread that panicked (its message is
    /// printed by the panic hook) dropped its sender: the writer panics too,
    /// as it did when it joined a seal thread of its own.
    fn wait(mut self) -> SealDone {
        match self.finished.take() {
            Some(d) => d,
            None => self
                .done
                .recv()
                .unwrap_or_else(|_| panic!("the seal thread of {} panicked", self.part.display())),
        }
    }
}

/// A seal handed to a seal thread: the log, the job, and where to send what
/// it did.
struct SealTask {
    log: ActiveLog,
    job: SealJob,
    done: mpsc::SyncSender<SealDone>,
}

/// The seal threads (`natrec-seal`): started as seals need them, up to
/// [`SEAL_THREADS_MAX`], and kept for the writer's life, taking seals from
/// one queue in the order handed over. Kept, not one thread per seal: no
/// thread is created (clone, stack, guard page) per partition, and each
/// keeps its allocator arena (a seal's output and carry buffers are
/// allocated and freed on it), where short-lived threads, several alive at
/// once while older ones wait for their fsyncs, took cold or trimmed arenas
/// and faulted their pages in again (bigstore 4 M: 17 k → 38 k minor faults
/// with four threads, 55 k with eight; round15-wsys15.md). No seal
/// waits for a later one (a chained seal waits for the carry of the one
/// handed over before it, which a thread took first), so any number of
/// threads ≥ 1 finishes every seal.
///
/// A seal thread does not wait for the disk: it hands its encoded `.part`
/// to the publish threads (`natrec-publish`, one started with each seal
/// thread) and takes the next seal, so a seal thread is never held in an
/// fsync while a seal queued behind it (its scratch lent) waits for a
/// thread: the wait that left a core idle in the store writer (bigstore 4 M:
/// seal threads ~2.3 s in the publish's and the directory's fsyncs, the
/// writer 0.84 s waiting for scratch; docs/bench/round17-end17.md). A
/// publish thread publishes what is queued when it looks, together
/// ([`publish_sealed_all`]: every file written and its writeback started,
/// then each fsynced and renamed, then one directory fsync), then sends each
/// seal's result; several, so one waiting for the disk does not hold the
/// others' files back. They allocate nothing large (no arena of their own
/// to fault in). If none can be started, a seal thread publishes its own
/// `.part`.
struct SealWorkers {
    tx: Option<mpsc::Sender<SealTask>>,
    rx: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<SealTask>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The publish threads' queue (unbounded as a channel; it holds at most
    /// [`PUBLISHES_IN_FLIGHT_MAX`] `.part`s, the seals unfinished), given to
    /// a seal thread only if a publish thread runs; taken at drop.
    publish_tx: Option<mpsc::Sender<ToPublish>>,
    publish_rx: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<ToPublish>>>,
    publishers: Vec<std::thread::JoinHandle<()>>,
    /// Tests: no publish thread starts, as if none could.
    #[cfg(test)]
    publishers_fail: bool,
}

impl SealWorkers {
    fn new() -> SealWorkers {
        let (tx, rx) = mpsc::channel();
        let (publish_tx, publish_rx) = mpsc::channel();
        SealWorkers {
            tx: Some(tx),
            rx: std::sync::Arc::new(std::sync::Mutex::new(rx)),
            threads: Vec::new(),
            publish_tx: Some(publish_tx),
            publish_rx: std::sync::Arc::new(std::sync::Mutex::new(publish_rx)),
            publishers: Vec::new(),
            #[cfg(test)]
            publishers_fail: false,
        }
    }

    /// Starts one more publish thread (as many as seal threads at most).
    /// While none runs, the seal threads get no queue and publish their
    /// own `.part`s.
    fn start_publisher(&mut self) {
        #[cfg(test)]
        if self.publishers_fail {
            return;
        }
        let rx = std::sync::Arc::clone(&self.publish_rx);
        if let Ok(h) = std::thread::Builder::new()
            .name("natrec-publish".into())
            .spawn(move || publish_thread(&rx))
        {
            self.publishers.push(h);
        }
    }

    /// Queues `task`, first starting a thread if fewer than `busy` (the
    /// seals not finished, this one included) run. A thread that cannot be
    /// started is an error only when none runs (the task is given back).
    fn run(&mut self, task: SealTask, busy: usize) -> Result<(), (Box<SealTask>, std::io::Error)> {
        if self.threads.len() < busy.min(SEAL_THREADS_MAX) {
            self.start_publisher();
            let rx = std::sync::Arc::clone(&self.rx);
            let publish = self
                .publish_tx
                .clone()
                .filter(|_| !self.publishers.is_empty());
            match std::thread::Builder::new()
                .name("natrec-seal".into())
                .spawn(move || seal_thread(&rx, publish.as_ref()))
            {
                Ok(h) => self.threads.push(h),
                Err(e) if self.threads.is_empty() => return Err((Box::new(task), e)),
                Err(_) => {}
            }
        }
        let tx = self.tx.as_ref().expect("the sender lives until drop");
        // Fails only if every thread is gone (panicked): the task comes back.
        tx.send(task).map_err(|e| {
            (
                Box::new(e.0),
                std::io::Error::other("every seal thread stopped"),
            )
        })
    }
}

impl Drop for SealWorkers {
    /// Closes the queue and waits for the threads (idle by now: the writer
    /// waited for every seal it handed over), the publish thread last (its
    /// queue closes when the seal threads, which hold its senders, are gone).
    fn drop(&mut self) {
        drop(self.tx.take());
        drop(self.publish_tx.take());
        let threads = std::mem::take(&mut self.threads);
        let publishers = std::mem::take(&mut self.publishers);
        for h in threads.into_iter().chain(publishers) {
            if let Err(panic) = h.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

/// A seal thread: seals what it is handed until the queue closes, handing
/// each encoded `.part` to the publish thread (`publish`), or publishing it
/// itself if there is none or it stopped.
fn seal_thread(
    rx: &std::sync::Mutex<mpsc::Receiver<SealTask>>,
    publish: Option<&mpsc::Sender<ToPublish>>,
) {
    loop {
        // One idle thread waits on the queue at a time, the others on the lock.
        let task = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(SealTask { mut log, job, done }) = task else {
            return;
        };
        let encoded = match seal_log(&mut log, job) {
            Ok(e) => e,
            Err(e) => {
                // The writer may be gone (dropped while panicking): nobody
                // to tell.
                let _ = done.send(SealDone {
                    log,
                    result: Err(e),
                });
                continue;
            }
        };
        let to = ToPublish { log, encoded, done };
        let to = match publish {
            Some(p) => match p.send(to) {
                Ok(()) => continue,
                Err(mpsc::SendError(to)) => to,
            },
            None => to,
        };
        publish_batch(vec![to]);
    }
}

/// A seal encoded, for the publish thread: its log (given back with the
/// result), what it made, and where to send the result.
struct ToPublish {
    log: ActiveLog,
    encoded: Encoded,
    done: mpsc::SyncSender<SealDone>,
}

/// What the seal thread made for its `.part`, and what it did before.
struct Encoded {
    part: PathBuf,
    parts: [Vec<u8>; 3],
    records_b: Vec<Record>,
    carried_out: u64,
    carried_in: u64,
    open_at_seal_all_in: u64,
}

/// A publish thread (`natrec-publish`): publishes what the seal threads
/// queued, everything queued when it looks at once, until the queue closes.
/// At most [`PUBLISHES_IN_FLIGHT_MAX`] seals are unfinished, so that many at
/// most wait here (each only its encoded `.part`, ~20 bytes a mapping).
fn publish_thread(rx: &std::sync::Mutex<mpsc::Receiver<ToPublish>>) {
    loop {
        // One idle thread waits on the queue at a time, the others on the lock.
        let batch = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            batch
        };
        publish_batch(batch);
    }
}

/// Publishes `batch` ([`publish_sealed_all`]) and sends each seal's result.
fn publish_batch(batch: Vec<ToPublish>) {
    let results = {
        let files: Vec<(&Path, &[Vec<u8>; 3])> = batch
            .iter()
            .map(|t| (t.encoded.part.as_path(), &t.encoded.parts))
            .collect();
        publish_sealed_all(&files)
    };
    for (t, r) in batch.into_iter().zip(results) {
        let ToPublish { log, encoded, done } = t;
        let Encoded {
            parts,
            records_b,
            carried_out,
            carried_in,
            open_at_seal_all_in,
            ..
        } = encoded;
        // The `.part`'s bytes are on disk: freed before the writer hears.
        drop(parts);
        let result = r.map(|bytes| Sealed {
            records_b,
            bytes,
            carried_out,
            carried_in,
            open_at_seal_all_in,
        });
        // The writer may be gone (dropped while panicking): nobody to tell.
        let _ = done.send(SealDone { log, result });
    }
}

/// Where a sealing partition's carried copies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CarryTo {
    /// Not known yet: the carry is the writer's [`Writer::pending`].
    Pending,
    /// Handed to the seal thread of the next partition (this segment), which
    /// appends them to its log before reducing it.
    Chained((i64, u32)),
    /// Appended by the writer to this log (`None`: nothing was held).
    Appended(Option<(i64, u32)>),
    /// Appending them failed: the log stays for the next writer.
    Failed,
}

/// What a seal thread sends once its partition is reduced: the mappings
/// still held at the partition's end, encoded with [`SF_CARRIED`] for the
/// next partition's log.
struct Carry {
    records: Vec<Record>,
    /// Mappings still `Open` that `seal_all` did not carry (past its horizon).
    open_at_seal_all: u64,
}

/// The carry of the newest seal thread, not yet appended anywhere: into
/// partition `into` (its end), from the sealing partition `from`.
struct PendingCarry {
    from: (i64, u32),
    into: i64,
    rx: mpsc::Receiver<Carry>,
}

/// Everything a seal thread gives back: the log (always: on a failure the
/// writer syncs it and leaves it for the next writer), the scratch buffers,
/// and what it did.
struct SealDone {
    log: ActiveLog,
    result: Result<Sealed, StoreError>,
}

struct Sealed {
    /// The second half's reduced records of a split seal (not reused):
    /// freed by the writer after it queued the log's removal, so the
    /// removal does not wait for the unmapping.
    records_b: Vec<Record>,
    /// Bytes of the `.part`.
    bytes: u64,
    /// Records of this partition carried out (sent on its carry channel).
    carried_out: u64,
    /// Records of the previous partition's carry appended to this log by
    /// the thread (chained), and that carry's `open_at_seal_all`.
    carried_in: u64,
    open_at_seal_all_in: u64,
}

/// What the seal thread needs besides the log.
struct SealJob {
    start: i64,
    segment: u32,
    span_ns: i64,
    hold: HoldTimes,
    carry_open: bool,
    part: PathBuf,
    /// The scratch set lent (index and reduced-record buffer), given back
    /// to the writer when dropped.
    scratch: ScratchBack,
    /// Sort and reduce a large partition on two threads.
    two_threads: bool,
    /// The second half's kept records of a split seal (a buffer
    /// [`Writer::warm_seal_scratch`] made, or empty).
    records_b: Vec<Record>,
    /// The previous partition's carry, if this partition is the one it goes
    /// into and it was not appended yet (chained seals).
    carry_in: Option<mpsc::Receiver<Carry>>,
    carry_out: mpsc::SyncSender<Carry>,
}

/// A seal's scratch set: the reduced-record buffer and the index (with the
/// encoder's scratch).
#[derive(Default)]
struct Scratch {
    records: Vec<Record>,
    index: SealIndex,
}

/// A seal thread's scratch, sent back to the writer exactly once: when
/// dropped, which the thread does as soon as its partition is encoded, or
/// on any error or panic before that (unwinding drops it), so every set
/// lent comes back and the writer's wait for one ([`Writer::scratch_lent`])
/// always ends.
struct ScratchBack {
    /// Always `Some` until dropped (an `Option` only so that the drop can
    /// move it out without building an empty set: a default index makes
    /// the encoder's ~120 KB scratch).
    scratch: Option<Scratch>,
    tx: mpsc::Sender<Scratch>,
}

impl Drop for ScratchBack {
    fn drop(&mut self) {
        // The writer keeps a receiver for as long as it has seal threads;
        // gone (dropped): nothing to give back to.
        if let Some(s) = self.scratch.take() {
            let _ = self.tx.send(s);
        }
    }
}

/// The log of a published segment, kept until its carried copies are
/// durable.
struct SealedLog {
    path: PathBuf,
    /// The segment (start, number) the copies were carried into; `None`
    /// for a log recovery found next to its `.part` (deleted by a flush).
    carried_into: Option<(i64, u32)>,
    /// The log's generation (0: a version 1 or 2 log, or one recovery found
    /// beside its `.part`: removed, not used again).
    generation: u32,
    /// The map its seal read it through ([`ActiveLog::take_map`]): goes with
    /// the file if it is used again ([`Chore::Recycle`]).
    map: Option<memmap2::Mmap>,
}

/// Appends mappings to a store. Only one exists per store (`store.lock`).
/// Dropping it flushes; call [`Writer::seal_all`] at the end of a replay.
pub struct Writer {
    parts: PathBuf,
    cfg: StoreConfig,
    span_ns: i64,
    grace_ns: i64,
    _lock: File,
    active: BTreeMap<i64, ActiveLog>,
    /// Highest sealed segment number per partition start.
    sealed_max: BTreeMap<i64, u32>,
    last_flush: Instant,
    /// Logs of sealed (published) segments whose held-over mappings were
    /// carried into a following log that is not synced yet: deleted by the
    /// next flush, or when the segment they were carried into is published
    /// (docs/FORMAT.md, "Sealing"); at most [`SEALED_LOGS_PENDING_MAX`].
    sealed_logs: Vec<SealedLog>,
    /// A log was created since the directory was last fsynced: the next
    /// flush fsyncs `partitions/` after syncing the logs.
    dir_dirty: bool,
    /// Seal scratch kept between seals (at most [`SEAL_SCRATCH_KEEP_RECORDS`]
    /// records' worth each): sort indexes not in use by a seal thread (at
    /// most [`SEAL_SCRATCH_SPARES_MAX`]).
    spare_index: Vec<SealIndex>,
    /// Reduced-record buffers not in use by a seal thread (at most
    /// [`SEAL_SCRATCH_SPARES_MAX`]).
    spare_out: Vec<Vec<Record>>,
    /// The next split seal's second reduced-record buffer, when
    /// [`Writer::warm_seal_scratch`] made one (empty otherwise).
    spare_out_b: Vec<Record>,
    /// Scratch sets given back by seal threads ([`ScratchBack`]), taken
    /// into `spare_index` and `spare_out` when the writer next seals.
    scratch_rx: mpsc::Receiver<Scratch>,
    scratch_tx: mpsc::Sender<Scratch>,
    /// Scratch sets lent to seal threads and not given back yet (at most
    /// [`SEAL_SCRATCH_LENT_MAX`]).
    scratch_lent: usize,
    /// The seal threads.
    seal_workers: SealWorkers,
    /// Where the last appended record went, reused while records stay in
    /// its partition; forgotten whenever `active` or `sealed_max` changes.
    route: Option<Route>,
    /// The sealed partitions being published on seal threads, oldest first
    /// (at most [`PUBLISHES_IN_FLIGHT_MAX`]), and their logs, which stay
    /// until the `.part` is published and the carried copies are durable
    /// (see `sealed_logs`).
    publishing: std::collections::VecDeque<Publishing>,
    /// [`PUBLISH_RECORDS_IN_FLIGHT_MAX`] (tests set a lower one).
    publish_records_max: u64,
    /// The carry of the newest seal thread while it is appended nowhere yet:
    /// appended by the writer when it needs it (before sealing or routing
    /// anything it could change, before a flush), or handed to the next
    /// partition's seal thread when that partition is sealed first.
    pending: Option<PendingCarry>,
    /// Set when a publish failed: the writer then refuses further work.
    failed: Option<(PathBuf, String)>,
    /// Set when a sync (or other work of the background thread) failed:
    /// the writer then refuses further work ([`StoreError::SyncFailed`]).
    sync_failed: Option<String>,
    /// The background thread: the periodic `fdatasync` (`advance`'s flush),
    /// removals of sealed logs.
    chores: Chores,
    /// The number of the last sync handed to `chores` (0: none): at most one
    /// is in flight.
    sync_chore: u64,
    /// Spare log files asked of `chores` so far (also their temp names'
    /// numbers).
    spares_asked: u64,
    /// Temp names given to sealed logs kept as spares (`spare-rNNNNNN`).
    spares_asked_recycled: u64,
    /// Write-behind ([`Writer::set_write_behind`]): an append leaves its
    /// records in the logs' buffers; they are written out when a buffer
    /// holds `LOG_BUFFER_RECORDS_MAX` records, before a log is synced,
    /// sealed or read, and on [`Writer::write_out`], `flush` and drop.
    write_behind: bool,
    /// Sealed logs' buffers, for the next logs created (at most
    /// [`SPARE_LOG_BUFFERS_MAX`]): with write-behind a log's buffer grows
    /// to `LOG_BUFFER_RECORDS_MAX` records, which is then not allocated,
    /// zeroed and grown again per partition.
    spare_log_buffers: Vec<Vec<u8>>,
    stats: WriterStats,
    gaps: GapLog,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("parts", &self.parts)
            .field("active", &self.active.keys().collect::<Vec<_>>())
            .field("stats", &self.stats)
            .finish()
    }
}

/// One entry of the seal's wide index, for partitions whose compact key
/// ([`SealIndex`]) does not fit 128 bits: 32 bytes compared as two `u128`s,
/// the record's sort prefix (public ip as a big-endian `u128`; then public
/// port and `first_ns` with its sign bit flipped so it orders as unsigned)
/// and its slot in the log (lowest, so equal prefixes stay in log order).
type SealEntry = (u128, u128);

/// Low bits of [`SealEntry`]'s second word that hold the slot.
const SEAL_SLOT_BITS: u32 = 32;

/// Sealed logs' append buffers the writer keeps for new logs (each at most
/// `LOG_BUFFER_RECORDS_MAX` records, 384 KiB: 6 MiB at most).
const SPARE_LOG_BUFFERS_MAX: usize = 16;

/// Records from which the last seals of a replay ([`Writer::seal_all`],
/// when nothing else runs) sort and reduce a partition on two threads.
const SEAL_SPLIT_RECORDS_MIN: usize = 1 << 16;

/// Bits of the prefix's top digit whose bucket edges the two halves of a
/// split seal are cut at.
const SPLIT_DIGIT_BITS: u32 = 11;

/// Records a split seal samples (about) to choose its cut.
const SPLIT_SAMPLE: usize = 1 << 14;

/// Below this many records the compact index is sorted by comparison
/// (the radix sort's counters cost more than the sort there).
const RADIX_RECORDS_MIN: usize = 1024;

/// The seal's scratch, kept by the writer between seals: the compact index
/// and the radix sort's second buffer (16 bytes per record each), or the
/// wide index (32 bytes per record) when the compact key does not fit.
#[derive(Default)]
pub(crate) struct SealIndex {
    keys: Vec<u128>,
    tmp: Vec<u128>,
    wide: Vec<SealEntry>,
    /// The v2 block encoder's scratch (~120 KB, whatever the partition).
    encode: crate::sealed_v2::EncodeScratch,
}

impl SealIndex {
    /// Records' worth of memory held (the largest buffer).
    fn capacity(&self) -> usize {
        self.keys
            .capacity()
            .max(self.tmp.capacity())
            .max(self.wide.capacity() * 2)
    }
}

/// How [`reduce_with`] orders the log's slots (tests force each one; all
/// give the same order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexPath {
    /// Compact keys, radix-sorted from `RADIX_RECORDS_MIN` records on.
    Auto,
    /// As `Auto`, and from [`SEAL_SPLIT_RECORDS_MIN`] records on (tests:
    /// from 2) sorted and reduced in two halves on two threads.
    Split,
    /// Compact keys, radix-sorted whatever the count (tests).
    #[cfg(test)]
    Radix,
    /// The wide index (tests; otherwise only when the compact key is too wide).
    #[cfg(test)]
    Wide,
}

/// Bits needed for values `0..=v`.
fn bits_of(v: u128) -> u32 {
    128 - v.leading_zeros()
}

/// The natural-key fields of a record outside its sealed sort prefix:
/// proto, internal and remote endpoints, address-family bits.
fn key_rest(r: &Record) -> (u8, [u8; 16], u16, [u8; 16], u16, u8) {
    (
        r.proto,
        r.internal_ip,
        r.internal_port.get(),
        r.remote_ip,
        r.remote_port.get(),
        r.store_flags & (SF_PUBLIC_V4 | SF_INTERNAL_V4 | SF_REMOTE_V4),
    )
}

/// Whether `a` and `b` have the same [`key_rest`], compared by words of
/// their bytes (~15 instructions, where the tuples' comparison was ~35):
/// the internal and remote addresses are bytes 16..48, the internal and
/// remote ports and the protocol bytes 74..79, the store flags byte 81 (of
/// which the address-family bits, the low three).
#[inline(always)]
fn same_key_rest(a: &Record, b: &Record) -> bool {
    const _: () = assert!(
        std::mem::offset_of!(Record, internal_ip) == 16
            && std::mem::offset_of!(Record, remote_ip) == 32
            && std::mem::offset_of!(Record, internal_port) == 74
            && std::mem::offset_of!(Record, remote_port) == 76
            && std::mem::offset_of!(Record, proto) == 78
            && std::mem::offset_of!(Record, store_flags) == 81
            && SF_PUBLIC_V4 | SF_INTERNAL_V4 | SF_REMOTE_V4 == 7
    );
    use zerocopy::IntoBytes;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let word = |r: &[u8], at: usize| u64::from_le_bytes(r[at..at + 8].try_into().expect("8 bytes"));
    // Bytes 74..82 (little-endian): the ports and protocol in the low five,
    // the end code and flags (not compared) next, the store flags on top.
    const REST_74: u64 = 0x0700_00ff_ffff_ffff;
    let diff = (word(x, 16) ^ word(y, 16))
        | (word(x, 24) ^ word(y, 24))
        | (word(x, 32) ^ word(y, 32))
        | (word(x, 40) ^ word(y, 40))
        | (word(x, 74) ^ word(y, 74)) & REST_74;
    diff == 0
}

/// `first_ns` with its sign bit flipped: orders as unsigned as the `i64` does.
fn first_key(r: &Record) -> u64 {
    (r.first_ns.get() as u64) ^ (1 << 63)
}

/// Rank of a state of a mapping: an ended state beats `Open`, then a larger
/// `last_ns` (the order of [`supersedes`], on the record's bytes).
fn rank(r: &Record) -> (bool, i64) {
    (r.end != EndReason::Open as u8, r.last_ns.get())
}

/// Reduces records of one partition (validated, in log order) by natural
/// key (an ended state beats `Open`, then a larger `last_ns`; on a tie the
/// non-carried copy wins, else the earlier one) and sorts them for sealing.
/// The kept record is marked [`SF_LATE`] if any copy was late: the mapping
/// began in an earlier, sealed partition that does not have it, so lookups
/// there must still find it here.
///
/// Records of one mapping share the sealed sort prefix (public ip, port,
/// `first_ns`), so sorting the log's slots by (prefix, slot) puts them next
/// to each other, in log order. The index is compact when it can be: each
/// prefix field less its minimum in the partition, only as many bits as its
/// range needs, and the slot, packed into one `u128` (a public pool's
/// addresses take a few bits, an hour of `first_ns` 42) and radix-sorted
/// over the prefix bits only (the slots are already in order and the sort is
/// stable); otherwise a 32-byte entry sorted by comparison. Each run of
/// index entries of one prefix is then reduced in one sequential pass over
/// the index, reading the records where they lie; a run holding several
/// mappings (same public endpoint and first packet, different internal or
/// remote endpoint) is split by the full key. Only the kept records are
/// copied (into `out`). Memory: 32 bytes per record of index and 96 per kept
/// record.
///
/// `out` is cleared first; `index` is scratch: the writer keeps both between
/// seals, so sealing an hour does not allocate (and fault in) fresh
/// megabytes each time.
pub(crate) fn reduce_into(
    records: &[Record],
    ranges: Option<Ranges>,
    index: &mut SealIndex,
    out: &mut Vec<Record>,
    out_b: &mut Vec<Record>,
    two_threads: bool,
    scan: &mut HeldScan,
) {
    let path = if two_threads {
        IndexPath::Split
    } else {
        IndexPath::Auto
    };
    reduce_with(records, ranges, index, out, out_b, path, scan);
}

fn reduce_with(
    records: &[Record],
    ranges: Option<Ranges>,
    index: &mut SealIndex,
    out: &mut Vec<Record>,
    out_b: &mut Vec<Record>,
    path: IndexPath,
    scan: &mut HeldScan,
) {
    assert!(
        records.len() as u64 <= u64::from(u32::MAX),
        "a partition holds at most PARTITION_RECORDS_MAX records"
    );
    out.clear();
    out_b.clear();
    let n = records.len();
    if n == 0 {
        return;
    }
    #[cfg(test)]
    let split_min = if path == IndexPath::Split {
        2
    } else {
        SEAL_SPLIT_RECORDS_MIN
    };
    #[cfg(not(test))]
    let split_min = SEAL_SPLIT_RECORDS_MIN;
    let split = path == IndexPath::Split && n >= split_min;
    // Ranges of the prefix fields: as given (folded by the read-back's CRC
    // check, `seal_log`), or computed (two halves on two threads when split).
    if let Some(g) = &ranges {
        debug_assert_eq!(*g, Ranges::of(records), "ranges given are the records'");
    }
    let Ranges {
        ip_min,
        ip_max,
        port_min,
        port_max,
        first_min,
        first_max,
        nets,
    } = if let Some(g) = ranges {
        g
    } else if split {
        let (x, y) = records.split_at(n / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| Ranges::of(y));
            Ranges::of(x).merge(&other.join().expect("ranges do not panic"))
        })
    } else {
        Ranges::of(records)
    };
    let ip_bits = bits_of(ip_max - ip_min);
    // The address field: the address less the least, or, where the
    // addresses share their high word and lie in a few nets (e.g. two /24
    // pools far apart: 27 bits less the least), the rank of the address's
    // net among them and its last byte (9 bits): the same order and
    // equality, and the radix sort's top digit splits the keys where it
    // split them in two (round 14, docs/bench/round14-seal14.md).
    // (The nets were folded with the ranges: `Ranges::see`.)
    let nets = nets.filter(|x| {
        ip_min >> 64 == ip_max >> 64 && ip_bits > NET_SHIFT + 1 && ranked_bits(x) < ip_bits
    });
    let ip_bits = nets.as_ref().map_or(ip_bits, ranked_bits);
    let port_bits = bits_of(u128::from(port_max - port_min));
    let first_bits = bits_of(u128::from(first_max - first_min));
    let slot_bits = bits_of(n as u128 - 1);
    let prefix_bits = ip_bits + port_bits + first_bits;
    #[cfg(test)]
    let wide = path == IndexPath::Wide || prefix_bits + slot_bits > 128;
    #[cfg(not(test))]
    let wide = prefix_bits + slot_bits > 128;
    if wide {
        let w = &mut index.wide;
        w.clear();
        w.extend(records.iter().enumerate().map(|(i, r)| {
            (
                u128::from_be_bytes(r.public_ip),
                u128::from(r.public_port.get()) << 96
                    | u128::from(first_key(r)) << SEAL_SLOT_BITS
                    | i as u128,
            )
        }));
        w.sort_unstable();
        // Same prefix: same address word, same port and first time.
        reduce_slots(
            records,
            w,
            |e| (e.0, e.1 | ((1 << SEAL_SLOT_BITS) - 1)),
            |e| e.1 as u32 as usize,
            out,
            scan,
        );
        return;
    }
    // Compact: [ip - min | port - min | first - min | slot], each field in
    // its own bits, so the integer order is the (prefix, slot) order.
    let (port_shift, first_shift) = (first_bits + slot_bits, slot_bits);
    let ip_shift = port_shift + port_bits;
    // The usual layout: [ip | port] and [first | slot] each fit a `u64`,
    // so each half is built with 64-bit arithmetic and joined by one
    // 128-bit shift (the same key as the general form below).
    let halves = ip_bits + port_bits <= 64 && first_bits + slot_bits <= 64;
    let km = KeyMaker {
        halves,
        ranked: nets.is_some(),
        nets: nets.map_or([u64::MAX; NETS_MAX], |x| x.nets),
        ip_min,
        port_min,
        first_min,
        port_bits,
        ip_shift,
        port_shift,
        first_shift,
    };
    let key = |i: usize, r: &Record| km.key(i, r);
    // The prefix's top digit, by which a split seal cuts the keys in two.
    let top_bits = prefix_bits.min(SPLIT_DIGIT_BITS);
    let top_shift = slot_bits + prefix_bits - top_bits;
    let keys = &mut index.keys;
    keys.clear();
    let slot_mask = (1u128 << slot_bits) - 1;
    if split && prefix_bits > 0 {
        // Two sides at a boundary of the prefix's top digit: every record
        // of one prefix (one mapping's states) on one side, and the first
        // side's prefixes all before the second's. The edge (the digit
        // value starting the second side) is the bucket edge nearest half
        // of a sample of the records; any edge gives the same bytes.
        let step = (n / SPLIT_SAMPLE).max(1);
        let mut hist = vec![0usize; 1 << top_bits];
        for (i, r) in records.iter().enumerate().step_by(step) {
            hist[(key(i, r) >> top_shift) as usize] += 1;
        }
        let sampled = n.div_ceil(step);
        let (mut below, mut edge, mut s_a) = (0usize, 0usize, 0usize);
        for (d, &c) in hist.iter().enumerate() {
            if below.abs_diff(sampled / 2) < s_a.abs_diff(sampled / 2) {
                (edge, s_a) = (d, below);
            }
            below += c;
        }
        // Each half of the log's keys built on its own thread straight
        // into its side: the first half's first side from the front of
        // its part and second side from the back, the second half's the
        // other way round, so the two halves' second sides meet in the
        // middle: [a of x | b of x | b of y | a of y]. Keys are distinct
        // (the slot is in them), so the order within a side does not
        // matter to the sort.
        // Every slot is written by `fill` below: contents any.
        sized(keys, n);
        let (kx, ky) = keys.split_at_mut(n / 2);
        let (x, y) = records.split_at(n / 2);
        let fill = |ks: &mut [u128], rs: &[Record], base: usize, a_first: bool| -> usize {
            let edge = edge as u128;
            let (mut front, mut back) = (0, ks.len());
            for (j, r) in rs.iter().enumerate() {
                let k = key(base + j, r);
                if (k >> top_shift < edge) == a_first {
                    ks[front] = k;
                    front += 1;
                } else {
                    back -= 1;
                    ks[back] = k;
                }
            }
            if a_first {
                front
            } else {
                ks.len() - back
            }
        };
        let (a_x, a_y) = std::thread::scope(|scope| {
            let other = scope.spawn(|| fill(ky, y, n / 2, false));
            let a_x = fill(kx, x, 0, true);
            (a_x, other.join().expect("the seal's keys do not panic"))
        });
        let n_a = a_x + a_y;
        if n_a > 0 && n_a < n {
            // The second half's first-side keys (the back `a_y`) swapped
            // with the second-side keys just after the first half's, so
            // the first side is `..n_a`: `m` keys each way.
            let m = a_y.min(n - n_a);
            let (lo, hi) = keys.split_at_mut(n - m);
            lo[a_x..a_x + m].swap_with_slice(hi);
            let tmp = &mut index.tmp;
            sized(tmp, n);
            let (ta, tb) = tmp.split_at_mut(n_a);
            let (ka, kb) = keys.split_at_mut(n_a);
            // The second side's kept records stay in `out_b`: the two are
            // encoded as one sequence without being copied together.
            let mut scan_b = scan.fresh();
            std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    sort_reduce(records, kb, tb, slot_bits, prefix_bits, out_b, &mut scan_b);
                });
                sort_reduce(records, ka, ta, slot_bits, prefix_bits, out, scan);
                other.join().expect("the seal's reduce does not panic");
            });
            scan.append(scan_b);
            return;
        }
        // One side empty (the sample missed the keys of all but one top
        // digit): sorted on this thread. The keys were built from both
        // ends, not in slot order, so they are built again (the sort below
        // is promised slot order in the low bits).
        keys.clear();
    }
    let radix = n >= RADIX_RECORDS_MIN;
    #[cfg(test)]
    let radix = radix || path != IndexPath::Auto;
    // The prefix's ranges are exact, so the keys' highest differing bit is
    // the prefix's top one: the sort's top digit is known before the keys
    // are made, and counted as they are (no counting pass of its own).
    let top = radix
        .then(|| crate::radix::msd_top_digit(n, slot_bits + prefix_bits, slot_bits))
        .flatten();
    if let Some((shift, width)) = top {
        // The counters' kind by the digit's width (a narrow digit's
        // counters are a quarter of the wide ones to zero).
        let sorted = if width <= crate::radix::TOP_NARROW_BITS_MAX {
            keys_counted_sorted::<{ crate::radix::TOP_COUNTS_NARROW }>
        } else {
            keys_counted_sorted::<{ crate::radix::TOP_COUNTS_WIDE }>
        };
        sorted(records, &km, keys, &mut index.tmp, shift, width, slot_bits);
    } else if radix {
        keys.extend(records.iter().enumerate().map(|(i, r)| key(i, r)));
        let tmp = &mut index.tmp;
        sized(tmp, n);
        // Built in slot order: the low `slot_bits` ascend already.
        crate::radix::sort_msd(keys, tmp, slot_bits + prefix_bits, slot_bits);
        std::mem::swap(keys, tmp);
    } else {
        keys.extend(records.iter().enumerate().map(|(i, r)| key(i, r)));
        keys.sort_unstable();
    }
    reduce_slots(
        records,
        &keys[..n],
        |k| k | slot_mask,
        |k| (k & slot_mask) as usize,
        out,
        scan,
    );
}

/// Bits of a public address's last byte: the address less them is its
/// *net* (its /24 for IPv4).
const NET_SHIFT: u32 = 8;

/// Distinct nets from which the index's address field is the address less
/// its minimum, not a net's rank and a last byte ([`Ranges::see`]).
const NETS_MAX: usize = 4;

/// The distinct nets (`low word >> NET_SHIFT`) of the records' public
/// addresses, ascending, the unused entries `u64::MAX` (above any net,
/// which is below 2^56).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Nets {
    nets: [u64; NETS_MAX],
    len: usize,
}

impl Nets {
    /// No net.
    const NONE: Nets = Nets {
        nets: [u64::MAX; NETS_MAX],
        len: 0,
    };

    /// Adds `net` (below 2^56) to the set; `false` (the set unchanged)
    /// where it is not in it and the set is full.
    #[inline(always)]
    fn add(&mut self, net: u64) -> bool {
        if self.nets.contains(&net) {
            return true;
        }
        if self.len == NETS_MAX {
            return false;
        }
        let i = self.nets[..self.len].partition_point(|&y| y < net);
        self.nets.copy_within(i..self.len, i + 1);
        self.nets[i] = net;
        self.len += 1;
        true
    }
}

/// The distinct nets of the records' public addresses' low words, or
/// `None` where there are more than [`NETS_MAX`] (one pass over the
/// records, stopped there; an address looked up only where its net is not
/// the last record's): the model of the nets [`Ranges::see`] folds.
#[cfg(test)]
fn nets_of(records: &[Record]) -> Option<Nets> {
    let mut x = Nets {
        nets: [u64::MAX; NETS_MAX],
        len: 0,
    };
    // No address's net (below 2^56).
    let mut last = u64::MAX;
    for r in records {
        let low = u64::from_be_bytes(r.public_ip[8..].try_into().expect("8 bytes"));
        let net = low >> NET_SHIFT;
        if net == last {
            continue;
        }
        last = net;
        if x.nets.contains(&net) {
            continue;
        }
        if x.len == NETS_MAX {
            return None;
        }
        let i = x.nets[..x.len].partition_point(|&y| y < net);
        x.nets.copy_within(i..x.len, i + 1);
        x.nets[i] = net;
        x.len += 1;
    }
    Some(x)
}

/// Bits of the ranked address field of addresses in `x`'s nets: the
/// rank's and the last byte's.
fn ranked_bits(x: &Nets) -> u32 {
    bits_of(x.len.saturating_sub(1) as u128) + NET_SHIFT
}

/// The ranked address field of an address whose low word is `low`, its
/// net one of `nets` (ascending, the unused entries above any net): the
/// net's rank, then the last byte.
#[inline(always)]
fn rank_field(nets: &[u64; NETS_MAX], low: u64) -> u64 {
    let net = low >> NET_SHIFT;
    let rank: u64 = nets[1..].iter().map(|&x| u64::from(net >= x)).sum();
    rank << NET_SHIFT | low & ((1 << NET_SHIFT) - 1)
}

/// [`reduce_with`]'s compact key of a record: its fields' layout (a
/// method, not a closure, so that it can be inlined always: as a closure
/// with the ranked field it was called, ~20 instructions a record more).
struct KeyMaker {
    halves: bool,
    /// The address field is [`rank_field`]'s, of `nets`.
    ranked: bool,
    nets: [u64; NETS_MAX],
    ip_min: u128,
    port_min: u16,
    first_min: u64,
    port_bits: u32,
    ip_shift: u32,
    port_shift: u32,
    first_shift: u32,
}

impl KeyMaker {
    #[inline(always)]
    fn key(&self, i: usize, r: &Record) -> u128 {
        let low = u64::from_be_bytes(r.public_ip[8..].try_into().expect("8 bytes"));
        if self.halves {
            // `ip - ip_min` is below 2^64: its low word's difference.
            let ip = if self.ranked {
                rank_field(&self.nets, low)
            } else {
                low.wrapping_sub(self.ip_min as u64)
            };
            let hi = ip << self.port_bits | u64::from(r.public_port.get() - self.port_min);
            let lo = (first_key(r) - self.first_min) << self.first_shift | i as u64;
            return u128::from(hi) << self.port_shift | u128::from(lo);
        }
        let ip = if self.ranked {
            u128::from(rank_field(&self.nets, low))
        } else {
            u128::from_be_bytes(r.public_ip) - self.ip_min
        };
        // A shift by 128 (field of 0 bits at the top) would overflow: such a
        // field is 0 anyway.
        let ip = ip.checked_shl(self.ip_shift).unwrap_or(0);
        ip | u128::from(r.public_port.get() - self.port_min) << self.port_shift
            | u128::from(first_key(r) - self.first_min) << self.first_shift
            | i as u128
    }
}

crate::simd::v3! {
    /// [`keys_counted_sorted_body`], for the baseline and for x86-64-v3.
    fn keys_counted_sorted[const N: usize](
        records: &[Record],
        km: &KeyMaker,
        keys: &mut Vec<u128>,
        tmp: &mut Vec<u128>,
        shift: u32,
        width: u32,
        slot_bits: u32,
    )
    => keys_counted_sorted_body[N];
}

/// The compact keys of `records` made into `keys` (empty) with their top
/// digit (`shift`, `width`: [`crate::radix::msd_top_digit`]'s) counted in
/// `N` counters as they are made, then radix-sorted (`tmp` the second
/// buffer; the sorted keys end in `keys`).
#[inline(always)]
fn keys_counted_sorted_body<const N: usize>(
    records: &[Record],
    km: &KeyMaker,
    keys: &mut Vec<u128>,
    tmp: &mut Vec<u128>,
    shift: u32,
    width: u32,
    slot_bits: u32,
) {
    let mut c = crate::radix::TopCounts::<N>::new(shift, width);
    keys_counted(records, km, keys, &mut c);
    sized(tmp, records.len());
    crate::radix::sort_msd_counted(keys, tmp, &mut c, slot_bits);
    std::mem::swap(keys, tmp);
}

/// [`KeyMaker::key`] of every record of `records` (slot `i` the record's
/// place) appended to `keys`, each key's top digit counted in `c`: by
/// [`halves_keys_counted`] where the layout allows.
fn keys_counted<const N: usize>(
    records: &[Record],
    km: &KeyMaker,
    keys: &mut Vec<u128>,
    c: &mut crate::radix::TopCounts<N>,
) {
    let shift = c.shift();
    // The two halves' layout by products (below): the high half's shift
    // into the key is a multiplier below 2^64 (`port_shift` < 64).
    if km.halves && km.port_shift < 64 {
        let nets = if km.ranked {
            1 + km.nets[1..].iter().filter(|&&x| x != u64::MAX).count()
        } else {
            1
        };
        let high = shift >= km.port_shift;
        match (nets, high) {
            (1, false) => halves_keys_counted::<1, false, N>(records, km, keys, c),
            (1, true) => halves_keys_counted::<1, true, N>(records, km, keys, c),
            (2, false) => halves_keys_counted::<2, false, N>(records, km, keys, c),
            (2, true) => halves_keys_counted::<2, true, N>(records, km, keys, c),
            (3, false) => halves_keys_counted::<3, false, N>(records, km, keys, c),
            (3, true) => halves_keys_counted::<3, true, N>(records, km, keys, c),
            (_, false) => halves_keys_counted::<NETS_MAX, false, N>(records, km, keys, c),
            (_, true) => halves_keys_counted::<NETS_MAX, true, N>(records, km, keys, c),
        }
    } else {
        keys.extend(records.iter().enumerate().map(|(i, r)| {
            let k = km.key(i, r);
            c.see(k);
            k
        }));
    }
}

crate::simd::v3! {
    /// [`halves_keys_counted_body`], for the baseline and for x86-64-v3.
    fn halves_keys_counted[const NETS: usize, const HIGH_DIGIT: bool, const N: usize](
        records: &[Record],
        km: &KeyMaker,
        keys: &mut Vec<u128>,
        c: &mut crate::radix::TopCounts<N>,
    )
    => halves_keys_counted_body[NETS, HIGH_DIGIT, N];
}

/// [`KeyMaker::key`] of every record of `records` (slot `i` the record's
/// place) appended to `keys`, each key's top digit counted in `c`, for a
/// layout of two halves (`km.halves`, `km.port_shift` below 64) whose
/// address field is the address less the least or the rank of one of
/// `NETS` nets (`NETS` 1: not ranked, or ranked in one net) and its last
/// byte, by products and wrapping sums, not shifts by a count (each such
/// shift was a move into `cl` and the shift, ~48 instructions a record):
///
/// - the high half `ip << port_bits | port - port_min` is
///   `low * 2^port_bits + port - base`, the `base` folding the address
///   field's offset (`ip_min`'s low word; ranked: the net's
///   `net << 8 - rank << 8`, chosen by `NETS - 1` compares of the low word
///   with the nets' first addresses, conditional moves) and `port_min`:
///   the same value (the field's bits below `port_bits` are zero, the sum
///   exact modulo 2^64 and the result below 2^64);
/// - the low half `(first_key - first_min) << first_shift | slot` is
///   `(first_ns - (first_min ^ 2^63)) * 2^first_shift | slot` (`first_key`
///   adds 2^63 modulo 2^64);
/// - the key `hi << port_shift | lo` is one 64 × 64 → 128-bit product
///   (`hi * 2^port_shift`, whose low word's bits below `port_shift` are
///   zero) or'ed with `lo`.
///
/// The digit is taken from the high half alone where it lies there
/// (`HIGH_DIGIT`: its shift is `km.port_shift` or more).
#[inline(always)]
fn halves_keys_counted_body<const NETS: usize, const HIGH_DIGIT: bool, const N: usize>(
    records: &[Record],
    km: &KeyMaker,
    keys: &mut Vec<u128>,
    c: &mut crate::radix::TopCounts<N>,
) {
    debug_assert!(km.halves && km.port_shift < 64 && (1..=NETS_MAX).contains(&NETS));
    let port_mul = 1u64 << km.port_bits;
    let base = |ip_offset: u64| {
        ip_offset
            .wrapping_mul(port_mul)
            .wrapping_add(u64::from(km.port_min))
    };
    // Net `j`'s base and first address (`net << NET_SHIFT`: a low word at
    // or above it has a net at or above `net`).
    let mut bases = [base(km.ip_min as u64); NETS];
    let mut firsts = [0u64; NETS];
    if km.ranked {
        for j in 0..NETS {
            let first = km.nets[j] << NET_SHIFT;
            bases[j] = base(first.wrapping_sub((j as u64) << NET_SHIFT));
            firsts[j] = first;
        }
    }
    let first_min = km.first_min ^ (1 << 63);
    let first_mul = 1u64 << km.first_shift;
    let key_mul = 1u64 << km.port_shift;
    let shift = c.shift();
    debug_assert!(!HIGH_DIGIT || shift >= km.port_shift);
    let high_shift = shift.wrapping_sub(km.port_shift);
    // A `move` closure: the layout's values are its own copies (in
    // registers), not read through references a record.
    keys.extend(records.iter().enumerate().map(move |(i, r)| {
        let low = u64::from_be_bytes(r.public_ip[8..].try_into().expect("8 bytes"));
        let mut b = bases[0];
        for j in 1..NETS {
            if low >= firsts[j] {
                b = bases[j];
            }
        }
        let hi = low
            .wrapping_mul(port_mul)
            .wrapping_add(u64::from(r.public_port.get()))
            .wrapping_sub(b);
        let lo = (r.first_ns.get() as u64)
            .wrapping_sub(first_min)
            .wrapping_mul(first_mul)
            | i as u64;
        // Both factors widened here, in the loop: the compiler then knows
        // their high words are zero (one `mul`, where a `u128` multiplier
        // made outside was two and an add).
        let k = (u128::from(hi) * u128::from(key_mul)) | u128::from(lo);
        if HIGH_DIGIT {
            c.see_top(hi >> high_shift);
        } else {
            c.see(k);
        }
        k
    }));
}

/// Makes `v` `n` long, its contents any (the index keys of a split seal and
/// the sort's second buffer: every slot is written before it is read).
/// Only slots beyond its old length are zeroed; a buffer too small is
/// replaced by a new zeroed allocation (`calloc`: fresh pages are zero
/// already, so nothing is written and no page is touched here; the threads
/// that fill it fault its pages in, in parallel) instead of grown and
/// zeroed on this thread, a serial pass over 15 MB at 10 M records. A seal
/// of a partition no larger than the last, or than what
/// [`Writer::warm_seal_scratch`] made ready, writes none (the zeroing was
/// ~16 instructions a record on bigstore's seals, round 12,
/// docs/bench/round12-seal11.md).
fn sized(v: &mut Vec<u128>, n: usize) {
    if v.len() >= n {
        v.truncate(n);
    } else if v.capacity() >= n {
        v.resize(n, 0);
    } else {
        *v = vec![0; n];
    }
}

/// Bytes of scratch [`Writer::warm_seal_scratch`] writes a call (~0.2 ms of
/// page faults: it runs between appends, which must not wait long).
const WARM_STEP_BYTES: usize = 1 << 20;

/// One step of making `v` `target` long with its pages written (contents
/// any: [`sized`] then finds it long enough). Returns whether it did
/// anything.
fn warm_keys(v: &mut Vec<u128>, target: usize) -> bool {
    if v.len() >= target {
        return false;
    }
    // Grown by doubling: a large buffer's realloc moves its pages (mremap)
    // without copying or faulting them.
    v.reserve(target - v.len());
    let to = target.min(v.len() + WARM_STEP_BYTES / std::mem::size_of::<u128>());
    v.resize(to, 0);
    true
}

/// [`warm_keys`] for a reduced-record buffer: its length is what is
/// written (zeroed records; a reduce clears it before use).
fn warm_records(v: &mut Vec<Record>, target: usize) -> bool {
    if v.len() >= target {
        return false;
    }
    v.reserve(target - v.len());
    let to = target.min(v.len() + WARM_STEP_BYTES / RECORD_SIZE);
    v.resize(to, <Record as zerocopy::FromZeros>::new_zeroed());
    true
}

/// Ranges of the sealed sort prefix's fields over some records (the
/// default: over none, the identity of [`Ranges::merge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ranges {
    ip_min: u128,
    ip_max: u128,
    port_min: u16,
    port_max: u16,
    first_min: u64,
    first_max: u64,
    /// The distinct nets of the public addresses' low words, `None` past
    /// [`NETS_MAX`] (folded here, in the pass that reads the low words
    /// already: a pass of its own over the log was ~10 instructions a
    /// record on bigstore's seals).
    nets: Option<Nets>,
}

impl Default for Ranges {
    fn default() -> Ranges {
        Ranges {
            ip_min: u128::MAX,
            ip_max: 0,
            port_min: u16::MAX,
            port_max: 0,
            first_min: u64::MAX,
            first_max: 0,
            nets: Some(Nets::NONE),
        }
    }
}

impl Ranges {
    fn of(records: &[Record]) -> Ranges {
        let mut g = Ranges::default();
        g.see(records);
        g
    }

    /// Widens the ranges to cover `records` too: folding the pieces of a
    /// sequence in any cut gives [`Ranges::of`] the whole (min and max).
    ///
    /// The address's range in 64-bit words: where every record of the
    /// piece has the first's high word (all of a piece's IPv4 addresses,
    /// most of an IPv6 partition's), the least and largest address are that
    /// word with the least and largest low word; otherwise (a piece mixing
    /// high words) a second pass compares whole addresses.
    pub(crate) fn see(&mut self, records: &[Record]) {
        let Some(r0) = records.first() else {
            return;
        };
        let g = self;
        let hi_raw = |r: &Record| u64::from_ne_bytes(r.public_ip[..8].try_into().expect("8 bytes"));
        let lo = |r: &Record| u64::from_be_bytes(r.public_ip[8..].try_into().expect("8 bytes"));
        let hi0 = hi_raw(r0);
        let (mut other_hi, mut lo_min, mut lo_max) = (0u64, u64::MAX, 0u64);
        // Locals, not `g`'s fields, so that they stay in registers beside
        // the nets' stores.
        // `u32`: 16-bit compares and `cmov`s cost register copies a record.
        let (mut port_min, mut port_max) = (u32::from(g.port_min), u32::from(g.port_max));
        // `first_ns` as it is (signed), flipped into `first_key`'s order
        // once at the end, not a record.
        let (mut first_min, mut first_max) = (i64::MAX, i64::MIN);
        // The set is looked at only where a record's net is neither of the
        // last two records' (no address's net: above 2^56; a pool of two
        // nets alternates at random).
        let (mut nets, mut last_net, mut prev_net) = (g.nets, u64::MAX, u64::MAX);
        for r in records {
            other_hi |= hi_raw(r) ^ hi0;
            let l = lo(r);
            lo_min = lo_min.min(l);
            lo_max = lo_max.max(l);
            let net = l >> NET_SHIFT;
            if net != last_net {
                if net != prev_net {
                    if let Some(x) = &mut nets {
                        if !x.add(net) {
                            nets = None;
                        }
                    }
                }
                (prev_net, last_net) = (last_net, net);
            }
            let port = u32::from(r.public_port.get());
            port_min = port_min.min(port);
            port_max = port_max.max(port);
            let first = r.first_ns.get();
            first_min = first_min.min(first);
            first_max = first_max.max(first);
        }
        // Both were `u16`s.
        (g.port_min, g.port_max) = (port_min as u16, port_max as u16);
        let key = |f: i64| (f as u64) ^ (1 << 63);
        g.first_min = g.first_min.min(key(first_min));
        g.first_max = g.first_max.max(key(first_max));
        g.nets = nets;
        if other_hi == 0 {
            let hi = u128::from(u64::from_be_bytes(
                r0.public_ip[..8].try_into().expect("8 bytes"),
            )) << 64;
            g.ip_min = g.ip_min.min(hi | u128::from(lo_min));
            g.ip_max = g.ip_max.max(hi | u128::from(lo_max));
        } else {
            for r in records {
                let ip = u128::from_be_bytes(r.public_ip);
                g.ip_min = g.ip_min.min(ip);
                g.ip_max = g.ip_max.max(ip);
            }
        }
    }

    /// [`Ranges::see`] as it was: every address compared whole, the nets
    /// of the pieces seen so far by [`nets_of`] (tests).
    #[cfg(test)]
    fn see_whole(&mut self, records: &[Record]) {
        let g = self;
        g.nets = g.nets.and_then(|mut x| {
            let y = nets_of(records)?;
            y.nets[..y.len].iter().all(|&n| x.add(n)).then_some(x)
        });
        for r in records {
            let ip = u128::from_be_bytes(r.public_ip);
            g.ip_min = g.ip_min.min(ip);
            g.ip_max = g.ip_max.max(ip);
            let port = r.public_port.get();
            g.port_min = g.port_min.min(port);
            g.port_max = g.port_max.max(port);
            let first = first_key(r);
            g.first_min = g.first_min.min(first);
            g.first_max = g.first_max.max(first);
        }
    }

    fn merge(&self, o: &Ranges) -> Ranges {
        Ranges {
            ip_min: self.ip_min.min(o.ip_min),
            ip_max: self.ip_max.max(o.ip_max),
            port_min: self.port_min.min(o.port_min),
            port_max: self.port_max.max(o.port_max),
            first_min: self.first_min.min(o.first_min),
            first_max: self.first_max.max(o.first_max),
            // The union, `None` past NETS_MAX.
            nets: self.nets.and_then(|mut x| {
                let y = o.nets?;
                y.nets[..y.len].iter().all(|&n| x.add(n)).then_some(x)
            }),
        }
    }
}

/// One half of a split seal: radix-sorts the compact keys in `keys`
/// (`scratch` as long) and reduces their records into `out`.
fn sort_reduce(
    records: &[Record],
    keys: &mut [u128],
    scratch: &mut [u128],
    slot_bits: u32,
    prefix_bits: u32,
    out: &mut Vec<Record>,
    scan: &mut HeldScan,
) {
    // A side's keys are not in slot order (each half's second side is
    // built from the back): no promise about the low bits.
    crate::radix::sort_msd(keys, scratch, slot_bits + prefix_bits, 0);
    let slot_mask = (1u128 << slot_bits) - 1;
    out.clear();
    reduce_slots(
        records,
        scratch,
        |k| k | slot_mask,
        |k| (k & slot_mask) as usize,
        out,
        scan,
    );
}

/// Index entries ahead of the one reduced whose records are prefetched.
const REDUCE_PREFETCH_ENTRIES: usize = 16;

/// Reduces the records of `records` named by the index entries `sorted`,
/// which are in (sort prefix, slot) order, ascending, appending each
/// mapping's kept state to `out` in that order: each run of entries of one
/// prefix (public ip, port, `first_ns`) becomes its mappings' kept states.
/// `prefix_last(e)`: the largest entry with `e`'s prefix (its slot bits
/// all set), so a run is the entries from its first up to that one (one
/// compare an entry, not a test of the prefix's bits). The
/// records are read where they lie (the log's map) and only the kept ones
/// are copied: no buffer of every record in sorted order.
fn reduce_slots<K: Copy + Ord>(
    records: &[Record],
    sorted: &[K],
    prefix_last: impl Fn(K) -> K,
    slot: impl Fn(K) -> usize,
    out: &mut Vec<Record>,
    scan: &mut HeldScan,
) {
    let n = sorted.len();
    out.reserve(n);
    let mut split: Vec<Record> = Vec::new();
    let mut members: Vec<usize> = Vec::new();
    let mut g = 0;
    // The records of the entries up to `ahead` are asked of the CPU
    // already: the sorted order jumps around the log.
    let mut ahead = 0;
    while g < n {
        let last = prefix_last(sorted[g]);
        let mut end = g + 1;
        while end < n && sorted[end] <= last {
            end += 1;
        }
        let to = (end + REDUCE_PREFETCH_ENTRIES).min(n);
        while ahead < to {
            crate::mmap::prefetch(&records[slot(sorted[ahead])]);
            ahead += 1;
        }
        let run = &sorted[g..end];
        g = end;
        let first = &records[slot(run[0])];
        if run.len() == 1 {
            // One state: kept as it is (its own late flag is its run's).
            scan.see(first);
            out.push(*first);
            continue;
        }
        if let &[a, b] = run {
            // Two states of one mapping (bigstore: every mapping's open
            // and final state): no loop over the run.
            debug_assert_eq!(slot(a), slot(run[0]));
            let second = &records[slot(b)];
            if same_key_rest(second, first) {
                let late = (first.store_flags | second.store_flags) & SF_LATE != 0;
                let best = if beats(second, first) { second } else { first };
                push_kept(out, best, late);
                scan.see(out.last().expect("just pushed"));
                continue;
            }
        }
        if run[1..]
            .iter()
            .all(|&k| same_key_rest(&records[slot(k)], first))
        {
            reduce_run_into(records, run.iter().map(|&k| slot(k)), out);
            scan.see(out.last().expect("just pushed"));
        } else {
            // Several mappings with the same public endpoint and first
            // packet: group the run's slots by full key (a stable sort, so
            // each mapping's records stay in log order), reduce each, and
            // order the results by their bytes as `Record::sort_key` says.
            members.clear();
            members.extend(run.iter().map(|&k| slot(k)));
            members.sort_by_key(|&i| key_rest(&records[i]));
            split.clear();
            for m in members.chunk_by(|&a, &b| same_key_rest(&records[a], &records[b])) {
                reduce_run_into(records, m.iter().copied(), &mut split);
            }
            split.sort_by(|x, y| x.sort_key().cmp(&y.sort_key()));
            for r in &split {
                scan.see(r);
            }
            out.extend_from_slice(&split);
        }
    }
}

/// Pushes onto `out` the kept state of one mapping from its records at
/// positions `at` of `records` (in log order): copied once, from the log
/// into its place in `out`.
fn reduce_run_into(records: &[Record], mut at: impl Iterator<Item = usize>, out: &mut Vec<Record>) {
    // The best record's position, copied once at the end.
    let mut b = at.next().expect("a run is never empty");
    let mut late = records[b].store_flags & SF_LATE != 0;
    for i in at {
        let r = &records[i];
        late |= r.store_flags & SF_LATE != 0;
        if beats(r, &records[b]) {
            b = i;
        }
    }
    push_kept(out, &records[b], late);
}

/// Whether `r`, a state of `best`'s mapping later in the log, is kept over
/// it: a higher [`rank`], or the same rank and `r` not carried where `best`
/// is (on a tie the earlier one stays).
#[inline(always)]
fn beats(r: &Record, best: &Record) -> bool {
    let own_beats_carried = best.store_flags & SF_CARRIED != 0 && r.store_flags & SF_CARRIED == 0;
    rank(r) > rank(best) || (rank(r) == rank(best) && own_beats_carried)
}

/// Pushes onto `out` a mapping's kept state `best`, marked [`SF_LATE`]
/// (its CRC computed again) where `late` (a copy of the mapping was late)
/// and it is not already.
#[inline(always)]
fn push_kept(out: &mut Vec<Record>, best: &Record, late: bool) {
    out.push(*best);
    let best = out.last_mut().expect("just pushed");
    if late && best.store_flags & SF_LATE == 0 {
        best.store_flags |= SF_LATE;
        best.crc = zerocopy::little_endian::U32::new(best.compute_crc());
    }
}

/// An upper bound of [`HoldTimes::hold_ns`] from a record's protocol and
/// end codes alone (UDP: the longer of its two holds), for skipping records
/// that cannot be held without decoding them. Unknown codes: the longest hold.
#[cfg(test)]
fn hold_bound_ns(hold: &HoldTimes, r: &Record) -> i64 {
    class_hold_ns(hold, hold_class(r))
}

/// Classes of records by the protocol and end codes [`hold_bound_ns`]
/// looks at ([`hold_class`]).
const HOLD_CLASSES: usize = 5;

/// A record's class for [`class_hold_ns`]: TCP closed (FIN or RST), TCP
/// otherwise, UDP, ICMP or ICMPv6, unknown codes.
#[inline(always)]
fn hold_class(r: &Record) -> usize {
    if EndReason::from_code(r.end).is_none() {
        return 4;
    }
    match Proto::from_number(r.proto) {
        Some(Proto::Tcp) if r.end == EndReason::Fin as u8 || r.end == EndReason::Rst as u8 => 0,
        Some(Proto::Tcp) => 1,
        Some(Proto::Udp) => 2,
        Some(Proto::Icmp | Proto::Icmpv6) => 3,
        None => 4,
    }
}

/// The longest hold of a class of [`hold_class`], in nanoseconds.
fn class_hold_ns(hold: &HoldTimes, class: usize) -> i64 {
    let s = match class {
        0 => hold.tcp_closed_s,
        1 => hold.tcp_open_s,
        2 => hold.udp_s.max(hold.udp_stream_s),
        3 => hold.icmp_s,
        _ => return hold.max_ns(),
    };
    i64::from(s) * crate::model::NANOS_PER_SEC
}

impl Writer {
    pub(crate) fn open(dir: PathBuf, cfg: StoreConfig) -> Result<Writer, StoreError> {
        let lock_path = dir.join(STORE_LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path, "open lock file"))?;
        // `File::try_lock` is stable since Rust 1.89 (the toolchain here is
        // 1.95); the workspace's rust-version should say 1.89.
        #[allow(clippy::incompatible_msrv)]
        let locked = lock.try_lock();
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    op: "lock",
                    source: e,
                })
            }
        }
        let parts = dir.join(PARTITIONS_DIR);
        let gaps = GapLog::new(&dir, cfg.span_ns());
        let chores = Chores::start(&parts)?;
        let (scratch_tx, scratch_rx) = mpsc::channel();
        let mut w = Writer {
            parts,
            cfg,
            span_ns: cfg.span_ns(),
            grace_ns: cfg.grace_ns(),
            _lock: lock,
            active: BTreeMap::new(),
            sealed_max: BTreeMap::new(),
            last_flush: Instant::now(),
            sealed_logs: Vec::new(),
            dir_dirty: false,
            spare_index: Vec::new(),
            spare_out: Vec::new(),
            spare_out_b: Vec::new(),
            scratch_rx,
            scratch_tx,
            scratch_lent: 0,
            seal_workers: SealWorkers::new(),
            route: None,
            publishing: std::collections::VecDeque::new(),
            publish_records_max: PUBLISH_RECORDS_IN_FLIGHT_MAX,
            pending: None,
            failed: None,
            sync_failed: None,
            chores,
            sync_chore: 0,
            spares_asked: 0,
            spares_asked_recycled: 0,
            write_behind: false,
            spare_log_buffers: Vec::new(),
            stats: WriterStats::default(),
            gaps,
        };
        w.recover()?;
        Ok(w)
    }

    /// Crash recovery (docs/FORMAT.md, "Crash points"): drop temp files,
    /// reopen logs at their committed length, finish interrupted carries.
    fn recover(&mut self) -> Result<(), StoreError> {
        for entry in
            fs::read_dir(&self.parts).map_err(StoreError::io(&self.parts, "read directory"))?
        {
            let entry = entry.map_err(StoreError::io(&self.parts, "read directory"))?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(fsutil::TMP_SUFFIX)
            {
                // An unfinished publish: the source (a log) is still there.
                fsutil::remove(&entry.path())?;
            }
        }
        let files = list_partitions(&self.parts)?;
        for f in files.iter().filter(|f| f.kind == FileKind::Sealed) {
            let e = self.sealed_max.entry(f.start_ns).or_insert(f.segment);
            *e = (*e).max(f.segment);
        }
        let is_sealed = |start: i64, seg: u32| {
            files
                .iter()
                .any(|g| g.kind == FileKind::Sealed && g.start_ns == start && g.segment == seg)
        };
        let mut pending = Vec::new();
        for f in files.iter().filter(|f| f.kind == FileKind::Active) {
            if is_sealed(f.start_ns, f.segment) {
                pending.push(f.clone());
                continue;
            }
            let log = ActiveLog::open(&f.path, f.start_ns, self.span_ns, f.segment)?;
            self.stats.recovered_zeroed_slots += log.zeroed_slots;
            self.stats.recovered_log_headers += u64::from(log.header_rewritten);
            if let Some(other) = self.active.get(&f.start_ns) {
                return Err(StoreError::Corrupt {
                    path: f.path.clone(),
                    offset: 0,
                    field: "segment",
                    detail: format!(
                        "two active segments of one partition ({} and {}); seal or move one aside by hand",
                        other.path.display(),
                        f.name
                    ),
                });
            }
            self.active.insert(f.start_ns, log);
        }
        for f in pending {
            // Sealed and published, but the log was not deleted: the carry
            // may not have reached the next partition. Carrying again is
            // harmless (reduction removes duplicates).
            let part = self
                .parts
                .join(file_name(f.start_ns, f.segment, FileKind::Sealed));
            let view = SealedView::open(&part, f.start_ns, self.span_ns, f.segment)?;
            let records = view.records()?;
            let (held, _) = held_records(&records, f.start_ns, self.span_ns, &self.cfg.hold, true);
            self.append_carried(f.start_ns + self.span_ns, &held)?;
            self.sealed_logs.push(SealedLog {
                path: f.path.clone(),
                carried_into: None,
                generation: 0,
                map: None,
            });
            self.stats.recovered_carries += 1;
        }
        if !self.sealed_logs.is_empty() {
            // Syncs the carried copies, then deletes the sealed logs.
            self.flush()?;
            fsutil::fsync_dir(&self.parts)?;
        }
        Ok(())
    }

    fn partition_of(&self, t: UnixNanos) -> i64 {
        t.div_euclid(self.span_ns) * self.span_ns
    }

    /// A sealed log whose records are durable elsewhere (its `.part`
    /// published, its carried copies durable): used again as a spare
    /// (renamed, on the background thread: [`Chore::Recycle`]) if it is a
    /// version 3 log with a next generation, else removed.
    /// `map`: the map the log's seal read it through, kept with the spare
    /// (unmapped on the background thread if it removes the file there for
    /// want of room; here, for a log that is not used again).
    fn retire_log(&mut self, path: PathBuf, generation: u32, map: Option<memmap2::Mmap>) {
        if generation != 0 && crate::format::next_generation(generation).is_some() {
            self.spares_asked_recycled += 1;
            let name = format!(
                "spare-r{:06}.log{}",
                self.spares_asked_recycled,
                fsutil::TMP_SUFFIX
            );
            let spare = self.parts.join(name);
            self.chores.send(Chore::Recycle {
                log: path,
                spare,
                generation,
                map,
            });
        } else {
            self.chores.send(Chore::Remove(path));
        }
    }

    /// The active log of partition `start`, creating a new segment (0, or
    /// one past the highest sealed) if there is none.
    fn log_for(&mut self, start: i64) -> Result<&mut ActiveLog, StoreError> {
        if !self.active.contains_key(&start) {
            let seg = self.sealed_max.get(&start).map_or(0, |s| s + 1);
            let path = self.parts.join(file_name(start, seg, FileKind::Active));
            let log = match self.chores.take_spare() {
                Some(spare) => {
                    let tmp = spare.path.clone();
                    let log = ActiveLog::from_spare(spare, &path, start, self.span_ns, seg);
                    // Its temp name goes on the background thread (a crash
                    // before that: recovery deletes `*.tmp`).
                    self.chores.send(Chore::Remove(tmp));
                    log?
                }
                None => ActiveLog::create(&path, start, self.span_ns, seg)?,
            };
            // The next log's file made ahead, on the background thread
            // (one at a time: asked only when none is being made).
            if self.chores.spares_unfinished(self.spares_asked) == 0
                && self.chores.spares_ready() == 0
            {
                self.spares_asked += 1;
                let name = format!("spare-{:06}.log{}", self.spares_asked, fsutil::TMP_SUFFIX);
                self.chores.send(Chore::Spare(self.parts.join(name)));
            }
            let mut log = log;
            if let Some(buf) = self.spare_log_buffers.pop() {
                log.swap_buffer_if_larger(buf);
            }
            self.stats.bytes_written += crate::format::HEADER_SIZE as u64;
            self.active.insert(start, log);
            // Its directory entry is made durable by the next flush.
            self.dir_dirty = true;
            // A new active partition can change where late records go.
            self.route = None;
        }
        Ok(self.active.get_mut(&start).expect("inserted above"))
    }

    /// Write-behind on or off (off when opened). Off, every append call
    /// ends with the records in the kernel (one `pwrite` per active log):
    /// a killed process loses none of them, and another process reading
    /// the log sees them. On, the records stay in the log's buffer (at most
    /// `LOG_BUFFER_RECORDS_MAX`, 384 KiB, per active log) until it is full,
    /// or until anything looks at the file: the periodic sync and
    /// [`Writer::flush`] (which write out first, so what a flush makes
    /// durable is the same), a seal, a carry, [`Writer::unclosed`],
    /// [`Writer::write_out`], drop. So a store's bytes after each flush and
    /// every sealed byte are the same either way (property-tested); only
    /// the `pwrite`s are fewer and larger, and a process killed between
    /// two write-outs loses the records since the last one (a power loss
    /// loses everything not flushed either way). For a replay, which
    /// writes a finished capture and flushes at its end; the live recorder
    /// keeps it off. Turning it off writes everything out.
    pub fn set_write_behind(&mut self, on: bool) -> Result<(), StoreError> {
        self.write_behind = on;
        if !on {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes every record appended so far to the files (one `pwrite` per
    /// active log with buffered records): in the kernel on return, not
    /// synced. Only write-behind leaves records buffered between calls.
    pub fn write_out(&mut self) -> Result<(), StoreError> {
        for log in self.active.values_mut() {
            log.write_out()?;
        }
        Ok(())
    }

    /// Appends one mapping state. Its event time (`first_ns` while `Open`,
    /// else `last_ns`) picks the partition; if that one is sealed, the record
    /// is late and goes to the oldest active later partition (a final state
    /// written when a long hold runs out, or an interim state of a long flow),
    /// else — nothing later is active, as when older captures are replayed
    /// into a store — to a new segment of its own partition. Durable after the
    /// next flush.
    pub fn append(&mut self, m: &Mapping) -> Result<(), StoreError> {
        self.append_batch(std::slice::from_ref(m))
    }

    /// Appends `ms` in order, then writes them to the files in one `pwrite`
    /// per active log: on return every record is in the kernel (survives a
    /// process kill; durable at the next flush), unless write-behind is on
    /// ([`Writer::set_write_behind`]). Stops at the first error; the records
    /// before it are appended.
    pub fn append_batch(&mut self, ms: &[Mapping]) -> Result<(), StoreError> {
        self.append_batches([ms])
    }

    /// Appends the mappings of `batches` in order, as one
    /// [`Writer::append_batch`] of their concatenation: the records go to
    /// the files once all are appended, in one `pwrite` per active log (per
    /// `LOG_BUFFER_RECORDS_MAX` records, 384 KiB), not one per batch. For a
    /// caller holding several batches at once (a writing thread taking
    /// everything queued on its channel): larger writes cost the kernel
    /// less per record. On return every record is in the kernel (unless
    /// write-behind is on); stops at the first error, the records before it
    /// appended.
    pub fn append_batches<'a>(
        &mut self,
        batches: impl IntoIterator<Item = &'a [Mapping]>,
    ) -> Result<(), StoreError> {
        self.check_failed()?;
        if self.chores.stopped() {
            self.collect_chores()?;
        }
        let mut result = Ok(());
        'batches: for ms in batches {
            let mut i = 0;
            while i < ms.len() {
                let (n, r) = self.append_run(&ms[i..]);
                i += n;
                if r.is_err() {
                    result = r;
                    break 'batches;
                }
            }
        }
        if !self.write_behind {
            self.write_out()?;
        }
        result
    }

    /// Appends the longest prefix of `ms` whose records go to one partition
    /// (consecutive records mostly do): the route and the log are looked up
    /// once for the run. Returns how many were appended, and the error that
    /// stopped the run early, if any (the records before it are appended).
    fn append_run(&mut self, ms: &[Mapping]) -> (usize, Result<(), StoreError>) {
        fn bad(parts: &std::path::Path, detail: String) -> StoreError {
            StoreError::BadMapping {
                path: parts.to_path_buf(),
                detail,
            }
        }
        fn event_time(m: &Mapping) -> i64 {
            if m.end == EndReason::Open {
                m.first_ns
            } else {
                m.last_ns
            }
        }
        fn check_times(parts: &std::path::Path, m: &Mapping) -> Result<(), StoreError> {
            if m.first_ns < 0 || m.last_ns > EVENT_NS_MAX {
                return Err(bad(
                    parts,
                    format!(
                        "times {}..{} outside the storable range 0..={EVENT_NS_MAX} ns (1970 to 2100)",
                        m.first_ns, m.last_ns
                    ),
                ));
            }
            Ok(())
        }
        let Some(first) = ms.first() else {
            return (0, Ok(()));
        };
        if let Err(e) = check_times(&self.parts, first) {
            return (0, Err(e));
        }
        let t = event_time(first);
        // Consecutive records mostly fall in one partition: reuse its route
        // (no division, no map lookups) while `t` is inside it.
        let route = match self.route {
            Some(r) if t >= r.start && t - r.start < self.span_ns => r,
            _ => match self.route_of(self.partition_of(t)) {
                Ok(r) => r,
                Err(e) => return (0, Err(e)),
            },
        };
        // Encoded once, with its flags: the check before the disk (habit 10);
        // before a log is created for it.
        let first_rec = match Record::encode(first, route.flags) {
            Ok(r) => r,
            Err(f) => {
                return (
                    0,
                    Err(bad(&self.parts, format!("{}: {}", f.field, f.detail))),
                )
            }
        };
        if !self.active.contains_key(&route.target) {
            if let Err(e) = self.log_for(route.target) {
                return (0, Err(e));
            }
        }
        // Set after `log_for`, which forgets the route when it creates a log
        // (the route of `route.start` is the same after that creation).
        self.route = Some(route);
        let parts = &self.parts;
        let log = self
            .active
            .get_mut(&route.target)
            .expect("created above if missing");
        let span_ns = self.span_ns;
        // The run: the first record (encoded above, before its log was looked
        // up), then each following one while its times are storable and its
        // event time stays in the route's partition. A time outside the
        // storable range ends the run with that error, after the records
        // before it are appended, as an encoding error does.
        let mut end = 1;
        let mut stop = Ok(());
        for m in &ms[1..] {
            if let Err(e) = check_times(parts, m) {
                stop = Err(e);
                break;
            }
            let t = event_time(m);
            if !(t >= route.start && t - route.start < span_ns) {
                break;
            }
            end += 1;
        }
        let mut n = 0;
        let mut result = log.append(&first_rec);
        if result.is_ok() {
            // The others straight into the log's buffer, in one loop.
            let (k, appended) = log.append_mappings(&ms[1..end], route.flags);
            n = 1 + k;
            result = match appended {
                Ok(Ok(())) => stop,
                Ok(Err(f)) => Err(bad(parts, format!("{}: {}", f.field, f.detail))),
                Err(e) => Err(e),
            };
        }
        if route.late {
            self.stats.late_records += n as u64;
        }
        self.stats.records_appended += n as u64;
        self.stats.bytes_written += n as u64 * RECORD_SIZE as u64;
        (n, result)
    }

    /// Where a record whose event time is in partition `p` goes: `p` itself
    /// if it is active or not sealed yet; else (late) the oldest active later
    /// partition, flagged [`SF_LATE`]; else a new segment of `p`.
    fn route_of(&mut self, p: i64) -> Result<Route, StoreError> {
        if self.active.contains_key(&p) || !self.sealed_max.contains_key(&p) {
            return Ok(Route {
                start: p,
                target: p,
                flags: 0,
                late: false,
            });
        }
        // Late, unless the pending carry creates a new segment of `p`
        // itself; it may also create the later partition it goes to.
        if self.pending.is_some() {
            self.apply_pending()?;
            return self.route_of(p);
        }
        // Any distance: a new segment per late record would make one
        // file per mapping whose hold outlasts span + grace (TCP's
        // 2 h 4 min against one-hour partitions).
        Ok(match self.active.range(p + 1..).next() {
            Some((&q, _)) => Route {
                start: p,
                target: q,
                flags: SF_LATE,
                late: true,
            },
            None => Route {
                start: p,
                target: p,
                flags: 0,
                late: true,
            },
        })
    }

    /// Records that packets were lost in `[gap.from_ns, gap.to_ns]` (kernel,
    /// interface, natrec's own queues), so lookups in that interval say
    /// their answer may be incomplete. Durable on return (fsync); split at
    /// partition boundaries (docs/FORMAT.md, "Gaps").
    pub fn append_gap(&mut self, gap: &Gap) -> Result<(), StoreError> {
        if gap.from_ns > gap.to_ns {
            return Err(StoreError::BadMapping {
                path: self.parts.clone(),
                detail: format!("gap from {} after to {}", gap.from_ns, gap.to_ns),
            });
        }
        self.gaps.append(gap)?;
        self.stats.gaps_appended += 1;
        Ok(())
    }

    /// Seals every partition whose end plus grace is at or before `now_ns`
    /// (the data's clock), then, if `flush_interval_ms` of wall clock passed
    /// since the last flush, hands the `fdatasync` of the active logs to the
    /// background thread ([`Writer::flush_behind`]) and goes on: appends do
    /// not wait for the disk. [`Writer::flush`] is the call that returns
    /// only when everything appended is durable.
    pub fn advance(&mut self, now_ns: UnixNanos) -> Result<(), StoreError> {
        self.check_failed()?;
        self.collect_chores()?;
        self.seal_while(
            |start, span, grace| start.saturating_add(span).saturating_add(grace) <= now_ns,
            now_ns,
        )?;
        if self.last_flush.elapsed() >= Duration::from_millis(u64::from(self.cfg.flush_interval_ms))
        {
            self.flush_behind()?;
        }
        Ok(())
    }

    /// The periodic flush, on the background thread: every active log with
    /// records appended since its last sync is handed over (a second handle
    /// on its file) for an `fdatasync`, then `partitions/` is fsynced if a
    /// log was created since; the logs of sealed segments whose carried
    /// copies are in one of those logs are removed after that sync (the
    /// thread skips every chore after one that failed). The previous sync is
    /// waited for first, so at most one is in flight and a record stays in
    /// memory only at most about `flush_interval_ms` plus one sync. Seal
    /// threads are not waited for (a partition being sealed is durable when
    /// its `.part` is published, as before), nor is a pending carry appended:
    /// both wait for the next [`Writer::flush`] or the writer's next need.
    fn flush_behind(&mut self) -> Result<(), StoreError> {
        self.chores.wait(self.sync_chore);
        self.collect_chores()?;
        // Seal threads that are done: their logs can go now.
        while self.publishing.front_mut().is_some_and(|p| p.is_finished()) {
            self.finish_publish()?;
        }
        let mut logs = Vec::new();
        let mut synced = Vec::with_capacity(self.active.len());
        for (&start, log) in self.active.iter_mut() {
            match log.sync_handle() {
                Ok(Some(f)) => logs.push((log.path.clone(), f)),
                Ok(None) => {}
                Err(e) => {
                    // Logs before it count as synced without a sync queued:
                    // no later flush would sync them, so the writer stops.
                    self.sync_failed.get_or_insert_with(|| e.to_string());
                    return Err(e);
                }
            }
            synced.push((start, log.segment));
        }
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.parts.clone());
        if !logs.is_empty() || dir.is_some() {
            self.sync_chore = self.chores.send(Chore::Sync { logs, dir });
        }
        // A log not handed over now had nothing unsynced: an earlier sync,
        // done before this one, covered it.
        self.delete_sealed_logs(|l| l.carried_into.is_some_and(|c| synced.contains(&c)))?;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// The background thread's first error, once: the writer stops
    /// ([`StoreError::SyncFailed`] from then on).
    fn collect_chores(&mut self) -> Result<(), StoreError> {
        if !self.chores.stopped() {
            return Ok(());
        }
        match self.chores.take_error() {
            Some(e) => {
                if self.sync_failed.is_none() {
                    self.sync_failed = Some(e.to_string());
                }
                Err(e)
            }
            None => self.check_failed(),
        }
    }

    /// Seals every partition that ends at or before `now_ns`, ignoring the
    /// grace time.
    pub fn seal_before(&mut self, now_ns: UnixNanos) -> Result<(), StoreError> {
        self.check_failed()?;
        self.seal_while(
            |start, span, _| start.saturating_add(span) <= now_ns,
            now_ns,
        )?;
        self.flush()
    }

    fn seal_while(
        &mut self,
        due: impl Fn(i64, i64, i64) -> bool,
        now_ns: i64,
    ) -> Result<(), StoreError> {
        // Bound: each round seals one partition that ends before now_ns;
        // carries only create partitions that follow a sealed one, so at
        // most the active ones plus one per span up to now_ns.
        let Some(first) = self.next_to_seal() else {
            return Ok(());
        };
        // Twice: a round may append a pending carry instead of sealing.
        let rounds_max =
            2 * (self.active.len() as i64 + now_ns.saturating_sub(first) / self.span_ns + 3);
        let mut rounds = 0i64;
        while let Some(start) = self.next_to_seal() {
            if !due(start, self.span_ns, self.grace_ns) {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= rounds_max,
                "sealing did not converge after {rounds_max} rounds"
            );
            self.seal_next(start, true, false)?;
        }
        Ok(())
    }

    /// The partition to seal next, in time order: the oldest active one, or
    /// the one the pending carry goes into if that comes first and is not
    /// active yet (the carry may create it).
    fn next_to_seal(&self) -> Option<i64> {
        let active = self.active.keys().next().copied();
        let pending = self.pending.as_ref().map(|p| p.into);
        match (active, pending) {
            (Some(a), Some(q)) => Some(a.min(q)),
            (a, q) => a.or(q),
        }
    }

    /// Seals partition `start` if it is active; else (the pending carry's
    /// partition, not created yet) appends the pending carry, which creates
    /// it if anything was held, for the next round to seal.
    fn seal_next(
        &mut self,
        start: i64,
        carry_open: bool,
        two_threads: bool,
    ) -> Result<(), StoreError> {
        if self.active.contains_key(&start) {
            self.seal(start, carry_open, two_threads)
        } else {
            self.apply_pending()
        }
    }

    /// Makes everything appended so far durable (`fdatasync` of every
    /// active log, then an fsync of `partitions/` if a log was created since
    /// the last one), then deletes the logs of sealed segments whose carried
    /// copies that just made durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        // What the background thread was given first (a periodic sync,
        // removals); its error stops the writer.
        self.chores.wait(self.chores.sent());
        let queued = self.collect_chores();
        // The partition being published is durable once its publish is. If
        // that failed, the active logs are still synced (a flush on drop
        // must not skip them), then the error is returned.
        let published = self.finish_publishes(0).and_then(|()| self.apply_pending());
        for log in self.active.values_mut() {
            if let Err(e) = log.flush() {
                // Not retryable (docs/FORMAT.md, "Crash points"): stop.
                self.sync_failed.get_or_insert_with(|| e.to_string());
                return Err(e);
            }
        }
        if self.dir_dirty {
            if let Err(e) = fsutil::fsync_dir(&self.parts) {
                self.sync_failed.get_or_insert_with(|| e.to_string());
                return Err(e);
            }
            self.dir_dirty = false;
        }
        queued?;
        published?;
        // The carried copies of every pending sealed log are now durable:
        // in an active log just synced, or in a `.part` published since.
        self.delete_sealed_logs(|_| true)?;
        // The removals done before returning (made durable by the next
        // directory fsync, as always).
        self.chores.wait(self.chores.sent());
        self.collect_chores()?;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Deletes the pending sealed logs that `durable` says have their carried
    /// copies durable, on the background thread (after every chore queued
    /// before, and not after one that failed). The deletion is made durable
    /// by the next directory fsync (a publish, or a flush after a log
    /// creation): a log that reappears after a crash next to its `.part` is
    /// carried again and deleted by recovery, as when the crash came before
    /// the delete.
    fn delete_sealed_logs(
        &mut self,
        durable: impl Fn(&SealedLog) -> bool,
    ) -> Result<(), StoreError> {
        if self.failed.is_some() || self.sync_failed.is_some() || self.chores.stopped() {
            // A carry, publish or sync failed: which copies are durable is
            // not known. The logs stay; the next writer carries them again.
            return Ok(());
        }
        let mut i = 0;
        while i < self.sealed_logs.len() {
            if !durable(&self.sealed_logs[i]) {
                i += 1;
                continue;
            }
            let l = self.sealed_logs.swap_remove(i);
            self.retire_log(l.path, l.generation, l.map);
        }
        Ok(())
    }

    /// Seals every active partition, for the end of a replay. Carried
    /// mappings create following partitions until their hold ends; a
    /// mapping still `Open` is carried one partition past the last
    /// partition that had data, and no further (counted in
    /// [`WriterStats::open_at_seal_all`]).
    pub fn seal_all(&mut self) -> Result<(), StoreError> {
        self.check_failed()?;
        // The horizon is the last active partition once every carry is in
        // its log, as when carries were appended at the seal.
        self.apply_pending()?;
        let (Some(&first), Some(&horizon)) =
            (self.active.keys().next(), self.active.keys().next_back())
        else {
            return self.flush();
        };
        // Bound: partitions up to the horizon, then at most one per span of
        // the longest hold, plus the one the Open mappings are carried into.
        // Twice: a round may append a pending carry instead of sealing.
        let rounds_max = 2
            * (self.active.len() as i64
                + (horizon - first) / self.span_ns
                + self.cfg.hold.max_ns() / self.span_ns
                + 4);
        let mut rounds = 0i64;
        while let Some(start) = self.next_to_seal() {
            rounds += 1;
            assert!(
                rounds <= rounds_max,
                "seal_all did not converge after {rounds_max} rounds"
            );
            // Nothing else runs now: the seal sorts and reduces on two threads.
            self.seal_next(start, start <= horizon, true)?;
        }
        self.flush()?;
        // No log is expected after this: no spare left lying in the store.
        self.chores.remove_spares()
    }

    /// What a previous writer left unfinished in the active partitions:
    /// the mappings whose latest state is still `Open` (never closed: the
    /// recorder crashed), and the latest time any record there names (about
    /// when that writer stopped). A recorder closes those mappings on start,
    /// so they are not carried forward as held forever.
    pub fn unclosed(&self) -> Result<(Vec<Mapping>, Option<UnixNanos>), StoreError> {
        let mut best: std::collections::HashMap<crate::format::NaturalKey, Mapping> =
            std::collections::HashMap::new();
        let mut latest: Option<UnixNanos> = None;
        for log in self.active.values() {
            for r in log.records()? {
                let m = r.decode().expect("records are validated when read");
                latest = Some(latest.map_or(m.last_ns, |l: i64| l.max(m.last_ns)));
                let k = crate::format::natural_key(&m);
                match best.get(&k) {
                    Some(b) if !crate::format::supersedes(&m, b) => {}
                    _ => {
                        best.insert(k, m);
                    }
                }
            }
        }
        let mut open: Vec<Mapping> = best
            .into_values()
            .filter(|m| m.end == EndReason::Open)
            .collect();
        open.sort_by_key(|m| (m.first_ns, m.internal, m.remote));
        Ok((open, latest))
    }

    /// Waits for the carry of the last partition sealed (its seal thread
    /// sends it after the reduce) and appends it to the next partition's log
    /// (in the kernel, not synced), as [`Writer::flush`] does before syncing.
    /// Sealing hands the carry to the seal thread and the writer appends it
    /// when it next needs it; a carry handed to the next partition's own
    /// seal thread (chained seals) is appended by that thread.
    pub fn finish_carries(&mut self) -> Result<(), StoreError> {
        self.apply_pending()
    }

    /// Makes the next seal's scratch ready ahead, at most
    /// [`WARM_STEP_BYTES`] of it a call: the index keys and the sort's second
    /// buffer for the largest active log's records and an eighth more (the
    /// appends still to come), and the two reduced-record buffers of a split
    /// seal for a quarter of its records each (about what each side keeps
    /// when a mapping has two states, open and final), their pages written
    /// (faulted in) here, so the seal's threads
    /// find them in memory instead of faulting ~18 000 fresh pages at the
    /// end of a 10 M-packet replay (docs/bench/round13-tail13.md). For a
    /// thread with idle time just before a final seal (the three-thread
    /// replay's tail append thread while it waits for the flow table);
    /// nothing for logs below [`SEAL_SPLIT_RECORDS_MIN`] records. Returns
    /// whether more is left to do. Stores nothing and changes no seal's
    /// bytes: a seal writes every slot of its scratch before reading it.
    /// Bound: about 84 bytes per record of the largest active log (a
    /// partition's records are bounded; the seal would fault most of it in
    /// anyway), freed or kept after the seal as any seal's scratch.
    pub fn warm_seal_scratch(&mut self) -> bool {
        let Some(n) = self.active.values().map(|l| l.count).max() else {
            return false;
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        #[cfg(test)]
        let warm_min = 2;
        #[cfg(not(test))]
        let warm_min = SEAL_SPLIT_RECORDS_MIN;
        if n < warm_min {
            return false;
        }
        let target = n.saturating_add(n / 8);
        if self.spare_index.is_empty() {
            self.spare_index.push(SealIndex::default());
        }
        let index = self.spare_index.last_mut().expect("just pushed");
        if warm_keys(&mut index.keys, target) || warm_keys(&mut index.tmp, target) {
            return true;
        }
        if self.spare_out.is_empty() {
            self.spare_out.push(Vec::new());
        }
        let out = self.spare_out.last_mut().expect("just pushed");
        warm_records(out, n / 4) || warm_records(&mut self.spare_out_b, n / 4)
    }

    /// Waits for what the writer handed its background thread so far (the
    /// periodic sync, removals of sealed logs, the spare log) and returns
    /// its error, if any (the writer then stops). [`Writer::flush`] does
    /// this too; this is for callers that look at the files without a flush.
    pub fn finish_chores(&mut self) -> Result<(), StoreError> {
        self.chores.wait(self.chores.sent());
        self.collect_chores()
    }

    /// Partition segments open for appending now.
    pub fn active_partitions(&self) -> usize {
        self.active.len()
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Seals the active segment of partition `start`: its log goes to a seal
    /// thread that reduces and sorts it, sends the mappings still held at its
    /// end (the carry) and publishes the `.part`; the carry is appended to
    /// the next partition's log by the writer, or by that partition's own
    /// seal thread if it is sealed first. See docs/FORMAT.md for each crash
    /// point. `two_threads`: the seal thread sorts and reduces a large
    /// partition on two threads (the end of a replay, when the other core
    /// is idle); the bytes are the same either way.
    fn seal(&mut self, start: i64, carry_open: bool, two_threads: bool) -> Result<(), StoreError> {
        // A carry into another partition first: it can create or extend
        // logs that come before this one in sealing order.
        if self.pending.as_ref().is_some_and(|p| p.into != start) {
            self.apply_pending()?;
        }
        // At most PUBLISHES_IN_FLIGHT_MAX seals and
        // PUBLISH_RECORDS_IN_FLIGHT_MAX records unfinished: the oldest
        // finish first if needed.
        let records = self.active.get(&start).map_or(0, |l| l.count);
        self.finish_publishes_to_seal(records)?;
        let Some(mut log) = self.active.remove(&start) else {
            // Nothing to seal (the pending carry into it was empty).
            return Ok(());
        };
        // Written out to the kernel, not synced: the `.part` published by the
        // thread is fsynced before the rename and replaces the log; until the
        // rename the log stays on disk, synced by flushes (docs/FORMAT.md).
        // Nothing is appended to it by the writer from here on: records for
        // it are late and go elsewhere.
        if let Err(e) = log.write_out() {
            self.active.insert(start, log);
            return Err(e);
        }
        // Its buffer kept for a next log (at most SPARE_LOG_BUFFERS_MAX).
        let buf = log.take_buffer();
        if !buf.is_empty() && self.spare_log_buffers.len() < SPARE_LOG_BUFFERS_MAX {
            self.spare_log_buffers.push(buf);
        }
        let segment = log.segment;
        let log_records = log.count;
        let e = self.sealed_max.entry(start).or_insert(segment);
        *e = (*e).max(segment);
        self.route = None;
        let carry_in = match self.pending.take() {
            Some(p) => {
                debug_assert_eq!(p.into, start);
                if let Some(q) = self.publishing.iter_mut().find(|q| q.id == p.from) {
                    q.carry = CarryTo::Chained((start, segment));
                }
                Some(p.rx)
            }
            None => None,
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let part = self.parts.join(file_name(start, segment, FileKind::Sealed));
        // A scratch set to lend: the sets given back so far kept first; at
        // the bound, wait for a seal thread to finish encoding.
        self.take_back_scratch(SEAL_SCRATCH_LENT_MAX - 1);
        self.scratch_lent += 1;
        let job = SealJob {
            start,
            segment,
            span_ns: self.span_ns,
            hold: self.cfg.hold,
            carry_open,
            part: part.clone(),
            // Lent from here: given back by the thread, or by the drop of
            // the job if the thread cannot start.
            scratch: ScratchBack {
                scratch: Some(Scratch {
                    records: self.spare_out.pop().unwrap_or_default(),
                    index: self.spare_index.pop().unwrap_or_default(),
                }),
                tx: self.scratch_tx.clone(),
            },
            two_threads,
            records_b: std::mem::take(&mut self.spare_out_b),
            carry_in,
            carry_out: tx,
        };
        let (done_tx, done) = mpsc::sync_channel(1);
        let task = SealTask {
            log,
            job,
            done: done_tx,
        };
        if let Err((task, e)) = self.seal_workers.run(task, self.publishing.len() + 1) {
            // As a failed publish: the partition is sealed for routing
            // but has no .part; the log stays (synced) for the next writer.
            // (The job's scratch goes back as it is dropped.)
            let SealTask { mut log, .. } = *task;
            let _ = log.flush();
            let e = StoreError::io(&part, "start the seal thread for")(e);
            self.failed = Some((part, e.to_string()));
            return Err(e);
        }
        self.pending = Some(PendingCarry {
            from: (start, segment),
            into: start + self.span_ns,
            rx,
        });
        self.publishing.push_back(Publishing {
            done,
            finished: None,
            part,
            id: (start, segment),
            carry: CarryTo::Pending,
            records: log_records,
        });
        Ok(())
    }

    /// Appends the pending carry (waiting for its seal thread to send it) to
    /// the next partition's log. If the thread failed before sending it, its
    /// error is returned (the writer then stops).
    fn apply_pending(&mut self) -> Result<(), StoreError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let state = match p.rx.recv() {
            Ok(c) => {
                self.stats.open_at_seal_all += c.open_at_seal_all;
                match self.append_carried(p.into, &c.records) {
                    Ok(into) => CarryTo::Appended(into),
                    Err(e) => {
                        self.failed = Some((self.parts.clone(), e.to_string()));
                        if let Some(q) = self.publishing.iter_mut().find(|q| q.id == p.from) {
                            q.carry = CarryTo::Failed;
                        }
                        return Err(e);
                    }
                }
            }
            // The seal thread stopped before its carry: its error comes
            // with its join.
            Err(_) => {
                if let Some(q) = self.publishing.iter_mut().find(|q| q.id == p.from) {
                    q.carry = CarryTo::Failed;
                }
                let r = self.finish_publishes(0);
                return r.and(Err(StoreError::SealFailed {
                    path: self.parts.clone(),
                    detail: "a seal thread stopped before its carry".into(),
                }));
            }
        };
        if let Some(q) = self.publishing.iter_mut().find(|q| q.id == p.from) {
            q.carry = state;
        }
        Ok(())
    }

    /// Waits for the oldest publishes until one more seal, of a log of
    /// `records` records, fits both bounds: fewer than
    /// [`PUBLISHES_IN_FLIGHT_MAX`] seals unfinished, and their records and
    /// `records` at most [`PUBLISH_RECORDS_IN_FLIGHT_MAX`] (or none
    /// unfinished). All are waited for even if one failed; the first error
    /// is returned.
    fn finish_publishes_to_seal(&mut self, records: u64) -> Result<(), StoreError> {
        let records_max = self.publish_records_max;
        self.finish_publishes_while(|publishing| {
            publishing.len() >= PUBLISHES_IN_FLIGHT_MAX
                || (!publishing.is_empty()
                    && publishing.iter().map(|p| p.records).sum::<u64>() + records > records_max)
        })
    }

    /// Waits for the oldest publishes until at most `keep` run. All are
    /// waited for even if one failed; the first error is returned.
    fn finish_publishes(&mut self, keep: usize) -> Result<(), StoreError> {
        self.finish_publishes_while(|publishing| publishing.len() > keep)
    }

    /// Waits for the oldest publish while `more` holds of those unfinished;
    /// all are waited for even if one failed, and the first error is
    /// returned.
    fn finish_publishes_while(
        &mut self,
        more: impl Fn(&std::collections::VecDeque<Publishing>) -> bool,
    ) -> Result<(), StoreError> {
        let mut first = Ok(());
        while more(&self.publishing) {
            let r = self.finish_publish();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Waits for the oldest partition being published, if any. Published:
    /// its log waits until its carried copies are durable to be deleted.
    /// Failed: the log stays (synced now, so its records keep the flush
    /// promise), the writer refuses further work, and the next writer seals
    /// the partition again.
    fn finish_publish(&mut self) -> Result<(), StoreError> {
        let mut applied = Ok(());
        if self
            .publishing
            .front()
            .is_some_and(|p| p.carry == CarryTo::Pending)
        {
            // Its carry is the pending one: appended first, so the log's
            // fate below is known.
            applied = self.apply_pending();
        }
        let Some(p) = self.publishing.pop_front() else {
            return applied;
        };
        self.finish_joined(p).and(applied)
    }

    fn finish_joined(&mut self, p: Publishing) -> Result<(), StoreError> {
        let (part, id, carry) = (p.part.clone(), p.id, p.carry);
        let done = p.wait();
        let mut log = done.log;
        match done.result {
            Ok(s) => {
                self.stats.bytes_written += s.bytes + s.carried_in * RECORD_SIZE as u64;
                self.stats.partitions_sealed += 1;
                self.stats.carried += s.carried_in;
                self.stats.open_at_seal_all += s.open_at_seal_all_in;
                // Freed last (after the log's removal is queued). Its
                // scratch came back before the publish ([`ScratchBack`]).
                let free_last = s.records_b;
                // Logs whose copies were carried into this segment: those
                // copies are in its `.part` now, durable.
                self.delete_sealed_logs(|l| l.carried_into == Some(id))?;
                // This segment's own carried copies are in the next log, in
                // the kernel but maybe not durable: its log stays (readers and
                // recovery see "carry pending", docs/FORMAT.md) until a flush
                // syncs them or the next segment is published. Nothing
                // carried: nothing to wait for. At the bound, flush now.
                let carried_into = match carry {
                    _ if s.carried_out == 0 => None,
                    CarryTo::Chained(id) => Some(id),
                    CarryTo::Appended(id) => id,
                    // Not appended anywhere: the log stays for the next
                    // writer, which carries again from the `.part`.
                    CarryTo::Pending | CarryTo::Failed => {
                        return self.check_failed();
                    }
                };
                let sealed = SealedLog {
                    path: log.path.clone(),
                    carried_into,
                    generation: log.generation(),
                    map: log.take_map(),
                };
                drop(log);
                if sealed.carried_into.is_none() {
                    // Its records are in the `.part` (synced before the
                    // rename): removed on the background thread.
                    self.retire_log(sealed.path, sealed.generation, sealed.map);
                } else {
                    self.sealed_logs.push(sealed);
                }
                drop(free_last);
                if self.sealed_logs.len() >= SEALED_LOGS_PENDING_MAX {
                    self.flush()?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = log.flush();
                self.failed = Some((part, e.to_string()));
                Err(e)
            }
        }
    }

    /// Keeps the scratch sets seal threads gave back (as spares, up to
    /// [`SEAL_SCRATCH_SPARES_MAX`] of at most [`SEAL_SCRATCH_KEEP_RECORDS`]
    /// records' worth each; the others are freed), first waiting until at
    /// most `lent_max` are still lent. The wait ends: every seal thread gives
    /// its set back once, at its encode or on any failure before
    /// ([`ScratchBack`]), and none waits for the writer.
    fn take_back_scratch(&mut self, lent_max: usize) {
        loop {
            let got = if self.scratch_lent > lent_max {
                self.scratch_rx.recv().ok()
            } else {
                self.scratch_rx.try_recv().ok()
            };
            let Some(s) = got else {
                return;
            };
            self.scratch_lent -= 1;
            if s.records.capacity() <= SEAL_SCRATCH_KEEP_RECORDS
                && self.spare_out.len() < SEAL_SCRATCH_SPARES_MAX
            {
                self.spare_out.push(s.records);
            }
            if s.index.capacity() <= SEAL_SCRATCH_KEEP_RECORDS
                && self.spare_index.len() < SEAL_SCRATCH_SPARES_MAX
            {
                self.spare_index.push(s.index);
            }
        }
    }

    /// An error if an earlier publish failed (see [`StoreError::SealFailed`]).
    fn check_failed(&self) -> Result<(), StoreError> {
        if let Some(detail) = &self.sync_failed {
            return Err(StoreError::SyncFailed {
                path: self.parts.clone(),
                detail: detail.clone(),
            });
        }
        match &self.failed {
            None => Ok(()),
            Some((path, detail)) => Err(StoreError::SealFailed {
                path: path.clone(),
                detail: detail.clone(),
            }),
        }
    }

    /// Appends the carried copies `held` (from [`held_records`]) to the log
    /// of partition `end` (flag CARRIED; creating it, or a new segment of it
    /// if it is sealed), in the kernel on return, durable after the next
    /// flush or once that segment is published (which is why the sealed log
    /// is deleted only then). Returns the segment carried into, `None` if
    /// nothing was held.
    fn append_carried(
        &mut self,
        end: i64,
        held: &[Record],
    ) -> Result<Option<(i64, u32)>, StoreError> {
        if held.is_empty() {
            return Ok(None);
        }
        let n = held.len() as u64;
        let log = self.log_for(end)?;
        log.append_records(held)?;
        log.write_out()?;
        let into = (end, log.segment);
        self.stats.carried += n;
        self.stats.bytes_written += n * RECORD_SIZE as u64;
        Ok(Some(into))
    }
}

/// The mappings of the sorted, reduced `records` of partition `start` still
/// held at its end, encoded with [`SF_CARRIED`] for the next partition's log,
/// and how many `Open` ones were not carried because `carry_open` is false.
/// (A seal finds the same as its reduce keeps each record: [`HeldScan`].)
fn held_records(
    records: &[Record],
    start: i64,
    span_ns: i64,
    hold: &HoldTimes,
    carry_open: bool,
) -> (Vec<Record>, u64) {
    let mut scan = HeldScan::new(start, span_ns, *hold, carry_open);
    for r in records {
        scan.see(r);
    }
    (scan.held, scan.open_not_carried)
}

/// The carry's scan ([`held_records`]) fed one kept record at a time, in
/// sealed order, as the seal's reduce keeps it (while it is in the cache;
/// each half of a split seal on its own thread, the second half's list
/// appended to the first's: the same list).
pub(crate) struct HeldScan {
    /// The partition's end; `None` past [`EVENT_NS_MAX`]: nothing held.
    end: Option<i64>,
    /// For each [`hold_class`], the `last_ns` below which an ended record
    /// of it is not held at `end`: `end` less the class's longest hold
    /// (`saturating_sub`; the same test as `last + hold < end` with a
    /// saturating add, made once a seal, not a multiply a record).
    skip_below: [i64; HOLD_CLASSES],
    hold: HoldTimes,
    carry_open: bool,
    held: Vec<Record>,
    open_not_carried: u64,
}

impl HeldScan {
    fn new(start: i64, span_ns: i64, hold: HoldTimes, carry_open: bool) -> HeldScan {
        let end = start + span_ns;
        HeldScan {
            end: (end <= EVENT_NS_MAX).then_some(end),
            skip_below: std::array::from_fn(|c| end.saturating_sub(class_hold_ns(&hold, c))),
            hold,
            carry_open,
            held: Vec::new(),
            open_not_carried: 0,
        }
    }

    /// An empty scan of the same partition (for the other half).
    fn fresh(&self) -> HeldScan {
        HeldScan {
            held: Vec::new(),
            open_not_carried: 0,
            ..*self
        }
    }

    /// Appends the scan of the records after this one's.
    fn append(&mut self, later: HeldScan) {
        self.held.extend_from_slice(&later.held);
        self.open_not_carried += later.open_not_carried;
    }

    /// Looks at the next kept record.
    #[inline(always)]
    fn see(&mut self, r: &Record) {
        let Some(end) = self.end else {
            return;
        };
        // An ended record whose last packet is further back than the
        // longest hold of its protocol and state is not held at `end`:
        // skipped without decoding (most records of a partition).
        if r.end != EndReason::Open as u8 && r.last_ns.get() < self.skip_below[hold_class(r)] {
            return;
        }
        self.see_decoded(r, end);
    }

    /// A kept record that may be held at `end`: the exact check, and the
    /// carried copy, from its bytes (no mapping decoded and encoded again:
    /// [`held_until_ns`], [`Record::carried_copy`]).
    #[inline(never)]
    fn see_decoded(&mut self, r: &Record, end: i64) {
        // Checked as read back (or encoded by us): `fields_ok`.
        debug_assert!(r.fields_ok(), "records were encoded or recovered checked");
        let keep = match held_until_ns(&self.hold, r) {
            None if !self.carry_open => {
                self.open_not_carried += 1;
                false
            }
            None => true,
            Some(h) => h >= end,
        };
        if keep {
            self.held.push(r.carried_copy());
        }
    }
}

/// [`HoldTimes::held_until_ns`] of the mapping a record holds, from its
/// bytes ([`HoldTimes::hold_ns_of`] of its fields; a property test). A
/// record [`Record::fields_ok`] refuses is never given; an unknown protocol
/// or end code would take the longest hold.
fn held_until_ns(hold: &HoldTimes, r: &Record) -> Option<UnixNanos> {
    if r.end == EndReason::Open as u8 {
        return None;
    }
    let last = r.last_ns.get();
    let h = match (Proto::from_number(r.proto), EndReason::from_code(r.end)) {
        (Some(proto), Some(end)) => {
            hold.hold_ns_of(proto, end, r.first_ns.get(), last, r.packets_in.get())
        }
        _ => hold.max_ns(),
    };
    Some(last.saturating_add(h))
}

/// A seal thread's work: the previous partition's carry appended (if
/// chained), the log read back and reduced, this partition's carry sent, the
/// `.part` encoded (published after, [`publish_batch`]). The carry is sent
/// before the encode so the next partition waits only for the reduce; if the
/// thread fails before sending it, the channel closes and the writer
/// reports this thread's error.
fn seal_log(log: &mut ActiveLog, mut job: SealJob) -> Result<Encoded, StoreError> {
    // The scratch goes back to the writer when `back` is dropped: below,
    // once the partition is encoded, or on an early return or a panic.
    let mut back = job.scratch;
    let Scratch { records, index } = back.scratch.as_mut().expect("lent until dropped");
    let (mut carried_in, mut open_at_seal_all_in) = (0, 0);
    if let Some(rx) = job.carry_in.take() {
        let c = rx.recv().map_err(|_| StoreError::SealFailed {
            path: job.part.clone(),
            detail: "the previous partition's seal stopped before its carry".into(),
        })?;
        log.append_records(&c.records)?;
        log.write_out()?;
        carried_in = c.records.len() as u64;
        open_at_seal_all_in = c.open_at_seal_all;
    }
    let mut scan = HeldScan::new(job.start, job.span_ns, job.hold, job.carry_open);
    // The second half of a split seal's kept records (empty otherwise).
    let mut records_b = std::mem::take(&mut job.records_b);
    // The prefix fields' ranges are folded in as the CRCs are checked.
    let (committed, ranges_a, ranges_b) =
        log.committed_folding(job.two_threads, |g: &mut Ranges, rs| g.see(rs))?;
    reduce_into(
        committed.records(),
        Some(ranges_a.merge(&ranges_b)),
        index,
        records,
        &mut records_b,
        job.two_threads,
        &mut scan,
    );
    // Reduced (the kept records copied out): the map stays with the log,
    // and with its file if the file is used again (`Chore::Recycle`), so a
    // later seal of the file reads its pages with no fault (bigstore 4 M:
    // the log maps' faults, mapping and unmapping were ~5 % of the seal
    // threads' samples).
    log.keep_map(committed);
    let (held, open_at_seal_all) = (scan.held, scan.open_not_carried);
    if index.capacity() > SEAL_SCRATCH_KEEP_RECORDS {
        // Too large to keep: freed before the publish allocates its output,
        // on a thread of its own (unmapping 30 MB at 10 M records took ~3 ms
        // of this thread, between its two-thread phases). The encoder's
        // scratch is kept.
        let big = SealIndex {
            encode: std::mem::take(&mut index.encode),
            ..SealIndex::default()
        };
        let bytes = index.capacity() * 16;
        free_behind(std::mem::replace(index, big), bytes);
    }
    let carried_out = held.len() as u64;
    // The receiver may be gone (the writer stopped): nothing to carry into.
    let _ = job.carry_out.send(Carry {
        records: held,
        open_at_seal_all,
    });
    let parts = encode_sealed(
        job.start,
        job.span_ns,
        job.segment,
        records,
        &records_b,
        &mut index.encode,
    );
    // The kept records the writer will not keep as scratch (the second half's
    // always) are freed while the file is written and fsynced, instead of on
    // the writer's thread, beside the log's removal (~12 ms at 10 M records).
    if records.capacity() > SEAL_SCRATCH_KEEP_RECORDS {
        let bytes = records.capacity() * RECORD_SIZE;
        free_behind(std::mem::take(records), bytes);
    }
    let bytes = records_b.capacity() * RECORD_SIZE;
    free_behind(std::mem::take(&mut records_b), bytes);
    // Encoded: the scratch goes back now, so the writer can lend it to the
    // next seal while the `.part` waits for the disk.
    drop(back);
    Ok(Encoded {
        part: job.part,
        parts,
        records_b,
        carried_out,
        carried_in,
        open_at_seal_all_in,
    })
}

/// Buffers of at least this many bytes are freed by [`free_behind`] on a
/// thread of their own.
const FREE_BEHIND_BYTES_MIN: usize = 4 << 20;

/// Frees `buf` (`bytes` of memory): a large one (tens of MB: milliseconds
/// of `munmap`) on a short-lived thread of its own (`natrec-free`), so the
/// thread that lets it go need not wait; a small one, or when no thread can
/// be started, here.
fn free_behind<T: Send + 'static>(buf: T, bytes: usize) {
    if bytes < FREE_BEHIND_BYTES_MIN {
        return;
    }
    // A failed spawn drops the closure, and the buffer with it, here.
    let _ = std::thread::Builder::new()
        .name("natrec-free".into())
        .spawn(move || drop(buf));
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Best effort: an error here has nowhere to go; callers that care
        // call flush() or seal_all() first and see it.
        let _ = self.flush();
        // The spare log too, while the store's lock is still held (the lock
        // is dropped before the background thread: a next writer must not
        // find this one still removing files).
        let _ = self.chores.remove_spares();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{natural_key, supersedes};
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// `reduce_with` into fresh buffers, the two sides joined (the first
    /// side's records, then the second's), as the seal writes them.
    fn reduce_joined(
        records: &[Record],
        ranges: Option<Ranges>,
        path: IndexPath,
        scan: &mut HeldScan,
    ) -> Vec<Record> {
        let (mut out, mut out_b) = (Vec::new(), Vec::new());
        reduce_with(
            records,
            ranges,
            &mut SealIndex::default(),
            &mut out,
            &mut out_b,
            path,
            scan,
        );
        out.append(&mut out_b);
        out
    }

    /// The reduction as first written (decode everything into a hash map):
    /// the model the index-based [`reduce`] must agree with.
    fn reduce_model(records: &[Record]) -> Vec<Record> {
        let mut best: HashMap<_, (Mapping, Record, bool)> = HashMap::new();
        for &r in records {
            let m = r.decode().unwrap();
            let late = r.store_flags & SF_LATE != 0;
            match best.entry(natural_key(&m)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((m, r, late));
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let (om, or, olate) = *o.get();
                    let tie = !supersedes(&m, &om) && !supersedes(&om, &m);
                    let own_beats_carried =
                        or.store_flags & SF_CARRIED != 0 && r.store_flags & SF_CARRIED == 0;
                    if supersedes(&m, &om) || (tie && own_beats_carried) {
                        o.insert((m, r, late || olate));
                    } else {
                        o.get_mut().2 |= late;
                    }
                }
            }
        }
        let mut out: Vec<Record> = best
            .into_values()
            .map(|(m, r, late)| {
                if late && r.store_flags & SF_LATE == 0 {
                    Record::encode(&m, (r.store_flags & SF_CARRIED) | SF_LATE).unwrap()
                } else {
                    r
                }
            })
            .collect();
        out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        out
    }

    proptest! {
        /// The carry's scan (its skip test by class, its hold from the
        /// bytes, its carried copies) keeps what decoding every record
        /// keeps: `HoldTimes::held_until_ns` of the mapping at least the
        /// partition's end, open ones as `carry_open` says, each encoded
        /// again with `SF_CARRIED`; last packets at and around each hold's
        /// edge.
        #[test]
        fn held_scan_equals_decoding_every_record(
            raw in prop::collection::vec(
                (
                    prop::sample::select(vec![Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6]),
                    0u8..7,
                    0u32..2,
                    prop::sample::select(vec![0i64, 30, 120, 7440]),
                    -2i64..=2,
                    0i64..5_000_000_000,
                    prop::sample::select(vec![0u8, SF_CARRIED, SF_LATE]),
                ),
                0..40,
            ),
            carry_open in any::<bool>(),
        ) {
            let ns = crate::model::NANOS_PER_SEC;
            let (start, span) = (3_600 * ns, 3_600 * ns);
            let end = start + span;
            let hold = HoldTimes::default();
            let mappings: Vec<(Mapping, u8)> = raw
                .iter()
                .enumerate()
                .map(|(i, &(proto, code, packets_in, edge_s, off, dur, sf))| {
                    let last_ns = end - edge_s * ns + off;
                    (
                        Mapping {
                            proto,
                            internal: std::net::SocketAddr::new([100, 64, 0, 1].into(), 1000 + i as u16),
                            public: "203.0.113.1:5000".parse().unwrap(),
                            remote: "[2001:db8::1]:443".parse().unwrap(),
                            first_ns: last_ns - dur,
                            last_ns,
                            end: EndReason::from_code(code).unwrap(),
                            packets_out: 1,
                            packets_in,
                            flags: 0,
                        },
                        sf,
                    )
                })
                .collect();
            let records: Vec<Record> =
                mappings.iter().map(|(m, sf)| Record::encode(m, *sf).unwrap()).collect();
            let (mut want, mut open) = (Vec::new(), 0u64);
            for (m, _) in &mappings {
                let keep = match hold.held_until_ns(m) {
                    None if !carry_open => {
                        open += 1;
                        false
                    }
                    None => true,
                    Some(h) => h >= end,
                };
                if keep {
                    want.push(Record::encode(m, SF_CARRIED).unwrap());
                }
            }
            prop_assert_eq!(held_records(&records, start, span, &hold, carry_open), (want, open));
        }
    }

    proptest! {
        /// The carry's skip test by the class's `last_ns` threshold is the
        /// test it replaced (`last + bound < end`, saturating), at any
        /// times and holds, near the ends of the range too.
        #[test]
        fn skip_below_is_last_plus_bound_before_end(
            last in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), -10i64..10],
            end in prop_oneof![any::<i64>(), Just(EVENT_NS_MAX), Just(i64::MIN), -10i64..10],
            secs in prop_oneof![Just(0u32), any::<u32>(), Just(u32::MAX), 0u32..10],
        ) {
            let bound = i64::from(secs) * crate::model::NANOS_PER_SEC;
            prop_assert_eq!(last < end.saturating_sub(bound), last.saturating_add(bound) < end);
        }
    }

    /// The carry's skip test never skips a held record: the bound is at
    /// least the hold of every protocol, state, direction and duration.
    #[test]
    fn hold_bound_is_at_least_the_hold() {
        let hold = HoldTimes::default();
        for proto in [Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6] {
            for end in (0..=6).filter_map(EndReason::from_code) {
                for (packets_in, dur_s) in [(0, 0), (0, 5), (1, 0), (1, 1), (1, 3), (9, 600)] {
                    let m = Mapping {
                        proto,
                        internal: "100.64.0.1:1000".parse().unwrap(),
                        public: "203.0.113.1:5000".parse().unwrap(),
                        remote: "198.51.100.1:443".parse().unwrap(),
                        first_ns: 0,
                        last_ns: dur_s * crate::model::NANOS_PER_SEC,
                        end,
                        packets_out: 1,
                        packets_in,
                        flags: 0,
                    };
                    let r = Record::encode(&m, 0).unwrap();
                    assert!(hold_bound_ns(&hold, &r) >= hold.hold_ns(&m), "{m:?}");
                }
            }
        }
    }

    /// Two mappings with the same public endpoint and first packet (two
    /// subscribers towards different remotes, or different internal ports)
    /// share a run of the sorted index: the run is split by the full key,
    /// never merged into one mapping, on every index path.
    #[test]
    fn same_prefix_mappings_split_the_run() {
        let m = |iport: u16, end: EndReason, last: i64| Mapping {
            proto: Proto::Udp,
            internal: std::net::SocketAddr::new("100.64.0.1".parse().unwrap(), iport),
            public: "203.0.113.1:5000".parse().unwrap(),
            remote: "198.51.100.1:443".parse().unwrap(),
            first_ns: 10,
            last_ns: last,
            end,
            packets_out: 1,
            packets_in: 0,
            flags: 0,
        };
        let records: Vec<Record> = [
            m(1001, EndReason::Open, 10),
            m(1000, EndReason::Open, 10),
            m(1000, EndReason::Idle, 40),
            m(1001, EndReason::Idle, 30),
        ]
        .iter()
        .map(|x| Record::encode(x, 0).unwrap())
        .collect();
        for path in [
            IndexPath::Auto,
            IndexPath::Radix,
            IndexPath::Wide,
            IndexPath::Split,
        ] {
            let mut scan = HeldScan::new(0, 1, HoldTimes::default(), true);
            let out = reduce_joined(&records, None, path, &mut scan);
            assert_eq!(out.len(), 2);
            assert_eq!(
                (scan.held, scan.open_not_carried),
                held_records(&out, 0, 1, &HoldTimes::default(), true)
            );
            assert_eq!(out, reduce_model(&records), "{path:?}");
        }
    }

    /// A split seal whose sample of the keys' top digit saw one bucket
    /// only (an outlier address between the sampled records) leaves one side
    /// empty and sorts on one thread: each mapping's states still reduce in
    /// log order (two states of equal rank: the first kept), as the model.
    /// Before round 12 (seal11) the keys built from both ends were sorted
    /// as if in slot order, which kept the later state.
    #[test]
    fn split_seal_with_one_side_empty_keeps_log_order() {
        // 16 mappings share each of 1 024 first times (a prefix run of 32
        // states, the sort's last level on the first time's 10 bits).
        let m = |j: u32, packets_out: u32, public: &str| Mapping {
            proto: Proto::Udp,
            internal: std::net::SocketAddr::new(
                "100.64.0.1".parse().unwrap(),
                1000 + (j / 1024) as u16,
            ),
            public: public.parse().unwrap(),
            remote: "198.51.100.1:443".parse().unwrap(),
            first_ns: i64::from(j % 1024),
            last_ns: 5000,
            end: EndReason::Idle,
            packets_out,
            packets_in: 0,
            flags: 0,
        };
        // Two states of equal rank for each mapping, adjacent in the log;
        // the outlier at slot 1, which the sample (every second record)
        // does not see.
        let mut ms = vec![m(0, 1, "203.0.113.5:7000"), m(0, 9, "10.0.0.1:7000")];
        for j in 1..=SPLIT_SAMPLE as u32 {
            ms.push(m(j, 1, "203.0.113.5:7000"));
            ms.push(m(j, 2, "203.0.113.5:7000"));
        }
        assert!(ms.len() / SPLIT_SAMPLE >= 2, "the sample skips records");
        let records: Vec<Record> = ms.iter().map(|x| Record::encode(x, 0).unwrap()).collect();
        let want = reduce_model(&records);
        for path in [IndexPath::Auto, IndexPath::Split] {
            let mut scan = HeldScan::new(0, 1, HoldTimes::default(), true);
            let out = reduce_joined(&records, None, path, &mut scan);
            assert!(out == want, "{path:?}");
        }
    }

    /// A partition past `SEAL_SPLIT_RECORDS_MIN` reduces to the same records
    /// on two threads as on one (the size seal_all splits at, not the
    /// forced split of the property test).
    /// The split seal's keys written straight into the two sides (each
    /// half of the log from both ends, then the swap that joins the first
    /// side), with the cut anywhere from none to most of the records on
    /// either side: the same records as one thread and the model.
    #[test]
    fn split_sides_of_any_sizes_reduce_as_one_thread() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for skew in [0u64, 1, 3, 7, 8, 9] {
            for n in [2usize, 3, 5, 17, 64, 255, 1000, 3000] {
                let records: Vec<Record> = (0..n)
                    .map(|_| {
                        let r = next();
                        // `skew` of every 8 records on one address, low (the
                        // first side large, or all of it) or high (skew 3:
                        // the second side large).
                        let ip = if r % 8 < skew.min(8) {
                            1
                        } else {
                            (r >> 8) as u32 % 4096
                        };
                        let ip = if skew == 3 { u32::MAX - ip } else { ip };
                        let m = Mapping {
                            proto: Proto::Tcp,
                            internal: "100.64.0.1:1000".parse().unwrap(),
                            public: std::net::SocketAddr::new(
                                std::net::Ipv4Addr::from(ip).into(),
                                1024 + (r >> 24) as u16 % 4 * u16::from(skew != 9),
                            ),
                            remote: "198.51.100.1:443".parse().unwrap(),
                            // Skew 9: one prefix in all (no cut: one side).
                            first_ns: (r >> 40) as i64 % 3 * i64::from(skew != 9),
                            last_ns: 10 + (r >> 50) as i64 % 5,
                            end: EndReason::Open,
                            packets_out: 1,
                            packets_in: 0,
                            flags: 0,
                        };
                        Record::encode(&m, 0).unwrap()
                    })
                    .collect();
                let model = reduce_model(&records);
                for path in [IndexPath::Auto, IndexPath::Split] {
                    let mut scan = HeldScan::new(0, 1, HoldTimes::default(), true);
                    let out = reduce_joined(&records, None, path, &mut scan);
                    assert_eq!(out, model, "{path:?} n {n} skew {skew}");
                    // Scratch left by an earlier seal or made ready ahead
                    // (`Writer::warm_seal_scratch`): any contents, longer or
                    // shorter than this seal needs.
                    for extra in [0usize, 1, n + 5] {
                        let mut index = SealIndex {
                            keys: vec![u128::MAX - extra as u128; n / 2 + extra],
                            tmp: vec![0x5a5a_5a5a; n + extra],
                            ..SealIndex::default()
                        };
                        let mut out = vec![records[0]; extra];
                        let mut out_b = vec![records[n - 1]; n / 2 + extra];
                        let mut scan = HeldScan::new(0, 1, HoldTimes::default(), true);
                        reduce_with(
                            &records, None, &mut index, &mut out, &mut out_b, path, &mut scan,
                        );
                        out.append(&mut out_b);
                        assert_eq!(
                            out, model,
                            "{path:?} n {n} skew {skew}, used scratch {extra}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_partition_reduces_the_same_on_two_threads() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut records = Vec::new();
        while records.len() < SEAL_SPLIT_RECORDS_MIN + 5000 {
            let r = next();
            let m = Mapping {
                proto: if r & 1 == 0 { Proto::Udp } else { Proto::Tcp },
                internal: std::net::SocketAddr::new(
                    std::net::Ipv4Addr::from(0x6440_0000 | ((r >> 8) as u32 & 0xffff)).into(),
                    1024 + (r >> 24) as u16 % 512,
                ),
                public: std::net::SocketAddr::new(
                    std::net::Ipv4Addr::from(0xcb00_7100 | ((r >> 33) as u32 % 16)).into(),
                    1024 + (r >> 40) as u16 % 2048,
                ),
                remote: "198.51.100.1:443".parse().unwrap(),
                first_ns: (r >> 51) as i64 * 1_000,
                last_ns: (r >> 51) as i64 * 1_000 + 10,
                end: EndReason::Open,
                packets_out: 1,
                packets_in: 0,
                flags: 0,
            };
            records.push(Record::encode(&m, 0).unwrap());
            if r & 2 == 0 {
                let ended = Mapping {
                    end: EndReason::Idle,
                    last_ns: m.last_ns + 5,
                    ..m
                };
                records.push(Record::encode(&ended, 0).unwrap());
            }
        }
        // The carry's scan fed by the reduce on two threads lists the same
        // records as a scan of the reduced records (first times span ~8 ms:
        // a partition ending at 4 ms holds some).
        let hold = HoldTimes::default();
        for carry_open in [false, true] {
            let (mut one, mut two) = (Vec::new(), Vec::new());
            let mut scan_one = HeldScan::new(0, 4_000_000, hold, carry_open);
            let mut scan_two = HeldScan::new(0, 4_000_000, hold, carry_open);
            let (mut one_b, mut two_b) = (Vec::new(), Vec::new());
            reduce_into(
                &records,
                None,
                &mut SealIndex::default(),
                &mut one,
                &mut one_b,
                false,
                &mut scan_one,
            );
            reduce_into(
                &records,
                Some(Ranges::of(&records)),
                &mut SealIndex::default(),
                &mut two,
                &mut two_b,
                true,
                &mut scan_two,
            );
            // One thread keeps all in `one`; two keep a half in each.
            assert!(one_b.is_empty() && !two.is_empty() && !two_b.is_empty());
            two.append(&mut two_b);
            assert!(one.len() > SEAL_SPLIT_RECORDS_MIN / 2);
            assert_eq!(one, two);
            assert_eq!(one, reduce_model(&records));
            let want = held_records(&one, 0, 4_000_000, &hold, carry_open);
            assert!(!want.0.is_empty() && (carry_open || want.1 > 0));
            assert_eq!((scan_one.held, scan_one.open_not_carried), want);
            assert_eq!((scan_two.held, scan_two.open_not_carried), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// `held_until_ns` of a record's bytes is `HoldTimes::held_until_ns`
        /// of its mapping: every protocol and end code, UDP with and without
        /// replies on either side of the stream threshold, holds of any
        /// length (zero included) and times near the ends of the range.
        #[test]
        fn held_until_from_bytes_is_the_mappings(
            first in prop_oneof![any::<i64>(), -5_000_000_000i64..5_000_000_000],
            span in prop_oneof![0i64..5_000_000_000, Just(crate::model::UDP_STREAM_AFTER_NS), Just(crate::model::UDP_STREAM_AFTER_NS + 1)],
            packets_in in prop_oneof![Just(0u32), any::<u32>()],
            proto in prop::sample::select(vec![Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6]),
            end in 0u8..7,
            holds in prop::array::uniform5(prop_oneof![Just(0u32), 1u32..10_000, Just(u32::MAX)]),
        ) {
            let hold = HoldTimes {
                tcp_closed_s: holds[0],
                tcp_open_s: holds[1],
                udp_s: holds[2],
                udp_stream_s: holds[3],
                icmp_s: holds[4],
            };
            let m = Mapping {
                proto,
                internal: "100.64.0.2:5000".parse().unwrap(),
                public: "203.0.113.1:5000".parse().unwrap(),
                remote: "[2001:db8::9]:53".parse().unwrap(),
                first_ns: first,
                last_ns: first.saturating_add(span),
                end: EndReason::from_code(end).unwrap(),
                packets_out: 1,
                packets_in,
                flags: 0,
            };
            let r = Record::encode(&m, SF_LATE).unwrap();
            prop_assert_eq!(held_until_ns(&hold, &r), hold.held_until_ns(&m));
        }
    }

    proptest! {
        /// `same_key_rest` by words is the tuples' equality: any record,
        /// and the same with any one bit of any of its 96 bytes flipped
        /// (each byte in the comparison or out of it).
        #[test]
        fn same_key_rest_is_the_tuples_equality(
            bytes in prop::collection::vec(any::<u8>(), RECORD_SIZE),
            other in prop::collection::vec(any::<u8>(), RECORD_SIZE),
            bit in 0usize..RECORD_SIZE * 8,
        ) {
            use zerocopy::FromBytes;
            let a = Record::read_from_bytes(&bytes).unwrap();
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let b = Record::read_from_bytes(&flipped).unwrap();
            let c = Record::read_from_bytes(&other).unwrap();
            prop_assert!(same_key_rest(&a, &a));
            prop_assert_eq!(same_key_rest(&a, &b), key_rest(&a) == key_rest(&b), "bit {}", bit);
            prop_assert_eq!(same_key_rest(&a, &c), key_rest(&a) == key_rest(&c));
        }
    }

    proptest! {
        /// The keys of the two halves' layout by products
        /// ([`keys_counted`], [`halves_keys_counted`]) equal the general
        /// form's (`KeyMaker::key` with `halves` off: 128-bit shifts), and
        /// each key's top digit is counted as `TopCounts::see` counts it:
        /// public addresses in one to four nets (a net's first and last
        /// address among others: the compares at a net's first address) or
        /// anywhere in a range of the low word, any field widths of the
        /// layout (the high half's shift up to 64, where the general form
        /// makes them), the digit in the high half or across both.
        #[test]
        fn halves_keys_equal_the_general_form(
            nets_set in prop::collection::btree_set(0u64..1 << 20, 1..=NETS_MAX),
            net_base in prop::sample::select(vec![0u64, 1 << 30, (1 << 56) - (1 << 20)]),
            ranked in any::<bool>(),
            raw in prop::collection::vec(
                (any::<prop::sample::Index>(), prop::sample::select(vec![0u8, 1, 77, 255]), any::<u64>(), any::<u16>(), any::<u64>()),
                1..80,
            ),
            high_word in any::<u64>(),
            (ip_bits, port_bits) in (0u32..=48).prop_flat_map(|i| (Just(i), 0u32..=16)),
            first_bits in 0u32..=64,
            (ip_min_low, port_min, first_min) in (any::<u64>(), any::<u16>(), any::<u64>()),
            width in 1u32..=13,
        ) {
            let n = raw.len();
            let slot_bits = bits_of(n as u128 - 1);
            let first_bits = first_bits.min(64 - slot_bits);
            let nets: Vec<u64> = nets_set.iter().map(|&x| x + net_base).collect();
            let ip_bits = if ranked { ranked_bits(&Nets { nets: [0; NETS_MAX], len: nets.len() }) } else { ip_bits };
            let mask = |bits: u32| if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            // Minimums that leave room for the fields' ranges.
            let ip_min_low = ip_min_low.min(u64::MAX - mask(ip_bits));
            let port_min = port_min.min(u16::MAX - mask(port_bits) as u16);
            let first_min = first_min.min(u64::MAX - mask(first_bits));
            let records: Vec<Record> = raw
                .iter()
                .map(|&(net, byte, ip, port, first)| {
                    let low = if ranked {
                        nets[net.index(nets.len())] << NET_SHIFT | u64::from(byte)
                    } else {
                        ip_min_low + (ip & mask(ip_bits))
                    };
                    let mut r = <Record as zerocopy::FromZeros>::new_zeroed();
                    r.public_ip[..8].copy_from_slice(&high_word.to_be_bytes());
                    r.public_ip[8..].copy_from_slice(&low.to_be_bytes());
                    r.public_port.set(port_min + (u64::from(port) & mask(port_bits)) as u16);
                    r.first_ns.set(((first_min + (first & mask(first_bits))) ^ 1 << 63) as i64);
                    r
                })
                .collect();
            let mut padded = [u64::MAX; NETS_MAX];
            padded[..nets.len()].copy_from_slice(&nets);
            let (port_shift, first_shift) = (first_bits + slot_bits, slot_bits);
            let km = KeyMaker {
                halves: true,
                ranked,
                nets: padded,
                ip_min: u128::from(high_word) << 64 | u128::from(ip_min_low),
                port_min,
                first_min,
                port_bits,
                ip_shift: port_shift + port_bits,
                port_shift,
                first_shift,
            };
            let general = KeyMaker { halves: false, ..km };
            let top = slot_bits + first_bits + port_bits + ip_bits;
            prop_assume!(top > 0);
            let width = width.min(top);
            const N: usize = crate::radix::TOP_COUNTS_WIDE;
            let mut c = crate::radix::TopCounts::<N>::new(top - width, width);
            let mut want_c = crate::radix::TopCounts::<N>::new(top - width, width);
            let mut keys = Vec::new();
            keys_counted(&records, &km, &mut keys, &mut c);
            let want: Vec<u128> = records.iter().enumerate().map(|(i, r)| general.key(i, r)).collect();
            for &k in &want {
                // `top` is at most 128 (64 + 16 + 48 bits): a shift by 128
                // overflows, and every `u128` is below 2^128.
                prop_assert!(k.checked_shr(top).unwrap_or(0) == 0, "keys below 2^top");
                want_c.see(k);
            }
            prop_assert_eq!(&keys, &want);
            prop_assert_eq!(c.counts(), want_c.counts());
            // The baseline version of `halves_keys_counted` (`simd::v3!`)
            // too, where the CPU has x86-64-v3.
            let mut c = crate::radix::TopCounts::<N>::new(top - width, width);
            let mut keys = Vec::new();
            crate::simd::baseline(|| keys_counted(&records, &km, &mut keys, &mut c));
            prop_assert_eq!(&keys, &want, "baseline");
            prop_assert_eq!(c.counts(), want_c.counts(), "baseline");
        }
    }

    proptest! {
        /// The ranges folded over pieces by words equal those of whole
        /// addresses: IPv4 and IPv6 public addresses (high words equal,
        /// differing, or differing only in their low bytes) mixed in any
        /// proportion, cut into pieces anywhere.
        #[test]
        fn ranges_by_words_equal_whole_addresses(
            raw in prop::collection::vec((0usize..6, any::<u16>(), any::<u8>(), -5i64..5), 0..300),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let publics = [
                "203.0.113.1", "198.51.100.200", "2001:db8:1::1",
                "2001:db8:1::ffff:1", "2001:db8:2::1", "::1",
            ];
            let records: Vec<Record> = raw
                .iter()
                .map(|&(p, port, low, first)| {
                    let mut public: std::net::IpAddr = publics[p].parse().unwrap();
                    if let std::net::IpAddr::V4(a) = public {
                        let mut o = a.octets();
                        o[3] = low;
                        public = std::net::IpAddr::V4(o.into());
                    }
                    let m = Mapping {
                        proto: Proto::Udp,
                        internal: "100.64.0.1:1000".parse().unwrap(),
                        public: std::net::SocketAddr::new(public, port),
                        remote: "198.51.100.1:443".parse().unwrap(),
                        first_ns: first * 1_000_000_007,
                        last_ns: first * 1_000_000_007 + 5,
                        end: EndReason::Idle,
                        packets_out: 1,
                        packets_in: 1,
                        flags: 0,
                    };
                    Record::encode(&m, 0).unwrap()
                })
                .collect();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(records.len() + 1)).collect();
            at.push(0);
            at.push(records.len());
            at.sort_unstable();
            let (mut by_words, mut whole) = (Ranges::default(), Ranges::default());
            for w in at.windows(2) {
                by_words.see(&records[w[0]..w[1]]);
            }
            whole.see_whole(&records);
            prop_assert_eq!(by_words, whole);
        }

        /// The nets of the public addresses as a set: [`nets_of`] lists
        /// them ascending while there are at most `NETS_MAX`, as the ranges
        /// folded over pieces cut anywhere (`Ranges::see`) and the ranges of
        /// two halves merged do, and the ranked field orders and tells
        /// apart addresses as the addresses.
        #[test]
        fn nets_and_ranked_field_as_the_addresses(
            raw in prop::collection::vec((0usize..6, any::<u8>()), 1..100),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            half in any::<prop::sample::Index>(),
        ) {
            let nets_all: [u64; 6] = [0x0064_4000, 0x0064_4001, 0x00c6_3364, 0x00cb_0071, 0xff_ffcb_0072, 7];
            let low = |&(p, b): &(usize, u8)| nets_all[p] << NET_SHIFT | u64::from(b);
            let records: Vec<Record> = raw
                .iter()
                .map(|x| {
                    let mut r = <Record as zerocopy::FromZeros>::new_zeroed();
                    r.public_ip[8..].copy_from_slice(&low(x).to_be_bytes());
                    r
                })
                .collect();
            let set: std::collections::BTreeSet<u64> = raw.iter().map(|&(p, _)| nets_all[p]).collect();
            let got = nets_of(&records);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(records.len() + 1)).collect();
            at.extend([0, records.len()]);
            at.sort_unstable();
            let mut folded = Ranges::default();
            for w in at.windows(2) {
                folded.see(&records[w[0]..w[1]]);
            }
            prop_assert_eq!(folded.nets, got);
            let (x, y) = records.split_at(half.index(records.len() + 1));
            prop_assert_eq!(Ranges::of(x).merge(&Ranges::of(y)).nets, got);
            if set.len() > NETS_MAX {
                prop_assert_eq!(got, None);
            } else {
                let x = got.expect("few nets");
                prop_assert_eq!(x.len, set.len());
                prop_assert_eq!(&x.nets[..x.len], &set.iter().copied().collect::<Vec<_>>()[..]);
                prop_assert!(x.nets[x.len..].iter().all(|&y| y == u64::MAX));
                for a in &raw {
                    let fa = rank_field(&x.nets, low(a));
                    prop_assert!(fa < 1 << ranked_bits(&x));
                    for b in &raw {
                        prop_assert_eq!(fa.cmp(&rank_field(&x.nets, low(b))), low(a).cmp(&low(b)));
                    }
                }
            }
        }

        /// Public addresses in a few nets far apart (the ranked address
        /// field) or more (the address less the least), IPv4 and IPv6:
        /// every index path reduces as the model.
        #[test]
        fn ranked_address_reduce_equals_the_hash_map_model(
            raw in prop::collection::vec(
                (0usize..6, 0u8..4, 0u16..3, 0i64..3, 0u8..3, 0u8..2),
                0..200,
            ),
            v6 in any::<bool>(),
        ) {
            let publics: [&str; 6] = if v6 {
                ["2001:db8::100", "2001:db8::300", "2001:db8::1:0", "2001:db8:0:0:1::", "2001:db8::200", "2001:db8::101"]
            } else {
                ["100.64.0.0", "100.64.1.0", "198.51.100.0", "203.0.113.0", "100.65.0.0", "100.64.0.0"]
            };
            let records: Vec<Record> = raw
                .iter()
                .map(|&(p, last, port, first, end, carried)| {
                    let mut public: std::net::IpAddr = publics[p].parse().unwrap();
                    match &mut public {
                        std::net::IpAddr::V4(a) => {
                            let mut o = a.octets();
                            o[3] = [0, 1, 7, 255][last as usize];
                            *a = o.into();
                        }
                        std::net::IpAddr::V6(a) => {
                            let mut o = a.octets();
                            o[15] = [0, 1, 7, 255][last as usize];
                            *a = o.into();
                        }
                    }
                    let m = Mapping {
                        proto: Proto::Udp,
                        internal: "100.64.0.1:1000".parse().unwrap(),
                        public: std::net::SocketAddr::new(public, 5000 + port),
                        remote: "198.51.100.1:443".parse().unwrap(),
                        first_ns: first,
                        last_ns: first + 5,
                        end: [EndReason::Open, EndReason::Fin, EndReason::Idle][end as usize],
                        packets_out: 1,
                        packets_in: 1,
                        flags: 0,
                    };
                    Record::encode(&m, if carried == 1 { SF_CARRIED } else { 0 }).unwrap()
                })
                .collect();
            let model = reduce_model(&records);
            let hold = HoldTimes::default();
            for path in [IndexPath::Auto, IndexPath::Radix, IndexPath::Wide, IndexPath::Split] {
                let mut scan = HeldScan::new(0, 2, hold, true);
                let ranges = Some(Ranges::of(&records)).filter(|_| path != IndexPath::Split);
                let out = reduce_joined(&records, ranges, path, &mut scan);
                prop_assert_eq!(&out, &model, "{:?}", path);
            }
        }

        /// Few distinct values per field, so records share natural keys,
        /// sort prefixes and ranks, and ties and carried/late copies meet.
        #[test]
        fn index_reduce_equals_the_hash_map_model(
            raw in prop::collection::vec(
                (0u8..2, 0u8..3, 0u8..2, 0u8..2, 0u8..3, 0i64..3, 0i64..3, 0u8..3, 0u8..4, 0u8..2, 0u8..3),
                0..200,
            ),
            first_scale in prop::sample::select(vec![1i64, 1 << 20, 1 << 45]),
        ) {
            let records: Vec<Record> = raw
                .iter()
                .map(|&(proto, iport, v6, pport, rip, first, dur, end, sf, pin, pip)| {
                    let ip = |v4: &str, v6s: &str| -> std::net::IpAddr {
                        if v6 == 1 { v6s.parse().unwrap() } else { v4.parse().unwrap() }
                    };
                    let m = Mapping {
                        proto: if proto == 0 { Proto::Udp } else { Proto::Tcp },
                        internal: std::net::SocketAddr::new(ip("100.64.0.1", "fd00::1"), 1000 + u16::from(iport)),
                        public: std::net::SocketAddr::new(
                            ["203.0.113.1", "203.0.113.2", "2001:db8:1::1"][pip as usize].parse().unwrap(),
                            5000 + u16::from(pport) * 60000,
                        ),
                        remote: std::net::SocketAddr::new(ip(&format!("198.51.100.{rip}"), &format!("2001:db8::{rip}")), 443),
                        first_ns: first * first_scale,
                        last_ns: first * first_scale + dur,
                        end: [EndReason::Open, EndReason::Fin, EndReason::Idle][end as usize],
                        packets_out: 1,
                        packets_in: u32::from(pin),
                        flags: 0,
                    };
                    let flags = [0, SF_CARRIED, SF_LATE, SF_CARRIED | SF_LATE][sf as usize];
                    Record::encode(&m, flags).unwrap()
                })
                .collect();
            let model = reduce_model(&records);
            // The carry's scan as the reduce feeds it: what a scan of the
            // model's records finds (a partition ending at 2 ns: the
            // short-lived records are not held, the open ones are).
            let hold = HoldTimes { tcp_closed_s: 0, udp_s: 0, udp_stream_s: 0, ..HoldTimes::default() };
            for carry_open in [false, true] {
                let want = held_records(&model, 0, 2, &hold, carry_open);
                for path in [IndexPath::Auto, IndexPath::Radix, IndexPath::Wide, IndexPath::Split] {
                    let mut scan = HeldScan::new(0, 2, hold, carry_open);
                    // The ranges computed, or given as the read-back folds them.
                    let ranges = carry_open.then(|| Ranges::of(&records));
                    let out = reduce_joined(&records, ranges.clone(), path, &mut scan);
                    prop_assert_eq!(&out, &model, "{:?}", path);
                    prop_assert_eq!((&scan.held, scan.open_not_carried), (&want.0, want.1), "{:?}", path);
                    // The same with the baseline versions of the
                    // multiversioned functions (`simd::v3!`) on this thread,
                    // where the CPU has x86-64-v3 (the split path's second
                    // thread runs the versions the CPU has).
                    let mut scan = HeldScan::new(0, 2, hold, carry_open);
                    let out = crate::simd::baseline(|| reduce_joined(&records, ranges, path, &mut scan));
                    prop_assert_eq!(&out, &model, "baseline {:?}", path);
                    prop_assert_eq!((&scan.held, scan.open_not_carried), (&want.0, want.1), "baseline {:?}", path);
                }
            }
        }
    }

    /// The periodic flush and its crash points (docs/FORMAT.md, "Crash
    /// points"): the `fdatasync` runs on the background thread, a failure
    /// stops the writer and is never retried, and no sealed log is removed
    /// after a sync that failed.
    mod sync_behind {
        use crate::chores::Chore;
        use crate::format::{file_name, FileKind};
        use crate::model::{EndReason, Mapping, Proto};
        use crate::{Query, Store, StoreConfig, StoreError};

        const S: i64 = 1_000_000_000;
        const H: i64 = 3600 * S;
        /// 2026-03-01T00:00:00Z.
        const T0: i64 = 1_772_323_200 * S;

        fn store(dir: &std::path::Path, flush_interval_ms: u32) -> Store {
            Store::create(
                &dir.join("store"),
                StoreConfig {
                    flush_interval_ms,
                    ..StoreConfig::default()
                },
            )
            .unwrap()
        }

        fn tcp(port: u16, first: i64, last: i64, end: EndReason) -> Mapping {
            Mapping {
                proto: Proto::Tcp,
                internal: format!("100.64.0.2:{port}").parse().unwrap(),
                public: format!("203.0.113.7:{port}").parse().unwrap(),
                remote: "198.51.100.9:443".parse().unwrap(),
                first_ns: first,
                last_ns: last,
                end,
                packets_out: 3,
                packets_in: 2,
                flags: 0,
            }
        }

        fn holders(store: &Store, port: u16, t: i64) -> usize {
            let o = store
                .reader()
                .lookup(&Query::at("203.0.113.7".parse().unwrap(), port, t))
                .unwrap();
            assert!(o.errors.is_empty(), "{:?}", o.errors);
            o.holders.len()
        }

        /// Checks that port `1000 + h` is held at `T0 + h H + 10 s` for each
        /// hour `h` up to `hours`, then returns the store's `.part` files
        /// (name, bytes) in name order.
        fn hours_held_and_parts(store: &Store, hours: i64) -> Vec<(String, Vec<u8>)> {
            for h in 0..=hours {
                assert_eq!(holders(store, 1000 + h as u16, T0 + h * H + 10 * S), 1);
            }
            let parts = store.dir().join("partitions");
            crate::store::list_partitions(&parts)
                .unwrap()
                .iter()
                .map(|f| (f.name.clone(), std::fs::read(&f.path).unwrap()))
                .collect()
        }

        fn log(store: &Store, start: i64) -> std::path::PathBuf {
            store
                .dir()
                .join("partitions")
                .join(file_name(start, 0, FileKind::Active))
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

            /// Batches appended in one `append_batches` call leave the same
            /// log bytes, count and error as one `append_batch` per batch
            /// (a refused mapping anywhere stops both at the same record),
            /// over several partitions and the log buffer's bound.
            #[test]
            fn append_batches_is_append_batch_per_batch(
                sizes in proptest::collection::vec(0usize..1500, 1..8),
                per_call in 1usize..5,
                bad_at in proptest::option::of(0usize..8000),
            ) {
                let n: usize = sizes.iter().sum();
                let ms: Vec<Mapping> = (0..n)
                    .map(|i| {
                        // Three hours, interleaved in runs of 7.
                        let t = T0 + ((i / 7) % 3) as i64 * H + i as i64 * 1000;
                        let mut m = tcp(1024 + (i % 5000) as u16, t, t + 5, EndReason::Fin);
                        if Some(i) == bad_at {
                            m.last_ns = m.first_ns - 1;
                        }
                        m
                    })
                    .collect();
                let mut batches = Vec::new();
                let mut at = 0;
                for k in &sizes {
                    batches.push(&ms[at..at + k]);
                    at += k;
                }
                let d = tempfile::tempdir().unwrap();
                let (sa, sb) = (store(&d.path().join("a"), u32::MAX), store(&d.path().join("b"), u32::MAX));
                let (mut wa, mut wb) = (sa.writer().unwrap(), sb.writer().unwrap());
                let mut ra = Ok(());
                for b in &batches {
                    ra = wa.append_batch(b);
                    if ra.is_err() {
                        break;
                    }
                }
                let mut rb = Ok(());
                for group in batches.chunks(per_call) {
                    rb = wb.append_batches(group.iter().copied());
                    if rb.is_err() {
                        break;
                    }
                }
                proptest::prop_assert_eq!(ra.is_err(), rb.is_err());
                proptest::prop_assert_eq!(wa.stats(), wb.stats());
                wa.flush().unwrap();
                wb.flush().unwrap();
                for h in 0..3 {
                    let (la, lb) = (log(&sa, T0 + h * H), log(&sb, T0 + h * H));
                    proptest::prop_assert_eq!(la.exists(), lb.exists());
                    if la.exists() {
                        proptest::prop_assert!(std::fs::read(&la).unwrap() == std::fs::read(&lb).unwrap());
                    }
                }
            }
        }

        /// The files of `partitions/` and `gaps/` (names and bytes), spare
        /// logs aside (made on the background thread whenever it gets to
        /// them). A log's record slots are listed sorted: where a carry
        /// lands among a log's own records depends on when its seal thread
        /// is done (the seal keeps the same records either way), with or
        /// without write-behind. A log is listed as its header without the
        /// generation (and header CRC) and its committed records with their
        /// CRC-32/IEEE: whether a log's file is new or a sealed log's used
        /// again (its generation, the old records after the new) depends on
        /// when the background thread got to the sealed log.
        fn files(store: &Store) -> Vec<(String, Vec<u8>)> {
            use crate::format::{HEADER_SIZE, RECORD_SIZE};
            let mut v: Vec<(String, Vec<u8>)> = ["partitions", "gaps"]
                .iter()
                .filter_map(|d| std::fs::read_dir(store.dir().join(d)).ok())
                .flatten()
                .map(|e| e.unwrap())
                // A file removed meanwhile (a sealed log, a temp name) is skipped.
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).ok()?,
                    ))
                })
                .filter(|(n, _)| !n.starts_with("spare-"))
                .map(|(n, b)| {
                    if !n.ends_with(".log") {
                        return (n, b);
                    }
                    let Ok(h) = crate::format::LogHeader::read(&b) else {
                        return (n, b);
                    };
                    let crc = h.record_crc();
                    let count = crate::partition::committed_slots(&b[HEADER_SIZE..], crc) as usize;
                    let mut slots: Vec<Vec<u8>> = b[HEADER_SIZE..]
                        .chunks(RECORD_SIZE)
                        .take(count)
                        .map(|s| {
                            crate::format::Record::read_with(s, crc)
                                .unwrap()
                                .as_bytes()
                                .to_vec()
                        })
                        .collect();
                    slots.sort();
                    let mut sorted = b[..36].to_vec();
                    sorted.extend(slots.concat());
                    (n, sorted)
                })
                .collect();
            v.sort();
            v
        }
        use zerocopy::IntoBytes;

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

            /// Write-behind changes no byte that can be observed: the same
            /// appends, clock moves (seals, carries, periodic syncs), gaps
            /// and flushes on two stores, one with write-behind, leave the
            /// same `.part` and gap files, byte for byte, and the same logs
            /// (names, headers, records: [`files`]) after every flush, and
            /// the same files and stats at the end (seal all, flush); and
            /// between flushes each active log of the write-behind store
            /// holds records up to a zero slot and none after it, the same
            /// bytes it holds once written out plus records after them: what
            /// a kill at that point leaves is a prefix of the records, which
            /// recovery reads as any log. With `warm`, the write-behind store
            /// also makes its seal scratch ready after every step
            /// ([`Writer::warm_seal_scratch`], as the replay's tail does):
            /// still the same bytes.
            #[test]
            fn write_behind_leaves_the_same_bytes(
                ops in proptest::collection::vec((0u8..13, 0usize..500, 0i64..300), 1..16),
                seed in 0u64..u64::MAX,
                sync_each_advance in proptest::bool::ANY,
                bad_at in proptest::option::of(0usize..20_000),
                warm in proptest::bool::ANY,
            ) {
                use crate::format::{HEADER_SIZE, RECORD_SIZE};
                let d = tempfile::tempdir().unwrap();
                let interval = if sync_each_advance { 0 } else { u32::MAX };
                let (sa, sb) = (store(&d.path().join("a"), interval), store(&d.path().join("b"), interval));
                let (mut wa, mut wb) = (sa.writer().unwrap(), sb.writer().unwrap());
                wb.set_write_behind(true).unwrap();
                let mut rng = seed | 1;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut now = T0;
                let mut made = 0usize;
                for (kind, size, dt) in ops {
                    now += dt * S * 10;
                    let (ra, rb) = match kind {
                        0..=7 => {
                            let ms: Vec<Mapping> = (0..size)
                                .map(|_| {
                                    // Mostly recent, some up to 3 h back (late
                                    // for sealed partitions), open or ended.
                                    let r = next();
                                    let back = if r % 8 == 0 { (r >> 8) as i64 % (3 * H) } else { (r >> 8) as i64 % (60 * S) };
                                    let first = (now - back).max(T0);
                                    let end = if r & 16 == 0 { EndReason::Open } else { EndReason::Fin };
                                    let last = if end == EndReason::Open { first } else { first + ((r >> 40) as i64 % (30 * S)) };
                                    let mut m = tcp(1024 + (next() % 20_000) as u16, first, last, end);
                                    if Some(made) == bad_at {
                                        m.last_ns = m.first_ns - 1;
                                    }
                                    made += 1;
                                    m
                                })
                                .collect();
                            (wa.append_batch(&ms), wb.append_batch(&ms))
                        }
                        8..=10 => (wa.advance(now), wb.advance(now)),
                        11 => (wa.flush(), wb.flush()),
                        _ => {
                            let g = crate::Gap {
                                from_ns: now - size as i64 * S,
                                to_ns: now,
                                count: size as u64,
                                kind: crate::GapKind::Queue,
                            };
                            (wa.append_gap(&g), wb.append_gap(&g))
                        }
                    };
                    proptest::prop_assert_eq!(ra.is_err(), rb.is_err());
                    if ra.is_err() {
                        break;
                    }
                    // The seal scratch made ready ahead (as the replay's
                    // tail does) changes no byte either.
                    while warm && wb.warm_seal_scratch() {}
                    // (Seals and carries are counted as their threads get
                    // done: compared after a flush.)
                    let (ta, tb) = (wa.stats(), wb.stats());
                    proptest::prop_assert_eq!(ta.records_appended, tb.records_appended);
                    proptest::prop_assert_eq!(ta.late_records, tb.late_records);
                    if kind == 11 {
                        proptest::prop_assert_eq!(ta, tb);
                        proptest::prop_assert!(files(&sa) == files(&sb));
                    } else {
                        // What a kill leaves now: each active log of the
                        // write-behind store holds records up to some slot,
                        // zero after it, and a write-out now (some steps)
                        // only adds records after those: a prefix.
                        let logs: Vec<(std::path::PathBuf, u64)> =
                            wb.active.values().map(|l| (l.path.clone(), l.count)).collect();
                        let before: Vec<Vec<u8>> =
                            logs.iter().map(|(p, _)| std::fs::read(p).unwrap()).collect();
                        let write_out = size % 4 == 0;
                        if write_out {
                            wb.write_out().unwrap();
                        }
                        // Records of the log's generation, that is: a
                        // file used again holds an earlier use's records
                        // after them, which are none of this log's.
                        for ((path, count), b) in logs.iter().zip(&before) {
                            let after = std::fs::read(path).unwrap();
                            let crc = crate::format::LogHeader::read(b).unwrap().record_crc();
                            let at = |x: &[u8], i: usize| x[HEADER_SIZE + i * RECORD_SIZE..][..RECORD_SIZE].to_vec();
                            let slots = (b.len() - HEADER_SIZE) / RECORD_SIZE;
                            let own = |x: &[u8], i: usize| crate::format::Record::read_with(&at(x, i), crc).is_ok();
                            let k = (0..slots).find(|&i| !own(b, i)).unwrap_or(slots);
                            proptest::prop_assert!(k as u64 <= *count);
                            proptest::prop_assert!(
                                (k..slots).all(|i| !own(b, i)),
                                "{}: a record after the slot {} that is not one", path.display(), k
                            );
                            proptest::prop_assert!(after[..HEADER_SIZE + k * RECORD_SIZE] == b[..HEADER_SIZE + k * RECORD_SIZE]);
                            if write_out {
                                let n = (0..slots).find(|&i| !own(&after, i)).unwrap_or(slots);
                                proptest::prop_assert_eq!(n as u64, *count);
                            }
                        }
                    }
                }
                let (ra, rb) = (wa.seal_all(), wb.seal_all());
                proptest::prop_assert_eq!(ra.is_err(), rb.is_err());
                wa.flush().unwrap();
                wb.flush().unwrap();
                proptest::prop_assert_eq!(wa.stats(), wb.stats());
                proptest::prop_assert!(files(&sa) == files(&sb));
                // Buffered records are read back too (`unclosed`).
                proptest::prop_assert_eq!(wa.unclosed().unwrap(), wb.unclosed().unwrap());
            }
        }

        /// `advance` hands the sync over and returns; `flush` waits for it
        /// (the acknowledgement), and a sealed log whose carried copies are
        /// in a log that sync covered is removed after it.
        #[test]
        fn periodic_sync_runs_behind_and_flush_waits_for_it() {
            let d = tempfile::tempdir().unwrap();
            // No periodic flush but the ones called here (no timing in tests).
            let store = store(d.path(), u32::MAX);
            let mut w = store.writer().unwrap();
            w.append(&tcp(1024, T0 + 10 * S, T0 + 10 * S, EndReason::Open))
                .unwrap();
            w.flush_behind().unwrap();
            assert!(w.sync_chore > 0, "the sync went to the thread");
            // Hour 0 sealed, its open mapping carried into hour 1.
            w.advance(T0 + H + 61 * S).unwrap();
            w.finish_carries().unwrap();
            w.finish_publishes(0).unwrap();
            assert_eq!(w.sealed_logs.len(), 1);
            assert!(log(&store, T0).exists());
            // The next periodic flush syncs hour 1's log, then removes hour 0's.
            w.flush_behind().unwrap();
            assert!(w.sealed_logs.is_empty());
            w.flush().unwrap();
            assert!(!log(&store, T0).exists());
            assert_eq!(holders(&store, 1024, T0 + H + 30 * S), 1);
            drop(w);
            let w = store.writer().unwrap();
            assert_eq!(w.stats().recovered_carries, 0);
        }

        /// A failed periodic `fdatasync`: the next call that looks (here
        /// `flush`, the acknowledgement) returns its error, every call after
        /// that `SyncFailed`; the removal queued after it is skipped, so the
        /// sealed log stays next to its `.part`; the next writer recovers
        /// (carries again from the `.part`, removes the log) and nothing is
        /// shown twice.
        #[test]
        fn failed_periodic_sync_stops_the_writer_and_is_not_retried() {
            let d = tempfile::tempdir().unwrap();
            let store = store(d.path(), u32::MAX);
            let mut w = store.writer().unwrap();
            let open = tcp(1024, T0 + 10 * S, T0 + 10 * S, EndReason::Open);
            w.append(&open).unwrap();
            w.advance(T0 + H + 61 * S).unwrap();
            w.finish_carries().unwrap();
            w.finish_publishes(0).unwrap();
            assert_eq!(w.sealed_logs.len(), 1);
            w.append(&tcp(
                1025,
                T0 + H + 70 * S,
                T0 + H + 70 * S,
                EndReason::Open,
            ))
            .unwrap();
            w.chores.fail_next_sync();
            // The periodic flush `advance` makes once the interval passed.
            w.cfg.flush_interval_ms = 0;
            w.advance(T0 + H + 80 * S).unwrap();
            let e = w.flush().unwrap_err();
            assert!(
                matches!(
                    &e,
                    StoreError::Io {
                        op: "fdatasync log",
                        ..
                    }
                ),
                "{e:?}"
            );
            for r in [
                w.flush(),
                w.append(&open),
                w.advance(T0 + H + 90 * S),
                w.seal_all(),
            ] {
                assert!(matches!(r, Err(StoreError::SyncFailed { .. })), "{r:?}");
            }
            drop(w);
            assert!(log(&store, T0).exists(), "removed after a failed sync");
            let mut w = store.writer().unwrap();
            assert_eq!(w.stats().recovered_carries, 1);
            assert!(!log(&store, T0).exists());
            w.seal_all().unwrap();
            assert_eq!(holders(&store, 1024, T0 + H + 30 * S), 1);
            assert_eq!(holders(&store, 1025, T0 + H + 75 * S), 1);
            assert!(store.reader().verify().unwrap().is_empty());
        }

        /// A sealed log's file (its `.part` published) becomes the next
        /// log's, with the next generation, and nothing of it is read as
        /// the next log's: each hour's lookups, the recovery of a log in a
        /// file used again, and the seals answer as with new files.
        #[test]
        fn sealed_logs_are_used_again_with_the_next_generation() {
            let d = tempfile::tempdir().unwrap();
            let store = store(d.path(), 1000);
            let generation = |start: i64| {
                let b = std::fs::read(log(&store, start)).unwrap();
                u32::from_le_bytes(b[36..40].try_into().unwrap())
            };
            let mut w = store.writer().unwrap();
            let mut seen = Vec::new();
            for h in 0..5i64 {
                let start = T0 + h * H;
                // More records in the first hour: later logs overwrite only
                // the first slots of the file, the rest are the first hour's.
                for i in 0..if h == 0 { 300 } else { 3 } {
                    let t = start + (10 + i) * S;
                    w.append(&tcp(1000 + h as u16, t, t + S, EndReason::Fin))
                        .unwrap();
                }
                // The file came with the map the last seal read it through.
                assert_eq!(w.active[&start].has_map(), h > 0, "hour {h}");
                w.flush().unwrap();
                seen.push(generation(start));
                assert_eq!(holders(&store, 1000 + h as u16, start + 10 * S), 1);
                w.seal_before(start + H).unwrap();
                // The sealed log renamed to a spare before the next log.
                w.chores.wait(w.chores.sent());
            }
            assert_eq!(seen, [1, 2, 3, 4, 5]);
            // The writer stops with the sixth hour's log (in the file of
            // all the others, generation 6) unsealed: the next writer
            // recovers its one record, none of the earlier hours'.
            let t = T0 + 5 * H;
            w.append(&tcp(1005, t + 10 * S, t + 11 * S, EndReason::Fin))
                .unwrap();
            w.flush().unwrap();
            assert_eq!(generation(t), 6);
            drop(w);
            let mut w = store.writer().unwrap();
            assert_eq!(w.stats().recovered_zeroed_slots, 299);
            assert_eq!(holders(&store, 1005, t + 10 * S), 1);
            assert_eq!(holders(&store, 1000, t + 10 * S), 0);
            w.seal_all().unwrap();
            for h in 0..6i64 {
                assert_eq!(
                    holders(&store, 1000 + h as u16, T0 + h * H + 10 * S),
                    1,
                    "hour {h}"
                );
            }
            assert!(store.reader().verify().unwrap().is_empty());
        }

        /// A failed removal (not "already gone") stops the writer too; one
        /// that finds the file gone is what it wanted.
        #[test]
        fn removal_of_a_missing_log_is_done_and_a_failed_one_stops() {
            let d = tempfile::tempdir().unwrap();
            let store = store(d.path(), u32::MAX);
            let mut w = store.writer().unwrap();
            w.chores.send(Chore::Remove(d.path().join("gone.log")));
            w.flush().unwrap();
            // A non-empty directory cannot be removed as a file.
            let dir = d.path().join("full");
            std::fs::create_dir_all(dir.join("x")).unwrap();
            w.chores.send(Chore::Remove(dir));
            assert!(matches!(
                w.flush(),
                Err(StoreError::Io { op: "remove", .. })
            ));
            assert!(matches!(
                w.append(&tcp(1, T0, T0, EndReason::Open)),
                Err(StoreError::SyncFailed { .. })
            ));
        }

        /// Spare logs: the second log is the spare made ahead (linked into
        /// place, its temp name removed on the background thread); a crash
        /// between the link and that removal leaves both names on one
        /// file, and the next writer deletes the temp name and keeps the
        /// log's records.
        #[test]
        fn a_spare_log_is_linked_into_place_and_its_temp_name_removed() {
            let d = tempfile::tempdir().unwrap();
            let store = store(d.path(), u32::MAX);
            let parts = store.dir().join("partitions");
            let tmp_files = || {
                std::fs::read_dir(&parts)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".tmp"))
                    .collect::<Vec<_>>()
            };
            let mut w = store.writer().unwrap();
            w.append(&tcp(1024, T0 + 10 * S, T0 + 10 * S, EndReason::Open))
                .unwrap();
            // The spare asked for by the first log's creation is made.
            w.chores.wait(w.chores.sent());
            assert_eq!(tmp_files(), vec!["spare-000001.log.tmp".to_string()]);
            let spare = parts.join("spare-000001.log.tmp");
            // The state a crash right after the link leaves: two names.
            let link = parts.join("spare-000099.log.tmp");
            w.append(&tcp(
                1025,
                T0 + H + 10 * S,
                T0 + H + 10 * S,
                EndReason::Open,
            ))
            .unwrap();
            w.flush().unwrap();
            assert!(!spare.exists(), "temp name removed");
            assert!(log(&store, T0 + H).exists());
            std::fs::hard_link(log(&store, T0 + H), &link).unwrap();
            drop(w);
            // The writer's drop removed the spare it had made for a third log.
            assert_eq!(tmp_files(), vec!["spare-000099.log.tmp".to_string()]);
            let mut w = store.writer().unwrap();
            assert!(!link.exists(), "recovery deletes every *.tmp");
            w.seal_all().unwrap();
            assert!(tmp_files().is_empty());
            assert_eq!(holders(&store, 1024, T0 + 20 * S), 1);
            assert_eq!(holders(&store, 1025, T0 + H + 20 * S), 1);
            assert!(store.reader().verify().unwrap().is_empty());
        }

        /// Seals waiting for the disk (their publish held back) do not hold
        /// the writer up: their scratch came back at their encode, so it
        /// hands over more due partitions (up to `PUBLISHES_IN_FLIGHT_MAX`)
        /// and goes on appending. Until round 15 the fifth seal waited for
        /// the first one's publish (four in flight, their scratch given back
        /// with it). Every seal is done, and the same, once the disk goes on.
        #[test]
        fn seals_waiting_for_the_disk_do_not_hold_the_writer_up() {
            use super::super::{PUBLISHES_IN_FLIGHT_MAX, SEAL_SCRATCH_LENT_MAX, SEAL_THREADS_MAX};
            use crate::fsutil::publish_gate;
            let hours = PUBLISHES_IN_FLIGHT_MAX as i64 - 1;
            assert!(hours as usize > SEAL_SCRATCH_LENT_MAX);
            let write = |dir: &std::path::Path, gate: bool| {
                let store = store(dir, u32::MAX);
                let parts = store.dir().join("partitions");
                let mut w = store.writer().unwrap();
                if gate {
                    publish_gate::close(&parts);
                }
                let (tx, rx) = std::sync::mpsc::channel();
                let handle = std::thread::spawn(move || {
                    for h in 0..=hours {
                        let t = T0 + h * H + 10 * S;
                        w.append(&tcp(1000 + h as u16, t, t + S, EndReason::Fin))
                            .unwrap();
                    }
                    // Every hour but the last due: `hours` seals handed over.
                    w.advance(T0 + hours * H + 2 * 60 * S).unwrap();
                    // Every one reduced and encoded (its scratch back), held
                    // publishes or not: no seal thread waits for the disk.
                    w.take_back_scratch(0);
                    tx.send(()).unwrap();
                    w
                });
                let went_on = rx.recv_timeout(std::time::Duration::from_secs(60));
                if gate {
                    // The publish threads (at most one per seal thread) wait
                    // at the gate, each before its first file; the rest of
                    // the `.part`s are queued.
                    let t0 = std::time::Instant::now();
                    while publish_gate::waiting(&parts) == 0 && t0.elapsed().as_secs() < 60 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    let waiting = publish_gate::waiting(&parts);
                    assert!(
                        (1..=SEAL_THREADS_MAX).contains(&waiting),
                        "{waiting} publishes wait"
                    );
                    publish_gate::open(&parts);
                }
                assert!(
                    went_on.is_ok(),
                    "the writer waited for a seal held at its publish, or a seal for the disk"
                );
                let mut w = handle.join().unwrap();
                assert_eq!(w.publishing.len() as i64, hours);
                w.seal_all().unwrap();
                assert!(w.seal_workers.threads.len() <= SEAL_THREADS_MAX);
                assert!(w.seal_workers.publishers.len() <= w.seal_workers.threads.len());
                // Every set lent came back (all given back by now: no wait).
                w.take_back_scratch(0);
                assert_eq!(w.scratch_lent, 0);
                drop(w);
                hours_held_and_parts(&store, hours)
            };
            let d = tempfile::tempdir().unwrap();
            let held = write(&d.path().join("held"), true);
            let free = write(&d.path().join("free"), false);
            assert_eq!(held.len() as i64, hours + 1, "one .part per hour");
            assert_eq!(held, free);
        }

        /// The seals handed over and unfinished hold at most
        /// `publish_records_max` log records between them: a seal that
        /// would pass it waits for the oldest first (here the bound fits two
        /// hours' logs, so two of four due hours stay in flight), and a
        /// seal larger than the bound alone is still handed over. The
        /// `.part`s are the same as with the default bound.
        #[test]
        fn seals_in_flight_hold_at_most_the_records_bound() {
            use super::super::PUBLISH_RECORDS_IN_FLIGHT_MAX;
            let hours = 4;
            let write = |dir: &std::path::Path, records_max: Option<u64>| {
                let store = store(dir, u32::MAX);
                let mut w = store.writer().unwrap();
                for h in 0..=hours {
                    for i in 0..3 {
                        let t = T0 + h * H + (10 + i) * S;
                        // Port 1000 + h first (`hours_held_and_parts`).
                        let port = if i == 0 { 1000 + h } else { 2000 + 10 * h + i };
                        w.append(&tcp(port as u16, t, t + S, EndReason::Fin))
                            .unwrap();
                    }
                }
                let per_hour = w.active.values().map(|l| l.count).max().unwrap();
                assert!(w.active.values().all(|l| l.count == per_hour));
                // Two hours' records fit, three do not (or not even one).
                let max = records_max.map(|twos| twos * per_hour);
                w.publish_records_max = max.unwrap_or(PUBLISH_RECORDS_IN_FLIGHT_MAX);
                // Every hour but the last due.
                w.advance(T0 + hours * H + 2 * 60 * S).unwrap();
                let in_flight = w.publishing.len() as i64;
                assert!(w.publishing.iter().all(|p| p.records == per_hour));
                w.seal_all().unwrap();
                drop(w);
                (in_flight, hours_held_and_parts(&store, hours))
            };
            let d = tempfile::tempdir().unwrap();
            let (n_default, default) = write(&d.path().join("default"), None);
            assert_eq!(n_default, hours, "every due hour in flight");
            let (n_two, two) = write(&d.path().join("two"), Some(2));
            assert_eq!(n_two, 2, "two hours' records in flight at most");
            let (n_none, none) = write(&d.path().join("none"), Some(0));
            assert_eq!(n_none, 1, "a seal past the bound alone is handed over");
            assert_eq!(default.len() as i64, hours + 1, "one .part per hour");
            assert_eq!(two, default);
            assert_eq!(none, default);
        }

        /// With no publish thread (none could be started), each seal thread
        /// publishes its own `.part`: the same files as with them.
        #[test]
        fn seal_threads_publish_their_own_when_no_publish_thread_runs() {
            let hours = 6i64;
            let write = |dir: &std::path::Path, fail: bool| {
                let store = store(dir, u32::MAX);
                let mut w = store.writer().unwrap();
                w.seal_workers.publishers_fail = fail;
                for h in 0..=hours {
                    let t = T0 + h * H + 10 * S;
                    w.append(&tcp(1000 + h as u16, t, t + S, EndReason::Fin))
                        .unwrap();
                }
                w.advance(T0 + hours * H + 2 * 60 * S).unwrap();
                w.seal_all().unwrap();
                assert!(!w.seal_workers.threads.is_empty());
                assert_eq!(w.seal_workers.publishers.is_empty(), fail);
                drop(w);
                hours_held_and_parts(&store, hours)
            };
            let d = tempfile::tempdir().unwrap();
            let own = write(&d.path().join("own"), true);
            let handed = write(&d.path().join("handed"), false);
            assert_eq!(own.len() as i64, hours + 1, "one .part per hour");
            assert_eq!(own, handed);
        }

        /// A seal thread gives its scratch back exactly once, also when it
        /// stops early or panics, so the writer's wait for a set ends.
        #[test]
        fn seal_scratch_comes_back_once_whatever_the_seal_does() {
            use super::super::{Scratch, ScratchBack};
            let (tx, rx) = std::sync::mpsc::channel();
            let back = |tx: &std::sync::mpsc::Sender<Scratch>| ScratchBack {
                scratch: Some(Scratch {
                    records: Vec::with_capacity(7),
                    index: Default::default(),
                }),
                tx: tx.clone(),
            };
            drop(back(&tx));
            let b = back(&tx);
            let panicked = std::thread::spawn(move || {
                let _b = b;
                panic!("a seal thread panics");
            })
            .join();
            assert!(panicked.is_err());
            let got: Vec<Scratch> = rx.try_iter().collect();
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|s| s.records.capacity() == 7));
        }
    }
}
