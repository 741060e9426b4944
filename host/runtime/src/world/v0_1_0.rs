//! `coda:applet@0.1.0`: bindings, the host side of its imports, and conversions.

use coda_types::scrub::Scrubber;
use coda_types::{Capability, Failure, HostError, LogLevel, Outcome, Value};
use wasmtime::Store;
use wasmtime::component::Linker;

use crate::capabilities::{
    CapabilityCall, CapabilityReply, EmailMessage, FollowUp, FollowUpChannel, HttpRequest,
    SqlStatement,
};
use crate::sandbox::HostState;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "applet",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub(crate) use self::Applet as Bindings;

use self::coda::applet::types as wit;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Bindings::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)
}

pub(crate) async fn describe(
    pre: &AppletPre<HostState>,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Result<coda_types::AppletInfo, String>> {
    let bindings = pre.instantiate_async(&mut *store).await?;
    let info = bindings
        .coda_applet_handler()
        .call_describe(&mut *store)
        .await?;
    Ok(convert_info(info))
}

pub(crate) async fn run(
    pre: &AppletPre<HostState>,
    store: &mut Store<HostState>,
    config: &str,
) -> wasmtime::Result<Result<Outcome, Failure>> {
    let bindings = pre.instantiate_async(&mut *store).await?;
    let cx = &store.data().context;
    let invocation = wit::Invocation {
        context: wit::Context {
            tenant: cx.tenant.clone(),
            interaction: cx.interaction.clone(),
            run: cx.run.clone(),
            plan: cx.plan.clone(),
            node: cx.node.clone(),
            idempotency_key: cx.idempotency_key.clone(),
            attempt: cx.attempt,
        },
        config: config.to_owned(),
    };
    let result = bindings
        .coda_applet_handler()
        .call_run(&mut *store, &invocation)
        .await?;
    Ok(result.map(outcome_from_wit).map_err(|f| Failure {
        code: f.code,
        message: f.message,
        retryable: f.retryable,
        retry_after_millis: f.retry_after_millis,
    }))
}

pub(super) fn convert_info(info: wit::AppletInfo) -> Result<coda_types::AppletInfo, String> {
    if info.config_schema.len() > crate::limits::MAX_SCHEMA_BYTES {
        return Err(format!(
            "config schema of {} bytes is larger than {} bytes",
            info.config_schema.len(),
            crate::limits::MAX_SCHEMA_BYTES
        ));
    }
    let config_schema = serde_json::from_str(&info.config_schema)
        .map_err(|e| format!("config schema is not JSON: {e}"))?;
    Ok(coda_types::AppletInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        exits: info.exits,
        config_schema,
        needs_live_party: info.needs_live_party,
        capabilities: info
            .capabilities
            .into_iter()
            .map(|c| match c {
                wit::Capability::Http => Capability::Http,
                wit::Capability::Email => Capability::Email,
                wit::Capability::Sql => Capability::Sql,
                wit::Capability::Secrets => Capability::Secrets,
                wit::Capability::Interactions => Capability::Interactions,
            })
            .collect(),
    })
}

pub(super) fn outcome_from_wit(outcome: wit::Outcome) -> Outcome {
    match outcome {
        wit::Outcome::Exit(exit) => Outcome::Exit(exit),
        wit::Outcome::Pause(p) => Outcome::Pause {
            millis: p.millis,
            exit: p.exit,
        },
        wit::Outcome::Wait(w) => Outcome::Wait {
            event: w.event,
            timeout_millis: w.timeout_millis,
            on_event: w.on_event,
            on_timeout: w.on_timeout,
        },
        wit::Outcome::Route(r) => Outcome::Route {
            plan: r.plan,
            version: r.version,
        },
    }
}

