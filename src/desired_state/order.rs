//! The order between stacks (`x-docker-cd.dependsOn`, SPEC §11), checked once per snapshot: a
//! dependency that is not a stack of the commit, or a cycle, is an error on each stack
//! involved, and such a stack is never synced. When the order is followed (a stack waits for
//! its dependencies to be synced and healthy) is the reconciler's plan.
//!
//! Pure. Costs nothing for stacks without dependencies: only those with `dependsOn` are looked
//! at, and a stack that gets an error is cloned out of the `Arc` it shares with the previous
//! snapshot (which the next refresh then rebuilds, because stacks with errors are never shared).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::DesiredStack;

/// Sets the error of every stack whose `dependsOn` names an unknown stack or that is on a
/// cycle of dependencies. Stacks that already have an error keep it.
pub fn check_dependencies(stacks: &mut BTreeMap<String, Arc<DesiredStack>>) {
    let errors = dependency_errors(stacks);
    for (path, error) in errors {
        if let Some(stack) = stacks.get_mut(&path) {
            if stack.error.is_none() {
                Arc::make_mut(stack).error = Some(error);
            }
        }
    }
}

/// The errors [`check_dependencies`] sets, by stack path.
pub fn dependency_errors(stacks: &BTreeMap<String, Arc<DesiredStack>>) -> BTreeMap<String, String> {
    let graph: BTreeMap<&str, &[String]> = stacks
        .iter()
        .filter(|(_, s)| s.error.is_none())
        .map(|(path, s)| (path.as_str(), s.settings().depends_on.as_slice()))
        .filter(|(_, deps)| !deps.is_empty())
        .collect();
    let mut errors = BTreeMap::new();
    for (path, deps) in &graph {
        let unknown: Vec<&str> = deps
            .iter()
            .map(String::as_str)
            .filter(|d| !stacks.contains_key(*d))
            .collect();
        if !unknown.is_empty() {
            errors.insert(
                (*path).to_owned(),
                format!(
                    "x-docker-cd.dependsOn: {} {} of this commit",
                    unknown.join(", "),
                    if unknown.len() == 1 {
                        "is not a stack"
                    } else {
                        "are not stacks"
                    }
                ),
            );
        }
    }
    for cycle in cycles(&graph) {
        let mut shown = cycle.clone();
        shown.push(cycle[0]);
        let text = format!("x-docker-cd.dependsOn: a cycle: {}", shown.join(" → "));
        for path in cycle {
            errors
                .entry(path.to_owned())
                .or_insert_with(|| text.clone());
        }
    }
    errors
}

/// Every cycle of the graph, each once, as the strongly connected components with more than
/// one stack (or a stack that depends on itself), each starting at its first stack by path and
/// following the dependencies. Tarjan's algorithm, iteratively (no recursion depth to bound).
fn cycles<'a>(graph: &BTreeMap<&'a str, &'a [String]>) -> Vec<Vec<&'a str>> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut low: BTreeMap<&str, usize> = BTreeMap::new();
    let mut on_stack: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = Vec::new();
    let mut components = Vec::new();
    let deps_of = |node: &str| -> Vec<&'a str> {
        graph
            .get(node)
            .map(|deps| {
                deps.iter()
                    .map(String::as_str)
                    .filter(|d| graph.contains_key(*d))
                    .collect()
            })
            .unwrap_or_default()
    };
    for &start in graph.keys() {
        if index.contains_key(start) {
            continue;
        }
        // (node, its dependencies, how many of them were visited)
        let mut work: Vec<(&str, Vec<&str>, usize)> = vec![(start, deps_of(start), 0)];
        index.insert(start, index.len());
        low.insert(start, index[start]);
        stack.push(start);
        on_stack.insert(start);
        while let Some((node, deps, next)) = work.last_mut() {
            let node = *node;
            if let Some(&dep) = deps.get(*next) {
                *next += 1;
                if !index.contains_key(dep) {
                    index.insert(dep, index.len());
                    low.insert(dep, index[dep]);
                    stack.push(dep);
                    on_stack.insert(dep);
                    work.push((dep, deps_of(dep), 0));
                } else if on_stack.contains(dep) {
                    let l = low[node].min(index[dep]);
                    low.insert(node, l);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _, _)) = work.last() {
                let l = low[*parent].min(low[node]);
                low.insert(parent, l);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(top) = stack.pop() {
                    on_stack.remove(top);
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                let self_loop = graph
                    .get(node)
                    .is_some_and(|deps| deps.iter().any(|d| d == node));
                if component.len() > 1 || self_loop {
                    components.push(in_order(component, graph));
                }
            }
        }
    }
    components.sort();
    components
}

