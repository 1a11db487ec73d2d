//! The scrubber every event and breadcrumb passes before it leaves (`before_send`,
//! `before_breadcrumb`). It keeps what is listed and assumes the rest carries a lead's data:
//! - kept: level, release, environment, server name, stack traces, the logger and source
//!   location, the request's method and path (words and ids only), the span tags (`TAGS`), the
//!   ids among log fields (`ID_FIELDS`), and the headers in `SAFE_HEADERS`;
//! - dropped: the user, cookies, the body, the request's environment, every other header, the
//!   values of the query string but `operationName`'s;
//! - free text — messages, exception values (a panic's text), other log fields — goes through
//!   `prose`: emails, phone numbers, JWTs, `lg_` keys, credentials in URLs, `Bearer`/`Basic`
//!   values, `name=value` secrets, PostgreSQL's `(column)=(value)` and long key-like tokens
//!   are replaced, quoted values too, then every word that is not lower-case prose, a number,
//!   a UUID or a piece of Rust code. A stored value a database or a provider echoes in an error
//!   is how a lead's name reaches a message; names are capitalised, so they go.

use regex::{Captures, Regex};
use sentry::protocol::{Breadcrumb, Context, Event, Map, Request, Value};
use std::sync::LazyLock;

/// Span fields that become tags (`sentry::layer`), kept as tags.
pub(super) const TAGS: &[&str] = &["request_id", "operation", "workspace_id", "job_kind", "job_id"];

/// Log fields whose values are ids or kinds, kept (after the patterns); other fields are prose.
const ID_FIELDS: &[&str] = &[
    "request_id",
    "operation",
    "workspace_id",
    "workspace",
    "job_kind",
    "job_id",
    "job",
    "kind",
    "provider",
    "connection",
    "code",
    "status",
    "attempt",
    "attempts",
    "jobs",
    "backend",
    "method",
];

/// Request headers that say nothing about the caller.
const SAFE_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "user-agent",
    "x-request-id",
];

/// Upper-case words an error message may hold that are no one's name.
const TECHNICAL_WORDS: &[&str] = &[
    "API",
    "CHECK",
    "CRM",
    "DNS",
    "Err",
    "FOREIGN",
    "GET",
    "GraphQL",
    "HTTP",
    "HTTPS",
    "ID",
    "JSON",
    "KEY",
    "Key",
    "None",
    "NOT",
    "NULL",
    "Ok",
    "POST",
    "PostgreSQL",
    "PRIMARY",
    "SMTP",
    "SQL",
    "SQLite",
    "Some",
    "TLS",
    "UNIQUE",
    "URL",
    "UTF-8",
];

const REDACTED: &str = "[redacted]";
/// What the patterns replace data with.
const PLACEHOLDERS: &[&str] = &[REDACTED, "[email]", "[phone]", "[jwt]", "[api key]"];

/// Each pattern a named group, tried left to right at each place; a UUID is matched first so
/// that it stays whole.
static PATTERNS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)",
        r"|(?P<jwt>\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)",
        r"|(?P<key>\blg_[A-Za-z0-9_-]+)",
        r"|(?P<userinfo>://[^/\s@]+@)",
        r"|(?P<email>[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)",
        r"|(?P<scheme>(?i:\b(?:bearer|basic|digest)\s+))[A-Za-z0-9._~+/=-]+",
        r"|(?P<name>(?i:\b[a-z_.-]*(?:key|token|secret|password|passwd|pwd|signature|credential|auth|session|cookie)[a-z_.-]*))\s*[=:]\s*(?:(?i:bearer|basic|digest)\s+[^\s&,;]+|\x22[^\x22]*\x22|'[^']*'|[^\s&,;]+)",
        r"|(?P<detail>\([^()]*\)=)\([^()]*\)",
        r"|(?P<phone>\+?\d[\d \t().-]{5,}\d)",
        r"|(?P<token>[A-Za-z0-9_+/=-]{20,})",
    ))
    .expect("the scrub patterns compile")
});

