//! Capture files: pcap and pcapng, read zero-copy through a memory map.
//!
//! [`CaptureFile::open`] maps a file read-only (falling back to reading it into memory when the
//! map fails), recognises the format by its magic and hands out [`Packets`], an iterator of
//! [`RawPacket`]s whose `data` borrows straight from the map: no copy and no allocation per packet.
//!
//! Formats:
//! * pcap with microsecond (`a1b2c3d4`) or nanosecond (`a1b23c4d`) timestamps, in either byte order;
//! * pcapng (Section Header Block `0a0d0d0a`), in either byte order, any number of sections and
//!   interfaces; `if_tsresol` (decimal and power-of-two forms), `if_tsoffset` and `if_name` are
//!   honoured. Simple Packet Blocks carry no timestamp: they get the timestamp of the previous
//!   packet of the file (0 if none). Blocks other than SHB, IDB, EPB and SPB are skipped.
//!
//! Errors distinguish an *incomplete* last record ([`CaptureError::Truncated`], typical of a
//! capture still being written or cut by a full disk) from a *corrupt* one
//! ([`CaptureError::Corrupt`], a length that cannot be right). After any error the iterator ends.
//!
//! Block framing (type, both lengths, padding) is checked here before the block bytes are handed
//! to `pcap-parser`, so that a length that runs past the end of the file is reported as
//! truncation and never as a parser "incomplete" from the middle of a block. Legacy pcap records
//! are read here entirely, straight from the bytes (`Packets::next_pcap`): the byte order, the
//! timestamp unit and the `caplen` limit are worked out once per file from the global header, so a
//! record costs one bounds check of its 16-byte header, one of its `caplen`, and four loads;
//! `pcap-parser` reads the global header and the pcapng blocks.
//!
//! The pcap global header's `thiszone` is ignored (libpcap and every common writer set it to 0),
//! and only the low 16 bits of its link type are kept (the upper bits carry FCS information).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use pcap_parser::pcap::parse_pcap_header;
use pcap_parser::pcapng::{
    parse_enhancedpacketblock_be, parse_enhancedpacketblock_le, parse_interfacedescriptionblock_be,
    parse_interfacedescriptionblock_le, parse_sectionheaderblock, parse_simplepacketblock_be,
    parse_simplepacketblock_le, InterfaceDescriptionBlock, OptionCode, PcapNGOption,
};
use pcap_parser::{BOM_MAGIC, EPB_MAGIC, IDB_MAGIC, SHB_MAGIC, SPB_MAGIC};

/// Smallest captured length the legacy pcap record check accepts as a limit, in bytes, whatever
/// the file's snapshot length says (Wireshark's `WTAP_MAX_PACKET_SIZE_STANDARD`): some writers put
/// a small or zero snaplen in the header and still write full packets.
const PACKET_BYTES_MIN_LIMIT: u32 = 262_144;

/// Largest `caplen` [`Packets::read_into`] reads inline: the smallest limit any file has
/// ([`PACKET_BYTES_MIN_LIMIT`]), so one compare with a constant tests it whatever the file's
/// own limit. A larger record takes the full path, which tests it against the file's limit.
const INLINE_CAPLEN_MAX: u32 = PACKET_BYTES_MIN_LIMIT;

/// Bytes from a record's start that the inline read may touch: its header and the largest
/// `caplen` it reads.
const INLINE_RECORD_BYTES_MAX: usize = PCAP_RECORD_HEADER_BYTES + INLINE_CAPLEN_MAX as usize;

/// Largest record or block this reader accepts, in bytes. A larger length is reported as
/// [`CaptureError::Corrupt`] rather than as truncation: no capture tool writes such records.
const RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// Most interfaces one pcapng section may declare; one more is reported as corrupt (the table of
/// interfaces would otherwise grow with whatever the file claims).
const INTERFACES_PER_SECTION_MAX: usize = 65_536;

/// Size of the pcap global header, in bytes.
const PCAP_HEADER_BYTES: usize = 24;
/// Size of a pcap record header, in bytes.
const PCAP_RECORD_HEADER_BYTES: usize = 16;
/// Smallest pcapng block (type, length, trailing length), in bytes.
const PCAPNG_BLOCK_BYTES_MIN: usize = 12;
/// Bytes of a pcapng block that hold its type and length.
const PCAPNG_BLOCK_TYPE_AND_LEN_BYTES: usize = 8;
/// End of a Section Header Block's byte-order magic, counted from the block start.
const PCAPNG_SHB_BOM_END: usize = 12;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Why a capture file could not be read. Display: `<what>: <why>; <what to do>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file starts with neither a pcap nor a pcapng magic number.
    #[error(
        "{}: not a pcap or pcapng capture (starts with {}; expected a1b2c3d4, a1b23c4d, their byte swaps, or 0a0d0d0a); \
         give a capture written by tcpdump, dumpcap or tshark, or convert it with `editcap -F pcapng`",
        path.display(), Hex(found)
    )]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// Its first bytes (up to 4).
        found: Vec<u8>,
    },
    /// The file ends inside a record: it is still being written, or was cut short.
    #[error(
        "{}: truncated record at byte offset {offset}: needs {need} bytes, only {have} left in the file; \
         the packets before it were read; wait for the capture to finish or cut the file at offset {offset}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Byte offset of the incomplete record.
        offset: u64,
        /// Bytes the record needs, counted from `offset`.
        need: u64,
        /// Bytes left in the file from `offset`.
        have: u64,
    },
    /// A record's contents cannot be right (a length too small or too large, lengths that
    /// disagree, an impossible option).
    #[error(
        "{}: corrupt record at byte offset {offset}: {detail}; the packets before it were read; \
         check the file with `capinfos` or repair it with `pcapfix`",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the corrupt record.
        offset: u64,
        /// What is wrong, for the operator.
        detail: String,
    },
    /// The file could not be opened, mapped or read.
    #[error("{}: cannot read capture: {source}; check the path and its permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Formats bytes as lowercase hex, `<empty file>` when there are none.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<empty file>");
        }
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The bytes of a capture: a read-only map of the file, or an owned buffer.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// The container format, recognised from the first bytes.
#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        snaplen: u32,
        linktype: u16,
    },
    PcapNg,
}

/// A pcap or pcapng capture held in memory (mapped or owned), ready to iterate.
pub struct CaptureFile {
    path: PathBuf,
    bytes: Bytes,
    format: Format,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("len_bytes", &self.bytes.len())
            .field("format", &self.format)
            .finish()
    }
}

impl CaptureFile {
    /// Opens and memory-maps `path`, and recognises its format.
    ///
    /// The map is read-only. If the map cannot be made (some file systems and special files
    /// refuse it) the file is read into memory instead.
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bytes = if len == 0 {
            // Mapping an empty file fails on some platforms; there is nothing to map anyway.
            Bytes::Owned(Vec::new())
        } else {
            match map_read_only(&file) {
                Ok(map) => Bytes::Mapped(map),
                Err(_) => {
                    let mut buf = Vec::new();
                    file.read_to_end(&mut buf).map_err(io)?;
                    Bytes::Owned(buf)
                }
            }
        };
        Self::new(path.to_path_buf(), bytes)
    }

    /// Wraps capture bytes already in memory; `name` stands for the path in errors.
    /// Used by tests and fuzz targets, and for captures that arrive by other means than a file.
    pub fn from_bytes(
        name: impl Into<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<CaptureFile, CaptureError> {
        Self::new(name.into(), Bytes::Owned(bytes))
    }

    fn new(path: PathBuf, bytes: Bytes) -> Result<CaptureFile, CaptureError> {
        let format = detect(&path, &bytes)?;
        Ok(CaptureFile {
            path,
            bytes,
            format,
        })
    }

    /// The path given to [`CaptureFile::open`] (or the name given to [`CaptureFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the capture, in bytes; [`Packets::position`] counts up to it.
    pub fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Iterates over the packets, in file order.
    pub fn packets(&self) -> Packets<'_> {
        let data: &[u8] = &self.bytes;
        let state = match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                snaplen,
                linktype,
            } => State::Pcap(PcapRecords {
                big_endian,
                frac_to_ns: if nanos { 1 } else { 1_000 },
                caplen_max: snaplen.clamp(PACKET_BYTES_MIN_LIMIT, RECORD_BYTES_MAX),
                linktype,
            }),
            Format::PcapNg => State::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
                last_ts_ns: 0,
            },
        };
        let pos = match self.format {
            Format::Pcap { .. } => PCAP_HEADER_BYTES,
            Format::PcapNg => 0,
        };
        let map = match &self.bytes {
            Bytes::Mapped(m) => {
                // A hint only: without it reading works the same, page by page.
                let _ = m.advise(memmap2::Advice::Sequential);
                Some(m)
            }
            Bytes::Owned(_) => None,
        };
        Packets {
            path: &self.path,
            data,
            map,
            populated_to: 0,
            released_to: 0,
            read_ahead: ReadAhead::default(),
            map_work_at: 0,
            inline_to: 0,
            frac_to_ns: match self.format {
                Format::Pcap { nanos: true, .. } => 1,
                _ => 1_000,
            },
            pos,
            done: false,
            error: None,
            state,
        }
    }
}

/// How far ahead of the record being read the reader asks for the cache line.
const PREFETCH_AHEAD_BYTES: usize = 2048;

/// The 32-bit field at `at` of a pcap record header, in the file's byte order.
#[inline(always)]
fn pcap_field<const BIG_ENDIAN: bool>(header: &[u8; PCAP_RECORD_HEADER_BYTES], at: usize) -> u32 {
    let b = [header[at], header[at + 1], header[at + 2], header[at + 3]];
    if BIG_ENDIAN {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// Asks the CPU to bring the cache lines of `data[at..at + 256]` in (a hint: no effect on what is read).
#[inline(always)]
fn prefetch_ahead(data: &[u8], at: usize) {
    prefetch_lines::<4>(data, at);
}

/// Asks the CPU for the two cache lines at `data[at..]`: where the next record (its header
/// and the packet headers a decode reads) starts. The fixed distance of [`prefetch_ahead`]
/// leaves lines out when records are longer than the 256 bytes it asks for each time, and a
/// record header in one of those was the reader's largest stall (perf, 10 M bench capture).
#[inline(always)]
fn prefetch_next(data: &[u8], at: usize) {
    prefetch_lines::<2>(data, at);
}

/// Asks the CPU for `N` cache lines from `data[at]` on. No test that `at` is inside `data`:
/// near the end of the capture the lines may lie past it (see [`prefetch_at`]: a prefetch of
/// any address is harmless), and the test cost two instructions a call, twice per packet.
#[inline(always)]
fn prefetch_lines<const N: usize>(data: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = data.as_ptr().wrapping_add(at);
        for k in 0..N {
            prefetch_at(p.wrapping_add(64 * k));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch_at(p: *const u8) {
    // SAFETY: a prefetch is a hint: it reads nothing the program sees, changes no memory and
    // never faults, whatever the address (x86 `PREFETCHh` raises no exception; an address that
    // is not mapped is simply not fetched), so `p` need not point into a live allocation. It is
    // at most `PREFETCH_AHEAD_BYTES` + 192 bytes past the capture map's end (a `wrapping_add`
    // pointer, never dereferenced).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>()) }
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and natrec never writes to capture files, so no Rust reference
    // into it is invalidated by our own writes. Another process truncating the file while it is
    // mapped would make reads past the new end raise SIGBUS and kill natrec; we accept that:
    // captures are read after they are written (a capture still growing is only appended to, and
    // the map covers only the length seen at open). Modification in place by another process
    // would change bytes under us but cannot break memory safety of the `&[u8]` parsing code,
    // which checks every length against the slice it is given.
    unsafe { Mmap::map(file) }
}

/// Releases the page-table entries of `len` bytes of `map` from `offset` (`MADV_DONTNEED`); the
/// file's pages stay in the page cache.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn release_map_range(map: &Mmap, offset: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: `map` is a read-only `MAP_SHARED` map of a file (`map_read_only`; owned buffers are
    // never released). On a shared file mapping, Linux's MADV_DONTNEED only removes this
    // process's page-table entries for the range: the next access faults the same page of the
    // file in again from the page cache (or the disk), so every byte reads the same before and
    // after, and a `&[u8]` borrowed from the range (a `RawPacket<'a>` still queued for the
    // correlating thread) stays valid and unchanged. (On a private or anonymous mapping it would
    // zero the pages; this map is neither.) Nothing is unmapped: the map lives as long as the
    // `CaptureFile`, and every borrow of it is tied to that by its lifetime, so no use after
    // unmap is possible. The one caveat is `map_read_only`'s: another process changing the file
    // in place changes what we read, with or without this call.
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) }
}

/// Blocks of 512 bytes the calling thread has read from storage so far (`getrusage`'s
/// `ru_inblock` for `RUSAGE_THREAD`: counted when a read is submitted, so a page-cache hit
/// adds nothing); `None` if the kernel does not say.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn thread_blocks_read() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage` (zeroed, so every field is initialised
    // whatever the kernel writes); `getrusage` writes only into it and returns 0 on success,
    // after which it is read. `RUSAGE_THREAD` asks about the calling thread only.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    u64::try_from(usage.ru_inblock).ok()
}

