//! Secrets and follow-up interactions: grants first, values never in errors.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_capabilities::FollowUps;
use coda_types::HostError;
use coda_types::capabilities::CapabilitiesExt as _;
use coda_types::capabilities::{FollowUp, FollowUpChannel};

use crate::support::*;

const SETTINGS: &str = r#"
tenants:
  acme:
    ceiling:
      secrets: [sms-token, unset]
      interactions: true
    grants:
      sms:
        secrets: [sms-token, unset]
        interactions: true
      sms@2.0.0:
        secrets: []
      other: {}
    secrets:
      sms-token: tok-123456
      smtp-password: pw-987
"#;

#[tokio::test]
async fn only_granted_secrets_are_read_and_values_stay_out_of_errors() {
    let host = host(SETTINGS);
    let sms = applet(&host, "acme", "sms");
    assert_eq!(
        sms.secret_get(&cx(), "sms-token".into()).await.unwrap(),
        "tok-123456"
    );
    // Set for the tenant but not granted to this applet.
    let m = expect_err(
        sms.secret_get(&cx(), "smtp-password".into()).await,
        not_granted,
        "not-granted",
    );
    assert!(
        m.contains("secret 'smtp-password'") && !m.contains("pw-987"),
        "{m}"
    );
    // Granted but without a value.
    let m = expect_err(
        sms.secret_get(&cx(), "unset".into()).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains("'unset'"), "{m}");
    // The pinned entry for 2.0.0 grants none.
    let v2 = host.for_applet("acme", "sms", "2.0.0");
    let m = expect_err(
        v2.secret_get(&cx(), "sms-token".into()).await,
        not_granted,
        "not-granted",
    );
    assert!(!m.contains("tok-123456"), "{m}");
    // Debug of the settings redacts every value.
    let printed = format!("{:?}", host.settings());
    assert!(
        !printed.contains("tok-123456") && !printed.contains("pw-987"),
        "{printed}"
    );
}

/// One call: tenant, interaction, follow-up, key.
type Call = (String, Option<String>, FollowUp, String);

#[derive(Default)]
struct Recorded {
    calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl FollowUps for Recorded {
    async fn clone_interaction(
        &self,
        tenant: &str,
        interaction: Option<&str>,
        follow_up: FollowUp,
        key: &str,
    ) -> Result<String, HostError> {
        self.calls.lock().unwrap().push((
            tenant.into(),
            interaction.map(String::from),
            follow_up,
            key.into(),
        ));
        Ok("i-2".into())
    }
}

fn follow_up() -> FollowUp {
    FollowUp {
        channel: FollowUpChannel::Phone,
        queue: "callbacks".into(),
        subject: Some("Call back".into()),
        assign_to: None,
    }
}

#[tokio::test]
async fn follow_ups_need_the_grant_and_a_configured_store() {
    let host = host(SETTINGS);
    let sms = applet(&host, "acme", "sms");
    let m = expect_err(
        sms.clone_interaction(&cx(), follow_up()).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains("interaction store"), "{m}");

    let recorded = Arc::new(Recorded::default());
    let host = host.with_follow_ups(recorded.clone());
    let sms = applet(&host, "acme", "sms");
    assert_eq!(
        sms.clone_interaction(&cx(), follow_up()).await.unwrap(),
        "i-2"
    );
    let calls = recorded.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [(
            "acme".to_string(),
            Some("i-1".to_string()),
            follow_up(),
            KEY.to_string()
        )]
    );

    let other = applet(&host, "acme", "other");
    let m = expect_err(
        other.clone_interaction(&cx(), follow_up()).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("interactions"), "{m}");
    assert_eq!(recorded.calls.lock().unwrap().len(), 1);
}

/// A database URL's password is the host's to use: an error (a server unreachable, a server
/// echoing a value) hands back no password, and a secret the applet bound as a parameter
/// that PostgreSQL quotes in its error comes back scrubbed (issue 14, finding 2).
#[tokio::test]
async fn sql_errors_carry_neither_the_urls_password_nor_a_secret_parameter() {
    const PASSWORD: &str = "pg-Pa55word-x9";
    const TOKEN: &str = "tok-Qm4zV8rT1";
    // A host that does not resolve, with the password in the URL.
    let unreachable = format!("postgres://coda:{PASSWORD}@db.invalid:5432/calls");
    let nowhere = host(&crate::sqlite::settings(&unreachable));
    let logger = applet(&nowhere, "acme", "logger");
    let m = expect_err(
        logger
            .sql_query(&cx(), "calls".into(), "SELECT 1".into(), vec![])
            .await,
        unavailable,
        "unavailable",
    );
    assert!(!m.contains(PASSWORD), "{m}");

    let Ok(admin) = std::env::var("CODA_TEST_POSTGRES") else {
        panic!("CODA_TEST_POSTGRES is not set: this test needs a PostgreSQL server");
    };
    // The same server with a password in the URL (its trust authentication ignores it).
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_password(Some(PASSWORD)).unwrap();
    let server = host(&crate::sqlite::settings(url.as_str()));
    let logger = applet(&server, "acme", "logger");
    let cx = cx();
    // What the runtime does when the applet reads a secret.
    cx.scrubber.record("crm", TOKEN);
    for (value, replaced) in [
        (TOKEN, "[secret:crm]"),
        (PASSWORD, "[secret:database:calls]"),
    ] {
        let m = expect_err(
            logger
                .sql_query(
                    &cx,
                    "calls".into(),
                    "SELECT ($1::text)::integer AS n".into(),
                    vec![coda_types::Value::Text(value.into())],
                )
                .await,
            invalid,
            "invalid",
        );
        assert!(!m.contains(value) && m.contains(replaced), "{m}");
    }
}
