//! Pull-style tar stream reader: yields decoded entries and lends out their
//! data straight from the underlying buffer (no copy). Extension headers are
//! bounded by `Limits`, so a hostile long-name or PAX member cannot exhaust
//! memory.

use std::io::{BufRead, ErrorKind, Seek, SeekFrom};

use super::header::{self, Block, Entry, Extension, Kind, Region, BLOCK};
use crate::error::{from_io, Error, Result};
use crate::limits::Limits;

pub struct TarReader<R: BufRead> {
    inner: R,
    /// Data bytes of the current entry not yet handed out.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    ended: bool,
    limits: Limits,
    format: &'static str,
}

#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl<R: BufRead> TarReader<R> {
    /// `format` names the outer compression, for error messages about the stream.
    pub fn new(inner: R, limits: Limits, format: &'static str) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            ended: false,
            limits,
            format,
        }
    }

    fn io(&self, err: std::io::Error) -> Error {
        from_io(err, self.format)
    }

    /// Reads one block; `Ok(false)` at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            let buf = self.inner.fill_buf().map_err(|e| from_io(e, self.format))?;
            if buf.is_empty() {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(Error::bad_tar(
                    "truncated archive: the stream ends inside a header",
                ));
            }
            let n = buf.len().min(BLOCK - filled);
            block[filled..filled + n].copy_from_slice(&buf[..n]);
            self.inner.consume(n);
            filled += n;
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<()> {
        while n > 0 {
            let buf = self.inner.fill_buf().map_err(|e| from_io(e, self.format))?;
            if buf.is_empty() {
                return Err(Error::bad_tar(format!(
                    "truncated archive: the stream ends inside {what}"
                )));
            }
            let k = (buf.len() as u64).min(n) as usize;
            self.inner.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads a whole extension member (long name, PAX), bounded by the limits.
    fn read_small(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > self.limits.max_header_bytes {
            return Err(Error::LimitExceeded(format!(
                "{what} of {size} bytes (limit {})",
                self.limits.max_header_bytes
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        let mut left = size as usize;
        while left > 0 {
            let buf = self.inner.fill_buf().map_err(|e| from_io(e, self.format))?;
            if buf.is_empty() {
                return Err(Error::bad_tar(format!(
                    "truncated archive: the stream ends inside {what}"
                )));
            }
            let n = buf.len().min(left);
            data.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
            left -= n;
        }
        self.skip(pad(size), what)?;
        Ok(data)
    }

    /// The next member, or `None` at the end-of-archive marker (or, as Go's
    /// archive/tar and GNU tar accept, a clean end of stream between members).
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.ended {
            return Ok(None);
        }
        let (rest, padding) = (self.remaining, self.padding);
        self.skip(rest + padding, "file data")?;
        self.remaining = 0;
        self.padding = 0;

        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK];
        loop {
            if !self.read_block(&mut block)? {
                if pending.long_name.is_some()
                    || pending.long_link.is_some()
                    || pending.pax.is_some()
                {
                    return Err(Error::bad_tar(
                        "truncated archive: extension header without its member",
                    ));
                }
                self.ended = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.ended = true;
                return Ok(None);
            }
            if !header::checksum_ok(&block) {
                return Err(Error::bad_tar(
                    "header checksum mismatch (corrupt archive, or a header whose size disagrees with its data)",
                ));
            }
            match header::classify(&block)? {
                Block::Extension(Extension::PaxGlobal) => {
                    // Global headers carry archive-wide defaults that image
                    // layers do not use; read (bounded) and skip.
                    let size = header::size_of(&block)?;
                    self.read_small(size, "a PAX global header")?;
                }
                Block::Extension(ext) => {
                    let size = header::size_of(&block)?;
                    let (slot, what) = match ext {
                        Extension::LongName => (&mut pending.long_name, "a GNU long name"),
                        Extension::LongLink => (&mut pending.long_link, "a GNU long link name"),
                        _ => (&mut pending.pax, "a PAX header"),
                    };
                    if slot.is_some() {
                        return Err(Error::bad_tar(format!("two {what} records for one member")));
                    }
                    *slot = Some(self.read_small(size, what)?);
                }
                Block::Member(kind) => {
                    let entry = header::decode(&block, kind)?;
                    return self.finish_entry(entry, pending, None).map(Some);
                }
                Block::GnuSparse => {
                    let mut entry = header::decode(&block, Kind::File)?;
                    let (mut regions, mut extended, real_size) = header::gnu_sparse_header(&block)?;
                    while extended {
                        if !self.read_block(&mut block)? {
                            return Err(Error::bad_tar("truncated archive inside a sparse map"));
                        }
                        let (more, next) = header::gnu_sparse_extension(&block)?;
                        regions.extend(more);
                        extended = next;
                        if regions.len() as u64 > self.limits.max_sparse_regions {
                            return Err(Error::LimitExceeded("too many sparse regions".into()));
                        }
                    }
                    entry.real_size = real_size;
                    return self.finish_entry(entry, pending, Some(regions)).map(Some);
                }
            }
        }
    }

    fn finish_entry(
        &mut self,
        mut entry: Entry,
        pending: Pending,
        sparse: Option<Vec<Region>>,
    ) -> Result<Entry> {
        if let Some(name) = pending.long_name {
            entry.path = trim_trailing_nuls(name);
        }
        if let Some(link) = pending.long_link {
            entry.link = trim_trailing_nuls(link);
        }
        entry.sparse = sparse;
        if let Some(pax) = pending.pax {
            apply_pax(&mut entry, &pax)?;
        }
        if entry.path.len() > self.limits.max_path_len {
            let shown = &entry.path[..entry.path.len().min(64)];
            return Err(Error::unsafe_path(shown, "path longer than the limit"));
        }
        check_entry(&entry, &self.limits)?;
        // Only regular files carry data: like Go's archive/tar (which wrote most
        // layers), the size field of header-only types is ignored.
        if entry.kind != Kind::File {
            entry.size = 0;
            entry.real_size = 0;
        }
        self.remaining = entry.size;
        self.padding = pad(entry.size);
        if entry.sparse_map_in_data {
            self.read_sparse_1_0(&mut entry)?;
        }
        if let Some(regions) = &entry.sparse {
            if regions.len() as u64 > self.limits.max_sparse_regions {
                return Err(Error::LimitExceeded("too many sparse regions".into()));
            }
            header::check_sparse(regions, self.remaining, entry.real_size)?;
        }
        Ok(entry)
    }

    /// PAX sparse 1.0: the map is a list of decimal numbers, one per line, at
    /// the start of the data, padded to a block.
    fn read_sparse_1_0(&mut self, entry: &mut Entry) -> Result<()> {
        let mut numbers = Vec::new();
        let mut consumed: u64 = 0;
        let mut count: Option<u64> = None;
        loop {
            if let Some(c) = count {
                if numbers.len() as u64 == c * 2 {
                    break;
                }
            }
            let mut line = Vec::new();
            loop {
                let byte = self.data_chunk()?.first().copied();
                let Some(b) = byte else {
                    return Err(Error::bad_tar("truncated sparse map"));
                };
                self.consume_data(1);
                consumed += 1;
                if b == b'\n' {
                    break;
                }
                if line.len() > 20 {
                    return Err(Error::bad_tar("sparse map number too long"));
                }
                line.push(b);
            }
            let value = header::pax_number(b"sparse map", &line)?;
            match count {
                None => {
                    if value > self.limits.max_sparse_regions {
                        return Err(Error::LimitExceeded("too many sparse regions".into()));
                    }
                    count = Some(value);
                }
                Some(_) => numbers.push(value),
            }
        }
        let skip = pad(consumed);
        if skip > self.remaining {
            return Err(Error::bad_tar("truncated sparse map"));
        }
        let mut left = skip;
        while left > 0 {
            let n = (self.data_chunk()?.len() as u64).min(left);
            if n == 0 {
                return Err(Error::bad_tar("truncated sparse map"));
            }
            self.consume_data(n as usize);
            left -= n;
        }
        entry.sparse = Some(
            numbers
                .chunks_exact(2)
                .map(|p| Region {
                    offset: p[0],
                    len: p[1],
                })
                .collect(),
        );
        Ok(())
    }

    /// The next piece of the current entry's data (empty when it is all read).
    pub fn data_chunk(&mut self) -> Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = self.remaining;
        let format = self.format;
        let buf = self.inner.fill_buf().map_err(|e| from_io(e, format))?;
        if buf.is_empty() {
            return Err(Error::bad_tar(format!(
                "truncated archive: an entry's data ends {remaining} bytes early"
            )));
        }
        let n = (buf.len() as u64).min(remaining) as usize;
        Ok(&buf[..n])
    }

    pub fn consume_data(&mut self, n: usize) {
        self.inner.consume(n);
        self.remaining -= n as u64;
    }

    /// After the end marker only zeros may follow (block padding up to the
    /// record size); anything else is refused rather than silently ignored.
    pub fn finish(mut self) -> Result<R> {
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(e)),
            };
            if buf.is_empty() {
                return Ok(self.inner);
            }
            if buf.iter().any(|&b| b != 0) {
                return Err(Error::bad_tar(
                    "unexpected data after the end of the archive",
                ));
            }
            let n = buf.len();
            self.inner.consume(n);
        }
    }
}

