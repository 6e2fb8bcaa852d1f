//! The README's library example is `examples/load_and_run.rs`, which CI runs: the two
//! must not drift apart.

use std::path::Path;

#[test]
fn the_readmes_library_example_is_the_example_program() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/load_and_run.rs")).unwrap();
    let start = readme
        .find("fn main() -> Result<(), recurrent::Error> {")
        .expect("the README shows a main");
    let end = start + readme[start..].find("```").expect("the code block ends");
    let program = &example[example.find("fn main()").expect("the example has a main")..];
    assert_eq!(
        &readme[start..end],
        program,
        "README and examples/load_and_run.rs differ"
    );
}
