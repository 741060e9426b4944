//! Reading HTTP response headers, without any HTTP crate: the http capability hands the
//! applet a status, a list of headers and a body.

use std::time::Duration;

use coda_sdk::http::Header;

/// The longest Retry-After honoured. A server asking for more is still retried, after this:
/// the flow engine's own backoff and attempt limit decide when to give up, not a header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The first header called `name` (header names are case-insensitive).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// A response's `Retry-After`, when it is given in seconds (capped at [`MAX_RETRY_AFTER`]).
///
/// The HTTP-date form (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`) is ignored rather than
/// parsed: it needs a trustworthy clock to turn into a delay, and the rate-limiting APIs
/// applets call (Twilio, most REST APIs) send seconds. Without it the engine's backoff
/// applies.
pub fn retry_after(headers: &[Header]) -> Option<Duration> {
    let value = header(headers, "retry-after")?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so the only parse error is overflow: more than the cap anyway.
    let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(name, value)| Header {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect()
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let h = headers(&[("Content-Type", "application/json")]);
        assert_eq!(header(&h, "content-type"), Some("application/json"));
        assert_eq!(header(&h, "retry-after"), None);
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(
            retry_after(&headers(&[("Retry-After", "120")])),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 0 ")])),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(
            retry_after(&headers(&[("Retry-After", "999999999")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(&[("Retry-After", "99999999999999999999999")])),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_that_is_not_seconds_is_ignored() {
        for value in ["Wed, 21 Oct 2015 07:28:00 GMT", "-5", "1.5", "", "+3"] {
            assert_eq!(
                retry_after(&headers(&[("Retry-After", value)])),
                None,
                "{value:?}"
            );
        }
        assert_eq!(retry_after(&[]), None);
    }
}
