//! Parquet event log: schema and streaming writer.
