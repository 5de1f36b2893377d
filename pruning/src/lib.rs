//! placeholder

pub mod rle;
