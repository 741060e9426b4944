//! The capabilities applets get, always decided by `coda-capabilities`: for `coda run` and
//! `coda resume` the grants, SMTP servers, databases and secrets of a settings file
//! (`--grants FILE`); for `coda serve` each tenant's ceiling, grants and secrets from the
//! store ([`StoreGrants`]). Follow-ups are created in the run's own store.

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

/// The file holding the generated secrets key, in the data directory.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The key tenants' secrets are sealed with, in this order: `configured` (the operator's
/// configuration file), `$CODA_SECRETS_KEY`, the data directory's `secrets.key`, or a new
/// key written there (mode 0600) on the first start, which is said on stderr. Losing that
/// file loses the secrets: an operator should configure a key kept elsewhere.
pub fn secrets_key(configured: Option<&str>, data_dir: &Path) -> Result<SecretsKey, Exit> {
    let invalid = |from: &str, e: String| Exit::usage("usage", format!("{from}: {e}"));
    if let Some(text) = configured {
        return SecretsKey::parse(text).map_err(|e| invalid("the configured secrets key", e));
    }
    if let Ok(text) = std::env::var("CODA_SECRETS_KEY")
        && !text.trim().is_empty()
    {
        return SecretsKey::parse(&text).map_err(|e| invalid("CODA_SECRETS_KEY", e));
    }
    use cap_std::fs::{Dir, OpenOptions};
    use std::io::{Read, Write};
    let io = |e: std::io::Error| {
        Exit::usage(
            "io",
            format!("{}: {e}", data_dir.join(SECRETS_KEY_FILE).display()),
        )
    };
    let dir = Dir::open_ambient_dir(data_dir, cap_std::ambient_authority()).map_err(io)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match dir.open_with(SECRETS_KEY_FILE, &options) {
        Ok(mut file) => {
            let key = SecretsKey::generate().map_err(|e| Exit::usage("internal", e))?;
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            let line = format!(
                "coda serve: no secrets key configured (CODA_SECRETS_KEY): generated one into {}\n",
                data_dir.join(SECRETS_KEY_FILE).display()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The key file is a line of text: read no more than any config file.
            let mut text = String::new();
            dir.open(SECRETS_KEY_FILE)
                .and_then(|f| {
                    f.take(coda_types::files::MAX_CONFIG_FILE_BYTES)
                        .read_to_string(&mut text)
                })
                .map_err(io)?;
            SecretsKey::parse(&text)
                .map_err(|e| invalid(&data_dir.join(SECRETS_KEY_FILE).display().to_string(), e))
        }
        Err(e) => Err(io(e)),
    }
}

/// Seeds the store from a settings file (`coda serve --grants FILE`), the operator's
/// bootstrap: for each tenant of the file, the tenant (created without a token if new), its
/// ceiling document (the file's ceiling, SMTP server and databases; SMTP credentials the file
/// keeps in secrets become the server's own), its grants and its secrets, replacing those
/// the store has under the same names.
pub async fn seed(store: &Store, key: &SecretsKey, file: &Path) -> Result<(), Exit> {
    let invalid = |e: String| Exit::usage("invalid-grants", format!("{}: {e}", file.display()));
    let settings = Settings::from_file(file).map_err(|e| invalid(e.to_string()))?;
    let text = coda_types::files::read_text_capped(file, coda_types::files::MAX_CONFIG_FILE_BYTES)
        .map_err(|e| invalid(e.to_string()))?;
    let raw: serde_json::Value = if file.extension().is_some_and(|x| x == "json") {
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?
    } else {
        coda_types::yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?
    };
    let io = |e: coda_store::StoreError| Exit::usage("io", e.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for (tenant, parsed) in &settings.tenants {
        let raw = &raw["tenants"][tenant];
        let mut ceiling = raw["ceiling"].clone();
        if let Some(object) = ceiling.as_object_mut() {
            let named = object
                .remove("secrets")
                .and_then(|s| s.as_array().map(Vec::len))
                .unwrap_or(0);
            let max = parsed
                .ceiling
                .max_secrets
                .unwrap_or(0)
                .max(u32::try_from(named.max(parsed.secrets.len())).unwrap_or(u32::MAX));
            object.insert("max_secrets".into(), max.into());
        }
        let mut smtp = raw["smtp"].clone();
        if let (Some(object), Some(parsed_smtp)) = (smtp.as_object_mut(), &parsed.smtp) {
            object.remove("username_secret");
            object.remove("password_secret");
            let secret = |name: &Option<String>| {
                name.as_ref()
                    .and_then(|n| parsed.secrets.get(n))
                    .map(|s| s.expose().to_owned())
            };
            if let (Some(user), Some(password)) = (
                secret(&parsed_smtp.username_secret),
                secret(&parsed_smtp.password_secret),
            ) {
                object.insert("username".into(), user.into());
                object.insert("password".into(), password.into());
            }
        }
        let mut document = serde_json::json!({ "ceiling": ceiling });
        if !smtp.is_null() {
            document["smtp"] = smtp;
        }
        if !raw["databases"].is_null() {
            document["databases"] = raw["databases"].clone();
        }
        TenantSettings::from_ceiling_json(tenant, &document)
            .map_err(|e| invalid(format!("tenants.{tenant}: {e}")))?;
        store.ensure_tenant(tenant, now).await.map_err(io)?;
        store
            .set_ceiling(tenant, &document, now)
            .await
            .map_err(io)?;
        for applet in parsed.grants.keys() {
            store
                .put_grant(tenant, applet, &raw["grants"][applet], now)
                .await
                .map_err(io)?;
        }
        for (name, value) in &parsed.secrets {
            store
                .put_secret(tenant, name, value.expose(), key, u32::MAX, now)
                .await
                .map_err(io)?;
        }
    }
    Ok(())
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

/// Each tenant's bounds from its ceiling: its scheduler concurrency (for the fair
/// scheduler, which asks at every pick) and its invocation caps (fuel, memory). Read from
/// the store at most once a second per tenant, so a ceiling the operator changes applies
/// within a second, on every node.
pub struct CeilingLimits {
    store: Arc<Store>,
    cache: Mutex<HashMap<String, (std::time::Instant, Bounds)>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bounds {
    limit: coda_flow::TenantLimit,
    caps: crate::applets::Caps,
}

impl CeilingLimits {
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn new(store: Arc<Store>) -> Self {
        CeilingLimits {
            store,
            cache: Mutex::default(),
        }
    }

    /// The tenant's invocation caps; none where its ceiling sets none.
    pub fn caps(&self, tenant: &str) -> crate::applets::Caps {
        self.bounds(tenant).caps
    }

    fn read(&self, tenant: &str) -> Bounds {
        let ceiling = match self.store.ceiling(tenant) {
            Ok(Some(body)) => TenantSettings::from_ceiling_json(tenant, &body)
                .ok()
                .map(|s| s.ceiling),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(tenant, "cannot read the tenant's ceiling: {e}");
                None
            }
        };
        let Some(ceiling) = ceiling else {
            return Bounds::default();
        };
        Bounds {
            limit: coda_flow::TenantLimit {
                concurrency: ceiling.concurrency.map(|n| n as usize),
                queue: None,
            },
            caps: crate::applets::Caps {
                fuel: ceiling.fuel,
                memory_bytes: ceiling.memory_bytes,
            },
        }
    }

    fn bounds(&self, tenant: &str) -> Bounds {
        let now = std::time::Instant::now();
        if let Some((at, bounds)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            && now.duration_since(*at) < Self::FRESH_FOR
        {
            return *bounds;
        }
        let bounds = self.read(tenant);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned(), (now, bounds));
        bounds
    }
}

impl coda_flow::TenantLimits for CeilingLimits {
    fn limits(&self, tenant: &str) -> coda_flow::TenantLimit {
        self.bounds(tenant).limit
    }
}
