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
