//! The bytes on disk: the 96-byte [`Record`], the 64-byte [`LogHeader`],
//! [`SealedHeader`] and [`Footer`], partition file names, and the checks
//! applied to each on both sides of the disk. docs/FORMAT.md draws them.
//!
//! All integers are little-endian on every host (zerocopy's
//! `little_endian` types); no `usize` is ever stored.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::model::{EndReason, Mapping, Proto, UnixNanos, NANOS_PER_SEC};

/// Format version written in every sealed v1 header and footer; readers
/// refuse higher versions (sealed v2: [`crate::sealed_v2`]).
pub const FORMAT_VERSION: u32 = 1;
/// Version of the active logs this natrec writes: 3, whose records' `crc`
/// holds a CRC-32C seeded with the log file's generation
/// ([`RecordCrc::Generation`], [`LogHeader::generation`]). Version 2 logs
/// (plain CRC-32C, [`RecordCrc::Castagnoli`]) and version 1 logs
/// (CRC-32/IEEE, [`RecordCrc::Ieee`]), left by older natrecs, are still
/// opened, recovered, appended to in their own version and sealed.
pub const LOG_VERSION: u32 = 3;

/// The generation of a version 3 log made in a new file (every log, until a
/// file is used again: then [`next_generation`] of the one it held).
pub const GENERATION_FIRST: u32 = 1;

/// The one generation whose seed is 0 ([`RecordCrc::of_generation`]): its
/// records' CRCs would be a version 2 log's. Never used.
pub const GENERATION_UNSEEDED: u32 = 0x9be0_9bab;

/// Whether `g` may be a version 3 log's generation: not 0 (the field is
/// zero in version 1 and 2 headers) and not [`GENERATION_UNSEEDED`].
pub fn generation_ok(g: u32) -> bool {
    g != 0 && g != GENERATION_UNSEEDED
}

/// The generation a file that held generation `g` takes when it is used
/// again: the next valid one (`None` at the end of the u32 range: the file
/// is not used again, it is deleted). Generations of one file only grow, so
/// none repeats for it (docs/FORMAT.md, "Log generations").
pub fn next_generation(g: u32) -> Option<u32> {
    let mut n = g.checked_add(1)?;
    if !generation_ok(n) {
        n = n.checked_add(1)?;
    }
    Some(n)
}
/// Bytes per stored mapping.
pub const RECORD_SIZE: usize = 96;
/// Bytes of every header and footer.
pub const HEADER_SIZE: usize = 64;
/// Magic of an active append log.
pub const LOG_MAGIC: [u8; 8] = *b"NATRECL1";
/// Magic of a sealed partition's header.
pub const SEALED_MAGIC: [u8; 8] = *b"NATRECP1";
/// Magic of a sealed partition's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"NATRECF1";

/// `store_flags` bit: the public address is IPv4 (stored IPv4-mapped).
pub const SF_PUBLIC_V4: u8 = 1 << 0;
/// `store_flags` bit: the internal address is IPv4.
pub const SF_INTERNAL_V4: u8 = 1 << 1;
/// `store_flags` bit: the remote address is IPv4.
pub const SF_REMOTE_V4: u8 = 1 << 2;
/// `store_flags` bit: this copy was carried in from the previous partition
/// because the mapping was still held at its end.
pub const SF_CARRIED: u8 = 1 << 3;
/// `store_flags` bit: the record arrived after its own partition was sealed
/// and was stored in a later partition.
pub const SF_LATE: u8 = 1 << 4;
/// Every defined `store_flags` bit; the others must be zero.
pub const SF_KNOWN: u8 = SF_PUBLIC_V4 | SF_INTERNAL_V4 | SF_REMOTE_V4 | SF_CARRIED | SF_LATE;

/// Latest event time the store accepts: 2100-01-01T00:00:00Z. Keeps
/// `start + span` and `last + hold` far from `i64` overflow.
pub const EVENT_NS_MAX: UnixNanos = 4_102_444_800 * NANOS_PER_SEC;

/// One stored mapping: 96 bytes, no payload, no pointers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Record {
    /// Public (post-NAT) address, 16 bytes; IPv4 as `::ffff:a.b.c.d`.
    pub public_ip: [u8; 16],
    /// Internal (subscriber) address.
    pub internal_ip: [u8; 16],
    /// Remote address.
    pub remote_ip: [u8; 16],
    /// First translated packet, Unix ns.
    pub first_ns: I64,
    /// Last translated packet, Unix ns.
    pub last_ns: I64,
    /// Packets subscriber → remote.
    pub packets_out: U32,
    /// Packets remote → subscriber.
    pub packets_in: U32,
    /// Public port (ICMP identifier for echo).
    pub public_port: U16,
    /// Internal port.
    pub internal_port: U16,
    /// Remote port.
    pub remote_port: U16,
    /// IANA protocol number (1, 6, 17, 58).
    pub proto: u8,
    /// [`EndReason`] code.
    pub end: u8,
    /// `Mapping::flags`, all 8 bits as given.
    pub flags: u8,
    /// The store's own `SF_*` bits.
    pub store_flags: u8,
    /// Zero.
    pub reserved: [u8; 10],
    /// CRC of bytes 0..92: CRC-32/IEEE (crc32fast) in memory, in sealed
    /// partitions and in version 1 logs; CRC-32C in version 2 logs
    /// ([`RecordCrc`]).
    pub crc: U32,
}
const _: () = assert!(size_of::<Record>() == RECORD_SIZE);
const _: () = assert!(offset_of!(Record, crc) == RECORD_SIZE - 4);

/// Header of an active append log (`*.log`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LogHeader {
    /// [`LOG_MAGIC`].
    pub magic: [u8; 8],
    /// [`LOG_VERSION`] (or 1 or 2, an older natrec's log: [`RecordCrc`]).
    pub version: U32,
    /// [`RECORD_SIZE`].
    pub record_size: U32,
    /// Partition start, Unix ns.
    pub start_ns: I64,
    /// Partition span, ns.
    pub span_ns: I64,
    /// Segment number (the `-NNNN` of the name).
    pub segment: U32,
    /// Version 3: the file's generation, which seeds every record's CRC
    /// ([`RecordCrc::Generation`]; [`generation_ok`]); never the same twice
    /// for one file ([`next_generation`]). Versions 1 and 2: zero (it was
    /// reserved).
    pub generation: U32,
    /// Zero.
    pub reserved: [u8; 20],
    /// CRC-32 of bytes 0..60.
    pub crc: U32,
}
const _: () = assert!(size_of::<LogHeader>() == HEADER_SIZE);
const _: () = assert!(offset_of!(LogHeader, generation) == 36);

/// Header of a sealed partition (`*.part`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SealedHeader {
    /// [`SEALED_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// [`RECORD_SIZE`].
    pub record_size: U32,
    /// Partition start, Unix ns.
    pub start_ns: I64,
    /// Partition span, ns.
    pub span_ns: I64,
    /// Segment number.
    pub segment: U32,
    /// Zero.
    pub reserved0: [u8; 4],
    /// Records between header and footer.
    pub record_count: U64,
    /// Zero.
    pub reserved: [u8; 12],
    /// CRC-32 of bytes 0..60.
    pub crc: U32,
}
const _: () = assert!(size_of::<SealedHeader>() == HEADER_SIZE);

/// Footer of a sealed partition.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Footer {
    /// [`FOOTER_MAGIC`].
    pub magic: [u8; 8],
    /// Same as the header's; both must agree.
    pub record_count: U64,
    /// Smallest `first_ns` of the records marked [`SF_LATE`], `i64::MAX`
    /// when there are none. A lookup reads a partition after its window
    /// only if this is at or before the window's end.
    pub late_min_first_ns: I64,
    /// Largest `last_ns` of any record (0 when empty).
    pub max_last_ns: I64,
    /// CRC-32 of all record bytes, in file order.
    pub records_crc: U32,
    /// Records with [`SF_CARRIED`].
    pub carried_in: U32,
    /// Records with [`SF_LATE`].
    pub late_in: U32,
    /// Zero.
    pub reserved: [u8; 16],
    /// CRC-32 of bytes 0..60.
    pub crc: U32,
}
const _: () = assert!(size_of::<Footer>() == HEADER_SIZE);

