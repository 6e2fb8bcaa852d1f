//! Writing a layer as an ONNX model, as `torch.onnx.export` lays it out.

use std::path::Path;

use ndarray::ArrayView2;
use prost::Message;

use super::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use super::read::{reorder, torch_from_onnx};
use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::element::{Dtype, Float};
use crate::error::{Error, Result};
use crate::io::OutputSet;
use crate::params::Layers;

/// The opset the exported model imports (the `layout` attribute of RNN / LSTM / GRU is
/// from opset 14).
pub const OPSET: i64 = 14;
/// The ONNX IR version written (7 is the one of opset 14, read by every ONNX runtime
/// since 2021).
const IR_VERSION: i64 = 7;

/// Options of [`save`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Graph inputs `h0` (and `c0` for an LSTM), `(D*num_layers, N, H)`, which then must
    /// be fed; without them (the default) the initial states are zeros, as torch's
    /// forward without `h_0`.
    pub initial_state: bool,
}

impl ExportOptions {
    /// Sets [`ExportOptions::initial_state`].
    pub fn initial_state(mut self, initial_state: bool) -> Self {
        self.initial_state = initial_state;
        self
    }
}

/// Writes `model` as an ONNX model (opset 14) that computes what its `forward` computes
/// in eval mode, laid out as `torch.onnx.export` writes a `torch.nn.RNN` / `LSTM` /
/// `GRU`:
///
/// - one `RNN` / `LSTM` / `GRU` node per layer (`direction` `forward` or
///   `bidirectional`, `hidden_size`; `activations` `Tanh` or `Relu` for an RNN;
///   `linear_before_reset=1` for a GRU, torch's GRU), its weights as initializers in
///   ONNX's layout and gate order (`W` `[D, G*H, I]`, `R` `[D, G*H, H]`, `B`
///   `[D, 2*G*H]`, no `B` for `bias=False`), in the model's dtype (float32 or float64);
/// - graph input `input` `(L, N, H_in)` (`(N, L, H_in)` with `batch_first`, through a
///   `Transpose`), with `L` and `N` dynamic (`seq_len`, `batch`), plus `h0` (and `c0`)
///   `(D*num_layers, N, H)` with [`ExportOptions::initial_state`], sliced per layer;
/// - outputs `output` `(L, N, D*H)` (batch-first: `(N, L, D*H)`), `h_n` and, for an
///   LSTM, `c_n`, `(D*num_layers, N, H)`: each layer's `Y` `[L, D, N, H]` becomes
///   torch's `(L, N, D*H)` by `Squeeze` (one direction) or `Transpose` + `Reshape`
///   (two), and the layers' `Y_h` (`Y_c`) are concatenated.
///
/// Dropout is not written: it acts only in training, and the model computes the eval
/// forward. The input must be batched (3-D). Written all or nothing ([`OutputSet`]).
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// use recurrent::{io::onnx, Lstm, RnnConfig};
/// let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(3, 4).num_layers(2), 0)?;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("lstm.onnx");
/// onnx::save(&lstm, &path, onnx::ExportOptions::default())?;
/// // Read back through the ONNX reader: the same parameters.
/// let back = Lstm::<f32>::load(&path, None)?;
/// assert_eq!(back.parameter("weight_hh_l1")?, lstm.parameter("weight_hh_l1")?);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Format`] naming `path` for an LSTM with `proj_size > 0`, which standard
/// ONNX cannot express (torch refuses to export it too); [`Error::Io`] naming `path`
/// when it cannot be written (nothing is then created or changed).
pub fn save<T: Float>(
    model: &impl AsRef<Layers<T>>,
    path: impl AsRef<Path>,
    options: ExportOptions,
) -> Result<()> {
    let mut set = OutputSet::new();
    stage(&mut set, model, path, options)?;
    set.commit()
}

/// [`save`] as one output of a set written together.
///
/// # Errors
/// As [`save`].
pub fn stage<T: Float>(
    set: &mut OutputSet,
    model: &impl AsRef<Layers<T>>,
    path: impl AsRef<Path>,
    options: ExportOptions,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model.as_ref(), options).map_err(|message| Error::Format {
        path: path.to_path_buf(),
        message,
    })?;
    set.stage(path, |w| {
        w.write_all(&bytes).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// The serialised model, or why the layer cannot be written.
pub(super) fn to_bytes<T: Float>(
    layers: &Layers<T>,
    options: ExportOptions,
) -> std::result::Result<Vec<u8>, String> {
    Ok(model(layers, options)?.encode_to_vec())
}

/// The ONNX graph's builder: nodes and initializers in order.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_type::INT),
        i: Some(value),
        ..Default::default()
    }
}

fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_type::INTS),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_type::STRING),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn attr_strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_type::STRINGS),
        strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A tensor type with dimensions that are fixed (`Ok`) or named (`Err`).
fn value_info(
    name: &str,
    elem_type: i32,
    dims: &[std::result::Result<usize, &str>],
) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Ok(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            Err(p) => Dimension {
                dim_value: None,
                dim_param: Some(p.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute: attrs,
            domain: None,
        });
    }

    /// An initializer of little-endian `bytes`.
    fn initializer(&mut self, name: &str, elem_type: i32, dims: &[usize], bytes: Vec<u8>) {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(elem_type),
            name: Some(name.to_string()),
            raw_data: Some(bytes),
            ..Default::default()
        });
    }

    fn int64s(&mut self, name: &str, values: &[i64]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, data_type::INT64, &[values.len()], bytes);
    }
}

/// The little-endian bytes of `w`'s rows, its gate blocks (of `hidden` rows) in ONNX's
/// order.
fn onnx_rows<T: Float>(w: ArrayView2<'_, T>, kind: Kind, hidden: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(w.len() * std::mem::size_of::<T>());
    for &v in w.iter() {
        v.extend_le_bytes(&mut bytes);
    }
    let block = hidden * w.ncols() * std::mem::size_of::<T>();
    reorder(&bytes, &onnx_from_torch(kind), block)
}

/// ONNX's gate `j` is torch's gate `ONNX_FROM_TORCH[j]`: the inverse of
/// [`torch_from_onnx`].
fn onnx_from_torch(kind: Kind) -> Vec<usize> {
    let forward = torch_from_onnx(kind);
    let mut inverse = vec![0; forward.len()];
    for (torch, &onnx) in forward.iter().enumerate() {
        inverse[onnx] = torch;
    }
    inverse
}

