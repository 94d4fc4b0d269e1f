//! The pure checks that decide whether a stack can be deployed with `docker stack deploy`, and
//! the label override that goes with it.
//!
//! `docker stack deploy` takes compose files but silently drops much of what compose does with
//! them: it prints "Ignoring unsupported options: build, …" *after* nothing can be undone, widens
//! `127.0.0.1:80:80` to every address of every node, never reads a stack's `.env` for variable
//! interpolation, and ignores `restart: "no"`. A stack that relies on any of that fails here,
//! before the engine is touched, with a message naming each service, option and the swarm way.
//!
//! Two inputs, both parsed with a YAML library (never by hand):
//! - the operator's compose file as written ([`check_source`]): option names, port strings with a
//!   host address, `depends_on` conditions, `${VAR}` interpolation — what normalisation hides;
//! - the same file normalised by `docker stack config` ([`read_config`]): the CLI's own
//!   validation and interpolation, from which the services, their modes and replica counts and
//!   their restart settings are read.
//!
//! Pure. Uses: stack (docker-cd's labels).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::stack::labels::SyncLabels;

/// Service label holding the replica count Git asked for (replicated services only): a service
/// scaled by hand differs from it.
pub const REPLICAS: &str = "com.docker-cd.replicas";

/// Options `docker stack deploy` ignores (the CLI's "unsupported" and "deprecated" lists, minus
/// `expose`, which changes nothing on an overlay network), with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "build",
        "swarm does not build images; build and push the image, then refer to it with image:",
    ),
    (
        "container_name",
        "swarm names task containers itself (<stack>_<service>.<slot>.<id>)",
    ),
    ("cgroup_parent", "not supported by swarm services"),
    ("cgroupns_mode", "not supported by swarm services"),
    ("devices", "swarm services cannot map host devices"),
    ("domainname", "not supported by swarm services"),
    (
        "external_links",
        "use a shared (external) overlay network instead",
    ),
    ("ipc", "not supported by swarm services"),
    (
        "links",
        "services on the same network reach each other by service name",
    ),
    ("mac_address", "not supported by swarm services"),
    (
        "network_mode",
        "use networks: (overlay networks, or the external network `host`)",
    ),
    ("pid", "not supported by swarm services"),
    ("privileged", "swarm services cannot run privileged"),
    ("security_opt", "not supported by swarm services"),
    (
        "shm_size",
        "not supported by swarm services; mount a tmpfs at /dev/shm",
    ),
    ("userns_mode", "not supported by swarm services"),
];

/// Options the docker CLI rejects with the bare "Configuration contains forbidden properties";
/// named here so the message says which and what to use.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "not supported by docker stack deploy"),
    (
        "volume_driver",
        "define the volume under the top-level volumes: with its driver",
    ),
    (
        "volumes_from",
        "share a named volume defined under the top-level volumes: instead",
    ),
    ("cpu_quota", "use deploy.resources.limits.cpus"),
    ("cpu_shares", "use deploy.resources"),
    ("cpuset", "use deploy.resources"),
    ("mem_limit", "use deploy.resources.limits.memory"),
    ("memswap_limit", "use deploy.resources"),
];

/// Why a stack cannot be deployed to a swarm: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{file} is not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("the compose file defines no services")]
    NoServices,
    #[error(
        "swarm mode cannot deploy this stack as written (docker stack deploy would drop or change these silently):\n{}",
        .0.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
    )]
    Unsupported(Vec<String>),
}

/// What the operator's file says that matters before normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file's `version:`, which the override must repeat (the CLI refuses to merge files
    /// of different versions, and a file without one counts as the newest).
    pub version: Option<String>,
}

/// One service as `docker stack config` normalised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// `Some(n)` for replicated services (default 1); `None` for global services and jobs.
    pub replicas: Option<u64>,
}

/// Parses YAML bytes into a JSON value, with merge keys (`<<: *base`) applied.
pub fn parse_yaml(file: &str, bytes: &[u8]) -> Result<Value, Refusal> {
    let yaml_error = |message: String| Refusal::Yaml {
        file: file.to_owned(),
        message,
    };
    let mut doc: yaml_serde::Value =
        yaml_serde::from_slice(bytes).map_err(|e| yaml_error(e.to_string()))?;
    doc.apply_merge().map_err(|e| yaml_error(e.to_string()))?;
    serde_json::to_value(&doc).map_err(|e| yaml_error(e.to_string()))
}

