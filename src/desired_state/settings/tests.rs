use super::*;

fn read_text(text: &str) -> Read {
    read(text.as_bytes())
}

fn settings(text: &str) -> StackSettings {
    let read = read_text(text);
    assert_eq!(read.error, None, "{text}");
    read.settings
}

fn error(text: &str) -> String {
    read_text(text)
        .error
        .unwrap_or_else(|| panic!("no error for {text}"))
}

fn hook(service: &str, command: &[&str]) -> Hook {
    Hook {
        service: service.into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn a_captured_file_with_every_setting_reads_them_all() {
    let read = read(include_bytes!("testdata/full.yaml"));
    assert_eq!(read.error, None);
    assert_eq!(read.warnings, Vec::<String>::new());
    let s = read.settings;
    assert_eq!(s.suspend, Some(false));
    assert_eq!(s.drift, Some(DriftPolicy::Flag));
    assert_eq!(s.health_timeout, Some(Duration::from_secs(180)));
    assert_eq!(s.rollback_on_failure, Some(true));
    assert_eq!(s.depends_on, ["db", "infra/cache"]);
    assert_eq!(s.files, ["compose.yaml", "compose.prod.yaml"]);
    assert_eq!(s.profiles, ["prod"]);
    assert_eq!(
        s.hooks.pre_sync,
        [hook("migrate", &["sh", "-c", "./migrate.sh --to latest"])]
    );
    assert_eq!(
        s.hooks.post_sync,
        [hook(
            "web",
            &["wget", "-q", "-O-", "http://localhost:8080/health"]
        )]
    );
    let windows = s.sync_windows.unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].schedule(), "0 2 * * 6");
    assert_eq!(windows[0].duration(), Duration::from_secs(7200));
    assert_eq!(windows[1].schedule(), "30 1 * * *");
    assert_eq!(windows[1].duration(), Duration::from_secs(45 * 60));
    assert_eq!(s.image_updates, Some(true));
}

#[test]
fn anchors_and_merge_keys_are_resolved_and_explicit_keys_win_over_merged_ones() {
    let read = read(include_bytes!("testdata/anchors.yaml"));
    assert_eq!(read.error, None);
    let s = read.settings;
    assert_eq!(s.drift, Some(DriftPolicy::Ignore));
    assert_eq!(s.health_timeout, Some(Duration::from_secs(90)));
    assert_eq!(s.depends_on, ["db"]);
    assert_eq!(s.hooks.post_sync, [hook("app", &["./smoke.sh"])]);
}

#[test]
fn the_whole_mapping_may_be_an_alias() {
    let s = settings(include_str!("testdata/alias.yaml"));
    assert_eq!(s.rollback_on_failure, Some(false));
    // An empty list of windows: this stack is never held by SYNC_WINDOWS.
    assert_eq!(s.sync_windows, Some(Vec::new()));
}

#[test]
fn a_file_that_only_mentions_the_key_in_text_has_no_settings() {
    let read = read(include_bytes!("testdata/none.yaml"));
    assert_eq!(read, Read::default());
}

#[test]
fn a_file_without_the_key_is_not_parsed_even_when_it_is_not_yaml() {
    assert_eq!(read_text("services: [unclosed"), Read::default());
    assert_eq!(read_text(""), Read::default());
}

#[test]
fn an_empty_mapping_or_null_means_no_settings() {
    assert!(settings("x-docker-cd:\nservices: {a: {image: x}}\n").is_empty());
    assert!(settings("x-docker-cd: {}\n").is_empty());
}

#[test]
fn settings_that_are_not_a_mapping_are_an_error_naming_what_they_are() {
    assert_eq!(
        error("x-docker-cd: true\n"),
        "x-docker-cd must be a mapping of settings, not a boolean"
    );
    assert_eq!(
        error("x-docker-cd: [suspend]\n"),
        "x-docker-cd must be a mapping of settings, not a list"
    );
    assert_eq!(
        error("x-docker-cd: suspend\n"),
        "x-docker-cd must be a mapping of settings, not text"
    );
}

