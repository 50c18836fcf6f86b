//! What the kernel says about a server: CPU-seconds and resident memory of
//! its whole process tree (`/proc/<pid>/stat`, `/proc/<pid>/status`) and the
//! machine's socket memory (`/proc/net/sockstat`).
//!
//! The tree matters because nginx runs a master and a worker: the cost of
//! a server is the sum over every process it started.

use std::fs;

/// Clock ticks per second, for the utime/stime fields of `/proc/<pid>/stat`.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which may contain
/// spaces, so we split after its closing parenthesis).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `root` and every descendant, found through the parent pid of each
/// process in `/proc`.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            // field 4 of stat is ppid; after the name it is index 1
            if let Some(f) = stat_fields(pid) {
                if let Some(ppid) = f.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    parents.push((pid, ppid));
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for &(pid, ppid) in &parents {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
            }
        }
        i += 1;
    }
    out
}

/// User + system CPU-seconds consumed so far by the tree under `root`.
pub fn cpu_seconds(root: u32) -> f64 {
    let tps = ticks_per_sec();
    tree(root)
        .iter()
        .filter_map(|&pid| stat_fields(pid))
        .map(|f| {
            // utime and stime are fields 14 and 15 of stat: indexes 11, 12 here
            let u: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            (u + s) / tps
        })
        .sum()
}

/// CPU-seconds of one process alone (the load generator measuring itself).
pub fn own_cpu_seconds(pid: u32) -> f64 {
    let tps = ticks_per_sec();
    stat_fields(pid)
        .map(|f| {
            let u: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            (u + s) / tps
        })
        .unwrap_or(0.0)
}

/// Resident set size in bytes of the tree under `root` (VmRSS summed).
pub fn rss_bytes(root: u32) -> u64 {
    tree(root).iter().map(|&pid| status_kib(pid, "VmRSS:").unwrap_or(0) * 1024).sum()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The TCP line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sockstat {
    /// Sockets in use (both ends of a loopback connection count).
    pub inuse: u64,
    /// Sockets in TIME_WAIT.
    pub tw: u64,
    /// Kernel memory of TCP socket buffers, bytes (the `mem` pages × 4 KiB).
    pub mem_bytes: u64,
}

/// Reads `/proc/net/sockstat` (zeros if unreadable).
pub fn sockstat() -> Sockstat {
    let text = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let mut s = Sockstat::default();
    let page = {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    };
    if let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words[1..].chunks(2) {
            if let [k, v] = pair {
                let v: u64 = v.parse().unwrap_or(0);
                match *k {
                    "inuse" => s.inuse = v,
                    "tw" => s.tw = v,
                    "mem" => s.mem_bytes = v * page,
                    _ => {}
                }
            }
        }
    }
    s
}

/// Pins the calling process (all its future threads) to one CPU.
pub fn pin_self(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one; returns the new limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_and_memory() {
        let me = std::process::id();
        let before = cpu_seconds(me);
        // Burn CPU on this thread until 0.2 s of wall time passed; the
        // process's CPU time (all threads) must have grown by most of it.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(x != 1);
        let burnt = cpu_seconds(me) - before;
        // Ticks are 10 ms; a loaded machine may take some of the 0.2 s.
        assert!(burnt >= 0.05, "0.2 s of busy loop counted {burnt} CPU-seconds");
        assert!(rss_bytes(me) > 1024 * 1024, "a Rust test process holds more than 1 MiB");
        assert!(tree(me).contains(&me));
    }

    #[test]
    fn sockstat_sees_open_tcp_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let s = sockstat();
        assert!(s.inuse >= 3, "listener + two ends are in use: {s:?}");
        drop((c, a));
    }
}
