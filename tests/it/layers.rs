//! The layers point one way: every `crate::…` reference in `src/` goes to a lower layer of
//! `layers.toml`, so the module graph stays the DAG that ARCHITECTURE.md draws (an ArchUnit-style
//! test, kept to text: a `crate::` path is a dependency whatever the code around it does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Module name to its layer index, from `layers.toml`.
fn layers() -> BTreeMap<String, usize> {
    #[derive(serde::Deserialize)]
    struct File {
        layers: Vec<Vec<String>>,
    }
    let text = std::fs::read_to_string(root().join("layers.toml")).expect("read layers.toml");
    let file: File = toml::from_str(&text).expect("layers.toml parses");
    let mut map = BTreeMap::new();
    for (i, layer) in file.layers.iter().enumerate() {
        for module in layer {
            assert!(
                map.insert(module.clone(), i).is_none(),
                "{module} is listed twice in layers.toml"
            );
        }
    }
    map
}

/// The top-level modules that `crate::` paths in `code` name, with their line numbers.
/// `use crate::{a::X, b}` names `a` and `b`; comment lines are not code.
fn referenced(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `enos_connect::crate::`-like text, or a longer identifier
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of a grouped import, skipping nested braces.
                let mut depth = 0usize;
                let mut name = String::new();
                let mut names = Vec::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => names.push(std::mem::take(&mut name)),
                        _ if depth == 0 => name.push(c),
                        _ => {}
                    }
                }
                names.push(name);
                for name in names {
                    let module: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !module.is_empty() {
                        out.push((n + 1, module));
                    }
                }
            } else {
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() {
                    out.push((n + 1, module));
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every reference from a module to one of its own layer or above, as `file:line: a -> b`.
fn violations(layers: &BTreeMap<String, usize>, module: &str, file: &str, code: &str) -> Vec<String> {
    let Some(&own) = layers.get(module) else {
        return vec![format!("{file}: module `{module}` is in no layer of layers.toml")];
    };
    referenced(code)
        .into_iter()
        .filter(|(_, to)| to != module)
        .filter_map(|(line, to)| match layers.get(&to) {
            Some(&layer) if layer < own => None,
            Some(&layer) => Some(format!(
                "{file}:{line}: `{module}` (layer {own}) uses `{to}` (layer {layer}): only lower layers may be used"
            )),
            None => Some(format!("{file}:{line}: `{module}` uses `{to}`, which is in no layer of layers.toml")),
        })
        .collect()
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layers = layers();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if matches!(module, "lib" | "main") {
            continue;
        }
        let code = std::fs::read_to_string(path).expect("read source");
        seen += referenced(&code).len();
        problems.extend(violations(
            &layers,
            module,
            &format!("src/{}", rel.display()),
            &code,
        ));
    }
    assert!(
        seen > 100,
        "the scan found only {seen} crate:: references: is the parser broken?"
    );
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn every_module_of_lib_rs_has_a_layer_and_architecture_names_them() {
    let layers = layers();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("read lib.rs");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(modules.len() >= 10, "modules of lib.rs: {modules:?}");
    for m in &modules {
        assert!(
            layers.contains_key(*m),
            "src/lib.rs declares `{m}`, which layers.toml does not place"
        );
    }
    for m in layers.keys() {
        assert!(
            modules.contains(&m.as_str()),
            "layers.toml lists `{m}`, which src/lib.rs does not declare"
        );
    }
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    assert!(
        arch.contains("layers.toml"),
        "ARCHITECTURE.md must point at layers.toml"
    );
    for m in layers.keys() {
        assert!(
            arch.contains(&format!("`{m}")),
            "ARCHITECTURE.md does not name the module `{m}`"
        );
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    let layers = layers();
    // A low layer reaching up, in the three shapes code takes.
    let code = "use crate::cli::error::Error;\nuse crate::{base::Help, render};\nfn f() { crate::serve::bind(); }\n// crate::cli in a comment\n";
    let found = violations(&layers, "capabilities", "x.rs", code);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("x.rs:1") && found[0].contains("`cli`"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("x.rs:2") && found[1].contains("`render`"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("x.rs:3") && found[2].contains("`serve`"),
        "{found:#?}"
    );
    assert!(violations(&layers, "cli", "x.rs", code).is_empty());
    assert_eq!(violations(&layers, "nowhere", "x.rs", "").len(), 1);
}

#[test]
fn the_output_layer_never_reaches_into_network_code() {
    // render prints reports; the reports are `measurement`'s, below both render and probe.
    let layers = layers();
    for (from, to) in [("render", "probe"), ("render", "serve"), ("probe", "render")] {
        let code = format!("use crate::{to}::X;\n");
        assert_eq!(
            violations(&layers, from, "x.rs", &code).len(),
            1,
            "{from} may use {to} by layers.toml"
        );
    }
    assert!(
        violations(
            &layers,
            "render",
            "x.rs",
            "use crate::measurement::ProbeReport;\n"
        )
        .is_empty()
    );
    assert!(violations(&layers, "probe", "x.rs", "use crate::measurement::ProbeReport;\n").is_empty());
}

#[test]
fn a_file_over_600_lines_says_why_at_its_top() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut silent = Vec::new();
    for path in files {
        let code = std::fs::read_to_string(&path).expect("read source");
        let lines = code.lines().count();
        let head: String = code
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if lines > 600 && !head.contains("over 600 lines") {
            silent.push(format!("{} ({lines} lines)", path.display()));
        }
    }
    assert!(
        silent.is_empty(),
        "over 600 lines with no `Why over 600 lines: ...` in the module comment at the top: split \
         the file by responsibility, or say why it stays one:\n{}",
        silent.join("\n")
    );
}
