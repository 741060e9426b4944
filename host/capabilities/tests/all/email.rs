//! Email through a real SMTP server on 127.0.0.1 (coda-testkit's: mailin's protocol engine
//! behind a tokio listener) that each test starts and stops.

use coda_testkit::{SmtpMode, SmtpServer};
use coda_types::capabilities::CapabilitiesExt as _;
use coda_types::capabilities::EmailMessage;

use crate::support::*;

/// The SMTP server of coda-testkit, offering AUTH with the credentials the settings' secrets
/// hold.
async fn start(mode: SmtpMode) -> SmtpServer {
    SmtpServer::start(mode, Some(("mailer", "s3cret-pw")))
        .await
        .unwrap()
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
    let server = start(SmtpMode::Accept).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let id = mailer.email_send(&cx(), message()).await.unwrap();
    assert!(
        id.starts_with('<') && id.ends_with("@acme.example>"),
        "{id}"
    );

    let inbox = server.mails();
    assert_eq!(inbox.len(), 1);
    let got = &inbox[0];
    assert_eq!(
        got.user.as_deref(),
        Some("mailer"),
        "authenticated with the secrets"
    );
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
    let server = start(SmtpMode::Accept).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let mut m = message();
    m.html = Some("<p>Thank you</p>".into());
    mailer.email_send(&cx(), m).await.unwrap();
    let data = server.mails()[0].data.clone();
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("<p>Thank you</p>"), "{data}");
}

#[tokio::test]
async fn permanent_refusal_is_rejected() {
    let server = start(SmtpMode::RejectRecipients).await;
    let host = host(&settings(server.addr.port(), 10));
    let mailer = applet(&host, "acme", "mailer");
    let m = expect_err(
        mailer.email_send(&cx(), message()).await,
        rejected,
        "rejected",
    );
    assert!(m.contains("550"), "{m}");
    assert!(server.mails().is_empty());
}

#[tokio::test]
async fn transient_refusal_is_unavailable() {
    let server = start(SmtpMode::TemporaryFailure).await;
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
    let server = start(SmtpMode::Accept).await;
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
    assert!(server.mails().is_empty());
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_unavailable() {
    // Builds lettre's rustls parameters (ring, platform verifier) for real; the test server
    // offers no STARTTLS, so nothing is sent in clear.
    let server = start(SmtpMode::Accept).await;
    let yaml = settings(server.addr.port(), 10).replace("tls: none", "tls: starttls");
    let host = host(&yaml);
    let mailer = applet(&host, "acme", "mailer");
    expect_err(
        mailer.email_send(&cx(), message()).await,
        unavailable,
        "unavailable",
    );
    assert!(server.mails().is_empty());
}

/// An SMTP server on loopback that refuses every login and echoes the credentials in its
/// reply, decoded and as sent (base64): what a hostile or careless server may do.
async fn echoing_server() -> u16 {
    use base64::Engine as _;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 echo ESMTP\r\n").await.unwrap();
                let mut plain_next = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let sent = if plain_next {
                        Some(line.clone())
                    } else {
                        upper
                            .starts_with("AUTH PLAIN ")
                            .then(|| line[11..].to_owned())
                    };
                    let reply = if let Some(sent) = sent {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(sent.trim())
                            .unwrap_or_default();
                        let decoded = String::from_utf8_lossy(&decoded).replace('\0', " ");
                        format!("535 5.7.8 login {decoded} ({sent}) refused\r\n")
                    } else if upper == "AUTH PLAIN" {
                        plain_next = true;
                        "334 \r\n".into()
                    } else if upper.starts_with("EHLO") {
                        "250-echo\r\n250 AUTH PLAIN\r\n".into()
                    } else if upper == "QUIT" {
                        "221 bye\r\n".into()
                    } else {
                        "250 ok\r\n".into()
                    };
                    if plain_next && !reply.starts_with("334") {
                        plain_next = false;
                    }
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Finding 2 of issue 14, for email: the SMTP password is the host's to use, never the
/// applet's to see, even when the server's refusal quotes it.
#[tokio::test]
async fn a_server_echoing_the_credentials_hands_back_no_password() {
    use base64::Engine as _;
    let port = echoing_server().await;
    let host = host(&settings(port, 10));
    let mailer = applet(&host, "acme", "mailer");
    let cx = cx();
    let m = expect_err(
        mailer.email_send(&cx, message()).await,
        rejected,
        "rejected",
    );
    let sent = base64::engine::general_purpose::STANDARD.encode("\0mailer\0s3cret-pw");
    assert!(
        !m.contains("s3cret-pw") && !m.contains(&sent) && !m.contains("mailer s3cret"),
        "{m}"
    );
    assert!(m.contains("[secret:smtp-password]"), "{m}");
    // The step's scrubber holds them for everything else written about the step.
    assert_eq!(
        cx.scrubber.scrub("pw: s3cret-pw"),
        "pw: [secret:smtp-password]"
    );
}
