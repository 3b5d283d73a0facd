//! Where audit lines go (`--audit-log`), and what "written" means for each:
//!
//! | `--audit-log` | a line is acknowledged once | reopened on SIGHUP |
//! |---|---|---|
//! | `FILE` (a regular file) | written and `fdatasync`'d | yes: the path is opened again (logrotate) |
//! | `-` or `stdout` | written to the pipe or terminal (`write(2)` returned); `fdatasync`'d too when stdout is a regular file | no |
//! | `syslog:///dev/log` (a unix datagram socket) | queued on the local syslog daemon's socket (the kernel took it, or the send failed) | reconnected |
//! | `syslog://HOST:PORT` (UDP) | sent; UDP says nothing of delivery, so `--audit-required` refuses it | reconnected |
//!
//! A FIFO, socket or character device named as a file (e.g. `/dev/stdout`) is written
//! like stdout: `fdatasync` does not apply to them (it fails with `EINVAL`), so it is
//! not asked for. Syslog messages are RFC 5424 (`<86>1 TIMESTAMP REPLICA kmsd PID audit
//! - {json}`: facility authpriv, severity info), one record per datagram.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::AUDIT_FLUSH_TIMEOUT;

/// The `--audit-log` values that mean standard output.
pub const STDOUT_NAMES: [&str; 2] = ["-", "stdout"];

/// The scheme of a syslog target.
pub const SYSLOG_SCHEME: &str = "syslog://";

/// RFC 5424 PRI of every record: facility authpriv (10), severity informational (6).
const SYSLOG_PRI: u8 = 10 * 8 + 6;

/// Where `--audit-log` sends the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A file, appended to.
    File(PathBuf),
    /// The process's standard output.
    Stdout,
    /// A local syslog daemon's unix datagram socket (`syslog:///dev/log`).
    SyslogUnix(PathBuf),
    /// A syslog collector over UDP (`syslog://host:port`).
    SyslogUdp(String),
}

impl Target {
    /// The target `--audit-log` names: `-` or `stdout`, `syslog:///PATH`,
    /// `syslog://HOST:PORT`, else a file path.
    ///
    /// # Errors
    ///
    /// A `syslog://` value that names neither a socket path nor a host and port.
    pub fn parse(value: &Path) -> Result<Self, String> {
        let Some(text) = value.to_str() else {
            return Ok(Self::File(value.to_path_buf()));
        };
        if STDOUT_NAMES.contains(&text) {
            return Ok(Self::Stdout);
        }
        let Some(rest) = text.strip_prefix(SYSLOG_SCHEME) else {
            return Ok(Self::File(value.to_path_buf()));
        };
        if rest.starts_with('/') {
            return Ok(Self::SyslogUnix(PathBuf::from(rest)));
        }
        let port_ok = rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if port_ok {
            return Ok(Self::SyslogUdp(rest.to_owned()));
        }
        Err(format!(
            "--audit-log {text}: a syslog target is syslog:///path/of/socket (e.g. \
             syslog:///dev/log) or syslog://HOST:PORT (UDP)"
        ))
    }

    /// Whether an acknowledged line is known to have arrived somewhere that keeps it
    /// (see the module docs): false only for UDP.
    pub fn confirms_writes(&self) -> bool {
        !matches!(self, Self::SyslogUdp(_))
    }

    /// The file to reopen on SIGHUP and to continue the hash chain from, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Stdout => f.write_str("stdout"),
            Self::SyslogUnix(path) => write!(f, "{SYSLOG_SCHEME}{}", path.display()),
            Self::SyslogUdp(addr) => write!(f, "{SYSLOG_SCHEME}{addr}"),
        }
    }
}

/// An open target, written by the audit writer thread only.
#[derive(Debug)]
pub(super) struct Output {
    target: Target,
    sink: Sink,
    /// The name records' syslog header carries (the replica).
    hostname: String,
}

#[derive(Debug)]
enum Sink {
    /// A file or stdout; `fsync` says whether `fdatasync` applies (a regular file).
    File {
        file: File,
        fsync: bool,
    },
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

impl Output {
    /// Opens `target` (a file: for appending, created with mode 0600 if missing).
    /// `hostname` is the replica the syslog header names.
    pub(super) fn open(target: &Target, hostname: &str) -> std::io::Result<Self> {
        Ok(Self {
            sink: Sink::open(target)?,
            target: target.clone(),
            hostname: hostname.to_owned(),
        })
    }

