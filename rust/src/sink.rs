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
    /// Write the decompressed tar here (verified like the rest) instead of unpacking it.
    pub decompressed_path: Option<PathBuf>,
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
    tar: Option<StagedFile>,
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
        if cfg.decompressed_path.is_some() && (cfg.unpack_dir.is_some() || !cfg.decompress) {
            return Err(Error::InvalidArgument(
                "decompressed_path needs a decompressing sink without unpack_dir".into(),
            ));
        }
        let mut cfg = cfg;
        let tar = cfg
            .decompressed_path
            .as_deref()
            .map(StagedFile::create)
            .transpose()?;
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
                tar_file: tar.as_ref().map(StagedFile::handle).transpose()?,
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
            tar,
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
        if let Some(tar) = self.tar.take() {
            tar.commit(self.cfg.durable)?;
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
        self.tar = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::io::{Read as _, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::untar::DevicePolicy;

    const TOOL_LEN: usize = 300_000;

    fn tool_bytes() -> Vec<u8> {
        // Poorly compressible, so the compressed stream spans many writes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut out = b"\x7fELF".to_vec();
        while out.len() < TOOL_LEN {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(TOOL_LEN);
        out
    }

    /// dir etc, etc/hostname, bin/tool (0755, parent implied), usr/bin -> /bin.
    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "etc", std::io::empty()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(8);
        b.append_data(&mut h, "etc/hostname", &b"towline\n"[..])
            .unwrap();
        let tool = tool_bytes();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_size(tool.len() as u64);
        b.append_data(&mut h, "bin/tool", &tool[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "usr/bin", "/bin").unwrap();
        b.into_inner().unwrap()
    }

    /// A tar of one file of zeros: compresses by far more than 10:1.
    fn zeros_tar(len: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(len as u64);
        b.append_data(&mut h, "zeros", std::io::repeat(0).take(len as u64))
            .unwrap();
        b.into_inner().unwrap()
    }

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Gzip,
        Zstd,
        None,
    }

    fn compress(raw: &[u8], kind: Kind) -> Vec<u8> {
        match kind {
            Kind::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            Kind::Zstd => zstd::encode_all(raw, 3).unwrap(),
            Kind::None => raw.to_vec(),
        }
    }

    fn sha256(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finalize()
    }

    fn config(dir: &Path, blob: &[u8], pipelined: bool) -> SinkConfig {
        SinkConfig {
            blob_path: Some(dir.join("blob")),
            unpack_dir: Some(dir.join("layer")),
            decompressed_path: None,
            expected_digest: sha256(blob),
            expected_size: Some(blob.len() as u64),
            expected_diff_id: None,
            decompress: true,
            pipelined,
            durable: false,
            unpack: UnpackOptions {
                same_owner: false,
                devices: DevicePolicy::Skip,
                xattrs: false,
                ..UnpackOptions::default()
            },
            limits: Limits::default(),
        }
    }

    fn stream(sink: &mut Sink, blob: &[u8], chunk: usize) -> Result<()> {
        for part in blob.chunks(chunk) {
            sink.write(part)?;
        }
        Ok(())
    }

    fn run(cfg: SinkConfig, blob: &[u8], chunk: usize) -> Result<Outcome> {
        let mut sink = Sink::new(cfg)?;
        stream(&mut sink, blob, chunk)?;
        sink.finish()
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn assert_empty(dir: &Path) {
        assert_eq!(names(dir), BTreeSet::new(), "left behind in {dir:?}");
    }

    fn assert_sample_tree(layer: &Path) {
        assert_eq!(fs::read(layer.join("etc/hostname")).unwrap(), b"towline\n");
        assert_eq!(fs::read(layer.join("bin/tool")).unwrap(), tool_bytes());
        let mode = fs::metadata(layer.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(layer.join("usr/bin")).unwrap(),
            Path::new("/bin")
        );
    }

    const BOTH: [bool; 2] = [false, true];

    #[test]
    fn each_format_unpacks_verifies_and_commits_only_on_finish() {
        let raw = sample_tar();
        for (kind, name) in [
            (Kind::Gzip, "gzip"),
            (Kind::Zstd, "zstd"),
            (Kind::None, "none"),
        ] {
            for pipelined in BOTH {
                let what = format!("{kind:?} pipelined={pipelined}");
                let tmp = tempfile::tempdir().unwrap();
                let blob = compress(&raw, kind);
                let mut cfg = config(tmp.path(), &blob, pipelined);
                cfg.expected_diff_id = Some(sha256(&raw));
                let mut sink = Sink::new(cfg).unwrap();
                stream(&mut sink, &blob, 7777).unwrap();
                assert_eq!(sink.bytes_written(), blob.len() as u64);
                // Everything written is still staged under `.tmp-` names.
                let staged = names(tmp.path());
                assert_eq!(staged.len(), 2, "{what}: {staged:?}");
                assert!(staged.iter().all(|n| n.starts_with(".tmp-")), "{what}");

                let out = sink.finish().unwrap();
                assert_eq!(out.digest, sha256(&blob), "{what}");
                assert_eq!(out.size, blob.len() as u64, "{what}");
                assert_eq!(out.diff_id, Some(sha256(&raw)), "{what}");
                assert_eq!(out.uncompressed_size, Some(raw.len() as u64), "{what}");
                assert_eq!(out.compression.map(Compression::name), Some(name));
                assert_eq!(out.stats.as_ref().map(|s| s.entries), Some(4), "{what}");
                assert!(!out.unpack_existed, "{what}");
                assert_eq!(fs::read(tmp.path().join("blob")).unwrap(), blob, "{what}");
                assert_sample_tree(&tmp.path().join("layer"));
                assert_eq!(
                    names(tmp.path()),
                    BTreeSet::from(["blob".into(), "layer".into()]),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn without_expected_diff_id_it_is_still_computed() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let out = run(config(tmp.path(), &blob, pipelined), &blob, 1 << 16).unwrap();
            assert_eq!(out.diff_id, Some(sha256(&raw)));
            assert_eq!(out.uncompressed_size, Some(raw.len() as u64));
        }
    }

    #[test]
    fn a_layer_may_skip_the_blob_or_the_unpack() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Zstd);
        for pipelined in BOTH {
            // Unpack only.
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.blob_path = None;
            cfg.expected_diff_id = Some(sha256(&raw));
            let out = run(cfg, &blob, 1 << 16).unwrap();
            assert_eq!(out.stats.map(|s| s.entries), Some(4));
            assert_sample_tree(&tmp.path().join("layer"));
            assert_eq!(names(tmp.path()), BTreeSet::from(["layer".into()]));

            // Store and verify only: the diff_id is still checked.
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.unpack_dir = None;
            cfg.expected_diff_id = Some(sha256(&raw));
            let out = run(cfg.clone(), &blob, 1 << 16).unwrap();
            assert!(out.stats.is_none());
            assert_eq!(out.diff_id, Some(sha256(&raw)));
            assert_eq!(names(tmp.path()), BTreeSet::from(["blob".into()]));
            fs::remove_file(tmp.path().join("blob")).unwrap();
            cfg.expected_diff_id = Some(sha256(b"another layer"));
            let err = run(cfg, &blob, 1 << 16).unwrap_err();
            assert_eq!(err.slug(), "diff_id_mismatch", "{err}");
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn durable_sink_commits() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.durable = true;
            cfg.expected_diff_id = Some(sha256(&raw));
            let out = run(cfg, &blob, 4096).unwrap();
            assert_eq!(out.diff_id, Some(sha256(&raw)));
            assert_sample_tree(&tmp.path().join("layer"));
            assert_eq!(fs::read(tmp.path().join("blob")).unwrap(), blob);
            assert_eq!(
                names(tmp.path()),
                BTreeSet::from(["blob".into(), "layer".into()])
            );
        }
    }

    #[test]
    fn writing_past_the_expected_size_fails_at_once_and_leaves_nothing() {
        let blob = compress(&sample_tar(), Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            let expected = blob.len() as u64 - 10;
            cfg.expected_size = Some(expected);
            let mut sink = Sink::new(cfg).unwrap();
            let err = stream(&mut sink, &blob, 1000).unwrap_err();
            match &err {
                Error::SizeMismatch {
                    expected: e,
                    actual,
                } => {
                    assert_eq!(*e, expected);
                    assert!(
                        actual.starts_with(&format!("more than {expected}")),
                        "{actual}"
                    );
                }
                other => panic!("expected SizeMismatch, got {other}"),
            }
            assert_eq!(err.slug(), "size_mismatch");
            // The refused bytes were not counted.
            assert!(sink.bytes_written() <= expected);
            assert_empty(tmp.path());
            assert!(matches!(sink.write(b"x"), Err(Error::Closed(_))));
            assert!(matches!(sink.finish(), Err(Error::Closed(_))));
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn a_short_blob_is_a_size_mismatch_at_finish_and_leaves_nothing() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.expected_size = Some(blob.len() as u64 + 10);
            cfg.expected_diff_id = Some(sha256(&raw));
            let err = run(cfg, &blob, 4096).unwrap_err();
            match &err {
                Error::SizeMismatch { expected, actual } => {
                    assert_eq!(*expected, blob.len() as u64 + 10);
                    assert_eq!(actual, &blob.len().to_string());
                }
                other => panic!("expected SizeMismatch, got {other}"),
            }
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn a_damaged_blob_is_a_digest_mismatch_even_when_the_stream_is_corrupt() {
        let raw = sample_tar();
        let good = compress(&raw, Kind::Gzip);
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0xff;
        // Garbage from the first byte: not even a known format.
        let garbage: Vec<u8> = good.iter().map(|b| b ^ 0x55).collect();
        for damaged in [&flipped, &garbage] {
            for pipelined in BOTH {
                // The damage does make the worker fail (so it could mask the digest)...
                let tmp = tempfile::tempdir().unwrap();
                let cfg = config(tmp.path(), damaged, pipelined);
                let worker_err = run(cfg, damaged, 4096).unwrap_err();
                assert!(
                    !matches!(worker_err, Error::DigestMismatch { .. }),
                    "{worker_err}"
                );
                assert_empty(tmp.path());
                // ...yet with the promised digest the transfer is what is reported.
                let mut cfg = config(tmp.path(), &good, pipelined);
                cfg.expected_diff_id = Some(sha256(&raw));
                let err = run(cfg, damaged, 4096).unwrap_err();
                match &err {
                    Error::DigestMismatch {
                        what,
                        expected,
                        actual,
                    } => {
                        assert_eq!(*what, "digest");
                        assert_eq!(expected, &sha256(&good).to_string());
                        assert_eq!(actual, &sha256(damaged).to_string());
                    }
                    other => panic!("pipelined={pipelined}: {other} ({})", other.slug()),
                }
                assert_eq!(err.slug(), "digest_mismatch");
                assert_empty(tmp.path());
            }
        }
    }

    #[test]
    fn a_wrong_diff_id_is_reported_and_leaves_nothing() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Zstd);
        let mut longer = raw.clone();
        longer.push(b'x');
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.expected_diff_id = Some(sha256(&longer));
            let err = run(cfg, &blob, 4096).unwrap_err();
            match &err {
                Error::DigestMismatch {
                    what,
                    expected,
                    actual,
                } => {
                    assert_eq!(*what, "diff_id");
                    assert_eq!(expected, &sha256(&longer).to_string());
                    assert_eq!(actual, &sha256(&raw).to_string());
                }
                other => panic!("{other}"),
            }
            assert_eq!(err.slug(), "diff_id_mismatch");
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn a_worker_error_is_reported_at_finish_and_leaves_nothing() {
        // A complete, correctly digested gzip stream of a tar cut off inside
        // bin/tool: the blob is fine, the layer is not, and part of it was unpacked.
        let raw = sample_tar();
        let cut = &raw[..raw.len() / 2];
        let blob = compress(cut, Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.expected_diff_id = Some(sha256(cut));
            let err = run(cfg, &blob, 1000).unwrap_err();
            assert_eq!(err.slug(), "bad_tar", "{err}");
            assert!(err.to_string().contains("truncated"), "{err}");
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn abort_removes_everything_and_closes_the_sink() {
        let blob = compress(&sample_tar(), Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut sink = Sink::new(config(tmp.path(), &blob, pipelined)).unwrap();
            stream(&mut sink, &blob[..blob.len() / 2], 1000).unwrap();
            assert_eq!(names(tmp.path()).len(), 2);
            sink.abort();
            assert_empty(tmp.path());
            sink.abort();
            for err in [sink.write(b"more").unwrap_err(), sink.finish().unwrap_err()] {
                assert!(matches!(err, Error::Closed("it was aborted")), "{err}");
                assert_eq!(err.slug(), "closed");
            }
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn dropping_an_unfinished_sink_removes_everything() {
        let blob = compress(&sample_tar(), Kind::Zstd);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let mut sink = Sink::new(config(tmp.path(), &blob, pipelined)).unwrap();
            stream(&mut sink, &blob[..blob.len() / 2], 1000).unwrap();
            drop(sink);
            assert_empty(tmp.path());
            // Dropped before any write, too.
            drop(Sink::new(config(tmp.path(), &blob, pipelined)).unwrap());
            assert_empty(tmp.path());
        }
    }

    #[test]
    fn a_finished_sink_is_closed() {
        let blob = compress(&sample_tar(), Kind::None);
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = Sink::new(config(tmp.path(), &blob, true)).unwrap();
        stream(&mut sink, &blob, 1 << 20).unwrap();
        sink.write(&[]).unwrap();
        sink.finish().unwrap();
        for err in [sink.write(b"x").unwrap_err(), sink.finish().unwrap_err()] {
            assert!(matches!(err, Error::Closed("it was finished")), "{err}");
        }
        sink.abort();
        drop(sink);
        // Closing after a commit leaves the committed files alone.
        assert_eq!(
            names(tmp.path()),
            BTreeSet::from(["blob".into(), "layer".into()])
        );
        assert_eq!(fs::read(tmp.path().join("blob")).unwrap(), blob);
    }

    #[test]
    fn expected_diff_id_without_decompression_is_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let data = b"{}";
        let mut cfg = config(tmp.path(), data, true);
        cfg.decompress = false;
        cfg.unpack_dir = None;
        cfg.expected_diff_id = Some(sha256(data));
        let err = Sink::new(cfg).err().expect("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert_eq!(err.slug(), "invalid_argument");
        assert_empty(tmp.path());
    }

    #[test]
    fn a_config_blob_is_verified_and_stored_as_is() {
        // Looks like gzip, but a non-decompressing sink must not care.
        let data = b"\x1f\x8b\x08{\"architecture\":\"amd64\"}".to_vec();
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path(), &data, true);
        cfg.decompress = false;
        cfg.unpack_dir = None;
        let out = run(cfg.clone(), &data, 5).unwrap();
        assert_eq!(out.digest, sha256(&data));
        assert_eq!(out.size, data.len() as u64);
        assert!(out.diff_id.is_none() && out.uncompressed_size.is_none());
        assert!(out.compression.is_none() && out.stats.is_none());
        assert!(!out.unpack_existed);
        assert_eq!(fs::read(tmp.path().join("blob")).unwrap(), data);
        assert_eq!(names(tmp.path()), BTreeSet::from(["blob".into()]));

        let tmp = tempfile::tempdir().unwrap();
        cfg.blob_path = Some(tmp.path().join("blob"));
        cfg.expected_digest = sha256(b"other");
        cfg.expected_size = None;
        let err = run(cfg, &data, 5).unwrap_err();
        assert_eq!(err.slug(), "digest_mismatch", "{err}");
        assert_empty(tmp.path());
    }

    #[test]
    fn the_ratio_limit_stops_a_decompression_bomb() {
        let raw = zeros_tar(4 << 20);
        for kind in [Kind::Gzip, Kind::Zstd] {
            let blob = compress(&raw, kind);
            assert!(blob.len() * 100 < raw.len(), "{kind:?}: {}", blob.len());
            for pipelined in BOTH {
                let tmp = tempfile::tempdir().unwrap();
                let mut cfg = config(tmp.path(), &blob, pipelined);
                cfg.limits.max_ratio = 10.0;
                cfg.limits.ratio_grace = 64 << 10;
                let err = run(cfg.clone(), &blob, 4096).unwrap_err();
                match &err {
                    Error::RatioExceeded {
                        compressed,
                        uncompressed,
                        limit,
                    } => {
                        assert_eq!(*limit, 10.0);
                        assert!(*uncompressed > 10 * compressed, "{err}");
                        assert!(*compressed <= blob.len() as u64, "{err}");
                    }
                    other => panic!("{kind:?} pipelined={pipelined}: {other}"),
                }
                assert_eq!(err.slug(), "decompression_bomb");
                assert_empty(tmp.path());

                // Within the grace, or with the check off, the same layer is fine.
                cfg.limits.ratio_grace = raw.len() as u64;
                run(cfg.clone(), &blob, 4096).unwrap();
                fs::remove_dir_all(tmp.path().join("layer")).unwrap();
                fs::remove_file(tmp.path().join("blob")).unwrap();
                cfg.limits.ratio_grace = 0;
                cfg.limits.max_ratio = 0.0;
                run(cfg, &blob, 4096).unwrap();
            }
        }
    }

    #[test]
    fn an_existing_unpack_dir_is_kept() {
        let raw = sample_tar();
        let blob = compress(&raw, Kind::Gzip);
        for pipelined in BOTH {
            let tmp = tempfile::tempdir().unwrap();
            let layer = tmp.path().join("layer");
            fs::create_dir(&layer).unwrap();
            fs::write(layer.join("theirs"), b"another writer won").unwrap();
            let mut cfg = config(tmp.path(), &blob, pipelined);
            cfg.expected_diff_id = Some(sha256(&raw));
            let out = run(cfg, &blob, 4096).unwrap();
            assert!(out.unpack_existed);
            assert_eq!(names(&layer), BTreeSet::from(["theirs".into()]));
            assert_eq!(fs::read(tmp.path().join("blob")).unwrap(), blob);
            assert_eq!(
                names(tmp.path()),
                BTreeSet::from(["blob".into(), "layer".into()])
            );
        }
    }

    #[test]
    fn a_panicking_worker_is_an_internal_error_not_a_layer_fault() {
        let handle = std::thread::spawn(|| -> Result<WorkerOutput> {
            panic!("deliberate panic in a test worker");
        });
        let err = join(handle).err().expect("a panic is an error");
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert_eq!(err.slug(), "internal");
        assert!(err.to_string().contains("panicked"), "{err}");

        // A worker's own error passes through unchanged.
        let handle = std::thread::spawn(|| -> Result<WorkerOutput> {
            Err(Error::bad_tar("from the worker"))
        });
        assert_eq!(join(handle).err().unwrap().slug(), "bad_tar");
    }

    #[test]
    fn a_layer_can_be_kept_as_its_decompressed_tar() {
        let tar = sample_tar();
        let blob = compress(&tar, Kind::Gzip);
        for pipelined in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("layer.tar");
            let cfg = SinkConfig {
                unpack_dir: None,
                blob_path: None,
                decompressed_path: Some(out.clone()),
                expected_diff_id: Some(sha256(&tar)),
                ..config(dir.path(), &blob, pipelined)
            };
            let mut sink = Sink::new(cfg).unwrap();
            stream(&mut sink, &blob, 7).unwrap();
            assert!(!out.exists(), "visible only once verified");
            sink.finish().unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), tar);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

            // A wrong diff_id: nothing is left.
            let cfg = SinkConfig {
                unpack_dir: None,
                blob_path: None,
                decompressed_path: Some(dir.path().join("bad.tar")),
                expected_diff_id: Some(sha256(b"other")),
                ..config(dir.path(), &blob, pipelined)
            };
            let mut sink = Sink::new(cfg).unwrap();
            stream(&mut sink, &blob, 7).unwrap();
            assert!(sink.finish().is_err());
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