/// CRC-32 of all 96 bytes of any record whose CRC is right (bytes 0..92
/// followed by their CRC-32, little-endian): the CRC's residue, the same
/// for every valid record.
pub const RECORD_RESIDUE: u32 = 0x2144_df1c;

/// CRC-32 of `n` records whose CRCs are all right, back to back: it depends
/// on `n` only (each record's CRC is [`RECORD_RESIDUE`], and the CRC of a
/// concatenation follows from its parts' CRCs and lengths). So one CRC over
/// a run of records checks all of theirs: with one damaged record it fails
/// exactly when that record's own check would (combining is one-to-one in
/// each part); only damage to two or more records can cancel out, with
/// probability 2^-32, as in any one CRC-32 over the run.
pub fn valid_records_crc(n: u64) -> u32 {
    let mut all = crc32fast::Hasher::new();
    let mut power = crc32fast::Hasher::new_with_initial_len(RECORD_RESIDUE, RECORD_SIZE as u64);
    let mut k = n;
    while k > 0 {
        if k & 1 == 1 {
            all.combine(&power);
        }
        let p = power.clone();
        power.combine(&p);
        k >>= 1;
    }
    all.finalize()
}

/// CRC-32C of all 96 bytes of any record whose CRC-32C is right (bytes
/// 0..92 followed by their CRC-32C, little-endian): its residue, the same
/// for every valid record of a version 2 log.
pub const RECORD_RESIDUE_C: u32 = 0x4867_4bc7;

/// Which CRC the `crc` field of a log's records holds: the log header's
/// version (and, in version 3, generation) says ([`LOG_VERSION`]). A record
/// in memory, in a sealed partition or returned by a read of a log always
/// holds CRC-32/IEEE ([`Record::compute_crc`]); only a version 2 or 3 log's
/// slots hold CRC-32C,
/// computed with the SSE 4.2 `crc32` instruction (`hwcrc.rs`; the `crc32c`
/// crate without SSE 4.2 and for long buffers): ~30 instructions for a
/// record's 92 bytes against ~125 for crc32fast (its PCLMULQDQ folding, one
/// 16-byte block at a time below 128 bytes, and the final reduction;
/// callgrind).
/// Both detect every burst of up to 32 bits; at a record's length their
/// Hamming distance is 5 (CRC-32/IEEE) and 6 (CRC-32C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCrc {
    /// CRC-32/IEEE: version 1 logs.
    Ieee,
    /// CRC-32C (Castagnoli) of the record's 92 bytes: version 2 logs.
    Castagnoli,
    /// CRC-32C of the log's generation (4 bytes, little-endian) followed by
    /// the record's 92 bytes: version 3 logs, what this natrec writes. A
    /// record written under another generation of the same file fails the
    /// check (docs/FORMAT.md, "Log generations").
    Generation {
        /// The log header's generation ([`generation_ok`]).
        generation: u32,
        /// CRC-32C of the generation's 4 bytes: where each record's CRC
        /// starts ([`crate::hwcrc::crc32c_record`]'s seed).
        seed: u32,
    },
}

impl RecordCrc {
    /// A version 3 log's CRC for generation `g` (which must be
    /// [`generation_ok`]).
    pub fn of_generation(g: u32) -> RecordCrc {
        assert!(generation_ok(g), "log generation {g:#x} is never used");
        RecordCrc::Generation {
            generation: g,
            seed: crc32c::crc32c(&g.to_le_bytes()),
        }
    }

    /// The CRC of a log whose header says `version` and `generation`
    /// (checked by [`LogHeader::read`]).
    pub fn of_log(version: u32, generation: u32) -> RecordCrc {
        match version {
            1 => RecordCrc::Ieee,
            2 => RecordCrc::Castagnoli,
            _ => RecordCrc::of_generation(generation),
        }
    }

    /// The log version whose records hold this CRC.
    pub fn log_version(self) -> u32 {
        match self {
            RecordCrc::Ieee => 1,
            RecordCrc::Castagnoli => 2,
            RecordCrc::Generation { .. } => LOG_VERSION,
        }
    }

    /// The generation a log header with this CRC holds (0: versions 1, 2).
    pub fn generation(self) -> u32 {
        match self {
            RecordCrc::Generation { generation, .. } => generation,
            _ => 0,
        }
    }

    /// The CRC-32C seed of each record (0: no prefix), for the CRC-32C kinds.
    #[inline]
    pub(crate) fn seed(self) -> u32 {
        match self {
            RecordCrc::Generation { seed, .. } => seed,
            _ => 0,
        }
    }

    /// The plain CRC of `bytes` this kind's chunk checks stream over runs
    /// of records (CRC-32/IEEE, or CRC-32C unseeded for both CRC-32C
    /// kinds: [`RecordCrc::valid_records_crc`] is the matching value).
    #[inline]
    pub fn hash(self, bytes: &[u8]) -> u32 {
        match self {
            RecordCrc::Ieee => crc32fast::hash(bytes),
            RecordCrc::Castagnoli | RecordCrc::Generation { .. } => crc32c::crc32c(bytes),
        }
    }

    /// This CRC of a record's bytes 0..92.
    #[inline]
    pub fn of(self, r: &Record) -> u32 {
        match self {
            RecordCrc::Ieee => r.compute_crc(),
            RecordCrc::Castagnoli | RecordCrc::Generation { .. } => crate::hwcrc::crc32c_record(
                self.seed(),
                r.as_bytes()[..RECORD_SIZE - 4]
                    .try_into()
                    .expect("a record's CRC covers 92 bytes"),
            ),
        }
    }

    /// [`RecordCrc::hash`] of `n` valid records back to back
    /// ([`valid_records_crc`] for CRC-32/IEEE; the same reasoning for
    /// CRC-32C, whose residue is [`RECORD_RESIDUE_C`]). CRC-32C: computed
    /// over `n` copies of one valid record (the crate's `crc32c_combine`
    /// costs ~100 000 instructions a call), so meant for chunks (`n` ≤ a
    /// few hundred), as the readers of version 2 and 3 logs use it.
    ///
    /// Seeded (version 3): the stream is the plain CRC-32C of the records'
    /// bytes, each record's CRC field seeded. A CRC is affine in its start
    /// state, so from any state a valid seeded record leads to a state that
    /// depends on that state only (the record's own CRC from the seed's
    /// state is the residue): the value still depends on `n` (and the
    /// seed) only, and one damaged record changes it exactly when its own
    /// check fails.
    pub fn valid_records_crc(self, n: u64) -> u32 {
        match self {
            RecordCrc::Ieee => valid_records_crc(n),
            RecordCrc::Castagnoli | RecordCrc::Generation { .. } => {
                let mut one = Record::new_zeroed();
                one.crc = U32::new(self.of(&one));
                (0..n).fold(0, |crc, _| crc32c::crc32c_append(crc, one.as_bytes()))
            }
        }
    }
}

/// CRC of a 64-byte header or footer (covers bytes 0..60).
pub fn header_crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(&bytes[..HEADER_SIZE - 4])
}

/// What is wrong with some bytes: field name, offset relative to the start
/// of the structure, and expected vs found. The caller adds the path and
/// the structure's offset in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Field name.
    pub field: &'static str,
    /// Byte offset of the field within the structure.
    pub offset: usize,
    /// Expected vs found.
    pub detail: String,
    /// For checksum faults: (stored, computed).
    pub checksum: Option<(u32, u32)>,
    /// For a version this build does not read: the version found and the
    /// highest it reads.
    pub version: Option<(u32, u32)>,
}

impl Fault {
    fn new(field: &'static str, offset: usize, detail: String) -> Fault {
        Fault {
            field,
            offset,
            detail,
            checksum: None,
            version: None,
        }
    }

    /// Turns this into a [`crate::StoreError`] about `path`, with the
    /// structure starting at byte `base` of the file.
    pub fn at(self, path: &std::path::Path, base: u64) -> crate::StoreError {
        let offset = base + self.offset as u64;
        if let Some((found, supported)) = self.version {
            return crate::StoreError::Version {
                path: path.to_path_buf(),
                found,
                supported,
            };
        }
        match self.checksum {
            Some((expected, found)) => crate::StoreError::BadChecksum {
                path: path.to_path_buf(),
                what: format!("{} at byte {offset}", self.field),
                expected,
                found,
            },
            None => crate::StoreError::Corrupt {
                path: path.to_path_buf(),
                offset,
                field: self.field,
                detail: self.detail,
            },
        }
    }
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], bool) {
    match ip {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), true),
        IpAddr::V6(v6) => (v6.octets(), false),
    }
}

