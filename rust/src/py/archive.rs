//! Archive access for the archive transports: `tar_index`, `sniff_archive`,
//! `TarStream`, `write_tar`, and the `TarMember` they report. Thin wrappers
//! over `crate::archive`; every call that touches the file releases the GIL.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::detach::run_detached;
use crate::archive::{self, Member, MemberKind, PackContent, PackEntry};
use crate::error::{Error, Result};
use crate::limits::Limits;

const KINDS: [MemberKind; 5] = [
    MemberKind::File,
    MemberKind::Dir,
    MemberKind::Symlink,
    MemberKind::Hardlink,
    MemberKind::Other,
];

/// One archive member, as stored (the name is not cleaned).
#[pyclass(module = "towline._native", frozen, eq, hash, get_all)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TarMember {
    name: String,
    kind: &'static str,
    size: u64,
    offset: Option<u64>,
    link: String,
}

impl From<Member> for TarMember {
    fn from(m: Member) -> Self {
        TarMember {
            name: m.name,
            kind: m.kind.name(),
            size: m.size,
            offset: m.offset,
            link: m.link,
        }
    }
}

#[pymethods]
impl TarMember {
    #[new]
    #[pyo3(signature = (name, kind, size = 0, offset = None, link = ""))]
    fn new(name: String, kind: &str, size: u64, offset: Option<u64>, link: &str) -> PyResult<Self> {
        let kind = KINDS
            .iter()
            .map(|k| k.name())
            .find(|k| *k == kind)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "kind must be \"file\", \"dir\", \"symlink\", \"hardlink\" or \"other\", not {kind:?}"
                ))
            })?;
        Ok(TarMember {
            name,
            kind,
            size,
            offset,
            link: link.to_owned(),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let repr = |s: &str| -> PyResult<String> { Ok(PyString::new(py, s).repr()?.to_string()) };
        let offset = self.offset.map_or("None".to_string(), |o| o.to_string());
        Ok(format!(
            "TarMember(name={}, kind={}, size={}, offset={offset}, link={})",
            repr(&self.name)?,
            repr(self.kind)?,
            self.size,
            repr(&self.link)?
        ))
    }
}

/// The members of an uncompressed tar file, read from its headers alone.
#[pyfunction]
#[pyo3(signature = (path, *, max_members = 1_000_000))]
pub fn tar_index(py: Python<'_>, path: PathBuf, max_members: u64) -> PyResult<Vec<TarMember>> {
    let members = run_detached(py, move || {
        archive::tar_index(&path, max_members, &Limits::default())
    })?;
    Ok(members.into_iter().map(TarMember::from).collect())
}

/// "none", "gzip", "zstd", "bzip2" or "xz".
#[pyfunction]
pub fn sniff_archive(py: Python<'_>, path: PathBuf) -> PyResult<&'static str> {
    run_detached(py, move || archive::sniff_archive(&path))
}

/// Writes a deterministic uncompressed tar at `path`, atomically.
#[pyfunction]
#[pyo3(signature = (path, entries, *, durable = true))]
pub fn write_tar(
    py: Python<'_>,
    path: PathBuf,
    entries: Vec<(String, Bound<'_, PyAny>)>,
    durable: bool,
) -> PyResult<()> {
    let mut pack = Vec::with_capacity(entries.len());
    for (name, content) in entries {
        let content = if let Ok(data) = content.cast::<PyBytes>() {
            PackContent::Bytes(data.as_bytes().to_vec())
        } else if let Ok(file) = content.extract::<PathBuf>() {
            PackContent::File(file)
        } else {
            return Err(PyTypeError::new_err(format!(
                "the content of archive member {name:?} must be bytes or a path, not {}",
                content.get_type().name()?
            )));
        };
        pack.push(PackEntry { name, content });
    }
    run_detached(py, move || archive::write_tar(&path, &pack, durable))
}

/// Reads any tar file (uncompressed or gzip, zstd, bzip2, xz) member by member.
#[pyclass(module = "towline._native")]
pub struct TarStream {
    /// `None` once closed. Locked only while the GIL is released.
    stream: Mutex<Option<archive::TarStream>>,
    compression: &'static str,
}

impl TarStream {
    fn with<T>(&self, f: impl FnOnce(&mut archive::TarStream) -> Result<T>) -> Result<T> {
        let mut guard: MutexGuard<'_, _> = self
            .stream
            .lock()
            .map_err(|_| Error::Internal("an earlier TarStream call panicked".into()))?;
        match guard.as_mut() {
            Some(stream) => f(stream),
            None => Err(Error::InvalidArgument(
                "I/O operation on a closed TarStream".into(),
            )),
        }
    }

    fn close_inner(&self, py: Python<'_>) -> PyResult<()> {
        run_detached(py, || {
            if let Ok(mut guard) = self.stream.lock() {
                guard.take();
            }
            Ok(())
        })
    }
}

#[pymethods]
impl TarStream {
    #[new]
    #[pyo3(signature = (path, *, max_members = 1_000_000))]
    fn new(py: Python<'_>, path: PathBuf, max_members: u64) -> PyResult<Self> {
        let stream = run_detached(py, move || {
            archive::TarStream::open(&path, max_members, &Limits::default())
        })?;
        Ok(TarStream {
            compression: stream.compression().name(),
            stream: Mutex::new(Some(stream)),
        })
    }

    /// The archive's compression, as sniffed from its first bytes.
    #[getter]
    fn compression(&self) -> &'static str {
        self.compression
    }

    /// The next member (skipping unread data of the current one); None at the end.
    fn next(&self, py: Python<'_>) -> PyResult<Option<TarMember>> {
        let member = run_detached(py, || self.with(|s| s.next_member()))?;
        Ok(member.map(TarMember::from))
    }

    /// Up to `size` bytes of the current member's data; b"" once it is all read.
    #[pyo3(signature = (size = 1_048_576))]
    fn read<'py>(&self, py: Python<'py>, size: usize) -> PyResult<Bound<'py, PyBytes>> {
        let data = run_detached(py, || self.with(|s| s.read(size)))?;
        Ok(PyBytes::new(py, &data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.close_inner(py)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<TarMember>> {
        self.next(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close_inner(py)?;
        Ok(false)
    }
}
