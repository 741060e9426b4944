//! Checking a parsed plan against itself and against the catalog, reporting every problem.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use coda_types::AppletInfo;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Bfs;

use crate::catalog::Catalog;
use crate::plan::{AppletRef, Node, Plan, PlanType, is_valid_node_id, quote, shorten};
use crate::problem::Problem;
use crate::{
    CYCLE_BREAKERS, MAX_CONFIG_BYTES, MAX_CONFIG_PROBLEMS, MAX_NAME_LEN, MAX_NODE_ID_LEN, MAX_NODES,
};
use coda_types::names::is_valid_name;

/// How much of a schema error's text a problem keeps: jsonschema quotes the offending value,
/// which may be most of a 64 KiB config.
const SCHEMA_MESSAGE_CHARS: usize = 400;

/// Checks `plan` and reports every problem found, in a stable order: the plan's own fields,
/// then each node in id order, then reachability, then cycles.
///
/// What is checked:
/// 1. every node's applet is installed in exactly the referenced version;
/// 2. every exit wired under `exits` is one the applet declares, and none is named `error`
///    (a node's error exit is its `error` field);
/// 3. every target (of an exit, of `error`, and `start`) is a node of the plan;
/// 4. every node is reachable from `start` through exits and error exits (checked when
///    `start` is a node: otherwise every node would be reported);
/// 5. every config satisfies its applet's JSON Schema (one problem per schema error, at most
///    [`MAX_CONFIG_PROBLEMS`] per node), and every schema compiles;
/// 6. no applet that needs a live party appears in an unattended plan;
/// 7. every cycle of the graph passes through a [`CYCLE_BREAKERS`] applet;
/// 8. `post_interaction` names a known plan other than this one, unattended if this is a
///    message plan, and is absent from unattended plans;
/// 9. the plan name and node ids are well formed, and the plan keeps within [`MAX_NODES`]
///    nodes and [`MAX_CONFIG_BYTES`] of config per node.
///
/// Schemas are compiled offline: a `$ref` to anything outside the schema itself is a compile
/// problem, never a network or file access. A schema comes from an applet's `describe`,
/// so a panic inside the schema compiler or validator is caught and reported as a problem
/// of that node rather than taking the caller down.
pub fn validate(plan: &Plan, catalog: &dyn Catalog) -> Result<(), Vec<Problem>> {
    let mut v = Validation {
        plan,
        catalog,
        problems: Vec::new(),
        schemas: HashMap::new(),
    };
    v.plan_fields();
    for (id, node) in &plan.nodes {
        v.node(id, node);
    }
    v.graph();
    if v.problems.is_empty() {
        Ok(())
    } else {
        Err(v.problems)
    }
}

struct Validation<'a> {
    plan: &'a Plan,
    catalog: &'a dyn Catalog,
    problems: Vec<Problem>,
    /// Compiled config schemas by applet, so that ten nodes of one applet compile it once.
    schemas: HashMap<&'a AppletRef, Result<jsonschema::Validator, String>>,
}

impl<'a> Validation<'a> {
    fn plan_fields(&mut self) {
        let plan = self.plan;
        if !is_valid_name(&plan.name) {
            self.problems.push(Problem::plan(
                "name",
                format!(
                    "the plan name {} is not valid: use 1 to {MAX_NAME_LEN} of a-z 0-9 . _ -, starting with a letter or digit",
                    quote(&plan.name)
                ),
            ));
        }
        if plan.nodes.len() > MAX_NODES {
            self.problems.push(Problem::plan(
                "nodes",
                format!(
                    "the plan has {} nodes, more than the limit of {MAX_NODES}",
                    plan.nodes.len()
                ),
            ));
        }
        if !plan.nodes.contains_key(&plan.start) {
            let message = if plan.nodes.is_empty() {
                format!(
                    "the start node {} is not a node of this plan, which has no nodes",
                    quote(&plan.start)
                )
            } else {
                format!(
                    "the start node {} is not a node of this plan",
                    quote(&plan.start)
                )
            };
            self.problems.push(Problem::plan("start", message));
        }
        if let Some(target) = &plan.post_interaction
            && let Some(message) = self.post_interaction(target)
        {
            self.problems
                .push(Problem::plan("post_interaction", message));
        }
    }

