//! Two threads in lockstep over the steps of one recurrence.
//!
//! A small batch's recurrence is a chain of small products, one per step; a fork-join
//! per step costs about as much as the step. Instead two threads each own a part of
//! every step (a range of columns of `W_hhᵀ`, which then stays in that core's cache) for
//! the whole sequence, and meet once per step at a spin barrier ([`Lockstep`]).
//!
//! The second thread is offered to the rayon pool ([`run_pair`]); if no worker takes it
//! within [`HELPER_WAIT_US`] (all busy, or asleep), the caller does the work alone. A
//! worker that comes later finds the work taken. So this never waits on a thread that is
//! not running.
//!
//! # Determinism
//!
//! Whether the second thread comes depends on timing, so it must not change a result:
//! [`run_parts`] runs the same per-part step function either way, on two threads in
//! lockstep or on one thread part 0 then part 1 for each step, so every sum is taken by
//! the same kernel call over the same columns in the same order. Every other choice of
//! path in the forward depends only on the shapes, the parameters and the number of
//! threads of the rayon pool the call runs in (`rayon::current_num_threads()`), never on
//! timing or on the memory layout of the caller's arrays (states and inputs are copied
//! into row-major buffers first). Hence: the same layer, input and pool size give
//! bit-identical results on every call, alone or concurrent with any other work.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How long [`run_pair`] waits for a second thread before doing without, in
/// microseconds: 200 by default. A worker that is awake comes within a few microseconds;
/// one the OS has put to sleep can take milliseconds to wake (seen on this project's
/// virtual machines), which would cost more than the split saves.
static HELPER_WAIT_US: AtomicU64 = AtomicU64::new(200);

/// Sets how long [`run_pair`] waits for a second thread (tests use a long wait so that
/// the two-thread path runs, or none so that it does not; the results are the same).
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

/// Runs `steps` steps of a recurrence whose every step is split in two parts: `step(part,
/// s, state)` does part `part` of step `s`, with `states[part]` its own scratch.
///
/// On two threads in lockstep when a second one comes in time (part `p` starts step `s`
/// only once the other part has finished step `s - 1`); otherwise on this thread alone,
/// part 0 then part 1 of each step in turn. A step function that reads only what the
/// previous step wrote and writes only its own part (the contract of the lockstep) thus
/// computes exactly the same values either way: the choice, which depends on timing,
/// never shows in the result.
pub(super) fn run_parts<S: Send>(
    states: [S; 2],
    steps: usize,
    step: &(dyn Fn(usize, usize, &mut S) + Sync),
) {
    // Each part takes its own state once, on whichever thread runs it.
    let slots = states.map(|s| Mutex::new(Some(s)));
    let take = |part: usize| -> S {
        let taken = match slots[part].lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match taken {
            Some(state) => state,
            None => unreachable!("each part's state is taken once"), // ok: see callers
        }
    };
    let lockstep = Lockstep::new();
    let worker = |part: usize| {
        let mut state = take(part);
        for s in 0..steps {
            if s > 0 {
                lockstep.wait(part, s);
            }
            step(part, s, &mut state);
            lockstep.finish(part, s);
        }
    };
    if run_pair(&worker) {
        return;
    }
    // No second thread came (and neither part ran): the same steps, in the same order
    // of parts the barrier allows, here.
    let (mut first, mut second) = (take(0), take(1));
    for s in 0..steps {
        step(0, s, &mut first);
        step(1, s, &mut second);
    }
}

/// The per-step barrier: each part counts the steps it has finished.
///
/// Part `p` calls [`Lockstep::wait`] before step `s` (it returns once the other part has
/// finished step `s - 1`, so everything that part wrote then is visible) and
/// [`Lockstep::finish`] after it. The other part is then never more than one step
/// ahead or behind.
struct Lockstep {
    progress: [AtomicUsize; 2],
}

impl Lockstep {
    fn new() -> Self {
        Lockstep {
            progress: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Waits until the other part has finished `step - 1` (Acquire).
    fn wait(&self, part: usize, step: usize) {
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
    fn finish(&self, part: usize, step: usize) {
        self.progress[part].store(step + 1, Ordering::Release);
    }
}

/// Runs `worker(0)` on this thread and `worker(1)` on another thread of the current
/// rayon pool at the same time. Returns `false`, having run neither, if no pool thread
/// took part 1 within [`HELPER_WAIT_US`].
fn run_pair(worker: &(dyn Fn(usize) + Sync)) -> bool {
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
