//! Reading an ONNX model's RNN / LSTM / GRU nodes as a torch state dict (see the
//! parent module's documentation for what is read and what is refused).

use std::collections::HashMap;
use std::path::{Component, Path};

/// The tensors under torch's names and the metadata recording the options the nodes
/// give (`nonlinearity`, `batch_first`).
pub(crate) type RawDict = (Vec<RawTensor>, HashMap<String, String>);

use prost::Message;
use safetensors::tensor::Dtype as StDtype;

use super::proto::{attribute_type, data_type, AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::config::Kind;
use crate::error::{fmt_shape, Error, Result};
use crate::io::raw::{RawTensor, META_BATCH_FIRST, META_NONLINEARITY};

/// torch's gate `j` is ONNX's gate `TORCH_FROM_ONNX[j]`: LSTM i, f, g, o from ONNX's
/// i, o, f, c; GRU r, z, n from ONNX's z, r, h.
pub(super) fn torch_from_onnx(kind: Kind) -> &'static [usize] {
    match kind {
        Kind::Rnn => &[0],
        Kind::Lstm => &[0, 2, 3, 1],
        Kind::Gru => &[1, 0, 2],
    }
}

/// Ops torch's exporter puts between stacked layers (and around the first one), which the
/// reader walks through to link a node to the one whose output it reads.
const PASS_THROUGH: [&str; 6] = [
    "Transpose",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
];

/// A tensor's dtype, shape and little-endian bytes.
#[derive(Debug)]
struct Tensor {
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// What one recurrent node holds, checked.
#[derive(Debug)]
struct Layer {
    label: String,
    directions: usize,
    hidden: usize,
    /// RNN: `"tanh"` or `"relu"`.
    nonlinearity: Option<&'static str>,
    layout: i64,
    w: Tensor,
    r: Tensor,
    b: Option<Tensor>,
}

/// Where a node's input `X` comes from, walking back through [`PASS_THROUGH`] ops.
enum Source {
    /// The output `Y` of recurrent node `index`.
    Node(usize),
    /// A graph input (or initializer), with the Transpose permutations passed on the way.
    GraphInput(Vec<Vec<i64>>),
    /// Anything else (another op, another output of a recurrent node).
    Other,
}

struct Reader<'a> {
    path: &'a Path,
    graph: &'a GraphProto,
    /// Initializers and Constant nodes' values, by name.
    constants: HashMap<&'a str, &'a TensorProto>,
    /// The node producing each value, by name.
    producer: HashMap<&'a str, usize>,
}

/// See [`super::read`].
pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<RawDict> {
    let fail = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let model = super::proto::ModelProto::decode(bytes).map_err(|e| {
        fail(format!(
            "not a valid ONNX model: its protobuf does not decode ({e}); is the file truncated?"
        ))
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| {
        fail(
            "an ONNX model without a graph: expected one holding RNN, LSTM or GRU nodes"
                .to_string(),
        )
    })?;
    let mut constants: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_deref()?, t)))
        .collect();
    let mut producer = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        for out in &node.output {
            producer.insert(out.as_str(), index);
        }
        if op(node) == "Constant" {
            let value = node
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_ref());
            if let (Some(out), Some(t)) = (node.output.first(), value) {
                constants.insert(out.as_str(), t);
            }
        }
    }
    let reader = Reader {
        path,
        graph,
        constants,
        producer,
    };
    reader.state_dict()
}

/// A node's op type (`""` when unset).
fn op(node: &NodeProto) -> &str {
    node.op_type.as_deref().unwrap_or("")
}

/// The kind of a recurrent node of the default domain.
fn kind_of(node: &NodeProto) -> Option<Kind> {
    if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
        return None;
    }
    match op(node) {
        "RNN" => Some(Kind::Rnn),
        "LSTM" => Some(Kind::Lstm),
        "GRU" => Some(Kind::Gru),
        _ => None,
    }
}

