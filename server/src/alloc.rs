//! A global allocator that keeps absurd allocations from aborting the broker.
//!
//! `kafka-protocol` 0.18 decodes an array by reading its element count from the wire
//! and calling `Vec::with_capacity(count)` before decoding any element. A request of
//! a few dozen bytes can claim two billion elements; the allocation of hundreds of
//! GiB fails, and a failed allocation aborts the process — any client could stop
//! the broker. (Found by the `kafka_request` fuzz target; the fix upstream, which
//! bounds the count by the bytes left, is kafka-protocol-rs pull requests #152/#161/#200,
//! not yet released.)
//!
//! [`GuardedAlloc`] serves allocations of up to [`HUGE`] bytes from the system
//! allocator, and larger ones with an anonymous `mmap` under `MAP_NORESERVE`: address
//! space only, which Linux grants without counting it against memory. Nothing is
//! ever written to such a vector — its first element fails to decode, the request is
//! refused with an error, and the mapping is returned. weir itself never asks for
//! `HUGE` bytes at once (requests are capped at `max_request_bytes`).
//!
//! Under `vm.overcommit_memory = 2` (strict accounting) the kernel refuses even
//! these mappings and the allocation still fails; weir logs the setting at start.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations above this many bytes are reserved address space (see the module docs).
pub const HUGE: usize = 1 << 30;

/// The broker's global allocator; see the [module docs](self).
#[derive(Debug, Default)]
pub struct GuardedAlloc;

fn page() -> usize {
    4096
}

// SAFETY: every method keeps GlobalAlloc's contract: a block is freed by the path
// that allocated it, chosen by its size (Layout::size is the same at allocation and
// deallocation), and blocks above HUGE are page-aligned mappings, which satisfies any
// alignment up to a page (larger alignments go to the system allocator).
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() <= HUGE || layout.align() > page() {
            // SAFETY: same contract as ours.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping with no fixed address has no
        // preconditions; failure is reported as MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() <= HUGE || layout.align() > page() {
            // SAFETY: allocated by System with this layout (same size test as alloc).
            unsafe { System.dealloc(ptr, layout) };
        } else {
            // SAFETY: mapped by alloc with exactly this length.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() <= HUGE || layout.align() > page() {
            // SAFETY: same contract as ours.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: fresh anonymous mappings are zero-filled.
        unsafe { self.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small = |n: usize| n <= HUGE || layout.align() > page();
        if small(layout.size()) && small(new_size) {
            // SAFETY: the block came from System with `layout`; the caller upholds
            // realloc's contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing HUGE (or staying above it): move the block between the two paths.
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as alloc; a null result is passed on.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Allocations up to this size come from glibc's heaps after [`tune_malloc`]
/// (glibc's own default starts at 128 KiB; 32 MiB is the most it accepts).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory a heap keeps for reuse after [`tune_malloc`] before returning it
/// to the kernel (glibc's default starts at 128 KiB).
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Keeps glibc's malloc from mapping, faulting in and returning every large
/// buffer. With its defaults, a block above a threshold that starts at 128 KiB is a
/// fresh `mmap`, and free memory above another at a heap's top goes back to the
/// kernel; both adapt, but not to a process that holds several megabyte buffers at
/// once (a produce request's frame, its entries, a client's batches) and frees them
/// a moment later. Then every page of every request is faulted in and zero-filled
/// anew: measured with `weir bench` (1 KiB records, one producer, 5 requests of
/// 4 MiB in flight, 3 GB), 1.7 million page faults, 3.3 CPU seconds per GB and
/// ~480 MB/s in most runs, against 65 thousand, 1.7 s and ~1,000 MB/s with these
/// thresholds. Fixed thresholds also turn glibc's adaptation off, so the behaviour
/// no longer depends on the order of the first frees.
///
/// Leaves glibc alone when the operator set `MALLOC_MMAP_THRESHOLD_` or
/// `MALLOC_TRIM_THRESHOLD_` (glibc reads those itself). Returns whether it changed
/// the thresholds. Does nothing on other C libraries.
pub fn tune_malloc() -> bool {
    let set_by_operator = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    if set_by_operator {
        return false;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let as_int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets malloc's parameters; it takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

/// Warns when the kernel's overcommit policy defeats [`GuardedAlloc`].
pub fn check_overcommit() {
    if let Ok(mode) = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        && mode.trim() == "2"
    {
        tracing::warn!(
            "vm.overcommit_memory = 2: a malformed request claiming a huge array can abort weir \
             (kafka-protocol pre-allocates from the wire count)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults taken by this thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn minor_faults() -> i64 {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn large_buffers_are_reused_not_faulted_in_anew() {
        assert!(
            tune_malloc() || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some(),
            "mallopt refused the thresholds"
        );
        const BUF: usize = 4 << 20;
        const PAGES_PER_ROUND: i64 = 6 * (BUF as i64) / 4096;
        // As a broker or `weir bench` does: several megabyte buffers written in
        // full, held together, freed together; again and again.
        let round = || {
            let bufs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i | 1; BUF]).collect();
            std::hint::black_box(&bufs);
        };
        round();
        let before = minor_faults();
        for _ in 0..20 {
            round();
        }
        let faults = minor_faults() - before;
        assert!(
            faults < PAGES_PER_ROUND,
            "{faults} page faults over 20 rounds of {PAGES_PER_ROUND} pages each: \
             the buffers went back to the kernel and were faulted in again"
        );
    }

    #[test]
    fn huge_blocks_are_reserved_not_committed_and_freed() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: a valid non-zero layout; freed below with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "64 GiB of address space must be granted");
            p.write(7);
            assert_eq!(p.read(), 7);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn a_vector_grows_across_the_threshold_and_back() {
        let a = GuardedAlloc;
        let small = Layout::from_size_align(1024, 8).unwrap();
        // SAFETY: layouts are valid; every block is freed with its current layout.
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(3, 1024);
            let q = a.realloc(p, small, HUGE + 4096);
            assert!(!q.is_null());
            assert_eq!(q.add(1023).read(), 3);
            let big = Layout::from_size_align(HUGE + 4096, 8).unwrap();
            let r = a.realloc(q, big, 2048);
            assert_eq!(r.read(), 3);
            a.dealloc(r, Layout::from_size_align(2048, 8).unwrap());
        }
    }
}