    fn post_interaction(&self, target: &str) -> Option<String> {
        let plan = self.plan;
        if plan.plan_type == PlanType::Unattended {
            return Some(
                "an unattended plan cannot have a post-interaction plan: it runs with no interaction to end"
                    .into(),
            );
        }
        if target == plan.name {
            return Some(format!(
                "the plan {} names itself as its post-interaction plan",
                quote(target)
            ));
        }
        if !is_valid_name(target) {
            return Some(format!("{} is not a valid plan name", quote(target)));
        }
        match self.catalog.plan_type(target) {
            None => Some(format!("there is no plan named {}", quote(target))),
            Some(found) if plan.plan_type == PlanType::Message && found != PlanType::Unattended => {
                Some(format!(
                    "a message plan's post-interaction plan must be an unattended plan, and {} is a {found} plan",
                    quote(target)
                ))
            }
            Some(_) => None,
        }
    }

    fn node(&mut self, id: &'a str, node: &'a Node) {
        if !is_valid_node_id(id) {
            self.problems.push(Problem::node(
                id,
                "",
                format!(
                    "the node id {} is not valid: use 1 to {MAX_NODE_ID_LEN} of A-Z a-z 0-9 _ -",
                    quote(id)
                ),
            ));
        }
        let info = self.catalog.applet(&node.applet);
        if info.is_none() {
            self.problems.push(Problem::node(
                id,
                ".applet",
                self.unknown_applet(&node.applet),
            ));
        }
        for (exit, target) in &node.exits {
            let field = format!(".exits.{exit}");
            if exit == "error" {
                self.problems.push(Problem::node(
                    id,
                    &field,
                    "\"error\" is not an exit to wire under exits: set the node's error field instead",
                ));
            } else if let Some(info) = info
                && !info.declares_exit(exit)
            {
                self.problems.push(Problem::node(
                    id,
                    &field,
                    format!(
                        "the applet {} has no exit {} ({})",
                        node.applet,
                        quote(exit),
                        declared_exits(info)
                    ),
                ));
            }
            if !self.plan.nodes.contains_key(target) {
                self.problems.push(Problem::node(
                    id,
                    &field,
                    format!(
                        "the exit {} goes to {}, which is not a node of this plan",
                        quote(exit),
                        quote(target)
                    ),
                ));
            }
        }
        if let Some(target) = &node.error
            && !self.plan.nodes.contains_key(target)
        {
            self.problems.push(Problem::node(
                id,
                ".error",
                format!(
                    "the error exit goes to {}, which is not a node of this plan",
                    quote(target)
                ),
            ));
        }
        if let Some(info) = info {
            self.config(id, node, info);
            if info.needs_live_party && self.plan.plan_type == PlanType::Unattended {
                self.problems.push(Problem::node(
                    id,
                    ".applet",
                    format!(
                        "the applet {} needs a live party, and an unattended plan runs with no interaction present",
                        node.applet
                    ),
                ));
            }
        }
    }

    fn unknown_applet(&self, applet: &AppletRef) -> String {
        let versions = self.catalog.versions(applet.name());
        if versions.is_empty() {
            format!("no applet named {} is installed", quote(applet.name()))
        } else {
            format!(
                "the applet {applet} is not installed (installed versions of {}: {})",
                applet.name(),
                versions.join(", ")
            )
        }
    }

