//! `tah-train`: trains the SDK's default TaH model on grade-school arithmetic
//! (see `models/README.md` for the recipe and results).

pub mod checkpoint;
pub mod data;
pub mod data_batch;
pub mod decider;
pub mod net;
pub mod ops;
pub mod params;
pub mod pipeline;
pub mod rng;
pub mod train;
pub mod vocab;
