//! The module layering, checked from the source text: which top-level modules of the crate
//! (`src/<m>.rs` or `src/<m>/…`) refer to which others.
//!
//! A file refers to module `m` when its code (comments and doc comments excluded) names a
//! path through it: `crate::m…`, `crate::{m…, …}`, or a `super::…` that climbs to the crate
//! root and continues with `m`, in `use` items and in expressions alike. Test modules inside
//! `src/` count too: rustc compiles them into the same crate.
//!
//! Known blind spots, acceptable for a layering check: a `//` inside a string literal hides the
//! rest of its line, `/* */` comments are read as code, and a path through a re-export is
//! attributed to the module that re-exports it, not the one that defines the item.
//!
//! Run with `--nocapture` to see the graph and every cycle in it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Module (as a path from the crate root) → the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules issue #12 requires to be free of import cycles among themselves.
const MONEY_AND_CONTRACT: [&str; 5] = ["quota", "metering", "accounts", "config", "api"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module a file defines, as path segments from the crate root: `src/http/stack.rs` is
/// `[http, stack]`, `src/http/mod.rs` and `src/http.rs` are `[http]`, `src/lib.rs` (and the
/// binary's `src/main.rs`) are the root, `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The source without comments: everything from `//` to the end of each line.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A small reader of use-trees and paths: `a::b`, `a::{b, c::{d, self}}`, `a::*`, `a as b`.
struct Paths<'a> {
    s: &'a [u8],
    at: usize,
}

impl Paths<'_> {
    fn skip_space(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.s[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.at;
        while self.at < self.s.len()
            && (self.s[self.at].is_ascii_alphanumeric() || self.s[self.at] == b'_')
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    /// Every path the tree at the cursor names (`self` segments dropped: they name the module
    /// itself).
    fn tree(&mut self) -> Vec<Vec<String>> {
        if self.eat("{") {
            let mut all = Vec::new();
            loop {
                if self.eat("}") {
                    break;
                }
                let before = self.at;
                all.extend(self.tree());
                if !self.eat(",") {
                    self.eat("}");
                    break;
                }
                if self.at == before {
                    break;
                }
            }
            return all;
        }
        let Some(first) = self.ident() else {
            return vec![Vec::new()];
        };
        let rest = if self.eat("::") {
            self.tree()
        } else {
            vec![Vec::new()]
        };
        rest.into_iter()
            .map(|mut p| {
                if first != "self" {
                    p.insert(0, first.clone());
                }
                p
            })
            .collect()
    }
}

/// The absolute paths (segments from the crate root) that `code`, the code of module
/// `module`, names through `crate::` or `super::`.
fn paths_named(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            // `$crate::` (macros), `foo_crate::`, `a::super::`: not a path from here.
            let prev = i.checked_sub(1).map(|p| bytes[p]);
            if prev
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b':')
            {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut reader = Paths { s: bytes, at: from };
            if start == "super::" {
                while reader.eat("super::") {
                    base.pop();
                }
            }
            for p in reader.tree() {
                let mut abs = base.clone();
                abs.extend(p);
                out.push(abs);
            }
        }
    }
    out
}

/// Every non-root source file with its module path and the absolute paths it names.
fn sources() -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    rust_files(&src_dir())
        .into_iter()
        .filter_map(|file| {
            let module = module_of(&file);
            if module.is_empty() {
                return None;
            }
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            let named = paths_named(&code, &module);
            Some((module, named))
        })
        .collect()
}

/// The graph of the modules at `depth` below `parent` (`[]` and 1: the top-level modules;
/// `["http"]` and 2: the files of `src/http/`): an edge from each such module to every other
/// one its files name.
fn graph_below(parent: &[&str]) -> Graph {
    let depth = parent.len() + 1;
    let all = sources();
    let inside = |m: &[String]| m.len() >= depth && m[..parent.len()] == *parent;
    let nodes: BTreeSet<String> = all
        .iter()
        .filter(|(m, _)| inside(m))
        .map(|(m, _)| m[depth - 1].clone())
        .collect();
    let mut graph: Graph = nodes.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
    for (module, named) in &all {
        if !inside(module) {
            continue;
        }
        let from = &module[depth - 1];
        for p in named {
            if inside(p) && nodes.contains(&p[depth - 1]) && p[depth - 1] != *from {
                graph.get_mut(from).unwrap().insert(p[depth - 1].clone());
            }
        }
    }
    graph
}

