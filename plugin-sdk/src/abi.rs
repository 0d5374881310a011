//! The C ABI between OpenWit and a plugin library, version 1. `include/openwit_plugin.h` declares the
//! same thing for C; a test checks that both agree (sizes, field offsets, constants).
//!
//! A library exports two symbols:
//! - `uint32_t openwit_plugin_abi_version(void)`: read first, so that a table of another layout is
//!   never interpreted;
//! - `const OpenwitPlugin *openwit_plugin_entry(void)`: the plugin's table, valid as long as the
//!   library is loaded (OpenWit never unloads a plugin).
//!
//! Versioning: any change to a struct, a function's signature or a constant's meaning makes a new
//! `OPENWIT_PLUGIN_ABI_VERSION`; the daemon loads only libraries of its own version. The sizes in the
//! table (`plugin_size`, `component_size`) catch a library built against a header that changed without
//! the version being raised.

use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use std::ffi::{c_char, c_void};

/// The ABI version this crate (and `openwit_plugin.h`) define.
pub const ABI_VERSION: u32 = 1;

/// The symbol giving the library's ABI version.
pub const VERSION_SYMBOL: &str = "openwit_plugin_abi_version";
/// The symbol giving the library's table.
pub const ENTRY_SYMBOL: &str = "openwit_plugin_entry";

/// What a call returns.
pub const STATUS_OK: i32 = 0;
/// Failed; worth trying again later (a destination unavailable).
pub const STATUS_RETRYABLE: i32 = 1;
/// Failed; trying again will not help (data the plugin cannot handle, a bad config).
pub const STATUS_PERMANENT: i32 = 2;
/// The plugin's code panicked (set by the Rust SDK's guard; C plugins do not use it).
pub const STATUS_PANICKED: i32 = 3;

/// `OpenwitComponent::kind`.
pub const KIND_PROCESSOR: u32 = 1;
pub const KIND_EXPORTER: u32 = 2;

/// `OpenwitComponent::signals` bits, and the `signal` handed to `create`.
pub const SIGNAL_TRACES: u32 = 1;
pub const SIGNAL_METRICS: u32 = 2;
pub const SIGNAL_LOGS: u32 = 4;

/// Checks a component's config (its YAML section as JSON text, `{}` when empty) without building it.
pub type ValidateFn = unsafe extern "C" fn(config_json: *const c_char, error: *mut *mut c_char) -> i32;
/// Builds one instance for a pipeline of `signal` (one of the `SIGNAL_*` values).
pub type CreateFn = unsafe extern "C" fn(
    config_json: *const c_char,
    signal: u32,
    instance: *mut *mut c_void,
    error: *mut *mut c_char,
) -> i32;
/// Frees an instance.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// A processor's work on one batch. The input (a struct array whose children are the table's columns)
/// is handed over: the plugin releases it. The plugin writes its output (the same schema, one row per
/// input row) into `output`/`output_schema`, or leaves them released to mean "unchanged"; and clears
/// `keep[i]` (one byte per input row, all 1 on entry) for each row to drop.
pub type ProcessFn = unsafe extern "C" fn(
    instance: *mut c_void,
    input: *mut FFI_ArrowArray,
    input_schema: *mut FFI_ArrowSchema,
    output: *mut FFI_ArrowArray,
    output_schema: *mut FFI_ArrowSchema,
    keep: *mut u8,
    error: *mut *mut c_char,
) -> i32;
/// An exporter's work on one batch: `STATUS_OK` only once the rows are durable where it sends them.
/// The input is handed over as for `ProcessFn`.
pub type ExportFn = unsafe extern "C" fn(
    instance: *mut c_void,
    input: *mut FFI_ArrowArray,
    input_schema: *mut FFI_ArrowSchema,
    error: *mut *mut c_char,
) -> i32;
/// An exporter's last call before `destroy`, at shutdown: flush what it holds.
pub type FlushFn = unsafe extern "C" fn(instance: *mut c_void, error: *mut *mut c_char) -> i32;
/// Frees an error text the plugin returned through an `error` out-parameter.
pub type FreeErrorFn = unsafe extern "C" fn(error: *mut c_char);

/// One component type a library offers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenwitComponent {
    /// The type name used in the config (`[A-Za-z0-9_]+`), NUL-terminated.
    pub type_name: *const c_char,
    /// One line for `openwit components`.
    pub description: *const c_char,
    /// `KIND_PROCESSOR` or `KIND_EXPORTER`.
    pub kind: u32,
    /// The signals it supports (`SIGNAL_*` bits).
    pub signals: u32,
    pub validate: Option<ValidateFn>,
    pub create: Option<CreateFn>,
    pub destroy: Option<DestroyFn>,
    /// Processors only.
    pub process: Option<ProcessFn>,
    /// Exporters only.
    pub export_rows: Option<ExportFn>,
    /// Exporters; optional.
    pub flush: Option<FlushFn>,
}

/// A library's table.
#[repr(C)]
pub struct OpenwitPlugin {
    /// `OPENWIT_PLUGIN_ABI_VERSION` the library was built with.
    pub abi_version: u32,
    /// `sizeof(OpenwitPlugin)` and `sizeof(OpenwitComponent)` as the library sees them.
    pub plugin_size: u32,
    pub component_size: u32,
    /// The library's name and version, for logs and `openwit components`.
    pub name: *const c_char,
    pub version: *const c_char,
    pub components: *const OpenwitComponent,
    pub component_count: usize,
    pub free_error: Option<FreeErrorFn>,
}
