//! Hand-written tar headers (ustar, GNU, PAX, V7; long names, sparse maps):
//! written byte by byte rather than through a tar library, so that names with
//! `..`, `/` and `.wh.` and out-of-range fields survive into the stream.

use crate::case::{Enc, Member};

pub(crate) const BLOCK: usize = 512;

/// A numeric header field: octal when it fits, GNU base-256 otherwise.
fn put_num(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if (digits * 3 >= 64) || v < (1u64 << (digits * 3)) {
        let s = format!("{v:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = v.to_be_bytes();
        let len = field.len();
        let take = (len - 1).min(8);
        field[len - take..].copy_from_slice(&bytes[8 - take..]);
    }
}

fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
}

fn checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

pub(crate) fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

pub(crate) struct Header<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) link: &'a [u8],
    pub(crate) flag: u8,
    pub(crate) member: &'a Member,
    pub(crate) size: u64,
    pub(crate) dev_minor: u32,
    /// PAX records to put in front (besides path / linkpath).
    pub(crate) pax: Vec<(&'static str, Vec<u8>)>,
    /// Filled in for GNU sparse headers: regions (offset, len) and real size.
    pub(crate) gnu_sparse: Option<(Vec<(u64, u64)>, u64)>,
}

fn simple_header(name: &[u8], flag: u8, size: u64, magic: Enc) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_str(&mut b[..100], name);
    put_num(&mut b[100..108], 0o644);
    put_num(&mut b[108..116], 0);
    put_num(&mut b[116..124], 0);
    put_num(&mut b[124..136], size);
    put_num(&mut b[136..148], 0);
    b[156] = flag;
    put_magic(&mut b, magic);
    b
}

fn put_magic(b: &mut [u8; BLOCK], enc: Enc) {
    match enc {
        Enc::Ustar | Enc::Pax => {
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
        }
        Enc::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        Enc::V7 => {}
    }
}

pub(crate) fn emit_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    pad(out);
}

impl Header<'_> {
    pub(crate) fn write(self, out: &mut Vec<u8>) {
        let m = self.member;
        let enc = if self.gnu_sparse.is_some() {
            Enc::Gnu
        } else {
            m.enc
        };
        let mut pax = self.pax;
        let mut b = [0u8; BLOCK];
        let mut prefix: &[u8] = b"";
        let mut short: &[u8] = self.name;
        if self.name.len() > 100 {
            let split = (enc == Enc::Ustar)
                .then(|| {
                    self.name
                        .iter()
                        .enumerate()
                        .filter(|&(i, &c)| c == b'/' && i <= 155 && self.name.len() - i - 1 <= 100)
                        .map(|(i, _)| i)
                        .next()
                })
                .flatten();
            match split {
                Some(i) if i > 0 => {
                    prefix = &self.name[..i];
                    short = &self.name[i + 1..];
                }
                _ if enc == Enc::Pax => {
                    pax.insert(0, ("path", self.name.to_vec()));
                    short = &self.name[..100];
                }
                _ => {
                    let mut data = self.name.to_vec();
                    data.push(0);
                    let h = simple_header(b"././@LongLink", b'L', data.len() as u64, Enc::Gnu);
                    let mut h = h;
                    checksum(&mut h);
                    out.extend_from_slice(&h);
                    emit_data(out, &data);
                    short = &self.name[..100];
                }
            }
        }
        let mut link: &[u8] = self.link;
        if self.link.len() > 100 {
            if enc == Enc::Pax {
                pax.push(("linkpath", self.link.to_vec()));
            } else {
                let mut data = self.link.to_vec();
                data.push(0);
                let mut h = simple_header(b"././@LongLink", b'K', data.len() as u64, Enc::Gnu);
                checksum(&mut h);
                out.extend_from_slice(&h);
                emit_data(out, &data);
            }
            link = &self.link[..100];
        }
        if m.xattr {
            pax.push(("SCHILY.xattr.user.fuzz", b"1".to_vec()));
        }
        if !pax.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &pax {
                pax_record(&mut data, k, v);
            }
            let mut h = simple_header(b"PaxHeaders.0/member", b'x', data.len() as u64, Enc::Ustar);
            checksum(&mut h);
            out.extend_from_slice(&h);
            emit_data(out, &data);
        }
        put_str(&mut b[..100], short);
        put_num(&mut b[100..108], u64::from(m.mode));
        put_num(&mut b[108..116], m.owner.0);
        put_num(&mut b[116..124], m.owner.1);
        put_num(&mut b[124..136], self.size);
        put_num(&mut b[136..148], m.mtime);
        b[156] = self.flag;
        put_str(&mut b[157..257], link);
        put_magic(&mut b, enc);
        if enc != Enc::V7 {
            put_num(&mut b[329..337], if self.flag == b'3' { 1 } else { 0 });
            put_num(&mut b[337..345], u64::from(self.dev_minor));
        }
        if enc == Enc::Ustar || enc == Enc::Pax {
            put_str(&mut b[345..500], prefix);
        }
        let mut extension_blocks = Vec::new();
        if let Some((regions, real)) = &self.gnu_sparse {
            let mut chunks = regions.chunks(4);
            let first = chunks.next().unwrap_or(&[]);
            for (i, (o, l)) in first.iter().enumerate() {
                put_num(&mut b[386 + i * 24..398 + i * 24], *o);
                put_num(&mut b[398 + i * 24..410 + i * 24], *l);
            }
            put_num(&mut b[483..495], *real);
            let rest: Vec<&(u64, u64)> = regions.iter().skip(4).collect();
            b[482] = u8::from(!rest.is_empty());
            let groups: Vec<&[&(u64, u64)]> = rest.chunks(21).collect();
            for (g, group) in groups.iter().enumerate() {
                let mut e = [0u8; BLOCK];
                for (i, (o, l)) in group.iter().enumerate() {
                    put_num(&mut e[i * 24..i * 24 + 12], *o);
                    put_num(&mut e[i * 24 + 12..i * 24 + 24], *l);
                }
                e[504] = u8::from(g + 1 < groups.len());
                extension_blocks.push(e);
            }
        }
        checksum(&mut b);
        out.extend_from_slice(&b);
        for e in extension_blocks {
            out.extend_from_slice(&e);
        }
    }
}
