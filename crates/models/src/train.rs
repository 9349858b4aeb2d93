//! Training (next).
