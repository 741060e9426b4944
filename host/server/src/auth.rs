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

/// The most sources whose failures are remembered, in each of the two tiers (see
/// [`Throttle`]). Past both, the new sources share one budget, so the memory stays bounded
/// whatever an attacker has.
pub const AUTH_THROTTLE_SOURCES: usize = 10_000;

/// Where a request comes from, as the throttle counts it: its IPv4 address, or its IPv6
/// /64 (one host commonly holds a whole /64); the network around it (IPv4 /24, IPv6 /48:
/// what one holder commonly has) once the addresses fill their tier; `Shared` for a
/// request with no known peer (served in-process) and for new sources while both tiers
/// are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(std::net::Ipv4Addr),
    V6(u64),
    V4Net(u32),
    V6Net(u64),
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

    /// The network this address is in, counted in the wide tier.
    fn network(self) -> Source {
        match self {
            Source::V4(ip) => Source::V4Net(ip.to_bits() >> 8),
            Source::V6(prefix) => Source::V6Net(prefix >> 16),
            wide => wide,
        }
    }

    fn is_address(self) -> bool {
        matches!(self, Source::V4(_) | Source::V6(_))
    }
}

/// Failed token attempts per source, as token buckets: each failure takes one, and they
/// come back at [`AUTH_FAILURE_REFILL_PER_SEC`]. A source with none left is refused with 429
/// before its token is even looked at, so guessing is slowed whatever the guess; a source
/// whose tokens are good never spends any, so it is never slowed.
///
/// Two tiers, each of at most [`AUTH_THROTTLE_SOURCES`]: addresses, and, once the
/// addresses are full of recent failures, the networks around new ones. So a flood from
/// many addresses of one network (an IPv6 /48 holds 65,536 /64s) exhausts that network's
/// budget, not everyone's: a client elsewhere, never seen, still has its own. Only an
/// attacker holding more networks than the wide tier can hold pushes new sources into the
/// one shared budget. A request is refused when its address's or its network's budget is
/// spent.
///
/// Written out here rather than taken from `governor`: the throttle must be able to ask
/// "is this source out of budget?" without spending (only failures spend), and must bound
/// the sources it remembers; governor's keyed limiter does neither.
#[derive(Default)]
pub(crate) struct Throttle {
    buckets: std::sync::Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    /// By address (IPv4, IPv6 /64).
    addresses: std::collections::HashMap<Source, Bucket>,
    /// By network, and the shared budget.
    networks: std::collections::HashMap<Source, Bucket>,
}

impl Buckets {
    fn tier(&mut self, key: Source) -> &mut std::collections::HashMap<Source, Bucket> {
        if key.is_address() {
            &mut self.addresses
        } else {
            &mut self.networks
        }
    }

    /// The key `source`'s failures are counted under: its address while that tier has it
    /// or has room, else its network while that tier has it or has room, else `Shared`.
    fn key(&self, source: Source) -> Source {
        if source.is_address()
            && (self.addresses.contains_key(&source)
                || self.addresses.len() < AUTH_THROTTLE_SOURCES)
        {
            return source;
        }
        let network = source.network();
        if self.networks.contains_key(&network) || self.networks.len() < AUTH_THROTTLE_SOURCES {
            network
        } else {
            Source::Shared
        }
    }

