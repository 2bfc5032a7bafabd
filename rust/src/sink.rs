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

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::atomic::{StagedDir, StagedFile};
use crate::chunks::{self, ChunkReader, Feed};
use crate::decompress::{self, Compression};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{from_io, into_io, Error, Result};
use crate::limits::Limits;
use crate::untar::{self, UnpackOptions, UnpackStats};

/// Chunks queued ahead of the worker in pipelined mode.
const QUEUE_DEPTH: usize = 8;
/// Decompressed bytes per read: large reads keep inflate and sha256 efficient.
const DECODED_BUFFER: usize = 256 << 10;

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

struct WorkerOutput {
    diff_id: Digest,
    uncompressed_size: u64,
    compression: Compression,
    stats: Option<UnpackStats>,
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
        let blob = cfg
            .blob_path
            .as_deref()
            .map(StagedFile::create)
            .transpose()?;
        let dir = cfg
            .unpack_dir
            .as_deref()
            .map(StagedDir::create)
            .transpose()?;
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
            };
            let handle = thread::Builder::new()
                .name("towline-layer".into())
                .spawn(move || job.run(reader))
                .map_err(|e| Error::io("start worker thread", std::path::Path::new("-"), e))?;
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
            if !worker.stopped && !worker.feed.send(data.to_vec()) {
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

        // === durable rename into place
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
        Err(_) => Err(Error::bad_tar("internal error: the layer worker panicked")),
    }
}

struct WorkerJob {
    diff_alg: Algorithm,
    target: Option<PathBuf>,
    unpack: UnpackOptions,
    limits: Limits,
    fed: Arc<AtomicU64>,
}

impl WorkerJob {
    fn run(self, mut input: ChunkReader) -> Result<WorkerOutput> {
        let head = input
            .peek(decompress::SNIFF_LEN)
            .map_err(|e| from_io(e, "input"))?;
        let compression = decompress::sniff(head)?;
        let format = compression.name();
        let decoded = decompress::decoder(compression, input)?;
        let hashing = DiffIdReader {
            inner: decoded,
            hasher: Hasher::new(self.diff_alg),
            count: 0,
            fed: self.fed,
            limits: self.limits.clone(),
        };
        let mut buffered = BufReader::with_capacity(DECODED_BUFFER, hashing);
        let stats = match &self.target {
            Some(dir) => Some(untar::unpack(
                &mut buffered,
                dir,
                &self.unpack,
                &self.limits,
                format,
            )?),
            None => {
                io::copy(&mut buffered, &mut io::sink()).map_err(|e| from_io(e, format))?;
                None
            }
        };
        let hashing = buffered.into_inner();
        Ok(WorkerOutput {
            diff_id: hashing.hasher.finalize(),
            uncompressed_size: hashing.count,
            compression,
            stats,
        })
    }
}

/// Hashes and counts the decompressed stream, and stops a decompression bomb.
struct DiffIdReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
    fed: Arc<AtomicU64>,
    limits: Limits,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        let limit = self.limits.max_ratio;
        if limit > 0.0 && self.count > self.limits.ratio_grace {
            let compressed = self.fed.load(Ordering::Relaxed).max(1);
            if self.count as f64 > limit * compressed as f64 {
                return Err(into_io(Error::RatioExceeded {
                    compressed,
                    uncompressed: self.count,
                    limit,
                }));
            }
        }
        Ok(n)
    }
}
