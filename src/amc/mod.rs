//! The AMC reporting API, shared by the HTTP client that talks to Amazon and
//! by the built-in simulator that stands in for it.
//!
//! Owns the [`Api`] trait and the layout of the folder: the wire formats
//! (`wire`), the error classes callers act on (`error`), paging through a
//! listing (`listing`), the rule for recognising one's own execution
//! (`adoption`), results (`result`), the client and the simulator. It does
//! not own retries across attempts or the journal (the runner does).

pub(crate) mod adoption;
pub mod client;
mod error;
pub(crate) mod listing;
pub mod result;
pub mod simulator;
pub(crate) mod wire;

use std::future::Future;

pub use error::ApiError;
pub use wire::{CreateExecution, Execution, ExecutionPage, ListQuery, Status};

/// The AMC reporting API for one advertiser account. Implemented by the HTTP
/// [`client::Client`] and by the [`crate::amc::simulator::Simulator`].
pub trait Api: Send + Sync {
    fn create(
        &self,
        instance_id: &str,
        request: &CreateExecution,
    ) -> impl Future<Output = Result<Execution, ApiError>> + Send;

    fn get(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<Execution, ApiError>> + Send;

    fn list(
        &self,
        instance_id: &str,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ExecutionPage, ApiError>> + Send;

    /// The presigned URLs of a SUCCEEDED execution's result files. An empty
    /// list is passed on as it came: the caller decides it is not a result.
    fn download_urls(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;

    /// `PUT /workflowExecutions/{id}` with `{"status":"CANCELLED"}`; AMC
    /// accepts it only while the execution is PENDING or RUNNING.
    fn cancel(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
