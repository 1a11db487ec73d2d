//! The `leadgate` binary as an operator uses it: schema, workspaces, tokens, seed, and
//! `serve --demo` from start to graceful shutdown, configured by flags, environment and file.

use crate::helpers::{backends, fresh_database};
use serde_json::{Value, json};
use std::process::Output;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_leadgate");
const SECRET: &str = "cli-test-secret-0123456789-0123456789-abcdef";

/// Runs the binary to completion in `dir` with `LEADGATE_*` cleared except `env`.
async fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env("LEADGATE_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run leadgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn schema_command_prints_the_committed_sdl() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["schema"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        stdout(&out) == committed,
        "`leadgate schema` differs from schema.graphql"
    );
}

#[tokio::test]
async fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["worker", "--help"],
        vec!["migrate", "--help"],
        vec!["schema", "--help"],
        vec!["workspace", "--help"],
        vec!["workspace", "create", "--help"],
        vec!["workspace", "list", "--help"],
        vec!["token", "--help"],
        vec!["seed", "--help"],
        vec!["import", "--help"],
        vec!["erase", "--help"],
    ] {
        let out = run(dir.path(), &args, &[]).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let out = run(dir.path(), &["serve", "--help"], &[]).await;
    assert!(
        stdout(&out).contains("LEADGATE_LISTEN"),
        "flags name their environment variable"
    );
}

#[tokio::test]
async fn workspaces_tokens_and_seed_from_the_command_line() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _guard) = fresh_database(backend).await;
        let env = [
            ("LEADGATE_DATABASE_URL", url.as_str()),
            ("LEADGATE_JWT_SECRET", SECRET),
        ];
        let out = run(dir.path(), &["migrate"], &env).await;
        assert!(out.status.success(), "{backend:?}: {}", stderr(&out));

        let out = run(
            dir.path(),
            &["workspace", "create", "acme", "--name", "Acme Inc"],
            &env,
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(dir.path(), &["workspace", "create", "acme"], &env).await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("already has this slug"), "{}", stderr(&out));
        let out = run(dir.path(), &["workspace", "create", "Bad Slug"], &env).await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("slug"), "{}", stderr(&out));

        let out = run(
            dir.path(),
            &["seed", "--workspace", "acme", "--leads", "1234"],
            &env,
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(dir.path(), &["workspace", "list"], &env).await;
        assert_eq!(stdout(&out).trim(), "acme\tAcme Inc\t1234 leads", "{backend:?}");

        let out = run(
            dir.path(),
            &["token", "--workspace", "nope", "--role", "admin"],
            &env,
        )
        .await;
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("unknown workspace `nope`"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());

        let out = run(
            dir.path(),
            &["token", "--workspace", "acme", "--role", "boss"],
            &env,
        )
        .await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("not a role"), "{}", stderr(&out));

        let out = run(
            dir.path(),
            &["token", "--workspace", "acme", "--role", "viewer", "--ttl", "2h"],
            &env,
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out);
        assert_eq!(token.lines().count(), 1, "only the token on stdout");
        assert_eq!(token.trim().split('.').count(), 3);
    }
}

#[tokio::test]
async fn token_without_any_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let env = [("LEADGATE_DATABASE_URL", url.as_str())];
    assert!(
        run(dir.path(), &["workspace", "create", "acme"], &env)
            .await
            .status
            .success()
    );
    let out = run(
        dir.path(),
        &["token", "--workspace", "acme", "--role", "admin"],
        &env,
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("LEADGATE_JWT_SECRET"), "{}", stderr(&out));
}

#[tokio::test]
async fn bad_settings_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leadgate.toml"), "max_batch = 0\n").unwrap();
    let out = run(dir.path(), &["migrate"], &[]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max_batch"), "{}", stderr(&out));
    std::fs::write(dir.path().join("leadgate.toml"), "lisen = \"x\"\n").unwrap();
    let out = run(dir.path(), &["migrate"], &[]).await;
    assert!(stderr(&out).contains("lisen"), "{}", stderr(&out));
    let out = run(dir.path(), &["migrate", "--database-url", "mysql://x"], &[]).await;
    assert!(stderr(&out).contains("database_url"), "{}", stderr(&out));
}

