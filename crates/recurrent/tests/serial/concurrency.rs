//! One layer of each kind shared by 16 threads, each calling forward, backward and a
//! stream in a loop, from plain threads and from inside a two-thread rayon pool: every
//! result is bit-identical to the same call made alone in the same setting, however the
//! calls interleave (a recurrence split between two threads finds its second thread or
//! runs alone depending on what else the pool is doing). A watchdog fails the test
//! rather than let a deadlock hang it.

use crate::common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::random_array;
use ndarray::{s, ArrayD, Axis, Ix3};
use recurrent::{Gru, Lstm, Rnn, RnnConfig};

const THREADS: usize = 16;
/// How long each setting keeps its threads calling (each makes at least one round).
const ROUNDS_FOR: Duration = Duration::from_millis(700);
/// A round of calls that has not finished after this long is taken for a deadlock.
const WATCHDOG: Duration = Duration::from_secs(60);

/// The layers and their inputs. The forwards run at sizes that take the two-thread
/// paths: an RNN of 256 units with N = 4 over 64 steps or more (columns split), an LSTM
/// and a GRU of 160 units with N = 2 over 30 steps (units split in lockstep). The
/// backwards (which do not split a recurrence) run on the first steps only.
struct Work {
    rnn: Rnn<f32>,
    lstm: Lstm<f32>,
    gru: Gru<f32>,
    x_rnn: ArrayD<f32>,
    go_rnn: ArrayD<f32>,
    x: ArrayD<f32>,
    go: ArrayD<f32>,
}

/// Steps of the backward calls.
const BACKWARD_STEPS: usize = 8;

impl Work {
    fn new() -> Self {
        Work {
            rnn: Rnn::seeded(RnnConfig::new(8, 256), 1).unwrap(),
            lstm: Lstm::seeded(RnnConfig::lstm(8, 160), 2).unwrap(),
            gru: Gru::seeded(RnnConfig::gru(8, 160), 3).unwrap(),
            x_rnn: random_array(&[69, 4, 8], 4, 0.8),
            go_rnn: random_array(&[BACKWARD_STEPS, 4, 256], 5, 0.8),
            x: random_array(&[30, 2, 8], 6, 0.8),
            go: random_array(&[BACKWARD_STEPS, 2, 160], 7, 0.8),
        }
    }

    /// Every result of one round: each layer's forward and backward, and the RNN fed as
    /// a stream (64 steps, three single steps, then the rest).
    fn round(&self) -> Vec<ArrayD<f32>> {
        let mut all = Vec::new();
        let x3 = self.x_rnn.view().into_dimensionality::<Ix3>().unwrap();
        let first = |x: &ArrayD<f32>| x.slice_axis(Axis(0), (0..BACKWARD_STEPS).into()).to_owned();
        let (o, h) = self.rnn.forward(self.x_rnn.view(), None).unwrap();
        all.extend([o, h]);
        let g = self
            .rnn
            .backward(first(&self.x_rnn).view(), None, self.go_rnn.view(), None)
            .unwrap();
        all.extend(g.parameters.into_iter().map(|(_, t)| t));
        all.extend([g.input, g.h0]);
        let mut stream = self.rnn.stream(None).unwrap();
        all.push(stream.feed(x3.slice(s![..64, .., ..]).into_dyn()).unwrap());
        for t in 64..67 {
            let y = stream.step(x3.index_axis(Axis(0), t)).unwrap();
            all.push(y.to_owned().into_dyn());
        }
        all.push(stream.feed(x3.slice(s![67.., .., ..]).into_dyn()).unwrap());
        all.push(stream.state().unwrap().to_owned());

        let (o, (h, c)) = self.lstm.forward(self.x.view(), None).unwrap();
        all.extend([o, h, c]);
        let g = self
            .lstm
            .backward(first(&self.x).view(), None, self.go.view(), (None, None))
            .unwrap();
        all.extend(g.parameters.into_iter().map(|(_, t)| t));
        all.extend([g.input, g.h0]);

        let (o, h) = self.gru.forward(self.x.view(), None).unwrap();
        all.extend([o, h]);
        let g = self
            .gru
            .backward(first(&self.x).view(), None, self.go.view(), None)
            .unwrap();
        all.extend(g.parameters.into_iter().map(|(_, t)| t));
        all.extend([g.input, g.h0]);
        all
    }
}

/// How many of `got`'s elements differ in their bits from `want`'s.
fn differing(got: &[ArrayD<f32>], want: &[ArrayD<f32>]) -> usize {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| {
            assert_eq!(a.shape(), b.shape());
            a.iter()
                .zip(b.iter())
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count()
        })
        .sum()
}

/// `THREADS` threads each make rounds (through `call`, which runs one round where the
/// setting wants it) until `ROUNDS_FOR` has passed; returns (rounds, rounds that
/// differed from `want` in any bit).
fn hammer(
    work: &Work,
    want: &[ArrayD<f32>],
    call: &(dyn Fn(&Work) -> Vec<ArrayD<f32>> + Sync),
) -> (usize, usize) {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let (mut rounds, mut bad) = (0, 0);
                    while rounds == 0 || start.elapsed() < ROUNDS_FOR {
                        let got = call(work);
                        rounds += 1;
                        bad += usize::from(differing(&got, want) > 0);
                    }
                    (rounds, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(r, b), (r1, b1)| (r + r1, b + b1))
    })
}

/// Runs `f` on another thread and fails if it takes longer than [`WATCHDOG`].
fn with_watchdog<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no result after {WATCHDOG:?}: deadlock?"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test thread panicked"),
    }
}

#[test]
fn shared_layers_give_the_same_bits_under_contention() {
    let _serial = crate::serial();
    let (plain, pooled) = with_watchdog(|| {
        let work = Work::new();
        // Plain threads: the calls run on the global pool. The expected values come
        // from one call made alone there.
        let want = work.round();
        let plain = hammer(&work, &want, &|w| w.round());

        // Inside a two-thread pool, which the 16 callers share.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let want = pool.install(|| work.round());
        let pooled = hammer(&work, &want, &|w| pool.install(|| w.round()));
        (plain, pooled)
    });
    assert_eq!(
        plain.1, 0,
        "plain threads: {} of {} rounds differed",
        plain.1, plain.0
    );
    assert_eq!(
        pooled.1, 0,
        "in a pool: {} of {} rounds differed",
        pooled.1, pooled.0
    );
}
