//! HTTP metrics, one registry per router: requests by route, method and status, and latency
//! by route, counted by a middleware around every route (`record`); and the process's own
//! families (`process_families`): `leadgate_build_info`, and CPU time, resident memory, open
//! files and start time read from `/proc/self` at scrape time (absent where there is no
//! `/proc`).
//!
//! The route is axum's template (`/webhooks/crm/{id}`), never the path a client sent, so ids
//! and tokens in paths are not labels; a request no route matched is `other`. Latency runs to
//! the response head: a streamed export's body is not in it.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// Every route template the router registers; a template missing here still gets its own
/// label, only at the cost of an allocation per request.
const ROUTES: &[&str] = &[
    "/graphql",
    "/graphql/ws",
    "/graphiql",
    "/console",
    "/console/",
    "/console/app.js",
    "/console/app.css",
    "/export/leads.csv",
    "/export/leads.ndjson",
    "/imports/{id}/errors.csv",
    "/healthz",
    "/readyz",
    "/metrics",
    "/webhooks/crm/{id}",
    "/webhooks/email/{provider}",
    "/u/{token}",
    "/c/{token}",
];

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Cow<'static, str>,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Cow<'static, str>,
}

/// The HTTP metric families; cheap to clone.
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate_http");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by route template",
            duration.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            duration,
        }
    }

    fn observe(&self, route: Cow<'static, str>, method: &'static str, status: u16, started: Instant) {
        self.duration
            .get_or_create(&RouteLabels { route: route.clone() })
            .observe(started.elapsed().as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// The families in the Prometheus text format, without a closing `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`): added with `Router::layer`, it runs
/// after routing, so the matched template is in the request's extensions.
pub(super) async fn record(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(route, method, response.status().as_u16(), started);
    response
}

fn route_label(matched: Option<&MatchedPath>) -> Cow<'static, str> {
    match matched.map(MatchedPath::as_str) {
        None => Cow::Borrowed(UNMATCHED),
        Some(path) => match ROUTES.iter().find(|r| **r == path) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(path.to_owned()),
        },
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// `leadgate_build_info` and the process families, from `/proc/self` where there is one.
pub fn process_families() -> String {
    let mut out = format!(
        "# HELP leadgate_build_info The running build (always 1).\n\
         # TYPE leadgate_build_info gauge\n\
         leadgate_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(process) = ProcessStats::read() {
        out.push_str(&process.render());
    }
    out
}

/// What `/proc/self` says about this process.
#[derive(Debug, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux architecture
/// the kernel exposes to user space, which is why reading `sysconf` is not needed.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let (utime, stime, start_ticks) = parse_stat(&stat)?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s));
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_bytes: parse_rss_bytes(&status)?,
            open_fds,
            start_time_seconds: boot.map(|boot| boot as f64 + start_ticks as f64 / USER_HZ),
        })
    }

    fn render(&self) -> String {
        let mut out = format!(
            "# HELP process_cpu_seconds_total User and system CPU time spent.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {}\n\
             # HELP process_resident_memory_bytes Resident memory size.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes {}\n",
            self.cpu_seconds, self.resident_bytes
        );
        if let Some(fds) = self.open_fds {
            out.push_str(&format!(
                "# HELP process_open_fds Open file descriptors.\n\
                 # TYPE process_open_fds gauge\n\
                 process_open_fds {fds}\n"
            ));
        }
        if let Some(start) = self.start_time_seconds {
            out.push_str(&format!(
                "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n\
                 # TYPE process_start_time_seconds gauge\n\
                 process_start_time_seconds {start}\n"
            ));
        }
        out
    }
}

/// `utime`, `stime` and `starttime` (fields 14, 15 and 22) of `/proc/self/stat`; the command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?))
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the Unix epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 200000000 5000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 75, 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tleadgate\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_bytes(status), Some(5120 * 1024));
        assert_eq!(parse_rss_bytes("Name:\tx\n"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reports_build_info_and_when_on_linux_its_memory_and_cpu() {
        let text = process_families();
        assert!(
            text.contains(&format!(
                "leadgate_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            let rss = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{text}"));
            assert!(
                rss > 1 << 20,
                "a running test binary holds more than a MiB: {text}"
            );
            assert!(text.contains("process_cpu_seconds_total "), "{text}");
        }
    }

    #[test]
    fn routes_are_templates_and_methods_are_bounded() {
        assert_eq!(route_label(None), "other");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("method")),
            "other"
        );
    }
}
