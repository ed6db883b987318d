//! Live aggregates for the dashboard: what `ferret watch` computes from the
//! span lifecycle as it streams by, and the immutable [`Snapshot`]s it
//! publishes for the view.
//!
//! Like the reconstructor, this module consumes plain values (span events,
//! metric samples, the reconstructor's open stacks) and never touches the
//! kernel, so it is tested from synthetic streams. Memory is bounded whatever
//! the length of the session: per function a fixed-size histogram and rate
//! window, a fixed number of recent calls and metric samples, and one entry
//! per open span.

mod aggregate;
pub mod histogram;
mod hot;
mod mailbox;
pub mod rate;
mod snapshot;

pub use aggregate::{Aggregates, FunctionStats, IDLE_THREAD_KEPT_NS, METRICS_KEPT, RECENT_KEPT};
pub use hot::{HOT_WINDOW_S, HotProfile, HotRow, HotStack, HotView};
pub use mailbox::Mailbox;
pub use snapshot::{
    FinishedCall, FunctionRow, MetricPoint, MetricsHistory, OpenFrame, OtlpProgress, RunState,
    SessionInfo, Snapshot, TargetState, ThreadNow, ThreadView,
};
