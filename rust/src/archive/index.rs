//! `tar_index`: the members of an uncompressed tar file and where each one's
//! data starts, read from the headers alone. Data is seeked over, so a
//! multi-gigabyte `docker save` output is listed in milliseconds, and a
//! transport can then read one member with a positioned read.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{in_archive, sniff_file, too_many, Member, Sniffed};
use crate::decompress::Compression;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::untar::reader::TarReader;

/// Large enough that a run of small members costs one read, small enough
/// that reading one header after a long seek stays cheap.
const BUF: usize = 64 << 10;

/// Lists the members of the uncompressed tar at `path`. Extension headers are
/// bounded by `limits` as in the untar, and at most `max_members` are listed,
/// so a hostile archive costs bounded memory and time.
pub fn tar_index(path: &Path, max_members: u64, limits: &Limits) -> Result<Vec<Member>> {
    let Sniffed {
        mut file,
        compression,
        ..
    } = sniff_file(path)?;
    if compression != Compression::None {
        return Err(Error::InvalidArgument(format!(
            "{} is {}-compressed: tar_index reads only uncompressed tar files; \
             read it sequentially with TarStream",
            path.display(),
            compression.name()
        )));
    }
    file.rewind().map_err(|e| Error::io("seek", path, e))?;
    let input = Tracked::new(BufReader::with_capacity(BUF, file));
    index_stream(input, path, max_members, limits)
}

fn index_stream<R: Read + Seek>(
    input: Tracked<BufReader<R>>,
    path: &Path,
    max_members: u64,
    limits: &Limits,
) -> Result<Vec<Member>> {
    let mut tar = TarReader::new(input, limits.clone(), "tar");
    let mut members = Vec::new();
    while let Some(entry) = tar.next_entry().map_err(|e| in_archive(path, e))? {
        if members.len() as u64 >= max_members {
            return Err(too_many(max_members, path));
        }
        members.push(Member::from_entry(&entry, Some(tar.get_ref().position())));
        tar.seek_past_data().map_err(|e| in_archive(path, e))?;
    }
    // What follows the end marker is not looked at (docker save pads).
    Ok(members)
}

/// A buffered reader that knows its position, and seeks forward within its
/// buffer when it can (`BufReader::seek` would always drop the buffer).
struct Tracked<R> {
    inner: R,
    pos: u64,
}

impl<R> Tracked<R> {
    fn new(inner: R) -> Self {
        Tracked { inner, pos: 0 }
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

impl<R: BufRead> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }
}

