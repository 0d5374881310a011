//! What a Rust plugin author writes: a `Processor` or `Exporter` implementation and one
//! `export_plugin!` line. The shims here turn the C ABI's calls into trait calls, move Arrow data
//! across it without a copy, and catch panics at the boundary (a panic unwinding into C code would
//! abort the daemon).

use crate::abi::{self, OpenwitComponent, OpenwitPlugin};
use crate::{Error, Signal};
use arrow::array::{Array, RecordBatch, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use serde::de::DeserializeOwned;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A processor: a batch of one signal's rows in, the same rows (changed as it likes) out.
pub trait Processor: Sized + Send + 'static {
    /// The type name used in the config.
    const TYPE_NAME: &'static str;
    /// One line for `openwit components`.
    const DESCRIPTION: &'static str;
    const SIGNALS: &'static [Signal];
    /// The component's config section, deserialized from JSON (`{}` when the section is empty).
    type Config: DeserializeOwned;

    /// Checks what serde cannot (patterns that must compile, …). Called by `openwit validate` and
    /// before `new`.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// One instance per pipeline (and a fresh one after a panic).
    fn new(config: Self::Config, signal: Signal) -> Result<Self, String>;

    /// Takes the rows (columns as in `docs/schema.md`) and returns one row per input row, in order,
    /// with the same schema; sets `keep[i] = false` for each row to drop (settled as dropped on
    /// purpose). Returning `rows` itself is free.
    fn process(&mut self, rows: RecordBatch, keep: &mut [bool]) -> Result<RecordBatch, Error>;
}

/// An exporter: rows in, a verdict out. `Ok` only once the rows are durable where it sends them.
pub trait Exporter: Sized + Send + 'static {
    const TYPE_NAME: &'static str;
    const DESCRIPTION: &'static str;
    const SIGNALS: &'static [Signal];
    type Config: DeserializeOwned;

    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    fn new(config: Self::Config, signal: Signal) -> Result<Self, String>;

    fn export(&mut self, rows: RecordBatch) -> Result<(), Error>;

    /// Called once at shutdown, after the last `export`.
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Parses a config handed over as JSON, naming the path of the first problem.
pub fn parse_config<C: DeserializeOwned>(json: &str) -> Result<C, String> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.into_inner().to_string() } else { format!("{path}: {}", e.into_inner()) }
    })
}

/// Imports a struct array handed over through the C Data Interface as a record batch.
///
/// # Safety
/// `array` and `schema` must point to valid, unreleased C Data Interface structures; both are taken.
pub unsafe fn import_rows(array: *mut FFI_ArrowArray, schema: *mut FFI_ArrowSchema) -> Result<RecordBatch, String> {
    // SAFETY: the caller's contract; `from_raw` moves the structures out, leaving them released.
    let (array, schema) = unsafe { (FFI_ArrowArray::from_raw(array), FFI_ArrowSchema::from_raw(schema)) };
    // SAFETY: the array was produced for this schema by the other side of the boundary.
    let data = unsafe { from_ffi(array, &schema) }.map_err(|e| format!("cannot import the Arrow data: {e}"))?;
    let rows = StructArray::from(data);
    if rows.null_count() > 0 {
        return Err("the struct array of rows has null rows".into());
    }
    Ok(RecordBatch::from(rows))
}

/// Exports a record batch as a struct array through the C Data Interface.
pub fn export_rows(rows: RecordBatch) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), String> {
    let data = StructArray::from(rows).into_data();
    to_ffi(&data).map_err(|e| format!("cannot export the Arrow data: {e}"))
}

/// Runs `f`, turning an error or a panic into a status and an error text for the host.
fn guarded(error: *mut *mut c_char, f: impl FnOnce() -> Result<(), Error>) -> i32 {
    let (status, text) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return abi::STATUS_OK,
        Ok(Err(Error::Retryable(t))) => (abi::STATUS_RETRYABLE, t),
        Ok(Err(Error::Permanent(t))) => (abi::STATUS_PERMANENT, t),
        Err(panic) => (abi::STATUS_PANICKED, panic_text(panic.as_ref())),
    };
    if !error.is_null() {
        let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host passes a valid out-parameter; it frees the text with `free_error`.
        unsafe { *error = c.into_raw() };
    }
    status
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))
}

/// # Safety
/// `config` is a NUL-terminated string.
unsafe fn config_text<'a>(config: *const c_char) -> Result<&'a str, Error> {
    if config.is_null() {
        return Ok("{}");
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(config) }.to_str().map_err(|_| Error::Permanent("the config is not UTF-8".into()))
}

