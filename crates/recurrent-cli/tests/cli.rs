//! End-to-end tests of the `recurrent` binary: PyTorch-made state dicts and inputs in,
//! torch's outputs out; every kind of bad input gives one line on stderr, a non-zero
//! exit, and no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};

#[path = "../../recurrent/tests/common/runner.rs"]
mod runner;

/// The `recurrent` binary, started through `RECURRENT_TEST_RUNNER` when that is set
/// (scripts/test_aarch64.sh sets it to qemu-aarch64: the binary is built for another CPU).
fn bin() -> Command {
    runner::command_for(Path::new(env!("CARGO_BIN_EXE_recurrent")))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/cli")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// torch.testing.assert_close defaults for the dtype.
fn assert_close_f32(got: &ArrayD<f32>, want: &ArrayD<f32>) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 + 1.3e-6 * w.abs(),
            "got {g}, want {w}"
        );
    }
}

fn assert_close_f64(got: &ArrayD<f64>, want: &ArrayD<f64>) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-7 + 1e-7 * w.abs(), "got {g}, want {w}");
    }
}

/// Asserts failure with exactly one line on stderr containing every `needle`, and that
/// `outputs` were not created.
fn assert_fails(out: &Output, needles: &[&str], outputs: &[&Path]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    for path in outputs {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

fn no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(
            !name.ends_with(".tmp") && !name.starts_with(".recurrent-"),
            "temp or backup file left: {name:?}"
        );
    }
}

