//! Launching a command stopped before its first instruction, or attaching to a pid.