/// Bytes the calling thread read from storage since [`thread_blocks_read`] gave `blocks` (0
/// if the kernel does not say).
#[cfg(target_os = "linux")]
fn bytes_read_since(blocks: Option<u64>) -> u64 {
    match (blocks, thread_blocks_read()) {
        (Some(a), Some(b)) => b.saturating_sub(a).saturating_mul(512),
        _ => 0,
    }
}

/// Recognises the format from the first bytes and checks the global header.
fn detect(path: &Path, data: &[u8]) -> Result<Format, CaptureError> {
    let found = &data[..data.len().min(4)];
    let not_a_capture = || CaptureError::NotACapture {
        path: path.to_path_buf(),
        found: found.to_vec(),
    };
    let Some(magic) = read_u32(data, 0, false) else {
        return Err(not_a_capture());
    };
    match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
            if data.len() < PCAP_HEADER_BYTES {
                return Err(CaptureError::Truncated {
                    path: path.to_path_buf(),
                    offset: 0,
                    need: PCAP_HEADER_BYTES as u64,
                    have: data.len() as u64,
                });
            }
            let corrupt = |detail: String| CaptureError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                detail,
            };
            let (_, header) = parse_pcap_header(data)
                .map_err(|e| corrupt(format!("pcap global header unreadable: {e}")))?;
            if header.version_major != 2 {
                return Err(corrupt(format!(
                    "pcap version {}.{} (only 2.x exists)",
                    header.version_major, header.version_minor
                )));
            }
            Ok(Format::Pcap {
                big_endian: header.is_bigendian(),
                nanos: header.is_nanosecond_precision(),
                snaplen: header.snaplen,
                // Low 16 bits: the link type; the upper bits carry FCS length flags.
                linktype: (header.network.0 as u32 & 0xffff) as u16,
            })
        }
        SHB_MAGIC => Ok(Format::PcapNg),
        _ => Err(not_a_capture()),
    }
}

/// Reads a `u32` at `at`, `None` if it does not fit.
fn read_u32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = data.get(at..end)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// One captured packet, borrowing its bytes from the [`CaptureFile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Capture time, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: i64,
    /// `LINKTYPE_*` value of the interface the packet was captured on.
    pub linktype: u16,
    /// pcapng interface index within its section (0 for pcap).
    pub interface: u32,
    /// The interface's `if_name` option, if the file has one.
    pub interface_name: Option<&'a str>,
    /// The captured bytes (`caplen` of them).
    pub data: &'a [u8],
    /// Length of the packet on the wire, in bytes (may exceed `data.len()` when the snapshot
    /// length cut it).
    pub orig_len: u32,
    /// Byte offset of this packet's record in the file, for error messages.
    pub offset: u64,
}

impl RawPacket<'_> {
    /// A packet of no bytes at time 0 (a placeholder for [`Packets::read_into`]).
    pub const EMPTY: RawPacket<'static> = RawPacket {
        ts_ns: 0,
        linktype: 0,
        interface: 0,
        interface_name: None,
        data: &[],
        orig_len: 0,
        offset: 0,
    };
}

/// One pcapng interface, as declared by its Interface Description Block.
#[derive(Clone, Copy, Debug)]
struct Interface<'a> {
    linktype: u16,
    name: Option<&'a str>,
    /// Timestamp units per second.
    units_per_sec: u128,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_sec: i64,
}

/// What a legacy pcap file's global header says about every record, worked out once per file.
#[derive(Clone, Copy, Debug)]
struct PcapRecords {
    /// Record header fields are big-endian.
    big_endian: bool,
    /// Nanoseconds per unit of the record's fraction field: 1 (`a1b23c4d`) or 1 000 (`a1b2c3d4`).
    frac_to_ns: i64,
    /// Largest `caplen` accepted (snaplen clamped to [`PACKET_BYTES_MIN_LIMIT`],
    /// [`RECORD_BYTES_MAX`]); larger is [`CaptureError::Corrupt`].
    caplen_max: u32,
    linktype: u16,
}

enum State<'a> {
    Pcap(PcapRecords),
    PcapNg {
        big_endian: bool,
        /// Interfaces of the current section, by index; bounded by `INTERFACES_PER_SECTION_MAX`.
        interfaces: Vec<Interface<'a>>,
        /// Timestamp of the previous packet, given to Simple Packet Blocks.
        last_ts_ns: i64,
    },
}

/// Iterator over the packets of a [`CaptureFile`]; ends after the first error.
///
/// [`Packets::read`] is the same iteration without wrapping each packet in a `Result` (the
/// error, if any, is taken afterwards with [`Packets::take_error`]); the replay's merge uses it.
pub struct Packets<'a> {
    path: &'a Path,
    data: &'a [u8],
    /// The map behind `data`, to populate ahead of the reader.
    map: Option<&'a Mmap>,
    /// Bytes of the map whose page-table entries were populated so far.
    populated_to: usize,
    /// Bytes at the start of the map whose page-table entries were released.
    released_to: usize,
    /// Whether, and how far, the file was asked into the page cache ahead of `populated_to`.
    read_ahead: ReadAhead,
    /// Position from which the next [`Packets::map_work`] is due, so the per-packet test is
    /// one compare; 0 once `done` ([`Packets::end`]), so that compare also stops the inline
    /// read at the end. Set only by [`Packets::set_map_work_at`].
    map_work_at: usize,
    /// Position before which [`Packets::read_into`] reads a record inline: for a legacy
    /// little-endian pcap file, `map_work_at` or, nearer the end of the file, the last
    /// position with [`INLINE_RECORD_BYTES_MAX`] bytes after it, whichever is smaller; 0 for
    /// other files (pcapng, big-endian pcap) and once `done`. Set with `map_work_at`.
    /// Invariant: `pos < inline_to` implies `pos + INLINE_RECORD_BYTES_MAX <= data.len()`.
    inline_to: usize,
    /// A legacy pcap file's `PcapRecords::frac_to_ns`, for the inline read (which does not
    /// look at `state`).
    frac_to_ns: i64,
    pos: usize,
    done: bool,
    /// The error that ended the iteration, until taken.
    error: Option<CaptureError>,
    state: State<'a>,
}

impl fmt::Debug for Packets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packets")
            .field("path", &self.path)
            .field("position", &self.pos)
            .field("done", &self.done)
            .finish()
    }
}

impl<'a> Packets<'a> {
    /// Bytes of the file consumed so far, for progress reports (compare with
    /// [`CaptureFile::len_bytes`]).
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// The link type of every packet this iterator gives, when the file fixes one: a legacy
    /// pcap file's header names one for all its records. `None` for pcapng (a link type per
    /// interface).
    pub fn fixed_linktype(&self) -> Option<u16> {
        match self.state {
            State::Pcap(records) => Some(records.linktype),
            State::PcapNg { .. } => None,
        }
    }

