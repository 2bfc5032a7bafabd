//! How a layer is unpacked (owners, devices, xattrs, early writeback) and what
//! unpacking it counted.

use crate::limits::RatioGuard;
use crate::syncer::SyncQueue;

/// What to do with character and block device members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePolicy {
    Create,
    /// Leave them out (what rootless podman does: it cannot create them either).
    Skip,
    Refuse,
}

#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Apply the archive's numeric uid/gid (needs root).
    pub same_owner: bool,
    pub devices: DevicePolicy,
    pub xattrs: bool,
    /// Where completed large files go for early writeback (durable sinks).
    pub sync: Option<SyncQueue>,
    /// Checks the apparent size of the files made (sparse holes included)
    /// against the compressed input (sinks set it).
    pub ratio: Option<RatioGuard>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            same_owner: root,
            devices: if root {
                DevicePolicy::Create
            } else {
                DevicePolicy::Skip
            },
            xattrs: true,
            sync: None,
            ratio: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct UnpackStats {
    pub entries: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
}
