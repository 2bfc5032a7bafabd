//! Early writeback for durable sinks.
//!
//! `finish()` must not rename anything into place before it is on disk. Left
//! alone, the kernel starts writing a pull's data back only long after the
//! pull ends, so the final fsync/syncfs would wait for all of it at once. The
//! syncer instead flushes on a background thread while the pull goes on: large
//! files (and the blob, every few MiB) with `fdatasync` as soon as they are
//! complete, and everything else with a `syncfs` every few tens of MiB
//! written. Disk writes then overlap with downloading and unpacking, and the
//! final syncfs finds little left to do.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::error::{Error, Result};

/// Jobs waiting; when full, new ones are dropped and left to the final syncfs.
const QUEUE: usize = 64;
/// Bytes written (by all files of a sink) between two background syncfs calls.
const SYNCFS_EVERY: u64 = 32 << 20;

enum Job {
    File(File),
    Filesystem,
}

/// The submitting end, cheap to clone into worker threads.
#[derive(Clone, Debug)]
pub struct SyncQueue {
    tx: SyncSender<Job>,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::File(_) => "File",
            Job::Filesystem => "Filesystem",
        })
    }
}

impl SyncQueue {
    /// Queues `file` for an fdatasync (it is closed afterwards). Never blocks:
    /// if the queue is full the file is just closed, and the final syncfs
    /// covers it.
    pub fn submit(&self, file: File) {
        let _ = self.tx.try_send(Job::File(file));
    }

    /// Counts bytes written; every `SYNCFS_EVERY` asks for a background syncfs.
    pub fn wrote(&self, n: u64) {
        let before = self.written.fetch_add(n, Ordering::Relaxed);
        if (before + n) / SYNCFS_EVERY > before / SYNCFS_EVERY {
            let _ = self.tx.try_send(Job::Filesystem);
        }
    }
}

pub struct Syncer {
    queue: SyncQueue,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Syncer {
    /// `anchor` is any directory on the filesystem being written (for syncfs).
    pub fn start(anchor: &Path) -> Result<Self> {
        let dir = File::open(anchor).map_err(|e| Error::io("open", anchor, e))?;
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let handle = thread::Builder::new()
            .name("towline-sync".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::File(file) => file.sync_data()?,
                        Job::Filesystem => rustix::fs::syncfs(&dir)?,
                    }
                }
                Ok(())
            })
            .map_err(|e| Error::io("start worker thread", Path::new("-"), e))?;
        Ok(Syncer {
            queue: SyncQueue {
                tx,
                written: Arc::new(AtomicU64::new(0)),
            },
            handle,
        })
    }

    pub fn queue(&self) -> SyncQueue {
        self.queue.clone()
    }

    /// Waits until every queued job is done (all clones of the queue must be
    /// dropped first) and reports a write error, if any.
    pub fn wait(self, what: &Path) -> Result<()> {
        drop(self.queue);
        match self.handle.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io("write back", what, e)),
            Err(_) => Err(Error::io(
                "write back",
                what,
                std::io::Error::other("the sync thread panicked"),
            )),
        }
    }
}
