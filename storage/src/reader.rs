//! Lookups, export, listing and verification; read-only, safe while a
//! writer runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::format::{
    file_name, ip16, natural_key, supersedes, FileKind, NaturalKey, Record, SF_CARRIED, SF_LATE,
};
use crate::model::{Mapping, Proto, UnixNanos};
use crate::partition::{log_gone, FileId, LogView, SealedView};
use crate::store::{list_partitions, PartFile, StoreConfig, PARTITIONS_DIR};
use crate::writer::LATE_REROUTE_SPANS_MAX;
use crate::StoreError;

/// "Who held public `ip`(:`port`) between `from_ns` and `to_ns`?"
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Public address asked about.
    pub ip: IpAddr,
    /// Public port; `None` = any.
    pub port: Option<u16>,
    /// Protocol; `None` = any.
    pub proto: Option<Proto>,
    /// Window start, Unix ns (inclusive).
    pub from_ns: UnixNanos,
    /// Window end, Unix ns (inclusive).
    pub to_ns: UnixNanos,
    /// Remote address, when the complaint names it.
    pub remote_ip: Option<IpAddr>,
    /// Remote port, when the complaint names it.
    pub remote_port: Option<u16>,
}

impl Query {
    /// Query for one public endpoint at one instant.
    pub fn at(ip: IpAddr, port: u16, t_ns: UnixNanos) -> Query {
        Query {
            ip,
            port: Some(port),
            proto: None,
            from_ns: t_ns,
            to_ns: t_ns,
            remote_ip: None,
            remote_port: None,
        }
    }
}

/// One answer: a mapping whose held interval overlaps the query window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The mapping, in the most final state seen.
    pub mapping: Mapping,
    /// End of the held interval (last packet + hold); `None` = still held
    /// when the partition was sealed or read (held until further notice).
    pub held_until_ns: Option<UnixNanos>,
    /// File name of the partition the answer was read from.
    pub partition: String,
}

/// Result of a lookup: the answers, and the partitions that could not be
/// read (which did not stop the others).
#[derive(Debug, Default)]
pub struct LookupOutcome {
    /// Holders, deduplicated by natural key, sorted by `first_ns`.
    pub holders: Vec<Holder>,
    /// One error per partition (or gap file) that could not be (fully) read.
    pub errors: Vec<StoreError>,
    /// Intervals in which the recorder lost packets or was not running
    /// (docs/FORMAT.md, "Gaps") overlapping the window or the longest hold
    /// time before it: a mapping whose every packet fell in such an
    /// interval is still held for up to its hold time after it, and the
    /// store cannot know it. The answer may be incomplete there.
    pub gaps: Vec<crate::Gap>,
}

/// Sealed or active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionState {
    /// Sorted, immutable `.part`.
    Sealed,
    /// Append `.log`, still written.
    Active,
}

/// One partition file, for `natrec inspect`.
#[derive(Debug)]
pub struct PartitionInfo {
    /// File name in `partitions/`.
    pub file_name: String,
    /// Partition start, Unix ns.
    pub start_ns: UnixNanos,
    /// Partition span, ns.
    pub span_ns: i64,
    /// Segment number.
    pub segment: u32,
    /// Sealed or active.
    pub state: PartitionState,
    /// Records (committed records for a log).
    pub records: u64,
    /// Records carried in from the previous partition.
    pub carried_in: u64,
    /// Records that arrived late from an earlier, sealed partition.
    pub late_in: u64,
    /// File size in bytes (a log is preallocated, so larger than its records).
    pub bytes: u64,
    /// Format version of the file: 1 for logs and older sealed partitions,
    /// 2 for sealed partitions in columns (docs/FORMAT.md); 0 if unreadable.
    pub format_version: u32,
    /// `None` if the header/footer check (sealed) or the scan (log) passed;
    /// [`Reader::verify`] checks every byte.
    pub problem: Option<StoreError>,
}

/// Reads a store.
#[derive(Clone, Debug)]
pub struct Reader {
    parts: PathBuf,
    cfg: StoreConfig,
    span_ns: i64,
    /// The last partition listing (shared by clones).
    cache: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<Listing>>>>,
    /// Recently used sealed views (shared by clones).
    views: std::sync::Arc<std::sync::Mutex<ViewCache>>,
    /// Snapshots of active logs with their sorted index, when the reader
    /// was made by [`Reader::with_log_snapshots`] (shared by clones).
    logs: Option<std::sync::Arc<std::sync::Mutex<LogSnapshots>>>,
}

/// Active logs a batch reader opened: path → the view as first opened (its
/// committed length then) and its sorted (public ip, port, slot) index.
/// An active log as a batch reader first read it, and its sorted
/// (public ip, port, slot) index ([`LogView::public_index`]).
type LogSnapshot = (LogView, Vec<([u8; 16], u16, u32)>);

#[derive(Default)]
struct LogSnapshots(HashMap<PathBuf, std::sync::Arc<LogSnapshot>>);

impl std::fmt::Debug for LogSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSnapshots({} logs)", self.0.len())
    }
}

/// Active logs a [`Reader::with_log_snapshots`] reader keeps; at the bound
/// the next log is read as without snapshots (scanned). A snapshot costs
/// its map and 24 bytes a record.
pub const LOG_SNAPSHOTS_MAX: usize = 16;

