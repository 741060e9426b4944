//! Email through the tenant's SMTP server (lettre). The From is the tenant's, never the
//! applet's; credentials come from the tenant's secrets by name; every message gets a
//! Message-ID derived from the call's idempotency key, which is what the applet gets back.

use std::time::Duration;

use coda_types::HostError;
use coda_types::capabilities::EmailMessage;
use coda_types::scrub::Scrubber;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::{SmtpSettings, SmtpTls, TenantSettings};

/// Sends one message. Its Message-ID is derived from the call's idempotency key, so the one
/// send that may be repeated (in flight when the host died) carries the same Message-ID
/// both times, and receivers that deduplicate on it show one message.
///
/// The SMTP credentials are recorded in the step's `scrubber`: the applet never read them,
/// but a server's reply (which lettre's errors quote) may echo them, and whatever the host
/// writes about the step is scrubbed of them.
pub(crate) async fn send(
    tenant: &TenantSettings,
    tenant_id: &str,
    key: &str,
    scrubber: &Scrubber,
    message: EmailMessage,
) -> Result<String, HostError> {
    let smtp = tenant.smtp.as_ref().ok_or_else(|| {
        HostError::Unavailable("no SMTP server is configured for this tenant".into())
    })?;
    let recipients = message.to.len() + message.cc.len();
    if message.to.is_empty() {
        return Err(HostError::Invalid(
            "the message has no recipient in 'to'".into(),
        ));
    }
    let max = tenant.ceiling.max_recipients as usize;
    if recipients > max {
        return Err(HostError::LimitExceeded(format!(
            "the message has {recipients} recipients, more than the limit of {max}"
        )));
    }
    // Validated when the settings were loaded; a failure here is the host's, not the applet's.
    let from: Mailbox = smtp.from.parse().map_err(|e| {
        HostError::Unavailable(format!("the tenant's From address is not valid: {e}"))
    })?;
    let domain = from.email.domain().to_string();
    let message_id = format!("<{}@{}>", message_id_for(tenant_id, key), domain);

    let mut builder = Message::builder()
        .from(from)
        .subject(message.subject)
        .message_id(Some(message_id.clone()));
    for to in &message.to {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &message.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    if let Some(reply_to) = &message.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    let email = match message.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(message.text, html)),
        None => builder.header(ContentType::TEXT_PLAIN).body(message.text),
    }
    .map_err(|e| HostError::Invalid(format!("cannot build the message: {e}")))?;

    let transport = transport(tenant, smtp, domain, scrubber)?;
    // lettre's timeout is per SMTP command; this one bounds the whole conversation.
    let limit = Duration::from_millis(smtp.timeout_ms);
    match tokio::time::timeout(limit, transport.send(email)).await {
        Ok(Ok(_)) => Ok(message_id),
        Ok(Err(e)) if e.is_permanent() => Err(HostError::Rejected(format!(
            "the SMTP server refused the message: {e}"
        ))),
        Ok(Err(e)) => Err(HostError::Unavailable(format!(
            "cannot send through {}:{}: {e}",
            smtp.host,
            smtp.port()
        ))),
        Err(_) => Err(HostError::Unavailable(format!(
            "the SMTP server {}:{} did not answer within {} ms",
            smtp.host,
            smtp.port(),
            smtp.timeout_ms
        ))),
    }
}

fn mailbox(address: &str) -> Result<Mailbox, HostError> {
    address
        .parse()
        .map_err(|e| HostError::Invalid(format!("'{address}' is not a valid email address: {e}")))
}

fn transport(
    tenant: &TenantSettings,
    smtp: &SmtpSettings,
    domain: String,
    scrubber: &Scrubber,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, HostError> {
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls | SmtpTls::Tls => {
            let params = TlsParameters::new(smtp.host.clone()).map_err(|e| {
                HostError::Unavailable(format!("cannot set up TLS for {}: {e}", smtp.host))
            })?;
            if smtp.tls == SmtpTls::Starttls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port())
        .tls(tls)
        .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
        // EHLO with the sender's domain rather than the host's name, which may be private.
        .hello_name(ClientId::Domain(domain));
    if let (Some(user), Some(password)) = (&smtp.username_secret, &smtp.password_secret) {
        let secret = |name: &str| {
            tenant
                .secrets
                .get(name)
                .map(|s| {
                    scrubber.record(name, s.expose());
                    s.expose().to_string()
                })
                .ok_or_else(|| {
                    HostError::Unavailable(format!(
                        "the SMTP credentials name secret '{name}', which the tenant does not have"
                    ))
                })
        };
        builder = builder.credentials(Credentials::new(secret(user)?, secret(password)?));
    } else if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        scrubber.record("smtp-password", password.expose());
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// 32 hex digits from the tenant and the key: stable for one call, unguessable from outside
/// without the key, and a fresh random one when the caller has no key.
fn message_id_for(tenant: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    if key.is_empty() {
        return uuid::Uuid::new_v4().simple().to_string();
    }
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}
