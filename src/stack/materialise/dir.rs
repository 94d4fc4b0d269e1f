//! A directory handle whose operations never follow a symbolic link.
//!
//! Every operation names one entry (a single path component: no `/`, never `.` or `..`) of an
//! open directory, and opens with `O_NOFOLLOW`; reaching `a/b/c` opens `a`, then `b` in it,
//! then `c` in that. So whatever the disk holds, a link planted by a container at run time or
//! left by a previous version, nothing here reaches outside the directory a walk started from:
//! a link in the way is at worst removed (the link itself), never followed. This is the classic
//! `openat` walk; it works on every Linux kernel, unlike `openat2`'s `RESOLVE_BENEATH` (5.6+),
//! and is stricter, since even a link that stays inside is not followed.
//!
//! Built on `rustix`'s safe `*at` calls (the crate forbids `unsafe`). Uses nothing of the crate.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What an entry of a directory is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A FIFO, socket or device: nothing materialise writes.
    Other,
}

/// An open directory. Its path is kept for messages only; no operation resolves it again.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Is `error` what opening a non-directory with `O_DIRECTORY | O_NOFOLLOW` gives (a link:
/// `ELOOP`; a file: `ENOTDIR`)?
pub fn is_not_a_dir(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::LOOP | Errno::NOTDIR)
    )
}

/// Is `error` the one for a name that does not exist?
pub fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

impl Dir {
    /// Opens a directory the operator configured (`DATA_DIR/stacks`) by its path, which may
    /// itself go through links: it is trusted, everything below it is not.
    pub fn open_trusted(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(path, dir_flags() & !OFlags::NOFOLLOW, Mode::empty())?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// Where this directory was when it was opened, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of entry `name`, for messages.
    pub fn child_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the directory `name`; a link or file there fails (see [`is_not_a_dir`]).
    pub fn open_dir(&self, name: &str) -> io::Result<Self> {
        let fd = rustix::fs::openat(&self.fd, checked(name)?, dir_flags(), Mode::empty())?;
        Ok(Self {
            fd,
            path: self.child_path(name),
        })
    }

    /// Creates the directory `name` with exactly `mode`; an existing entry is left alone
    /// (`Ok(false)`), whatever it is.
    pub fn create_dir(&self, name: &str, mode: u32) -> io::Result<bool> {
        match rustix::fs::mkdirat(&self.fd, checked(name)?, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                // mkdir applies the umask; the mode is set exactly, through the new handle.
                self.open_dir(name)?.set_mode(mode)?;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The directory `name`, made a real directory whatever is there: created if missing, a
    /// file or link in the way removed first (never followed). An existing directory is kept.
    pub fn ensure_dir(&self, name: &str, mode: u32) -> io::Result<Self> {
        match self.open_dir(name) {
            Ok(dir) => return Ok(dir),
            Err(e) if is_not_a_dir(&e) => self.remove_file(name)?,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        self.create_dir(name, mode)?;
        self.open_dir(name)
    }

    /// What `name` is, without following it; `None` when nothing is there.
    pub fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
        match rustix::fs::statat(&self.fd, checked(name)?, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(
                match FileType::from_raw_mode(stat.st_mode as rustix::fs::RawMode) {
                    FileType::Directory => Kind::Dir,
                    FileType::RegularFile => Kind::File,
                    FileType::Symlink => Kind::Symlink,
                    _ => Kind::Other,
                },
            )),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the file `name`, which must not exist, with `content` and exactly `mode`.
    pub fn create_file(&self, name: &str, content: &[u8], mode: u32) -> io::Result<()> {
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.fd, checked(name)?, flags, Mode::from_raw_mode(0o600))?;
        let mut file = File::from(fd);
        file.write_all(content)?;
        // Set after writing and independent of the umask; until then only the owner can read.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Reads the regular file `name`, at most `limit` bytes; `None` when it is missing or is
    /// not a regular file (a link, a FIFO a container planted: never followed, never waited on).
    pub fn read_file(&self, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, checked(name)?, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode as rustix::fs::RawMode) != FileType::RegularFile {
            return Ok(None);
        }
        let mut content = Vec::new();
        File::from(fd).take(limit).read_to_end(&mut content)?;
        Ok(Some(content))
    }

    /// Creates the symbolic link `name` pointing to `target` (stored as given, not resolved).
    pub fn symlink(&self, target: &[u8], name: &str) -> io::Result<()> {
        rustix::fs::symlinkat(OsStr::from_bytes(target), &self.fd, checked(name)?)?;
        Ok(())
    }

    /// Removes the entry `name` if it is not a directory (a link is removed, not followed).
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, checked(name)?, AtFlags::empty())?;
        Ok(())
    }

    /// Removes the directory `name` if it is empty.
    pub fn remove_empty_dir(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, checked(name)?, AtFlags::REMOVEDIR)?;
        Ok(())
    }

    /// Moves entry `name` to `to_name` in `to` (same filesystem), replacing a file or link
    /// there atomically; the entry itself moves, a link is not followed.
    pub fn rename(&self, name: &str, to: &Dir, to_name: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, checked(name)?, &to.fd, checked(to_name)?)?;
        Ok(())
    }

    /// This directory's permission bits.
    pub fn mode(&self) -> io::Result<u32> {
        Ok(rustix::fs::fstat(&self.fd)?.st_mode & 0o7777)
    }

    /// Sets this directory's permission bits.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// `name` as one path component. Callers only pass components of paths that
/// `rules::check_relative` accepted (or names of their own); this is the last line of defence.
fn checked(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a single path component: {name:?}"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn a_link_is_neither_opened_as_a_directory_nor_read_but_removed_as_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), "secret").unwrap();
        let base = tmp.path().join("base");
        std::fs::create_dir(&base).unwrap();
        symlink(&outside, base.join("d")).unwrap();
        symlink(outside.join("f"), base.join("f")).unwrap();

        let dir = Dir::open_trusted(&base).unwrap();
        assert!(is_not_a_dir(&dir.open_dir("d").unwrap_err()));
        assert_eq!(dir.read_file("f", 100).unwrap(), None);
        assert_eq!(dir.kind("d").unwrap(), Some(Kind::Symlink));
        assert!(
            dir.create_file("f", b"x", 0o640).is_err(),
            "O_EXCL on a link"
        );
        let sub = dir.ensure_dir("d", 0o750).unwrap();
        sub.create_file("f", b"ours", 0o640).unwrap();
        assert_eq!(dir.kind("d").unwrap(), Some(Kind::Dir));
        assert_eq!(
            std::fs::read_to_string(outside.join("f")).unwrap(),
            "secret"
        );
        dir.remove_file("f").unwrap();
        assert!(outside.join("f").exists());
    }

    #[test]
    fn a_fifo_is_not_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp.path().join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let dir = Dir::open_trusted(tmp.path()).unwrap();
        assert_eq!(dir.read_file("p", 100).unwrap(), None);
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_trusted(tmp.path()).unwrap();
        dir.create_dir("d", 0o750).unwrap();
        dir.create_file("f", b"x", 0o640).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(tmp.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!((mode("d"), mode("f")), (0o750, 0o640));
    }

    #[test]
    fn a_name_that_is_not_one_component_is_never_passed_to_the_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_trusted(tmp.path()).unwrap();
        for name in ["a/b", "..", ".", ""] {
            let err = dir.kind(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }
}
