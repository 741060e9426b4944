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
        let width = until_ms.saturating_sub(since_ms).max(1);
        let mut series = self.usage_series(tenant, since_ms, until_ms, width)?;
        Ok(series.pop().unwrap_or_default())
    }

    /// The tenant's usage in `[since_ms, until_ms)` cut into consecutive buckets of
    /// `width_ms` from `since_ms` (the last one cut short at `until_ms`), oldest first, every
    /// bucket present (an empty one is all zeros): one read of each journal, grouped, however
    /// many buckets. The caller bounds how many there are.
    pub fn usage_series(
        &self,
        tenant: &str,
        since_ms: i64,
        until_ms: i64,
        width_ms: i64,
    ) -> Result<Vec<Usage>> {
        let width_ms = width_ms.max(1);
        let buckets = usize::try_from(bucket_count(since_ms, until_ms, width_ms)).unwrap_or(0);
        let mut series = vec![Usage::default(); buckets];
        self.read(|conn| {
            // Steps the host takes itself (a timeout, the end) have no applet.
            let mut stmt = conn.prepare_cached(
                "SELECT (s.at - ?2) / ?4, COUNT(*), CAST(COALESCE(SUM(s.fuel_used), 0) AS BIGINT),
                        CAST(COALESCE(SUM(s.duration_us), 0) AS BIGINT)
                 FROM steps s JOIN runs r ON r.id = s.run_id
                 WHERE r.tenant = ?1 AND s.at >= ?2 AND s.at < ?3 AND s.applet <> ''
                 GROUP BY 1",
            )?;
            let steps = stmt.query_map(params![tenant, since_ms, until_ms, width_ms], |r| {
                Ok((r.get::<i64>(0)?, r.get::<u64>(1)?, r.get::<u64>(2)?, r.get::<u64>(3)?))
            })?;
            for row in steps {
                let (bucket, invocations, fuel_used, duration_us) = row?;
                if let Some(usage) = bucket_of(&mut series, bucket) {
                    usage.invocations = invocations;
                    usage.fuel_used = fuel_used;
                    usage.duration_us = duration_us;
                }
            }
            // A result is journaled as `{"Ok": ...}` or `{"Err": ...}`.
            let mut stmt = conn.prepare_cached(
                "SELECT (e.at - ?2) / ?4, e.kind, COUNT(*),
                        CAST(COALESCE(SUM(CASE WHEN e.result LIKE '{\"Ok\":%' THEN 1 ELSE 0 END), 0) AS BIGINT)
                 FROM effects e JOIN runs r ON r.id = e.run_id
                 WHERE r.tenant = ?1 AND e.at >= ?2 AND e.at < ?3
                 GROUP BY 1, 2",
            )?;
            let effects = stmt.query_map(params![tenant, since_ms, until_ms, width_ms], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<String>(1)?,
                    EffectCount {
                        calls: r.get(2)?,
                        succeeded: r.get(3)?,
                    },
                ))
            })?;
            for row in effects {
                let (bucket, kind, count) = row?;
                if let Some(usage) = bucket_of(&mut series, bucket) {
                    usage.effects.insert(kind, count);
                }
            }
            Ok(())
        })?;
        Ok(series)
    }
}

/// How many buckets of `width_ms` cut `[since_ms, until_ms)`, the last one maybe short.
pub fn bucket_count(since_ms: i64, until_ms: i64, width_ms: i64) -> i64 {
    let span = until_ms.saturating_sub(since_ms).max(0);
    let width_ms = width_ms.max(1);
    span / width_ms + i64::from(span % width_ms != 0)
}

/// The bucket a row's number names; none for a number out of the series (not possible for
/// a row inside the window, but a number read from the database is not trusted to index).
fn bucket_of(series: &mut [Usage], bucket: i64) -> Option<&mut Usage> {
    usize::try_from(bucket).ok().and_then(|i| series.get_mut(i))
}
