//! Gives the pages the C allocator holds free back to the system.
//!
//! glibc's allocator returns freed memory to the system only from the top of each
//! arena. After a burst of connections closes, most of what they used is free, but
//! it sits below a few blocks still in use (a table that grew, a buffer kept for
//! reuse), so the process stays at its peak size although almost nothing is live.
//! `malloc_trim(0)` walks every arena and hands each whole free page back
//! (`madvise(MADV_DONTNEED)`); the blocks in use stay where they are.
//!
//! One thing `malloc_trim` cannot reach: the calling thread's cache of freed blocks
//! (glibc's tcache, up to 7 blocks of each size up to 1,032 bytes), which count as in
//! use. After a burst they are the last blocks freed, scattered over the whole heap,
//! and each keeps its page resident: about 450 pages, close to 2 MiB. So the cache is
//! first refilled with blocks allocated side by side, and the scattered ones freed
//! behind them into the arena, where the walk can give their pages back.
//!
//! Elsewhere (musl, other systems) there is no such call: `release_free_pages` does
//! nothing and says so.
#![deny(unsafe_code)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use glibc::release_free_pages;

/// No allocator call to make here: nothing is given back.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_pages() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// The request sizes of glibc's thread-cache bins (one per 16 bytes of block size,
    /// blocks of 32 to 1,040 bytes) and how many blocks each bin holds.
    const CACHE_BINS: usize = 64;
    const CACHE_PER_BIN: usize = 7;

    /// Asks the allocator to give every whole free page of every arena back to the
    /// system. Returns whether it gave any. It walks the whole heap under each arena's
    /// lock, so call it when a burst is over, not per request.
    pub fn release_free_pages() -> bool {
        // Every block the thread cache holds, taken out of it.
        let cached = blocks();
        let gave = trim();
        // The cache, empty now, is filled with blocks allocated side by side from the
        // free space the walk merged; what it held is freed behind them, into the
        // arena, since the cache is full.
        drop(std::hint::black_box(blocks()));
        drop(std::hint::black_box(cached));
        trim() || gave
    }

    #[allow(unsafe_code)]
    fn trim() -> bool {
        // SAFETY: malloc_trim takes no pointer and is MT-safe (glibc locks each arena
        // in turn); it only changes which free pages are backed by memory.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    /// A block of each bin's request size, as many as the bin holds.
    fn blocks() -> Vec<Vec<u8>> {
        (0..CACHE_BINS)
            .flat_map(|bin| (0..CACHE_PER_BIN).map(move |_| 24 + 16 * bin))
            .map(|request| std::hint::black_box(Vec::with_capacity(request)))
            .collect()
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident pages of this process, in bytes (second field of /proc/self/statm).
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
        pages * 4096
    }

    #[test]
    fn free_pages_below_a_live_block_go_back_to_the_system() {
        // On a thread of its own: it gets an arena of its own, which this test alone
        // fills and empties.
        let (before, after) = std::thread::spawn(|| {
            // 32 MiB in small blocks (below the mmap threshold: they come from the
            // arena), then one more that stays live at the top.
            let mut blocks: Vec<Box<[u8; 512]>> = (0..65_536).map(|i| Box::new([i as u8; 512])).collect();
            let pinned = Box::new([1u8; 512]);
            blocks.clear();
            blocks.shrink_to_fit();
            let before = resident_bytes();
            let gave = release_free_pages();
            let after = resident_bytes();
            assert!(gave, "malloc_trim reported nothing given back");
            drop(pinned);
            (before, after)
        })
        .join()
        .expect("test thread");
        assert!(
            before >= after + 16 * 1024 * 1024,
            "resident {before} bytes before, {after} after: less than 16 MiB given back"
        );
    }
}
