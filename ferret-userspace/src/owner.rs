//! Files ferret creates belong to the person who ran it.
//!
//! Under `sudo`, ferret runs as root, and a trace file owned by root in the
//! user's own directory is a nuisance (they cannot delete or overwrite it).
//! sudo records the invoking user in `SUDO_UID`/`SUDO_GID`; every file
//! ferret creates is handed to that user.

use std::os::fd::AsFd;

use rustix::{
    fs::{Gid, Uid, fchown},
    process::geteuid,
};

/// The invoking user's (uid, gid) when ferret runs as root under sudo.
pub fn invoking_user() -> Option<(u32, u32)> {
    parse(
        geteuid().as_raw(),
        std::env::var("SUDO_UID").ok().as_deref(),
        std::env::var("SUDO_GID").ok().as_deref(),
    )
}

fn parse(euid: u32, uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    if euid != 0 {
        return None;
    }
    let uid: u32 = uid?.trim().parse().ok()?;
    let gid: u32 = gid?.trim().parse().ok()?;
    (uid != 0).then_some((uid, gid))
}

/// Gives an open file ferret just created to the invoking user (see
/// [`invoking_user`]); does nothing otherwise. Failure is harmless (the
/// file stays root's) and is not reported.
pub fn give_to_invoking_user(file: &impl AsFd) {
    if let Some((uid, gid)) = invoking_user() {
        let _ = fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn only_root_with_a_non_root_sudo_user_changes_owner() {
        assert_eq!(parse(0, Some("1000"), Some("1001")), Some((1000, 1001)));
        assert_eq!(parse(1000, Some("1000"), Some("1000")), None, "not root");
        assert_eq!(parse(0, None, Some("1")), None, "not under sudo");
        assert_eq!(parse(0, Some("0"), Some("0")), None, "sudo from root");
        assert_eq!(parse(0, Some("x"), Some("1")), None, "garbage");
    }
}
