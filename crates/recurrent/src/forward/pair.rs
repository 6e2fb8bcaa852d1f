//! Two threads in lockstep over the steps of one recurrence.
//!
//! A small batch's recurrence is a chain of small products, one per step; a fork-join
//! per step costs about as much as the step. Instead two threads each own a part of
//! every step (a range of columns of `W_hhᵀ`, which then stays in that core's cache) for
//! the whole sequence, and meet once per step at a spin barrier ([`Lockstep`]).
//!
//! The second thread is offered to the rayon pool ([`run_pair`]); if no worker takes it
//! within [`HELPER_WAIT_US`] (all busy, or asleep), nothing runs and the caller does the
//! work alone. A
//! worker that comes later finds the work taken. So this never waits on a thread that is
//! not running.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// How long [`run_pair`] waits for a second thread before doing without, in
/// microseconds: 200 by default. A worker that is awake comes within a few microseconds;
/// one the OS has put to sleep can take milliseconds to wake (seen on this project's
/// virtual machines), which would cost more than the split saves.
static HELPER_WAIT_US: AtomicU64 = AtomicU64::new(200);

/// Sets how long [`run_pair`] waits for a second thread (tests use a long wait so that
/// the two-thread path runs deterministically).
pub(crate) fn set_helper_wait(wait: std::time::Duration) {
    let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
    HELPER_WAIT_US.store(us, Ordering::Relaxed);
}

/// A raw pointer that may cross threads, for buffers the two parts share. Each user
/// states the protocol that keeps their accesses disjoint.
#[derive(Clone, Copy)]
pub(super) struct SharedPtr<T>(pub *mut T);
// SAFETY: only used by the lockstep scans, whose protocols keep accesses disjoint.
unsafe impl<T: Send> Send for SharedPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for SharedPtr<T> {}

/// The per-step barrier: each part counts the steps it has finished.
///
/// Part `p` calls [`Lockstep::wait`] before step `s` (it returns once the other part has
/// finished step `s - 1`, so everything that part wrote then is visible) and
/// [`Lockstep::finish`] after it. The other part is then never more than one step
/// ahead or behind.
pub(super) struct Lockstep {
    progress: [AtomicUsize; 2],
}

impl Lockstep {
    pub(super) fn new() -> Self {
        Lockstep {
            progress: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Waits until the other part has finished `step - 1` (Acquire).
    pub(super) fn wait(&self, part: usize, step: usize) {
        let other = &self.progress[1 - part];
        let mut spins = 0u32;
        while other.load(Ordering::Acquire) < step {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Publishes that `part` has finished `step` (Release).
    pub(super) fn finish(&self, part: usize, step: usize) {
        self.progress[part].store(step + 1, Ordering::Release);
    }
}

/// Runs `worker(0)` on this thread and `worker(1)` on another thread of the current
/// rayon pool at the same time. Returns `false`, having run neither, if no pool thread
/// took part 1 within [`HELPER_WAIT_US`].
pub(super) fn run_pair(worker: &(dyn Fn(usize) + Sync)) -> bool {
    const OPEN: u8 = 0;
    const HELPER_IN: u8 = 1;
    const WITHDRAWN: u8 = 2;
    // Part 1 runs only if it claimed the work (OPEN -> HELPER_IN) before part 0 withdrew
    // it (OPEN -> WITHDRAWN).
    let claim = AtomicU8::new(OPEN);
    let mut ran = true;
    rayon::scope(|scope| {
        scope.spawn(|_| {
            if claim
                .compare_exchange(OPEN, HELPER_IN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                worker(1);
            }
        });
        let start = std::time::Instant::now();
        let wait = std::time::Duration::from_micros(HELPER_WAIT_US.load(Ordering::Relaxed));
        while claim.load(Ordering::Acquire) == OPEN {
            if start.elapsed() > wait
                && claim
                    .compare_exchange(OPEN, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                ran = false;
                return;
            }
            std::hint::spin_loop();
        }
        worker(0);
    });
    ran
}
