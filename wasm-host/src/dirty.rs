//! Which host pages of an actor's linear memory were written since its last checkpoint, so
//! that a checkpoint carries those pages and not the whole memory.
//!
//! # How: write-protection and wasmtime's per-store signal handler
//! After a checkpoint the tracked memory is made read-only (`mprotect(PROT_READ)`). The
//! first write to a page, by the guest or by a host function copying into guest memory,
//! faults; wasmtime hands the fault to the handler installed with
//! [`wasmtime::unix::StoreExt::set_signal_handler`] before deciding it is a trap. Ours
//! checks that the address lies in this actor's tracked range, sets the page's bit,
//! makes the page writable again and resumes the write. The next checkpoint reads the bits,
//! write-protects just the pages they name and clears them.
//!
//! This is the Internet Computer's approach (its memory tracker, also over wasmtime). A call
//! pays one fault per page it writes first (a few microseconds each) and nothing per page
//! it does not; a checkpoint pays one `mprotect` per run of written pages. Alternatives
//! weighed:
//! - hashing every page at each checkpoint works everywhere but costs time in proportion to
//!   the *memory* (about 6 ms for 64 MiB here), not to what the call wrote;
//! - soft-dirty bits (`/proc/self/clear_refs`) are process-wide: clearing them for one actor
//!   clears them for every other;
//! - userfaultfd asynchronous write-protection with `PAGEMAP_SCAN` (Linux 6.7+) is the
//!   cheapest per fault, but needs `vm.unprivileged_userfaultfd` or a privilege, and the
//!   ARM boards we target run older kernels.
//!
//! # Invariants the runtime keeps
//! - Host code writes to a tracked memory only *inside* a call (where wasmtime routes the
//!   fault here) or after [`Tracker::disarm`]: a fault outside any call would reach
//!   wasmtime's handler with no store on the stack and kill the process.
//! - [`Tracker::disarm`] runs before the instance is dropped: the pooling allocator reuses
//!   the slot and expects it writable.
//! - Pages beyond the size armed (memory grown during the call) count as written.
//!
//! On anything but Linux, or if `mprotect` fails, tracking is off and every page counts as
//! written: checkpoints stay correct, just whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What a checkpoint must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Tracking was not armed (or failed): every page may have changed.
    All,
    /// These host pages (indices in units of the host page size), ascending.
    Pages(Vec<u32>),
}

/// The state the signal handler reads: atomics only, no locks (it runs inside a signal).
struct Shared {
    /// The tracked range's start address (0: disarmed).
    base: AtomicUsize,
    /// The tracked range's length, bytes (a multiple of `page`; 0: disarmed).
    len: AtomicUsize,
    /// The host page size.
    page: usize,
    /// One bit per host page of the largest memory this actor may have.
    bits: Box<[AtomicU64]>,
    /// Write faults handled, for tests and metrics.
    faults: AtomicU64,
    /// A page could not be unprotected on its own (the kernel refused to split the mapping:
    /// `vm.max_map_count`), so the whole range was made writable: every page counts as
    /// written until the next arm.
    overflow: AtomicBool,
}

/// Write tracking for one actor's memory.
pub(crate) struct Tracker {
    shared: Arc<Shared>,
}

/// The host's page size.
pub(crate) fn host_page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        #[allow(unsafe_code)]
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|n| n.is_power_of_two()).unwrap_or(4096)
    }
    #[cfg(not(unix))]
    {
        4096
    }
}

impl Tracker {
    /// A tracker for a memory of at most `max_bytes`, disarmed.
    pub(crate) fn new(max_bytes: usize) -> Tracker {
        let page = host_page_size();
        let pages = max_bytes.div_ceil(page);
        let bits = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Tracker {
            shared: Arc::new(Shared {
                base: AtomicUsize::new(0),
                len: AtomicUsize::new(0),
                page,
                bits,
                faults: AtomicU64::new(0),
                overflow: AtomicBool::new(false),
            }),
        }
    }