/// 16-byte form of a query address, as stored in `public_ip`.
pub fn ip16(ip: IpAddr) -> [u8; 16] {
    ip_bytes(ip).0
}

fn ip_from(bytes: [u8; 16], v4: bool) -> Option<IpAddr> {
    let v6 = Ipv6Addr::from(bytes);
    if v4 {
        v6.to_ipv4_mapped().map(IpAddr::V4)
    } else {
        Some(IpAddr::V6(v6))
    }
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, 0)),
    }
}

/// What [`Record::encode`] and the encodes into a slot check of a
/// mapping before any byte is written: only `SF_CARRIED`/`SF_LATE` may be
/// passed (a caller's bug: panics), and `first_ns <= last_ns`.
#[inline(always)]
fn check_encodable(m: &Mapping, store_flags: u8) -> Result<(), Fault> {
    assert_eq!(
        store_flags & !(SF_CARRIED | SF_LATE),
        0,
        "only SF_CARRIED/SF_LATE may be passed"
    );
    if m.first_ns > m.last_ns {
        return Err(Fault::new(
            "first_ns",
            offset_of!(Record, first_ns),
            format!("first_ns {} is after last_ns {}", m.first_ns, m.last_ns),
        ));
    }
    Ok(())
}

impl Record {
    /// Encodes `m` with the store's `store_flags` bits (`SF_CARRIED`, `SF_LATE`);
    /// address-family bits are derived. Checks the mapping first (habit 10):
    /// `first_ns <= last_ns`. IPv6 flow info and scope id are not stored.
    ///
    /// This is the writer's check before the disk: every other field
    /// [`Record::decode`] checks is valid by construction here (reserved
    /// bytes zero, only known `store_flags` bits, protocol and end codes from
    /// their enums, IPv4 flags derived from the addresses, CRC computed last),
    /// so the record is not decoded again before it is written
    /// (`decode(encode(m)) == m` is a property test).
    pub fn encode(m: &Mapping, store_flags: u8) -> Result<Record, Fault> {
        check_encodable(m, store_flags)?;
        let mut r = Record::new_zeroed();
        r.fill(m, store_flags, RecordCrc::Ieee);
        Ok(r)
    }

    /// [`Record::encode`] written straight into `out` (an appended slot of
    /// a log's buffer: no record built and copied), with the CRC `crc` (the
    /// log's: [`RecordCrc`]); with [`RecordCrc::Ieee`] the bytes of
    /// `encode`. On an error `out` is not touched.
    #[inline(always)]
    pub fn encode_into(
        m: &Mapping,
        store_flags: u8,
        out: &mut Record,
        crc: RecordCrc,
    ) -> Result<(), Fault> {
        check_encodable(m, store_flags)?;
        out.fill(m, store_flags, crc);
        Ok(())
    }

    /// [`Record::encode_into`] without the CRC: every byte but the `crc`
    /// field, which keeps what it held. For a version 2 log's run of slots,
    /// whose CRC-32Cs are then written three at a time
    /// (`hwcrc::crc32c_set`) before they are counted.
    #[inline(always)]
    pub(crate) fn encode_fields_into(
        m: &Mapping,
        store_flags: u8,
        out: &mut Record,
    ) -> Result<(), Fault> {
        check_encodable(m, store_flags)?;
        out.fill_fields(m, store_flags);
        Ok(())
    }

    /// Every field from `m` (checked by the caller), reserved bytes zero,
    /// then the CRC. Every byte of `self` is written (the log buffer's slots
    /// are reused without zeroing); each address straight from its
    /// `SocketAddr` (no `IpAddr` built and matched again, ~50 instructions a
    /// record less).
    #[inline(always)]
    fn fill(&mut self, m: &Mapping, store_flags: u8, crc: RecordCrc) {
        self.fill_fields(m, store_flags);
        self.crc = U32::new(crc.of(self));
    }

    /// [`Record::fill`] but the CRC.
    #[inline(always)]
    fn fill_fields(&mut self, m: &Mapping, store_flags: u8) {
        #[inline(always)]
        fn ep(a: &SocketAddr) -> ([u8; 16], u16, bool) {
            match a {
                // `::ffff:a.b.c.d` as one 128-bit big-endian value (two
                // byte swaps, not sixteen byte moves).
                SocketAddr::V4(v4) => (
                    ((0xffff_u128 << 32) | u128::from(v4.ip().to_bits())).to_be_bytes(),
                    v4.port(),
                    true,
                ),
                SocketAddr::V6(v6) => (v6.ip().octets(), v6.port(), false),
            }
        }
        let (public_ip, public_port, p4) = ep(&m.public);
        let (internal_ip, internal_port, i4) = ep(&m.internal);
        let (remote_ip, remote_port, r4) = ep(&m.remote);
        let sf = store_flags
            | if p4 { SF_PUBLIC_V4 } else { 0 }
            | if i4 { SF_INTERNAL_V4 } else { 0 }
            | if r4 { SF_REMOTE_V4 } else { 0 };
        self.public_ip = public_ip;
        self.internal_ip = internal_ip;
        self.remote_ip = remote_ip;
        self.first_ns = I64::new(m.first_ns);
        self.last_ns = I64::new(m.last_ns);
        self.packets_out = U32::new(m.packets_out);
        self.packets_in = U32::new(m.packets_in);
        self.public_port = U16::new(public_port);
        self.internal_port = U16::new(internal_port);
        self.remote_port = U16::new(remote_port);
        self.proto = m.proto.number();
        self.end = m.end as u8;
        self.flags = m.flags;
        self.store_flags = sf;
        self.reserved = [0; 10];
    }

    /// CRC-32 of bytes 0..92 (the same value as `crc32fast::hash`, from a
    /// hasher whose CPU feature detection ran once: ~30 of the ~190
    /// instructions a record's CRC took).
    pub fn compute_crc(&self) -> u32 {
        static FRESH: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
        let mut h = FRESH.get_or_init(crc32fast::Hasher::new).clone();
        h.update(&self.as_bytes()[..RECORD_SIZE - 4]);
        h.finalize()
    }

    /// Reads a record from exactly [`RECORD_SIZE`] bytes and checks it.
    pub fn read(bytes: &[u8]) -> Result<Record, Fault> {
        let r = Record::read_from_bytes(bytes).map_err(|_| {
            Fault::new(
                "record",
                0,
                format!("{} bytes, expected {RECORD_SIZE}", bytes.len()),
            )
        })?;
        r.decode()?;
        Ok(r)
    }

    /// A record from a log's slot whose CRC is `crc` ([`RecordCrc`]),
    /// checked as [`Record::read`] checks (the CRC of that kind), returned
    /// with its CRC-32/IEEE as every record in memory holds.
    pub fn read_with(bytes: &[u8], crc: RecordCrc) -> Result<Record, Fault> {
        if crc == RecordCrc::Ieee {
            return Record::read(bytes);
        }
        let mut r = Record::read_from_bytes(bytes).map_err(|_| {
            Fault::new(
                "record",
                0,
                format!("{} bytes, expected {RECORD_SIZE}", bytes.len()),
            )
        })?;
        r.check_crc_with(crc)?;
        r.decode_fields()?;
        r.crc = U32::new(r.compute_crc());
        Ok(r)
    }

    /// Checks every field and returns the mapping. Checks, in order: CRC,
    /// reserved bytes zero, unknown `store_flags` bits zero, protocol and
    /// end codes known, IPv4 flag consistent with the address bytes,
    /// `first_ns <= last_ns`.
    pub fn decode(&self) -> Result<Mapping, Fault> {
        self.check_crc()?;
        self.decode_fields()
    }

    /// Checks the CRC only: what the writer's seal checks of the records it
    /// reads back from its own log (their fields were checked when they were
    /// encoded; a lookup or `verify` checks them again with [`Record::decode`]).
    pub fn check_crc(&self) -> Result<(), Fault> {
        self.check_crc_with(RecordCrc::Ieee)
    }