fn signal_of(bits: u32) -> Result<Signal, Error> {
    Signal::from_bits(bits).ok_or_else(|| Error::Permanent(format!("unknown signal {bits}")))
}

/// A parsed and validated config, or a permanent error naming what is wrong.
fn checked<C: DeserializeOwned>(json: &str, validate: fn(&C) -> Result<(), String>) -> Result<C, Error> {
    let c = parse_config::<C>(json).map_err(Error::Permanent)?;
    validate(&c).map_err(Error::Permanent)?;
    Ok(c)
}

/// What `validate` and `create` need of a component type, whichever its kind: one pair of shims
/// serves processors and exporters.
trait Build {
    type Instance: Send + 'static;
    type Config: DeserializeOwned;
    fn validate(config: &Self::Config) -> Result<(), String>;
    fn new(config: Self::Config, signal: Signal) -> Result<Self::Instance, String>;
}

struct AsProcessor<P>(std::marker::PhantomData<P>);
struct AsExporter<E>(std::marker::PhantomData<E>);

impl<P: Processor> Build for AsProcessor<P> {
    type Instance = P;
    type Config = P::Config;
    fn validate(config: &P::Config) -> Result<(), String> {
        P::validate(config)
    }
    fn new(config: P::Config, signal: Signal) -> Result<P, String> {
        P::new(config, signal)
    }
}

impl<E: Exporter> Build for AsExporter<E> {
    type Instance = E;
    type Config = E::Config;
    fn validate(config: &E::Config) -> Result<(), String> {
        E::validate(config)
    }
    fn new(config: E::Config, signal: Signal) -> Result<E, String> {
        E::new(config, signal)
    }
}

unsafe extern "C" fn validate<B: Build>(config: *const c_char, error: *mut *mut c_char) -> i32 {
    // SAFETY: the host passes a NUL-terminated config.
    guarded(error, || checked::<B::Config>(unsafe { config_text(config) }?, B::validate).map(|_| ()))
}

