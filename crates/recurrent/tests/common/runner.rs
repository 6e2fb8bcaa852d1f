//! Starting a test's child process, through an emulator when the tests run under one.
//! Shared by every test binary that starts one (loaded with `#[path]`, not copied).

/// A command that starts `exe`, through `RECURRENT_TEST_RUNNER` when that is set
/// (scripts/test_aarch64.sh sets it to qemu-aarch64: the binaries are built for another
/// CPU, and qemu-user cannot start a foreign binary by itself).
pub fn command_for(exe: &std::path::Path) -> std::process::Command {
    let runner = std::env::var("RECURRENT_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    }
}
