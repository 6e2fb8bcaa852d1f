//! Target `differential`: the fast path against `recurrent::reference`, the plain per-step
//! loops that serve as the specification.
//!
//! The input bytes choose a small configuration (RNN tanh/relu, LSTM with or without
//! proj_size, GRU; 1-3 layers; bidirectional; bias; batch_first; sizes 1-20; L 0-6;
//! N 0-4 or unbatched), the weights' seed, and the input, h_0 and c_0 values (finite in
//! [-4, 4], with NaN and ±Inf in some cases), sometimes a state of the wrong shape, and
//! per-sequence lengths (sometimes invalid). Both sides must agree: both refuse, or both
//! return the same shapes with NaN and ±Inf in the same places and finite values within
//! torch.testing.assert_close's float64 tolerances. Everything runs in float64, where a
//! different summation order cannot explain a difference at these tolerances.

use arbitrary::Unstructured;
use ndarray::{ArrayD, IxDyn};
use recurrent::{reference, Gru, Kind, Lstm, Nonlinearity, Rnn, RnnConfig};

/// torch.testing.assert_close's defaults for float64.
const RTOL: f64 = 1e-7;
const ATOL: f64 = 1e-7;

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    Case::generate(&mut u).check();
}

#[derive(Debug)]
pub struct Case {
    pub config: RnnConfig,
    pub seed: u64,
    pub input: ArrayD<f64>,
    pub h0: Option<ArrayD<f64>>,
    /// LSTM only, and only with h0.
    pub c0: Option<ArrayD<f64>>,
    pub lengths: Option<Vec<usize>>,
}

fn chance(u: &mut Unstructured<'_>, per256: u16) -> bool {
    u16::from(u.arbitrary::<u8>().unwrap_or(0)) >= 256 - per256
}

fn int(u: &mut Unstructured<'_>, lo: usize, hi: usize) -> usize {
    u.int_in_range(lo..=hi).unwrap_or(lo)
}

/// A value: finite in [-4, 4]; when `specials`, NaN, +Inf or -Inf about one time in 20.
fn value(u: &mut Unstructured<'_>, specials: bool) -> f64 {
    let raw = u.arbitrary::<i16>().unwrap_or(0);
    if specials {
        match raw.rem_euclid(64) {
            0 => return f64::NAN,
            1 => return f64::INFINITY,
            2 => return f64::NEG_INFINITY,
            _ => {}
        }
    }
    f64::from(raw) / 8192.0
}

fn array(u: &mut Unstructured<'_>, shape: &[usize], specials: bool) -> ArrayD<f64> {
    let count: usize = shape.iter().product();
    let values: Vec<f64> = (0..count).map(|_| value(u, specials)).collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape)))
}

impl Case {
    pub fn generate(u: &mut Unstructured<'_>) -> Case {
        let input_size = int(u, 1, 20);
        let hidden = int(u, 1, 20);
        let mut config = match int(u, 0, 4) {
            0 => RnnConfig::new(input_size, hidden),
            1 => RnnConfig::new(input_size, hidden).nonlinearity(Nonlinearity::Relu),
            2 => RnnConfig::lstm(input_size, hidden),
            3 if hidden > 1 => RnnConfig::lstm(input_size, hidden).proj_size(int(u, 1, hidden - 1)),
            3 => RnnConfig::lstm(input_size, hidden),
            _ => RnnConfig::gru(input_size, hidden),
        };
        config = config
            .num_layers(int(u, 1, 3))
            .bidirectional(chance(u, 128))
            .bias(!chance(u, 64))
            .batch_first(chance(u, 96));
        let seed = u.arbitrary::<u64>().unwrap_or(0);
        let specials = chance(u, 64);
        let seq_len = int(u, 0, 6);
        let batch = if chance(u, 40) {
            None
        } else {
            Some(int(u, 0, 4))
        };
        let input_shape = match batch {
            None => vec![seq_len, input_size],
            Some(n) if config.batch_first => vec![n, seq_len, input_size],
            Some(n) => vec![seq_len, n, input_size],
        };
        let input = array(u, &input_shape, specials);

        let states = config.num_directions() * config.num_layers;
        let state_shape = |width: usize| match batch {
            None => vec![states, width],
            Some(n) => vec![states, n, width],
        };
        let (mut h0, mut c0) = (None, None);
        if chance(u, 128) {
            let mut h_shape = state_shape(config.output_hidden_size());
            let mut c_shape = state_shape(hidden);
            // Now and then a state of the wrong shape: both sides must refuse it.
            if chance(u, 16) {
                let i = int(u, 0, h_shape.len() - 1);
                h_shape[i] += 1;
            }
            if chance(u, 16) {
                let i = int(u, 0, c_shape.len() - 1);
                c_shape[i] += 1;
            }
            h0 = Some(array(u, &h_shape, specials));
            if config.kind == Kind::Lstm {
                c0 = Some(array(u, &c_shape, specials));
            }
        }
        let lengths = match batch {
            Some(n) if chance(u, 128) => {
                let mut l: Vec<usize> = (0..n).map(|_| int(u, 1, seq_len.max(1))).collect();
                // Now and then invalid lengths: both sides must refuse them.
                if chance(u, 16) {
                    match int(u, 0, 2) {
                        0 => l.push(1),
                        1 if n > 0 => l[0] = 0,
                        _ => l.iter_mut().for_each(|v| *v = seq_len + 1),
                    }
                }
                Some(l)
            }
            _ => None,
        };
        Case {
            config,
            seed,
            input,
            h0,
            c0,
            lengths,
        }
    }

