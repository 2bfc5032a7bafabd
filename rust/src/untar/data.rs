//! Copying a member's data from the tar stream into its file.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::reader::TarReader;
use crate::error::{Error, Result};

pub(super) fn copy_data<R: std::io::BufRead>(
    tar: &mut TarReader<R>,
    file: &mut File,
    full: &Path,
) -> Result<()> {
    loop {
        let chunk = tar.data_chunk()?;
        if chunk.is_empty() {
            return Ok(());
        }
        file.write_all(chunk)
            .map_err(|e| Error::io("write", full, e))?;
        let n = chunk.len();
        tar.consume_data(n);
    }
}

pub(super) fn copy_limited<R: std::io::BufRead>(
    tar: &mut TarReader<R>,
    file: &mut File,
    full: &Path,
    mut left: u64,
) -> Result<()> {
    while left > 0 {
        let chunk = tar.data_chunk()?;
        let n = (chunk.len() as u64).min(left) as usize;
        if n == 0 {
            return Err(Error::bad_tar("sparse data shorter than its map"));
        }
        file.write_all(&chunk[..n])
            .map_err(|e| Error::io("write", full, e))?;
        tar.consume_data(n);
        left -= n as u64;
    }
    Ok(())
}
