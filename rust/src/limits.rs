//! Caps on hostile layers: decompression ratio, entry count, header sizes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Limits applied while decompressing and unpacking one layer.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Uncompressed bytes allowed per compressed byte (0 turns the check off).
    /// gzip tops out near 1032:1 even on zeros; zstd, xz and bzip2 go far higher.
    pub max_ratio: f64,
    /// The ratio is only enforced past this many uncompressed bytes, so tiny
    /// layers of zeros are not refused.
    pub ratio_grace: u64,
    pub max_entries: u64,
    /// Largest GNU long name or PAX header accepted (they are held in memory).
    pub max_header_bytes: u64,
    /// Longest member name accepted (PATH_MAX).
    pub max_path_len: usize,
    pub max_sparse_regions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ratio: 1000.0,
            ratio_grace: 64 << 20,
            max_entries: 10_000_000,
            max_header_bytes: 1 << 20,
            max_path_len: 4096,
            max_sparse_regions: 1 << 16,
        }
    }
}

/// Stops a decompression bomb: too many bytes out per compressed byte in.
/// "Out" is the decompressed stream, or the apparent size of the files the
/// untar makes (sparse holes cost no input but are as large on a copy).
#[derive(Clone, Debug)]
pub struct RatioGuard {
    /// Compressed bytes received so far.
    pub fed: Arc<AtomicU64>,
    pub limits: Limits,
}

impl RatioGuard {
    pub fn check(&self, uncompressed: u64) -> Result<()> {
        let limit = self.limits.max_ratio;
        if limit > 0.0 && uncompressed > self.limits.ratio_grace {
            let compressed = self.fed.load(Ordering::Relaxed).max(1);
            if uncompressed as f64 > limit * compressed as f64 {
                return Err(Error::RatioExceeded {
                    compressed,
                    uncompressed,
                    limit,
                });
            }
        }
        Ok(())
    }
}
