//! Every call that touches bytes goes through `run_detached`: the GIL is
//! released for the whole call and engine errors become Python exceptions.

use pyo3::prelude::*;

use crate::error::Error;

pub fn run_detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, Error> + Send,
    T: Send,
{
    py.detach(f).map_err(super::errors::to_py)
}
