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

    /// Reads the little-endian words at `addresses` into `words` (as many
    /// as both hold) in one system call; returns how many were read, which
    /// stops short at the first one that is not mapped.
    pub fn read_words(self, addresses: &[u64], words: &mut [u64]) -> io::Result<usize> {
        let n = addresses.len().min(words.len()).min(1024);
        if n == 0 {
            return Ok(0);
        }
        let local: Vec<libc::iovec> = words[..n]
            .iter_mut()
            .map(|w| libc::iovec {
                iov_base: std::ptr::from_mut(w).cast(),
                iov_len: 8,
            })
            .collect();
        let remote: Vec<libc::iovec> = addresses[..n]
            .iter()
            .map(|&avma| libc::iovec {
                iov_base: avma as *mut libc::c_void,
                iov_len: 8,
            })
            .collect();
        // SAFETY: each `local` iovec is one element of `words`, writable
        // and alive for the call; `remote` holds only addresses in the
        // other process, which the kernel checks.
        let read = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                local.as_ptr(),
                n as libc::c_ulong,
                remote.as_ptr(),
                n as libc::c_ulong,
                0,
            )
        };
        let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
        for w in &mut words[..read / 8] {
            *w = u64::from_le(*w);
        }
        Ok(read / 8)
    }

    /// A little-endian `u64` at `avma`.
    pub fn u64(self, avma: u64) -> Option<u64> {
        let mut word = [0u8; 8];
        self.read(avma, &mut word).ok()?;
        Some(u64::from_le_bytes(word))
    }
}
