//! ELF symbols, demangling, glob matching, file offsets, exit instructions.