    /// The next packet, in file order, every field written; `None` at the end of the file or
    /// at the first error, which [`Packets::take_error`] then returns. Reads nothing more after
    /// either.
    #[inline]
    pub fn read(&mut self) -> Option<RawPacket<'a>> {
        let mut p = RawPacket::EMPTY;
        // The fields a legacy pcap file fixes, as `read_into` wants them in its slot.
        if let State::Pcap(records) = self.state {
            p.linktype = records.linktype;
        }
        if !self.read_into(&mut p) {
            return None;
        }
        self.complete(&mut p);
        Some(p)
    }

    /// Writes the fields [`Packets::read_into`]'s common case leaves as they were
    /// (`orig_len`, `offset`) into `pkt`, which must be the packet this `Packets` read last
    /// (and nothing may have been read since): for a legacy pcap record, from its header,
    /// which ends where its captured bytes start and starts at `offset`; a pcapng packet's
    /// were written by the read already. [`Packets::read`] (and the iterator) call it: their
    /// packets are whole.
    pub fn complete(&self, pkt: &mut RawPacket<'a>) {
        if let State::Pcap(records) = self.state {
            // The record read last ends at `pos`: header, then `data`.
            let offset = self.pos - pkt.data.len() - PCAP_RECORD_HEADER_BYTES;
            let header = self.data[offset..]
                .first_chunk::<PCAP_RECORD_HEADER_BYTES>()
                .expect("the record read last is whole");
            pkt.orig_len = if records.big_endian {
                pcap_field::<true>(header, 12)
            } else {
                pcap_field::<false>(header, 12)
            };
            pkt.offset = offset as u64;
        }
    }

    /// [`Packets::read`] into `out`, overwriting it; `false` (and `out` unchanged) where `read`
    /// gives `None`. For a caller that keeps the packet in place (the replay's merge keeps each
    /// file's next packet in its head): the record's fields go straight there, with no
    /// intermediate copy of the packet.
    ///
    /// Contract: for a legacy pcap file the common case leaves the fields the file fixes
    /// (`linktype` from its header, `interface` 0, `interface_name` `None`) as they are in
    /// `out`, so `out` must hold them already: keep one slot per `Packets` and hand it to
    /// every call (the first call of a `Packets` always takes the full path below, which
    /// writes every field, and so does every later one that upkeeps the window), or fill
    /// those fields first, as [`Packets::read`] does. Three stores a packet less (round 11).
    /// The common case also leaves `orig_len` and `offset` as they were (stale: the replay
    /// reads neither; two loads and stores a packet less, round 13): who needs them calls
    /// [`Packets::complete`] on the packet right after reading it, as [`Packets::read`] does.
    /// The full path writes them (so a pcapng packet's, and the first record's, are right).
    ///
    /// The common case (a little-endian legacy pcap record of at most [`INLINE_CAPLEN_MAX`]
    /// captured bytes, inside the mapped window and at least [`INLINE_RECORD_BYTES_MAX`]
    /// bytes before the end of the file) is read here with no call and no stack frame, its
    /// `caplen` the only test after the position's; everything else (the window's upkeep,
    /// pcapng, big-endian pcap, the file's last ~256 KiB, larger records, errors) goes to an
    /// out-of-line function that does it all from the start. Inlined into the caller's loop
    /// (the replay's merge): the call, its three saved registers and the arguments cost ~11
    /// instructions a packet (round 10); the one position test and the unchecked window
    /// (`inline_window`), 15 fewer than the format, byte order and three bounds tests
    /// before them (round 12).
    #[inline(always)]
    pub fn read_into(&mut self, out: &mut RawPacket<'a>) -> bool {
        // `inline_to` is 0 but for a legacy little-endian pcap file, and once `done`: one
        // compare for the format, the byte order, the map's upkeep, the end of the file and
        // the end of the iteration.
        if self.pos < self.inline_to && self.pcap_record_inline(out) {
            return true;
        }
        self.read_into_slow(out)
    }

    /// The `INLINE_RECORD_BYTES_MAX` bytes of `data` from `pos`, where `pos < inline_to`.
    #[allow(unsafe_code)]
    #[inline(always)]
    fn inline_window(&self, pos: usize) -> &'a [u8; INLINE_RECORD_BYTES_MAX] {
        debug_assert!(pos < self.inline_to);
        debug_assert!(pos + INLINE_RECORD_BYTES_MAX <= self.data.len());
        // SAFETY: `pos < inline_to` (the caller's test), and `inline_to`'s invariant (asserted
        // in `set_map_work_at`, the one place that sets it, for the `data` it never changes
        // after) says that `pos + INLINE_RECORD_BYTES_MAX <= data.len()`: the array lies
        // inside `data`, which is borrowed for `'a`. An array of bytes has alignment 1.
        unsafe {
            &*self
                .data
                .as_ptr()
                .add(pos)
                .cast::<[u8; INLINE_RECORD_BYTES_MAX]>()
        }
    }

    /// A little-endian legacy pcap record at `pos < inline_to`, whole by the invariant of
    /// `inline_to`, so the only test is its `caplen` against [`INLINE_CAPLEN_MAX`]; `false`
    /// with nothing changed when it is larger (then the full path reads it). Otherwise as
    /// [`Packets::pcap_record`].
    #[inline(always)]
    fn pcap_record_inline(&mut self, out: &mut RawPacket<'a>) -> bool {
        let pos = self.pos;
        let window = self.inline_window(pos);
        let header = window
            .first_chunk::<PCAP_RECORD_HEADER_BYTES>()
            .expect("the window is longer than a header");
        let caplen = pcap_field::<false>(header, 8);
        if caplen > INLINE_CAPLEN_MAX {
            return false;
        }
        let record_len = PCAP_RECORD_HEADER_BYTES + caplen as usize;
        let bytes = &window[PCAP_RECORD_HEADER_BYTES..record_len];
        self.record_read::<false>(pos, header, bytes, self.frac_to_ns, out);
        true
    }

    /// [`Packets::read_into`] in full.
    #[inline(never)]
    fn read_into_slow(&mut self, out: &mut RawPacket<'a>) -> bool {
        if self.done {
            return false;
        }
        if self.pos >= self.map_work_at {
            self.map_work();
        }
        if let State::Pcap(records) = self.state {
            // One branch here instead of one per field.
            let read = if records.big_endian {
                self.next_pcap::<true>(records, out)
            } else {
                self.next_pcap::<false>(records, out)
            };
            if read {
                // The fields `pcap_record` leaves to its caller's slot (`read_into`).
                out.linktype = records.linktype;
                out.interface = 0;
                out.interface_name = None;
            }
            return read;
        }
        match self.next_packet() {
            Ok(Some(p)) => {
                *out = p;
                true
            }
            Ok(None) => {
                self.end();
                false
            }
            Err(e) => self.fail(e),
        }
    }

    /// Reads nothing more: every later [`Packets::read_into`] is `false` (the error kept for
    /// [`Packets::take_error`], if any, stays). The replay stops a file this way when it
    /// cannot decode its link type.
    pub fn stop(&mut self) {
        self.end();
    }

    /// Sets `done`, and `map_work_at` to 0 so the inline read's one compare fails.
    fn end(&mut self) {
        self.done = true;
        self.set_map_work_at(0);
    }

    /// Sets `map_work_at`, and `inline_to` with it (see its invariant).
    fn set_map_work_at(&mut self, at: usize) {
        self.map_work_at = at;
        self.inline_to = match self.state {
            State::Pcap(PcapRecords {
                big_endian: false, ..
            }) => at.min(self.data.len().saturating_sub(INLINE_RECORD_BYTES_MAX)),
            _ => 0,
        };
        assert!(self.inline_to == 0 || self.inline_to + INLINE_RECORD_BYTES_MAX <= self.data.len());
    }

    /// The error that ended [`Packets::read`], once (`None` after a clean end of file).
    pub fn take_error(&mut self) -> Option<CaptureError> {
        self.error.take()
    }

    /// Ends the iteration on `e`.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: CaptureError) -> bool {
        self.end();
        self.error = Some(e);
        false
    }

    fn truncated(&self, need: usize, have: usize) -> CaptureError {
        CaptureError::Truncated {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            need: need as u64,
            have: have as u64,
        }
    }

    fn corrupt(&self, detail: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            detail,
        }
    }

    /// Reads the next pcapng packet; `Ok(None)` at the clean end of the file.
    fn next_packet(&mut self) -> Result<Option<RawPacket<'a>>, CaptureError> {
        loop {
            if let Some(p) = self.next_pcapng_block()? {
                return Ok(Some(p));
            }
            if self.pos >= self.data.len() {
                return Ok(None);
            }
        }
    }

    /// Reads the legacy pcap record at `pos` straight from the bytes: the 16-byte header
    /// (seconds, fraction, `caplen`, `orig_len` in the file's byte order), `caplen` checked
    /// against the limit and against what is left before the record is sliced. `false` at the
    /// clean end of the file, or on an error (kept for [`Packets::take_error`]).
    #[inline]
    fn next_pcap<const BIG_ENDIAN: bool>(
        &mut self,
        f: PcapRecords,
        out: &mut RawPacket<'a>,
    ) -> bool {
        self.pcap_record::<BIG_ENDIAN>(f, out) || self.pcap_stop::<BIG_ENDIAN>(f)
    }

    /// [`Packets::next_pcap`] of a whole record within the limit: `true`, the record read;
    /// else `false` with nothing changed (`self` and `out` as they were).
    #[inline(always)]
    fn pcap_record<const BIG_ENDIAN: bool>(
        &mut self,
        f: PcapRecords,
        out: &mut RawPacket<'a>,
    ) -> bool {
        let data = self.data;
        let pos = self.pos;
        // `pos <= data.len()` always: it starts at the file header's end (a file is at least
        // its header) and moves only over a record found whole. Indexed, not `get`: one
        // compare (that cannot fail) where `get(..).unwrap_or_default()` chose between two
        // slices with two `cmov`s.
        let rest = &data[pos..];
        let Some(header) = rest.first_chunk::<PCAP_RECORD_HEADER_BYTES>() else {
            return false;
        };
        let field = |at: usize| pcap_field::<BIG_ENDIAN>(header, at);
        let caplen = field(8);
        if caplen > f.caplen_max {
            return false;
        }
        // caplen <= RECORD_BYTES_MAX, so the sum cannot overflow.
        let record_len = PCAP_RECORD_HEADER_BYTES + caplen as usize;
        let Some(bytes) = rest.get(PCAP_RECORD_HEADER_BYTES..record_len) else {
            return false;
        };
        self.record_read::<BIG_ENDIAN>(pos, header, bytes, f.frac_to_ns, out);
        // What the inline read leaves to `complete`.
        out.orig_len = field(12);
        out.offset = pos as u64;
        true
    }

    /// The record at `pos` with this `header` and these captured `bytes` (found whole) read
    /// into `out`, `pos` moved past it, the cache lines ahead asked for.
    #[inline(always)]
    fn record_read<const BIG_ENDIAN: bool>(
        &mut self,
        pos: usize,
        header: &[u8; PCAP_RECORD_HEADER_BYTES],
        bytes: &'a [u8],
        frac_to_ns: i64,
        out: &mut RawPacket<'a>,
    ) {
        let field = |at: usize| pcap_field::<BIG_ENDIAN>(header, at);
        let record_len = PCAP_RECORD_HEADER_BYTES + bytes.len();
        // u32 seconds * 1e9 + u32 * 1e3 stays far below i64::MAX.
        let ts_ns = i64::from(field(0)) * NANOS_PER_SEC + i64::from(field(4)) * frac_to_ns;
        self.pos = pos + record_len;
        prefetch_ahead(self.data, pos + PREFETCH_AHEAD_BYTES);
        prefetch_next(self.data, pos + record_len);
        // The fields constant for the file (`linktype`, `interface`, `interface_name`) are
        // not written here, nor `orig_len` and `offset`: `read_into`'s contract (its callers'
        // slot already holds the first three; `complete` writes the other two).
        out.ts_ns = ts_ns;
        out.data = bytes;
    }

    /// Where [`Packets::pcap_record`] reads nothing: the clean end of the file (`done`), or
    /// the error (a cut header, a `caplen` over the limit, a cut record). Always `false`.
    #[cold]
    #[inline(never)]
    fn pcap_stop<const BIG_ENDIAN: bool>(&mut self, f: PcapRecords) -> bool {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(header) = rest.first_chunk::<PCAP_RECORD_HEADER_BYTES>() else {
            if rest.is_empty() {
                self.end();
                return false;
            }
            return self.fail(self.truncated(PCAP_RECORD_HEADER_BYTES, rest.len()));
        };
        let caplen = pcap_field::<BIG_ENDIAN>(header, 8);
        if caplen > f.caplen_max {
            return self.fail(self.corrupt(format!(
                "record claims {caplen} captured bytes, more than the limit of {} bytes \
                 (the larger of the snapshot length and {PACKET_BYTES_MIN_LIMIT})",
                f.caplen_max
            )));
        }
        let record_len = PCAP_RECORD_HEADER_BYTES + caplen as usize;
        debug_assert!(rest.len() < record_len, "pcap_record reads a whole record");
        self.fail(self.truncated(record_len, rest.len()))
    }

    /// Reads one pcapng block; `Ok(None)` if it holds no packet (or at the end of the file).
    fn next_pcapng_block(&mut self) -> Result<Option<RawPacket<'a>>, CaptureError> {
        let data = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let State::PcapNg { big_endian, .. } = self.state else {
            unreachable!("next_pcapng_block called on a pcap file");
        };
        // Type and length first: with them, a cut block reports how long it should have been.
        if rest.len() < PCAPNG_BLOCK_TYPE_AND_LEN_BYTES {
            return Err(self.truncated(PCAPNG_BLOCK_TYPE_AND_LEN_BYTES, rest.len()));
        }
        // The SHB type is a palindrome; its byte-order magic sets the order of what follows.
        let mut big_endian = big_endian;
        let block_type_le = read_u32(rest, 0, false).unwrap_or_default();
        let is_shb = block_type_le == SHB_MAGIC;
        if is_shb {
            if rest.len() < PCAPNG_SHB_BOM_END {
                return Err(self.truncated(PCAPNG_SHB_BOM_END, rest.len()));
            }
            big_endian = match read_u32(rest, 8, false) {
                Some(BOM_MAGIC) => false,
                Some(m) if m == BOM_MAGIC.swap_bytes() => true,
                _ => {
                    return Err(self.corrupt(format!(
                    "section header byte-order magic is {}, expected 1a2b3c4d in either byte order",
                    Hex(&rest[8..12])
                )))
                }
            };
        } else if self.pos == 0 {
            unreachable!("detect() checked that a pcapng file starts with a section header");
        }
        let block_type = read_u32(rest, 0, big_endian).unwrap_or_default();
        let block_len_u32 = read_u32(rest, 4, big_endian).unwrap_or_default();
        if (block_len_u32 as usize) < PCAPNG_BLOCK_BYTES_MIN || !block_len_u32.is_multiple_of(4) {
            return Err(self.corrupt(format!(
                "block of type {block_type:#x} has length {block_len_u32}, not a multiple of 4 of at least {PCAPNG_BLOCK_BYTES_MIN}"
            )));
        }
        if block_len_u32 > RECORD_BYTES_MAX {
            return Err(self.corrupt(format!(
                "block of type {block_type:#x} has length {block_len_u32}, more than the limit of {RECORD_BYTES_MAX} bytes"
            )));
        }
        let block_len = block_len_u32 as usize;
        if rest.len() < block_len {
            return Err(self.truncated(block_len, rest.len()));
        }
        let block = &rest[..block_len];
        let trailer = read_u32(block, block_len - 4, big_endian).unwrap_or_default();
        if trailer != block_len_u32 {
            return Err(self.corrupt(format!(
                "block of type {block_type:#x} starts with length {block_len_u32} but ends with {trailer}"
            )));
        }
        let offset = self.pos as u64;
        let packet = match block_type {
            SHB_MAGIC => {
                parse_sectionheaderblock(block)
                    .map_err(|e| self.corrupt(format!("section header block unreadable: {e}")))?;
                if let State::PcapNg {
                    big_endian: be,
                    interfaces,
                    ..
                } = &mut self.state
                {
                    *be = big_endian;
                    interfaces.clear();
                }
                None
            }
            IDB_MAGIC => {
                let parsed = if big_endian {
                    parse_interfacedescriptionblock_be(block)
                } else {
                    parse_interfacedescriptionblock_le(block)
                };
                let (_, idb) = parsed.map_err(|e| {
                    self.corrupt(format!("interface description block unreadable: {e}"))
                })?;
                let interface = interface(&idb, big_endian).map_err(|d| self.corrupt(d))?;
                let State::PcapNg { interfaces, .. } = &mut self.state else {
                    unreachable!()
                };
                if interfaces.len() >= INTERFACES_PER_SECTION_MAX {
                    return Err(self.corrupt(format!(
                        "more than {INTERFACES_PER_SECTION_MAX} interfaces in one section"
                    )));
                }
                interfaces.push(interface);
                None
            }
            EPB_MAGIC => {
                let parsed = if big_endian {
                    parse_enhancedpacketblock_be(block)
                } else {
                    parse_enhancedpacketblock_le(block)
                };
                let (_, epb) = parsed.map_err(|e| {
                    self.corrupt(format!(
                        "enhanced packet block unreadable (captured length larger than the block?): {e}"
                    ))
                })?;
                let iface = self.interface(epb.if_id)?;
                let caplen = epb.caplen as usize;
                let Some(bytes) = epb.data.get(..caplen) else {
                    return Err(self.corrupt(format!(
                        "captured length {caplen} exceeds the block's packet data"
                    )));
                };
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ts_ns = ts_to_ns(ts, iface.units_per_sec, iface.offset_sec)
                    .ok_or_else(|| self.corrupt(format!("timestamp {ts} (units of 1/{} s, offset {} s) is outside the years 1678..2262", iface.units_per_sec, iface.offset_sec)))?;
                if let State::PcapNg { last_ts_ns, .. } = &mut self.state {
                    *last_ts_ns = ts_ns;
                }
                Some(RawPacket {
                    ts_ns,
                    linktype: iface.linktype,
                    interface: epb.if_id,
                    interface_name: iface.name,
                    data: bytes,
                    orig_len: epb.origlen,
                    offset,
                })
            }
            SPB_MAGIC => {
                let parsed = if big_endian {
                    parse_simplepacketblock_be(block)
                } else {
                    parse_simplepacketblock_le(block)
                };
                let (_, spb) = parsed
                    .map_err(|e| self.corrupt(format!("simple packet block unreadable: {e}")))?;
                let iface = self.interface(0)?;
                let State::PcapNg { last_ts_ns, .. } = self.state else {
                    unreachable!()
                };
                // The block's data includes padding; the packet is min(original length, data).
                let caplen = (spb.origlen as usize).min(spb.data.len());
                Some(RawPacket {
                    ts_ns: last_ts_ns,
                    linktype: iface.linktype,
                    interface: 0,
                    interface_name: iface.name,
                    data: &spb.data[..caplen],
                    orig_len: spb.origlen,
                    offset,
                })
            }
            // Name resolution, statistics, secrets, custom and unknown blocks: nothing for us.
            _ => None,
        };
        self.pos += block_len;
        prefetch_ahead(data, self.pos + PREFETCH_AHEAD_BYTES);
        prefetch_next(data, self.pos);
        Ok(packet)
    }

    fn interface(&self, if_id: u32) -> Result<Interface<'a>, CaptureError> {
        let State::PcapNg { interfaces, .. } = &self.state else {
            unreachable!()
        };
        match interfaces.get(if_id as usize) {
            Some(i) => Ok(*i),
            None => Err(self.corrupt(format!(
                "packet names interface {if_id} but its section declares {} interfaces",
                interfaces.len()
            ))),
        }
    }
}

