//! Gap records: intervals in which the recorder knows it lost packets
//! (kernel ring full, interface drops, its own queues full, the correlator's
//! bounds), with how many. A lookup whose window overlaps a gap says the
//! answer may be incomplete. docs/FORMAT.md, "Gaps", draws every byte.
//!
//! One append-only file per partition start, `gaps/YYYYMMDDTHHMMSSZ.gaps`:
//! a 32-byte header, then 32-byte records. A gap longer than a partition is
//! split at partition boundaries, so a record lies inside its file's
//! partition and a lookup reads only the gap files of the partitions its
//! window overlaps. Gap files are never rewritten: records are appended and
//! fsynced one by one (gaps are rare: the recorder reports at most one per
//! kind per report interval); a torn tail (power loss mid-append) is cut at
//! the first invalid record when the writer next appends.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::format::{utc_stamp, EVENT_NS_MAX};
use crate::model::UnixNanos;
use crate::{fsutil, StoreError};

/// Directory of the gap files inside the store.
pub const GAPS_DIR: &str = "gaps";
/// Magic of a gap file header.
pub const GAPS_MAGIC: [u8; 8] = *b"NATRECG1";
/// Version of the gap file format.
pub const GAPS_VERSION: u32 = 1;
/// Bytes of the gap file header and of each gap record.
pub const GAP_RECORD_SIZE: usize = 32;
/// Most records in one gap file; beyond it further gaps of that partition
/// are merged into its last record (count added, interval widened), so the
/// loss is still reported, with a coarser interval.
pub const GAP_RECORDS_PER_FILE_MAX: u64 = 1 << 16;

/// Why packets were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapKind {
    /// Dropped by the kernel: the capture ring was full (pcap `ps_drop`).
    Kernel,
    /// Dropped by the interface or driver (pcap `ps_ifdrop`).
    Interface,
    /// Dropped by natrec: a capture queue towards the correlator was full.
    Queue,
    /// Packet copies dropped at the correlator's `pending_max` bound before
    /// their twin arrived.
    Correlator,
    /// The capture stopped with an error (interface gone, ...); count 0 when
    /// unknown.
    Capture,
    /// The recorder was not running (stopped or crashed) between the last
    /// record it wrote and its restart; count 0 (unknown).
    Down,
}

impl GapKind {
    /// On-disk code.
    pub const fn code(self) -> u8 {
        match self {
            GapKind::Kernel => 1,
            GapKind::Interface => 2,
            GapKind::Queue => 3,
            GapKind::Correlator => 4,
            GapKind::Capture => 5,
            GapKind::Down => 6,
        }
    }
    /// From the on-disk code.
    pub const fn from_code(c: u8) -> Option<GapKind> {
        Some(match c {
            1 => GapKind::Kernel,
            2 => GapKind::Interface,
            3 => GapKind::Queue,
            4 => GapKind::Correlator,
            5 => GapKind::Capture,
            6 => GapKind::Down,
            _ => return None,
        })
    }
    /// Name in output (stable).
    pub const fn name(self) -> &'static str {
        match self {
            GapKind::Kernel => "kernel",
            GapKind::Interface => "interface",
            GapKind::Queue => "queue",
            GapKind::Correlator => "correlator",
            GapKind::Capture => "capture",
            GapKind::Down => "recorder-down",
        }
    }
}

/// An interval with lost packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Start of the interval, Unix ns (inclusive).
    pub from_ns: UnixNanos,
    /// End of the interval, Unix ns (inclusive).
    pub to_ns: UnixNanos,
    /// Packets lost in it (0: unknown).
    pub count: u64,
    /// Where they were lost.
    pub kind: GapKind,
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct GapHeader {
    magic: [u8; 8],
    version: U32,
    record_size: U32,
    start_ns: I64,
    reserved: [u8; 4],
    crc: U32,
}
const _: () = assert!(size_of::<GapHeader>() == GAP_RECORD_SIZE);
const _: () = assert!(offset_of!(GapHeader, crc) == GAP_RECORD_SIZE - 4);

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct GapRecord {
    from_ns: I64,
    to_ns: I64,
    count: U64,
    kind: u8,
    reserved: [u8; 3],
    crc: U32,
}
const _: () = assert!(size_of::<GapRecord>() == GAP_RECORD_SIZE);
const _: () = assert!(offset_of!(GapRecord, crc) == GAP_RECORD_SIZE - 4);

fn header(start_ns: i64) -> GapHeader {
    let mut h = GapHeader {
        magic: GAPS_MAGIC,
        version: GAPS_VERSION.into(),
        record_size: (GAP_RECORD_SIZE as u32).into(),
        start_ns: start_ns.into(),
        reserved: [0; 4],
        crc: 0.into(),
    };
    h.crc = crc32fast::hash(&h.as_bytes()[..GAP_RECORD_SIZE - 4]).into();
    h
}

