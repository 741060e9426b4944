//! An SMTP server on loopback that keeps every message it accepts (the `mailin` protocol
//! state machine over tokio): the email capability talks real SMTP to it, and a test reads
//! back the raw message it received.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mailin::{Action, Handler, Response, SessionBuilder, response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message as received.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The raw message: headers and body, as sent in DATA.
    pub data: String,
    /// The credentials the client authenticated with (PLAIN or LOGIN), if any.
    pub user: Option<String>,
}

impl Mail {
    /// The body, decoded when it was sent quoted-printable (as lettre does for long lines).
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return body.to_owned();
        }
        let decoded =
            quoted_printable::decode(body.as_bytes(), quoted_printable::ParseMode::Robust)
                .unwrap_or_else(|_| body.as_bytes().to_vec());
        String::from_utf8_lossy(&decoded).into_owned()
    }

    /// A header's value (first occurrence, unfolded), case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                return value;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

/// How the server answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SmtpMode {
    /// Accepts every message.
    #[default]
    Accept,
    /// Refuses every recipient for good (550).
    RejectRecipients,
    /// Fails every message for now (451 to every recipient).
    TemporaryFailure,
}

/// One message transaction as the server saw it, whatever it answered: what a test counts
/// retries by (the `Message-ID` is the same on every attempt of a step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAttempt {
    pub message_id: Option<String>,
    /// The reply to the end of DATA: 250 accepted, 4xx "try later", 5xx refused for good.
    pub code: u16,
}

#[derive(Clone)]
struct Recorder {
    mode: SmtpMode,
    /// Reply codes for the next messages' end of DATA, in order (250: accept); once used up,
    /// messages are accepted.
    script: Arc<Mutex<std::collections::VecDeque<u16>>>,
    attempts: Arc<Mutex<Vec<SmtpAttempt>>>,
    credentials: Option<(String, String)>,
    current: Mail,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current.from = from.to_owned();
        self.current.to.clear();
        self.current.data.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        match self.mode {
            SmtpMode::RejectRecipients => return response::NO_MAILBOX,
            SmtpMode::TemporaryFailure => return response::INTERNAL_ERROR,
            SmtpMode::Accept => {}
        }
        self.current.to.push(to.to_owned());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let code = self
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or(250);
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SmtpAttempt {
                message_id: self.current.header("Message-ID"),
                code,
            });
        match code {
            250 => {}
            400..=499 => {
                return Response::custom(code, "scripted: mailbox busy, try again later".into());
            }
            _ => return Response::custom(code, "scripted: message refused".into()),
        }
        self.mails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.current.clone());
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.auth_login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        match &self.credentials {
            Some((u, p)) if u == user && p == password => {
                self.current.user = Some(user.to_owned());
                response::AUTH_OK
            }
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

/// The server; stops when dropped.
pub struct SmtpServer {
    pub addr: std::net::SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    attempts: Arc<Mutex<Vec<SmtpAttempt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    /// Starts on a free loopback port. With `credentials`, AUTH PLAIN and LOGIN are offered
    /// (over plain TCP: this is a loopback test server) and checked.
    pub async fn start(
        mode: SmtpMode,
        credentials: Option<(&str, &str)>,
    ) -> anyhow::Result<SmtpServer> {
        SmtpServer::start_on(0, mode, credentials).await
    }

    /// [`SmtpServer::start`] on a given loopback port (0: any free one).
    pub async fn start_on(
        port: u16,
        mode: SmtpMode,
        credentials: Option<(&str, &str)>,
    ) -> anyhow::Result<SmtpServer> {
        SmtpServer::start_scripted(port, mode, credentials, Vec::new()).await
    }

    /// [`SmtpServer::start_on`], answering the end of DATA of the next messages with the
    /// codes of `script` in order (250 accepts; a 4xx says "try later", a 5xx refuses for
    /// good), then accepting: a server misbehaving on demand. Every transaction is counted
    /// in [`SmtpServer::attempts`].
    pub async fn start_scripted(
        port: u16,
        mode: SmtpMode,
        credentials: Option<(&str, &str)>,
        script: Vec<u16>,
    ) -> anyhow::Result<SmtpServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let mails = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            mode,
            script: Arc::new(Mutex::new(script.into())),
            attempts: attempts.clone(),
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            current: Mail::default(),
            mails: mails.clone(),
        };
        let mut builder = SessionBuilder::new("coda-testkit");
        if recorder.credentials.is_some() {
            builder
                .enable_auth(mailin::AuthMechanism::Plain)
                .enable_auth(mailin::AuthMechanism::Login)
                .insecure_enable_plaintext_auth();
        }
        let builder = Arc::new(builder);
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (builder, recorder) = (builder.clone(), recorder.clone());
                // mailin stays in DATA after an error reply to the end of DATA (the client's
                // RSET or QUIT would be taken for message text): a fresh session, greeted,
                // stands in for the one that refused.
                let session = builder.build(peer.ip(), recorder.clone());
                let fresh = move || {
                    let mut session = builder.build(peer.ip(), recorder.clone());
                    session.process(b"HELO coda-testkit\r\n");
                    session
                };
                tokio::spawn(serve(stream, session, fresh));
            }
        });
        Ok(SmtpServer {
            addr,
            mails,
            attempts,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every message transaction that reached the end of DATA, accepted or not, in order.
    pub fn attempts(&self) -> Vec<SmtpAttempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The messages accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    mut session: mailin::Session<Recorder>,
    fresh: impl Fn() -> mailin::Session<Recorder>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let reply = |response: &Response| response.buffer().unwrap_or_default();
    if write.write_all(&reply(&session.greeting())).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        if response.code == 354 {
            in_data = true;
        } else if in_data && line == b".\r\n" {
            in_data = false;
            if response.is_error {
                session = fresh();
            }
        }
        match response.action {
            Action::NoReply => continue,
            Action::Reply => {
                if write.write_all(&reply(&response)).await.is_err() {
                    return;
                }
            }
            Action::Close | Action::UpgradeTls => {
                let _ = write.write_all(&reply(&response)).await;
                return;
            }
        }
    }
}
