//! Durable file system steps: atomic publish (habit 9) and directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Suffix of files being written for an atomic publish; any left over after
/// a crash are deleted by the next writer.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Makes a directory's entries (creations, renames, deletions) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    // Opening a directory read-only and calling fsync works on Linux and the
    // BSDs; on Windows directories cannot be opened this way and renames are
    // durable through the file system journal, so this is skipped there.
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(StoreError::io(dir, "open directory"))?;
        d.sync_all()
            .map_err(StoreError::io(dir, "fsync directory"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `parts` to `path` atomically: temp file in the same directory,
/// write, fsync, rename over `path`, fsync the directory. A crash leaves
/// either the old state (plus a stray temp file) or the complete new file.
pub(crate) fn publish(path: &Path, parts: &[&[u8]]) -> Result<(), StoreError> {
    publish_all(&[(path, parts)])
        .pop()
        .expect("one result per file")
}

/// Fsyncs of one [`publish_all`] batch under way at once: the caller's
/// thread and up to this many − 1 short-lived threads ([`fsync_parallel`]),
/// each fsyncing the batch's next file until none is left.
pub(crate) const FSYNCS_IN_PARALLEL_MAX: usize = 8;

/// Publishes several files as [`publish`] does each, with the disk waits
/// shared: every temp file is written and its writeback started
/// ([`crate::mmap::start_writeback`]) before the first fsync, so each fsync mostly waits
/// for writes already under way, not for its own in turn; then the files
/// are fsynced in parallel ([`fsync_parallel`]: each `fsync` ends with a
/// cache flush of the device, and flushes asked for at once are merged by
/// the block layer, where one after the other each waits for its own), then
/// each file whose fsync succeeded is renamed, then each directory holding
/// one is fsynced once for all. The order per file is [`publish`]'s (data
/// fsynced, then renamed, then the directory fsynced before the result is
/// returned), so a crash leaves each file old (plus a stray temp file) or
/// complete; a crash after the fsyncs and before the renames leaves every
/// file of the batch old (plus its complete temp file). One result per
/// file, in order; a directory fsync that fails fails every file renamed
/// into that directory.
pub(crate) fn publish_all(files: &[(&Path, &[&[u8]])]) -> Vec<Result<(), StoreError>> {
    let written: Vec<Result<(PathBuf, File), StoreError>> = files
        .iter()
        .map(|&(path, parts)| write_temp(path, parts))
        .collect();
    let synced = fsync_parallel(written);
    #[cfg(test)]
    if let Some(&(path, _)) = files.first() {
        publish_gate::after_fsyncs(
            path.parent()
                .expect("published paths are inside a directory"),
        );
    }
    let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(files.len());
    for (&(path, _), s) in files.iter().zip(synced) {
        results.push(s.and_then(|tmp| {
            fs::rename(&tmp, path).map_err(StoreError::io(path, "rename temp file onto"))?;
            #[cfg(test)]
            publish_gate::note(path, "rename");
            Ok(())
        }));
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (&(path, _), r) in files.iter().zip(&results) {
        let dir = path
            .parent()
            .expect("published paths are inside a directory");
        if r.is_ok() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        #[cfg(test)]
        publish_gate::note(dir, "fsync directory");
        if let Err(e) = fsync_dir(dir) {
            // The first file renamed there gets the error itself, the
            // others its message.
            let msg = e.to_string();
            let mut first = Some(e);
            for (&(path, _), r) in files.iter().zip(results.iter_mut()) {
                if r.is_ok() && path.parent() == Some(dir) {
                    *r = Err(first.take().unwrap_or_else(|| {
                        StoreError::io(path, "fsync the directory of")(std::io::Error::other(
                            msg.clone(),
                        ))
                    }));
                }
            }
        }
    }
    results
}

/// Fsyncs each written temp file and closes it, up to
/// [`FSYNCS_IN_PARALLEL_MAX`] at once: this thread and scoped threads of
/// their own (which allocate nothing) each take the next file not taken
/// yet until none is left; if a thread cannot be started, fewer work (this
/// one always does). One result per file, in order: the temp path once its
/// fsync returned success.
fn fsync_parallel(
    written: Vec<Result<(PathBuf, File), StoreError>>,
) -> Vec<Result<PathBuf, StoreError>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    fn sync(w: Result<(PathBuf, File), StoreError>) -> Result<PathBuf, StoreError> {
        let (tmp, f) = w?;
        f.sync_all().map_err(StoreError::io(&tmp, "fsync"))?;
        drop(f);
        #[cfg(test)]
        publish_gate::note(&tmp, "fsync");
        Ok(tmp)
    }
    let to_sync = written.iter().filter(|w| w.is_ok()).count();
    if to_sync < 2 {
        return written.into_iter().map(sync).collect();
    }
    // Each file's slot: the written file until a thread takes it, then
    // its result.
    enum Slot {
        Written(Result<(PathBuf, File), StoreError>),
        Taken,
        Synced(Result<PathBuf, StoreError>),
    }
    let slots: Vec<Mutex<Slot>> = written
        .into_iter()
        .map(|w| Mutex::new(Slot::Written(w)))
        .collect();
    let lock = |i: usize| slots[i].lock().unwrap_or_else(|e| e.into_inner());
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= slots.len() {
            return;
        }
        let Slot::Written(w) = std::mem::replace(&mut *lock(i), Slot::Taken) else {
            unreachable!("each slot is taken once");
        };
        let r = sync(w);
        *lock(i) = Slot::Synced(r);
    };
    std::thread::scope(|scope| {
        for _ in 1..to_sync.min(FSYNCS_IN_PARALLEL_MAX) {
            let started = std::thread::Builder::new()
                .name("natrec-fsync".into())
                .spawn_scoped(scope, work);
            if started.is_err() {
                break;
            }
        }
        work();
    });
    slots
        .into_iter()
        .map(
            |s| match s.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Slot::Synced(r) => r,
                Slot::Written(_) | Slot::Taken => {
                    unreachable!("every file is synced before the scope ends")
                }
            },
        )
        .collect()
}

