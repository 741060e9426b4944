//! Bearer tokens: the operator's, compared by hash in constant time, and tenants', looked
//! up by hash in the store. A handler that takes [`Tenant`] gets the tenant from its token
//! and from nowhere else.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::{ApiError, AppState, hash_token};

/// A request made with the operator's token.
pub struct Operator;

/// A request made with a live token of this tenant.
pub struct Tenant(pub String);

/// A request made with a live token of this tenant, and which token it was: the "who" of
/// an edit's audit entry, whom a clone is assigned to. (A sibling of [`Tenant`] rather than
/// a field of it, so that every `Tenant(tenant)` handler stays as it is.)
pub struct Caller {
    pub tenant: String,
    /// The token's public id (`tok_…`), never its secret.
    pub token_id: String,
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or_else(|| ApiError::unauthorized("no Authorization header: send `Bearer TOKEN`"))?;
    // Two credentials are ambiguous: a proxy and the server could each take another one.
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "invalid-authorization",
            "more than one Authorization header: send exactly one, `Bearer TOKEN`",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header is not `Bearer TOKEN`",
        ));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let source = state.inner.auth_failures.admit(parts)?;
        let mut hash = [0u8; 32];
        // Our own hex: it always decodes.
        let _ = hex::decode_to_slice(hash_token(token), &mut hash);
        // Constant time, so response timing says nothing about how close a guess was.
        let differ = hash
            .iter()
            .zip(state.inner.operator_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            state.inner.auth_failures.failed(source);
            return Err(ApiError::unauthorized(
                "the operator API takes the operator's token, and this is not it",
            ));
        }
        Ok(Operator)
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let source = state.inner.auth_failures.admit(parts)?;
        match state.store().token_tenant(&hash_token(token))? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => {
                state.inner.auth_failures.failed(source);
                Err(ApiError::unauthorized(
                    "the token is not a live tenant token (unknown, revoked, or the operator's)",
                ))
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let source = state.inner.auth_failures.admit(parts)?;
        match state.store().token_caller(&hash_token(token))? {
            Some((tenant, token_id)) => Ok(Caller { tenant, token_id }),
            None => {
                state.inner.auth_failures.failed(source);
                Err(ApiError::unauthorized(
                    "the token is not a live tenant token (unknown, revoked, or the operator's)",
                ))
            }
        }
    }
}

/// The most failed token attempts a source may make in a burst before it is slowed down.
pub const AUTH_FAILURE_BURST: u32 = 20;

/// How fast a source earns back failed attempts once it is slowed down, per second: 500
/// random tokens take minutes, not seconds.
pub const AUTH_FAILURE_REFILL_PER_SEC: f64 = 2.0;

/// The most sources whose failures are remembered. Past it, sources not seen failing
/// recently are forgotten; if every one is recent (many addresses failing at once), the new
/// ones share one budget, so the map stays bounded whatever an attacker has.
pub const AUTH_THROTTLE_SOURCES: usize = 10_000;

/// Where a request comes from, as the throttle counts it: its IPv4 address, or its IPv6
/// /64 (one host commonly holds a whole /64); `Shared` for a request with no known peer
/// (served in-process) and for new sources while the map is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(std::net::Ipv4Addr),
    V6(u64),
    Shared,
}

impl Source {
    fn of(parts: &Parts) -> Source {
        match crate::serve::peer(parts).map(|addr| addr.ip().to_canonical()) {
            Some(std::net::IpAddr::V4(ip)) => Source::V4(ip),
            Some(std::net::IpAddr::V6(ip)) => Source::V6((ip.to_bits() >> 64) as u64),
            None => Source::Shared,
        }
    }
}

/// Failed token attempts per source, as token buckets: each failure takes one, and they
/// come back at [`AUTH_FAILURE_REFILL_PER_SEC`]. A source with none left is refused with 429
/// before its token is even looked at, so guessing is slowed whatever the guess; a source
/// whose tokens are good never spends any, so it is never slowed.
///
/// Written out here rather than taken from `governor`: the throttle must be able to ask
/// "is this source out of budget?" without spending (only failures spend), and must bound
/// the sources it remembers; governor's keyed limiter does neither.
#[derive(Default)]
pub(crate) struct Throttle {
    buckets: std::sync::Mutex<std::collections::HashMap<Source, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failed attempts left (fractions come back with time).
    left: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// The budget as it is at `now`.
    fn now(self, now: std::time::Instant) -> f64 {
        let earned =
            now.saturating_duration_since(self.at).as_secs_f64() * AUTH_FAILURE_REFILL_PER_SEC;
        (self.left + earned).min(f64::from(AUTH_FAILURE_BURST))
    }
}

impl Throttle {
    fn buckets(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Source, Bucket>> {
        // A bucket is updated in one step: a panic elsewhere cannot leave one half-written.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's source, or 429 if it has no failed attempts left.
    pub(crate) fn admit(&self, parts: &Parts) -> Result<Source, ApiError> {
        let source = Source::of(parts);
        let now = std::time::Instant::now();
        let buckets = self.buckets();
        let source = if buckets.contains_key(&source) || buckets.len() < AUTH_THROTTLE_SOURCES {
            source
        } else {
            Source::Shared
        };
        if let Some(bucket) = buckets.get(&source) {
            let left = bucket.now(now);
            if left < 1.0 {
                let wait = ((1.0 - left) / AUTH_FAILURE_REFILL_PER_SEC).ceil().max(1.0) as u64;
                return Err(ApiError {
                    retry_after_secs: Some(wait),
                    ..ApiError::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        "too-many-failed-attempts",
                        format!(
                            "too many requests with a token that is not valid came from this \
                             address; try again in {wait} s"
                        ),
                    )
                });
            }
        }
        Ok(source)
    }

    /// Spends one failed attempt of `source`'s budget.
    pub(crate) fn failed(&self, source: Source) {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets();
        if buckets.len() >= AUTH_THROTTLE_SOURCES && !buckets.contains_key(&source) {
            // Forget the sources whose budget is whole again: they are as if never seen.
            buckets.retain(|_, b| b.now(now) < f64::from(AUTH_FAILURE_BURST));
        }
        let source = if buckets.contains_key(&source) || buckets.len() < AUTH_THROTTLE_SOURCES {
            source
        } else {
            Source::Shared
        };
        let bucket = buckets.entry(source).or_insert(Bucket {
            left: f64::from(AUTH_FAILURE_BURST),
            at: now,
        });
        *bucket = Bucket {
            left: (bucket.now(now) - 1.0).max(0.0),
            at: now,
        };
    }
}
