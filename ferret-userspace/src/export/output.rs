//! Where an export goes: a file written whole or not at all, or stdout.
//!
//! A regular file is written to a temporary file beside it and renamed over
//! it at the end, so an export that fails half-way (a damaged recording, a
//! full disk) never leaves a truncated flame graph that looks complete, and
//! a symbolic link planted at the output path is replaced rather than
//! followed (ferret often runs as root). `-` writes to stdout, and a path
//! that is not a regular file (`/dev/null`, a FIFO) is written in place.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Stdout, Write};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::ExportError;

/// Buffer size of the writers: exports are long runs of small writes.
const BUFFER: usize = 256 * 1024;

/// An export's destination.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Stdout(BufWriter<Stdout>),
    InPlace(BufWriter<File>),
    Atomic(BufWriter<File>, TempPath),
}

impl Output {
    /// Prepare to write `path` (`-` is stdout).
    pub fn create(path: &Path) -> Result<Self, ExportError> {
        let create_err = |source| ExportError::Create {
            path: path.to_owned(),
            source,
        };
        if path.as_os_str() == "-" {
            return Ok(Self {
                path: path.to_owned(),
                sink: Sink::Stdout(BufWriter::with_capacity(BUFFER, io::stdout())),
            });
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(create_err(io::Error::from(io::ErrorKind::IsADirectory)));
            }
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(create_err)?;
                return Ok(Self {
                    path: path.to_owned(),
                    sink: Sink::InPlace(BufWriter::with_capacity(BUFFER, file)),
                });
            }
            _ => {}
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let (file, temp) = TempPath::create(dir, path).map_err(create_err)?;
        Ok(Self {
            path: path.to_owned(),
            sink: Sink::Atomic(BufWriter::with_capacity(BUFFER, file), temp),
        })
    }

    /// The directory for spill files: beside the output (on a disk with
    /// room for it, unlike a RAM-backed /tmp), or the system's temp dir
    /// for stdout.
    pub fn spill_dir(&self) -> PathBuf {
        match &self.sink {
            Sink::Atomic(..) => match self.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            },
            _ => std::env::temp_dir(),
        }
    }

    /// Flush and put the file in place.
    pub fn commit(self) -> Result<(), ExportError> {
        let path = self.path;
        let write_err = |source| ExportError::Write {
            path: path.clone(),
            source,
        };
        match self.sink {
            Sink::Stdout(mut w) => match w.flush() {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(write_err),
            },
            Sink::InPlace(mut w) => w.flush().map_err(write_err),
            Sink::Atomic(w, temp) => {
                let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
                drop(file);
                std::fs::rename(&temp.0, &path).map_err(write_err)?;
                // Renamed: nothing left for the guard to remove.
                std::mem::forget(temp);
                Ok(())
            }
        }
    }
}

/// A temporary file beside the output, removed when dropped (an export
/// that failed or was abandoned).
#[derive(Debug)]
struct TempPath(PathBuf);

impl TempPath {
    /// Create `dir/.NAME.ferret-PID-N`, new, readable by all as any file
    /// the user creates (the umask applies).
    fn create(dir: &Path, output: &Path) -> io::Result<(File, Self)> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = output
            .file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
        loop {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".{name}.ferret-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => return Ok((file, Self(path))),
                // Left by a process that died with our pid long ago.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Stdout(w) => w.write(buf),
            Sink::InPlace(w) | Sink::Atomic(w, _) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::InPlace(w) | Sink::Atomic(w, _) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(w) => w.flush(),
            Sink::InPlace(w) | Sink::Atomic(w, _) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut out = Output::create(&path).unwrap();
        out.write_all(b"hello").unwrap();
        assert!(!path.exists(), "nothing at the path before commit");
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
    }

    #[test]
    fn an_abandoned_export_leaves_no_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let mut out = Output::create(&path).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_at_the_output_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("out.txt");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let mut out = Output::create(&path).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn a_missing_directory_is_a_create_error() {
        let err = Output::create(Path::new("/nonexistent-ferret-dir/out.json")).unwrap_err();
        let ExportError::Create { path, source } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path, Path::new("/nonexistent-ferret-dir/out.json"));
        assert_eq!(
            source.to_string(),
            "No such file or directory (os error 2)",
            "the temporary file's name stays out of the message"
        );
    }

    #[test]
    fn devices_are_written_in_place() {
        let mut out = Output::create(Path::new("/dev/null")).unwrap();
        out.write_all(b"x").unwrap();
        out.commit().unwrap();
        assert!(Path::new("/dev/null").exists());
    }
}