#[test]
fn run_reproduces_torch_on_prefixed_state_dict_with_h0() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn) = (dir.path().join("out.npy"), dir.path().join("hn.npy"));
    let o = run(&[
        "run",
        "--model",
        s(&fixture("encoder.safetensors")),
        "--input",
        s(&fixture("encoder_input.npy")),
        "--h0",
        s(&fixture("encoder_h0.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_close_f32(
        &read_npy(&out).unwrap(),
        &read_npy(fixture("encoder_output.npy")).unwrap(),
    );
    assert_close_f32(
        &read_npy(&hn).unwrap(),
        &read_npy(fixture("encoder_hn.npy")).unwrap(),
    );
    no_temp_files(dir.path());
}

#[test]
fn run_without_h0_with_explicit_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn) = (dir.path().join("out.npy"), dir.path().join("hn.npy"));
    for prefix in ["encoder.rnn.", "encoder.rnn"] {
        let o = run(&[
            "run",
            "--model",
            s(&fixture("encoder.safetensors")),
            "--input",
            s(&fixture("encoder_input.npy")),
            "--prefix",
            prefix,
            "--output",
            s(&out),
            "--hn",
            s(&hn),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: ArrayD<f32> = read_npy(fixture("encoder_output_noh0.npy")).unwrap();
        assert_close_f32(&read_npy(&out).unwrap(), &want);
        let want: ArrayD<f32> = read_npy(fixture("encoder_hn_noh0.npy")).unwrap();
        assert_close_f32(&read_npy(&hn).unwrap(), &want);
    }
}

#[test]
fn run_unbatched_input() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn) = (dir.path().join("out.npy"), dir.path().join("hn.npy"));
    let o = run(&[
        "run",
        "--model",
        s(&fixture("encoder.safetensors")),
        "--input",
        s(&fixture("unbatched_input.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_close_f32(
        &read_npy(&out).unwrap(),
        &read_npy(fixture("unbatched_output.npy")).unwrap(),
    );
    assert_close_f32(
        &read_npy(&hn).unwrap(),
        &read_npy(fixture("unbatched_hn.npy")).unwrap(),
    );
}

#[test]
fn run_float64_reads_relu_and_batch_first_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn) = (dir.path().join("out.npy"), dir.path().join("hn.npy"));
    let o = run(&[
        "run",
        "--model",
        s(&fixture("relu_bf.safetensors")),
        "--input",
        s(&fixture("relu_bf_input.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_close_f64(
        &read_npy(&out).unwrap(),
        &read_npy(fixture("relu_bf_output.npy")).unwrap(),
    );
    assert_close_f64(
        &read_npy(&hn).unwrap(),
        &read_npy(fixture("relu_bf_hn.npy")).unwrap(),
    );
}

#[test]
fn flags_override_metadata() {
    // --batch-first=false and --nonlinearity tanh against the relu/batch_first file: the
    // CLI must compute what the library computes with that configuration.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let o = run(&[
        "run",
        "--model",
        s(&fixture("relu_bf.safetensors")),
        "--input",
        s(&fixture("relu_bf_input.npy")),
        "--batch-first=false",
        "--nonlinearity",
        "tanh",
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rnn = recurrent::Rnn::<f64>::load(fixture("relu_bf.safetensors"), None).unwrap();
    assert!(rnn.config().batch_first);
    rnn.set_batch_first(false);
    rnn.set_nonlinearity(recurrent::Nonlinearity::Tanh);
    let x: ArrayD<f64> = read_npy(fixture("relu_bf_input.npy")).unwrap();
    let (want, _) = recurrent::reference::forward(&rnn, x.view(), None).unwrap();
    let got: ArrayD<f64> = read_npy(&out).unwrap();
    assert_eq!(got.shape(), [2, 6, 4]); // (L=2, N=6, H): the input read sequence-first
    assert_close_f64(&got, &want);
}

#[test]
fn init_inspect_run_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let o = run(&[
        "init",
        "--input-size",
        "3",
        "--hidden-size",
        "5",
        "--num-layers",
        "2",
        "--nonlinearity",
        "relu",
        "--bidirectional",
        "--batch-first",
        "--seed",
        "7",
        "--output",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    no_temp_files(dir.path());

    let o = run(&["inspect", s(&model)]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.starts_with(
            "RNN(3, 5, num_layers=2, nonlinearity='relu', batch_first=True, bidirectional=True)"
        ),
        "{text}"
    );
    // named_parameters() order, torch's shapes.
    let listed: Vec<(&str, &str)> = text
        .lines()
        .skip_while(|l| !l.starts_with("parameters"))
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap();
            (name, l[l.find('(').unwrap()..].trim())
        })
        .collect();
    assert_eq!(listed.len(), 16);
    assert_eq!(listed[0], ("weight_ih_l0", "(5, 3)"));
    assert_eq!(listed[3], ("bias_hh_l0", "(5,)"));
    assert_eq!(listed[4], ("weight_ih_l0_reverse", "(5, 3)"));
    assert_eq!(listed[8], ("weight_ih_l1", "(5, 10)"));
    assert_eq!(listed[15], ("bias_hh_l1_reverse", "(5,)"));

    // The file holds exactly the seeded library model, and run computes its forward.
    let config = recurrent::RnnConfig::new(3, 5)
        .num_layers(2)
        .nonlinearity(recurrent::Nonlinearity::Relu)
        .bidirectional(true)
        .batch_first(true);
    let rnn = recurrent::Rnn::<f32>::seeded(config, 7).unwrap();
    let x = ArrayD::<f32>::from_shape_fn(IxDyn(&[2, 4, 3]), |i| {
        (i[0] + 2 * i[1] + 3 * i[2]) as f32 * 0.1 - 0.7
    });
    let input = dir.path().join("x.npy");
    write_npy(&input, &x).unwrap();
    let out = dir.path().join("out.npy");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (want, _) = recurrent::reference::forward(&rnn, x.view(), None).unwrap();
    assert_close_f32(&read_npy(&out).unwrap(), &want);

    let o = run(&["inspect", s(&model), "--values"]);
    assert!(o.status.success());
    assert!(String::from_utf8(o.stdout).unwrap().lines().count() > 40);
}

#[test]
fn ambiguous_prefix_lists_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let o = run(&[
        "run",
        "--model",
        s(&fixture("ambiguous.safetensors")),
        "--input",
        s(&fixture("encoder_input.npy")),
        "--output",
        s(&out),
    ]);
    assert_fails(
        &o,
        &["ambiguous.safetensors", "'a.rnn.'", "'b.rnn.'"],
        &[&out],
    );
    let o = run(&[
        "inspect",
        s(&fixture("ambiguous.safetensors")),
        "--prefix",
        "b.rnn.",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .starts_with("RNN(5, 6, num_layers=2)"));
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (out, hn) = (d.join("out.npy"), d.join("hn.npy"));
    let model = fixture("encoder.safetensors");
    let input = fixture("encoder_input.npy");

    let write = |name: &str, shape: &[usize], f64s: bool| -> PathBuf {
        let p = d.join(name);
        if f64s {
            write_npy(&p, &ArrayD::<f64>::zeros(IxDyn(shape))).unwrap();
        } else {
            write_npy(&p, &ArrayD::<f32>::zeros(IxDyn(shape))).unwrap();
        }
        p
    };
    let wrong_width = write("w.npy", &[7, 3, 5], false);
    let rank4 = write("r4.npy", &[1, 7, 3, 6], false);
    let empty = write("e.npy", &[0, 3, 6], false);
    let h0_shape = write("h0s.npy", &[2, 3, 8], false);
    let h0_rank = write("h0r.npy", &[4, 8], false);
    let h0_f64 = write("h0d.npy", &[4, 3, 8], true);
    let ints = d.join("i.npy");
    write_npy(&ints, &ArrayD::<i64>::zeros(IxDyn(&[7, 3, 6]))).unwrap();
    let garbage = d.join("g.npy");
    std::fs::write(&garbage, b"not an npy file").unwrap();
    let missing = d.join("missing.safetensors");

    // Leaked so the argument lists can borrow them freely; a test process is short-lived.
    let leak = |p: &Path| -> &'static str { Box::leak(s(p).to_string().into_boxed_str()) };
    let m = leak(&model);
    let i = leak(&input);
    let no_dir = leak(&d.join("no/such/dir/out.npy"));
    let base = |input: &'static str| {
        vec![
            "run",
            "--model",
            m,
            "--input",
            input,
            "--output",
            s(&out),
            "--hn",
            s(&hn),
        ]
    };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            base(leak(&wrong_width)),
            vec!["w.npy", "input_size", "expected 6, got 5"],
        ),
        (base(leak(&rank4)), vec!["r4.npy", "2-D", "3-D", "4-D"]),
        (base(leak(&empty)), vec!["e.npy", "sequence length"]),
        (base(leak(&ints)), vec!["i.npy", "float32 or float64"]),
        (base(leak(&garbage)), vec!["g.npy", ".npy"]),
        (base(leak(&d.join("nope.npy"))), vec!["nope.npy"]),
        (
            [base(i), vec!["--h0", leak(&h0_shape)]].concat(),
            vec!["h0s.npy", "(4, 3, 8)", "(2, 3, 8)"],
        ),
        (
            [base(i), vec!["--h0", leak(&h0_rank)]].concat(),
            vec!["h0r.npy", "3-D", "2-D"],
        ),
        (
            [base(i), vec!["--h0", leak(&h0_f64)]].concat(),
            vec!["h0d.npy", "float32"],
        ),
        (
            vec![
                "run",
                "--model",
                leak(&missing),
                "--input",
                i,
                "--output",
                s(&out),
            ],
            vec!["missing.safetensors"],
        ),
        (
            vec![
                "run",
                "--model",
                leak(&garbage),
                "--input",
                i,
                "--output",
                s(&out),
            ],
            vec!["g.npy", "safetensors"],
        ),
        (
            [base(i), vec!["--prefix", "decoder."]].concat(),
            vec!["decoder."],
        ),
        (
            vec!["run", "--model", m, "--input", i, "--output", no_dir],
            vec!["no/such/dir"],
        ),
    ];
    for (args, needles) in cases {
        let o = run(&args);
        assert_fails(&o, &needles, &[&out, &hn]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
    }
    no_temp_files(d);
}

#[test]
fn usage_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let m = fixture("encoder.safetensors");
    let i = fixture("encoder_input.npy");
    for (args, needle) in [
        (vec!["run", "--model", s(&m), "--input", s(&i)], "--output"),
        (
            vec![
                "run",
                "--model",
                s(&m),
                "--input",
                s(&i),
                "--output",
                s(&out),
                "--nonlinearity",
                "sigmoid",
            ],
            "sigmoid",
        ),
        (
            vec![
                "init",
                "--input-size",
                "3",
                "--hidden-size",
                "x",
                "--output",
                s(&out),
            ],
            "--hidden-size",
        ),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let o = run(&args);
        assert_fails(&o, &[needle], &[&out]);
        assert_eq!(o.status.code(), Some(2));
    }
    // Configuration errors name the flag.
    let o = run(&[
        "init",
        "--input-size",
        "3",
        "--hidden-size",
        "0",
        "--output",
        s(&out),
    ]);
    assert_fails(&o, &["--hidden-size", "greater than zero"], &[&out]);
    let o = run(&[
        "init",
        "--input-size",
        "3",
        "--hidden-size",
        "2",
        "--dropout",
        "1.5",
        "--output",
        s(&out),
    ]);
    assert_fails(&o, &["--dropout"], &[&out]);
}