#[test]
fn a_file_with_the_key_that_is_not_yaml_is_an_error() {
    let e = error("x-docker-cd: {suspend: true\nservices: {}\n");
    assert!(
        e.starts_with("x-docker-cd cannot be read: the file is not valid YAML"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_warnings_naming_the_key_and_the_known_ones() {
    let read = read_text("x-docker-cd:\n  suspend: true\n  dependson: [db]\n");
    assert_eq!(read.error, None);
    assert_eq!(read.settings.suspend, Some(true));
    assert_eq!(read.warnings.len(), 1);
    assert!(
        read.warnings[0]
            .starts_with("x-docker-cd.dependson: unknown setting, ignored (known: suspend, drift,"),
        "{:?}",
        read.warnings
    );
    let read = read_text("x-docker-cd:\n  hooks: {preDeploy: []}\n");
    assert_eq!(
        read.warnings,
        ["x-docker-cd.hooks.\"preDeploy\": unknown hook phase, ignored (known: preSync, postSync)"]
    );
    let read = read_text(
        "x-docker-cd:\n  syncWindows: [{schedule: \"0 2 * * 6\", duration: 1h, tz: UTC}]\n",
    );
    assert_eq!(read.error, None);
    assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
    assert!(read.warnings[0].contains("syncWindows[0].\"tz\": unknown key of a window"));
    // Noted, never a warning.
    assert_eq!(
        read_text("x-docker-cd:\n  description: the shop\n").warnings,
        Vec::<String>::new()
    );
}

#[test]
fn invalid_values_are_an_error_naming_the_key_and_what_is_allowed() {
    let cases = [
        (
            "suspend: yes",
            "x-docker-cd.suspend: \"yes\" is not true or false",
        ),
        (
            "drift: off",
            "x-docker-cd.drift: \"off\" is not one of: revert, flag, ignore",
        ),
        (
            "healthTimeout: soon",
            "x-docker-cd.healthTimeout: \"soon\" is not a duration such as 90s, 2m or 1h30m, or 0",
        ),
        (
            "healthTimeout: 120",
            "x-docker-cd.healthTimeout: 120 is not a duration such as 90s, 2m or 1h30m, or 0",
        ),
        (
            "rollbackOnFailure: 1",
            "x-docker-cd.rollbackOnFailure: 1 is not true or false",
        ),
        (
            "dependsOn: db",
            "x-docker-cd.dependsOn: \"db\" is not a list (write [a, b])",
        ),
        (
            "dependsOn: [../db]",
            "x-docker-cd.dependsOn: entry 1 (\"../db\") is not a stack path relative to the deploy directory, such as db or apps/web",
        ),
        (
            "dependsOn: [db, db]",
            "x-docker-cd.dependsOn: entry 2 (\"db\") is listed twice",
        ),
        (
            "files: [/etc/passwd]",
            "x-docker-cd.files: entry 1 (\"/etc/passwd\") is not a file inside the stack directory, such as compose.prod.yaml",
        ),
        (
            "files: [a/../../b.yaml]",
            "x-docker-cd.files: entry 1 (\"a/../../b.yaml\") is not a file inside the stack directory, such as compose.prod.yaml",
        ),
        (
            "files: [{a: b}]",
            "x-docker-cd.files: entry 1 (a mapping) is not text",
        ),
        (
            "profiles: [\"-x\"]",
            "x-docker-cd.profiles: entry 1 (\"-x\") is not a profile name (a letter or digit, then letters, digits, _, . or -)",
        ),
        (
            "hooks: [migrate]",
            "x-docker-cd.hooks: a list is not a mapping of preSync and postSync",
        ),
        (
            "hooks: {preSync: migrate}",
            "x-docker-cd.hooks.preSync: \"migrate\" is not a list of hooks (write [{service: migrate, command: [sh, -c, ./migrate.sh]}])",
        ),
        (
            "hooks: {preSync: [{command: [x]}]}",
            "x-docker-cd.hooks.preSync[0].service: missing (the compose service to run)",
        ),
        (
            "hooks: {postSync: [{service: web, command: ./smoke.sh}]}",
            "x-docker-cd.hooks.postSync[0].command: \"./smoke.sh\" is not a list of arguments (write [sh, -c, ./migrate.sh])",
        ),
        (
            "hooks: {postSync: [{service: \"--rm\", command: [x]}]}",
            "x-docker-cd.hooks.postSync[0].service: \"--rm\" is not a service name of the stack",
        ),
        (
            "hooks: {postSync: [{service: web, user: root}]}",
            "x-docker-cd.hooks.postSync[0].\"user\": unknown key of a hook (known: service, command)",
        ),
        (
            "syncWindows: {schedule: \"0 2 * * 6\"}",
            "x-docker-cd.syncWindows: a mapping is not a list of windows (write [{schedule: \"0 2 * * 6\", duration: 2h}])",
        ),
        (
            "syncWindows: [{schedule: \"0 2 * * 6\"}]",
            "x-docker-cd.syncWindows[0].duration: missing",
        ),
        (
            "syncWindows: [{schedule: \"0 2 * * 6\", duration: 0}]",
            "x-docker-cd.syncWindows[0].duration: 0 is not a duration such as 30m, 2h or 1h30m, more than 0",
        ),
        (
            "syncWindows: [{schedule: 5, duration: 1h}]",
            "x-docker-cd.syncWindows[0].schedule: 5 is not a cron schedule in quotes, such as \"0 2 * * 6\"",
        ),
        (
            "imageUpdates: sometimes",
            "x-docker-cd.imageUpdates: \"sometimes\" is not true or false",
        ),
    ];
    for (yaml, expected) in cases {
        let text = format!("x-docker-cd:\n  {yaml}\nservices: {{a: {{image: x}}}}\n");
        let read = read_text(&text);
        assert_eq!(read.error.as_deref(), Some(expected), "{yaml}");
        // An invalid file has no settings at all: none of it is half applied.
        assert!(read.settings.is_empty(), "{yaml}");
    }
}

#[test]
fn an_invalid_cron_schedule_is_an_error_naming_the_window() {
    let e = error("x-docker-cd:\n  syncWindows: [{schedule: \"0 2 * *\", duration: 2h}]\n");
    assert!(e.starts_with("x-docker-cd.syncWindows[0]: "), "{e}");
    assert!(e.contains("0 2 * *"), "{e}");
}

#[test]
fn hook_arguments_may_be_numbers_and_a_hook_may_have_no_command() {
    let s = settings(
        "x-docker-cd:\n  hooks:\n    postSync:\n      - {service: web, command: [sleep, 5]}\n      - {service: check}\n",
    );
    assert_eq!(
        s.hooks.post_sync,
        [hook("web", &["sleep", "5"]), hook("check", &[])]
    );
}

#[test]
fn the_record_shows_what_the_file_says_and_nothing_else() {
    let s = settings(
        "x-docker-cd:\n  healthTimeout: 90s\n  dependsOn: [db]\n  syncWindows: [{schedule: \"0 2 * * 6\", duration: 2h}]\n  hooks: {preSync: [{service: m, command: [a]}]}\n",
    );
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        serde_json::json!({
            "healthTimeout": "1m 30s",
            "dependsOn": ["db"],
            "hooks": {"preSync": [{"service": "m", "command": ["a"]}]},
            "syncWindows": [{"schedule": "0 2 * * 6", "duration": "2h"}],
        })
    );
    assert_eq!(
        serde_json::to_value(StackSettings::default()).unwrap(),
        serde_json::json!({})
    );
}

#[test]
fn a_list_longer_than_the_cap_is_refused() {
    let many: Vec<String> = (0..=MAX_LIST).map(|i| format!("s{i}")).collect();
    let e = error(&format!(
        "x-docker-cd:\n  dependsOn: [{}]\n",
        many.join(", ")
    ));
    assert_eq!(
        e,
        format!(
            "x-docker-cd.dependsOn: {} entries, more than the {MAX_LIST} allowed",
            MAX_LIST + 1
        )
    );
}

#[test]
fn a_key_that_is_not_text_is_a_warning() {
    let read = read_text("x-docker-cd:\n  1: x\n  suspend: true\n");
    assert_eq!(read.error, None);
    assert_eq!(
        read.warnings,
        ["x-docker-cd.1: a key that is not text is ignored"]
    );
}