    /// The host page size the page indices count in.
    pub(crate) fn page_size(&self) -> usize {
        self.shared.page
    }

    /// Write faults handled so far.
    pub(crate) fn faults(&self) -> u64 {
        self.shared.faults.load(Ordering::Relaxed)
    }

    /// The bytes of pages written since the last arm or take, for a memory now `size`
    /// bytes large; `None` when not armed (every page counts as written).
    pub(crate) fn written_bytes(&self, size: usize) -> Option<u64> {
        let len = self.shared.len.load(Ordering::Acquire);
        if len == 0 || size < len || self.shared.overflow.load(Ordering::Acquire) {
            return None;
        }
        let page = self.shared.page;
        let limit = len / page;
        let mut pages = 0u64;
        for (i, w) in self.shared.bits.iter().enumerate() {
            let bits = w.load(Ordering::Acquire);
            if bits == 0 {
                continue;
            }
            let keep = match limit.saturating_sub(i * 64) {
                0 => 0,
                n if n >= 64 => u64::MAX,
                n => (1u64 << n) - 1,
            };
            pages += u64::from((bits & keep).count_ones());
        }
        pages += ((size - len) / page) as u64;
        Some(pages * page as u64)
    }

    /// The handler to install on the actor's store; `false` (not ours) for any fault outside
    /// the armed range, so wasmtime goes on to treat it as a trap or a crash.
    #[cfg(target_os = "linux")]
    pub(crate) fn handler(
        &self,
    ) -> impl Fn(libc::c_int, *const libc::siginfo_t, *const libc::c_void) -> bool + Send + Sync + 'static {
        let shared = self.shared.clone();
        move |signum, info, _context| {
            if signum != libc::SIGSEGV || info.is_null() {
                return false;
            }
            // SAFETY: the kernel passes a valid siginfo for SIGSEGV; si_addr is the
            // faulting address.
            #[allow(unsafe_code)]
            let addr = unsafe { (*info).si_addr() } as usize;
            let base = shared.base.load(Ordering::Acquire);
            let len = shared.len.load(Ordering::Acquire);
            if base == 0 || addr < base || addr - base >= len {
                return false;
            }
            let index = (addr - base) / shared.page;
            let Some(word) = shared.bits.get(index / 64) else { return false };
            let mask = 1u64 << (index % 64);
            if word.fetch_or(mask, Ordering::AcqRel) & mask != 0 {
                // Already unprotected, yet it faults: not a write-protection fault of ours.
                return false;
            }
            shared.faults.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the page lies inside the armed range, which is the live instance's
            // accessible memory (see the module's invariants); making it writable restores
            // the protection wasmtime gave it. mprotect is a plain system call, safe in a
            // signal handler.
            #[allow(unsafe_code)]
            let ok = unsafe {
                libc::mprotect(
                    (base + index * shared.page) as *mut libc::c_void,
                    shared.page,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            } == 0;
            if ok {
                return true;
            }
            // Unprotecting one page splits the mapping; with too many splits (a call writing
            // thousands of scattered pages, `vm.max_map_count`) the kernel refuses. Never let
            // that become a trap of a correct guest: make the whole range writable (which
            // merges the mapping back) and count every page as written.
            // SAFETY: as above, for the whole armed range.
            #[allow(unsafe_code)]
            let all =
                unsafe { libc::mprotect(base as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) } == 0;
            if all {
                shared.overflow.store(true, Ordering::Release);
            }
            all
        }
    }

    /// Whether writes to `[base, base + len)` are being tracked.
    pub(crate) fn armed(&self) -> bool {
        self.shared.len.load(Ordering::Acquire) != 0
    }