fn model<T: Float>(
    layers: &Layers<T>,
    options: ExportOptions,
) -> std::result::Result<ModelProto, String> {
    let config: &RnnConfig = layers.config();
    if config.proj_size > 0 {
        return Err(format!(
            "{config} cannot be written as ONNX: standard ONNX's LSTM has no projection (proj_size={}), and torch.onnx.export refuses it too",
            config.proj_size
        ));
    }
    let elem = match T::DTYPE {
        Dtype::F32 => data_type::FLOAT,
        Dtype::F64 => data_type::DOUBLE,
    };
    let kind = config.kind;
    let (h, d, gates) = (
        config.hidden_size,
        config.num_directions(),
        kind.gate_count(),
    );
    let layers_n = config.num_layers;
    let mut g = Graph::default();
    let (seq, batch) = (Err("seq_len"), Err("batch"));

    let mut inputs = vec![value_info(
        "input",
        elem,
        &if config.batch_first {
            [batch, seq, Ok(config.input_size)]
        } else {
            [seq, batch, Ok(config.input_size)]
        },
    )];
    let state_dims = [Ok(d * layers_n), batch, Ok(h)];
    let with_c = kind == Kind::Lstm;
    if options.initial_state {
        inputs.push(value_info("h0", elem, &state_dims));
        if with_c {
            inputs.push(value_info("c0", elem, &state_dims));
        }
    }
    let mut x = "input".to_string();
    if config.batch_first {
        g.node(
            "Transpose",
            "input_transpose",
            &["input"],
            &["input_seq_first"],
            vec![attr_ints("perm", &[1, 0, 2])],
        );
        x = "input_seq_first".to_string();
    }
    if d == 1 {
        g.int64s("squeeze_axes", &[1]);
    } else {
        g.int64s("output_shape", &[0, 0, (d * h) as i64]);
    }
    let op = kind.name();
    let (mut h_outs, mut c_outs) = (Vec::new(), Vec::new());
    for k in 0..layers_n {
        let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for dir in 0..d {
            let p = layers.direction_params(k * d + dir).ok_or_else(|| {
                format!("the layer has no parameters for layer {k}, direction {dir}")
            })?;
            w.extend(onnx_rows(p.w_ih.view(), kind, h));
            r.extend(onnx_rows(p.w_hh.view(), kind, h));
            if let (Some(b_ih), Some(b_hh)) = (&p.b_ih, &p.b_hh) {
                for bias in [b_ih, b_hh] {
                    let row = bias.view().insert_axis(ndarray::Axis(1));
                    b.extend(onnx_rows(row, kind, h));
                }
            }
        }
        let name = |what: &str| format!("{}_l{k}.{what}", op.to_ascii_lowercase());
        let (w_name, r_name, b_name) = (name("W"), name("R"), name("B"));
        g.initializer(
            &w_name,
            elem,
            &[d, gates * h, config.layer_input_size(k)],
            w,
        );
        g.initializer(&r_name, elem, &[d, gates * h, h], r);
        let b_name = if config.bias {
            g.initializer(&b_name, elem, &[d, 2 * gates * h], b);
            b_name
        } else {
            String::new()
        };
        let (mut h0, mut c0) = (String::new(), String::new());
        if options.initial_state {
            let (starts, ends) = (format!("slice_l{k}.starts"), format!("slice_l{k}.ends"));
            g.int64s(&starts, &[(k * d) as i64]);
            g.int64s(&ends, &[((k + 1) * d) as i64]);
            if k == 0 {
                g.int64s("slice_axes", &[0]);
            }
            h0 = format!("h0_l{k}");
            g.node(
                "Slice",
                &format!("h0_slice_l{k}"),
                &["h0", &starts, &ends, "slice_axes"],
                &[&h0],
                vec![],
            );
            if with_c {
                c0 = format!("c0_l{k}");
                g.node(
                    "Slice",
                    &format!("c0_slice_l{k}"),
                    &["c0", &starts, &ends, "slice_axes"],
                    &[&c0],
                    vec![],
                );
            }
        }
        let y = format!("Y_l{k}");
        let (y_h, y_c) = if layers_n == 1 {
            ("h_n".to_string(), "c_n".to_string())
        } else {
            (format!("Y_h_l{k}"), format!("Y_c_l{k}"))
        };
        let mut node_inputs = vec![x.as_str(), &w_name, &r_name, &b_name, "", &h0];
        let mut node_outputs = vec![y.as_str(), &y_h];
        if with_c {
            node_inputs.push(&c0);
            node_outputs.push(&y_c);
        }
        // Trailing optional inputs left out rather than named "".
        while node_inputs.last() == Some(&"") {
            node_inputs.pop();
        }
        let mut attrs = vec![
            attr_string(
                "direction",
                if d == 2 { "bidirectional" } else { "forward" },
            ),
            attr_int("hidden_size", h as i64),
        ];
        match kind {
            Kind::Rnn => {
                let act = match config.nonlinearity {
                    Nonlinearity::Tanh => "Tanh",
                    Nonlinearity::Relu => "Relu",
                };
                attrs.push(attr_strings("activations", &vec![act; d]));
            }
            Kind::Gru => attrs.push(attr_int("linear_before_reset", 1)),
            Kind::Lstm => {}
        }
        g.node(
            op,
            &format!("{op}_l{k}"),
            &node_inputs,
            &node_outputs,
            attrs,
        );
        h_outs.push(y_h);
        c_outs.push(y_c);
        // Y [L, D, N, H] -> torch's (L, N, D*H).
        let last = k + 1 == layers_n;
        let seq_out = if last && !config.batch_first {
            "output".to_string()
        } else {
            format!("output_l{k}")
        };
        if d == 1 {
            g.node(
                "Squeeze",
                &format!("squeeze_l{k}"),
                &[&y, "squeeze_axes"],
                &[&seq_out],
                vec![],
            );
        } else {
            let t = format!("Y_transposed_l{k}");
            g.node(
                "Transpose",
                &format!("transpose_l{k}"),
                &[&y],
                &[&t],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            );
            g.node(
                "Reshape",
                &format!("reshape_l{k}"),
                &[&t, "output_shape"],
                &[&seq_out],
                vec![],
            );
        }
        if last && config.batch_first {
            g.node(
                "Transpose",
                "output_transpose",
                &[&seq_out],
                &["output"],
                vec![attr_ints("perm", &[1, 0, 2])],
            );
        }
        x = seq_out;
    }
    if layers_n > 1 {
        let refs: Vec<&str> = h_outs.iter().map(String::as_str).collect();
        g.node(
            "Concat",
            "h_n_concat",
            &refs,
            &["h_n"],
            vec![attr_int("axis", 0)],
        );
        if with_c {
            let refs: Vec<&str> = c_outs.iter().map(String::as_str).collect();
            g.node(
                "Concat",
                "c_n_concat",
                &refs,
                &["c_n"],
                vec![attr_int("axis", 0)],
            );
        }
    }
    let mut outputs = vec![
        value_info(
            "output",
            elem,
            &if config.batch_first {
                [batch, seq, Ok(d * h)]
            } else {
                [seq, batch, Ok(d * h)]
            },
        ),
        value_info("h_n", elem, &state_dims),
    ];
    if with_c {
        outputs.push(value_info("c_n", elem, &state_dims));
    }
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("recurrent".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        graph: Some(GraphProto {
            node: g.nodes,
            name: Some(format!("{config}")),
            initializer: g.initializers,
            input: inputs,
            output: outputs,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Layers;

    fn decode(layers: &Layers<f32>, options: ExportOptions) -> ModelProto {
        let bytes = to_bytes(layers, options).unwrap();
        assert!(super::super::looks_like_onnx(&bytes));
        ModelProto::decode(bytes.as_slice()).unwrap()
    }

    fn ops(m: &ModelProto) -> Vec<String> {
        let g = m.graph.as_ref().unwrap();
        g.node.iter().map(|n| n.op_type.clone().unwrap()).collect()
    }

    #[test]
    fn bidirectional_batch_first_gru_is_laid_out_as_torch_exports_it() {
        let config = RnnConfig::gru(3, 4)
            .num_layers(2)
            .bidirectional(true)
            .batch_first(true);
        let layers = Layers::<f32>::seeded(config, 1).unwrap();
        let m = decode(&layers, ExportOptions::default().initial_state(true));
        assert_eq!(m.opset_import[0].version, Some(OPSET));
        assert_eq!(
            ops(&m),
            [
                "Transpose",
                "Slice",
                "GRU",
                "Transpose",
                "Reshape",
                "Slice",
                "GRU",
                "Transpose",
                "Reshape",
                "Transpose",
                "Concat"
            ]
        );
        let g = m.graph.unwrap();
        let gru = g
            .node
            .iter()
            .find(|n| n.op_type.as_deref() == Some("GRU"))
            .unwrap();
        let a = |name: &str| {
            gru.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some(name))
                .unwrap()
        };
        assert_eq!(a("linear_before_reset").i, Some(1));
        assert_eq!(a("hidden_size").i, Some(4));
        assert_eq!(a("direction").s.as_deref(), Some(&b"bidirectional"[..]));
        let inputs: Vec<_> = g.input.iter().map(|v| v.name.clone().unwrap()).collect();
        assert_eq!(inputs, ["input", "h0"]);
        let outputs: Vec<_> = g.output.iter().map(|v| v.name.clone().unwrap()).collect();
        assert_eq!(outputs, ["output", "h_n"]);
        let w = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("gru_l1.W"))
            .unwrap();
        assert_eq!(w.dims, [2, 12, 8]);
        // ONNX's first gate block (z) is torch's second (rows 4..8 of weight_ih_l1).
        let torch = layers.parameter("weight_ih_l1").unwrap();
        let raw = w.raw_data.as_ref().unwrap();
        let first = f32::from_le_bytes(raw[..4].try_into().unwrap());
        assert_eq!(Some(&first), torch.iter().nth(4 * 8));
    }

    #[test]
    fn relu_rnn_records_its_activation_and_proj_size_is_refused() {
        let config = RnnConfig::new(2, 3)
            .nonlinearity(Nonlinearity::Relu)
            .bias(false);
        let m = decode(
            &Layers::<f32>::seeded(config, 0).unwrap(),
            ExportOptions::default(),
        );
        assert_eq!(ops(&m), ["RNN", "Squeeze"]);
        let g = m.graph.unwrap();
        let rnn = &g.node[0];
        let act = rnn
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some("activations"))
            .unwrap();
        assert_eq!(act.strings, [b"Relu".to_vec()]);
        assert_eq!(rnn.input, ["input", "rnn_l0.W", "rnn_l0.R"]);
        let lstm = Layers::<f32>::seeded(RnnConfig::lstm(2, 4).proj_size(2), 0).unwrap();
        let err = to_bytes(&lstm, ExportOptions::default()).unwrap_err();
        assert!(err.contains("proj_size=2"), "{err}");
    }
}
