//! Each tenant's bounds from its ceiling, read from the store for the scheduler and the
//! runtime; what a ceiling bounds is decided by `coda_capabilities::grants::run_bounds`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coda_capabilities::grants::{InvocationCaps, RunBounds, run_bounds};
use coda_capabilities::settings::TenantSettings;
use coda_store::Store;

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
    pub fn caps(&self, tenant: &str) -> InvocationCaps {
        self.bounds(tenant).invocation
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

#[cfg(test)]
mod tests {
    use super::*;
    use coda_flow::TenantLimits;
    use serde_json::json;

    #[tokio::test]
    async fn a_tenants_bounds_are_read_from_its_stored_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
        for tenant in ["acme", "broken", "open"] {
            store.ensure_tenant(tenant, 0).await.unwrap();
        }
        let ceiling = json!({"ceiling": {"concurrency": 2, "fuel": 1000, "memory_bytes": 65536}});
        store.set_ceiling("acme", &ceiling, 0).await.unwrap();
        // Checked when written through the API; one that no longer reads bounds nothing.
        let unreadable = json!({"ceiling": {"fuel": "lots"}});
        store.set_ceiling("broken", &unreadable, 0).await.unwrap();
        let limits = CeilingLimits::new(store);

        let expected = InvocationCaps {
            fuel: Some(1000),
            memory_bytes: Some(65536),
        };
        assert_eq!(limits.caps("acme"), expected);
        assert_eq!(limits.limits("acme").concurrency, Some(2));
        assert_eq!(limits.limits("acme").queue, None);
        for tenant in ["broken", "open", "nobody"] {
            assert_eq!(limits.caps(tenant), InvocationCaps::default(), "{tenant}");
            assert_eq!(limits.limits(tenant), coda_flow::TenantLimit::default());
        }
    }
}
