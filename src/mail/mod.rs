//! Outbound mail: one message at a time to an SMTP relay, or into a folder of `.eml` files when
//! no relay is configured, with an outcome that tells the caller exactly what it may do next.
//!
//! The relay is named by one setting, `LEADGATE_SMTP_URL`, in the form lettre documents for
//! `AsyncSmtpTransport::from_url` (and parsed the same way here, with stricter checks):
//! `smtp://host[:port]` (plain, port 25), `smtp://host[:port]?tls=required` (STARTTLS or fail,
//! port 587), `smtp://host[:port]?tls=opportunistic` (STARTTLS when offered, port 587),
//! `smtps://host[:port]` (TLS from the first byte, port 465); `user:password@` before the host
//! (percent-encoded) turns on AUTH PLAIN/LOGIN, and a path (`smtp://host/client.example`) names
//! this side in EHLO. The password is kept as a secret and appears in no error, log line or
//! `describe()`; neither does the user name, which some providers use as an API token. (lettre's
//! own `tracing` feature stays off for the same reason: it logs every line it writes, AUTH
//! included, at debug level.)
//!
//! Why lettre: its message builder gets the hard parts of RFC 5322/2045/2047 right (address
//! syntax, encoded words for non-ASCII headers and names, line folding, transfer encodings that
//! keep every body 7-bit), and its SMTP client does the wire protocol, STARTTLS and implicit TLS
//! through rustls (aws-lc-rs and the platform verifier, as reqwest does in this project) and AUTH.
//! What this module adds on top of lettre's `AsyncSmtpConnection` is the connection pool and
//! the command sequence, because lettre's own transport cannot answer the one question a sender
//! of sales mail must answer: "may I send this again?".
//!
//! Classification (`SendOutcome`): a 2xx after the end of the data is `Accepted`; any 4xx reply
//! is `Deferred` (nothing was delivered, retry later) and any 5xx is `Rejected` (permanent; a
//! bounce when it came at RCPT), each with the step it answered. A failure to open the session
//! (connect, TLS, greeting, EHLO, STARTTLS, AUTH — including a relay that refuses our
//! credentials) is `NotSent`, and so is a connection lost or timed out during MAIL, RCPT or the
//! DATA command: the relay never saw the end of the data, so it cannot have taken the message.
//! Only a connection lost or timed out after the body started to go out is `Unknown`: the relay
//! may have queued the message and failed to say so, and a resend could deliver it twice, so
//! the caller must not resend on its own. lettre's `AsyncSmtpTransport::send` runs MAIL, RCPT,
//! DATA and the body as one call, and reports a lost connection or an unreadable reply as a
//! network or response error without saying which command was in flight; with it, every such
//! error would have to be `Unknown`. Issuing the commands one by one here makes the distinction
//! exact, and also lets a connection survive a refused recipient (RSET, back to the pool).
//!
//! Pool: at most `max_connections` connections are open at once (a semaphore held for the whole
//! send, and a connection goes back to the idle list before its slot is released — lettre's pool
//! only caps the idle list, not how many are opened under load). Idle connections are reused
//! newest first, closed after `idle_timeout`, and a reused connection that the relay has closed
//! meanwhile (error or 421 at MAIL FROM) is replaced by a fresh one once, transparently, which is
//! safe because nothing of the message was sent. lettre's tokio client has no read or write
//! timeout of its own (only the TCP connect one), so every step is bounded here: the session
//! setup steps and each envelope command by `command_timeout`, the body and the relay's verdict
//! on it by `data_timeout` (RFC 5321 §4.5.3.2 allows a relay ten minutes for that answer; a short
//! limit there turns slow relays into `Unknown` outcomes). The socket is opened here, with
//! TCP_NODELAY: lettre writes the body and the final dot separately, and Nagle's algorithm would
//! hold the dot until the relay's delayed ACK (some 40 ms) on every message. For `smtps://` lettre
//! has to open the socket itself (its TLS setup is not reachable otherwise), so that delay remains
//! there; `?tls=required` on port 587 does not have it.
//!
//! The folder fallback (no `LEADGATE_SMTP_URL`) writes the exact bytes that would go to a relay to
//! `<dir>/<message id>.eml`, through a temporary file in the same directory and a rename, so a
//! reader never sees half a file and writing the same message id again replaces the file: a retry
//! after a crash leaves one copy, not two. It is for development and for operators who pick the
//! files up with another tool; `Accepted` there means "on disk", not "delivered".
//!
//! A message that cannot be built (an invalid address, a header name outside RFC 5322 `ftext`, a
//! CR or LF in any header value, a malformed message id or unsubscribe URL) is never sent:
//! `Outgoing::render` reports it as `MailError::Invalid`, and `Mailer::send` as
//! `SendOutcome::Invalid`, which is as permanent as a 5xx. Addresses are sent in ASCII: a
//! non-ASCII domain is converted to its IDNA form and a non-ASCII local part is refused, so no
//! SMTPUTF8 or 8BITMIME negotiation is ever needed.