#[test]
fn failed_run_keeps_an_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    std::fs::write(&out, b"previous").unwrap();
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &ArrayD::<f32>::zeros(IxDyn(&[2, 2, 2]))).unwrap();
    let o = run(&[
        "run",
        "--model",
        s(&fixture("encoder.safetensors")),
        "--input",
        s(&bad),
        "--output",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    no_temp_files(dir.path());
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn family(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/cli_family")
        .join(name)
}

#[test]
fn run_lstm_with_projection_and_states_from_a_prefixed_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn, cn) = (
        dir.path().join("o.npy"),
        dir.path().join("h.npy"),
        dir.path().join("c.npy"),
    );
    let o = run(&[
        "run",
        "--model",
        s(&family("seq2seq.safetensors")),
        "--prefix",
        "encoder.lstm",
        "--input",
        s(&family("lstm_input.npy")),
        "--h0",
        s(&family("lstm_h0.npy")),
        "--c0",
        s(&family("lstm_c0.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
        "--cn",
        s(&cn),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_close_f32(
        &read_npy(&out).unwrap(),
        &read_npy(family("lstm_output.npy")).unwrap(),
    );
    assert_close_f32(
        &read_npy(&hn).unwrap(),
        &read_npy(family("lstm_hn.npy")).unwrap(),
    );
    assert_close_f32(
        &read_npy(&cn).unwrap(),
        &read_npy(family("lstm_cn.npy")).unwrap(),
    );
}

#[test]
fn run_lstm_with_lengths_int64_and_int32() {
    for lengths in ["lengths.npy", "lengths_i32.npy"] {
        let dir = tempfile::tempdir().unwrap();
        let (out, hn, cn) = (
            dir.path().join("o.npy"),
            dir.path().join("h.npy"),
            dir.path().join("c.npy"),
        );
        let o = run(&[
            "run",
            "--model",
            s(&family("seq2seq.safetensors")),
            "--prefix",
            "encoder.lstm.",
            "--input",
            s(&family("lstm_input.npy")),
            "--h0",
            s(&family("lstm_h0.npy")),
            "--c0",
            s(&family("lstm_c0.npy")),
            "--lengths",
            s(&family(lengths)),
            "--output",
            s(&out),
            "--hn",
            s(&hn),
            "--cn",
            s(&cn),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_close_f32(
            &read_npy(&out).unwrap(),
            &read_npy(family("lstm_len_output.npy")).unwrap(),
        );
        assert_close_f32(
            &read_npy(&hn).unwrap(),
            &read_npy(family("lstm_len_hn.npy")).unwrap(),
        );
        assert_close_f32(
            &read_npy(&cn).unwrap(),
            &read_npy(family("lstm_len_cn.npy")).unwrap(),
        );
    }
}

#[test]
fn run_gru_from_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn) = (dir.path().join("o.npy"), dir.path().join("h.npy"));
    let o = run(&[
        "run",
        "--model",
        s(&family("seq2seq.safetensors")),
        "--prefix",
        "decoder.gru.",
        "--input",
        s(&family("gru_input.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_close_f32(
        &read_npy(&out).unwrap(),
        &read_npy(family("gru_output.npy")).unwrap(),
    );
    assert_close_f32(
        &read_npy(&hn).unwrap(),
        &read_npy(family("gru_hn.npy")).unwrap(),
    );
}

#[test]
fn family_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (out, cn) = (d.join("o.npy"), d.join("c.npy"));
    let model = family("seq2seq.safetensors");
    let bad_lengths = d.join("bad_lengths.npy");
    write_npy(&bad_lengths, &ndarray::arr1(&[7i64, 0, 5])).unwrap();
    let long_lengths = d.join("long_lengths.npy");
    write_npy(&long_lengths, &ndarray::arr1(&[8i64, 3, 5])).unwrap();
    let float_lengths = d.join("float_lengths.npy");
    write_npy(&float_lengths, &ndarray::arr1(&[7.0f32, 2.5, 5.0])).unwrap();
    let m = s(&model);
    let x = family("lstm_input.npy");
    let h0 = family("lstm_h0.npy");
    let c0 = family("lstm_c0.npy");
    let common = [
        "run",
        "--model",
        m,
        "--prefix",
        "encoder.lstm.",
        "--input",
        s(&x),
        "--output",
        s(&out),
    ];
    let base = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        // The file holds two layers: the prefix is ambiguous without --prefix.
        (
            strings(&["run", "--model", m, "--input", s(&x), "--output", s(&out)]),
            vec!["'decoder.gru.'", "'encoder.lstm.'"],
        ),
        (base(&["--h0", s(&h0)]), vec!["--h0", "--c0"]),
        (
            base(&["--lengths", s(&bad_lengths)]),
            vec!["bad_lengths.npy", "lengths[1] = 0"],
        ),
        (
            base(&["--lengths", s(&long_lengths)]),
            vec!["long_lengths.npy", "8"],
        ),
        (
            base(&["--lengths", s(&float_lengths)]),
            vec![
                "float_lengths.npy",
                "lengths[1] = 2.5",
                "whole number",
                "truncate it to 2",
            ],
        ),
        (
            base(&["--nonlinearity", "relu"]),
            vec!["--nonlinearity", "LSTM"],
        ),
        (
            base(&["--h0", s(&c0), "--c0", s(&c0)]),
            vec!["lstm_c0.npy", "(4, 3, 4)"],
        ),
        (
            strings(&[
                "run",
                "--model",
                m,
                "--prefix",
                "decoder.gru",
                "--input",
                s(&x),
                "--output",
                s(&out),
                "--cn",
                s(&cn),
            ]),
            vec!["--cn", "LSTM"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_fails(&o, &needles, &[&out, &cn]);
    }
}

#[test]
fn init_inspect_run_lstm_and_gru() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, extra, first, shapes) in [
        (
            "lstm",
            vec!["--proj-size", "2"],
            "LSTM(3, 5, proj_size=2, num_layers=2)",
            vec![
                ("weight_ih_l0", "(20, 3)"),
                ("weight_hh_l0", "(20, 2)"),
                ("weight_hr_l0", "(2, 5)"),
                ("weight_ih_l1", "(20, 2)"),
            ],
        ),
        (
            "gru",
            vec![],
            "GRU(3, 5, num_layers=2)",
            vec![
                ("weight_ih_l0", "(15, 3)"),
                ("weight_hh_l0", "(15, 5)"),
                ("weight_ih_l1", "(15, 5)"),
            ],
        ),
    ] {
        let model = dir.path().join(format!("{mode}.safetensors"));
        let mut args = vec![
            "init",
            "--mode",
            mode,
            "--input-size",
            "3",
            "--hidden-size",
            "5",
            "--num-layers",
            "2",
            "--output",
            s(&model),
        ];
        args.extend(extra.iter().copied());
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = run(&["inspect", s(&model)]);
        assert!(o.status.success());
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.starts_with(first), "{text}");
        for (name, shape) in shapes {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(name) && l.ends_with(shape)),
                "{name} {shape} in {text}"
            );
        }
        let x =
            ArrayD::<f64>::from_shape_fn(IxDyn(&[4, 2, 3]), |i| (i[0] + i[1] + i[2]) as f64 * 0.1);
        let input = dir.path().join("x.npy");
        write_npy(&input, &x).unwrap();
        let out = dir.path().join("o.npy");
        let o = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dict = recurrent::io::safetensors::StateDict::read(&model).unwrap();
        let layers = dict
            .load_layers::<f64>("", dict.infer_config("").unwrap())
            .unwrap();
        let (want, _, _) =
            recurrent::reference::forward_layers(&layers, x.view(), None, None, None).unwrap();
        assert_close_f64(&read_npy(&out).unwrap(), &want);
    }
}

#[test]
fn backward_reproduces_torch_gradients() {
    use recurrent::io::safetensors::StateDict;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/grads/f64_rnn_tanh_l2_bidir_h0_ghn.safetensors");
    let dict = StateDict::read(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["input", "h0", "grad_output", "grad_h_n"] {
        let path = dir.path().join(format!("{name}.npy"));
        write_npy(&path, &dict.tensor::<f64>(name).unwrap()).unwrap();
        files.push(path);
    }
    let out = dir.path().join("grads.safetensors");
    // The fixture holds the gradients beside the model (as `grad.*`): name the prefix.
    let o = run(&[
        "backward",
        "--model",
        s(&fixture),
        "--prefix",
        "",
        "--input",
        s(&files[0]),
        "--h0",
        s(&files[1]),
        "--grad-output",
        s(&files[2]),
        "--grad-hn",
        s(&files[3]),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grads = StateDict::read(&out).unwrap();
    let mut names = 0;
    for name in grads.names() {
        let want: ArrayD<f64> = dict.tensor(&format!("grad.{name}")).unwrap();
        assert_close_f64(&grads.tensor::<f64>(name).unwrap(), &want);
        names += 1;
    }
    assert_eq!(names, 16 + 2); // 2 layers x 2 directions x 4 tensors, plus input and h0

    // Bad gradient shapes and other kinds: one line, no output.
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &ArrayD::<f64>::zeros(IxDyn(&[2, 2]))).unwrap();
    let out2 = dir.path().join("never.safetensors");
    let o = run(&[
        "backward",
        "--model",
        s(&fixture),
        "--prefix",
        "",
        "--input",
        s(&files[0]),
        "--grad-output",
        s(&bad),
        "--output",
        s(&out2),
    ]);
    assert_fails(&o, &["bad.npy", "grad_output", "expected shape"], &[&out2]);
    let o = run(&[
        "backward",
        "--model",
        s(&family("seq2seq.safetensors")),
        "--prefix",
        "decoder.gru",
        "--input",
        s(&family("gru_input.npy")),
        "--grad-output",
        s(&family("gru_output.npy")),
        "--output",
        s(&out2),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "backward",
        "--model",
        s(&family("seq2seq.safetensors")),
        "--prefix",
        "decoder.gru",
        "--input",
        s(&family("gru_input.npy")),
        "--grad-output",
        s(&family("gru_output.npy")),
        "--c0",
        s(&family("lstm_c0.npy")),
        "--output",
        s(&out2),
    ]);
    assert_fails(&o, &["--c0", "LSTM"], &[]);
}

#[test]
fn backward_lstm_with_lengths_reproduces_torch() {
    use recurrent::io::safetensors::StateDict;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../recurrent/tests/fixtures/grads/f64_len_lstm_proj_l2_bidir_unsorted_h0_ghn.safetensors",
    );
    let dict = StateDict::read(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(format!("{name}.npy"));
    for name in ["input", "h0", "c0", "grad_output", "grad_h_n", "grad_c_n"] {
        if dict.shape(name).is_some() {
            write_npy(path(name), &dict.tensor::<f64>(name).unwrap()).unwrap();
        }
    }
    let lengths: Vec<i64> = dict
        .tensor_usize("lengths")
        .unwrap()
        .iter()
        .map(|&l| l as i64)
        .collect();
    write_npy(path("lengths"), &ndarray::Array1::from(lengths)).unwrap();
    let out = dir.path().join("grads.safetensors");
    let mut args = vec![
        "backward".to_string(),
        "--model".into(),
        s(&fixture).into(),
        "--prefix".into(),
        String::new(),
    ];
    for (flag, name) in [
        ("--input", "input"),
        ("--h0", "h0"),
        ("--c0", "c0"),
        ("--grad-output", "grad_output"),
        ("--grad-hn", "grad_h_n"),
        ("--grad-cn", "grad_c_n"),
        ("--lengths", "lengths"),
    ] {
        if path(name).exists() {
            args.push(flag.into());
            args.push(path(name).to_string_lossy().into_owned());
        }
    }
    args.push("--output".into());
    args.push(s(&out).into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&argv);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grads = StateDict::read(&out).unwrap();
    for name in grads.names() {
        let want: ArrayD<f64> = dict.tensor(&format!("grad.{name}")).unwrap();
        assert_close_f64(&grads.tensor::<f64>(name).unwrap(), &want);
    }
    assert!(grads.names().contains(&"weight_hr_l1_reverse"));
}

// --- reliability: nothing lost, nothing replaced that is not a regular file -------------

/// Every file in `dir` with its bytes, to compare before and after a command.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// A folder with the example model and input, and `out.npy`, `hn.npy` and `grads.st`
/// already there (as a user's earlier results would be).
fn workspace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data");
    let model = dir.path().join("model.safetensors");
    let input = dir.path().join("input.npy");
    std::fs::copy(root.join("model.safetensors"), &model).unwrap();
    std::fs::copy(root.join("input.npy"), &input).unwrap();
    for name in ["out.npy", "hn.npy", "grads.st"] {
        std::fs::write(dir.path().join(name), format!("earlier {name}")).unwrap();
    }
    (dir, model, input)
}

#[test]
fn a_failed_run_or_backward_leaves_every_earlier_file_byte_identical() {
    let (dir, model, input) = workspace();
    let d = dir.path();
    let go = d.join("go.npy");
    write_npy(&go, &ArrayD::<f32>::ones(IxDyn(&[10, 2, 8]))).unwrap();
    let before_go = snapshot(d);
    let cases: Vec<Vec<String>> = vec![
        // The second output cannot be written: the first must not replace out.npy.
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&d.join("out.npy")),
            "--hn",
            s(&d.join("missing/hn.npy")),
        ]),
        // The third output is a directory.
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&d.join("out.npy")),
            "--hn",
            s(&d.join("hn.npy")),
            "--cn",
            s(d),
        ]),
        // Output and h_n into one file.
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&d.join("out.npy")),
            "--hn",
            s(&d.join("./out.npy")),
        ]),
        // The output is the input itself (directly and through `..`).
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&input),
        ]),
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&d.join("../").join(d.file_name().unwrap()).join("input.npy")),
        ]),
        strings(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&model),
        ]),
        // backward onto its own model file or gradient input.
        strings(&[
            "backward",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--grad-output",
            s(&go),
            "--output",
            s(&model),
        ]),
        strings(&[
            "backward",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--grad-output",
            s(&go),
            "--output",
            s(&go),
        ]),
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_fails(&o, &[], &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr.contains(".recurrent-"),
            "names a temp file: {stderr}"
        );
        assert_eq!(
            snapshot(d),
            before_go,
            "files changed by {args:?}: {stderr}"
        );
    }
}

