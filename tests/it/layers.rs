//! The layers point one way: every `crate::…` reference in `src/` goes to a lower layer of
//! `layers.toml`, so the module graph stays the DAG that ARCHITECTURE.md draws, and no edge of
//! its deny list is taken (an ArchUnit-style test). Each file is parsed as Rust with syn, so a
//! grouped `use crate::{…}` that rustfmt wraps over lines is read whole, `super::` is resolved
//! from the module the code is in, and paths inside macro calls count; comments and strings do
//! not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `layers.toml`: each module's layer, and the edges forbidden although the layers allow them.
struct Layers {
    index: BTreeMap<String, usize>,
    deny: Vec<Deny>,
}

#[derive(serde::Deserialize)]
struct Deny {
    from: String,
    to: String,
    why: String,
}

fn layers() -> Layers {
    #[derive(serde::Deserialize)]
    struct File {
        layers: Vec<Vec<String>>,
        #[serde(default)]
        deny: Vec<Deny>,
    }
    let text = std::fs::read_to_string(root().join("layers.toml")).expect("read layers.toml");
    let file: File = toml::from_str(&text).expect("layers.toml parses");
    let mut index = BTreeMap::new();
    for (i, layer) in file.layers.iter().enumerate() {
        for module in layer {
            assert!(
                index.insert(module.clone(), i).is_none(),
                "{module} is listed twice in layers.toml"
            );
        }
    }
    for d in &file.deny {
        for m in [&d.from, &d.to] {
            assert!(
                index.contains_key(m),
                "layers.toml denies an edge of `{m}`, which is in no layer"
            );
        }
        assert!(
            !d.why.trim().is_empty(),
            "layers.toml denies {} -> {} without a why",
            d.from,
            d.to
        );
    }
    Layers {
        index,
        deny: file.deny,
    }
}

/// The top-level modules the code of one file names through `crate::` (or `super::` chains
/// that climb to the crate root), with the line of each reference. `module` is the file's own
/// module path (`["serve", "mqtt"]` for src/serve/mqtt.rs).
fn referenced(code: &str, module: &[String]) -> Result<Vec<(usize, String)>, syn::Error> {
    let file = syn::parse_file(code)?;
    let mut refs = Refs {
        here: module.to_vec(),
        found: Vec::new(),
    };
    refs.visit_file(&file);
    Ok(refs.found)
}

/// Collects references while walking a file; `here` is the module the walk is in.
struct Refs {
    here: Vec<String>,
    found: Vec<(usize, String)>,
}

