//! The service's tenants and their API tokens.
//!
//! A token is stored only as the hex SHA-256 the caller computed; it is looked up by that
//! hash (a unique index), never compared as text, and a revoked token is never found.

use crate::db::{OptionalExtension, params};

use crate::{Result, Store};

/// A token to add: its public id and the SHA-256 (hex) of its secret.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub hash: String,
}

impl Store {
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