#[test]
fn outputs_that_are_devices_or_fifos_are_written_in_place_never_replaced() {
    let (dir, model, input) = workspace();
    let d = dir.path();
    // A character device of our own (the null device's numbers), so that a regression
    // replaces a node in the temporary folder, never the system's /dev/null. Without
    // the right to make one (not root), /dev/null itself, which such a user cannot
    // replace anyway.
    let own = d.join("null");
    let made = Command::new("mknod")
        .args([s(&own), "c", "1", "3"])
        .status()
        .is_ok_and(|st| st.success());
    // Root without the right to make device nodes (a container) could replace the real
    // /dev/null if this ever regressed: then only the FIFO and link parts run.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let device = if made {
        own
    } else if root {
        eprintln!("mknod refused as root: the character-device part of this test is skipped");
        d.join("not-a-device.npy")
    } else {
        PathBuf::from("/dev/null")
    };
    let is_device = made || !root;
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&device),
        "--hn",
        s(&device),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(&device).unwrap();
        assert!(
            meta.file_type().is_char_device() || !is_device,
            "{} was replaced",
            device.display()
        );
        // A FIFO receives the .npy bytes and stays a FIFO.
        let fifo = d.join("out.fifo");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let o = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&fifo),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = reader.join().unwrap();
        let file = d.join("same.npy");
        let o = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&file),
        ]);
        assert!(o.status.success());
        assert_eq!(
            bytes,
            std::fs::read(&file).unwrap(),
            "the FIFO got other bytes"
        );
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        // A symbolic link is followed: the file it names is replaced, the link stays.
        let link = d.join("link.npy");
        std::os::unix::fs::symlink(d.join("out.npy"), &link).unwrap();
        let o = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&link),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read(d.join("out.npy")).unwrap(),
            std::fs::read(&file).unwrap()
        );
    }
    no_temp_files(d);
}