fn encode(g: &Gap) -> GapRecord {
    let mut r = GapRecord {
        from_ns: g.from_ns.into(),
        to_ns: g.to_ns.into(),
        count: g.count.into(),
        kind: g.kind.code(),
        reserved: [0; 3],
        crc: 0.into(),
    };
    r.crc = crc32fast::hash(&r.as_bytes()[..GAP_RECORD_SIZE - 4]).into();
    r
}

/// File name of the gap file of partition `start_ns`.
pub fn gaps_file_name(start_ns: i64) -> String {
    format!("{}.gaps", utc_stamp(start_ns))
}

/// Reads a gap file: the header must be valid; records are read up to the
/// first invalid one (a torn tail), whose offset is returned as the
/// committed length.
fn read_file(path: &Path, start_ns: i64) -> Result<(Vec<Gap>, u64), StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(StoreError::io(path, "read"))?;
    let corrupt = |offset: usize, field: &'static str, detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        field,
        detail,
    };
    let Ok((h, _)) = GapHeader::read_from_prefix(&bytes) else {
        return Err(corrupt(
            0,
            "gaps header",
            format!("{} bytes, need 32", bytes.len()),
        ));
    };
    if h.magic != GAPS_MAGIC {
        return Err(corrupt(
            0,
            "gaps magic",
            format!("expected NATRECG1, found {:02x?}", h.magic),
        ));
    }
    let crc = crc32fast::hash(&bytes[..GAP_RECORD_SIZE - 4]);
    if crc != h.crc.get() {
        return Err(StoreError::BadChecksum {
            path: path.to_path_buf(),
            what: "gaps header (bytes 0..28)".into(),
            expected: h.crc.get(),
            found: crc,
        });
    }
    if h.version.get() > GAPS_VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found: h.version.get(),
            supported: GAPS_VERSION,
        });
    }
    if h.record_size.get() as usize != GAP_RECORD_SIZE || h.start_ns.get() != start_ns {
        return Err(corrupt(
            12,
            "gaps header",
            format!(
                "record size {} (expected 32), start {} (expected {start_ns} from the name)",
                h.record_size.get(),
                h.start_ns.get()
            ),
        ));
    }
    let mut gaps = Vec::new();
    let mut off = GAP_RECORD_SIZE;
    while off + GAP_RECORD_SIZE <= bytes.len() {
        let chunk = &bytes[off..off + GAP_RECORD_SIZE];
        let (r, _) = GapRecord::read_from_prefix(chunk).expect("32 bytes");
        let ok = crc32fast::hash(&chunk[..GAP_RECORD_SIZE - 4]) == r.crc.get()
            && r.reserved == [0; 3]
            && r.from_ns.get() <= r.to_ns.get();
        let Some(kind) = GapKind::from_code(r.kind).filter(|_| ok) else {
            break;
        };
        gaps.push(Gap {
            from_ns: r.from_ns.get(),
            to_ns: r.to_ns.get(),
            count: r.count.get(),
            kind,
        });
        off += GAP_RECORD_SIZE;
    }
    Ok((gaps, off as u64))
}

/// Splits `g` at partition boundaries of `span_ns`: (partition start, piece).
/// The count goes with the first piece (the loss is not spread evenly in
/// any known way); later pieces carry count 0 ("loss in this interval,
/// counted in the previous piece").
pub(crate) fn split(g: &Gap, span_ns: i64) -> Vec<(i64, Gap)> {
    let mut out = Vec::new();
    let mut from = g.from_ns;
    let mut first = true;
    // Bound: one piece per partition the gap spans; gaps are clamped to
    // 0..=EVENT_NS_MAX by the caller, so this is finite.
    loop {
        let start = from.div_euclid(span_ns) * span_ns;
        let end = start + span_ns - 1;
        let to = g.to_ns.min(end);
        out.push((
            start,
            Gap {
                from_ns: from,
                to_ns: to,
                count: if first { g.count } else { 0 },
                kind: g.kind,
            },
        ));
        first = false;
        if to >= g.to_ns {
            return out;
        }
        from = end + 1;
    }
}

/// Appends gaps for the writer (which holds `store.lock`).
#[derive(Debug)]
pub(crate) struct GapLog {
    dir: PathBuf,
    span_ns: i64,
    /// Committed length (bytes) and record count of files already checked.
    checked: std::collections::HashMap<i64, (u64, u64)>,
}

impl GapLog {
    pub(crate) fn new(store_dir: &Path, span_ns: i64) -> GapLog {
        GapLog {
            dir: store_dir.join(GAPS_DIR),
            span_ns,
            checked: Default::default(),
        }
    }