/// Checks the compose file as written. `has_dot_env`: the stack directory holds a `.env` file,
/// which compose reads for interpolation and `docker stack deploy` does not.
pub fn check_source(file: &str, raw: &[u8], has_dot_env: bool) -> Result<Source, Refusal> {
    let doc = parse_yaml(file, raw)?;
    let services = doc
        .get("services")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::NoServices)?;
    let mut problems = Vec::new();
    for (name, service) in services {
        let Some(service) = service.as_object() else {
            continue; // the CLI's schema check names it
        };
        for (option, hint) in UNSUPPORTED.iter().chain(FORBIDDEN) {
            if service.contains_key(*option) {
                problems.push(format!("service {name}: {option}: {hint}"));
            }
        }
        if let Some(Value::Object(deps)) = service.get("depends_on") {
            let conditions: Vec<&str> = deps
                .values()
                .filter_map(|d| d.get("condition").and_then(Value::as_str))
                .collect();
            problems.push(format!(
                "service {name}: depends_on with conditions ({}): swarm starts services in no particular order and never waits for health; \
                 use the short list form and make the service retry its dependencies",
                if conditions.is_empty() {
                    "long form".to_owned()
                } else {
                    conditions.join(", ")
                }
            ));
        }
        for port in service
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = port_host_ip(port) {
                problems.push(format!(
                    "service {name}: port {} is bound to {ip}: swarm publishes ports on every address of every node; \
                     remove the address (and protect the port otherwise) or keep this stack in compose mode",
                    port_text(port)
                ));
            }
        }
    }
    if has_dot_env {
        let mut variables = Vec::new();
        collect_interpolations(&doc, &mut variables);
        variables.sort();
        variables.dedup();
        if !variables.is_empty() {
            problems.push(format!(
                "the stack has a .env file and the compose file interpolates {}: docker stack deploy does not read .env, \
                 so these would silently be empty or their defaults; write the values into the compose file \
                 (env_file: still works for the containers' environment)",
                variables
                    .iter()
                    .map(|v| format!("${{{v}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Refusal::Unsupported(problems));
    }
    let version = doc.get("version").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    Ok(Source { version })
}

/// Reads the services of `docker stack config` output (YAML) and checks what only the
/// interpolated values show (`restart:`).
pub fn read_config(normalised: &[u8]) -> Result<Vec<ServiceSpec>, Refusal> {
    let doc = parse_yaml("docker stack config output", normalised)?;
    let services = doc
        .get("services")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::NoServices)?;
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    for (name, service) in services {
        let deploy = service.get("deploy");
        let restart = service.get("restart").and_then(Value::as_str);
        let has_policy = deploy.and_then(|d| d.get("restart_policy")).is_some();
        // Swarm restarts tasks whatever happens unless told otherwise, which is what `always` and
        // `unless-stopped` mean; `no` and `on-failure` would silently become "always".
        if let Some(value) =
            restart.filter(|r| !has_policy && !matches!(*r, "always" | "unless-stopped"))
        {
            let condition = if value.starts_with("on-failure") {
                "on-failure"
            } else {
                "none"
            };
            problems.push(format!(
                "service {name}: restart: {value} is ignored by swarm, which restarts tasks by default; \
                 use deploy.restart_policy.condition: {condition}"
            ));
        }
        let mode = deploy
            .and_then(|d| d.get("mode"))
            .and_then(Value::as_str)
            .unwrap_or("replicated");
        let replicas = match mode {
            "replicated" => Some(
                deploy
                    .and_then(|d| d.get("replicas"))
                    .and_then(|r| r.as_u64().or_else(|| r.as_str()?.parse().ok()))
                    .unwrap_or(1),
            ),
            _ => None,
        };
        specs.push(ServiceSpec {
            name: name.clone(),
            replicas,
        });
    }
    if !problems.is_empty() {
        return Err(Refusal::Unsupported(problems));
    }
    Ok(specs)
}

/// The host address of a port entry, if it has one: `127.0.0.1:80:80`, `[::1]:80:80`,
/// `127.0.0.1::80`, or the long form's `host_ip`.
fn port_host_ip(port: &Value) -> Option<String> {
    match port {
        Value::String(text) => {
            let spec = text.split('/').next().unwrap_or_default();
            if let Some(rest) = spec.strip_prefix('[') {
                return rest.split(']').next().map(str::to_owned);
            }
            let parts: Vec<&str> = spec.split(':').collect();
            (parts.len() == 3 && !parts[0].is_empty()).then(|| parts[0].to_owned())
        }
        Value::Object(long) => long
            .get("host_ip")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

fn port_text(port: &Value) -> String {
    match port {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every variable a document interpolates (`$VAR`, `${VAR}`, `${VAR:-default}`, …), in keys and
/// values; `$$` is an escaped dollar.
fn collect_interpolations(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => interpolations(s, out),
        Value::Array(items) => items.iter().for_each(|v| collect_interpolations(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                interpolations(k, out);
                collect_interpolations(v, out);
            }
        }
        _ => {}
    }
}

fn interpolations(text: &str, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let name: String = text[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
                i += 2;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                i += 1 + name.len();
                out.push(name);
            }
            _ => i += 1,
        }
    }
}

/// The override file: `deploy.labels` (labels on the *services*; compose-file `labels:` would go
/// on the task containers) carrying docker-cd's labels, plus each replicated service's replica
/// count. Repeats the operator's `version:` (see [`Source::version`]).
pub fn override_document(
    labels: &SyncLabels,
    services: &[ServiceSpec],
    version: Option<&str>,
) -> Value {
    let common: BTreeMap<&str, String> = labels.to_map();
    let mut out = Map::new();
    for spec in services {
        let mut service_labels: Map<String, Value> = common
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        if let Some(n) = spec.replicas {
            service_labels.insert(REPLICAS.to_owned(), Value::String(n.to_string()));
        }
        out.insert(
            spec.name.clone(),
            json!({ "deploy": { "labels": service_labels } }),
        );
    }
    let mut doc = json!({ "services": out });
    if let Some(version) = version {
        doc["version"] = Value::String(version.to_owned());
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::labels;

    fn refusal(raw: &str, dot_env: bool) -> Vec<String> {
        match check_source("compose.yaml", raw.as_bytes(), dot_env) {
            Err(Refusal::Unsupported(p)) => p,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_portable_compose_file_passes_and_keeps_its_version() {
        let raw = "version: '3.8'\nservices:\n  app:\n    image: x\n    init: true\n    restart: unless-stopped\n    \
                   ports: ['8080:80', '9000']\n    depends_on: [db]\n    environment:\n      A: $${NOT_INTERPOLATED}\n  db:\n    image: y\n";
        let source = check_source("compose.yaml", raw.as_bytes(), true).unwrap();
        assert_eq!(source.version.as_deref(), Some("3.8"));
    }

    #[test]
    fn build_container_name_and_every_ignored_option_are_refused_per_service() {
        let problems = refusal(
            "services:\n  app:\n    image: x\n    build: .\n    container_name: app\n    privileged: true\n  db:\n    image: y\n    mem_limit: 1g\n",
            false,
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("service app: build: swarm does not build images"));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("service app: container_name"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("service app: privileged"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("service db: mem_limit: use deploy.resources.limits.memory"))
        );
        let text = Refusal::Unsupported(problems).to_string();
        assert!(
            text.contains("docker stack deploy would drop or change these silently"),
            "{text}"
        );
    }

    #[test]
    fn options_pulled_in_through_a_merge_key_are_seen() {
        let problems = refusal(
            "x-base: &base\n  build: .\nservices:\n  app:\n    <<: *base\n    image: x\n",
            false,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("build"));
    }

    #[test]
    fn ports_bound_to_a_host_address_are_refused_in_every_syntax() {
        let problems = refusal(
            "services:\n  app:\n    image: x\n    ports:\n      - 127.0.0.1:8080:80\n      - '[::1]:8081:80/udp'\n      - 127.0.0.1::80\n      \
             - {target: 80, published: 8082, host_ip: 10.0.0.1}\n      - 8083:80\n      - '8084'\n      - {target: 80, published: 8085}\n",
            false,
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        for ip in ["127.0.0.1", "::1", "10.0.0.1"] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(&format!("bound to {ip}:"))),
                "{ip}: {problems:?}"
            );
        }
    }

    #[test]
    fn depends_on_conditions_are_refused_but_the_short_form_passes() {
        let problems = refusal(
            "services:\n  app:\n    image: x\n    depends_on:\n      db:\n        condition: service_healthy\n  db:\n    image: y\n",
            false,
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("(service_healthy)"), "{problems:?}");
        assert!(
            check_source(
                "c",
                b"services:\n  app:\n    image: x\n    depends_on: [db]\n  db:\n    image: y\n",
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn interpolation_with_a_dot_env_file_is_refused_and_without_one_passes() {
        let raw = "services:\n  app:\n    image: \"x:${TAG:-1}\"\n    environment:\n      A: $$LITERAL\n      B: $NAME\n      C: ok$\n";
        let problems = refusal(raw, true);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("${NAME}, ${TAG}"), "{problems:?}");
        assert!(!problems[0].contains("LITERAL"));
        assert!(check_source("c", raw.as_bytes(), false).is_ok());
        assert!(
            check_source(
                "c",
                b"services:\n  app:\n    image: x\n    env_file: .env\n",
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn broken_yaml_an_empty_file_and_no_services_fail_with_what_is_wrong() {
        let broken = check_source("compose.yaml", b"services: [\n", false).unwrap_err();
        assert!(
            broken
                .to_string()
                .starts_with("compose.yaml is not valid YAML"),
            "{broken}"
        );
        assert_eq!(
            check_source("c", b"", false).unwrap_err(),
            Refusal::NoServices
        );
        assert_eq!(
            check_source("c", b"services: {}\n", false).unwrap_err(),
            Refusal::NoServices
        );
    }

    // Shaped like `docker stack config` output of CLI 28 (normalised, interpolated).
    const NORMALISED: &str = r#"version: "3.13"
services:
  app:
    image: docker-cd-test/busybox:latest
    restart: unless-stopped
  batch:
    deploy:
      mode: global
    image: docker-cd-test/busybox:latest
  web:
    deploy:
      replicas: 3
    image: docker-cd-test/busybox:latest
"#;

    #[test]
    fn normalised_config_gives_services_modes_and_replicas() {
        let specs = read_config(NORMALISED.as_bytes()).unwrap();
        assert_eq!(
            specs,
            [
                ServiceSpec {
                    name: "app".into(),
                    replicas: Some(1)
                },
                ServiceSpec {
                    name: "batch".into(),
                    replicas: None
                },
                ServiceSpec {
                    name: "web".into(),
                    replicas: Some(3)
                },
            ]
        );
    }

    #[test]
    fn restart_no_and_on_failure_are_refused_unless_a_restart_policy_is_given() {
        let refused = read_config(b"services:\n  a:\n    image: x\n    restart: \"no\"\n  b:\n    image: x\n    restart: on-failure:3\n")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("service a: restart: no is ignored"),
            "{refused}"
        );
        assert!(
            refused.contains("service b: restart: on-failure:3 is ignored by swarm"),
            "{refused}"
        );
        assert!(refused.contains("condition: on-failure"), "{refused}");
        assert!(read_config(b"services:\n  a:\n    image: x\n    restart: \"no\"\n    deploy:\n      restart_policy:\n        condition: none\n").is_ok());
    }

    #[test]
    fn the_override_puts_every_label_on_the_services_and_the_replicas_on_replicated_ones() {
        let labels = SyncLabels {
            instance: "0123456789abcdef".into(),
            stack_path: "web".into(),
            revision: "abc".into(),
            content_hash: "t1".into(),
            compose_hash: "c1".into(),
            synced_at: "2026-11-28T16:00:00Z".into(),
            services: vec!["app".into(), "batch".into()],
            depends_on: Vec::new(),
        };
        let specs = [
            ServiceSpec {
                name: "app".into(),
                replicas: Some(2),
            },
            ServiceSpec {
                name: "batch".into(),
                replicas: None,
            },
        ];
        let doc = override_document(&labels, &specs, Some("3.8"));
        assert_eq!(doc["version"], "3.8");
        let app = &doc["services"]["app"]["deploy"]["labels"];
        assert_eq!(app[labels::OWNER], labels::OWNER_VALUE);
        assert_eq!(app[labels::CONTENT_HASH], "t1");
        assert_eq!(app[labels::SERVICES], "app,batch");
        assert_eq!(app[REPLICAS], "2");
        assert!(
            doc["services"]["batch"]["deploy"]["labels"]
                .get(REPLICAS)
                .is_none()
        );
        assert!(
            doc["services"]["app"].get("labels").is_none(),
            "container labels untouched"
        );
        assert!(
            override_document(&labels, &specs, None)
                .get("version")
                .is_none()
        );
    }
}
