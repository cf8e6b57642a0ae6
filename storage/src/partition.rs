//! Partition files: the active append log ([`ActiveLog`], written with
//! `pwrite`, read back through a read-only map), a read-only view of a log ([`LogView`]), and sealed
//! partitions ([`write_sealed`], [`SealedView`]).

use std::cmp::Ordering;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use zerocopy::{FromBytes, IntoBytes};

use crate::format::{
    Footer, LogHeader, Record, RecordCrc, SealedHeader, GENERATION_FIRST, HEADER_SIZE, RECORD_SIZE,
};
use crate::{fsutil, mmap, sealed_v2, StoreError};

/// Slots a new log file is preallocated with (96 KiB of records).
pub const LOG_SLOTS_INITIAL: u64 = 1024;
/// Bound on records in one partition segment (`partition_records_max`):
/// 2^25 records = 3 GiB of log. Sealing sorts a segment in memory, so this
/// also bounds the sealing memory. At the bound `append` returns
/// [`StoreError::PartitionFull`]; nothing is dropped silently.
pub const PARTITION_RECORDS_MAX: u64 = 1 << 25;

const HDR: u64 = HEADER_SIZE as u64;
const REC: u64 = RECORD_SIZE as u64;

fn corrupt(path: &Path, offset: u64, field: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        field,
        detail,
    }
}

/// Slots [`committed_slots`] checks with one CRC-32 (24 KiB).
const CHECK_CHUNK_SLOTS: usize = 256;

/// Records from which [`ActiveLog::committed_with`] checks the CRCs on two
/// threads when asked to (6 MiB of records).
const CRC_SPLIT_RECORDS_MIN: usize = 1 << 16;

/// Number of committed records in the slots of a log (the bytes after its
/// header) whose records hold CRCs of kind `crc` (the header's version):
/// slots are read in order and the first slot that is all zero or fails
/// validation ends the committed part. Returns the count.
///
/// Whole chunks of [`CHECK_CHUNK_SLOTS`] slots are checked with one CRC
/// against [`RecordCrc::valid_records_crc`] (a CRC runs ~10× faster over
/// 24 KiB than over 92-byte records) and their fields one by one; a chunk
/// that fails, and the last partial one, slot by slot. Several damaged
/// records in one chunk can cancel out (probability 2^-32); every record a
/// lookup or an export returns is read again with [`Record::read_with`].
pub(crate) fn committed_slots(slots: &[u8], crc: RecordCrc) -> u64 {
    let chunk_bytes = CHECK_CHUNK_SLOTS * RECORD_SIZE;
    let chunk_crc = chunk_crc(crc);
    let mut n = 0u64;
    for chunk in slots.chunks(chunk_bytes) {
        if chunk.len() == chunk_bytes && crc.hash(chunk) == chunk_crc {
            let recs = <[Record]>::ref_from_bytes(chunk).expect("whole unaligned records");
            if recs.iter().all(Record::fields_ok) {
                n += CHECK_CHUNK_SLOTS as u64;
                continue;
            }
        }
        for slot in chunk.chunks_exact(RECORD_SIZE) {
            if slot.iter().all(|&b| b == 0) || Record::read_with(slot, crc).is_err() {
                return n;
            }
            n += 1;
        }
    }
    n
}

/// [`RecordCrc::valid_records_crc`] of [`CHECK_CHUNK_SLOTS`] records
/// (CRC-32C: ~40 000 instructions, computed once for version 2 and once
/// per generation met in a row for version 3: the last one is kept, and
/// nearly every log has generation [`GENERATION_FIRST`]).
fn chunk_crc(crc: RecordCrc) -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static CASTAGNOLI: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // The last generation's (high half) value (low half); generation 0 is
    // never a version 3 log's, so the initial 0 holds nothing.
    static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);
    match crc {
        RecordCrc::Ieee => crc.valid_records_crc(CHECK_CHUNK_SLOTS as u64),
        RecordCrc::Castagnoli => *CASTAGNOLI
            .get_or_init(|| RecordCrc::Castagnoli.valid_records_crc(CHECK_CHUNK_SLOTS as u64)),
        RecordCrc::Generation { generation, .. } => {
            let last = LAST_GENERATION.load(Relaxed);
            if (last >> 32) as u32 == generation {
                return last as u32;
            }
            let v = crc.valid_records_crc(CHECK_CHUNK_SLOTS as u64);
            LAST_GENERATION.store((u64::from(generation) << 32) | u64::from(v), Relaxed);
            v
        }
    }
}

/// Whether every record of `rs` holds its right CRC of kind `crc`:
/// CRC-32/IEEE with one CRC over all of them against
/// [`crate::format::valid_records_crc`] (damage to several records can
/// cancel out, 2^-32, as in [`committed_slots`]); CRC-32C each record's
/// own, in chunks of [`CHECK_CHUNK_SLOTS`] records
/// ([`crate::hwcrc::crc32c_all_right`]).
///
/// `see` is given every record of `rs` once, in order, in pieces (for
/// CRC-32C each chunk right after its CRCs, while its bytes are in the
/// cache; whatever the outcome, which only matters when it is `true`).
fn all_crcs_right(rs: &[Record], crc: RecordCrc, see: &mut impl FnMut(&[Record])) -> bool {
    match crc {
        RecordCrc::Ieee => {
            let right = crc.hash(rs.as_bytes()) == crc.valid_records_crc(rs.len() as u64);
            see(rs);
            right
        }
        RecordCrc::Castagnoli | RecordCrc::Generation { .. } => {
            // Each record's CRC against the one it holds, three records at
            // a time (`hwcrc`: ~16 instructions a record against ~42 for
            // one CRC over the chunk compared with [`chunk_crc`]).
            let mut right = true;
            for c in rs.chunks(CHECK_CHUNK_SLOTS) {
                right &= crate::hwcrc::crc32c_all_right(crc.seed(), c.as_bytes());
                see(c);
            }
            right
        }
    }
}

/// The CRC of the records in a log whose header was found all zero (a
/// crash before its first flush; the header is written again), if they can
/// be kept: an older natrec's log (its first slot a valid version 2
/// record, CRC-32C, or else a valid version 1 record, CRC-32/IEEE). `None`:
/// no such first slot; the slots hold no record or version 3 records,
/// whose generation was in the lost header (and may be any of the file's
/// uses: docs/FORMAT.md, "Log generations"), so none can be kept.
fn crc_of_headerless(slots: &[u8]) -> Option<RecordCrc> {
    let first = slots.get(..RECORD_SIZE)?;
    if Record::read_with(first, RecordCrc::Castagnoli).is_ok() {
        Some(RecordCrc::Castagnoli)
    } else if Record::read_with(first, RecordCrc::Ieee).is_ok() {
        Some(RecordCrc::Ieee)
    } else {
        None
    }
}

/// The writer's handle on one active log segment. Records go to the file
/// with `pwrite`, and the seal reads the committed slots through a
/// read-only map ([`ActiveLog::committed`]) that the log keeps afterwards
/// ([`ActiveLog::keep_map`]): a sealed log's file used again as a spare
/// takes its map along ([`ActiveLog::from_spare`]), so the next seal of that
/// file finds its pages mapped, with no page fault and no unmapping.
pub(crate) struct ActiveLog {
    pub path: PathBuf,
    file: File,
    pub segment: u32,
    /// The CRC its records hold: the header's version ([`RecordCrc`]).
    crc: RecordCrc,
    /// Committed records.
    pub count: u64,
    /// Record slots the file holds (its length, set with `set_len`).
    capacity: u64,
    /// Slots for the appended records not yet written to the file
    /// (`pwrite` by [`ActiveLog::write_out`]): the first `count - on_file`
    /// slots hold them, at most [`LOG_BUFFER_RECORDS_MAX`]. The slots are
    /// reused without being cleared (an encoding writes every byte of its
    /// slot) and grown by doubling as needed.
    buf: Vec<u8>,
    /// Records written to the file (the rest of `count` is in `buf`).
    on_file: u64,
    dirty: bool,
    /// Slots after the committed length that held non-zero bytes at open
    /// (torn or stale writes) and were zeroed.
    pub zeroed_slots: u64,
    /// The log had records but a zero header at open (a crash before its
    /// first flush) and the header was written again from the file name.
    pub header_rewritten: bool,
    /// A read-only map of the file's first bytes (at most its length when
    /// made; the file never shrinks), kept from the file's last seal for the
    /// next one ([`ActiveLog::map_committed`]), or `None`.
    map: Option<Mmap>,
}

impl ActiveLog {
    /// Creates a new log segment: the header is written (`pwrite`), not
    /// synced; the file, its header and its directory entry become durable
    /// with the first flush (`fdatasync` of the log, then the writer's
    /// directory fsync), together with the first records. A crash before
    /// that leaves no file, an empty one, or a zero header (with or without
    /// records, which were not promised yet): [`ActiveLog::open`] handles each.
    pub fn create(
        path: &Path,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<ActiveLog, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(StoreError::io(path, "create log"))?;
        ActiveLog::init(path, file, start_ns, span_ns, segment)
    }

