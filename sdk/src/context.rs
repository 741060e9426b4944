use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::coda::applet::{data, state, types};
use crate::{Failure, Value, from_json, to_json};

/// The invocation's view of its run: where it stands, and typed access to the run's data
/// sources and this node's state.
pub struct Context {
    inner: types::Context,
}

impl Context {
    pub(crate) fn new(inner: types::Context) -> Self {
        Context { inner }
    }

    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }
    pub fn interaction(&self) -> Option<&str> {
        self.inner.interaction.as_deref()
    }
    pub fn run_id(&self) -> &str {
        &self.inner.run
    }
    pub fn plan(&self) -> &str {
        &self.inner.plan
    }
    pub fn node(&self) -> &str {
        &self.inner.node
    }
    /// Stable across retries of this step: pass it to downstreams that deduplicate.
    pub fn idempotency_key(&self) -> &str {
        &self.inner.idempotency_key
    }
    /// 1 on the first try of this step.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// A data source as the raw WIT value.
    pub fn data_value(&self, name: &str) -> Option<Value> {
        data::get(name)
    }

    /// A data source, deserialized into `T`; `None` when it is not set.
    pub fn data<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Failure> {
        data::get(name)
            .map(|value| {
                serde_json::from_value(to_json(&value))
                    .map_err(|e| Failure::new("bad-data", format!("data source `{name}`: {e}")))
            })
            .transpose()
    }

    /// All data sources of the run, as JSON.
    pub fn all_data(&self) -> serde_json::Map<String, serde_json::Value> {
        data::entries()
            .into_iter()
            .map(|e| (e.name, to_json(&e.value)))
            .collect()
    }

    /// Sets a data source; later steps of the run see it.
    pub fn set_data<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), Failure> {
        let json = serde_json::to_value(value)
            .map_err(|e| Failure::new("bad-data", format!("data source `{name}`: {e}")))?;
        data::set(name, &from_json(&json)).map_err(Failure::from)
    }

    /// This node's state in this run (kept across pauses and visits; a failed attempt's
    /// changes are dropped with it), deserialized into `T`.
    pub fn state<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Failure> {
        state::get(key)
            .map(|value| {
                serde_json::from_value(to_json(&value))
                    .map_err(|e| Failure::new("bad-state", format!("state `{key}`: {e}")))
            })
            .transpose()
    }

    pub fn set_state<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), Failure> {
        let json = serde_json::to_value(value)
            .map_err(|e| Failure::new("bad-state", format!("state `{key}`: {e}")))?;
        state::set(key, &from_json(&json)).map_err(Failure::from)
    }
}