impl<R: Read + Seek> Seek for Tracked<BufReader<R>> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Current(n) => {
                let pos = self.pos.checked_add_signed(n).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
                })?;
                self.inner.seek_relative(n)?;
                self.pos = pos;
            }
            other => self.pos = self.inner.seek(other)?,
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fs::File;
    use std::io::{Cursor, Write};
    use std::rc::Rc;

    use super::super::testdata::{gzip, header, pax_record, TarBuf, BLOCK};
    use super::super::MemberKind;
    use super::*;

    fn index_bytes(data: &[u8]) -> Result<Vec<Member>> {
        index_with(data, 1000, &Limits::default())
    }

    fn index_with(data: &[u8], max: u64, limits: &Limits) -> Result<Vec<Member>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tar");
        std::fs::write(&path, data).unwrap();
        tar_index(&path, max, limits)
    }

    fn summary(members: &[Member]) -> Vec<(&str, &str, u64, &str)> {
        members
            .iter()
            .map(|m| (m.name.as_str(), m.kind.name(), m.size, m.link.as_str()))
            .collect()
    }

    /// Built with the `tar` crate (GNU long names for long paths), then each
    /// file's bytes are read back at its offset.
    #[test]
    fn offsets_point_at_each_members_data() {
        let long = format!("{}/layer.tar", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(link) = link {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, name, data).unwrap();
        };
        add("manifest.json", tar::EntryType::Regular, b"[{}]", None);
        add("empty", tar::EntryType::Regular, b"", None);
        add("blobs/", tar::EntryType::Directory, b"", None);
        add(&long, tar::EntryType::Regular, &[7; 1500], None);
        add("sym", tar::EntryType::Symlink, b"", Some("manifest.json"));
        add("hard", tar::EntryType::Link, b"", Some("empty"));
        add("fifo", tar::EntryType::Fifo, b"", None);
        let data = b.into_inner().unwrap();
        let members = index_bytes(&data).unwrap();
        assert_eq!(
            summary(&members),
            vec![
                ("manifest.json", "file", 4, ""),
                ("empty", "file", 0, ""),
                ("blobs/", "dir", 0, ""),
                (long.as_str(), "file", 1500, ""),
                ("sym", "symlink", 0, "manifest.json"),
                ("hard", "hardlink", 0, "empty"),
                ("fifo", "other", 0, ""),
            ]
        );
        for m in &members {
            let at = m.offset.unwrap() as usize;
            assert_eq!(at % BLOCK, 0, "{m:?}");
            let content = &data[at..at + m.size as usize];
            match m.name.as_str() {
                "manifest.json" => assert_eq!(content, b"[{}]"),
                n if n == long => assert_eq!(content, &[7; 1500][..]),
                _ => assert!(content.is_empty()),
            }
        }
    }

    #[test]
    fn pax_and_gnu_long_names_and_links_are_applied() {
        let pax_name = format!("{}/pax", "p".repeat(300));
        let gnu_name = format!("{}/gnu", "g".repeat(300));
        let data = TarBuf::new()
            .pax(&[("path", pax_name.as_bytes())])
            .file("short", b"one")
            .long_name(gnu_name.as_bytes())
            .file("short2", b"two")
            .pax(&[("linkpath", b"../far/away")])
            .link("l", b'2', "near")
            .member(b"bad\xffname", b'0', b"")
            .finish();
        let members = index_bytes(&data).unwrap();
        assert_eq!(
            summary(&members),
            vec![
                (pax_name.as_str(), "file", 3, ""),
                (gnu_name.as_str(), "file", 3, ""),
                ("l", "symlink", 0, "../far/away"),
                ("bad\u{fffd}name", "file", 0, ""),
            ]
        );
        let at = members[1].offset.unwrap() as usize;
        assert_eq!(&data[at..at + 3], b"two");
    }

    #[test]
    fn sparse_files_and_devices_are_other() {
        let data = TarBuf::new()
            .pax(&[("GNU.sparse.realsize", b"10"), ("GNU.sparse.map", b"0,3")])
            .file("sparse", b"abc")
            .member(b"dev", b'3', b"")
            .file("after", b"z")
            .finish();
        let members = index_bytes(&data).unwrap();
        assert_eq!(
            summary(&members),
            vec![
                ("sparse", "other", 0, ""),
                ("dev", "other", 0, ""),
                ("after", "file", 1, "")
            ]
        );
    }

    #[test]
    fn what_follows_the_end_marker_is_ignored() {
        let mut data = TarBuf::new().file("a", b"x").finish();
        data.extend_from_slice(b"docker save padding, or anything else");
        assert_eq!(index_bytes(&data).unwrap().len(), 1);
        // As Go and GNU tar: a clean end between members is an end.
        let data = TarBuf::new().file("a", b"x").bytes();
        assert_eq!(index_bytes(&data).unwrap().len(), 1);
        // An archive with no members at all.
        assert!(index_bytes(&[0; 1024]).unwrap().is_empty());
    }

    #[test]
    fn a_truncated_member_is_refused() {
        let data = TarBuf::new().file("a", b"x").file("b", &[1; 3000]).bytes();
        // Cut inside the data, inside the padding, and inside a header.
        for cut in [BLOCK * 3 + 100, BLOCK * 3 + 3000 + 10, BLOCK * 2 + 10] {
            let err = index_bytes(&data[..cut]).unwrap_err();
            assert_eq!(err.slug(), "bad_tar", "cut {cut}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains("truncated") && msg.contains("archive.tar"),
                "{msg}"
            );
        }
    }

    #[test]
    fn compressed_input_is_refused_naming_the_compression() {
        let tar = TarBuf::new().file("a", b"x").finish();
        let err = index_bytes(&gzip(&tar)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("gzip-compressed")
                && msg.contains("TarStream")
                && msg.contains("archive.tar"),
            "{msg}"
        );
        let err = index_bytes(b"not a tar at all").unwrap_err();
        assert_eq!(err.slug(), "unsupported_compression", "{err}");
    }

    #[test]
    fn a_huge_pax_header_is_refused_without_reading_it() {
        // Claims 1 TiB of PAX records; only the header block is present.
        let mut h = header(b"././@PaxHeader", b'x', 0);
        super::super::testdata::set_size(&mut h, 1 << 40);
        let err = index_bytes(&TarBuf::new().raw(&h).finish()).unwrap_err();
        assert_eq!(err.slug(), "limit_exceeded", "{err}");
        assert!(err.to_string().contains("PAX header"), "{err}");

        // Present and just over a smaller limit.
        let limits = Limits {
            max_header_bytes: 4096,
            ..Limits::default()
        };
        let big = pax_record("comment", &[b'c'; 5000]);
        let data = TarBuf::new()
            .member(b"././@PaxHeader", b'x', &big)
            .file("a", b"x")
            .finish();
        let err = index_with(&data, 10, &limits).unwrap_err();
        assert_eq!(err.slug(), "limit_exceeded", "{err}");
        // Long GNU names are capped the same way.
        let data = TarBuf::new()
            .long_name(&[b'n'; 5000])
            .file("a", b"")
            .finish();
        let err = index_with(&data, 10, &limits).unwrap_err();
        assert!(err.to_string().contains("GNU long name"), "{err}");
    }

    #[test]
    fn names_over_the_path_limit_and_too_many_members_are_refused() {
        let name = "n/".repeat(3000);
        let data = TarBuf::new()
            .pax(&[("path", name.as_bytes())])
            .file("x", b"")
            .finish();
        let err = index_bytes(&data).unwrap_err();
        assert_eq!(err.slug(), "unsafe_path", "{err}");

        let mut b = TarBuf::new();
        for i in 0..5 {
            b = b.file(&format!("f{i}"), b"");
        }
        let data = b.finish();
        assert_eq!(index_with(&data, 5, &Limits::default()).unwrap().len(), 5);
        let err = index_with(&data, 4, &Limits::default()).unwrap_err();
        assert_eq!(err.slug(), "limit_exceeded");
        let msg = err.to_string();
        assert!(
            msg.contains("more than 4 archive members") && msg.contains("archive.tar"),
            "{msg}"
        );
    }

    /// Counts the bytes actually read from the file.
    struct Counting<R> {
        inner: R,
        read: Rc<Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    /// A 4 GiB member (a hole on disk) is listed by reading a few KiB.
    #[test]
    fn data_is_seeked_over_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tar");
        let size: u64 = 4 << 30;
        let mut f = File::create(&path).unwrap();
        f.write_all(&header(b"big.layer", b'0', size)).unwrap();
        f.seek(SeekFrom::Current(size as i64)).unwrap();
        f.write_all(&TarBuf::new().file("after", b"tail").finish())
            .unwrap();
        drop(f);
        let read = Rc::new(Cell::new(0));
        let file = Counting {
            inner: File::open(&path).unwrap(),
            read: read.clone(),
        };
        let input = Tracked::new(BufReader::with_capacity(BUF, file));
        let members = index_stream(input, &path, 10, &Limits::default()).unwrap();
        assert_eq!(
            summary(&members),
            vec![("big.layer", "file", size, ""), ("after", "file", 4, "")]
        );
        assert_eq!(members[1].offset, Some(BLOCK as u64 * 2 + size));
        assert!(read.get() <= 3 * BUF as u64, "{} bytes read", read.get());
        // And through the public entry point, which sniffs first.
        assert_eq!(tar_index(&path, 10, &Limits::default()).unwrap(), members);
    }

    #[test]
    fn seeking_reports_what_reading_reports() {
        let data = TarBuf::new()
            .pax(&[("path", "x".repeat(200).as_bytes())])
            .file("a", &[3; 700])
            .file("b", b"")
            .dir("d/")
            .long_name(&[b'L'; 300])
            .file("c", &[4; 513])
            .finish();
        let read_all = |seek: bool| {
            let mut tar = TarReader::new(Cursor::new(&data[..]), Limits::default(), "tar");
            let mut seen = Vec::new();
            while let Some(e) = tar.next_entry().unwrap() {
                seen.push((e.path.clone(), e.size, tar.get_ref().position()));
                if seek {
                    tar.seek_past_data().unwrap();
                }
            }
            seen
        };
        assert_eq!(read_all(true), read_all(false));
        let idx = index_bytes(&data).unwrap();
        let offsets: Vec<_> = read_all(false).iter().map(|s| Some(s.2)).collect();
        assert_eq!(idx.iter().map(|m| m.offset).collect::<Vec<_>>(), offsets);
        assert!(idx.iter().all(|m| m.kind != MemberKind::Other));
    }
}
