//! The host side of coda's capabilities: outbound HTTP, email over SMTP, SQL on the tenant's
//! databases, secrets, follow-up interactions and the tenant's key-value store, each behind
//! one grant check.
//!
//! ```text
//! Settings::from_file("capabilities.yaml")?          // ceiling, grants, SMTP, databases, secrets
//!   → HostCapabilities::new(settings)?                // clients and connections, shared
//!       .with_follow_ups(Arc::new(store_follow_ups))  // optional: clone-interaction
//!       .with_kv(store.clone())                       // optional: the key-value stores
//!   → .for_applet(tenant, name, version)              // Arc<dyn Capabilities> for one invocation
//! ```
//!
//! **Invariant:** every capability method calls [`grants::check`] first; no other code reads
//! a grant or a ceiling to allow something. Deny by default holds at every level: an unknown
//! tenant, an applet without grants, a field left out of the file all grant nothing.
//!
//! This crate depends on no wasmtime crate and not on `coda-runtime`: it sees only
//! `coda-types`.

pub mod ceiling_doc;
mod email;
pub mod grants;
mod http;
pub mod net;
pub mod outbound;
pub mod pattern;
pub mod settings;
mod sql;
pub mod sql_policy;

use std::sync::Arc;

use async_trait::async_trait;
use coda_types::capabilities::{
    Capabilities, CapabilityCall, CapabilityReply, EmailMessage, FollowUp, HttpRequest,
    HttpResponse, SqlRows, SqlStatement,
};
use coda_types::kv::{KvAnswer, KvCall, KvStore};
use coda_types::{HostError, InvocationContext};

pub use grants::{Access, Scheme};
pub use settings::{Secret, Settings, SettingsError};