/// Reads what we need from an Interface Description Block. pcap-parser's own `if_tsoffset`
/// accessor reads the value little-endian whatever the section's byte order, so options are read
/// here with the section's order.
fn interface<'a>(
    idb: &InterfaceDescriptionBlock<'a>,
    big_endian: bool,
) -> Result<Interface<'a>, String> {
    let mut name = None;
    let mut tsresol: u8 = 6;
    let mut offset_sec: i64 = 0;
    let mut seen_name = false;
    for opt in &idb.options {
        let value = option_value(opt);
        match opt.code {
            OptionCode::IfName if !seen_name => {
                seen_name = true;
                name = value.and_then(|v| std::str::from_utf8(v).ok());
            }
            OptionCode::IfTsresol => match value {
                Some([r]) => tsresol = *r,
                _ => {
                    return Err(format!(
                        "if_tsresol option has length {}, expected 1",
                        opt.len
                    ))
                }
            },
            OptionCode::IfTsoffset => match value.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
                Some(b) if big_endian => offset_sec = i64::from_be_bytes(b),
                Some(b) => offset_sec = i64::from_le_bytes(b),
                None => {
                    return Err(format!(
                        "if_tsoffset option has length {}, expected 8",
                        opt.len
                    ))
                }
            },
            _ => {}
        }
    }
    let units_per_sec: u128 = if tsresol & 0x80 != 0 {
        let exp = tsresol & 0x7f;
        if exp > 64 {
            return Err(format!("if_tsresol 2^-{exp} s is finer than 2^-64 s"));
        }
        1u128 << exp
    } else {
        if tsresol > 19 {
            return Err(format!("if_tsresol 10^-{tsresol} s is finer than 10^-19 s"));
        }
        10u128.pow(u32::from(tsresol))
    };
    Ok(Interface {
        // pcapng link types are 16 bits wide; pcap-parser widens them to i32.
        linktype: (idb.linktype.0 as u32 & 0xffff) as u16,
        name,
        units_per_sec,
        offset_sec,
    })
}

/// An option's value without padding, borrowed from the file (`None` if pcap-parser copied it or
/// the length is inconsistent).
fn option_value<'a>(opt: &PcapNGOption<'a>) -> Option<&'a [u8]> {
    match &opt.value {
        std::borrow::Cow::Borrowed(v) => v.get(..usize::from(opt.len)),
        std::borrow::Cow::Owned(_) => None,
    }
}

/// Converts a pcapng timestamp to Unix nanoseconds; `None` if it does not fit an `i64`.
fn ts_to_ns(ts: u64, units_per_sec: u128, offset_sec: i64) -> Option<i64> {
    assert!(
        units_per_sec > 0,
        "resolution validated when the interface was read"
    );
    // u64 * 1e9 < 2^94: no overflow in u128.
    let ns = u128::from(ts) * NANOS_PER_SEC as u128 / units_per_sec;
    let ns = i128::try_from(ns).ok()? + i128::from(offset_sec) * i128::from(NANOS_PER_SEC);
    i64::try_from(ns).ok()
}

/// Bytes of the capture map populated ahead of the reader in one
/// `madvise(MADV_POPULATE_READ)`: one system call maps 1 024 pages instead of
/// one page fault per few pages. Refilled every half of it the reader moves, so
/// at most this much of the file is mapped ahead of the reader (file pages,
/// reclaimable).
const POPULATE_AHEAD_BYTES: usize = 4 << 20;

/// Bytes of the capture map the reader leaves mapped behind its position before releasing
/// them (`MADV_DONTNEED`, Linux): packets handed to the correlating thread undecoded borrow
/// from at most the last few MiB read (`BATCHES_IN_FLIGHT_MAX` batches), so they are not
/// faulted in again. Correctness does not depend on it (see `release_map_range`).
const RELEASE_BEHIND_BYTES: usize = 16 << 20;
/// Smallest run of bytes released at once, a multiple of every page size.
const RELEASE_CHUNK_BYTES: usize = 8 << 20;

/// Bytes of the file asked into the page cache (`MADV_WILLNEED`) ahead of the populated end
/// while the file is not all cached (see [`ReadAhead`]): ~15 ms of reading at 4.5 GB/s, longer
/// than a read of the disk takes here while the store's own writes are queued on it (5-10 ms).
const READ_AHEAD_BYTES: usize = 64 << 20;
/// Bytes asked for in one `MADV_WILLNEED`: Linux reads at most the larger of the disk's
/// `read_ahead_kb` and its largest request a call (8 MiB on the bench host), so the window is
/// asked for in pieces below that.
const READ_AHEAD_CALL_BYTES: usize = 2 << 20;
/// Bytes asked for in a row without a read from the disk after which asking ahead stops
/// (until a populate reads holes again): the holes of a file that lost some of its pages are
/// scattered (one every few MiB), so one piece without a hole says little.
const READ_AHEAD_IDLE_BYTES: usize = 256 << 20;
/// A populate or piece that read from the disk less than its bytes divided by this met holes
/// in a cached file; one that read more met a stretch not cached at all, which the kernel's
/// own sequential read-ahead (the map is advised `MADV_SEQUENTIAL`) reads better: in folios of
/// up to 2 MiB, where `MADV_WILLNEED` reads 4 KiB folios (a 1.2 GB capture read cold by the
/// populate alone sat 93 % in 2 MiB folios after, read with `MADV_WILLNEED` ahead 0 %, and
/// every later replay of it paid ~0.15 s more system time a GB for the page-table entries).
const READ_AHEAD_HOLES_DIVISOR: u64 = 4;

/// Whether a populate or piece of `len` bytes that read `read` bytes from the disk met holes
/// in a cached file (see [`READ_AHEAD_HOLES_DIVISOR`]).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn read_holes(read: u64, len: usize) -> bool {
    read > 0 && read.saturating_mul(READ_AHEAD_HOLES_DIVISOR) < len as u64
}

