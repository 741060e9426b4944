//! The capabilities applets get, always decided by `coda-capabilities`: for `coda run` and
//! `coda resume` the grants, SMTP servers, databases and secrets of a settings file
//! (`--grants FILE`, [`source`]); for `coda serve` each tenant's ceiling, grants and secrets
//! from the store ([`StoreGrants`]). Follow-ups are created in the run's own store.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_capabilities::settings::{AppletGrant, TenantSettings};
use coda_capabilities::{EmailCounter, FollowUps, HostCapabilities, Secret, Settings};
use coda_flow::{CapabilitySource, DenyAll};
use coda_plan::AppletRef;
use coda_store::{Channel, FollowUpRefused, NewFollowUp, SecretsKey, Store};
use coda_types::capabilities::{
    Capabilities, CapabilityCall, CapabilityReply, FollowUp, FollowUpChannel,
};
use coda_types::{HostError, InvocationContext};

use crate::SetupError;

/// The capability source of a local run: nothing granted without a settings file.
pub fn source(
    file: Option<&Path>,
    store: Arc<Store>,
) -> Result<Arc<dyn CapabilitySource>, SetupError> {
    let Some(file) = file else {
        return Ok(Arc::new(DenyAll));
    };
    let invalid =
        |e: &dyn std::fmt::Display| SetupError::InvalidGrants(format!("{}: {e}", file.display()));
    let settings = Settings::from_file(file).map_err(|e| invalid(&e))?;
    let host = HostCapabilities::new(settings)
        .map_err(|e| invalid(&e))?
        .with_follow_ups(Arc::new(StoreFollowUps {
            store: store.clone(),
        }))
        .with_kv(store);
    Ok(Arc::new(Grants(host)))
}

struct Grants(HostCapabilities);

impl CapabilitySource for Grants {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        self.0.for_applet(tenant, applet.name(), applet.version())
    }
}

/// The capability source of `coda serve`: each tenant's capabilities built from the store
/// (the operator's ceiling, the tenant's grants, its secrets opened with the operator's
/// key), cached per tenant and rebuilt when the tenant's generation in the store moves. The
/// generation is read at every step: one indexed read, and a change made through any node
/// sharing the database is seen at the next step.
pub struct StoreGrants {
    store: Arc<Store>,
    key: SecretsKey,
    /// Operator-wide HTTP and SQL limits (the tenants' part of it is unused).
    base: Settings,
    emails: Arc<EmailCounter>,
    cache: Mutex<HashMap<String, (u64, HostCapabilities)>>,
}

impl StoreGrants {
    pub fn new(store: Arc<Store>, key: SecretsKey) -> Self {
        StoreGrants {
            store,
            key,
            base: Settings::default(),
            emails: Arc::default(),
            cache: Mutex::default(),
        }
    }

    /// The tenant's capabilities, from the cache while its generation holds.
    fn tenant(&self, tenant: &str) -> Result<HostCapabilities, String> {
        let generation = self
            .store
            .grants_generation(tenant)
            .map_err(|e| e.to_string())?;
        if let Some((cached, host)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            && *cached == generation
        {
            return Ok(host.clone());
        }
        // Read after the generation: a change made meanwhile is cached under the older
        // generation and rebuilt at the next step, never missed.
        let host = self.build(tenant)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned(), (generation, host.clone()));
        Ok(host)
    }

    fn build(&self, tenant: &str) -> Result<HostCapabilities, String> {
        let store_error = |e: coda_store::StoreError| e.to_string();
        let mut settings = match self.store.ceiling(tenant).map_err(store_error)? {
            Some(body) => TenantSettings::from_ceiling_json(tenant, &body)
                .map_err(|e| format!("the stored ceiling: {e}"))?,
            None => TenantSettings::default(),
        };
        for record in self.store.grants(tenant).map_err(store_error)? {
            // Checked when written; one that no longer parses grants nothing.
            if let Ok(grant) = serde_json::from_value::<AppletGrant>(record.body) {
                settings.grants.insert(record.applet, grant);
            }
        }
        // The service caps how many secrets a tenant stores, not which: every secret it
        // stored is within its ceiling, and the grant names those an applet may read.
        for (name, value) in self
            .store
            .secret_values(tenant, &self.key)
            .map_err(store_error)?
        {
            settings.ceiling.secrets.push(name.clone());
            settings.secrets.insert(name, Secret::new(value));
        }
        let mut all = Settings {
            http: self.base.http.clone(),
            sql: self.base.sql.clone(),
            ..Settings::default()
        };
        all.tenants.insert(tenant.to_owned(), settings);
        let host = HostCapabilities::new(all)
            .map_err(|e| e.to_string())?
            .with_follow_ups(Arc::new(StoreFollowUps {
                store: self.store.clone(),
            }))
            .with_kv(self.store.clone())
            .with_email_counter(self.emails.clone());
        Ok(host)
    }
}

impl CapabilitySource for StoreGrants {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        match self.tenant(tenant) {
            Ok(host) => host.for_applet(tenant, applet.name(), applet.version()),
            Err(why) => {
                // The host's failure (its database, its key), not the applet's: worth a
                // retry, and logged here since the applet sees only that it is unavailable.
                tracing::error!(tenant, "cannot build the tenant's capabilities: {why}");
                Arc::new(Unavailable)
            }
        }
    }
}

/// Every call answers `unavailable`: the tenant's grants could not be read.
struct Unavailable;

fn unavailable() -> HostError {
    HostError::Unavailable("the host cannot read this tenant's grants right now".into())
}

#[async_trait]
impl Capabilities for Unavailable {
    async fn call(
        &self,
        _: &InvocationContext,
        _: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        Err(unavailable())
    }
}

/// Follow-ups are interactions in the same store as the runs.
pub(crate) struct StoreFollowUps {
    pub(crate) store: Arc<Store>,
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
        let now_ms = coda_types::time::now_ms();
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
