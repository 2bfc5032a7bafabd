//! Inflates a gzip file from memory, several times, and prints one Markdown row:
//! backend, median MB/s of compressed input and of uncompressed output.
//!
//! Usage: inflate-backends FILE [ROUNDS]

use std::io::{self, Read};
use std::time::Instant;

/// Read size of the consumer, the same as towline's decoded buffer.
const OUT_BUFFER: usize = 256 << 10;

/// The backend this binary was built with. `run.sh` enables one feature at a time;
/// the order is flate2's own precedence should several be on.
fn backend() -> &'static str {
    if cfg!(feature = "isal") {
        "isal-rs (ISA-L igzip)"
    } else if cfg!(feature = "zlib-ng") {
        "flate2 + zlib-ng"
    } else if cfg!(feature = "zlib") {
        "flate2 + system zlib"
    } else if cfg!(feature = "zlib-rs") {
        "flate2 + zlib-rs (runtime CPU detection)"
    } else if cfg!(feature = "zlib-rs-nodetect") {
        "flate2 + zlib-rs without runtime_detection"
    } else {
        "flate2 + miniz_oxide (rust_backend)"
    }
}

#[cfg(feature = "isal")]
fn decoder<'a>(input: &'a [u8]) -> Box<dyn Read + 'a> {
    Box::new(isal::read::GzipDecoder::new(input))
}

#[cfg(not(feature = "isal"))]
fn decoder<'a>(input: &'a [u8]) -> Box<dyn Read + 'a> {
    // The decoder towline uses: multi-member gzip over a BufRead.
    Box::new(flate2::bufread::MultiGzDecoder::new(input))
}

/// Inflates `input` once; returns the uncompressed size.
fn inflate(input: &[u8], out: &mut [u8]) -> io::Result<u64> {
    let mut reader = decoder(input);
    let mut total = 0u64;
    loop {
        let n = reader.read(out)?;
        if n == 0 {
            return Ok(total);
        }
        // Keep the optimizer from treating the output as unused.
        std::hint::black_box(&out[..n]);
        total += n as u64;
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: {} FILE.gz [ROUNDS]", args[0]);
        std::process::exit(2);
    };
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let input = std::fs::read(path)?;
    let mut out = vec![0u8; OUT_BUFFER];
    let mut times = Vec::with_capacity(rounds);
    let mut size = 0;
    for _ in 0..rounds {
        let began = Instant::now();
        size = inflate(&input, &mut out)?;
        times.push(began.elapsed().as_secs_f64());
    }
    // gzip's trailer holds the uncompressed size mod 2^32 (of the last member).
    if let Some(trailer) = input.len().checked_sub(4).map(|i| &input[i..]) {
        let isize = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        if size as u32 != isize {
            eprintln!(
                "{}: inflated {size} bytes, the gzip trailer says {isize} (mod 2^32)",
                backend()
            );
            std::process::exit(1);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "| {} | {:.0} | {:.0} | {:.3} |",
        backend(),
        input.len() as f64 / median / 1e6,
        size as f64 / median / 1e6,
        median
    );
    Ok(())
}
