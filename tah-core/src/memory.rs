//! What the process holds in memory, and giving some of it back: the
//! resident pages of a mapping and the allocator's free memory. Platform
//! specific; where a platform cannot tell, the figures are 0.
//!
//! - Linux and Android: `/proc/self/smaps` (the mapping's `Rss`) and
//!   `/proc/self/status` (`RssAnon`), `malloc_trim` (glibc) or
//!   `mallopt(M_PURGE)` (bionic, Android 9+).
//! - Apple: `mincore` (pages of the mapped file in memory: an upper bound
//!   of what this process holds) and `malloc_zone_pressure_relief`.

use memmap2::Mmap;

/// Bytes of `mmap` resident in this process.
pub fn mapped_resident_bytes(mmap: &Mmap) -> usize {
    platform::mapped_resident_bytes(mmap.as_ptr() as usize, mmap.len())
}

/// Returns the allocator's free memory to the system (buffers freed after
/// a generation): the bytes the process's anonymous memory shrank by, or
/// what the allocator reports.
pub fn release_free_heap() -> usize {
    release_heap_after(|| ()).1
}

/// Runs `free` (which frees memory: KV caches), then returns the
/// allocator's free memory to the system. Gives `free`'s result and the
/// bytes the process's anonymous memory shrank by across both (Linux,
/// Android), or what the allocator returned (Apple); 0 elsewhere.
pub fn release_heap_after<T>(free: impl FnOnce() -> T) -> (T, usize) {
    platform::release_heap_after(free)
}

/// The process's resident set size (`VmRSS`), where the platform tells.
pub fn process_resident_bytes() -> Option<usize> {
    platform::status_kib("VmRSS").map(|kib| kib * 1024)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod platform {
    /// A `/proc/self/status` field in kB.
    pub fn status_kib(key: &str) -> Option<usize> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        field_kib(&status, key)
    }

    /// The `key:   N kB` line of a `/proc` text, in kB.
    pub(super) fn field_kib(text: &str, key: &str) -> Option<usize> {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse().ok())
    }

    /// `Rss` of the memory area holding `address` in `/proc/self/smaps`.
    pub(super) fn area_rss_kib(smaps: &str, address: usize) -> Option<usize> {
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let Some((start, end)) = line
                .split_whitespace()
                .next()
                .and_then(|range| range.split_once('-'))
                .and_then(|(s, e)| {
                    Some((
                        usize::from_str_radix(s, 16).ok()?,
                        usize::from_str_radix(e, 16).ok()?,
                    ))
                })
            else {
                continue;
            };
            if (start..end).contains(&address) {
                return lines.find_map(|l| field_kib(l, "Rss"));
            }
        }
        None
    }

    pub fn mapped_resident_bytes(address: usize, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        std::fs::read_to_string("/proc/self/smaps")
            .ok()
            .and_then(|smaps| area_rss_kib(&smaps, address))
            .map_or(0, |kib| kib * 1024)
    }

    pub fn release_heap_after<T>(free: impl FnOnce() -> T) -> (T, usize) {
        let before = status_kib("RssAnon");
        let result = free();
        trim_allocator();
        let after = status_kib("RssAnon");
        let released = match (before, after) {
            (Some(b), Some(a)) => b.saturating_sub(a) * 1024,
            _ => 0,
        };
        (result, released)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_allocator() {
        // SAFETY: malloc_trim only walks glibc's own arenas.
        unsafe { libc::malloc_trim(0) };
    }

    #[cfg(target_os = "android")]
    fn trim_allocator() {
        extern "C" {
            fn mallopt(param: libc::c_int, value: libc::c_int) -> libc::c_int;
        }
        /// bionic's `M_PURGE` (Android 9+; older versions ignore it).
        const M_PURGE: libc::c_int = -101;
        // SAFETY: an unknown parameter makes mallopt return 0, nothing else.
        unsafe { mallopt(M_PURGE, 0) };
    }

    #[cfg(not(any(all(target_os = "linux", target_env = "gnu"), target_os = "android")))]
    fn trim_allocator() {}
}

#[cfg(target_vendor = "apple")]
mod platform {
    pub fn status_kib(_key: &str) -> Option<usize> {
        None
    }

    pub fn mapped_resident_bytes(address: usize, len: usize) -> usize {
        // SAFETY: sysconf only reads a constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if len == 0 || page == 0 {
            return 0;
        }
        let start = address - address % page;
        let pages = (address + len - start).div_ceil(page);
        let mut resident = vec![0 as libc::c_char; pages];
        // SAFETY: `start..start + pages * page` covers the live mapping (its
        // first and last pages included); `resident` holds one byte a page.
        let ok = unsafe {
            libc::mincore(
                start as *const libc::c_void,
                pages * page,
                resident.as_mut_ptr(),
            )
        };
        if ok != 0 {
            return 0;
        }
        resident.iter().filter(|&&r| r & 1 != 0).count() * page
    }

    pub fn release_heap_after<T>(free: impl FnOnce() -> T) -> (T, usize) {
        extern "C" {
            fn malloc_zone_pressure_relief(zone: *mut libc::c_void, goal: usize) -> usize;
        }
        let result = free();
        // SAFETY: a null zone means every zone; a goal of 0 means as much as possible.
        let released = unsafe { malloc_zone_pressure_relief(std::ptr::null_mut(), 0) };
        (result, released)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
mod platform {
    pub fn status_kib(_key: &str) -> Option<usize> {
        None
    }

    pub fn mapped_resident_bytes(_address: usize, _len: usize) -> usize {
        0
    }

    pub fn release_heap_after<T>(free: impl FnOnce() -> T) -> (T, usize) {
        (free(), 0)
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::platform::{area_rss_kib, field_kib};

    #[test]
    fn proc_fields_and_smaps_areas_are_parsed() {
        let status = "Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t 12 kB\n";
        assert_eq!(field_kib(status, "VmRSS"), Some(2048));
        assert_eq!(field_kib(status, "RssAnon"), Some(12));
        assert_eq!(field_kib(status, "Rss"), None);
        let smaps = "1000-2000 r--p 00000000 08:01 5 /a\nSize: 4 kB\nRss: 4 kB\n\
                     2000-8000 r--s 00000000 08:01 6 /b.gguf\nSize: 24 kB\nRss: 16 kB\nPss: 16 kB\n";
        assert_eq!(area_rss_kib(smaps, 0x1800), Some(4));
        assert_eq!(area_rss_kib(smaps, 0x2000), Some(16));
        assert_eq!(area_rss_kib(smaps, 0x8000), None);
    }

    #[test]
    fn a_touched_mapping_is_resident_and_released() {
        let path = std::env::temp_dir().join(format!("tah-memory-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private test file, not modified while mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let sum: u64 = mmap.iter().step_by(4096).map(|&b| b as u64).sum();
        assert_eq!(sum, 7 * 256);
        assert_eq!(super::mapped_resident_bytes(&mmap), 1 << 20);
        crate::gguf::mapping::release_range(&mmap, 0, mmap.len());
        assert_eq!(super::mapped_resident_bytes(&mmap), 0);
        // The bytes read back the same.
        assert!(mmap.iter().all(|&b| b == 7));
        std::fs::remove_file(&path).unwrap();
    }
}
