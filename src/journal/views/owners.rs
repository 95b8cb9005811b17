//! Which group of the audit's walk the event log places each row in: row
//! ids (weeks, imported executions, attempts) to the index of their
//! collection's group, built in one pass over the log in `seq` order.
//!
//! Owns the map and its compact keys; which events place which rows is the
//! walk's (`state`).

use std::collections::HashMap;

use uuid::Uuid;

/// Row ids to group indexes. The ids chronicle writes are UUIDs in their
/// lowercase hyphenated form and are held as their 16 bytes: a heap string
/// per id (about 80 bytes a row with the map's own share, against 21) would
/// make this map the audit's largest allocation on a long history. Any
/// other id (a hand-edited file) is held as its text, so no two ids ever
/// share an entry.
#[derive(Default)]
pub(super) struct Owners {
    uuids: HashMap<[u8; 16], u32>,
    others: HashMap<Box<str>, u32>,
}

enum Key<'a> {
    Uuid([u8; 16]),
    Text(&'a str),
}

/// The 16 bytes when `id` is a UUID written exactly as chronicle writes it
/// (other spellings of the same UUID are other ids to the log).
fn key(id: &str) -> Key<'_> {
    match Uuid::try_parse(id) {
        Ok(uuid) if uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == id => {
            Key::Uuid(uuid.into_bytes())
        }
        _ => Key::Text(id),
    }
}

impl Owners {
    /// Places `id` in `group`, unless an earlier event already placed it:
    /// the first creating event decides.
    pub fn place(&mut self, id: &str, group: u32) {
        match key(id) {
            Key::Uuid(bytes) => {
                self.uuids.entry(bytes).or_insert(group);
            }
            Key::Text(text) => {
                if !self.others.contains_key(text) {
                    self.others.insert(text.into(), group);
                }
            }
        }
    }

    /// The group `id` was placed in, if any event placed it.
    pub fn group_of(&self, id: &str) -> Option<u32> {
        match key(id) {
            Key::Uuid(bytes) => self.uuids.get(&bytes).copied(),
            Key::Text(text) => self.others.get(text).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_matched_exactly_as_written_and_the_first_placement_stays() {
        let mut owners = Owners::default();
        let id = "01a23c5d-4637-7727-8e67-24f3fefdad72";
        owners.place(id, 1);
        owners.place(id, 2);
        owners.place("runner", 3);
        assert_eq!(owners.group_of(id), Some(1));
        assert_eq!(owners.group_of("runner"), Some(3));
        // The same UUID spelled otherwise is another id to the log.
        assert_eq!(owners.group_of(&id.to_uppercase()), None);
        assert_eq!(owners.group_of(&id.replace('-', "")), None);
        owners.place(&id.to_uppercase(), 4);
        assert_eq!(owners.group_of(&id.to_uppercase()), Some(4));
        assert_eq!(owners.group_of(id), Some(1));
    }
}