    /// [`Record::check_crc`] for a CRC of kind `crc` (a log's slot).
    pub fn check_crc_with(&self, crc: RecordCrc) -> Result<(), Fault> {
        let found = crc.of(self);
        if found != self.crc.get() {
            return Err(Fault {
                field: "record crc",
                offset: offset_of!(Record, crc),
                detail: format!("expected {:#010x}, found {found:#010x}", self.crc.get()),
                checksum: Some((self.crc.get(), found)),
                version: None,
            });
        }
        Ok(())
    }

    /// Whether [`Record::decode_fields`] accepts the record: the same
    /// checks, nothing built (a reader's scan of a whole log).
    pub(crate) fn fields_ok(&self) -> bool {
        const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let family_ok =
            |ip: &[u8; 16], bit: u8| self.store_flags & bit == 0 || ip[..12] == V4_MAPPED;
        self.reserved == [0; 10]
            && self.store_flags & !SF_KNOWN == 0
            && Proto::from_number(self.proto).is_some()
            && EndReason::from_code(self.end).is_some()
            && family_ok(&self.public_ip, SF_PUBLIC_V4)
            && family_ok(&self.internal_ip, SF_INTERNAL_V4)
            && family_ok(&self.remote_ip, SF_REMOTE_V4)
            && self.first_ns.get() <= self.last_ns.get()
    }

    /// [`Record::decode`] without the CRC check, for records whose CRC was
    /// just checked (or just computed by us).
    pub(crate) fn decode_fields(&self) -> Result<Mapping, Fault> {
        if self.reserved != [0; 10] {
            return Err(Fault::new(
                "reserved",
                offset_of!(Record, reserved),
                format!("expected zero, found {:02x?}", self.reserved),
            ));
        }
        if self.store_flags & !SF_KNOWN != 0 {
            return Err(Fault::new(
                "store_flags",
                offset_of!(Record, store_flags),
                format!("unknown bits {:#04x}", self.store_flags & !SF_KNOWN),
            ));
        }
        let proto = Proto::from_number(self.proto).ok_or_else(|| {
            Fault::new(
                "proto",
                offset_of!(Record, proto),
                format!("expected 1, 6, 17 or 58, found {}", self.proto),
            )
        })?;
        let end = EndReason::from_code(self.end).ok_or_else(|| {
            Fault::new(
                "end",
                offset_of!(Record, end),
                format!("expected 0..=6, found {}", self.end),
            )
        })?;
        let addr = |bytes: [u8; 16], bit: u8, field: &'static str, off: usize, port: U16| {
            ip_from(bytes, self.store_flags & bit != 0)
                .map(|ip| sock(ip, port.get()))
                .ok_or_else(|| {
                    Fault::new(
                        field,
                        off,
                        "IPv4 flag set but address is not ::ffff:a.b.c.d".to_string(),
                    )
                })
        };
        let public = addr(
            self.public_ip,
            SF_PUBLIC_V4,
            "public_ip",
            offset_of!(Record, public_ip),
            self.public_port,
        )?;
        let internal = addr(
            self.internal_ip,
            SF_INTERNAL_V4,
            "internal_ip",
            offset_of!(Record, internal_ip),
            self.internal_port,
        )?;
        let remote = addr(
            self.remote_ip,
            SF_REMOTE_V4,
            "remote_ip",
            offset_of!(Record, remote_ip),
            self.remote_port,
        )?;
        if self.first_ns.get() > self.last_ns.get() {
            return Err(Fault::new(
                "first_ns",
                offset_of!(Record, first_ns),
                format!(
                    "first_ns {} is after last_ns {}",
                    self.first_ns.get(),
                    self.last_ns.get()
                ),
            ));
        }
        Ok(Mapping {
            proto,
            internal,
            public,
            remote,
            first_ns: self.first_ns.get(),
            last_ns: self.last_ns.get(),
            end,
            packets_out: self.packets_out.get(),
            packets_in: self.packets_in.get(),
            flags: self.flags,
        })
    }

    /// The copy of this record a partition's seal carries into the next
    /// partition's log: the same bytes but `store_flags`, which keeps the
    /// address-family bits and is [`SF_CARRIED`] otherwise (a late copy's
    /// [`SF_LATE`] is dropped), and the CRC (CRC-32/IEEE, as every record
    /// in memory holds; whatever the CRC field held before). For a record
    /// [`Record::decode_fields`] accepts these are the bytes of
    /// `Record::encode(&self.decode_fields()?, SF_CARRIED)` (a property
    /// test), without the mapping built and encoded again (~710
    /// instructions a carried record on `natrec-bigstore`'s seals; the
    /// CRC is most of what is left).
    pub(crate) fn carried_copy(&self) -> Record {
        let mut c = *self;
        c.store_flags =
            self.store_flags & (SF_PUBLIC_V4 | SF_INTERNAL_V4 | SF_REMOTE_V4) | SF_CARRIED;
        c.crc = U32::new(c.compute_crc());
        c
    }

    /// Sort order of a sealed partition: public ip bytes, public port,
    /// first_ns, then all remaining bytes (a total order).
    pub fn sort_key(&self) -> ([u8; 16], u16, i64, &[u8]) {
        (
            self.public_ip,
            self.public_port.get(),
            self.first_ns.get(),
            self.as_bytes(),
        )
    }
}

/// The natural key of a mapping: two records with the same key are states
/// of the same mapping.
pub type NaturalKey = (Proto, SocketAddr, SocketAddr, SocketAddr, UnixNanos);

/// Natural key of `m`: (proto, internal, public, remote, first_ns).
pub fn natural_key(m: &Mapping) -> NaturalKey {
    (m.proto, m.internal, m.public, m.remote, m.first_ns)
}

/// True when state `a` supersedes state `b` of the same mapping: an ended
/// state beats `Open`, then a larger `last_ns` wins.
pub fn supersedes(a: &Mapping, b: &Mapping) -> bool {
    let rank = |m: &Mapping| (m.end != EndReason::Open, m.last_ns);
    rank(a) > rank(b)
}

/// The first 64 bytes of `bytes` as header `T` (checks come after).
fn read_header<T: FromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> Result<T, Fault> {
    T::read_from_prefix(bytes).map(|(h, _)| h).map_err(|_| {
        Fault::new(
            "header",
            0,
            format!(
                "file is {} bytes, shorter than the {HEADER_SIZE}-byte header",
                bytes.len()
            ),
        )
    })
}

