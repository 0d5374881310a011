//! The daemon's side: opening a plugin library, checking it, and calling its components.
//!
//! Everything a library declares is checked when it is opened, before any of it is used: the ABI
//! version (read through its own symbol, before the table is touched), the sizes of the table's
//! structures, every component's name, kind, signals and functions. A failed check names the file
//! and what was expected and found. Libraries are never unloaded: their code may have started
//! threads or registered destructors that outlive any component.

use crate::abi::{self, OpenwitComponent, OpenwitPlugin};
use crate::guest::{self, export_rows};
use crate::{Error, Signal};
use arrow::array::{Array, RecordBatch, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Processor,
    Exporter,
}

/// An opened library.
pub struct Library {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    free_error: abi::FreeErrorFn,
    _lib: libloading::Library,
}

/// A component type a library offers.
pub struct Component {
    pub library: Arc<Library>,
    pub type_name: String,
    pub description: String,
    pub kind: Kind,
    pub signals: Vec<Signal>,
    table: OpenwitComponent,
}

// SAFETY: the table holds function pointers and pointers to the library's static strings, which live
// as long as the library; calls on one instance are never concurrent (`Instance` is not `Sync`).
unsafe impl Send for Component {}
unsafe impl Sync for Component {}

/// Why a library was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for LoadError {}