    fn config(&mut self, id: &str, node: &'a Node, info: &AppletInfo) {
        let size = serde_json::to_vec(&node.config).map_or(0, |json| json.len());
        if size > MAX_CONFIG_BYTES {
            // Not checked against the schema: the size alone refuses it, and a config this
            // large could give thousands of schema errors.
            self.problems.push(Problem::node(
                id,
                ".config",
                format!(
                    "the config is {size} bytes of JSON, more than the limit of {MAX_CONFIG_BYTES}"
                ),
            ));
            return;
        }
        let validator = self
            .schemas
            .entry(&node.applet)
            .or_insert_with(|| compile_schema(&info.config_schema));
        let validator = match validator {
            Ok(validator) => validator,
            Err(error) => {
                let message = format!(
                    "the config schema of the applet {} does not compile, which is the applet's fault, not the plan's: {}",
                    node.applet,
                    shorten(error, SCHEMA_MESSAGE_CHARS)
                );
                self.problems.push(Problem::node(id, ".config", message));
                return;
            }
        };
        let checked = catch_unwind(AssertUnwindSafe(|| {
            let mut errors = Vec::new();
            let mut more = 0usize;
            for error in validator.iter_errors(&node.config) {
                if errors.len() < MAX_CONFIG_PROBLEMS {
                    errors.push((
                        error.instance_path().to_string(),
                        shorten(&error.to_string(), SCHEMA_MESSAGE_CHARS),
                    ));
                } else {
                    more += 1;
                }
            }
            (errors, more)
        }));
        match checked {
            Ok((errors, more)) => {
                for (path, message) in errors {
                    self.problems
                        .push(Problem::node(id, &format!(".config{path}"), message));
                }
                if more > 0 {
                    self.problems.push(Problem::node(
                        id,
                        ".config",
                        format!(
                            "{more} more schema errors in this config are not listed (at most {MAX_CONFIG_PROBLEMS} are)"
                        ),
                    ));
                }
            }
            Err(_) => self.problems.push(Problem::node(
                id,
                ".config",
                format!(
                    "checking the config against the schema of the applet {} failed inside the schema validator",
                    node.applet
                ),
            )),
        }
    }

    /// Reachability from `start`, and cycles without a breaker.
    fn graph(&mut self) {
        let plan = self.plan;
        let ids: Vec<&str> = plan.nodes.keys().map(String::as_str).collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        // Successors in the order a reader sees them: exits by name, then the error exit.
        // Targets that are not nodes were reported above and are left out of the graph.
        let successors: Vec<Vec<usize>> = plan
            .nodes
            .values()
            .map(|node| {
                node.targets()
                    .filter_map(|target| index.get(target).copied())
                    .collect()
            })
            .collect();
        let mut graph = DiGraph::<(), ()>::with_capacity(ids.len(), ids.len());
        for _ in &ids {
            graph.add_node(());
        }
        for (from, targets) in successors.iter().enumerate() {
            for &to in targets {
                graph.update_edge(NodeIndex::new(from), NodeIndex::new(to), ());
            }
        }

        // The order nodes are first reached from the start: to name each cycle from where a
        // run would enter it.
        let mut reached_at = vec![usize::MAX; ids.len()];
        if let Some(&start) = index.get(plan.start.as_str()) {
            let mut bfs = Bfs::new(&graph, NodeIndex::new(start));
            let mut order = 0;
            while let Some(n) = bfs.next(&graph) {
                reached_at[n.index()] = order;
                order += 1;
            }
            for (i, id) in ids.iter().enumerate() {
                if reached_at[i] == usize::MAX {
                    self.problems.push(Problem::node(
                        id,
                        "",
                        format!(
                            "the node is not reachable from the start node {}",
                            quote(&plan.start)
                        ),
                    ));
                }
            }
        }

        let mut cycles = Vec::new();
        for component in petgraph::algo::tarjan_scc(&graph) {
            let is_cycle = component.len() > 1 || graph.contains_edge(component[0], component[0]);
            let broken = component.iter().any(|n| {
                let applet = plan.nodes[ids[n.index()]].applet.name();
                CYCLE_BREAKERS.contains(&applet)
            });
            if !is_cycle || broken {
                continue;
            }
            let members: HashSet<usize> = component.iter().map(|n| n.index()).collect();
            let entry = *members
                .iter()
                .min_by_key(|&&i| (reached_at[i], ids[i]))
                .expect("a component is never empty");
            let path = shortest_cycle(entry, &members, &successors);
            let on_path: HashSet<usize> = path.iter().copied().collect();
            let mut message = format!(
                "the cycle {} has no cycle breaker on it (one of {}), so a run could go round it forever",
                path.iter()
                    .chain(std::iter::once(&entry))
                    .map(|&i| ids[i])
                    .collect::<Vec<_>>()
                    .join(" -> "),
                CYCLE_BREAKERS.join(", ")
            );
            let mut others: Vec<&str> = members
                .iter()
                .filter(|i| !on_path.contains(i))
                .map(|&i| ids[i])
                .collect();
            if !others.is_empty() {
                others.sort_unstable();
                message.push_str(&format!("; the nodes {} loop with it", others.join(", ")));
            }
            cycles.push((
                (reached_at[entry], ids[entry]),
                Problem::node(ids[entry], "", message),
            ));
        }
        cycles.sort_by(|a, b| a.0.cmp(&b.0));
        self.problems.extend(cycles.into_iter().map(|(_, p)| p));
    }
}

