//! What the benchmark programs share: the server child and its stop, `/proc` readings (CPU
//! ticks, memory), rounding, and the figures table printed as text and as Markdown. Each
//! program includes it with `mod common;`, and each uses part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

pub struct Server {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
}

impl Server {
    /// SIGTERM, up to 15 s for a graceful shutdown, then SIGKILL.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("server {} ignored SIGTERM for 15 s; killing it", self.pid);
            let _ = self.child.kill().await;
        }
    }
}

/// utime + stime of a process in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// A `kB` line of /proc/PID/status (`VmHWM`, `VmRSS`), in MB.
pub fn status_mb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| round1(kb / 1024.0))
}

pub fn clk_tck() -> f64 {
    getconf("CLK_TCK").and_then(|s| s.parse().ok()).unwrap_or(100.0)
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub struct Row {
    pub scenario: &'static str,
    pub figure: String,
    pub value: String,
    pub target: String,
    pub verdict: &'static str,
}

pub fn row(scenario: &'static str, figure: &str, value: String, target: &str, met: Option<bool>) -> Row {
    Row {
        scenario,
        figure: figure.to_owned(),
        value,
        target: target.to_owned(),
        verdict: match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        },
    }
}

pub fn table(rows: &[Row]) -> String {
    let head = ["scenario", "figure", "value", "target", "verdict"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario,
                r.figure.as_str(),
                r.value.as_str(),
                r.target.as_str(),
                r.verdict,
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: [&str; 5]| {
        let mut l = String::new();
        for (w, cell) in widths.iter().zip(c) {
            let _ = write!(l, "{cell}{}  ", " ".repeat(w - cell.chars().count()));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, head);
    let rules = widths.map(|w| "-".repeat(w));
    line(&mut out, [0, 1, 2, 3, 4].map(|i| rules[i].as_str()));
    for c in cells {
        line(&mut out, c);
    }
    out
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| scenario | figure | value | target | verdict |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.figure, r.value, r.target, r.verdict
        );
    }
    out
}

pub fn getconf(name: &str) -> Option<String> {
    std::process::Command::new("getconf")
        .arg(name)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The `leadgate` binary as a benchmark drives it: commands with only the benchmark's settings
/// (no inherited `LEADGATE_*`, run from the results directory so that no `leadgate.toml` is
/// picked up), and `serve` on a free port, ready when `/readyz` answers.
pub struct Leadgate {
    pub bin: std::path::PathBuf,
    pub results: std::path::PathBuf,
    pub database_url: String,
    pub jwt_secret: &'static str,
    /// Extra `LEADGATE_*` settings for the server (recorded with the results).
    pub server_env: Vec<(String, String)>,
}

impl Leadgate {
    /// A command on the benchmark's database; the CLI logs errors only (the seed's
    /// slow-statement warnings are expected).
    pub fn leadgate(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LEADGATE_") {
                cmd.env_remove(key);
            }
        }
        // throughput is measured without rate limits (bench/scale.sh measures those); a
        // benchmark's own env or --server-env may still set them
        cmd.current_dir(&self.results)
            .env("LEADGATE_DATABASE_URL", &self.database_url)
            .env("LEADGATE_JWT_SECRET", self.jwt_secret)
            .env("LEADGATE_LOG", "error")
            .env("LEADGATE_RATE_LIMIT", "off")
            .env("LEADGATE_RATE_LIMIT_ANONYMOUS", "off")
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs a command to completion; its stdout.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        use anyhow::Context as _;
        let out = self
            .leadgate()
            .args(args)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "`leadgate {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `leadgate serve` on a free port with `env` beside the server settings, its output
    /// appended to `log`, and waits up to 60 s for `/readyz`.
    pub async fn serve(&self, env: &[(&str, String)], log: &std::path::Path) -> anyhow::Result<Server> {
        use anyhow::Context as _;
        use std::process::Stdio;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = self
            .leadgate()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("LEADGATE_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(self.server_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start leadgate serve")?;
        let pid = child.id().context("the server has no pid")?;
        let mut server = Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            let ready = http
                .get(format!("{}/readyz", server.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!(
                    "the server exited before it was ready ({status}); see {}",
                    log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the server was not ready within 60 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("== server pid {} on {}", server.pid, server.base);
        Ok(server)
    }
}

/// Runs one statement with `psql` on the server's `postgres` database; its output, trimmed.
pub async fn psql(server: &str, sql: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let out = tokio::process::Command::new("psql")
        .args([
            &format!("{server}/postgres"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run psql")?;
    if !out.status.success() {
        anyhow::bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `--server-env LEADGATE_NAME=VALUE` arguments as pairs; anything else is refused.
pub fn server_env(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if k.starts_with("LEADGATE_") => Ok((k.to_owned(), v.to_owned())),
            _ => Err(anyhow::anyhow!(
                "--server-env takes LEADGATE_NAME=VALUE, not `{kv}`"
            )),
        })
        .collect()
}

/// `bench/results` under the repository, created if missing.
pub fn results_dir() -> anyhow::Result<std::path::PathBuf> {
    let results = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&results)?;
    Ok(results)
}

/// The release `leadgate` binary: `given`, else `$CARGO_TARGET_DIR` (or `target`)`/release/leadgate`.
pub fn release_bin(given: Option<std::path::PathBuf>) -> std::path::PathBuf {
    given.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
                std::path::PathBuf::from,
            )
            .join("release/leadgate")
    })
}

/// A fresh, empty database for a benchmark called `name`: the SQLite file
/// `results/<name>.sqlite` (removed with its WAL first), or the PostgreSQL database
/// `leadgate_bench_<name>` on 127.0.0.1 (dropped and created); its URL.
pub async fn fresh_database(results: &std::path::Path, backend: &str, name: &str) -> anyhow::Result<String> {
    const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
    match backend {
        "sqlite" => {
            let file = results.join(format!("{name}.sqlite"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            Ok(format!("sqlite://{}", file.display()))
        }
        "postgres" => {
            let db = format!("leadgate_bench_{name}");
            psql(PG_SERVER, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?;
            psql(PG_SERVER, &format!("CREATE DATABASE {db}")).await?;
            Ok(format!("{PG_SERVER}/{db}"))
        }
        other => anyhow::bail!("--backend is sqlite or postgres, not {other}"),
    }
}