/// Sealed views a [`Reader`] keeps open between lookups (and its clones
/// share). At the bound the least recently used view is dropped (its map
/// unmapped) before another is added. A view costs its map (address space;
/// the page cache holds the bytes either way) and, in v2, its block index
/// (32 bytes per 512 records), the dictionary chunks lookups resolved (at
/// most the dictionary: ~0.6–8 bytes per mapping) and the block a lookup
/// last read (its payload copy, ~7 KiB, and two decoded columns, ~5 KiB;
/// a view read record by record also keeps one fully decoded block,
/// ~30 KiB): with hour partitions of ~500 k mappings, under ~25 MiB
/// for the whole cache, whatever the retention.
pub const SEALED_VIEWS_CACHED_MAX: usize = 64;

/// The cache behind [`SEALED_VIEWS_CACHED_MAX`]: path → (file identity when
/// opened, view, last use). A view is served only while a fresh `stat` of
/// its path shows the same [`FileId`] (device, inode, length, mtime, ctime):
/// a sealed file replaced by rename, rewritten or removed is opened (and
/// checked) again, or its error reported, never served from the old map.
#[derive(Default)]
struct ViewCache {
    views: HashMap<PathBuf, (std::sync::Arc<SealedView>, u64)>,
    /// Use counter: the entry with the smallest is the least recently used.
    tick: u64,
}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewCache({} views)", self.views.len())
    }
}

