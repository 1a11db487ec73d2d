//! The committed contracts and the architecture's invariants, checked on every run:
//! `schema.graphql` and `leadgate.example.toml` match what the code builds
//! (`UPDATE_SCHEMA=1 cargo test` rewrites both), and modules import only what they may.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares a generated file with the committed one, or rewrites it under UPDATE_SCHEMA=1.
fn check_committed(file: &str, generated: &str) {
    let path = root().join(file);
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{file} is out of date with the code; run `UPDATE_SCHEMA=1 cargo test --test api contracts` and commit it"
    );
}

#[test]
fn schema_graphql_matches_the_code() {
    check_committed("schema.graphql", &leadgate::graphql::sdl());
}

#[test]
fn example_config_matches_the_defaults() {
    check_committed(
        "leadgate.example.toml",
        &leadgate::config::Settings::example_toml(),
    );
}

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(root().join("leadgate.example.toml")).unwrap();
    let parsed: leadgate::config::Settings = toml::from_str(&text).unwrap();
    parsed.validate().unwrap();
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Files under `src/<module>` (or `src/<module>.rs`) that mention any of `words`.
fn offenders(module: &str, words: &[&str]) -> Vec<String> {
    let src = root().join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        files.extend(rust_files(&dir));
    }
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    assert!(!files.is_empty(), "module {module} not found");
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in words {
            if text.contains(word) {
                found.push(format!(
                    "{} mentions `{word}`",
                    path.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    found
}

#[test]
fn only_store_speaks_sql() {
    for module in [
        "domain", "service", "graphql", "http", "auth", "bulk", "enrich", "events", "crypto", "jobs", "ops",
        "net",
    ] {
        let found = offenders(module, &["sqlx"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

#[test]
fn only_graphql_imports_async_graphql() {
    for module in [
        "domain", "store", "service", "http", "auth", "bulk", "enrich", "events", "crypto", "jobs", "ops",
        "net",
    ] {
        let found = offenders(module, &["async_graphql"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

/// Every Redis command goes through `cluster::Redis`, with its timeout and fallback.
#[test]
fn only_cluster_speaks_redis() {
    for module in [
        "domain", "store", "service", "graphql", "http", "auth", "bulk", "enrich", "events", "crypto",
        "jobs", "ops", "net", "limits", "crm", "mail",
    ] {
        let found = offenders(module, &["redis::"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

/// RabbitMQ is `jobs::amqp`'s business: no other file names its client.
#[test]
fn only_jobs_amqp_speaks_amqp() {
    let amqp = root().join("src/jobs/amqp");
    let mut found = Vec::new();
    for path in rust_files(&root().join("src")) {
        if path.starts_with(&amqp) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("lapin") {
            found.push(path.strip_prefix(root()).unwrap().display().to_string());
        }
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn only_http_imports_axum() {
    for module in [
        "domain", "store", "service", "graphql", "auth", "bulk", "enrich", "events", "crypto", "jobs", "ops",
        "net",
    ] {
        let found = offenders(module, &["axum"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

/// `net` builds the guarded clients; `enrich`, `crm` and `events` (webhooks) send requests.
#[test]
fn only_enrich_crm_and_webhooks_call_out() {
    for module in [
        "domain", "store", "service", "graphql", "http", "auth", "bulk", "crypto", "jobs", "ops",
    ] {
        let found = offenders(module, &["reqwest"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

#[test]
fn domain_does_no_io_and_knows_no_framework() {
    let found = offenders(
        "domain",
        &["tokio", "std::fs", "std::net", "reqwest", "async fn", "tracing"],
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn resolvers_never_touch_the_store() {
    let found = offenders("graphql", &["crate::store::Store", ".store."]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn graphql_reads_context_data_checked() {
    let found = offenders("graphql", &["data_unchecked"]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn graphql_and_http_see_no_store_types() {
    for module in ["graphql", "http"] {
        let found = offenders(module, &["crate::store"]);
        assert!(found.is_empty(), "{found:?}");
    }
}

/// Every environment variable the command line reads: the settings' own and the command
/// inputs clap reads (`LEADGATE_TOKEN_ROLE`, …).
fn environment_variables() -> Vec<String> {
    fn inputs(command: &clap::Command, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            inputs(sub, out);
        }
    }
    let mut vars: Vec<String> = leadgate::config::fields()
        .iter()
        .map(|f| leadgate::config::env_var(f))
        .collect();
    inputs(&leadgate::cli::command(), &mut vars);
    vars
}

#[test]
fn docker_files_use_only_settings_the_cli_reads() {
    let vars = environment_variables();
    let command = leadgate::cli::command();
    for file in [
        "docker/Dockerfile",
        "docker/compose.yml",
        "deploy/base/configmap.yaml",
        "deploy/base/serve-deployment.yaml",
        "deploy/base/worker-deployment.yaml",
        "deploy/base/migrate-job.yaml",
        "deploy/overlays/staging/kustomization.yaml",
        "deploy/overlays/production/kustomization.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for (i, _) in text.match_indices("LEADGATE_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            assert!(
                vars.contains(&name),
                "{file} uses {name}, which the CLI does not read"
            );
        }
        for used in ["serve", "workspace create", "token --workspace"] {
            if text.contains(&format!("leadgate {used}")) {
                let name = used.split(' ').next().unwrap_or(used);
                assert!(
                    command.find_subcommand(name).is_some(),
                    "{file}: no `leadgate {name}`"
                );
            }
        }
    }
}

/// Each setting is read from `LEADGATE_<NAME>`: a changed number or boolean there changes the
/// setting, and every other setting accepts its default written as a variable.
#[test]
fn every_setting_has_an_environment_variable() {
    use leadgate::config::{Flags, Settings, env_var, fields};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let defaults: toml::Table = toml::from_str(&Settings::default_toml()).unwrap();
    let plain = Settings::load_with_env(Some(&file), &Flags::default(), &|_| None).unwrap();
    let plain: toml::Table = toml::from_str(&toml::to_string(&plain).unwrap()).unwrap();
    for field in fields() {
        let (text, changed) = match defaults.get(*field) {
            Some(toml::Value::Integer(n)) => ((n + 1).to_string(), true),
            Some(toml::Value::Boolean(b)) => ((!b).to_string(), true),
            Some(toml::Value::String(s)) => (s.clone(), false),
            Some(other) => (other.to_string(), false),
            // unset by default
            None => match *field {
                "jwt_secret" => ("a-secret-of-at-least-thirty-two-bytes".into(), false),
                "master_key" => ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(), false),
                "backup_schedule" => ("0 2 * * *".into(), false),
                "introspection" => ("never".into(), false),
                "smtp_url" => ("smtp://127.0.0.1:2525".into(), false),
                "public_url" => ("https://leads.example.com".into(), false),
                "mail_webhook_secret" | "mailgun_signing_key" => ("a-webhook-signing-secret".into(), false),
                "sendgrid_public_key" => ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQc=".into(), false),
                "sendgrid_inbound_basic" => ("parse:secret".into(), false),
                "redis_url" => ("rediss://default:secret@redis.example.com:6379".into(), false),
                "queue_url" => ("amqps://leadgate:secret@mq.example.com/prod".into(), false),
                "persisted_queries_file" => ("operations.json".into(), false),
                "metrics_listen" => ("0.0.0.0:9090".into(), false),
                "sentry_dsn" => ("https://publickey@o1.ingest.sentry.io/42".into(), false),
                other => panic!("setting `{other}` has no default: add a value for it here"),
            },
        };
        let var = env_var(field);
        // a setting that only makes sense with another gets that one too
        let needs = match *field {
            "queue_events" => Some(("LEADGATE_QUEUE_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")),
            _ => None,
        };
        let loaded = Settings::load_with_env(Some(&file), &Flags::default(), &|name| {
            if name == var {
                return Some(text.clone().into());
            }
            needs
                .filter(|(other, _)| *other == name)
                .map(|(_, value)| value.into())
        })
        .unwrap_or_else(|e| panic!("{var}={text}: {e}"));
        let loaded: toml::Table = toml::from_str(&toml::to_string(&loaded).unwrap()).unwrap();
        if changed {
            assert_ne!(loaded.get(*field), plain.get(*field), "{var} is not read");
        }
    }
}

/// The layers, bottom up, and the modules each may name (`crate::<module>`). A module may use
/// only what sits below it; `config`, `telemetry`, `cli` and `app` assemble everything and are
/// not listed.
const LAYERS: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("net", &[]),
    ("cluster", &[]),
    ("limits", &["domain", "cluster"]),
    ("store", &["domain"]),
    ("crypto", &["domain"]),
    ("auth", &["domain"]),
    ("enrich", &["domain", "store", "crypto", "net", "cluster"]),
    ("crm", &["domain", "net"]),
    ("mail", &[]),
    ("jobs", &["domain", "store"]),
    ("events", &["domain", "store", "crypto", "jobs", "net"]),
    ("bulk", &["domain", "store"]),
    ("ops", &["domain", "store", "jobs"]),
    (
        "service",
        &[
            "domain", "store", "crypto", "enrich", "crm", "mail", "jobs", "events", "bulk", "ops", "net",
            "cluster",
        ],
    ),
    ("graphql", &["domain", "service", "limits", "cluster"]),
    ("http", &["domain", "service", "graphql", "auth", "limits"]),
];

/// The `crate::<module>` names in a file's code (comments left out).
fn crate_modules_named(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let layer_names: Vec<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut found = Vec::new();
    for (module, allowed) in LAYERS {
        let src = root().join("src");
        let mut files = Vec::new();
        if src.join(module).is_dir() {
            files.extend(rust_files(&src.join(module)));
        }
        if src.join(format!("{module}.rs")).is_file() {
            files.push(src.join(format!("{module}.rs")));
        }
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for named in crate_modules_named(&text) {
                let upward = named != *module
                    && !allowed.contains(&named.as_str())
                    && (layer_names.contains(&named.as_str())
                        || ["config", "telemetry", "cli", "app"].contains(&named.as_str()));
                if upward {
                    found.push(format!(
                        "{} names crate::{named}",
                        path.strip_prefix(root()).unwrap().display()
                    ));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "imports against the layering: {found:#?}");
}

/// Code lines (comments stripped) of every source file, with their place.
fn code_lines() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if !code.trim().is_empty() {
                out.push((format!("{name}:{}", i + 1), code.to_owned()));
            }
        }
    }
    out
}

#[test]
fn pagination_is_keyset_only() {
    let found: Vec<_> = code_lines()
        .into_iter()
        .filter(|(_, code)| {
            // SQL keywords are written in capitals here
            let text = code.as_str();
            text.match_indices("OFFSET").any(|(at, _)| {
                let before = text[..at].chars().next_back();
                let after = text[at + "OFFSET".len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .map(|(place, code)| format!("{place}: {}", code.trim()))
        .collect();
    assert!(found.is_empty(), "OFFSET in SQL: {found:#?}");
}

#[test]
fn no_global_mutable_state() {
    // Statics are allowed only for values computed once and never changed (`LazyLock`/`OnceLock`
    // of plain data, the allocator); state is passed in.
    let mutable = ["Mutex", "RwLock", "Atomic", "Cell<", "RefCell", "ArcSwap"];
    let found: Vec<_> = code_lines()
        .into_iter()
        .filter(|(_, code)| {
            let t = code.trim_start();
            t.starts_with("static mut")
                || t.contains("thread_local!")
                || t.contains("lazy_static!")
                || ((t.starts_with("static ")
                    || t.starts_with("pub static ")
                    || t.starts_with("pub(crate) static "))
                    && mutable.iter().any(|m| t.contains(m)))
        })
        .map(|(place, code)| format!("{place}: {}", code.trim()))
        .collect();
    assert!(found.is_empty(), "global mutable state: {found:#?}");
}

/// Every job kind the code can enqueue is registered: a `NewJob` takes only a `JobKind`, a
/// `JobKind` is made only by `JobKind::new` from a string literal (checked here), and every
/// such literal under `src/` must be a line of `app::JOB_KINDS`, once. A kind with a handler
/// and no line, or a kind enqueued that nothing runs, fails here.
#[test]
fn every_job_kind_the_code_names_is_registered() {
    use std::collections::BTreeSet;
    const MAKER: &str = "JobKind::new(";
    let mut named = BTreeSet::new();
    let mut computed = Vec::new();
    for path in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find(MAKER) {
                rest = &rest[at + MAKER.len()..];
                let literal = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split_once('"'))
                    .map(|(name, _)| name.to_owned());
                match literal {
                    Some(name) => {
                        named.insert(name);
                    }
                    None => computed.push(format!(
                        "{}:{}: {}",
                        path.strip_prefix(root()).unwrap().display(),
                        n + 1,
                        line.trim()
                    )),
                }
            }
        }
    }
    assert!(
        computed.is_empty(),
        "a JobKind must be made from a string literal, so that this test sees it: {computed:#?}"
    );
    let listed: Vec<String> = leadgate::app::JOB_KINDS
        .iter()
        .map(|l| l.kind.to_string())
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a kind is listed twice: {listed:?}");
    let unlisted: Vec<&String> = named.difference(&unique).collect();
    assert!(
        unlisted.is_empty(),
        "job kinds the code names but app::JOB_KINDS does not list: {unlisted:?}"
    );
    assert_eq!(named, unique, "every listed kind is named in src/");
    for kind in ["enrich.leads", "leads.import", "noop"] {
        assert!(named.contains(kind), "{kind} is not found: the scan misses kinds");
    }
}

/// The shipped build has no test job kinds: no default feature turns `test-kinds` on, and
/// everything that names the test kinds is compiled only with that feature. (`cargo test` turns
/// it on through the crate's dev-dependency on itself; `cargo build` does not.)
#[test]
fn the_shipped_build_has_no_test_job_kinds() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let features = manifest["features"].as_table().unwrap();
    let default = features
        .get("default")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        !default.iter().any(|f| f.as_str() == Some("test-kinds")),
        "the default features turn on test-kinds: {default:?}"
    );
    let mut ungated = Vec::new();
    for (place, code) in code_lines() {
        if place.starts_with("src/jobs/test_kinds.rs") || !code.contains("test_kinds") {
            continue;
        }
        if code.contains("job_test_kinds") && !code.contains("test_kinds::") {
            continue; // the setting, which refuses to start a build without the kinds
        }
        ungated.push(place);
    }
    // each remaining line must follow a `#[cfg(feature = "test-kinds")]` line
    for place in &ungated {
        let (file, line) = place.rsplit_once(':').unwrap();
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let n: usize = line.parse().unwrap();
        let previous = text.lines().nth(n - 2).unwrap_or_default();
        assert!(
            previous.contains("cfg(feature = \"test-kinds\")"),
            "{place} names the test kinds outside the test-kinds feature"
        );
    }
    assert!(
        !ungated.is_empty(),
        "the scan found no use of the test kinds: it misses them"
    );
}