#[test]
fn sizes_past_what_the_data_or_the_memory_holds_fail_fast_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 200000^2 weights (640 GB) cannot be allocated: an error line, not an abort.
    let big = d.join("big.safetensors");
    let o = run(&[
        "init",
        "--mode",
        "rnn",
        "--input-size",
        "4",
        "--hidden-size",
        "200000",
        "--output",
        s(&big),
    ]);
    assert_fails(&o, &["not enough memory"], &[&big]);

    // An input of shape (10^12, 0, 4) holds no data: run and backward return at once.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data");
    let model = root.join("model.safetensors");
    let input = d.join("empty.npy");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 0, 4), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&input, &bytes).unwrap();
    let out = d.join("out.npy");
    let start = std::time::Instant::now();
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let output: ArrayD<f32> = read_npy(&out).unwrap();
    assert_eq!(output.shape(), [1_000_000_000_000, 0, 8]);
    let go = d.join("go.npy");
    std::fs::copy(&out, &go).unwrap();
    let grads = d.join("grads.safetensors");
    let o = run(&[
        "backward",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--grad-output",
        s(&go),
        "--output",
        s(&grads),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Not a timing assertion: a loop over 10^12 steps would never get here at all.
    assert!(start.elapsed() < std::time::Duration::from_secs(600));

    // The same empty batch with lengths of shape (0,): torch cannot pack empty tensors.
    let lengths = d.join("lengths.npy");
    write_npy(&lengths, &ndarray::Array1::<i64>::zeros(0)).unwrap();
    let out2 = d.join("out2.npy");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--lengths",
        s(&lengths),
        "--output",
        s(&out2),
    ]);
    assert_fails(&o, &["cannot pack empty tensors"], &[&out2]);
}

