//! gensplit-hvp's integration tests: one test binary (one link) for all of
//! them, as `cargo test -p gensplit-hvp --test hvp`.

mod blocks;
mod common;
mod products;
