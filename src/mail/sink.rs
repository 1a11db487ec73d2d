//! A small real SMTP server for tests and benchmarks: plain TCP on 127.0.0.1 with a port of the
//! system's choosing, any number of concurrent connections, and a behaviour that a test switches
//! at run time to produce every outcome the mailer has to classify.
//!
//! It speaks enough of RFC 5321 for an SMTP client: the `220` greeting, EHLO (a multi-line
//! `250` advertising `AUTH PLAIN LOGIN` and `SIZE`; no PIPELINING, no STARTTLS), HELO, AUTH PLAIN
//! and AUTH LOGIN (any credentials, or only the configured ones, otherwise `535`), MAIL FROM,
//! RCPT TO, DATA (CRLF line ends, dot-unstuffing), RSET, NOOP and QUIT. What a `Mode` changes:
//! the reply to RCPT TO, the reply after the data, or whether the connection is dropped in the
//! middle of the data or after it. A mode set for one recipient (`Sink::on_recipient`) wins over
//! the sink-wide one, so one test can refuse one address and accept the others.
//!
//! Accepted messages are recorded with their envelope and raw data; `wait_for` waits on a
//! `watch` channel for a count, so tests never sleep. `connections_opened` counts TCP
//! connections, to prove pooling. Test-only code: it panics where a test should fail loudly.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The largest message accepted, as advertised with `SIZE`.
pub const MAX_SIZE: usize = 10 * 1024 * 1024;
/// The longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; AUTH lines may be longer).
const MAX_LINE: usize = 4096;

/// How the sink answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Accept every recipient and every message.
    Accept,
    /// Answer RCPT TO with this (5xx) reply.
    RefuseRcpt(u16, String),
    /// Answer RCPT TO with this (4xx) reply.
    DeferRcpt(u16, String),
    /// Read the whole data, then answer with this (4xx) reply instead of accepting.
    DeferAfterData(u16, String),
    /// Read one line of the data, then close the connection without answering.
    DropMidData,
    /// Read the whole data including the final dot, record it as received but unanswered
    /// (`Sink::unanswered`), then close the connection without answering.
    DropAfterData,
    /// Read the whole data, record it as received but unanswered, and never answer, keeping
    /// the connection open until the client gives up (client time limits, a client killed
    /// mid-send).
    StallAfterData,
}

impl Mode {
    /// The reply for RCPT TO, if this mode refuses the recipient.
    fn rcpt_reply(&self) -> Option<(u16, &str)> {
        match self {
            Mode::RefuseRcpt(code, text) | Mode::DeferRcpt(code, text) => Some((*code, text)),
            _ => None,
        }
    }

    fn acts_on_data(&self) -> bool {
        matches!(
            self,
            Mode::DeferAfterData(..) | Mode::DropMidData | Mode::DropAfterData | Mode::StallAfterData
        )
    }
}

/// One message as the sink received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The MAIL FROM address (empty for the null sender `<>`).
    pub from: String,
    /// The accepted RCPT TO addresses.
    pub recipients: Vec<String>,
    /// The data, dot-unstuffed, CRLF line ends, without the final `.` line.
    pub data: Vec<u8>,
    /// The user name the session authenticated as.
    pub auth_user: Option<String>,
    /// Which connection (1 for the first the sink accepted) carried it.
    pub connection: usize,
}

impl Received {
    /// The data as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first header of that name (case-insensitive), unfolded, as it is on the wire.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.text(), name)
    }

    /// The Message-ID without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
            .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    }

    /// The text/plain body (of a single-part message, or the first text/plain part of a
    /// multipart one), with its transfer encoding undone and trailing line breaks removed.
    pub fn body_text(&self) -> Option<String> {
        part_of_type(&self.text(), "text/plain")
    }

    /// The first text/html part, like `body_text`.
    pub fn body_html(&self) -> Option<String> {
        part_of_type(&self.text(), "text/html")
    }
}

/// A `wait_for` that ran out of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitTimeout {
    /// What was counted: accepted messages, unanswered messages or open connections.
    pub what: &'static str,
    pub wanted: usize,
    pub got: usize,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waited for {} to reach {}, got {}",
            self.what, self.wanted, self.got
        )
    }
}

impl std::error::Error for WaitTimeout {}

struct Inner {
    mode: Mode,
    overrides: HashMap<String, Mode>,
    credentials: Option<(String, String)>,
    messages: Vec<Received>,
    unanswered: Vec<Received>,
    auths: Vec<(String, String)>,
}

