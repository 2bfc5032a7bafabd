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

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::atomic::{StagedDir, StagedFile};
use crate::chunks::{self, Chunk, ChunkReader, Feed, Recycler};
use crate::decompress::{self, Compression};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{from_io, into_io, Error, Result};
use crate::limits::Limits;
use crate::syncer::Syncer;
use crate::untar::{self, UnpackOptions, UnpackStats};

/// Chunks queued ahead of the worker in pipelined mode.
const QUEUE_DEPTH: usize = 8;
/// Decompressed bytes per read: large reads keep inflate and sha256 efficient.
const DECODED_BUFFER: usize = 256 << 10;
/// Decompressed buffers queued between the inflate thread and the untar thread.
const DECODED_QUEUE: usize = 4;

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
        Err(_) => Err(Error::bad_tar("internal error: the layer worker panicked")),
    }
}

struct WorkerJob {
    diff_alg: Algorithm,
    target: Option<PathBuf>,
    unpack: UnpackOptions,
    limits: Limits,
    fed: Arc<AtomicU64>,
    /// Decompress on a thread of its own, so inflating overlaps with hashing
    /// the uncompressed stream and writing files (pipelined mode).
    split: bool,
}

impl WorkerJob {
    fn run(self, mut input: ChunkReader) -> Result<WorkerOutput> {
        let head = input
            .peek(decompress::SNIFF_LEN)
            .map_err(|e| from_io(e, "input"))?;
        let compression = decompress::sniff(head)?;
        let format = compression.name();
        let decoded = decompress::decoder(compression, input)?;
        if !self.split {
            let buffered = BufReader::with_capacity(DECODED_BUFFER, decoded);
            return self.consume(buffered, compression);
        }

        // === three stages: inflate | hash the diff_id | untar, sharing each buffer
        let (untar_feed, mut untar_input) = chunks::channel(DECODED_QUEUE, false);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<Chunk>(DECODED_QUEUE);
        let (recycler, pool) = Recycler::new(2 * DECODED_QUEUE + 2);
        untar_input.recycle_into(recycler.clone());
        let alg = self.diff_alg;
        let hasher = spawn_named("towline-diffid", move || {
            let mut hasher = Hasher::new(alg);
            let mut count = 0u64;
            for chunk in hash_rx {
                hasher.update(&chunk);
                count += chunk.len() as u64;
                recycler.give_back(chunk);
            }
            (hasher.finalize(), count)
        })?;
        let guard = RatioGuard {
            fed: self.fed.clone(),
            limits: self.limits.clone(),
        };
        let decoder = spawn_named("towline-inflate", move || {
            decode_into(decoded, untar_feed, hash_tx, pool, guard, format)
        })?;
        let unpacked = self.untar(untar_input, format);
        // The decoder's own failure is the root cause of whatever the untar saw.
        let decoded = decoder.join().unwrap_or_else(|_| {
            Err(Error::bad_tar(
                "internal error: the inflate thread panicked",
            ))
        });
        let hashed = hasher
            .join()
            .map_err(|_| Error::bad_tar("internal error: the diff_id thread panicked"));
        decoded?;
        let stats = unpacked?;
        let (diff_id, uncompressed_size) = hashed?;
        Ok(WorkerOutput {
            diff_id,
            uncompressed_size,
            compression,
            stats,
        })
    }

    /// Untars (or, without a target, just reads) the decompressed stream.
    fn untar<R: BufRead>(&self, mut input: R, format: &'static str) -> Result<Option<UnpackStats>> {
        match &self.target {
            Some(dir) => Ok(Some(untar::unpack(
                &mut input,
                dir,
                &self.unpack,
                &self.limits,
                format,
            )?)),
            None => {
                io::copy(&mut input, &mut io::sink()).map_err(|e| from_io(e, format))?;
                Ok(None)
            }
        }
    }

    /// Hashes (diff_id) and untars the decompressed stream on this one thread.
    fn consume<R: BufRead>(&self, input: R, compression: Compression) -> Result<WorkerOutput> {
        let mut hashing = DiffIdReader {
            inner: input,
            hasher: Hasher::new(self.diff_alg),
            count: 0,
            guard: RatioGuard {
                fed: self.fed.clone(),
                limits: self.limits.clone(),
            },
        };
        let stats = self.untar(&mut hashing, compression.name())?;
        Ok(WorkerOutput {
            diff_id: hashing.hasher.finalize(),
            uncompressed_size: hashing.count,
            compression,
            stats,
        })
    }
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::io("start worker thread", std::path::Path::new("-"), e))
}

/// Stops a decompression bomb: too many bytes out per compressed byte in.
struct RatioGuard {
    fed: Arc<AtomicU64>,
    limits: Limits,
}

impl RatioGuard {
    fn check(&self, uncompressed: u64) -> Result<()> {
        let limit = self.limits.max_ratio;
        if limit > 0.0 && uncompressed > self.limits.ratio_grace {
            let compressed = self.fed.load(Ordering::Relaxed).max(1);
            if uncompressed as f64 > limit * compressed as f64 {
                return Err(Error::RatioExceeded {
                    compressed,
                    uncompressed,
                    limit,
                });
            }
        }
        Ok(())
    }
}

/// Runs the decoder to the end of its input, passing large shared buffers to
/// the diff_id hasher and to the untar. A failure cancels the untar's feed, so
/// it sees an error, never a short EOF.
fn decode_into(
    mut decoded: Box<dyn Read + Send>,
    mut feed: Feed,
    hash_tx: SyncSender<Chunk>,
    pool: Receiver<Vec<u8>>,
    guard: RatioGuard,
    format: &'static str,
) -> Result<()> {
    let mut total = 0u64;
    loop {
        let mut buf = pool.try_recv().unwrap_or_default();
        buf.resize(DECODED_BUFFER, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match decoded.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    feed.cancel();
                    return Err(from_io(e, format));
                }
            }
        }
        if filled == 0 {
            feed.close();
            return Ok(());
        }
        total += filled as u64;
        if let Err(e) = guard.check(total) {
            feed.cancel();
            return Err(e);
        }
        buf.truncate(filled);
        let chunk = Arc::new(buf);
        if hash_tx.send(chunk.clone()).is_err() || !feed.send(chunk) {
            return Ok(()); // the untar stopped; it reports why
        }
    }
}

/// Hashes and counts the decompressed stream as the tar reader consumes it
/// (zero-copy over the reader's buffer), and stops a decompression bomb.
struct DiffIdReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
    guard: RatioGuard,
}

impl<R: BufRead> Read for DiffIdReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for DiffIdReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.guard.check(self.count).map_err(into_io)?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // The bytes being consumed are the front of the buffer fill_buf returned;
        // asking again does no I/O while that buffer is not used up.
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
        }
        self.inner.consume(amt);
    }
}
