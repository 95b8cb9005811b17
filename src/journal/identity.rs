//! Deterministic identity (invariant I5): the same collection and week get
//! the same id on every host and after every rebuild; attempts get UUIDv7.
//!
//! Owns only the id functions, never storage.

use chrono::NaiveDate;
use uuid::Uuid;

/// Fixed namespace for collection ids. Changing it would re-key every
/// collection in every warehouse: never do.
const COLLECTION_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_0c4e_8f3a_5d2b_9c71_2a4e_5f60_d3a1);

pub fn collection_id(schedule_name: &str) -> Uuid {
    Uuid::new_v5(&COLLECTION_NAMESPACE, schedule_name.as_bytes())
}

pub fn week_id(collection_id: Uuid, week_start: NaiveDate) -> Uuid {
    Uuid::new_v5(
        &collection_id,
        week_start.format("%Y-%m-%d").to_string().as_bytes(),
    )
}

/// Time ordered, minted when the intent is journaled.
pub fn attempt_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_across_calls_and_distinct_across_inputs() {
        let a = collection_id("campaign_performance");
        assert_eq!(a, collection_id("campaign_performance"));
        assert_ne!(a, collection_id("other"));
        let day = NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
        assert_eq!(week_id(a, day), week_id(a, day));
        assert_ne!(week_id(a, day), week_id(a, day.succ_opt().unwrap()));
        assert_eq!(a.get_version_num(), 5);
        assert_eq!(attempt_id().get_version_num(), 7);
    }
}