fn check_common(
    magic: [u8; 8],
    want_magic: [u8; 8],
    (version, version_max): (u32, u32),
    record_size: u32,
    crc: u32,
    bytes: &[u8],
) -> Result<(), Fault> {
    if magic != want_magic {
        return Err(Fault::new(
            "magic",
            0,
            format!(
                "expected {:?}, found {:?}",
                String::from_utf8_lossy(&want_magic),
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    let found = header_crc(bytes);
    if found != crc {
        return Err(Fault {
            field: "header crc",
            offset: HEADER_SIZE - 4,
            detail: format!("expected {crc:#010x}, found {found:#010x}"),
            checksum: Some((crc, found)),
            version: None,
        });
    }
    if version == 0 || version > version_max {
        let mut f = Fault::new(
            "version",
            8,
            format!("expected 1..={version_max}, found {version}"),
        );
        f.version = Some((version, version_max));
        return Err(f);
    }
    if record_size as usize != RECORD_SIZE {
        return Err(Fault::new(
            "record_size",
            12,
            format!("expected {RECORD_SIZE}, found {record_size}"),
        ));
    }
    Ok(())
}

impl LogHeader {
    /// A fresh header of a log whose records hold `crc`: [`LOG_VERSION`]
    /// and its generation for [`RecordCrc::Generation`] (every new log), 2
    /// or 1 for [`RecordCrc::Castagnoli`] or [`RecordCrc::Ieee`] (an older
    /// natrec's log whose header is written again at recovery).
    pub fn new(start_ns: i64, span_ns: i64, segment: u32, crc: RecordCrc) -> LogHeader {
        let mut h = LogHeader {
            magic: LOG_MAGIC,
            version: U32::new(crc.log_version()),
            record_size: U32::new(RECORD_SIZE as u32),
            start_ns: I64::new(start_ns),
            span_ns: I64::new(span_ns),
            segment: U32::new(segment),
            generation: U32::new(crc.generation()),
            reserved: [0; 20],
            crc: U32::new(0),
        };
        h.crc = U32::new(header_crc(h.as_bytes()));
        h
    }

    /// Reads and checks the first 64 bytes of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<LogHeader, Fault> {
        let h: LogHeader = read_header(bytes)?;
        check_common(
            h.magic,
            LOG_MAGIC,
            (h.version.get(), LOG_VERSION),
            h.record_size.get(),
            h.crc.get(),
            h.as_bytes(),
        )?;
        let g = h.generation.get();
        if h.version.get() < 3 && g != 0 {
            return Err(Fault::new(
                "generation",
                offset_of!(LogHeader, generation),
                format!(
                    "expected zero in a version {} log, found {g:#x}",
                    h.version.get()
                ),
            ));
        }
        if h.version.get() >= 3 && !generation_ok(g) {
            return Err(Fault::new(
                "generation",
                offset_of!(LogHeader, generation),
                format!("expected a log generation, found {g:#x}, which is never written"),
            ));
        }
        if h.reserved != [0; 20] {
            return Err(Fault::new(
                "reserved",
                offset_of!(LogHeader, reserved),
                "expected zero".into(),
            ));
        }
        Ok(h)
    }

    /// The CRC this log's records hold (the header checked by
    /// [`LogHeader::read`]).
    pub fn record_crc(&self) -> RecordCrc {
        RecordCrc::of_log(self.version.get(), self.generation.get())
    }
}

impl SealedHeader {
    /// A fresh header.
    pub fn new(start_ns: i64, span_ns: i64, segment: u32, record_count: u64) -> SealedHeader {
        let mut h = SealedHeader {
            magic: SEALED_MAGIC,
            version: U32::new(FORMAT_VERSION),
            record_size: U32::new(RECORD_SIZE as u32),
            start_ns: I64::new(start_ns),
            span_ns: I64::new(span_ns),
            segment: U32::new(segment),
            reserved0: [0; 4],
            record_count: U64::new(record_count),
            reserved: [0; 12],
            crc: U32::new(0),
        };
        h.crc = U32::new(header_crc(h.as_bytes()));
        h
    }

    /// Reads and checks the first 64 bytes of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<SealedHeader, Fault> {
        let h: SealedHeader = read_header(bytes)?;
        check_common(
            h.magic,
            SEALED_MAGIC,
            (h.version.get(), FORMAT_VERSION),
            h.record_size.get(),
            h.crc.get(),
            h.as_bytes(),
        )?;
        if h.reserved != [0; 12] || h.reserved0 != [0; 4] {
            return Err(Fault::new(
                "reserved",
                offset_of!(SealedHeader, reserved0),
                "expected zero".into(),
            ));
        }
        Ok(h)
    }
}

impl Footer {
    /// Footer summarizing `records` (in file order).
    pub fn new(records: &[Record]) -> Footer {
        let mut crc = crc32fast::Hasher::new();
        let (mut min_first, mut max_last) = (i64::MAX, i64::MIN);
        let (mut carried, mut late) = (0u32, 0u32);
        for r in records {
            crc.update(r.as_bytes());
            if r.store_flags & SF_LATE != 0 {
                min_first = min_first.min(r.first_ns.get());
            }
            max_last = max_last.max(r.last_ns.get());
            carried += u32::from(r.store_flags & SF_CARRIED != 0);
            late += u32::from(r.store_flags & SF_LATE != 0);
        }
        if records.is_empty() {
            max_last = 0;
        }
        let mut f = Footer {
            magic: FOOTER_MAGIC,
            record_count: U64::new(records.len() as u64),
            late_min_first_ns: I64::new(min_first),
            max_last_ns: I64::new(max_last),
            records_crc: U32::new(crc.finalize()),
            carried_in: U32::new(carried),
            late_in: U32::new(late),
            reserved: [0; 16],
            crc: U32::new(0),
        };
        f.crc = U32::new(header_crc(f.as_bytes()));
        f
    }

    /// Reads and checks exactly 64 bytes.
    pub fn read(bytes: &[u8]) -> Result<Footer, Fault> {
        let f = Footer::read_from_bytes(bytes).map_err(|_| {
            Fault::new(
                "footer",
                0,
                format!("{} bytes, expected {HEADER_SIZE}", bytes.len()),
            )
        })?;
        if f.magic != FOOTER_MAGIC {
            return Err(Fault::new(
                "footer magic",
                0,
                format!(
                    "expected \"NATRECF1\", found {:?}",
                    String::from_utf8_lossy(&f.magic)
                ),
            ));
        }
        let found = header_crc(f.as_bytes());
        if found != f.crc.get() {
            return Err(Fault {
                field: "footer crc",
                offset: HEADER_SIZE - 4,
                detail: format!("expected {:#010x}, found {found:#010x}", f.crc.get()),
                checksum: Some((f.crc.get(), found)),
                version: None,
            });
        }
        if f.reserved != [0; 16] {
            return Err(Fault::new(
                "footer reserved",
                offset_of!(Footer, reserved),
                "expected zero".into(),
            ));
        }
        Ok(f)
    }
}

/// Kind of partition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `*.part`: sealed, sorted, immutable.
    Sealed,
    /// `*.log`: active append log.
    Active,
}

impl FileKind {
    /// File extension, without the dot.
    pub fn ext(self) -> &'static str {
        match self {
            FileKind::Sealed => "part",
            FileKind::Active => "log",
        }
    }
}