    /// A spare log file made ahead under the temp name `path` (on the
    /// writer's background thread): created and sized as [`ActiveLog::create`]
    /// does, no header yet (all zero). [`ActiveLog::from_spare`] takes it into
    /// use under its log name.
    pub fn make_spare(path: &Path) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(StoreError::io(path, "create spare log"))?;
        if let Err(e) = file.set_len(HDR + LOG_SLOTS_INITIAL * REC) {
            let _ = std::fs::remove_file(path);
            return Err(StoreError::io(path, "preallocate spare log")(e));
        }
        Ok(file)
    }

    /// Takes a spare made by [`ActiveLog::make_spare`] (or a sealed log's
    /// file kept) into use as the new log `path`: a hard link to the spare's
    /// file (fails if `path` exists, as `create_new` does; no inode is
    /// allocated on the writer's thread), then the header, as
    /// [`ActiveLog::create`]. The caller removes the spare's temp name.
    /// Durable as a created log is: with the first flush. The spare's map (a
    /// sealed log's, [`ActiveLog::take_map`]) is read again by this log's
    /// seal if it covers the records then.
    pub fn from_spare(
        spare: crate::chores::Spare,
        path: &Path,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<ActiveLog, StoreError> {
        std::fs::hard_link(&spare.path, path).map_err(StoreError::io(path, "link spare log to"))?;
        let generation = if spare.held == 0 {
            GENERATION_FIRST
        } else {
            crate::format::next_generation(spare.held).expect("recycled only below the last")
        };
        let mut log =
            ActiveLog::init_gen(path, spare.file, start_ns, span_ns, segment, generation)?;
        log.map = spare.map;
        Ok(log)
    }

    /// The generation of a version 3 log (0: versions 1, 2).
    pub fn generation(&self) -> u32 {
        self.crc.generation()
    }

    fn init(
        path: &Path,
        file: File,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<ActiveLog, StoreError> {
        ActiveLog::init_gen(path, file, start_ns, span_ns, segment, GENERATION_FIRST)
    }

    fn init_gen(
        path: &Path,
        file: File,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
        generation: u32,
    ) -> Result<ActiveLog, StoreError> {
        // Called on a new file, or on one whose bytes are all zero or
        // shorter than a header: its slots are zero. Never shrink it (a
        // reader may have it mapped): only extend.
        let found = file
            .metadata()
            .map_err(StoreError::io(path, "stat log"))?
            .len();
        let len = found.max(HDR + LOG_SLOTS_INITIAL * REC);
        let capacity = ((len - HDR) / REC).min(PARTITION_RECORDS_MAX);
        // set_len leaves a hole: the slots read as zero without being
        // written (the old code zeroed 96 KiB through a map and synced them).
        // A spare has its length already.
        if found != len {
            file.set_len(len)
                .map_err(StoreError::io(path, "preallocate log"))?;
        }
        let crc = RecordCrc::of_generation(generation);
        file.write_all_at(
            LogHeader::new(start_ns, span_ns, segment, crc).as_bytes(),
            0,
        )
        .map_err(StoreError::io(path, "write log header"))?;
        // Not synced here: the first flush makes the header and the length
        // durable with the first records (`dirty`), and a zero header found
        // after a crash is rewritten by `open`.
        Ok(ActiveLog {
            path: path.to_path_buf(),
            file,
            segment,
            crc,
            count: 0,
            capacity,
            buf: Vec::new(),
            on_file: 0,
            dirty: true,
            zeroed_slots: 0,
            header_rewritten: false,
            map: None,
        })
    }

    /// Opens an existing log after a restart or crash: checks the header
    /// against the name, finds the committed length, zeroes every slot after
    /// it so stale bytes can never resurrect.
    pub fn open(
        path: &Path,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<ActiveLog, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StoreError::io(path, "open log"))?;
        let len = file
            .metadata()
            .map_err(StoreError::io(path, "stat log"))?
            .len();
        if len < HDR {
            // A crash between creating the file and its first flush, with
            // not even the length durable: no record can be there.
            return ActiveLog::init(path, file, start_ns, span_ns, segment);
        }
        let capacity = (len - HDR) / REC;
        let map_len = HDR + capacity * REC;
        let mut map = mmap::map_write(&file, map_len).map_err(StoreError::io(path, "map log"))?;
        if map[..HEADER_SIZE].iter().all(|&b| b == 0) && map[HEADER_SIZE..].iter().all(|&b| b == 0)
        {
            drop(map);
            return ActiveLog::init(path, file, start_ns, span_ns, segment);
        }
        let mut header_rewritten = false;
        if map[..HEADER_SIZE].iter().all(|&b| b == 0) {
            // Records but a zero header: the log was created and written,
            // and the crash came before its first flush made the header
            // durable (a flush syncs the header with the records, so records
            // that were promised durable always have their header). The
            // header says only what the file name says and the version:
            // an older natrec's log (version 1 or 2) gets it again and keeps
            // the records that pass their checks, from the first slot, in
            // the version whose CRC they hold.
            let Some(crc) = crc_of_headerless(&map[HEADER_SIZE..]) else {
                // Version 3 records (or none): their generation was in the
                // lost header, and the slots may hold records of any of the
                // file's uses, so none is kept (none was promised).
                return ActiveLog::zeroed_anew(map, path, file, start_ns, span_ns, segment);
            };
            map[..HEADER_SIZE]
                .copy_from_slice(LogHeader::new(start_ns, span_ns, segment, crc).as_bytes());
            header_rewritten = true;
        }
        let h = LogHeader::read(&map[..HEADER_SIZE]).map_err(|f| f.at(path, 0))?;
        if h.version.get() >= 3
            && h.span_ns.get() == span_ns
            && check_log_header(path, &h, start_ns, span_ns, segment).is_err()
            && path
                .with_file_name(crate::format::file_name(
                    h.start_ns.get(),
                    h.segment.get(),
                    crate::format::FileKind::Sealed,
                ))
                .exists()
        {
            // The header of the sealed log whose file this was (its `.part`
            // is here): the file was used again and the crash came before
            // the new header was durable, so before the new log's first
            // flush; none of its records was promised.
            return ActiveLog::zeroed_anew(map, path, file, start_ns, span_ns, segment);
        }
        check_log_header(path, &h, start_ns, span_ns, segment)?;
        let crc = h.record_crc();
        let count = committed_slots(&map[HEADER_SIZE..], crc);
        let mut zeroed = 0;
        for slot in
            map[HEADER_SIZE + (count as usize) * RECORD_SIZE..].chunks_exact_mut(RECORD_SIZE)
        {
            if slot.iter().any(|&b| b != 0) {
                slot.fill(0);
                zeroed += 1;
            }
        }
        if zeroed > 0 || header_rewritten {
            map.flush().map_err(StoreError::io(path, "msync log"))?;
        }
        drop(map);
        Ok(ActiveLog {
            path: path.to_path_buf(),
            file,
            segment,
            crc,
            count,
            capacity,
            buf: Vec::new(),
            on_file: count,
            dirty: false,
            zeroed_slots: zeroed,
            header_rewritten,
            map: None,
        })
    }

    /// A log none of whose records can be kept (a version 3 log whose own
    /// header is not on disk) made empty: every slot is zeroed and made
    /// durable before the new header is written (`init`, generation 1
    /// again: nothing of an earlier use is left), so no crash can pair that
    /// header with a record of an earlier use.
    fn zeroed_anew(
        mut map: memmap2::MmapMut,
        path: &Path,
        file: File,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<ActiveLog, StoreError> {
        let mut zeroed = 0;
        for slot in map[HEADER_SIZE..].chunks_exact_mut(RECORD_SIZE) {
            if slot.iter().any(|&b| b != 0) {
                slot.fill(0);
                zeroed += 1;
            }
        }
        map[..HEADER_SIZE].fill(0);
        map.flush().map_err(StoreError::io(path, "msync log"))?;
        drop(map);
        let mut log = ActiveLog::init(path, file, start_ns, span_ns, segment)?;
        log.zeroed_slots = zeroed;
        log.header_rewritten = true;
        Ok(log)
    }

    /// Appends one record (made by [`Record::encode`], which checked the
    /// mapping: habit 10's check before the disk) to the buffer, with the
    /// log's CRC ([`RecordCrc`]); in the kernel after [`ActiveLog::write_out`]
    /// (survives a process kill), durable after [`ActiveLog::flush`].
    pub fn append(&mut self, r: &Record) -> Result<(), StoreError> {
        // Not decoded again in release builds: `encode` makes only valid
        // records (that was ~19 % of the writer's time).
        debug_assert!(
            r.decode().is_ok(),
            "record about to be written fails validation: {r:?}"
        );
        if self.count == self.capacity {
            self.grow()?;
        }
        let crc = self.crc;
        let slot = self.next_slot();
        *slot = *r;
        if crc != RecordCrc::Ieee {
            slot.crc = zerocopy::little_endian::U32::new(crc.of(slot));
        }
        self.count += 1;
        self.dirty = true;
        if self.count - self.on_file == LOG_BUFFER_RECORDS_MAX as u64 {
            self.write_out()?;
        }
        Ok(())
    }

    /// Appends `rs` in order, as [`ActiveLog::append`] of each (the same
    /// bytes and errors), a stretch of consecutive buffer slots at a time:
    /// the records copied in (a buffer too short grows by the copy, not
    /// zeroed first), then their CRCs set in one pass
    /// ([`crate::hwcrc::crc32c_set`]). For a carry's records (hundreds at
    /// once, into a sealing log whose buffer went to the next log:
    /// ~250 instructions a record one at a time, most of them the growth's
    /// zeroing, the per-record room checks and the single CRC).
    pub fn append_records(&mut self, rs: &[Record]) -> Result<(), StoreError> {
        debug_assert!(
            rs.iter().all(|r| r.decode().is_ok()),
            "records about to be written fail validation"
        );
        let crc = self.crc;
        let mut done = 0;
        while done < rs.len() {
            if self.count == self.capacity {
                self.grow()?;
            }
            let pending = (self.count - self.on_file) as usize;
            let k = (rs.len() - done)
                .min((self.capacity - self.count) as usize)
                .min(LOG_BUFFER_RECORDS_MAX - pending);
            let (from, to) = (pending * RECORD_SIZE, (pending + k) * RECORD_SIZE);
            let bytes = rs[done..done + k].as_bytes();
            if to > self.buf.len() {
                // Copied in as the buffer grows (its bytes past the
                // buffered records are stale: dropped, not zeroed first).
                self.buf.truncate(from);
                self.buf.extend_from_slice(bytes);
            } else {
                self.buf[from..to].copy_from_slice(bytes);
            }
            let slots = &mut self.buf[from..to];
            if crc != RecordCrc::Ieee {
                crate::hwcrc::crc32c_set(crc.seed(), slots);
            }
            self.count += k as u64;
            self.dirty = true;
            done += k;
            if self.count - self.on_file == LOG_BUFFER_RECORDS_MAX as u64 {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// The buffer's slot for the next record (its bytes are stale: the
    /// caller writes all of them before counting it).
    #[inline]
    fn next_slot(&mut self) -> &mut Record {
        let at = (self.count - self.on_file) as usize * RECORD_SIZE;
        if at + RECORD_SIZE > self.buf.len() {
            // The buffer is written out when full, so `at` stays below it.
            let len = (self.buf.len() * 2).clamp(256 * RECORD_SIZE, LOG_BUFFER_BYTES);
            self.buf.resize(len, 0);
        }
        Record::mut_from_bytes(&mut self.buf[at..at + RECORD_SIZE]).expect("one unaligned record")
    }

    /// Encodes and appends `ms` in order ([`ActiveLog::append_mapping`] for
    /// each, the same bytes and the same errors), into consecutive buffer
    /// slots in one loop: the room in the file and in the buffer is found
    /// once per stretch, not per record. Returns how many were appended and
    /// what stopped it (the records before are appended).
    pub fn append_mappings(
        &mut self,
        ms: &[crate::model::Mapping],
        store_flags: u8,
    ) -> (usize, Result<Result<(), crate::format::Fault>, StoreError>) {
        let crc = self.crc;
        let mut done = 0;
        while done < ms.len() {
            if self.count == self.capacity {
                // At the file's end: one record the single way (encoded,
                // then the log grown, as before).
                match self.append_mapping(&ms[done], store_flags) {
                    Ok(Ok(())) => done += 1,
                    other => return (done, other),
                }
                continue;
            }
            let pending = (self.count - self.on_file) as usize;
            let k = (ms.len() - done)
                .min((self.capacity - self.count) as usize)
                .min(LOG_BUFFER_RECORDS_MAX - pending);
            let (from, to) = (pending * RECORD_SIZE, (pending + k) * RECORD_SIZE);
            if to > self.buf.len() {
                let len = to
                    .next_power_of_two()
                    .clamp(256 * RECORD_SIZE, LOG_BUFFER_BYTES);
                self.buf.resize(len.max(to), 0);
            }
            let slots = <[Record]>::mut_from_bytes(&mut self.buf[from..to])
                .expect("whole unaligned records");
            // Encoded up to the first refused mapping, if any.
            let mut encoded = k;
            let mut refused = None;
            if crc != RecordCrc::Ieee {
                // The fields first, then the CRC-32Cs of the stretch three
                // records at a time (their dependent steps interleave).
                for (i, (m, slot)) in ms[done..done + k].iter().zip(slots.iter_mut()).enumerate() {
                    if let Err(f) = Record::encode_fields_into(m, store_flags, slot) {
                        (encoded, refused) = (i, Some(f));
                        break;
                    }
                }
                crate::hwcrc::crc32c_set(crc.seed(), slots[..encoded].as_mut_bytes());
            } else {
                for (i, (m, slot)) in ms[done..done + k].iter().zip(slots.iter_mut()).enumerate() {
                    if let Err(f) = Record::encode_into(m, store_flags, slot, crc) {
                        (encoded, refused) = (i, Some(f));
                        break;
                    }
                }
            }
            debug_assert!(
                slots[..encoded]
                    .iter()
                    .all(|r| r.check_crc_with(crc).is_ok() && r.decode_fields().is_ok()),
                "records about to be written fail validation"
            );
            if let Some(f) = refused {
                // The ones before it are appended; its slot is not counted.
                self.count += encoded as u64;
                self.dirty |= encoded > 0;
                return (done + encoded, Ok(Err(f)));
            }
            self.count += k as u64;
            self.dirty = true;
            done += k;
            if self.count - self.on_file == LOG_BUFFER_RECORDS_MAX as u64 {
                if let Err(e) = self.write_out() {
                    return (done, Err(e));
                }
            }
        }
        (done, Ok(Ok(())))
    }

    /// Encodes `m` ([`Record::encode_into`], flags `store_flags`) straight
    /// into the buffer and appends it, as [`ActiveLog::append`] appends an
    /// encoded record. The inner error is a mapping that cannot be stored
    /// (nothing appended).
    pub fn append_mapping(
        &mut self,
        m: &crate::model::Mapping,
        store_flags: u8,
    ) -> Result<Result<(), crate::format::Fault>, StoreError> {
        let crc = self.crc;
        let slot = self.next_slot();
        if let Err(f) = Record::encode_into(m, store_flags, slot, crc) {
            // Not counted: the slot's bytes are never written out.
            return Ok(Err(f));
        }
        debug_assert!(
            slot.check_crc_with(crc).is_ok() && slot.decode_fields().is_ok(),
            "record about to be written fails validation: {slot:?}"
        );
        if self.count == self.capacity {
            // Not counted either on an error.
            self.grow()?;
        }
        self.count += 1;
        self.dirty = true;
        if self.count - self.on_file == LOG_BUFFER_RECORDS_MAX as u64 {
            self.write_out()?;
        }
        Ok(Ok(()))
    }

    /// The buffer, taken for another log (nothing may be buffered: call
    /// after [`ActiveLog::write_out`]); this log buffers in a new one if
    /// it is appended to again.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        assert!(
            self.count == self.on_file,
            "buffer taken with records in it"
        );
        std::mem::take(&mut self.buf)
    }

    /// Buffers in `buf` from here if it is larger than the log's own (a
    /// sealed log's: its stale bytes are never written out, each slot is
    /// written whole before it is counted), the records buffered so far
    /// copied into it.
    pub fn swap_buffer_if_larger(&mut self, mut buf: Vec<u8>) {
        if buf.len() <= self.buf.len() {
            return;
        }
        let pending = (self.count - self.on_file) as usize * RECORD_SIZE;
        buf[..pending].copy_from_slice(&self.buf[..pending]);
        self.buf = buf;
    }

    /// Writes the buffered records to the file in one `pwrite` (into the
    /// preallocated zero slots; the map sees them through the page cache).
    pub fn write_out(&mut self) -> Result<(), StoreError> {
        let bytes = (self.count - self.on_file) as usize * RECORD_SIZE;
        if bytes > 0 {
            self.file
                .write_all_at(&self.buf[..bytes], HDR + self.on_file * REC)
                .map_err(StoreError::io(&self.path, "write log"))?;
            self.on_file = self.count;
        }
        Ok(())
    }

    fn grow(&mut self) -> Result<(), StoreError> {
        if self.capacity >= PARTITION_RECORDS_MAX {
            return Err(StoreError::PartitionFull {
                path: self.path.clone(),
                records_max: PARTITION_RECORDS_MAX,
            });
        }
        let cap = (self.capacity * 2).min(PARTITION_RECORDS_MAX);
        // Only the length changes (a hole of zero slots). Not synced here:
        // `fdatasync` makes a changed length durable with the data it covers,
        // so the next flush persists it with the records written into it
        // (docs/FORMAT.md, "growing a log"). Until then a power loss may keep
        // the old length, and with it lose only records not flushed yet.
        self.file
            .set_len(HDR + cap * REC)
            .map_err(StoreError::io(&self.path, "grow log"))?;
        self.capacity = cap;
        Ok(())
    }

    /// A second handle on the file, for an `fdatasync` on another thread,
    /// if anything was appended since the last sync (`None`: nothing to
    /// sync). The records are written out first; the log counts as synced
    /// from here, so the caller must see that sync through (and stop if it
    /// fails).
    pub fn sync_handle(&mut self) -> Result<Option<File>, StoreError> {
        self.write_out()?;
        if !self.dirty {
            return Ok(None);
        }
        let f = self
            .file
            .try_clone()
            .map_err(StoreError::io(&self.path, "duplicate the handle of log"))?;
        self.dirty = false;
        Ok(Some(f))
    }

    /// Makes appended records durable (write out, `fdatasync`).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.write_out()?;
        if self.dirty {
            self.file
                .sync_data()
                .map_err(StoreError::io(&self.path, "fdatasync log"))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// A read-only map of at least the header and the committed slots (they
    /// reached the page cache with `pwrite`; the map reads them from there):
    /// the map the log kept ([`ActiveLog::keep_map`], or one a sealed log
    /// kept of this file, [`ActiveLog::from_spare`]) if it is long enough,
    /// else a new one of the whole file (its slots to the capacity: a later
    /// seal of this file with more records uses it again).
    fn map_committed(&mut self) -> Result<Mmap, StoreError> {
        assert!(
            self.count == self.on_file,
            "log read before its buffer was written out"
        );
        let need = HDR + self.count * REC;
        match self.map.take() {
            // Bytes of the file the map was made over (the file only grows):
            // the records written since reached the same page cache.
            Some(map) if map.len() as u64 >= need => Ok(map),
            // Too short: dropped (unmapped) for a longer one.
            _ => {
                // HDR + count × REC <= HDR + capacity × REC <= the file's
                // length, which only grows.
                mmap::map_read(&self.file, HDR + self.capacity * REC)
                    .map_err(StoreError::io(&self.path, "map log"))
            }
        }
    }

    /// Keeps `c`'s map for the next read of the committed records (a sealed
    /// log's: taken by [`ActiveLog::take_map`] for the file's next log).
    pub fn keep_map(&mut self, c: CommittedRecords) {
        self.map = Some(c.map);
    }

    /// The map this log keeps, if any (for the file's next log, when the
    /// file is used again: [`ActiveLog::from_spare`]).
    pub fn take_map(&mut self) -> Option<Mmap> {
        self.map.take()
    }

    /// Tests: whether the log keeps a map for its next read.
    #[cfg(test)]
    pub fn has_map(&self) -> bool {
        self.map.is_some()
    }

    /// Committed records through a read-only map (no copy), every one's CRC
    /// checked as read back (habit 10). Only the CRC: the fields were checked
    /// by `Record::encode` before the record was written (or fully by
    /// recovery, for records an earlier writer left), and the CRC says the
    /// bytes are those; lookups and `verify` check every field again.
    ///
    /// The CRCs are checked by [`all_crcs_right`]: a version 1 log's with
    /// one CRC over all the records' bytes against
    /// [`RecordCrc::valid_records_crc`] (a streaming CRC over megabytes, ~10×
    /// cheaper than one call per 96-byte record), a version 2 or 3 log's
    /// record by record, three at a time; only if that fails is each
    /// record checked again, to name the first damaged one.
    ///
    /// The records are the log's slots as they are: a version 2 log's
    /// records hold their CRC-32C, not the CRC-32/IEEE a record in memory
    /// holds. The seal does not read that field (a v2 sealed partition
    /// stores no record CRC; its decoder computes the CRC-32/IEEE), and
    /// what it carries or marks late it encodes again.
    #[cfg(test)]
    pub fn committed(&mut self) -> Result<CommittedRecords, StoreError> {
        self.committed_with(false)
    }

    /// [`Self::committed`]; with `two_threads`, a log of at least
    /// [`CRC_SPLIT_RECORDS_MIN`] records has the CRCs of its two halves
    /// computed on two threads, each as [`all_crcs_right`] checks (both
    /// right implies the whole one is: a CRC of the concatenation is a
    /// function of the halves' CRCs and lengths).
    /// For the final seal of a replay, when nothing else runs.
    #[cfg(test)]
    pub fn committed_with(&mut self, two_threads: bool) -> Result<CommittedRecords, StoreError> {
        self.committed_folding(two_threads, |_: &mut (), _| {})
            .map(|(c, ..)| c)
    }

    /// [`Self::committed_with`], also folding the records into two states
    /// as their CRCs are checked (each piece while it is in the cache, no
    /// second pass over the log): `fold` is given every record once, in log
    /// order within each state, the first half's into the first state and
    /// the second half's into the second when the CRCs are checked on two
    /// threads; otherwise all into the first, the second left `S::default()`.
    pub fn committed_folding<S: Default + Send>(
        &mut self,
        two_threads: bool,
        fold: impl Fn(&mut S, &[Record]) + Sync,
    ) -> Result<(CommittedRecords, S, S), StoreError> {
        let map = self.map_committed()?;
        let c = CommittedRecords {
            map,
            count: self.count as usize,
        };
        let recs = c.records();
        let crc = self.crc;
        let valid = |rs: &[Record]| {
            let mut s = S::default();
            let right = all_crcs_right(rs, crc, &mut |piece| fold(&mut s, piece));
            (right, s)
        };
        let (ok, sa, sb) = if two_threads && recs.len() >= CRC_SPLIT_RECORDS_MIN {
            let (a, b) = recs.split_at(recs.len() / 2);
            std::thread::scope(|scope| {
                let other = scope.spawn(|| valid(b));
                let (ra, sa) = valid(a);
                let (rb, sb) = other.join().expect("a CRC does not panic");
                (ra & rb, sa, sb)
            })
        } else {
            let (r, s) = valid(recs);
            (r, s, S::default())
        };
        if !ok {
            for (i, r) in recs.iter().enumerate() {
                r.check_crc_with(crc)
                    .map_err(|f| f.at(&self.path, HDR + i as u64 * REC))?;
            }
            unreachable!("records whose CRCs are all right have the CRC valid_records_crc says");
        }
        Ok((c, sa, sb))
    }

    /// Committed records, each re-validated as read back: those written
    /// out from the map, then those still in the buffer (write-behind,
    /// [`crate::Writer::set_write_behind`]) from there.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        // HDR + on_file × REC <= the file's length, which only grows.
        let map = mmap::map_read(&self.file, HDR + self.on_file * REC)
            .map_err(StoreError::io(&self.path, "map log"))?;
        let mut v = read_slots(&self.path, &map[HEADER_SIZE..], self.on_file, self.crc)?;
        let pending = self.count - self.on_file;
        v.extend(read_slots(&self.path, &self.buf, pending, self.crc)?);
        Ok(v)
    }
}

impl Drop for ActiveLog {
    /// What was appended reaches the kernel even if the owner forgot to
    /// write out (errors cannot be reported here; the next open recovers).
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

/// The committed records of an active log, CRC-checked, in a read-only map
/// ([`ActiveLog::committed`]) of the file's first bytes (the slots after
/// them are not the log's records: zero, or a recycled file's old ones).
pub(crate) struct CommittedRecords {
    map: Mmap,
    /// Records committed when read: the slots the map is read to.
    count: usize,
}

impl CommittedRecords {
    /// The records, in log order (no copy).
    pub fn records(&self) -> &[Record] {
        <[Record]>::ref_from_bytes(&self.map[HEADER_SIZE..HEADER_SIZE + self.count * RECORD_SIZE])
            .expect("Record is unaligned, the map is a header plus whole slots")
    }
}

/// Most records an active log buffers before writing them out (384 KiB).
pub(crate) const LOG_BUFFER_RECORDS_MAX: usize = 4096;
const LOG_BUFFER_BYTES: usize = LOG_BUFFER_RECORDS_MAX * RECORD_SIZE;

/// The first `count` records of `slots` (a log's, whose records hold CRCs
/// of kind `crc`), each checked, returned with their CRC-32/IEEE.
fn read_slots(
    path: &Path,
    slots: &[u8],
    count: u64,
    crc: RecordCrc,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::with_capacity(count as usize);
    for (i, slot) in slots
        .chunks_exact(RECORD_SIZE)
        .take(count as usize)
        .enumerate()
    {
        out.push(Record::read_with(slot, crc).map_err(|f| f.at(path, HDR + i as u64 * REC))?);
    }
    Ok(out)
}

fn check_log_header(
    path: &Path,
    h: &LogHeader,
    start_ns: i64,
    span_ns: i64,
    segment: u32,
) -> Result<(), StoreError> {
    check_identity(
        path,
        (h.start_ns.get(), h.span_ns.get(), h.segment.get()),
        start_ns,
        span_ns,
        segment,
    )
}

/// The (start, span, segment) a header names must be the ones the file name
/// and `store.json` say (same byte offsets in log and sealed headers).
fn check_identity(
    path: &Path,
    found: (i64, i64, u32),
    start_ns: i64,
    span_ns: i64,
    segment: u32,
) -> Result<(), StoreError> {
    let (found_start, found_span, found_segment) = found;
    if found_start != start_ns {
        return Err(corrupt(
            path,
            16,
            "start_ns",
            format!("file name says {start_ns}, header says {found_start}"),
        ));
    }
    if found_span != span_ns {
        return Err(corrupt(
            path,
            24,
            "span_ns",
            format!("store.json says {span_ns}, header says {found_span}"),
        ));
    }
    if found_segment != segment {
        return Err(corrupt(
            path,
            32,
            "segment",
            format!("file name says {segment}, header says {found_segment}"),
        ));
    }
    Ok(())
}

/// The error a [`LogView`] returns when the log's file was used again for
/// another log under it (its header changed: a sealed log is renamed to a
/// spare only after its `.part` is published, so the `.part` next to the
/// name holds its records). "Not found", as a log removed after its seal:
/// readers then read the `.part` ([`log_used_again`] tells it apart).
fn used_again(path: &Path) -> StoreError {
    StoreError::io(path, "read log")(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        LOG_USED_AGAIN,
    ))
}

const LOG_USED_AGAIN: &str = "sealed and its file used again for another log";

/// Whether `e` says a log was sealed and its file used again (or removed)
/// while it was read: its `.part` holds its records.
pub(crate) fn log_gone(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// [`log_gone`] for the file used again (tests).
#[cfg(test)]
pub(crate) fn log_used_again(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.to_string() == LOG_USED_AGAIN)
}

/// A read-only view of an active log, safe to take while a writer appends,
/// and while the writer seals it and uses its file again for another log:
/// the header read at open is compared with the map's after the committed
/// length is found and whenever a record fails its check; a change means
/// the file was used again ([`log_gone`]). Records read before that with
/// the first header's CRC (its generation) are this log's: no record of
/// another use of the file passes that CRC.
pub(crate) struct LogView {
    pub path: PathBuf,
    map: Mmap,
    pub count: u64,
    /// The CRC its records hold (the header's version).
    crc: RecordCrc,
    /// The header as read at open (zero: none yet).
    header: [u8; HEADER_SIZE],
}

impl LogView {
    /// Maps the log and finds its committed length.
    pub fn open(
        path: &Path,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<LogView, StoreError> {
        let file = File::open(path).map_err(StoreError::io(path, "open log"))?;
        let len = file
            .metadata()
            .map_err(StoreError::io(path, "stat log"))?
            .len();
        if len < HDR {
            // Being created right now, or a crash before its header: empty.
            return Ok(LogView {
                path: path.to_path_buf(),
                map: mmap::map_read(&file, 0).map_err(StoreError::io(path, "map log"))?,
                count: 0,
                crc: RecordCrc::Castagnoli,
                header: [0; HEADER_SIZE],
            });
        }
        let map_len = HDR + (len - HDR) / REC * REC;
        let map = mmap::map_read(&file, map_len).map_err(StoreError::io(path, "map log"))?;
        let header: [u8; HEADER_SIZE] = map[..HEADER_SIZE].try_into().expect("64 bytes");
        if header.iter().all(|&b| b == 0) {
            return Ok(LogView {
                path: path.to_path_buf(),
                map,
                count: 0,
                crc: RecordCrc::Castagnoli,
                header,
            });
        }
        let h = LogHeader::read(&header).map_err(|f| f.at(path, 0))?;
        if h.version.get() >= 3 && check_log_header(path, &h, start_ns, span_ns, segment).is_err() {
            // A version 3 header of another log: the file was used again,
            // under this reader (this log's `.part` is published: read
            // it), or before a crash that lost the new header (no `.part`:
            // nothing of this log was promised, it reads as empty, and
            // the next writer's recovery empties it).
            let own_part = path.with_file_name(crate::format::file_name(
                start_ns,
                segment,
                crate::format::FileKind::Sealed,
            ));
            if own_part.exists() {
                return Err(used_again(path));
            }
            return Ok(LogView {
                path: path.to_path_buf(),
                map,
                count: 0,
                crc: RecordCrc::Castagnoli,
                header,
            });
        }
        check_log_header(path, &h, start_ns, span_ns, segment)?;
        let crc = h.record_crc();
        let count = committed_slots(&map[HEADER_SIZE..], crc);
        let v = LogView {
            path: path.to_path_buf(),
            map,
            count,
            crc,
            header,
        };
        // Used again during the scan: the count may have ended at a slot
        // the next use wrote (whose header was written first).
        v.same_file()?;
        Ok(v)
    }

    /// An error if the header changed since [`LogView::open`] read it (the
    /// file was used again for another log). Every read checks it after
    /// reading: the next use writes its header before any slot, so a slot
    /// it wrote that a read saw (and skipped, its public address not the
    /// one asked for) shows as a changed header after that read.
    pub fn same_file(&self) -> Result<(), StoreError> {
        if self.map.len() >= HEADER_SIZE && self.map[..HEADER_SIZE] != self.header {
            return Err(used_again(&self.path));
        }
        Ok(())
    }

    /// `e` (a record of this log failed its check), or [`used_again`] if
    /// the file was used again meanwhile.
    fn failed(&self, e: StoreError) -> StoreError {
        self.same_file().err().unwrap_or(e)
    }

    /// Committed records, validated.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let v = read_slots(&self.path, &self.map[HEADER_SIZE..], self.count, self.crc)
            .map_err(|e| self.failed(e))?;
        self.same_file()?;
        Ok(v)
    }

    /// Committed records whose public address is `ip` (and port `port`,
    /// when given), in log order, each validated: a scan of the two fields
    /// (the committed length was found by [`LogView::open`]), then
    /// [`Record::read`] of the matches only.
    pub fn records_with_public(
        &self,
        ip: [u8; 16],
        port: Option<u16>,
    ) -> Result<Vec<Record>, StoreError> {
        if self.count == 0 {
            // Possibly a map shorter than a header (a log being created).
            return Ok(Vec::new());
        }
        let slots = &self.map[HEADER_SIZE..HEADER_SIZE + self.count as usize * RECORD_SIZE];
        let recs = <[Record]>::ref_from_bytes(slots).expect("whole unaligned records");
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            if r.public_ip == ip && port.is_none_or(|p| r.public_port.get() == p) {
                let off = HEADER_SIZE + i * RECORD_SIZE;
                out.push(
                    Record::read_with(r.as_bytes(), self.crc)
                        .map_err(|f| self.failed(f.at(&self.path, off as u64)))?,
                );
            }
        }
        self.same_file()?;
        Ok(out)
    }

    /// File size in bytes.
    pub fn bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The committed records' (public ip, public port, slot), sorted: the
    /// index [`LogView::records_with_public_indexed`] searches. 24 bytes a
    /// record. The caller checks [`LogView::same_file`] after building it.
    pub fn public_index(&self) -> Vec<([u8; 16], u16, u32)> {
        if self.count == 0 {
            return Vec::new();
        }
        let slots = &self.map[HEADER_SIZE..HEADER_SIZE + self.count as usize * RECORD_SIZE];
        let recs = <[Record]>::ref_from_bytes(slots).expect("whole unaligned records");
        let mut idx: Vec<([u8; 16], u16, u32)> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.public_ip, r.public_port.get(), i as u32))
            .collect();
        idx.sort_unstable();
        idx
    }

    /// What [`LogView::records_with_public`] returns, found through `index`
    /// (this view's [`LogView::public_index`]): a binary search, then the
    /// matching slots in log order, each record validated.
    pub fn records_with_public_indexed(
        &self,
        index: &[([u8; 16], u16, u32)],
        ip: [u8; 16],
        port: Option<u16>,
    ) -> Result<Vec<Record>, StoreError> {
        let lo = index.partition_point(|e| (e.0, e.1) < (ip, port.unwrap_or(0)));
        let mut slots: Vec<u32> = index[lo..]
            .iter()
            .take_while(|e| e.0 == ip && port.is_none_or(|p| p == e.1))
            .map(|e| e.2)
            .collect();
        slots.sort_unstable();
        let mut out = Vec::with_capacity(slots.len());
        for i in slots {
            let off = HEADER_SIZE + i as usize * RECORD_SIZE;
            out.push(
                Record::read_with(&self.map[off..off + RECORD_SIZE], self.crc)
                    .map_err(|f| self.failed(f.at(&self.path, off as u64)))?,
            );
        }
        self.same_file()?;
        Ok(out)
    }
}