/// Opens a library and checks everything it declares; returns its components.
pub fn open(path: &Path) -> Result<Vec<Arc<Component>>, LoadError> {
    let fail = |message: String| LoadError { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(fail("no such file (paths are relative to the working directory)".into()));
    }
    // SAFETY: loading runs the library's initialisers; that is what loading a plugin means, and the
    // operator chose the file.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| fail(format!("cannot load it: {e}")))?;
    let symbol_missing = |name: &str| {
        fail(format!(
            "it has no symbol {name}: not an OpenWit plugin (a Rust plugin exports it with \
             openwit_plugin::export_plugin!, a C plugin defines it as openwit_plugin.h declares)"
        ))
    };
    // SAFETY: the symbol's type is the ABI's; only its presence and value are trusted before the check.
    let version = unsafe { lib.get::<unsafe extern "C" fn() -> u32>(abi::VERSION_SYMBOL.as_bytes()) }
        .map_err(|_| symbol_missing(abi::VERSION_SYMBOL))?;
    // SAFETY: a function of no arguments returning a u32, as every ABI version declares it.
    let found = unsafe { version() };
    if found != abi::ABI_VERSION {
        return Err(fail(format!(
            "it was built for plugin ABI version {found}, and this OpenWit loads version {}: rebuild it \
             against this OpenWit's openwit-plugin crate or openwit_plugin.h",
            abi::ABI_VERSION
        )));
    }
    // SAFETY: the version matches, so the entry has this signature.
    let entry = unsafe { lib.get::<unsafe extern "C" fn() -> *const OpenwitPlugin>(abi::ENTRY_SYMBOL.as_bytes()) }
        .map_err(|_| symbol_missing(abi::ENTRY_SYMBOL))?;
    // SAFETY: as above; the table lives as long as the library.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err(fail(format!("{} returned no table", abi::ENTRY_SYMBOL)));
    }
    // SAFETY: non-null, and the library says it is a version-1 table.
    let table = unsafe { &*table };
    let sizes = (table.plugin_size as usize, table.component_size as usize);
    let expected = (size_of::<OpenwitPlugin>(), size_of::<OpenwitComponent>());
    if table.abi_version != abi::ABI_VERSION || sizes != expected {
        return Err(fail(format!(
            "its table does not match ABI version {}: version {}, OpenwitPlugin {} bytes, OpenwitComponent {} \
             bytes, expected {} and {} bytes: it was built against a changed header; rebuild it against this \
             OpenWit's",
            abi::ABI_VERSION,
            table.abi_version,
            sizes.0,
            sizes.1,
            expected.0,
            expected.1
        )));
    }
    let text = |p: *const c_char, what: &str| -> Result<String, LoadError> {
        if p.is_null() {
            return Err(fail(format!("its {what} is missing")));
        }
        // SAFETY: non-null; the ABI says NUL-terminated and static.
        unsafe { CStr::from_ptr(p) }.to_str().map(str::to_string).map_err(|_| fail(format!("its {what} is not UTF-8")))
    };
    let free_error = table.free_error.ok_or_else(|| fail("its table has no free_error function".into()))?;
    let name = text(table.name, "name")?;
    let version = text(table.version, "version")?;
    let components: &[OpenwitComponent] = if table.component_count == 0 {
        &[]
    } else if table.components.is_null() {
        return Err(fail("its table lists components at a null address".into()));
    } else {
        // SAFETY: non-null, `component_count` entries of the checked size.
        unsafe { std::slice::from_raw_parts(table.components, table.component_count) }
    };
    if components.is_empty() {
        return Err(fail("it offers no component".into()));
    }
    let library = Arc::new(Library { path: path.to_path_buf(), name, version, free_error, _lib: lib });
    let mut out = Vec::new();
    for (i, c) in components.iter().enumerate() {
        let type_name = text(c.type_name, &format!("component #{i}'s type name"))?;
        let bad = |what: String| fail(format!("its component {type_name:?} {what}"));
        if type_name.is_empty() || !type_name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(bad("has an invalid type name: a type uses letters, digits and '_'".into()));
        }
        let description = text(c.description, &format!("component {type_name:?}'s description"))?;
        let kind = match c.kind {
            abi::KIND_PROCESSOR => Kind::Processor,
            abi::KIND_EXPORTER => Kind::Exporter,
            k => return Err(bad(format!("has kind {k}; known kinds: 1 (processor), 2 (exporter)"))),
        };
        let all = abi::SIGNAL_TRACES | abi::SIGNAL_METRICS | abi::SIGNAL_LOGS;
        if c.signals == 0 || c.signals & !all != 0 {
            return Err(bad(format!("declares signals {:#x}; use the SIGNAL_* bits (1, 2, 4)", c.signals)));
        }
        let signals = Signal::ALL.into_iter().filter(|s| c.signals & s.bit() != 0).collect();
        let missing = match kind {
            _ if c.validate.is_none() => Some("validate"),
            _ if c.create.is_none() => Some("create"),
            _ if c.destroy.is_none() => Some("destroy"),
            Kind::Processor if c.process.is_none() => Some("process"),
            Kind::Exporter if c.export_rows.is_none() => Some("export_rows"),
            _ => None,
        };
        if let Some(f) = missing {
            return Err(bad(format!("has no {f} function")));
        }
        if out.iter().any(|o: &Arc<Component>| o.type_name == type_name) {
            return Err(bad("is declared twice".into()));
        }
        out.push(Arc::new(Component { library: library.clone(), type_name, description, kind, signals, table: *c }));
    }
    Ok(out)
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Retryable(String),
    Permanent(String),
    /// The plugin's code panicked (caught at the boundary by the Rust SDK).
    Panicked(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retryable(t) | CallError::Permanent(t) | CallError::Panicked(t) => f.write_str(t),
        }
    }
}

impl std::error::Error for CallError {}

impl From<Error> for CallError {
    fn from(e: Error) -> CallError {
        match e {
            Error::Retryable(t) => CallError::Retryable(t),
            Error::Permanent(t) => CallError::Permanent(t),
        }
    }
}

fn c_config(config_json: &str) -> Result<CString, CallError> {
    CString::new(config_json).map_err(|_| CallError::Permanent("the config contains a NUL character".into()))
}

impl Component {
    /// The result of a call: the status and the error text the plugin returned (freed here).
    fn outcome(&self, status: i32, error: *mut c_char) -> Result<(), CallError> {
        let text = if error.is_null() {
            None
        } else {
            // SAFETY: the plugin's own NUL-terminated text, given back to it to free right after.
            let t = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
            unsafe { (self.library.free_error)(error) };
            Some(t)
        };
        let text = || text.clone().unwrap_or_else(|| format!("status {status}, no error text"));
        match status {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_RETRYABLE => Err(CallError::Retryable(text())),
            abi::STATUS_PANICKED => Err(CallError::Panicked(text())),
            _ => Err(CallError::Permanent(text())),
        }
    }

