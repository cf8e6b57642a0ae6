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