    /// Writes `lines` (each ending in a newline): a file in one append, syslog one
    /// datagram per line.
    pub(super) fn write(&mut self, lines: &[String]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::File { file, .. } => file.write_all(lines.concat().as_bytes()),
            Sink::Unix(_) | Sink::Udp(_) => {
                for line in lines {
                    let frame = self.syslog_frame(line);
                    self.send(frame.as_bytes())?;
                }
                Ok(())
            }
        }
    }

    /// Makes what was written durable where that applies: `fdatasync` for a regular
    /// file; nothing to do for a pipe, a terminal or a socket (each write was handed
    /// over whole when it returned).
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        match &self.sink {
            Sink::File { file, fsync: true } => file.sync_data(),
            _ => Ok(()),
        }
    }

    /// Opens the target again: a file by its path (after logrotate's `mv`), a syslog
    /// socket by its address. The old file is kept on failure (and the error returned).
    pub(super) fn reopen(&mut self) -> std::io::Result<()> {
        if self.target == Target::Stdout {
            return Ok(());
        }
        self.sink = Sink::open(&self.target)?;
        Ok(())
    }

    /// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
    fn syslog_frame(&self, line: &str) -> String {
        format!(
            "<{SYSLOG_PRI}>1 {} {} kmsd {} audit - {}",
            super::now_rfc3339(),
            self.hostname,
            std::process::id(),
            line.trim_end_matches('\n')
        )
    }

    /// Sends one datagram; a unix socket whose daemon restarted is reconnected once.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let sent = match &self.sink {
            Sink::Unix(socket) => socket.send(frame),
            Sink::Udp(socket) => socket.send(frame),
            // `write` appends to a file itself; never sent to.
            Sink::File { .. } => Err(std::io::Error::other("not a syslog socket")),
        };
        match sent {
            Ok(_) => Ok(()),
            Err(err) if matches!(self.sink, Sink::Unix(_)) && is_disconnected(&err) => {
                self.sink = Sink::open(&self.target)?;
                match &self.sink {
                    Sink::Unix(socket) => socket.send(frame).map(drop),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }
}

fn is_disconnected(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, NotConnected, NotFound};
    matches!(err.kind(), ConnectionRefused | NotConnected | NotFound)
}

impl Sink {
    fn open(target: &Target) -> std::io::Result<Self> {
        match target {
            Target::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Self::file(options.open(path)?)
            }
            Target::Stdout => {
                let fd = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?;
                Self::file(File::from(fd))
            }
            Target::SyslogUnix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_write_timeout(Some(AUDIT_FLUSH_TIMEOUT))?;
                socket.connect(path)?;
                Ok(Self::Unix(socket))
            }
            Target::SyslogUdp(addr) => {
                let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
                let local: std::net::SocketAddr = if resolved.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(resolved)?;
                Ok(Self::Udp(socket))
            }
        }
    }

    /// A file sink; `fdatasync` only for a regular file (see the module docs).
    fn file(file: File) -> std::io::Result<Self> {
        let fsync = file.metadata()?.file_type().is_file();
        Ok(Self::File { file, fsync })
    }
}

/// The end of an audit file, where a restart continues the chain.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    /// The last line's bytes, without its newline.
    pub line: Vec<u8>,
    /// Whether the file ends in a newline; not if a write was cut short (a crash, a
    /// full disk), and then the next line must start on a line of its own.
    pub terminated: bool,
}

