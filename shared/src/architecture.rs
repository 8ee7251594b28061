//! The import rules of ARCHITECTURE.md, read from the sources: every module sits on one of the
//! five floors, each floor names only the floors below it, and no two modules import each other
//! through a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors, and the floors each may name (its own included).
const FLOORS: &[(&str, &[&str])] = &[
    ("domain", &["domain"]),
    ("decisions", &["domain", "decisions"]),
    ("adapters", &["domain", "adapters"]),
    ("runtime", &["domain", "decisions", "adapters", "runtime"]),
    ("workflows", &["domain", "decisions", "adapters", "runtime", "workflows"]),
];

/// Files at the root of `src` that are not on a floor: the crate root and test-only modules.
const ROOT: &[&str] = &["lib.rs", "architecture.rs", "fixtures.rs"];

/// A module of a floor: `floor::name` for a file or folder on it, `floor` for its `mod.rs`.
fn module_of(root: &Path, floor: &str, name: &str) -> String {
    let on_floor = root.join(floor);
    if on_floor.join(format!("{name}.rs")).is_file() || on_floor.join(name).is_dir() {
        format!("{floor}::{name}")
    } else {
        floor.to_string()
    }
}

/// The modules a source file's non-test code names through `crate::floor::...` paths.
fn named_in(root: &Path, code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let word = |text: &str| -> String {
            text.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        };
        let floor = word(rest);
        let after = rest[floor.len()..].strip_prefix("::").unwrap_or_default();
        let names: Vec<String> = match after.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or_default().split(',').map(word).collect(),
            None => vec![word(after)],
        };
        for name in names {
            named.insert(module_of(root, &floor, &name));
        }
    }
    named
}

/// Each module of the crate and the modules its non-test code names, keyed by file for the
/// floors' rule (`floor/...path`) and by module for circles.
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
            if ROOT.contains(&relative.as_str()) {
                continue;
            }
            let mut parts = relative.split('/');
            let floor = parts.next().unwrap_or_default().trim_end_matches(".rs");
            let module = match parts.next().map(|name| name.trim_end_matches(".rs")) {
                Some("mod") | None => floor.to_string(),
                Some(name) => format!("{floor}::{name}"),
            };
            let text = std::fs::read_to_string(&path)?;
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let named = graph.entry(module.clone()).or_default();
            named.extend(named_in(&root, code).into_iter().filter(|other| *other != module));
        }
    }
    Ok(graph)
}

/// The floor a module is on.
fn floor(module: &str) -> &str {
    module.split("::").next().unwrap_or_default()
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
fn every_module_sits_on_a_floor_and_names_only_the_floors_below() -> std::io::Result<()> {
    let graph = imports()?;
    let mut broken = Vec::new();
    for (module, named) in &graph {
        let Some((_, allowed)) = FLOORS.iter().find(|(name, _)| *name == floor(module)) else {
            broken.push(format!("{module} is on no floor"));
            continue;
        };
        for other in named.iter().filter(|other| !allowed.contains(&floor(other))) {
            broken.push(format!("{module} names {other}"));
        }
    }
    assert!(graph.contains_key("decisions::plan") && graph.contains_key("adapters::store"), "sources read: {graph:?}");
    assert_eq!(broken, Vec::<String>::new());
    Ok(())
}

#[test]
fn no_modules_import_each_other_through_a_circle() -> std::io::Result<()> {
    let graph = imports()?;
    assert!(graph.contains_key("workflows::launch") && graph.contains_key("domain"), "sources read: {graph:?}");
    assert_eq!(circles(&graph), Vec::<BTreeSet<String>>::new());
    Ok(())
}

#[test]
fn a_path_names_the_module_it_goes_through() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let code = "use crate::adapters::store::Store;\nuse crate::domain::{GroupName, Member};\nuse crate::decisions::{plan, savings};\nuse crate::runtime::Deps;";
    let named: Vec<String> = named_in(&root, code).into_iter().collect();
    assert_eq!(named, ["adapters::store", "decisions::plan", "decisions::savings", "domain", "runtime"]);
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
