//! Email through a real SMTP server on 127.0.0.1: mailin's protocol engine behind a tokio
//! listener that the test starts and stops.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use coda_types::capabilities::EmailMessage;
use mailin::response::{AUTH_OK, INTERNAL_ERROR, INVALID_CREDENTIALS, NO_MAILBOX, OK};
use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::*;

/// What the server received.
#[derive(Debug, Default, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
    user: String,
}

#[derive(Clone)]
struct Recorder {
    inbox: Arc<Mutex<Vec<Received>>>,
    current: Received,
    /// What to answer every RCPT with instead of OK (a 550, a 451).
    refuse_recipients: Option<Response>,
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current.from = from.to_string();
        OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if let Some(refusal) = &self.refuse_recipients {
            return refusal.clone();
        }
        self.current.to.push(to.to_string());
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let done = std::mem::take(&mut self.current);
        self.current.user = done.user.clone();
        self.inbox.lock().unwrap().push(done);
        OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        if user == "mailer" && password == "s3cret-pw" {
            self.current.user = user.to_string();
            AUTH_OK
        } else {
            INVALID_CREDENTIALS
        }
    }
}

struct SmtpServer {
    addr: SocketAddr,
    inbox: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(refuse_recipients: Option<Response>) -> SmtpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        inbox: inbox.clone(),
        current: Received::default(),
        refuse_recipients,
    };
    let task = tokio::spawn(async move {
        let mut builder = SessionBuilder::new("smtp.test");
        builder
            .enable_auth(AuthMechanism::Plain)
            .insecure_enable_plaintext_auth();
        let builder = Arc::new(builder);
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let builder = builder.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                let mut session = builder.build(peer.ip(), recorder);
                let greeting = session.greeting().buffer().unwrap();
                if write.write_all(&greeting).await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match read.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let response = session.process(&line);
                    match response.action {
                        Action::NoReply => continue,
                        Action::Reply => {
                            if write.write_all(&response.buffer().unwrap()).await.is_err() {
                                return;
                            }
                        }
                        Action::Close | Action::UpgradeTls => {
                            let _ = write.write_all(&response.buffer().unwrap()).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    SmtpServer { addr, inbox, task }
}

fn settings(port: u16, max_recipients: u32) -> String {
    format!(
        r#"
tenants:
  acme:
    ceiling:
      email: true
      max_recipients: {max_recipients}
    grants:
      mailer:
        email: true
      sms: {{}}
    smtp:
      host: 127.0.0.1
      port: {port}
      tls: none
      username_secret: smtp-user
      password_secret: smtp-password
      from: "Acme Support <support@acme.example>"
      timeout_ms: 3000
    secrets:
      smtp-user: mailer
      smtp-password: s3cret-pw
"#
    )
}

fn message() -> EmailMessage {
    EmailMessage {
        to: vec!["Ada Lovelace <ada@customer.example>".into()],
        cc: vec!["boss@customer.example".into()],
        subject: "Your call today".into(),
        text: "Thank you for calling.".into(),
        html: None,
        reply_to: Some("help@acme.example".into()),
    }
}

#[tokio::test]
async fn message_arrives_with_headers_body_and_the_returned_message_id() {
    let server = start(None).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let id = mailer.email_send(&cx(), message()).await.unwrap();
    assert!(
        id.starts_with('<') && id.ends_with("@acme.example>"),
        "{id}"
    );

    let inbox = server.inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 1);
    let got = &inbox[0];
    assert_eq!(got.user, "mailer", "authenticated with the secrets");
    assert_eq!(got.from, "support@acme.example");
    assert_eq!(got.to, ["ada@customer.example", "boss@customer.example"]);
    let data = &got.data;
    for needle in [
        &format!("Message-ID: {id}"),
        "From: \"Acme Support\" <support@acme.example>",
        "To: \"Ada Lovelace\" <ada@customer.example>",
        "Cc: boss@customer.example",
        "Reply-To: help@acme.example",
        "Subject: Your call today",
        "Thank you for calling.",
    ] {
        assert!(data.contains(needle), "{needle:?} missing from:\n{data}");
    }
    // Bcc-less: the message says nothing the applet did not give.
    assert!(!data.contains("s3cret"), "{data}");

    // The Message-ID comes from the call's key: a repeated call (in flight at a crash) sends
    // the same Message-ID, another call another one.
    let again = mailer.email_send(&cx(), message()).await.unwrap();
    assert_eq!(again, id);
    let mut other = cx();
    other.idempotency_key.push_str("/1");
    let different = mailer.email_send(&other, message()).await.unwrap();
    assert_ne!(different, id);
}

#[tokio::test]
async fn html_goes_as_an_alternative_part() {
    let server = start(None).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let mut m = message();
    m.html = Some("<p>Thank you</p>".into());
    mailer.email_send(&cx(), m).await.unwrap();
    let data = server.inbox.lock().unwrap()[0].data.clone();
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("<p>Thank you</p>"), "{data}");
}

#[tokio::test]
async fn permanent_refusal_is_rejected() {
    let server = start(Some(NO_MAILBOX)).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let m = expect_err(
        mailer.email_send(&cx(), message()).await,
        rejected,
        "rejected",
    );
    assert!(m.contains("550"), "{m}");
    assert!(server.inbox.lock().unwrap().is_empty());
}

#[tokio::test]
async fn transient_refusal_is_unavailable() {
    let server = start(Some(INTERNAL_ERROR)).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let m = expect_err(
        mailer.email_send(&cx(), message()).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains("451"), "{m}");
}

#[tokio::test]
async fn server_down_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = host(&settings(port, 10));
    let mailer = applet(&host, "acme", "mailer");
    let m = expect_err(
        mailer.email_send(&cx(), message()).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains(&port.to_string()), "{m}");
}

#[tokio::test]
async fn bad_addresses_limits_and_grants() {
    let server = start(None).await;
    let host = host(&settings(server.addr.port(), 2));
    let mailer = applet(&host, "acme", "mailer");
    let mut m = message();
    m.to = vec!["not an address".into()];
    let text = expect_err(mailer.email_send(&cx(), m).await, invalid, "invalid");
    assert!(text.contains("'not an address'"), "{text}");

    let mut m = message();
    m.cc.push("third@customer.example".into());
    let text = expect_err(mailer.email_send(&cx(), m).await, limit, "limit-exceeded");
    assert!(
        text.contains("3 recipients") && text.contains("limit of 2"),
        "{text}"
    );

    let sms = applet(&host, "acme", "sms");
    let text = expect_err(
        sms.email_send(&cx(), message()).await,
        not_granted,
        "not-granted",
    );
    assert!(text.contains("email"), "{text}");
    assert!(server.inbox.lock().unwrap().is_empty());
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_unavailable() {
    // Builds lettre's rustls parameters (ring, platform verifier) for real; the test server
    // offers no STARTTLS, so nothing is sent in clear.
    let server = start(None).await;
    let yaml = settings(server.addr.port(), 10).replace("tls: none", "tls: starttls");
    let host = host(&yaml);
    let mailer = applet(&host, "acme", "mailer");
    expect_err(
        mailer.email_send(&cx(), message()).await,
        unavailable,
        "unavailable",
    );
    assert!(server.inbox.lock().unwrap().is_empty());
}