/// The last line of `path`, to continue the hash chain from; `None` for a missing or
/// empty file, or one that is not a regular file.
pub(super) fn last_line(path: &Path) -> std::io::Result<Option<Tail>> {
    use std::io::{Read, Seek, SeekFrom};
    /// Records are far shorter; a last line longer than this is read from further back.
    const TAIL: u64 = 64 * 1024;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() || metadata.len() == 0 {
        return Ok(None);
    }
    let len = metadata.len();
    let mut start = len.saturating_sub(TAIL);
    loop {
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let terminated = tail.ends_with(b"\n");
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        match body.iter().rposition(|&b| b == b'\n') {
            Some(at) => {
                return Ok(Some(Tail {
                    line: body[at + 1..].to_vec(),
                    terminated,
                }));
            }
            None if start == 0 => {
                return Ok(Some(Tail {
                    line: body.to_vec(),
                    terminated,
                }));
            }
            None => start = start.saturating_sub(TAIL * 16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_the_flag() {
        let parse = |text: &str| Target::parse(Path::new(text));
        assert_eq!(parse("-"), Ok(Target::Stdout));
        assert_eq!(parse("stdout"), Ok(Target::Stdout));
        assert_eq!(parse("./stdout"), Ok(Target::File("./stdout".into())));
        assert_eq!(
            parse("/var/log/kmsd/audit.jsonl"),
            Ok(Target::File("/var/log/kmsd/audit.jsonl".into()))
        );
        assert_eq!(
            parse("syslog:///dev/log"),
            Ok(Target::SyslogUnix("/dev/log".into()))
        );
        assert_eq!(
            parse("syslog://collector.example:514"),
            Ok(Target::SyslogUdp("collector.example:514".into()))
        );
        assert_eq!(
            parse("syslog://[::1]:514"),
            Ok(Target::SyslogUdp("[::1]:514".into()))
        );
        for bad in [
            "syslog://",
            "syslog://host",
            "syslog://host:port",
            "syslog://:514",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("syslog:///dev/log"), "{bad}: {err}");
        }
        assert!(!parse("syslog://h:514").unwrap().confirms_writes());
        assert!(parse("syslog:///dev/log").unwrap().confirms_writes());
        assert_eq!(
            parse("syslog:///dev/log").unwrap().to_string(),
            "syslog:///dev/log"
        );
    }

    #[test]
    fn a_pipe_is_written_without_fsync_and_a_file_with_it() {
        let (reader, writer) = std::io::pipe().unwrap();
        let pipe = Sink::file(File::from(std::os::fd::OwnedFd::from(writer))).unwrap();
        assert!(matches!(pipe, Sink::File { fsync: false, .. }));
        let mut output = Output {
            target: Target::Stdout,
            sink: pipe,
            hostname: "r1".into(),
        };
        output.write(&["{\"a\":1}\n".into()]).unwrap();
        output.sync().expect("no fdatasync on a pipe, so no EINVAL");
        drop(output);
        let mut read = String::new();
        std::io::Read::read_to_string(&mut { reader }, &mut read).unwrap();
        assert_eq!(read, "{\"a\":1}\n");

        let dir = tempfile::tempdir().unwrap();
        let file = Sink::open(&Target::File(dir.path().join("a.jsonl"))).unwrap();
        assert!(matches!(file, Sink::File { fsync: true, .. }));
    }

    #[test]
    fn syslog_over_a_unix_socket_gets_one_rfc5424_message_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let daemon = UnixDatagram::bind(&path).unwrap();
        let mut output = Output::open(&Target::SyslogUnix(path.clone()), "replica-1").unwrap();
        output
            .write(&["{\"n\":1}\n".into(), "{\"n\":2}\n".into()])
            .unwrap();
        output.sync().unwrap();
        let mut buf = [0u8; 4096];
        for n in 1..=2 {
            let len = daemon.recv(&mut buf).unwrap();
            let message = std::str::from_utf8(&buf[..len]).unwrap();
            let parts: Vec<&str> = message.splitn(8, ' ').collect();
            assert_eq!(parts[0], "<86>1", "{message}");
            assert!(humantime::parse_rfc3339(parts[1]).is_ok(), "{message}");
            assert_eq!(
                parts[2..7],
                [
                    "replica-1",
                    "kmsd",
                    &std::process::id().to_string(),
                    "audit",
                    "-"
                ]
            );
            assert_eq!(parts[7], format!("{{\"n\":{n}}}"));
        }
        // The daemon restarts (a new socket at the same path): the next send reconnects.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let daemon = UnixDatagram::bind(&path).unwrap();
        output.write(&["{\"n\":3}\n".into()]).unwrap();
        let len = daemon.recv(&mut buf).unwrap();
        assert!(
            std::str::from_utf8(&buf[..len])
                .unwrap()
                .ends_with("{\"n\":3}")
        );
    }

    #[test]
    fn the_last_line_of_a_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let tail = |line: &str, terminated| {
            Some(Tail {
                line: line.as_bytes().to_vec(),
                terminated,
            })
        };
        assert_eq!(last_line(&path).unwrap(), None);
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_line(&path).unwrap(), None);
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(last_line(&path).unwrap(), tail("two", true));
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(last_line(&path).unwrap(), tail("tw", false));
        std::fs::write(&path, "only\n").unwrap();
        assert_eq!(last_line(&path).unwrap(), tail("only", true));
        let long = "x".repeat(100_000);
        std::fs::write(&path, format!("one\n{long}\nthree\n")).unwrap();
        assert_eq!(last_line(&path).unwrap(), tail("three", true));
        std::fs::write(&path, format!("one\n{long}\n")).unwrap();
        assert_eq!(last_line(&path).unwrap(), tail(&long, true));
        std::fs::write(&path, format!("{long}\n")).unwrap();
        assert_eq!(last_line(&path).unwrap(), tail(&long, true));
    }
}
