//! Per-thread open call stacks rebuilt from raw probe hits, turned into the
//! span lifecycle (SPAN_START / SPAN_END).
//!
//! Nothing here touches the kernel or aya: the input is [`RawEvent`] values
//! (decoded from the ring buffer, or synthesized in tests) and the output is
//! [`SpanEvent`] values for the sinks (Parquet, live view, aggregates).

mod event;
mod reconstruct;

pub use event::{
    BlockedIn, FunctionCost, FunctionInfo, RawEvent, RawKind, SchedCounters, SchedSplit, SpanEnd,
    SpanEvent, SpanStart, SpanStatus, ThreadName,
};
pub use reconstruct::{OpenSpan, Reconstructor, StackKey, ThreadStack};