    /// Checks a config section (as JSON text) without building anything.
    pub fn validate(&self, config_json: &str) -> Result<(), String> {
        let config = c_config(config_json).map_err(|e| e.to_string())?;
        let mut error = std::ptr::null_mut();
        let validate = self.table.validate.expect("checked at open");
        // SAFETY: the ABI's contract: a NUL-terminated config and an out-parameter.
        let status = unsafe { validate(config.as_ptr(), &mut error) };
        self.outcome(status, error).map_err(|e| e.to_string())
    }

    /// Builds an instance for a pipeline of `signal`.
    pub fn create(self: &Arc<Self>, config_json: &str, signal: Signal) -> Result<Instance, CallError> {
        let config = c_config(config_json)?;
        let (mut error, mut ptr) = (std::ptr::null_mut(), std::ptr::null_mut());
        let create = self.table.create.expect("checked at open");
        // SAFETY: the ABI's contract.
        let status = unsafe { create(config.as_ptr(), signal.bit(), &mut ptr, &mut error) };
        self.outcome(status, error)?;
        Ok(Instance { component: self.clone(), ptr })
    }
}

/// One instance of a component. Calls on it are never concurrent (it is `Send`, not `Sync`), though
/// they may come from different threads.
pub struct Instance {
    component: Arc<Component>,
    ptr: *mut c_void,
}

// SAFETY: the ABI lets an instance be called from any thread, one call at a time.
unsafe impl Send for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        let destroy = self.component.table.destroy.expect("checked at open");
        // SAFETY: made by `create`, destroyed once.
        unsafe { destroy(self.ptr) };
    }
}

/// A processor's answer: its rows (one per input row, valid Arrow; `checked_output` checks they fit)
/// and which input rows to keep.
pub struct Processed {
    pub rows: RecordBatch,
    pub keep: Vec<bool>,
}

/// Checks that Arrow data a plugin returned is valid before anything reads it: the struct's layout,
/// and every column in full (offsets in bounds, UTF-8, dictionary keys) — except a column whose
/// buffers are the very ones the plugin was given (handed back unchanged), which were valid then. So
/// the cost falls on what the plugin changed, not on every batch's every string.
fn validate_against(data: &arrow::array::ArrayData, input: &RecordBatch) -> Result<(), CallError> {
    let invalid =
        |e: arrow::error::ArrowError| CallError::Permanent(format!("the plugin returned invalid Arrow data: {e}"));
    data.validate().map_err(invalid)?;
    for (i, child) in data.child_data().iter().enumerate() {
        let unchanged = input.columns().get(i).is_some_and(|c| c.to_data().ptr_eq(child));
        if !unchanged {
            child.validate_full().map_err(invalid)?;
        }
    }
    Ok(())
}

/// Checks rows a plugin returned against the rows it was given: every buffer valid, the same columns
/// of the same types, one row per input row. The result carries the input's schema.
pub fn checked_output(input: &RecordBatch, output: RecordBatch) -> Result<RecordBatch, CallError> {
    let bad =
        |what: String| CallError::Permanent(format!("the plugin returned rows that do not fit the table: {what}"));
    let (want, got) = (input.schema(), output.schema());
    if want.fields().len() != got.fields().len() {
        return Err(bad(format!("{} columns, expected {}", got.fields().len(), want.fields().len())));
    }
    for (w, g) in want.fields().iter().zip(got.fields()) {
        if w.name() != g.name() || w.data_type() != g.data_type() {
            return Err(bad(format!(
                "column {:?} of type {}, expected {:?} of type {}",
                g.name(),
                g.data_type(),
                w.name(),
                w.data_type()
            )));
        }
    }
    if output.num_rows() != input.num_rows() {
        return Err(bad(format!(
            "{} rows for {} input rows (drop rows by clearing their keep flags)",
            output.num_rows(),
            input.num_rows()
        )));
    }
    RecordBatch::try_new(want.clone(), output.columns().to_vec()).map_err(|e| bad(e.to_string()))
}

