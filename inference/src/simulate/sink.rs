//! Where the simulator's event lines go: one small trait, so a Kafka topic can join the file
//! and standard output without the simulator changing.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// A destination for log lines, written in session order by one writer.
pub trait EventSink: Send {
    /// Writes one line (without terminator); `user` is the record key a partitioned bus
    /// would use.
    ///
    /// # Errors
    /// The destination's write error.
    fn write_line(&mut self, user: u32, line: &str) -> io::Result<()>;

    /// Makes every line written so far durable or visible.
    ///
    /// # Errors
    /// The destination's flush error.
    fn flush(&mut self) -> io::Result<()>;
}

/// Lines to any writer, newline-terminated, buffered.
#[derive(Debug)]
pub struct WriterSink<W: Write + Send>(BufWriter<W>);

impl<W: Write + Send> WriterSink<W> {
    /// A sink over `writer`.
    pub fn new(writer: W) -> Self {
        WriterSink(BufWriter::with_capacity(1 << 16, writer))
    }
}

impl<W: Write + Send> EventSink for WriterSink<W> {
    fn write_line(&mut self, _user: u32, line: &str) -> io::Result<()> {
        self.0.write_all(line.as_bytes())?;
        self.0.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A parsed `--sink` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// `file:PATH`: create or truncate the file.
    File(PathBuf),
    /// `stdout`.
    Stdout,
}

impl SinkSpec {
    /// Parses `file:PATH` or `stdout`.
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "stdout" || text == "-" {
            return Ok(SinkSpec::Stdout);
        }
        match text.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(SinkSpec::File(PathBuf::from(path))),
            _ => Err(format!(
                "unknown sink {text:?}: use file:PATH or stdout (a Kafka sink is not built yet)"
            )),
        }
    }

    /// Opens the sink.
    ///
    /// # Errors
    /// A message when the file cannot be created.
    pub fn open(&self) -> Result<Box<dyn EventSink>, String> {
        match self {
            SinkSpec::Stdout => Ok(Box::new(WriterSink::new(io::stdout()))),
            SinkSpec::File(path) => std::fs::File::create(path)
                .map(|f| Box::new(WriterSink::new(f)) as Box<dyn EventSink>)
                .map_err(|e| format!("cannot create {}: {e}", path.display())),
        }
    }
}
