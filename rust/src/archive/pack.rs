//! `write_tar`: a new uncompressed tar (`docker save` / `oci-archive` output)
//! with deterministic headers, written beside its destination and renamed
//! into place, so a failure leaves nothing visible.
//!
//! Headers are ustar: mode 0644 (files) or 0755 (directories), uid/gid 0,
//! mtime 0, no user or group names. A PAX header is added only for what ustar
//! cannot hold: a name too long for its name and prefix fields, a size of
//! 8 GiB or more. Names are written as given (UTF-8), never cleaned.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use crate::atomic::StagedFile;
use crate::error::{Error, Result};

const BLOCK: usize = 512;
/// Largest size the 11 octal digits of a ustar size field hold.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;
/// Longest name written: the untar (and Linux) refuse longer ones.
const MAX_NAME: usize = 4096;

pub enum PackContent {
    /// Written as a regular file with these bytes; empty bytes under a name
    /// ending in "/" make a directory.
    Bytes(Vec<u8>),
    /// A regular file whose content is copied (its size taken when opened).
    File(PathBuf),
}

pub struct PackEntry {
    pub name: String,
    pub content: PackContent,
}

/// Writes `entries`, in order, as a tar at `dest`. Every name is checked
/// before anything is created.
pub fn write_tar(dest: &Path, entries: &[PackEntry], durable: bool) -> Result<()> {
    for entry in entries {
        check_entry(entry)?;
    }
    let staged = StagedFile::create(dest)?;
    let mut out = BufWriter::with_capacity(1 << 20, staged.handle()?);
    let werr = |e: io::Error| Error::io("write", dest, e);
    for entry in entries {
        let name = entry.name.as_bytes();
        match &entry.content {
            PackContent::Bytes(data) if entry.name.ends_with('/') => {
                debug_assert!(data.is_empty());
                out.write_all(&headers(name, b'5', 0o755, 0))
                    .map_err(werr)?;
            }
            PackContent::Bytes(data) => {
                let size = data.len() as u64;
                out.write_all(&headers(name, b'0', 0o644, size))
                    .map_err(werr)?;
                out.write_all(data).map_err(werr)?;
                out.write_all(&[0; BLOCK][..pad(size)]).map_err(werr)?;
            }
            PackContent::File(path) => {
                let src = File::open(path).map_err(|e| Error::io("open", path, e))?;
                let meta = src.metadata().map_err(|e| Error::io("inspect", path, e))?;
                if !meta.is_file() {
                    return Err(Error::InvalidArgument(format!(
                        "{} (for archive member {:?}) is not a regular file",
                        path.display(),
                        entry.name
                    )));
                }
                let size = meta.len();
                out.write_all(&headers(name, b'0', 0o644, size))
                    .map_err(werr)?;
                out.flush().map_err(werr)?;
                copy_exact(&src, path, out.get_ref(), size, dest)?;
                out.write_all(&[0; BLOCK][..pad(size)]).map_err(werr)?;
            }
        }
    }
    // End of archive: two zero blocks.
    out.write_all(&[0; 2 * BLOCK]).map_err(werr)?;
    out.flush().map_err(werr)?;
    drop(out);
    staged.commit(durable)
}

fn check_entry(entry: &PackEntry) -> Result<()> {
    let name = &entry.name;
    let refuse = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "archive member name {name:?} {why}"
        )))
    };
    if name.is_empty() {
        return refuse("is empty");
    }
    if name.contains('\0') {
        return refuse("contains a NUL byte");
    }
    if name.starts_with('/') {
        return refuse("is absolute");
    }
    if name.split('/').any(|c| c == "..") {
        return refuse("contains a \"..\" component");
    }
    if name.len() > MAX_NAME {
        return refuse(&format!("is longer than {MAX_NAME} bytes"));
    }
    if name.ends_with('/') && !matches!(&entry.content, PackContent::Bytes(b) if b.is_empty()) {
        return refuse("ends in \"/\" (a directory) but has content");
    }
    Ok(())
}

/// The header block(s) of one member: a PAX header first when ustar cannot
/// hold its name or size.
fn headers(name: &[u8], flag: u8, mode: u32, size: u64) -> Vec<u8> {
    let split = split_name(name);
    let mut records = Vec::new();
    if split.is_none() {
        records.extend(pax_record("path", name));
    }
    if size > USTAR_MAX_SIZE {
        records.extend(pax_record("size", size.to_string().as_bytes()));
    }
    let mut out = Vec::with_capacity(3 * BLOCK + records.len());
    if !records.is_empty() {
        let len = records.len() as u64;
        out.extend_from_slice(&ustar(b"", b"././@PaxHeader", b'x', 0o644, len));
        out.extend_from_slice(&records);
        out.resize(out.len() + pad(len), 0);
    }
    let (prefix, short) = split.unwrap_or((b"", &name[..name.len().min(100)]));
    let field_size = if size > USTAR_MAX_SIZE { 0 } else { size };
    out.extend_from_slice(&ustar(prefix, short, flag, mode, field_size));
    out
}

