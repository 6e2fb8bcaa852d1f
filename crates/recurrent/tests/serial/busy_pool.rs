//! A recurrence split between two threads must not wait for a thread that is not
//! coming: with one of the pool's two workers kept busy, it runs alone after a short
//! wait, with the same numbers. (A separate test process from threads.rs, which makes
//! the wait long so that its splits always run.)

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{assert_close, random_array};
use recurrent::{reference, Lstm, Rnn, RnnConfig};

/// Runs `f` on a two-thread pool whose other worker spins until `f` returns.
fn with_one_worker_busy<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    {
        let (release, started) = (release.clone(), started.clone());
        pool.spawn(move || {
            started.store(true, Ordering::Release);
            while !release.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        });
    }
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let result = pool.install(f);
    release.store(true, Ordering::Release);
    result
}

#[test]
fn rnn_split_recurrence_does_without_a_busy_pool() {
    let _serial = crate::serial();
    // N = 1, H = 512 over 70 steps: the recurrence would be split by columns.
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(8, 512), 3).unwrap();
    let x = random_array::<f32>(&[70, 1, 8], 7, 0.8);
    let (want, _) = reference::forward(&rnn, x.view(), None).unwrap();
    let (out, _) = with_one_worker_busy(|| rnn.forward(x.view(), None)).unwrap();
    assert_close(&out, &want, "split with a busy pool");
}

#[test]
fn gated_lockstep_does_without_a_busy_pool() {
    let _serial = crate::serial();
    // An LSTM of 160 units in two parts, N = 2 over 30 steps: the lockstep would run.
    let config = RnnConfig::lstm(8, 160);
    let layers = recurrent::params::Layers::<f32>::seeded(config, 3).unwrap();
    let x = random_array::<f32>(&[30, 2, 8], 7, 0.8);
    let h0 = random_array::<f32>(&[1, 2, 160], 2, 0.8);
    let c0 = random_array::<f32>(&[1, 2, 160], 3, 0.8);
    let (want, want_h, _) =
        reference::forward_layers(&layers, x.view(), Some(h0.view()), Some(c0.view()), None)
            .unwrap();
    let lstm = Lstm::from_layers(layers).unwrap();
    let (out, (h, _)) =
        with_one_worker_busy(|| lstm.forward(x.view(), Some((h0.view(), c0.view())))).unwrap();
    assert_close(&out, &want, "lockstep with a busy pool: output");
    assert_close(&h, &want_h, "lockstep with a busy pool: h_n");
}
