//! Optimizers that update parameters the way `torch.optim` does: [`Sgd`]
//! (`torch.optim.SGD`), [`Adam`] (`torch.optim.Adam`) and [`AdamW`]
//! (`torch.optim.AdamW`), plus [`clip_grad_norm_`] (`torch.nn.utils.clip_grad_norm_`).
//!
//! They work on named tensors, so one optimizer serves every layer type: anything that
//! reads and writes its parameters by torch's names implements [`Parameters`] ([`Rnn`],
//! [`Lstm`], [`Gru`], [`Layers`], the cells, and a plain `Vec<(String, ArrayD<T>)>`), and
//! a step takes the gradients as `(name, gradient)` pairs, which is what
//! [`Rnn::backward`](crate::Rnn::backward) returns in
//! [`Gradients::parameters`](crate::backward::Gradients::parameters).
//!
//! The update rules are torch's single-tensor implementations (the ones torch runs on
//! CPU tensors), operation for operation: every element is computed in `T` and every
//! scalar factor (`1 - dampening`, `lr / (1 - beta1^step)`, ...) in `f64` as Python
//! computes it, then rounded to `T` as torch's kernels do. State is kept per parameter
//! name; a parameter without a gradient in a step is left alone, state and step count
//! included, as torch skips a parameter whose `.grad` is `None`.
//!
//! ## Rounding
//!
//! torch's CPU kernels for `add(.., alpha=)`, `lerp` and `addcmul` are vectorized with
//! fused multiply-adds (AVX2 / AVX-512 on x86-64; the compiler contracts the scalar
//! tails too), so `p + alpha * g` is rounded once. This module calls `mul_add` at
//! exactly those places (exact on every platform): SGD then reproduces torch bit for bit
//! (checked on the fixtures, both dtypes). Adam and AdamW differ from torch by an ulp in
//! a few elements: torch's vectorized CPU `sqrt` is not correctly rounded (measured with
//! torch 2.15 on AVX-512: 1 ulp off in about a fifth of float32 and one in a hundred
//! float64 elements of a long tensor), while `f32::sqrt` / `f64::sqrt` are.
//!
//! A training step:
//!
//! ```
//! use ndarray::Array3;
//! use recurrent::optim::{clip_grad_norm_, Adam, AdamConfig};
//! use recurrent::{Rnn, RnnConfig};
//!
//! let mut rnn = Rnn::<f64>::seeded(RnnConfig::new(3, 4), 0)?;
//! // torch.optim.Adam(rnn.parameters(), lr=0.01)
//! let mut opt = Adam::new(AdamConfig::new(0.01))?;
//! let x = Array3::from_shape_fn((5, 2, 3), |(t, n, i)| ((t + 2 * n + i) as f64).sin());
//! let target = Array3::<f64>::from_elem((5, 2, 4), 0.5);
//!
//! let loss = |rnn: &Rnn<f64>| -> recurrent::Result<f64> {
//!     let (out, _) = rnn.forward(x.view().into_dyn(), None)?;
//!     Ok((&out - &target.view().into_dyn()).mapv(|d| d * d).sum())
//! };
//! let before = loss(&rnn)?;
//! for _ in 0..20 {
//!     let (out, _) = rnn.forward(x.view().into_dyn(), None)?;
//!     let grad_out = (&out - &target.view().into_dyn()) * 2.0; // d loss / d output
//!     let mut grads = rnn.backward(x.view().into_dyn(), None, grad_out.view(), None)?;
//!     clip_grad_norm_(&mut grads.parameters, 1.0, 2.0, false)?;
//!     opt.step(&mut rnn, &grads.parameters)?;
//! }
//! assert!(loss(&rnn)? < before);
//! # Ok::<(), recurrent::Error>(())
//! ```

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::cells::{GruCell, LstmCell, RnnCell};
use crate::element::Float;
use crate::error::{py_repr, Error, Result};
use crate::module::{Gru, Lstm, Rnn};
use crate::params::Layers;

// ---------------------------------------------------------------------------------------
// Parameters by name
// ---------------------------------------------------------------------------------------

/// Something whose parameters can be read and replaced by torch's names: what an
/// optimizer updates.
///
/// Implemented for [`Rnn`], [`Lstm`], [`Gru`], [`Layers`], [`RnnCell`], [`LstmCell`],
/// [`GruCell`] (through their own `parameter` / `set_parameter`), and for a list of
/// `(name, tensor)` pairs (`Vec<(String, ArrayD<T>)>` or a mutable slice of one), so that
/// plain tensors can be optimized too.
///
/// ```
/// use ndarray::{arr1, ArrayD};
/// use recurrent::optim::{Parameters, Sgd, SgdConfig};
///
/// let mut params: Vec<(String, ArrayD<f64>)> = vec![("w".into(), arr1(&[1.0, 2.0]).into_dyn())];
/// let mut opt = Sgd::new(SgdConfig::new(0.5))?;
/// opt.step(&mut params, &[("w".to_string(), arr1(&[1.0, -1.0]).into_dyn())])?;
/// assert_eq!(params.parameter("w")?, arr1(&[0.5, 2.5]).into_dyn());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub trait Parameters<T: Float> {
    /// Every parameter name, in `named_parameters()` order.
    fn parameter_names(&self) -> Vec<String>;
    /// The tensor named `name`; [`Error::UnknownParameter`] for a name it does not have.
    fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>>;
    /// Replaces the tensor named `name` with `value`, which must have its shape
    /// ([`Error::ParameterShape`] otherwise).
    fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()>;
}

