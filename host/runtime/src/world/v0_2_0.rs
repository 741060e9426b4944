//! `coda:applet@0.2.0`: version 0.1.0 with the key-value store. Its bindings, its handler's
//! conversions, and the host side of `kv`. Every other import is 0.1.0's: each forwards to
//! [`super::v0_1_0`]'s host side through a conversion between the two versions' generated
//! types (the same WIT types, generated twice), so a call has one implementation whichever
//! world the component was built against.

use coda_types::capabilities::{CapabilityCall, CapabilityReply};
use coda_types::kv::{KvAnswer, KvCall, KvOp};
use coda_types::{Capability, Failure, Outcome};
use wasmtime::Store;
use wasmtime::component::Linker;

use super::v0_1_0 as old;
use crate::sandbox::HostState;

wasmtime::component::bindgen!({
    path: "../../wit/v0.2.0",
    world: "applet",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::coda::applet::types as wit;
use old::coda::applet::types as old_wit;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Applet::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)
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
    // The record is 0.1.0's but for the `kv` case of `capability`: converted into 0.1.0's
    // shape without its capabilities, checked there, and the capabilities added back.
    let capabilities = info
        .capabilities
        .iter()
        .map(|c| match c {
            wit::Capability::Http => Capability::Http,
            wit::Capability::Email => Capability::Email,
            wit::Capability::Sql => Capability::Sql,
            wit::Capability::Secrets => Capability::Secrets,
            wit::Capability::Interactions => Capability::Interactions,
            wit::Capability::Kv => Capability::Kv,
        })
        .collect();
    let info = old::convert_info(old_wit::AppletInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        exits: info.exits,
        config_schema: info.config_schema,
        needs_live_party: info.needs_live_party,
        capabilities: Vec::new(),
    });
    Ok(info.map(|info| coda_types::AppletInfo {
        capabilities,
        ..info
    }))
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
    Ok(result
        .map(|outcome| {
            old::outcome_from_wit(match outcome {
                wit::Outcome::Exit(exit) => old_wit::Outcome::Exit(exit),
                wit::Outcome::Pause(p) => old_wit::Outcome::Pause(old_wit::Pause {
                    millis: p.millis,
                    exit: p.exit,
                }),
                wit::Outcome::Wait(w) => old_wit::Outcome::Wait(old_wit::Wait {
                    event: w.event,
                    timeout_millis: w.timeout_millis,
                    on_event: w.on_event,
                    on_timeout: w.on_timeout,
                }),
                wit::Outcome::Route(r) => old_wit::Outcome::Route(old_wit::Route {
                    plan: r.plan,
                    version: r.version,
                }),
            })
        })
        .map_err(|f| Failure {
            code: f.code,
            message: f.message,
            retryable: f.retryable,
            retry_after_millis: f.retry_after_millis,
        }))
}

fn value_to_old(value: wit::Value) -> old_wit::Value {
    match value {
        wit::Value::Null => old_wit::Value::Null,
        wit::Value::Boolean(b) => old_wit::Value::Boolean(b),
        wit::Value::Integer(i) => old_wit::Value::Integer(i),
        wit::Value::Number(n) => old_wit::Value::Number(n),
        wit::Value::Text(s) => old_wit::Value::Text(s),
        wit::Value::Json(s) => old_wit::Value::Json(s),
    }
}

fn value_from_old(value: old_wit::Value) -> wit::Value {
    match value {
        old_wit::Value::Null => wit::Value::Null,
        old_wit::Value::Boolean(b) => wit::Value::Boolean(b),
        old_wit::Value::Integer(i) => wit::Value::Integer(i),
        old_wit::Value::Number(n) => wit::Value::Number(n),
        old_wit::Value::Text(s) => wit::Value::Text(s),
        old_wit::Value::Json(s) => wit::Value::Json(s),
    }
}

fn error_from_old(error: old_wit::HostError) -> wit::HostError {
    match error {
        old_wit::HostError::NotGranted(m) => wit::HostError::NotGranted(m),
        old_wit::HostError::LimitExceeded(m) => wit::HostError::LimitExceeded(m),
        old_wit::HostError::Invalid(m) => wit::HostError::Invalid(m),
        old_wit::HostError::Unavailable(m) => wit::HostError::Unavailable(m),
        old_wit::HostError::Rejected(m) => wit::HostError::Rejected(m),
    }
}