/// Splits a name into ustar's prefix (155 bytes) and name (100 bytes) fields
/// at a "/"; `None` when it cannot be.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((b"", name));
    }
    (0..name.len().min(156))
        .filter(|&i| name[i] == b'/')
        .map(|i| (&name[..i], &name[i + 1..]))
        .find(|(_, rest)| !rest.is_empty() && rest.len() <= 100)
}

fn ustar(prefix: &[u8], name: &[u8], flag: u8, mode: u32, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0); // mtime
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0); // devmajor
    octal(&mut h[337..345], 0); // devminor
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// Zero-padded octal digits and a closing NUL, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
    field[digits] = 0;
}

/// "<len> key=value\n", where len counts the whole record, itself included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn pad(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// Appends exactly `size` bytes of `src` to `out` (at its file offset), in
/// the kernel where it can (copy_file_range; a reflink on some filesystems).
fn copy_exact(src: &File, src_path: &Path, out: &File, size: u64, dest: &Path) -> Result<()> {
    let mut off = 0u64;
    while off < size {
        let want = usize::try_from(size - off)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off), out, None, want) {
            Ok(0) => return Err(shrank(src_path, size, off)),
            Ok(_) => {}
            // Filesystems (or kernels) without it: copy through a buffer.
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_buffered(src, src_path, out, off, size, dest)
            }
            Err(e) => return Err(Error::io("copy", src_path, e.into())),
        }
    }
    Ok(())
}

