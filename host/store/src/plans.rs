//! Plans: each publish stores a new immutable version, and runs name the version they
//! started in, so a run never changes plan under its feet.

use crate::db::{OptionalExtension, params};
use sha2::Digest;

use crate::{Result, Store};

/// One stored version of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersionInfo {
    pub version: u32,
    pub created_at_ms: i64,
    /// `sha256:` and the hex SHA-256 of the stored body, so two versions (or a local file
    /// and a version) can be compared without fetching them.
    pub digest: String,
}

/// The latest version of one of a tenant's plans.
#[derive(Debug, Clone)]
pub struct PlanVersion {
    pub name: String,
    pub version: u32,
    pub body: serde_json::Value,
    pub created_at_ms: i64,
}

impl Store {
    /// Stores a new immutable version of a plan; returns its number (1, 2, ...).
    pub async fn publish_plan(
        &self,
        tenant: &str,
        name: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<u32> {
        let (tenant, name, body) = (tenant.to_owned(), name.to_owned(), body.to_string());
        self.writer
            .write(move |tx| {
                let version: u32 = tx.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |row| row.get(0),
                )?;
                tx.prepare_cached("INSERT INTO plans (tenant, name, version, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
                    params![tenant, name, version, body, now_ms],
                )?;
                Ok(version)
            })
            .await
    }

    /// A plan version (the latest when `version` is none) and its number.
    pub fn plan(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(u32, serde_json::Value)>> {
        self.read(|conn| {
            // No version: the latest. A version: that one, or none.
            let row: Option<(u32, String)> = conn
                .prepare_cached(
                    "SELECT version, body FROM plans
                     WHERE tenant = ?1 AND name = ?2 AND version = COALESCE(?3, version)
                     ORDER BY version DESC LIMIT 1",
                )?
                .query_row(params![tenant, name, version], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(v, body)| Ok((v, serde_json::from_str(&body)?)))
                .transpose()
        })
    }

    /// The latest version of one of the tenant's plans, without its body: what a caller
    /// holding parsed versions needs to know whether it holds the latest.
    pub fn latest_plan_version(&self, tenant: &str, name: &str) -> Result<Option<u32>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT version FROM plans WHERE tenant = ?1 AND name = ?2
                 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![tenant, name], |r| r.get(0))
            .optional()
        })
    }

    /// Every version of one of the tenant's plans, oldest first; empty when it has none.
    pub fn plan_versions(&self, tenant: &str, name: &str) -> Result<Vec<PlanVersionInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, created_at, body FROM plans
                 WHERE tenant = ?1 AND name = ?2 ORDER BY version",
            )?;
            let rows = stmt.query_map(params![tenant, name], |r| {
                let body: String = r.get(2)?;
                Ok(PlanVersionInfo {
                    version: r.get(0)?,
                    created_at_ms: r.get(1)?,
                    digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))),
                })
            })?;
            rows.collect::<crate::Result<_>>()
        })
    }

    /// The latest version of each of the tenant's plans, by name.
    pub fn latest_plans(&self, tenant: &str) -> Result<Vec<PlanVersion>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT p.name, p.version, p.body, p.created_at FROM plans p
                 WHERE p.tenant = ?1 AND p.version =
                    (SELECT MAX(version) FROM plans q WHERE q.tenant = p.tenant AND q.name = p.name)
                 ORDER BY p.name",
            )?;
            let rows = stmt.query_map(params![tenant], |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<u32>(1)?,
                    r.get::<String>(2)?,
                    r.get::<i64>(3)?,
                ))
            })?;
            rows.map(|row| {
                let (name, version, body, created_at_ms) = row?;
                Ok(PlanVersion {
                    name,
                    version,
                    body: serde_json::from_str(&body)?,
                    created_at_ms,
                })
            })
            .collect()
        })
    }
}