/// `(year, month, day)` of a day count since 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` of a Unix ns time (UTC), truncated to the second.
pub fn utc_stamp(ns: i64) -> String {
    let s = ns.div_euclid(NANOS_PER_SEC);
    let (days, sod) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// File name of a partition segment: `20260301T140000Z-0000.log`.
pub fn file_name(start_ns: i64, segment: u32, kind: FileKind) -> String {
    format!("{}-{segment:04}.{}", utc_stamp(start_ns), kind.ext())
}

/// Parses a partition file name; `None` for anything else (temp files,
/// strangers).
pub fn parse_file_name(name: &str) -> Option<(i64, u32, FileKind)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let kind = match ext {
        "part" => FileKind::Sealed,
        "log" => FileKind::Active,
        _ => return None,
    };
    let b = stem.as_bytes();
    if b.len() != 21 || b[8] != b'T' || b[15] != b'Z' || b[16] != b'-' {
        return None;
    }
    // Decimal digits only (at most 4, so no overflow).
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let segment = u32::try_from(num(17..21)?).ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    // Reject dates that do not exist (e.g. 20260231): exactly the names
    // that would not round-trip through `file_name` (property-tested), at a
    // compare instead of a formatted string per name — a lookup lists the
    // partition directory, which grows with retention.
    if d > days_in_month(y, mo) {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    let start_ns = secs.checked_mul(NANOS_PER_SEC)?;
    Some((start_ns, segment, kind))
}

/// Days in month `m` (1..=12) of proleptic Gregorian year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The round-7 parser: accepts a name only if it round-trips through
    /// `file_name` (the reference [`parse_file_name`] must agree with).
    fn parse_file_name_round_trip(name: &str) -> Option<(i64, u32, FileKind)> {
        let (stem, ext) = name.rsplit_once('.')?;
        let kind = match ext {
            "part" => FileKind::Sealed,
            "log" => FileKind::Active,
            _ => return None,
        };
        let b = stem.as_bytes();
        if b.len() != 21 || b[8] != b'T' || b[15] != b'Z' || b[16] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = stem.get(r)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
        let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
        let segment = u32::try_from(num(17..21)?).ok()?;
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
        let start_ns = secs.checked_mul(NANOS_PER_SEC)?;
        (file_name(start_ns, segment, kind) == name).then_some((start_ns, segment, kind))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

        /// The parser without the round trip accepts exactly the names the
        /// round trip accepted, with the same values: dates around month
        /// ends and leap years, every year digit string, odd characters.
        #[test]
        fn parse_file_name_agrees_with_the_round_trip(
            y in prop_oneof![0u32..=9999, prop::sample::select(vec![1600u32, 1700, 1900, 1970, 2000, 2024, 2100, 2262, 2263, 2400])],
            mo in 0u32..=13,
            d in prop_oneof![0u32..=32, 27u32..=31],
            (h, mi, s) in (0u32..=25, 0u32..=61, 0u32..=61),
            seg in 0u32..=9999,
            ext in prop::sample::select(vec!["part", "log", "tmp", "part.tmp"]),
            damage in prop::option::of((0usize..26, prop::sample::select(vec![b'x', b'-', b'T', b'Z', b'.', b'0', b'9', b' ']))),
        ) {
            let mut name = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z-{seg:04}.{ext}").into_bytes();
            if let Some((at, c)) = damage {
                if at < name.len() {
                    name[at] = c;
                }
            }
            let name = String::from_utf8(name).unwrap();
            prop_assert_eq!(parse_file_name(&name), parse_file_name_round_trip(&name), "{}", name);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// `fields_ok` says yes exactly when `decode_fields` does: records
        /// built from a valid one with a few bytes set to values that
        /// matter (zero, 0xff, the IPv4-mapped prefix's bytes, small codes).
        #[test]
        fn fields_ok_agrees_with_decode_fields(
            changes in prop::collection::vec(
                (0usize..92, prop::sample::select(vec![0u8, 1, 2, 4, 5, 6, 7, 8, 17, 58, 0x3f, 0xff])),
                0..4,
            ),
            flags in prop::sample::select(vec![0u8, 1, 2, 4, 7, 8, 16, 31, 32]),
            v6 in any::<bool>(),
        ) {
            let mut m = sample();
            if v6 {
                m.public = "[2001:db8::7]:1024".parse().unwrap();
            }
            let mut r = Record::encode(&m, 0).unwrap();
            r.store_flags = (r.store_flags & 7) | (flags & !7);
            let b = r.as_mut_bytes();
            for (at, v) in changes {
                b[at] = v;
            }
            prop_assert_eq!(r.fields_ok(), r.decode_fields().is_ok(), "{:?}", r.decode_fields().err());
        }

        /// `encode_into` (the log buffer's in-place encoding) writes exactly
        /// `encode`'s bytes over whatever the slot held (with a CRC-32C
        /// instead of the CRC-32/IEEE for a version 2 log: the same 92
        /// bytes, and `read_with` gives back `encode`'s record), and on a
        /// refused mapping leaves the slot untouched.
        #[test]
        fn encode_into_writes_the_bytes_of_encode(
            garbage in prop::array::uniform32(any::<u8>()),
            first in any::<i64>(),
            span in -3i64..1_000_000,
            ports in any::<(u16, u16, u16)>(),
            counts in any::<(u32, u32)>(),
            v6 in any::<(bool, bool, bool)>(),
            flags in any::<u8>(),
            store_flags in prop::sample::select(vec![0u8, SF_CARRIED, SF_LATE, SF_CARRIED | SF_LATE]),
            end in 0u8..7,
        ) {
            let addr = |v6: bool, port: u16, k: u8| -> std::net::SocketAddr {
                if v6 {
                    std::net::SocketAddr::new(format!("2001:db8::{k}").parse().unwrap(), port)
                } else {
                    std::net::SocketAddr::new(std::net::Ipv4Addr::new(10, 0, 0, k).into(), port)
                }
            };
            let m = Mapping {
                proto: Proto::Udp,
                public: addr(v6.0, ports.0, 1),
                internal: addr(v6.1, ports.1, 2),
                remote: addr(v6.2, ports.2, 3),
                first_ns: first,
                last_ns: first.saturating_add(span),
                end: EndReason::from_code(end).unwrap(),
                packets_out: counts.0,
                packets_in: counts.1,
                flags,
            };
            let mut slot = Record::new_zeroed();
            for (b, g) in slot.as_mut_bytes().iter_mut().zip(garbage.iter().cycle()) {
                *b = *g;
            }
            let before = slot;
            let mut slot_c = slot;
            match (
                Record::encode(&m, store_flags),
                Record::encode_into(&m, store_flags, &mut slot, RecordCrc::Ieee),
                Record::encode_into(&m, store_flags, &mut slot_c, RecordCrc::Castagnoli),
            ) {
                (Ok(r), Ok(()), Ok(())) => {
                    prop_assert_eq!(r.as_bytes(), slot.as_bytes());
                    prop_assert_eq!(&r.as_bytes()[..92], &slot_c.as_bytes()[..92]);
                    prop_assert_eq!(slot_c.crc.get(), crc32c::crc32c(&r.as_bytes()[..92]));
                    prop_assert_eq!(Record::read_with(slot_c.as_bytes(), RecordCrc::Castagnoli).unwrap(), r);
                    // Each kind's CRC is refused where the other is expected
                    // (unless the two CRCs happen to be equal: 2^-32).
                    if r.crc != slot_c.crc {
                        prop_assert!(Record::read_with(slot_c.as_bytes(), RecordCrc::Ieee).is_err());
                        prop_assert!(Record::read_with(r.as_bytes(), RecordCrc::Castagnoli).is_err());
                    }
                }
                (Err(a), Err(b), Err(c)) => {
                    prop_assert_eq!(a.field, b.field);
                    prop_assert_eq!(a.field, c.field);
                    prop_assert_eq!(before.as_bytes(), slot.as_bytes());
                    prop_assert_eq!(before.as_bytes(), slot_c.as_bytes());
                }
                (a, b, c) => prop_assert!(false, "encode {:?}, encode_into {:?} {:?}", a.map(|_| ()), b, c),
            }
        }

        /// A version 2 log's record with one bit flipped anywhere in its 96
        /// bytes is refused, and named as a CRC fault (a flip in the CRC
        /// field or the data both make it wrong).
        #[test]
        fn castagnoli_record_bit_flips_are_caught(bit in 0usize..RECORD_SIZE * 8, n in any::<u32>()) {
            let mut m = sample();
            m.packets_out = n;
            let mut r = Record::new_zeroed();
            Record::encode_into(&m, 0, &mut r, RecordCrc::Castagnoli).unwrap();
            let mut b = r.as_bytes().to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            let f = Record::read_with(&b, RecordCrc::Castagnoli).unwrap_err();
            prop_assert_eq!(f.field, "record crc");
            prop_assert_eq!(f.offset, 92);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// The carried copy of a record is the record decoded and encoded
        /// again with `SF_CARRIED`, whatever its `store_flags` (carried,
        /// late, both), its CRC field (a log's CRC-32C, garbage) and its
        /// addresses' families (an IPv6 address in the IPv4-mapped form
        /// without the IPv4 bit stays IPv6).
        #[test]
        fn carried_copy_is_decode_then_encode_carried(
            first in any::<i64>(),
            span in 0i64..1_000_000_000,
            ports in any::<(u16, u16, u16)>(),
            counts in any::<(u32, u32)>(),
            kinds in (0u8..3, 0u8..3, 0u8..3),
            last_byte in any::<u8>(),
            flags in any::<u8>(),
            store_flags in prop::sample::select(vec![0u8, SF_CARRIED, SF_LATE, SF_CARRIED | SF_LATE]),
            proto in prop::sample::select(vec![Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6]),
            end in 0u8..7,
            crc in any::<u32>(),
        ) {
            let addr = |kind: u8, port: u16, k: u8| -> std::net::SocketAddr {
                let ip: IpAddr = match kind {
                    0 => std::net::Ipv4Addr::new(10, 0, k, last_byte).into(),
                    1 => format!("2001:db8::{k}:{last_byte}").parse().unwrap(),
                    _ => std::net::Ipv4Addr::new(192, 0, k, last_byte).to_ipv6_mapped().into(),
                };
                std::net::SocketAddr::new(ip, port)
            };
            let m = Mapping {
                proto,
                public: addr(kinds.0, ports.0, 1),
                internal: addr(kinds.1, ports.1, 2),
                remote: addr(kinds.2, ports.2, 3),
                first_ns: first,
                last_ns: first.saturating_add(span),
                end: EndReason::from_code(end).unwrap(),
                packets_out: counts.0,
                packets_in: counts.1,
                flags,
            };
            let mut r = Record::encode(&m, store_flags).unwrap();
            r.crc = U32::new(crc);
            let again = Record::encode(&r.decode_fields().unwrap(), SF_CARRIED).unwrap();
            prop_assert_eq!(r.carried_copy(), again);
        }
    }

    /// A v4 TCP mapping and its exact 96 bytes, written out by hand.
    fn sample() -> Mapping {
        Mapping {
            proto: Proto::Tcp,
            internal: "100.64.0.2:40000".parse().unwrap(),
            public: "203.0.113.7:1024".parse().unwrap(),
            remote: "198.51.100.9:443".parse().unwrap(),
            first_ns: 0x0102_0304_0506_0708,
            last_ns: 0x0102_0304_0506_0709,
            end: EndReason::Fin,
            packets_out: 5,
            packets_in: 4,
            flags: 1,
        }
    }

    static SAMPLE_BYTES_NO_CRC: [u8; 92] = [
        // public_ip ::ffff:203.0.113.7
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7, //
        // internal_ip ::ffff:100.64.0.2
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 2, //
        // remote_ip ::ffff:198.51.100.9
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 9, //
        8, 7, 6, 5, 4, 3, 2, 1, // first_ns LE
        9, 7, 6, 5, 4, 3, 2, 1, // last_ns LE
        5, 0, 0, 0, // packets_out
        4, 0, 0, 0, // packets_in
        0x00, 0x04, // public_port 1024
        0x40, 0x9c, // internal_port 40000
        0xbb, 0x01, // remote_port 443
        6,    // proto tcp
        1,    // end fin
        1,    // flags MIDFLOW
        0x07, // store_flags: all three v4
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[test]
    fn record_bytes_are_exactly_as_drawn() {
        let r = Record::encode(&sample(), 0).unwrap();
        let bytes = r.as_bytes();
        assert_eq!(&bytes[..92], &SAMPLE_BYTES_NO_CRC[..]);
        let crc = crc32fast::hash(&SAMPLE_BYTES_NO_CRC);
        assert_eq!(&bytes[92..], &crc.to_le_bytes());
        assert_eq!(Record::read(bytes).unwrap().decode().unwrap(), sample());
    }

    fn faults(mutate: impl Fn(&mut [u8]), fix_crc: bool) -> Fault {
        let mut b = Record::encode(&sample(), 0).unwrap().as_bytes().to_vec();
        mutate(&mut b);
        if fix_crc {
            let c = crc32fast::hash(&b[..92]);
            b[92..].copy_from_slice(&c.to_le_bytes());
        }
        Record::read(&b).unwrap_err()
    }

    #[test]
    fn every_bad_field_is_named() {
        let f = faults(|b| b[0] ^= 1, false);
        assert_eq!((f.field, f.offset), ("record crc", 92));
        assert!(f.checksum.is_some());
        assert_eq!(faults(|b| b[78] = 47, true).field, "proto");
        assert_eq!(faults(|b| b[79] = 9, true).field, "end");
        assert_eq!(faults(|b| b[85] = 1, true).field, "reserved");
        assert_eq!(faults(|b| b[81] |= 0x80, true).field, "store_flags");
        assert_eq!(faults(|b| b[10] = 0, true).field, "public_ip");
        let f = faults(|b| b[48..56].copy_from_slice(&i64::MAX.to_le_bytes()), true);
        assert_eq!((f.field, f.offset), ("first_ns", 48));
        assert_eq!(Record::read(&[0u8; 95]).unwrap_err().field, "record");
    }

    /// CRC-32C: the residue and the CRC of n valid records of a version 2
    /// log, against CRCs computed over real bytes.
    #[test]
    fn valid_castagnoli_records_have_one_crc_per_count() {
        let c = RecordCrc::Castagnoli;
        assert_eq!(crc32c::crc32c(b"Hello world!"), 0x7b98_e751);
        let mut bytes = Vec::new();
        for n in 0..40u64 {
            assert_eq!(c.hash(&bytes), c.valid_records_crc(n), "n = {n}");
            let mut m = sample();
            m.first_ns = n as i64;
            m.last_ns = 1000 + (n * n) as i64;
            m.packets_in = n as u32 * 7;
            let mut r = Record::new_zeroed();
            Record::encode_into(&m, if n % 3 == 0 { SF_CARRIED } else { 0 }, &mut r, c).unwrap();
            assert_eq!(crc32c::crc32c(r.as_bytes()), RECORD_RESIDUE_C);
            bytes.extend_from_slice(r.as_bytes());
        }
        assert_eq!(
            c.valid_records_crc(256),
            c.hash(&bytes[..96].repeat(256)),
            "a chunk's worth"
        );
        for bit in (0..bytes.len() * 8).step_by(13) {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(c.hash(&b), c.valid_records_crc(40), "bit {bit}");
        }
        assert_eq!(RecordCrc::of_log(1, 0), RecordCrc::Ieee);
        assert_eq!(RecordCrc::of_log(2, 0), c);
        assert_eq!(c.log_version(), 2);
        assert_eq!(RecordCrc::Ieee.log_version(), 1);
    }

    /// Version 3: each record's CRC is the CRC-32C of the generation's four
    /// bytes and the record's 92; n valid records still have one CRC per
    /// count (and generation); a record of another generation never passes
    /// (the seeds differ, so its CRC is off by a fixed non-zero value).
    #[test]
    fn generation_seeds_the_record_crc() {
        let g = RecordCrc::of_generation(GENERATION_FIRST);
        assert_eq!(RecordCrc::of_log(LOG_VERSION, GENERATION_FIRST), g);
        assert_eq!(g.log_version(), 3);
        assert_eq!(g.generation(), 1);
        let mut bytes = Vec::new();
        for n in 0..40u64 {
            assert_eq!(g.hash(&bytes), g.valid_records_crc(n), "n = {n}");
            let mut m = sample();
            m.first_ns = n as i64;
            m.last_ns = 1000 + (n * n) as i64;
            let mut r = Record::new_zeroed();
            Record::encode_into(&m, 0, &mut r, g).unwrap();
            let mut prefixed = 1u32.to_le_bytes().to_vec();
            prefixed.extend_from_slice(&r.as_bytes()[..92]);
            assert_eq!(r.crc.get(), crc32c::crc32c(&prefixed));
            assert_eq!(
                Record::read_with(r.as_bytes(), g)
                    .unwrap()
                    .decode()
                    .unwrap(),
                m
            );
            // Another generation, version 2, version 1: refused.
            for other in [
                RecordCrc::of_generation(2),
                RecordCrc::of_generation(u32::MAX),
                RecordCrc::Castagnoli,
                RecordCrc::Ieee,
            ] {
                let f = Record::read_with(r.as_bytes(), other).unwrap_err();
                assert_eq!(f.field, "record crc");
            }
            bytes.extend_from_slice(r.as_bytes());
        }
        for bit in (0..bytes.len() * 8).step_by(13) {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(g.hash(&b), g.valid_records_crc(40), "bit {bit}");
        }
        // The generation whose seed is 0 would be version 2's CRC: never used.
        assert_eq!(crc32c::crc32c(&GENERATION_UNSEEDED.to_le_bytes()), 0);
        assert!(!generation_ok(GENERATION_UNSEEDED) && !generation_ok(0));
        assert_eq!(next_generation(1), Some(2));
        assert_eq!(
            next_generation(GENERATION_UNSEEDED - 1),
            Some(GENERATION_UNSEEDED + 1)
        );
        assert_eq!(next_generation(u32::MAX - 1), Some(u32::MAX));
        assert_eq!(next_generation(u32::MAX), None);
    }

    proptest::proptest! {
        /// Two different generations never both accept one record: a CRC is
        /// affine in its start state and 92 bytes map distinct states to
        /// distinct CRCs, so the CRC under generation `b` of a record valid
        /// under `a` is its CRC xor a non-zero value fixed by `a` and `b`
        /// (and the seed of a 4-byte generation is one-to-one).
        #[test]
        fn a_record_of_another_generation_is_refused(
            a in 1u32.., b in 1u32.., port in proptest::num::u16::ANY, first in 0i64..1 << 60,
        ) {
            proptest::prop_assume!(generation_ok(a) && generation_ok(b) && a != b);
            let (ca, cb) = (RecordCrc::of_generation(a), RecordCrc::of_generation(b));
            let mut m = sample();
            m.public = std::net::SocketAddr::new(m.public.ip(), port);
            m.first_ns = first;
            m.last_ns = first + 1;
            let mut r = Record::new_zeroed();
            Record::encode_into(&m, 0, &mut r, ca).unwrap();
            proptest::prop_assert!(Record::read_with(r.as_bytes(), ca).is_ok());
            proptest::prop_assert!(Record::read_with(r.as_bytes(), cb).is_err());
            proptest::prop_assert!(Record::read_with(r.as_bytes(), RecordCrc::Castagnoli).is_err());
            proptest::prop_assert_ne!(ca.seed(), cb.seed());
        }
    }

    /// The residue and the CRC of n valid records, against CRCs computed
    /// over real bytes.
    #[test]
    fn valid_records_have_one_crc_per_count() {
        let mut bytes = Vec::new();
        for n in 0..40u64 {
            assert_eq!(crc32fast::hash(&bytes), valid_records_crc(n), "n = {n}");
            let mut m = sample();
            m.first_ns = n as i64;
            m.last_ns = 1000 + (n * n) as i64;
            m.packets_in = n as u32 * 7;
            let r = Record::encode(&m, if n % 3 == 0 { SF_CARRIED } else { 0 }).unwrap();
            assert_eq!(crc32fast::hash(r.as_bytes()), RECORD_RESIDUE);
            bytes.extend_from_slice(r.as_bytes());
        }
        // One flipped bit anywhere makes it differ.
        for bit in (0..bytes.len() * 8).step_by(13) {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(crc32fast::hash(&b), valid_records_crc(40), "bit {bit}");
        }
    }

    #[test]
    fn encode_refuses_reversed_times() {
        let mut m = sample();
        m.first_ns = m.last_ns + 1;
        assert_eq!(Record::encode(&m, 0).unwrap_err().field, "first_ns");
    }

    #[test]
    fn headers_round_trip_and_detect_damage() {
        let h = LogHeader::new(
            3_600 * NANOS_PER_SEC,
            3_600 * NANOS_PER_SEC,
            2,
            RecordCrc::of_generation(0x0102_0304),
        );
        let b = h.as_bytes().to_vec();
        assert_eq!(&b[..8], b"NATRECL1");
        assert_eq!(&b[8..12], &3u32.to_le_bytes());
        assert_eq!(&b[36..40], &[4, 3, 2, 1]);
        assert!(b[40..60].iter().all(|&x| x == 0));
        // An older natrec's logs (versions 1 and 2) read too, generation 0.
        let h1 = LogHeader::new(0, 3_600 * NANOS_PER_SEC, 0, RecordCrc::Ieee);
        assert_eq!(&h1.as_bytes()[8..12], &1u32.to_le_bytes());
        assert_eq!(LogHeader::read(h1.as_bytes()).unwrap(), h1);
        assert_eq!(h1.record_crc(), RecordCrc::Ieee);
        let h2 = LogHeader::new(0, 3_600 * NANOS_PER_SEC, 0, RecordCrc::Castagnoli);
        assert_eq!(&h2.as_bytes()[8..12], &2u32.to_le_bytes());
        assert_eq!(&h2.as_bytes()[36..60], &[0; 24]);
        assert_eq!(LogHeader::read(h2.as_bytes()).unwrap(), h2);
        assert_eq!(h2.record_crc(), RecordCrc::Castagnoli);
        assert_eq!(&b[12..16], &96u32.to_le_bytes());
        assert_eq!(&b[32..36], &2u32.to_le_bytes());
        assert_eq!(LogHeader::read(&b).unwrap(), h);
        assert_eq!(h.record_crc(), RecordCrc::of_generation(0x0102_0304));
        // A generation in a version 2 header, none (or the unseeded one) in
        // a version 3 header: refused, the header's CRC right.
        for (version, g) in [(2u32, 1u32), (1, 7), (3, 0), (3, GENERATION_UNSEEDED)] {
            let mut x = h;
            x.version = U32::new(version);
            x.generation = U32::new(g);
            x.crc = U32::new(header_crc(x.as_bytes()));
            let f = LogHeader::read(x.as_bytes()).unwrap_err();
            assert_eq!((f.field, f.offset), ("generation", 36), "{version} {g}");
        }
        let mut x = h;
        x.reserved[19] = 1;
        x.crc = U32::new(header_crc(x.as_bytes()));
        assert_eq!(LogHeader::read(x.as_bytes()).unwrap_err().field, "reserved");
        let mut bad = b.clone();
        bad[20] ^= 0x40;
        let f = LogHeader::read(&bad).unwrap_err();
        assert_eq!((f.field, f.offset), ("header crc", 60));
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(LogHeader::read(&bad).unwrap_err().field, "magic");
        assert_eq!(LogHeader::read(&b[..10]).unwrap_err().field, "header");

        let s = SealedHeader::new(0, 60 * NANOS_PER_SEC, 0, 7);
        let sb = s.as_bytes();
        assert_eq!(&sb[..8], b"NATRECP1");
        assert_eq!(&sb[40..48], &7u64.to_le_bytes());
        assert_eq!(SealedHeader::read(sb).unwrap(), s);
        // A log header is not a sealed header.
        assert_eq!(SealedHeader::read(&b).unwrap_err().field, "magic");

        let recs = [Record::encode(&sample(), SF_CARRIED).unwrap()];
        let f = Footer::new(&recs);
        let fb = f.as_bytes();
        assert_eq!(&fb[..8], b"NATRECF1");
        assert_eq!(&fb[8..16], &1u64.to_le_bytes());
        assert_eq!(
            &fb[32..36],
            &crc32fast::hash(recs[0].as_bytes()).to_le_bytes()
        );
        assert_eq!(&fb[36..40], &1u32.to_le_bytes()); // carried_in
        assert_eq!(&fb[40..44], &0u32.to_le_bytes()); // late_in
        assert_eq!(Footer::read(fb).unwrap(), f);
        let mut bad = fb.to_vec();
        bad[16] ^= 1;
        assert_eq!(Footer::read(&bad).unwrap_err().field, "footer crc");
    }

    #[test]
    fn version_from_the_future_is_named() {
        let mut h = LogHeader::new(0, 1, 0, RecordCrc::of_generation(1));
        h.version = U32::new(4);
        h.crc = U32::new(header_crc(h.as_bytes()));
        let f = LogHeader::read(h.as_bytes()).unwrap_err();
        assert_eq!(f.field, "version");
        let e = f.at(std::path::Path::new("/s/partitions/x.log"), 0);
        assert!(
            matches!(
                e,
                crate::StoreError::Version {
                    found: 4,
                    supported: 3,
                    ..
                }
            ),
            "{e}"
        );
        // A sealed v1 header of version 2 is not read as v1.
        let mut s = SealedHeader::new(0, 1, 0, 0);
        s.version = U32::new(2);
        s.crc = U32::new(header_crc(s.as_bytes()));
        let f = SealedHeader::read(s.as_bytes()).unwrap_err();
        assert_eq!(f.version, Some((2, 1)));
        assert!(e.to_string().contains("/s/partitions/x.log"), "{e}");
        assert!(e.to_string().contains("upgrade natrec"), "{e}");
    }

    #[test]
    fn names_round_trip() {
        let t = days_from_civil(2026, 3, 1) * 86_400 * NANOS_PER_SEC + 14 * 3600 * NANOS_PER_SEC;
        assert_eq!(
            file_name(t, 0, FileKind::Active),
            "20260301T140000Z-0000.log"
        );
        assert_eq!(
            parse_file_name("20260301T140000Z-0000.log"),
            Some((t, 0, FileKind::Active))
        );
        assert_eq!(
            parse_file_name("20260301T140000Z-0012.part"),
            Some((t, 12, FileKind::Sealed))
        );
        assert_eq!(parse_file_name("20260231T140000Z-0000.part"), None);
        assert_eq!(parse_file_name("20260301T140000Z-0000.part.tmp"), None);
        assert_eq!(parse_file_name("x.part"), None);
        for days in [-1000, 0, 1, 59, 365, 10_957, 20_513, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(utc_stamp(0), "19700101T000000Z");
    }
}