macro_rules! parameters_by_methods {
    ($($ty:ident),*) => {$(
        impl<T: Float> Parameters<T> for $ty<T> {
            fn parameter_names(&self) -> Vec<String> {
                $ty::parameter_names(self).iter().map(|n| n.to_string()).collect()
            }
            fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
                $ty::parameter(self, name)
            }
            fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
                $ty::set_parameter(self, name, value)
            }
        }
    )*};
}

parameters_by_methods!(Rnn, Lstm, Gru, Layers, RnnCell, LstmCell, GruCell);

impl<T: Float> Parameters<T> for [(String, ArrayD<T>)] {
    fn parameter_names(&self) -> Vec<String> {
        self.iter().map(|(n, _)| n.clone()).collect()
    }

    fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
        self.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.view())
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
                known: self.parameter_names(),
            })
    }

    fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
        let known = self.parameter_names();
        let slot = self
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
                known,
            })?;
        if slot.shape() != value.shape() {
            return Err(Error::ParameterShape {
                name: name.to_string(),
                expected: slot.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        slot.assign(&value);
        Ok(())
    }
}

impl<T: Float> Parameters<T> for Vec<(String, ArrayD<T>)> {
    fn parameter_names(&self) -> Vec<String> {
        self.as_slice().parameter_names()
    }
    fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
        self.as_slice().parameter(name)
    }
    fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
        self.as_mut_slice().set_parameter(name, value)
    }
}

/// Checks a step's gradients before anything changes, so that a failed step leaves
/// parameters and optimizer state as they were: every name known to `params` and given
/// once, every gradient of its parameter's shape, and every state the optimizer keeps
/// for it (`state_shapes(name)`: the shapes of its buffers) of that shape too.
fn check_gradients<T: Float, P: Parameters<T> + ?Sized>(
    params: &P,
    grads: &[(String, ArrayD<T>)],
    state_shapes: impl Fn(&str) -> Vec<Vec<usize>>,
) -> Result<()> {
    let mut seen = HashSet::with_capacity(grads.len());
    for (name, grad) in grads {
        if !seen.insert(name.as_str()) {
            return Err(Error::DuplicateGradient { name: name.clone() });
        }
        let param = params.parameter(name)?;
        if param.shape() != grad.shape() {
            return Err(Error::GradientParameterShape {
                name: name.clone(),
                expected: param.shape().to_vec(),
                got: grad.shape().to_vec(),
            });
        }
        if let Some(state) = state_shapes(name)
            .into_iter()
            .find(|s| s.as_slice() != param.shape())
        {
            return Err(Error::OptimizerStateShape {
                name: name.clone(),
                expected: param.shape().to_vec(),
                got: state,
            });
        }
    }
    Ok(())
}

/// The optimizer interface: a step over named gradients, the learning rate, and a reset
/// of the state. Object safe, so optimizers can be chosen at run time.
///
/// ```
/// use ndarray::{arr1, ArrayD};
/// use recurrent::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
///
/// let mut opts: Vec<Box<dyn Optimizer<f32>>> = vec![
///     Box::new(Sgd::new(SgdConfig::new(0.1).momentum(0.9))?),
///     Box::new(Adam::new(AdamConfig::default())?),
/// ];
/// for opt in &mut opts {
///     let mut params: Vec<(String, ArrayD<f32>)> = vec![("w".into(), arr1(&[1.0f32]).into_dyn())];
///     opt.step(&mut params, &[("w".into(), arr1(&[1.0f32]).into_dyn())])?;
///     assert!(params[0].1[0] < 1.0);
///     opt.set_lr(opt.lr() / 10.0)?; // a learning-rate schedule
/// }
/// # Ok::<(), recurrent::Error>(())
/// ```
pub trait Optimizer<T: Float> {
    /// One `optimizer.step()`: updates every parameter named in `grads` with its
    /// gradient. Parameters not named are left alone (torch's `.grad is None`). On an
    /// error nothing has changed.
    fn step(&mut self, params: &mut dyn Parameters<T>, grads: &[(String, ArrayD<T>)])
        -> Result<()>;
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (what assigning `param_groups[0]["lr"]` does in torch, but
    /// checked as the constructor checks it).
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    /// Forgets every parameter's state (momentum buffers, moments, step counts).
    fn reset(&mut self);
}

fn invalid(optimizer: &'static str, message: String) -> Error {
    Error::OptimizerOption { optimizer, message }
}

// ---------------------------------------------------------------------------------------
// SGD
// ---------------------------------------------------------------------------------------

/// The options of [`Sgd`], with `torch.optim.SGD`'s defaults.
///
/// ```
/// use recurrent::optim::SgdConfig;
/// // torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
/// let config = SgdConfig::new(0.1).momentum(0.9).nesterov(true);
/// assert_eq!(config.dampening, 0.0);
/// assert_eq!(SgdConfig::default().lr, 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (default `1e-3`); must be `>= 0`.
    pub lr: f64,
    /// Momentum factor (default 0: plain SGD); must be `>= 0`.
    pub momentum: f64,
    /// Dampening of the momentum (default 0); not checked, as in torch.
    pub dampening: f64,
    /// L2 penalty added to the gradient, `grad + weight_decay * param` (default 0);
    /// must be `>= 0`.
    pub weight_decay: f64,
    /// Nesterov momentum (default false); needs `momentum > 0` and `dampening == 0`.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    /// torch's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdConfig {
            lr,
            ..Self::default()
        }
    }
    /// Sets `lr`.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets `momentum`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets `dampening`.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// Sets `weight_decay`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Sets `nesterov`.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// torch's checks, in torch's order and with its messages
    /// ([`Error::OptimizerOption`]). As in torch, `lr < 0` is the test, so a NaN learning
    /// rate passes (`torch.optim.Adam` refuses one; SGD does not).
    ///
    /// ```
    /// use recurrent::optim::SgdConfig;
    /// let err = SgdConfig::new(0.1).nesterov(true).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "SGD: Nesterov momentum requires a momentum and zero dampening");
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.lr < 0.0 {
            return Err(invalid(
                "SGD",
                format!("Invalid learning rate: {}", py_repr(self.lr)),
            ));
        }
        if self.momentum < 0.0 {
            return Err(invalid(
                "SGD",
                format!("Invalid momentum value: {}", py_repr(self.momentum)),
            ));
        }
        if self.weight_decay < 0.0 {
            return Err(invalid(
                "SGD",
                format!("Invalid weight_decay value: {}", py_repr(self.weight_decay)),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(invalid(
                "SGD",
                "Nesterov momentum requires a momentum and zero dampening".to_string(),
            ));
        }
        Ok(())
    }
}

