//! The binary's memory allocator (only `main.rs` uses this file; the library forbids `unsafe`,
//! and this is all of the binary's).
//!
//! mimalloc instead of glibc malloc: objects are kept in pages of one size class, and a page that
//! empties is given back to the OS after `purge_delay` (100 ms, set first thing in `main`), so
//! the request buffers of a burst of clients do not stay resident between the small long-lived
//! state of idle connections (glibc keeps such holes; benches/README.md, idle memory). mimalloc
//! purges only when the thread calls it again, so each proxy worker also calls `mi_collect` once
//! a second ([`tidy`]): a worker left with only idle connections gives the pages back too.
//! Not 0 (at once): a page emptied and refilled within a few requests was then faulted in again
//! every time (page faults and madvise were 3 % of the CPU at 50 connections, 19 % at 500).
//! Transparent huge pages off.
//!
//! Asked the fast way: the `mimalloc` crate's allocator passes every request to
//! `mi_malloc_aligned`, and mimalloc 3 serves one above 1 KiB whose size class is not a power of
//! two (the 2 KiB state of each request, most buffers) on its slow over-allocating path, even
//! for an alignment of 1 or 8 (about 300 instructions instead of 40 per call, measured with
//! callgrind). [`Mi`] calls plain `mi_malloc` whenever a plain block is aligned enough, as the
//! mimalloc author advises for Rust (microsoft/mimalloc#314).
//!
//! A larger alignment whose size is a multiple of it (tokio's 128-aligned task cells and socket
//! registrations) is asked plainly first too: such a size class's blocks all sit on the
//! alignment, but `mi_malloc_aligned` uses them only when the page's free list is not empty at
//! that moment and otherwise over-allocates from the next class up, so every idle connection's
//! 384-byte task cell took a 512-byte block (benches/README.md, sixth pass). A plain block that
//! is not aligned after all is freed and asked for again the aligned way.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

#[global_allocator]
static GLOBAL: Mi = Mi;

/// mimalloc, plain when it can be, aligned when it must.
pub struct Mi;

/// Whether a plain mimalloc block of `size` bytes is aligned to `align`: every block is aligned
/// to 8 (size classes are whole words), and to 16 when its size class is a multiple of 16, which
/// it is for a size that is one (classes above 16 bytes step by 16 or more;
/// `MI_MAX_ALIGN_SIZE`).
fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= 8 || (align == 16 && size.is_multiple_of(16))
}

/// Whether a plain block of `size` may meet `align`, an alignment larger than
/// [`plain_is_aligned`] covers: up to 1 KiB, where mimalloc's size classes step by at most
/// 128, the class of a size that is a multiple of the alignment is one too, so every block of
/// a page whose blocks start on the alignment meets it. Where a page's blocks start is
/// mimalloc's business, so [`by_alignment`] checks the block it got.
fn plain_may_be_aligned(size: usize, align: usize) -> bool {
    align <= 128 && size <= 1024 && size.is_multiple_of(align)
}

/// Calls `plain(size)` when a plain block of `size` meets `align` (or, for a larger alignment,
/// when the plain block it got does), else `aligned(size, align)`.
///
/// # Safety
/// As the mimalloc function called.
#[inline]
unsafe fn by_alignment(
    size: usize,
    align: usize,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    if plain_is_aligned(size, align) {
        return plain(size) as *mut u8;
    }
    if plain_may_be_aligned(size, align) {
        let p = plain(size);
        if (p as usize).is_multiple_of(align) {
            return p as *mut u8;
        }
        mi::mi_free(p);
    }
    aligned(size, align) as *mut u8
}

// SAFETY: each method hands its layout's size (and alignment when a plain block might not meet
// it) to the mimalloc function of the same contract; `mi_free` frees blocks of either kind.
unsafe impl GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        by_alignment(
            layout.size(),
            layout.align(),
            mi::mi_malloc,
            mi::mi_malloc_aligned,
        )
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        by_alignment(
            layout.size(),
            layout.align(),
            mi::mi_zalloc,
            mi::mi_zalloc_aligned,
        )
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_is_aligned(new_size, layout.align()) {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (between `eager_commit_delay` = 14 and
/// `use_numa_nodes` = 16, which libmimalloc-sys exports; this one it does not).
const MI_OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// Milliseconds an emptied page stays committed, for reuse, before it is purged.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` in the environment says otherwise
/// (mimalloc reads it itself). Must run before any other thread exists (mimalloc's option setter
/// is not thread safe): the first statement of `main`.
pub fn setup() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: an FFI call with two integers, made while the process has one thread.
    unsafe { mi::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Purges this thread's pages whose delay has passed (called by each proxy worker once a
/// second).
pub fn tidy() {
    // SAFETY: an FFI call without arguments that point anywhere; mimalloc's own collection of
    // the calling thread's heap.
    unsafe { mi::mi_collect(false) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 64 KiB in several steps, at each alignment up to 4 KiB, allocated,
    /// grown, shrunk and zeroed through the global allocator: each block is aligned as asked,
    /// holds its bytes through a move, and a zeroed one is zero.
    #[test]
    fn every_block_is_aligned_as_asked_and_keeps_its_bytes() {
        let sizes = (1..=300)
            .chain((301..=70_000).step_by(997))
            .chain([1024, 2048, 2088, 4096]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: each block is used within its size and freed once with its layout.
                unsafe {
                    let p = std::alloc::alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let (mut q, mut len) = (p, size);
                    for new in [size * 2 + 8, (size / 2).max(1)] {
                        q = std::alloc::realloc(
                            q,
                            Layout::from_size_align(len, align).unwrap(),
                            new,
                        );
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "realloc {len}->{new} align {align}");
                        assert!((0..len.min(new).min(size)).all(|i| *q.add(i) == 0xA5));
                        len = new;
                    }
                    std::alloc::dealloc(q, Layout::from_size_align(len, align).unwrap());
                    let z = std::alloc::alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed size {size} align {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    std::alloc::dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn plain_blocks_are_used_only_where_aligned_enough() {
        assert!(plain_is_aligned(2088, 8));
        assert!(plain_is_aligned(24, 1));
        assert!(plain_is_aligned(32, 16));
        assert!(!plain_is_aligned(24, 16));
        assert!(!plain_is_aligned(384, 128));
        assert!(plain_may_be_aligned(384, 128));
        assert!(plain_may_be_aligned(256, 128));
        assert!(!plain_may_be_aligned(200, 128));
        assert!(!plain_may_be_aligned(4096, 4096));
    }

    /// Many 384-byte blocks aligned to 128, as tokio asks for the task cell of each idle
    /// connection, come from the 384-byte size class, not from 512-byte blocks (what
    /// `mi_malloc_aligned` alone gave for all of them: 128 bytes more per connection).
    #[test]
    fn task_cells_take_blocks_of_their_own_size() {
        let layout = Layout::from_size_align(384, 128).unwrap();
        // SAFETY: each block is checked, then freed once with its layout.
        unsafe {
            let blocks: Vec<*mut u8> = (0..20_000).map(|_| std::alloc::alloc(layout)).collect();
            for &p in &blocks {
                assert!(!p.is_null());
                assert_eq!(p as usize % 128, 0);
            }
            let own = blocks
                .iter()
                .filter(|&&p| mi::mi_usable_size(p as *const c_void) == 384)
                .count();
            assert!(own >= 19_900, "{own} of 20000 blocks are 384 bytes");
            for p in blocks {
                std::alloc::dealloc(p, layout);
            }
        }
    }
}