type HostResult<T> = wasmtime::Result<Result<T, wit::HostError>>;

/// A 0.1.0 host call's result in 0.2.0's types.
fn from_old<T, U>(
    result: wasmtime::Result<Result<T, old_wit::HostError>>,
    convert: impl FnOnce(T) -> U,
) -> HostResult<U> {
    Ok(result?.map(convert).map_err(error_from_old))
}

impl wit::Host for HostState {}

impl coda::applet::data::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<wit::Value>> {
        Ok(old::coda::applet::data::Host::get(self, name)
            .await?
            .map(value_from_old))
    }

    async fn set(&mut self, name: String, value: wit::Value) -> HostResult<()> {
        from_old(
            old::coda::applet::data::Host::set(self, name, value_to_old(value)).await,
            |()| (),
        )
    }

    async fn entries(&mut self) -> wasmtime::Result<Vec<wit::Entry>> {
        Ok(old::coda::applet::data::Host::entries(self)
            .await?
            .into_iter()
            .map(|e| wit::Entry {
                name: e.name,
                value: value_from_old(e.value),
            })
            .collect())
    }
}

impl coda::applet::state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<wit::Value>> {
        Ok(old::coda::applet::state::Host::get(self, key)
            .await?
            .map(value_from_old))
    }

    async fn set(&mut self, key: String, value: wit::Value) -> HostResult<()> {
        from_old(
            old::coda::applet::state::Host::set(self, key, value_to_old(value)).await,
            |()| (),
        )
    }
}

impl coda::applet::log::Host for HostState {
    async fn log(
        &mut self,
        level: coda::applet::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use coda::applet::log::Level;
        use old::coda::applet::log::Level as Old;
        let level = match level {
            Level::Trace => Old::Trace,
            Level::Debug => Old::Debug,
            Level::Info => Old::Info,
            Level::Warn => Old::Warn,
            Level::Error => Old::Error,
        };
        old::coda::applet::log::Host::log(self, level, message).await
    }
}

