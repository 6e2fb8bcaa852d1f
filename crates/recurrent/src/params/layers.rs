//! The parameters of a recurrent stack under torch's names, shared by [`crate::Rnn`],
//! [`crate::Lstm`] and [`crate::Gru`], with the packed layouts the fast path keeps in
//! step with them.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{param_names, uniform_init, DirectionParams, Packed, ParamKind, ParamName};
use crate::config::{Kind, RnnConfig};
use crate::element::Float;
use crate::error::{Error, Result};

/// Every parameter of a stack of layers and directions, by (layer, direction) and by
/// torch's names. Reached through the layer types' methods; see [`crate::Rnn`].
#[derive(Debug, Clone)]
pub struct Layers<T> {
    config: RnnConfig,
    /// Indexed `layer * D + direction`, as h_0/h_n are.
    params: Vec<DirectionParams<T>>,
    /// The fast path's layouts per (layer, direction), kept in step with `params`.
    packed: Vec<Packed<T>>,
}

impl<T: Float> Layers<T> {
    /// Parameters with torch's default initialisation, every parameter drawn from
    /// U(-1/sqrt(H), 1/sqrt(H)) by `rng`, in `named_parameters()` order.
    pub fn init<R: Rng + ?Sized>(config: RnnConfig, rng: &mut R) -> Result<Self> {
        let mut rnn = Self::zeros(config)?;
        let hidden = rnn.config.hidden_size;
        for name in param_names(&rnn.config) {
            if let Some(mut value) = rnn.param_mut(&name) {
                uniform_init(value.view_mut(), hidden, rng);
            }
        }
        rnn.refresh_folded();
        Ok(rnn)
    }

