//! Reading another process's memory with `process_vm_readv`: no ptrace
//! attach, no stop; the kernel checks the same permission as for ptrace.

use std::io;

/// The memory of one process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessMemory {
    pid: u32,
}

impl ProcessMemory {
    /// The memory of `pid`.
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// Fills `buf` from `avma`; fails unless every byte was read.
    pub fn read(self, avma: u64, buf: &mut [u8]) -> io::Result<()> {
        let done = self.read_some(avma, buf)?;
        if done == buf.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read {done} of {} bytes at {avma:#x}", buf.len()),
            ))
        }
    }

    /// Reads from `avma` into `buf` as far as the memory is mapped; returns
    /// the bytes read.
    pub fn read_some(self, avma: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: avma as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, which is writable for its whole
        // length; `remote` is only an address in the other process, which
        // the kernel checks.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                &raw const local,
                1,
                &raw const remote,
                1,
                0,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// A little-endian `u64` at `avma`.
    pub fn u64(self, avma: u64) -> Option<u64> {
        let mut word = [0u8; 8];
        self.read(avma, &mut word).ok()?;
        Some(u64::from_le_bytes(word))
    }
}