/// Stochastic gradient descent, optionally with momentum: `torch.optim.SGD`.
///
/// Per parameter `p` with gradient `g`, as torch's `_single_tensor_sgd`:
///
/// ```text
/// g = g + weight_decay * p                            (if weight_decay != 0)
/// if momentum != 0:
///     buf = g                                         (first step: no dampening)
///     buf = momentum * buf + (1 - dampening) * g      (later steps)
///     g = g + momentum * buf   if nesterov   else   g = buf
/// p = p - lr * g
/// ```
///
/// ```
/// use ndarray::{arr1, ArrayD};
/// use recurrent::optim::{Sgd, SgdConfig};
///
/// let mut p: Vec<(String, ArrayD<f64>)> = vec![("w".into(), arr1(&[1.0]).into_dyn())];
/// let g = [("w".to_string(), arr1(&[1.0]).into_dyn())];
/// let mut opt = Sgd::new(SgdConfig::new(0.1).momentum(0.9))?;
/// opt.step(&mut p, &g)?; // buf = 1,   w = 1 - 0.1 * 1
/// opt.step(&mut p, &g)?; // buf = 1.9, w = 0.9 - 0.1 * 1.9
/// assert!((p[0].1[0] - 0.71).abs() < 1e-12);
/// assert_eq!(opt.momentum_buffer("w").unwrap()[0], 1.9);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd<T> {
    config: SgdConfig,
    momentum_buffers: HashMap<String, ArrayD<T>>,
}

impl<T: Float> Sgd<T> {
    /// An optimizer with `config`, checked as torch checks it.
    pub fn new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Sgd {
            config,
            momentum_buffers: HashMap::new(),
        })
    }

    /// The options.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The momentum buffer of parameter `name` (torch's `state[p]["momentum_buffer"]`);
    /// `None` before its first step or without momentum.
    pub fn momentum_buffer(&self, name: &str) -> Option<&ArrayD<T>> {
        self.momentum_buffers.get(name)
    }

    /// Sets the learning rate (checked as the constructor checks it).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        SgdConfig { lr, ..self.config }.validate()?;
        self.config.lr = lr;
        Ok(())
    }

    /// Forgets the momentum buffers.
    pub fn reset(&mut self) {
        self.momentum_buffers.clear();
    }

    /// One `optimizer.step()` with `grads` as `(name, gradient)` pairs; parameters not
    /// named are left alone. Errors ([`Error::UnknownParameter`],
    /// [`Error::GradientParameterShape`], [`Error::DuplicateGradient`]) come before
    /// anything changes.
    pub fn step<P: Parameters<T> + ?Sized>(
        &mut self,
        params: &mut P,
        grads: &[(String, ArrayD<T>)],
    ) -> Result<()> {
        check_gradients(params, grads, |name| {
            self.momentum_buffers
                .get(name)
                .map(|b| b.shape().to_vec())
                .into_iter()
                .collect()
        })?;
        let c = self.config;
        let wd = T::of(c.weight_decay);
        let momentum = T::of(c.momentum);
        let keep = T::of(1.0 - c.dampening);
        let neg_lr = T::of(-c.lr);
        for (name, grad) in grads {
            let mut p = params.parameter(name)?.to_owned();
            // g = grad + weight_decay * p, only when weight_decay != 0 (as torch).
            let decayed = |g: T, p: T| {
                if c.weight_decay != 0.0 {
                    p.mul_add(wd, g)
                } else {
                    g
                }
            };
            if c.momentum != 0.0 {
                match self.momentum_buffers.get_mut(name) {
                    Some(buf) => Zip::from(&mut p).and(grad).and(buf).for_each(|p, &g, b| {
                        let g = decayed(g, *p);
                        *b = g.mul_add(keep, *b * momentum);
                        let d = if c.nesterov {
                            b.mul_add(momentum, g)
                        } else {
                            *b
                        };
                        *p = d.mul_add(neg_lr, *p);
                    }),
                    None => {
                        let mut buf = ArrayD::<T>::zeros(p.raw_dim());
                        Zip::from(&mut p)
                            .and(grad)
                            .and(&mut buf)
                            .for_each(|p, &g, b| {
                                let g = decayed(g, *p);
                                *b = g;
                                let d = if c.nesterov {
                                    g.mul_add(momentum, g)
                                } else {
                                    g
                                };
                                *p = d.mul_add(neg_lr, *p);
                            });
                        self.momentum_buffers.insert(name.clone(), buf);
                    }
                }
            } else {
                Zip::from(&mut p).and(grad).for_each(|p, &g| {
                    *p = decayed(g, *p).mul_add(neg_lr, *p);
                });
            }
            params.set_parameter(name, p.view())?;
        }
        Ok(())
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(
        &mut self,
        params: &mut dyn Parameters<T>,
        grads: &[(String, ArrayD<T>)],
    ) -> Result<()> {
        Sgd::step(self, params, grads)
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        Sgd::set_lr(self, lr)
    }
    fn reset(&mut self) {
        Sgd::reset(self)
    }
}

