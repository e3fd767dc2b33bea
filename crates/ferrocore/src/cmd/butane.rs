//! (being written)
use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: &[OsString]) -> ExitCode {
    ExitCode::from(1)
}
