//! What a command runs with: the settings, loaded once, and the journal,
//! opened once per command however many steps use it: for writing (and
//! created and migrated) by the commands that change it, read-only by the
//! commands that only look (`status`, `weeks`, `executions`, `events`,
//! `lineage`, `export`, `audit`), which never change the file.
//!
//! Owns loading and opening; every command family asks it instead of
//! opening files of its own.

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::journal::Journal;
use crate::settings::{ConfigError, Settings};

pub struct Context {
    /// `--config`, when given: then the file must exist.
    config: Option<PathBuf>,
    settings: OnceCell<Settings>,
    journal: OnceCell<Journal>,
    read_only: OnceCell<Journal>,
}

impl Context {
    pub fn new(config: Option<PathBuf>) -> Context {
        Context {
            config,
            settings: OnceCell::new(),
            journal: OnceCell::new(),
            read_only: OnceCell::new(),
        }
    }

    /// `--config PATH`, else `./config.toml` when present, else the
    /// built-in defaults; `CHRONICLE_*` variables over either.
    pub fn settings(&self) -> Result<&Settings, ConfigError> {
        if let Some(settings) = self.settings.get() {
            return Ok(settings);
        }
        let loaded = match &self.config {
            Some(path) => Settings::load(path, true)?,
            None => Settings::load(&PathBuf::from("config.toml"), false)?,
        };
        Ok(self.settings.get_or_init(|| loaded))
    }

    /// The journal `journal.path` names, opened (and migrated) once.
    pub fn journal(&self) -> anyhow::Result<&Journal> {
        if let Some(journal) = self.journal.get() {
            return Ok(journal);
        }
        let opened = Journal::open(&self.settings()?.journal.path)?;
        Ok(self.journal.get_or_init(|| opened))
    }

    /// The journal `journal.path` names, opened read-only once: it must
    /// exist and be current; nothing in it is changed.
    pub fn journal_read_only(&self) -> anyhow::Result<&Journal> {
        if let Some(journal) = self.read_only.get() {
            return Ok(journal);
        }
        let opened = Journal::open_read_only(&self.settings()?.journal.path)?;
        Ok(self.read_only.get_or_init(|| opened))
    }

    /// `postgres.url`, or a configuration error saying what `what` needs it
    /// for.
    pub fn postgres_target(&self, what: &str) -> anyhow::Result<crate::warehouse::Target> {
        self.settings()?.postgres_target().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "key `postgres.url` is empty: set it (or CHRONICLE_POSTGRES__URL) to {what}"
            ))
            .into()
        })
    }
}