// ---------------------------------------------------------------------------------------
// Adam and AdamW
// ---------------------------------------------------------------------------------------

/// The per-parameter state of [`Adam`] and [`AdamW`] (torch's `state[p]`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdamState<T> {
    /// Steps taken by this parameter (torch's `state[p]["step"]`; counts only the steps
    /// in which the parameter had a gradient).
    pub step: u64,
    /// First moment, `exp_avg`.
    pub exp_avg: ArrayD<T>,
    /// Second moment, `exp_avg_sq`.
    pub exp_avg_sq: ArrayD<T>,
    /// The running maximum of `exp_avg_sq` (`max_exp_avg_sq`), with amsgrad only.
    pub max_exp_avg_sq: Option<ArrayD<T>>,
}

/// The Adam update shared by [`Adam`] (L2 penalty) and [`AdamW`] (decoupled decay).
#[derive(Debug, Clone)]
struct AdamCore<T> {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    decoupled: bool,
    state: HashMap<String, AdamState<T>>,
}

/// torch's Adam / AdamW checks, in its order and with its messages. Comparisons are
/// written `!(0 <= x)` as torch writes them, so NaN is refused everywhere.
fn check_adam(
    optimizer: &'static str,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<()> {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let negative = |x: f64| !(0.0 <= x);
    if negative(lr) {
        return Err(invalid(
            optimizer,
            format!("Invalid learning rate: {}", py_repr(lr)),
        ));
    }
    if negative(eps) {
        return Err(invalid(
            optimizer,
            format!("Invalid epsilon value: {}", py_repr(eps)),
        ));
    }
    for (index, beta) in [betas.0, betas.1].into_iter().enumerate() {
        if !(0.0..1.0).contains(&beta) {
            return Err(invalid(
                optimizer,
                format!("Invalid beta parameter at index {index}: {}", py_repr(beta)),
            ));
        }
    }
    if negative(weight_decay) {
        return Err(invalid(
            optimizer,
            format!("Invalid weight_decay value: {}", py_repr(weight_decay)),
        ));
    }
    Ok(())
}

/// `torch.lerp(start, end, weight)` as ATen's CPU kernel computes it: from the nearer
/// end, with one fused multiply-add (see the module's notes on rounding).
fn lerp<T: Float>(start: T, end: T, weight: T) -> T {
    if weight.abs() < T::of(0.5) {
        weight.mul_add(end - start, start)
    } else {
        (weight - T::one()).mul_add(end - start, end)
    }
}

/// `torch.maximum`: NaN if either is NaN.
fn maximum<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::nan()
    } else if a > b {
        a
    } else {
        b
    }
}