/// When to ask the kernel to read the capture ahead of the reader.
///
/// A capture "in the page cache" may still miss pages here and there (the kernel reclaims the
/// small folios of a cached file first when other work needs memory). `MADV_POPULATE_READ`
/// then reads each hole from the disk while the reader waits on the folio's lock: round 19's
/// folio-lock waits (8-97 a run and 10-220 ms on the 10 M capture with 1-120 MiB missing in
/// round 20's traces; none with the capture all cached). So once a populate met holes, the
/// file is asked in up to [`READ_AHEAD_BYTES`] ahead of the populated end (`MADV_WILLNEED`:
/// the reads start and the call returns), and that stops after [`READ_AHEAD_IDLE_BYTES`]
/// asked for in a row without a read, or at a stretch not cached at all (left to the kernel's
/// read-ahead, [`READ_AHEAD_HOLES_DIVISOR`]): a cached file costs no calls (each walks the
/// page cache, ~15 ms of system time for a 1.7 GB file of small folios), a file with holes
/// gets them read before the reader needs them.
#[derive(Debug, Default)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct ReadAhead {
    /// Asking ahead: a populate met holes and asking has not stopped since.
    on: bool,
    /// Bytes of the file asked for so far (from the start of the map).
    asked_to: usize,
    /// Bytes asked for since the last call that read from the disk (or since asking began).
    idle_bytes: usize,
    /// Bytes the calls read from the disk, in all.
    read_bytes: u64,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl ReadAhead {
    /// After a populate of `len` bytes that read `read` bytes from the disk: if it met holes,
    /// ask ahead.
    fn populated(&mut self, read: u64, len: usize) {
        if read_holes(read, len) && !self.on {
            self.on = true;
            self.idle_bytes = 0;
        }
    }

    /// The next piece to ask for, `(offset, len)`, when asking ahead: from what was asked (or
    /// the populated end, if further) up to [`READ_AHEAD_BYTES`] past the populated end and
    /// the end of the map, at most [`READ_AHEAD_CALL_BYTES`] at a time.
    fn next(&self, populated_to: usize, len: usize) -> Option<(usize, usize)> {
        if !self.on {
            return None;
        }
        let from = self.asked_to.max(populated_to);
        let to = populated_to.saturating_add(READ_AHEAD_BYTES).min(len);
        (from < to).then(|| (from, (to - from).min(READ_AHEAD_CALL_BYTES)))
    }

    /// After asking for [`ReadAhead::next`]'s piece, `len` bytes at `offset`: `read` the bytes
    /// the call read from the disk, `None` if it failed. Asking stops on a failure, on a piece
    /// not cached at all, and after [`READ_AHEAD_IDLE_BYTES`] in a row found all cached.
    fn asked(&mut self, offset: usize, len: usize, read: Option<u64>) {
        self.asked_to = offset + len;
        self.read_bytes += read.unwrap_or(0);
        match read {
            Some(0) => {
                self.idle_bytes += len;
                self.on = self.idle_bytes < READ_AHEAD_IDLE_BYTES;
            }
            Some(r) if read_holes(r, len) => self.idle_bytes = 0,
            _ => self.on = false,
        }
    }
}

