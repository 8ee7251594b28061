//! The local AWS emulator: moto in server mode on a free port of 127.0.0.1, stopped on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

pub struct Emulator {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

/// The workspace root (where template.yaml and events/ live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.exists() { venv } else { PathBuf::from("moto_server") }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Emulator {
    /// Starts moto and waits until it answers. Panics with a clear message when it cannot.
    pub fn start() -> Self {
        let server = moto_server();
        for _ in 0..5 {
            let port = free_port().expect("a free port on 127.0.0.1");
            let log = std::env::temp_dir().join(format!("spotkeeper-moto-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("a log file for moto");
            let err_file = log_file.try_clone().expect("a log file for moto");
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(err_file)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {} ({e}): run `make test`, which installs it into .venv", server.display())
                });
            let mut emulator = Self { child, endpoint: format!("http://127.0.0.1:{port}"), log };
            if emulator.wait_ready() {
                return emulator;
            }
            // Another process took the port between our probe and moto's bind: try another.
            let _ = emulator.child.kill();
        }
        panic!("moto_server did not start; see the spotkeeper-moto-*.log files in {}", std::env::temp_dir().display());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SDK configuration pointing every client at the emulator, with the SDK's standard retry as
    /// in AWS (3 attempts, backoff with jitter): moto's threaded server now and then answers a
    /// request that races another with a 500, which the SDK rightly retries.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_at(&self.endpoint)
    }
}

/// SDK configuration for an emulator (or a proxy in front of it) at `endpoint`.
pub fn sdk_config_at(endpoint: &str) -> SdkConfig {
    {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "spotkeeper-tests",
            )))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test keeps the emulator's log: an operation it lacks shows there as a 500.
        if std::thread::panicking() {
            eprintln!("the emulator's log is kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