/// For a seekable stream (an archive file, not a pipe): skip member data by
/// seeking instead of reading, so indexing a multi-gigabyte archive reads only
/// its headers. What `next_entry` returns is unchanged.
impl<R: BufRead + Seek> TarReader<R> {
    /// Skips the rest of the current entry's data and its padding by seeking.
    /// The last byte skipped is still read, so an archive that ends inside the
    /// data is reported as truncated, exactly as when the data is read.
    pub fn seek_past_data(&mut self) -> Result<()> {
        let n = self.remaining + self.padding;
        if n == 0 {
            return Ok(());
        }
        let ahead = i64::try_from(n - 1)
            .map_err(|_| Error::bad_tar(format!("member data of {n} bytes cannot be skipped")))?;
        self.inner
            .seek(SeekFrom::Current(ahead))
            .map_err(|e| from_io(e, self.format))?;
        self.remaining = 0;
        self.padding = 0;
        self.skip(1, "file data")
    }

    /// The underlying stream (to learn where in it a member's data starts).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// Most bytes of extended attribute names, and of one value, on one member:
/// Linux's own limits (XATTR_LIST_MAX, XATTR_SIZE_MAX), so no real file has more.
const MAX_XATTR_BYTES: usize = 64 << 10;

/// Refuses what no filesystem can hold, before anything is created: names the
/// kernel cannot take, oversized link targets and xattrs, impossible sizes.
fn check_entry(entry: &Entry, limits: &Limits) -> Result<()> {
    let shown = &entry.path[..entry.path.len().min(64)];
    if entry.path.contains(&0) || entry.link.contains(&0) {
        return Err(Error::bad_tar(format!(
            "member {:?}: a NUL byte in its name or link target",
            String::from_utf8_lossy(shown)
        )));
    }
    if entry.link.len() > limits.max_path_len {
        return Err(Error::unsafe_path(
            shown,
            format!(
                "link target of {} bytes, longer than the limit ({})",
                entry.link.len(),
                limits.max_path_len
            ),
        ));
    }
    let names: usize = entry.xattrs.iter().map(|(name, _)| name.len() + 1).sum();
    if names > MAX_XATTR_BYTES || entry.xattrs.iter().any(|(_, v)| v.len() > MAX_XATTR_BYTES) {
        return Err(Error::LimitExceeded(format!(
            "member {:?} has {} extended attributes, more than a file can carry \
             ({MAX_XATTR_BYTES} bytes of names or of one value)",
            String::from_utf8_lossy(shown),
            entry.xattrs.len()
        )));
    }
    if entry.real_size > i64::MAX as u64 {
        return Err(Error::bad_tar(format!(
            "member {:?} claims a size of {} bytes, more than any file can have",
            String::from_utf8_lossy(shown),
            entry.real_size
        )));
    }
    Ok(())
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_trailing_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn apply_pax(entry: &mut Entry, pax: &[u8]) -> Result<()> {
    let mut sparse_major: Option<u64> = None;
    let mut sparse_name: Option<Vec<u8>> = None;
    let mut sparse_regions: Vec<Region> = Vec::new();
    let mut sparse_offset: Option<u64> = None;
    let mut sparse_real: Option<u64> = None;
    for (key, value) in header::pax_records(pax)? {
        match key {
            b"path" => entry.path = value.to_vec(),
            b"linkpath" => entry.link = value.to_vec(),
            b"size" => {
                entry.size = header::pax_number(key, value)?;
                entry.real_size = entry.size;
            }
            b"uid" => entry.uid = header::pax_number(key, value)?,
            b"gid" => entry.gid = header::pax_number(key, value)?,
            b"mtime" => entry.mtime = header::pax_time(value)?,
            b"GNU.sparse.major" => sparse_major = Some(header::pax_number(key, value)?),
            b"GNU.sparse.name" => sparse_name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                sparse_real = Some(header::pax_number(key, value)?)
            }
            b"GNU.sparse.map" => sparse_regions = header::pax_sparse_map(value)?,
            b"GNU.sparse.offset" => sparse_offset = Some(header::pax_number(key, value)?),
            b"GNU.sparse.numbytes" => {
                let len = header::pax_number(key, value)?;
                let offset = sparse_offset
                    .take()
                    .ok_or_else(|| Error::bad_tar("GNU.sparse.numbytes without an offset"))?;
                sparse_regions.push(Region { offset, len });
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    entry.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    if let Some(real) = sparse_real {
        if let Some(name) = sparse_name {
            entry.path = name;
        }
        entry.real_size = real;
        if sparse_major == Some(1) {
            entry.sparse_map_in_data = true;
        } else {
            entry.sparse = Some(sparse_regions);
        }
    }
    Ok(())
}
