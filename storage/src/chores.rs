//! The writer's background thread (`natrec-sync`): file system work taken off
//! the writer's thread — the periodic `fdatasync` of the active logs and the
//! directory fsync after it, the removal of sealed logs, and spare log files
//! made ahead — done one at a time in the order asked.
//!
//! The writer asks and goes on appending; [`Chores::wait`] waits for a chore
//! (and every one before it). The first chore that fails stops the thread's
//! work: every later chore is skipped (a removal must not follow a sync that
//! failed), and the error is kept for the writer, which stops too. An
//! `fdatasync` that failed is never retried: after a failed writeback the
//! kernel may have dropped the dirty pages and report the next `fdatasync`
//! as a success (PostgreSQL's "fsyncgate", 2018), so a failed sync means the
//! records it covered may be lost, and only a new writer's recovery (reading
//! the log back) says which survived.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::{fsutil, StoreError};

/// Chores queued and not yet done at most (`chores_queued_max`): at the
/// bound [`Chores::send`] waits for the thread. The writer keeps at most one
/// sync queued at a time, so the queue holds that sync and the removals of
/// sealed logs (a few per seal).
pub(crate) const CHORES_QUEUED_MAX: usize = 64;

/// One piece of work for the background thread.
pub(crate) enum Chore {
    /// `fdatasync` each log (a second handle on the writer's file: the same
    /// open file description's inode), then fsync `dir` if given (a log was
    /// created: its directory entry becomes durable with its first records).
    Sync {
        logs: Vec<(PathBuf, File)>,
        dir: Option<PathBuf>,
    },
    /// Remove a sealed log whose records are durable elsewhere (its `.part`
    /// and the log its carried copies went to), or the temp name of a spare
    /// log taken into use. Made durable by a later directory fsync, as the
    /// writer's own removals were.
    Remove(PathBuf),
    /// Make a spare log file under this temp name (`*.tmp`, which recovery
    /// deletes): created and sized as a new log is, so that the writer's
    /// thread only links it into place ([`Chores::take_spare`]). A failure
    /// is not an error: the writer then creates its next log itself.
    Spare(PathBuf),
    /// A sealed log whose records are durable elsewhere (as `Remove`),
    /// renamed to the spare temp name `spare` instead and kept as a spare
    /// whose file held `generation` (its next log takes the next one), if
    /// fewer than [`SPARES_MAX`] spares of at most [`SPARES_BYTES_MAX`]
    /// bytes in all wait; else removed. The writer sends it only after the
    /// log's `.part` is published (fsynced, directory fsynced).
    Recycle {
        log: PathBuf,
        spare: PathBuf,
        generation: u32,
        /// The map the log's seal read it through, kept with the spare for
        /// its next log ([`crate::partition::ActiveLog::from_spare`]);
        /// unmapped here if the file is removed.
        map: Option<memmap2::Mmap>,
    },
}

/// Spare log files kept at most (made and used again): one seal's worth
/// of sealed logs ([`crate::writer::SEALED_LOGS_PENDING_MAX`] are retired at
/// once by a flush) and one.
pub(crate) const SPARES_MAX: usize = crate::writer::SEALED_LOGS_PENDING_MAX + 1;
/// Bytes of spare log files kept at most (256 MiB): a sealed log that would
/// pass it is removed, not kept.
pub(crate) const SPARES_BYTES_MAX: u64 = 256 << 20;

/// A spare log file, made ahead or kept from a sealed log, for
/// [`crate::partition::ActiveLog::from_spare`].
pub(crate) struct Spare {
    /// Its temp name (`*.tmp`).
    pub path: PathBuf,
    /// An open handle.
    pub file: File,
    /// The generation its file held (0 for a new file).
    pub held: u32,
    /// The map its last seal read it through (a kept sealed log's, else
    /// `None`).
    pub map: Option<memmap2::Mmap>,
}

#[derive(Default)]
struct State {
    /// Chores done (or skipped after an error), in order.
    done: u64,
    /// The first error, until the writer takes it.
    error: Option<StoreError>,
    /// An error happened (kept after the writer took it: later chores are
    /// skipped).
    stopped: bool,
    /// Spare log files made or kept and not taken yet, in the order they
    /// came (taken newest first: a sealed log kept last has the most of its
    /// pages still cached). (temp path, handle, the generation its file
    /// held: 0 for a new file, the map a sealed log kept of it.)
    spares: Vec<Spare>,
    /// Spares asked for that were made or failed (made ones are in
    /// `spares` until taken).
    spares_finished: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Set with `state.stopped`, read without the lock on every append.
    stopped: AtomicBool,
    /// Tests: the next `fdatasync` fails as if the disk had failed.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

/// The handle the writer keeps on its background thread.
pub(crate) struct Chores {
    tx: Option<mpsc::SyncSender<Chore>>,
    shared: Arc<Shared>,
    /// Chores sent so far; chore `n` (from 1) is done when `done >= n`.
    sent: u64,
    handle: Option<JoinHandle<()>>,
}

impl Chores {
    /// Starts the thread; `dir` names the store's partitions for errors.
    pub fn start(dir: &std::path::Path) -> Result<Chores, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Chore>(CHORES_QUEUED_MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("natrec-sync".into())
            .spawn(move || run(&rx, &s))
            .map_err(StoreError::io(dir, "start the writer's sync thread for"))?;
        Ok(Chores {
            tx: Some(tx),
            shared,
            sent: 0,
            handle: Some(handle),
        })
    }

    /// Queues `c` (waiting if [`CHORES_QUEUED_MAX`] are queued); returns its
    /// number for [`Chores::wait`].
    pub fn send(&mut self, c: Chore) -> u64 {
        self.tx
            .as_ref()
            .expect("the sender lives until drop")
            .send(c)
            .expect("the sync thread runs until the sender is dropped");
        self.sent += 1;
        self.sent
    }

