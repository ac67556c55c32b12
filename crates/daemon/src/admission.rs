//! Disk-space admission: no pull starts that would take the image filesystem above
//! `--image-fs-max-percent` (default 80, under the kubelet's image GC threshold of 85, so that
//! pre-warming never sets off GC, which would delete other images, pre-warmed ones included).
//! The figures: what the pull adds (the image's compressed size from its manifest, less the blobs
//! the content store holds already) and how full the image filesystem is (statvfs of the
//! runtime's image filesystem: CRI's ImageFsInfo names the mountpoint but gives no capacity).
//! The arithmetic is the kubelet's: used = capacity − available.

use std::path::Path;

/// An image filesystem's size and what is left of it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub available: u64,
}

impl FsUsage {
    pub fn used(&self) -> u64 {
        self.capacity.saturating_sub(self.available)
    }

    /// Bytes that may still be added before the filesystem passes `max_percent`.
    pub fn free_under(&self, max_percent: u8) -> u64 {
        self.limit(max_percent).saturating_sub(self.used())
    }

    pub fn limit(&self, max_percent: u8) -> u64 {
        (self.capacity as u128 * max_percent.min(100) as u128 / 100) as u64
    }
}

/// statvfs of `path`: capacity and the space available to unprivileged writers, as the kubelet
/// (cadvisor) reads it.
pub fn usage(path: &Path) -> std::io::Result<FsUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsUsage {
        capacity: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
    })
}

/// The decision for one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Waits: `message` names the figures.
    Refuse {
        message: String,
    },
}

/// Whether a pull adding `needed` bytes may start on `fs` under `max_percent`. `pinned` (bytes
/// of the images pinned on the node) only adds to the explanation: a node whose pinned images
/// alone pass the limit is reported, never emptied.
pub fn admit(needed: u64, fs: FsUsage, max_percent: u8, pinned: u64) -> Admission {
    let free = fs.free_under(max_percent);
    if needed <= free {
        return Admission::Admit;
    }
    let mut message = format!(
        "waiting for disk space: the image needs {}, {} free under the {max_percent}% limit of \
         the image filesystem ({} of {} used; --image-fs-max-percent)",
        bytes(needed),
        bytes(free),
        bytes(fs.used()),
        bytes(fs.capacity),
    );
    if pinned > fs.limit(max_percent) {
        message.push_str(&format!(
            "; pinned images alone take {}, more than the limit: unpin or remove images, or \
             raise the limit",
            bytes(pinned)
        ));
    }
    Admission::Refuse { message }
}

pub use kruise_api::units::bytes;

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_pull_that_stays_under_the_limit_starts() {
        let fs = FsUsage {
            capacity: 100 * GIB,
            available: 40 * GIB,
        };
        assert_eq!(fs.free_under(80), 20 * GIB);
        assert_eq!(admit(20 * GIB, fs, 80, 0), Admission::Admit);
        assert_eq!(admit(0, fs, 80, 0), Admission::Admit);
    }

    #[test]
    fn a_pull_that_would_pass_the_limit_waits_and_says_by_how_much() {
        let fs = FsUsage {
            capacity: 100 * GIB,
            available: 29 * GIB + 214 * (1 << 20), // 70.8 GiB used
        };
        let Admission::Refuse { message } = admit(18 * GIB + 614 * (1 << 20), fs, 80, 0) else {
            panic!("admitted");
        };
        assert!(message.contains("needs 18.6 GiB"), "{message}");
        assert!(
            message.contains("9.2 GiB free under the 80% limit"),
            "{message}"
        );
        assert!(!message.contains("pinned"), "{message}");
    }

    #[test]
    fn a_full_filesystem_has_nothing_free_and_says_when_pins_are_why() {
        let fs = FsUsage {
            capacity: 10 * GIB,
            available: GIB,
        };
        assert_eq!(fs.free_under(80), 0);
        let Admission::Refuse { message } = admit(1, fs, 80, 9 * GIB) else {
            panic!("admitted");
        };
        assert!(
            message.contains("pinned images alone take 9.0 GiB"),
            "{message}"
        );
    }

    #[test]
    fn the_limit_is_a_percentage_of_capacity() {
        let fs = FsUsage {
            capacity: 1000,
            available: 1000,
        };
        assert_eq!(fs.limit(80), 800);
        assert_eq!(fs.limit(100), 1000);
        assert_eq!(fs.limit(255), 1000);
        assert_eq!(bytes(900), "900 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn statvfs_reads_a_real_filesystem() {
        let fs = usage(Path::new("/")).unwrap();
        assert!(fs.capacity > 0 && fs.available <= fs.capacity);
        assert!(usage(Path::new("/nonexistent/kruise")).is_err());
    }
}
