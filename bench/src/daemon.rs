//! Starting the daemon under test.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Writes `config` to `dir/openwit.yaml` and starts `bin` on it, with its data under `dir/data` and its
/// log in `dir/openwit.log`.
pub fn spawn_openwit(bin: &Path, dir: &Path, config: &str) -> anyhow::Result<Child> {
    let cfg = dir.join("openwit.yaml");
    std::fs::write(&cfg, config)?;
    Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("openwit.log"))?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}; build it first (bench/run does)", bin.display()))
}