    /// Starts tracking `[base, base + len)` from a clean slate: write-protects it all.
    /// Returns whether tracking is on (off when unsupported or `mprotect` failed).
    ///
    /// # Safety
    /// `[base, base + len)` must be the accessible part of a live instance's linear memory,
    /// whose store has [`Tracker::handler`] installed, and no call may be running on it.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn arm(&mut self, base: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded from the caller.
        unsafe { self.disarm() };
        let page = self.shared.page;
        if !cfg!(target_os = "linux")
            || base.is_null()
            || len == 0
            || !(base as usize).is_multiple_of(page)
            || !len.is_multiple_of(page)
        {
            return false;
        }
        if len.div_ceil(page) > self.shared.bits.len() * 64 {
            return false;
        }
        for w in self.shared.bits.iter() {
            w.store(0, Ordering::Relaxed);
        }
        self.shared.overflow.store(false, Ordering::Release);
        // SAFETY: the caller guarantees the range is the instance's accessible memory.
        if unsafe { protect(base as usize, len, false) } {
            self.shared.base.store(base as usize, Ordering::Release);
            self.shared.len.store(len, Ordering::Release);
            true
        } else {
            // SAFETY: as above; undo whatever part was protected.
            unsafe { protect(base as usize, len, true) };
            false
        }
    }

    /// Stops tracking and makes the whole tracked range writable again.
    ///
    /// # Safety
    /// The armed range must still be the live instance's memory (call this before the
    /// instance is dropped), and no call may be running on it.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn disarm(&mut self) {
        let base = self.shared.base.swap(0, Ordering::AcqRel);
        let len = self.shared.len.swap(0, Ordering::AcqRel);
        if base != 0 && len != 0 {
            // SAFETY: forwarded from the caller.
            unsafe { protect(base, len, true) };
        }
    }

    /// The pages written since the tracker was armed (or since the last `take`), given the
    /// memory's current start and size; then protects them again, so tracking starts afresh.
    /// Pages past the armed size count as written and join the tracked range.
    ///
    /// # Safety
    /// As for [`Tracker::arm`]: `base`/`size` describe the live instance's memory now.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn take(&mut self, base: *mut u8, size: usize) -> Written {
        let armed_base = self.shared.base.load(Ordering::Acquire);
        let armed_len = self.shared.len.load(Ordering::Acquire);
        if armed_len == 0
            || armed_base != base as usize
            || size < armed_len
            || self.shared.overflow.load(Ordering::Acquire)
        {
            // Never armed, or the memory moved: nothing is known. Start again.
            // SAFETY: forwarded; disarm only touches the old range if it is still armed,
            // and a moved memory is never the case with the pooling allocator.
            unsafe { self.arm(base, size) };
            return Written::All;
        }
        let page = self.shared.page;
        let mut pages = Vec::new();
        for (i, w) in self.shared.bits.iter().enumerate() {
            let mut bits = w.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let index = i * 64 + b;
                if index * page < armed_len {
                    pages.push(index as u32);
                }
            }
        }
        // Grown pages: written (zeroed at least), and tracked from now on.
        let grown = (armed_len / page)..(size / page);
        pages.extend(grown.clone().map(|p| p as u32));
        let mut ok = true;
        for run in runs(&pages) {
            // SAFETY: every page lies within the live memory (below `size`).
            ok &= unsafe {
                protect(base as usize + run.start as usize * page, (run.end - run.start) as usize * page, false)
            };
        }
        if !ok {
            // SAFETY: as above.
            unsafe { self.disarm() };
        } else {
            self.shared.len.store(size, Ordering::Release);
        }
        Written::Pages(pages)
    }
}

/// Consecutive page indices grouped into ranges.
fn runs(pages: &[u32]) -> Vec<std::ops::Range<u32>> {
    let mut out: Vec<std::ops::Range<u32>> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some(r) if r.end == p => r.end = p + 1,
            _ => out.push(p..p + 1),
        }
    }
    out
}

/// Makes `[addr, addr + len)` read-only, or read-write again.
#[allow(unsafe_code)]
unsafe fn protect(addr: usize, len: usize, writable: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: the caller passes a range of the live instance's accessible memory.
        unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (addr, len, writable);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_pages() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
    }
}