    /// Appends `g` (split at partition boundaries), durable on return.
    pub(crate) fn append(&mut self, g: &Gap) -> Result<(), StoreError> {
        let from = g.from_ns.clamp(0, EVENT_NS_MAX);
        let to = g.to_ns.clamp(from, EVENT_NS_MAX);
        let g = Gap {
            from_ns: from,
            to_ns: to,
            ..*g
        };
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir).map_err(StoreError::io(&self.dir, "create directory"))?;
            fsutil::fsync_dir(self.dir.parent().expect("gaps dir is inside the store"))?;
        }
        for (start, piece) in split(&g, self.span_ns) {
            self.append_one(start, &piece)?;
        }
        Ok(())
    }

    fn append_one(&mut self, start: i64, g: &Gap) -> Result<(), StoreError> {
        let path = self.dir.join(gaps_file_name(start));
        let (len, n) = match self.checked.get(&start) {
            Some(&c) => c,
            None => {
                if path.exists() {
                    match read_file(&path, start) {
                        Ok((gaps, len)) => (len, gaps.len() as u64),
                        // A header that never became durable (crash right
                        // after creating the file): no record can follow it.
                        Err(_)
                            if fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
                                < GAP_RECORD_SIZE as u64 * 2 =>
                        {
                            (0, 0)
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    (0, 0)
                }
            }
        };
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path, "open"))?;
        let mut len = len;
        if len == 0 {
            f.set_len(0).map_err(StoreError::io(&path, "truncate"))?;
            f.write_all(header(start).as_bytes())
                .map_err(StoreError::io(&path, "write"))?;
            f.sync_all().map_err(StoreError::io(&path, "fsync"))?;
            fsutil::fsync_dir(&self.dir)?;
            len = GAP_RECORD_SIZE as u64;
        } else {
            // Cut a torn tail; no committed record is touched.
            f.set_len(len).map_err(StoreError::io(&path, "truncate"))?;
        }
        let mut n = n;
        if n >= GAP_RECORDS_PER_FILE_MAX {
            // At the bound: widen the last record instead of adding one.
            // This rewrites one gap record (never a mapping): the loss it
            // reported is still inside the widened one.
            let (gaps, _) = read_file(&path, start)?;
            let last = gaps.last().expect("n > 0");
            let merged = Gap {
                from_ns: last.from_ns.min(g.from_ns),
                to_ns: last.to_ns.max(g.to_ns),
                count: last.count.saturating_add(g.count),
                kind: last.kind,
            };
            len -= GAP_RECORD_SIZE as u64;
            f.set_len(len).map_err(StoreError::io(&path, "truncate"))?;
            n -= 1;
            return self.write_at(f, &path, start, len, n, &merged);
        }
        self.write_at(f, &path, start, len, n, g)
    }

    fn write_at(
        &mut self,
        mut f: File,
        path: &Path,
        start: i64,
        len: u64,
        n: u64,
        g: &Gap,
    ) -> Result<(), StoreError> {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(len))
            .map_err(StoreError::io(path, "seek"))?;
        f.write_all(encode(g).as_bytes())
            .map_err(StoreError::io(path, "write"))?;
        f.sync_data().map_err(StoreError::io(path, "fsync"))?;
        self.checked
            .insert(start, (len + GAP_RECORD_SIZE as u64, n + 1));
        Ok(())
    }
}

/// Gaps overlapping `[from_ns, to_ns]` in the store at `store_dir`
/// (partitions of `span_ns`), sorted by start; unreadable files are
/// returned as errors, the others still answer.
pub(crate) fn read_overlapping(
    store_dir: &Path,
    span_ns: i64,
    from_ns: i64,
    to_ns: i64,
) -> (Vec<Gap>, Vec<StoreError>) {
    let dir = store_dir.join(GAPS_DIR);
    let mut gaps = Vec::new();
    let mut errors = Vec::new();
    if !dir.exists() {
        return (gaps, errors);
    }
    let from = from_ns.clamp(0, EVENT_NS_MAX);
    let to = to_ns.clamp(0, EVENT_NS_MAX);
    if from > to {
        return (gaps, errors);
    }
    let first = from.div_euclid(span_ns) * span_ns;
    let last = to.div_euclid(span_ns) * span_ns;
    if (last - first) / span_ns > 100_000 {
        // A very wide window (export of everything): list the directory
        // instead of probing every partition start.
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(start) = parse_gaps_name(&name).filter(|s| (first..=last).contains(s)) {
                    read_into(&e.path(), start, from, to, &mut gaps, &mut errors);
                }
            }
        }
    } else {
        let mut start = first;
        while start <= last {
            let path = dir.join(gaps_file_name(start));
            if path.exists() {
                read_into(&path, start, from, to, &mut gaps, &mut errors);
            }
            start += span_ns;
        }
    }
    gaps.sort_by_key(|g| (g.from_ns, g.to_ns, g.kind));
    (gaps, errors)
}