impl<T: Float> AdamCore<T> {
    fn step<P: Parameters<T> + ?Sized>(
        &mut self,
        params: &mut P,
        grads: &[(String, ArrayD<T>)],
    ) -> Result<()> {
        check_gradients(params, grads, |name| match self.state.get(name) {
            Some(state) => [
                Some(&state.exp_avg),
                Some(&state.exp_avg_sq),
                state.max_exp_avg_sq.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|a| a.shape().to_vec())
            .collect(),
            None => Vec::new(),
        })?;
        let (beta1, beta2) = self.betas;
        let (lr, wd) = (self.lr, self.weight_decay);
        let l2 = !self.decoupled && wd != 0.0;
        let decoupled = self.decoupled && wd != 0.0;
        let wd_t = T::of(wd);
        let decay = T::of(1.0 - lr * wd);
        let lerp_weight = T::of(1.0 - beta1);
        let (beta2_t, one_minus_beta2) = (T::of(beta2), T::of(1.0 - beta2));
        let eps = T::of(self.eps);
        for (name, grad) in grads {
            let mut p = params.parameter(name)?.to_owned();
            let state = self.state.entry(name.clone()).or_insert_with(|| AdamState {
                step: 0,
                exp_avg: ArrayD::zeros(p.raw_dim()),
                exp_avg_sq: ArrayD::zeros(p.raw_dim()),
                max_exp_avg_sq: None,
            });
            if self.amsgrad && state.max_exp_avg_sq.is_none() {
                state.max_exp_avg_sq = Some(ArrayD::zeros(p.raw_dim()));
            }
            state.step += 1;
            // Python floats, as torch's single-tensor path computes them from step.item().
            let step = state.step as f64;
            let bias_correction1 = 1.0 - beta1.powf(step);
            let bias_correction2 = 1.0 - beta2.powf(step);
            let neg_step_size = T::of(-(lr / bias_correction1));
            let bias_correction2_sqrt = T::of(bias_correction2.powf(0.5));

            // param.mul_(1 - lr * wd) (AdamW) or grad + wd * param (Adam), then
            // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad,
            // value=1 - beta2); denom = sqrt(v) / bias_correction2_sqrt + eps;
            // param.addcdiv_(exp_avg, denom, value=-step_size).
            let moments = |p: &mut T, g: T, m: &mut T, v: &mut T| {
                if decoupled {
                    *p *= decay;
                }
                let g = if l2 { p.mul_add(wd_t, g) } else { g };
                *m = lerp(*m, g, lerp_weight);
                *v *= beta2_t;
                *v = (one_minus_beta2 * g).mul_add(g, *v);
            };
            let update = |p: &mut T, m: T, v: T| {
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *p += neg_step_size * m / denom;
            };
            let AdamState {
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq,
                ..
            } = state;
            match max_exp_avg_sq {
                Some(vmax) => Zip::from(&mut p)
                    .and(grad)
                    .and(exp_avg)
                    .and(exp_avg_sq)
                    .and(vmax)
                    .for_each(|p, &g, m, v, vmax| {
                        moments(p, g, m, v);
                        *vmax = maximum(*vmax, *v);
                        update(p, *m, *vmax);
                    }),
                None => Zip::from(&mut p)
                    .and(grad)
                    .and(exp_avg)
                    .and(exp_avg_sq)
                    .for_each(|p, &g, m, v| {
                        moments(p, g, m, v);
                        update(p, *m, *v);
                    }),
            }
            params.set_parameter(name, p.view())?;
        }
        Ok(())
    }
}

/// Defines an Adam-family config: fields, defaults and builders.
macro_rules! adam_config {
    ($(#[$doc:meta])* $name:ident, $torch:literal, $weight_decay:expr, $wd_doc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name {
            /// Learning rate (default `1e-3`); must be `>= 0`.
            pub lr: f64,
            /// Decay rates of the first and second moments (default `(0.9, 0.999)`); each
            /// in `[0, 1)`.
            pub betas: (f64, f64),
            /// Added to the denominator (default `1e-8`); must be `>= 0`.
            pub eps: f64,
            #[doc = $wd_doc]
            pub weight_decay: f64,
            /// Use the running maximum of the second moment (AMSGrad; default false).
            pub amsgrad: bool,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    lr: 1e-3,
                    betas: (0.9, 0.999),
                    eps: 1e-8,
                    weight_decay: $weight_decay,
                    amsgrad: false,
                }
            }
        }

        impl $name {
            /// torch's defaults with learning rate `lr`.
            pub fn new(lr: f64) -> Self {
                $name {
                    lr,
                    ..Self::default()
                }
            }
            /// Sets `lr`.
            pub fn lr(mut self, lr: f64) -> Self {
                self.lr = lr;
                self
            }
            /// Sets `betas`.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.betas = (beta1, beta2);
                self
            }
            /// Sets `eps`.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
            /// Sets `weight_decay`.
            pub fn weight_decay(mut self, weight_decay: f64) -> Self {
                self.weight_decay = weight_decay;
                self
            }
            /// Sets `amsgrad`.
            pub fn amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }
            /// torch's checks, in its order (`lr`, `eps`, `betas`, `weight_decay`) and
            /// with its messages ([`Error::OptimizerOption`]); NaN is refused.
            pub fn validate(&self) -> Result<()> {
                check_adam($torch, self.lr, self.betas, self.eps, self.weight_decay)
            }
        }
    };
}

adam_config!(
    /// The options of [`Adam`], with `torch.optim.Adam`'s defaults.
    ///
    /// ```
    /// use recurrent::optim::AdamConfig;
    /// // torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.99), amsgrad=True)
    /// let config = AdamConfig::new(0.01).betas(0.8, 0.99).amsgrad(true);
    /// assert_eq!((config.eps, config.weight_decay), (1e-8, 0.0));
    /// let err = AdamConfig::default().betas(0.9, 1.0).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "Adam: Invalid beta parameter at index 1: 1.0");
    /// ```
    AdamConfig,
    "Adam",
    0.0,
    "L2 penalty added to the gradient, `grad + weight_decay * param` (default 0); must be `>= 0`."
);

adam_config!(
    /// The options of [`AdamW`], with `torch.optim.AdamW`'s defaults (those of Adam but
    /// `weight_decay = 1e-2`).
    ///
    /// ```
    /// use recurrent::optim::AdamWConfig;
    /// assert_eq!(AdamWConfig::default().weight_decay, 1e-2);
    /// // torch.optim.AdamW(params, lr=3e-4, weight_decay=0.1)
    /// let config = AdamWConfig::new(3e-4).weight_decay(0.1);
    /// assert_eq!(config.betas, (0.9, 0.999));
    /// ```
    AdamWConfig,
    "AdamW",
    1e-2,
    "Decoupled weight decay: `param *= 1 - lr * weight_decay` before the Adam update (default `1e-2`); must be `>= 0`."
);

