//! What docker-cd reads from an operator's compose file itself, so that a sync starts compose
//! once (`up`) rather than twice (`config`, then `up`): the names of the services
//! `up` starts, and whether any of them is built from the stack directory.
//!
//! Only what the file says plainly is trusted. A file this reading is not sure about (not
//! YAML, no `services` mapping, `include:` of other files, which adds services this reading
//! cannot see) gives `None`, and the engine asks compose (`config`), whose own words then
//! explain what is wrong, and reads the services from its rendering ([`started_services`]).
//!
//! Adapter layer (shared by the engines). Uses: a maintained YAML crate (`yaml_serde`). Pure.

use yaml_serde::Value;

/// The services of a compose file, as `up` (without profiles) starts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// Sorted, without services that only run under a profile (none is active).
    pub names: Vec<String>,
    /// Some service has `build:`: `up` must build, so that what runs is what the commit holds.
    pub builds: bool,
}

/// Reads the services of the compose file `bytes`, or `None` when compose must be asked.
pub fn services(bytes: &[u8]) -> Option<Services> {
    let mut doc: Value = yaml_serde::from_slice(bytes).ok()?;
    doc.apply_merge().ok()?;
    let top = doc.as_mapping()?;
    if top.contains_key("include") {
        return None;
    }
    let services = top.get("services")?.as_mapping()?;
    let mut names = Vec::new();
    let mut builds = false;
    for (name, service) in services {
        let name = name.as_str()?;
        // `null` is a service with every default (compose would refuse it for lack of an image:
        // let it say so).
        let service = service.as_mapping()?;
        let profiled = service
            .get("profiles")
            .and_then(Value::as_sequence)
            .is_some_and(|p| !p.is_empty());
        if profiled {
            continue;
        }
        builds |= service.get("build").is_some_and(|b| !b.is_null());
        names.push(name.to_owned());
    }
    if names.is_empty() {
        return None;
    }
    names.sort();
    Some(Services { names, builds })
}