use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Noop, Quit, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::{Address, Message};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use url::Url;

pub mod inbound;
#[cfg(any(test, feature = "test-kinds"))]
pub mod sink;
#[cfg(test)]
mod tests;

/// The setting that names the relay; every configuration error starts with it.
pub const SMTP_URL_SETTING: &str = "LEADGATE_SMTP_URL";

/// Default ports when the URL names none (lettre's choices).
const SMTP_PORT: u16 = 25;
const SUBMISSION_PORT: u16 = 587;
const SUBMISSIONS_PORT: u16 = 465;
/// RFC 5322 §2.1.1: a header line is at most 998 characters.
const MAX_HEADER_LINE: usize = 998;
/// Header names the module writes itself or that steer delivery; an extra header may not use
/// them (nor any `Content-*`).
pub const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "return-path",
    "received",
];

/// Limits of the SMTP connection pool and of each protocol step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Connections open to the relay at most, busy and idle together (at least 1).
    pub max_connections: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// Limit for each step of the session setup (connect with TLS, greeting and EHLO, STARTTLS,
    /// AUTH) and for each of MAIL FROM, RCPT TO and DATA.
    pub command_timeout: Duration,
    /// Limit for sending the message body and reading the relay's verdict on it.
    pub data_timeout: Duration,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            max_connections: 8,
            idle_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(600),
        }
    }
}

/// What can go wrong outside of a send (whose result is a `SendOutcome`).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `LEADGATE_SMTP_URL` is unusable; the text never contains the password.
    #[error("{SMTP_URL_SETTING}: {0}")]
    Config(String),
    /// The message cannot be built; sending it again will not help.
    #[error("the message cannot be built: {0}")]
    Invalid(String),
    /// The relay could not be reached, refused the session or did not answer in time.
    #[error("{relay}: {reason}")]
    Relay { relay: String, reason: String },
    /// The outbox folder cannot be written.
    #[error("mail folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One message to one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// Sender address (also the envelope sender, where bounces go).
    pub from: String,
    /// Display name for `From`, encoded as needed.
    pub from_name: Option<String>,
    /// Recipient address.
    pub to: String,
    /// Subject, encoded as needed.
    pub subject: String,
    /// The plain-text body; always sent.
    pub text: String,
    /// An HTML alternative; with it the message is multipart/alternative.
    pub html: Option<String>,
    /// The Message-ID without angle brackets, `left@right` in dot-atom form (e.g.
    /// `0193f0c2-…@leadgate`); also the file name in folder mode.
    pub message_id: String,
    /// An https URL for one-click unsubscribe (RFC 8058): it becomes `List-Unsubscribe: <url>`
    /// with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. Plain http is accepted only for
    /// a loopback host, for development.
    pub unsubscribe_url: Option<String>,
    /// Extra headers (`X-…`, `Reply-To`, `In-Reply-To`, `Feedback-ID`, …): names in RFC 5322
    /// `ftext`, each at most once, none of `RESERVED_HEADERS` or `Content-*`; values without CR,
    /// LF or NUL (non-ASCII values are encoded).
    pub headers: Vec<(String, String)>,
}

/// The SMTP step that a `Deferred` or `Rejected` reply answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmtpStep {
    MailFrom,
    RcptTo,
    Data,
    /// The reply to the end of the message data: the relay's verdict on the message itself.
    EndOfData,
}

impl fmt::Display for SmtpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpStep::MailFrom => "MAIL FROM",
            SmtpStep::RcptTo => "RCPT TO",
            SmtpStep::Data => "DATA",
            SmtpStep::EndOfData => "end of data",
        })
    }
}

