//! Caps on hostile layers: decompression ratio, entry count, header sizes.

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