impl Instance {
    /// Runs a processor on `rows` (shared with the plugin, not copied).
    pub fn process(&mut self, rows: &RecordBatch) -> Result<Processed, CallError> {
        let process = self.component.table.process.ok_or_else(|| CallError::Permanent("not a processor".into()))?;
        let (mut array, mut schema) = export_rows(rows.clone()).map_err(CallError::Permanent)?;
        let (mut out, mut out_schema) = (FFI_ArrowArray::empty(), FFI_ArrowSchema::empty());
        let mut keep = vec![1u8; rows.num_rows()];
        let mut error = std::ptr::null_mut();
        // SAFETY: the ABI's contract: the input is handed over, the output and `keep` are ours.
        let status = unsafe {
            process(self.ptr, &mut array, &mut schema, &mut out, &mut out_schema, keep.as_mut_ptr(), &mut error)
        };
        self.component.outcome(status, error)?;
        let output = if out.is_released() {
            rows.clone()
        } else {
            // SAFETY: a released-or-valid structure the plugin wrote; validated before use.
            let data = unsafe { from_ffi(out, &out_schema) }
                .map_err(|e| CallError::Permanent(format!("cannot import the plugin's rows: {e}")))?;
            validate_against(&data, rows)?;
            let s = StructArray::from(data);
            if s.null_count() > 0 {
                return Err(CallError::Permanent("the plugin returned null rows".into()));
            }
            RecordBatch::from(s)
        };
        Ok(Processed { rows: output, keep: keep.into_iter().map(|k| k != 0).collect() })
    }

    /// Runs an exporter on `rows` (shared with the plugin, not copied).
    pub fn export(&mut self, rows: &RecordBatch) -> Result<(), CallError> {
        let export = self.component.table.export_rows.ok_or_else(|| CallError::Permanent("not an exporter".into()))?;
        let (mut array, mut schema) = export_rows(rows.clone()).map_err(CallError::Permanent)?;
        let mut error = std::ptr::null_mut();
        // SAFETY: the ABI's contract: the input is handed over.
        let status = unsafe { export(self.ptr, &mut array, &mut schema, &mut error) };
        self.component.outcome(status, error)
    }

    /// An exporter's flush at shutdown (nothing when it has none).
    pub fn flush(&mut self) -> Result<(), CallError> {
        let Some(flush) = self.component.table.flush else { return Ok(()) };
        let mut error = std::ptr::null_mut();
        // SAFETY: the ABI's contract.
        let status = unsafe { flush(self.ptr, &mut error) };
        self.component.outcome(status, error)
    }
}

/// What runs a processor's logic on rows: a plugin instance across the ABI, or the same Rust type
/// linked into the binary (`Native`), which is how the overhead of the boundary is measured.
pub trait RowProcessor: Send {
    fn process(&mut self, rows: &RecordBatch) -> Result<Processed, CallError>;
}

impl RowProcessor for Instance {
    fn process(&mut self, rows: &RecordBatch) -> Result<Processed, CallError> {
        Instance::process(self, rows)
    }
}

/// A Rust plugin's processor called directly, without the ABI.
pub struct Native<P: guest::Processor>(pub P);

impl<P: guest::Processor> Native<P> {
    pub fn new(config_json: &str, signal: Signal) -> Result<Self, String> {
        let cfg = guest::parse_config::<P::Config>(config_json)?;
        P::validate(&cfg)?;
        P::new(cfg, signal).map(Native)
    }
}

impl<P: guest::Processor> RowProcessor for Native<P> {
    fn process(&mut self, rows: &RecordBatch) -> Result<Processed, CallError> {
        let mut keep = vec![true; rows.num_rows()];
        let out = catch_unwind(AssertUnwindSafe(|| self.0.process(rows.clone(), &mut keep)))
            .map_err(|_| CallError::Panicked("panicked".into()))??;
        Ok(Processed { rows: out, keep })
    }
}
