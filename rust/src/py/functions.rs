//! Module-level functions: hashing a file, merging layers, build facts.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use pyo3::prelude::*;

use super::detach::run_detached;
use crate::apply::{self, ApplyOptions};
use crate::digest::{Algorithm, Hasher};
use crate::error::Error;

/// Hashes a file with `algorithm` and returns "alg:hex".
#[pyfunction]
#[pyo3(signature = (path, algorithm = "sha256"))]
pub fn hash_file(py: Python<'_>, path: PathBuf, algorithm: &str) -> PyResult<String> {
    let algorithm = Algorithm::parse(algorithm).map_err(super::errors::to_py)?;
    run_detached(py, move || {
        let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let mut hasher = Hasher::new(algorithm);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().to_string())
    })
}

/// Merges unpacked layer directories (lowest first) into `dest`, honouring
/// whiteouts and opaque directories. Returns counts of what was written.
#[pyfunction]
#[pyo3(signature = (layers, dest, *, same_owner = None, devices = None))]
pub fn apply_layers(
    py: Python<'_>,
    layers: Vec<PathBuf>,
    dest: PathBuf,
    same_owner: Option<bool>,
    devices: Option<bool>,
) -> PyResult<HashMap<&'static str, u64>> {
    let root = rustix::process::geteuid().is_root();
    let opts = ApplyOptions {
        same_owner: same_owner.unwrap_or(root),
        devices: devices.unwrap_or(root),
    };
    let stats = run_detached(py, move || apply::apply_layers(&layers, &dest, &opts))?;
    Ok(HashMap::from([
        ("files", stats.files),
        ("dirs", stats.dirs),
        ("symlinks", stats.symlinks),
        ("hardlinks", stats.hardlinks),
        ("whiteouts", stats.whiteouts),
        ("skipped_devices", stats.skipped_devices),
    ]))
}

/// "release" or "debug": benchmarks refuse to time a debug build.
#[pyfunction]
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
