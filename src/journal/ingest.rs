//! Reading a service's stdout/stderr pipe into journal entries: line splitting, the
//! 48 KiB line limit, `<N>` priority prefixes, rate limiting, and back-pressure (the
//! writer's budget is taken before each read, so output waits in the pipe while the
//! writer is behind).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::error::{JournalError, Result};
use super::writer::WriterHandle;
use super::{NewEntry, Stream, flags};

/// Lines longer than this are split into entries of this size, flagged.
pub const MAX_LINE: usize = 48 * 1024;
/// Bytes read at most per read(2): the writer's budget is taken for them before the
/// read, so a read is a small part of it (docs/JOURNAL-FORMAT.md, "What a crash loses").
const READ_CHUNK: usize = 64 * 1024;
/// The pipe buffer requested: the service writes this much ahead of us before it
/// blocks (fewer wake-ups under a flood); it is the kernel's, outside the budget.
const PIPE_SIZE: usize = 256 * 1024;

/// LogRateLimitIntervalSec= / LogRateLimitBurst=: at most `burst` entries per `interval`;
/// the rest are counted and reported in one "Suppressed N messages" entry. Shared by
/// all the pipes of a unit.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u64,
    state: Mutex<RateState>,
}

#[derive(Debug, Default)]
struct RateState {
    window_start: u64,
    passed: u64,
    suppressed: u64,
}

impl RateLimiter {
    /// A limiter of `burst` entries per `interval`.
    pub fn new(interval: Duration, burst: u64) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            interval,
            burst,
            state: Mutex::new(RateState::default()),
        })
    }

    /// Decides for one entry at monotonic time `now_us`: `(pass, suppressed_to_report)`,
    /// the second being the count dropped in the window that just ended.
    fn check(&self, now_us: u64) -> (bool, u64) {
        let mut s = self.state.lock().expect("rate limiter lock");
        let mut report = 0;
        if now_us.saturating_sub(s.window_start) >= self.interval.as_micros() as u64 {
            report = std::mem::take(&mut s.suppressed);
            s.window_start = now_us;
            s.passed = 0;
        }
        if s.passed < self.burst {
            s.passed += 1;
            (true, report)
        } else {
            s.suppressed += 1;
            (false, report)
        }
    }

    fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.state.lock().expect("rate limiter lock").suppressed)
    }
}

/// Where the lines of one pipe come from and how to interpret them.
#[derive(Debug, Clone)]
pub struct SourceMeta {
    /// The unit.
    pub unit: Arc<str>,
    /// The invocation id.
    pub invocation: u128,
    /// The main PID, where known.
    pub pid: Option<u32>,
    /// Stdout or stderr.
    pub stream: Stream,
    /// SyslogLevel= (priority of lines without a prefix), default 6 (info).
    pub default_priority: u8,
    /// SyslogLevelPrefix=: whether `<N>` at the start of a line sets its priority.
    pub level_prefix: bool,
    /// SyslogIdentifier=.
    pub identifier: Arc<str>,
    /// `_COMM` of the process writing (see [`super::comm_of`]); empty when unknown.
    pub comm: Arc<str>,
    /// The unit's rate limiter, if any.
    pub rate_limit: Option<Arc<RateLimiter>>,
}

/// Counters of one finished pipe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Entries handed to the writer (including "suppressed" notices).
    pub entries: u64,
    /// Bytes read from the pipe.
    pub bytes: u64,
    /// Entries dropped by the rate limit (and reported).
    pub suppressed: u64,
    /// Stopped before end of file ([`spawn_stoppable_pipe_reader`]): the
    /// unfinished line, for whoever reads the pipe on.
    pub left: Option<Unfinished>,
}

/// The longest unfinished line handed over whole to the next reader; a
/// longer one is stored as a piece flagged as cut (as lines over
/// [`MAX_LINE`] are), its rest continuing it. It travels hex-encoded in one
/// packet to the fd holder, whose packets (in every build) are 16 KiB.
pub const MAX_UNFINISHED: usize = 4 * 1024;

