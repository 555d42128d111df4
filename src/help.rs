//! What to do about an error, kept apart from what went wrong: the [`Help`] trait every layer's
//! error implements. The bottom layer: it imports nothing from this crate.

/// What to do about an error, kept apart from what went wrong. Every layer's error implements
/// it; the CLI prints the error, then the help, once.
pub trait Help {
    fn help(&self) -> Option<String> {
        None
    }
}
