//! towline's native core. The engine modules are plain Rust (`cargo test`
//! drives them); `py/` is the only place that knows about Python.

pub mod apply;
pub mod archive;
pub mod atomic;
pub mod chunks;
pub mod decompress;
pub mod digest;
pub mod dirtree;
pub mod error;
pub mod implied_dirs;
pub mod limits;
pub mod pipeline;
pub mod sink;
pub mod syncer;
pub mod untar;

mod py;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _native {
    /// The package version: Cargo.toml is its one source (pyproject takes it from there).
    #[pymodule_export]
    #[allow(non_upper_case_globals)] // Python's name for it
    const __version__: &str = env!("CARGO_PKG_VERSION");
    #[pymodule_export]
    use crate::py::archive::{sniff_archive, tar_index, write_tar, TarMember, TarStream};
    #[pymodule_export]
    use crate::py::functions::{apply_layers, build_profile, hash_file};
    #[pymodule_export]
    use crate::py::sinks::{BlobSink, LayerSink};
}
