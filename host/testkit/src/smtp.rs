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

#[derive(Clone)]
struct Recorder {
    mode: SmtpMode,
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
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let mails = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            mode,
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
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let session = builder.build(peer.ip(), recorder.clone());
                tokio::spawn(serve(stream, session));
            }
        });
        Ok(SmtpServer { addr, mails, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
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

async fn serve(stream: tokio::net::TcpStream, mut session: mailin::Session<Recorder>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let reply = |response: &Response| response.buffer().unwrap_or_default();
    if write.write_all(&reply(&session.greeting())).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
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
