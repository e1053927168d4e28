//! The repository's own shape: no module of a crate imports one that imports it back (directly
//! or around a loop), no function longer than 80 lines, and every relative link in the
//! documentation leads to a file and heading that exist.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The crates' sources the rules hold for.
const SOURCES: [&str; 4] = [
    "recorder/src",
    "operator/src",
    "crds/src",
    "tools/publisher/src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path in its crate: `store/statements/mod.rs` is `store::statements`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("inside the source folder");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_test_module(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// The paths a file names (in `use` items and in code), outside its `#[cfg(test)]` modules;
/// and its functions' lengths in lines.
#[derive(Default)]
struct Names {
    paths: Vec<Vec<String>>,
    long_functions: Vec<(String, usize, usize)>,
}

impl Names {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                self.paths.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                self.paths.push(path);
            }
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }

    fn function(&mut self, name: &syn::Ident, block: &syn::Block) {
        let (start, end) = (
            name.span().start().line,
            block.brace_token.span.close().end().line,
        );
        if end - start + 1 > 80 {
            self.long_functions
                .push((name.to_string(), start, end - start + 1));
        }
    }
}

impl<'a> Visit<'a> for Names {
    fn visit_item_mod(&mut self, item: &'a syn::ItemMod) {
        if !is_test_module(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }
    fn visit_item_use(&mut self, item: &'a syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }
    fn visit_path(&mut self, path: &'a syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super")
        ) {
            self.paths.push(segments);
        }
        syn::visit::visit_path(self, path);
    }
    fn visit_item_fn(&mut self, item: &'a syn::ItemFn) {
        self.function(&item.sig.ident, &item.block);
        syn::visit::visit_item_fn(self, item);
    }
    fn visit_impl_item_fn(&mut self, item: &'a syn::ImplItemFn) {
        self.function(&item.sig.ident, &item.block);
        syn::visit::visit_impl_item_fn(self, item);
    }
}

fn names(file: &Path) -> Names {
    let text = std::fs::read_to_string(file).expect("a source file");
    let parsed =
        syn::parse_file(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
    let mut names = Names::default();
    names.visit_file(&parsed);
    names
}

/// The module a path names, if it is one of the crate's files: the longest prefix that is.
fn target(
    modules: &BTreeSet<Vec<String>>,
    from: &[String],
    path: &[String],
) -> Option<Vec<String>> {
    let (mut current, rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.to_vec(), &path[1..]),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            (
                from[..from.len().checked_sub(supers)?].to_vec(),
                &path[supers..],
            )
        }
        _ => return None,
    };
    let mut found = None;
    for segment in rest {
        current.push(segment.clone());
        if modules.contains(&current) {
            found = Some(current.clone());
        }
    }
    found
}

/// Strongly connected groups of more than one module (Tarjan's algorithm, iteratively small
/// enough to recurse: a crate has at most a few hundred modules).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: HashMap<&'g Vec<String>, usize>,
        low: HashMap<&'g Vec<String>, usize>,
        stack: Vec<&'g Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn strong<'g>(s: &mut State<'g>, v: &'g Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                strong(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                group.push(if w.is_empty() {
                    "(root)".into()
                } else {
                    w.join("/")
                });
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            strong(&mut state, v);
        }
    }
    state.found
}

/// A module naming its own parent or child is nesting, not a circle (a parent declares its
/// children; a child may use what its parent re-exports).
fn nested(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for source in SOURCES {
        let src = root().join(source);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for file in &files {
            let from = module_of(&src, file);
            let edges = graph.entry(from.clone()).or_default();
            for path in names(file).paths {
                if let Some(to) = target(&modules, &from, &path).filter(|to| !nested(&from, to)) {
                    edges.insert(to);
                }
            }
        }
        found.extend(
            circles(&graph)
                .into_iter()
                .map(|c| format!("{source}: {c:?}")),
        );
    }
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let mut found = Vec::new();
    for source in SOURCES {
        let mut files = Vec::new();
        rust_files(&root().join(source), &mut files);
        for file in files {
            for (name, line, lines) in names(&file).long_functions {
                let file = file.strip_prefix(root()).unwrap().display().to_string();
                found.push(format!("{file}:{line} {name}: {lines} lines"));
            }
        }
    }
    assert!(found.is_empty(), "functions over 80 lines: {found:#?}");
}

/// The test's own check: a circle of two files is found, nesting is not one.
#[test]
fn a_circle_of_two_modules_is_found_and_nesting_is_not() {
    let m = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), BTreeSet::from([m("b")]));
    graph.insert(m("b"), BTreeSet::from([m("a")]));
    graph.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(
        circles(&graph),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    assert!(nested(&m("store"), &m("store/commit")));
    let modules = BTreeSet::from([m("store"), m("store/commit"), m("store/commit/txn")]);
    let path = ["super", "super", "commit", "txn", "Txn"].map(String::from);
    assert_eq!(
        target(&modules, &m("store/statements/bulk"), &path),
        Some(m("store/commit/txn"))
    );
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of inline links `[text](target)` outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].trim().to_string());
                rest = &rest[end..];
            }
        }
    }
    found
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut visit = vec![root()];
    while let Some(dir) = visit.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "fixtures" {
                    visit.push(path);
                }
            } else if name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn every_relative_link_in_the_documentation_leads_somewhere() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") || link.is_empty() {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let name = file.strip_prefix(root()).unwrap().display();
            if !target.exists() {
                broken.push(format!("{name}: {link} (no such file)"));
            } else if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!("{name}: {link} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn headings_become_the_anchors_github_makes() {
    assert_eq!(
        slug(" Durability and synchronous standbys"),
        "durability-and-synchronous-standbys"
    );
    assert_eq!(
        slug(" What happens to a message?"),
        "what-happens-to-a-message"
    );
    assert_eq!(slug(" `BulkRecorder` spec"), "bulkrecorder-spec");
    assert_eq!(
        links("see [a](docs/a.md#b) and [c](#d)"),
        ["docs/a.md#b", "#d"]
    );
}