/// Defines an Adam-family optimizer over [`AdamCore`].
macro_rules! adam_optimizer {
    ($(#[$doc:meta])* $name:ident, $config:ident, $decoupled:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<T> {
            config: $config,
            core: AdamCore<T>,
        }

        impl<T: Float> $name<T> {
            /// An optimizer with `config`, checked as torch checks it.
            pub fn new(config: $config) -> Result<Self> {
                config.validate()?;
                Ok($name {
                    config,
                    core: AdamCore {
                        lr: config.lr,
                        betas: config.betas,
                        eps: config.eps,
                        weight_decay: config.weight_decay,
                        amsgrad: config.amsgrad,
                        decoupled: $decoupled,
                        state: HashMap::new(),
                    },
                })
            }

            /// The options.
            pub fn config(&self) -> &$config {
                &self.config
            }

            /// The state of parameter `name`; `None` before its first step.
            pub fn state(&self, name: &str) -> Option<&AdamState<T>> {
                self.core.state.get(name)
            }

            /// Sets the learning rate (checked as the constructor checks it).
            pub fn set_lr(&mut self, lr: f64) -> Result<()> {
                $config { lr, ..self.config }.validate()?;
                self.config.lr = lr;
                self.core.lr = lr;
                Ok(())
            }

            /// Forgets every parameter's moments and step count.
            pub fn reset(&mut self) {
                self.core.state.clear();
            }

            /// One `optimizer.step()` with `grads` as `(name, gradient)` pairs;
            /// parameters not named are left alone (their step counts do not advance).
            /// Errors ([`Error::UnknownParameter`], [`Error::GradientParameterShape`],
            /// [`Error::DuplicateGradient`]) come before anything changes.
            pub fn step<P: Parameters<T> + ?Sized>(
                &mut self,
                params: &mut P,
                grads: &[(String, ArrayD<T>)],
            ) -> Result<()> {
                self.core.step(params, grads)
            }
        }

        impl<T: Float> Optimizer<T> for $name<T> {
            fn step(
                &mut self,
                params: &mut dyn Parameters<T>,
                grads: &[(String, ArrayD<T>)],
            ) -> Result<()> {
                self.core.step(params, grads)
            }
            fn lr(&self) -> f64 {
                self.config.lr
            }
            fn set_lr(&mut self, lr: f64) -> Result<()> {
                $name::set_lr(self, lr)
            }
            fn reset(&mut self) {
                $name::reset(self)
            }
        }
    };
}

adam_optimizer!(
    /// Adam with an optional L2 penalty: `torch.optim.Adam`.
    ///
    /// Per parameter `p` with gradient `g`, at its step `t` (1, 2, ...), as torch's
    /// `_single_tensor_adam`:
    ///
    /// ```text
    /// g = g + weight_decay * p                             (if weight_decay != 0)
    /// m = lerp(m, g, 1 - beta1)                            (= beta1 m + (1 - beta1) g)
    /// v = beta2 * v + (1 - beta2) * g * g
    /// v_max = max(v_max, v)                                (amsgrad; v_max replaces v below)
    /// denom = sqrt(v) / sqrt(1 - beta2^t) + eps
    /// p = p - (lr / (1 - beta1^t)) * m / denom
    /// ```
    ///
    /// (`eps` is added after the bias correction of `sqrt(v)`, not to a corrected `v`.)
    ///
    /// ```
    /// use ndarray::{arr1, ArrayD};
    /// use recurrent::optim::{Adam, AdamConfig};
    ///
    /// let mut p: Vec<(String, ArrayD<f64>)> = vec![("w".into(), arr1(&[1.0, -1.0]).into_dyn())];
    /// let mut opt = Adam::new(AdamConfig::new(0.1))?;
    /// opt.step(&mut p, &[("w".to_string(), arr1(&[3.0, -0.5]).into_dyn())])?;
    /// // The first step moves every element by about lr, against its gradient's sign.
    /// assert!((p[0].1[0] - 0.9).abs() < 1e-8 && (p[0].1[1] + 0.9).abs() < 1e-8);
    /// assert_eq!(opt.state("w").unwrap().step, 1);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    Adam,
    AdamConfig,
    false
);

adam_optimizer!(
    /// Adam with decoupled weight decay: `torch.optim.AdamW`.
    ///
    /// Each step first shrinks the parameter, `p *= 1 - lr * weight_decay` (when
    /// `weight_decay != 0`), then applies [`Adam`]'s update to the unpenalized gradient.
    ///
    /// ```
    /// use ndarray::{arr1, ArrayD};
    /// use recurrent::optim::{AdamW, AdamWConfig};
    ///
    /// let mut p: Vec<(String, ArrayD<f32>)> = vec![("w".into(), arr1(&[2.0f32]).into_dyn())];
    /// let mut opt = AdamW::new(AdamWConfig::new(0.1).weight_decay(0.5))?;
    /// opt.step(&mut p, &[("w".to_string(), arr1(&[0.0f32]).into_dyn())])?;
    /// // A zero gradient: only the decay acts, 2 * (1 - 0.1 * 0.5).
    /// assert!((p[0].1[0] - 1.9).abs() < 1e-6);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    AdamW,
    AdamWConfig,
    true
);