/// What became of one send, and so what the caller may do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The relay took responsibility for the message (2xx after the data), or folder mode wrote
    /// it; `response` is the relay's reply or `written to <path>`.
    Accepted { response: String },
    /// A 4xx reply: nothing was delivered; safe to retry later.
    Deferred {
        code: u16,
        message: String,
        at: SmtpStep,
    },
    /// A 5xx reply: permanent, do not retry; at `RcptTo` (or `EndOfData`) it is a bounce.
    Rejected {
        code: u16,
        message: String,
        at: SmtpStep,
    },
    /// The message never reached the relay's end of data — no connection, TLS or AUTH failure,
    /// session refused, connection lost before the body, folder not writable: safe to retry.
    NotSent { reason: String },
    /// The connection was lost or timed out after the body started to go out: the relay may or
    /// may not have the message. Do not resend automatically.
    Unknown { reason: String },
    /// The message cannot be built (see `Outgoing::render`); permanent, nothing was sent.
    Invalid { reason: String },
}

impl SendOutcome {
    /// Whether sending the same message again later cannot produce a second copy and may succeed.
    pub fn may_retry(&self) -> bool {
        matches!(self, SendOutcome::Deferred { .. } | SendOutcome::NotSent { .. })
    }
}

/// Where mail goes: an SMTP relay, or a folder of `.eml` files.
#[derive(Clone, Debug)]
pub enum Mailer {
    Smtp(SmtpRelay),
    Folder { dir: PathBuf },
}

impl Mailer {
    /// The mailer for the configured URL; `None` (or a blank value) selects the folder fallback
    /// in `folder`. A URL with an unknown scheme, no host, a bad port, an unknown `tls` value or
    /// query parameter, or a user name without a password is refused with an error that names
    /// `LEADGATE_SMTP_URL` and never echoes the password. Nothing is contacted here; see
    /// `test_connection`.
    pub fn new(smtp_url: Option<&str>, folder: &Path, settings: SmtpSettings) -> Result<Self, MailError> {
        match smtp_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Mailer::Folder {
                dir: folder.to_path_buf(),
            }),
            Some(url) => {
                let endpoint = Endpoint::parse(url)?;
                if endpoint.credentials.is_some()
                    && endpoint.security == Security::None
                    && !endpoint.is_loopback()
                {
                    tracing::warn!(
                        relay = %endpoint.describe(),
                        "{SMTP_URL_SETTING} sends credentials without TLS; use smtps:// or ?tls=required"
                    );
                }
                Ok(Mailer::Smtp(SmtpRelay::new(endpoint, settings)))
            }
        }
    }

    /// One line for the startup log, e.g. `SMTP relay smtp://mail.example:587 (STARTTLS
    /// required), with authentication, pool of 8`; never the password or user name.
    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp(relay) => format!(
                "SMTP relay {}, pool of {}",
                relay.inner.endpoint.describe(),
                relay.inner.settings.max_connections
            ),
            Mailer::Folder { dir } => format!(
                "no SMTP relay configured ({SMTP_URL_SETTING}): mail is written as .eml files to {}",
                dir.display()
            ),
        }
    }

    /// Builds and sends one message. Never panics and never returns early on a network problem:
    /// every failure is one of the outcomes, classified as the module header explains.
    pub async fn send(&self, message: &Outgoing) -> SendOutcome {
        let built = match message.build() {
            Ok(built) => built,
            Err(err) => {
                return SendOutcome::Invalid {
                    reason: err.to_string(),
                };
            }
        };
        let bytes = built.formatted();
        let outcome = match self {
            Mailer::Smtp(relay) => relay.send(built.envelope(), &bytes).await,
            Mailer::Folder { dir } => match write_eml(dir, &message.message_id, &bytes).await {
                Ok(path) => SendOutcome::Accepted {
                    response: format!("written to {}", path.display()),
                },
                Err(err) => SendOutcome::NotSent {
                    reason: err.to_string(),
                },
            },
        };
        match &outcome {
            SendOutcome::Unknown { reason } => tracing::warn!(
                message_id = %message.message_id,
                %reason,
                "mail outcome unknown: the relay may have the message; not resending"
            ),
            other => tracing::debug!(message_id = %message.message_id, outcome = ?other, "mail sent"),
        }
        outcome
    }

    /// Checks the configuration end to end without sending: for a relay, a fresh connection
    /// with TLS and AUTH as configured, EHLO, NOOP and QUIT; for the folder, that a file can be
    /// created in it (creating the folder if needed).
    pub async fn test_connection(&self) -> Result<(), MailError> {
        match self {
            Mailer::Smtp(relay) => relay.test_connection().await,
            Mailer::Folder { dir } => probe_folder(dir).await,
        }
    }

    /// Closes the idle connections (with QUIT) and refuses further sends with `NotSent`. Sends
    /// already under way finish first. A no-op in folder mode.
    pub async fn shutdown(&self) {
        if let Mailer::Smtp(relay) = self {
            relay.shutdown().await;
        }
    }
}

