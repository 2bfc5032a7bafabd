//! The worker side of a layer sink: what happens to the bytes after `write()`.
//!
//! Inline mode runs it all on one thread: sniff, decompress, hash the diff_id,
//! untar. Pipelined mode gives inflating, diff_id hashing and untarring a
//! thread each; they share every 256 KiB decompressed buffer (no copies) and
//! hand buffers back to the inflater for reuse.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
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
    /// Where the decompressed tar goes as it is (docker-archive layers), when
    /// there is no `target` to unpack into.
    pub tar_file: Option<File>,
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

    /// Untars the decompressed stream (or writes it to the tar file, or just reads it).
    fn untar<R: BufRead>(&self, mut input: R, format: &'static str) -> Result<Option<UnpackStats>> {
        if let (None, Some(file)) = (&self.target, &self.tar_file) {
            let mut file: &File = file;
            loop {
                let buf = input.fill_buf().map_err(|e| from_io(e, format))?;
                if buf.is_empty() {
                    return Ok(None);
                }
                file.write_all(buf).map_err(|e| {
                    Error::io("write", std::path::Path::new("decompressed layer"), e)
                })?;
                let n = buf.len();
                input.consume(n);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use crate::untar::DevicePolicy;

    /// A tar of a few files, the largest spanning several decoded buffers,
    /// followed by GNU tar's zero padding past the end-of-archive marker.
    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..(3 * DECODED_BUFFER + 12_345) / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half-random bytes: compressible, but not trivially.
                (x & 0x0f0f_0f0f_0f0f_0f0f).to_le_bytes()
            })
            .collect();
        for (name, data) in [
            ("a/small", &b"small file\n"[..]),
            ("a/big", &big[..]),
            ("b/empty", &b""[..]),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        let mut raw = b.into_inner().unwrap();
        raw.resize(raw.len() + 10240, 0);
        raw
    }

    fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    fn sha256(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finalize()
    }

    fn job(split: bool, target: Option<&Path>, limits: Limits, fed: Arc<AtomicU64>) -> WorkerJob {
        WorkerJob {
            diff_alg: Algorithm::Sha256,
            target: target.map(Path::to_path_buf),
            tar_file: None,
            unpack: UnpackOptions {
                same_owner: false,
                devices: DevicePolicy::Skip,
                xattrs: false,
                ..UnpackOptions::default()
            },
            limits,
            fed,
            split,
        }
    }

    enum End {
        Close,
        Cancel,
    }

    /// Feeds `blob` to `job` in `chunk`-sized pieces as a sink does (inline
    /// channel when not split) and returns its result, failing the test
    /// rather than hanging if the worker never ends.
    fn run_job(job: WorkerJob, blob: &[u8], chunk: usize, end: End) -> Result<WorkerOutput> {
        let (mut feed, reader) = chunks::channel(8, !job.split);
        let fed = job.fed.clone();
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(job.run(reader));
        });
        let blob = blob.to_vec();
        let feeder = thread::spawn(move || {
            let mut total = 0;
            for part in blob.chunks(chunk) {
                total += part.len() as u64;
                fed.store(total, Ordering::Relaxed);
                if !feed.send(Arc::new(part.to_vec())) {
                    break; // the worker stopped; its result says why
                }
            }
            match end {
                End::Close => feed.close(),
                End::Cancel => feed.cancel(),
            }
        });
        let result = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the worker did not end");
        feeder.join().unwrap();
        result
    }

    fn run_simple(split: bool, target: Option<&Path>, blob: &[u8]) -> Result<WorkerOutput> {
        let j = job(split, target, Limits::default(), Arc::default());
        run_job(j, blob, 10_000, End::Close)
    }

    #[test]
    fn split_and_inline_agree_on_diff_id_size_and_tree() {
        let raw = sample_tar();
        let big_len = (3 * DECODED_BUFFER + 12_345) / 8 * 8;
        for (blob, compression) in [
            (gzip(&raw), Compression::Gzip),
            (zstd::encode_all(&raw[..], 3).unwrap(), Compression::Zstd),
            (raw.clone(), Compression::None),
        ] {
            for unpack in [true, false] {
                for split in [false, true] {
                    let what = format!("{compression:?} split={split} unpack={unpack}");
                    let tmp = tempfile::tempdir().unwrap();
                    let target = unpack.then_some(tmp.path());
                    let out = run_simple(split, target, &blob).unwrap();
                    // The padding after the end marker is part of the diff_id.
                    assert_eq!(out.diff_id, sha256(&raw), "{what}");
                    assert_eq!(out.uncompressed_size, raw.len() as u64, "{what}");
                    assert_eq!(out.compression, compression, "{what}");
                    if unpack {
                        assert_eq!(out.stats.map(|s| s.entries), Some(3), "{what}");
                        let big = std::fs::metadata(tmp.path().join("a/big")).unwrap();
                        assert_eq!(big.len() as usize, big_len, "{what}");
                        assert_eq!(
                            std::fs::read(tmp.path().join("a/small")).unwrap(),
                            b"small file\n"
                        );
                    } else {
                        assert!(out.stats.is_none(), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn diff_id_uses_the_requested_algorithm() {
        let raw = sample_tar();
        let blob = gzip(&raw);
        for split in [false, true] {
            let mut j = job(split, None, Limits::default(), Arc::default());
            j.diff_alg = Algorithm::Blake3;
            let out = run_job(j, &blob, 4096, End::Close).unwrap();
            let mut h = Hasher::new(Algorithm::Blake3);
            h.update(&raw);
            assert_eq!(out.diff_id, h.finalize());
        }
    }

    #[test]
    fn ratio_guard_bounds() {
        let guard = |fed: u64, max_ratio: f64, ratio_grace: u64| RatioGuard {
            fed: Arc::new(AtomicU64::new(fed)),
            limits: Limits {
                max_ratio,
                ratio_grace,
                ..Limits::default()
            },
        };
        // Exactly the limit is allowed; one byte more is not.
        assert!(guard(100, 10.0, 0).check(1000).is_ok());
        match guard(100, 10.0, 0).check(1001) {
            Err(Error::RatioExceeded {
                compressed,
                uncompressed,
                limit,
            }) => {
                assert_eq!((compressed, uncompressed, limit), (100, 1001, 10.0));
            }
            other => panic!("{:?}", other.err()),
        }
        // Within the grace any ratio passes; past it the ratio counts.
        assert!(guard(1, 10.0, 5000).check(5000).is_ok());
        assert!(guard(1, 10.0, 5000).check(5001).is_err());
        // Nothing fed yet counts as one byte, not a division by zero.
        assert!(guard(0, 10.0, 0).check(10).is_ok());
        assert!(guard(0, 10.0, 0).check(11).is_err());
        // 0 turns the check off.
        assert!(guard(1, 0.0, 0).check(u64::MAX).is_ok());
        assert_eq!(
            guard(1, 2.0, 0).check(3).unwrap_err().slug(),
            "decompression_bomb"
        );
    }

    #[test]
    fn the_ratio_limit_stops_both_modes() {
        let mut b = tar::Builder::new(Vec::new());
        let len = 8u64 << 20;
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(len);
        b.append_data(&mut h, "zeros", io::repeat(0).take(len))
            .unwrap();
        let raw = b.into_inner().unwrap();
        let blob = zstd::encode_all(&raw[..], 3).unwrap();
        let limits = Limits {
            max_ratio: 20.0,
            ratio_grace: 1 << 16,
            ..Limits::default()
        };
        for unpack in [true, false] {
            for split in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let target = unpack.then_some(tmp.path());
                let j = job(split, target, limits.clone(), Arc::default());
                let err = run_job(j, &blob, 1 << 20, End::Close).err().unwrap();
                match err {
                    Error::RatioExceeded {
                        compressed,
                        uncompressed,
                        limit,
                    } => {
                        assert_eq!(limit, 20.0);
                        assert!(uncompressed as f64 > 20.0 * compressed as f64);
                        assert!(compressed <= blob.len() as u64);
                        if !unpack {
                            // The stream itself is checked as it is inflated.
                            assert!(uncompressed < len / 2, "stopped late: {uncompressed}");
                        }
                    }
                    other => panic!("split={split} unpack={unpack}: {other}"),
                }
            }
        }
    }

    /// gzip of the first 600 KiB of the tar, then a second gzip member whose
    /// first deflate block has the reserved type: the decoder fails mid-layer.
    fn corrupt_mid_stream(raw: &[u8]) -> Vec<u8> {
        let mut blob = gzip(&raw[..600 << 10]);
        let mut second = gzip(&raw[600 << 10..]);
        second[10] |= 0b110;
        blob.extend_from_slice(&second);
        blob
    }

    #[test]
    fn a_decoder_error_stops_the_untar_and_is_what_is_reported() {
        let raw = sample_tar();
        let blob = corrupt_mid_stream(&raw);
        for unpack in [true, false] {
            for split in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let target = unpack.then_some(tmp.path());
                let err = run_simple(split, target, &blob).err().unwrap();
                match &err {
                    Error::Decompress { format, .. } => assert_eq!(*format, "gzip"),
                    other => panic!("split={split} unpack={unpack}: {other}"),
                }
                assert_eq!(err.slug(), "corrupt_stream");
            }
        }
    }

    #[test]
    fn a_truncated_stream_is_reported() {
        let raw = sample_tar();
        let whole = gzip(&raw);
        let cut_gzip = &whole[..whole.len() / 2];
        let cut_tar = &raw[..raw.len() / 2];
        for split in [false, true] {
            for unpack in [true, false] {
                let tmp = tempfile::tempdir().unwrap();
                let target = unpack.then_some(tmp.path());
                // The compressed stream ends early: the decoder says so.
                let err = run_simple(split, target, cut_gzip).err().unwrap();
                assert_eq!(err.slug(), "corrupt_stream", "split={split}: {err}");
            }
            // A complete stream of a cut tar: the untar says so.
            for blob in [gzip(cut_tar), cut_tar.to_vec()] {
                let tmp = tempfile::tempdir().unwrap();
                let err = run_simple(split, Some(tmp.path()), &blob).err().unwrap();
                assert_eq!(err.slug(), "bad_tar", "split={split}: {err}");
                assert!(err.to_string().contains("truncated"), "{err}");
            }
        }
    }

    #[test]
    fn a_cancelled_feed_is_never_a_complete_layer() {
        // Every byte arrived, but the writer gave up instead of closing.
        let raw = sample_tar();
        for blob in [gzip(&raw), raw.clone()] {
            for unpack in [true, false] {
                for split in [false, true] {
                    let tmp = tempfile::tempdir().unwrap();
                    let target = unpack.then_some(tmp.path());
                    let j = job(split, target, Limits::default(), Arc::default());
                    let err = run_job(j, &blob, 10_000, End::Cancel).err().unwrap();
                    assert_eq!(err.slug(), "closed", "split={split}: {err}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_or_empty_stream_is_refused() {
        for split in [false, true] {
            let err = run_simple(split, None, &[0x42; 4096]).err().unwrap();
            assert_eq!(err.slug(), "unsupported_compression", "{err}");
            let err = run_simple(split, None, &[]).err().unwrap();
            assert!(err.to_string().contains("empty stream"), "{err}");
        }
    }

    /// `len` bytes of `byte`, then an I/O error (a decoder failing mid-stream).
    struct FailingReader {
        left: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad block"));
            }
            let n = out.len().min(self.left);
            out[..n].fill(b'z');
            self.left -= n;
            Ok(n)
        }
    }

    /// Runs `decode_into` as the split pipeline does and returns its result and
    /// what the untar side read (or the error it saw instead of EOF).
    fn decode(decoded: Box<dyn Read + Send>, guard: RatioGuard) -> (Result<()>, io::Result<usize>) {
        let (feed, mut untar_input) = chunks::channel(DECODED_QUEUE, false);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<Chunk>(DECODED_QUEUE);
        let (_recycler, pool) = Recycler::new(2);
        let hasher = thread::spawn(move || hash_rx.into_iter().map(|c| c.len()).sum::<usize>());
        let decoder =
            thread::spawn(move || decode_into(decoded, feed, hash_tx, pool, guard, "gzip"));
        let mut seen = Vec::new();
        let untar = untar_input.read_to_end(&mut seen);
        drop(untar_input);
        let result = decoder.join().unwrap();
        let hashed = hasher.join().unwrap();
        if let Ok(n) = untar {
            assert_eq!(hashed, n, "hasher and untar saw different streams");
        }
        (result, untar)
    }

    fn no_limit() -> RatioGuard {
        RatioGuard {
            fed: Arc::new(AtomicU64::new(1)),
            limits: Limits {
                max_ratio: 0.0,
                ..Limits::default()
            },
        }
    }

    #[test]
    fn decode_into_ends_the_untar_with_eof_only_when_the_stream_ends() {
        let len = 2 * DECODED_BUFFER + 777;
        let (result, untar) = decode(Box::new(io::repeat(1).take(len as u64)), no_limit());
        result.unwrap();
        assert_eq!(untar.unwrap(), len);

        // A decoder failure after some output: the untar gets an error, never
        // a short but clean end of stream.
        let (result, untar) = decode(Box::new(FailingReader { left: len }), no_limit());
        assert_eq!(result.unwrap_err().slug(), "corrupt_stream");
        assert!(untar.is_err(), "the untar saw EOF after {:?} bytes", untar);

        // The same for a ratio failure.
        let guard = RatioGuard {
            fed: Arc::new(AtomicU64::new(1)),
            limits: Limits {
                max_ratio: 1000.0,
                ratio_grace: 0,
                ..Limits::default()
            },
        };
        let (result, untar) = decode(Box::new(io::repeat(0).take(len as u64)), guard);
        assert_eq!(result.unwrap_err().slug(), "decompression_bomb");
        assert!(untar.is_err(), "the untar saw EOF after {:?} bytes", untar);
    }

    #[test]
    fn single_byte_writes_still_sniff_and_verify() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(5);
        b.append_data(&mut h, "f", &b"hello"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        for blob in [gzip(&raw), zstd::encode_all(&raw[..], 3).unwrap()] {
            for split in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let j = job(split, Some(tmp.path()), Limits::default(), Arc::default());
                let out = run_job(j, &blob, 1, End::Close).unwrap();
                assert_eq!(out.diff_id, sha256(&raw));
                assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"hello");
            }
        }
    }
}
