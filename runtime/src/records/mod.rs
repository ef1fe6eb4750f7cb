//! The records of pods and containers: what a CRI client asks for and what
//! crius stores of each object. Plain data with checks of its own shape,
//! shared by the pod part, the container part, request validation, stats
//! and the CRI layer; none of it runs anything.

pub mod container;
pub mod pod;
mod stop_signal;
