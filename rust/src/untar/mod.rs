//! Hardened, streaming untar of one layer into a directory.
//!
//! `header` decodes blocks, `reader` walks the stream, `confine` keeps every
//! path inside the root, `entries` creates the members (`data` fills files,
//! `metadata` sets modes, owners, xattrs and times), as `options` says. OCI whiteouts
//! (`.wh.name`, `.wh..wh..opq`) are ordinary members here: a layer directory
//! keeps them as they are; `apply.rs` interprets them when merging layers.

pub mod confine;
mod data;
pub mod entries;
pub mod header;
mod metadata;
mod options;
pub mod reader;

use std::io::BufRead;
use std::path::Path;

pub use options::{DevicePolicy, UnpackOptions, UnpackStats};

use crate::error::{Error, Result};
use crate::limits::Limits;

/// Unpacks the tar stream `input` into the existing directory `root`, then
/// checks that nothing but zero padding follows the end-of-archive marker.
pub fn unpack<R: BufRead>(
    input: R,
    root: &Path,
    opts: &UnpackOptions,
    limits: &Limits,
    format: &'static str,
) -> Result<UnpackStats> {
    let mut tar = reader::TarReader::new(input, limits.clone(), format);
    let mut unpacker = entries::Unpacker::new(root, opts.clone())?;

    // === members
    while let Some(entry) = tar.next_entry()? {
        if unpacker.stats.entries >= limits.max_entries {
            return Err(Error::LimitExceeded(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        unpacker.apply(&entry, &mut tar)?;
    }

    // === the end: only zero padding may follow the end-of-archive marker
    tar.finish()?;

    // === directory modes and times, now that nothing more is created inside
    unpacker.finish()
}
