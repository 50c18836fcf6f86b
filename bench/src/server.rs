//! Starting and stopping the servers under test.
//!
//! Each server is started by its script in `bench/peers/<name>.sh start`,
//! under `taskset -c <core>`, in its own process group; the script `exec`s
//! the server, so the child's pid is the server's (nginx's master, whose
//! worker is found through `/proc`). Stopping sends SIGTERM to the whole
//! group, SIGKILL after a grace period, and always `wait()`s, so no run
//! leaves a server or a zombie behind, even when a scenario fails.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::adapters::Kind;

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// Its pid (the root of the process tree that is measured).
    pub pid: u32,
}

/// Where the peers' scripts and the run directory are, and what to pass them.
#[derive(Clone)]
pub struct Env {
    /// `bench/peers`.
    pub peers: PathBuf,
    /// Scratch directory for configs, pid files, logs.
    pub run_dir: PathBuf,
    /// The core the server is pinned to.
    pub server_cpu: usize,
    /// The relay key (b64u) every server that checks tokens is given.
    pub relay_key: String,
    /// The bm-relay binary.
    pub relay_bin: PathBuf,
}

impl Env {
    fn script(&self, kind: Kind) -> PathBuf {
        self.peers.join(format!("{}.sh", kind.name()))
    }

    fn command(&self, kind: Kind, verb: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.script(kind))
            .arg(verb)
            .env("BENCH_PORT", kind.port().to_string())
            .env("BENCH_RUN", self.run_dir.join(kind.name()))
            .env("BENCH_RELAY_KEY", &self.relay_key)
            .env("BM_RELAY", &self.relay_bin)
            .env("BENCH_CENTRIFUGO_API_KEY", crate::adapters::CENTRIFUGO_API_KEY)
            .env("BENCH_SITE", crate::adapters::SITE);
        c
    }

    /// The version line the peer's script reports (`<script> version`).
    pub fn version(&self, kind: Kind) -> String {
        match self.command(kind, "version").stderr(Stdio::null()).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => "unknown".into(),
        }
    }

    /// Starts `kind` pinned to the server core and waits until it accepts.
    pub fn start(&self, kind: Kind, log: &Path) -> Result<Server, String> {
        let inner = self.command(kind, "start");
        self.start_command(inner, &self.run_dir.join(kind.name()), kind.label(), kind.port(), log)
    }

    /// Starts peer script `script` (`bench/peers/<script>.sh start`) with the
    /// common environment, `BENCH_PORT=port`, `BENCH_RUN=run` and `extra`,
    /// pinned to the server core, and waits until `port` accepts (one
    /// process of the cluster scenario: a node or its broker).
    pub fn start_script(
        &self,
        script: &str,
        label: &str,
        port: u16,
        run: &Path,
        extra: &[(&str, String)],
        log: &Path,
    ) -> Result<Server, String> {
        let mut inner = Command::new("bash");
        inner
            .arg(self.peers.join(format!("{script}.sh")))
            .arg("start")
            .env("BENCH_PORT", port.to_string())
            .env("BENCH_RUN", run)
            .env("BENCH_RELAY_KEY", &self.relay_key)
            .env("BM_RELAY", &self.relay_bin)
            .env("BENCH_CENTRIFUGO_API_KEY", crate::adapters::CENTRIFUGO_API_KEY)
            .env("BENCH_SITE", crate::adapters::SITE);
        for (k, v) in extra {
            inner.env(k, v);
        }
        self.start_command(inner, run, label, port, log)
    }

    /// The version line of peer script `script`.
    pub fn script_version(&self, script: &str) -> String {
        let mut c = Command::new("bash");
        c.arg(self.peers.join(format!("{script}.sh"))).arg("version").env("BM_RELAY", &self.relay_bin);
        match c.stderr(Stdio::null()).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => "unknown".into(),
        }
    }

    fn start_command(&self, inner: Command, run: &Path, label: &str, port: u16, log: &Path) -> Result<Server, String> {
        std::fs::create_dir_all(run).map_err(|e| format!("run dir: {e}"))?;
        let mut c = Command::new("taskset");
        c.arg("-c").arg(self.server_cpu.to_string()).arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = launch(c, label, addr, log)?;
        // let it finish starting (nginx forks its worker after listening)
        std::thread::sleep(Duration::from_millis(500));
        Ok(server)
    }
}

/// Spawns `c` in its own process group with stdout and stderr to `log`,
/// and waits (up to 30 s) until `addr` accepts TCP connections. The child
/// gets SIGKILL if the load generator dies without stopping it (killed,
/// say), so no run leaves a server behind; a normal exit stops it through
/// [`Server::stop`] / `Drop`.
pub fn launch(mut c: Command, label: &str, addr: SocketAddr, log: &Path) -> Result<Server, String> {
    let logf = std::fs::File::create(log).map_err(|e| format!("log {}: {e}", log.display()))?;
    let logf2 = logf.try_clone().map_err(|e| format!("log: {e}"))?;
    c.stdin(Stdio::null()).stdout(logf).stderr(logf2).process_group(0);
    // SAFETY: prctl is async-signal-safe and is all that runs in the child
    // between fork and exec. The death signal survives exec (and taskset's
    // and the peer script's own execs), so it reaches the server itself.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = c.spawn().map_err(|e| format!("cannot start {label}: {e}"))?;
    let pid = child.id();
    let mut server = Server { child: Some(child), pid };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(child) = server.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                server.child = None;
                return Err(format!("{label} exited at start ({status}); see {}", log.display()));
            }
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            server.stop();
            return Err(format!("{label} did not listen on {addr} within 30 s; see {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

impl Server {
    /// Whether the server process is still running (it has not exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM to the group, SIGKILL after 5 s, then reap.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pgid = self.pid as i32;
        // SAFETY: kill(2) on a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(-pgid, libc::SIGKILL);
                    }
                    let _ = child.wait();
                    break;
                }
            }
        }
        // the group may still hold stragglers (nginx workers); make sure
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