pub(super) fn value_from_wit(value: wit::Value) -> Value {
    match value {
        wit::Value::Null => Value::Null,
        wit::Value::Boolean(b) => Value::Boolean(b),
        wit::Value::Integer(i) => Value::Integer(i),
        wit::Value::Number(n) => Value::Number(n),
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Json(s) => Value::Json(s),
    }
}

pub(super) fn value_to_wit(value: &Value) -> wit::Value {
    match value {
        Value::Null => wit::Value::Null,
        Value::Boolean(b) => wit::Value::Boolean(*b),
        Value::Integer(i) => wit::Value::Integer(*i),
        Value::Number(n) => wit::Value::Number(*n),
        Value::Text(s) => wit::Value::Text(s.clone()),
        Value::Json(s) => wit::Value::Json(s.clone()),
    }
}

/// A host error as the applet gets it, scrubbed of the step's secret values: a capability
/// may have used a credential the applet never read (an SMTP password) and a server may
/// echo it.
pub(super) fn host_error_to_wit(mut error: HostError, scrubber: &Scrubber) -> wit::HostError {
    scrubber.apply(&mut error);
    match error {
        HostError::NotGranted(m) => wit::HostError::NotGranted(m),
        HostError::LimitExceeded(m) => wit::HostError::LimitExceeded(m),
        HostError::Invalid(m) => wit::HostError::Invalid(m),
        HostError::Unavailable(m) => wit::HostError::Unavailable(m),
        HostError::Rejected(m) => wit::HostError::Rejected(m),
    }
}

type HostResult<T> = wasmtime::Result<Result<T, wit::HostError>>;

impl HostState {
    /// Every capability import passes here as one [`CapabilityCall`]: counted against the
    /// invocation's host calls, then handed to the invocation's capabilities.
    pub(super) async fn capability(
        &mut self,
        call: CapabilityCall,
    ) -> wasmtime::Result<Result<CapabilityReply, HostError>> {
        self.count_call()?;
        let capabilities = self.capabilities.clone();
        Ok(capabilities.call(&self.context, call).await)
    }

    /// A reply as the applet gets it: converted by `convert`, an error scrubbed.
    pub(super) fn reply<T>(
        &self,
        reply: Result<CapabilityReply, HostError>,
        convert: impl FnOnce(CapabilityReply) -> Result<T, HostError>,
    ) -> Result<T, wit::HostError> {
        reply
            .and_then(convert)
            .map_err(|e| host_error_to_wit(e, &self.context.scrubber))
    }
}

impl wit::Host for HostState {}

impl coda::applet::data::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<wit::Value>> {
        self.count_call()?;
        Ok(self.data.get(&name).map(value_to_wit))
    }

    async fn set(&mut self, name: String, value: wit::Value) -> HostResult<()> {
        self.count_call()?;
        let value = value_from_wit(value);
        if let Err(why) = self.check_write(&name, &value)? {
            return Ok(Err(wit::HostError::Invalid(why)));
        }
        self.data.insert(name.clone(), value.clone());
        self.data_changes.insert(name, value);
        Ok(Ok(()))
    }

    async fn entries(&mut self) -> wasmtime::Result<Vec<wit::Entry>> {
        self.count_call()?;
        Ok(self
            .data
            .iter()
            .map(|(name, value)| wit::Entry {
                name: name.clone(),
                value: value_to_wit(value),
            })
            .collect())
    }
}

impl coda::applet::state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<wit::Value>> {
        self.count_call()?;
        Ok(self.state.get(&key).map(value_to_wit))
    }

    async fn set(&mut self, key: String, value: wit::Value) -> HostResult<()> {
        self.count_call()?;
        let value = value_from_wit(value);
        if let Err(why) = self.check_write(&key, &value)? {
            return Ok(Err(wit::HostError::Invalid(why)));
        }
        self.state.insert(key.clone(), value.clone());
        self.state_changes.insert(key, value);
        Ok(Ok(()))
    }
}

