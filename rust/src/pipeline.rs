//! The worker side of a layer sink: what happens to the bytes after `write()`.
//!
//! Inline mode runs it all on one thread: sniff, decompress, hash the diff_id,
//! untar. Pipelined mode gives inflating, diff_id hashing and untarring a
//! thread each; they share every 256 KiB decompressed buffer (no copies) and
//! hand buffers back to the inflater for reuse.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::chunks::{self, Chunk, ChunkReader, Feed, Recycler};
use crate::decompress::{self, Compression};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{from_io, into_io, Error, Result};
use crate::limits::{Limits, RatioGuard};
use crate::untar::{self, UnpackOptions, UnpackStats};

/// Decompressed bytes per read: large reads keep inflate and sha256 efficient.
const DECODED_BUFFER: usize = 256 << 10;
/// Decompressed buffers queued between the inflate thread and its consumers.
const DECODED_QUEUE: usize = 4;

pub struct WorkerOutput {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub compression: Compression,
    pub stats: Option<UnpackStats>,
}

pub struct WorkerJob {
    pub diff_alg: Algorithm,
    pub target: Option<PathBuf>,
    pub unpack: UnpackOptions,
    pub limits: Limits,
    pub fed: Arc<AtomicU64>,
    /// Decompress on a thread of its own, so inflating overlaps with hashing
    /// the uncompressed stream and writing files (pipelined mode).
    pub split: bool,
}

impl WorkerJob {
    pub fn run(self, mut input: ChunkReader) -> Result<WorkerOutput> {
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
        let decoded = decoder
            .join()
            .unwrap_or_else(|_| Err(Error::panicked("inflate")));
        let hashed = hasher.join().map_err(|_| Error::panicked("diff_id"));
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
            Some(dir) => {
                let opts = UnpackOptions {
                    ratio: Some(RatioGuard {
                        fed: self.fed.clone(),
                        limits: self.limits.clone(),
                    }),
                    ..self.unpack.clone()
                };
                Ok(Some(untar::unpack(
                    &mut input,
                    dir,
                    &opts,
                    &self.limits,
                    format,
                )?))
            }
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

pub fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::io("start worker thread", std::path::Path::new("-"), e))
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
        chunks::read_buffered(self, out)
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