/// The unfinished line of a pipe whose reader was stopped before end of file
/// (`daemon-reexec`): the next reader starts with it, so no line is cut in two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// The bytes read since the last newline.
    pub bytes: Vec<u8>,
    /// The entry before them was cut at [`MAX_LINE`]: they continue it.
    pub continuing: bool,
}

/// Reads `fd` (a pipe or stream socket) until EOF into `handle`; the task ends with the
/// counters, or an error if the pipe or the writer failed.
pub fn spawn_pipe_reader(
    fd: OwnedFd,
    meta: SourceMeta,
    handle: WriterHandle,
) -> JoinHandle<Result<IngestStats>> {
    let (_never, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { read_pipe(fd, meta, handle, stop, Unfinished::default()).await })
}

/// As [`spawn_pipe_reader`], but the reader starts with `resume` (what a
/// stopped predecessor left unfinished) and stops, at the end of a read,
/// once `stop` is true: everything read is then with the writer, and the
/// unfinished line is in the counters' `left`.
pub fn spawn_stoppable_pipe_reader(
    fd: OwnedFd,
    meta: SourceMeta,
    handle: WriterHandle,
    stop: tokio::sync::watch::Receiver<bool>,
    resume: Unfinished,
) -> JoinHandle<Result<IngestStats>> {
    tokio::spawn(async move { read_pipe(fd, meta, handle, stop, resume).await })
}

fn pipe_name(meta: &SourceMeta) -> PathBuf {
    PathBuf::from(format!("<{} {}>", meta.unit, meta.stream.name()))
}

async fn read_pipe(
    fd: OwnedFd,
    meta: SourceMeta,
    handle: WriterHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
    resume: Unfinished,
) -> Result<IngestStats> {
    // A bigger pipe means fewer wake-ups under a flood; failing to get one is harmless.
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
    // try_read below must not block the runtime on a spurious wake-up.
    let nonblocking = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).and_then(|fl| {
        let fl = nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl))
    });
    nonblocking.map_err(|e| JournalError::io("set non-blocking", &pipe_name(&meta), e.into()))?;
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)
        .map_err(|e| JournalError::io("register pipe", &pipe_name(&meta), e))?;
    let mut splitter = Splitter::new(meta.clone());
    splitter.partial = resume.bytes;
    splitter.continuing = resume.continuing;
    // Grown to what a read takes, never beyond READ_CHUNK: a unit that prints
    // little keeps a small buffer (50 idle units each holding 64 KiB cost MBs).
    let mut buf: Vec<u8> = Vec::new();
    let mut stats = IngestStats::default();
    let io_err = |e| JournalError::io("read", &pipe_name(&meta), e);
    loop {
        // The stop is checked first: a flooded pipe is always readable.
        tokio::select! {
            biased;
            // The Ref is dropped at once: it holds the value's lock.
            Ok(()) = async { stop.wait_for(|s| *s).await.map(drop) } => {
                if splitter.partial.len() > MAX_UNFINISHED {
                    let batch = splitter.cut();
                    stats.entries += batch.len() as u64;
                    handle.append_batch(batch).await?;
                }
                stats.left = Some(Unfinished {
                    bytes: std::mem::take(&mut splitter.partial),
                    continuing: splitter.continuing,
                });
                stats.suppressed = splitter.suppressed;
                return Ok(stats);
            }
            r = pipe.readable() => r.map_err(io_err)?,
        }
        // The budget is taken before the bytes leave the pipe: while the writer is
        // behind, the output waits in the pipe (and the service on it), not in our
        // memory, where a crash would lose it.
        let want = available(&pipe).clamp(1, READ_CHUNK);
        let reserved = handle.reserve(&meta.unit, want).await?;
        if buf.len() < want {
            buf.resize(want.next_power_of_two().min(READ_CHUNK), 0);
        }
        let n = match pipe.try_read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            break;
        }
        stats.bytes += n as u64;
        let batch = splitter.push(&buf[..n]);
        stats.entries += batch.len() as u64;
        handle.append_reserved(batch, reserved).await?;
    }
    let batch = splitter.finish();
    stats.entries += batch.len() as u64;
    stats.suppressed = splitter.suppressed;
    handle.append_batch(batch).await?;
    Ok(stats)
}