#[test]
fn standard_output_as_an_output_keeps_the_shells_semantics() {
    let (dir, model, input) = workspace();
    let d = dir.path();
    let file = d.join("file.npy");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&file),
    ]);
    assert!(o.status.success());
    let want = std::fs::read(&file).unwrap();
    for dash in ["-", "/dev/stdout"] {
        // Into a pipe: the .npy bytes alone on stdout, the summary on stderr.
        let o = run(&[
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            dash,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, want, "{dash}: stdout holds the array only");
        assert!(String::from_utf8_lossy(&o.stderr).contains("output [10, 2, 8]"));
        // Appended to a file (`>> log`): what was there stays.
        let log = d.join("log.txt");
        std::fs::write(&log, "precious\n").unwrap();
        let append = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let status = bin()
            .args([
                "run",
                "--model",
                s(&model),
                "--input",
                s(&input),
                "--output",
                dash,
            ])
            .stdout(append)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&log).unwrap();
        assert_eq!(&bytes[..9], b"precious\n", "{dash}: the log was replaced");
        assert_eq!(&bytes[9..], &want[..], "{dash}");
    }
}

#[test]
fn a_full_stdout_after_the_outputs_are_written_is_not_a_failure_and_modes_are_kept() {
    let (dir, model, input) = workspace();
    let d = dir.path();
    let out = d.join("out.npy");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // /dev/full is only opened here, never an output: writing the summary fails.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = bin()
        .args([
            "run",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&out),
        ])
        .stdout(full)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written: ArrayD<f32> = read_npy(&out).unwrap();
    assert_eq!(written.shape(), [10, 2, 8]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a private output became readable by others");
    }
    no_temp_files(d);
}

fn first_hour(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/first_hour")
        .join(name)
}

/// A torch `LSTM(10, 20, num_layers=2, batch_first=True)` saved with
/// `save_file(model.state_dict(), path)` records no batch_first: `run` says which
/// default it used and how to change it (the output has torch's shape either way, so
/// nothing else would tell), and stays quiet once the flag or the metadata gives it.
#[test]
fn a_default_not_recorded_in_the_file_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let model = first_hour("lstm_bf_nometa.safetensors");
    let input = first_hour("lstm_bf_nometa_input.npy");
    let want: ArrayD<f32> = read_npy(first_hour("lstm_bf_nometa_output.npy")).unwrap();
    let base = [
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ];

    let o = run(&base);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "one warning line: {stderr}");
    for needle in [
        "warning:",
        "lstm_bf_nometa.safetensors does not record batch_first",
        "batch_first=false",
        "--batch-first",
        "metadata={\"batch_first\": \"true\"}",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("batch_first=false (torch default — not recorded in the file)"),
        "{stdout}"
    );
    let wrong: ArrayD<f32> = read_npy(&out).unwrap();
    assert_eq!(wrong.shape(), want.shape());

    let mut with_flag = base.to_vec();
    with_flag.push("--batch-first");
    let o = run(&with_flag);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("batch_first=true (flag)"));
    assert_close_f32(&read_npy(&out).unwrap(), &want);

    let model = first_hour("lstm_bf_meta.safetensors");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("batch_first=true (file metadata)"));
    assert_close_f32(&read_npy(&out).unwrap(), &want);

    // backward warns alike.
    let go = dir.path().join("go.npy");
    write_npy(&go, &ArrayD::<f32>::ones(IxDyn(want.shape()))).unwrap();
    let grads = dir.path().join("grads.safetensors");
    let model = first_hour("lstm_bf_nometa.safetensors");
    let o = run(&[
        "backward",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--grad-output",
        s(&go),
        "--output",
        s(&grads),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("warning:") && stderr.contains("batch_first"),
        "{stderr}"
    );
}

/// An RNN built with relu and saved by torch: the activation is not recorded either.
/// Unbatched (2-D) input does not depend on batch_first, so only the activation is named.
#[test]
fn an_unrecorded_nonlinearity_is_named_and_a_failure_says_what_was_assumed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let model = first_hour("rnn_relu_nometa.safetensors");
    let input = first_hour("rnn_relu_nometa_input.npy");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "does not record batch_first or nonlinearity",
        "nonlinearity=tanh",
        "--nonlinearity relu",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--nonlinearity",
        "relu",
        "--batch-first=false",
    ]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want: ArrayD<f32> = read_npy(first_hour("rnn_relu_nometa_output.npy")).unwrap();
    assert_close_f32(&read_npy(&out).unwrap(), &want);

    // Unbatched input: batch_first does not apply, the activation does.
    let x: ArrayD<f32> = read_npy(&input).unwrap();
    let unbatched = dir.path().join("x2.npy");
    write_npy(&unbatched, &x.index_axis(ndarray::Axis(1), 0).to_owned()).unwrap();
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&unbatched),
        "--output",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("does not record nonlinearity;") && !stderr.contains("batch_first"),
        "{stderr}"
    );

    // A failure is one line, and says which default was assumed.
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &ArrayD::<f32>::zeros(IxDyn(&[4, 2, 3]))).unwrap();
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&bad),
        "--output",
        s(&out),
    ]);
    assert_fails(
        &o,
        &[
            "bad.npy",
            "assumed torch's default batch_first=false, nonlinearity=tanh",
        ],
        &[],
    );
}

