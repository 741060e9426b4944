//! A tenant's usage over a time window, for billing: applet invocations and the fuel they
//! burnt (from the steps journal), and the capability calls they made (from the effect
//! journal).
//!
//! The effect journal holds each call once, whatever happened to its step: a call replayed
//! after a crash is the same row, and a call whose step never committed was still made, so
//! it is counted. Standard SQL only (`LIKE`, not a JSON function), for PostgreSQL later.

use std::collections::BTreeMap;

use crate::db::params;
use serde::Serialize;

use crate::{Result, Store};

/// Capability calls of one kind (`http`, `email`, `sql-query`, `sql-execute`,
/// `interactions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EffectCount {
    /// Calls made, whatever their result.
    pub calls: u64,
    /// Calls that succeeded (an email accepted by the server, an HTTP response of any
    /// status, a statement that ran); the rest answered a host error.
    pub succeeded: u64,
}

/// What a tenant used in `[since, until)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Steps that ran an applet.
    pub invocations: u64,
    /// Fuel those invocations used.
    pub fuel_used: u64,
    /// Wall time those invocations took, in microseconds.
    pub duration_us: u64,
    /// Capability calls by kind.
    pub effects: BTreeMap<String, EffectCount>,
}

impl Store {
    /// The tenant's usage with `since_ms <= at < until_ms`; another tenant's runs are never
    /// counted.
    pub fn usage(&self, tenant: &str, since_ms: i64, until_ms: i64) -> Result<Usage> {
        self.read(|conn| {
            // Steps the host takes itself (a timeout, the end) have no applet.
            let (invocations, fuel_used, duration_us): (u64, u64, u64) = conn
                .prepare_cached(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(s.fuel_used), 0) AS BIGINT),
                            CAST(COALESCE(SUM(s.duration_us), 0) AS BIGINT)
                     FROM steps s JOIN runs r ON r.id = s.run_id
                     WHERE r.tenant = ?1 AND s.at >= ?2 AND s.at < ?3 AND s.applet <> ''",
                )?
                .query_row(params![tenant, since_ms, until_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            // A result is journaled as `{"Ok": ...}` or `{"Err": ...}`.
            let mut stmt = conn.prepare_cached(
                "SELECT e.kind, COUNT(*),
                        CAST(COALESCE(SUM(CASE WHEN e.result LIKE '{\"Ok\":%' THEN 1 ELSE 0 END), 0) AS BIGINT)
                 FROM effects e JOIN runs r ON r.id = e.run_id
                 WHERE r.tenant = ?1 AND e.at >= ?2 AND e.at < ?3
                 GROUP BY e.kind",
            )?;
            let effects = stmt
                .query_map(params![tenant, since_ms, until_ms], |r| {
                    Ok((
                        r.get::<String>(0)?,
                        EffectCount {
                            calls: r.get(1)?,
                            succeeded: r.get(2)?,
                        },
                    ))
                })?
                .collect::<crate::Result<_>>()?;
            Ok(Usage {
                invocations,
                fuel_used,
                duration_us,
                effects,
            })
        })
    }
}