// ---------------------------------------------------------------------------------------
// Gradient clipping
// ---------------------------------------------------------------------------------------

/// `torch.linalg.vector_norm(x, ord)` of the values, accumulated in `f64`: `inf` the
/// largest magnitude (NaN propagates), `-inf` the smallest, 0 the count of non-zeros,
/// else `(Σ |x|^ord)^(1/ord)`. An empty input gives 0.
fn vector_norm(values: impl Iterator<Item = f64>, ord: f64) -> f64 {
    if ord.is_infinite() {
        let mut acc: Option<f64> = None;
        for x in values.map(f64::abs) {
            acc = Some(match acc {
                None => x,
                Some(a) if a.is_nan() || x.is_nan() => f64::NAN,
                Some(a) if (ord > 0.0) == (x > a) => x,
                Some(a) => a,
            });
        }
        acc.unwrap_or(0.0)
    } else if ord == 0.0 {
        values.filter(|&x| x != 0.0).count() as f64
    } else if ord == 1.0 {
        values.map(f64::abs).sum()
    } else if ord == 2.0 {
        values.map(|x| x * x).sum::<f64>().sqrt()
    } else {
        values
            .map(|x| x.abs().powf(ord))
            .sum::<f64>()
            .powf(1.0 / ord)
    }
}

