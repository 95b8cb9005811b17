//! Reading a whole listing of `GET /workflowExecutions`, page after page,
//! with a guard against a `nextToken` that leads back to a page already read
//! (a real client once looped on one at 3,000 calls a minute).
//!
//! Owns paging only; what is done with the executions is the caller's.

use std::collections::HashSet;

use super::{Api, ApiError, Execution, ListQuery};

/// No listing chronicle makes spans more than this many pages (100 each):
/// past it the listing is cut with an error rather than run on.
pub(crate) const MAX_PAGES: usize = 1_000;

/// Every execution `query` lists, following `nextToken` from its first page.
/// A token seen before in the same listing, or more than [`MAX_PAGES`]
/// pages, ends it with a malformed-answer error naming the token.
pub(crate) async fn list_all<A: Api>(
    api: &A,
    instance_id: &str,
    query: &ListQuery,
) -> Result<Vec<Execution>, ApiError> {
    let mut query = ListQuery {
        next_token: None,
        ..query.clone()
    };
    let mut seen = HashSet::new();
    let mut executions = Vec::new();
    for _ in 0..MAX_PAGES {
        let page = api.list(instance_id, &query).await?;
        executions.extend(page.executions);
        match page.next_token.filter(|t| !t.is_empty()) {
            None => return Ok(executions),
            Some(token) if !seen.insert(token.clone()) => {
                return Err(ApiError::Malformed(format!(
                    "the execution list of instance {instance_id} repeats nextToken {token:?}; \
                     the listing was stopped after {} pages",
                    seen.len() + 1
                )));
            }
            Some(token) => query.next_token = Some(token),
        }
    }
    Err(ApiError::Malformed(format!(
        "the execution list of instance {instance_id} goes on past {MAX_PAGES} pages; \
         the listing was stopped"
    )))
}