struct State {
    inner: Mutex<Inner>,
    connections: AtomicUsize,
    /// How many messages were accepted (since the last `clear`).
    accepted: watch::Sender<usize>,
    /// How many were received but left unanswered.
    unanswered: watch::Sender<usize>,
    /// Connections open now.
    open: watch::Sender<usize>,
    /// Bumped by `close_connections`: every connection says 421 and closes.
    close: watch::Sender<u64>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running SMTP sink; it stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Starts a sink on 127.0.0.1 with a free port, in `Mode::Accept`, taking any credentials.
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the sink binds a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                mode: Mode::Accept,
                overrides: HashMap::new(),
                credentials: None,
                messages: Vec::new(),
                unanswered: Vec::new(),
                auths: Vec::new(),
            }),
            connections: AtomicUsize::new(0),
            accepted: watch::Sender::new(0),
            unanswered: watch::Sender::new(0),
            open: watch::Sender::new(0),
            close: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Sink { addr, state, task }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sink-wide behaviour, for recipients without their own rule.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().mode = mode;
    }

    /// A behaviour for one recipient address (case-insensitive), winning over the sink-wide one.
    pub fn on_recipient(&self, address: &str, mode: Mode) {
        self.state
            .lock()
            .overrides
            .insert(address.to_ascii_lowercase(), mode);
    }

    /// Accept only these credentials (AUTH answers 535 otherwise, and MAIL FROM without AUTH
    /// answers 530); `None` accepts any and does not require AUTH.
    pub fn require_auth(&self, credentials: Option<(&str, &str)>) {
        self.state.lock().credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
    }

    /// Accepted messages, in the order they arrived.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().messages.clone()
    }

    /// Messages whose data arrived whole but that got no answer (`Mode::DropAfterData`).
    pub fn unanswered(&self) -> Vec<Received> {
        self.state.lock().unanswered.clone()
    }

    /// Every AUTH attempt, successful or not, as (user, password).
    pub fn auths(&self) -> Vec<(String, String)> {
        self.state.lock().auths.clone()
    }

    /// TCP connections accepted since the start.
    pub fn connections_opened(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets the recorded messages and AUTH attempts (not the modes or the connection count).
    pub fn clear(&self) {
        let mut inner = self.state.lock();
        inner.messages.clear();
        inner.unanswered.clear();
        inner.auths.clear();
        self.state.accepted.send_replace(0);
        self.state.unanswered.send_replace(0);
    }

    /// Waits until at least `n` messages were accepted, then returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Received>, WaitTimeout> {
        wait_count("accepted messages", &self.state.accepted, n, timeout).await?;
        Ok(self.messages())
    }

    /// Waits until at least `n` messages were received but left unanswered.
    pub async fn wait_for_unanswered(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        wait_count("unanswered messages", &self.state.unanswered, n, timeout).await?;
        Ok(self.unanswered())
    }

    /// Makes every open connection answer `421` and close (as a relay does to idle clients),
    /// and waits until all are closed.
    pub async fn close_connections(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        self.state.close.send_modify(|n| *n += 1);
        self.wait_until_closed(timeout).await
    }

    /// Waits until no connection is open (every client said QUIT or went away).
    pub async fn wait_until_closed(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        let mut open = self.state.open.subscribe();
        match tokio::time::timeout(timeout, open.wait_for(|n| *n == 0)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WaitTimeout {
                what: "open connections",
                wanted: 0,
                got: *self.state.open.borrow(),
            }),
        }
    }
}

async fn wait_count(
    what: &'static str,
    counter: &watch::Sender<usize>,
    n: usize,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let mut rx = counter.subscribe();
    match tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(WaitTimeout {
            what,
            wanted: n,
            got: *counter.borrow(),
        }),
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    // the connection tasks live in this set, so stopping the sink stops them too
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let state = Arc::clone(&state);
                state.open.send_modify(|n| *n += 1);
                tasks.spawn(async move {
                    let _ = serve(stream, &state, id).await;
                    state.open.send_modify(|n| *n -= 1);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// What one connection knows about its transaction.
#[derive(Default)]
struct Session {
    auth_user: Option<String>,
    from: Option<String>,
    recipients: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.from = None;
        self.recipients.clear();
    }
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.writer.write_all(text.as_bytes()).await
    }

    /// The next line, CRLF included; `None` at the end of the stream.
    async fn read_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).await?;
        Ok((n > 0).then_some(self.line.as_slice()))
    }
}

