//! Tar header decoding: ustar, GNU and v7 headers, GNU long names, PAX
//! records (path, linkpath, size, uid, gid, mtime, xattrs, sparse maps) and
//! GNU sparse headers. Pure functions over 512-byte blocks; the stream
//! handling is in `reader.rs`.

use crate::error::{Error, Result};

pub const BLOCK: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// One data region of a sparse file: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

/// A fully decoded archive member (extension headers already applied).
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Timestamp,
    /// Bytes of data that follow the header in the archive.
    pub size: u64,
    /// Size of the file once extracted (larger than `size` for sparse files).
    pub real_size: u64,
    pub sparse: Option<Vec<Region>>,
    /// PAX 1.0 sparse files carry their map at the start of the data.
    pub sparse_map_in_data: bool,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Type flags that describe the *next* member rather than being one.
pub enum Extension {
    LongName,
    LongLink,
    PaxLocal,
    PaxGlobal,
}

pub enum Block {
    Member(Kind),
    Extension(Extension),
    /// GNU old-style sparse file ('S').
    GnuSparse,
}

pub fn checksum_ok(block: &[u8]) -> bool {
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block[..BLOCK].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Octal number, possibly padded with spaces or NULs; `None` when malformed.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = trim_nul(field);
    let text = text
        .iter()
        .position(|&b| b != b' ')
        .map_or(&text[text.len()..], |start| &text[start..]);
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let digits = &text[..end];
    if text[end..].iter().any(|&b| b != b' ') {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

/// A numeric field: octal, or GNU base-256 when the high bit of the first byte is set.
fn parse_number(field: &[u8], name: &str) -> Result<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] == 0xff {
            return Err(Error::bad_tar(format!("negative {name} in header")));
        }
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| Error::bad_tar(format!("{name} overflows 64 bits")))?;
        }
        return Ok(value);
    }
    parse_octal(field).ok_or_else(|| {
        Error::bad_tar(format!(
            "invalid {name} field {:?}",
            String::from_utf8_lossy(trim_nul(field))
        ))
    })
}

fn is_ustar(block: &[u8]) -> bool {
    &block[257..263] == b"ustar\0"
}

fn is_gnu(block: &[u8]) -> bool {
    &block[257..265] == b"ustar  \0"
}

pub fn classify(block: &[u8]) -> Result<Block> {
    let flag = block[156];
    Ok(match flag {
        b'0' | b'\0' | b'7' => {
            let name = trim_nul(&block[..100]);
            // v7 archives mark directories with a trailing slash only.
            if flag == b'\0' && name.ends_with(b"/") {
                Block::Member(Kind::Dir)
            } else {
                Block::Member(Kind::File)
            }
        }
        b'1' => Block::Member(Kind::Hardlink),
        b'2' => Block::Member(Kind::Symlink),
        b'3' => Block::Member(Kind::Char),
        b'4' => Block::Member(Kind::Block),
        b'5' => Block::Member(Kind::Dir),
        b'6' => Block::Member(Kind::Fifo),
        b'L' => Block::Extension(Extension::LongName),
        b'K' => Block::Extension(Extension::LongLink),
        b'x' | b'X' => Block::Extension(Extension::PaxLocal),
        b'g' => Block::Extension(Extension::PaxGlobal),
        b'S' => Block::GnuSparse,
        other => {
            return Err(Error::bad_tar(format!(
                "unsupported entry type {:?} for {:?}",
                other as char,
                String::from_utf8_lossy(trim_nul(&block[..100]))
            )))
        }
    })
}

/// The size field of any header (data bytes that follow it).
pub fn size_of(block: &[u8]) -> Result<u64> {
    parse_number(&block[124..136], "size")
}

/// Decodes a member header block into an `Entry` (before PAX/long-name overrides).
pub fn decode(block: &[u8], kind: Kind) -> Result<Entry> {
    let mut path = trim_nul(&block[..100]).to_vec();
    if is_ustar(block) {
        let prefix = trim_nul(&block[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&path);
            path = full;
        }
    }
    let size = size_of(block)?;
    let devices = matches!(kind, Kind::Char | Kind::Block);
    let device_field = |range: std::ops::Range<usize>, name: &str| -> Result<u32> {
        if !devices {
            return Ok(0);
        }
        let v = parse_number(&block[range], name)?;
        u32::try_from(v).map_err(|_| Error::bad_tar(format!("{name} {v} out of range")))
    };
    Ok(Entry {
        kind,
        path,
        link: trim_nul(&block[157..257]).to_vec(),
        mode: (parse_number(&block[100..108], "mode")? & 0o7777) as u32,
        uid: parse_number(&block[108..116], "uid")?,
        gid: parse_number(&block[116..124], "gid")?,
        mtime: Timestamp {
            secs: i64::try_from(parse_number(&block[136..148], "mtime")?).unwrap_or(i64::MAX),
            nanos: 0,
        },
        size,
        real_size: size,
        sparse: None,
        sparse_map_in_data: false,
        dev_major: device_field(329..337, "devmajor")?,
        dev_minor: device_field(337..345, "devminor")?,
        xattrs: Vec::new(),
    })
}

