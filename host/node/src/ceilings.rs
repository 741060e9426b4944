//! Each tenant's bounds from its ceiling, read from the store for the scheduler and the
//! runtime; what a ceiling bounds is decided by `coda_capabilities::grants::run_bounds`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coda_capabilities::grants::{RunBounds, run_bounds};
use coda_capabilities::settings::TenantSettings;
use coda_store::Store;

use crate::applets::Caps;

/// Each tenant's bounds from its ceiling: its scheduler concurrency (for the fair
/// scheduler, which asks at every pick) and its invocation caps (fuel, memory). Read from
/// the store at most once a second per tenant, so a ceiling the operator changes applies
/// within a second, on every node.
pub struct CeilingLimits {
    store: Arc<Store>,
    cache: Mutex<HashMap<String, (std::time::Instant, RunBounds)>>,
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
    pub fn caps(&self, tenant: &str) -> Caps {
        let bounds = self.bounds(tenant);
        Caps {
            fuel: bounds.fuel,
            memory_bytes: bounds.memory_bytes,
        }
    }

    fn read(&self, tenant: &str) -> RunBounds {
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
        run_bounds(ceiling.as_ref())
    }

    fn bounds(&self, tenant: &str) -> RunBounds {
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
        coda_flow::TenantLimit {
            concurrency: self.bounds(tenant).concurrency,
            queue: None,
        }
    }
}
