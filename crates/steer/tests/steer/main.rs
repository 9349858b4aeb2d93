//! gensplit-steer's integration tests, one test binary (one link instead of
//! four): de-mixed stand-ins, steering directions and operating points,
//! independence statistics against dense computations, and steering on a
//! tiny model with two planted independent modules.

mod demix;
mod directions;
mod independence;
mod planted;