/// A `serve` process and what it printed before it was ready.
pub struct Server {
    child: Child,
    pub base: String,
    token: Option<String>,
    banner: String,
}

/// Starts `serve` with `args` and reads its banner up to the ready line(s).
pub async fn start(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)], demo: bool) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .env("LEADGATE_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let mut base = None;
    let mut token = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("leadgate is serving on ") {
                base = rest.split_whitespace().next().map(str::to_owned);
                if !demo {
                    break;
                }
            }
            if line.split('.').count() == 3 && !line.contains(' ') {
                token = Some(line);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("serve printed its banner in time");
    Server {
        child,
        base: base.expect("serving line"),
        token,
        banner,
    }
}

async fn graphql(base: &str, token: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn terminate(mut server: Server) {
    let pid = server.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[tokio::test]
async fn serve_demo_is_ready_at_once_idempotent_and_stops_on_sigterm() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _guard) = fresh_database(backend).await;
        let env = [("LEADGATE_DATABASE_URL", url.as_str())];
        let server = start(dir.path(), &["--demo", "--listen", "127.0.0.1:0"], &env, true).await;
        assert!(server.banner.contains("GraphiQL: http://"), "{}", server.banner);
        assert!(
            server.banner.contains("10000 leads (created now)"),
            "{}",
            server.banner
        );
        let token = server.token.clone().expect("token printed");
        let data = graphql(
            &server.base,
            &token,
            "{ viewer { role workspace { slug } } leads(first: 3) { totalCount edges { node { email } } } }",
        )
        .await;
        assert_eq!(
            data["data"]["viewer"],
            json!({"role": "ADMIN", "workspace": {"slug": "demo"}})
        );
        assert_eq!(data["data"]["leads"]["totalCount"], json!(10_000), "{backend:?}");
        let page = reqwest::get(format!("{}/graphiql", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&token), "GraphiQL presets the demo token");

        // `token` against the same database reuses the secret the demo stored
        let out = run(
            dir.path(),
            &["token", "--workspace", "demo", "--role", "viewer"],
            &env,
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let viewer = stdout(&out).trim().to_owned();
        let data = graphql(&server.base, &viewer, "{ viewer { role } }").await;
        assert_eq!(data["data"]["viewer"]["role"], json!("VIEWER"));
        terminate(server).await;

        // a second start finds the demo and adds nothing
        let server = start(dir.path(), &["--demo", "--listen", "127.0.0.1:0"], &env, true).await;
        assert!(server.banner.contains("10000 leads\n"), "{}", server.banner);
        let token = server.token.clone().unwrap();
        let data = graphql(&server.base, &token, "{ leads { totalCount } }").await;
        assert_eq!(data["data"]["leads"]["totalCount"], json!(10_000));
        terminate(server).await;
    }
}

#[tokio::test]
async fn serve_reads_the_config_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("file.db").display());
    std::fs::write(
        dir.path().join("leadgate.toml"),
        format!("database_url = \"{url}\"\nlisten = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let env = [
        ("LEADGATE_JWT_SECRET", SECRET),
        ("LEADGATE_LISTEN", "127.0.0.1:0"),
    ];
    let server = start(dir.path(), &[], &env, false).await;
    assert!(
        dir.path().join("file.db").exists(),
        "database_url came from leadgate.toml"
    );
    assert!(
        !server.base.ends_with(":1"),
        "LEADGATE_LISTEN overrides the file: {}",
        server.base
    );
    terminate(server).await;
}

#[tokio::test]
async fn serve_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--demo"), "{}", stderr(&out));
}
