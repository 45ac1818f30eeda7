//! The module graph of `src/` has no cycle, and the leaves stay leaves: the
//! configuration and the store never reach up into the daemon, the dispatcher,
//! the modem actors, the control socket or the command line. Read from the
//! source (every `crate::<module>` path), so a new import that closes a loop
//! fails here with the loop named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its files name as `crate::x`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    g
}

/// A cycle through `from`, if any (depth-first, the path kept).
fn cycle(
    g: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| n == node) {
        let mut c = path[at..].to_vec();
        c.push(node.to_string());
        return Some(c);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_string());
    for next in g.get(node).into_iter().flatten() {
        if let Some(c) = cycle(g, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_string());
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(
        g.contains_key("dispatch") && g.contains_key("config"),
        "{g:?}"
    );
    let mut done = BTreeSet::new();
    for node in g.keys() {
        if let Some(c) = cycle(&g, node, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn config_and_store_are_leaves() {
    let g = graph();
    let upper = ["cli", "control", "daemon", "dispatch", "metrics", "modem"];
    for leaf in ["config", "store", "sim", "logging"] {
        let deps = &g[leaf];
        for u in upper {
            assert!(!deps.contains(u), "{leaf} imports {u}: {deps:?}");
        }
    }
    assert!(!g["store"].contains("config"), "store imports config");
}

/// The check itself sees a cycle (it would pass vacuously otherwise).
#[test]
fn a_cycle_is_found() {
    let mut g = graph();
    g.get_mut("config").unwrap().insert("daemon".into());
    let c = cycle(&g, "config", &mut Vec::new(), &mut BTreeSet::new()).expect("a cycle");
    assert_eq!(c.first(), c.last());
}
