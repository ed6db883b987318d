//! Where an export goes: a file written whole or not at all, or stdout.
//!
//! A regular file is written to a temporary file beside it and renamed over
//! it at the end, so an export that fails half-way (a damaged recording, a
//! full disk) never leaves a truncated flame graph that looks complete, and
//! a symbolic link planted at the output path is replaced rather than
//! followed (ferret often runs as root). `-` writes to stdout, and a path
//! that is not a regular file (`/dev/null`, a FIFO) is written in place.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Stdout, Write};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

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
    Atomic(BufWriter<NamedTempFile>),
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
        let temp = tempfile::Builder::new()
            .prefix(".ferret-export-")
            .tempfile_in(dir)
            .map_err(create_err)?;
        Ok(Self {
            path: path.to_owned(),
            sink: Sink::Atomic(BufWriter::with_capacity(BUFFER, temp)),
        })
    }

    /// The directory for spill files: beside the output (on a disk with
    /// room for it, unlike a RAM-backed /tmp), or the system's temp dir
    /// for stdout.
    pub fn spill_dir(&self) -> PathBuf {
        match &self.sink {
            Sink::Atomic(_) => match self.path.parent() {
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
            Sink::Atomic(w) => {
                let temp = w.into_inner().map_err(|e| write_err(e.into_error()))?;
                // A temp file is private (0600); the export is as readable
                // as any file the user creates.
                temp.as_file()
                    .set_permissions(Permissions::from_mode(0o644))
                    .map_err(write_err)?;
                temp.persist(&path).map_err(|e| write_err(e.error))?;
                Ok(())
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Stdout(w) => w.write(buf),
            Sink::InPlace(w) => w.write(buf),
            Sink::Atomic(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::InPlace(w) => w.write_all(buf),
            Sink::Atomic(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(w) => w.flush(),
            Sink::InPlace(w) => w.flush(),
            Sink::Atomic(w) => w.flush(),
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
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
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
        assert!(
            err.to_string()
                .starts_with("cannot create /nonexistent-ferret-dir/out.json"),
            "{err}"
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
