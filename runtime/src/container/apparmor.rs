//! What the node's AppArmor can do, for the container spec's profile.

/// Whether the kernel has AppArmor enabled.
pub(super) fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether an AppArmor profile of that name is loaded.
pub(super) fn loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .is_ok_and(|all| all.lines().any(|l| l.split(" (").next() == Some(name)))
}