impl coda::applet::http::Host for HostState {
    async fn send(
        &mut self,
        request: coda::applet::http::Request,
    ) -> HostResult<coda::applet::http::Response> {
        use coda::applet::http::{Header, Response};
        use old::coda::applet::http as old_http;
        let request = old_http::Request {
            method: request.method,
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| old_http::Header {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            body: request.body,
            timeout_millis: request.timeout_millis,
        };
        from_old(old_http::Host::send(self, request).await, |r| Response {
            status: r.status,
            headers: r
                .headers
                .into_iter()
                .map(|h| Header {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            body: r.body,
        })
    }
}

impl coda::applet::email::Host for HostState {
    async fn send(&mut self, message: coda::applet::email::Message) -> HostResult<String> {
        use old::coda::applet::email as old_email;
        let message = old_email::Message {
            to: message.to,
            cc: message.cc,
            subject: message.subject,
            text: message.text,
            html: message.html,
            reply_to: message.reply_to,
        };
        from_old(old_email::Host::send(self, message).await, |id| id)
    }
}

impl coda::applet::sql::Host for HostState {
    async fn query(
        &mut self,
        database: String,
        statement: String,
        params: Vec<wit::Value>,
    ) -> HostResult<coda::applet::sql::Rows> {
        let params = params.into_iter().map(value_to_old).collect();
        from_old(
            old::coda::applet::sql::Host::query(self, database, statement, params).await,
            |rows| coda::applet::sql::Rows {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(value_from_old).collect())
                    .collect(),
            },
        )
    }

    async fn execute(
        &mut self,
        database: String,
        statement: String,
        params: Vec<wit::Value>,
    ) -> HostResult<u64> {
        let params = params.into_iter().map(value_to_old).collect();
        from_old(
            old::coda::applet::sql::Host::execute(self, database, statement, params).await,
            |n| n,
        )
    }
}

impl coda::applet::secrets::Host for HostState {
    async fn get(&mut self, name: String) -> HostResult<String> {
        from_old(
            old::coda::applet::secrets::Host::get(self, name).await,
            |v| v,
        )
    }
}

impl coda::applet::interactions::Host for HostState {
    async fn clone_interaction(
        &mut self,
        follow_up: coda::applet::interactions::FollowUp,
    ) -> HostResult<String> {
        use coda::applet::interactions::Channel;
        use old::coda::applet::interactions as old_interactions;
        let follow_up = old_interactions::FollowUp {
            channel: match follow_up.channel {
                Channel::Phone => old_interactions::Channel::Phone,
                Channel::TextMessage => old_interactions::Channel::TextMessage,
                Channel::Email => old_interactions::Channel::Email,
                Channel::Task => old_interactions::Channel::Task,
            },
            queue: follow_up.queue,
            subject: follow_up.subject,
            assign_to: follow_up.assign_to,
        };
        from_old(
            old_interactions::Host::clone_interaction(self, follow_up).await,
            |id| id,
        )
    }
}

impl HostState {
    /// One key-value call, through the one path of every capability call: counted, handed
    /// to the invocation's capabilities, its host error scrubbed.
    async fn kv_call(&mut self, op: KvOp) -> wasmtime::Result<Result<KvAnswer, wit::HostError>> {
        // A value is checked where the applet hands it over, as data and state are, so the
        // store never holds one it cannot read back.
        if let Some(Err(why)) = op.value().map(coda_types::Value::check) {
            self.count_call()?;
            return Ok(Err(wit::HostError::Invalid(format!(
                "kv value for key '{}': {why}",
                op.key().escape_debug()
            ))));
        }
        let reply = self.capability(CapabilityCall::Kv(KvCall::new(op))).await?;
        Ok(self
            .reply(reply, CapabilityReply::into_kv)
            .map_err(error_from_old))
    }
}

/// The answer a call of one kind gets; any other is the host's own mistake, which the
/// applet gets as `unavailable` (as a reply of the wrong kind is).
fn unexpected(answer: KvAnswer) -> wit::HostError {
    wit::HostError::Unavailable(format!(
        "the kv capability answered {answer:?} to another kind of call"
    ))
}

impl coda::applet::kv::Host for HostState {
    async fn get(&mut self, key: String) -> HostResult<Option<coda::applet::kv::Entry>> {
        match self.kv_call(KvOp::Get { key }).await? {
            Ok(KvAnswer::Entry(entry)) => Ok(Ok(entry.map(|e| coda::applet::kv::Entry {
                value: value_from_old(old::value_to_wit(&e.value)),
                version: e.version,
                expires_at_millis: e.expires_at_ms,
            }))),
            Ok(other) => Ok(Err(unexpected(other))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn set(
        &mut self,
        key: String,
        value: wit::Value,
        ttl_millis: Option<u64>,
    ) -> HostResult<u64> {
        let value = old::value_from_wit(value_to_old(value));
        match self
            .kv_call(KvOp::Set {
                key,
                value,
                ttl_millis,
            })
            .await?
        {
            Ok(KvAnswer::Written(version)) => Ok(Ok(version)),
            Ok(other) => Ok(Err(unexpected(other))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn delete(&mut self, key: String) -> HostResult<bool> {
        match self.kv_call(KvOp::Delete { key }).await? {
            Ok(KvAnswer::Deleted(was)) => Ok(Ok(was)),
            Ok(other) => Ok(Err(unexpected(other))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn compare_and_set(
        &mut self,
        key: String,
        version: Option<u64>,
        value: wit::Value,
        ttl_millis: Option<u64>,
    ) -> HostResult<Option<u64>> {
        let value = old::value_from_wit(value_to_old(value));
        match self
            .kv_call(KvOp::CompareAndSet {
                key,
                version,
                value,
                ttl_millis,
            })
            .await?
        {
            Ok(KvAnswer::Swapped(version)) => Ok(Ok(version)),
            Ok(other) => Ok(Err(unexpected(other))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn increment(
        &mut self,
        key: String,
        by: i64,
        ttl_millis: Option<u64>,
    ) -> HostResult<i64> {
        match self
            .kv_call(KvOp::Increment {
                key,
                by,
                ttl_millis,
            })
            .await?
        {
            Ok(KvAnswer::Counted(count)) => Ok(Ok(count)),
            Ok(other) => Ok(Err(unexpected(other))),
            Err(e) => Ok(Err(e)),
        }
    }
}