#[test]
fn inspect_says_where_each_option_came_from() {
    let o = run(&["inspect", s(&first_hour("lstm_bf_nometa.safetensors"))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("LSTM(10, 20, num_layers=2)"), "{stdout}");
    assert!(
        stdout.contains("batch_first=false  (torch default — not recorded in the file)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("nonlinearity="),
        "not an option of an LSTM: {stdout}"
    );
    let o = run(&["inspect", s(&first_hour("lstm_bf_meta.safetensors"))]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("batch_first=true  (file metadata)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dropout=0         (torch default"),
        "{stdout}"
    );
}

/// A `model.half()` state dict runs on a float32 input and `inspect` shows its stored
/// dtype.
#[test]
fn half_precision_models_run_and_inspect_shows_their_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let model = first_hour("lstm_f16.safetensors");
    let o = run(&["inspect", s(&model)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("dtype: float16 (widened exactly to float32"),
        "{stdout}"
    );
    let input = first_hour("lstm_f16_input.npy");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: ArrayD<f32> = read_npy(first_hour("lstm_f16_output.npy")).unwrap();
    assert_close_f32(&read_npy(&out).unwrap(), &want);
}

/// The help and the no-subcommand error name every subcommand and every kind.
#[test]
fn the_tool_names_all_it_does() {
    let o = run(&[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "run", "backward", "inspect", "init", "bench", "RNN", "LSTM", "GRU",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        assert!(help.contains(needle), "{needle:?} not in: {help}");
    }
}

/// `recurrent bench` on a tiny layer with `RECURRENT_ISA` set to `isa` (removed when
/// `None`).
fn bench_with_isa(isa: Option<&str>) -> Output {
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--input-size",
        "3",
        "--hidden-size",
        "17",
        "--seq-len",
        "4",
        "--batch",
        "2",
        "--min-time",
        "0.01",
    ]);
    match isa {
        Some(v) => cmd.env("RECURRENT_ISA", v),
        None => cmd.env_remove("RECURRENT_ISA"),
    };
    cmd.output().expect("the binary runs")
}

#[test]
fn bench_names_the_kernel_path_it_ran() {
    let cases = recurrent::Isa::supported()
        .into_iter()
        .map(|isa| (Some(isa.name()), isa))
        .chain([(None, recurrent::Isa::best())]);
    for (value, want) in cases {
        let o = bench_with_isa(value);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{value:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
        assert!(
            stdout.contains(&format!("\"isa\":\"{want}\"")),
            "{value:?}: {stdout}"
        );
    }
}

#[test]
fn a_bad_isa_fails_bench_and_run_with_one_line() {
    let unsupported = recurrent::Isa::ALL
        .into_iter()
        .find(|isa| !isa.is_supported())
        .map(|isa| isa.name());
    for value in ["sse4", "avx-512"].into_iter().chain(unsupported) {
        let needle = format!("RECURRENT_ISA={value}");
        assert_fails(&bench_with_isa(Some(value)), &[&needle], &[]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.npy");
        let o = bin()
            .args([
                "run",
                "--model",
                s(&fixture("encoder.safetensors")),
                "--input",
                s(&fixture("encoder_input.npy")),
                "--output",
                s(&out),
            ])
            .env("RECURRENT_ISA", value)
            .output()
            .expect("the binary runs");
        assert_fails(&o, &[&needle, "this CPU"], &[&out]);
    }
}

fn formats(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recurrent/tests/fixtures/formats")
        .join(name)
}

/// A cell's state dict, saved by torch.save, runs over a sequence as the one-layer layer
/// it equals, with torch's numbers for the cell looped over time; `inspect` prints it
/// as torch does.
#[test]
fn a_torch_saved_cell_runs_over_a_sequence_and_inspects_as_a_cell() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hn, cn) = (
        dir.path().join("y.npy"),
        dir.path().join("hn.npy"),
        dir.path().join("cn.npy"),
    );
    let model = formats("cell_lstm.pt");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&formats("cell_lstm_input.npy")),
        "--output",
        s(&out),
        "--hn",
        s(&hn),
        "--cn",
        s(&cn),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "a cell has no batch_first: {stderr}"
    );
    for (file, want) in [(&out, "output"), (&hn, "hn"), (&cn, "cn")] {
        let want: ArrayD<f32> = read_npy(formats(&format!("cell_lstm_{want}.npy"))).unwrap();
        assert_close_f32(&read_npy(file).unwrap(), &want);
    }
    let o = run(&["inspect", s(&model)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("LSTMCell(10, 20)\n"), "{stdout}");
    assert!(stdout.contains("format: torch.save (zip)"), "{stdout}");
    assert!(stdout.contains("  weight_ih  (80, 10)"), "{stdout}");
    let o = run(&["inspect", s(&formats("cell_rnn_relu.safetensors"))]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("RNNCell(3, 5, nonlinearity=relu)\n"),
        "{stdout}"
    );
}

/// torch.save files run (legacy container, bfloat16 storage); a file whose pickle would
/// run code is refused in one line, and nothing is written.
#[test]
fn torch_save_files_run_and_a_pickle_that_runs_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let model = formats("pt_gru_bf16_legacy.pt");
    let o = run(&["inspect", s(&model)]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("format: torch.save (legacy)"), "{stdout}");
    assert!(stdout.contains("dtype: bfloat16"), "{stdout}");
    let o = run(&[
        "run",
        "--model",
        s(&model),
        "--input",
        s(&formats("pt_gru_bf16_legacy_input.npy")),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A torch.save file records no batch_first: the remedy is to re-save it as safetensors.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("re-save its state dict as safetensors with save_file"),
        "{stderr}"
    );
    let want: ArrayD<f32> = read_npy(formats("pt_gru_bf16_legacy_output.npy")).unwrap();
    assert_close_f32(&read_npy(&out).unwrap(), &want);

    let out = dir.path().join("evil.npy");
    let evil = formats("bad_evil_global.pt");
    let o = run(&[
        "run",
        "--model",
        s(&evil),
        "--input",
        s(&formats("pt_gru_bf16_legacy_input.npy")),
        "--output",
        s(&out),
    ]);
    assert_fails(
        &o,
        &["bad_evil_global.pt", "posix.system", "refused"],
        &[&out],
    );
    no_temp_files(dir.path());
}