fn read_into(
    path: &Path,
    start: i64,
    from: i64,
    to: i64,
    gaps: &mut Vec<Gap>,
    errors: &mut Vec<StoreError>,
) {
    match read_file(path, start) {
        Ok((g, _)) => gaps.extend(g.into_iter().filter(|g| g.from_ns <= to && g.to_ns >= from)),
        Err(e) => errors.push(e),
    }
}

/// Start of the partition a gap file belongs to, from its name.
fn parse_gaps_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".gaps")?;
    let (start, _, _) = crate::format::parse_file_name(&format!("{stem}-0000.log"))?;
    Some(start)
}

/// Every gap file of the store checked (for `verify`): (file name, records,
/// error). A torn tail is not an error (as in a log: the committed records
/// end before it, and the next writer cuts it).
pub(crate) fn verify_all(store_dir: &Path) -> Vec<(String, u64, Option<StoreError>)> {
    let dir = store_dir.join(GAPS_DIR);
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Some(start) = parse_gaps_name(&name) else {
            continue;
        };
        let path = dir.join(&name);
        match read_file(&path, start) {
            Ok((g, _)) => out.push((name, g.len() as u64, None)),
            Err(e) => out.push((name, 0, Some(e))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NANOS_PER_SEC;

    const S: i64 = NANOS_PER_SEC;

    #[test]
    fn append_read_split_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let span = 3600 * S;
        let t = 1_772_373_600 * S; // 2026-03-01T14:00:00Z
        let mut log = GapLog::new(d.path(), span);
        let g1 = Gap {
            from_ns: t + 10 * S,
            to_ns: t + 11 * S,
            count: 7,
            kind: GapKind::Kernel,
        };
        // Crosses into the next partition: split in two.
        let g2 = Gap {
            from_ns: t + span - S,
            to_ns: t + span + S,
            count: 3,
            kind: GapKind::Queue,
        };
        log.append(&g1).unwrap();
        log.append(&g2).unwrap();
        let (gaps, errs) = read_overlapping(d.path(), span, t, t + 2 * span);
        assert!(errs.is_empty());
        assert_eq!(gaps.len(), 3);
        assert_eq!(gaps[0], g1);
        assert_eq!(gaps[1].to_ns, t + span - 1);
        assert_eq!(gaps[1].count, 3);
        assert_eq!(
            gaps[2],
            Gap {
                from_ns: t + span,
                to_ns: t + span + S,
                count: 0,
                kind: GapKind::Queue
            }
        );
        // Only the overlapping ones.
        let (gaps, _) = read_overlapping(d.path(), span, t + 12 * S, t + 13 * S);
        assert!(gaps.is_empty());
        let (gaps, _) = read_overlapping(d.path(), span, t + 11 * S, t + 11 * S);
        assert_eq!(gaps, vec![g1]);

        // Torn tail: half a record appended; readers stop before it, the
        // next writer cuts it.
        let path = d.path().join(GAPS_DIR).join(gaps_file_name(t));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xab; 20]).unwrap();
        let (gaps, _) = read_overlapping(d.path(), span, t, t + 30 * S);
        assert_eq!(gaps, vec![g1]);
        let mut log = GapLog::new(d.path(), span);
        let g3 = Gap {
            from_ns: t + 20 * S,
            to_ns: t + 20 * S,
            count: 1,
            kind: GapKind::Interface,
        };
        log.append(&g3).unwrap();
        let (gaps, _) = read_overlapping(d.path(), span, t, t + 30 * S);
        assert_eq!(gaps, vec![g1, g3]);
        assert!(verify_all(d.path()).iter().all(|v| v.2.is_none()));
    }

    #[test]
    fn damaged_header_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let span = 3600 * S;
        let t = 1_772_373_600 * S;
        let mut log = GapLog::new(d.path(), span);
        log.append(&Gap {
            from_ns: t,
            to_ns: t,
            count: 1,
            kind: GapKind::Kernel,
        })
        .unwrap();
        let path = d.path().join(GAPS_DIR).join(gaps_file_name(t));
        let mut b = fs::read(&path).unwrap();
        b[3] ^= 1;
        fs::write(&path, b).unwrap();
        let (gaps, errs) = read_overlapping(d.path(), span, t, t);
        assert!(gaps.is_empty());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("gaps magic"), "{}", errs[0]);
    }
}
