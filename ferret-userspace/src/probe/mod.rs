//! Loading the eBPF object, attaching probes, reading the ring buffer.