/// "its exits: a, b", or that it has none.
fn declared_exits(info: &AppletInfo) -> String {
    if info.exits.is_empty() {
        "it declares no exits".into()
    } else {
        format!("its exits: {}", info.exits.join(", "))
    }
}

/// The most nodes (objects, arrays, scalars) a config schema may have once every `$ref` in
/// it is replaced by what it points at. The schema is the applet's, so the tenant's, and the
/// host checks every plan's configs against it: a few kilobytes of `oneOf`s whose branches
/// `$ref` the same definition twice expand to 2^24 paths, and checking one config took
/// minutes on the API's thread (issue 14's second round). Bounded like YAML's aliases: about
/// what the schema's own size limit could hold written out.
pub const MAX_SCHEMA_EXPANDED_NODES: u64 = 100_000;

/// Refuses a schema whose expanded size cannot be bounded or is past
/// [`MAX_SCHEMA_EXPANDED_NODES`]. The schema is walked with every `$ref` followed, each node
/// counted, and the walk stops at the limit, so it costs no more than the limit itself.
/// A recursive `$ref` (a tree of configs) is followed again each time up to
/// [`SCHEMA_UNROLL`] times: one that branches (two refs back up the cycle) doubles at each
/// round and passes the limit, one that does not stays small, and its work on a config is
/// linear in the config. Only `$ref`s that are JSON pointers into the schema itself (`#`,
/// `#/$defs/x`) can be followed, so a `$ref` to anything else (an anchor, another document),
/// `$dynamicRef`/`$recursiveRef`, and a nested `$id` (which would move what a pointer
/// means) are refused.
fn schema_bounded(root: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    struct Walk<'a> {
        root: &'a Value,
        nodes: u64,
        open: Vec<&'a str>,
    }
    impl<'a> Walk<'a> {
        fn walk(&mut self, value: &'a Value, at_root: bool, depth: usize) -> Result<(), String> {
            self.nodes += 1;
            if self.nodes > MAX_SCHEMA_EXPANDED_NODES {
                return Err(format!(
                    "the schema expands through its `$ref`s to more than {MAX_SCHEMA_EXPANDED_NODES} nodes"
                ));
            }
            if depth > SCHEMA_WALK_DEPTH {
                return Err(format!(
                    "the schema nests more than {SCHEMA_WALK_DEPTH} levels deep through its `$ref`s"
                ));
            }
            match value {
                Value::Object(map) => {
                    for (key, item) in map {
                        match (key.as_str(), item) {
                            ("$ref", Value::String(target)) => self.target(target, depth)?,
                            ("$dynamicRef" | "$recursiveRef", _) => {
                                return Err(format!("`{key}` is not supported in a config schema"));
                            }
                            ("$id", _) if !at_root => {
                                return Err(
                                    "a nested `$id` is not supported in a config schema".into()
                                );
                            }
                            _ => self.walk(item, false, depth + 1)?,
                        }
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        self.walk(item, false, depth + 1)?;
                    }
                }
                _ => {}
            }
            Ok(())
        }

        fn target(&mut self, target: &'a str, depth: usize) -> Result<(), String> {
            let Some(pointer) = target
                .strip_prefix('#')
                .filter(|p| p.is_empty() || p.starts_with('/'))
            else {
                return Err(format!(
                    "the `$ref` `{target}` is not a JSON pointer into the schema (`#/…`): the host follows only those"
                ));
            };
            // Unrolled enough to see a branching cycle double past the limit.
            if self.open.iter().filter(|p| **p == pointer).count() >= SCHEMA_UNROLL {
                return Ok(());
            }
            // A pointer to nothing is the compiler's error to report.
            let Some(value) = self.root.pointer(pointer) else {
                return Ok(());
            };
            self.open.push(pointer);
            self.walk(value, pointer.is_empty(), depth + 1)?;
            self.open.pop();
            Ok(())
        }
    }
    Walk {
        root,
        nodes: 0,
        open: Vec::new(),
    }
    .walk(root, true, 0)
}