/// Bytes waiting in the pipe (FIONREAD); 0 when unknown, or at end of file.
fn available(pipe: &tokio::net::unix::pipe::Receiver) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 { 0 } else { n.max(0) as usize }
}

/// Turns a byte stream into entries (exposed for benches and tests of the splitting rules).
pub struct Splitter {
    meta: SourceMeta,
    partial: Vec<u8>,
    /// The previous entry was cut at MAX_LINE: the next one continues it.
    continuing: bool,
    /// Entries dropped by the rate limit so far.
    pub suppressed: u64,
    /// (realtime, monotonic) of the current read.
    now: (u64, u64),
}

impl Splitter {
    /// A splitter for one source.
    pub fn new(meta: SourceMeta) -> Splitter {
        Splitter {
            meta,
            partial: Vec::new(),
            continuing: false,
            suppressed: 0,
            now: (0, 0),
        }
    }

    /// Feeds bytes; returns the complete entries they finish, stamped with the time
    /// they were read (not the time the writer gets to them, which a stall may delay).
    pub fn push(&mut self, mut data: &[u8]) -> Vec<NewEntry> {
        self.now = (super::realtime_now(), super::monotonic_now());
        let mut out = Vec::with_capacity(data.len() / 64 + 1);
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    if self.partial.is_empty() && i <= MAX_LINE {
                        self.emit(&data[..i], 0, &mut out);
                    } else {
                        self.partial.extend_from_slice(&data[..i]);
                        self.drain_long(&mut out);
                        let line = std::mem::take(&mut self.partial);
                        self.emit(&line, 0, &mut out);
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(data);
                    self.drain_long(&mut out);
                    data = &[];
                }
            }
        }
        out
    }

    /// Ends the stream: emits an unterminated last line and any pending "suppressed" notice.
    pub fn finish(&mut self) -> Vec<NewEntry> {
        self.now = (super::realtime_now(), super::monotonic_now());
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line, flags::NO_NEWLINE, &mut out);
        }
        if let Some(rl) = &self.meta.rate_limit {
            let n = rl.take_suppressed();
            if n > 0 {
                out.push(self.suppressed_notice(n));
            }
        }
        out
    }

    /// Emits the unfinished line as a piece flagged as cut: what follows continues it.
    fn cut(&mut self) -> Vec<NewEntry> {
        self.now = (super::realtime_now(), super::monotonic_now());
        let mut out = Vec::new();
        let line = std::mem::take(&mut self.partial);
        self.emit(&line, flags::SPLIT, &mut out);
        out
    }

    /// Cuts MAX_LINE pieces off a partial line that grew too long.
    fn drain_long(&mut self, out: &mut Vec<NewEntry>) {
        while self.partial.len() > MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial, rest);
            self.emit(&piece, flags::SPLIT, out);
        }
    }

    fn emit(&mut self, line: &[u8], extra_flags: u8, out: &mut Vec<NewEntry>) {
        let mut f = extra_flags;
        let mut priority = self.meta.default_priority;
        let mut msg = line;
        if self.continuing {
            f |= flags::CONTINUED;
        } else if self.meta.level_prefix
            && msg.len() >= 3
            && msg[0] == b'<'
            && (b'0'..=b'7').contains(&msg[1])
            && msg[2] == b'>'
        {
            priority = msg[1] - b'0';
            msg = &msg[3..];
        }
        self.continuing = f & flags::SPLIT != 0;
        if let Some(rl) = &self.meta.rate_limit {
            let (pass, report) = rl.check(super::monotonic_now());
            if report > 0 {
                out.push(self.suppressed_notice(report));
            }
            if !pass {
                self.suppressed += 1;
                return;
            }
        }
        out.push(NewEntry {
            unit: self.meta.unit.clone(),
            invocation: self.meta.invocation,
            pid: self.meta.pid,
            stream: self.meta.stream,
            priority,
            identifier: self.meta.identifier.clone(),
            comm: self.meta.comm.clone(),
            message_id: 0,
            message: msg.to_vec(),
            flags: f,
            realtime: Some(self.now.0),
            monotonic: Some(self.now.1),
        });
    }

    fn suppressed_notice(&self, n: u64) -> NewEntry {
        let mut e = NewEntry::manager(
            &self.meta.unit,
            self.meta.invocation,
            format!("Suppressed {n} messages from {}", self.meta.unit),
        );
        e.priority = 4;
        e.realtime = Some(self.now.0);
        e.monotonic = Some(self.now.1);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SourceMeta {
        SourceMeta {
            unit: Arc::from("u"),
            invocation: 1,
            pid: Some(5),
            stream: Stream::Stdout,
            default_priority: 6,
            level_prefix: true,
            identifier: Arc::from("u"),
            comm: Arc::from("u"),
            rate_limit: None,
        }
    }

    #[test]
    fn splits_prefixes_and_long_lines() {
        let mut s = Splitter::new(meta());
        let mut out = s.push(b"<3>bad\nplain\n<9>not a level\npart");
        out.extend(s.push(b"ial\n"));
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        out.extend(s.push(&long));
        out.extend(s.push(b"\n<2>after"));
        out.extend(s.finish());
        let msgs: Vec<(&[u8], u8, u8)> = out
            .iter()
            .map(|e| (e.message.as_slice(), e.priority, e.flags))
            .collect();
        assert_eq!(msgs[0], (&b"bad"[..], 3, 0));
        assert_eq!(msgs[1], (&b"plain"[..], 6, 0));
        assert_eq!(msgs[2], (&b"<9>not a level"[..], 6, 0));
        assert_eq!(msgs[3], (&b"partial"[..], 6, 0));
        assert_eq!(msgs[4].0.len(), MAX_LINE);
        assert_eq!(msgs[4].2, flags::SPLIT);
        assert_eq!(msgs[5].2, flags::SPLIT | flags::CONTINUED);
        assert_eq!(msgs[6], (&[b'x'; 10][..], 6, flags::CONTINUED));
        assert_eq!(msgs[7], (&b"after"[..], 2, flags::NO_NEWLINE));
        assert_eq!(msgs.len(), 8);
    }

    #[test]
    fn a_line_cut_at_a_handover_is_continued_by_the_next_reader() {
        let mut s = Splitter::new(meta());
        let mut out = s.push(b"<3>whole\n<3>begun");
        out.extend(s.cut());
        let mut next = Splitter::new(meta());
        next.continuing = s.continuing;
        out.extend(next.push(b" and ended\n"));
        let msgs: Vec<(&[u8], u8, u8)> = out
            .iter()
            .map(|e| (e.message.as_slice(), e.priority, e.flags))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (&b"whole"[..], 3, 0),
                (&b"begun"[..], 3, flags::SPLIT),
                (&b" and ended"[..], 6, flags::CONTINUED),
            ]
        );
    }

    #[test]
    fn rate_limit_reports_suppressed() {
        let mut m = meta();
        m.rate_limit = Some(RateLimiter::new(Duration::from_secs(3600), 2));
        let mut s = Splitter::new(m);
        let mut out = s.push(b"a\nb\nc\nd\n");
        out.extend(s.finish());
        let msgs: Vec<&[u8]> = out.iter().map(|e| e.message.as_slice()).collect();
        assert_eq!(msgs, vec![&b"a"[..], b"b", b"Suppressed 2 messages from u"]);
        assert_eq!(s.suppressed, 2);
    }
}