    /// [`Layers::init`] with a ChaCha8 generator seeded by `seed` (reproducible across
    /// platforms and versions of this crate).
    pub fn seeded(config: RnnConfig, seed: u64) -> Result<Self> {
        Self::init(config, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// A layer whose parameters are all zero; fill it with [`Layers::set_parameter`].
    pub fn zeros(config: RnnConfig) -> Result<Self> {
        config.validate()?;
        crate::memory::parameter_budget(&config, std::mem::size_of::<T>())
            .check(|| format!("the parameters of {config}"))?;
        let hidden = config.hidden_size;
        let directions = config.num_directions();
        let mut params = Vec::with_capacity(config.num_layers * directions);
        for layer in 0..config.num_layers {
            for _ in 0..directions {
                let gates = config.gate_size();
                params.push(DirectionParams {
                    w_ih: Array2::zeros((gates, config.layer_input_size(layer))),
                    w_hh: Array2::zeros((gates, config.output_hidden_size())),
                    b_ih: config.bias.then(|| Array1::zeros(gates)),
                    b_hh: config.bias.then(|| Array1::zeros(gates)),
                    w_hr: (config.proj_size > 0).then(|| Array2::zeros((config.proj_size, hidden))),
                });
            }
        }
        let packed = params.iter().map(|p| pack_for(&config, p)).collect();
        Ok(Layers {
            config,
            params,
            packed,
        })
    }

    /// Builds a layer from `(name, tensor)` pairs with torch's names (no prefix). Every
    /// parameter of `config` must be given exactly once, with torch's shape.
    pub fn from_named<I, S>(config: RnnConfig, tensors: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, ArrayD<T>)>,
        S: AsRef<str>,
    {
        let mut rnn = Self::zeros(config)?;
        let mut seen = std::collections::HashSet::new();
        for (name, value) in tensors {
            let name = name.as_ref();
            rnn.set_parameter(name, value.view())?;
            seen.insert(name.to_string());
        }
        let expected = rnn.parameter_names();
        if let Some(missing) = expected.iter().find(|n| !seen.contains(*n)) {
            let mut found: Vec<String> = seen.into_iter().collect();
            found.sort();
            return Err(Error::MissingParameter {
                name: missing.clone(),
                config: rnn.config.to_string(),
                expected,
                found,
            });
        }
        Ok(rnn)
    }

    /// The constructor options.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Sets `dropout` (used only in training mode); checked as torch's constructor
    /// checks it.
    pub fn set_dropout(&mut self, dropout: f64) -> Result<()> {
        let config = self.config.clone().dropout(dropout);
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Sets `batch_first`: how `forward` reads its input and lays out its output.
    pub fn set_batch_first(&mut self, batch_first: bool) {
        self.config.batch_first = batch_first;
    }

    /// Sets the nonlinearity (it has no parameters, so a state dict does not record it).
    pub fn set_nonlinearity(&mut self, nonlinearity: crate::Nonlinearity) {
        self.config.nonlinearity = nonlinearity;
    }

    /// The parameter names in torch's `named_parameters()` order.
    pub fn parameter_names(&self) -> Vec<String> {
        param_names(&self.config)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// `(name, tensor)` in torch's `named_parameters()` order.
    ///
    /// ```
    /// use recurrent::{Rnn, RnnConfig};
    /// let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4), 0).unwrap();
    /// let listing: Vec<(String, Vec<usize>)> = rnn
    ///     .named_parameters()
    ///     .map(|(name, t)| (name, t.shape().to_vec()))
    ///     .collect();
    /// assert_eq!(listing[0], ("weight_ih_l0".to_string(), vec![4, 3]));
    /// assert_eq!(listing[3], ("bias_hh_l0".to_string(), vec![4]));
    /// ```
    pub fn named_parameters(&self) -> impl Iterator<Item = (String, ArrayViewD<'_, T>)> + '_ {
        param_names(&self.config)
            .into_iter()
            .filter_map(move |name| Some((name.to_string(), self.param_view(&name)?)))
    }

    /// The tensor named `name` (torch's name, no prefix).
    pub fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
        self.resolve(name)
            .and_then(|n| self.param_view(&n))
            .ok_or_else(|| self.unknown(name))
    }

    /// Replaces the tensor named `name` with `value`, which must have torch's shape.
    pub fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
        let parsed = self.resolve(name).ok_or_else(|| self.unknown(name))?;
        let expected = parsed.shape(&self.config);
        if value.shape() != expected.as_slice() {
            return Err(Error::ParameterShape {
                name: name.to_string(),
                expected,
                got: value.shape().to_vec(),
            });
        }
        let index = parsed.layer * self.config.num_directions() + parsed.direction();
        if let Some(mut slot) = self.param_mut(&parsed) {
            slot.assign(&value);
        }
        self.packed[index] = pack_for(&self.config, &self.params[index]);
        Ok(())
    }

    /// Total number of scalars in the parameters.
    pub fn num_parameters(&self) -> usize {
        self.named_parameters().map(|(_, t)| t.len()).sum()
    }

    /// The parameters of (layer, direction) number `index = layer * D + direction`, or
    /// `None` past the last one.
    pub fn direction_params(&self, index: usize) -> Option<&DirectionParams<T>> {
        self.params.get(index)
    }

    /// All (layer, direction) parameters, indexed `layer * D + direction`.
    pub(crate) fn all_direction_params(&self) -> &[DirectionParams<T>] {
        &self.params
    }

    pub(crate) fn packed(&self, index: usize) -> &Packed<T> {
        &self.packed[index]
    }

    fn resolve(&self, name: &str) -> Option<ParamName> {
        name.parse::<ParamName>()
            .ok()
            .filter(|n| n.exists_in(&self.config))
    }

    fn unknown(&self, name: &str) -> Error {
        Error::UnknownParameter {
            name: name.to_string(),
            known: self.parameter_names(),
        }
    }

    fn param_view(&self, name: &ParamName) -> Option<ArrayViewD<'_, T>> {
        let p = self
            .params
            .get(name.layer * self.config.num_directions() + name.direction())?;
        Some(match name.kind {
            ParamKind::WeightIh => p.w_ih.view().into_dyn(),
            ParamKind::WeightHh => p.w_hh.view().into_dyn(),
            ParamKind::BiasIh => p.b_ih.as_ref()?.view().into_dyn(),
            ParamKind::BiasHh => p.b_hh.as_ref()?.view().into_dyn(),
            ParamKind::WeightHr => p.w_hr.as_ref()?.view().into_dyn(),
        })
    }

    fn param_mut(&mut self, name: &ParamName) -> Option<ndarray::ArrayViewMutD<'_, T>> {
        let directions = self.config.num_directions();
        let p = self
            .params
            .get_mut(name.layer * directions + name.direction())?;
        Some(match name.kind {
            ParamKind::WeightIh => p.w_ih.view_mut().into_dyn(),
            ParamKind::WeightHh => p.w_hh.view_mut().into_dyn(),
            ParamKind::BiasIh => p.b_ih.as_mut()?.view_mut().into_dyn(),
            ParamKind::BiasHh => p.b_hh.as_mut()?.view_mut().into_dyn(),
            ParamKind::WeightHr => p.w_hr.as_mut()?.view_mut().into_dyn(),
        })
    }

    fn refresh_folded(&mut self) {
        self.packed = self
            .params
            .iter()
            .map(|p| pack_for(&self.config, p))
            .collect();
    }
}

impl<T> AsRef<Layers<T>> for Layers<T> {
    fn as_ref(&self) -> &Layers<T> {
        self
    }
}

/// Hidden sizes from which a gated layer's units are packed in two parts, so that two
/// threads can each own half of a small batch's recurrence (`forward/gated.rs`).
pub(crate) const SPLIT_MIN_HIDDEN: usize = 128;

/// The packed layout for one (layer, direction) of a layer configured as `config`: an
/// LSTM (without projections) or GRU of at least [`SPLIT_MIN_HIDDEN`] units is packed in
/// two parts, split at a multiple of 16 units; everything else in torch's order.
fn pack_for<T: Float>(config: &RnnConfig, params: &DirectionParams<T>) -> Packed<T> {
    let gated = matches!(config.kind, Kind::Lstm | Kind::Gru);
    let hidden = config.hidden_size;
    if gated && config.proj_size == 0 && hidden >= SPLIT_MIN_HIDDEN {
        params.pack_split(config.kind.gate_count(), hidden / 2 / 16 * 16)
    } else {
        params.pack()
    }
}
