//! `LayerSink` and `BlobSink` as Python classes. State lives behind a mutex
//! (pyclasses must be Sync); the lock is taken only while the GIL is released.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::detach::run_detached;
use super::errors::to_py;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::sink::{Outcome, Sink, SinkConfig};
use crate::untar::{DevicePolicy, UnpackOptions};

struct Shared {
    sink: Mutex<Sink>,
    written: AtomicU64,
}

impl Shared {
    fn new(cfg: SinkConfig) -> PyResult<Self> {
        Ok(Shared {
            sink: Mutex::new(Sink::new(cfg).map_err(to_py)?),
            written: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Sink>> {
        self.sink
            .lock()
            .map_err(|_| Error::Closed("an earlier call panicked"))
    }

    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        run_detached(py, || {
            let mut sink = self.lock()?;
            let res = sink.write(data);
            self.written.store(sink.bytes_written(), Ordering::Relaxed);
            res
        })
    }

    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let outcome = run_detached(py, || self.lock()?.finish())?;
        outcome_dict(py, &outcome)
    }

    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        run_detached(py, || {
            self.lock()?.abort();
            Ok(())
        })
    }
}

fn outcome_dict<'py>(py: Python<'py>, o: &Outcome) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("digest", o.digest.to_string())?;
    d.set_item("size", o.size)?;
    d.set_item("diff_id", o.diff_id.as_ref().map(ToString::to_string))?;
    d.set_item("uncompressed_size", o.uncompressed_size)?;
    d.set_item("compression", o.compression.map(|c| c.name()))?;
    let stats = o.stats.clone().unwrap_or_default();
    d.set_item("entries", stats.entries)?;
    d.set_item("skipped_devices", stats.skipped_devices)?;
    d.set_item("skipped_xattrs", stats.skipped_xattrs)?;
    d.set_item("unpack_existed", o.unpack_existed)?;
    Ok(d)
}

fn parse_digest(text: &str) -> PyResult<Digest> {
    Digest::parse(text).map_err(to_py)
}

/// Streams one layer blob: verifies digest, size and diff_id, optionally
/// unpacks it, and renames the results into place only when all is well.
#[pyclass(module = "towline._native")]
pub struct LayerSink {
    shared: Shared,
}

#[pymethods]
impl LayerSink {
    #[new]
    #[pyo3(signature = (
        blob_path, unpack_dir, expected_digest, expected_size, expected_diff_id = None, *,
        pipelined = true, durable = true, same_owner = None, devices = None, xattrs = true,
        max_ratio = 1000.0, max_entries = None, decompressed_path = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        blob_path: Option<PathBuf>,
        unpack_dir: Option<PathBuf>,
        expected_digest: &str,
        expected_size: Option<u64>,
        expected_diff_id: Option<&str>,
        pipelined: bool,
        durable: bool,
        same_owner: Option<bool>,
        devices: Option<&str>,
        xattrs: bool,
        max_ratio: f64,
        max_entries: Option<u64>,
        decompressed_path: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut unpack = UnpackOptions::default();
        if let Some(same_owner) = same_owner {
            unpack.same_owner = same_owner;
        }
        unpack.xattrs = xattrs;
        unpack.devices = match devices {
            None => unpack.devices,
            Some("create") => DevicePolicy::Create,
            Some("skip") => DevicePolicy::Skip,
            Some("refuse") => DevicePolicy::Refuse,
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "devices must be \"create\", \"skip\" or \"refuse\", not {other:?}"
                )))
            }
        };
        let mut limits = Limits {
            max_ratio,
            ..Limits::default()
        };
        if let Some(n) = max_entries {
            limits.max_entries = n;
        }
        let cfg = SinkConfig {
            blob_path,
            unpack_dir,
            decompressed_path,
            expected_digest: parse_digest(expected_digest)?,
            expected_size,
            expected_diff_id: expected_diff_id.map(parse_digest).transpose()?,
            decompress: true,
            pipelined,
            durable,
            unpack,
            limits,
        };
        Ok(LayerSink {
            shared: Shared::new(cfg)?,
        })
    }

    /// Appends a chunk of the compressed blob (GIL released).
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.shared.write(py, data)
    }

    /// Verifies everything and renames blob and directory into place.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.shared.finish(py)
    }

    /// Drops everything written so far. Safe to call more than once.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.abort(py)
    }

    /// Bytes accepted so far: where an HTTP Range request should resume.
    #[getter]
    fn bytes_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.shared.abort(py)?;
        Ok(false)
    }
}

/// Streams a blob that is stored as is (config, manifest, mirrored layer):
/// verifies size and digest, then renames it into place.
#[pyclass(module = "towline._native")]
pub struct BlobSink {
    shared: Shared,
}

#[pymethods]
impl BlobSink {
    #[new]
    #[pyo3(signature = (blob_path, expected_digest, expected_size = None, *, durable = true))]
    fn new(
        blob_path: PathBuf,
        expected_digest: &str,
        expected_size: Option<u64>,
        durable: bool,
    ) -> PyResult<Self> {
        let cfg = SinkConfig {
            blob_path: Some(blob_path),
            unpack_dir: None,
            decompressed_path: None,
            expected_digest: parse_digest(expected_digest)?,
            expected_size,
            expected_diff_id: None,
            decompress: false,
            pipelined: false,
            durable,
            unpack: UnpackOptions::default(),
            limits: Limits::default(),
        };
        Ok(BlobSink {
            shared: Shared::new(cfg)?,
        })
    }

    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.shared.write(py, data)
    }

    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.shared.finish(py)
    }

    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.abort(py)
    }

    #[getter]
    fn bytes_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.shared.abort(py)?;
        Ok(false)
    }
}