impl Refs {
    /// The module a path starting with `first`, then `rest`, lands in at the top level, if it
    /// leaves the crate root (`crate::x`, or enough `super`s).
    fn resolve<'a>(&self, first: &str, mut rest: impl Iterator<Item = &'a str>) -> Option<String> {
        let mut at: Vec<String> = match first {
            "crate" => Vec::new(),
            "super" => {
                let mut at = self.here.clone();
                at.pop();
                at
            }
            "self" => self.here.clone(),
            _ => return None,
        };
        loop {
            let Some(next) = rest.next() else {
                return at.first().cloned();
            };
            match next {
                "super" => {
                    at.pop();
                }
                "self" => {}
                name => {
                    if at.is_empty() {
                        return Some(name.to_string());
                    }
                    return at.first().cloned();
                }
            }
        }
    }

    fn push(&mut self, line: usize, module: Option<String>) {
        if let Some(m) = module {
            self.found.push((line, m));
        }
    }

    /// Every name a `use` tree brings in from where `prefix` points.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident),
            syn::UseTree::Glob(g) => {
                let line = g.star_token.spans[0].start().line;
                let module = match prefix.split_first() {
                    Some((first, rest)) => self.resolve(first, rest.iter().map(String::as_str)),
                    None => None,
                };
                // `use crate::*` would hide every edge: count it as a reference to all.
                let module = module.or_else(|| (prefix.as_slice() == ["crate"]).then(|| "*".into()));
                self.push(line, module);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], leaf: &syn::Ident) {
        let Some((first, rest)) = prefix.split_first() else {
            return;
        };
        let leaf_name = leaf.to_string();
        let path = rest.iter().map(String::as_str).chain([leaf_name.as_str()]);
        let module = self.resolve(first, path);
        self.push(leaf.span().start().line, module);
    }

    /// `crate :: name` anywhere in a macro call's tokens (`format!("{}", crate::x::Y)`).
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let tokens: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
        for (i, t) in tokens.iter().enumerate() {
            match t {
                proc_macro2::TokenTree::Group(g) => self.tokens(g.stream()),
                proc_macro2::TokenTree::Ident(id) if id == "crate" => {
                    let dollar = i > 0
                        && matches!(&tokens[i - 1], proc_macro2::TokenTree::Punct(p) if p.as_char() == '$');
                    let colons = tokens.get(i + 1..i + 3).is_some_and(|w| {
                        w.iter()
                            .all(|t| matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == ':'))
                    });
                    if let (false, true, Some(proc_macro2::TokenTree::Ident(name))) =
                        (dollar, colons, tokens.get(i + 3))
                    {
                        self.push(id.span().start().line, Some(name.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if path.leading_colon.is_none()
            && names.len() > 1
            && let Some((first, rest)) = names.split_first()
        {
            let line = path.segments[0].ident.span().start().line;
            let module = self.resolve(first, rest.iter().map(String::as_str));
            self.push(line, module);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
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

/// Every reference from a module to one of its own layer or above, or along a denied edge, as
/// `file:line: a -> b`. `path` is the file's module path, its top-level module first.
fn violations(layers: &Layers, path: &[String], file: &str, code: &str) -> Vec<String> {
    let module = path.first().map_or("", String::as_str);
    let Some(&own) = layers.index.get(module) else {
        return vec![format!("{file}: module `{module}` is in no layer of layers.toml")];
    };
    let refs = match referenced(code, path) {
        Ok(refs) => refs,
        Err(e) => return vec![format!("{file}: does not parse as Rust: {e}")],
    };
    refs.into_iter()
        .filter(|(_, to)| to != module)
        .filter_map(|(line, to)| {
            if let Some(d) = layers.deny.iter().find(|d| d.from == module && d.to == to) {
                return Some(format!(
                    "{file}:{line}: `{module}` uses `{to}`, an edge layers.toml denies: {}",
                    d.why
                ));
            }
            match layers.index.get(&to) {
                Some(&layer) if layer < own => None,
                Some(&layer) => Some(format!(
                    "{file}:{line}: `{module}` (layer {own}) uses `{to}` (layer {layer}): only lower layers may be used"
                )),
                None => Some(format!("{file}:{line}: `{module}` uses `{to}`, which is in no layer of layers.toml")),
            }
        })
        .collect()
}

/// src/serve/mqtt.rs → ["serve", "mqtt"]; src/serve/mod.rs → ["serve"].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The module paths of files that a `#[path = "…"] mod name;` puts elsewhere than their name
/// says (src/serve/coap_commands.rs is `serve::coap::coap_commands`'s file when coap.rs
/// declares it so), keyed by the file's path under src/.
fn path_attributes(src: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut out = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src");
        let Ok(file) = syn::parse_file(&std::fs::read_to_string(path).expect("read source")) else {
            continue; // reported by the layer check itself
        };
        for item in &file.items {
            let syn::Item::Mod(m) = item else { continue };
            let target = m.attrs.iter().find_map(|a| match &a.meta {
                syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            });
            if let Some(target) = target {
                let mut module = module_path(rel);
                module.push(m.ident.to_string());
                let dir = rel.parent().unwrap_or(Path::new(""));
                out.insert(dir.join(target), module);
            }
        }
    }
    out
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
    let moved = path_attributes(&src, &files);
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let module = moved.get(rel).cloned().unwrap_or_else(|| module_path(rel));
        if matches!(module.first().map(String::as_str), Some("lib" | "main")) {
            continue;
        }
        let code = std::fs::read_to_string(path).expect("read source");
        seen += referenced(&code, &module).map_or(0, |r| r.len());
        problems.extend(violations(
            &layers,
            &module,
            &format!("src/{}", rel.display()),
            &code,
        ));
    }
    assert!(
        seen > 100,
        "the scan found only {seen} references to other modules: is the parser broken?"
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
            layers.index.contains_key(*m),
            "src/lib.rs declares `{m}`, which layers.toml does not place"
        );
    }
    for m in layers.index.keys() {
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
    for m in layers.index.keys() {
        assert!(
            arch.contains(&format!("`{m}")),
            "ARCHITECTURE.md does not name the module `{m}`"
        );
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    let layers = layers();
    let at = |m: &str| vec![m.to_string()];
    // A low layer reaching up, in the shapes code takes: a path, a grouped use that rustfmt
    // wraps over lines, a path in an expression, one inside a macro call, and `super::` out
    // of a nested module. Comments and strings name nothing.
    let code = "use crate::cli::error::Error;
use crate::{
    help::Help,
    render::Renderer,
};
fn f() { crate::serve::bind(); }
fn g() -> String { format!(\"{}\", crate::probe::STAGES.len()) }
// crate::cli in a comment
const S: &str = \"crate::cli in a string\";
mod inner {
    use super::super::plan::Plan;
}
";
    let found = violations(&layers, &at("capabilities"), "x.rs", code);
    let want = [
        (1, "`cli`"),
        (4, "`render`"),
        (6, "`serve`"),
        (7, "`probe`"),
        (11, "`plan`"),
    ];
    assert_eq!(found.len(), want.len(), "{found:#?}");
    for (f, (line, module)) in found.iter().zip(want) {
        assert!(
            f.contains(&format!("x.rs:{line}:")) && f.contains(module),
            "{f} should name line {line} and {module}"
        );
    }
    assert!(violations(&layers, &at("cli"), "x.rs", code).is_empty());
    assert_eq!(violations(&layers, &at("nowhere"), "x.rs", "").len(), 1);
    // `super::` inside the same top-level module is no edge.
    assert!(
        violations(
            &layers,
            &["serve".into(), "mqtt".into()],
            "x.rs",
            "use super::twin::Twin;"
        )
        .is_empty()
    );
    // A file that is not Rust is a problem, not a silent pass.
    assert_eq!(violations(&layers, &at("cli"), "x.rs", "fn (").len(), 1);
}

#[test]
fn the_deny_list_refuses_an_edge_the_layers_allow() {
    let layers = layers();
    let edge = layers
        .deny
        .iter()
        .find(|d| d.from == "serve" && d.to == "engine")
        .expect("layers.toml denies serve -> engine");
    assert!(
        layers.index["engine"] < layers.index["serve"],
        "the layers alone allow it"
    );
    let found = violations(&layers, &["serve".into()], "x.rs", "use crate::engine::decide;\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains(&edge.why), "{}", found[0]);
}

#[test]
fn the_output_layer_never_reaches_into_network_code() {
    // render prints reports; the reports are `measurement`'s, below both render and probe.
    let layers = layers();
    for (from, to) in [("render", "probe"), ("render", "serve"), ("probe", "render")] {
        let code = format!("use crate::{to}::X;\n");
        assert_eq!(
            violations(&layers, &[from.to_string()], "x.rs", &code).len(),
            1,
            "{from} may use {to} by layers.toml"
        );
    }
    assert!(
        violations(
            &layers,
            &["render".to_string()],
            "x.rs",
            "use crate::measurement::ProbeReport;\n"
        )
        .is_empty()
    );
    assert!(
        violations(
            &layers,
            &["probe".to_string()],
            "x.rs",
            "use crate::measurement::ProbeReport;\n"
        )
        .is_empty()
    );
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