    /// Runs the fast path and the reference; panics where they disagree.
    pub fn check(&self) {
        let x = self.input.view();
        let h0 = self.h0.as_ref().map(|a| a.view());
        let c0 = self.c0.as_ref().map(|a| a.view());
        match self.config.kind {
            Kind::Rnn => {
                let Ok(rnn) = Rnn::<f64>::seeded(self.config.clone(), self.seed) else {
                    return;
                };
                let fast = rnn.forward(x.view(), h0.clone()).map(|(o, h)| (o, h, None));
                let plain =
                    reference::forward(&rnn, x.view(), h0.clone()).map(|(o, h)| (o, h, None));
                self.agree("Rnn::forward vs reference::forward", fast, plain);
                let fast = rnn.forward(x.view(), h0.clone()).map(|(o, h)| (o, h, None));
                let general =
                    reference::forward_layers(rnn.layers(), x.view(), h0.clone(), None, None);
                self.agree("Rnn::forward vs reference::forward_layers", fast, general);
                if let Some(lengths) = &self.lengths {
                    let fast = rnn
                        .forward_padded(x.view(), lengths, h0.clone())
                        .map(|(o, h)| (o, h, None));
                    let general =
                        reference::forward_layers(rnn.layers(), x.view(), h0, None, Some(lengths));
                    self.agree(
                        "Rnn::forward_padded vs reference::forward_layers",
                        fast,
                        general,
                    );
                }
            }
            Kind::Lstm => {
                let Ok(lstm) = Lstm::<f64>::seeded(self.config.clone(), self.seed) else {
                    return;
                };
                let fast = lstm
                    .forward(x.view(), h0.clone().zip(c0.clone()))
                    .map(|(o, (h, c))| (o, h, Some(c)));
                let general = reference::forward_layers(
                    lstm.layers(),
                    x.view(),
                    h0.clone(),
                    c0.clone(),
                    None,
                );
                self.agree("Lstm::forward vs reference::forward_layers", fast, general);
                if let Some(lengths) = &self.lengths {
                    let fast = lstm
                        .forward_padded(x.view(), lengths, h0.clone().zip(c0.clone()))
                        .map(|(o, (h, c))| (o, h, Some(c)));
                    let general =
                        reference::forward_layers(lstm.layers(), x.view(), h0, c0, Some(lengths));
                    self.agree(
                        "Lstm::forward_padded vs reference::forward_layers",
                        fast,
                        general,
                    );
                }
            }
            Kind::Gru => {
                let Ok(gru) = Gru::<f64>::seeded(self.config.clone(), self.seed) else {
                    return;
                };
                let fast = gru.forward(x.view(), h0.clone()).map(|(o, h)| (o, h, None));
                let general =
                    reference::forward_layers(gru.layers(), x.view(), h0.clone(), None, None);
                self.agree("Gru::forward vs reference::forward_layers", fast, general);
                if let Some(lengths) = &self.lengths {
                    let fast = gru
                        .forward_padded(x.view(), lengths, h0.clone())
                        .map(|(o, h)| (o, h, None));
                    let general =
                        reference::forward_layers(gru.layers(), x.view(), h0, None, Some(lengths));
                    self.agree(
                        "Gru::forward_padded vs reference::forward_layers",
                        fast,
                        general,
                    );
                }
            }
        }
    }

    fn agree(&self, what: &str, fast: Outcome, reference: Outcome) {
        match (fast, reference) {
            (Err(_), Err(_)) => {}
            (Ok((o1, h1, c1)), Ok((o2, h2, c2))) => {
                self.close(what, "output", &o1, &o2);
                self.close(what, "h_n", &h1, &h2);
                match (c1, c2) {
                    (Some(c1), Some(c2)) => self.close(what, "c_n", &c1, &c2),
                    (None, None) => {}
                    (c1, c2) => panic!(
                        "{what}: c_n present on one side only ({:?} vs {:?}) for {self:?}",
                        c1.map(|c| c.shape().to_vec()),
                        c2.map(|c| c.shape().to_vec())
                    ),
                }
            }
            (fast, reference) => panic!(
                "{what}: one side refused: fast {:?}, reference {:?}, for {} {self:?}",
                fast.map(|_| ()),
                reference.map(|_| ()),
                self.config
            ),
        }
    }

    fn close(&self, what: &str, part: &str, fast: &ArrayD<f64>, reference: &ArrayD<f64>) {
        assert_eq!(
            fast.shape(),
            reference.shape(),
            "{what}: {part} shape, for {} {self:?}",
            self.config
        );
        for (i, (&a, &e)) in fast.iter().zip(reference.iter()).enumerate() {
            let agree = if e.is_nan() || a.is_nan() {
                e.is_nan() && a.is_nan()
            } else if e.is_infinite() || a.is_infinite() {
                a == e
            } else {
                (a - e).abs() <= ATOL + RTOL * e.abs()
            };
            assert!(
                agree,
                "{what}: {part} element {i} (flat): fast {a}, reference {e}, for {} {self:?}",
                self.config
            );
        }
    }
}

/// `(output, h_n, c_n)` or the error.
type Outcome = recurrent::Result<(ArrayD<f64>, ArrayD<f64>, Option<ArrayD<f64>>)>;