impl Outgoing {
    /// The message exactly as it is sent or written (CRLF line ends, 7-bit, `Date` the time of
    /// the call), or why it cannot be built. `Mailer::send` does the same checks; calling this first lets a caller refuse a
    /// bad message when it is created rather than when it is sent.
    pub fn render(&self) -> Result<Vec<u8>, MailError> {
        self.build().map(|m| m.formatted())
    }

    fn build(&self) -> Result<Message, MailError> {
        let from = parse_address("from", &self.from)?;
        let to = parse_address("to", &self.to)?;
        if let Some(name) = &self.from_name {
            check_header_text("from_name", name)?;
        }
        check_header_text("subject", &self.subject)?;
        check_message_id(&self.message_id)?;

        let mut builder = Message::builder()
            .message_id(Some(format!("<{}>", self.message_id)))
            .from(Mailbox::new(self.from_name.clone(), from))
            .to(Mailbox::new(None, to))
            .subject(self.subject.clone());
        if let Some(url) = &self.unsubscribe_url {
            builder = builder
                .header(ListUnsubscribe(check_unsubscribe_url(url)?))
                .header(ListUnsubscribePost);
        }
        let mut seen: Vec<String> = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = check_extra_header(name, value)?;
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(MailError::Invalid(format!("header {name} is given twice")));
            }
            seen.push(lower);
            let name = HeaderName::new_from_ascii(name.to_owned())
                .map_err(|_| MailError::Invalid(format!("header name {name:?} is not allowed")))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }

        let built = match &self.html {
            None => builder.singlepart(SinglePart::plain(self.text.clone())),
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(self.text.clone(), html.clone()))
            }
        };
        built.map_err(|e| MailError::Invalid(e.to_string()))
    }
}

/// `List-Unsubscribe: <https://…>` (RFC 2369), holding a checked absolute URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let inner = s
            .trim()
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .ok_or("List-Unsubscribe must be <url>")?;
        Ok(ListUnsubscribe(check_unsubscribe_url(inner)?))
    }

    fn display(&self) -> HeaderValue {
        // an absolute URL as the url crate serializes it is printable ASCII without spaces, so
        // lettre's encoder leaves it as it is (no encoded words, no folding inside it)
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListUnsubscribePost;

const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if s.trim() == ONE_CLICK {
            Ok(ListUnsubscribePost)
        } else {
            Err(format!("List-Unsubscribe-Post must be {ONE_CLICK}").into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), ONE_CLICK.to_owned())
    }
}

/// An address in ASCII: lettre's syntax check, then the domain in its IDNA (`xn--`) form.
fn parse_address(field: &str, raw: &str) -> Result<Address, MailError> {
    let invalid = |why: &str| MailError::Invalid(format!("{field} address {raw:?}: {why}"));
    let address: Address = raw.trim().parse().map_err(|e| invalid(&format!("{e}")))?;
    if address.user().is_ascii() && address.domain().is_ascii() {
        return Ok(address);
    }
    if !address.user().is_ascii() {
        return Err(invalid(
            "a non-ASCII local part needs SMTPUTF8, which is not supported",
        ));
    }
    let ascii = match url::Host::parse(address.domain()) {
        Ok(url::Host::Domain(domain)) => domain,
        _ => return Err(invalid("the domain has no ASCII form")),
    };
    Address::new(address.user(), ascii).map_err(|e| invalid(&format!("{e}")))
}

/// Header text (subject, display name): no line breaks or NUL, and within a header line.
fn check_header_text(field: &str, value: &str) -> Result<(), MailError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(MailError::Invalid(format!(
            "{field} contains a line break or NUL"
        )));
    }
    if value.len() > MAX_HEADER_LINE {
        return Err(MailError::Invalid(format!(
            "{field} is longer than {MAX_HEADER_LINE} bytes"
        )));
    }
    Ok(())
}

/// `id-left "@" id-right` with both sides dot-atom text (RFC 5322 §3.6.4, without the brackets).
fn check_message_id(id: &str) -> Result<(), MailError> {
    fn dot_atom(s: &str) -> bool {
        !s.is_empty()
            && s.split('.')
                .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
    }
    let ok = id.len() <= 250
        && match id.split_once('@') {
            Some((left, right)) => dot_atom(left) && dot_atom(right),
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(MailError::Invalid(format!(
            "message id {id:?} is not of the form left@right (dot-atom text, no angle brackets)"
        )))
    }
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// The unsubscribe URL in its serialized (ASCII, percent-encoded) form.
fn check_unsubscribe_url(raw: &str) -> Result<String, MailError> {
    let invalid = |why: &str| MailError::Invalid(format!("unsubscribe URL: {why}"));
    // the url crate would silently drop tabs and line breaks; refuse them instead
    if raw.contains(|c: char| c.is_ascii_control()) {
        return Err(invalid("contains a control character"));
    }
    let url = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(invalid("one-click unsubscribe needs an https URL (RFC 8058)")),
    }
    let text = url.as_str();
    if text.len() + "List-Unsubscribe: <>".len() > MAX_HEADER_LINE {
        return Err(invalid("too long for a header line"));
    }
    Ok(text.to_owned())
}

