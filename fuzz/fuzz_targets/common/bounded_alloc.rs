//! A global allocator that refuses any single allocation above a limit, so that a reader
//! that sizes a buffer from a file's claims (a header declaring terabytes) fails at once,
//! whatever the machine's overcommit policy, instead of passing or swapping.
//!
//! A refused request returns null; Rust then calls `handle_alloc_error`, which prints
//! "memory allocation of N bytes failed" and aborts the process: under libFuzzer that is
//! a crash with the input saved, in a test it is a failed test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// [`System`] with a cap on the size of one allocation.
pub struct BoundedAlloc {
    limit: usize,
    largest_refused: AtomicUsize,
}

impl BoundedAlloc {
    /// Refuses single allocations larger than `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        BoundedAlloc {
            limit,
            largest_refused: AtomicUsize::new(0),
        }
    }

    /// The cap, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The largest request refused so far (0 if none).
    pub fn largest_refused(&self) -> usize {
        self.largest_refused.load(Ordering::Relaxed)
    }

    fn refuse(&self, size: usize) -> bool {
        if size <= self.limit {
            return false;
        }
        self.largest_refused.fetch_max(size, Ordering::Relaxed);
        // Formatting integers into stderr allocates nothing.
        let _ = std::io::stderr().write_fmt(format_args!(
            "bounded allocator: refused one allocation of {size} bytes (limit {} bytes): \
             something sized a buffer from what the input claims\n",
            self.limit
        ));
        true
    }
}

// SAFETY: every request is either refused (null, which GlobalAlloc allows) or passed to
// System unchanged, and every release goes back to System.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.refuse(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for alloc; ptr came from System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
