//! The library reads bottom-up: no import circle among its source files. Each file under
//! `src/` is a module; `use crate::a::b`, `crate::a::b::item` paths in code and `super::`
//! paths are its edges (to the deepest module file the path names). A circle fails the
//! test with the files that form it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of a source file: `src/io/state_dict.rs` -> `io::state_dict`,
/// `src/forward/mod.rs` -> `forward`, `src/lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` block.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::...`, `super::...` path in `code`, as module-path segments from the
/// crate root (`use crate::{a, b::c}` groups are expanded one level).
fn paths_in(code: &str, module: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0 && code[..start].ends_with(|c: char| ident(c) || c == ':') {
            continue;
        }
        let rest = &code[start..];
        let (mut base, rest) = if let Some(r) = rest.strip_prefix("crate::") {
            (Vec::new(), r)
        } else {
            // `super` is the parent module, whatever file the module is in.
            let mut b = here.clone();
            let mut r = rest;
            while let Some(next) = r.strip_prefix("super::") {
                b.pop();
                r = next;
            }
            (b, r)
        };
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let segs: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty() && s.chars().all(ident))
                    .collect();
                let mut p = base.clone();
                p.extend(segs);
                found.push(p);
            }
            continue;
        }
        let segs: Vec<String> = rest
            .split(|c: char| !(ident(c) || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        base.extend(segs);
        found.push(base);
    }
    found
}

#[test]
fn the_library_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable");
        for path in paths_in(&code_of(&text), module) {
            // The deepest module file the path names.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains_key(m));
            if let Some(target) = target {
                // A module's parents (re-exports in mod.rs, lib.rs) are not edges up.
                if &target != module
                    && !module.starts_with(&format!("{target}::"))
                    && !target.is_empty()
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    assert!(
        edges
            .get("io::state_dict")
            .is_some_and(|e| e.contains("io::torch")),
        "the scan must see io::state_dict -> io::torch: {edges:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for module in modules.keys() {
        if !state.contains_key(module.as_str()) {
            let mut stack = Vec::new();
            if let Some(circle) = visit(module, &edges, &mut state, &mut stack) {
                panic!("import circle: {}", circle.join(" -> "));
            }
        }
    }
}