/// Messages sent per tenant in the last hour, for the ceiling's `email_per_hour`. Shared
/// by every [`HostCapabilities`] of a process (the service rebuilds a tenant's when its
/// grants change; the count must survive that).
#[derive(Default)]
pub struct EmailCounter {
    sent: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl EmailCounter {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

    /// Takes one message of `tenant`'s hourly allowance, or says it is spent.
    fn take(&self, tenant: &str, per_hour: u32) -> Result<(), HostError> {
        let now = std::time::Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let times = sent.entry(tenant.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= per_hour as usize {
            return Err(HostError::LimitExceeded(format!(
                "tenant '{tenant}' has sent {per_hour} messages in the last hour, its limit"
            )));
        }
        times.push_back(now);
        Ok(())
    }
}

/// Creates follow-up interactions (the `interactions` capability). The lead implementation
/// lives over the store; this crate only checks the grant and passes the call on.
#[async_trait]
pub trait FollowUps: Send + Sync {
    /// Clones `interaction` (the run's own, if it has one) of `tenant` into a new active
    /// outbound interaction; returns its id. `key` is the call's idempotency key: the same key
    /// must give the same interaction, not a second one.
    async fn clone_interaction(
        &self,
        tenant: &str,
        interaction: Option<&str>,
        follow_up: FollowUp,
        key: &str,
    ) -> Result<String, HostError>;
}

/// The capabilities of every tenant, built once from [`Settings`] and shared: it holds the
/// HTTP clients and the database connections, so views made by [`Self::for_applet`] are
/// cheap.
#[derive(Clone)]
pub struct HostCapabilities {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    http: http::Http,
    sql: sql::Databases,
    follow_ups: Option<Arc<dyn FollowUps>>,
    kv: Option<Arc<dyn KvStore>>,
    emails: Arc<EmailCounter>,
}

impl HostCapabilities {
    /// Builds the capabilities. Fails only if the settings do not validate.
    pub fn new(settings: Settings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(HostCapabilities {
            inner: Arc::new(Inner {
                http: http::Http::new(&settings.http),
                sql: sql::Databases::default(),
                settings,
                follow_ups: None,
                kv: None,
                emails: Arc::default(),
            }),
        })
    }

    /// Sets what answers `clone-interaction`. Call before handing out views.
    pub fn with_follow_ups(self, follow_ups: Arc<dyn FollowUps>) -> Self {
        self.changed(|inner| inner.follow_ups = Some(follow_ups))
    }

    /// Sets where the tenants' key-value stores live (the run store). Call before handing
    /// out views.
    pub fn with_kv(self, kv: Arc<dyn KvStore>) -> Self {
        self.changed(|inner| inner.kv = Some(kv))
    }

    /// Counts sent messages in `emails` (shared with other instances) rather than in a
    /// counter of this one's own. Call before handing out views.
    pub fn with_email_counter(self, emails: Arc<EmailCounter>) -> Self {
        self.changed(|inner| inner.emails = emails)
    }

    fn changed(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            // Views already share this one: build a new one (clients are cheap to remake).
            Err(shared) => Inner {
                settings: shared.settings.clone(),
                http: http::Http::new(&shared.settings.http),
                sql: sql::Databases::default(),
                follow_ups: shared.follow_ups.clone(),
                kv: shared.kv.clone(),
                emails: shared.emails.clone(),
            },
        };
        change(&mut inner);
        HostCapabilities {
            inner: Arc::new(inner),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The one grant decision, as the capabilities make it (for the server to explain a
    /// grant, or a test).
    pub fn check(
        &self,
        tenant: &str,
        applet_name: &str,
        applet_version: &str,
        access: &Access<'_>,
    ) -> Result<(), HostError> {
        grants::check(
            &self.inner.settings,
            tenant,
            applet_name,
            applet_version,
            access,
        )
    }

    /// The capabilities of one applet of one tenant, for the sandbox to forward its imports
    /// to. The context's tenant is not trusted for grants: the view's own tenant is.
    pub fn for_applet(
        &self,
        tenant: &str,
        applet_name: &str,
        applet_version: &str,
    ) -> Arc<dyn Capabilities> {
        Arc::new(AppletCapabilities {
            host: self.inner.clone(),
            tenant: tenant.to_string(),
            name: applet_name.to_string(),
            version: applet_version.to_string(),
        })
    }
}

/// A result whose error is scrubbed of the step's secret values, the credentials a capability
/// used on the step's behalf among them: a server that echoes a password (in an SMTP reply,
/// a PostgreSQL error) does not hand it to an applet that never read it.
fn scrubbed<T>(result: Result<T, HostError>, cx: &InvocationContext) -> Result<T, HostError> {
    result.map_err(|mut e| {
        cx.scrubber.apply(&mut e);
        e
    })
}

/// One applet's view: every method asks the grant check first.
struct AppletCapabilities {
    host: Arc<Inner>,
    tenant: String,
    name: String,
    version: String,
}

impl AppletCapabilities {
    fn check(&self, access: &Access<'_>) -> Result<(), HostError> {
        grants::check(
            &self.host.settings,
            &self.tenant,
            &self.name,
            &self.version,
            access,
        )
    }

    /// A PostgreSQL URL's password is used on the step's behalf: recorded in the step's
    /// scrubber, so that a server echoing it (in an error the applet and the journal get)
    /// is written as `[secret:database:NAME]`.
    fn record_database_password(
        &self,
        scrubber: &coda_types::scrub::Scrubber,
        database: &str,
    ) -> Result<(), HostError> {
        if let Some(settings::DatabaseUrl::Postgres(url)) = self.tenant()?.databases.get(database)
            && let Ok(config) = url.parse::<tokio_postgres::Config>()
            && let Some(password) = config.get_password()
        {
            scrubber.record(
                &format!("database:{database}"),
                &String::from_utf8_lossy(password),
            );
        }
        Ok(())
    }

    fn tenant(&self) -> Result<&settings::TenantSettings, HostError> {
        // check() passed, so the tenant exists; answer rather than panic all the same.
        self.host
            .settings
            .tenants
            .get(&self.tenant)
            .ok_or_else(|| HostError::NotGranted(format!("unknown tenant '{}'", self.tenant)))
    }
}

#[async_trait]
impl Capabilities for AppletCapabilities {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Http(request) => {
                self.http_send(cx, request).await.map(CapabilityReply::Http)
            }
            CapabilityCall::Email(message) => self
                .email_send(cx, message)
                .await
                .map(CapabilityReply::Email),
            CapabilityCall::SqlQuery(statement) => self
                .sql_query(cx, statement)
                .await
                .map(CapabilityReply::SqlQuery),
            CapabilityCall::SqlExecute(statement) => self
                .sql_execute(cx, statement)
                .await
                .map(CapabilityReply::SqlExecute),
            CapabilityCall::Secret { name } => self.secret_get(name).map(CapabilityReply::Secret),
            CapabilityCall::Interactions(follow_up) => self
                .clone_interaction(cx, follow_up)
                .await
                .map(CapabilityReply::Interactions),
            CapabilityCall::Kv(call) => self.kv(cx, call).await.map(CapabilityReply::Kv),
        }
    }
}

/// One method per kind of call, each asking the grant check first.
impl AppletCapabilities {
    async fn http_send(
        &self,
        cx: &InvocationContext,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        // The HTTP module calls back into the grant check for the first URL and each redirect.
        // An unknown tenant allows no private range; the grant check then refuses the call.
        let allowed = grants::allowed_private(&self.host.settings, &self.tenant);
        self.host
            .http
            .send(
                &|access| self.check(access),
                &self.tenant,
                allowed,
                &cx.idempotency_key,
                request,
            )
            .await
    }

    async fn email_send(
        &self,
        cx: &InvocationContext,
        message: EmailMessage,
    ) -> Result<String, HostError> {
        self.check(&Access::Email)?;
        let tenant = self.tenant()?;
        // A quota, not a grant: counted after the grant check, before the message is built.
        if let Some(per_hour) = tenant.ceiling.email_per_hour {
            self.host.emails.take(&self.tenant, per_hour)?;
        }
        let sent = email::send(
            tenant,
            &self.tenant,
            &cx.idempotency_key,
            &cx.scrubber,
            message,
        )
        .await;
        scrubbed(sent, cx)
    }

    async fn sql_query(
        &self,
        cx: &InvocationContext,
        SqlStatement {
            database,
            statement,
            params,
        }: SqlStatement,
    ) -> Result<SqlRows, HostError> {
        self.check(&Access::Sql {
            database: &database,
        })?;
        self.record_database_password(&cx.scrubber, &database)?;
        let done = self
            .host
            .sql
            .query(
                &self.tenant,
                self.tenant()?,
                &self.host.settings.sql,
                &database,
                statement,
                params,
            )
            .await;
        scrubbed(done, cx)
    }

    async fn sql_execute(
        &self,
        cx: &InvocationContext,
        SqlStatement {
            database,
            statement,
            params,
        }: SqlStatement,
    ) -> Result<u64, HostError> {
        self.check(&Access::Sql {
            database: &database,
        })?;
        self.record_database_password(&cx.scrubber, &database)?;
        let done = self
            .host
            .sql
            .execute(
                &self.tenant,
                self.tenant()?,
                &self.host.settings.sql,
                &database,
                statement,
                params,
            )
            .await;
        scrubbed(done, cx)
    }

    fn secret_get(&self, name: String) -> Result<String, HostError> {
        self.check(&Access::Secret { name: &name })?;
        match self.tenant()?.secrets.get(&name) {
            Some(secret) => Ok(secret.expose().to_string()),
            None => Err(HostError::Unavailable(format!(
                "secret '{name}' is granted but has no value for tenant '{}'",
                self.tenant
            ))),
        }
    }

    async fn kv(&self, cx: &InvocationContext, call: KvCall) -> Result<KvAnswer, HostError> {
        let KvCall { op, journal } = call;
        self.check(&Access::kv(&op))?;
        // check() passed, so the ceiling allows the tenant a store and has its limits.
        let limits = grants::kv_limits(&self.host.settings, &self.tenant).unwrap_or_default();
        let store = self.host.kv.as_ref().ok_or_else(|| {
            HostError::Unavailable("this host has no key-value store configured".into())
        })?;
        // A step's call counts time on the step's clock (virtual in a simulated run), so a
        // ttl of a day passes with the day the run waits; outside a run, the wall clock.
        let now_ms = journal
            .as_ref()
            .map_or_else(coda_types::time::now_ms, |j| j.at_ms);
        store
            .apply(&self.tenant, op, limits, now_ms, journal, &cx.scrubber)
            .await
    }

    async fn clone_interaction(
        &self,
        cx: &InvocationContext,
        follow_up: FollowUp,
    ) -> Result<String, HostError> {
        self.check(&Access::Interactions)?;
        let follow_ups = self.host.follow_ups.as_ref().ok_or_else(|| {
            HostError::Unavailable(
                "this host has no interaction store configured to create follow-ups".into(),
            )
        })?;
        follow_ups
            .clone_interaction(
                &self.tenant,
                cx.interaction.as_deref(),
                follow_up,
                &cx.idempotency_key,
            )
            .await
    }
}
