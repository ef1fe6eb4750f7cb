//! Which user a container's process runs as: the CRI security context
//! over the image's `User`, names looked up in the image's own
//! /etc/passwd and /etc/group.

use std::path::Path;

use super::{Identity, SecurityContext, SupplementalGroupsPolicy};
use crate::error::{Error, Result};
use crate::fsutil::read_in_root;

/// One line of /etc/passwd.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One line of /etc/group.
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(data: &str) -> Vec<PasswdEntry> {
    data.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(data: &str) -> Vec<GroupEntry> {
    data.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn read_text(rootfs: &Path, path: &str) -> Result<String> {
    Ok(read_in_root(rootfs, path)?
        .map(|d| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default())
}

fn to_id(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is out of range")))
}

/// Resolves the identity of a container from its security context and the
/// image's `User` ("", "name", "uid", "name:group", "uid:gid" …), looking
/// names up in the files of `rootfs`.
pub fn resolve(rootfs: &Path, image_user: &str, sc: &SecurityContext) -> Result<Identity> {
    let passwd = parse_passwd(&read_text(rootfs, "/etc/passwd")?);
    let groups = parse_group(&read_text(rootfs, "/etc/group")?);

    let (user, group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    // The user: the security context wins over the image.
    let (uid, mut gid, name) = if let Some(uid) = sc.run_as_user {
        let uid = to_id(uid, "run_as_user")?;
        let entry = passwd.iter().find(|p| p.uid == uid);
        (
            uid,
            entry.map_or(0, |p| p.gid),
            entry.map(|p| p.name.clone()),
        )
    } else if !sc.run_as_username.is_empty() {
        let entry = passwd
            .iter()
            .find(|p| p.name == sc.run_as_username)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "user {:?} not found in the image's /etc/passwd",
                    sc.run_as_username
                ))
            })?;
        (entry.uid, entry.gid, Some(entry.name.clone()))
    } else if user.is_empty() {
        (
            0,
            0,
            passwd.iter().find(|p| p.uid == 0).map(|p| p.name.clone()),
        )
    } else if let Ok(uid) = user.parse::<u32>() {
        let entry = passwd.iter().find(|p| p.uid == uid);
        (
            uid,
            entry.map_or(0, |p| p.gid),
            entry.map(|p| p.name.clone()),
        )
    } else {
        let entry = passwd.iter().find(|p| p.name == user).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "image user {user:?} not found in the image's /etc/passwd"
            ))
        })?;
        (entry.uid, entry.gid, Some(entry.name.clone()))
    };
    // The group: run_as_group, else the image's group part (only when the
    // image's user is the one in use), else the user's primary group.
    if let Some(g) = sc.run_as_group {
        gid = to_id(g, "run_as_group")?;
    } else if let Some(g) =
        group.filter(|_| sc.run_as_user.is_none() && sc.run_as_username.is_empty())
    {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "image group {g:?} not found in the image's /etc/group"
                        ))
                    })?
                    .gid
            }
        };
    }
    let mut additional_gids: Vec<u32> = Vec::new();
    let merge = sc.supplemental_groups_policy == SupplementalGroupsPolicy::Merge;
    if let Some(name) = name.as_ref().filter(|_| merge) {
        additional_gids.extend(
            groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }
    for g in &sc.supplemental_groups {
        additional_gids.push(to_id(*g, "supplemental group")?);
    }
    // The primary group is a supplementary group too, as containerd and
    // CRI-O set it (and as `id -G` and kubelet's ContainerStatus.user show).
    additional_gids.push(gid);
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbad line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n",
        )
        .unwrap();
        dir
    }

    /// The identity with groups `extra` besides the primary group `gid`
    /// (which is always among the additional groups too).
    fn id(uid: u32, gid: u32, extra: &[u32]) -> Identity {
        let mut additional_gids = extra.to_vec();
        additional_gids.push(gid);
        additional_gids.sort_unstable();
        Identity {
            uid,
            gid,
            additional_gids,
        }
    }

    #[test]
    fn image_user_forms() {
        let r = rootfs();
        let sc = SecurityContext::default();
        assert_eq!(resolve(r.path(), "", &sc).unwrap(), id(0, 0, &[]));
        assert_eq!(resolve(r.path(), "www", &sc).unwrap(), id(33, 33, &[50]));
        assert_eq!(resolve(r.path(), "33", &sc).unwrap(), id(33, 33, &[50]));
        assert_eq!(
            resolve(r.path(), "www:staff", &sc).unwrap(),
            id(33, 50, &[])
        );
        assert_eq!(
            resolve(r.path(), "1000:1000", &sc).unwrap(),
            id(1000, 1000, &[])
        );
        assert!(resolve(r.path(), "nobody", &sc).is_err());
        assert!(resolve(r.path(), "www:nogroup", &sc).is_err());
    }

    #[test]
    fn security_context_wins() {
        let r = rootfs();
        let sc = SecurityContext {
            run_as_user: Some(33),
            run_as_group: Some(7),
            supplemental_groups: vec![9, 7],
            ..Default::default()
        };
        assert_eq!(
            resolve(r.path(), "root:root", &sc).unwrap(),
            id(33, 7, &[9, 50])
        );
        let sc = SecurityContext {
            run_as_username: "www".into(),
            ..Default::default()
        };
        assert_eq!(resolve(r.path(), "1000", &sc).unwrap(), id(33, 33, &[50]));
        let sc = SecurityContext {
            run_as_user: Some(-1),
            ..Default::default()
        };
        assert!(resolve(r.path(), "", &sc).is_err());
    }

    #[test]
    fn strict_policy_ignores_the_images_groups() {
        let r = rootfs();
        let sc = SecurityContext {
            supplemental_groups: vec![9],
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict,
            ..Default::default()
        };
        assert_eq!(resolve(r.path(), "www", &sc).unwrap(), id(33, 33, &[9]));
    }

    #[test]
    fn no_passwd_file_means_numeric_only() {
        let dir = tempfile::tempdir().unwrap();
        let sc = SecurityContext::default();
        assert_eq!(resolve(dir.path(), "5:6", &sc).unwrap(), id(5, 6, &[]));
        assert!(resolve(dir.path(), "app", &sc).is_err());
    }
}
