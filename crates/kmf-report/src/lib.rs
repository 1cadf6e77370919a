//! Reports: what happened to each variant, in the forms people and CI systems read.
//!
//! [`VariantResult`] is one variant's outcome (the element of `results.json`); [`VariantMetadata`] is what the
//! store keeps beside a variant's modules.

mod results;

pub use results::{
    Durations, InputPackage, Inputs, Status, Toolchain, VariantMetadata, VariantResult,
    RESULTS_SCHEMA,
};
