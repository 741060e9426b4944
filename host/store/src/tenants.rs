//! The service's tenants and their API tokens.
//!
//! A token is stored only as the hex SHA-256 the caller computed; it is looked up by that
//! hash (a unique index), never compared as text, and a revoked token is never found.
//! The operator's lists (tenants, a tenant's tokens) show ids and times, never a hash.

use crate::db::{OptionalExtension, params};

use crate::{Result, Store};

/// A token to add: its public id and the SHA-256 (hex) of its secret.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub hash: String,
}

/// A tenant as the operator's list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    pub id: String,
    pub created_at_ms: i64,
    /// Its tokens not revoked.
    pub live_tokens: u64,
    /// When the operator last set its ceiling; none: never (the default allows nothing).
    pub ceiling_updated_at_ms: Option<i64>,
}

/// A tenant's token as the operator's list shows it: never its secret or its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub id: String,
    pub created_at_ms: i64,
    /// None: live.
    pub revoked_at_ms: Option<i64>,
}

impl Store {
    /// A page of the tenants, by id: those after the id `after`, at most `limit`.
    pub fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<TenantInfo>> {
        self.read(|conn| {
            // The live tokens are counted through the `tokens_tenant` index, per tenant of
            // the page only.
            let mut stmt = conn.prepare_cached(
                "SELECT t.id, t.created_at, c.updated_at,
                        (SELECT COUNT(*) FROM tokens k WHERE k.tenant = t.id AND k.revoked_at IS NULL)
                 FROM tenants t LEFT JOIN ceilings c ON c.tenant = t.id
                 WHERE t.id > ?1 ORDER BY t.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![after.unwrap_or(""), limit.min(i64::MAX as usize) as i64],
                |r| {
                    Ok(TenantInfo {
                        id: r.get(0)?,
                        created_at_ms: r.get(1)?,
                        ceiling_updated_at_ms: r.get(2)?,
                        live_tokens: r.get(3)?,
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// A page of a tenant's tokens, newest first: those issued before the token `after`
    /// (an id of this tenant's; another is an empty page), at most `limit`. `None` when
    /// there is no such tenant.
    pub fn tenant_tokens(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<TokenInfo>>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(|conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
                .query_row(params![tenant], |r| r.get::<i64>(0))
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            // Newest first, ties by id: the cursor is the last token's (created_at, id); the
            // first page's is past every token.
            let cursor = match after {
                None => (i64::MAX, String::new()),
                Some(id) => {
                    let at = conn
                        .prepare_cached(
                            "SELECT created_at FROM tokens WHERE tenant = ?1 AND id = ?2",
                        )?
                        .query_row(params![tenant, id], |r| r.get::<i64>(0))
                        .optional()?;
                    match at {
                        Some(at) => (at, id.to_owned()),
                        None => return Ok(Some(Vec::new())),
                    }
                }
            };
            let mut stmt = conn.prepare_cached(
                "SELECT id, created_at, revoked_at FROM tokens
                 WHERE tenant = ?1 AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))
                 ORDER BY created_at DESC, id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![tenant, cursor.0, cursor.1, limit], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    created_at_ms: r.get(1)?,
                    revoked_at_ms: r.get(2)?,
                })
            })?;
            rows.collect::<Result<Vec<_>>>().map(Some)
        })
    }

    /// Creates a tenant with its first token, in one transaction. `false` (and nothing
    /// written) when the tenant exists already.
    pub async fn create_tenant(&self, tenant: &str, token: NewToken, now_ms: i64) -> Result<bool> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |tx| {
                // A unique insert, not check-then-insert: two creations at once make one.
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO tenants (id, created_at) VALUES (?1, ?2)
                         ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![tenant, now_ms])?;
                if inserted == 0 {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO tokens (id, tenant, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![token.id, tenant, token.hash, now_ms])?;
                Ok(true)
            })
            .await
    }

    /// Adds a token to a tenant; `false` when there is no such tenant.
    pub async fn add_token(&self, tenant: &str, token: NewToken, now_ms: i64) -> Result<bool> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |tx| {
                let added = tx
                    .prepare_cached(
                        "INSERT INTO tokens (id, tenant, hash, created_at)
                         SELECT ?1, id, ?3, ?4 FROM tenants WHERE id = ?2",
                    )?
                    .execute(params![token.id, tenant, token.hash, now_ms])?;
                Ok(added == 1)
            })
            .await
    }

    /// Revokes a tenant's token; `false` when the tenant has no such token (another tenant's
    /// token id included). Revoking twice is not an error: the token stays revoked.
    pub async fn revoke_token(&self, tenant: &str, token_id: &str, now_ms: i64) -> Result<bool> {
        let (tenant, token_id) = (tenant.to_owned(), token_id.to_owned());
        self.writer
            .write(move |tx| {
                let found = tx
                    .prepare_cached(
                        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?3)
                         WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant, token_id, now_ms])?;
                Ok(found == 1)
            })
            .await
    }

    /// The tenant whose live (unrevoked) token has this hash.
    pub fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT tenant FROM tokens WHERE hash = ?1 AND revoked_at IS NULL")?
                .query_row(params![hash], |r| r.get(0))
                .optional()
        })
    }

    /// The stored hash of the operator's token, if one was ever stored.
    pub fn operator_token_hash(&self) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT hash FROM operator_token WHERE id = 1")?
                .query_row(&[], |r| r.get(0))
                .optional()
        })
    }

    /// Stores the operator token's hash unless one is stored already; `true` when this one
    /// was stored (so the caller knows whether to show the token).
    pub async fn init_operator_token(&self, hash: &str, now_ms: i64) -> Result<bool> {
        let hash = hash.to_owned();
        self.writer
            .write(move |tx| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO operator_token (id, hash, created_at) VALUES (1, ?1, ?2)
                         ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![hash, now_ms])?;
                Ok(inserted == 1)
            })
            .await
    }
}