/// Writes a sealed partition atomically in the current format (v2,
/// [`crate::sealed_v2`]) of the records `a` then `b` (one slice and an empty
/// one, or the two halves of a split seal, not copied into one buffer: the
/// same bytes). They must already be reduced and sorted by
/// [`Record::sort_key`]. Returns the bytes written.
#[cfg(test)]
pub(crate) fn write_sealed(
    path: &Path,
    start_ns: i64,
    span_ns: i64,
    segment: u32,
    a: &[Record],
    b: &[Record],
) -> Result<u64, StoreError> {
    let parts = encode_sealed(
        start_ns,
        span_ns,
        segment,
        a,
        b,
        &mut sealed_v2::EncodeScratch::default(),
    );
    publish_sealed(path, &parts)
}

/// [`write_sealed`] in two steps, with the encoder's scratch kept by the
/// caller (the writer, between seals):
/// the bytes of a sealed partition (format v2) of the sorted records `a`
/// then `b`, in three parts written one after the other
/// ([`publish_sealed_all`]).
pub(crate) fn encode_sealed(
    start_ns: i64,
    span_ns: i64,
    segment: u32,
    a: &[Record],
    b: &[Record],
    scratch: &mut sealed_v2::EncodeScratch,
) -> [Vec<u8>; 3] {
    // The order is asserted by the encoder, on its blocks' threads.
    sealed_v2::encode_file(
        start_ns,
        span_ns,
        segment,
        sealed_v2::Pieces::two(a, b),
        &mut sealed_v2::ColumnBytes::default(),
        scratch,
    )
}

