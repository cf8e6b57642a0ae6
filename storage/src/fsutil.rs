//! Durable file system steps: atomic publish (habit 9) and directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

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
    }
    f.sync_all().map_err(StoreError::io(&tmp, "fsync"))?;
    drop(f);
    fs::rename(&tmp, path).map_err(StoreError::io(path, "rename temp file onto"))?;
    fsync_dir(dir)
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
