//! Compression detection by magic bytes (never by media type, as
//! containers/image) and streaming decoders over a `BufRead`.

use std::io::{BufRead, Read};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

/// How many leading bytes `sniff` wants to see (one tar header block).
pub const SNIFF_LEN: usize = 512;

const GZIP: &[u8] = &[0x1f, 0x8b, 0x08];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
// A stream may open with a skippable frame (magic 0x184D2A5?, little endian).
const ZSTD_SKIPPABLE_TAIL: &[u8] = &[0x2a, 0x4d, 0x18];
const BZIP2: &[u8] = b"BZh";
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Identifies the format of a layer stream from its first bytes.
pub fn sniff(head: &[u8]) -> Result<Compression> {
    if head.starts_with(GZIP) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(ZSTD)
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && &head[1..4] == ZSTD_SKIPPABLE_TAIL)
    {
        return Ok(Compression::Zstd);
    }
    if head.starts_with(BZIP2) {
        return Ok(Compression::Bzip2);
    }
    if head.starts_with(XZ) {
        return Ok(Compression::Xz);
    }
    if looks_like_tar(head) {
        return Ok(Compression::None);
    }
    Err(Error::UnsupportedCompression {
        found: describe_unknown(head),
    })
}

/// A tar stream opens with a header block whose checksum adds up, or with the
/// zero block of an empty archive.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < SNIFF_LEN {
        return false;
    }
    let block = &head[..SNIFF_LEN];
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    crate::untar::header::checksum_ok(block)
}

fn describe_unknown(head: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (&[0x04, 0x22, 0x4d, 0x18], "lz4 (frame format)"),
        (&[0x02, 0x21, 0x4c, 0x18], "lz4 (legacy format)"),
        (b"PK\x03\x04", "a zip archive"),
        (&[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], "a 7z archive"),
        (b"LZIP", "lzip"),
        (
            &[0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50],
            "snappy (framed)",
        ),
        (&[0x78, 0x9c], "a raw zlib stream"),
        (&[0x78, 0xda], "a raw zlib stream"),
    ];
    if head.is_empty() {
        return "an empty stream".to_string();
    }
    for (magic, name) in known {
        if head.starts_with(magic) {
            return format!("{name} (magic {})", hex_bytes(magic));
        }
    }
    let shown = &head[..head.len().min(8)];
    if head.len() < SNIFF_LEN {
        return format!(
            "{} bytes of unrecognized data, too short for a tar header (first bytes {})",
            head.len(),
            hex_bytes(shown)
        );
    }
    format!("unrecognized data (first bytes {})", hex_bytes(shown))
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wraps `input` in the streaming decoder for `compression`. gzip and zstd
/// decoders continue across members/frames (multi-member gzip, multi-frame and
/// skippable-frame zstd), as `gzip -dc` and `zstd -dc` do.
pub fn decoder<'a, R>(compression: Compression, input: R) -> Result<Box<dyn Read + Send + 'a>>
where
    R: BufRead + Send + 'a,
{
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(
            |source| Error::Decompress {
                format: "zstd",
                source,
            },
        )?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        let compressed = match c {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::None => data.to_vec(),
        };
        assert_eq!(sniff(&compressed).unwrap(), c);
        let mut out = Vec::new();
        decoder(c, &compressed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn every_format_round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Bzip2,
            Compression::Xz,
        ] {
            assert_eq!(roundtrip(c, &data), data, "{c:?}");
        }
    }

    #[test]
    fn unknown_formats_are_named() {
        let err = sniff(&[0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("lz4"), "{err}");
        let err = sniff(&[0x13; 600]).unwrap_err();
        assert!(err.to_string().contains("13 13 13"), "{err}");
        assert!(sniff(&[]).unwrap_err().to_string().contains("empty"));
        assert_eq!(sniff(&[0; 1024]).unwrap(), Compression::None);
    }
}