impl Packets<'_> {
    #[cfg(not(target_os = "linux"))]
    fn map_work(&mut self) {
        self.populated_to = usize::MAX;
        self.set_map_work_at(usize::MAX);
    }

    /// When the reader is half way through what was populated: populates the next
    /// [`POPULATE_AHEAD_BYTES`] of the map, asks the file into the page cache further ahead
    /// while it is not all there ([`ReadAhead`]), and releases the page-table entries of what
    /// it left [`RELEASE_BEHIND_BYTES`] behind.
    ///
    /// Releasing as it goes spreads over the reading what the kernel would otherwise do in one
    /// go when the process unmaps the capture at exit (~0.14 s for 3.6 GB, with nothing else
    /// running): `MADV_DONTNEED` takes the process's `mmap_lock` shared, so other threads'
    /// page faults go on meanwhile (an `munmap` takes it exclusively).
    #[cfg(target_os = "linux")]
    fn map_work(&mut self) {
        let Some(m) = self.map else {
            self.populated_to = usize::MAX;
            self.set_map_work_at(usize::MAX);
            return;
        };
        if self.populated_to < m.len() {
            let from = self.populated_to.max(self.pos);
            let to = from.saturating_add(POPULATE_AHEAD_BYTES).min(m.len());
            let blocks = thread_blocks_read();
            // A hint only (unsupported before Linux 5.14): on error, pages fault in as read.
            if to > from
                && m.advise_range(memmap2::Advice::PopulateRead, from, to - from)
                    .is_err()
            {
                self.populated_to = usize::MAX;
            } else {
                self.populated_to = to;
                self.read_ahead
                    .populated(bytes_read_since(blocks), to - from);
            }
        }
        // At most READ_AHEAD_BYTES / READ_AHEAD_CALL_BYTES calls (the first time), one a
        // map_work after that (the populated end moves by half a populate).
        while let Some((from, len)) = self.read_ahead.next(self.populated_to, m.len()) {
            let blocks = thread_blocks_read();
            // A hint as well: on error nothing is read ahead, and asking stops.
            let read = m
                .advise_range(memmap2::Advice::WillNeed, from, len)
                .ok()
                .map(|()| bytes_read_since(blocks));
            self.read_ahead.asked(from, len, read);
        }
        let behind = self.pos.saturating_sub(RELEASE_BEHIND_BYTES) / RELEASE_CHUNK_BYTES
            * RELEASE_CHUNK_BYTES;
        if behind > self.released_to {
            // A hint as well: on error the entries stay until the map is dropped.
            if release_map_range(m, self.released_to, behind - self.released_to).is_err() {
                self.released_to = usize::MAX;
            } else {
                self.released_to = behind;
            }
        }
        // Next when the reader is half way through what was populated (so at most
        // POPULATE_AHEAD_BYTES are mapped ahead of it), or, past the populated end, a chunk on.
        self.set_map_work_at(if self.populated_to < m.len() {
            self.populated_to.saturating_sub(POPULATE_AHEAD_BYTES / 2)
        } else {
            self.pos.saturating_add(RELEASE_CHUNK_BYTES)
        });
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<RawPacket<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read() {
            Some(p) => Some(Ok(p)),
            None => self.take_error().map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u16b(v: u16, be: bool) -> [u8; 2] {
        if be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32b(v: u32, be: bool) -> [u8; 4] {
        if be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// A pcap file: global header, then `(seconds, fraction, data, orig_len)` records.
    fn pcap(be: bool, nanos: bool, linktype: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut out = Vec::new();
        out.extend(u32b(magic, be));
        out.extend(u16b(2, be));
        out.extend(u16b(4, be));
        out.extend(u32b(0, be)); // thiszone
        out.extend(u32b(0, be)); // sigfigs
        out.extend(u32b(65535, be)); // snaplen
        out.extend(u32b(linktype, be));
        for &(sec, frac, data, orig) in records {
            out.extend(u32b(sec, be));
            out.extend(u32b(frac, be));
            out.extend(u32b(data.len() as u32, be));
            out.extend(u32b(orig, be));
            out.extend(data);
        }
        out
    }

    /// A pcapng block: type, length, body (padded to 4), length.
    fn block(be: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let mut out = Vec::new();
        out.extend(u32b(block_type, be));
        out.extend(u32b(len, be));
        out.extend(body);
        out.resize(8 + padded, 0);
        out.extend(u32b(len, be));
        out
    }

    fn options(be: bool, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(code, value) in opts {
            out.extend(u16b(code, be));
            out.extend(u16b(value.len() as u16, be));
            out.extend(value);
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
        if !opts.is_empty() {
            out.extend([0, 0, 0, 0]); // opt_endofopt
        }
        out
    }

    fn shb(be: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u32b(0x1a2b_3c4d, be));
        body.extend(u16b(1, be));
        body.extend(u16b(0, be));
        body.extend([0xff; 8]); // section length unknown
        block(be, SHB_MAGIC, &body)
    }

    fn idb(be: bool, linktype: u16, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u16b(linktype, be));
        body.extend(u16b(0, be));
        body.extend(u32b(0, be)); // snaplen: unlimited
        body.extend(options(be, opts));
        block(be, IDB_MAGIC, &body)
    }

    fn epb(be: bool, if_id: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u32b(if_id, be));
        body.extend(u32b((ts >> 32) as u32, be));
        body.extend(u32b(ts as u32, be));
        body.extend(u32b(data.len() as u32, be));
        body.extend(u32b(orig, be));
        body.extend(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        block(be, EPB_MAGIC, &body)
    }

    fn all(file: &CaptureFile) -> Vec<Result<RawPacket<'_>, CaptureError>> {
        file.packets().collect()
    }

    #[test]
    fn pcap_all_magics_and_byte_orders() {
        let a: &[u8] = &[1, 2, 3, 4, 5];
        let b: &[u8] = &[9; 60];
        for be in [false, true] {
            for nanos in [false, true] {
                let bytes = pcap(
                    be,
                    nanos,
                    1,
                    &[
                        (1_700_000_000, 123_456, a, 5),
                        (1_700_000_001, 999_999, b, 1514),
                    ],
                );
                let len = bytes.len() as u64;
                let file = CaptureFile::from_bytes("t.pcap", bytes).unwrap();
                let mut it = file.packets();
                let p = it.next().unwrap().unwrap();
                let scale = if nanos { 1 } else { 1_000 };
                assert_eq!(
                    p.ts_ns,
                    1_700_000_000 * NANOS_PER_SEC + 123_456 * scale,
                    "be={be} nanos={nanos}"
                );
                assert_eq!((p.linktype, p.interface, p.interface_name), (1, 0, None));
                assert_eq!((p.data, p.orig_len, p.offset), (a, 5, 24));
                assert_eq!(it.position(), 24 + 16 + 5);
                let q = it.next().unwrap().unwrap();
                assert_eq!(q.ts_ns, 1_700_000_001 * NANOS_PER_SEC + 999_999 * scale);
                assert_eq!(
                    (q.data.len(), q.orig_len, q.offset),
                    (60, 1514, 24 + 16 + 5)
                );
                assert!(it.next().is_none());
                assert_eq!(it.position(), len);
                assert_eq!(file.len_bytes(), len);
            }
        }
    }

    #[test]
    fn pcap_linktype_keeps_low_16_bits() {
        // FCS-length flags in the upper bits of the link type field.
        let file = CaptureFile::from_bytes(
            "t.pcap",
            pcap(false, false, 0x1400_0001, &[(0, 0, &[0], 1)]),
        )
        .unwrap();
        assert_eq!(all(&file)[0].as_ref().unwrap().linktype, 1);
        assert_eq!(file.packets().fixed_linktype(), Some(1));
    }

    #[test]
    fn fixed_linktype_is_every_packets_for_pcap_and_none_for_pcapng() {
        for be in [false, true] {
            let bytes = pcap(
                be,
                false,
                113,
                &[(0, 0, &[0; 20], 20), (1, 0, &[1; 30], 30)],
            );
            let file = CaptureFile::from_bytes("t.pcap", bytes).unwrap();
            assert_eq!(file.packets().fixed_linktype(), Some(113));
            assert!(all(&file)
                .iter()
                .all(|p| p.as_ref().unwrap().linktype == 113));
            let file = CaptureFile::from_bytes("t.pcapng", two_interfaces(be)).unwrap();
            assert_eq!(file.packets().fixed_linktype(), None);
        }
    }

    /// After the end, an error or `stop`, `read_into` reads nothing (and leaves `out` as it
    /// was), however often it is asked; the error is handed out once.
    #[test]
    fn nothing_is_read_after_the_end_an_error_or_stop() {
        let recs: &[(u32, u32, &[u8], u32)] = &[(1, 0, &[1; 10], 10), (2, 0, &[2; 20], 20)];
        let read_all = |p: &mut Packets<'_>| {
            let mut out = RawPacket::EMPTY;
            let mut n = 0;
            while p.read_into(&mut out) {
                n += 1;
            }
            let last = out.ts_ns;
            for _ in 0..3 {
                assert!(!p.read_into(&mut out));
                assert_eq!(out.ts_ns, last);
            }
            n
        };
        for be in [false, true] {
            let file = CaptureFile::from_bytes("t.pcap", pcap(be, false, 1, recs)).unwrap();
            let mut p = file.packets();
            assert_eq!(read_all(&mut p), 2);
            assert!(p.take_error().is_none());

            let mut cut = pcap(be, false, 1, recs);
            cut.truncate(cut.len() - 5);
            let file = CaptureFile::from_bytes("cut.pcap", cut).unwrap();
            let mut p = file.packets();
            assert_eq!(read_all(&mut p), 1);
            assert!(p.take_error().is_some());
            assert!(p.take_error().is_none());
            let mut out_after = RawPacket::EMPTY;
            assert!(!p.read_into(&mut out_after));

            let file = CaptureFile::from_bytes("t.pcap", pcap(be, false, 1, recs)).unwrap();
            let mut p = file.packets();
            let mut out = RawPacket::EMPTY;
            assert!(p.read_into(&mut out));
            p.stop();
            assert_eq!(read_all(&mut p), 0);
            assert!(p.take_error().is_none());
            let file = CaptureFile::from_bytes("t.pcapng", two_interfaces(be)).unwrap();
            let mut p = file.packets();
            assert!(p.read_into(&mut out));
            p.stop();
            assert_eq!(read_all(&mut p), 0);
        }
    }

    #[test]
    fn pcap_truncated_last_record() {
        let mut bytes = pcap(
            false,
            false,
            101,
            &[(1, 0, &[1; 10], 10), (2, 0, &[2; 20], 20)],
        );
        bytes.truncate(bytes.len() - 5);
        let file = CaptureFile::from_bytes("cut.pcap", bytes).unwrap();
        let got = all(&file);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        match &got[1] {
            Err(CaptureError::Truncated {
                offset, need, have, ..
            }) => {
                assert_eq!((*offset, *need, *have), (24 + 26, 36, 31));
            }
            other => panic!("{other:?}"),
        }
        let msg = got[1].as_ref().unwrap_err().to_string();
        assert!(
            msg.starts_with("cut.pcap: truncated record at byte offset 50"),
            "{msg}"
        );

        // Cut inside the record header.
        let mut bytes = pcap(true, false, 101, &[(1, 0, &[1; 10], 10)]);
        bytes.extend([0, 0, 0]);
        let file = CaptureFile::from_bytes("cut.pcap", bytes).unwrap();
        let got = all(&file);
        assert!(
            matches!(
                got[1],
                Err(CaptureError::Truncated {
                    offset: 50,
                    need: 16,
                    have: 3,
                    ..
                })
            ),
            "{:?}",
            got[1]
        );

        // Global header cut.
        let err = CaptureFile::from_bytes("h.pcap", pcap(false, false, 1, &[])[..10].to_vec())
            .unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::Truncated {
                    offset: 0,
                    need: 24,
                    have: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn pcap_corrupt_record_length() {
        let mut bytes = pcap(
            false,
            false,
            1,
            &[(1, 0, &[1; 10], 10), (2, 0, &[2; 20], 20)],
        );
        // caplen of the second record: 2 GiB.
        bytes[50 + 8..50 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let file = CaptureFile::from_bytes("bad.pcap", bytes).unwrap();
        let got = all(&file);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(got[1], Err(CaptureError::Corrupt { offset: 50, .. })),
            "{:?}",
            got[1]
        );
    }

    #[test]
    fn not_a_capture() {
        let err = CaptureFile::from_bytes("x.txt", b"hello world".to_vec()).unwrap_err();
        match &err {
            CaptureError::NotACapture { found, .. } => assert_eq!(found, b"hell"),
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("x.txt: not a pcap or pcapng capture (starts with 68656c6c;"),
            "{msg}"
        );
        let err = CaptureFile::from_bytes("empty", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("<empty file>"), "{err}");
        assert!(matches!(
            CaptureFile::from_bytes("x", vec![0xd4, 0xc3]),
            Err(CaptureError::NotACapture { .. })
        ));
    }

    /// Two interfaces: eth0 (Ethernet, nanoseconds) and any (SLL2, default microseconds,
    /// if_tsoffset 100 s); a name resolution block and a simple packet block in between.
    fn two_interfaces(be: bool) -> Vec<u8> {
        let mut f = shb(be);
        f.extend(idb(be, 1, &[(2, b"eth0"), (9, &[9])]));
        let tsoffset = if be {
            100i64.to_be_bytes()
        } else {
            100i64.to_le_bytes()
        };
        f.extend(idb(be, 276, &[(14, &tsoffset)]));
        f.extend(epb(be, 0, 1_700_000_000_000_000_001, &[0xaa; 7], 7));
        f.extend(block(be, 4, &[0, 0, 0, 0])); // name resolution: skipped
        f.extend(epb(be, 1, 5_000_001, &[0xbb; 20], 1500));
        let mut spb = Vec::new();
        spb.extend(u32b(3, be));
        spb.extend([0xcc, 0xcc, 0xcc]);
        f.extend(block(be, SPB_MAGIC, &spb));
        f
    }

    #[test]
    fn pcapng_two_interfaces_both_byte_orders() {
        for be in [false, true] {
            let bytes = two_interfaces(be);
            let len = bytes.len() as u64;
            let file = CaptureFile::from_bytes("t.pcapng", bytes).unwrap();
            let mut it = file.packets();
            let p = it.next().unwrap().unwrap();
            assert_eq!(p.ts_ns, 1_700_000_000_000_000_001, "be={be}");
            assert_eq!(
                (p.linktype, p.interface, p.interface_name),
                (1, 0, Some("eth0"))
            );
            assert_eq!((p.data, p.orig_len), (&[0xaa; 7][..], 7));
            let q = it.next().unwrap().unwrap();
            assert_eq!(q.ts_ns, 105_000_001_000);
            assert_eq!((q.linktype, q.interface, q.interface_name), (276, 1, None));
            assert_eq!((q.data.len(), q.orig_len), (20, 1500));
            let s = it.next().unwrap().unwrap();
            assert_eq!(
                (s.ts_ns, s.interface, s.data),
                (105_000_001_000, 0, &[0xcc; 3][..])
            );
            assert!(it.next().is_none());
            assert_eq!(it.position(), len);
        }
    }

    #[test]
    fn pcapng_power_of_two_resolution_and_new_section() {
        let mut f = shb(false);
        f.extend(idb(false, 101, &[(9, &[0x80 | 10])])); // 1/1024 s
        f.extend(epb(false, 0, 2048 + 512, &[0x45], 1));
        // A second section, big-endian, with its own interface table.
        f.extend(shb(true));
        f.extend(idb(true, 228, &[]));
        f.extend(epb(true, 0, 3_000_000, &[0x45], 1));
        let file = CaptureFile::from_bytes("t.pcapng", f).unwrap();
        let got: Vec<_> = all(&file).into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].ts_ns, got[0].linktype), (2_500_000_000, 101));
        assert_eq!((got[1].ts_ns, got[1].linktype), (3_000_000_000, 228));
    }

    #[test]
    fn pcapng_truncated_and_corrupt() {
        let whole = two_interfaces(false);
        let first_epb = shb(false).len()
            + idb(false, 1, &[(2, b"eth0"), (9, &[9])]).len()
            + idb(false, 276, &[(14, &100i64.to_le_bytes())]).len();
        let epb_len = epb(false, 0, 0, &[0xaa; 7], 7).len();
        let cut = CaptureFile::from_bytes("t.pcapng", whole[..first_epb + 10].to_vec()).unwrap();
        let got = all(&cut);
        assert_eq!(got.len(), 1);
        match &got[0] {
            Err(CaptureError::Truncated {
                offset, need, have, ..
            }) => {
                assert_eq!(
                    (*offset, *need, *have),
                    (first_epb as u64, epb_len as u64, 10)
                );
            }
            other => panic!("{other:?}"),
        }

        let corrupt = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = whole.clone();
            patch(&mut bytes);
            let file = CaptureFile::from_bytes("t.pcapng", bytes).unwrap();
            let got = all(&file);
            match got.last() {
                Some(Err(CaptureError::Corrupt { offset, detail, .. })) => {
                    (*offset, detail.clone())
                }
                other => panic!("{other:?}"),
            }
        };
        let at = first_epb;
        // Block length not a multiple of 4.
        assert_eq!(corrupt(&|b| b[at + 4] = 13).0, at as u64);
        // Trailing length disagrees.
        let (off, detail) = corrupt(&|b| b[at + epb_len - 4] ^= 4);
        assert_eq!(off, at as u64);
        assert!(detail.contains("ends with"), "{detail}");
        // Unknown interface.
        let (_, detail) = corrupt(&|b| b[at + 8] = 5);
        assert!(detail.contains("interface 5"), "{detail}");
        // Captured length larger than the block.
        let (off, _) = corrupt(&|b| b[at + 20] = 200);
        assert_eq!(off, at as u64);
        // Absurd block length: corrupt, not truncated.
        let (off, detail) =
            corrupt(&|b| b[at + 4..at + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()));
        assert_eq!(off, at as u64);
        assert!(detail.contains("limit"), "{detail}");
        // Bad byte-order magic.
        let (off, _) = corrupt(&|b| b[8] = 0);
        assert_eq!(off, 0);
    }

    #[test]
    fn open_reads_a_file_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcapng");
        std::fs::write(&path, two_interfaces(false)).unwrap();
        let file = CaptureFile::open(&path).unwrap();
        assert_eq!(file.path(), path);
        assert_eq!(file.packets().filter(Result::is_ok).count(), 3);

        let empty = dir.path().join("empty.pcap");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            CaptureFile::open(&empty),
            Err(CaptureError::NotACapture { .. })
        ));

        let missing = dir.path().join("missing.pcap");
        let err = CaptureFile::open(&missing).unwrap_err();
        assert!(matches!(err, CaptureError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("missing.pcap: cannot read capture"),
            "{err}"
        );
    }

    /// The read-ahead's rule on a scripted run: nothing asked while populates find the file
    /// cached or not cached at all; after one that met holes, the window past the populated
    /// end in contiguous pieces; asking stops after `READ_AHEAD_IDLE_BYTES` without a read (a
    /// hole in between starts the count again), at a piece not cached at all or on a failed
    /// call, and resumes on the next populate that meets holes.
    #[test]
    fn read_ahead_asks_only_after_holes_and_stops_when_all_cached() {
        const MIB: usize = 1 << 20;
        const HOLE: u64 = 4096;
        let len = 2048 * MIB;
        let mut r = ReadAhead::default();
        // Asks everything `next` gives for one map_work; returns the pieces.
        let drain =
            |r: &mut ReadAhead, populated_to: usize, read: &mut dyn FnMut() -> Option<u64>| {
                let mut got = Vec::new();
                while let Some((from, n)) = r.next(populated_to, len) {
                    got.push((from, n));
                    r.asked(from, n, read());
                    assert!(
                        got.len() <= READ_AHEAD_BYTES / READ_AHEAD_CALL_BYTES,
                        "{got:?}"
                    );
                }
                got
            };
        r.populated(0, 4 * MIB);
        assert_eq!(drain(&mut r, 4 * MIB, &mut || Some(HOLE)), vec![]);
        // Not cached at all (read more than a quarter): left to the kernel.
        r.populated(MIB as u64, 4 * MIB);
        assert_eq!(drain(&mut r, 4 * MIB, &mut || Some(HOLE)), vec![]);
        r.populated(MIB as u64 - 1, 4 * MIB);
        let got = drain(&mut r, 6 * MIB, &mut || Some(HOLE));
        let want: Vec<_> = (0..READ_AHEAD_BYTES / READ_AHEAD_CALL_BYTES)
            .map(|i| (6 * MIB + i * READ_AHEAD_CALL_BYTES, READ_AHEAD_CALL_BYTES))
            .collect();
        assert_eq!(got, want);
        // The populated end moves on by 2 MiB: one more piece, right after the last.
        assert_eq!(
            drain(&mut r, 8 * MIB, &mut || Some(0)),
            vec![(6 * MIB + READ_AHEAD_BYTES, READ_AHEAD_CALL_BYTES)]
        );
        // Pieces without a read: asking goes on until READ_AHEAD_IDLE_BYTES of them.
        let mut populated_to = 8 * MIB;
        let mut pieces = 1;
        while r.on {
            populated_to += READ_AHEAD_CALL_BYTES;
            pieces += drain(&mut r, populated_to, &mut || Some(0)).len();
        }
        assert_eq!(pieces * READ_AHEAD_CALL_BYTES, READ_AHEAD_IDLE_BYTES);
        assert_eq!(
            drain(&mut r, populated_to + 2 * MIB, &mut || Some(HOLE)),
            vec![]
        );
        // A populate that meets holes starts it again, from the end of what was asked.
        r.populated(HOLE, 4 * MIB);
        let asked_to = r.asked_to;
        let got = drain(&mut r, populated_to + 2 * MIB, &mut || Some(0));
        assert_eq!(got, vec![(asked_to, READ_AHEAD_CALL_BYTES)]);
        // A hole resets the count of pieces without one.
        let mut k = 0;
        let mut some_read = || {
            k += 1;
            Some(if k % 100 == 0 { HOLE } else { 0 })
        };
        for i in 0..400 {
            drain(&mut r, populated_to + (2 + i) * MIB, &mut some_read);
            assert!(r.on, "{i}");
        }
        // A piece not cached at all stops it at once, and so does a failed call.
        let at = populated_to + 500 * MIB;
        assert_eq!(
            drain(&mut r, at, &mut || Some(READ_AHEAD_CALL_BYTES as u64 / 4)).len(),
            1
        );
        assert!(!r.on);
        r.populated(HOLE, 4 * MIB);
        assert_eq!(drain(&mut r, at + 2 * MIB, &mut || None).len(), 1);
        assert!(!r.on);
        // Never past the end of the map.
        r.populated(HOLE, 4 * MIB);
        let got = drain(&mut r, len - 3 * MIB, &mut || Some(HOLE));
        assert_eq!(got.last().map(|&(f, n)| f + n), Some(len));
        assert_eq!(drain(&mut r, len, &mut || Some(HOLE)), vec![]);
    }

    /// A capture in the page cache but for a 4 KiB hole every 256 KiB: a populate meets holes,
    /// so the reader asks the rest of the file in ahead of it; the same file all cached is
    /// never asked for, and not cached at all is read by the kernel's sequential read-ahead,
    /// not by the reader's; the packets read the same in all three. Needs a file system whose pages
    /// `POSIX_FADV_DONTNEED` drops and whose reads the thread's `ru_inblock` counts (ext4,
    /// xfs; not tmpfs): checked first on a probe file, the read-ahead part is skipped if not.
    #[cfg(target_os = "linux")]
    #[test]
    fn read_ahead_follows_a_populate_that_met_holes() {
        use std::os::unix::fs::FileExt;
        use std::os::unix::io::AsRawFd;
        #[allow(unsafe_code)]
        fn fadvise(f: &File, advice: libc::c_int) {
            // SAFETY: `f` is an open file, so its descriptor is valid for the call; fadvise
            // only changes how this descriptor reads ahead or drops clean pages of the file
            // from the page cache (a hint: no memory of ours is touched, no byte changes).
            let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice) };
            assert_eq!(r, 0);
        }
        fn drop_cached(f: &File) {
            f.sync_all().unwrap();
            fadvise(f, libc::POSIX_FADV_DONTNEED);
        }
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::write(&probe, vec![7u8; 1 << 20]).unwrap();
        let f = File::open(&probe).unwrap();
        drop_cached(&f);
        let before = thread_blocks_read();
        let mut buf = [0u8; 4096];
        (&f).read_exact(&mut buf).unwrap();
        let counts_reads = before.is_some() && thread_blocks_read() > before;

        let (data, bytes) = big_pcap(40_000, 600, 900, 13);
        assert!(bytes.len() > 8 * POPULATE_AHEAD_BYTES && bytes.len() < READ_AHEAD_BYTES);
        let path = dir.path().join("holes.pcap");
        std::fs::write(&path, &bytes).unwrap();
        for case in ["holes", "cached", "cold"] {
            let f = File::open(&path).unwrap();
            drop_cached(&f);
            match case {
                "holes" => {
                    // Read back in 4 KiB folios (no read-ahead on this descriptor) around
                    // a hole in the middle of every 256 KiB.
                    fadvise(&f, libc::POSIX_FADV_RANDOM);
                    let mut block = vec![0u8; 128 << 10];
                    for at in (0..bytes.len()).step_by(256 << 10) {
                        let n = f.read_at(&mut block, at as u64).unwrap();
                        let n2 = f.read_at(&mut block[..124 << 10], (at + (132 << 10)) as u64);
                        assert!(n > 0 && n2.is_ok());
                    }
                }
                "cached" => assert_eq!(std::fs::read(&path).unwrap(), bytes),
                _ => {}
            }
            let file = CaptureFile::open(&path).unwrap();
            assert!(matches!(file.bytes, Bytes::Mapped(_)));
            let mut it = file.packets();
            let mut n = 0;
            let mut asked_when_on = None;
            while let Some(p) = it.read() {
                assert_eq!(p.data, data[n].as_slice(), "{case}");
                n += 1;
                if it.read_ahead.on && asked_when_on.is_none() {
                    asked_when_on = Some((it.populated_to, it.read_ahead.asked_to));
                }
            }
            assert!(it.take_error().is_none());
            assert_eq!(n, data.len());
            if counts_reads {
                if case == "holes" {
                    // A populate met holes (the first may find its pages read by the
                    // kernel's read-around of the fault in `detect`): the rest of the file
                    // (shorter than the window) was asked for right after it.
                    let (populated_to, asked_to) = asked_when_on.expect("never asked ahead");
                    assert!(populated_to < bytes.len(), "{populated_to}");
                    assert_eq!(asked_to, bytes.len());
                    assert!(it.read_ahead.read_bytes > 0);
                } else if case == "cached" {
                    assert_eq!(asked_when_on, None);
                    assert_eq!(it.read_ahead.asked_to, 0);
                } else {
                    // Not cached at all: the kernel's read-ahead read it (a populate may end
                    // just past what it read, which looks like a hole, and ask a little).
                    assert!(
                        it.read_ahead.read_bytes * 4 < bytes.len() as u64,
                        "{:?}",
                        it.read_ahead
                    );
                }
            }
        }
    }

    /// A pcap (nanoseconds, little-endian, Ethernet) of `n` packets whose lengths run from
    /// `min_len` to `min_len + spread - 1`, packet `i`'s byte `j` being `i * mul + j`: a capture
    /// large enough for the map's populate and release, with bytes that tell packets apart.
    /// The packets' bytes, and the file's.
    fn big_pcap(n: u32, min_len: usize, spread: u32, mul: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let data: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let len = min_len + (i % spread) as usize;
                (0..len).map(|j| (i as usize * mul + j) as u8).collect()
            })
            .collect();
        let recs: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32, 0, d.as_slice(), d.len() as u32))
            .collect();
        let bytes = pcap(false, true, 1, &recs);
        (data, bytes)
    }

    /// A mapped capture larger than the release lag: the reader releases what it left behind
    /// as it goes, and packets borrowed from the released range still read the same bytes.
    #[test]
    fn released_map_still_reads_the_same_bytes() {
        let (data, bytes) = big_pcap(30_000, 1000, 700, 7);
        assert!(bytes.len() > RELEASE_BEHIND_BYTES + 2 * RELEASE_CHUNK_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pcap");
        std::fs::write(&path, &bytes).unwrap();
        let file = CaptureFile::open(&path).unwrap();
        let mut it = file.packets();
        let mut got = Vec::new();
        while let Some(p) = it.read() {
            got.push(p);
        }
        assert!(it.take_error().is_none());
        if matches!(file.bytes, Bytes::Mapped(_)) && cfg!(target_os = "linux") {
            assert!(it.released_to >= RELEASE_CHUNK_BYTES, "{}", it.released_to);
        }
        assert_eq!(got.len(), data.len());
        // Read after the whole file was passed: the first packets lie in released chunks.
        for (p, d) in got.iter().zip(&data) {
            assert_eq!(p.data, d.as_slice());
        }
    }

    fn read_all(bytes: Vec<u8>) {
        if let Ok(file) = CaptureFile::from_bytes("fuzz", bytes) {
            let mut n = 0usize;
            let mut it = file.packets();
            for p in it.by_ref() {
                n += 1;
                if let Ok(p) = p {
                    assert!(p.offset < file.len_bytes());
                }
            }
            assert!(it.position() <= file.len_bytes());
            assert!(n <= file.len_bytes() as usize);
        }
    }

    /// [`pcap`] with a chosen snapshot length in the global header.
    fn pcap_snaplen(
        be: bool,
        nanos: bool,
        snaplen: u32,
        records: &[(u32, u32, &[u8], u32)],
    ) -> Vec<u8> {
        let mut bytes = pcap(be, nanos, 1, records);
        bytes[16..20].copy_from_slice(&u32b(snaplen, be));
        bytes
    }

    /// A generated pcap record: seconds, fraction, captured bytes, original length.
    type Rec = (u32, u32, Vec<u8>, u32);

    fn records() -> impl Strategy<Value = Vec<Rec>> {
        prop::collection::vec(
            (
                any::<u32>(),
                any::<u32>(),
                // Zero-length records included.
                prop::collection::vec(any::<u8>(), 0..80),
                any::<u32>(),
            ),
            0..12,
        )
    }

    fn borrowed(recs: &[Rec]) -> Vec<(u32, u32, &[u8], u32)> {
        recs.iter()
            .map(|(s, f, d, o)| (*s, *f, d.as_slice(), *o))
            .collect()
    }

    /// Reads a file with [`Packets::read`] and [`Packets::take_error`], checking that the
    /// iterator gives the same, and returns the packets and the error.
    fn read_pcap(file: &CaptureFile) -> (Vec<RawPacket<'_>>, Option<CaptureError>) {
        let mut it = file.packets();
        let mut got = Vec::new();
        while let Some(p) = it.read() {
            got.push(p);
        }
        let err = it.take_error();
        assert!(it.read().is_none() && it.take_error().is_none());
        let via_iter: Vec<_> = file.packets().collect();
        assert_eq!(via_iter.len(), got.len() + usize::from(err.is_some()));
        for (a, b) in via_iter.iter().zip(&got) {
            assert_eq!(a.as_ref().unwrap(), b);
        }
        if let Some(e) = &err {
            assert_eq!(
                via_iter.last().unwrap().as_ref().unwrap_err().to_string(),
                e.to_string()
            );
        }
        (got, err)
    }

    #[test]
    fn pcap_zero_length_records() {
        for be in [false, true] {
            let bytes = pcap(
                be,
                true,
                1,
                &[(1, 2, &[], 0), (3, 4, &[7], 1), (5, 6, &[], 60)],
            );
            let file = CaptureFile::from_bytes("z.pcap", bytes).unwrap();
            let (got, err) = read_pcap(&file);
            assert!(err.is_none());
            let seen: Vec<_> = got
                .iter()
                .map(|p| (p.ts_ns, p.data, p.orig_len, p.offset))
                .collect();
            assert_eq!(
                seen,
                [
                    (1_000_000_002, &[][..], 0, 24),
                    (3_000_000_004, &[7][..], 1, 40),
                    (5_000_000_006, &[][..], 60, 57),
                ]
            );
        }
    }

    #[test]
    fn pcap_caplen_limit_follows_snaplen_with_a_floor() {
        let big = vec![0u8; PACKET_BYTES_MIN_LIMIT as usize + 1];
        for be in [false, true] {
            // A zero or small snaplen still accepts records up to the floor.
            for snaplen in [0, 64, 65_535] {
                let floor = vec![1u8; PACKET_BYTES_MIN_LIMIT as usize];
                let file = CaptureFile::from_bytes(
                    "s.pcap",
                    pcap_snaplen(be, false, snaplen, &[(1, 0, &floor, 1)]),
                )
                .unwrap();
                let (got, err) = read_pcap(&file);
                assert!(err.is_none(), "{err:?}");
                assert_eq!(got[0].data.len(), floor.len());
                // One byte more is corrupt, with the limit in the message.
                let file = CaptureFile::from_bytes(
                    "s.pcap",
                    pcap_snaplen(be, false, snaplen, &[(1, 0, &[2], 1), (2, 0, &big, 1)]),
                )
                .unwrap();
                let (got, err) = read_pcap(&file);
                assert_eq!(got.len(), 1);
                let msg = err.unwrap().to_string();
                assert!(
                    msg.starts_with(&format!(
                        "s.pcap: corrupt record at byte offset 41: record claims {} captured bytes, more than the limit of {PACKET_BYTES_MIN_LIMIT} bytes",
                        big.len()
                    )),
                    "{msg}"
                );
            }
            // A larger snaplen raises the limit, up to RECORD_BYTES_MAX.
            let file = CaptureFile::from_bytes(
                "s.pcap",
                pcap_snaplen(be, false, 1 << 20, &[(1, 0, &big, 1)]),
            )
            .unwrap();
            assert!(read_pcap(&file).1.is_none());
            let mut bytes = pcap_snaplen(be, false, u32::MAX, &[]);
            bytes.extend(u32b(1, be));
            bytes.extend(u32b(0, be));
            bytes.extend(u32b(RECORD_BYTES_MAX + 1, be));
            bytes.extend(u32b(1, be));
            let file = CaptureFile::from_bytes("s.pcap", bytes).unwrap();
            let msg = read_pcap(&file).1.unwrap().to_string();
            assert!(
                msg.contains(&format!("more than the limit of {RECORD_BYTES_MAX} bytes")),
                "{msg}"
            );
        }
    }

    /// The checks of `pcap_records_match_the_model` on one file of `recs`: every record read
    /// as the model says (with `read`, the iterator and `read_into` into one slot), then the
    /// file cut at `cut` gives the records before the cut and a truncation error naming the
    /// record the cut falls in (or a clean end at a record boundary).
    fn check_pcap_model(
        be: bool,
        nanos: bool,
        snaplen: u32,
        recs: &[Rec],
        cut: prop::sample::Index,
    ) -> Result<(), TestCaseError> {
        let bytes = pcap_snaplen(be, nanos, snaplen, &borrowed(recs));
        let unit: i64 = if nanos { 1 } else { 1_000 };
        let mut starts = Vec::new();
        let mut at = 24usize;
        for (_, _, d, _) in recs {
            starts.push(at);
            at += 16 + d.len();
        }
        prop_assert_eq!(at, bytes.len());

        let file = CaptureFile::from_bytes("m.pcap", bytes.clone()).unwrap();
        let (got, err) = read_pcap(&file);
        prop_assert!(err.is_none());
        prop_assert_eq!(got.len(), recs.len());
        for ((p, (sec, frac, data, orig)), start) in got.iter().zip(recs).zip(&starts) {
            prop_assert_eq!(
                p.ts_ns,
                i64::from(*sec) * NANOS_PER_SEC + i64::from(*frac) * unit
            );
            prop_assert_eq!(p.data, data.as_slice());
            prop_assert_eq!(p.orig_len, *orig);
            prop_assert_eq!(p.offset, *start as u64);
            prop_assert_eq!((p.linktype, p.interface, p.interface_name), (1, 0, None));
        }
        // `read_into`'s contract: one slot for the whole file, starting with other values
        // in the fields the file fixes, gives every packet as `read` does once `complete`d;
        // `orig_len` and `offset` are written or left as they were (in the slot poisoned
        // before each read).
        let mut p = file.packets();
        let mut slot = RawPacket {
            linktype: 0xffff,
            interface: 7,
            interface_name: Some("x"),
            ..RawPacket::EMPTY
        };
        for want in &got {
            (slot.orig_len, slot.offset) = (0xdead_beef, u64::MAX);
            prop_assert!(p.read_into(&mut slot));
            prop_assert!(
                (slot.orig_len, slot.offset) == (0xdead_beef, u64::MAX)
                    || (slot.orig_len, slot.offset) == (want.orig_len, want.offset)
            );
            p.complete(&mut slot);
            prop_assert_eq!(
                (
                    slot.ts_ns,
                    slot.linktype,
                    slot.interface,
                    slot.interface_name,
                    slot.data,
                    slot.orig_len,
                    slot.offset
                ),
                (
                    want.ts_ns,
                    want.linktype,
                    want.interface,
                    want.interface_name,
                    want.data,
                    want.orig_len,
                    want.offset
                )
            );
        }
        prop_assert!(!p.read_into(&mut slot));

        let keep = 24 + cut.index(bytes.len() - 24 + 1);
        let file = CaptureFile::from_bytes("m.pcap", bytes[..keep].to_vec()).unwrap();
        let (got, err) = read_pcap(&file);
        let whole = starts
            .iter()
            .zip(recs)
            .filter(|(s, r)| *s + 16 + r.2.len() <= keep)
            .count();
        prop_assert_eq!(got.len(), whole);
        match starts.get(whole) {
            Some(&start) if start < keep => {
                let need = if keep - start < 16 {
                    16
                } else {
                    16 + recs[whole].2.len()
                };
                match err {
                    Some(CaptureError::Truncated {
                        offset,
                        need: n,
                        have,
                        ..
                    }) => {
                        prop_assert_eq!(
                            (offset, n, have),
                            (start as u64, need as u64, (keep - start) as u64)
                        );
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            _ => prop_assert!(err.is_none(), "{:?}", err),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The record reader against a model: every record of a well-formed file, in either
        /// byte order and timestamp unit, with zero-length and cut packets; then the same file
        /// cut anywhere gives the records before the cut and a truncation error naming the
        /// record the cut falls in (or a clean end at a record boundary).
        #[test]
        fn pcap_records_match_the_model(
            be in any::<bool>(),
            nanos in any::<bool>(),
            snaplen in any::<u32>(),
            recs in records(),
            cut in any::<prop::sample::Index>(),
        ) {
            check_pcap_model(be, nanos, snaplen, &recs, cut)?;
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Files longer than the inline read's window (`INLINE_RECORD_BYTES_MAX`), so most of
        /// their records are read inline (`pcap_record_inline`) and the last ~256 KiB, and any
        /// record over `INLINE_CAPLEN_MAX`, by the full path: the same model checks, in either
        /// byte order (big-endian files are never read inline); then a record's `caplen` set
        /// over the file's limit, inside the inline range or after it, is the corrupt record
        /// it names, with every record before it read.
        #[test]
        fn pcap_records_read_inline_match_the_model(
            be in any::<bool>(),
            nanos in any::<bool>(),
            snaplen in prop::sample::select(vec![0u32, 65_535, 1 << 20]),
            shapes in prop::collection::vec(
                (
                    any::<u32>(),
                    any::<u32>(),
                    prop_oneof![
                        40 => 0usize..120,
                        1 => prop::sample::select(vec![
                            INLINE_CAPLEN_MAX as usize - 1,
                            INLINE_CAPLEN_MAX as usize,
                            INLINE_CAPLEN_MAX as usize + 1,
                            300_000,
                        ]),
                    ],
                    any::<u8>(),
                    any::<u32>(),
                ),
                1..400,
            ),
            filler in 0usize..(INLINE_CAPLEN_MAX as usize),
            cut in any::<prop::sample::Index>(),
            bad in any::<prop::sample::Index>(),
        ) {
            let caplen_max = snaplen.clamp(PACKET_BYTES_MIN_LIMIT, RECORD_BYTES_MAX) as usize;
            let mut recs: Vec<Rec> = shapes
                .iter()
                .map(|&(sec, frac, len, seed, orig)| {
                    let len = len.min(caplen_max);
                    let data = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
                    (sec, frac, data, orig)
                })
                .collect();
            // At least a window's worth of bytes after the small records, so that they are
            // read inline.
            recs.push((1, 2, vec![0xab; INLINE_CAPLEN_MAX as usize], 3));
            recs.push((4, 5, vec![0xcd; filler], 6));
            check_pcap_model(be, nanos, snaplen, &recs, cut)?;

            let mut bytes = pcap_snaplen(be, nanos, snaplen, &borrowed(&recs));
            let k = bad.index(recs.len());
            let start = 24 + recs[..k].iter().map(|r| 16 + r.2.len()).sum::<usize>();
            bytes[start + 8..start + 12].copy_from_slice(&u32b(caplen_max as u32 + 1, be));
            let file = CaptureFile::from_bytes("c.pcap", bytes).unwrap();
            let (got, err) = read_pcap(&file);
            prop_assert_eq!(got.len(), k);
            for (p, r) in got.iter().zip(&recs) {
                prop_assert_eq!(p.data, r.2.as_slice());
            }
            match err {
                Some(CaptureError::Corrupt { offset, .. }) => prop_assert_eq!(offset, start as u64),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn never_panics_on_arbitrary_bytes(
            magic in prop::sample::select(vec![
                vec![], vec![0xd4, 0xc3, 0xb2, 0xa1], vec![0xa1, 0xb2, 0xc3, 0xd4],
                vec![0x4d, 0x3c, 0xb2, 0xa1], vec![0x0a, 0x0d, 0x0d, 0x0a],
            ]),
            tail in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            read_all([magic, tail].concat());
        }

        #[test]
        fn never_panics_on_mutated_files(
            be in any::<bool>(),
            ng in any::<bool>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = if ng {
                two_interfaces(be)
            } else {
                pcap(be, false, 1, &[(1, 2, &[3; 30], 30), (4, 5, &[6; 7], 70)])
            };
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep);
            read_all(bytes);
        }
    }
}