/// Scales the gradients in place so that their total norm is at most `max_norm`, and
/// returns that total norm before scaling: `torch.nn.utils.clip_grad_norm_`.
///
/// The total norm is the `norm_type`-norm of all gradients as one vector (the norm of
/// the per-tensor norms, as torch computes it); `norm_type` is any `p` of
/// `torch.linalg.vector_norm`, `f64::INFINITY` for the largest magnitude. torch's
/// defaults are `norm_type = 2.0` and `error_if_nonfinite = false`. Every gradient is
/// multiplied by
///
/// ```text
/// clip_coef = min(max_norm / (total_norm + 1e-6), 1)
/// ```
///
/// so the gradients are untouched when `total_norm + 1e-6 <= max_norm`, and scaled
/// slightly even when `total_norm == max_norm`. The coefficient is computed in `T`, as
/// torch computes it on the norm tensor. With `error_if_nonfinite` a NaN or infinite
/// total norm is [`Error::NonFiniteNorm`] and nothing is scaled; without it the
/// gradients are scaled by the resulting coefficient (0 for an infinite norm, NaN for a
/// NaN one), as in torch.
///
/// ```
/// use ndarray::{arr1, ArrayD};
/// use recurrent::optim::clip_grad_norm_;
///
/// let mut grads: Vec<(String, ArrayD<f64>)> = vec![
///     ("a".into(), arr1(&[3.0]).into_dyn()),
///     ("b".into(), arr1(&[4.0]).into_dyn()),
/// ];
/// let total = clip_grad_norm_(&mut grads, 1.0, 2.0, false)?;
/// assert_eq!(total, 5.0);
/// assert!((grads[0].1[0] - 0.6).abs() < 1e-6 && (grads[1].1[0] - 0.8).abs() < 1e-6);
///
/// // The largest magnitude, under the limit: nothing changes.
/// let total = clip_grad_norm_(&mut grads, 10.0, f64::INFINITY, false)?;
/// assert!((total - 0.8).abs() < 1e-6);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn clip_grad_norm_<T: Float>(
    grads: &mut [(String, ArrayD<T>)],
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> Result<T> {
    if grads.is_empty() {
        return Ok(T::zero());
    }
    // Per-tensor norms, rounded to T as torch's per-tensor norm tensors are, then the
    // norm of those.
    let norms: Vec<T> = grads
        .iter()
        .map(|(_, g)| T::of(vector_norm(g.iter().map(|x| x.as_f64()), norm_type)))
        .collect();
    let total = T::of(vector_norm(norms.iter().map(|x| x.as_f64()), norm_type));
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::NonFiniteNorm {
            norm_type,
            total_norm: total.as_f64(),
        });
    }
    // max_norm / (total_norm + 1e-6) is Tensor.__rtruediv__: reciprocal(t) * max_norm;
    // then torch.clamp(max=1.0), which keeps NaN.
    let coef = (total + T::of(1e-6)).recip() * T::of(max_norm);
    let coef = if coef > T::one() { T::one() } else { coef };
    if coef != T::one() {
        for (_, g) in grads.iter_mut() {
            g.mapv_inplace(|x| x * coef);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    fn list(values: &[(&str, &[f64])]) -> Vec<(String, ArrayD<f64>)> {
        values
            .iter()
            .map(|(n, v)| (n.to_string(), arr1(v).into_dyn()))
            .collect()
    }

    #[test]
    fn py_repr_matches_python() {
        let cases = [
            (1e-5, "1e-05"),
            (-0.1, "-0.1"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1e-8, "1e-08"),
            (-1e-20, "-1e-20"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
            (123.25, "123.25"),
            (1e300, "1e+300"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            assert_eq!(py_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn errors_leave_parameters_and_state_untouched() {
        let mut params = list(&[("a", &[1.0, 2.0]), ("b", &[3.0])]);
        let mut opt = Adam::<f64>::new(AdamConfig::new(0.1)).unwrap();
        let good = list(&[("a", &[1.0, 1.0])]);
        opt.step(&mut params, &good).unwrap();
        let (before, state_before) = (params.clone(), opt.state("a").unwrap().clone());

        // A good gradient for "a" first, then an unknown name: nothing is applied.
        let unknown = list(&[("a", &[1.0, 1.0]), ("c", &[1.0])]);
        match opt.step(&mut params, &unknown) {
            Err(Error::UnknownParameter { name, known }) => {
                assert_eq!(name, "c");
                assert_eq!(known, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
        let wrong_shape = list(&[("a", &[1.0, 1.0]), ("b", &[1.0, 2.0])]);
        let err = opt.step(&mut params, &wrong_shape).unwrap_err();
        assert!(
            matches!(&err, Error::GradientParameterShape { name, expected, got }
            if name == "b" && expected == &[1] && got == &[2])
        );
        assert_eq!(
            err.to_string(),
            "gradient of parameter 'b' has shape (2,), expected the parameter's shape (1,)"
        );
        let twice = list(&[("a", &[1.0, 1.0]), ("a", &[1.0, 1.0])]);
        assert!(matches!(
            opt.step(&mut params, &twice),
            Err(Error::DuplicateGradient { name }) if name == "a"
        ));
        assert_eq!(params, before);
        let state = opt.state("a").unwrap();
        assert_eq!(state.step, state_before.step);
        assert_eq!(state.exp_avg, state_before.exp_avg);
        assert!(opt.state("b").is_none());
    }

    #[test]
    fn parameters_without_gradients_keep_their_state() {
        let mut params = list(&[("a", &[1.0]), ("b", &[1.0])]);
        let mut opt = Sgd::<f64>::new(SgdConfig::new(1.0).momentum(0.5)).unwrap();
        opt.step(&mut params, &list(&[("a", &[1.0])])).unwrap();
        assert!(opt.momentum_buffer("b").is_none());
        assert_eq!(params[1].1[0], 1.0);
        opt.step(&mut params, &list(&[("a", &[1.0]), ("b", &[2.0])]))
            .unwrap();
        // a: buf 1 then 0.5 + 1 = 1.5; b's first step: buf = grad.
        assert_eq!(opt.momentum_buffer("a").unwrap()[0], 1.5);
        assert_eq!(opt.momentum_buffer("b").unwrap()[0], 2.0);
        assert_eq!(params[0].1[0], 1.0 - 1.0 - 1.5);
        assert_eq!(params[1].1[0], 1.0 - 2.0);
        opt.reset();
        assert!(opt.momentum_buffer("a").is_none());
    }

    #[test]
    fn amsgrad_keeps_the_running_maximum() {
        let mut params = list(&[("a", &[0.0])]);
        let mut opt = Adam::<f64>::new(AdamConfig::new(0.1).betas(0.9, 0.5).amsgrad(true)).unwrap();
        opt.step(&mut params, &list(&[("a", &[2.0])])).unwrap();
        opt.step(&mut params, &list(&[("a", &[0.0])])).unwrap();
        let s = opt.state("a").unwrap();
        assert_eq!(s.step, 2);
        assert_eq!(s.exp_avg_sq[0], 1.0); // 0.5 * (0.5 * 4) + 0.5 * 0
        assert_eq!(s.max_exp_avg_sq.as_ref().unwrap()[0], 2.0);
    }

    #[test]
    fn set_lr_is_checked() {
        let mut sgd = Sgd::<f32>::new(SgdConfig::default()).unwrap();
        assert!(sgd.set_lr(-1.0).is_err());
        sgd.set_lr(0.5).unwrap();
        assert_eq!(Optimizer::lr(&sgd), 0.5);
        let mut adamw = AdamW::<f32>::new(AdamWConfig::default()).unwrap();
        let err = adamw.set_lr(f64::NAN).unwrap_err();
        assert_eq!(err.to_string(), "AdamW: Invalid learning rate: nan");
        assert_eq!(adamw.config().lr, 1e-3);
    }

    #[test]
    fn vector_norms() {
        let v = [3.0, -4.0, 0.0];
        let norm = |ord| vector_norm(v.iter().copied(), ord);
        assert_eq!(norm(2.0), 5.0);
        assert_eq!(norm(1.0), 7.0);
        assert_eq!(norm(0.0), 2.0);
        assert_eq!(norm(f64::INFINITY), 4.0);
        assert_eq!(norm(f64::NEG_INFINITY), 0.0);
        assert!((norm(3.0) - 91f64.powf(1.0 / 3.0)).abs() < 1e-12);
        assert!(vector_norm([1.0, f64::NAN, 5.0].into_iter(), f64::INFINITY).is_nan());
        assert_eq!(vector_norm(std::iter::empty(), 2.0), 0.0);
    }

    #[test]
    fn clip_of_nothing_is_zero() {
        let mut none: Vec<(String, ArrayD<f32>)> = Vec::new();
        assert_eq!(clip_grad_norm_(&mut none, 1.0, 2.0, true).unwrap(), 0.0);
    }
}
