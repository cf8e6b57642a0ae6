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

/// Publishes several files as [`publish`] does each, with the disk waits
/// shared: every temp file is written and its writeback started
/// ([`crate::mmap::start_writeback`]) before the first fsync, so each fsync mostly waits
/// for writes already under way, not for its own in turn; then each file is
/// fsynced and renamed, and each directory holding one is fsynced once for
/// all. The order per file is [`publish`]'s (data fsynced, then renamed,
/// then the directory fsynced before the result is returned), so a crash
/// leaves each file old (plus a stray temp file) or complete. One result per
/// file, in order; a directory fsync that fails fails every file renamed
/// into that directory.
pub(crate) fn publish_all(files: &[(&Path, &[&[u8]])]) -> Vec<Result<(), StoreError>> {
    let written: Vec<Result<(PathBuf, File), StoreError>> = files
        .iter()
        .map(|&(path, parts)| write_temp(path, parts))
        .collect();
    let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(files.len());
    for (&(path, _), w) in files.iter().zip(written) {
        results.push(w.and_then(|(tmp, f)| {
            f.sync_all().map_err(StoreError::io(&tmp, "fsync"))?;
            drop(f);
            fs::rename(&tmp, path).map_err(StoreError::io(path, "rename temp file onto"))
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
}
