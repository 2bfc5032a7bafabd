//! The sinks every blob of a pull streams through.
//!
//! `write()` (on the caller's thread, GIL released) hashes the compressed
//! bytes, appends them to a staged blob file and hands them to a worker
//! thread, which sniffs the compression, decompresses, hashes the
//! uncompressed stream (the diff_id) and unpacks the tar into a staged
//! directory. `finish()` checks size, digest and diff_id, fsyncs and only then
//! renames blob and directory into place. Any failure removes everything the
//! sink wrote.
//!
//! The worker's own errors (a corrupt stream, an unsafe member) are reported by
//! `finish()` after the size and digest checks, so a blob damaged in transit
//! is always reported as what it is: a digest mismatch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::atomic::{StagedDir, StagedFile};
use crate::chunks::{self, Feed};
use crate::decompress::Compression;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pipeline::{spawn_named, WorkerJob, WorkerOutput};
use crate::syncer::Syncer;
use crate::untar::{UnpackOptions, UnpackStats};

/// Chunks queued ahead of the worker in pipelined mode.
const QUEUE_DEPTH: usize = 8;

#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub blob_path: Option<PathBuf>,
    pub unpack_dir: Option<PathBuf>,
    pub expected_digest: Digest,
    pub expected_size: Option<u64>,
    pub expected_diff_id: Option<Digest>,
    /// Decompress and compute the diff_id (a layer); false for configs, manifests.
    pub decompress: bool,
    /// Overlap compressed hashing with decompression/untar on a second thread.
    pub pipelined: bool,
    pub durable: bool,
    pub unpack: UnpackOptions,
    pub limits: Limits,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Option<Digest>,
    pub uncompressed_size: Option<u64>,
    pub compression: Option<Compression>,
    pub stats: Option<UnpackStats>,
    /// The unpack directory already existed (same content, another writer won).
    pub unpack_existed: bool,
}

struct Worker {
    feed: Feed,
    handle: JoinHandle<Result<WorkerOutput>>,
    stopped: bool,
}

pub struct Sink {
    cfg: SinkConfig,
    hasher: Option<Hasher>,
    written: u64,
    fed: Arc<AtomicU64>,
    blob: Option<StagedFile>,
    dir: Option<StagedDir>,
    worker: Option<Worker>,
    syncer: Option<Syncer>,
    closed: Option<&'static str>,
}