/// The subgraph on `keep` only.
fn restricted(graph: &Graph, keep: &[&str]) -> Graph {
    graph
        .iter()
        .filter(|(n, _)| keep.contains(&n.as_str()))
        .map(|(n, to)| {
            let to = to
                .iter()
                .filter(|t| keep.contains(&t.as_str()))
                .cloned()
                .collect();
            (n.clone(), to)
        })
        .collect()
}

/// Every module's shortest cycle through it, each cycle once, written from its alphabetically
/// first module back to it (`a → b → a`); none when the graph is a DAG.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&String> = VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for t in &graph[n] {
                if seen.insert(t.clone()) {
                    queue.push_back(t);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reaches(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in graph.keys().filter(|n| reach[n].contains(*n)) {
        // The modules on some cycle with `n`: a shortest cycle through it stays among them.
        let component: BTreeSet<&String> = graph
            .keys()
            .filter(|m| reach[n].contains(*m) && reach[*m].contains(n))
            .collect();
        let mut cycle = shortest_cycle(graph, n, &component);
        cycle.pop();
        let first = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
        cycle.rotate_left(first);
        cycle.push(cycle[0].clone());
        if !out.contains(&cycle) {
            out.push(cycle);
        }
    }
    out
}

/// The shortest path from `start` back to itself inside `component` (breadth first).
fn shortest_cycle(graph: &Graph, start: &String, component: &BTreeSet<&String>) -> Vec<String> {
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue: VecDeque<&String> = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for t in &graph[n] {
            if !component.contains(t) {
                continue;
            }
            if t == start {
                let mut path = vec![start.clone(), n.clone()];
                let mut at = n;
                while at != start {
                    at = came_from[at];
                    path.push(at.clone());
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(t) {
                came_from.insert(t, n);
                queue.push_back(t);
            }
        }
    }
    unreachable!("{start} is in a cycle")
}

fn show(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(n, to)| {
            format!(
                "  {n} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn show_cycles(found: &[Vec<String>]) -> String {
    found
        .iter()
        .map(|c| format!("  {}", c.join(" → ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_import_cycle_among_quota_metering_accounts_config_and_api() {
    let graph = restricted(&graph_below(&[]), &MONEY_AND_CONTRACT);
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles among {MONEY_AND_CONTRACT:?}:\n{}\nedges among them:\n{}",
        show_cycles(&found),
        show(&graph)
    );
}

/// Not an assertion: the whole crate's module graph and its cycles, for `--nocapture`.
#[test]
fn report_the_cycles_among_all_top_level_modules() {
    let graph = graph_below(&[]);
    eprintln!("top-level module graph:\n{}", show(&graph));
    eprintln!("cycles:\n{}", show_cycles(&cycles(&graph)));
}

#[test]
fn no_import_cycle_among_the_http_files() {
    let graph = graph_below(&["http"]);
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles among the files of src/http/:\n{}\ngraph:\n{}",
        show_cycles(&found),
        show(&graph)
    );
}

/// The checker itself: paths are resolved and cycles found as described above.
#[test]
fn the_checker_reads_paths_and_finds_cycles() {
    let named = |code: &str, module: &[&str]| {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        let mut p: Vec<String> = paths_named(&code_of(code), &module)
            .into_iter()
            .map(|p| p.join("::"))
            .collect();
        p.sort();
        p
    };
    assert_eq!(
        named(
            "use crate::{a::{self, B}, c};\nlet x = crate::d::f(); // crate::e\n/// [`crate::g`]\n$crate::h",
            &["m"]
        ),
        ["a", "a::B", "c", "d::f"]
    );
    assert_eq!(named("use super::b;", &["m"]), ["b"]);
    assert_eq!(
        named("use super::{b, c::D};", &["m", "x"]),
        ["m::b", "m::c::D"]
    );
    assert_eq!(named("use super::super::q::R;", &["m", "x"]), ["q::R"]);
    assert_eq!(named("use crate::a::*;", &["m"]), ["a"]);

    let graph: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a", "d"]),
        ("d", &[]),
        ("e", &["d"]),
    ]
    .into_iter()
    .map(|(n, to)| (n.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"]]);
    assert!(cycles(&restricted(&graph, &["a", "b", "d", "e"])).is_empty());
}