/// Publishes what [`encode_sealed`] made at `path` (temp file, fsync,
/// rename, directory fsync) and returns its length (tests: the writer's seals
/// use [`publish_sealed_all`]).
#[cfg(test)]
pub(crate) fn publish_sealed(path: &Path, parts: &[Vec<u8>; 3]) -> Result<u64, StoreError> {
    publish_sealed_all(&[(path, parts)])
        .pop()
        .expect("one result per file")
}

/// Publishes several partitions (each: temp file, fsync, rename, directory
/// fsync; one result per file, its length or the error), their disk
/// waits shared ([`fsutil::publish_all`]), in order.
pub(crate) fn publish_sealed_all(files: &[(&Path, &[Vec<u8>; 3])]) -> Vec<Result<u64, StoreError>> {
    let pieces: Vec<[&[u8]; 3]> = files
        .iter()
        .map(|(_, p)| [&p[0][..], &p[1][..], &p[2][..]])
        .collect();
    let to_publish: Vec<(&Path, &[&[u8]])> = files
        .iter()
        .zip(&pieces)
        .map(|(&(path, _), p)| (path, &p[..]))
        .collect();
    fsutil::publish_all(&to_publish)
        .into_iter()
        .zip(files)
        .map(|(r, (_, p))| r.map(|()| p.iter().map(|b| b.len() as u64).sum()))
        .collect()
}