impl Sink {
    pub fn new(cfg: SinkConfig) -> Result<Self> {
        if let Some(expected) = &cfg.expected_diff_id {
            if !cfg.decompress {
                return Err(Error::InvalidArgument(format!(
                    "expected_diff_id {expected} given to a sink that does not decompress"
                )));
            }
        }
        let mut cfg = cfg;
        let mut blob = cfg
            .blob_path
            .as_deref()
            .map(StagedFile::create)
            .transpose()?;
        let dir = cfg
            .unpack_dir
            .as_deref()
            .map(StagedDir::create)
            .transpose()?;
        let anchor = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .or_else(|| blob.as_ref().map(|b| b.dir().to_path_buf()));
        let syncer = match (cfg.durable, anchor) {
            (true, Some(anchor)) => Some(Syncer::start(&anchor)?),
            _ => None,
        };
        if let Some(syncer) = &syncer {
            cfg.unpack.sync = Some(syncer.queue());
            if let Some(blob) = blob.as_mut() {
                blob.write_back_early(syncer.queue());
            }
        }
        let fed = Arc::new(AtomicU64::new(0));
        let worker = if cfg.decompress {
            let (feed, reader) = chunks::channel(QUEUE_DEPTH, !cfg.pipelined);
            let job = WorkerJob {
                diff_alg: cfg
                    .expected_diff_id
                    .as_ref()
                    .map_or(Algorithm::Sha256, |d| d.algorithm),
                target: dir.as_ref().map(|d| d.path().to_path_buf()),
                unpack: cfg.unpack.clone(),
                limits: cfg.limits.clone(),
                fed: fed.clone(),
                split: cfg.pipelined,
            };
            let handle = spawn_named("towline-layer", move || job.run(reader))?;
            Some(Worker {
                feed,
                handle,
                stopped: false,
            })
        } else {
            None
        };
        Ok(Sink {
            hasher: Some(Hasher::new(cfg.expected_digest.algorithm)),
            cfg,
            written: 0,
            fed,
            blob,
            dir,
            worker,
            syncer,
            closed: None,
        })
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn check_open(&self) -> Result<()> {
        match self.closed {
            Some(why) => Err(Error::Closed(why)),
            None => Ok(()),
        }
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(());
        }
        let total = self.written + data.len() as u64;
        if let Some(expected) = self.cfg.expected_size {
            if total > expected {
                self.discard("a write failed");
                return Err(Error::SizeMismatch {
                    expected,
                    actual: format!("more than {expected} ({total} so far)"),
                });
            }
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        if let Some(blob) = self.blob.as_mut() {
            if let Err(e) = blob.write_all(data) {
                self.discard("a write failed");
                return Err(e);
            }
        }
        self.written = total;
        self.fed.store(total, Ordering::Relaxed);
        if let Some(worker) = self.worker.as_mut() {
            // A stopped worker has an error to report; finish() reports it
            // after the digest check. Until then keep verifying the stream.
            if !worker.stopped && !worker.feed.send(Arc::new(data.to_vec())) {
                worker.stopped = true;
            }
        }
        Ok(())
    }

    pub fn finish(&mut self) -> Result<Outcome> {
        self.check_open()?;
        let result = self.finish_inner();
        self.discard(if result.is_ok() {
            "it was finished"
        } else {
            "finish failed"
        });
        result
    }

    fn finish_inner(&mut self) -> Result<Outcome> {
        // === size and digest of the bytes as received
        if let Some(expected) = self.cfg.expected_size {
            if self.written != expected {
                return Err(Error::SizeMismatch {
                    expected,
                    actual: self.written.to_string(),
                });
            }
        }
        let digest = self
            .hasher
            .take()
            .ok_or(Error::Closed("it was finished"))?
            .finalize();
        if digest != self.cfg.expected_digest {
            return Err(Error::DigestMismatch {
                what: "digest",
                expected: self.cfg.expected_digest.to_string(),
                actual: digest.to_string(),
            });
        }

        // === the worker's verdict: decompression, diff_id, the tar itself
        let output = match self.worker.take() {
            Some(mut worker) => {
                worker.feed.close();
                Some(join(worker.handle)?)
            }
            None => None,
        };
        if let (Some(expected), Some(out)) = (&self.cfg.expected_diff_id, &output) {
            if &out.diff_id != expected {
                return Err(Error::DigestMismatch {
                    what: "diff_id",
                    expected: expected.to_string(),
                    actual: out.diff_id.to_string(),
                });
            }
        }

        // === durable rename into place (most of it is on disk already)
        if let Some(syncer) = self.syncer.take() {
            if let Some(blob) = self.blob.as_mut() {
                blob.stop_write_back();
            }
            self.cfg.unpack.sync = None;
            syncer.wait(
                self.cfg
                    .blob_path
                    .as_deref()
                    .unwrap_or(std::path::Path::new("-")),
            )?;
        }
        let mut unpack_existed = false;
        if let Some(dir) = self.dir.take() {
            unpack_existed = dir.commit(self.cfg.durable)?;
        }
        if let Some(blob) = self.blob.take() {
            blob.commit(self.cfg.durable)?;
        }
        Ok(Outcome {
            digest,
            size: self.written,
            diff_id: output.as_ref().map(|o| o.diff_id.clone()),
            uncompressed_size: output.as_ref().map(|o| o.uncompressed_size),
            compression: output.as_ref().map(|o| o.compression),
            stats: output.and_then(|o| o.stats),
            unpack_existed,
        })
    }

    pub fn abort(&mut self) {
        self.discard("it was aborted");
    }

    /// Stops the worker before its staging directory is removed, then drops
    /// every staged file (their guards delete them).
    fn discard(&mut self, why: &'static str) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(why);
        if let Some(mut worker) = self.worker.take() {
            worker.feed.cancel();
            let _ = worker.handle.join();
        }
        self.blob = None;
        self.dir = None;
        self.hasher = None;
        // Its thread finishes the queued syncs on its own; nothing waits for it.
        self.syncer = None;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.discard("it was dropped");
    }
}

fn join(handle: JoinHandle<Result<WorkerOutput>>) -> Result<WorkerOutput> {
    match handle.join() {
        Ok(result) => result,
        Err(_) => Err(Error::panicked("layer worker")),
    }
}
