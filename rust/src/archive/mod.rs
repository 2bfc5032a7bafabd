//! Whole-archive access for the archive transports (docker-archive:,
//! oci-archive:, docker-daemon:): list an uncompressed tar by seeking over its
//! data (`index`), read any tar member by member (`stream`), write a small
//! deterministic tar (`pack`).
//!
//! Reading goes through the untar's hardened `TarReader`, so PAX records, GNU
//! long names, sparse maps and member counts are bounded exactly as for layers.
//! Unlike the untar, readers here are lenient about what follows the
//! end-of-archive marker (`docker save` pads its output), as Go's archive/tar is.

pub mod index;
pub mod pack;
pub mod stream;

#[cfg(test)]
mod testdata;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::decompress::{self, Compression, SNIFF_LEN};
use crate::error::{Error, Result};
use crate::untar::header::{self, Entry, Kind};

pub use index::tar_index;
pub use pack::{write_tar, PackContent, PackEntry};
pub use stream::TarStream;

/// What a member is, as the transports need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, FIFOs and sparse files: nothing a transport reads.
    Other,
}

impl MemberKind {
    pub fn name(self) -> &'static str {
        match self {
            MemberKind::File => "file",
            MemberKind::Dir => "dir",
            MemberKind::Symlink => "symlink",
            MemberKind::Hardlink => "hardlink",
            MemberKind::Other => "other",
        }
    }
}

/// One archive member, its name as stored (not cleaned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// UTF-8, invalid bytes replaced by U+FFFD.
    pub name: String,
    pub kind: MemberKind,
    /// Data bytes (0 for anything but a regular, non-sparse file).
    pub size: u64,
    /// Where the data starts in the uncompressed archive, when known.
    pub offset: Option<u64>,
    /// Target of a symlink or hardlink, else empty.
    pub link: String,
}

impl Member {
    fn from_entry(entry: &Entry, offset: Option<u64>) -> Member {
        let kind = match entry.kind {
            Kind::File if entry.sparse.is_some() => MemberKind::Other,
            Kind::File => MemberKind::File,
            Kind::Dir => MemberKind::Dir,
            Kind::Symlink => MemberKind::Symlink,
            Kind::Hardlink => MemberKind::Hardlink,
            Kind::Char | Kind::Block | Kind::Fifo => MemberKind::Other,
        };
        let link = match kind {
            MemberKind::Symlink | MemberKind::Hardlink => {
                String::from_utf8_lossy(&entry.link).into_owned()
            }
            _ => String::new(),
        };
        Member {
            name: String::from_utf8_lossy(&entry.path).into_owned(),
            kind,
            size: if kind == MemberKind::File {
                entry.size
            } else {
                0
            },
            offset,
            link,
        }
    }
}

/// An archive file opened and sniffed: `head` holds its first bytes, already
/// read from `file`.
pub struct Sniffed {
    pub file: File,
    pub head: Vec<u8>,
    pub compression: Compression,
}

/// Opens `path` and identifies its format from the first block. A block with
/// a valid tar checksum is a tar whatever its first bytes (a member named
/// "BZh..." is not bzip2); otherwise the layer sniffing decides. Nothing is
/// seeked, so a pipe can be read too.
pub fn sniff_file(path: &Path) -> Result<Sniffed> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut file)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", path, e))?;
    let compression = if head.len() == SNIFF_LEN && header::checksum_ok(&head) {
        Compression::None
    } else {
        decompress::sniff(&head).map_err(|e| in_archive(path, e))?
    };
    Ok(Sniffed {
        file,
        head,
        compression,
    })
}

/// The format of the archive at `path`: "none", "gzip", "zstd", "bzip2" or "xz".
pub fn sniff_archive(path: &Path) -> Result<&'static str> {
    sniff_file(path).map(|s| s.compression.name())
}

/// Names the archive in an error about its content.
fn in_archive(path: &Path, err: Error) -> Error {
    let at = path.display();
    match err {
        Error::BadTar(m) => Error::BadTar(format!("{at}: {m}")),
        Error::LimitExceeded(m) => Error::LimitExceeded(format!("{m}, in {at}")),
        Error::UnsafePath { path, reason } => Error::UnsafePath {
            path,
            reason: format!("{reason}, in {at}"),
        },
        Error::UnsupportedCompression { found } => Error::UnsupportedCompression {
            found: format!("{found} in {at}"),
        },
        Error::Decompress { format, source } => {
            // A compressed archive cut short: say "truncated", as for a plain one.
            let what = if source.kind() == io::ErrorKind::UnexpectedEof {
                "truncated archive: "
            } else {
                ""
            };
            Error::Decompress {
                format,
                source: io::Error::new(source.kind(), format!("{at}: {what}{source}")),
            }
        }
        other => other,
    }
}

/// The name used in messages about the uncompressed stream of a format.
fn stream_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "tar",
        other => other.name(),
    }
}

fn too_many(max_members: u64, path: &Path) -> Error {
    Error::LimitExceeded(format!(
        "more than {max_members} archive members, in {}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::testdata::{self, header, TarBuf};
    use super::*;

    #[test]
    fn sniffing_names_each_format_and_prefers_a_valid_tar_header() {
        let dir = tempfile::tempdir().unwrap();
        let tar = TarBuf::new().file("a", b"x").finish();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("none", tar.clone()),
            ("gzip", testdata::gzip(&tar)),
            ("zstd", zstd::encode_all(&tar[..], 1).unwrap()),
            ("none", vec![0; 1024]),
            // A tar whose first member is named like bzip2's magic is a tar.
            ("none", TarBuf::new().file("BZh91AY", b"x").finish()),
        ];
        for (i, (want, data)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("a{i}"));
            std::fs::write(&p, data).unwrap();
            assert_eq!(sniff_archive(&p).unwrap(), want, "case {i}");
        }
        let p = dir.path().join("zip");
        std::fs::write(&p, b"PK\x03\x04 and then some").unwrap();
        let err = sniff_archive(&p).unwrap_err();
        assert_eq!(err.slug(), "unsupported_compression");
        let msg = err.to_string();
        assert!(
            msg.contains("zip") && msg.contains(&*p.to_string_lossy()),
            "{msg}"
        );
        let missing = sniff_archive(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, Error::Io { op: "open", .. }), "{missing}");
        // A header that does not add up is not a tar.
        let mut bad = header(b"a", b'0', 0);
        bad[148] = b'9';
        std::fs::write(&p, [&bad[..], &[0; 1024]].concat()).unwrap();
        assert_eq!(
            sniff_archive(&p).unwrap_err().slug(),
            "unsupported_compression"
        );
    }

    #[test]
    fn members_are_reported_by_kind_with_sizes_only_for_files() {
        let mut e = header::decode(&header(b"dev", b'3', 0), Kind::Char).unwrap();
        e.size = 7;
        let m = Member::from_entry(&e, Some(512));
        assert_eq!(
            (m.kind, m.size, m.link.as_str()),
            (MemberKind::Other, 0, "")
        );
        let mut e = header::decode(&header(b"l", b'2', 0), Kind::Symlink).unwrap();
        e.link = b"tar\xffget".to_vec();
        let m = Member::from_entry(&e, None);
        assert_eq!(
            (m.kind.name(), m.link.as_str()),
            ("symlink", "tar\u{fffd}get")
        );
    }
}
