//! Robustness of the pipeline, as one test binary (one link instead of
//! four): code fingerprints in stage keys ([`fingerprint`]), damaged and
//! unreadable cached artifacts ([`cache`]), SIGKILL mid-stage ([`crash`]),
//! and stages on two concurrent tracks ([`tracks`]).

mod cache;
mod crash;
mod fingerprint;
mod tracks;