/// Quoted values: double quotes, backticks, and single quotes that open after a space or a
/// bracket (so that "can't" stays).
static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(?P<double>[^"]*)"|`(?P<tick>[^`]*)`|(?P<lead>^|[\s(\[{=:,])'[^']*'"#)
        .expect("the quote pattern compiles")
});

/// Redactions side by side, to be merged into one.
static RUNS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[redacted\](?:\s+\[redacted\])+").expect("the runs pattern compiles"));

/// `Path::to::item`, `Option::unwrap()`: code, not data.
static RUST_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_<>][A-Za-z0-9_<>]*)+(?:\(\))?$")
        .expect("the path pattern compiles")
});

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
        .expect("the uuid pattern compiles")
});

/// An event as it may leave.
pub fn event(mut event: Event<'static>) -> Event<'static> {
    event.user = None;
    event.template = None;
    event.request = event.request.map(request);
    event.message = event.message.map(|m| prose(&m));
    if let Some(entry) = &mut event.logentry {
        entry.message = prose(&entry.message);
        entry.params.clear();
    }
    event.culprit = event.culprit.map(|c| text(&c));
    event.transaction = event.transaction.map(|t| text(&t));
    event.tags = std::mem::take(&mut event.tags)
        .into_iter()
        .filter(|(name, _)| TAGS.contains(&name.as_str()))
        .map(|(name, value)| (name, text(&value)))
        .collect();
    event.extra = fields(std::mem::take(&mut event.extra));
    event.contexts = std::mem::take(&mut event.contexts)
        .into_iter()
        .filter_map(|(name, context)| context_of(&name, context).map(|c| (name, c)))
        .collect();
    for exception in &mut event.exception.values {
        exception.value = exception.value.as_deref().map(prose);
    }
    let crumbs = std::mem::take(&mut event.breadcrumbs.values);
    event.breadcrumbs.values = crumbs.into_iter().map(breadcrumb).collect();
    event
}

/// A breadcrumb as it may leave.
pub fn breadcrumb(mut crumb: Breadcrumb) -> Breadcrumb {
    crumb.message = crumb.message.map(|m| prose(&m));
    crumb.data = fields(std::mem::take(&mut crumb.data));
    crumb
}

/// Contexts: the runtime's own (os, device, rust) stay; log fields are scrubbed like fields;
/// a response's or another tracer's go.
fn context_of(name: &str, context: Context) -> Option<Context> {
    match context {
        Context::Other(map) if name == "Rust Tracing Location" => Some(Context::Other(map)),
        Context::Other(map) => Some(Context::Other(fields(map))),
        Context::Trace(mut trace) => {
            trace.data.clear();
            Some(Context::Trace(trace))
        }
        Context::Device(_) | Context::Os(_) | Context::Runtime(_) | Context::App(_) | Context::Gpu(_) => {
            Some(context)
        }
        _ => None,
    }
}

/// Log fields: ids keep their value (after the patterns), anything else is prose.
fn fields(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(name, value)| {
            let id = ID_FIELDS.contains(&name.as_str());
            let value = json(value, if id { text } else { prose });
            (name, value)
        })
        .collect()
}

fn json(value: Value, scrub: fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(scrub(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| json(v, scrub)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (text(&k), json(v, scrub))).collect())
        }
        other => other,
    }
}

/// The request: method, the URL without its query and with only words and ids in its path,
/// the query string's parameter names (and the operation name), and the safe headers.
fn request(mut r: Request) -> Request {
    if let Some(url) = &mut r.url {
        if r.query_string.is_none() {
            r.query_string = url.query().map(str::to_owned);
        }
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let scrubbed = path(url.path());
        url.set_path(&scrubbed);
    }
    r.query_string = r.query_string.as_deref().map(query);
    r.data = None;
    r.cookies = None;
    r.env.clear();
    r.headers = std::mem::take(&mut r.headers)
        .into_iter()
        .filter(|(name, _)| SAFE_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| (name, text(&value)))
        .collect();
    r
}

/// `a=1&b=2` → `a=[redacted]&b=[redacted]`; `operationName` keeps its value.
fn query(raw: &str) -> String {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some(("operationName", value)) => format!("operationName={}", text(value)),
            Some((name, _)) => format!("{}={REDACTED}", text(name)),
            None => text(pair),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL path with only lower-case words, small numbers and UUIDs left (`/u/{token}` loses
/// its token).
fn path(raw: &str) -> String {
    raw.split('/')
        .map(|segment| {
            let word = segment.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && segment
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
            let number =
                !segment.is_empty() && segment.len() <= 6 && segment.chars().all(|c| c.is_ascii_digit());
            if segment.is_empty() || word || number || UUID.is_match(segment) {
                segment.to_owned()
            } else {
                REDACTED.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The patterns: what looks like an email, a phone number, a token or a secret is replaced;
/// the rest stays. For values that should be ids (tags, id fields, header values).
pub(super) fn text(raw: &str) -> String {
    PATTERNS
        .replace_all(raw, |c: &Captures| {
            let whole = &c[0];
            if c.name("uuid").is_some() {
                whole.to_owned()
            } else if c.name("jwt").is_some() {
                "[jwt]".to_owned()
            } else if c.name("key").is_some() {
                "[api key]".to_owned()
            } else if c.name("userinfo").is_some() {
                format!("://{REDACTED}@")
            } else if c.name("email").is_some() {
                "[email]".to_owned()
            } else if let Some(scheme) = c.name("scheme") {
                format!("{}{REDACTED}", scheme.as_str())
            } else if let Some(name) = c.name("name") {
                format!("{}={REDACTED}", name.as_str())
            } else if let Some(detail) = c.name("detail") {
                format!("{}({REDACTED})", detail.as_str())
            } else if c.name("phone").is_some() {
                let digits = whole.chars().filter(char::is_ascii_digit).count();
                if digits >= 7 {
                    "[phone]".to_owned()
                } else {
                    whole.to_owned()
                }
            } else if key_like(whole) {
                REDACTED.to_owned()
            } else {
                whole.to_owned()
            }
        })
        .into_owned()
}

/// A long run of letters and digits that changes between them often: a key or a digest, not
/// a word (`campaign_definition_v2`) or an identifier with a year in it.
fn key_like(token: &str) -> bool {
    let mut changes = 0;
    let mut last: Option<bool> = None;
    for c in token.chars().filter(char::is_ascii_alphanumeric) {
        let digit = c.is_ascii_digit();
        if last.is_some_and(|l| l != digit) {
            changes += 1;
        }
        last = Some(digit);
    }
    changes >= 3
}

/// Free text as it may leave: `text`, then quoted values, then every word that is not
/// lower-case prose, a number, a UUID or Rust code; neighbouring redactions merge.
pub(super) fn prose(raw: &str) -> String {
    let patterned = text(raw);
    let unquoted = QUOTED.replace_all(&patterned, |c: &Captures| {
        if let Some(code) = c.name("tick") {
            let code = code.as_str();
            if RUST_PATH.is_match(code) || TECHNICAL_WORDS.contains(&code) {
                return c[0].to_owned();
            }
            return format!("`{REDACTED}`");
        }
        if c.name("double").is_some() {
            return format!("\"{REDACTED}\"");
        }
        let lead = c.name("lead").map_or("", |l| l.as_str());
        format!("{lead}'{REDACTED}'")
    });
    let words: String = unquoted
        .split_inclusive(char::is_whitespace)
        .map(|piece| {
            let word = piece.trim_end();
            if word.is_empty() || allowed(word) {
                return piece.to_owned();
            }
            let (open, _, close) = split_punctuation(word);
            format!("{open}{REDACTED}{close}{}", &piece[word.len()..])
        })
        .collect();
    RUNS.replace_all(&words, REDACTED).into_owned()
}

/// Leading and trailing punctuation around a word's core.
fn split_punctuation(word: &str) -> (&str, &str, &str) {
    let rest = word.trim_start_matches(|c: char| "\"'`([{<".contains(c));
    let open = &word[..word.len() - rest.len()];
    let core = rest.trim_end_matches(|c: char| "\"'`.,;:!?)]}>".contains(c));
    (open, core, &rest[core.len()..])
}

/// Whether a word may stay as it is: lower-case prose (`can't`, `sqlx::error`, `u32`), a
/// number, a UUID, Rust code (`Option::unwrap()`) or a technical word.
fn allowed(word: &str) -> bool {
    // what the patterns put in is no data: `api_key=[redacted]` stays
    let word = PLACEHOLDERS
        .iter()
        .fold(word.to_owned(), |w, p| w.replace(p, "x"));
    let word = word.as_str();
    let (_, core, _) = split_punctuation(word);
    let code = word.trim_matches(|c: char| "\"'`,.;:!?".contains(c));
    let lower = core.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && core
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:/-'=()".contains(c));
    let number = core.chars().next().is_some_and(|c| c.is_ascii_digit())
        && core.chars().all(|c| c.is_ascii_digit() || ".,:%x-".contains(c));
    core.is_empty()
        || lower
        || number
        || UUID.is_match(core)
        || RUST_PATH.is_match(code)
        || TECHNICAL_WORDS.contains(&core)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "jane.okonkwo@acme-widgets.example";
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    const API_KEY: &str = "lg_live_9fQ2xK7pLm3Zt8Rw";
    const PROVIDER_KEY: &str = "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f0a";

    fn leaks(out: &str, secrets: &[&str]) -> Vec<String> {
        secrets
            .iter()
            .filter(|s| out.contains(*s))
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn patterns_replace_emails_phones_tokens_and_keys() {
        assert_eq!(text(&format!("sent to {EMAIL}")), "sent to [email]");
        assert_eq!(text("jane%40example.com"), "[email]");
        assert_eq!(text("call +1 (415) 555-0100 now"), "call [phone] now");
        assert_eq!(
            text("retry 3 of 5, 120 ms, version 1.2.3"),
            "retry 3 of 5, 120 ms, version 1.2.3"
        );
        assert_eq!(text(&format!("token {JWT}")), "token [jwt]");
        assert_eq!(text(JWT), "[jwt]");
        assert_eq!(
            text(&format!("Authorization: Bearer {API_KEY}")),
            "Authorization=[redacted]"
        );
        assert_eq!(
            text(&format!("sent with Bearer {JWT}")),
            "sent with Bearer [redacted]"
        );
        assert_eq!(text(API_KEY), "[api key]");
        assert_eq!(
            text(&format!("api_key={PROVIDER_KEY}&x=1")),
            "api_key=[redacted]&x=1"
        );
        assert_eq!(text(PROVIDER_KEY), "[redacted]");
        assert_eq!(
            text("https://user:hunter2@smtp.example:465"),
            "https://[redacted]@smtp.example:465"
        );
        assert_eq!(
            text(&format!("Key (email)=({EMAIL}) already exists")),
            "Key (email)=([redacted]) already exists"
        );
    }

    #[test]
    fn ids_and_words_survive_the_patterns() {
        let id = "0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d";
        assert_eq!(text(id), id);
        assert_eq!(
            text("campaign_definition_v2_snapshot"),
            "campaign_definition_v2_snapshot"
        );
        assert_eq!(
            text("ListCampaignsForDashboard2024"),
            "ListCampaignsForDashboard2024"
        );
    }

    #[test]
    fn prose_keeps_lower_case_words_and_code_and_drops_names_and_quoted_values() {
        assert_eq!(prose("internal error"), "internal error");
        assert_eq!(
            prose("called `Option::unwrap()` on a `None` value"),
            "called `Option::unwrap()` on a `None` value"
        );
        assert_eq!(
            prose("database error: corrupt data: campaign state Jane Okonkwo"),
            "database error: corrupt data: campaign state [redacted]"
        );
        assert_eq!(
            prose(r#"invalid type: string "jane", expected u32"#),
            r#"invalid type: string "[redacted]", expected u32"#
        );
        assert_eq!(prose("no provider `huntr`"), "no provider `[redacted]`");
        assert_eq!(
            prose("can't reach the lead's provider"),
            "can't reach the lead's provider"
        );
    }

    #[test]
    fn nothing_personal_is_left_in_free_text() {
        let name = "Okonkwo";
        let message = format!(
            "cannot push lead {{\"email\": \"{EMAIL}\", \"firstName\": \"Jane\"}} for Jane {name} \
             (+44 20 7946 0958) with {JWT}, key {API_KEY} and provider key {PROVIDER_KEY}: \
             Key (phone)=(+442079460958)"
        );
        let out = prose(&message);
        assert_eq!(
            leaks(
                &out,
                &[EMAIL, "Jane", name, "7946", JWT, API_KEY, PROVIDER_KEY, "0958"]
            ),
            Vec::<String>::new(),
            "{out}"
        );
        assert!(out.starts_with("cannot push lead"), "{out}");
        assert_eq!(
            prose("with lg_live_ab-Cd_9x api_key=0a1b2c3d4e5f6a7b8c9d0e1f2a3b Key (email)=(jane@x.example)"),
            "with [api key] api_key=[redacted] Key (email)=([redacted])"
        );
    }

    #[test]
    fn requests_keep_their_method_path_and_safe_headers_only() {
        let mut headers = Map::new();
        headers.insert("Authorization".into(), format!("Bearer {JWT}"));
        headers.insert("cookie".into(), "session=abc".into());
        headers.insert("x-api-key".into(), API_KEY.into());
        headers.insert(
            "x-request-id".into(),
            "0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d".into(),
        );
        headers.insert("content-type".into(), "application/json".into());
        let r = request(Request {
            url:
                "http://127.0.0.1:8080/u/AbC9dEf2gHi7jKl3mNo8/x?query=%7Blead%7D&operationName=Find&token=abc"
                    .parse()
                    .ok(),
            method: Some("GET".into()),
            data: Some(EMAIL.into()),
            cookies: Some("session=abc".into()),
            headers,
            ..Request::default()
        });
        assert_eq!(
            r.url.as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:8080/u/[redacted]/x")
        );
        assert_eq!(
            r.query_string.as_deref(),
            Some("query=[redacted]&operationName=Find&token=[redacted]")
        );
        assert_eq!(r.data, None);
        assert_eq!(r.cookies, None);
        let names: Vec<&str> = r.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["content-type", "x-request-id"]);
    }

    #[test]
    fn events_keep_tags_and_ids_and_scrub_the_rest() {
        let mut fields = Map::new();
        fields.insert("error".into(), Value::String(format!("no lead {EMAIL} for Jane")));
        fields.insert(
            "workspace".into(),
            Value::String("0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d".into()),
        );
        let mut raw = Event {
            message: Some("internal error".into()),
            user: Some(sentry::User {
                email: Some(EMAIL.into()),
                ..Default::default()
            }),
            ..Event::default()
        };
        raw.contexts
            .insert("Rust Tracing Fields".into(), Context::Other(fields));
        raw.tags.insert("operation".into(), "ListCampaigns".into());
        raw.tags.insert("email".into(), EMAIL.into());
        raw.breadcrumbs.values.push(Breadcrumb {
            message: Some(format!("login by {EMAIL}")),
            ..Breadcrumb::default()
        });
        let out = event(raw);
        let bytes = serde_json::to_string(&out).unwrap();
        assert!(!bytes.contains(EMAIL) && !bytes.contains("Jane"), "{bytes}");
        assert_eq!(
            out.tags.get("operation").map(String::as_str),
            Some("ListCampaigns")
        );
        assert!(!out.tags.contains_key("email"));
        assert!(out.user.is_none());
        assert!(bytes.contains("0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d"), "{bytes}");
        assert_eq!(out.message.as_deref(), Some("internal error"));
    }
}
