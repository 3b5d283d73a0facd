//! The layering rules the file tree promises, checked on the source: only the
//! transports and the wiring know tonic, and no module imports one that imports it
//! back (a circle says a shared type lives in the wrong module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path: `src/keys/registry.rs` is `keys::registry`, `mod.rs` its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments and its unit tests.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a piece of code names: `crate::a::b::C`, `crate::{a, b::c}`, and
/// `super::x` relative to `parent`.
fn named_modules(code: &str, parent: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let lower = |segment: &str| segment.starts_with(|c: char| c.is_ascii_lowercase());
    let path_at = |rest: &str| -> Vec<String> {
        rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .take_while(|s| !s.is_empty() && lower(s))
            .map(str::to_owned)
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|item| path_at(item.trim())));
        } else {
            found.push(path_at(rest));
        }
    }
    for (at, _) in code.match_indices("super::") {
        let mut path = parent.to_vec();
        path.extend(path_at(&code[at + "super::".len()..]));
        found.push(path);
    }
    found
}

/// The module import graph of `src/`, by file.
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .into_iter()
        .map(|file| (module_of(&src, &file), file))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        // `super` of `keys/registry.rs` and of `keys/mod.rs` alike is one level up.
        let parent = &module[..module.len().saturating_sub(1)];
        let mut targets = BTreeSet::new();
        for mut path in named_modules(&code(file), parent) {
            while !path.is_empty() && !modules.contains_key(&path) {
                path.pop();
            }
            // A module's own ancestors (its folder's mod.rs) are not imports of it.
            if !path.is_empty() && !module.starts_with(&path) {
                targets.insert(path);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The circles of a graph: its strongly connected components of more than one node.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    // Two nodes share a circle when each reaches the other.
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<_, _> = graph.keys().map(|m| (m.clone(), reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (module, reached) in &reaches {
        let mut circle: Vec<String> = reached
            .iter()
            .filter(|other| reaches[*other].contains(module))
            .map(|m| m.join("::"))
            .collect();
        circle.sort();
        if circle.len() > 1 && !found.contains(&circle) {
            found.push(circle);
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph();
    assert!(graph.len() > 50, "the source tree was not read");
    assert!(
        graph[&vec!["pipeline".to_owned()]].contains(&vec!["auth".to_owned()]),
        "imports were not read"
    );
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn circles_are_found() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let graph = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("c")])),
        (m("c"), BTreeSet::from([m("a")])),
        (m("d"), BTreeSet::from([m("a")])),
    ]);
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
    let code = "use crate::{auth::Access, call};\nlet x = super::ids::parse();";
    assert_eq!(
        named_modules(code, &m("keys")),
        vec![m("auth"), m("call"), m("keys::ids::parse")]
    );
}

#[test]
fn only_the_transports_and_the_wiring_use_tonic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| {
            let relative = file.strip_prefix(&src).unwrap().to_string_lossy();
            let allowed = relative.starts_with("transport/")
                || relative == "server.rs"
                || relative == "layering.rs";
            let code = code(file);
            !allowed && (code.contains("tonic::") || code.contains("tonic_"))
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "tonic used outside the transports: {offenders:?}"
    );
}