/// `LSTM node 'name'` (or `LSTM node #3` for an unnamed one).
fn label(node: &NodeProto, index: usize) -> String {
    match node.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{} node '{name}'", op(node)),
        _ => format!("{} node #{index}", op(node)),
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

impl Reader<'_> {
    fn fail(&self, message: String) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn state_dict(&self) -> Result<RawDict> {
        let nodes = &self.graph.node;
        let recurrent: Vec<(usize, Kind)> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, kind_of(n)?)))
            .collect();
        let Some(&(_, kind)) = recurrent.first() else {
            let mut ops: Vec<&str> = Vec::new();
            for n in nodes {
                if !ops.contains(&op(n)) {
                    ops.push(op(n));
                }
            }
            let holds = if ops.is_empty() {
                "it holds no nodes".to_string()
            } else {
                format!("it holds: {}", ops.join(", "))
            };
            let hint = if ops.contains(&"MatMul") {
                " (torch.onnx.export(..., dynamo=True) unrolls nn.RNN into MatMul and Add nodes: export it with dynamo=False to keep an RNN node)"
            } else {
                ""
            };
            return Err(self.fail(format!(
                "the ONNX graph holds no RNN, LSTM or GRU node; {holds}{hint}"
            )));
        };
        if let Some(&(other, _)) = recurrent.iter().find(|(_, k)| *k != kind) {
            return Err(self.fail(format!(
                "the ONNX graph holds recurrent nodes of different kinds ({} and {}): a torch layer is one kind",
                label(&nodes[recurrent[0].0], recurrent[0].0),
                label(&nodes[other], other),
            )));
        }
        let order = self.stack_order(&recurrent)?;
        let layers: Vec<Layer> = order
            .iter()
            .map(|&i| self.layer(&nodes[i], i, kind))
            .collect::<Result<_>>()?;
        let first = &layers[0];
        for layer in &layers[1..] {
            if layer.directions != first.directions || layer.hidden != first.hidden {
                return Err(self.fail(format!(
                    "{} has {} direction(s) and hidden_size {}, but {} has {} and {}: the layers of a torch stack share them",
                    layer.label, layer.directions, layer.hidden, first.label, first.directions, first.hidden
                )));
            }
            if layer.nonlinearity != first.nonlinearity {
                return Err(self.fail(format!(
                    "{} uses {:?} but {} uses {:?}: the layers of a torch RNN share one nonlinearity",
                    layer.label,
                    layer.nonlinearity.unwrap_or(""),
                    first.label,
                    first.nonlinearity.unwrap_or("")
                )));
            }
        }

        let mut metadata = HashMap::new();
        if let Some(n) = first.nonlinearity {
            metadata.insert(META_NONLINEARITY.to_string(), n.to_string());
        }
        // The graph fixes the input's layout when the first node reads the graph's input
        // (through torch's Transposes or not): batch_first is then recorded, either way.
        match self.source(&nodes[order[0]]) {
            Source::GraphInput(perms) => {
                let transposed = perms.iter().filter(|p| *p == &[1, 0, 2]).count() % 2 == 1;
                let batch_first = (first.layout == 1) != transposed;
                metadata.insert(META_BATCH_FIRST.to_string(), batch_first.to_string());
            }
            _ if first.layout == 1 => {
                metadata.insert(META_BATCH_FIRST.to_string(), "true".to_string());
            }
            _ => {}
        }

        let with_bias = layers.iter().any(|l| l.b.is_some());
        let perm = torch_from_onnx(kind);
        let gates = kind.gate_count();
        let mut tensors = Vec::new();
        for (k, layer) in layers.iter().enumerate() {
            let h = layer.hidden;
            for d in 0..layer.directions {
                let suffix = if d == 1 { "_reverse" } else { "" };
                for (stem, t) in [("weight_ih", &layer.w), ("weight_hh", &layer.r)] {
                    let cols = t.shape[2];
                    let es = t.dtype.bitsize() / 8;
                    let block = gates * h * cols * es;
                    let bytes = &t.bytes[d * block..(d + 1) * block];
                    tensors.push(RawTensor {
                        name: format!("{stem}_l{k}{suffix}"),
                        dtype: t.dtype,
                        shape: vec![gates * h, cols],
                        bytes: reorder(bytes, perm, h * cols * es),
                    });
                }
                if !with_bias {
                    continue;
                }
                let (dtype, row) = match &layer.b {
                    Some(b) => {
                        let es = b.dtype.bitsize() / 8;
                        let n = 2 * gates * h * es;
                        (b.dtype, b.bytes[d * n..(d + 1) * n].to_vec())
                    }
                    // ONNX's missing B is zeros; torch's biases are all or none.
                    None => (
                        layer.w.dtype,
                        vec![0; 2 * gates * h * layer.w.dtype.bitsize() / 8],
                    ),
                };
                let half = row.len() / 2;
                let es = dtype.bitsize() / 8;
                for (stem, part) in [("bias_ih", &row[..half]), ("bias_hh", &row[half..])] {
                    tensors.push(RawTensor {
                        name: format!("{stem}_l{k}{suffix}"),
                        dtype,
                        shape: vec![gates * h],
                        bytes: reorder(part, perm, h * es),
                    });
                }
            }
        }
        Ok((tensors, metadata))
    }

    /// Where node's `X` comes from.
    fn source(&self, node: &NodeProto) -> Source {
        let mut perms = Vec::new();
        let Some(mut name) = node.input.first().map(String::as_str) else {
            return Source::Other;
        };
        // Bounded: a malformed graph may loop.
        for _ in 0..=self.graph.node.len() {
            let Some(&index) = self.producer.get(name) else {
                return Source::GraphInput(perms);
            };
            let upstream = &self.graph.node[index];
            if kind_of(upstream).is_some() {
                return if upstream.output.first().map(String::as_str) == Some(name) {
                    Source::Node(index)
                } else {
                    Source::Other
                };
            }
            if !PASS_THROUGH.contains(&op(upstream)) {
                return Source::Other;
            }
            if op(upstream) == "Transpose" {
                perms.push(
                    attr(upstream, "perm")
                        .map(|a| a.ints.clone())
                        .unwrap_or_default(),
                );
            }
            match upstream.input.first() {
                Some(next) => name = next,
                None => return Source::Other,
            }
        }
        Source::Other
    }

    /// The recurrent nodes as one stack, first layer first: each node but the first
    /// reads the output of the one before.
    fn stack_order(&self, recurrent: &[(usize, Kind)]) -> Result<Vec<usize>> {
        let nodes = &self.graph.node;
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut child: HashMap<usize, usize> = HashMap::new();
        for &(i, _) in recurrent {
            if let Source::Node(j) = self.source(&nodes[i]) {
                if let Some(&other) = child.get(&j) {
                    return Err(self.fail(format!(
                        "{} feeds both {} and {}: a torch stack feeds each layer to the next only",
                        label(&nodes[j], j),
                        label(&nodes[other], other),
                        label(&nodes[i], i)
                    )));
                }
                parent.insert(i, j);
                child.insert(j, i);
            }
        }
        let roots: Vec<usize> = recurrent
            .iter()
            .map(|&(i, _)| i)
            .filter(|i| !parent.contains_key(i))
            .collect();
        let stacks: Vec<Vec<usize>> = roots
            .iter()
            .map(|&root| {
                let mut stack = vec![root];
                while let Some(&next) = child.get(stack.last().unwrap_or(&root)) {
                    if stack.contains(&next) || stack.len() > nodes.len() {
                        break;
                    }
                    stack.push(next);
                }
                stack
            })
            .collect();
        match stacks.as_slice() {
            [one] => Ok(one.clone()),
            _ => {
                let listing: Vec<String> = stacks
                    .iter()
                    .map(|s| {
                        s.iter()
                            .map(|&i| label(&nodes[i], i))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    })
                    .collect();
                Err(self.fail(format!(
                    "the ONNX graph holds {} recurrent stacks that do not feed each other ({}): this reader takes a model with one torch layer; export that layer alone",
                    stacks.len(),
                    listing.join("; ")
                )))
            }
        }
    }

    /// Checks one recurrent node against torch's layers and reads its weights.
    fn layer(&self, node: &NodeProto, index: usize, kind: Kind) -> Result<Layer> {
        let label = label(node, index);
        let refuse = |message: String| self.fail(format!("{label}: {message}"));
        // ONNX's attributes of the kind, alphabetical: the shared ones and the kind's own.
        let own: &[&str] = match kind {
            Kind::Rnn => &[],
            Kind::Lstm => &["input_forget"],
            Kind::Gru => &["linear_before_reset"],
        };
        let mut known = vec![
            "activation_alpha",
            "activation_beta",
            "activations",
            "clip",
            "direction",
            "hidden_size",
            "layout",
        ];
        known.extend_from_slice(own);
        known.sort_unstable();
        for a in &node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return Err(refuse(format!(
                    "attribute '{name}' is not one of {}'s ({})",
                    kind.name(),
                    known.join(", ")
                )));
            }
        }
        let int = |name: &str, default: i64| -> Result<i64> {
            match attr(node, name) {
                None => Ok(default),
                Some(a) if a.r#type.is_none_or(|t| t == attribute_type::INT) => {
                    Ok(a.i.unwrap_or(0))
                }
                Some(_) => Err(refuse(format!("attribute '{name}' is not an integer"))),
            }
        };
        if attr(node, "clip").is_some() {
            return Err(refuse(
                "has 'clip' (the gates' inputs clipped to a range): torch's layers do not clip"
                    .to_string(),
            ));
        }
        let direction = match attr(node, "direction") {
            None => "forward".to_string(),
            Some(a) => String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned(),
        };
        let directions = match direction.as_str() {
            "forward" => 1,
            "bidirectional" => 2,
            "reverse" => {
                return Err(refuse(
                    "direction='reverse' (one direction, scanning the sequence backwards) has no torch equivalent: torch's layers scan forwards, or both ways with bidirectional=True".to_string(),
                ))
            }
            other => {
                return Err(refuse(format!(
                    "direction='{other}': expected 'forward' or 'bidirectional'"
                )))
            }
        };
        let layout = int("layout", 0)?;
        if !(0..=1).contains(&layout) {
            return Err(refuse(format!("layout={layout}: expected 0 or 1")));
        }
        if kind == Kind::Lstm {
            let input_forget = int("input_forget", 0)?;
            if input_forget != 0 {
                return Err(refuse(format!(
                    "input_forget={input_forget} (the input and forget gates coupled): torch's LSTM does not couple them; expected 0"
                )));
            }
        }
        if kind == Kind::Gru {
            let lbr = int("linear_before_reset", 0)?;
            if lbr != 1 {
                return Err(refuse(format!(
                    "linear_before_reset={lbr}{}: that is a different GRU from torch's, which applies the reset gate after the recurrent product (linear_before_reset=1)",
                    if attr(node, "linear_before_reset").is_none() { " (ONNX's default)" } else { "" }
                )));
            }
        }
        // Activations: torch's are fixed, except an RNN's tanh / relu.
        let activations: Vec<String> = match attr(node, "activations") {
            None => Vec::new(),
            Some(a) => a
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        };
        let nonlinearity = match kind {
            Kind::Rnn => {
                let first = activations.first().map_or("tanh", String::as_str);
                let nonlinearity = match first {
                    "tanh" => "tanh",
                    "relu" => "relu",
                    other => {
                        return Err(refuse(format!(
                            "activation '{other}': torch's RNN computes tanh or relu"
                        )))
                    }
                };
                if !activations.is_empty()
                    && (activations.len() != directions
                        || activations.iter().any(|a| a != nonlinearity))
                {
                    return Err(refuse(format!(
                        "activations {activations:?}: expected one per direction ({directions}), all 'Tanh' or all 'Relu' as torch's RNN has one nonlinearity"
                    )));
                }
                Some(nonlinearity)
            }
            Kind::Lstm | Kind::Gru => {
                let one: &[&str] = if kind == Kind::Lstm {
                    &["sigmoid", "tanh", "tanh"]
                } else {
                    &["sigmoid", "tanh"]
                };
                let expected: Vec<&str> =
                    (0..directions).flat_map(|_| one.iter().copied()).collect();
                if !activations.is_empty() && activations != expected {
                    return Err(refuse(format!(
                        "activations {activations:?}: torch's {} computes {expected:?} only",
                        kind.name()
                    )));
                }
                None
            }
        };
        let input = |k: usize| {
            node.input
                .get(k)
                .map(String::as_str)
                .filter(|s| !s.is_empty())
        };
        if kind == Kind::Lstm && input(7).is_some() {
            return Err(refuse(
                "has peepholes (input P): torch's LSTM has none".to_string(),
            ));
        }
        let weight = |k: usize, what: &str| -> Result<Tensor> {
            let name = input(k).ok_or_else(|| refuse(format!("has no input {what}")))?;
            self.constant(name, &format!("{label}'s {what}"))
        };
        let (w, r) = (weight(1, "W")?, weight(2, "R")?);
        let b = match input(3) {
            Some(name) => Some(self.constant(name, &format!("{label}'s B"))?),
            None => None,
        };
        let gates = kind.gate_count();
        if r.shape.len() != 3 || r.shape[2] == 0 {
            return Err(refuse(format!(
                "R has shape {}: expected [num_directions, {gates}*hidden_size, hidden_size]",
                fmt_shape(&r.shape)
            )));
        }
        let hidden = match attr(node, "hidden_size") {
            Some(_) => usize::try_from(int("hidden_size", 0)?).unwrap_or(0),
            None => r.shape[2],
        };
        let want_r = [directions, gates * hidden, hidden];
        if hidden == 0 || r.shape != want_r {
            return Err(refuse(format!(
                "R has shape {}, but hidden_size={hidden} and direction='{direction}' need {}",
                fmt_shape(&r.shape),
                fmt_shape(&want_r)
            )));
        }
        if w.shape.len() != 3 || w.shape[..2] != [directions, gates * hidden] || w.shape[2] == 0 {
            return Err(refuse(format!(
                "W has shape {}, but hidden_size={hidden} and direction='{direction}' need ({directions}, {}, input_size)",
                fmt_shape(&w.shape),
                gates * hidden
            )));
        }
        if let Some(b) = &b {
            let want_b = [directions, 2 * gates * hidden];
            if b.shape != want_b {
                return Err(refuse(format!(
                    "B has shape {}, expected {}",
                    fmt_shape(&b.shape),
                    fmt_shape(&want_b)
                )));
            }
        }
        Ok(Layer {
            label,
            directions,
            hidden,
            nonlinearity,
            layout,
            w,
            r,
            b,
        })
    }

    /// The value of `name`: an initializer or a Constant node's, possibly through
    /// Identity nodes.
    fn constant(&self, name: &str, what: &str) -> Result<Tensor> {
        let mut name = name;
        for _ in 0..=self.graph.node.len() {
            if let Some(t) = self.constants.get(name) {
                return self.tensor(t, what);
            }
            match self.producer.get(name).map(|&i| &self.graph.node[i]) {
                Some(n) if op(n) == "Identity" && !n.input.is_empty() => name = &n.input[0],
                Some(n) => {
                    return Err(self.fail(format!(
                        "{what} ('{name}') is computed by a {} node, expected an initializer or a Constant; export with constant folding on (torch.onnx.export's default)",
                        op(n)
                    )))
                }
                None => {
                    return Err(self.fail(format!(
                        "{what} ('{name}') is a graph input or missing, expected an initializer or a Constant holding the weights"
                    )))
                }
            }
        }
        Err(self.fail(format!("{what} ('{name}'): its Identity nodes form a loop")))
    }

    /// A float tensor's dtype, shape and little-endian bytes, from whichever field holds
    /// its data (`raw_data`, `float_data`, `double_data`, `int32_data` for 16-bit types,
    /// or an external file).
    fn tensor(&self, t: &TensorProto, what: &str) -> Result<Tensor> {
        let name = t.name.as_deref().unwrap_or("");
        let bad = |message: String| self.fail(format!("{what} ('{name}'): {message}"));
        let code = t.data_type.unwrap_or(0);
        let dtype = match code {
            data_type::FLOAT => StDtype::F32,
            data_type::DOUBLE => StDtype::F64,
            data_type::FLOAT16 => StDtype::F16,
            data_type::BFLOAT16 => StDtype::BF16,
            other => {
                return Err(bad(format!(
                    "ONNX data type {other}, expected float (1), double (11), float16 (10) or bfloat16 (16)"
                )))
            }
        };
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(format!("negative dimension in {:?}", t.dims)))?;
        let es = dtype.bitsize() / 8;
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let Some(nbytes) = count.and_then(|c| c.checked_mul(es)) else {
            return Err(bad(format!("dimensions {:?} are too large", t.dims)));
        };
        let count = nbytes / es;
        let bytes = if t.data_location == Some(1) {
            self.external(t, nbytes, &bad)?
        } else if let Some(raw) = &t.raw_data {
            raw.clone()
        } else {
            let (held, bytes): (usize, Vec<u8>) = match code {
                data_type::FLOAT => (
                    t.float_data.len(),
                    t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                data_type::DOUBLE => (
                    t.double_data.len(),
                    t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                _ => (
                    t.int32_data.len(),
                    // The 16 bits of each value, as ONNX stores float16 / bfloat16 there.
                    t.int32_data
                        .iter()
                        .flat_map(|&v| ((v & 0xffff) as u16).to_le_bytes())
                        .collect(),
                ),
            };
            if held != count {
                return Err(bad(format!(
                    "holds {held} values, expected {count} for shape {}",
                    fmt_shape(&shape)
                )));
            }
            bytes
        };
        if bytes.len() != nbytes {
            return Err(bad(format!(
                "holds {} bytes, expected {nbytes} for shape {} of {dtype:?}",
                bytes.len(),
                fmt_shape(&shape)
            )));
        }
        Ok(Tensor {
            dtype,
            shape,
            bytes,
        })
    }

    /// The bytes of a tensor stored outside the model (`onnx.save_model(...,
    /// save_as_external_data=True)`): `location` relative to the model's folder (an
    /// absolute path or one leaving the folder is refused), `offset` and `length`.
    fn external(
        &self,
        t: &TensorProto,
        nbytes: usize,
        bad: &dyn Fn(String) -> Error,
    ) -> Result<Vec<u8>> {
        let entry = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(key))
                .and_then(|e| e.value.as_deref())
        };
        let location = entry("location")
            .ok_or_else(|| bad("stored externally without a 'location'".to_string()))?;
        let relative = Path::new(location);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(bad(format!(
                "external data location '{location}' is not a path inside the model's folder"
            )));
        }
        let number = |key: &str| -> Result<Option<usize>> {
            entry(key)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| bad(format!("external data {key} '{v}' is not a number")))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?.unwrap_or(nbytes);
        let folder = self.path.parent().unwrap_or(Path::new("."));
        let file = folder.join(relative);
        let data = std::fs::read(&file).map_err(|e| {
            bad(format!(
                "cannot read its external data '{}': {e}",
                file.display()
            ))
        })?;
        offset
            .checked_add(length)
            .and_then(|end| data.get(offset..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                bad(format!(
                    "external data '{}' holds {} bytes, too few for offset {offset} and length {length}",
                    file.display(),
                    data.len()
                ))
            })
    }
}

/// `bytes` as gate blocks of `block` bytes each, reordered: output block `j` is input
/// block `perm[j]` (torch's from ONNX's, or the reverse with the inverse permutation).
pub(super) fn reorder(bytes: &[u8], perm: &[usize], block: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &g in perm {
        out.extend_from_slice(&bytes[g * block..(g + 1) * block]);
    }
    out
}