/// The services `up` starts, from compose's own rendering of the project (`config`: the
/// operator's files merged, with the `active` profiles): every service but those whose
/// profiles are all inactive. Compose v2 leaves those out of its rendering itself; v1 (1.29)
/// keeps them, as it does in `config --services`, so this reading filters for both. Sorted.
/// `None`: the output has no `services` mapping.
pub fn started_services(rendered: &[u8], active: &[String]) -> Option<Vec<String>> {
    let doc: Value = yaml_serde::from_slice(rendered).ok()?;
    let services = doc.as_mapping()?.get("services")?.as_mapping()?;
    let mut names = Vec::new();
    for (name, service) in services {
        let name = name.as_str()?;
        let started = service
            .get("profiles")
            .and_then(Value::as_sequence)
            .is_none_or(|profiles| {
                profiles.is_empty()
                    || profiles
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|p| active.iter().any(|a| a == p))
            });
        if started {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Some(names)
}

/// The services of the compose file `bytes` that have `build:`: their images are built here,
/// never updated from a registry. Empty when the file cannot be read as YAML.
pub fn built_services(bytes: &[u8]) -> Vec<String> {
    let Ok(mut doc) = yaml_serde::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    if doc.apply_merge().is_err() {
        return Vec::new();
    }
    let Some(services) = doc
        .as_mapping()
        .and_then(|top| top.get("services"))
        .and_then(Value::as_mapping)
    else {
        return Vec::new();
    };
    let mut built: Vec<String> = services
        .iter()
        .filter(|(_, service)| {
            service
                .as_mapping()
                .and_then(|m| m.get("build"))
                .is_some_and(|b| !b.is_null())
        })
        .filter_map(|(name, _)| name.as_str().map(str::to_owned))
        .collect();
    built.sort();
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<Services> {
        services(text.as_bytes())
    }

    #[test]
    fn services_are_the_keys_of_the_services_mapping_sorted() {
        let listed = read("services:\n  web:\n    image: a\n  db:\n    image: b\n").unwrap();
        assert_eq!(listed.names, ["db", "web"]);
        assert!(!listed.builds);
    }

    #[test]
    fn a_build_anywhere_means_up_must_build() {
        let listed = read("services:\n  web:\n    build: .\n  db:\n    image: b\n").unwrap();
        assert!(listed.builds);
        let long = read(
            "services:\n  web:\n    build:\n      context: ./app\n      dockerfile: Dockerfile\n",
        )
        .unwrap();
        assert!(long.builds);
        assert!(
            !read("services:\n  web:\n    image: a\n    build: null\n")
                .unwrap()
                .builds
        );
    }

    #[test]
    fn services_behind_a_profile_are_not_started_so_not_listed() {
        let listed = read(
            "services:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [debug]\n",
        )
        .unwrap();
        assert_eq!(listed.names, ["web"]);
        let empty_profiles = read("services:\n  web:\n    image: a\n    profiles: []\n").unwrap();
        assert_eq!(empty_profiles.names, ["web"]);
    }

    #[test]
    fn anchors_and_merge_keys_are_applied() {
        let text = "x-base: &base\n  image: a\nservices:\n  web:\n    <<: *base\n  worker:\n    <<: *base\n    build: .\n";
        let listed = read(text).unwrap();
        assert_eq!(listed.names, ["web", "worker"]);
        assert!(listed.builds);
    }

    /// `docker-compose --profile extra config` (1.29.2) of a file with services `app`, `extra`
    /// (profile `extra`) and `debug` (profile `debug`): it keeps `debug`.
    const V1_RENDERING: &str = "services:\n  app:\n    command:\n    - sleep\n    - '3600'\n    image: docker-cd-test/busybox:latest\n  debug:\n    image: docker-cd-test/busybox:latest\n    profiles:\n    - debug\n  extra:\n    image: docker-cd-test/busybox:latest\n    profiles:\n    - extra\nversion: '3.9'\n\n";
    /// `docker compose --profile extra config` (2.40.3) of the same file: `debug` is left out.
    const V2_RENDERING: &str = "name: web\nservices:\n  app:\n    command:\n      - sleep\n      - \"3600\"\n    image: docker-cd-test/busybox:latest\n    networks:\n      default: null\n  extra:\n    profiles:\n      - extra\n    image: docker-cd-test/busybox:latest\n    networks:\n      default: null\nnetworks:\n  default:\n    name: web_default\n";

    #[test]
    fn started_services_leave_out_services_whose_profiles_are_all_inactive() {
        let active = ["extra".to_owned()];
        for rendered in [V1_RENDERING, V2_RENDERING] {
            assert_eq!(
                started_services(rendered.as_bytes(), &active).unwrap(),
                ["app", "extra"],
                "{rendered}"
            );
        }
        assert_eq!(
            started_services(V1_RENDERING.as_bytes(), &[]).unwrap(),
            ["app"]
        );
        let both = ["debug".to_owned(), "extra".to_owned()];
        assert_eq!(
            started_services(V1_RENDERING.as_bytes(), &both).unwrap(),
            ["app", "debug", "extra"]
        );
        let shared = "services:\n  a:\n    image: x\n    profiles: [one, two]\n";
        assert_eq!(
            started_services(shared.as_bytes(), &["two".to_owned()]).unwrap(),
            ["a"]
        );
        for broken in ["", "42\n", "services: [a]\n", ": not yaml : [\n"] {
            assert_eq!(
                started_services(broken.as_bytes(), &active),
                None,
                "{broken:?}"
            );
        }
    }

    #[test]
    fn anything_unsure_asks_compose() {
        for text in [
            "services: [web]\n",
            "services:\n",
            "services: {}\n",
            "version: '3'\n",
            "include:\n  - other.yml\nservices:\n  web:\n    image: a\n",
            "services:\n  web:\n",
            "services:\n  web: [image]\n",
            "services:\n  web:\n    image: a\n  - b\n",
            ": not yaml : [\n",
            "",
            "42\n",
            "services:\n  1: {image: a}\n",
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
    }
}
