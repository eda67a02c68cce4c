//! SIGBUS under a memory map becomes a detected bad range, not a dead process.
//!
//! A file truncated while it is mapped, or a media error in a mapped page, makes the kernel send
//! SIGBUS when the page is touched; by default that kills the process. While a thread reads a
//! map inside [`guard`], a process-wide handler checks whether the faulting address lies in that
//! thread's registered range: if so it maps a page of zeros over the faulting page (so the read
//! can go on), marks the thread's range as faulted, and returns. The caller then throws away
//! what it computed from the map and re-reads the range with `pread`, which reports the
//! truncation or the EIO properly. A fault anywhere else is not ours: the previous handler is
//! put back and the fault repeats under it (by default: the process dies, as it should).
//! sapling's `indexedlog/src/sigbus.rs` works the same way.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

thread_local! {
    /// The mapped range this thread is reading: (start address, length); (0, 0) when none.
    static RANGE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when a fault hit RANGE.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

static INSTALL: Once = Once::new();
static PAGE: AtomicUsize = AtomicUsize::new(4096);
/// The action that was in place before ours, as raw bytes of a `sigaction` (restored on a
/// fault that is not ours).
static mut PREVIOUS: Option<libc::sigaction> = None;

extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Const-initialised thread-locals of Cell<Copy> touch no allocator and no lock.
    let (start, len) = RANGE.with(Cell::get);
    if len != 0 && addr >= start && addr < start.saturating_add(len) {
        let page = PAGE.load(Ordering::Relaxed);
        let at = addr & !(page - 1);
        // SAFETY: replaces one page inside a read-only private map this thread owns and is
        // reading; MAP_FIXED over it is what the map's bytes become (zeros) until it is unmapped.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            FAULTED.with(|f| f.set(true));
            return;
        }
    }
    // Not ours (or the page could not be replaced): the previous action handles the repeat.
    // SAFETY: PREVIOUS was written once, before this handler was installed.
    unsafe {
        let previous = std::ptr::addr_of!(PREVIOUS).read();
        match previous {
            Some(act) => {
                libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
            }
            None => {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
            }
        }
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf and sigaction are called with valid arguments; PREVIOUS is written
        // before the handler that reads it is installed, and never again.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) == 0 {
                std::ptr::addr_of_mut!(PREVIOUS).write(Some(old));
            }
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
        }
    });
}

/// Runs `f` while faults in `[start, start + len)` are caught; returns its result and whether a
/// fault happened (then `f` saw zeros where the file's bytes could not be read).
pub(crate) fn guard<R>(start: *const u8, len: usize, f: impl FnOnce() -> R) -> (R, bool) {
    install();
    FAULTED.with(|x| x.set(false));
    RANGE.with(|r| r.set((start as usize, len)));
    let r = f();
    RANGE.with(|r| r.set((0, 0)));
    (r, FAULTED.with(|x| x.replace(false)))
}