/// An extra header: the name in `ftext` (printable ASCII but `:`), not one of the reserved
/// headers, and within lettre's limit of 76; the value without CR, LF or NUL.
fn check_extra_header<'a>(name: &'a str, value: &str) -> Result<&'a str, MailError> {
    let ftext = |b: u8| (33..=126).contains(&b) && b != b':';
    if name.is_empty() || name.len() > 76 || !name.bytes().all(ftext) {
        return Err(MailError::Invalid(format!(
            "header name {name:?} is not a valid RFC 5322 field name"
        )));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("content-") {
        return Err(MailError::Invalid(format!(
            "header {name} is written by the mailer or steers delivery; it cannot be an extra header"
        )));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(MailError::Invalid(format!(
            "header {name} has a line break or NUL in its value"
        )));
    }
    if name.len() + 2 + value.len() > MAX_HEADER_LINE {
        return Err(MailError::Invalid(format!("header {name} is too long")));
    }
    Ok(name)
}

// ---------------------------------------------------------------------------------------------
// The relay address

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    /// No TLS at all.
    None,
    /// STARTTLS, or no session.
    StartTlsRequired,
    /// STARTTLS when the relay offers it, plain otherwise.
    StartTlsOpportunistic,
    /// TLS from the first byte (smtps).
    Implicit,
}

struct Endpoint {
    scheme: &'static str,
    /// For connecting and for the TLS server name: an IPv6 address without brackets.
    host: String,
    /// For messages: an IPv6 address in brackets.
    host_display: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<(String, SecretString)>,
    hello: ClientId,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Endpoint {
    fn parse(raw: &str) -> Result<Self, MailError> {
        let config = |why: String| MailError::Config(why);
        // Url's parse errors name the problem, never the input, so they cannot leak a password
        let url = Url::parse(raw).map_err(|e| config(format!("not a valid URL ({e})")))?;
        let scheme = match url.scheme() {
            "smtp" => "smtp",
            "smtps" => "smtps",
            other => {
                return Err(config(format!(
                    "unsupported scheme {other:?}; use smtp://host[:port][?tls=required|opportunistic] or smtps://host[:port]"
                )));
            }
        };
        let (host, host_display) = match url.host() {
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]")),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.to_string()),
            Some(url::Host::Domain(d)) if !d.is_empty() => {
                let ok = d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
                if !ok {
                    return Err(config(format!(
                        "relay host {d:?} is not a DNS name or IP address"
                    )));
                }
                (d.to_owned(), d.to_owned())
            }
            _ => return Err(config("the URL names no relay host".to_owned())),
        };

        let mut tls_param: Option<String> = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls_param.is_none() => tls_param = Some(value.into_owned()),
                "tls" => return Err(config("the tls parameter is given twice".to_owned())),
                other => {
                    return Err(config(format!(
                        "unknown query parameter {other:?} (only tls=required or tls=opportunistic)"
                    )));
                }
            }
        }
        let (security, default_port) = match (scheme, tls_param.as_deref()) {
            ("smtp", None) => (Security::None, SMTP_PORT),
            ("smtp", Some("required")) => (Security::StartTlsRequired, SUBMISSION_PORT),
            ("smtp", Some("opportunistic")) => (Security::StartTlsOpportunistic, SUBMISSION_PORT),
            ("smtp", Some(other)) => {
                return Err(config(format!(
                    "unknown tls={other:?}; use tls=required or tls=opportunistic"
                )));
            }
            (_, None) => (Security::Implicit, SUBMISSIONS_PORT),
            (_, Some(_)) => {
                return Err(config(
                    "smtps:// is always TLS from the start; drop the tls parameter".to_owned(),
                ));
            }
        };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(config("port 0 is not a valid relay port".to_owned()));
        }

        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err(config("a password without a user name".to_owned())),
            (_, None) => {
                return Err(config(
                    "a user name without a password (write user:password@host)".to_owned(),
                ));
            }
            (user, Some(password)) => {
                let user = percent_decode(user)
                    .ok_or_else(|| config("the user name is not valid percent-encoded UTF-8".to_owned()))?;
                let password = percent_decode(password)
                    .ok_or_else(|| config("the password is not valid percent-encoded UTF-8".to_owned()))?;
                Some((user, SecretString::from(password)))
            }
        };

        let path = url.path().trim_matches('/');
        let hello = if path.is_empty() {
            ClientId::default()
        } else {
            let ok = path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(config(format!(
                    "the path names the EHLO host and must be a DNS name, not {path:?}"
                )));
            }
            ClientId::Domain(path.to_owned())
        };

        let tls = match security {
            Security::None => None,
            _ => Some(
                TlsParameters::new(host.clone())
                    .map_err(|e| config(format!("TLS cannot be set up for {host_display}: {e}")))?,
            ),
        };

        Ok(Endpoint {
            scheme,
            host,
            host_display,
            port,
            security,
            tls,
            credentials,
            hello,
        })
    }

    fn describe(&self) -> String {
        let security = match self.security {
            Security::None => "no TLS",
            Security::StartTlsRequired => "STARTTLS required",
            Security::StartTlsOpportunistic => "STARTTLS if offered",
            Security::Implicit => "implicit TLS",
        };
        let auth = if self.credentials.is_some() {
            ", with authentication"
        } else {
            ""
        };
        format!(
            "{}://{}:{} ({security}){auth}",
            self.scheme, self.host_display, self.port
        )
    }

    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `%XX` decoding of a URL's user or password; `None` for a bad escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// The relay: pool and command sequence