/// Writes a sealed partition in format v1 (96-byte records), as natrec
/// before format v2 did: kept so tests and benchmarks can make the files
/// older stores hold.
#[allow(dead_code)]
pub(crate) fn write_sealed_v1(
    path: &Path,
    start_ns: i64,
    span_ns: i64,
    segment: u32,
    records: &[Record],
) -> Result<(), StoreError> {
    assert!(
        records
            .windows(2)
            .all(|w| w[0].sort_key() < w[1].sort_key()),
        "sealed records must be strictly sorted"
    );
    let header = SealedHeader::new(start_ns, span_ns, segment, records.len() as u64);
    let footer = Footer::new(records);
    fsutil::publish(
        path,
        &[header.as_bytes(), records.as_bytes(), footer.as_bytes()],
    )
}

/// A checked, read-only view of a sealed partition of either format
/// version: v1 (96-byte records, the file is its own index) or v2 (blocks
/// of columns, [`crate::sealed_v2`]). The rest of the store reads sealed
/// partitions only through this.
pub(crate) struct SealedView {
    pub path: PathBuf,
    pub count: u64,
    /// Identity of the file this view maps, from `fstat` of the opened file:
    /// a cache of views ([`crate::reader`]) compares it with a fresh `stat`
    /// of the path so a replaced or removed file is never served stale.
    pub id: FileId,
    body: Body,
}

/// What tells one file at a path from another that replaced it: device,
/// inode, length, modification and change times (ns). A rename onto the path
/// brings another inode; a write in place changes mtime/ctime; an inode
/// number reused after a delete comes with new times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

enum Body {
    V1 { map: Mmap, footer: Footer },
    V2(sealed_v2::V2View),
}

impl SealedView {
    /// Maps the file and checks header, footer and length (v2 also the
    /// block index), not the records: a lookup checks the records (v2: the
    /// blocks) it reads, [`SealedView::verify`] checks all.
    pub fn open(
        path: &Path,
        start_ns: i64,
        span_ns: i64,
        segment: u32,
    ) -> Result<SealedView, StoreError> {
        let file = File::open(path).map_err(StoreError::io(path, "open partition"))?;
        let meta = file
            .metadata()
            .map_err(StoreError::io(path, "stat partition"))?;
        let (len, id) = (meta.len(), FileId::of(&meta));
        if len < 2 * HDR {
            return Err(corrupt(
                path,
                0,
                "length",
                format!(
                    "file is {len} bytes, at least {} expected (header + footer)",
                    2 * HDR
                ),
            ));
        }
        let map = mmap::map_read(&file, len).map_err(StoreError::io(path, "map partition"))?;
        let (header, version) = sealed_v2::read_sealed_header(path, &map[..HEADER_SIZE])?;
        check_identity(
            path,
            (
                header.start_ns.get(),
                header.span_ns.get(),
                header.segment.get(),
            ),
            start_ns,
            span_ns,
            segment,
        )?;
        let count = header.record_count.get();
        if version == sealed_v2::SEALED_VERSION_V2 {
            let v = sealed_v2::V2View::open(path, map, &header)?;
            return Ok(SealedView {
                path: path.to_path_buf(),
                count,
                id,
                body: Body::V2(v),
            });
        }
        let foot_off = map.len() - HEADER_SIZE;
        let footer = Footer::read(&map[foot_off..]).map_err(|f| f.at(path, foot_off as u64))?;
        if footer.record_count.get() != count {
            return Err(corrupt(
                path,
                foot_off as u64 + 8,
                "footer record_count",
                format!(
                    "header says {count}, footer says {}",
                    footer.record_count.get()
                ),
            ));
        }
        let want = count.checked_mul(REC).and_then(|b| b.checked_add(2 * HDR));
        if want != Some(len) {
            return Err(corrupt(
                path,
                40,
                "record_count",
                format!("{count} records need {want:?} bytes, file is {len} bytes"),
            ));
        }
        Ok(SealedView {
            path: path.to_path_buf(),
            count,
            id,
            body: Body::V1 { map, footer },
        })
    }

    /// Format version of the file (1 or 2).
    pub fn version(&self) -> u32 {
        match self.body {
            Body::V1 { .. } => 1,
            Body::V2(_) => sealed_v2::SEALED_VERSION_V2,
        }
    }

    /// Smallest `first_ns` of the records marked LATE (`i64::MAX`: none).
    pub fn late_min_first_ns(&self) -> i64 {
        match &self.body {
            Body::V1 { footer, .. } => footer.late_min_first_ns.get(),
            Body::V2(v) => v.footer.late_min_first_ns.get(),
        }
    }

    /// Records marked CARRIED, from the footer.
    pub fn carried_in(&self) -> u32 {
        match &self.body {
            Body::V1 { footer, .. } => footer.carried_in.get(),
            Body::V2(v) => v.footer.carried_in.get(),
        }
    }

    /// Records marked LATE, from the footer.
    pub fn late_in(&self) -> u32 {
        match &self.body {
            Body::V1 { footer, .. } => footer.late_in.get(),
            Body::V2(v) => v.footer.late_in.get(),
        }
    }

    /// Record `i`, validated (v2: its block's CRC checked).
    pub fn record(&self, i: u64) -> Result<Record, StoreError> {
        assert!(i < self.count);
        match &self.body {
            Body::V1 { map, .. } => {
                let off = HEADER_SIZE + i as usize * RECORD_SIZE;
                Record::read(&map[off..off + RECORD_SIZE]).map_err(|f| f.at(&self.path, off as u64))
            }
            Body::V2(v) => v.record(i),
        }
    }

