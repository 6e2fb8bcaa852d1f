//! torch's parameter names (`weight_hh_l1_reverse`) and their (layer, direction, kind).

use std::fmt;

use crate::config::RnnConfig;

/// Which of the four tensors of one (layer, direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    /// `weight_ih`: `(G*H, layer_input_size)`, G the gate count.
    WeightIh,
    /// `weight_hh`: `(G*H, H_out)`.
    WeightHh,
    /// `bias_ih`: `(G*H,)`.
    BiasIh,
    /// `bias_hh`: `(G*H,)`.
    BiasHh,
    /// `weight_hr` (LSTM with `proj_size`): `(P, H)`.
    WeightHr,
}

impl ParamKind {
    /// torch's order within one (layer, direction): `[w_ih, w_hh, b_ih, b_hh, w_hr]`.
    pub const ALL: [ParamKind; 5] = [
        ParamKind::WeightIh,
        ParamKind::WeightHh,
        ParamKind::BiasIh,
        ParamKind::BiasHh,
        ParamKind::WeightHr,
    ];

    /// The stem of the name: `"weight_ih"`, ...
    pub fn stem(self) -> &'static str {
        match self {
            ParamKind::WeightIh => "weight_ih",
            ParamKind::WeightHh => "weight_hh",
            ParamKind::BiasIh => "bias_ih",
            ParamKind::BiasHh => "bias_hh",
            ParamKind::WeightHr => "weight_hr",
        }
    }

    /// Whether this is a bias (present only when `bias=True`).
    pub fn is_bias(self) -> bool {
        matches!(self, ParamKind::BiasIh | ParamKind::BiasHh)
    }
}

/// One parameter's identity: `weight_ih_l{layer}` plus `_reverse` for direction 1.
///
/// ```
/// use recurrent::params::{ParamKind, ParamName};
/// let name: ParamName = "weight_hh_l1_reverse".parse().unwrap();
/// assert_eq!(name, ParamName { kind: ParamKind::WeightHh, layer: 1, reverse: true });
/// assert_eq!(name.to_string(), "weight_hh_l1_reverse");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamName {
    /// Which tensor.
    pub kind: ParamKind,
    /// Layer index, from 0.
    pub layer: usize,
    /// Direction 1 (the backward scan) of a bidirectional layer.
    pub reverse: bool,
}

impl ParamName {
    /// The direction index: 0 forward, 1 reverse.
    pub fn direction(&self) -> usize {
        usize::from(self.reverse)
    }

    /// The shape torch gives this parameter under `config`.
    pub fn shape(&self, config: &RnnConfig) -> Vec<usize> {
        let g = config.gate_size();
        match self.kind {
            ParamKind::WeightIh => vec![g, config.layer_input_size(self.layer)],
            ParamKind::WeightHh => vec![g, config.output_hidden_size()],
            ParamKind::BiasIh | ParamKind::BiasHh => vec![g],
            ParamKind::WeightHr => vec![config.proj_size, config.hidden_size],
        }
    }

    /// Whether `config` has this parameter.
    pub fn exists_in(&self, config: &RnnConfig) -> bool {
        self.layer < config.num_layers
            && (!self.reverse || config.bidirectional)
            && (!self.kind.is_bias() || config.bias)
            && (self.kind != ParamKind::WeightHr || config.proj_size > 0)
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_l{}", self.kind.stem(), self.layer)?;
        if self.reverse {
            f.write_str("_reverse")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ParamName {
    type Err = ();

    /// Parses a bare torch name; anything else (prefixes, other tensors) is `Err(())`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (s, reverse) = match s.strip_suffix("_reverse") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (stem, layer) = s.rsplit_once("_l").ok_or(())?;
        let kind = ParamKind::ALL
            .into_iter()
            .find(|k| k.stem() == stem)
            .ok_or(())?;
        // Digits only, and no leading zero ("l00" is not torch's name for layer 0).
        if layer.is_empty()
            || !layer.bytes().all(|b| b.is_ascii_digit())
            || (layer.len() > 1 && layer.starts_with('0'))
        {
            return Err(());
        }
        let layer = layer.parse().map_err(|_| ())?;
        Ok(ParamName {
            kind,
            layer,
            reverse,
        })
    }
}

/// Whether `name` has the form of a torch recurrent parameter name
/// (`weight_ih_l<digits>[_reverse]`, ...) whatever its layer number, so that a name whose
/// number does not parse (too many digits) is refused rather than ignored.
pub fn looks_like_param_name(name: &str) -> bool {
    let name = name.strip_suffix("_reverse").unwrap_or(name);
    name.rsplit_once("_l").is_some_and(|(stem, layer)| {
        ParamKind::ALL.into_iter().any(|k| k.stem() == stem)
            && !layer.is_empty()
            && layer.bytes().all(|b| b.is_ascii_digit())
            && !(layer.len() > 1 && layer.starts_with('0'))
    })
}

/// Every parameter of `config`, in the order of torch's `named_parameters()`:
/// layer by layer, direction innermost, `[w_ih, w_hh, b_ih, b_hh, w_hr]` within each.
///
/// ```
/// use recurrent::{params::param_names, RnnConfig};
/// let names: Vec<String> = param_names(&RnnConfig::new(3, 4).bidirectional(true).bias(false))
///     .iter().map(|n| n.to_string()).collect();
/// assert_eq!(names, ["weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse"]);
/// ```
pub fn param_names(config: &RnnConfig) -> Vec<ParamName> {
    let mut names = Vec::new();
    for layer in 0..config.num_layers {
        for direction in 0..config.num_directions() {
            for kind in ParamKind::ALL {
                let name = ParamName {
                    kind,
                    layer,
                    reverse: direction == 1,
                };
                if name.exists_in(config) {
                    names.push(name);
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_other_tensors() {
        let config = RnnConfig::new(3, 4).num_layers(3).bidirectional(true);
        let names = param_names(&config);
        assert_eq!(names.len(), 3 * 2 * 4);
        for n in &names {
            assert_eq!(n.to_string().parse::<ParamName>(), Ok(*n));
        }
        for bad in [
            "weight_ih",
            "weight_ih_l",
            "weight_ih_lx",
            "encoder.weight_ih_l0",
            "weight_ih_l0_rev",
            "input",
            "weight_ih_l+1",
            "weight_ih_l00",
            "weight_ih_l01",
        ] {
            assert!(bad.parse::<ParamName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shapes_follow_layer_input_width() {
        let config = RnnConfig::new(3, 4).num_layers(2).bidirectional(true);
        let w = |s: &str| s.parse::<ParamName>().unwrap().shape(&config);
        assert_eq!(w("weight_ih_l0"), vec![4, 3]);
        assert_eq!(w("weight_ih_l1_reverse"), vec![4, 8]);
        assert_eq!(w("weight_hh_l1"), vec![4, 4]);
        assert_eq!(w("bias_hh_l0_reverse"), vec![4]);
    }
}
