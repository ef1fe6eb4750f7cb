//! The signal that asks a container to stop, parsed once, where it is
//! first known (the image's `StopSignal`), and kept by name in the
//! container's record.

use std::str::FromStr;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A container's stop signal. Stored as its name (`"SIGTERM"`), as the
/// records of earlier crius versions hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal(pub Signal);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Signal::SIGTERM)
    }
}

impl StopSignal {
    /// A signal by name (`SIGQUIT`, `quit`) or number (`3`).
    pub fn parse(s: &str) -> Option<StopSignal> {
        if let Ok(n) = s.parse::<i32>() {
            return Signal::try_from(n).ok().map(StopSignal);
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::from_str(&name).ok().map(StopSignal)
    }

    /// The stop signal of an image whose config says `s`: SIGTERM when it
    /// says nothing or names no signal this kernel has (logged), as
    /// containerd does.
    pub fn of_image(image: &str, s: &str) -> StopSignal {
        if s.is_empty() {
            return StopSignal::default();
        }
        StopSignal::parse(s).unwrap_or_else(|| {
            tracing::warn!(
                image,
                stop_signal = s,
                "the image's StopSignal names no signal; SIGTERM is used"
            );
            StopSignal::default()
        })
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

impl Serialize for StopSignal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for StopSignal {
    /// A name that is no signal (a record written by hand) reads as
    /// SIGTERM, which is what stopping used before it was typed.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(StopSignal::parse(&s).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(
            StopSignal::parse("SIGTERM"),
            Some(StopSignal(Signal::SIGTERM))
        );
        assert_eq!(StopSignal::parse("quit"), Some(StopSignal(Signal::SIGQUIT)));
        assert_eq!(StopSignal::parse("9"), Some(StopSignal(Signal::SIGKILL)));
        assert_eq!(StopSignal::parse("SIGNOPE"), None);
        assert_eq!(StopSignal::of_image("i", ""), StopSignal(Signal::SIGTERM));
        assert_eq!(
            StopSignal::of_image("i", "nope"),
            StopSignal(Signal::SIGTERM)
        );
        assert_eq!(
            StopSignal::of_image("i", "SIGINT"),
            StopSignal(Signal::SIGINT)
        );
    }

    #[test]
    fn records_keep_the_name() {
        let json = serde_json::to_string(&StopSignal(Signal::SIGQUIT)).unwrap();
        assert_eq!(json, "\"SIGQUIT\"");
        let back: StopSignal = serde_json::from_str("\"SIGUSR1\"").unwrap();
        assert_eq!(back, StopSignal(Signal::SIGUSR1));
        let odd: StopSignal = serde_json::from_str("\"NOPE\"").unwrap();
        assert_eq!(odd, StopSignal::default());
    }
}
