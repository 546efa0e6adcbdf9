//! The process's open-file limit. Every connection, peer link, WAL file and
//! partition segment holds a file descriptor; the soft limit many systems start
//! processes with (1,024) is far below what a broker with a few hundred partitions
//! and clients needs, while the hard limit is usually much higher. `weir serve`
//! raises the soft limit to the hard one at start, as Kafka's and Redpanda's
//! packaging do.

#![allow(unsafe_code)]

/// Raises the soft limit on open files to the hard limit; returns the limit in
/// force afterwards.
///
/// # Errors
/// When the limits cannot be read or set (the soft limit is then unchanged).
pub fn raise_open_files() -> std::io::Result<u64> {
    let mut lim = limits()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}

/// The soft limit on open files in force now.
///
/// # Errors
/// When the limit cannot be read.
pub fn open_files() -> std::io::Result<u64> {
    Ok(limits()?.rlim_cur)
}

/// How many descriptors this process holds open now (those inherited from its
/// parent among them: a supervisor or CI runner may pass many down). They count
/// against the open-file limit like the node's own.
///
/// # Errors
/// When `/proc/self/fd` cannot be read.
pub fn open_descriptors() -> std::io::Result<u64> {
    // The directory listing holds one descriptor of its own while it is read.
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

/// The descriptors the node may still open: the soft limit less those open now;
/// `None` when the limit is infinite or cannot be read.
pub fn descriptors_left() -> Option<u64> {
    let limit = open_files().ok().filter(|&n| n < u64::MAX)?;
    let open = open_descriptors().unwrap_or(0);
    Some(limit.saturating_sub(open))
}

/// The soft and hard limits on open files.
fn limits() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}
