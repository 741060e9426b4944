//! How a list route reads its paging parameters: `limit` (a page's size, bounded) and
//! `order` (`oldest` or `newest` first), the same words and the same 400s on every list.

use coda_store::ListOrder;

use crate::ApiError;

/// The `order` values, as the documents spell them.
pub(crate) const ORDERS: &str = "oldest, newest";

/// `limit`, defaulting to `default`; 1 to `max`.
pub(crate) fn page_limit(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("`limit` must be 1 to {max}, not {limit}"),
        ));
    }
    Ok(limit)
}

/// `order`: oldest first unless `newest` is asked for.
pub(crate) fn list_order(order: Option<&str>) -> Result<ListOrder, ApiError> {
    match order {
        None | Some("oldest") => Ok(ListOrder::OldestFirst),
        Some("newest") => Ok(ListOrder::NewestFirst),
        Some(other) => Err(ApiError::bad_request(
            "invalid-query",
            format!("`order` must be one of {ORDERS}, not `{other}`"),
        )),
    }
}
