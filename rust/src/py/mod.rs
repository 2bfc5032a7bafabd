//! The only modules that `use pyo3`: thin wrappers over the engine.

pub mod archive;
pub mod detach;
pub mod errors;
pub mod functions;
pub mod sinks;
