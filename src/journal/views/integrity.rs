//! SQLite's own consistency check of the journal file (`PRAGMA
//! quick_check`): a damaged page, index or record, found before the audit
//! trusts anything it reads.
//!
//! Owns running the check; what a damaged file means for the audit is the
//! audit's.

use super::super::{Journal, Result};

impl Journal {
    /// What SQLite finds wrong with the file, one line per problem (at
    /// most 100, SQLite's own cap); empty when it reports `ok`. Reads every
    /// page of every table and index, so it costs a pass over the file.
    pub fn quick_check(&self) -> Result<Vec<String>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("PRAGMA quick_check")
            .map_err(|e| self.sqlite(e))?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))?;
        Ok(lines.into_iter().filter(|line| line != "ok").collect())
    }
}