async fn serve(stream: TcpStream, state: &State, id: usize) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        reader: BufReader::new(reader),
        writer,
        line: Vec::with_capacity(256),
    };
    let mut close = state.close.subscribe();
    let mut session = Session::default();
    conn.reply("220 sink.leadgate.test ESMTP ready\r\n").await?;
    loop {
        let next = tokio::select! {
            line = conn.read_line() => line?.map(|l| String::from_utf8_lossy(l).into_owned()),
            _ = close.changed() => {
                conn.reply("421 4.4.2 sink.leadgate.test closing connection\r\n").await?;
                return Ok(());
            }
        };
        let Some(command) = next else { return Ok(()) };
        if command.len() > MAX_LINE {
            conn.reply("500 5.5.6 line too long\r\n").await?;
            continue;
        }
        let command = command.trim_end_matches(['\r', '\n']);
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                session.reset();
                conn.reply(&format!(
                    "250-sink.leadgate.test greets {arg}\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE {MAX_SIZE}\r\n"
                ))
                .await?;
            }
            "HELO" => {
                session.reset();
                conn.reply("250 sink.leadgate.test\r\n").await?;
            }
            "AUTH" => auth(&mut conn, state, &mut session, arg).await?,
            "MAIL" => {
                let required = state.lock().credentials.is_some();
                if required && session.auth_user.is_none() {
                    conn.reply("530 5.7.0 Authentication required\r\n").await?;
                } else if session.from.is_some() {
                    conn.reply("503 5.5.1 Nested MAIL command\r\n").await?;
                } else if let Some(from) = path_arg(arg, "FROM:") {
                    session.from = Some(from);
                    conn.reply("250 2.1.0 Ok\r\n").await?;
                } else {
                    conn.reply("501 5.5.4 Syntax: MAIL FROM:<address>\r\n").await?;
                }
            }
            "RCPT" => {
                if session.from.is_none() {
                    conn.reply("503 5.5.1 Need MAIL before RCPT\r\n").await?;
                    continue;
                }
                let Some(to) = path_arg(arg, "TO:").filter(|a| !a.is_empty()) else {
                    conn.reply("501 5.5.4 Syntax: RCPT TO:<address>\r\n").await?;
                    continue;
                };
                let refusal = {
                    let inner = state.lock();
                    let mode = inner
                        .overrides
                        .get(&to.to_ascii_lowercase())
                        .unwrap_or(&inner.mode);
                    mode.rcpt_reply().map(|(code, text)| format!("{code} {text}\r\n"))
                };
                match refusal {
                    Some(reply) => conn.reply(&reply).await?,
                    None => {
                        session.recipients.push(to);
                        conn.reply("250 2.1.5 Ok\r\n").await?;
                    }
                }
            }
            "DATA" => {
                if session.recipients.is_empty() {
                    conn.reply("503 5.5.1 No valid recipients\r\n").await?;
                    continue;
                }
                let mode = data_mode(state, &session.recipients);
                conn.reply("354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                if mode == Mode::DropMidData {
                    conn.read_line().await?;
                    return Ok(());
                }
                let Some((data, too_big)) = read_data(&mut conn).await? else {
                    return Ok(());
                };
                let received = Received {
                    from: session.from.take().unwrap_or_default(),
                    recipients: std::mem::take(&mut session.recipients),
                    data,
                    auth_user: session.auth_user.clone(),
                    connection: id,
                };
                if too_big {
                    conn.reply("552 5.3.4 Message too big\r\n").await?;
                    continue;
                }
                match mode {
                    Mode::DeferAfterData(code, text) => {
                        conn.reply(&format!("{code} {text}\r\n")).await?;
                    }
                    Mode::DropAfterData => {
                        state.lock().unanswered.push(received);
                        state.unanswered.send_modify(|n| *n += 1);
                        return Ok(());
                    }
                    Mode::StallAfterData => {
                        state.lock().unanswered.push(received);
                        state.unanswered.send_modify(|n| *n += 1);
                        while conn.read_line().await?.is_some() {}
                        return Ok(());
                    }
                    _ => {
                        let queued = {
                            let mut inner = state.lock();
                            inner.messages.push(received);
                            inner.messages.len()
                        };
                        state.accepted.send_modify(|n| *n += 1);
                        conn.reply(&format!("250 2.0.0 Ok: queued as {id}.{queued}\r\n"))
                            .await?;
                    }
                }
            }
            "RSET" => {
                session.reset();
                conn.reply("250 2.0.0 Ok\r\n").await?;
            }
            "NOOP" => conn.reply("250 2.0.0 Ok\r\n").await?,
            "VRFY" => conn.reply("252 2.0.0 Cannot VRFY user\r\n").await?,
            "QUIT" => {
                conn.reply("221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => conn.reply("502 5.5.2 Command not recognized\r\n").await?,
        }
    }
}

/// The data-phase behaviour of a transaction: the first recipient rule that acts on the data,
/// else the sink-wide mode.
fn data_mode(state: &State, recipients: &[String]) -> Mode {
    let inner = state.lock();
    recipients
        .iter()
        .filter_map(|r| inner.overrides.get(&r.to_ascii_lowercase()))
        .find(|m| m.acts_on_data())
        .unwrap_or(&inner.mode)
        .clone()
}