    /// First index whose record is not `less` than the target (binary
    /// search; every probed record is validated, so a damaged probe is an
    /// error, never a wrong answer). On v2 every probe may decode a block:
    /// lookups use [`SealedView::lower_bound_key`].
    pub fn lower_bound(&self, less: impl Fn(&Record) -> bool) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (0u64, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if less(&self.record(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// First index whose (public_ip, public_port) is not below `key`.
    pub fn lower_bound_key(&self, key: ([u8; 16], u16)) -> Result<u64, StoreError> {
        match &self.body {
            Body::V1 { .. } => self.lower_bound(|r| (r.public_ip, r.public_port.get()) < key),
            Body::V2(v) => v.lower_bound_key(key),
        }
    }

    /// Calls `f` with every record whose public address is `ip` (and port
    /// `port`, when given) and whose `first_ns` is at most `to_ns`, in file
    /// order, each validated: what a lookup reads. v1: a binary search,
    /// then the run record by record; v2: [`sealed_v2::V2View::scan_public`]
    /// (only the matching records' other columns are read). On an error the
    /// records already passed to `f` stand.
    pub fn scan_public(
        &self,
        ip: [u8; 16],
        port: Option<u16>,
        to_ns: i64,
        f: &mut dyn FnMut(Record),
    ) -> Result<(), StoreError> {
        match &self.body {
            Body::V1 { .. } => {
                let lo = self.lower_bound_key((ip, port.unwrap_or(0)))?;
                for i in lo..self.count {
                    let r = self.record(i)?;
                    if r.public_ip != ip || port.is_some_and(|p| p != r.public_port.get()) {
                        break;
                    }
                    if r.first_ns.get() <= to_ns {
                        f(r);
                    }
                }
                Ok(())
            }
            Body::V2(v) => v.scan_public(ip, port, to_ns, f),
        }
    }

    /// All records, validated.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        match &self.body {
            Body::V1 { .. } => (0..self.count).map(|i| self.record(i)).collect(),
            Body::V2(v) => v.records(),
        }
    }

    /// File size in bytes.
    pub fn bytes(&self) -> u64 {
        match &self.body {
            Body::V1 { map, .. } => map.len() as u64,
            Body::V2(v) => v.bytes(),
        }
    }

    /// Full check. v1: records checksum against the footer, every record,
    /// strict sort order, footer statistics. v2: [`sealed_v2::V2View::verify`].
    pub fn verify(&self) -> Vec<StoreError> {
        let (map, footer) = match &self.body {
            Body::V1 { map, footer } => (map, footer),
            Body::V2(v) => return v.verify(),
        };
        let mut errors = Vec::new();
        let body = &map[HEADER_SIZE..map.len() - HEADER_SIZE];
        let found = crc32fast::hash(body);
        if found != footer.records_crc.get() {
            errors.push(StoreError::BadChecksum {
                path: self.path.clone(),
                what: format!("records (bytes {HEADER_SIZE}..{})", map.len() - HEADER_SIZE),
                expected: footer.records_crc.get(),
                found,
            });
        }
        let mut prev: Option<Record> = None;
        for i in 0..self.count {
            match self.record(i) {
                Ok(r) => {
                    if let Some(p) = prev {
                        if p.sort_key().cmp(&r.sort_key()) != Ordering::Less {
                            errors.push(corrupt(
                                &self.path,
                                HDR + i * REC,
                                "record order",
                                format!("record {i} does not sort after record {}", i - 1),
                            ));
                        }
                    }
                    prev = Some(r);
                }
                Err(e) => {
                    errors.push(e);
                    prev = None;
                }
            }
        }
        if errors.is_empty() {
            let recs: Vec<Record> = self.records().unwrap_or_default();
            let want = Footer::new(&recs);
            if want != *footer {
                errors.push(corrupt(
                    &self.path,
                    (map.len() - HEADER_SIZE) as u64,
                    "footer",
                    format!(
                        "footer statistics do not match the records: expected {want:?}, found {footer:?}"
                    ),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SF_CARRIED;
    use crate::model::{EndReason, Mapping, Proto};

    fn rec(port: u16, first: i64) -> Record {
        let m = Mapping {
            proto: Proto::Udp,
            internal: "10.0.0.1:1000".parse().unwrap(),
            public: format!("192.0.2.1:{port}").parse().unwrap(),
            remote: "198.51.100.1:53".parse().unwrap(),
            first_ns: first,
            last_ns: first + 5,
            end: EndReason::Idle,
            packets_out: 1,
            packets_in: 1,
            flags: 0,
        };
        Record::encode(&m, 0).unwrap()
    }

    /// `rec` as a log whose records hold `crc` stores it.
    fn slot_of(r: &Record, crc: RecordCrc) -> Record {
        let mut s = *r;
        s.crc = zerocopy::little_endian::U32::new(crc.of(&s));
        s
    }

    /// `committed_slots` before it checked whole chunks with one CRC.
    fn committed_slots_one_by_one(slots: &[u8], crc: RecordCrc) -> u64 {
        let mut n = 0u64;
        for slot in slots.chunks_exact(RECORD_SIZE) {
            if slot.iter().all(|&b| b == 0) || Record::read_with(slot, crc).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Chunked or one by one, the committed length is the same: logs of
        /// up to three chunks and a half, followed by zeros, with one slot
        /// damaged (a flipped bit, zeroed, torn in half, or a bad field
        /// under a right CRC) or none; logs of any version (CRC-32C seeded
        /// with a generation, CRC-32C, CRC-32/IEEE records). A log's records
        /// read as another version (or, version 3, another generation) are
        /// not committed at all (a one-in-2^32 CRC match aside).
        #[test]
        fn committed_length_checked_in_chunks_is_the_same(
            n in 0usize..900,
            tail_zeros in 0usize..300,
            at in 0usize..1200,
            kind in 0u8..5,
            bit in 0usize..(RECORD_SIZE * 8),
            version in 1u32..4,
            generation in 1u32..1 << 20,
        ) {
            let crc = RecordCrc::of_log(version, generation);
            let other = match version {
                1 => RecordCrc::Castagnoli,
                2 => RecordCrc::Ieee,
                _ => RecordCrc::of_generation(generation + 1),
            };
            let mut slots = Vec::new();
            for i in 0..n {
                slots.extend_from_slice(slot_of(&rec(i as u16, i as i64), crc).as_bytes());
            }
            slots.resize(slots.len() + tail_zeros * RECORD_SIZE, 0);
            let slot_count = n + tail_zeros;
            if slot_count > 0 {
                let at = at % slot_count;
                let s = &mut slots[at * RECORD_SIZE..(at + 1) * RECORD_SIZE];
                match kind {
                    0 => s[bit / 8] ^= 1 << (bit % 8),
                    1 => s.fill(0),
                    2 => s[RECORD_SIZE / 2..].fill(0),
                    3 => {
                        // Reserved byte set, CRC made right again.
                        let r = Record::mut_from_bytes(s).unwrap();
                        r.reserved[3] = 1;
                        r.crc = zerocopy::little_endian::U32::new(crc.of(r));
                    }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(
                committed_slots(&slots, crc),
                committed_slots_one_by_one(&slots, crc)
            );
            if slots.len() >= RECORD_SIZE {
                let first = Record::ref_from_bytes(&slots[..RECORD_SIZE]).unwrap();
                if first.crc.get() != other.of(first) {
                    proptest::prop_assert_eq!(committed_slots(&slots, other), 0);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

        /// `append_mappings` (one loop over a stretch of slots) leaves the
        /// log as `append_mapping` one record at a time does: the same
        /// count, the same error at the same record (a mapping whose times
        /// are reversed), and the same bytes in the file, across the file's
        /// growth (1 024 slots) and the buffer's bound (4 096 records).
        #[test]
        fn append_mappings_is_append_mapping_one_by_one(
            pre in 0usize..1100,
            n in 0usize..4700,
            bad_at in proptest::option::of(0usize..4700),
        ) {
            let m = |i: usize| {
                let mut m = rec(i as u16, i as i64 * 1000).decode().unwrap();
                m.packets_out = i as u32;
                if Some(i) == bad_at.map(|b| b + pre) {
                    m.last_ns = m.first_ns - 1;
                }
                m
            };
            let d = tempfile::tempdir().unwrap();
            let (pa, pb) = (d.path().join("a.log"), d.path().join("b.log"));
            let mut a = ActiveLog::create(&pa, 0, 10, 0).unwrap();
            let mut b = ActiveLog::create(&pb, 0, 10, 0).unwrap();
            for i in 0..pre {
                a.append_mapping(&m(i), 0).unwrap().unwrap();
                b.append_mapping(&m(i), 0).unwrap().unwrap();
            }
            let ms: Vec<_> = (pre..pre + n).map(m).collect();
            let (k, ra) = a.append_mappings(&ms, SF_CARRIED);
            let mut kb = 0;
            let mut rb = Ok(Ok(()));
            for x in &ms {
                match b.append_mapping(x, SF_CARRIED) {
                    Ok(Ok(())) => kb += 1,
                    other => {
                        rb = other;
                        break;
                    }
                }
            }
            proptest::prop_assert_eq!(k, kb);
            proptest::prop_assert_eq!(a.count, b.count);
            proptest::prop_assert_eq!(
                ra.map(|r| r.map_err(|f| f.field)).map_err(|e| e.to_string()),
                rb.map(|r| r.map_err(|f| f.field)).map_err(|e| e.to_string())
            );
            a.write_out().unwrap();
            b.write_out().unwrap();
            proptest::prop_assert!(std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap());
            drop((a, b));
            proptest::prop_assert_eq!(ActiveLog::open(&pa, 0, 10, 0).unwrap().count, (pre + k) as u64);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// A used-again file (log version 3): earlier uses of the file, each
        /// with its own generation, left valid records in its slots; the new
        /// use (the next generation, its header durable) wrote `written` of
        /// its records over them before a kill (every write in the page
        /// cache) or a power loss (some of those slots lost: back to what
        /// they held; one torn: its second half back). Recovery
        /// (`ActiveLog::open`) and a reader (`LogView::open`) find exactly
        /// the new records up to the first slot that is not what the new use
        /// wrote there, never an earlier use's record; recovery zeroes every
        /// slot after them, and appending goes on from there.
        #[test]
        fn used_again_log_recovers_exactly_its_own_records(
            first_generation in 1u32..u32::MAX - 8,
            earlier in proptest::collection::vec(0usize..700, 1..4),
            new_count in 0usize..700,
            written_pick in 0usize..700,
            lost in proptest::collection::vec(0usize..700, 0..3),
            torn in proptest::option::of(0usize..700),
        ) {
            let mut generations = Vec::new();
            let mut g = first_generation;
            while !crate::format::generation_ok(g) {
                g += 1;
            }
            for _ in 0..=earlier.len() {
                generations.push(g);
                g = crate::format::next_generation(g).unwrap();
            }
            let new_gen = *generations.last().unwrap();
            let crc = RecordCrc::of_generation(new_gen);
            let capacity = 1024usize;
            let mut slots = vec![0u8; capacity * RECORD_SIZE];
            // Each earlier use's records, over the ones before.
            for (u, &n) in earlier.iter().enumerate() {
                let c = RecordCrc::of_generation(generations[u]);
                for i in 0..n {
                    let r = slot_of(&rec(10_000 + u as u16 * 1000 + i as u16, i as i64), c);
                    slots[i * RECORD_SIZE..(i + 1) * RECORD_SIZE].copy_from_slice(r.as_bytes());
                }
            }
            let before = slots.clone();
            let new: Vec<Record> = (0..new_count).map(|i| slot_of(&rec(i as u16, 7 + i as i64), crc)).collect();
            let written = if new_count == 0 { 0 } else { written_pick % (new_count + 1) };
            for (i, r) in new[..written].iter().enumerate() {
                slots[i * RECORD_SIZE..(i + 1) * RECORD_SIZE].copy_from_slice(r.as_bytes());
            }
            // A power loss: some written slots back to their old bytes, one torn.
            if written > 0 {
                for &l in &lost {
                    let l = l % written;
                    slots[l * RECORD_SIZE..(l + 1) * RECORD_SIZE]
                        .copy_from_slice(&before[l * RECORD_SIZE..(l + 1) * RECORD_SIZE]);
                }
                if let Some(t) = torn {
                    let t = t % written;
                    slots[t * RECORD_SIZE + 48..(t + 1) * RECORD_SIZE]
                        .copy_from_slice(&before[t * RECORD_SIZE + 48..(t + 1) * RECORD_SIZE]);
                }
            }
            let expected = (0..written)
                .take_while(|&i| slots[i * RECORD_SIZE..(i + 1) * RECORD_SIZE] == *new[i].as_bytes())
                .count();
            proptest::prop_assert_eq!(committed_slots(&slots, crc) as usize, expected);
            proptest::prop_assert_eq!(committed_slots_one_by_one(&slots, crc) as usize, expected);

            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("r.log");
            let mut file = LogHeader::new(3600, 3600, 1, crc).as_bytes().to_vec();
            file.extend_from_slice(&slots);
            std::fs::write(&p, &file).unwrap();
            let view = LogView::open(&p, 3600, 3600, 1).unwrap();
            proptest::prop_assert_eq!(view.count as usize, expected);
            let want: Vec<Record> = new[..expected]
                .iter()
                .map(|r| Record::read_with(r.as_bytes(), crc).unwrap())
                .collect();
            proptest::prop_assert_eq!(view.records().unwrap(), want.clone());
            let mut log = ActiveLog::open(&p, 3600, 3600, 1).unwrap();
            proptest::prop_assert_eq!(log.count as usize, expected);
            proptest::prop_assert_eq!(log.records().unwrap(), want.clone());
            log.append(&rec(60_000, 1)).unwrap();
            log.flush().unwrap();
            drop(log);
            let after = std::fs::read(&p).unwrap();
            let header = LogHeader::new(3600, 3600, 1, crc);
            proptest::prop_assert_eq!(&after[..HEADER_SIZE], header.as_bytes());
            let tail = &after[HEADER_SIZE + (expected + 1) * RECORD_SIZE..];
            proptest::prop_assert!(tail.iter().all(|&b| b == 0), "every slot after the recovered ones zeroed");
            let log = ActiveLog::open(&p, 3600, 3600, 1).unwrap();
            proptest::prop_assert_eq!(log.count as usize, expected + 1);
            proptest::prop_assert_eq!(log.zeroed_slots, 0);
        }
    }

    /// A seal's map is kept (`keep_map`) and goes with the file to its next
    /// log (`from_spare`): that log's committed records are read through it,
    /// no new map, and only its own records, not the earlier log's in the
    /// slots after them; past the map's end (the log grew), a new map.
    #[test]
    fn a_kept_map_is_read_again_by_the_files_next_log_to_its_length() {
        let d = tempfile::tempdir().unwrap();
        let hour = 3_600_000_000_000i64;
        let name = |start: i64| {
            d.path().join(crate::format::file_name(
                start,
                0,
                crate::format::FileKind::Active,
            ))
        };
        let a = name(hour);
        let mut log = ActiveLog::create(&a, hour, hour, 0).unwrap();
        let first: Vec<Record> = (0..300u16).map(|i| rec(i, hour + i64::from(i))).collect();
        log.append_records(&first).unwrap();
        log.write_out().unwrap();
        let c = log.committed().unwrap();
        let want: Vec<Record> = first.iter().map(|r| slot_of(r, log.crc)).collect();
        assert_eq!(c.records(), &want[..]);
        let at = c.records().as_ptr();
        log.keep_map(c);
        // Read again through the kept map.
        let c = log.committed().unwrap();
        assert_eq!((c.records().as_ptr(), c.records().len()), (at, 300));
        log.keep_map(c);
        let map = log.take_map();
        assert!(map.is_some() && !log.has_map());
        let generation = log.generation();
        drop(log);
        let spare = d.path().join("spare-r000001.log.tmp");
        std::fs::rename(&a, &spare).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&spare)
            .unwrap();
        let b = name(2 * hour);
        let spare_log = crate::chores::Spare {
            path: spare.clone(),
            file,
            held: generation,
            map,
        };
        let mut next = ActiveLog::from_spare(spare_log, &b, 2 * hour, hour, 0).unwrap();
        let second: Vec<Record> = (0..10u16)
            .map(|i| rec(1000 + i, 2 * hour + i64::from(i)))
            .collect();
        next.append_records(&second).unwrap();
        next.write_out().unwrap();
        let c = next.committed().unwrap();
        let want: Vec<Record> = second.iter().map(|r| slot_of(r, next.crc)).collect();
        assert_eq!(c.records(), &want[..]);
        assert_eq!(c.records().as_ptr(), at, "the kept map, not a new one");
        next.keep_map(c);
        // Past the first map's end (the initial capacity): a new map, all
        // the records.
        let more: Vec<Record> = (0..LOG_SLOTS_INITIAL as u16)
            .map(|i| rec(2000 + i, 2 * hour + 100 + i64::from(i)))
            .collect();
        next.append_records(&more).unwrap();
        next.write_out().unwrap();
        let c = next.committed().unwrap();
        let want: Vec<Record> = second
            .iter()
            .chain(&more)
            .map(|r| slot_of(r, next.crc))
            .collect();
        assert_eq!(c.records(), &want[..]);
    }

    /// A log sealed and its file used again for the next log while a
    /// reader has it mapped: the reader's view (opened before) says
    /// "used again" on every read that could have met the next use's
    /// bytes, never returns a record of the next log and never silently
    /// returns fewer; a view opened after reads the old name's `.part`
    /// instead ("used again"), or, with no `.part` (a crash lost the new
    /// header), an empty log, which recovery empties (`zeroed_anew`).
    #[test]
    fn log_used_again_under_a_reader_is_never_read_as_its_own() {
        let d = tempfile::tempdir().unwrap();
        let hour = 3_600_000_000_000i64;
        let a = d.path().join(crate::format::file_name(
            hour,
            0,
            crate::format::FileKind::Active,
        ));
        let mut log = ActiveLog::create(&a, hour, hour, 0).unwrap();
        for i in 0..300u16 {
            log.append(&rec(i, hour + i64::from(i))).unwrap();
        }
        log.flush().unwrap();
        let generation = log.generation();
        let view = LogView::open(&a, hour, hour, 0).unwrap();
        let index = view.public_index();
        view.same_file().unwrap();
        assert_eq!(view.records().unwrap().len(), 300);
        let ip = rec(0, 0).public_ip;
        assert_eq!(view.records_with_public(ip, Some(5)).unwrap().len(), 1);
        assert_eq!(
            view.records_with_public_indexed(&index, ip, Some(5))
                .unwrap()
                .len(),
            1
        );
        drop(log);
        // Sealed (its `.part` published), renamed to a spare, taken by the
        // next hour's log: a new header, then records over the first slots.
        std::fs::write(
            a.with_file_name(crate::format::file_name(
                hour,
                0,
                crate::format::FileKind::Sealed,
            )),
            b"published",
        )
        .unwrap();
        let spare = d.path().join("spare-r000001.log.tmp");
        std::fs::rename(&a, &spare).unwrap();
        let b = d.path().join(crate::format::file_name(
            2 * hour,
            0,
            crate::format::FileKind::Active,
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&spare)
            .unwrap();
        let spare_log = crate::chores::Spare {
            path: spare.clone(),
            file,
            held: generation,
            map: None,
        };
        let mut next = ActiveLog::from_spare(spare_log, &b, 2 * hour, hour, 0).unwrap();
        std::fs::remove_file(&spare).unwrap();
        assert_eq!(next.generation(), generation + 1);
        // Only the header so far: reads of slots not overwritten would pass
        // their CRC, but the changed header is seen after every read.
        for e in [
            view.records().unwrap_err(),
            view.records_with_public(ip, Some(5)).unwrap_err(),
            view.records_with_public(ip, Some(299)).unwrap_err(),
            view.records_with_public_indexed(&index, ip, Some(299))
                .unwrap_err(),
        ] {
            assert!(log_used_again(&e), "{e}");
        }
        // Records of the next log over the first slots (other ports).
        for i in 0..10u16 {
            next.append(&rec(1000 + i, 2 * hour + i64::from(i)))
                .unwrap();
        }
        next.flush().unwrap();
        assert!(log_used_again(
            &view.records_with_public(ip, Some(5)).unwrap_err()
        ));
        assert!(log_used_again(
            &view
                .records_with_public_indexed(&index, ip, Some(5))
                .unwrap_err()
        ));
        // The old name, if it came back (its `.part` beside it: a reader
        // reads the `.part`); with no `.part`: empty, and recovery empties it.
        std::fs::hard_link(&b, &a).unwrap();
        assert!(log_used_again(
            &LogView::open(&a, hour, hour, 0).map(|_| ()).unwrap_err()
        ));
        let c = d.path().join(crate::format::file_name(
            3 * hour,
            0,
            crate::format::FileKind::Active,
        ));
        std::fs::rename(&a, &c).unwrap();
        assert_eq!(LogView::open(&c, 3 * hour, hour, 0).unwrap().count, 0);
        // Recovery of `b` itself: its header is its own (generation + 1).
        drop(next);
        let reopened = ActiveLog::open(&b, 2 * hour, hour, 0).unwrap();
        assert_eq!(
            (reopened.count, reopened.generation()),
            (10, generation + 1)
        );
        drop(reopened);
        // A header of another log whose `.part` is here: the new log's
        // header was lost: emptied, generation 1, every slot zero.
        let mut bytes = std::fs::read(&c).unwrap();
        bytes[..HEADER_SIZE]
            .copy_from_slice(LogHeader::new(hour, hour, 0, RecordCrc::of_generation(7)).as_bytes());
        std::fs::write(&c, &bytes).unwrap();
        let e = ActiveLog::open(&c, 3 * hour, hour, 0)
            .map(|l| (l.count, l.generation(), l.zeroed_slots));
        // (The recovery of `b` above zeroed the earlier use's 290 records.)
        assert_eq!(e.unwrap(), (0, GENERATION_FIRST, 10));
        let after = std::fs::read(&c).unwrap();
        assert!(after[HEADER_SIZE..].iter().all(|&x| x == 0));
        // Without the `.part` such a header is reported, as before.
        let mut bytes = after;
        bytes[..HEADER_SIZE].copy_from_slice(
            LogHeader::new(5 * hour, hour, 0, RecordCrc::of_generation(7)).as_bytes(),
        );
        std::fs::write(&c, &bytes).unwrap();
        assert!(matches!(
            ActiveLog::open(&c, 3 * hour, hour, 0).map(|_| ()),
            Err(StoreError::Corrupt {
                field: "start_ns",
                ..
            })
        ));
    }

    #[test]
    fn log_grows_past_its_preallocation_and_recovers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.log");
        let mut log = ActiveLog::create(&p, 0, 10, 0).unwrap();
        let n = LOG_SLOTS_INITIAL + 5;
        for i in 0..n {
            log.append(&rec(i as u16, i as i64)).unwrap();
        }
        drop(log); // no flush: the kernel still has the pages (a process kill, not power loss)
        let log = ActiveLog::open(&p, 0, 10, 0).unwrap();
        assert_eq!(log.count, n);
        assert_eq!(log.records().unwrap()[1000], rec(1000, 1000));
        assert!(matches!(
            ActiveLog::open(&p, 0, 10, 1),
            Err(StoreError::Corrupt {
                field: "segment",
                ..
            })
        ));
    }

    /// Appending a run of records at once (a carry) leaves the file as
    /// appending them one at a time does: across the buffer's write-outs
    /// (`LOG_BUFFER_RECORDS_MAX`), the file's growth past its
    /// preallocation, and after records already buffered; each record's
    /// CRC the log's (the read-back checks it).
    #[test]
    fn append_records_is_append_of_each() {
        let d = tempfile::tempdir().unwrap();
        let n = LOG_SLOTS_INITIAL as usize + LOG_BUFFER_RECORDS_MAX + 7;
        let rs: Vec<Record> = (0..n).map(|i| rec(i as u16, i as i64)).collect();
        for (before, runs) in [
            (0usize, vec![n]),
            (3, vec![1, 1000, 4097, usize::MAX]),
            (5000, vec![0, 17, usize::MAX]),
        ] {
            let (one, many) = (d.path().join("one.log"), d.path().join("many.log"));
            let mut a = ActiveLog::create(&one, 0, 10, 0).unwrap();
            let mut b = ActiveLog::create(&many, 0, 10, 0).unwrap();
            for r in &rs[..before] {
                a.append(r).unwrap();
                b.append(r).unwrap();
            }
            let mut at = before;
            for k in runs {
                let k = k.min(n - at);
                for r in &rs[at..at + k] {
                    a.append(r).unwrap();
                }
                b.append_records(&rs[at..at + k]).unwrap();
                at += k;
                assert_eq!(
                    (a.count, a.on_file),
                    (b.count, b.on_file),
                    "before {before}, at {at}"
                );
            }
            a.write_out().unwrap();
            b.write_out().unwrap();
            assert_eq!(
                std::fs::read(&one).unwrap(),
                std::fs::read(&many).unwrap(),
                "before {before}"
            );
            // Read back checked against the log's CRC (and given back as
            // encoded).
            assert_eq!(b.records().unwrap(), rs[..at]);
            drop((a, b));
            std::fs::remove_file(&one).unwrap();
            std::fs::remove_file(&many).unwrap();
        }
    }

    /// The seal's read-back check names a damaged record (one CRC over all
    /// records first, then record by record).
    #[test]
    fn committed_names_a_damaged_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = ActiveLog::create(&p, 0, 10, 0).unwrap();
        for i in 0..5 {
            log.append(&rec(i, i64::from(i))).unwrap();
        }
        log.write_out().unwrap();
        assert_eq!(log.committed().unwrap().records().len(), 5);
        // Damage record 3 behind the writer's back (disk rot, a stray write).
        let off = HDR + 3 * REC + 50;
        let mut b = [0u8; 1];
        log.file.read_exact_at(&mut b, off).unwrap();
        log.file.write_all_at(&[b[0] ^ 4], off).unwrap();
        match log.committed() {
            Err(StoreError::BadChecksum { what, .. }) => {
                assert!(
                    what.contains(&format!("byte {}", HDR + 3 * REC + 92)),
                    "{what}"
                )
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("damaged record not detected"),
        }
    }

    /// The same on two threads (a log large enough to split its CRC), with
    /// the damage in either half.
    #[test]
    fn committed_on_two_threads_names_a_damaged_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = ActiveLog::create(&p, 0, 10, 0).unwrap();
        let n = CRC_SPLIT_RECORDS_MIN as u64 + 3;
        for i in 0..n {
            log.append(&rec(i as u16, i as i64)).unwrap();
        }
        log.write_out().unwrap();
        assert_eq!(log.committed_with(true).unwrap().records().len() as u64, n);
        // The fold sees every record once, in order: the first half's in
        // the first state, the second's in the second (on one thread all
        // in the first); so do the pieces of a short log, and an IEEE one's.
        let collect = |v: &mut Vec<Record>, rs: &[Record]| v.extend_from_slice(rs);
        for two in [false, true] {
            let (c, mut a, b) = log.committed_folding(two, collect).unwrap();
            assert_eq!(b.is_empty(), !two);
            if two {
                assert_eq!(a.len() as u64, n / 2);
            }
            a.extend_from_slice(&b);
            assert_eq!(a, c.records());
        }
        let q = d.path().join("short.log");
        let mut short = ActiveLog::create(&q, 0, 10, 0).unwrap();
        for i in 0..CHECK_CHUNK_SLOTS as u64 * 2 + 5 {
            short.append(&rec(i as u16, i as i64)).unwrap();
        }
        short.write_out().unwrap();
        let (c, a, b) = short.committed_folding(true, collect).unwrap();
        assert!(b.is_empty() && a == c.records() && a.len() == CHECK_CHUNK_SLOTS * 2 + 5);
        let mut seen = Vec::new();
        assert!(all_crcs_right(
            c.records(),
            short.crc,
            &mut |rs: &[Record]| seen.extend_from_slice(rs)
        ));
        assert!(!all_crcs_right(
            c.records(),
            RecordCrc::Castagnoli,
            &mut |_| {}
        ));
        assert_eq!(seen, c.records());
        // Records in memory hold CRC-32/IEEE (an older log's kind).
        let ieee: Vec<Record> = (0..300u16).map(|i| rec(i, i64::from(i))).collect();
        seen.clear();
        assert!(all_crcs_right(
            &ieee,
            RecordCrc::Ieee,
            &mut |rs: &[Record]| seen.extend_from_slice(rs)
        ));
        assert_eq!(seen, ieee);
        // The second half's record first, then also one in the first half
        // (the first damaged one is named).
        for at in [n - 2, 7] {
            let off = HDR + at * REC + 50;
            let mut b = [0u8; 1];
            log.file.read_exact_at(&mut b, off).unwrap();
            log.file.write_all_at(&[b[0] ^ 4], off).unwrap();
            match log.committed_with(true) {
                Err(StoreError::BadChecksum { what, .. }) => {
                    assert!(
                        what.contains(&format!("byte {}", HDR + at * REC + 92)),
                        "{what}"
                    )
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("damaged record not detected"),
            }
        }
    }

    /// An all-zero log (created and grown, header never synced before a
    /// power loss) is started afresh without shrinking it (a reader may
    /// have it mapped), and takes records again.
    #[test]
    fn zero_log_is_reinitialized_without_shrinking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("z.log");
        let len = HDR + 4 * LOG_SLOTS_INITIAL * REC;
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        let mut log = ActiveLog::open(&p, 0, 10, 0).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len);
        assert_eq!((log.count, log.capacity), (0, 4 * LOG_SLOTS_INITIAL));
        log.append(&rec(1, 1)).unwrap();
        log.flush().unwrap();
        drop(log);
        let log = ActiveLog::open(&p, 0, 10, 0).unwrap();
        assert_eq!(log.records().unwrap(), vec![rec(1, 1)]);
    }

    #[test]
    fn sealed_file_bytes_and_search() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.part");
        let mut recs = vec![rec(7, 1), rec(5, 3), rec(7, 0), rec(9, 2)];
        recs[3] = Record::encode(&recs[3].decode().unwrap(), SF_CARRIED).unwrap();
        recs.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        write_sealed_v1(&p, 0, 10, 0, &recs).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 64 + 4 * 96 + 64);
        assert_eq!(&bytes[..8], b"NATRECP1");
        assert_eq!(&bytes[bytes.len() - 64..bytes.len() - 56], b"NATRECF1");
        let v = SealedView::open(&p, 0, 10, 0).unwrap();
        assert_eq!(v.carried_in(), 1);
        assert!(v.verify().is_empty());
        let i = v.lower_bound(|r| r.public_port.get() < 7).unwrap();
        assert_eq!(i, 1);
        assert_eq!(v.record(i).unwrap(), rec(7, 0));
        assert_eq!(v.record(i + 1).unwrap(), rec(7, 1));
        // Wrong name for the header.
        assert!(matches!(
            SealedView::open(&p, 10, 10, 0),
            Err(StoreError::Corrupt {
                field: "start_ns",
                ..
            })
        ));
        // A flipped byte in a record: verify names the record checksum.
        let mut bad = bytes.clone();
        bad[64 + 96 + 3] ^= 0x10;
        std::fs::write(&p, &bad).unwrap();
        let v = SealedView::open(&p, 0, 10, 0).unwrap();
        let errs = v.verify();
        assert!(
            errs.iter().any(
                |e| matches!(e, StoreError::BadChecksum { what, .. } if what.contains("records"))
            ),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| matches!(e, StoreError::BadChecksum { what, .. } if what.contains("record crc at byte 252"))), "{errs:?}");
        // Truncated file: the length check names record_count.
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(SealedView::open(&p, 0, 10, 0).is_err());
    }
}