/// How long after the directory's last change a listing must have been
/// taken to be reused, on a file system that stamps times finer than a
/// second. A change is stamped with a clock that may lag the one a reader
/// reads: Linux stamps with its coarse clock, the time of the last
/// scheduler tick (at most 10 ms behind at HZ = 100; kernels with
/// multigrain timestamps stamp a change after a `stat` finer still). A
/// change made after a listing was taken is stamped later than the listing
/// time less that lag, so once a listing is taken this long after the
/// directory's stamp, a later change cannot carry the same stamp: a few
/// ticks of margin.
const LISTING_TRUST_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// The same on a file system that stamps whole seconds (ext4 with 128-byte
/// inodes, HFS+: a stamp with no nanoseconds is taken as one of those): a
/// change within the same second keeps the stamp, so a listing is reused
/// only if taken a second and the clock's lag after it.
const LISTING_TRUST_AFTER_WHOLE_SECONDS: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a listing taken at `taken` of a directory last stamped at
/// `changed` (its ctime: the kernel sets it with every entry created,
/// renamed or removed, and it cannot be set back) can be reused while the
/// directory's identity stays the same: only if no later change could have
/// been stamped `changed` too. A clock set back (`taken` before `changed`)
/// is never trusted.
fn listing_settled(changed: std::time::SystemTime, taken: std::time::SystemTime) -> bool {
    let whole_seconds = changed
        .duration_since(std::time::UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    let after = if whole_seconds {
        LISTING_TRUST_AFTER_WHOLE_SECONDS
    } else {
        LISTING_TRUST_AFTER
    };
    taken
        .duration_since(changed)
        .is_ok_and(|since| since >= after)
}

/// One listing of `partitions/`.
#[derive(Debug)]
struct Listing {
    /// Sorted by (start, segment, kind).
    files: Vec<PartFile>,
    /// Indices of the active logs in `files`.
    active: Vec<usize>,
    /// The directory's identity when listed (device, inode, size, mtime,
    /// ctime): any entry created, renamed or removed changes its mtime and
    /// ctime, a directory put in its place its inode.
    dir: FileId,
    /// Taken long enough after the directory's last change
    /// ([`listing_settled`]) to be reused while `dir` stays the same.
    settled: bool,
}

/// The most final state of each mapping a lookup or export found, by
/// natural key. FxHash: a lookup's candidates are a few dozen, a hash of
/// five fields per candidate is what counts (the answers are sorted after).
type Best = rustc_hash::FxHashMap<NaturalKey, Holder>;

/// An opened partition file.
enum View {
    Sealed(std::sync::Arc<SealedView>),
    Log(LogView),
    /// An active log as a batch reader first read it, with its index.
    Snapshot(std::sync::Arc<LogSnapshot>),
}

impl Reader {
    pub(crate) fn new(dir: PathBuf, cfg: StoreConfig) -> Reader {
        Reader {
            parts: dir.join(PARTITIONS_DIR),
            cfg,
            span_ns: cfg.span_ns(),
            cache: Default::default(),
            views: Default::default(),
            logs: None,
        }
    }

    /// A reader for a batch of lookups: the first lookup that reads an
    /// active log takes a snapshot of it (its committed records then) and
    /// sorts an index of their (public ip, port), and every later lookup of
    /// this reader (and its clones) answers from that snapshot by binary
    /// search instead of finding the committed length again and scanning the
    /// whole log. Answers are as of each log's first read: records the writer
    /// commits later are not seen (a log sealed meanwhile is still read from
    /// the snapshot while the listing names it). At most
    /// [`LOG_SNAPSHOTS_MAX`] logs.
    pub fn with_log_snapshots(mut self) -> Reader {
        self.logs = Some(Default::default());
        self
    }

    /// The sealed partition at `path`, from the view cache if the file there
    /// is still the one the cached view maps, else opened (every check of
    /// [`SealedView::open`]) and cached.
    fn sealed(
        &self,
        path: &std::path::Path,
        start_ns: i64,
        segment: u32,
    ) -> Result<std::sync::Arc<SealedView>, StoreError> {
        use std::sync::Arc;
        let cached = {
            let c = self.views.lock().unwrap_or_else(|e| e.into_inner());
            c.views.get(path).map(|(v, _)| v.clone())
        };
        // Only a cached view needs the stat (a miss is opened, and its
        // identity taken from the opened file); outside the lock.
        if let Some(v) = cached {
            let now = std::fs::metadata(path).ok().map(|m| FileId::of(&m));
            let mut c = self.views.lock().unwrap_or_else(|e| e.into_inner());
            c.tick += 1;
            let tick = c.tick;
            if Some(v.id) == now {
                if let Some((cv, used)) = c.views.get_mut(path) {
                    if Arc::ptr_eq(cv, &v) {
                        *used = tick;
                    }
                }
                return Ok(v);
            }
            if c.views.get(path).is_some_and(|(cv, _)| Arc::ptr_eq(cv, &v)) {
                c.views.remove(path);
            }
        }
        // Opened outside the lock: other lookups go on meanwhile.
        let v = Arc::new(SealedView::open(path, start_ns, self.span_ns, segment)?);
        let mut evicted = None; // unmapped after the lock is released
        let mut c = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if !c.views.contains_key(path) && c.views.len() >= SEALED_VIEWS_CACHED_MAX {
            let oldest = c
                .views
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone())
                .expect("the cache is full, so not empty");
            evicted = c.views.remove(&oldest);
        }
        c.tick += 1;
        let tick = c.tick;
        c.views.insert(path.to_path_buf(), (v.clone(), tick));
        drop(c);
        drop(evicted);
        Ok(v)
    }

    /// Sealed views currently cached (tests, reports).
    #[cfg(test)]
    fn views_cached(&self) -> usize {
        self.views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .views
            .len()
    }

    fn partition_of(&self, t: i64) -> i64 {
        t.div_euclid(self.span_ns) * self.span_ns
    }

    /// Partitions past a window a lookup also searches for late records:
    /// enough to reach the final state of a mapping written when its longest
    /// hold ran out (the hold plus the grace, in spans, plus one), and at
    /// least [`LATE_REROUTE_SPANS_MAX`]. Fixed by the store's configuration,
    /// so a lookup's cost does not grow with retention.
    fn lookahead_spans(&self) -> i64 {
        let late_ns = self.cfg.hold.max_ns().saturating_add(self.cfg.grace_ns());
        let spans = late_ns.div_euclid(self.span_ns) + 2;
        spans.max(LATE_REROUTE_SPANS_MAX)
    }

    /// Opens a partition file. A log that vanished between listing and
    /// opening was just sealed: its `.part` is read instead.
    fn open(&self, f: &PartFile) -> Result<View, StoreError> {
        match f.kind {
            FileKind::Sealed => Ok(View::Sealed(self.sealed(&f.path, f.start_ns, f.segment)?)),
            FileKind::Active => match self.log_snapshot(&f.path) {
                Some(s) => Ok(View::Snapshot(s)),
                None => self.open_log(f),
            },
        }
    }

    /// The snapshot of the active log at `path`, if this reader keeps them
    /// and has one.
    fn log_snapshot(&self, path: &std::path::Path) -> Option<std::sync::Arc<LogSnapshot>> {
        let logs = self.logs.as_ref()?;
        let l = logs.lock().unwrap_or_else(|e| e.into_inner());
        l.0.get(path).cloned()
    }

    /// Opens an active log (a snapshot with its index, on a reader that
    /// keeps them and has room).
    fn open_log(&self, f: &PartFile) -> Result<View, StoreError> {
        {
            match LogView::open(&f.path, f.start_ns, self.span_ns, f.segment) {
                Ok(v) => match &self.logs {
                    Some(logs) => {
                        let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
                        if l.0.len() >= LOG_SNAPSHOTS_MAX {
                            return Ok(View::Log(v));
                        }
                        let index = v.public_index();
                        if let Err(e) = v.same_file() {
                            return self.instead_of_log(f, e);
                        }
                        let s = std::sync::Arc::new((v, index));
                        l.0.insert(f.path.clone(), s.clone());
                        Ok(View::Snapshot(s))
                    }
                    None => Ok(View::Log(v)),
                },
                Err(e) => self.instead_of_log(f, e),
            }
        }
    }

    /// The view to read instead of the log `f` that failed with `e`: its
    /// `.part` if the log was sealed meanwhile and removed or its file used
    /// again ([`log_gone`]; the `.part` is published before either), else
    /// the error.
    fn instead_of_log(&self, f: &PartFile, e: StoreError) -> Result<View, StoreError> {
        if !log_gone(&e) {
            return Err(e);
        }
        if let Some(logs) = &self.logs {
            let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
            l.0.remove(&f.path);
        }
        let part = self
            .parts
            .join(file_name(f.start_ns, f.segment, FileKind::Sealed));
        Ok(View::Sealed(self.sealed(&part, f.start_ns, f.segment)?))
    }

    /// The files a window [from, to] must read: sealed partitions
    /// overlapping it; sealed partitions up to [`Reader::lookahead_spans`]
    /// spans after it whose own records start by `to` (late records); every active log (and every
    /// sealed partition whose carry is pending) that starts no later than
    /// that. Sealed partitions before the window are not read: what they
    /// held over was carried into the window's own partition.
    fn select(&self, from: i64, to: i64) -> Result<Vec<(PartFile, Option<View>)>, StoreError> {
        let listing = self.listing()?;
        let files = &listing.files;
        let to_p = self.partition_of(to);
        let lookahead_end =
            to_p.saturating_add(self.lookahead_spans().saturating_mul(self.span_ns));
        // `files` is sorted by (start, segment, kind): a sibling is a binary search.
        let has = |start: i64, seg: u32, kind: FileKind| {
            files
                .binary_search_by(|g| (g.start_ns, g.segment, g.kind).cmp(&(start, seg, kind)))
                .is_ok()
        };
        // Candidates: files starting in (from - span, lookahead_end] (a range
        // of the sorted listing, so the cost does not grow with retention),
        // plus every active log and its sealed sibling (few: the writer's
        // current partitions and any left by a crash).
        let lo = files.partition_point(|g| g.start_ns.saturating_add(self.span_ns) <= from);
        let hi = files.partition_point(|g| g.start_ns <= lookahead_end);
        let mut idx: Vec<usize> = (lo..hi.max(lo)).collect();
        for &i in &listing.active {
            idx.push(i);
            if i > 0
                && files[i - 1].start_ns == files[i].start_ns
                && files[i - 1].segment == files[i].segment
            {
                idx.push(i - 1);
            }
        }
        idx.sort_unstable();
        idx.dedup();
        let mut out = Vec::new();
        for f in idx.into_iter().map(|i| &files[i]) {
            let overlaps = f.start_ns <= to && f.start_ns.saturating_add(self.span_ns) > from;
            match f.kind {
                FileKind::Sealed => {
                    let carry_pending = has(f.start_ns, f.segment, FileKind::Active);
                    if overlaps || (carry_pending && f.start_ns <= to) {
                        out.push((f.clone(), None));
                    } else if f.start_ns > to_p && f.start_ns <= lookahead_end {
                        // Only worth reading if it took in a late record
                        // that started by the window's end.
                        match self.open(f) {
                            Ok(View::Sealed(v)) if v.late_min_first_ns() > to => {}
                            Ok(v) => out.push((f.clone(), Some(v))),
                            Err(_) => out.push((f.clone(), None)), // reported when searched
                        }
                    }
                }
                FileKind::Active => {
                    if !has(f.start_ns, f.segment, FileKind::Sealed) && f.start_ns <= lookahead_end
                    {
                        out.push((f.clone(), None));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The partition listing, re-read only when the directory may have
    /// changed: a `stat` of `partitions/` per call, the listing reused while
    /// the directory's identity ([`FileId`]: device, inode, size, mtime,
    /// ctime) is the one listed and the listing was taken long enough after
    /// the directory's last change ([`listing_settled`]: two changes within
    /// one timestamp tick carry the same stamp). So a long-lived reader sees
    /// a partition sealed, a log started or a file removed by retention after
    /// it was made, at the cost of one `stat` a lookup, not a `getdents64`
    /// walk of the directory.
    fn listing(&self) -> Result<std::sync::Arc<Listing>, StoreError> {
        let meta = std::fs::metadata(&self.parts)
            .map_err(StoreError::io(&self.parts, "read directory"))?;
        let dir = FileId::of(&meta);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = cache.as_ref() {
            if l.settled && l.dir == dir {
                return Ok(l.clone());
            }
        }
        // Taken after the stat: a change stamped as the stat saw it but
        // made before now is in the listing below.
        let taken = std::time::SystemTime::now();
        let files = list_partitions(&self.parts)?;
        let active = (0..files.len())
            .filter(|&i| files[i].kind == FileKind::Active)
            .collect();
        let l = std::sync::Arc::new(Listing {
            files,
            active,
            dir,
            settled: changed_at(&meta).is_some_and(|c| listing_settled(c, taken)),
        });
        *cache = Some(l.clone());
        Ok(l)
    }

    /// Who held `q.ip`(:`q.port`) at some time in `[q.from_ns, q.to_ns]`:
    /// every mapping whose held interval `[first_ns, held_until]` overlaps
    /// the window. In a sealed partition this is a binary search on
    /// (public ip, port); active logs are scanned. A partition that cannot
    /// be read is reported in `errors` and the others still answer.
    pub fn lookup(&self, q: &Query) -> Result<LookupOutcome, StoreError> {
        if q.from_ns > q.to_ns {
            return Err(StoreError::BadQuery {
                path: self.parts.clone(),
                detail: format!("from {} is after to {}", q.from_ns, q.to_ns),
            });
        }
        let ip = ip16(q.ip);
        let mut out = LookupOutcome::default();
        let mut best = Best::default();
        for (f, view) in self.select(q.from_ns, q.to_ns)? {
            let view = match view.map_or_else(|| self.open(&f), Ok) {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            };
            // Reduce first, filter by time after: an Open copy must not
            // answer for a mapping whose final state (read here too) ended
            // before the window.
            let mut consider = |r: &Record| {
                let m = r.decode_fields().expect("records are validated when read");
                if self.matches_endpoint(q, &m) {
                    self.keep(&mut best, m, &f.name);
                }
            };
            match view {
                // Records starting after the window are left out by the
                // scan: none could overlap it, and a mapping's states share
                // their first_ns, so none of them supersedes one kept.
                View::Sealed(v) => {
                    if let Err(e) = v.scan_public(ip, q.port, q.to_ns, &mut |r| consider(&r)) {
                        out.errors.push(e);
                    }
                }
                View::Log(_) | View::Snapshot(_) => {
                    let recs = match &view {
                        View::Log(v) => v.records_with_public(ip, q.port),
                        View::Snapshot(s) => s.0.records_with_public_indexed(&s.1, ip, q.port),
                        View::Sealed(_) => unreachable!("matched above"),
                    };
                    match recs {
                        Ok(recs) => recs.iter().for_each(&mut consider),
                        // Sealed meanwhile and its file used again: the `.part`.
                        Err(e) => match self.instead_of_log(&f, e) {
                            Ok(View::Sealed(v)) => {
                                if let Err(e) =
                                    v.scan_public(ip, q.port, q.to_ns, &mut |r| consider(&r))
                                {
                                    out.errors.push(e);
                                }
                            }
                            Ok(_) => unreachable!("instead of a log: its `.part`"),
                            Err(e) => out.errors.push(e),
                        },
                    }
                }
            }
        }
        best.retain(|_, h| self.overlaps(&h.mapping, q.from_ns, q.to_ns));
        out.holders = sorted(best);
        // A gap that ended before the window can still hide a holder: a
        // mapping made in it and idle since is held until its hold runs out.
        let lookback_from = q.from_ns.saturating_sub(self.cfg.hold.max_ns());
        let (gaps, errors) = self.gaps(lookback_from, q.to_ns);
        out.gaps = gaps;
        out.errors.extend(errors);
        Ok(out)
    }

    fn matches_endpoint(&self, q: &Query, m: &Mapping) -> bool {
        m.public.ip() == q.ip
            && q.port.is_none_or(|p| p == m.public.port())
            && q.proto.is_none_or(|p| p == m.proto)
            && q.remote_ip.is_none_or(|ip| ip == m.remote.ip())
            && q.remote_port.is_none_or(|p| p == m.remote.port())
    }

    fn overlaps(&self, m: &Mapping, from: i64, to: i64) -> bool {
        m.first_ns <= to && self.cfg.hold.held_until_ns(m).is_none_or(|h| h >= from)
    }

    /// Keeps `m` if it is the most final state of its mapping seen so far
    /// (the holder, and its partition name, built only then).
    fn keep(&self, best: &mut Best, m: Mapping, partition: &str) {
        let holder = || Holder {
            mapping: m,
            held_until_ns: self.cfg.hold.held_until_ns(&m),
            partition: partition.to_string(),
        };
        match best.entry(natural_key(&m)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if supersedes(&m, &e.get().mapping) {
                    *e.get_mut() = holder();
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(holder());
            }
        }
    }

    /// Calls `f` once for every mapping whose held interval overlaps
    /// `[from_ns, to_ns]` (unbounded where `None`), in its most final state,
    /// ordered by `first_ns`. Returns the partitions that could not be read;
    /// stops at the first error `f` returns. Holds the matching mappings in
    /// memory to deduplicate them (96 bytes plus its key per mapping).
    pub fn export(
        &self,
        from_ns: Option<i64>,
        to_ns: Option<i64>,
        f: &mut dyn FnMut(&Holder) -> Result<(), StoreError>,
    ) -> Result<Vec<StoreError>, StoreError> {
        let (from, to) = (from_ns.unwrap_or(i64::MIN), to_ns.unwrap_or(i64::MAX));
        if from > to {
            return Err(StoreError::BadQuery {
                path: self.parts.clone(),
                detail: format!("from {from} is after to {to}"),
            });
        }
        let mut errors = Vec::new();
        let mut best = Best::default();
        for (pf, view) in self.select(from, to)? {
            let recs = view.map_or_else(|| self.open(&pf), Ok).and_then(|v| {
                let log = match v {
                    View::Sealed(v) => return v.records(),
                    View::Log(v) => v.records(),
                    View::Snapshot(s) => s.0.records(),
                };
                // Sealed meanwhile and its file used again: the `.part`.
                log.or_else(|e| match self.instead_of_log(&pf, e)? {
                    View::Sealed(v) => v.records(),
                    _ => unreachable!("instead of a log: its `.part`"),
                })
            });
            match recs {
                Ok(recs) => {
                    for r in recs {
                        let m = r.decode_fields().expect("records are validated when read");
                        self.keep(&mut best, m, &pf.name);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        best.retain(|_, h| self.overlaps(&h.mapping, from, to));
        for h in sorted(best) {
            f(&h)?;
        }
        Ok(errors)
    }

    /// Gaps (intervals with lost packets) overlapping `[from_ns, to_ns]`,
    /// sorted by start, and the gap files that could not be read.
    pub fn gaps(&self, from_ns: i64, to_ns: i64) -> (Vec<crate::Gap>, Vec<StoreError>) {
        crate::gaps::read_overlapping(self.store_dir(), self.span_ns, from_ns, to_ns)
    }

    fn store_dir(&self) -> &std::path::Path {
        self.parts
            .parent()
            .expect("partitions/ is inside the store")
    }

    /// Every partition file with its counts and a header/footer check.
    pub fn partitions(&self) -> Result<Vec<PartitionInfo>, StoreError> {
        let mut out = Vec::new();
        for f in list_partitions(&self.parts)? {
            let mut info = PartitionInfo {
                file_name: f.name.clone(),
                start_ns: f.start_ns,
                span_ns: self.span_ns,
                segment: f.segment,
                state: match f.kind {
                    FileKind::Sealed => PartitionState::Sealed,
                    FileKind::Active => PartitionState::Active,
                },
                records: 0,
                carried_in: 0,
                late_in: 0,
                bytes: 0,
                format_version: 0,
                problem: None,
            };
            let counted = match f.kind {
                FileKind::Sealed => SealedView::open(&f.path, f.start_ns, self.span_ns, f.segment)
                    .map(|v| {
                        info.records = v.count;
                        info.carried_in = u64::from(v.carried_in());
                        info.late_in = u64::from(v.late_in());
                        info.bytes = v.bytes();
                        info.format_version = v.version();
                    }),
                FileKind::Active => LogView::open(&f.path, f.start_ns, self.span_ns, f.segment)
                    .and_then(|v| {
                        info.bytes = v.bytes();
                        info.format_version = 1;
                        let recs = v.records()?;
                        info.records = recs.len() as u64;
                        info.carried_in = recs
                            .iter()
                            .filter(|r| r.store_flags & SF_CARRIED != 0)
                            .count() as u64;
                        info.late_in =
                            recs.iter().filter(|r| r.store_flags & SF_LATE != 0).count() as u64;
                        Ok(())
                    }),
            };
            info.problem = counted.err();
            out.push(info);
        }
        Ok(out)
    }

    /// Checks every byte of every partition: headers, footers, the records
    /// checksum, each record, the sort order. Returns what is wrong.
    pub fn verify(&self) -> Result<Vec<StoreError>, StoreError> {
        let mut errors = Vec::new();
        for f in list_partitions(&self.parts)? {
            // Not through the view cache: verify checks the file as it is
            // now, from its header on (SealedView::open's checks included).
            let opened = match f.kind {
                FileKind::Sealed => SealedView::open(&f.path, f.start_ns, self.span_ns, f.segment)
                    .map(|v| View::Sealed(std::sync::Arc::new(v))),
                FileKind::Active => self.open(&f),
            };
            match opened {
                Ok(View::Sealed(v)) => errors.extend(v.verify()),
                Ok(View::Log(_) | View::Snapshot(_)) => {
                    let read = match &opened {
                        Ok(View::Log(v)) => v.records(),
                        Ok(View::Snapshot(s)) => s.0.records(),
                        _ => unreachable!("matched above"),
                    };
                    // Sealed meanwhile and its file used again: its `.part`.
                    match read.map_err(|e| self.instead_of_log(&f, e)) {
                        Ok(_) => {}
                        Err(Ok(View::Sealed(v))) => errors.extend(v.verify()),
                        Err(Ok(_)) => unreachable!("instead of a log: its `.part`"),
                        Err(Err(e)) => errors.push(e),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors.extend(
            crate::gaps::verify_all(self.store_dir())
                .into_iter()
                .filter_map(|(_, _, e)| e),
        );
        Ok(errors)
    }
}

/// The directory's last change as the kernel stamped it: its ctime, set
/// with every entry created, renamed or removed and, unlike the mtime,
/// never set back or ahead by a user. `None` if it is before 1970.
fn changed_at(meta: &std::fs::Metadata) -> Option<std::time::SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let s = u64::try_from(meta.ctime()).ok()?;
    let ns = u32::try_from(meta.ctime_nsec()).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(s, ns))
}

fn sorted(best: Best) -> Vec<Holder> {
    let mut v: Vec<Holder> = best.into_values().collect();
    v.sort_by(|a, b| {
        let k = |h: &Holder| {
            let m = &h.mapping;
            (
                m.first_ns,
                ip16(m.public.ip()),
                m.public.port(),
                ip16(m.internal.ip()),
                m.internal.port(),
                m.proto,
            )
        };
        k(a).cmp(&k(b))
            .then_with(|| natural_key(&a.mapping).cmp(&natural_key(&b.mapping)))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Record;
    use crate::model::EndReason;
    use crate::partition::write_sealed;
    use crate::store::{Store, StoreConfig};
    use std::net::{Ipv4Addr, SocketAddr};

    const T0: i64 = 1_772_373_600_000_000_000; // 2026-03-01T14:00:00Z
    const HOUR: i64 = 3_600_000_000_000;

    fn public() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::new(203, 0, 113, 7).into(), 40001)
    }

    /// A mapping of the hour at `start` whose subscriber is 10.0.0.`host`.
    fn mapping(start: i64, host: u8) -> Mapping {
        Mapping {
            proto: Proto::Tcp,
            internal: SocketAddr::new(Ipv4Addr::new(10, 0, 0, host).into(), 5000),
            public: public(),
            remote: SocketAddr::new(Ipv4Addr::new(198, 51, 100, 1).into(), 443),
            first_ns: start + 1_000_000_000,
            last_ns: start + 2_000_000_000,
            end: EndReason::Fin,
            packets_out: 3,
            packets_in: 4,
            flags: 0,
        }
    }

    /// A one-record sealed partition at `start` whose mapping's subscriber
    /// is 10.0.0.`host`.
    fn seal(parts: &std::path::Path, start: i64, host: u8) -> PathBuf {
        let m = mapping(start, host);
        let p = parts.join(file_name(start, 0, FileKind::Sealed));
        write_sealed(&p, start, HOUR, 0, &[Record::encode(&m, 0).unwrap()], &[]).unwrap();
        p
    }

    /// The lookup of [`public`] 1.5 s into the hour at `start`.
    fn lookup_in_hour(r: &Reader, start: i64) -> LookupOutcome {
        r.lookup(&Query::at(
            public().ip(),
            public().port(),
            start + 1_500_000_000,
        ))
        .unwrap()
    }

    fn holder_host(r: &Reader, start: i64) -> Result<u8, Vec<String>> {
        let out = lookup_in_hour(r, start);
        if !out.errors.is_empty() {
            return Err(out.errors.iter().map(|e| e.to_string()).collect());
        }
        assert_eq!(out.holders.len(), 1);
        match out.holders[0].mapping.internal.ip() {
            IpAddr::V4(a) => Ok(a.octets()[3]),
            IpAddr::V6(_) => unreachable!(),
        }
    }

    /// A cached view is never served for a file that was replaced (rename),
    /// damaged in place or removed; the cache stays within its bound.
    #[test]
    fn view_cache_never_serves_a_replaced_or_removed_file() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::create(&d.path().join("s"), StoreConfig::default()).unwrap();
        let parts = d.path().join("s").join(PARTITIONS_DIR);
        let r = store.reader();
        let p = seal(&parts, T0, 1);
        assert_eq!(holder_host(&r, T0), Ok(1));
        assert_eq!(r.views_cached(), 1);
        assert_eq!(holder_host(&r.clone(), T0), Ok(1), "clones share the cache");
        // Replaced by rename (what a publish does): the new file answers.
        seal(&parts, T0, 2);
        assert_eq!(holder_host(&r, T0), Ok(2));
        assert_eq!(r.views_cached(), 1);
        // Damaged in place (same inode, new mtime): an error naming the
        // file, not the old answer.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() - 64 - 32 - 8; // inside the (only) block
        bytes[at] ^= 0x10;
        std::fs::write(&p, &bytes).unwrap();
        let errs = holder_host(&r, T0).unwrap_err();
        assert!(errs[0].contains(&*p.to_string_lossy()), "{errs:?}");
        // Removed: an error, and the view is dropped.
        seal(&parts, T0, 3);
        assert_eq!(holder_host(&r, T0), Ok(3));
        std::fs::remove_file(&p).unwrap();
        // (The listing may still name it; either way no answer from the old map.)
        match r.lookup(&Query::at(
            public().ip(),
            public().port(),
            T0 + 1_500_000_000,
        )) {
            Ok(out) => assert!(out.holders.is_empty(), "{:?}", out.holders),
            Err(e) => panic!("{e}"),
        }
        // Bound: more partitions than the cache holds.
        for k in 1..=(SEALED_VIEWS_CACHED_MAX as i64 + 8) {
            let start = T0 + k * 24 * HOUR;
            seal(&parts, start, 9);
            assert_eq!(holder_host(&r, start), Ok(9));
            assert!(r.views_cached() <= SEALED_VIEWS_CACHED_MAX);
        }
        assert_eq!(r.views_cached(), SEALED_VIEWS_CACHED_MAX);
    }

    /// A listing is reused only when no later change of the directory could
    /// carry the stamp it was taken under: 50 ms after a fine stamp, 2 s
    /// after a whole-second one, never when the clock went back.
    #[test]
    fn a_listing_is_trusted_only_past_the_stamps_granularity() {
        use std::time::{Duration, UNIX_EPOCH};
        let fine = UNIX_EPOCH + Duration::new(1_772_373_600, 123_456_789);
        let whole = UNIX_EPOCH + Duration::new(1_772_373_600, 0);
        let ms = Duration::from_millis;
        assert!(!listing_settled(fine, fine));
        assert!(
            !listing_settled(fine, fine + ms(10)),
            "one tick at HZ = 100"
        );
        assert!(!listing_settled(fine, fine + ms(49)));
        assert!(listing_settled(fine, fine + ms(50)));
        assert!(listing_settled(fine, fine + ms(3_000)));
        assert!(!listing_settled(whole, whole + ms(999)));
        assert!(!listing_settled(whole, whole + ms(1_500)));
        assert!(listing_settled(whole, whole + ms(2_000)));
        assert!(!listing_settled(fine, fine - ms(5_000)), "clock set back");
    }

    /// A long-lived reader (`lookup --batch`, the live recorder's status, a
    /// service) keeps its listing while the directory is unchanged and still
    /// sees what changed after it was made: a partition started and sealed
    /// after its listing settled, and a sealed partition removed (by an
    /// operator's retention job: natrec deletes nothing) no longer read.
    #[test]
    fn a_long_lived_reader_sees_partitions_sealed_and_removed_after_it_listed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::create(&d.path().join("s"), StoreConfig::default()).unwrap();
        let parts = d.path().join("s").join(PARTITIONS_DIR);
        let r = store.reader();
        let mut w = store.writer().unwrap();
        w.append_batch(&[mapping(T0, 1)]).unwrap();
        w.seal_before(T0 + HOUR).unwrap();
        w.finish_chores().unwrap();
        assert_eq!(holder_host(&r, T0), Ok(1));
        // Past the stamp's granularity: the next listing settles and is
        // then reused while nothing changes (one `stat`, no walk).
        std::thread::sleep(LISTING_TRUST_AFTER + std::time::Duration::from_millis(20));
        assert_eq!(holder_host(&r, T0), Ok(1));
        let a = r.listing().unwrap();
        assert!(
            a.settled,
            "taken {LISTING_TRUST_AFTER:?} after the last change"
        );
        assert!(std::sync::Arc::ptr_eq(&a, &r.listing().unwrap()), "reused");
        // The next hour, written and sealed after the reader listed.
        w.append_batch(&[mapping(T0 + HOUR, 2)]).unwrap();
        w.seal_before(T0 + 2 * HOUR).unwrap();
        w.finish_chores().unwrap();
        assert_eq!(holder_host(&r, T0 + HOUR), Ok(2));
        assert!(
            !std::sync::Arc::ptr_eq(&a, &r.listing().unwrap()),
            "listed again"
        );
        // Removed by retention after the listing settled again: no longer
        // listed, so neither answered nor reported as unreadable.
        std::thread::sleep(LISTING_TRUST_AFTER + std::time::Duration::from_millis(20));
        assert_eq!(holder_host(&r, T0), Ok(1));
        assert!(r.listing().unwrap().settled);
        std::fs::remove_file(parts.join(file_name(T0, 0, FileKind::Sealed))).unwrap();
        let out = lookup_in_hour(&r, T0);
        assert!(out.holders.is_empty(), "{:?}", out.holders);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(holder_host(&r, T0 + HOUR), Ok(2));
        drop(w);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

        /// A batch reader (active logs read once and searched through a
        /// sorted index) answers every lookup exactly as a plain reader:
        /// logs with repeated public endpoints, several states of one
        /// mapping, ports given or not, windows anywhere in the hour.
        #[test]
        fn log_snapshots_answer_as_a_plain_reader(
            ms in proptest::collection::vec((0u8..4, 0u16..6, 0u8..8, 0i64..3_000, 0i64..120, proptest::bool::ANY), 1..300),
            probes in proptest::collection::vec((0u8..5, proptest::option::of(0u16..7), 0i64..3_400, 0i64..200), 1..24),
        ) {
            let d = tempfile::tempdir().unwrap();
            let store = Store::create(&d.path().join("s"), StoreConfig::default()).unwrap();
            let mut w = store.writer().unwrap();
            let s = 1_000_000_000i64;
            let batch: Vec<Mapping> = ms
                .iter()
                .map(|&(pubh, port, host, first, dur, open)| Mapping {
                    proto: if port % 2 == 0 { Proto::Tcp } else { Proto::Udp },
                    internal: SocketAddr::new(Ipv4Addr::new(10, 0, 0, host).into(), 5000),
                    public: SocketAddr::new(Ipv4Addr::new(203, 0, 113, pubh).into(), 40000 + port),
                    remote: SocketAddr::new(Ipv4Addr::new(198, 51, 100, 1).into(), 443),
                    first_ns: T0 + first * s,
                    last_ns: T0 + (first + if open { 0 } else { dur }) * s,
                    end: if open { EndReason::Open } else { EndReason::Fin },
                    packets_out: 3,
                    packets_in: 4,
                    flags: 0,
                })
                .collect();
            w.append_batch(&batch).unwrap();
            w.flush().unwrap();
            let plain = store.reader();
            let snap = store.reader().with_log_snapshots();
            for &(pubh, port, at, window) in &probes {
                let q = Query {
                    ip: Ipv4Addr::new(203, 0, 113, pubh).into(),
                    port: port.map(|p| 40000 + p),
                    proto: None,
                    from_ns: T0 + (at - window) * s,
                    to_ns: T0 + (at + window) * s,
                    remote_ip: None,
                    remote_port: None,
                };
                let a = plain.lookup(&q).unwrap();
                let b = snap.lookup(&q).unwrap();
                proptest::prop_assert!(a.errors.is_empty() && b.errors.is_empty());
                proptest::prop_assert_eq!(&a.holders, &b.holders);
            }
            let snapshots = snap.logs.as_ref().unwrap().lock().unwrap().0.len();
            proptest::prop_assert!(snapshots >= 1, "the lookups read the active log(s) through snapshots");
            drop(w);
        }
    }
}