/// GNU old sparse map from the header itself: (regions, more blocks follow, real size).
pub fn gnu_sparse_header(block: &[u8]) -> Result<(Vec<Region>, bool, u64)> {
    if !is_gnu(block) {
        return Err(Error::bad_tar("sparse entry without a GNU header"));
    }
    let regions = sparse_regions(&block[386..482])?;
    let extended = block[482] != 0;
    let real_size = parse_number(&block[483..495], "realsize")?;
    Ok((regions, extended, real_size))
}

/// GNU sparse extension block: 21 regions then the "more follow" flag.
pub fn gnu_sparse_extension(block: &[u8]) -> Result<(Vec<Region>, bool)> {
    Ok((sparse_regions(&block[..504])?, block[504] != 0))
}

fn sparse_regions(area: &[u8]) -> Result<Vec<Region>> {
    let mut regions = Vec::new();
    for slot in area.chunks_exact(24) {
        if slot[0] == 0 {
            break;
        }
        regions.push(Region {
            offset: parse_number(&slot[..12], "sparse offset")?,
            len: parse_number(&slot[12..], "sparse length")?,
        });
    }
    Ok(regions)
}

/// Parses PAX extended header records ("<len> <key>=<value>\n").
pub fn pax_records(data: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| Error::bad_tar("PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > space + 1 && n <= rest.len())
            .ok_or_else(|| Error::bad_tar("PAX record with an invalid length"))?;
        let record = &rest[space + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or_else(|| Error::bad_tar("PAX record not terminated by a newline"))?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| Error::bad_tar("PAX record without '='"))?;
        records.push((&record[..eq], &record[eq + 1..]));
        rest = &rest[len..];
    }
    Ok(records)
}

pub fn pax_number(key: &[u8], value: &[u8]) -> Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::bad_tar(format!(
                "PAX {} is not a number: {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value)
            ))
        })
}

/// PAX time: decimal seconds with an optional fraction, possibly negative.
pub fn pax_time(value: &[u8]) -> Result<Timestamp> {
    let text = std::str::from_utf8(value).map_err(|_| Error::bad_tar("PAX mtime is not text"))?;
    let bad = || Error::bad_tar(format!("PAX mtime {text:?} is not a time"));
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let secs: i64 = whole.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut nanos: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    if negative {
        if nanos == 0 {
            return Ok(Timestamp {
                secs: -secs,
                nanos: 0,
            });
        }
        return Ok(Timestamp {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        });
    }
    Ok(Timestamp { secs, nanos })
}

/// "o,n,o,n,…" as used by PAX sparse 0.1 (GNU.sparse.map).
pub fn pax_sparse_map(value: &[u8]) -> Result<Vec<Region>> {
    let text = std::str::from_utf8(value).map_err(|_| Error::bad_tar("sparse map is not text"))?;
    let numbers: Vec<u64> = text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| Error::bad_tar("sparse map holds a non-number"))
        })
        .collect::<Result<_>>()?;
    if !numbers.len().is_multiple_of(2) {
        return Err(Error::bad_tar("sparse map has an odd number of values"));
    }
    Ok(numbers
        .chunks_exact(2)
        .map(|p| Region {
            offset: p[0],
            len: p[1],
        })
        .collect())
}

/// Checks that sparse regions are ordered, do not overlap, fit in the file and
/// add up to the data stored in the archive.
pub fn check_sparse(regions: &[Region], stored: u64, real_size: u64) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for r in regions {
        let r_end = r
            .offset
            .checked_add(r.len)
            .ok_or_else(|| Error::bad_tar("sparse region overflows"))?;
        if r.offset < end || r_end > real_size {
            return Err(Error::bad_tar(
                "sparse regions overlap or exceed the file size",
            ));
        }
        end = r_end;
        total += r.len;
    }
    if total != stored {
        return Err(Error::bad_tar(format!(
            "sparse map describes {total} bytes but the archive stores {stored}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"   644 \0"), Some(0o644));
        assert_eq!(parse_octal(b"\0\0\0"), Some(0));
        assert_eq!(parse_octal(b"64x"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        big[10] = 1;
        assert_eq!(parse_number(&big, "size").unwrap(), 256 + 5);
    }

    #[test]
    fn pax() {
        let data = b"30 mtime=1700000000.123456789\n20 path=a/very/long\n";
        let recs = pax_records(data).unwrap();
        assert_eq!(recs[1], (&b"path"[..], &b"a/very/long"[..]));
        let t = pax_time(recs[0].1).unwrap();
        assert_eq!((t.secs, t.nanos), (1_700_000_000, 123_456_789));
        let t = pax_time(b"-1.5").unwrap();
        assert_eq!((t.secs, t.nanos), (-2, 500_000_000));
        assert!(pax_records(b"99 path=x\n").is_err());
    }
}
