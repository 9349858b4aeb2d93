//! The pipeline's tests, as one test binary (one link instead of six, and
//! xtask compiled once): the user configuration and export ([`config`]),
//! the tiny end-to-end pipeline ([`end_to_end`]), code fingerprints in stage
//! keys ([`fingerprint`]), damaged and unreadable cached artifacts
//! ([`cache`]), SIGKILL mid-stage ([`crash`]), stages on two concurrent
//! tracks ([`tracks`]), and the modules' unit tests ([`units`]).

mod cache;
mod config;
mod crash;
mod end_to_end;
mod fingerprint;
mod tracks;
mod units;