/// Writes `parts` to `path`'s temp name (created or truncated), starting
/// the writeback of each part as soon as it is written; the open handle is
/// returned for the fsync.
fn write_temp(path: &Path, parts: &[&[u8]]) -> Result<(PathBuf, File), StoreError> {
    let dir = path
        .parent()
        .expect("published paths are inside a directory");
    let mut tmp_name = path
        .file_name()
        .expect("published paths have a file name")
        .to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    #[cfg(test)]
    publish_gate::pass(dir);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(StoreError::io(&tmp, "create"))?;
    for p in parts {
        f.write_all(p).map_err(StoreError::io(&tmp, "write"))?;
        crate::mmap::start_writeback(&f);
    }
    Ok((tmp, f))
}

/// Removes a file and makes the removal durable.
pub(crate) fn remove(path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path).map_err(StoreError::io(path, "remove"))?;
    fsync_dir(path.parent().expect("removed paths are inside a directory"))
}

/// Tests: publishes into a directory held back until the test lets them go,
/// as a disk slow to fsync would (the writer's seals waiting for their
/// publish, `writer.rs`). Only directories a test closed are held.
#[cfg(test)]
pub(crate) mod publish_gate {
    use std::path::{Path, PathBuf};
    use std::sync::{Condvar, Mutex};