/// A pooled client for one SMTP relay. Cloning shares the pool.
#[derive(Clone)]
pub struct SmtpRelay {
    inner: Arc<Relay>,
}

impl fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("relay", &self.inner.endpoint)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

struct Relay {
    endpoint: Endpoint,
    settings: SmtpSettings,
    /// One permit per connection that may be open; held for a whole send.
    slots: Semaphore,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Parked>>,
    /// Whether the task that closes expired idle connections runs.
    reaper: AtomicBool,
}

struct Parked {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Why a transaction step failed.
enum Failure {
    /// The relay answered with a 4xx or 5xx.
    Reply { code: u16, message: String },
    /// No usable answer: connection lost, unreadable reply, time limit, client-side refusal.
    Lost(String),
}

impl SmtpRelay {
    fn new(endpoint: Endpoint, mut settings: SmtpSettings) -> Self {
        settings.max_connections = settings.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        SmtpRelay {
            inner: Arc::new(Relay {
                slots: Semaphore::new(settings.max_connections),
                idle: Mutex::new(Vec::with_capacity(settings.max_connections)),
                reaper: AtomicBool::new(false),
                endpoint,
                settings,
            }),
        }
    }

    async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> SendOutcome {
        let relay = &self.inner;
        let Ok(_slot) = relay.slots.acquire().await else {
            return SendOutcome::NotSent {
                reason: "the mailer is shut down".to_owned(),
            };
        };
        loop {
            let (mut conn, reused) = match relay.checkout() {
                Some(conn) => (conn, true),
                None => match relay.connect().await {
                    Ok(conn) => (conn, false),
                    Err(reason) => return SendOutcome::NotSent { reason },
                },
            };
            match relay.transaction(&mut conn, envelope, bytes).await {
                Ok(response) => {
                    self.park(conn);
                    return SendOutcome::Accepted {
                        response: response_text(&response),
                    };
                }
                Err((step, failure)) => {
                    // a pooled connection the relay closed while it sat idle fails at once: nothing
                    // of this message went out, so a fresh connection may try again
                    let stale = reused
                        && step == SmtpStep::MailFrom
                        && match &failure {
                            Failure::Reply { code, .. } => *code == 421,
                            Failure::Lost(_) => true,
                        };
                    if stale {
                        tracing::debug!(relay = %relay.endpoint.describe(), "pooled connection was closed by the relay; reconnecting");
                        continue;
                    }
                    return match failure {
                        Failure::Reply { code, message } => {
                            if code != 421 && relay.reset(&mut conn).await {
                                self.park(conn);
                            }
                            let at = step;
                            if code >= 500 {
                                SendOutcome::Rejected { code, message, at }
                            } else {
                                SendOutcome::Deferred { code, message, at }
                            }
                        }
                        Failure::Lost(reason) if step == SmtpStep::EndOfData => SendOutcome::Unknown {
                            reason: format!(
                                "{}: connection lost while sending the message: {reason}",
                                relay.endpoint.host_display
                            ),
                        },
                        Failure::Lost(reason) => SendOutcome::NotSent {
                            reason: format!(
                                "{}: connection lost at {step}, before the message data: {reason}",
                                relay.endpoint.host_display
                            ),
                        },
                    };
                }
            }
        }
    }

