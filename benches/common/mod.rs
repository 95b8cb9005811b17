//! Helpers shared by the journal, scale and makespan benchmarks: the
//! `--bench` guard, resource usage from getrusage/wait4, and the formatting
//! of the one-line-per-figure report.

#![allow(dead_code)] // Each bench binary uses its own subset.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chronicle::amc::{CreateExecution, Execution, Status};
use chronicle::journal::OpenAttempt;

/// `cargo test --all-targets` runs harness=false benches without the
/// `--bench` flag `cargo bench` passes: say how to run it and stop.
pub fn skipped_outside_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|arg| arg == "--bench") {
        return false;
    }
    println!("{name} benchmark: skipped; run it with `cargo bench --bench {name}`");
    true
}

/// User + system CPU time of this process so far.
pub fn cpu_time_self() -> Duration {
    // SAFETY: getrusage writes a plain struct it is handed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Peak resident set of this process so far.
pub fn peak_rss_self_bytes() -> u64 {
    // SAFETY: as above.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    usage.ru_maxrss as u64 * 1024
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// One run of a child process: its wall time, CPU time and peak memory,
/// read from wait4's rusage, which covers that child alone.
pub struct ChildRun {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
    pub stdout: Vec<u8>,
}

/// Linux hands a child the parent's peak RSS (its `ru_maxrss` starts at the
/// high-water mark of the memory it was forked from), so a bench that built
/// a large journal would see its own peak in every child. The bench
/// therefore re-executes itself as a small launcher (`--measure-child`),
/// whose fresh memory is what the measured child is forked from, and reads
/// the launcher's report. Call this first thing in `main`.
pub fn serve_as_launcher() -> Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == "--measure-child") else {
        return Ok(false);
    };
    let run = run_child(Path::new(&args[at + 1]), &args[at + 2..])?;
    println!(
        "{} {} {} {}",
        run.wall.as_nanos(),
        run.cpu.as_nanos(),
        run.peak_rss_bytes,
        run.stdout.len()
    );
    Ok(true)
}

/// `run_child` through a fresh launcher process (see `serve_as_launcher`),
/// so the peak memory reported is the command's own. `stdout` is left empty;
/// only its length is known (`stdout_bytes`).
pub fn run_child_measured(program: &Path, args: &[String]) -> Result<(ChildRun, usize)> {
    let mut launcher_args = vec!["--bench".to_owned(), "--measure-child".to_owned()];
    launcher_args.push(program.display().to_string());
    launcher_args.extend(args.iter().cloned());
    let launcher = run_child(&std::env::current_exe()?, &launcher_args)?;
    let text = String::from_utf8(launcher.stdout)?;
    let fields: Vec<u128> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("launcher said `{text}`"))?;
    ensure!(fields.len() == 4, "launcher said `{text}`");
    Ok((
        ChildRun {
            wall: Duration::from_nanos(fields[0] as u64),
            cpu: Duration::from_nanos(fields[1] as u64),
            peak_rss_bytes: fields[2] as u64,
            stdout: Vec::new(),
        },
        fields[3] as usize,
    ))
}

/// Runs `program args` to its end and measures it. A non-zero exit fails
/// the bench: a figure only counts if the command did its job.
pub fn run_child(program: &Path, args: &[String]) -> Result<ChildRun> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    // Drain the pipes on threads so a large output cannot block the child.
    let mut out = child.stdout.take().context("stdout is piped")?;
    let mut err = child.stderr.take().context("stderr is piped")?;
    let out_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut buffer).map(|_| buffer)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut buffer).map(|_| buffer)
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a struct it fills in. The child
    // is reaped here, so `child` is never waited on again.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
        ensure!(
            reaped == pid,
            "wait4 failed: {}",
            std::io::Error::last_os_error()
        );
        usage
    };
    let wall = started.elapsed();
    let stdout = out_reader.join().expect("reader thread")?;
    let stderr = err_reader.join().expect("reader thread")?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {} ended with status {status}: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&stderr)
    );
    Ok(ChildRun {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        stdout,
    })
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// AMC's answer to creating `request` for `attempt`, as the journaling
/// benches record it (`record_submitted`) without asking AMC.
pub fn created(attempt: &OpenAttempt, request: &CreateExecution) -> Execution {
    Execution {
        workflow_execution_id: format!("exec-{}", attempt.id),
        workflow_id: request.workflow_id.clone(),
        status: Status::Pending,
        create_time: None,
        last_updated_time: None,
        time_window_start: None,
        time_window_end: None,
        time_window_start_original: Some(request.time_window_start.clone()),
        time_window_end_original: Some(request.time_window_end.clone()),
        time_window_time_zone_original: None,
        parameter_values: None,
        status_reason: None,
        failure_reason: None,
        details: None,
        message: None,
    }
}
