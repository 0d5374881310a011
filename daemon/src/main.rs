//! `openwit`: the daemon and its command line.

mod allocator;
mod code_pages;
mod durable;
mod graph;
mod plugins;
mod query_cli;
mod registry;
mod retention_cli;
mod service;
mod supervise;
mod wal_inspect;

use clap::{Parser, Subcommand};
use openwit_config::{ConfigSource, redact};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// OpenWit: a telemetry storage daemon that runs OpenTelemetry Collector configs.
#[derive(Parser, Debug)]
#[command(name = "openwit", version, about)]
struct Cli {
    /// Config source, repeatable, merged in order: a path, file:PATH, env:VAR or yaml:INLINE.
    /// With none, the embedded default runs (OTLP on 4317/4318, health check on 13133).
    #[arg(long = "config", global = true, value_name = "SOURCE")]
    configs: Vec<String>,

    /// Override one key after merging, e.g. --set processors.batch.timeout=2s. Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,

    /// Where OpenWit keeps its data.
    #[arg(long, global = true, env = "OPENWIT_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// How long a graceful shutdown may take to drain the pipelines before the daemon gives up.
    #[arg(long, global = true, env = "OPENWIT_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Check the config and exit: 0 when valid, 1 with every problem listed otherwise.
    Validate,
    /// List the component types: the built-ins, and those of the plugins the config (if given) loads.
    Components,
    /// Print the merged, expanded config with secrets redacted.
    PrintConfig,
    /// Look into a write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Run SQL over stored telemetry: against a running daemon (--endpoint) or offline (DATA_DIR's catalog).
    Query(query_cli::QueryArgs),
    /// Retention of stored files.
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Subcommand, Debug)]
enum RetentionCommand {
    /// List the files the config's retention would retire now (a dry run: nothing is changed).
    Plan,
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// Print the segments and records of a WAL directory (ids, tenants, counts, CRC status), read-only.
    Inspect {
        /// The WAL directory (by default DATA_DIR/wal).
        dir: Option<PathBuf>,
    },
}

const DEFAULT_CONFIG: &str = include_str!("default_config.yaml");

impl Cli {
    fn sources(&self) -> Vec<ConfigSource> {
        if self.configs.is_empty() {
            vec![ConfigSource::Embedded("embedded default config", DEFAULT_CONFIG)]
        } else {
            self.configs.iter().map(|c| ConfigSource::parse(c)).collect()
        }
    }

    /// The merged config, and the registry for it: the built-ins and the components of the plugins it
    /// loads.
    fn load(&self) -> Result<Loaded, openwit_config::ConfigErrors> {
        let mut registry = registry::builtin();
        let (tree, origins) = openwit_config::load(&self.sources(), &self.sets)?;
        let plugins = plugins::load(&mut registry, &openwit_config::plugin_paths(&tree, &origins)?)?;
        Ok(Loaded { registry, plugins, tree, origins })
    }

    /// Loads the config and its plugins, and validates it.
    fn resolve(&self) -> Result<openwit_config::ResolvedConfig, openwit_config::ConfigErrors> {
        let l = self.load()?;
        openwit_config::resolve_tree(l.tree, &l.origins, &l.registry)
    }
}

struct Loaded {
    registry: openwit_core::Registry,
    plugins: Vec<plugins::Loaded>,
    tree: serde_yaml_ng::Value,
    origins: openwit_config::Origins,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Components => {
            // Without --config only the built-ins are listed (the embedded default loads no plugin).
            match cli.load() {
                Ok(l) => {
                    print!("{}", components(&l.registry, &l.plugins));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate => match cli.resolve() {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::PrintConfig => match openwit_config::load(&cli.sources(), &cli.sets) {
            Ok((mut tree, _)) => {
                redact(&mut tree);
                print!("{}", serde_yaml_ng::to_string(&tree).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Wal(WalCommand::Inspect { dir }) => {
            let dir = dir.clone().unwrap_or_else(|| cli.data_dir.join("wal"));
            match wal_inspect::inspect(&dir) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("openwit wal inspect: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Retention(RetentionCommand::Plan) => {
            let planned = cli
                .resolve()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .and_then(|cfg| retention_cli::plan(&cfg, &cli.data_dir));
            match planned {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("openwit retention plan: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Query(args) => match query_cli::run(args, &cli.data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("openwit query: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            let cfg = match cli.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            service::init_logging(&cfg.telemetry);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(service::run(cfg, cli.data_dir, cli.shutdown_timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("openwit: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn components(registry: &openwit_core::Registry, loaded: &[plugins::Loaded]) -> String {
    fn section<C: ?Sized>(
        out: &mut String,
        title: &str,
        set: &openwit_core::FactorySet<C>,
        stability: &dyn Fn(&str) -> String,
    ) {
        out.push_str(title);
        out.push_str(":\n");
        for f in set.iter() {
            let aliases =
                if f.aliases().is_empty() { String::new() } else { format!(" (also: {})", f.aliases().join(", ")) };
            let signals: Vec<_> = f.signals().iter().map(|s| s.as_str()).collect();
            out.push_str(&format!(
                "  {}{aliases}\n    signals: {}\n    stability: {}\n    {}\n",
                f.type_name(),
                signals.join(", "),
                stability(f.type_name()),
                f.description()
            ));
        }
    }
    // A plugin's types say which library they come from instead of a stability level.
    let stability = |noun: &'static str| {
        move |type_name: &str| -> String {
            let want = format!("{noun} {type_name}");
            match loaded.iter().find(|l| l.types.contains(&want)) {
                Some(l) => format!("plugin {} {} ({})", l.name, l.version, l.path.display()),
                None => registry::stability(type_name).to_string(),
            }
        }
    };
    let mut out = String::new();
    section(&mut out, "receivers", &registry.receivers, &stability("receiver"));
    section(&mut out, "processors", &registry.processors, &stability("processor"));
    section(&mut out, "exporters", &registry.exporters, &stability("exporter"));
    section(&mut out, "connectors", &registry.connectors, &stability("connector"));
    section(&mut out, "extensions", &registry.extensions, &stability("extension"));
    for (name, what) in openwit_config::SETTINGS {
        out.push_str(&format!("  {name}\n    settings, not a running extension\n    {what}\n"));
    }
    out
}
