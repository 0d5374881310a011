//! A throwaway PostgreSQL cluster for tests: `initdb` and `postgres` from Debian's `postgresql`
//! package, on a free port, in a temporary directory, stopped with the test process.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The PostgreSQL binaries: on PATH, or where Debian installs them.
fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("sh").args(["-c", "command -v initdb"]).output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = std::fs::canonicalize(&p).ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("PostgreSQL server binaries not found: install Debian's `postgresql` package (tests/run does)")
}

/// uid/gid to run the server as: `postgres` when we are root (initdb refuses root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls with a valid NUL-terminated name.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(!pw.is_null(), "running as root but there is no `postgres` user to run PostgreSQL as");
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn command(bin: PathBuf, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // Set after the uid change, which would clear it: the server dies with the tests.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

impl PgServer {
    fn start() -> PgServer {
        let bin = bindir();
        let user = run_as();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pgdata");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = user {
            for p in [dir.path(), data.as_path()] {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: valid path string.
                assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, gid) }, 0, "chown {}", p.display());
            }
        }
        let out = command(bin.join("initdb"), user)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "openwit", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = openwit_core::net::free_loopback_port();
        let child = PgServer::launch(dir.path(), port);
        PgServer { port, child, dir }
    }

    /// Runs the server of the cluster in `dir` on `port`, once it accepts connections.
    fn launch(dir: &Path, port: u16) -> Child {
        let child = command(bindir().join("postgres"), run_as())
            .arg("-D")
            .arg(dir.join("pgdata"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// A server of the test's own (not the shared one), which it may stop and start again: an outage.
    #[allow(dead_code)]
    pub fn own() -> PgServer {
        PgServer::start()
    }

    /// Stops the server at once (as a crash or a network cut would look to clients).
    #[allow(dead_code)]
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same port and data.
    #[allow(dead_code)]
    pub fn start_again(&mut self) {
        self.child = PgServer::launch(self.dir.path(), self.port);
    }

    /// The URL of database `db` on this server.
    #[allow(dead_code)]
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://openwit@127.0.0.1:{}/{db}", self.port)
    }

    /// The port of the one server of this test process. The server is started from a thread that
    /// lives as long as the process: the parent-death signal follows the spawning thread, not the
    /// process, so a test thread would take the server down with it when it ends.
    pub fn shared() -> u16 {
        static PORT: OnceLock<u16> = OnceLock::new();
        *PORT.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let server = PgServer::start();
                let _ = tx.send(server.port);
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("PostgreSQL test server failed to start")
        })
    }

    pub fn url(db: &str) -> String {
        format!("postgres://openwit@127.0.0.1:{}/{db}", PgServer::shared())
    }

    /// A new, empty database on the shared server (for tests that need a catalog of their own without a
    /// SQL client at hand); returns its URL.
    #[allow(dead_code)]
    pub fn new_database(db: &str) -> String {
        let port = PgServer::shared().to_string();
        let out = Command::new(bindir().join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "openwit", db])
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb {db}: {}", String::from_utf8_lossy(&out.stderr));
        PgServer::url(db)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