/// How often a recursive `$ref` is followed around its cycle by [`schema_bounded`]: a
/// cycle that branches in two passes [`MAX_SCHEMA_EXPANDED_NODES`] well before.
const SCHEMA_UNROLL: usize = 32;

/// How deep [`schema_bounded`]'s walk may go (its own stack), `$ref`s followed included.
const SCHEMA_WALK_DEPTH: usize = 4096;

fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    schema_bounded(schema)?;
    // The schema comes from an applet's `describe`, that is from code the host does not
    // trust: a panic in the compiler on some odd schema is turned into a problem.
    catch_unwind(AssertUnwindSafe(|| {
        jsonschema::options()
            // Never fetch a `$ref` over the network or from a file, whatever features of
            // jsonschema another crate in the build enables.
            .offline()
            // A config that says `"format": "email"` should be an email address.
            .should_validate_formats(true)
            // The schema's `pattern`s are the applet's, run by the host on every plan that
            // uses it: only on the linear-time engine. The default backtracking one, given a
            // back-reference, spent up to its million backtracks on each string of a config
            // and then matched (47 s for one plan); a pattern that needs backtracking makes
            // the schema not compile instead.
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(schema)
    }))
    .map_err(|_| "the schema compiler failed on it".to_string())?
    .map_err(|e| e.to_string())
}

/// The shortest path from `entry` back to itself inside the component `members`, as the
/// nodes from `entry` up to the last before returning (the path of a self-loop is
/// `[entry]`). Breadth-first over successors in exit order, so the result is stable.
fn shortest_cycle(entry: usize, members: &HashSet<usize>, successors: &[Vec<usize>]) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([entry]);
    while let Some(at) = queue.pop_front() {
        for &next in &successors[at] {
            if next == entry {
                let mut path = vec![at];
                let mut back = at;
                while back != entry {
                    back = parent[&back];
                    path.push(back);
                }
                path.reverse();
                return path;
            }
            if members.contains(&next) && !parent.contains_key(&next) {
                parent.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    // Unreachable for a strongly connected component; name the entry alone rather than
    // panic.
    vec![entry]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_cycle_follows_edges_in_order() {
        // 0 -> 1 -> 2 -> 0, and 0 -> 3 -> 0: the shorter is 0 -> 3 -> 0.
        let successors = vec![vec![1, 3], vec![2], vec![0], vec![0]];
        let members: HashSet<usize> = [0, 1, 2, 3].into();
        assert_eq!(shortest_cycle(0, &members, &successors), [0, 3]);
        assert_eq!(shortest_cycle(1, &members, &successors), [1, 2, 0]);
        let self_loop = vec![vec![0]];
        assert_eq!(shortest_cycle(0, &[0].into(), &self_loop), [0]);
    }
}
