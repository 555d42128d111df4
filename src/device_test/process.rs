//! The device `device-test --run "CMD"` starts: `sh -c CMD` in a process group of its own, with
//! the listeners' URLs and its keys in its environment, its output in `--device-log` (or on
//! this program's stderr, never on the stdout the report goes to), and stopped at the end:
//! SIGTERM to the group, then SIGKILL after a grace period.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::DeviceTestError;

/// A device started by `--run`.
pub struct Device {
    child: Child,
    /// Where its output goes.
    pub log: Option<PathBuf>,
    /// How it ended on its own, once seen.
    ended: Option<String>,
}

/// `exit status 3`, `killed by signal 9`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "ended".into(),
    }
}

impl Device {
    /// Start `command` with `sh -c`, `env` added to this process's environment.
    pub fn start(
        command: &str,
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> Result<Device, DeviceTestError> {
        use std::os::unix::process::CommandExt;
        let (out, err) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).map_err(|source| DeviceTestError::DeviceLog {
                    path: path.display().to_string(),
                    source,
                })?;
                let copy = file.try_clone().map_err(|source| DeviceTestError::DeviceLog {
                    path: path.display().to_string(),
                    source,
                })?;
                (Stdio::from(file), Stdio::from(copy))
            }
            None => {
                // stdout is the report's: the device's output goes to stderr.
                use std::os::fd::AsFd;
                let err = std::io::stderr().as_fd().try_clone_to_owned().map_err(|source| {
                    DeviceTestError::Run {
                        command: command.to_string(),
                        source,
                    }
                })?;
                (Stdio::from(err), Stdio::inherit())
            }
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| DeviceTestError::Run {
                command: command.to_string(),
                source,
            })?;
        Ok(Device {
            child,
            log: log.map(Path::to_path_buf),
            ended: None,
        })
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<String> {
        if self.ended.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.ended = Some(describe(status));
        }
        self.ended.clone()
    }

    fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group may be gone already: nothing to do then.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// Stop it: SIGTERM to its process group, SIGKILL after `grace`; then reap it.
    pub async fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            // Its children may linger in the group.
            self.signal(Signal::SIGKILL);
            return;
        }
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                self.signal(Signal::SIGKILL);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Device {
    /// A run that ends early (an error) leaves no device behind.
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
