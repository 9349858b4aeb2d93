//! Robustness of the pipeline, as one test binary (one link instead of
//! three): code fingerprints in stage keys ([`fingerprint`]), damaged and
//! unreadable cached artifacts ([`cache`]), and SIGKILL mid-stage ([`crash`]).

mod cache;
mod crash;
mod fingerprint;
