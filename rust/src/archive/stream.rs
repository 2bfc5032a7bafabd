//! `TarStream`: any tar file (uncompressed or gzip, zstd, bzip2, xz, sniffed),
//! read member by member with bounded headers, as `docker load` reads its input.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use super::{in_archive, sniff_file, stream_name, too_many, Member, MemberKind, Sniffed};
use crate::decompress::{self, Compression};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::untar::reader::TarReader;

const BUF: usize = 256 << 10;

pub struct TarStream {
    path: PathBuf,
    compression: Compression,
    tar: TarReader<Box<dyn BufRead + Send>>,
    max_members: u64,
    members: u64,
    /// Data bytes of the current member not yet read.
    left: u64,
    /// An error was returned: the position in the stream is unknown.
    failed: bool,
}

impl TarStream {
    pub fn open(path: &Path, max_members: u64, limits: &Limits) -> Result<Self> {
        let Sniffed {
            file,
            head,
            compression,
        } = sniff_file(path)?;
        // The sniffed head again, then the rest: no seek, so a pipe works too.
        let raw = BufReader::with_capacity(BUF, Cursor::new(head).chain(file));
        let input: Box<dyn BufRead + Send> = match compression {
            Compression::None => Box::new(raw),
            c => {
                let decoder = decompress::decoder(c, raw).map_err(|e| in_archive(path, e))?;
                Box::new(BufReader::with_capacity(BUF, decoder))
            }
        };
        Ok(TarStream {
            path: path.to_path_buf(),
            compression,
            tar: TarReader::new(input, limits.clone(), stream_name(compression)),
            max_members,
            members: 0,
            left: 0,
            failed: false,
        })
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The next member, skipping what is left of the current one's data;
    /// `None` at the end of the archive (what follows the end marker is ignored).
    pub fn next_member(&mut self) -> Result<Option<Member>> {
        self.check()?;
        let entry = match self.tar.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                self.left = 0;
                return Ok(None);
            }
            Err(e) => return Err(self.fail(e)),
        };
        if self.members >= self.max_members {
            return Err(self.fail(too_many(self.max_members, &self.path)));
        }
        self.members += 1;
        let member = Member::from_entry(&entry, None);
        // A sparse file's stored data is not its content: nothing to read.
        self.left = if member.kind == MemberKind::File {
            member.size
        } else {
            0
        };
        Ok(Some(member))
    }

    /// Up to `max` bytes of the current member's data, fewer only at its end;
    /// empty once it is all read. A member cut short is an error.
    pub fn read(&mut self, max: usize) -> Result<Vec<u8>> {
        self.check()?;
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(max);
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let chunk = match self.tar.data_chunk() {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.fail(e)),
            };
            let n = chunk.len().min(want - out.len());
            if n == 0 {
                return Err(self.fail(Error::Internal(
                    "the tar reader ran out of data it promised".into(),
                )));
            }
            out.extend_from_slice(&chunk[..n]);
            self.tar.consume_data(n);
        }
        self.left -= out.len() as u64;
        Ok(out)
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(Error::InvalidArgument(format!(
                "reading {} failed earlier; open it again to retry",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn fail(&mut self, err: Error) -> Error {
        self.failed = true;
        in_archive(&self.path, err)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::testdata::{gzip, header, TarBuf, BLOCK};
    use super::*;

    fn stream_of(data: &[u8]) -> (tempfile::TempDir, TarStream) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tar");
        std::fs::write(&path, data).unwrap();
        let s = TarStream::open(&path, 100, &Limits::default()).unwrap();
        (dir, s)
    }

    fn read_all(s: &mut TarStream, chunk: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let piece = s.read(chunk)?;
            if piece.is_empty() {
                return Ok(out);
            }
            assert!(piece.len() <= chunk);
            out.extend_from_slice(&piece);
        }
    }

    fn sample() -> Vec<u8> {
        TarBuf::new()
            .file("manifest.json", b"[]")
            .file("empty", b"")
            .dir("blobs/")
            .file(
                "blobs/big",
                &(0..100_000u32).map(|i| i as u8).collect::<Vec<_>>(),
            )
            .link("sym", b'2', "blobs/big")
            .file("last", b"tail")
            .finish()
    }

    fn every_compression(tar: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(tar).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(tar).unwrap();
        vec![
            ("none", tar.to_vec()),
            ("gzip", gzip(tar)),
            ("zstd", zstd::encode_all(tar, 1).unwrap()),
            ("bzip2", bz.finish().unwrap()),
            ("xz", xz.finish().unwrap()),
        ]
    }

    #[test]
    fn every_compression_reads_the_same_members_and_content() {
        let tar = sample();
        for (name, data) in every_compression(&tar) {
            let (_dir, mut s) = stream_of(&data);
            assert_eq!(s.compression().name(), name);
            let mut seen = Vec::new();
            while let Some(m) = s.next_member().unwrap() {
                assert_eq!(m.offset, None);
                let content = read_all(&mut s, 4096).unwrap();
                assert_eq!(content.len() as u64, m.size, "{name} {}", m.name);
                seen.push((m.name, m.kind.name(), content, m.link));
            }
            assert_eq!(seen.len(), 6, "{name}");
            assert_eq!(seen[0].2, b"[]");
            assert_eq!(seen[3].2[..4], [0, 1, 2, 3]);
            assert_eq!(seen[4].1, "symlink");
            assert_eq!(seen[4].3, "blobs/big");
            assert_eq!(seen[5].2, b"tail");
            // The end is sticky.
            assert!(s.next_member().unwrap().is_none());
            assert!(s.read(10).unwrap().is_empty());
        }
    }

    #[test]
    fn members_read_partly_or_not_at_all_are_skipped() {
        for (name, data) in every_compression(&sample()) {
            let (_dir, mut s) = stream_of(&data);
            let m = s.next_member().unwrap().unwrap();
            assert_eq!(s.read(1).unwrap(), b"[");
            assert_eq!(m.name, "manifest.json");
            for _ in 0..2 {
                s.next_member().unwrap().unwrap(); // empty, blobs/
            }
            let big = s.next_member().unwrap().unwrap();
            assert_eq!(big.size, 100_000);
            assert_eq!(s.read(3).unwrap(), [0, 1, 2]);
            assert_eq!(s.read(2).unwrap(), [3, 4]);
            let sym = s.next_member().unwrap().unwrap();
            assert!(
                s.read(100).unwrap().is_empty(),
                "{name}: a symlink has no data"
            );
            assert_eq!(sym.kind, MemberKind::Symlink);
            let last = s.next_member().unwrap().unwrap();
            assert_eq!(
                (last.name.as_str(), s.read(1 << 20).unwrap()),
                ("last", b"tail".to_vec())
            );
            assert!(s.next_member().unwrap().is_none());
        }
    }

    #[test]
    fn trailing_garbage_after_the_end_marker_is_ignored() {
        let mut tar = TarBuf::new().file("a", b"x").finish();
        tar.extend_from_slice(&[0xab; 3000]);
        for (_, data) in every_compression(&tar) {
            let (_dir, mut s) = stream_of(&data);
            assert_eq!(s.next_member().unwrap().unwrap().name, "a");
            assert!(s.next_member().unwrap().is_none());
        }
    }

    #[test]
    fn a_member_cut_short_is_truncated_and_the_stream_stays_failed() {
        let tar = TarBuf::new().file("a", b"x").file("b", &[5; 5000]).bytes();
        let cut = &tar[..BLOCK * 3 + 2000];
        for (name, data) in every_compression(cut) {
            let (_dir, mut s) = stream_of(&data);
            s.next_member().unwrap().unwrap();
            assert_eq!(s.next_member().unwrap().unwrap().size, 5000);
            let err = read_all(&mut s, 1024).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("truncated") && msg.contains("archive.tar"),
                "{name}: {msg}"
            );
            let again = s.next_member().unwrap_err();
            assert!(again.to_string().contains("failed earlier"), "{again}");
        }
        // A compressed stream cut inside the compressed data.
        let whole = gzip(&sample());
        let (_dir, mut s) = stream_of(&whole[..whole.len() / 2]);
        let err = loop {
            match s.next_member() {
                Ok(Some(_)) => {
                    if let Err(e) = read_all(&mut s, 1 << 16) {
                        break e;
                    }
                }
                Ok(None) => panic!("a cut gzip stream read to its end"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("truncated"), "{err}");
        // Skipping (not reading) a cut member fails the same way.
        let (_dir, mut s) = stream_of(cut);
        s.next_member().unwrap();
        s.next_member().unwrap();
        let err = s.next_member().unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn headers_and_member_counts_are_bounded() {
        let mut h = header(b"././@PaxHeader", b'x', 0);
        super::super::testdata::set_size(&mut h, 1 << 40);
        let tar = TarBuf::new().raw(&h).finish();
        for (name, data) in every_compression(&tar) {
            let (_dir, mut s) = stream_of(&data);
            let err = s.next_member().unwrap_err();
            assert_eq!(err.slug(), "limit_exceeded", "{name}: {err}");
        }
        let mut b = TarBuf::new();
        for i in 0..3 {
            b = b.file(&format!("f{i}"), b"x");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.tar");
        std::fs::write(&path, gzip(&b.finish())).unwrap();
        let mut s = TarStream::open(&path, 2, &Limits::default()).unwrap();
        s.next_member().unwrap();
        s.next_member().unwrap();
        let err = s.next_member().unwrap_err();
        assert!(
            err.to_string().contains("more than 2 archive members"),
            "{err}"
        );
    }

    #[test]
    fn unknown_formats_and_missing_files_are_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lz4");
        std::fs::write(&path, [0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0]).unwrap();
        let err = TarStream::open(&path, 10, &Limits::default())
            .err()
            .unwrap();
        assert_eq!(err.slug(), "unsupported_compression");
        assert!(
            err.to_string().contains("lz4") && err.to_string().contains("x.lz4"),
            "{err}"
        );
        let err = TarStream::open(&dir.path().join("nope"), 10, &Limits::default())
            .err()
            .unwrap();
        assert_eq!(err.slug(), "io");
    }
}
