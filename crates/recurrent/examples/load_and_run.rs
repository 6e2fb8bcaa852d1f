//! The README's "library in 10 lines", as a program: `cargo run --example load_and_run`
//! from the repository's folder (CI runs it too). Loads an LSTM and a GRU that PyTorch
//! saved (examples/data, made by scripts/fixtures_first_hour.py), runs them, carries
//! their state into a second call, and writes the LSTM's output to `y.npy`.

use recurrent::io::npy;
use recurrent::{Gru, Lstm};

fn main() -> Result<(), recurrent::Error> {
    // torch.nn.LSTM(10, 20, num_layers=2, batch_first=True), saved as in "From PyTorch in 3 steps"
    let lstm = Lstm::<f32>::load("examples/data/lstm.safetensors", None)?;
    let x = npy::read::<f32>("examples/data/lstm_input.npy")?; // (N, L, H_in) = (3, 7, 10)
    let (y, state) = lstm.forward(x.view(), None)?; // y (3, 7, 20); state = (h_n, c_n)
    let (y_next, state) = lstm.forward(x.view(), &state)?; // the next chunk, from (h_n, c_n)
    npy::write("y.npy", &y)?; // np.load("y.npy") in Python
    println!("LSTM {:?}", (y.shape(), y_next.shape(), state.1.shape()));

    let gru = Gru::<f32>::load("examples/data/gru.safetensors", None)?; // GRU(5, 7, num_layers=2)
    let x = npy::read::<f32>("examples/data/gru_input.npy")?; // unbatched (L, H_in) = (4, 5)
    let (y, h_n) = gru.forward(x.view(), None)?; // RNN and GRU: the state is h_n
    let (y_next, h_n) = gru.forward(x.view(), &h_n)?;
    println!("GRU {:?}", (y.shape(), y_next.shape(), h_n.shape()));
    Ok(())
}