/// `run --chunk-size K` feeds the input through a stream K steps at a time: the same
/// output and states as the run without it, for every kind and layout.
#[test]
fn run_in_chunks_gives_the_same_output_for_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    for (model, input, extra) in [
        (
            "lstm_bf_meta.safetensors",
            "lstm_bf_meta_input.npy",
            vec!["--cn"],
        ),
        ("gru_meta.safetensors", "gru_meta_input.npy", vec![]),
        (
            "rnn_relu_nometa.safetensors",
            "rnn_relu_nometa_input.npy",
            vec![],
        ),
    ] {
        let mut outputs = Vec::new();
        for chunk in [None, Some("1"), Some("3"), Some("100")] {
            let tag = chunk.unwrap_or("whole");
            let y = dir.path().join(format!("{model}-{tag}-y.npy"));
            let hn = dir.path().join(format!("{model}-{tag}-hn.npy"));
            let cn = dir.path().join(format!("{model}-{tag}-cn.npy"));
            let mut argv = vec![
                "run".to_string(),
                "--model".into(),
                s(&first_hour(model)).into(),
                "--input".into(),
                s(&first_hour(input)).into(),
                "--output".into(),
                s(&y).into(),
                "--hn".into(),
                s(&hn).into(),
            ];
            if !extra.is_empty() {
                argv.extend(["--cn".to_string(), s(&cn).to_string()]);
            }
            if let Some(k) = chunk {
                argv.extend(["--chunk-size".to_string(), k.to_string()]);
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let o = run(&argv);
            assert!(
                o.status.success(),
                "{model} {tag}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let mut files = vec![y, hn];
            if !extra.is_empty() {
                files.push(cn);
            }
            let arrays: Vec<ArrayD<f32>> = files.iter().map(|f| read_npy(f).unwrap()).collect();
            outputs.push(arrays);
        }
        let whole = &outputs[0];
        for chunked in &outputs[1..] {
            for (got, want) in chunked.iter().zip(whole) {
                assert_close_f32(got, want);
            }
        }
        // And torch's output.
        let want: ArrayD<f32> =
            read_npy(first_hour(&model.replace(".safetensors", "_output.npy"))).unwrap();
        if model.starts_with("rnn") {
            continue; // torch's relu; this run took the unrecorded default, tanh
        }
        assert_close_f32(&outputs[2][0], &want);
    }
    // Refused: with --lengths, and for a bidirectional layer; one line, no output.
    let out = dir.path().join("refused.npy");
    let lengths = dir.path().join("lengths.npy");
    write_npy(&lengths, &ndarray::arr1(&[7i64, 5, 2])).unwrap();
    let o = run(&[
        "run",
        "--model",
        s(&first_hour("lstm_bf_meta.safetensors")),
        "--input",
        s(&first_hour("lstm_bf_meta_input.npy")),
        "--output",
        s(&out),
        "--lengths",
        s(&lengths),
        "--chunk-size",
        "2",
    ]);
    assert_fails(&o, &["--chunk-size", "--lengths"], &[&out]);
    let o = run(&[
        "run",
        "--model",
        s(&first_hour("gru_bf16.safetensors")),
        "--input",
        s(&first_hour("gru_bf16_input.npy")),
        "--output",
        s(&out),
        "--chunk-size",
        "2",
    ]);
    assert_fails(&o, &["bidirectional"], &[&out]);
}

/// `recurrent stream`: frames piped in as raw floats come out one step at a time, with
/// torch's numbers; a frame cut short is an error after the whole frames' outputs.
#[test]
fn stream_runs_frames_from_a_pipe() {
    use std::io::Write;
    use std::process::Stdio;
    let x: ArrayD<f32> = read_npy(first_hour("gru_meta_input.npy")).unwrap(); // (4, 5)
    let want: ArrayD<f32> = read_npy(first_hour("gru_meta_output.npy")).unwrap(); // (4, 7)
    let mut bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    for cut in [false, true] {
        if cut {
            bytes.truncate(bytes.len() - 6);
        }
        let mut child = bin()
            .args(["stream", "--model", s(&first_hour("gru_meta.safetensors"))])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let o = child.wait_with_output().unwrap();
        let got: Vec<f32> = o
            .stdout
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let steps = if cut { 3 } else { 4 };
        assert_eq!(
            got.len(),
            steps * 7,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = ArrayD::from_shape_vec(IxDyn(&[steps, 7]), got).unwrap();
        let want = want.slice(ndarray::s![..steps, ..]).to_owned().into_dyn();
        assert_close_f32(&got, &want);
        if cut {
            assert_fails(&o, &["stdin ended inside frame 3"], &[]);
        } else {
            assert!(o.status.success());
        }
    }
}

/// `bench --stream` times every kind's stream, one JSON line with the time per step; a
/// bidirectional layer cannot stream.
#[test]
fn bench_streams_every_kind() {
    for mode in ["rnn", "lstm", "gru"] {
        let o = run(&[
            "bench",
            "--mode",
            mode,
            "--stream",
            "--input-size",
            "4",
            "--hidden-size",
            "8",
            "--num-layers",
            "2",
            "--seq-len",
            "5",
            "--batch",
            "1",
            "--min-time",
            "0.01",
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("\"stream\":true") && stdout.contains("\"step_us\":"),
            "{stdout}"
        );
    }
    let o = run(&[
        "bench",
        "--mode",
        "gru",
        "--stream",
        "--bidirectional",
        "--input-size",
        "4",
        "--hidden-size",
        "8",
        "--num-layers",
        "1",
        "--seq-len",
        "5",
        "--batch",
        "1",
    ]);
    assert_fails(&o, &["--stream", "bidirectional"], &[]);
}