    /// Chores sent so far (the number of the last one).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits until chore `n` and every one before it are done (or skipped
    /// after an error).
    pub fn wait(&self, n: u64) {
        let mut st = self.shared.state.lock().expect("not poisoned");
        while st.done < n {
            st = self.shared.changed.wait(st).expect("not poisoned");
        }
    }

    /// Whether a chore failed (cheap: one atomic load).
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Tests: makes the next `fdatasync` on the thread fail with EIO.
    #[cfg(test)]
    pub fn fail_next_sync(&self) {
        self.shared.fail_next_sync.store(true, Ordering::Release);
    }

    /// A spare log made ahead or kept ([`Spare`]), if one is ready.
    pub fn take_spare(&self) -> Option<Spare> {
        let mut st = self.shared.state.lock().expect("not poisoned");
        st.spares.pop()
    }

    /// Waits for everything queued, then removes the spare logs made (none
    /// is left in the directory: the end of a replay, `seal_all`).
    pub fn remove_spares(&self) -> Result<(), StoreError> {
        self.wait(self.sent);
        let spares = std::mem::take(&mut self.shared.state.lock().expect("not poisoned").spares);
        for Spare { path, .. } in spares {
            std::fs::remove_file(&path).map_err(StoreError::io(&path, "remove spare log"))?;
        }
        Ok(())
    }

    /// Spares made or kept, waiting to be taken.
    pub fn spares_ready(&self) -> usize {
        self.shared.state.lock().expect("not poisoned").spares.len()
    }

    /// Spares asked for (of `asked`) that are not made (nor failed) yet.
    pub fn spares_unfinished(&self, asked: u64) -> u64 {
        asked
            - self
                .shared
                .state
                .lock()
                .expect("not poisoned")
                .spares_finished
    }

    /// The first error, once (later calls: `None`, while `stopped` stays).
    pub fn take_error(&self) -> Option<StoreError> {
        self.shared.state.lock().expect("not poisoned").error.take()
    }
}

impl Drop for Chores {
    /// Closes the queue and waits for the thread to finish what was queued.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            if let Err(panic) = h.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        // Spares not used: removed (or, if that fails, by the next writer's
        // recovery, which deletes every `*.tmp`).
        if let Ok(mut st) = self.shared.state.lock() {
            for Spare { path, .. } in st.spares.drain(..) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn run(rx: &mpsc::Receiver<Chore>, shared: &Shared) {
    for chore in rx {
        let skip = shared.state.lock().expect("not poisoned").stopped;
        if let Chore::Spare(path) = chore {
            let made = if skip {
                None
            } else {
                crate::partition::ActiveLog::make_spare(&path)
                    .ok()
                    .map(|file| Spare {
                        path,
                        file,
                        held: 0,
                        map: None,
                    })
            };
            let mut st = shared.state.lock().expect("not poisoned");
            st.spares.extend(made);
            st.spares_finished += 1;
            st.done += 1;
            shared.changed.notify_all();
            continue;
        }
        let chore = match chore {
            Chore::Recycle {
                log,
                spare,
                generation,
                map,
            } => {
                let room = |len: u64| {
                    let st = shared.state.lock().expect("not poisoned");
                    let bytes: u64 = st
                        .spares
                        .iter()
                        .map(|s| s.file.metadata().map_or(0, |m| m.len()))
                        .sum();
                    st.spares.len() < SPARES_MAX && bytes.saturating_add(len) <= SPARES_BYTES_MAX
                };
                let len = std::fs::metadata(&log).map_or(u64::MAX, |m| m.len());
                // Renamed (not removed) only with room; made durable by a
                // later directory fsync, as a removal is: a crash may bring
                // the old name back (beside its `.part`: recovery removes
                // it) or leave the `*.tmp` name (deleted).
                if !skip && room(len) && std::fs::rename(&log, &spare).is_ok() {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&spare);
                    let mut st = shared.state.lock().expect("not poisoned");
                    match f {
                        Ok(file) => st.spares.push(Spare {
                            path: spare,
                            file,
                            held: generation,
                            map,
                        }),
                        Err(_) => {
                            let _ = std::fs::remove_file(&spare);
                        }
                    }
                    st.done += 1;
                    shared.changed.notify_all();
                    continue;
                }
                // Not kept: its map (if any) is unmapped here, not on the
                // writer's thread.
                drop(map);
                Chore::Remove(log)
            }
            c => c,
        };
        let result = if skip { Ok(()) } else { work(chore, shared) };
        let mut st = shared.state.lock().expect("not poisoned");
        if let Err(e) = result {
            st.error = Some(e);
            st.stopped = true;
            shared.stopped.store(true, Ordering::Release);
        }
        st.done += 1;
        shared.changed.notify_all();
    }
}

fn work(chore: Chore, shared: &Shared) -> Result<(), StoreError> {
    let _ = shared;
    match chore {
        Chore::Sync { logs, dir } => {
            for (path, file) in &logs {
                #[cfg(test)]
                if shared.fail_next_sync.swap(false, Ordering::AcqRel) {
                    return Err(StoreError::io(path, "fdatasync log")(
                        std::io::Error::from_raw_os_error(5),
                    ));
                }
                file.sync_data()
                    .map_err(StoreError::io(path, "fdatasync log"))?;
            }
            if let Some(dir) = dir {
                fsutil::fsync_dir(&dir)?;
            }
            Ok(())
        }
        // Already gone (removed by hand): what the chore wanted.
        Chore::Remove(path) => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io(&path, "remove")(e))
            }
            _ => Ok(()),
        },
        Chore::Spare(_) | Chore::Recycle { .. } => unreachable!("made in `run`"),
    }
}
