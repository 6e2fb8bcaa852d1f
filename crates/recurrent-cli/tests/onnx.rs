//! The `recurrent` binary and ONNX: `run` and `inspect` on models torch.onnx.export
//! wrote, `export` to ONNX and back, and failures that leave no file behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::ArrayD;
use ndarray_npy::read_npy;

#[path = "../../recurrent/tests/common/runner.rs"]
mod runner;

fn bin() -> Command {
    runner::command_for(Path::new(env!("CARGO_BIN_EXE_recurrent")))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn case(name: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/onnx")
        .join(name)
        .join(file)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// torch.testing.assert_close's float32 defaults.
fn assert_close(got: &Path, want: &Path) {
    let got: ArrayD<f32> = read_npy(got).unwrap();
    let want: ArrayD<f32> = read_npy(want).unwrap();
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5 + 1.3e-6 * w.abs(),
            "got {g}, want {w}"
        );
    }
}

/// One line on stderr holding every needle, a failure exit, and no `outputs` created.
fn assert_fails(out: &Output, needles: &[&str], outputs: &[&Path]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    for path in outputs {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

#[test]
fn run_and_inspect_read_a_torch_onnx_export() {
    let name = "lstm_2layers_bidirectional_batch_first";
    let dir = tempfile::tempdir().unwrap();
    let (y, hn, cn) = (
        dir.path().join("y.npy"),
        dir.path().join("hn.npy"),
        dir.path().join("cn.npy"),
    );
    let model = case(name, "model.onnx");
    let out = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&case(name, "input.npy")),
        "--output",
        s(&y),
        "--hn",
        s(&hn),
        "--cn",
        s(&cn),
    ]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"),
        "{stdout}"
    );
    // batch_first comes from the graph (torch's Transpose on the input): no warning.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert_close(&y, &case(name, "output.npy"));
    assert_close(&hn, &case(name, "h_n.npy"));
    assert_close(&cn, &case(name, "c_n.npy"));
    let listing = ok(&run(&["inspect", s(&model)]));
    assert!(
        listing.contains("batch_first=true  (file metadata)"),
        "{listing}"
    );
    assert!(listing.contains("weight_hh_l1_reverse"), "{listing}");
}

#[test]
fn export_then_run_the_onnx_model_reproduces_torch() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "gru_batch_first_nobias_h0",
        "rnn_tanh_2layers_bidirectional",
        "lstm_nobias_h0_c0",
    ] {
        let onnx = dir.path().join(format!("{name}.onnx"));
        let out = run(&[
            "export",
            "--model",
            s(&case(name, "torch.safetensors")),
            "--output",
            s(&onnx),
            "--initial-state",
        ]);
        let stdout = ok(&out);
        assert!(
            stdout.contains("as ONNX opset 14") && stdout.contains("h0"),
            "{stdout}"
        );
        // The state dict records batch_first and nonlinearity: no warning.
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let y = dir.path().join(format!("{name}.y.npy"));
        let hn = dir.path().join(format!("{name}.hn.npy"));
        let mut args = vec![
            "run".to_string(),
            "--model".into(),
            s(&onnx).into(),
            "--input".into(),
            s(&case(name, "input.npy")).into(),
            "--output".into(),
            s(&y).into(),
            "--hn".into(),
            s(&hn).into(),
        ];
        for state in ["h0", "c0"] {
            let file = case(name, &format!("{state}.npy"));
            if file.exists() {
                args.push(format!("--{state}"));
                args.push(s(&file).into());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&run(&args));
        assert_close(&y, &case(name, "output.npy"));
        assert_close(&hn, &case(name, "h_n.npy"));
    }
}

#[test]
fn export_warns_about_options_the_model_does_not_record() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("m.onnx");
    // A state dict saved by torch does not record batch_first: export says what it
    // assumed.
    let out = run(&[
        "export",
        "--model",
        s(&std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../recurrent/tests/fixtures/first_hour/lstm_bf_nometa.safetensors")),
        "--output",
        s(&onnx),
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("warning:") && stderr.contains("batch_first=false"),
        "{stderr}"
    );
    // An ONNX graph fixes its input's layout (sequence-first here): nothing assumed.
    let again = dir.path().join("again.onnx");
    let out = run(&[
        "export",
        "--model",
        s(&case("rnn_relu_float_data", "model.onnx")),
        "--output",
        s(&again),
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("batch_first"), "{stderr}");
    assert!(onnx.exists());
}

#[test]
fn failed_exports_create_no_file_and_keep_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let lstm = dir.path().join("proj.safetensors");
    ok(&run(&[
        "init",
        "--mode",
        "lstm",
        "--input-size",
        "3",
        "--hidden-size",
        "4",
        "--proj-size",
        "2",
        "--output",
        s(&lstm),
    ]));
    let fresh = dir.path().join("new.onnx");
    let out = run(&["export", "--model", s(&lstm), "--output", s(&fresh)]);
    assert_fails(
        &out,
        &["new.onnx", "proj_size=2", "cannot be written as ONNX"],
        &[&fresh],
    );
    let existing = dir.path().join("old.onnx");
    std::fs::write(&existing, b"keep me").unwrap();
    let out = run(&["export", "--model", s(&lstm), "--output", s(&existing)]);
    assert_fails(&out, &["proj_size=2"], &[]);
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    // --nonlinearity on an LSTM; a bad ONNX model; the model as its own output.
    let model = case("lstm_nobias_h0_c0", "model.onnx");
    let out = run(&[
        "export",
        "--model",
        s(&model),
        "--output",
        s(&fresh),
        "--nonlinearity",
        "relu",
    ]);
    assert_fails(
        &out,
        &["--nonlinearity applies to RNN models only"],
        &[&fresh],
    );
    let bad = case("bad", "lstm_peepholes.onnx");
    let out = run(&["export", "--model", s(&bad), "--output", s(&fresh)]);
    assert_fails(
        &out,
        &["lstm_peepholes.onnx", "has peepholes (input P)"],
        &[&fresh],
    );
    let copy = dir.path().join("copy.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let out = run(&["export", "--model", s(&copy), "--output", s(&copy)]);
    assert_fails(&out, &["--output names the same file as --model"], &[]);
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["copy.onnx", "old.onnx", "proj.safetensors"]);
}

#[test]
fn run_refuses_a_bad_onnx_model_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    let input = case("gru_bf16", "input.npy");
    for (file, needle) in [
        ("gru_linear_before_reset_0.onnx", "linear_before_reset=0"),
        (
            "gemm_relu.onnx",
            "holds no RNN, LSTM or GRU node; it holds: Gemm, Relu",
        ),
        ("truncated.onnx", "not a valid ONNX model"),
    ] {
        let model = case("bad", file);
        let out = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&y),
        ]);
        assert_fails(&out, &[file, needle], &[&y]);
    }
}
