//! The capabilities `coda run` and `coda resume` give applets: the grants, SMTP servers,
//! databases and secrets of a settings file (`--grants FILE`), decided by
//! `coda-capabilities`, and follow-ups created in the run's own store.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use coda_capabilities::{FollowUps, HostCapabilities, Settings};
use coda_flow::{CapabilitySource, DenyAll};
use coda_plan::AppletRef;
use coda_store::{Channel, FollowUpRefused, NewFollowUp, Store};
use coda_types::HostError;
use coda_types::capabilities::{Capabilities, FollowUp, FollowUpChannel};

use crate::Exit;

/// The capability source of a local run: nothing granted without a settings file.
pub fn source(file: Option<&Path>, store: Arc<Store>) -> Result<Arc<dyn CapabilitySource>, Exit> {
    let Some(file) = file else {
        return Ok(Arc::new(DenyAll));
    };
    let settings = Settings::from_file(file)
        .map_err(|e| Exit::usage("invalid-grants", format!("{}: {e}", file.display())))?;
    let host = HostCapabilities::new(settings)
        .map_err(|e| Exit::usage("invalid-grants", format!("{}: {e}", file.display())))?
        .with_follow_ups(Arc::new(StoreFollowUps { store }));
    Ok(Arc::new(Grants(host)))
}

struct Grants(HostCapabilities);

impl CapabilitySource for Grants {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        self.0.for_applet(tenant, applet.name(), applet.version())
    }
}

/// Follow-ups are interactions in the same store as the runs.
struct StoreFollowUps {
    store: Arc<Store>,
}

#[async_trait]
impl FollowUps for StoreFollowUps {
    async fn clone_interaction(
        &self,
        tenant: &str,
        interaction: Option<&str>,
        follow_up: FollowUp,
        key: &str,
    ) -> Result<String, HostError> {
        let Some(source) = interaction else {
            return Err(HostError::Invalid(
                "this run has no interaction to clone".into(),
            ));
        };
        let channel = match follow_up.channel {
            FollowUpChannel::Phone => Channel::Voice,
            FollowUpChannel::TextMessage => Channel::Sms,
            FollowUpChannel::Email => Channel::Email,
            FollowUpChannel::Task => Channel::Task,
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let created = self
            .store
            .clone_interaction(
                tenant,
                NewFollowUp {
                    source: source.to_owned(),
                    channel,
                    queue: follow_up.queue,
                    subject: follow_up.subject,
                    assigned_to: follow_up.assign_to,
                    idempotency_key: key.to_owned(),
                    now_ms,
                },
            )
            .await
            .map_err(|e| HostError::Unavailable(format!("the interaction store: {e}")))?;
        match created {
            Ok(record) => Ok(record.id),
            Err(refused @ FollowUpRefused::UnknownSource(_)) => {
                Err(HostError::Invalid(refused.to_string()))
            }
            Err(refused @ FollowUpRefused::NotCompleted(_)) => {
                Err(HostError::Rejected(refused.to_string()))
            }
        }
    }
}
