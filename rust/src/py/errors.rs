//! One conversion from engine errors to the Python exception tree defined in
//! `towline/errors.py`, so native and Python errors share one hierarchy.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use crate::error::Error;

pyo3::import_exception!(towline.errors, TowlineError);
pyo3::import_exception!(towline.errors, DigestMismatchError);
pyo3::import_exception!(towline.errors, InvalidLayerError);
pyo3::import_exception!(towline.errors, StoreError);

pub fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    let slug = err.slug();
    match err {
        Error::DigestMismatch {
            expected, actual, ..
        } => DigestMismatchError::new_err((message, slug, expected, actual)),
        Error::SizeMismatch { expected, actual } => {
            DigestMismatchError::new_err((message, slug, expected.to_string(), actual))
        }
        Error::UnsupportedCompression { .. }
        | Error::Decompress { .. }
        | Error::UnsafePath { .. }
        | Error::BadTar(_)
        | Error::RatioExceeded { .. }
        | Error::LimitExceeded(_) => InvalidLayerError::new_err((message, slug)),
        Error::Io { .. } => StoreError::new_err((message, slug)),
        Error::UnsupportedAlgorithm(_) | Error::InvalidDigest { .. } | Error::Internal(_) => {
            TowlineError::new_err((message, slug))
        }
        Error::InvalidArgument(_) | Error::Closed(_) => PyValueError::new_err(message),
    }
}
