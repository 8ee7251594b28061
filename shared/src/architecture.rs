//! The import rules of ARCHITECTURE.md, read from the sources: the domain imports nothing of the
//! crate, decisions import only the domain, and no two modules import each other through a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The domain: plain data and its invariants.
const DOMAIN: &[&str] = &["fleet", "deadline"];
/// Pure decisions over the domain.
const DECISIONS: &[&str] = &["plan", "recovery", "rebalancing", "growth", "savings", "signature"];

/// Each top-level module of the crate and the top-level modules its non-test code names.
fn imports() -> std::io::Result<BTreeMap<String, BTreeSet<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().to_string();
            let module = relative.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path)?;
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let named = graph.entry(module.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String =
                        name.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        named.insert(name);
                    }
                }
            }
        }
    }
    Ok(graph)
}

/// The modules that import each other through a circle (strongly connected, more than one).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut next = vec![from.to_string()];
        while let Some(module) = next.pop() {
            for target in graph.get(&module).into_iter().flatten() {
                if seen.insert(target.clone()) {
                    next.push(target.clone());
                }
            }
        }
        seen
    };
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for module in graph.keys() {
        let circle: BTreeSet<String> =
            reaches(module).into_iter().filter(|other| reaches(other).contains(module)).collect();
        if circle.len() > 1 && !found.contains(&circle) {
            found.push(circle);
        }
    }
    found
}

#[test]
fn the_domain_imports_nothing_of_the_crate() -> std::io::Result<()> {
    let graph = imports()?;
    for module in DOMAIN {
        let named = graph.get(*module).cloned().unwrap_or_default();
        assert!(named.is_empty(), "{module} is domain and names {named:?}");
    }
    Ok(())
}

#[test]
fn decisions_import_only_the_domain() -> std::io::Result<()> {
    let graph = imports()?;
    for module in DECISIONS {
        let named: Vec<&String> =
            graph.get(*module).into_iter().flatten().filter(|m| !DOMAIN.contains(&m.as_str())).collect();
        assert!(named.is_empty(), "{module} is a decision and names {named:?}");
    }
    Ok(())
}

#[test]
fn no_modules_import_each_other_through_a_circle() -> std::io::Result<()> {
    let graph = imports()?;
    assert!(graph.contains_key("plan") && graph.contains_key("store"), "the sources were read: {graph:?}");
    assert_eq!(circles(&graph), Vec::<BTreeSet<String>>::new());
    Ok(())
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(m, to)| (m.to_string(), to.into_iter().map(str::to_string).collect()))
            .collect();
    let expected: BTreeSet<String> = ["a", "b", "c"].into_iter().map(str::to_string).collect();
    assert_eq!(circles(&graph), vec![expected]);
}