/// A component as a path through it: from its first stack by path, each next one a
/// dependency of the one before that is in the component and not yet shown.
fn in_order<'a>(component: Vec<&'a str>, graph: &BTreeMap<&'a str, &'a [String]>) -> Vec<&'a str> {
    let members: BTreeSet<&str> = component.iter().copied().collect();
    let mut shown = Vec::with_capacity(component.len());
    let mut seen = BTreeSet::new();
    let mut at = *members.iter().next().expect("a component is never empty");
    loop {
        shown.push(at);
        seen.insert(at);
        let next = graph.get(at).and_then(|deps| {
            deps.iter()
                .map(String::as_str)
                .find(|d| members.contains(d) && !seen.contains(d))
        });
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    // Members a simple path did not reach (a component with branches) come last, by path.
    shown.extend(members.into_iter().filter(|m| !seen.contains(m)));
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired_state::settings::{Read, StackSettings};

    fn stacks(deps: &[(&str, &[&str])]) -> BTreeMap<String, Arc<DesiredStack>> {
        deps.iter()
            .map(|(path, on)| {
                let settings = (!on.is_empty()).then(|| {
                    Arc::new(Read {
                        settings: StackSettings {
                            depends_on: on.iter().map(|s| (*s).to_owned()).collect(),
                            ..StackSettings::default()
                        },
                        ..Read::default()
                    })
                });
                let stack = DesiredStack {
                    path: (*path).to_owned(),
                    project_name: Some((*path).to_owned()),
                    compose_file: "compose.yaml".into(),
                    compose_hash: Some("h".into()),
                    content_hash: format!("t-{path}"),
                    compose_blob: None,
                    warnings: Vec::new(),
                    error: None,
                    settings,
                };
                ((*path).to_owned(), Arc::new(stack))
            })
            .collect()
    }

    fn errors(deps: &[(&str, &[&str])]) -> Vec<(String, String)> {
        dependency_errors(&stacks(deps)).into_iter().collect()
    }

    #[test]
    fn a_chain_has_no_errors() {
        assert_eq!(
            errors(&[("db", &[]), ("api", &["db"]), ("web", &["api", "db"])]),
            []
        );
    }

    #[test]
    fn an_unknown_dependency_is_an_error_on_the_stack_naming_it() {
        assert_eq!(
            errors(&[("api", &["db", "cache"]), ("web", &["api"]), ("cache", &[])]),
            [(
                "api".to_owned(),
                "x-docker-cd.dependsOn: db is not a stack of this commit".to_owned()
            )]
        );
        assert_eq!(
            errors(&[("api", &["db", "mq"])]),
            [(
                "api".to_owned(),
                "x-docker-cd.dependsOn: db, mq are not stacks of this commit".to_owned()
            )]
        );
    }

    #[test]
    fn a_cycle_is_an_error_on_each_stack_on_it_and_only_on_them() {
        let found = errors(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &["a"]),
            ("e", &[]),
        ]);
        let text = "x-docker-cd.dependsOn: a cycle: a → b → c → a";
        assert_eq!(
            found,
            [
                ("a".to_owned(), text.to_owned()),
                ("b".to_owned(), text.to_owned()),
                ("c".to_owned(), text.to_owned()),
            ]
        );
    }

    #[test]
    fn a_stack_depending_on_itself_is_a_cycle() {
        assert_eq!(
            errors(&[("a", &["a"])]),
            [(
                "a".to_owned(),
                "x-docker-cd.dependsOn: a cycle: a → a".to_owned()
            )]
        );
    }

    #[test]
    fn two_cycles_are_told_apart() {
        let found = errors(&[("a", &["b"]), ("b", &["a"]), ("x", &["y"]), ("y", &["x"])]);
        assert_eq!(found[0].1, "x-docker-cd.dependsOn: a cycle: a → b → a");
        assert_eq!(found[2].1, "x-docker-cd.dependsOn: a cycle: x → y → x");
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn a_long_chain_is_checked_without_recursion() {
        let names: Vec<String> = (0..20_000).map(|i| format!("s{i:05}")).collect();
        let deps: Vec<Vec<String>> = (0..names.len())
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![names[i - 1].clone()]
                }
            })
            .collect();
        let mut map = BTreeMap::new();
        for (name, on) in names.iter().zip(&deps) {
            let refs: Vec<&str> = on.iter().map(String::as_str).collect();
            map.extend(stacks(&[(name.as_str(), &refs)]));
        }
        assert!(dependency_errors(&map).is_empty());
        // Closing the chain makes every stack of it an error.
        let first = map.get_mut("s00000").unwrap();
        *first = stacks(&[("s00000", &["s19999"])]).remove("s00000").unwrap();
        assert_eq!(dependency_errors(&map).len(), 20_000);
    }

    #[test]
    fn check_sets_errors_and_keeps_an_earlier_one() {
        let mut map = stacks(&[("a", &["b"]), ("b", &["a"]), ("c", &["zz"])]);
        Arc::make_mut(map.get_mut("b").unwrap()).error = Some("earlier".into());
        check_dependencies(&mut map);
        // b had an error already: its settings are not looked at, so a's dependency on it is
        // known, and there is no cycle any more.
        assert_eq!(map["a"].error, None);
        assert_eq!(map["b"].error.as_deref(), Some("earlier"));
        assert_eq!(
            map["c"].error.as_deref(),
            Some("x-docker-cd.dependsOn: zz is not a stack of this commit")
        );
    }
}