    /// The least budget left of `source`'s address, network and key (those remembered).
    fn left(&self, source: Source, now: std::time::Instant) -> Option<f64> {
        [
            self.addresses.get(&source),
            self.networks.get(&source.network()),
            self.networks.get(&self.key(source)),
        ]
        .into_iter()
        .flatten()
        .map(|b| b.now(now))
        .reduce(f64::min)
    }
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
    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // A bucket is updated in one step: a panic elsewhere cannot leave one half-written.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's source, or 429 if it has no failed attempts left.
    pub(crate) fn admit(&self, parts: &Parts) -> Result<Source, ApiError> {
        let source = Source::of(parts);
        let now = std::time::Instant::now();
        let buckets = self.buckets();
        if let Some(left) = buckets.left(source, now)
            && left < 1.0
        {
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
        Ok(source)
    }

    /// Spends one failed attempt of `source`'s budget.
    pub(crate) fn failed(&self, source: Source) {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets();
        // Forget the sources whose budget is whole again (they are as if never seen) in a
        // full tier, before a new source would be pushed past it.
        let whole = |b: &Bucket| b.now(now) < f64::from(AUTH_FAILURE_BURST);
        if source.is_address()
            && buckets.addresses.len() >= AUTH_THROTTLE_SOURCES
            && !buckets.addresses.contains_key(&source)
        {
            buckets.addresses.retain(|_, b| whole(b));
        }
        let key = buckets.key(source);
        if !key.is_address()
            && buckets.networks.len() >= AUTH_THROTTLE_SOURCES
            && !buckets.networks.contains_key(&key)
        {
            buckets.networks.retain(|_, b| whole(b));
        }
        let key = buckets.key(source);
        let bucket = buckets.tier(key).entry(key).or_insert(Bucket {
            left: f64::from(AUTH_FAILURE_BURST),
            at: now,
        });
        *bucket = Bucket {
            left: (bucket.now(now) - 1.0).max(0.0),
            at: now,
        };
    }

    /// How many sources are remembered, addresses and networks: bounded by
    /// [`AUTH_THROTTLE_SOURCES`] each (and the shared budget).
    #[cfg(test)]
    fn remembered(&self) -> (usize, usize) {
        let buckets = self.buckets();
        (buckets.addresses.len(), buckets.networks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(peer: &str) -> Parts {
        let mut request = axum::http::Request::new(());
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request.into_parts().0
    }

    /// Fails once from `peer`, as a request with a bad token does.
    fn fail(throttle: &Throttle, peer: &str) -> Result<(), ApiError> {
        let source = throttle.admit(&from(peer))?;
        throttle.failed(source);
        Ok(())
    }

    #[test]
    fn a_flood_from_many_addresses_of_one_network_slows_that_network_not_everyone() {
        let throttle = Throttle::default();
        // One holder of an IPv6 /48 fails once from each of more /64s than are remembered.
        let flood = AUTH_THROTTLE_SOURCES + 5 * AUTH_FAILURE_BURST as usize;
        let refused = (0..flood)
            .filter(|i| fail(&throttle, &format!("[2001:db8:7:{i:x}::1]:443")).is_err())
            .count();
        assert!(refused > 0, "the flood was never slowed");
        let (addresses, networks) = throttle.remembered();
        assert!(
            addresses <= AUTH_THROTTLE_SOURCES && networks <= AUTH_THROTTLE_SOURCES + 1,
            "{addresses} addresses, {networks} networks"
        );
        // Before: every source not remembered shared the budget the flood had spent, so a
        // client never seen before, with a good token, was refused.
        for client in ["198.51.100.9:5000", "[2001:db8:8::1]:5000"] {
            assert!(throttle.admit(&from(client)).is_ok(), "{client}");
        }
        // The flood's own network stays slowed, from a /64 it has not used yet too.
        let next = format!("[2001:db8:7:{:x}::1]:443", flood + 1);
        assert!(throttle.admit(&from(&next)).is_err());
        // So does an address of it remembered before the tier filled: its network's
        // budget is spent, whatever its own.
        assert!(throttle.admit(&from("[2001:db8:7:0::2]:1")).is_err());
    }

    #[test]
    fn a_flood_from_more_networks_than_remembered_stays_bounded() {
        let throttle = Throttle::default();
        for i in 0..(2 * AUTH_THROTTLE_SOURCES + 100) as u32 {
            let ip = std::net::Ipv4Addr::from_bits(0x0A00_0000 + (i << 8));
            let _ = fail(&throttle, &format!("{ip}:1"));
        }
        let (addresses, networks) = throttle.remembered();
        assert!(
            addresses <= AUTH_THROTTLE_SOURCES && networks <= AUTH_THROTTLE_SOURCES + 1,
            "{addresses} addresses, {networks} networks"
        );
    }
}