unsafe extern "C" fn create<B: Build>(
    config: *const c_char,
    signal: u32,
    instance: *mut *mut c_void,
    error: *mut *mut c_char,
) -> i32 {
    guarded(error, || {
        // SAFETY: the host passes a NUL-terminated config.
        let cfg = checked::<B::Config>(unsafe { config_text(config) }?, B::validate)?;
        let made = B::new(cfg, signal_of(signal)?).map_err(Error::Permanent)?;
        // SAFETY: a valid out-parameter; the host gives the pointer back to `destroy`.
        unsafe { *instance = Box::into_raw(Box::new(made)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn destroy<T>(instance: *mut c_void) {
    if !instance.is_null() {
        // A panic in a destructor must not unwind into the host either.
        // SAFETY: made by `create` as a `Box<T>`, given back once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(instance.cast::<T>()) })));
    }
}

unsafe extern "C" fn processor_process<P: Processor>(
    instance: *mut c_void,
    input: *mut FFI_ArrowArray,
    input_schema: *mut FFI_ArrowSchema,
    output: *mut FFI_ArrowArray,
    output_schema: *mut FFI_ArrowSchema,
    keep: *mut u8,
    error: *mut *mut c_char,
) -> i32 {
    guarded(error, || {
        // SAFETY: the host hands over valid structures and an instance made by `create`.
        let rows = unsafe { import_rows(input, input_schema) }.map_err(Error::Permanent)?;
        let p = unsafe { &mut *instance.cast::<P>() };
        let n = rows.num_rows();
        let mut flags = vec![true; n];
        let out = p.process(rows, &mut flags)?;
        let (a, s) = export_rows(out).map_err(Error::Permanent)?;
        // SAFETY: the host passes `n` flags and released output structures to write into.
        unsafe {
            let keep = std::slice::from_raw_parts_mut(keep, n);
            for (k, f) in keep.iter_mut().zip(&flags) {
                *k = u8::from(*f);
            }
            std::ptr::write(output, a);
            std::ptr::write(output_schema, s);
        }
        Ok(())
    })
}

unsafe extern "C" fn exporter_export<E: Exporter>(
    instance: *mut c_void,
    input: *mut FFI_ArrowArray,
    input_schema: *mut FFI_ArrowSchema,
    error: *mut *mut c_char,
) -> i32 {
    guarded(error, || {
        // SAFETY: the host hands over valid structures and an instance made by `create`.
        let rows = unsafe { import_rows(input, input_schema) }.map_err(Error::Permanent)?;
        unsafe { &mut *instance.cast::<E>() }.export(rows)
    })
}

unsafe extern "C" fn exporter_flush<E: Exporter>(instance: *mut c_void, error: *mut *mut c_char) -> i32 {
    // SAFETY: an instance made by `create`.
    guarded(error, || unsafe { &mut *instance.cast::<E>() }.flush())
}

unsafe extern "C" fn free_error(error: *mut c_char) {
    if !error.is_null() {
        // SAFETY: made by `CString::into_raw` in `guarded`.
        drop(unsafe { CString::from_raw(error) });
    }
}

/// One component of a library, with the strings its table points into (kept alive, never read).
pub struct ComponentSpec {
    _type_name: CString,
    _description: CString,
    table: OpenwitComponent,
}

fn cstring(s: &str) -> CString {
    CString::new(s).expect("plugin names and descriptions have no NUL byte")
}

fn signal_bits(signals: &[Signal]) -> u32 {
    signals.iter().fold(0, |b, s| b | s.bit())
}

/// The table entry for a processor type.
pub fn processor<P: Processor>() -> ComponentSpec {
    let (type_name, description) = (cstring(P::TYPE_NAME), cstring(P::DESCRIPTION));
    let table = OpenwitComponent {
        type_name: type_name.as_ptr(),
        description: description.as_ptr(),
        kind: abi::KIND_PROCESSOR,
        signals: signal_bits(P::SIGNALS),
        validate: Some(validate::<AsProcessor<P>>),
        create: Some(create::<AsProcessor<P>>),
        destroy: Some(destroy::<P>),
        process: Some(processor_process::<P>),
        export_rows: None,
        flush: None,
    };
    ComponentSpec { _type_name: type_name, _description: description, table }
}

/// The table entry for an exporter type.
pub fn exporter<E: Exporter>() -> ComponentSpec {
    let (type_name, description) = (cstring(E::TYPE_NAME), cstring(E::DESCRIPTION));
    let table = OpenwitComponent {
        type_name: type_name.as_ptr(),
        description: description.as_ptr(),
        kind: abi::KIND_EXPORTER,
        signals: signal_bits(E::SIGNALS),
        validate: Some(validate::<AsExporter<E>>),
        create: Some(create::<AsExporter<E>>),
        destroy: Some(destroy::<E>),
        process: None,
        export_rows: Some(exporter_export::<E>),
        flush: Some(exporter_flush::<E>),
    };
    ComponentSpec { _type_name: type_name, _description: description, table }
}

/// A library's table and everything it points to; built once, kept for the life of the process.
pub struct PluginTable {
    _name: CString,
    _version: CString,
    _specs: Vec<ComponentSpec>,
    components: Vec<OpenwitComponent>,
    table: OpenwitPlugin,
}

// SAFETY: read-only after construction; the raw pointers point into the table's own strings.
unsafe impl Send for PluginTable {}
unsafe impl Sync for PluginTable {}

impl PluginTable {
    pub fn new(name: &str, version: &str, specs: Vec<ComponentSpec>) -> PluginTable {
        let (name, version) = (cstring(name), cstring(version));
        // The entries point into the specs' strings, whose heap buffers do not move with them.
        let components: Vec<OpenwitComponent> = specs.iter().map(|s| s.table).collect();
        let table = OpenwitPlugin {
            abi_version: abi::ABI_VERSION,
            plugin_size: size_of::<OpenwitPlugin>() as u32,
            component_size: size_of::<OpenwitComponent>() as u32,
            name: name.as_ptr(),
            version: version.as_ptr(),
            components: components.as_ptr(),
            component_count: components.len(),
            free_error: Some(free_error),
        };
        PluginTable { _name: name, _version: version, _specs: specs, components, table }
    }

    pub fn table(&self) -> *const OpenwitPlugin {
        debug_assert_eq!(self.table.components, self.components.as_ptr());
        &self.table
    }
}

/// Exports a library's table: its name and version, then its processor and exporter types.
///
/// ```ignore
/// openwit_plugin::export_plugin!(
///     name: "acme-redact",
///     version: env!("CARGO_PKG_VERSION"),
///     processors: [Redact],
///     exporters: [],
/// );
/// ```
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, processors: [$($p:ty),* $(,)?], exporters: [$($e:ty),* $(,)?] $(,)?) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn openwit_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn openwit_plugin_entry() -> *const $crate::abi::OpenwitPlugin {
            static TABLE: ::std::sync::OnceLock<$crate::guest::PluginTable> = ::std::sync::OnceLock::new();
            TABLE
                .get_or_init(|| {
                    $crate::guest::PluginTable::new(
                        $name,
                        $version,
                        vec![$($crate::guest::processor::<$p>(),)* $($crate::guest::exporter::<$e>(),)*],
                    )
                })
                .table()
        }
    };
}