    /// Returns a healthy connection to the idle list (before the caller's slot is released, so
    /// the next send finds it) and makes sure the reaper runs.
    fn park(&self, conn: AsyncSmtpConnection) {
        let relay = &self.inner;
        if conn.has_broken() {
            return;
        }
        if relay.slots.is_closed() {
            tokio::spawn(quit(conn, relay.settings.command_timeout));
            return;
        }
        if let Ok(mut idle) = relay.idle.lock() {
            idle.push(Parked {
                conn,
                since: Instant::now(),
            });
        }
        if !relay.reaper.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(relay)));
        }
    }

    async fn test_connection(&self) -> Result<(), MailError> {
        let relay = &self.inner;
        let failed = |reason: String| MailError::Relay {
            relay: format!("SMTP relay {}", relay.endpoint.describe()),
            reason,
        };
        let mut conn = relay.connect().await.map_err(failed)?;
        let limit = relay.settings.command_timeout;
        let noop = tokio::time::timeout(limit, conn.command(Noop)).await;
        let result = match noop {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failed(format!("NOOP failed: {e}"))),
            Err(_) => Err(failed(format!("no answer to NOOP within {limit:?}"))),
        };
        let _ = tokio::time::timeout(limit, conn.command(Quit)).await;
        result
    }

    async fn shutdown(&self) {
        let relay = &self.inner;
        relay.slots.close();
        let parked = relay
            .idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default();
        for p in parked {
            quit(p.conn, relay.settings.command_timeout).await;
        }
    }
}

impl Relay {
    /// The most recently parked connection still within `idle_timeout`; expired ones are
    /// closed on the way.
    fn checkout(&self) -> Option<AsyncSmtpConnection> {
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock().ok()?;
            let mut found = None;
            while let Some(p) = idle.pop() {
                if p.since.elapsed() < self.settings.idle_timeout {
                    found = Some(p.conn);
                    break;
                }
                expired.push(p.conn);
            }
            found
        };
        if !expired.is_empty() {
            let limit = self.settings.command_timeout;
            tokio::spawn(async move {
                for conn in expired {
                    quit(conn, limit).await;
                }
            });
        }
        found
    }

    /// A new connection: TCP (and TLS for smtps), greeting, EHLO, STARTTLS as configured, AUTH.
    /// The error is the reason for `NotSent`, with the relay's reply if there was one.
    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let ep = &self.endpoint;
        let limit = self.settings.command_timeout;
        let at = format!("{}:{}", ep.host_display, ep.port);
        let mut conn = match (&ep.security, &ep.tls) {
            // lettre's own socket, the only way to TLS from the first byte with its TLS setup
            (Security::Implicit, Some(tls)) => bounded(
                limit,
                AsyncSmtpConnection::connect_tokio1(
                    (ep.host.as_str(), ep.port),
                    Some(limit),
                    &ep.hello,
                    Some(tls.clone()),
                    None,
                ),
            )
            .await
            .map_err(|e| format!("{at}: cannot open an SMTP session: {e}"))?,
            // our own socket, for TCP_NODELAY: lettre writes the body and the final dot in two
            // writes, and with Nagle's algorithm the dot waits for the relay's delayed ACK
            // (40 ms on Linux) on every message; STARTTLS still upgrades it through lettre
            _ => {
                let tcp = match tokio::time::timeout(
                    limit,
                    tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)),
                )
                .await
                {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => return Err(format!("{at}: cannot connect: {e}")),
                    Err(_) => return Err(format!("{at}: cannot connect within {limit:?}")),
                };
                tcp.set_nodelay(true)
                    .map_err(|e| format!("{at}: cannot set TCP_NODELAY: {e}"))?;
                bounded(
                    limit,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ep.hello),
                )
                .await
                .map_err(|e| format!("{at}: cannot open an SMTP session: {e}"))?
            }
        };

        let starttls = match ep.security {
            Security::StartTlsRequired => true,
            Security::StartTlsOpportunistic => conn.can_starttls(),
            Security::None | Security::Implicit => false,
        };
        if starttls && let Some(tls) = ep.tls.clone() {
            bounded(limit, conn.starttls(tls, &ep.hello))
                .await
                .map_err(|e| format!("{at}: STARTTLS failed: {e}"))?;
        }
        if let Some((user, password)) = &ep.credentials {
            let credentials = Credentials::new(user.clone(), password.expose_secret().to_owned());
            let auth = bounded(limit, conn.auth(DEFAULT_MECHANISMS, &credentials)).await;
            if let Err(e) = auth {
                quit(conn, limit).await;
                return Err(format!("{at}: authentication failed: {e}"));
            }
        }
        Ok(conn)
    }

    /// MAIL FROM, RCPT TO, DATA and the message, each bounded; the failing step and why.
    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<Response, (SmtpStep, Failure)> {
        let command = self.settings.command_timeout;
        let step = |s: SmtpStep| move |f: Failure| (s, f);
        checked(
            command,
            conn.command(Mail::new(envelope.from().cloned(), Vec::new())),
        )
        .await
        .map_err(step(SmtpStep::MailFrom))?;
        for to in envelope.to() {
            checked(command, conn.command(Rcpt::new(to.clone(), Vec::new())))
                .await
                .map_err(step(SmtpStep::RcptTo))?;
        }
        checked(command, conn.command(Data))
            .await
            .map_err(step(SmtpStep::Data))?;
        checked(self.settings.data_timeout, conn.message(bytes))
            .await
            .map_err(step(SmtpStep::EndOfData))
    }

    /// RSET after a refused step, so the connection can carry the next message.
    async fn reset(&self, conn: &mut AsyncSmtpConnection) -> bool {
        matches!(
            tokio::time::timeout(self.settings.command_timeout, conn.command(Rset)).await,
            Ok(Ok(_))
        )
    }
}

