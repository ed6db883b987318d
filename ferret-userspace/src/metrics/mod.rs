//! Process metrics from procfs.