fn copy_buffered(
    src: &File,
    src_path: &Path,
    mut out: &File,
    mut off: u64,
    size: u64,
    dest: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; (1 << 20).min(size - off) as usize];
    while off < size {
        let want = usize::try_from(size - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = src
            .read_at(&mut buf[..want], off)
            .map_err(|e| Error::io("read", src_path, e))?;
        if n == 0 {
            return Err(shrank(src_path, size, off));
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write", dest, e))?;
        off += n as u64;
    }
    Ok(())
}

fn shrank(path: &Path, size: u64, got: u64) -> Error {
    Error::io(
        "copy",
        path,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file shrank while it was copied: {size} bytes when opened, {got} read"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;
    use crate::archive::{tar_index, MemberKind};
    use crate::limits::Limits;
    use crate::untar::reader::TarReader;

    fn bytes(name: &str, data: &[u8]) -> PackEntry {
        PackEntry {
            name: name.into(),
            content: PackContent::Bytes(data.to_vec()),
        }
    }

    fn from_file(name: &str, path: &Path) -> PackEntry {
        PackEntry {
            name: name.into(),
            content: PackContent::File(path.to_path_buf()),
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip_through_the_tar_crate_and_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer.bin");
        let layer_data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&layer, &layer_data).unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let split = format!("{}/{}", "s".repeat(120), "t".repeat(90));
        let pax = format!("{}/{}", "p".repeat(20), "q".repeat(200));
        let entries = vec![
            bytes("blobs/", b""),
            bytes("blobs/sha256/", b""),
            from_file("blobs/sha256/layer", &layer),
            bytes("manifest.json", b"[{\"Config\":\"c.json\"}]"),
            bytes("zero", b""),
            from_file("empty-copy", &empty),
            bytes(&split, b"split"),
            bytes(&pax, b"pax"),
            bytes(&format!("{pax}/"), b""),
            bytes("ünïcödé", b"u"),
        ];
        let dest = dir.path().join("out.tar");
        write_tar(&dest, &entries, true).unwrap();
        let data = std::fs::read(&dest).unwrap();

        let mut archive = tar::Archive::new(&data[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            seen.push((name, h.entry_type(), h.mode().unwrap(), content));
        }
        let want: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(seen.iter().map(|s| s.0.clone()).collect::<Vec<_>>(), want);
        assert_eq!((seen[0].1, seen[0].2), (tar::EntryType::Directory, 0o755));
        assert_eq!((seen[2].1, seen[2].2), (tar::EntryType::Regular, 0o644));
        assert_eq!(seen[2].3, layer_data);
        assert_eq!(seen[6].3, b"split");
        assert_eq!(seen[8].1, tar::EntryType::Directory);

        let index = tar_index(&dest, 100, &Limits::default()).unwrap();
        assert_eq!(
            index.iter().map(|m| &m.name).collect::<Vec<_>>(),
            want.iter().collect::<Vec<_>>()
        );
        let layer_member = &index[2];
        let at = layer_member.offset.unwrap() as usize;
        assert_eq!(&data[at..at + layer_data.len()], &layer_data[..]);
        assert_eq!(index[8].kind, MemberKind::Dir);
        // Only the over-long name needed a PAX header.
        assert_eq!(
            data.windows(14).filter(|w| w == b"././@PaxHeader").count(),
            2
        );
        // The end: two zero blocks, nothing more.
        assert!(data.len().is_multiple_of(BLOCK));
        assert!(data[data.len() - 2 * BLOCK..].iter().all(|&b| b == 0));
    }

    #[test]
    fn output_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [bytes("a/", b""), bytes("a/b", b"hello")];
        let (one, two) = (dir.path().join("1.tar"), dir.path().join("2.tar"));
        write_tar(&one, &entries, false).unwrap();
        write_tar(&two, &entries, false).unwrap();
        let data = std::fs::read(&one).unwrap();
        assert_eq!(data, std::fs::read(&two).unwrap());
        assert_eq!(data.len(), 3 * BLOCK + 2 * BLOCK);
        assert_eq!(&data[100..108], b"0000755\0");
        assert_eq!(&data[BLOCK + 100..BLOCK + 108], b"0000644\0");
        assert_eq!(&data[BLOCK + 257..BLOCK + 265], b"ustar\x0000");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let long = "x".repeat(5000);
        let bad = [
            bytes("/etc/passwd", b"x"),
            bytes("a/../../b", b"x"),
            bytes("..", b"x"),
            bytes("", b"x"),
            bytes("a\0b", b"x"),
            bytes("dir/", b"not empty"),
            from_file("dir/", &file),
            bytes(&long, b""),
        ];
        for entry in bad {
            let entries = [bytes("ok", b"fine"), entry];
            let err = write_tar(&dest, &entries, false).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            assert_eq!(listing(dir.path()), vec!["f"]);
        }
        // ".." inside a component is just a name.
        write_tar(&dest, &[bytes("a..b/..c", b"x")], false).unwrap();
    }

    #[test]
    fn a_failure_part_way_leaves_nothing_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        std::fs::write(&dest, b"previous").unwrap();
        let entries = [
            bytes("a", b"x"),
            from_file("b", &dir.path().join("missing")),
        ];
        let err = write_tar(&dest, &entries, true).unwrap_err();
        assert!(matches!(err, Error::Io { op: "open", .. }), "{err}");
        let entries = [from_file("d", dir.path())];
        let err = write_tar(&dest, &entries, true).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(listing(dir.path()), vec!["out.tar"]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
        write_tar(&dest, &[bytes("new", b"")], true).unwrap();
        assert_eq!(
            tar_index(&dest, 10, &Limits::default()).unwrap()[0].name,
            "new"
        );
    }

    #[test]
    fn a_source_shorter_than_its_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, [1u8; 1000]).unwrap();
        let src = File::open(&src_path).unwrap();
        let out = File::create(dir.path().join("out")).unwrap();
        let err = copy_exact(&src, &src_path, &out, 4000, &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        let err =
            copy_buffered(&src, &src_path, &out, 0, 4000, &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
    }

    /// Sizes ustar cannot hold get a PAX size record; the reader sees them.
    #[test]
    fn huge_sizes_and_long_names_get_pax_records_the_reader_understands() {
        let size = (8u64 << 30) + 1;
        let name = format!("{}/layer.tar", "n".repeat(300));
        let mut data = headers(name.as_bytes(), b'0', 0o644, size);
        data.extend_from_slice(&headers(b"short", b'0', 0o644, 1));
        let mut tar = TarReader::new(Cursor::new(&data[..]), Limits::default(), "tar");
        let e = tar.next_entry().unwrap().unwrap();
        assert_eq!((e.path, e.size), (name.into_bytes(), size));
        for n in [1usize, 8, 9, 98, 99, 100, 997, 998, 999, 1000] {
            let rec = pax_record("k", &vec![b'v'; n]);
            let len: usize =
                std::str::from_utf8(&rec[..rec.iter().position(|&b| b == b' ').unwrap()])
                    .unwrap()
                    .parse()
                    .unwrap();
            assert_eq!(len, rec.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn names_split_into_prefix_and_name_where_they_can() {
        assert_eq!(split_name(b"short"), Some((&b""[..], &b"short"[..])));
        let n = format!("{}/{}", "a".repeat(155), "b".repeat(100));
        assert_eq!(
            split_name(n.as_bytes()).map(|(p, r)| (p.len(), r.len())),
            Some((155, 100))
        );
        let n = format!("{}/{}", "a".repeat(156), "b".repeat(10));
        assert_eq!(split_name(n.as_bytes()), None);
        let n = format!("a/{}", "b".repeat(101));
        assert_eq!(split_name(n.as_bytes()), None);
        let n = format!("{}/", "d".repeat(120));
        assert_eq!(
            split_name(n.as_bytes()),
            None,
            "the name part may not be empty"
        );
    }
}