/// A lettre call within `limit`, the elapsed limit reported as an error text.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = Result<T, SmtpError>>) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// A transaction step within `limit`, its error split into a reply code or a lost connection.
async fn checked<T>(limit: Duration, fut: impl Future<Output = Result<T, SmtpError>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(match e.status() {
            Some(code) => Failure::Reply {
                code: u16::from(code),
                // the error's source is the reply text; its Display would repeat the code
                message: std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            },
            None => Failure::Lost(e.to_string()),
        }),
        Err(_) => Err(Failure::Lost(format!("no answer within {limit:?}"))),
    }
}

/// `250 2.0.0 Ok: queued as …` from a reply.
fn response_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
        .trim_end()
        .to_owned()
}

/// QUIT and close, without waiting longer than `limit` for a relay that does not answer.
async fn quit(mut conn: AsyncSmtpConnection, limit: Duration) {
    let _ = tokio::time::timeout(limit, conn.abort()).await;
}

/// Closes idle connections past `idle_timeout`, until the relay is dropped or shut down.
async fn reap(relay: Weak<Relay>) {
    loop {
        let period = match relay.upgrade() {
            Some(r) => r.settings.idle_timeout.max(Duration::from_secs(1)),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(r) = relay.upgrade() else { return };
        if r.slots.is_closed() {
            return;
        }
        let expired: Vec<Parked> = match r.idle.lock() {
            Ok(mut idle) => {
                let (old, fresh) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|p| p.since.elapsed() >= r.settings.idle_timeout);
                *idle = fresh;
                old
            }
            Err(_) => return,
        };
        let limit = r.settings.command_timeout;
        drop(r);
        for p in expired {
            quit(p.conn, limit).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The folder fallback

/// The file name for a message id: `%XX` for every byte outside `[A-Za-z0-9._@+=-]`, so distinct
/// ids give distinct names and none can leave the folder (a valid id has no leading dot).
fn eml_file_name(message_id: &str) -> String {
    let mut name = String::with_capacity(message_id.len() + 4);
    for b in message_id.bytes() {
        if b.is_ascii_alphanumeric() || b"._@+=-".contains(&b) {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".eml");
    name
}

/// Writes `bytes` to `<dir>/<id>.eml` through a temporary file and a rename.
async fn write_eml(dir: &Path, message_id: &str, bytes: &[u8]) -> Result<PathBuf, MailError> {
    let folder_error = |source| MailError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(folder_error)?;
    let name = eml_file_name(message_id);
    let path = dir.join(&name);
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&temp, &path).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(folder_error(e));
    }
    Ok(path)
}

async fn probe_folder(dir: &Path) -> Result<(), MailError> {
    let folder_error = |source| MailError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(folder_error)?;
    let probe = dir.join(format!(".probe.{}.tmp", uuid::Uuid::now_v7().simple()));
    tokio::fs::write(&probe, b"").await.map_err(folder_error)?;
    tokio::fs::remove_file(&probe).await.map_err(folder_error)
}
