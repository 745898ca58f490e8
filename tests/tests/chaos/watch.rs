//! Every exit of a process the chaos run did not cause must be a crash point's abort, proved
//! by its line `failpoint <name> (<context>): aborting the process` in what that incarnation
//! of the process wrote; any other exit (a panic, an error exit) is a finding, reported with
//! that incarnation's output. Logs are appended across restarts, so each watch remembers
//! where the current incarnation's output starts.

use std::{
    collections::BTreeMap,
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    process::ExitStatus,
};

use tandem_tests::ServiceProcess;

/// The log file a running child writes its stderr to, from `/proc` (the kit keeps the path
/// private).
pub fn log_of(pid: Option<u32>) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{}/fd/2", pid?)).ok()
}

/// One process's exits and crash-point aborts.
pub struct Watch {
    pub name: String,
    log: Option<PathBuf>,
    start: u64,
    /// Crash-point aborts, by point name.
    pub aborts: BTreeMap<String, usize>,
}

impl Watch {
    pub fn new(process: &ServiceProcess) -> Self {
        let mut watch = Self {
            name: process.name.clone(),
            log: log_of(process.pid()),
            start: 0,
            aborts: BTreeMap::new(),
        };
        watch.started(process);
        watch
    }

    /// The process was (re)started: its new output starts here.
    pub fn started(&mut self, process: &ServiceProcess) {
        if self.log.is_none() {
            self.log = log_of(process.pid());
        }
        self.start = match &self.log {
            Some(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            None => process.output().len() as u64,
        };
    }

    /// What the current incarnation wrote.
    pub fn output(&self, process: &ServiceProcess) -> String {
        if let Some(path) = &self.log
            && let Ok(mut file) = std::fs::File::open(path)
            && file.seek(SeekFrom::Start(self.start)).is_ok()
        {
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_ok() {
                return String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let all = process.output();
        all.get(self.start as usize..).unwrap_or(&all).to_owned()
    }

    /// The process exited by itself with `status`: `Ok(point)` when it aborted at a crash
    /// point, else `Err` with the report (its status and output since it started).
    pub fn exited(
        &mut self,
        process: &ServiceProcess,
        status: ExitStatus,
    ) -> Result<String, String> {
        let output = self.output(process);
        let point = output.lines().find_map(|line| {
            let rest = &line[line.find("failpoint ")? + "failpoint ".len()..];
            rest.contains("aborting the process")
                .then(|| rest.split(' ').next().unwrap_or_default().to_owned())
        });
        match point {
            Some(point) if !status.success() => {
                *self.aborts.entry(point.clone()).or_default() += 1;
                Ok(point)
            }
            _ => Err(format!(
                "{} exited by itself ({status}) without reaching a crash point; its output \
                 since its last start:\n{}",
                self.name,
                tail(&output, 200)
            )),
        }
    }
}

/// `text` without its terminal colour codes (`ESC [ ... letter`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `lines` lines of `text`, without colour codes.
pub fn tail(text: &str, lines: usize) -> String {
    let text = plain(text);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut out = String::new();
    if from > 0 {
        out.push_str(&format!("[... {from} lines before]\n"));
    }
    out.push_str(&all[from..].join("\n"));
    out
}

/// The lines of `text` that report a panic, with the line after each.
pub fn panics(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("panicked at"))
        .map(|(at, line)| match lines.get(at + 1) {
            Some(next) => format!("{line} {next}"),
            None => (*line).to_owned(),
        })
        .collect()
}

/// Whether the child with `pid` has exited (a zombie, or gone).
pub fn exited(pid: Option<u32>) -> bool {
    let Some(pid) = pid else {
        return true;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}
