//! Real object-store servers for the tests: `moto_server` (S3, from PyPI's `moto[server]`) and Azurite
//! (Azure Blob, from npm). `tests/run` installs both under `$OPENWIT_TEST_TOOLS` (default
//! `~/.cache/openwit/tools`); a test that needs one and cannot find it fails and says so.

use crate::harness::{client, free_port, tool};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Waits until something answers HTTP on `port`.
async fn wait_http(port: u16, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client().get(format!("http://127.0.0.1:{port}/")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not start; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// A server process that is killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// Stops the server: SIGTERM (Azurite writes its metadata on the way out), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto's S3, in memory, with `bucket` created.
pub async fn moto(bucket: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("moto.log");
    let child = Command::new(tool("moto-venv/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let s = Server { child: Some(child), port, _dir: dir, log };
    wait_http(port, "moto_server", &s.log).await;
    // moto takes unsigned requests: a plain PUT creates the bucket.
    let r = client().put(format!("http://127.0.0.1:{port}/{bucket}")).send().await.unwrap();
    assert!(r.status().is_success(), "cannot create bucket {bucket}: {}", r.status());
    s
}

/// The settings that reach moto, as `storage_options` keys.
pub fn moto_options(s: &Server) -> std::collections::BTreeMap<String, String> {
    [
        ("aws_access_key_id", "testing".to_string()),
        ("aws_secret_access_key", "testing".to_string()),
        ("aws_region", "us-east-1".to_string()),
        ("aws_endpoint_url", format!("http://127.0.0.1:{}", s.port)),
        ("aws_allow_http", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The same settings the way S3 users configure them: the standard variables (`AWS_ENDPOINT_URL`, …).
pub fn moto_env(s: &Server) -> Vec<(String, String)> {
    moto_options(s).into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v)).collect()
}

/// An object_store client on moto's bucket, for reading what the daemon wrote.
pub fn moto_store(s: &Server, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_region("us-east-1")
            .with_endpoint(format!("http://127.0.0.1:{}", s.port))
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// Azurite's blob service keeping its data in `data` (so that it can be stopped and started again).
pub async fn azurite_in(data: &std::path::Path, port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("azurite.log");
    let child = Command::new(tool("azurite/node_modules/.bin/azurite-blob"))
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
        .arg(data)
        .args(["--skipApiVersionCheck", "--loose", "--silent"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let s = Server { child: Some(child), port, _dir: dir, log };
    wait_http(port, "azurite", &s.log).await;
    s
}

/// Creates a container (Azurite wants signed requests; the Azure SDK for Python signs them).
pub fn azurite_container(s: &Server, container: &str) {
    let script = format!(
        "from azure.storage.blob import BlobServiceClient\n\
         cs='DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{}/{AZURITE_ACCOUNT};'\n\
         BlobServiceClient.from_connection_string(cs).create_container('{container}')\n",
        s.port
    );
    let out = Command::new(tool("moto-venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "cannot create container: {}", String::from_utf8_lossy(&out.stderr));
}

/// The daemon's `storage_options` for Azurite: credentials and endpoint in the config.
pub fn azurite_options(s: &Server) -> String {
    format!(
        "    storage_options:
      azure_storage_account_name: {AZURITE_ACCOUNT}
      azure_storage_account_key: \"{AZURITE_KEY}\"
      azure_storage_endpoint: http://127.0.0.1:{}/{AZURITE_ACCOUNT}
      azure_allow_http: \"true\"
",
        s.port
    )
}

pub fn azurite_store(s: &Server, container: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    std::sync::Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name(container)
            .with_endpoint(format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", s.port))
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}