    /// Closed directories and how many publishes wait in each.
    static CLOSED: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());
    static CHANGED: Condvar = Condvar::new();

    /// Publishes into `dir` wait from now on.
    pub fn close(dir: &Path) {
        CLOSED.lock().unwrap().push((dir.to_path_buf(), 0));
    }

    /// Publishes into `dir` go on (those waiting too).
    pub fn open(dir: &Path) {
        CLOSED.lock().unwrap().retain(|(d, _)| d != dir);
        CHANGED.notify_all();
    }

    /// How many publishes wait in `dir`.
    pub fn waiting(dir: &Path) -> usize {
        let g = CLOSED.lock().unwrap();
        g.iter().find(|(d, _)| d == dir).map_or(0, |(_, n)| *n)
    }

    /// Directories whose publish steps are noted, and the notes: `"fsync
    /// NAME"` (a temp file's fsync returned), `"rename NAME"`, `"fsync
    /// directory"` (just before it).
    static TRACED: Mutex<Vec<(PathBuf, Vec<String>)>> = Mutex::new(Vec::new());
    /// Directories whose next publish "crashes" (panics) after its fsyncs,
    /// before its renames.
    static CRASH_AFTER_FSYNCS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// Notes the publish steps in `dir` from now on.
    pub fn trace(dir: &Path) {
        TRACED.lock().unwrap().push((dir.to_path_buf(), Vec::new()));
    }

    /// The steps noted in `dir`, in the order they happened.
    pub fn traced(dir: &Path) -> Vec<String> {
        let g = TRACED.lock().unwrap();
        g.iter()
            .find(|(d, _)| d == dir)
            .map_or_else(Vec::new, |(_, n)| n.clone())
    }

    /// Notes `what` of `path` (a file in a traced directory, or the
    /// directory itself).
    pub(super) fn note(path: &Path, what: &str) {
        let mut g = TRACED.lock().unwrap();
        let (dir, note) = match g.iter().position(|(d, _)| d == path) {
            Some(i) => (i, what.to_string()),
            None => {
                let Some(i) = path
                    .parent()
                    .and_then(|p| g.iter().position(|(d, _)| d == p))
                else {
                    return;
                };
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                (i, format!("{what} {name}"))
            }
        };
        g[dir].1.push(note);
    }

    /// The next publish into `dir` panics after its fsyncs, before its
    /// renames, as a crash there would stop it.
    pub fn crash_after_fsyncs(dir: &Path) {
        CRASH_AFTER_FSYNCS.lock().unwrap().push(dir.to_path_buf());
    }

    /// The crash point set by [`crash_after_fsyncs`], if set for `dir`.
    pub(super) fn after_fsyncs(dir: &Path) {
        let mut g = CRASH_AFTER_FSYNCS.lock().unwrap();
        if let Some(i) = g.iter().position(|d| d == dir) {
            g.remove(i);
            drop(g);
            panic!("crash after the fsyncs of a publish into {}", dir.display());
        }
    }

    /// Waits while `dir` is closed.
    pub(super) fn pass(dir: &Path) {
        let mut g = CLOSED.lock().unwrap();
        let Some(i) = g.iter().position(|(d, _)| d == dir) else {
            return;
        };
        g[i].1 += 1;
        while g.iter().any(|(d, _)| d == dir) {
            g = CHANGED.wait(g).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several files published at once each end up whole under their name,
    /// no temp file left, and one that cannot be published (its directory
    /// is missing) fails alone.
    #[test]
    fn publishing_several_files_publishes_each_or_fails_it_alone() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.part"), d.path().join("b.part"));
        let missing = d.path().join("no-such-dir").join("c.part");
        std::fs::write(&b, b"old contents, longer than the new").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let results = publish_all(&[
            (&a, &[&b"head "[..], &big[..], &b" tail"[..]]),
            (&missing, &[&b"lost"[..]]),
            (&b, &[&b"new"[..]]),
        ]);
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].is_err());
        let mut want = b"head ".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b" tail");
        assert_eq!(std::fs::read(&a).unwrap(), want);
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.part", "b.part"]);
        // One file: as `publish`.
        publish(&a, &[&b"again"[..]]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"again");
    }

    /// A batch's steps: every temp file fsynced (in any order: the fsyncs
    /// run at once) before the first rename, the renames in the batch's
    /// order, one directory fsync after all of them; also for a batch
    /// larger than [`FSYNCS_IN_PARALLEL_MAX`].
    #[test]
    fn a_batch_fsyncs_every_file_before_the_first_rename() {
        for n in [2, 5, FSYNCS_IN_PARALLEL_MAX + 3] {
            let d = tempfile::tempdir().unwrap();
            publish_gate::trace(d.path());
            let paths: Vec<PathBuf> = (0..n)
                .map(|i| d.path().join(format!("{i:02}.part")))
                .collect();
            let bodies: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 1000 + 7 * i]).collect();
            let parts: Vec<[&[u8]; 1]> = bodies.iter().map(|b| [&b[..]]).collect();
            let files: Vec<(&Path, &[&[u8]])> = paths
                .iter()
                .zip(&parts)
                .map(|(p, b)| (p.as_path(), &b[..]))
                .collect();
            assert!(publish_all(&files).iter().all(Result::is_ok));
            let steps = publish_gate::traced(d.path());
            let mut fsyncs: Vec<&str> = steps[..n].iter().map(String::as_str).collect();
            fsyncs.sort_unstable();
            let want_fsyncs: Vec<String> =
                (0..n).map(|i| format!("fsync {i:02}.part.tmp")).collect();
            assert_eq!(fsyncs, want_fsyncs, "{n} files: {steps:?}");
            let want_renames: Vec<String> = (0..n).map(|i| format!("rename {i:02}.part")).collect();
            assert_eq!(steps[n..2 * n], want_renames[..], "{n} files: {steps:?}");
            assert_eq!(steps[2 * n..], ["fsync directory"], "{n} files: {steps:?}");
            for (p, b) in paths.iter().zip(&bodies) {
                assert_eq!(&std::fs::read(p).unwrap(), b);
            }
        }
    }

    /// A crash after a batch's fsyncs and before its renames leaves every
    /// file of the batch as it was (old contents, or none) beside its
    /// complete temp file, which recovery deletes (docs/FORMAT.md).
    #[test]
    fn a_crash_after_the_fsyncs_leaves_every_file_old() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            d.path().join("a.part"),
            d.path().join("b.part"),
            d.path().join("c.part"),
        );
        std::fs::write(&b, b"old b").unwrap();
        publish_gate::crash_after_fsyncs(d.path());
        let files: [(&Path, &[&[u8]]); 3] = [
            (&a, &[&b"new a"[..]]),
            (&b, &[&b"new "[..], &b"b"[..]]),
            (&c, &[&b"new c"[..]]),
        ];
        let crashed = std::panic::catch_unwind(|| publish_all(&files));
        assert!(crashed.is_err());
        assert!(!a.exists() && !c.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
        for (name, want) in [("a", "new a"), ("b", "new b"), ("c", "new c")] {
            let tmp = d.path().join(format!("{name}.part{TMP_SUFFIX}"));
            assert_eq!(std::fs::read(tmp).unwrap(), want.as_bytes());
        }
        // The crash point is used once: the next publish completes.
        assert!(publish_all(&files).iter().all(Result::is_ok));
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
    }
}
