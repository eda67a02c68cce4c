//! Gentle scans for live systems and cron: a byte-rate limit shared by every worker thread, and an
//! idle I/O and CPU priority.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A byte-rate limit shared by all threads. Each read reserves its bytes' share of time on one
/// schedule and waits for its slot: over any stretch of a few reads the rate is the limit, there
/// is no burst after a pause, and progress figures stay true because bytes are counted when read.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1),
            next: Mutex::new(None),
        }
    }

    /// The limit in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Reserves `bytes` at time `now` and returns when the read may start: the later of `now`
    /// and the end of the previous reservation.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Instant {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + cost);
        start
    }

    /// Waits until `bytes` may be read; returns early (false) if `cancel` is set meanwhile.
    pub fn acquire(&self, bytes: u64, cancel: &AtomicBool) -> bool {
        let start = self.reserve(bytes, Instant::now());
        loop {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= start {
                return true;
            }
            std::thread::sleep((start - now).min(Duration::from_millis(50)));
        }
    }
}

/// Puts the calling thread — and the threads it starts afterwards, which inherit it — in the
/// idle I/O scheduling class (`ioprio_set`, class 3: disk time only when no one else wants it)
/// and at the lowest CPU priority (nice 19). Call it before the scan builds its thread pool.
pub fn set_idle_priority() -> std::io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: setpriority takes integers only; on Linux it sets the calling thread's nice value.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's I/O priority as `(class, level)` (`ioprio_get`); class 3 is idle.
pub fn io_priority() -> std::io::Result<(u32, u32)> {
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(((r >> 13) as u32, (r & 0x1fff) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_follow_the_rate_exactly_with_no_burst_after_a_pause() {
        let l = RateLimiter::new(1_000_000);
        let t0 = Instant::now();
        // 40 reads of 100 kB requested at once: they start 0.1 s apart, so 4 MB take 4 s.
        let starts: Vec<Instant> = (0..40).map(|_| l.reserve(100_000, t0)).collect();
        assert_eq!(starts[0], t0);
        let last = starts[39] - t0;
        assert!((last.as_secs_f64() - 3.9).abs() < 1e-6, "{last:?}");
        // After a 10 s pause nothing was saved up: the next read starts now, the one after it
        // 0.1 s later.
        let later = t0 + Duration::from_secs(14);
        assert_eq!(l.reserve(100_000, later), later);
        assert_eq!(
            l.reserve(100_000, later),
            later + Duration::from_millis(100)
        );
    }

    #[test]
    fn a_cancelled_wait_returns_early() {
        let l = RateLimiter::new(1);
        let cancel = AtomicBool::new(false);
        assert!(l.acquire(1000, &cancel), "the first read starts at once");
        cancel.store(true, Ordering::Relaxed);
        let t = Instant::now();
        assert!(!l.acquire(1000, &cancel));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn idle_priority_is_set_for_this_thread() {
        // In a fresh thread, so the test runner's other threads keep their priority.
        std::thread::spawn(|| {
            set_idle_priority().unwrap();
            assert_eq!(io_priority().unwrap().0, 3);
            let inherited = std::thread::spawn(|| io_priority().unwrap().0)
                .join()
                .unwrap();
            assert_eq!(inherited, 3, "threads started afterwards inherit it");
        })
        .join()
        .unwrap();
    }
}
