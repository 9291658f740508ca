//! gospace lists: `?page_size=&page=&cursor=&sort=` read by
//! [`service_kit::pagination::ListQuery`], answered as a window of the sorted
//! list (`items`, `next_cursor`, `prev_cursor`, `pagination.total_results`).
//! Each list names the fields it sorts by; the query orders by that field, then
//! by id in the same direction, so that pages never overlap.

use service_kit::pagination::ListRequest;

/// The diesel backend of [`store::DbConnection`], for boxed queries.
pub(crate) type Backend = <store::DbConnection as diesel::Connection>::Backend;

/// `LIMIT` and `OFFSET` of a list request.
pub(crate) fn bounds(request: &ListRequest) -> (i64, i64) {
    // The offset is at most `pagination::MAX_OFFSET`, far below `i64::MAX`.
    (
        i64::from(request.limit),
        i64::try_from(request.offset).unwrap_or(i64::MAX),
    )
}

/// Orders a boxed query by a validated [`service_kit::pagination::Sort`]:
///
/// ```ignore
/// sorted!(query, request.sort, api_keys::id, {
///     "created_at" => api_keys::created_at,
///     "name" => api_keys::name,
/// })
/// ```
///
/// The fields are the ones the list's `SORT_FIELDS` names (the sort was
/// validated against them); the first one also orders anything else.
macro_rules! sorted {
    ($query:expr, $sort:expr, $id:expr, {
        $first:literal => $first_column:expr
        $(, $name:literal => $column:expr)* $(,)?
    }) => {{
        use diesel::ExpressionMethods as _;
        use diesel::QueryDsl as _;
        let sort = $sort;
        match (sort.field, sort.descending) {
            $(
                ($name, false) => $query.order(($column.asc(), $id.asc())),
                ($name, true) => $query.order(($column.desc(), $id.desc())),
            )*
            (_, false) => $query.order(($first_column.asc(), $id.asc())),
            (_, true) => $query.order(($first_column.desc(), $id.desc())),
        }
    }};
}

pub(crate) use sorted;
