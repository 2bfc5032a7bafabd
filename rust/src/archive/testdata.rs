//! Hand-built tars for the archive tests: every block is written here, so
//! hostile headers (oversized PAX records, lying sizes, cut-off data) are easy.

use std::io::Write;

pub const BLOCK: usize = 512;

/// A ustar header block with a correct checksum.
pub fn header(name: &[u8], flag: u8, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

/// A size of any magnitude, in GNU base-256 when octal cannot hold it.
pub fn set_size(h: &mut [u8; BLOCK], size: u64) {
    if size <= 0o777_7777_7777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124..128].copy_from_slice(&[0x80, 0, 0, 0]);
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    set_checksum(h);
}

pub fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// One PAX record, "<len> key=value\n", its length counting itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 2;
    let mut len = body + 1;
    while len != body + len.to_string().len() + 1 {
        len = body + len.to_string().len() + 1;
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

#[derive(Default)]
pub struct TarBuf(Vec<u8>);

impl TarBuf {
    pub fn new() -> Self {
        TarBuf::default()
    }

    pub fn member(mut self, name: &[u8], flag: u8, data: &[u8]) -> Self {
        self.0
            .extend_from_slice(&header(name, flag, data.len() as u64));
        self.0.extend_from_slice(&padded(data));
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.member(name.as_bytes(), b'0', data)
    }

    pub fn dir(self, name: &str) -> Self {
        self.member(name.as_bytes(), b'5', b"")
    }

    pub fn link(mut self, name: &str, flag: u8, target: &str) -> Self {
        let mut h = header(name.as_bytes(), flag, 0);
        h[157..157 + target.len()].copy_from_slice(target.as_bytes());
        set_checksum(&mut h);
        self.0.extend_from_slice(&h);
        self
    }

    /// A PAX extended header for the next member.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.member(b"././@PaxHeader", b'x', &data)
    }

    /// A GNU long name ('L') for the next member.
    pub fn long_name(self, name: &[u8]) -> Self {
        let mut data = name.to_vec();
        data.push(0);
        self.member(b"././@LongLink", b'L', &data)
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The archive without an end marker.
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }

    /// The archive with its end-of-archive marker (two zero blocks).
    pub fn finish(self) -> Vec<u8> {
        self.raw(&[0; 2 * BLOCK]).0
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
