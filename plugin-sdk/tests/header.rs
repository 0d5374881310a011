//! `include/openwit_plugin.h` declares what `src/abi.rs` defines: compiled with the system's C
//! compiler, a program prints every size, field offset and constant of the header, and each must
//! equal the Rust definition's.

use openwit_plugin::abi::*;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "openwit_plugin.h"
#define SIZE(t) printf(#t " %zu\n", sizeof(t));
#define OFF(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
#define CONST(c) printf(#c " %lld\n", (long long)(c));
int main(void) {
  SIZE(OpenwitComponent) SIZE(OpenwitPlugin) SIZE(struct ArrowArray) SIZE(struct ArrowSchema)
  OFF(OpenwitComponent, type_name) OFF(OpenwitComponent, description) OFF(OpenwitComponent, kind)
  OFF(OpenwitComponent, signals) OFF(OpenwitComponent, validate) OFF(OpenwitComponent, create)
  OFF(OpenwitComponent, destroy) OFF(OpenwitComponent, process) OFF(OpenwitComponent, export_rows)
  OFF(OpenwitComponent, flush)
  OFF(OpenwitPlugin, abi_version) OFF(OpenwitPlugin, plugin_size) OFF(OpenwitPlugin, component_size)
  OFF(OpenwitPlugin, name) OFF(OpenwitPlugin, version) OFF(OpenwitPlugin, components)
  OFF(OpenwitPlugin, component_count) OFF(OpenwitPlugin, free_error)
  CONST(OPENWIT_PLUGIN_ABI_VERSION) CONST(OPENWIT_STATUS_OK) CONST(OPENWIT_STATUS_RETRYABLE)
  CONST(OPENWIT_STATUS_PERMANENT) CONST(OPENWIT_STATUS_PANICKED) CONST(OPENWIT_KIND_PROCESSOR)
  CONST(OPENWIT_KIND_EXPORTER) CONST(OPENWIT_SIGNAL_TRACES) CONST(OPENWIT_SIGNAL_METRICS)
  CONST(OPENWIT_SIGNAL_LOGS)
  return 0;
}
"#;

#[test]
fn the_c_header_matches_the_rust_definitions() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openwit-plugin-header");
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("layout.c"), dir.join("layout"));
    std::fs::write(&src, PROGRAM).unwrap();
    // The checkout this run is from (cargo sets it when it runs the test): a test binary reused from a
    // shared target directory may have been built in another checkout, whose path `env!` would hold.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let include = Path::new(&manifest).join("include");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("a C compiler (cc) is needed");
    assert!(cc.status.success(), "the header does not compile: {}", String::from_utf8_lossy(&cc.stderr));
    let out = Command::new(&exe).output().unwrap();
    let c: Vec<(String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    type C = OpenwitComponent;
    type P = OpenwitPlugin;
    let rust: Vec<(&str, u64)> = vec![
        ("OpenwitComponent", size_of::<C>() as u64),
        ("OpenwitPlugin", size_of::<P>() as u64),
        ("struct ArrowArray", size_of::<arrow::ffi::FFI_ArrowArray>() as u64),
        ("struct ArrowSchema", size_of::<arrow::ffi::FFI_ArrowSchema>() as u64),
        ("OpenwitComponent.type_name", offset_of!(C, type_name) as u64),
        ("OpenwitComponent.description", offset_of!(C, description) as u64),
        ("OpenwitComponent.kind", offset_of!(C, kind) as u64),
        ("OpenwitComponent.signals", offset_of!(C, signals) as u64),
        ("OpenwitComponent.validate", offset_of!(C, validate) as u64),
        ("OpenwitComponent.create", offset_of!(C, create) as u64),
        ("OpenwitComponent.destroy", offset_of!(C, destroy) as u64),
        ("OpenwitComponent.process", offset_of!(C, process) as u64),
        ("OpenwitComponent.export_rows", offset_of!(C, export_rows) as u64),
        ("OpenwitComponent.flush", offset_of!(C, flush) as u64),
        ("OpenwitPlugin.abi_version", offset_of!(P, abi_version) as u64),
        ("OpenwitPlugin.plugin_size", offset_of!(P, plugin_size) as u64),
        ("OpenwitPlugin.component_size", offset_of!(P, component_size) as u64),
        ("OpenwitPlugin.name", offset_of!(P, name) as u64),
        ("OpenwitPlugin.version", offset_of!(P, version) as u64),
        ("OpenwitPlugin.components", offset_of!(P, components) as u64),
        ("OpenwitPlugin.component_count", offset_of!(P, component_count) as u64),
        ("OpenwitPlugin.free_error", offset_of!(P, free_error) as u64),
        ("OPENWIT_PLUGIN_ABI_VERSION", ABI_VERSION as u64),
        ("OPENWIT_STATUS_OK", STATUS_OK as u64),
        ("OPENWIT_STATUS_RETRYABLE", STATUS_RETRYABLE as u64),
        ("OPENWIT_STATUS_PERMANENT", STATUS_PERMANENT as u64),
        ("OPENWIT_STATUS_PANICKED", STATUS_PANICKED as u64),
        ("OPENWIT_KIND_PROCESSOR", KIND_PROCESSOR as u64),
        ("OPENWIT_KIND_EXPORTER", KIND_EXPORTER as u64),
        ("OPENWIT_SIGNAL_TRACES", SIGNAL_TRACES as u64),
        ("OPENWIT_SIGNAL_METRICS", SIGNAL_METRICS as u64),
        ("OPENWIT_SIGNAL_LOGS", SIGNAL_LOGS as u64),
    ];
    let rust: Vec<(String, u64)> = rust.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(c, rust, "openwit_plugin.h and abi.rs disagree (left: C, right: Rust)");
}