impl coda::applet::log::Host for HostState {
    async fn log(
        &mut self,
        level: coda::applet::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use coda::applet::log::Level;
        self.count_call()?;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        HostState::log(self, level, message)
    }
}

impl coda::applet::http::Host for HostState {
    async fn send(
        &mut self,
        request: coda::applet::http::Request,
    ) -> HostResult<coda::applet::http::Response> {
        let request = HttpRequest {
            method: request.method,
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: request.body,
            timeout: request
                .timeout_millis
                .map(|ms| std::time::Duration::from_millis(ms.into())),
        };
        let reply = self.capability(CapabilityCall::Http(request)).await?;
        Ok(self.reply(reply, |reply| {
            let r = reply.into_http()?;
            Ok(coda::applet::http::Response {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| coda::applet::http::Header { name, value })
                    .collect(),
                body: r.body,
            })
        }))
    }
}

impl coda::applet::email::Host for HostState {
    async fn send(&mut self, message: coda::applet::email::Message) -> HostResult<String> {
        let message = EmailMessage {
            to: message.to,
            cc: message.cc,
            subject: message.subject,
            text: message.text,
            html: message.html,
            reply_to: message.reply_to,
        };
        let reply = self.capability(CapabilityCall::Email(message)).await?;
        Ok(self.reply(reply, CapabilityReply::into_email))
    }
}

impl coda::applet::sql::Host for HostState {
    async fn query(
        &mut self,
        database: String,
        statement: String,
        params: Vec<wit::Value>,
    ) -> HostResult<coda::applet::sql::Rows> {
        let statement = SqlStatement {
            database,
            statement,
            params: params.into_iter().map(value_from_wit).collect(),
        };
        let reply = self.capability(CapabilityCall::SqlQuery(statement)).await?;
        Ok(self.reply(reply, |reply| {
            let rows = reply.into_sql_query()?;
            Ok(coda::applet::sql::Rows {
                columns: rows.columns,
                rows: rows
                    .rows
                    .iter()
                    .map(|row| row.iter().map(value_to_wit).collect())
                    .collect(),
            })
        }))
    }

    async fn execute(
        &mut self,
        database: String,
        statement: String,
        params: Vec<wit::Value>,
    ) -> HostResult<u64> {
        let statement = SqlStatement {
            database,
            statement,
            params: params.into_iter().map(value_from_wit).collect(),
        };
        let reply = self
            .capability(CapabilityCall::SqlExecute(statement))
            .await?;
        Ok(self.reply(reply, CapabilityReply::into_sql_execute))
    }
}

impl coda::applet::secrets::Host for HostState {
    async fn get(&mut self, name: String) -> HostResult<String> {
        let call = CapabilityCall::Secret { name: name.clone() };
        let value = self
            .capability(call)
            .await?
            .and_then(CapabilityReply::into_secret);
        // Every secret an applet reads passes here: from now on the step's scrubber keeps
        // its value out of what the host writes.
        if let Ok(value) = &value {
            self.context.scrubber.record(&name, value);
        }
        Ok(value.map_err(|e| host_error_to_wit(e, &self.context.scrubber)))
    }
}

impl coda::applet::interactions::Host for HostState {
    async fn clone_interaction(
        &mut self,
        follow_up: coda::applet::interactions::FollowUp,
    ) -> HostResult<String> {
        use coda::applet::interactions::Channel;
        let follow_up = FollowUp {
            channel: match follow_up.channel {
                Channel::Phone => FollowUpChannel::Phone,
                Channel::TextMessage => FollowUpChannel::TextMessage,
                Channel::Email => FollowUpChannel::Email,
                Channel::Task => FollowUpChannel::Task,
            },
            queue: follow_up.queue,
            subject: follow_up.subject,
            assign_to: follow_up.assign_to,
        };
        let reply = self
            .capability(CapabilityCall::Interactions(follow_up))
            .await?;
        Ok(self.reply(reply, CapabilityReply::into_interactions))
    }
}