/// Reads the data up to the `.` line: the unstuffed data and whether it exceeded `MAX_SIZE`,
/// or `None` if the client went away first.
async fn read_data(conn: &mut Conn) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut data = Vec::with_capacity(4096);
    let mut too_big = false;
    loop {
        let Some(line) = conn.read_line().await? else {
            return Ok(None);
        };
        if line == b".\r\n" {
            return Ok(Some((data, too_big)));
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if data.len() + line.len() > MAX_SIZE {
            too_big = true;
        } else {
            data.extend_from_slice(line);
        }
    }
}

/// AUTH PLAIN [initial] and AUTH LOGIN [initial], checked against the configured credentials.
async fn auth(conn: &mut Conn, state: &State, session: &mut Session, arg: &str) -> std::io::Result<()> {
    if session.auth_user.is_some() {
        return conn.reply("503 5.5.1 Already authenticated\r\n").await;
    }
    let (mechanism, initial) = arg.split_once(' ').unwrap_or((arg, ""));
    let credentials = match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let response = if initial.is_empty() {
                conn.reply("334 \r\n").await?;
                read_auth_line(conn).await?
            } else {
                Some(initial.to_owned())
            };
            response.and_then(|r| base64_decode(&r)).and_then(|raw| {
                let mut parts = raw.split(|b| *b == 0).skip(1);
                let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
                let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
                Some((user, pass))
            })
        }
        "LOGIN" => {
            let user = if initial.is_empty() {
                conn.reply("334 VXNlcm5hbWU6\r\n").await?;
                read_auth_line(conn).await?
            } else {
                Some(initial.to_owned())
            };
            let user = user
                .and_then(|u| base64_decode(&u))
                .and_then(|u| String::from_utf8(u).ok());
            match user {
                Some(user) => {
                    conn.reply("334 UGFzc3dvcmQ6\r\n").await?;
                    read_auth_line(conn)
                        .await?
                        .and_then(|p| base64_decode(&p))
                        .and_then(|p| String::from_utf8(p).ok())
                        .map(|pass| (user, pass))
                }
                None => None,
            }
        }
        _ => {
            return conn.reply("504 5.5.4 Unrecognized authentication type\r\n").await;
        }
    };
    let Some((user, pass)) = credentials else {
        return conn.reply("501 5.5.2 Cannot decode response\r\n").await;
    };
    let ok = {
        let mut inner = state.lock();
        inner.auths.push((user.clone(), pass.clone()));
        inner
            .credentials
            .as_ref()
            .is_none_or(|(u, p)| *u == user && *p == pass)
    };
    if ok {
        session.auth_user = Some(user);
        conn.reply("235 2.7.0 Authentication successful\r\n").await
    } else {
        conn.reply("535 5.7.8 Authentication credentials invalid\r\n")
            .await
    }
}

/// One line of an AUTH exchange; `None` if the client cancelled (`*`) or went away.
async fn read_auth_line(conn: &mut Conn) -> std::io::Result<Option<String>> {
    Ok(conn.read_line().await?.and_then(|line| {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        (line != "*").then(|| line.to_owned())
    }))
}

/// The address in `FROM:<a@b> PARAMS` / `TO:<a@b>`; `Some("")` for `<>`.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let rest = arg.get(..prefix.len())?;
    if !rest.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

// ---------------------------------------------------------------------------------------------
// Simple MIME reading, enough for tests

/// The header block and the body of an entity.
fn split_entity(text: &str) -> (&str, &str) {
    match text.find("\r\n\r\n") {
        Some(i) => (&text[..i + 2], &text[i + 4..]),
        None => (text, ""),
    }
}

fn header_in(text: &str, name: &str) -> Option<String> {
    let (headers, _) = split_entity(text);
    let mut found: Option<String> = None;
    for line in headers.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                value.push_str(line);
                continue;
            }
        } else if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            found = Some(v.trim_start().to_owned());
        }
    }
    found.map(|v| v.trim().to_owned())
}

/// A parameter of a structured header value (`boundary="x"`).
fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn part_of_type(text: &str, wanted: &str) -> Option<String> {
    let content_type = header_in(text, "Content-Type").unwrap_or_else(|| "text/plain".to_owned());
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let boundary = header_param(&content_type, "boundary")?;
        let (_, body) = split_entity(text);
        let delimiter = format!("--{boundary}");
        return body
            .split(delimiter.as_str())
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .find_map(|part| part_of_type(part.trim_start_matches("\r\n"), wanted));
    }
    if !lower.starts_with(wanted) {
        return None;
    }
    let (_, body) = split_entity(text);
    let encoding = header_in(text, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => base64_decode(&body.replace("\r\n", ""))?,
        "quoted-printable" => quoted_printable_decode(body),
        _ => body.as_bytes().to_vec(),
    };
    let text = String::from_utf8(bytes).ok()?;
    Some(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1..i + 3) == Some(b"\r\n") => i += 3,
            b'=' => match text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64 with padding; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim().as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
