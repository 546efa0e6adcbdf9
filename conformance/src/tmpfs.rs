//! A small file system that really fills, for disk-full tests: a command that
//! mounts a tmpfs in a mount namespace of its own (nothing is mounted outside
//! it, and nothing is left behind when it ends), then runs a program there.

use std::path::Path;
use std::process::Command;

/// `unshare` (util-linux) mounting a tmpfs of `size` (`mount`'s syntax, e.g.
/// `"2m"`) over `mount`, then running the program and arguments the caller
/// adds. As root a mount namespace is enough (no user namespace to depend on);
/// anyone else maps itself to root in a user namespace, which mounting needs.
pub fn command(size: &str, mount: &Path) -> Command {
    let script = r#"mount -t tmpfs -o "size=$1" weir-disk-full "$2" && shift 2 && exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["sh", "-c", script, "sh", size]).arg(mount);
    cmd
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
