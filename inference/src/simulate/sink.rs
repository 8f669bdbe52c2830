//! Where the simulator's event lines go: one small trait, implemented for a file, standard
//! output and a Kafka topic (`kafka://HOST:PORT/TOPIC`, keyed by user id, every line
//! acknowledged by the broker or the run fails).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::bus::KafkaUri;
use crate::bus::events::EventWriter;

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
    /// `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`.
    Kafka(KafkaUri),
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
        if text.starts_with("kafka://") {
            return text.parse().map(SinkSpec::Kafka);
        }
        match text.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(SinkSpec::File(PathBuf::from(path))),
            _ => Err(format!(
                "unknown sink {text:?}: use file:PATH, stdout or kafka://HOST:PORT/TOPIC"
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
            SinkSpec::Kafka(uri) => Ok(Box::new(EventWriter::open(uri)?)),
            SinkSpec::File(path) => std::fs::File::create(path)
                .map(|f| Box::new(WriterSink::new(f)) as Box<dyn EventSink>)
                .map_err(|e| format!("cannot create {}: {e}", path.display())),
        }
    }
}

/// How long the end of a run waits for the broker to acknowledge every line.
const KAFKA_FLUSH: Duration = Duration::from_secs(60);

impl EventSink for EventWriter {
    fn write_line(&mut self, user: u32, line: &str) -> io::Result<()> {
        self.write(user, line).map_err(io::Error::other)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.finish(KAFKA_FLUSH)
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_parse_from_their_three_forms_and_bad_ones_are_named() {
        assert_eq!(SinkSpec::parse("stdout"), Ok(SinkSpec::Stdout));
        assert_eq!(
            SinkSpec::parse("file:/tmp/x.log"),
            Ok(SinkSpec::File(PathBuf::from("/tmp/x.log")))
        );
        let kafka = SinkSpec::parse("kafka://127.0.0.1:9092/events").expect("kafka sink");
        assert_eq!(
            kafka,
            SinkSpec::Kafka(KafkaUri {
                brokers: "127.0.0.1:9092".to_owned(),
                topic: "events".to_owned()
            })
        );
        let error = SinkSpec::parse("kafka://127.0.0.1:9092").expect_err("no topic");
        assert!(error.contains("names no topic"), "{error}");
        let error = SinkSpec::parse("s3://bucket/key").expect_err("unknown");
        assert!(error.contains("kafka://HOST:PORT/TOPIC"), "{error}");
    }
}
